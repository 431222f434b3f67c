"""Shared helpers of the optimizer tests: running `tdeploy optimize`, golden inputs/outputs, ONNX Runtime."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

FIX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
TMP = os.environ.get("TD_TMP", "/tmp")
BIN = os.environ.get("TD_BIN", "")
ENCODERS = ("bert", "distilbert", "electra", "roberta", "xlmr", "minilm")
FUSED_OPS = ["Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization",
             "EmbedLayerNormalization", "BiasGelu", "Gelu", "FastGelu", "SkipSimplifiedLayerNormalization",
             "SimplifiedLayerNormalization", "RotaryEmbedding", "GroupQueryAttention"]


def require_env():
    missing = [k for k in ("TD_FIXTURES", "TD_BIN") if not os.environ.get(k)]
    if missing:
        print("missing environment:", ", ".join(missing))
        sys.exit(1)


def onnx_fixtures():
    # *.optimum-past.onnx (KV-cache decoders) need past_key_values feeds that these
    # encoder-oriented optimizer checks do not build; the decoder tests cover them.
    files = sorted(f for f in glob.glob(os.path.join(FIX, "onnx", "*.onnx")) if not f.endswith(".optimum-past.onnx"))
    if not files:
        print(f"no ONNX fixtures under {FIX}/onnx")
        sys.exit(1)
    return files


def fixture_name(path):
    return os.path.basename(path).split(".")[0]


def is_encoder(path):
    return fixture_name(path).split("-")[0] in ENCODERS


def config(path):
    with open(os.path.join(FIX, "hf", fixture_name(path), "config.json")) as f:
        return json.load(f)


def n_layers(cfg):
    return cfg.get("num_hidden_layers", cfg.get("n_layers", cfg.get("n_layer")))


def heads_hidden(cfg):
    heads = cfg.get("num_attention_heads", cfg.get("n_heads", cfg.get("n_head", 0)))
    hidden = cfg.get("hidden_size", cfg.get("dim", cfg.get("n_embd", 0)))
    return heads, hidden


def golden(path):
    g = load_file(os.path.join(FIX, "hf", fixture_name(path), "golden.safetensors"))
    feeds = {k[len("input."):]: v for k, v in g.items() if k.startswith("input.")}
    outs = {k[len("output."):]: v for k, v in g.items() if k.startswith("output.")}
    return feeds, outs


def optimize(src, dst, *args):
    """Run tdeploy optimize with --json; returns the parsed report (raises on failure)."""
    cmd = [BIN, "optimize", src, "-o", dst, "--json", *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[:500]}")
    return json.loads(p.stdout)


def op_counts(model_or_path):
    m = onnx.load(model_or_path) if isinstance(model_or_path, str) else model_or_path
    c = {}
    for n in m.graph.node:
        c[n.op_type] = c.get(n.op_type, 0) + 1
    return c


def run_ort(model_path, feeds):
    so = ort.SessionOptions()
    # run the graph exactly as written: ONNX Runtime's own fusions would hide ours
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    s = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    res = s.run(None, {k: feeds[k] for k in names})
    return {o.name: r for o, r in zip(s.get_outputs(), res)}


class Results:
    def __init__(self, title):
        self.title, self.failed, self.passed = title, [], 0

    def check(self, case, ok, detail=""):
        print(f"{'PASS' if ok else 'FAIL'} {case} {detail}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(case)

    def finish(self):
        print(f"{self.title}: {self.passed} passed, {len(self.failed)} failed")
        for f in self.failed:
            print("  failed:", f)
        sys.exit(1 if self.failed else 0)
