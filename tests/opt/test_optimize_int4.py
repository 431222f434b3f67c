"""`tdeploy optimize --precision int4|int8` on decoders exported from HF safetensors (issue 16): every MatMul with
a constant weight becomes com.microsoft MatMulNBits (4- or 8-bit blocks of 32, symmetric: llama.cpp's Q4_0 /
Q8_0 layouts, accuracy_level 4). Checked, per fixture decoder:
- the graph: MatMulNBits for each projection and the lm_head, no float copy of those weights left;
- ONNX Runtime runs the int4 graph, and tdeploy's runtime (`tdeploy infer`) matches it: both quantize the
  activations per block of 32 to int8, so they differ only where a float summation-order difference upstream
  moves an activation across a rounding boundary (1/127 of its block's largest value), <= 2% of the largest logit;
- the int4 logits follow the fp32 export's (ONNX Runtime on both): cosine >= 0.9. The fixtures are random tiny
  models, whose Gaussian weights lose ~10% (mean relative) to 4-bit blocks, so the logits move a lot; a wrong
  layout (transposed rows, swapped nibbles) gives unrelated logits, cosine near 0."""
import os
import subprocess
import sys

import numpy as np
import onnx
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "export"))
from decoder_common import ort_runner  # noqa: E402
from export_common import BIN, FIXTURES, TMP, Tally, run_export  # noqa: E402

t = Tally()
work = os.path.join(TMP, "optimize_int4")
os.makedirs(work, exist_ok=True)
ids = np.array([[5, 77, 300, 12, 901, 44, 7, 256, 3]], np.int64)
S = ids.shape[1]
for name, prec in (("llama-gen", "int4"), ("qwen2-lm", "int4"), ("mistral-lm", "int4"), ("gpt2-lm", "int4"),
                   ("llama-gen", "int8"), ("qwen2-lm", "int8")):
    bits = int(prec[3:])
    src = os.path.join(FIXTURES, "hf", name)
    f32 = os.path.join(work, f"{name}.onnx")
    q4 = os.path.join(work, f"{name}.{prec}.onnx")
    r = run_export(src, f32, "--task", "text-generation")
    if not t.check(r.returncode == 0, f"{name}: export", r.stderr[-300:]):
        continue
    r = subprocess.run([BIN, "optimize", f32, "-o", q4, "--precision", prec, "-q"], capture_output=True, text=True,
                       timeout=300)
    name = f"{name} {prec}"
    if not t.check(r.returncode == 0, f"{name}: optimize --precision {prec}", r.stderr[-300:]):
        continue
    m = onnx.load(q4)
    # (no onnx.checker: the fused graph holds SimplifiedLayerNormalization, an ONNX Runtime op in the default domain)
    ops = [n.op_type for n in m.graph.node]
    inits = {i.name: i for i in m.graph.initializer}
    nb = [n for n in m.graph.node if n.op_type == "MatMulNBits"]
    float_w = [n.input[1] for n in m.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits]
    attrs_ok = all({a.name: a.i for a in n.attribute}.get("bits") == bits and
                   {a.name: a.i for a in n.attribute}.get("block_size") == 32 for n in nb)
    t.check(len(nb) >= 4 and not float_w and attrs_ok, f"{name}: weights -> MatMulNBits ({bits} bits, blocks of 32), no "
            "float weight MatMul left", f"{len(nb)} MatMulNBits, float weight MatMuls {float_w[:3]}")
    step32, stepq = ort_runner(f32), ort_runner(q4)
    want, _ = step32(ids, np.ones_like(ids), np.arange(S)[None], None)
    got_ort, _ = stepq(ids, np.ones_like(ids), np.arange(S)[None], None)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(S, dtype=np.int64)[None]}
    for i in onnx.load(f32, load_external_data=False).graph.input:
        if i.name.startswith("past_key_values"):
            d = [x.dim_value for x in i.type.tensor_type.shape.dim]
            feeds[i.name] = np.zeros((1, d[1], 0, d[3]), np.float32)
    inp, out = os.path.join(work, "in.safetensors"), os.path.join(work, "out.safetensors")
    save_file(feeds, inp)
    rr = subprocess.run([BIN, "infer", q4, "--inputs", inp, "-o", out, "-q"], capture_output=True, text=True,
                        timeout=300)
    if not t.check(rr.returncode == 0, f"{name}: tdeploy infer runs the {prec} graph", rr.stderr[-300:]):
        continue
    got = load_file(out)["logits"]
    scale = float(np.abs(want).max())
    err = float(np.abs(got - got_ort).max())
    t.check(err <= 2e-2 * scale, f"{name}: tdeploy == ONNX Runtime on the {prec} graph", f"max abs {err:.2e}, "
            f"logits up to {scale:.2f}")
    a, b = got_ort.ravel().astype(np.float64), want.ravel().astype(np.float64)
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    t.check(cos >= 0.9, f"{name}: {prec} logits follow the fp32 export's (cosine >= 0.9)", f"cosine {cos:.4f}")
t.finish()
