"""The GGUF reader (src/gguf/) through ctypes on libtdeploy.so.

1. A file written by llama.cpp's own gguf-py writer (metadata of every value type; tensors in F32, F16, BF16,
   Q8_0, Q4_0, Q4_1 quantized by gguf-py, Q4_K and Q6_K as random blocks): metadata read back, every tensor
   dequantized identically by the C reader, the numpy reference in gguf_reference.py and gguf-py.
2. A bad-file corpus (truncations, wrong magic/version/endianness, absurd counts and lengths, bad dims, unknown
   types, misaligned/outside/overlapping data, duplicate names, NUL in names, bad alignment, nested arrays,
   rows that are not whole blocks) and 2000 seeded random corruptions: each open fails with a message or
   succeeds with every tensor inside the file; never a crash. An unsupported type is refused at dequantize."""
import ctypes
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "export"))
import gguf_reference as ref  # noqa: E402
from export_common import TMP, Tally  # noqa: E402

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
LIB = os.path.join(os.path.dirname(os.path.abspath(TD_BIN)), "libtdeploy.so")
if os.environ.get("TD_GGUF_REEXEC") != "1":  # an ASan build of the library needs its runtime preloaded
    import subprocess
    nm = subprocess.run(["nm", "-D", "--undefined-only", LIB], capture_output=True, text=True)
    if "__asan_" in nm.stdout:
        rt = subprocess.run(["clang", "-print-file-name=libclang_rt.asan-x86_64.so"], capture_output=True,
                            text=True).stdout.strip()
        env = dict(os.environ, LD_PRELOAD=rt, TD_GGUF_REEXEC="1",
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)
lib = ctypes.CDLL(LIB)


class Tensor(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_uint32), ("n_dims", ctypes.c_int),
                ("dims", ctypes.c_int64 * 4), ("numel", ctypes.c_uint64), ("offset", ctypes.c_uint64),
                ("nbytes", ctypes.c_uint64), ("data", ctypes.c_void_p)]


class File(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("map", ctypes.c_void_p), ("base", ctypes.c_void_p),
                ("size", ctypes.c_size_t), ("version", ctypes.c_uint32), ("alignment", ctypes.c_uint64),
                ("data_offset", ctypes.c_uint64), ("kvs", ctypes.c_void_p), ("n_kvs", ctypes.c_size_t),
                ("tensors", ctypes.POINTER(Tensor)), ("n_tensors", ctypes.c_size_t)]


lib.td_ctx_new.restype = ctypes.c_void_p
lib.td_error_message.restype = ctypes.c_char_p
lib.td_error_message.argtypes = [ctypes.c_void_p]
lib.td_gguf_open.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(File))]
lib.td_gguf_free.argtypes = [ctypes.POINTER(File)]
lib.td_gguf_dequantize.argtypes = [ctypes.c_void_p, ctypes.POINTER(Tensor), ctypes.c_void_p]
lib.td_gguf_get_int.argtypes = [ctypes.c_void_p, ctypes.POINTER(File), ctypes.c_char_p,
                                ctypes.POINTER(ctypes.c_int64)]
lib.td_gguf_get_float.argtypes = [ctypes.c_void_p, ctypes.POINTER(File), ctypes.c_char_p,
                                  ctypes.POINTER(ctypes.c_double)]
lib.td_gguf_get_string.argtypes = [ctypes.c_void_p, ctypes.POINTER(File), ctypes.c_char_p,
                                   ctypes.POINTER(ctypes.c_char_p)]
ctx = lib.td_ctx_new()
t = Tally()
work = os.path.join(TMP, "gguf")
os.makedirs(work, exist_ok=True)


def open_file(path):
    f = ctypes.POINTER(File)()
    st = lib.td_gguf_open(ctx, path.encode(), ctypes.byref(f))
    return st, f, (lib.td_error_message(ctx) or b"").decode(errors="replace")


