"""tdeploy export --task text-generation on every decoder fixture, run by ONNX Runtime:
prefill logits within 1e-4 of transformers', greedy tokens identical through the KV cache (single
prompts and a left-padded batch), step logits within 1e-4; onnx.checker full check; int32 inputs
and opset 14; the Optimum exports through the same harness (it must pass the reference too); a
perturbed model must fail the harness; bad configs and tasks are refused with clear errors."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decoder_common import check_fixture, ort_runner  # noqa: E402
from export_common import BIN, FIXTURES, TMP, Tally, checked_session, metadata, run_export  # noqa: E402

DECODERS = ["gpt2-lm", "llama-lm", "gpt2-gen", "llama-gen", "qwen2-lm", "mistral-lm", "phi3-lm"]
OPTIMUM = ["gpt2-gen", "llama-gen", "qwen2-lm", "mistral-lm", "phi3-lm"]
t = Tally()
work = os.path.join(TMP, "export_decoders")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)


def export(name, out, *args, fixture=None):
    r = run_export(fixture or os.path.join(FIXTURES, "hf", name), out, *args)
    t.check(r.returncode == 0, f"{name}: export {' '.join(args)}".rstrip(), r.stderr.strip()[-300:])
    return r.returncode == 0


for name in DECODERS:
    fx = os.path.join(FIXTURES, "hf", name)
    out = os.path.join(work, name + ".onnx")
    if not export(name, out, "--task", "text-generation"):
        continue
    model, _ = checked_session(out)
    md = metadata(model)
    cfg = json.load(open(os.path.join(fx, "config.json")))
    t.check(md.get("task") == "text-generation" and md.get("model_type") == cfg["model_type"],
            f"{name}: metadata", json.dumps(md))
    names = [i.name for i in model.graph.input]
    layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    want = ["input_ids", "attention_mask", "position_ids"] + [
        f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    t.check(names == want, f"{name}: Optimum input names", str(names))
    check_fixture(t, f"{name} export", ort_runner(out), fx)

# task auto-detected from the architecture; int32 inputs; opset 14 (LayerNorm decomposed, ReduceMean axes attribute)
for name, args in [("llama-gen", []), ("gpt2-gen", ["--int32-inputs"]), ("qwen2-lm", ["--int32-inputs"]),
                   ("gpt2-gen", ["--opset", "14"]), ("mistral-lm", ["--opset", "21"])]:
    out = os.path.join(work, f"{name}{''.join(args)}.onnx")
    if export(name, out, *args):
        checked_session(out)
        check_fixture(t, f"{name} export {' '.join(args) or '(auto task)'}", ort_runner(out),
                      os.path.join(FIXTURES, "hf", name))

# tdeploy optimize (fused: SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization / SkipLayerNormalization)
# on our exports and Optimum's, run by ONNX Runtime against the goldens
for name in DECODERS:
    for src, kind in [(os.path.join(work, name + ".onnx"), "tdeploy"), (os.path.join(FIXTURES, "onnx", name +
                                                                                     ".optimum-past.onnx"), "optimum")]:
        if not os.path.exists(src):
            continue
        out = os.path.join(work, f"{name}.{kind}.opt.onnx")
        r = subprocess.run([BIN, "optimize", src, "-o", out, "--json"], capture_output=True, text=True, timeout=300)
        if not t.check(r.returncode == 0, f"{name} ({kind} export): optimize", r.stderr.strip()[-300:]):
            continue
        fused = {k: v for k, v in json.loads(r.stdout)["fusions"].items() if v}
        norms = "SkipLayerNormalization" if name.startswith("gpt2") else "SimplifiedLayerNormalization"
        t.check(fused.get(norms, 0) + fused.get("Skip" + norms.replace("Skip", ""), 0) > 0,
                f"{name} ({kind} export): norms fused", json.dumps(fused))
        # (no onnx.checker here: it does not know ORT's SimplifiedLayerNormalization; ORT loads and runs it)
        check_fixture(t, f"{name} {kind} export, optimized", ort_runner(out), os.path.join(FIXTURES, "hf", name))

# the harness itself against the reference exports Optimum wrote
for name in OPTIMUM:
    check_fixture(t, f"{name} optimum", ort_runner(os.path.join(FIXTURES, "onnx", name + ".optimum-past.onnx")),
                  os.path.join(FIXTURES, "hf", name))


def fixture_copy(name, tag, edit_config=None, edit_weights=None):
    d = os.path.join(work, f"{name}-{tag}")
    shutil.copytree(os.path.join(FIXTURES, "hf", name), d)
    if edit_config:
        p = os.path.join(d, "config.json")
        cfg = json.load(open(p))
        edit_config(cfg)
        json.dump(cfg, open(p, "w"), indent=2)
    if edit_weights:
        p = os.path.join(d, "model.safetensors")
        w = load_file(p)
        edit_weights(w)
        save_file(w, p, metadata={"format": "pt"})
    return d


# negative control: a model that differs from the goldens (sliding window removed from mistral, whose
# 24-token generation runs past its 16-token window) must fail the harness
d = fixture_copy("mistral-lm", "nowindow", edit_config=lambda c: c.update(sliding_window=None))
out = os.path.join(work, "mistral-nowindow.onnx")
if export("mistral-lm (no window)", out, fixture=d):
    inner = Tally()
    saved = sys.stdout
    sys.stdout = open(os.devnull, "w")
    try:
        check_fixture(inner, "control", ort_runner(out), os.path.join(FIXTURES, "hf", "mistral-lm"))
    finally:
        sys.stdout.close()
        sys.stdout = saved
    t.check(len(inner.failed) > 0, "negative control: mistral without its sliding window fails the goldens",
            f"{len(inner.failed)} checks failed: {inner.failed}")


# rope scaling: the exporter's inv_freq constant against transformers' formulas (modeling_rope_utils), in numpy
def rope_inv_freq(theta, dim, kind, p):
    inv = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    if kind == "linear":
        return inv / p["factor"]
    if kind == "llama3":
        factor, lo, hi, old = p["factor"], p["low_freq_factor"], p["high_freq_factor"], \
            p["original_max_position_embeddings"]
        wavelen = 2 * np.pi / inv
        scaled = np.where(wavelen > old / lo, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        return np.where(medium, smoothed, scaled)
    return inv


import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

for kind, params in [("linear", {"factor": 4.0}),
                     ("llama3", {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 64})]:
    d = fixture_copy("llama-gen", "rope-" + kind, edit_config=lambda c: c["rope_parameters"].update(
        rope_type=kind, rope_theta=500000.0, **params))
    out = os.path.join(work, f"rope-{kind}.onnx")
    if export(f"llama-gen (rope {kind})", out, fixture=d):
        m = onnx.load(out)
        got = [numpy_helper.to_array(i) for i in m.graph.initializer if i.name.endswith("inv_freq")]
        want = rope_inv_freq(500000.0, 16, kind, params)
        err = float(np.abs(got[0] - want).max() / np.abs(want).max()) if got else 1.0
        t.check(err <= 1e-6, f"rope {kind}: inv_freq == transformers' formula", f"rel err {err:.1e}")
        # and the graph runs the scaled rope: position 0 logits unchanged, later positions differ from default
        ids = np.array([[5, 9, 200, 31, 7, 600, 42, 17]], np.int64)
        ones = np.ones_like(ids)
        pos = np.arange(8)[None]
        a, _ = ort_runner(out)(ids, ones, pos, None)
        b, _ = ort_runner(os.path.join(work, "llama-gen.onnx"))(ids, ones, pos, None)
        t.check(np.abs(a[0, 0] - b[0, 0]).max() < 1e-5 and np.abs(a[0, -1] - b[0, -1]).max() > 1e-3,
                f"rope {kind}: position 0 as without scaling, later positions changed")


def refused(label, model_dir, args, needle):
    out = os.path.join(work, "refused.onnx")
    r = subprocess.run([BIN, "export", "-m", model_dir, "-o", out, "-q", *args], capture_output=True, text=True,
                       timeout=120)
    ok = r.returncode not in (0,) and r.returncode < 128 and needle in r.stderr and not os.path.exists(out)
    t.check(ok, f"refused: {label}", f"rc {r.returncode}: {r.stderr.strip()[-240:]}")


refused("decoder with --dtype fp16", os.path.join(FIXTURES, "hf", "llama-gen"), ["--dtype", "fp16"], "fp32 only")
refused("decoder with --task classification", os.path.join(FIXTURES, "hf", "gpt2-gen"),
        ["--task", "classification"], "possible tasks are text-generation")
refused("encoder with --task text-generation", os.path.join(FIXTURES, "hf", "bert-base"),
        ["--task", "text-generation"], "possible tasks are")
refused("rope_type yarn", fixture_copy("llama-gen", "yarn", edit_config=lambda c: c["rope_parameters"].update(
    rope_type="yarn", factor=4.0)), [], 'rope_type "yarn" is not supported')
refused("mixed layer_types", fixture_copy("qwen2-lm", "mixed", edit_config=lambda c: c.update(
    layer_types=["full_attention", "sliding_attention"])), [], "mixes full and sliding-window layers")
refused("untied head without lm_head.weight", fixture_copy("llama-gen", "nohead", edit_weights=lambda w: w.pop(
    "lm_head.weight")), [], "lm_head.weight")
refused("q_proj of the wrong shape", fixture_copy("llama-gen", "badq", edit_weights=lambda w: w.update({
    "model.layers.1.self_attn.q_proj.weight": np.zeros((8, 64), np.float32)})), [], "q_proj.weight")
refused("unknown model_type", fixture_copy("llama-gen", "unknown", edit_config=lambda c: c.update(
    model_type="falcon")), [], "falcon")

conv_out = os.path.join(work, "convert-out")
r = subprocess.run([BIN, "convert", "-m", os.path.join(FIXTURES, "hf", "gpt2-gen"), "-o", conv_out, "-q",
                    "--no-bench"], capture_output=True, text=True, timeout=300)
# convert handles decoders since issue 15's last item (tests/convert/test_convert_decoder.py checks it in depth)
t.check(r.returncode == 0 and os.path.isfile(os.path.join(conv_out, "model.onnx")) and
        os.path.isfile(os.path.join(conv_out, "model-optimized.onnx")),
        "convert on a decoder: exported, optimized and validated", r.stderr.strip()[-200:])

t.finish()
