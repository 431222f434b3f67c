"""tdeploy optimize on every PyTorch-exported fixture and every `tdeploy export` of the HF fixtures: fusion counts, outputs against the HF golden outputs in
ONNX Runtime (fp32 within 1e-4; fp16 relative error <= 1e-2 and identical argmax on classification heads; bf16
through an fp32 emulation of its roundings, see bf16_emulation), portable output through onnx.checker full_check
with the standard domain only. The fused fp32 graphs also run in tdeploy's CPU runtime (`tdeploy infer`, 1e-4);
so do the fp16 and bf16 graphs (native bf16 compute there); an op that runtime refuses is printed as GAP with its
name instead of failing."""
import glob
import json
import os
import subprocess

import numpy as np
import onnx
from onnx import numpy_helper, TensorProto

from safetensors.numpy import load_file

from opt_common import (BIN, FIX, Results, config, fixture_name, golden, is_encoder, n_layers, onnx_fixtures,
                        optimize, op_counts, require_env, run_ort, TMP)

require_env()
R = Results("test_optimize")
OUT = os.path.join(TMP, "opt_test")
os.makedirs(OUT, exist_ok=True)
CLASSIFIER_OUTPUTS = ("logits", "start_logits", "end_logits")


def compare_fp32(case, outs, ref):
    worst = 0.0
    for k, v in outs.items():
        if k not in ref:
            R.check(f"{case} output {k}", False, "no golden output of that name")
            return
        worst = max(worst, float(np.abs(v.astype(np.float32) - ref[k]).max()))
    R.check(f"{case} fp32 vs golden", worst <= 1e-4, f"max abs err {worst:.2e}")


def compare_low(case, outs, ref, tol):
    for k, v in outs.items():
        v = v.astype(np.float32)
        finite = bool(np.isfinite(v).all())
        rel = float(np.linalg.norm(v - ref[k]) / max(np.linalg.norm(ref[k]), 1e-30))
        R.check(f"{case} {k} rel err", finite and rel <= tol, f"rel {rel:.2e} finite {finite}")
        if k in CLASSIFIER_OUTPUTS:
            same = bool((v.argmax(-1) == ref[k].argmax(-1)).all())
            R.check(f"{case} {k} argmax", same)


def bf16_emulation(src, dst):
    """ONNX Runtime's CPU provider has no bfloat16 kernels for most ops, so the bf16 graph is run as an fp32 graph
    with the same roundings: bf16 initializers become their exact fp32 values, every Cast to bf16 is followed by a
    Cast back to fp32 (so values are rounded exactly where tdeploy rounds them), bf16 types become fp32."""
    m = onnx.load(src)
    g = m.graph
    for i, t in enumerate(g.initializer):
        if t.data_type == TensorProto.BFLOAT16:
            raw = np.frombuffer(t.raw_data, dtype=np.uint16) if t.raw_data else np.array(t.int32_data, np.uint16)
            f = (raw.astype(np.uint32) << 16).view(np.float32).reshape(tuple(t.dims))
            g.initializer[i].CopyFrom(numpy_helper.from_array(f, t.name))
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        if vi.type.tensor_type.elem_type == TensorProto.BFLOAT16:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    nodes = []
    for n in g.node:
        to = [a for a in n.attribute if a.name == "to"]
        if n.op_type == "Cast" and to and to[0].i == TensorProto.BFLOAT16:
            mid = n.output[0] + "__bf16"
            nodes.append(onnx.helper.make_node("Cast", [n.input[0]], [mid], to=TensorProto.BFLOAT16))
            nodes.append(onnx.helper.make_node("Cast", [mid], [n.output[0]], to=TensorProto.FLOAT))
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(m, dst)


def exports():
    """Every HF fixture the exporter supports, exported by `tdeploy export` (named <fixture>.export.onnx)."""
    out = []
    for d in sorted(glob.glob(os.path.join(FIX, "hf", "*"))):
        dst = os.path.join(OUT, os.path.basename(d) + ".export.onnx")
        p = subprocess.run([BIN, "export", "-m", d, "-o", dst, "-q", "--json"], capture_output=True, text=True)
        if p.returncode == 0 and json.loads(p.stdout)["task"] == "text-generation":
            # decoders take past_key_values feeds these encoder checks do not make; tests/export/
            # test_export_decoders.py optimizes them and runs them against their goldens
            print(f"  {os.path.basename(d)}: decoder, checked by test_export_decoders")
        elif p.returncode == 0:
            out.append(dst)
        elif "is not supported" in p.stderr:  # an architecture the exporter (or config reader) does not handle yet
            print(f"  {os.path.basename(d)}: not exported ({p.stderr.strip()[-120:]})")
        else:
            R.check(f"export {os.path.basename(d)}", False, p.stderr.strip()[:300])
    return out


def run_tdeploy_runtime(case, model, ref, low=False):
    """The optimized graph in tdeploy's own CPU runtime (`tdeploy infer`): fp32 within 1e-4 of the golden outputs,
    fp16/bf16 (low) by relative error and argmax as in ONNX Runtime."""
    gold = os.path.join(FIX, "hf", fixture_name(model), "golden.safetensors")
    res = model + ".infer.safetensors"
    p = subprocess.run([BIN, "infer", model, "--inputs", gold, "-o", res, "-q"], capture_output=True, text=True)
    R.check(f"{case} tdeploy infer runs", p.returncode == 0, p.stderr.strip()[:300])
    if p.returncode == 0 and low:
        compare_low(f"{case} tdeploy infer", load_file(res), ref, 1e-2)
    elif p.returncode == 0:
        outs = load_file(res)
        worst = max(float(np.abs(outs[k] - ref[k]).max()) for k in outs)
        R.check(f"{case} tdeploy infer vs golden", worst <= 1e-4 and set(outs) <= set(ref), f"max abs err {worst:.2e}")