def tensors(f):
    return {f.contents.tensors[i].name.decode(): f.contents.tensors[i] for i in range(f.contents.n_tensors)}


def dequant(tensor):
    out = np.empty(tensor.numel, np.float32)
    st = lib.td_gguf_dequantize(ctx, ctypes.byref(tensor), out.ctypes.data)
    return st, out


# ---- 1. a file from gguf-py ----
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402

rng = np.random.default_rng(0)
path = os.path.join(work, "all_types.gguf")
w = gguf.GGUFWriter(path, "llama")
w.add_uint32("test.u32", 4000000000)
w.add_int32("test.i32", -7)
w.add_uint64("test.u64", 1 << 40)
w.add_float32("test.f32", 0.25)
w.add_float64("test.f64", -1.5e-9)
w.add_bool("test.bool", True)
w.add_string("test.str", "héllo GGUF")
w.add_array("test.ints", [1, -2, 3])
w.add_array("test.strs", ["a", "", "ccc"])
want = {}
shape = (3, 512)  # (rows, cols) as numpy; GGUF stores dims {512, 3}
x = rng.standard_normal(shape).astype(np.float32)
for name, qt in [("F32", Q.F32), ("F16", Q.F16), ("BF16", Q.BF16), ("Q8_0", Q.Q8_0), ("Q4_0", Q.Q4_0),
                 ("Q4_1", Q.Q4_1)]:
    data = gguf.quants.quantize(x, qt)
    w.add_tensor("t." + name, data, raw_dtype=qt)
    want[name] = (data.tobytes(), gguf.quants.dequantize(data, qt).reshape(-1))
for name, qt in [("Q4_K", Q.Q4_K), ("Q6_K", Q.Q6_K)]:
    blocks = ref.random_blocks(name, 6, rng).reshape(3, -1)  # 3 rows of 512 values
    w.add_tensor("t." + name, blocks, raw_dtype=qt)
    want[name] = (blocks.tobytes(), gguf.quants.dequantize(blocks, qt).reshape(-1))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

st, f, msg = open_file(path)
if t.check(st == 0, "gguf-py file opens", msg):
    t.check(f.contents.version == 3 and f.contents.alignment == 32, "version 3, alignment 32")
    i = ctypes.c_int64()
    d = ctypes.c_double()
    s = ctypes.c_char_p()
    ok = lib.td_gguf_get_int(ctx, f, b"test.u32", ctypes.byref(i)) == 0 and i.value == 4000000000
    ok &= lib.td_gguf_get_int(ctx, f, b"test.i32", ctypes.byref(i)) == 0 and i.value == -7
    ok &= lib.td_gguf_get_int(ctx, f, b"test.u64", ctypes.byref(i)) == 0 and i.value == 1 << 40
    ok &= lib.td_gguf_get_float(ctx, f, b"test.f32", ctypes.byref(d)) == 0 and d.value == 0.25
    ok &= lib.td_gguf_get_float(ctx, f, b"test.f64", ctypes.byref(d)) == 0 and d.value == -1.5e-9
    ok &= lib.td_gguf_get_string(ctx, f, b"general.architecture", ctypes.byref(s)) == 0 and s.value == b"llama"
    ok &= lib.td_gguf_get_string(ctx, f, b"test.str", ctypes.byref(s)) == 0 and s.value.decode() == "héllo GGUF"
    t.check(ok, "metadata values read back")
    t.check(lib.td_gguf_get_int(ctx, f, b"test.str", ctypes.byref(i)) != 0 and
            b"must be an integer" in lib.td_error_message(ctx), "a string read as an integer is refused")
    t.check(lib.td_gguf_get_int(ctx, f, b"no.such.key", ctypes.byref(i)) != 0, "a missing key is refused")
    ts = tensors(f)
    for name, (raw, pyref) in want.items():
        tt = ts.get("t." + name)
        if not t.check(tt is not None and list(tt.dims)[:2] == [512, 3] and tt.numel == 1536, f"{name}: tensor info"):
            continue
        st2, got = dequant(tt)
        mine = ref.dequantize(raw, name)
        scale = max(float(np.abs(pyref).max()), 1e-30)
        e_py = float(np.abs(got - pyref).max()) / scale
        e_np = float(np.abs(got - mine).max()) / scale
        t.check(st2 == 0 and e_py <= 1e-6 and e_np <= 1e-6, f"{name}: C == gguf-py == numpy reference",
                f"rel err vs gguf-py {e_py:.1e}, vs numpy {e_np:.1e}")
    lib.td_gguf_free(f)

