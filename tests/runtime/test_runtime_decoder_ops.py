#!/usr/bin/env python3
"""com.microsoft GroupQueryAttention, RotaryEmbedding and QuickGelu of the CPU runtime vs ONNX Runtime.

Small one-node graphs run by ONNX Runtime and by `tdeploy infer` (and `--backend reference`, the
reference kernels); every output is compared (1e-4 absolute + 1e-4 relative). GroupQueryAttention
cases: prefill with an empty past, decode with a past, a multi-token step with a past, causal with
and without a sliding window (local_window_size), causal=0 with an attention_bias that masks
left padding, a right-padded prompt (seqlens_k below the length), 1/2/4 query heads per kv head,
attention_bias per batch or per head. RotaryEmbedding: 3-D and 4-D inputs, partial rotary,
(B, S) and (1) position_ids. QuickGelu: SiLU (alpha 1) and alpha 1.702. Bad inputs (positions past the cache) must fail cleanly.
Prints one line per case and "N passed, M failed"; exits non-zero on any failure."""
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from safetensors.numpy import load_file, save_file

BIN = os.environ.get("TD_BIN", "tdeploy")
TMP = os.path.join(os.environ.get("TD_TMP", "/tmp"), "decoder_ops")
os.makedirs(TMP, exist_ok=True)
rng = np.random.default_rng(7)
NP2ONNX = {np.float32: TensorProto.FLOAT, np.int32: TensorProto.INT32, np.int64: TensorProto.INT64}
passed = failed = 0


def report(ok, what):
    global passed, failed
    passed += ok
    failed += not ok
    print(("PASS " if ok else "FAIL ") + what)


def model(node, feeds, outputs):
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, NP2ONNX[a.dtype.type], a.shape)
                                        for n, a in feeds.items()],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


def tdeploy(path, feeds, case, backend):
    inp, out = os.path.join(TMP, case + ".in.safetensors"), os.path.join(TMP, case + "." + backend + ".safetensors")
    save_file(feeds, inp)
    r = subprocess.run([BIN, "infer", path, "--inputs", inp, "-o", out, "--backend", backend], capture_output=True,
                       text=True, timeout=120)
    return r, (load_file(out) if r.returncode == 0 else None)


def check(case, node, feeds, outputs):
    path = os.path.join(TMP, case + ".onnx")
    with open(path, "wb") as f:
        f.write(model(node, feeds, outputs).SerializeToString())
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    for backend in ("cpu", "reference"):
        r, got = tdeploy(path, feeds, case, backend)
        if r.returncode != 0:
            report(False, f"{case} [{backend}]: tdeploy infer failed: {r.stderr.strip()[-300:]}")
            continue
        for n, w in zip(outputs, want):
            g = got.get(n)
            if g is None or g.shape != w.shape:
                report(False, f"{case} [{backend}] {n}: got {None if g is None else g.shape}, want {w.shape}")
                continue
            d = np.abs(g.astype(np.float64) - w)
            ok = bool(np.all(d <= 1e-4 + 1e-4 * np.abs(w)))
            report(ok, f"{case} [{backend}] {n} max err {float(d.max()) if d.size else 0.0:.2e}")


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def rope_cases():
    maxp = 40
    for rank, n_heads, d, rot, pos_kind in [(3, 3, 8, 8, "bs"), (3, 3, 8, 4, "bs"), (4, 2, 16, 16, "bs"),
                                            (4, 2, 8, 4, "one"), (3, 4, 8, 0, "bs")]:
        r = rot or d
        inv = (1.0 / 10000 ** (np.arange(0, r, 2) / r)).astype(np.float32)
        ang = np.arange(maxp, dtype=np.float32)[:, None] * inv[None]
        b, s = 2, 5
        x = f32(b, n_heads, s, d) if rank == 4 else f32(b, s, n_heads * d)
        pos = rng.integers(0, maxp - s, (b, s)).astype(np.int64) if pos_kind == "bs" else np.array([7], np.int64)
        feeds = {"x": x, "pos": pos, "cos": np.cos(ang).astype(np.float32), "sin": np.sin(ang).astype(np.float32)}
        attrs = {"num_heads": n_heads} if rank == 3 else {}
        if rot:
            attrs = {"num_heads": n_heads, "rotary_embedding_dim": rot}
        node = helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], domain="com.microsoft", **attrs)
        check(f"rope_r{rank}_d{d}_rot{rot}_{pos_kind}", node, feeds, ["y"])
    # a position past the cache is a clean error, not a read out of bounds
    feeds["pos"] = np.full((2, 5), maxp, np.int64)
    path = os.path.join(TMP, "rope_bad.onnx")
    with open(path, "wb") as f:
        f.write(model(node, feeds, ["y"]).SerializeToString())
    r, _ = tdeploy(path, feeds, "rope_bad", "cpu")
    report(r.returncode == 1 and "outside the cos/sin cache" in r.stderr,
           f"rope: position past the cache refused (rc {r.returncode}: {r.stderr.strip()[-160:]})")