for path in onnx_fixtures() + exports():
    base = os.path.basename(path).replace(".onnx", "")
    feeds, ref = golden(path)
    cfg = config(path)
    # fused fp32
    case = f"{base} fused"
    dst = os.path.join(OUT, base + ".fused.onnx")
    try:
        rep = optimize(path, dst)
        f = rep["fusions"]
        print(f"  {base}: nodes {rep['nodes_before']} -> {rep['nodes_after']}, fusions "
              + ", ".join(f"{k} {v}" for k, v in f.items() if v))
        if is_encoder(path):
            n = n_layers(cfg)
            gelus = f["BiasGelu"] + f["Gelu"] + f["FastGelu"]
            R.check(f"{case} {n} Attention", f["Attention"] == n, f"got {f['Attention']}")
            R.check(f"{case} {n} FFN GELU", gelus == n, f"got {gelus}")
            R.check(f"{case} {2 * n} SkipLayerNormalization", f["SkipLayerNormalization"] == 2 * n,
                    f"got {f['SkipLayerNormalization']}")
            R.check(f"{case} embedding LayerNorm fused", f["EmbedLayerNormalization"] + f["LayerNormalization"] == 1)
        counts = op_counts(dst)
        R.check(f"{case} report matches file", all(counts.get(k, 0) == v for k, v in f.items()))
        compare_fp32(case, run_ort(dst, feeds), ref)
        run_tdeploy_runtime(case, dst, ref)
    except Exception as e:  # a crash of one case must not hide the others
        R.check(case, False, str(e)[:300])
    # portable fp32
    case = f"{base} portable"
    dst = os.path.join(OUT, base + ".portable.onnx")
    try:
        optimize(path, dst, "--target", "portable")
        m = onnx.load(dst)
        domains = {n.domain for n in m.graph.node} | {o.domain for o in m.opset_import}
        R.check(f"{case} standard domain only", domains <= {"", "ai.onnx"}, str(domains))
        onnx.checker.check_model(m, full_check=True)
        R.check(f"{case} onnx.checker full_check", True)
        compare_fp32(case, run_ort(dst, feeds), ref)
    except Exception as e:
        R.check(case, False, str(e)[:300])
    # fp16 (fused), io kept fp32
    case = f"{base} fp16"
    dst = os.path.join(OUT, base + ".fp16.onnx")
    try:
        optimize(path, dst, "--precision", "fp16")
        m = onnx.load(dst)
        n16 = sum(1 for t in m.graph.initializer if t.data_type == TensorProto.FLOAT16)
        R.check(f"{case} weights converted", n16 > 0, f"{n16} fp16 initializers")
        io32 = all(v.type.tensor_type.elem_type != TensorProto.FLOAT16 for v in list(m.graph.input) + list(m.graph.output))
        R.check(f"{case} io stays fp32", io32)
        compare_low(case, run_ort(dst, feeds), ref, 1e-2)
        run_tdeploy_runtime(case, dst, ref, low=True)
    except Exception as e:
        R.check(case, False, str(e)[:300])
    # fp16 with the portable target, and with float inputs/outputs converted too (a few fixtures)
    if base in ("bert-base.torchscript", "gpt2-lm.torchscript-sdpa", "llama-lm.torchscript"):
        for extra, tag in ((["--target", "portable"], "portable fp16"), (["--no-keep-io-types"], "fp16 io")):
            case = f"{base} {tag}"
            dst = os.path.join(OUT, base + "." + tag.replace(" ", "-") + ".onnx")
            try:
                optimize(path, dst, "--precision", "fp16", *extra)
                m = onnx.load(dst)
                if tag == "fp16 io":
                    R.check(f"{case} float outputs are fp16",
                            all(v.type.tensor_type.elem_type == TensorProto.FLOAT16 for v in m.graph.output))
                else:
                    R.check(f"{case} standard domain only", all(n.domain in ("", "ai.onnx") for n in m.graph.node))
                compare_low(case, run_ort(dst, feeds), ref, 1e-2)
            except Exception as e:
                R.check(case, False, str(e)[:300])
    # bf16 (fused), through the fp32 emulation of its roundings
    case = f"{base} bf16"
    dst = os.path.join(OUT, base + ".bf16.onnx")
    emu = os.path.join(OUT, base + ".bf16-emulated.onnx")
    try:
        optimize(path, dst, "--precision", "bf16")
        m = onnx.load(dst)
        nb = sum(1 for t in m.graph.initializer if t.data_type == TensorProto.BFLOAT16)
        R.check(f"{case} weights converted", nb > 0, f"{nb} bf16 initializers")
        bf16_emulation(dst, emu)
        compare_low(case, run_ort(emu, feeds), ref, 1e-2)
        run_tdeploy_runtime(case, dst, ref, low=True)  # native bf16 compute
    except Exception as e:
        R.check(case, False, str(e)[:300])

R.finish()