# ---- 2. bad files ----
good_data = ref.random_blocks("Q8_0", 2, rng).tobytes()  # one (64,) Q8_0 tensor: 68 bytes
good_kvs = [ref.kv_str("general.architecture", "llama"), ref.kv_u32("general.alignment", 32)]
good_info = [ref.tensor_info("w", [64], ref.GGML["Q8_0"], 0)]
good = ref.build(good_kvs, good_info, good_data)


def expect_refused(label, blob, needle=""):
    p = os.path.join(work, "bad.gguf")
    open(p, "wb").write(blob)
    st, f, msg = open_file(p)
    if st == 0:
        lib.td_gguf_free(f)
    t.check(st != 0 and msg and needle in msg, f"refused: {label}", msg[:200])


p = os.path.join(work, "good.gguf")
open(p, "wb").write(good)
st, f, msg = open_file(p)
t.check(st == 0, "hand-built file opens", msg)
if st == 0:
    lib.td_gguf_free(f)
for cut in [0, 3, 4, 8, 16, 23, 30, 60, len(good) - len(good_data) - 1, len(good) - 1]:
    expect_refused(f"truncated to {cut} bytes", good[:cut])
expect_refused("wrong magic", b"GGUX" + good[4:], "not a GGUF file")
expect_refused("version 1", ref.build(good_kvs, good_info, good_data, version=1), "version 1")
expect_refused("big-endian", ref.build(good_kvs, good_info, good_data, version=0x03000000), "big-endian")
expect_refused("2^60 tensors", ref.build(good_kvs, good_info, good_data, n_tensors=1 << 60), "more than")
expect_refused("2^60 key/values", ref.build(good_kvs, good_info, good_data, n_kvs=1 << 60), "more than")
expect_refused("string longer than the file", ref.build([ref.kv("k", 8, struct.pack("<Q", 1 << 62))], [], b""))
expect_refused("key length 2^64-1", ref.build([struct.pack("<Q", (1 << 64) - 1) + b"x"], [], b""))
expect_refused("array of 2^61 u64", ref.build([ref.kv("k", 9, struct.pack("<IQ", 10, 1 << 61))], [], b""),
               "array longer")
expect_refused("array of 2^60 strings", ref.build([ref.kv("k", 9, struct.pack("<IQ", 8, 1 << 60))], [], b""))
expect_refused("nested array", ref.build([ref.kv("k", 9, struct.pack("<IQ", 9, 1))], [], b""), "array of arrays")
expect_refused("unknown value type", ref.build([ref.kv("k", 99, b"")], [], b""), "unknown value type")
expect_refused("duplicate key", ref.build(good_kvs + [ref.kv_u32("general.alignment", 32)], good_info, good_data),
               "appears twice")
expect_refused("NUL in a key", ref.build([ref.kv_u32("gen\0eral", 1)], [], b""), "NUL")
expect_refused("empty tensor name", ref.build(good_kvs, [ref.tensor_info("", [64], 8, 0)], good_data), "empty")
expect_refused("alignment 0", ref.build([ref.kv_u32("general.alignment", 0)], good_info, good_data), "alignment")
expect_refused("alignment 48", ref.build([ref.kv_u32("general.alignment", 48)], good_info, good_data), "alignment")
expect_refused("alignment as a string", ref.build([ref.kv_str("general.alignment", "32")], good_info, good_data),
               "alignment")