def gqa_case(case, b, s, p, n, kv, d, *, causal=1, window=-1, seqlens=None, bias=None, total=None):
    t = p + s
    feeds = {"q": f32(b, s, n * d), "k": f32(b, s, kv * d), "v": f32(b, s, kv * d),
             "pk": f32(b, kv, p, d), "pv": f32(b, kv, p, d),
             "sk": (np.full(b, t - 1) if seqlens is None else np.array(seqlens)).astype(np.int32),
             "tot": np.array(t if total is None else total, np.int32)}
    ins = ["q", "k", "v", "pk", "pv", "sk", "tot"]
    if bias is not None:
        feeds["bias"] = bias
        ins += ["", "", "", "bias"]
    node = helper.make_node("GroupQueryAttention", ins, ["o", "present_k", "present_v"], domain="com.microsoft",
                            num_heads=n, kv_num_heads=kv, causal=causal, local_window_size=window)
    check(case, node, feeds, ["o", "present_k", "present_v"])


def padding_bias(b, s, t, pad, heads=1):
    """(b, heads, s, t) additive bias: row 0's first `pad` keys masked (left padding), causal."""
    keep = np.ones((b, t), bool)
    keep[0, :pad] = False
    qpos = np.arange(t - s, t)[:, None]
    allowed = keep[:, None, None, :] & (np.arange(t)[None, :] <= qpos)[None, None]
    bias = np.where(allowed, 0.0, np.finfo(np.float32).min).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(bias, (b, heads, s, t)) + f32(1, heads, 1, 1) * 0.1 * (heads > 1))


def gqa_cases():
    gqa_case("gqa_prefill_g2", 2, 6, 0, 4, 2, 8)
    gqa_case("gqa_decode_g2", 2, 1, 7, 4, 2, 8)
    gqa_case("gqa_decode_g4", 3, 1, 5, 8, 2, 8)
    gqa_case("gqa_mha_g1", 2, 5, 0, 3, 3, 8)
    gqa_case("gqa_chunk_past_b1", 1, 4, 3, 4, 2, 8)
    gqa_case("gqa_window3_prefill", 2, 7, 0, 4, 2, 8, window=3)
    gqa_case("gqa_window3_decode", 2, 1, 9, 4, 2, 8, window=3)
    gqa_case("gqa_right_padded_prompt", 3, 6, 0, 4, 2, 8, seqlens=[5, 2, 3])
    # rows of different lengths in one decode step: row b keeps seqlens_k[b] + 1 - S cached rows
    gqa_case("gqa_ragged_decode", 3, 1, 7, 4, 2, 8, seqlens=[7, 4, 1])
    # past is a whole cache of capacity 10 holding 5 tokens: present keeps the capacity (ORT's shared-buffer shape)
    gqa_case("gqa_capacity_past", 2, 1, 10, 4, 2, 8, seqlens=[5, 5], total=6)
    gqa_case("gqa_capacity_past_window", 2, 1, 12, 4, 2, 8, seqlens=[9, 6], total=10, window=4)
    gqa_case("gqa_bias_causal0_prefill", 2, 6, 0, 4, 2, 8, causal=0, bias=padding_bias(2, 6, 6, 2))
    gqa_case("gqa_bias_causal0_decode", 2, 1, 6, 4, 2, 8, causal=0, bias=padding_bias(2, 1, 7, 2))
    gqa_case("gqa_bias_per_head", 2, 1, 6, 4, 2, 8, causal=0, bias=padding_bias(2, 1, 7, 3, heads=4))
    # causal in the op and a bias masking key 2 of row 0 (no query is left without a key: ORT zeroes
    # such rows, an unspecified result)
    hole = np.zeros((2, 1, 5, 5), np.float32)
    hole[0, :, :, 2] = np.finfo(np.float32).min
    gqa_case("gqa_bias_and_causal", 2, 5, 0, 4, 4, 8, bias=hole)


def gqa_refused(case, b, s, p, seqlens, total, needle):
    """Hostile lengths must be a clean error (exit 1, the node and the rule named), never a read past the cache."""
    feeds = {"q": f32(b, s, 32), "k": f32(b, s, 16), "v": f32(b, s, 16), "pk": f32(b, 2, p, 8), "pv": f32(b, 2, p, 8),
             "sk": np.array(seqlens, np.int32), "tot": np.array(total, np.int32)}
    node = helper.make_node("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "sk", "tot"], ["o", "pk_out", "pv_out"],
                            domain="com.microsoft", num_heads=4, kv_num_heads=2)
    path = os.path.join(TMP, case + ".onnx")
    with open(path, "wb") as f:
        f.write(model(node, feeds, ["o", "pk_out", "pv_out"]).SerializeToString())
    r, _ = tdeploy(path, feeds, case, "cpu")
    report(r.returncode == 1 and needle in r.stderr, f"{case}: refused (rc {r.returncode}: {r.stderr.strip()[-200:]})")


def gqa_bad_inputs():
    gqa_refused("gqa_bad_seqlens_high", 2, 1, 4, [4, 9], 5, "seqlens_k[1] + 1 = 10")
    gqa_refused("gqa_bad_seqlens_negative", 2, 1, 4, [4, -7], 5, "seqlens_k[1] + 1 = -6")
    gqa_refused("gqa_bad_total", 2, 1, 4, [4, 4], 99, "total_sequence_length 99")


def quick_gelu_cases():
    for alpha in (1.0, 1.702):
        node = helper.make_node("QuickGelu", ["x"], ["y"], domain="com.microsoft", alpha=alpha)
        x = f32(2, 3, 40) * 4
        x[0, 0, :4] = [-100.0, 100.0, 0.0, -30.0]
        check(f"quick_gelu_{alpha}", node, {"x": x}, ["y"])


rope_cases()
gqa_cases()
gqa_bad_inputs()
quick_gelu_cases()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
