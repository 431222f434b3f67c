#!/usr/bin/env python3
"""Decoder fusions of `tdeploy optimize` on every decoder fixture's export (issue 15):

- fused target: the exact number of each fusion per layer (GroupQueryAttention + 2 RotaryEmbedding +
  QuickGelu per Llama-family layer, MultiHeadAttention + FastGelu per GPT-2 layer, the Skip(Simplified)LayerNormalization
  residual norms) and no Softmax left, so a fusion that silently stops matching fails here;
- the fused graph run by ONNX Runtime and by tdeploy's runtime (libtdeploy's session API; the reference
  backend too for two fixtures), and `tdeploy generate` on it, against the transformers goldens: prefill logits within 1e-4, greedy tokens
  through the KV cache identical for the single prompts and the left-padded batch, step logits within 1e-4;
- portable target: only standard ops, onnx.checker full check, ONNX Runtime against the goldens;
- variants without goldens (partial rotary, Llama-3 rope scaling, Mistral without its window): fused
  equals unfused (greedy tokens and step logits of a left-padded batch, ONNX Runtime and tdeploy);
- the fused attention keeps the graph's own mask: an export whose mask is turned around (each query sees
  itself and later keys, not earlier ones) gives the same logits fused and unfused.
Prints PASS/FAIL lines and "N passed, M failed"; exits non-zero on any failure."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "export"))
sys.path.insert(0, os.path.join(HERE, "..", "gpu"))
from decoder_common import check_fixture, goldens, greedy, ort_runner, positions  # noqa: E402
from export_common import BIN, FIXTURES, TMP, Tally, run_export  # noqa: E402
import tdlib  # noqa: E402  (ctypes access to libtdeploy's session API)

DECODERS = ["gpt2-lm", "llama-lm", "gpt2-gen", "llama-gen", "qwen2-lm", "mistral-lm", "phi3-lm"]
REFERENCE_BACKEND = {"gpt2-gen", "mistral-lm"}
STANDARD_DOMAIN = {"LayerNormalization", "SimplifiedLayerNormalization"}  # ORT registers the latter there too
t = Tally()
work = os.path.join(TMP, "decoder_fusions")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
LIB_PATH = os.path.join(os.path.dirname(os.path.abspath(BIN)), "libtdeploy.so")


def sanitizer_runtime(path):
    """The shared ASan runtime a -DTD_SANITIZE=ON libtdeploy.so needs when an uninstrumented python loads it
    (clang links the runtime only into executables), or None for a plain build."""
    try:
        undefined = subprocess.run(["nm", "-D", "--undefined-only", path], capture_output=True, text=True).stdout
    except OSError:
        return None
    if "__asan_init" not in undefined:
        return None
    return subprocess.run(["clang", "-print-file-name=libclang_rt.asan-x86_64.so"], capture_output=True,
                          text=True).stdout.strip() or None


# the ASan CI job: run this script again with the sanitizer runtime preloaded (leak checks off: python's own
# allocations at exit are not ours to judge; any other report aborts and fails the test)
_rt = sanitizer_runtime(LIB_PATH)
if _rt and os.environ.get("LD_PRELOAD") != _rt:
    env = dict(os.environ, LD_PRELOAD=_rt, TD_OUTER_ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", ""),
               ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:verify_asan_link_order=0")
    print(f"NOTE libtdeploy.so is sanitizer-instrumented: rerunning with LD_PRELOAD={_rt}", flush=True)
    sys.exit(subprocess.run([sys.executable] + sys.argv, env=env).returncode)
if _rt:  # the tdeploy executables this script runs carry their own (static) runtime: no preload for them
    del os.environ["LD_PRELOAD"]
    os.environ["ASAN_OPTIONS"] = os.environ.pop("TD_OUTER_ASAN_OPTIONS", "")
lib = tdlib.Lib(LIB_PATH)


def td_runner(path, backend="cpu"):
    """The decoder_common runner protocol over a tdeploy session (1 thread)."""
    s = tdlib.Session(lib, path, backend=backend, threads=1)
    graph = onnx.load(path, load_external_data=False).graph
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    past_names = [n for n in s.inputs if n.startswith("past_key_values.")]

    def step(ids, mask, pos, past):
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64),
                "position_ids": pos.astype(np.int64)}
        if past is None:
            past = {n: np.zeros((ids.shape[0], dims[n][1], 0, dims[n][3]), np.float32) for n in past_names}
        feed.update(past)
        r = s.run(feed)
        return r["logits"], {k.replace("present", "past_key_values", 1): v for k, v in r.items()
                             if k.startswith("present")}

    return step


def greedy_run(step, prompts, new=20):
    """Left-padded greedy decoding through the cache: the new ids of each prompt and the last-position
    logits of every step (all rows)."""
    steps = []

    def recording(ids, mask, pos, past):
        logits, present = step(ids, mask, pos, past)
        steps.append(logits[:, -1].copy())
        return logits, present

    ids, _ = greedy(recording, prompts, new)
    return ids, steps


def generate_ids(model, fx, prompts, new):
    """`tdeploy generate` (the C generation loop) on an .onnx: the new ids of each prompt, or None."""
    flags = []
    for p in prompts:
        flags += ["--prompt-ids", ",".join(map(str, p))]
    r = subprocess.run([BIN, "generate", model, "--tokenizer", fx, "--threads", "1", *flags, "--max-new-tokens",
                        str(new), "--json"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return None, r.stderr.strip()[-300:]
    return [res["ids"] for res in json.loads(r.stdout)["results"]], ""


def check_generate(label, model, fx):
    g = goldens(fx)
    cases = [([gr["prompt_ids"]], [gr["output_ids"][len(gr["prompt_ids"]):]]) for gr in g["greedy"]]
    if "batch_greedy" in g:
        cases.append((g["batch_greedy"]["prompt_ids"], g["batch_greedy"]["output_ids"]))
    for prompts, want in cases:
        got, err = generate_ids(model, fx, prompts, len(want[0]))
        t.check(got == want, f"{label}: tdeploy generate, {len(prompts)} prompt(s) x {len(want[0])} tokens",
                err or ("" if got == want else f"got {got} want {want}"))


def optimize(src, out, *args):
    r = subprocess.run([BIN, "optimize", src, "-o", out, "--json", *args], capture_output=True, text=True, timeout=300)
    ok = t.check(r.returncode == 0, f"{os.path.basename(out)}: optimize {' '.join(args)}".rstrip(),
                 r.stderr.strip()[-300:])
    return json.loads(r.stdout) if ok else None


def op_counts(path):
    counts = {}
    for n in onnx.load(path, load_external_data=False).graph.node:
        key = (n.domain or "", n.op_type)
        counts[key] = counts.get(key, 0) + 1
    return counts


def expected_fusions(name, cfg):
    layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    if name.startswith("gpt2"):
        return {"MultiHeadAttention": layers, "SkipLayerNormalization": 2 * layers, "LayerNormalization": 1,
                "FastGelu": layers}
    return {"GroupQueryAttention": layers, "RotaryEmbedding": 2 * layers, "QuickGelu": layers,
            "SkipSimplifiedLayerNormalization": 2 * layers, "SimplifiedLayerNormalization": 1}


for name in DECODERS:
    fx = os.path.join(FIXTURES, "hf", name)
    cfg = json.load(open(os.path.join(fx, "config.json")))
    src = os.path.join(work, name + ".onnx")
    r = run_export(fx, src, "--task", "text-generation")
    if not t.check(r.returncode == 0, f"{name}: export", r.stderr.strip()[-300:]):
        continue
    # fused target
    fused = os.path.join(work, name + ".fused.onnx")
    rep = optimize(src, fused)
    if rep:
        got = {k: v for k, v in rep["fusions"].items() if v}
        want = expected_fusions(name, cfg)
        t.check(got == want, f"{name}: fusion counts", f"got {json.dumps(got)} want {json.dumps(want)}")
        ops = op_counts(fused)
        left = {op: c for (dom, op), c in ops.items() if op in ("Softmax", "Sigmoid", "Cos", "Sin", "Tanh")}
        t.check(not left, f"{name}: no attention/rotary/SiLU decomposition left", json.dumps(left))
        ms = {op: c for (dom, op), c in ops.items() if dom == "com.microsoft"}
        t.check(all(ms.get(op, 0) == c for op, c in want.items() if op not in STANDARD_DOMAIN),
                f"{name}: saved graph holds the fused com.microsoft ops", json.dumps(ms))
        check_fixture(t, f"{name} fused, ONNX Runtime", ort_runner(fused), fx)
        check_fixture(t, f"{name} fused, tdeploy cpu", td_runner(fused), fx)
        if name in REFERENCE_BACKEND:
            check_fixture(t, f"{name} fused, tdeploy reference", td_runner(fused, "reference"), fx)
        check_generate(f"{name} fused", fused, fx)
    # portable target: standard ops only, a valid ONNX file for onnx.checker
    portable = os.path.join(work, name + ".portable.onnx")
    if optimize(src, portable, "--target", "portable"):
        doms = {dom for (dom, op) in op_counts(portable) if dom not in ("", "ai.onnx")}
        t.check(not doms, f"{name}: portable target keeps standard ops", str(doms))
        try:
            onnx.checker.check_model(onnx.load(portable), full_check=True)
            t.check(True, f"{name}: portable passes onnx.checker full_check")
        except Exception as e:  # noqa: BLE001
            t.check(False, f"{name}: portable passes onnx.checker full_check", str(e)[:300])
        check_fixture(t, f"{name} portable, ONNX Runtime", ort_runner(portable), fx)

# The fused attention computes what the graph's mask says: turn an export's causal mask around (queries see
# themselves and later keys) and the fused graph must follow it, not assume causality.
for name in ["llama-gen", "gpt2-gen"]:
    src = os.path.join(work, name + ".onnx")
    if not os.path.exists(src):
        continue
    m = onnx.load(src)
    future = [n for n in m.graph.node if n.op_type == "Greater" and "mask/future" in n.output]
    if not t.check(len(future) == 1, f"{name}: export's mask has its Greater(key, query) causal node"):
        continue
    future[0].op_type = "Less"  # open = Not(key < query): each query sees itself and later keys, not earlier ones
    anti = os.path.join(work, name + ".anticausal.onnx")
    onnx.save(m, anti)
    fused = os.path.join(work, name + ".anticausal.fused.onnx")
    rep = optimize(anti, fused)
    if not rep:
        continue
    att = rep["fusions"].get("GroupQueryAttention", 0) + rep["fusions"].get("MultiHeadAttention", 0)
    t.check(att > 0, f"{name} anticausal: attention fused", json.dumps(rep["fusions"]))
    g = goldens(os.path.join(FIXTURES, "hf", name))
    ids, mask = g["ids"], g["mask"]
    want, _ = ort_runner(anti)(ids, mask, positions(mask), None)
    causal, _ = ort_runner(src)(ids, mask, positions(mask), None)
    t.check(float(np.abs(want - causal).max()) > 1e-2, f"{name} anticausal: differs from the causal model")
    for label, runner in [("ONNX Runtime", ort_runner(fused)), ("tdeploy", td_runner(fused))]:
        got, _ = runner(ids, mask, positions(mask), None)
        err = float(np.abs(got - want)[mask.astype(bool)].max())
        t.check(err <= 1e-4, f"{name} anticausal fused, {label}: same logits as unfused", f"max abs err {err:.2e}")

# Variants without goldens: the fused graph must compute what the unfused export computes (ONNX Runtime on
# the export is the oracle): partial rotary (Phi-3 partial_rotary_factor 0.5 -> rotary_embedding_dim),
# Llama-3 rope scaling (scaled inv_freq in the cos/sin caches), Mistral without its window.
def variant(name, tag, edit):
    d = os.path.join(work, f"{name}-{tag}")
    shutil.copytree(os.path.join(FIXTURES, "hf", name), d)
    p = os.path.join(d, "config.json")
    cfg = json.load(open(p))
    edit(cfg)
    json.dump(cfg, open(p, "w"), indent=2)
    return d, cfg


VARIANTS = [
    ("phi3-lm", "partial-rotary", lambda c: c["rope_parameters"].update(partial_rotary_factor=0.5)),
    ("llama-gen", "rope-llama3", lambda c: c["rope_parameters"].update(
        rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=64)),
    ("mistral-lm", "nowindow", lambda c: c.update(sliding_window=None)),
]
for name, tag, edit in VARIANTS:
    d, cfg = variant(name, tag, edit)
    label = f"{name} ({tag})"
    src = os.path.join(work, f"{name}-{tag}.onnx")
    r = run_export(d, src, "--task", "text-generation")
    if not t.check(r.returncode == 0, f"{label}: export", r.stderr.strip()[-300:]):
        continue
    fused = os.path.join(work, f"{name}-{tag}.fused.onnx")
    rep = optimize(src, fused)
    if not rep:
        continue
    got = {k: v for k, v in rep["fusions"].items() if v}
    want = expected_fusions(name, cfg)
    t.check(got == want, f"{label}: fusion counts", f"got {json.dumps(got)} want {json.dumps(want)}")
    g = goldens(os.path.join(FIXTURES, "hf", name))
    prompts = g["batch_greedy"]["prompt_ids"]
    want_ids, want_steps = greedy_run(ort_runner(src), prompts)
    for rl, runner in [("ONNX Runtime", ort_runner(fused)), ("tdeploy", td_runner(fused))]:
        got_ids, got_steps = greedy_run(runner, prompts)
        err = float(np.abs(np.stack(got_steps) - np.stack(want_steps)).max())
        t.check(got_ids == want_ids and err <= 1e-4, f"{label} fused, {rl}: left-padded batch greedy tokens and "
                "step logits as the unfused export", f"max step logit err {err:.2e}")

t.finish()
