"""numpy reference for GGUF tensors: dequantization of F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K and Q6_K blocks
written from ggml's block layouts, independent of tdeploy's C code, plus a small GGUF byte builder for
hand-made (and deliberately broken) files. Values come back in file order (dims[0] fastest)."""
import struct

import numpy as np

BLOCK = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
         "Q4_K": (256, 144), "Q6_K": (256, 210)}
GGML = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14,
        "BF16": 30}


def _f16(b):
    return b.view(np.float16).astype(np.float32)


def dequantize(raw, kind):
    raw = np.frombuffer(bytes(raw), np.uint8)
    if kind == "F32":
        return raw.view(np.float32).copy()
    if kind == "F16":
        return raw.view(np.float16).astype(np.float32)
    if kind == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    elems, size = BLOCK[kind]
    b = raw.reshape(-1, size)
    if kind == "Q8_0":
        d = _f16(b[:, 0:2].copy())
        return (d * b[:, 2:].view(np.int8).astype(np.float32)).reshape(-1)
    if kind in ("Q4_0", "Q4_1"):
        off = 2 if kind == "Q4_0" else 4
        d = _f16(b[:, 0:2].copy())
        qs = b[:, off:off + 16]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
        if kind == "Q4_0":
            return (d * (q - 8)).reshape(-1)
        return (d * q + _f16(b[:, 2:4].copy())).reshape(-1)
    if kind == "Q4_K":
        d, dmin = _f16(b[:, 0:2].copy()), _f16(b[:, 2:4].copy())
        s, qs = b[:, 4:16].astype(np.int32), b[:, 16:144]
        sc = np.zeros((len(b), 8), np.float32)
        mn = np.zeros((len(b), 8), np.float32)
        for j in range(8):
            if j < 4:
                sc[:, j], mn[:, j] = s[:, j] & 63, s[:, j + 4] & 63
            else:
                sc[:, j] = (s[:, j + 4] & 0x0F) | ((s[:, j - 4] >> 6) << 4)
                mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
        out = np.zeros((len(b), 256), np.float32)
        for c in range(4):  # 64 values per chunk: low nibbles of 32 bytes, then their high nibbles
            q = qs[:, 32 * c:32 * c + 32]
            out[:, 64 * c:64 * c + 32] = (d * sc[:, 2 * c:2 * c + 1]) * (q & 0x0F) - dmin * mn[:, 2 * c:2 * c + 1]
            out[:, 64 * c + 32:64 * c + 64] = (d * sc[:, 2 * c + 1:2 * c + 2]) * (q >> 4) - \
                dmin * mn[:, 2 * c + 1:2 * c + 2]
        return out.reshape(-1)
    if kind == "Q6_K":
        ql, qh = b[:, 0:128].astype(np.int32), b[:, 128:192].astype(np.int32)
        sc = b[:, 192:208].view(np.int8).astype(np.float32)
        d = _f16(b[:, 208:210].copy())
        out = np.zeros((len(b), 256), np.float32)
        for h in range(2):  # two halves of 128 values
            L, H, S = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32], sc[:, 8 * h:8 * h + 8]
            q = [(L[:, :32] & 15) | ((H & 3) << 4), (L[:, 32:] & 15) | (((H >> 2) & 3) << 4),
                 (L[:, :32] >> 4) | (((H >> 4) & 3) << 4), (L[:, 32:] >> 4) | (((H >> 6) & 3) << 4)]
            for k in range(4):
                scale = np.repeat(S[:, 2 * k:2 * k + 2], 16, axis=1)  # sub-blocks of 16: scale[is + 2k], is = l // 16
                out[:, 128 * h + 32 * k:128 * h + 32 * k + 32] = d * scale * (q[k] - 32).astype(np.float32)
        return out.reshape(-1)
    raise ValueError(kind)


def random_blocks(kind, n_blocks, rng):
    """Random block bytes with finite, moderate fp16 scales (random bits elsewhere)."""
    elems, size = BLOCK[kind]
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    scale = lambda: rng.uniform(0.001, 0.05, n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    if kind in ("Q8_0", "Q4_0", "Q4_1", "Q4_K"):
        b[:, 0:2] = scale()
    if kind in ("Q4_1", "Q4_K"):
        b[:, 2:4] = scale()
    if kind == "Q6_K":
        b[:, 208:210] = scale()
    return b.reshape(-1)


# ---- a byte-level GGUF builder (for hand-made and broken files) ----

def gstr(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(s)) + s


def kv(key, vtype, payload):
    return gstr(key) + struct.pack("<I", vtype) + payload


def kv_u32(key, v):
    return kv(key, 4, struct.pack("<I", v))


def kv_str(key, s):
    return kv(key, 8, gstr(s))


def tensor_info(name, dims, ggml_type, offset):
    return gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ggml_type, offset)


def build(kvs, infos, data, version=3, alignment=32, n_tensors=None, n_kvs=None, magic=b"GGUF"):
    head = magic + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                               len(kvs) if n_kvs is None else n_kvs)
    body = head + b"".join(kvs) + b"".join(infos)
    body += b"\0" * ((alignment - len(body) % alignment) % alignment)
    return body + data
