"""The GGUF reader (src/gguf/, internal to the library) through the test driver tests/tools/gguf_driver.c.

1. A file written by llama.cpp's own gguf-py writer (metadata of every value type; tensors in F32, F16, BF16,
   Q8_0, Q4_0, Q4_1 quantized by gguf-py, Q4_K and Q6_K as random blocks): metadata read back, every tensor
   dequantized identically by the C reader, the numpy reference in gguf_reference.py and gguf-py.
2. A bad-file corpus (truncations, wrong magic/version/endianness, absurd counts and lengths, bad dims, unknown
   types, misaligned/outside/overlapping data, duplicate names, NUL in names, bad alignment, nested arrays,
   rows that are not whole blocks) and 2000 seeded random corruptions: each open fails with a message or
   succeeds with every tensor inside the file; never a crash. An unsupported type is refused at dequantize."""
import json
import os
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "export"))
import gguf_reference as ref  # noqa: E402
from export_common import TMP, Tally  # noqa: E402

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(TD_BIN)), "td_gguf_driver")
t = Tally()
work = os.path.join(TMP, "gguf")
os.makedirs(work, exist_ok=True)


def driver(*args):
    r = subprocess.run([DRIVER, *args], capture_output=True, encoding="utf-8", errors="replace", timeout=600)
    if r.returncode not in (0, 1):
        sys.exit(f"FAIL: gguf driver {args[0]} exited {r.returncode} (crash?): {r.stderr[-300:]}")
    return r.stdout.splitlines()


def open_files(paths):
    """One result per file: (True, n_tensors) or (False, message)."""
    out = []
    for line in driver("open", *paths):
        out.append((True, int(line.split()[1])) if line.startswith("ok ") else (False, line[len("error: "):]))
    if len(out) != len(paths):
        sys.exit(f"FAIL: gguf driver answered {len(out)} of {len(paths)} files (crash?)")
    return out


def get(path, key, kind):
    return driver("get", path, key, kind)[0]


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

ok, info = open_files([path])[0]
if t.check(ok, "gguf-py file opens", str(info)):
    vals = {k: get(path, k, kind) for k, kind in [("test.u32", "int"), ("test.i32", "int"), ("test.u64", "int"),
                                                  ("test.f32", "float"), ("test.f64", "float"),
                                                  ("general.architecture", "string"), ("test.str", "string"),
                                                  ("general.alignment", "int")]}
    t.check(vals["test.u32"] == "4000000000" and vals["test.i32"] == "-7" and vals["test.u64"] == str(1 << 40) and
            float(vals["test.f32"]) == 0.25 and float(vals["test.f64"]) == -1.5e-9 and
            vals["general.architecture"] == "llama" and vals["test.str"] == "héllo GGUF",
            "metadata values read back", str(vals))
    t.check("must be an integer" in get(path, "test.str", "int"), "a string read as an integer is refused")
    t.check(get(path, "no.such.key", "int").startswith("error:"), "a missing key is refused")
    dump = os.path.join(work, "dump")
    os.makedirs(dump, exist_ok=True)
    lines = {ln.split()[0]: ln.split() for ln in driver("dump", path, dump)}
    for name, (raw, pyref) in want.items():
        ln = lines.get("t." + name, [])
        if not t.check(ln[2:4] == ["512", "3"] and ln[-1] == "ok", f"{name}: tensor info", " ".join(ln)):
            continue
        got = np.fromfile(os.path.join(dump, f"t.{name}.f32"), np.float32)
        mine = ref.dequantize(raw, name)
        scale = max(float(np.abs(pyref).max()), 1e-30)
        e_py = float(np.abs(got - pyref).max()) / scale
        e_np = float(np.abs(got - mine).max()) / scale
        t.check(got.size == 1536 and e_py <= 1e-6 and e_np <= 1e-6, f"{name}: C == gguf-py == numpy reference",
                f"rel err vs gguf-py {e_py:.1e}, vs numpy {e_np:.1e}")

# tdeploy inspect on the same file
r = subprocess.run([TD_BIN, "inspect", path, "--json"], capture_output=True, text=True, timeout=60)
ok = r.returncode == 0
if ok:
    j = json.loads(r.stdout)
    ok = (j["kind"] == "gguf" and j["version"] == 3 and j["metadata"]["test.u32"] == 4000000000 and
          j["metadata"]["test.str"] == "héllo GGUF" and j["metadata"]["test.strs"] == {"array_of": "string",
                                                                                      "count": 3} and
          len(j["tensors"]) == 8 and j["tensor_types"].get("Q4_K") == 1 and
          all(tt["dims"] == [512, 3] for tt in j["tensors"]))
t.check(ok, "tdeploy inspect FILE.gguf --json: metadata and tensors", r.stderr[-200:])
r = subprocess.run([TD_BIN, "inspect", os.path.join(work, "nope.gguf")], capture_output=True, text=True, timeout=60)
t.check(r.returncode == 1 and "nope.gguf" in r.stderr, "tdeploy inspect on a missing .gguf: clean error",
        r.stderr[-200:])

# ---- 2. bad files ----
good_data = ref.random_blocks("Q8_0", 2, rng).tobytes()  # one (64,) Q8_0 tensor: 68 bytes
good_kvs = [ref.kv_str("general.architecture", "llama"), ref.kv_u32("general.alignment", 32)]
good_info = [ref.tensor_info("w", [64], ref.GGML["Q8_0"], 0)]
good = ref.build(good_kvs, good_info, good_data)


def expect_refused(label, blob, needle=""):
    p = os.path.join(work, "bad.gguf")
    open(p, "wb").write(blob)
    ok, msg = open_files([p])[0]
    t.check(not ok and msg and needle in msg, f"refused: {label}", str(msg)[:200])


p = os.path.join(work, "good.gguf")
open(p, "wb").write(good)
ok, msg = open_files([p])[0]
t.check(ok, "hand-built file opens", str(msg))
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
ok, msg = open_files([p])[0]
if t.check(ok, "a Q5_K tensor opens", str(msg)):
    ln = " ".join(driver("dump", p, work))
    t.check("error:" in ln and "Q5_K" in ln.split("error:")[1], "Q5_K is refused at dequantize, named", ln)

# seeded random corruptions of the gguf-py file: an error with a message, or a file whose tensors the driver
# reads end to end (a tensor outside the file would crash it or show under ASan)
base = open(path, "rb").read()
paths = []
for k in range(2000):
    blob = bytearray(base)
    for _ in range(int(rng.integers(1, 8))):
        pos = int(rng.integers(0, min(len(blob), 1200)))  # the header and tensor infos
        blob[pos] = int(rng.integers(0, 256))
    if k % 5 == 0:
        blob = blob[:int(rng.integers(0, len(blob)))]
    pk = os.path.join(work, f"fuzz{k % 200}.gguf")
    open(pk, "wb").write(bytes(blob))
    paths.append(pk)
    if len(paths) == 200:
        res = open_files(paths)
        bad = [m for okk, m in res if not okk and (not m or m == "(no message)")]
        t.check(not bad, f"random corruptions {k - 199}..{k}: clean errors or consistent files",
                f"{sum(o for o, _ in res)} opened; {bad[:2]}")
        paths = []
t.finish()