expect_refused("0 dims", ref.build(good_kvs, [ref.tensor_info("w", [], 8, 0)], good_data), "dimensions")
expect_refused("5 dims", ref.build(good_kvs, [ref.tensor_info("w", [64, 1, 1, 1, 1], 8, 0)], good_data),
               "dimensions")
expect_refused("dim 0", ref.build(good_kvs, [ref.tensor_info("w", [64, 0], 8, 0)], good_data), "dimension")
expect_refused("dims overflowing", ref.build(good_kvs, [ref.tensor_info("w", [1 << 32, 1 << 32], 0, 0)], good_data),
               "63 bits")
expect_refused("unknown ggml type", ref.build(good_kvs, [ref.tensor_info("w", [64], 77, 0)], good_data), "77")
expect_refused("row not a whole block", ref.build(good_kvs, [ref.tensor_info("w", [48], 8, 0)], good_data),
               "block size")
expect_refused("misaligned offset", ref.build(good_kvs, [ref.tensor_info("w", [32], 8, 4)], good_data),
               "alignment")
expect_refused("data outside the file", ref.build(good_kvs, [ref.tensor_info("w", [64], 8, 32)], good_data),
               "outside the file")
expect_refused("offset near 2^64", ref.build(good_kvs, [ref.tensor_info("w", [64], 8, (1 << 64) - 32)], good_data),
               "outside the file")
expect_refused("overlapping tensors", ref.build(good_kvs, [ref.tensor_info("a", [64], 8, 0),
                                                           ref.tensor_info("b", [32], 8, 32)], good_data), "overlap")
expect_refused("duplicate tensor", ref.build(good_kvs, [ref.tensor_info("a", [32], 8, 0),
                                                        ref.tensor_info("a", [32], 8, 64)], good_data + b"\0" * 64),
               "appears twice")

# an unsupported but known type opens, and is refused (named) at dequantize
q5k = ref.build(good_kvs, [ref.tensor_info("k", [256], ref.GGML["Q5_K"], 0)], bytes(176))
p = os.path.join(work, "q5k.gguf")
open(p, "wb").write(q5k)
st, f, msg = open_file(p)
if t.check(st == 0, "a Q5_K tensor opens", msg):
    st2, _ = dequant(tensors(f)["k"])
    t.check(st2 != 0 and b"Q5_K" in lib.td_error_message(ctx), "Q5_K is refused at dequantize, named",
            lib.td_error_message(ctx).decode())
    lib.td_gguf_free(f)

# seeded random corruptions of the gguf-py file: error with a message or a file whose tensors lie inside it
base = open(path, "rb").read()
crashes_avoided = 0
inconsistent = []
for k in range(2000):
    blob = bytearray(base)
    for _ in range(int(rng.integers(1, 8))):
        pos = int(rng.integers(0, min(len(blob), 1200)))  # the header and tensor infos
        blob[pos] = int(rng.integers(0, 256))
    if k % 5 == 0:
        blob = blob[:int(rng.integers(0, len(blob)))]
    p = os.path.join(work, "fuzz.gguf")
    open(p, "wb").write(bytes(blob))
    st, f, msg = open_file(p)
    if st != 0:
        if not msg:
            inconsistent.append(f"case {k}: error without a message")
        continue
    for i in range(f.contents.n_tensors):
        tt = f.contents.tensors[i]
        if tt.offset + tt.nbytes > len(blob):
            inconsistent.append(f"case {k}: tensor outside the file")
        if tt.numel <= 1 << 20:
            dequant(tt)
    lib.td_gguf_free(f)
    crashes_avoided += 1
t.check(not inconsistent, "2000 random corruptions: clean errors or consistent files, no crash",
        f"{crashes_avoided} opened; {inconsistent[:3]}")
t.finish()
