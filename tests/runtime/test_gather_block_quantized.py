#!/usr/bin/env python3
"""com.microsoft GatherBlockQuantized of the CPU runtime (op_gather_bq.c, the token embedding of a GGUF decoder
whose table stays quantized) vs ONNX Runtime on the same graphs: bits 4 and 8, data of rank 2 and 3 (the
exporter's (vocab, blocks, block bytes) form), block sizes 16..64, zero points absent (2^(bits-1)) or uint8
(4 bits: two per byte along the last axis), int32 and int64 indices of rank 1 and 2 with negative entries. The
results are exact dequantized values, so they must agree to the float ulp. Then an index out of range must fail
with a message. Prints one line per case and "N passed, M failed"; exits non-zero on any failure."""
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

BIN = os.environ.get("TD_BIN", "tdeploy")
TMP = os.path.join(os.environ.get("TD_TMP", "/tmp"), "gather_bq")
os.makedirs(TMP, exist_ok=True)
passed = failed = 0
rng = np.random.default_rng(7)


def check(ok, what, detail=""):
    global passed, failed
    print(("PASS " if ok else "FAIL ") + what + (": " + detail if detail else ""))
    passed += bool(ok)
    failed += not ok


def model(data, scales, zp, bits, bs, idx_dtype, idx_shape):
    inits = [numpy_helper.from_array(data, "data"), numpy_helper.from_array(scales, "scales")]
    ins = ["data", "indices", "scales"]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, "zp"))
        ins.append("zp")
    node = helper.make_node("GatherBlockQuantized", ins, ["y"], domain="com.microsoft", bits=bits, block_size=bs,
                            gather_axis=0, quantize_axis=data.ndim - 1)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("indices", idx_dtype, idx_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def run_td(path, feeds, out):
    inp = os.path.join(TMP, "in.safetensors")
    save_file(feeds, inp)
    return subprocess.run([BIN, "infer", path, "--inputs", inp, "-o", out, "-q"], capture_output=True, text=True,
                          timeout=120)


case = 0
for bits in (4, 8):
    for rank3 in (False, True):
        for bs in (16, 32, 64):
            for with_zp in (False, True):
                case += 1
                rows, cols = 11, 128  # cols values per row
                per = 8 // bits
                if rank3:  # (rows, blocks, block bytes), quantized along the last axis in one block per line
                    data = rng.integers(0, 256, (rows, cols // bs, bs // per), dtype=np.uint8)
                    scales = rng.uniform(0.01, 0.1, (rows, cols // bs, 1)).astype(np.float32)
                else:
                    data = rng.integers(0, 256, (rows, cols // per), dtype=np.uint8)
                    scales = rng.uniform(0.01, 0.1, (rows, cols // bs)).astype(np.float32)
                zp = None
                if with_zp:
                    nsb = scales.shape[-1]
                    zshape = scales.shape[:-1] + (((nsb + 1) // 2) if bits == 4 else nsb,)
                    zp = rng.integers(0, 256, zshape, dtype=np.uint8)
                idx_t, np_t = (TensorProto.INT32, np.int32) if case % 2 else (TensorProto.INT64, np.int64)
                idx = rng.integers(-rows, rows, (2, 3)).astype(np_t) if case % 3 else \
                    rng.integers(-rows, rows, (5,)).astype(np_t)
                m = model(data, scales, zp, bits, bs, idx_t, list(idx.shape))
                path = os.path.join(TMP, f"case{case}.onnx")
                with open(path, "wb") as f:
                    f.write(m.SerializeToString())
                name = f"bits {bits} rank {3 if rank3 else 2} block {bs} zp {'u8' if with_zp else 'default'} " \
                       f"indices {idx.dtype} {idx.shape}"
                want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"indices": idx})[0]
                out = os.path.join(TMP, "out.safetensors")
                r = run_td(path, {"indices": idx}, out)
                if r.returncode != 0:
                    check(False, name, r.stderr[-300:])
                    continue
                got = load_file(out)["y"]
                check(got.shape == want.shape and np.array_equal(got, want), name,
                      f"shapes {got.shape} {want.shape}" if got.shape != want.shape else
                      f"max abs {float(np.abs(got - want).max()):.2e}")

# an index past the table: an error naming it, not a crash or garbage
data = rng.integers(0, 256, (4, 16), dtype=np.uint8)
scales = np.ones((4, 1), np.float32)
path = os.path.join(TMP, "bad.onnx")
with open(path, "wb") as f:
    f.write(model(data, scales, None, 8, 16, TensorProto.INT64, [1]).SerializeToString())
r = run_td(path, {"indices": np.array([4], np.int64)}, os.path.join(TMP, "bad.safetensors"))
check(r.returncode != 0 and "outside" in r.stderr, "index 4 of a 4-row table is refused with a message",
      r.stderr.strip()[-200:])
print(f"\n{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
