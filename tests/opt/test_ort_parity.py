"""Fusion counts of tdeploy optimize against onnxruntime.transformers.optimizer.optimize_model (model_type bert for
encoders, gpt2 for decoders; num_heads/hidden_size from the fixture config) on the same files: every PyTorch export
in $TD_FIXTURES/onnx and every `tdeploy export` of the HF fixtures. For every fusion type ONNX Runtime produces,
tdeploy's count must be equal or higher on every encoder graph, except within the LayerNorm family, where ONNX
Runtime turns the embedding LayerNorm into EmbedLayerNormalization, SkipLayerNormalization or nothing depending on
the export: there tdeploy must fuse at least as many LayerNorms with their input Adds (SkipLayerNormalization +
EmbedLayerNormalization) and keep at least as many fused LayerNorm nodes in total (+ LayerNormalization); the
per-type counts are printed side by side. Why a family and not three types: each LayerNorm of the graph becomes
exactly one of the three nodes, and ONNX Runtime's choice for the embedding LayerNorm differs by exporter
(EmbedLayerNormalization on torchscript BERT exports, a plain LayerNormalization on the SDPA exports, a
SkipLayerNormalization on tdeploy's exports), so no single policy can be >= per type on all of them; tdeploy always
takes the largest fusion (EmbedLayerNormalization: gathers + sums + LayerNorm in one node). Decoders (gpt2-lm, llama-lm): their fusions are a bonus; a lower count is
printed as INFO, not a failure."""
import collections
import glob
import json
import os
import subprocess
import warnings

from opt_common import (BIN, FIX, FUSED_OPS, Results, config, heads_hidden, is_encoder, onnx_fixtures, optimize, op_counts,
                        require_env, TMP)

warnings.filterwarnings("ignore")
require_env()
from onnxruntime.transformers.optimizer import optimize_model  # noqa: E402  (slow import, after the env check)

R = Results("test_ort_parity")
OUT = os.path.join(TMP, "opt_parity")
os.makedirs(OUT, exist_ok=True)

def exports():
    out = []
    for d in sorted(glob.glob(os.path.join(FIX, "hf", "*"))):
        dst = os.path.join(OUT, os.path.basename(d) + ".export.onnx")
        p = subprocess.run([BIN, "export", "-m", d, "-o", dst, "-q", "--json"], capture_output=True, text=True)
        if p.returncode == 0 and json.loads(p.stdout)["task"] == "text-generation":
            continue  # decoders (KV cache): tests/export/test_export_decoders.py compares them with ORT
        if p.returncode == 0:
            out.append(dst)
        elif "is not supported" not in p.stderr:  # architectures not handled yet are skipped, other errors fail
            R.check(f"export {os.path.basename(d)}", False, p.stderr.strip()[:300])
    return out


LN_FAMILY = ("SkipLayerNormalization", "EmbedLayerNormalization", "LayerNormalization")
for path in onnx_fixtures() + exports():
    base = os.path.basename(path)
    heads, hidden = heads_hidden(config(path))
    mt = "bert" if is_encoder(path) else "gpt2"
    try:
        om = optimize_model(path, model_type=mt, num_heads=heads, hidden_size=hidden, opt_level=0)
        ort_c = collections.Counter(n.op_type for n in om.model.graph.node)
        dst = os.path.join(OUT, base.replace(".onnx", ".tdeploy-opt.onnx"))  # never overwrite the input
        optimize(path, dst)
        td_c = op_counts(dst)
    except Exception as e:
        R.check(base, False, str(e)[:300])
        continue
    td_c = dict(td_c)
    row = "  ".join(f"{k} {td_c.get(k, 0)}/{ort_c.get(k, 0)}" for k in FUSED_OPS if td_c.get(k, 0) or ort_c.get(k, 0))
    print(f"  {base} (tdeploy/onnxruntime): {row}")
    def fam(c, kinds):
        return sum(c.get(k, 0) for k in kinds)

    checks = [(k, td_c.get(k, 0), ort_c.get(k, 0)) for k in FUSED_OPS if k not in LN_FAMILY and ort_c.get(k, 0)]
    checks.append(("LayerNorms fused with their input Adds (Skip+Embed)", fam(td_c, LN_FAMILY[:2]),
                   fam(ort_c, LN_FAMILY[:2])))
    checks.append(("fused LayerNorm nodes (Skip+Embed+LayerNormalization)", fam(td_c, LN_FAMILY), fam(ort_c, LN_FAMILY)))
    for k, td_n, ort_n in checks:
        ok = td_n >= ort_n
        if is_encoder(path):
            R.check(f"{base} {k}", ok, f"tdeploy {td_n} onnxruntime {ort_n}")
        elif not ok:
            print(f"INFO {base} {k}: tdeploy {td_n} < onnxruntime {ort_n} (decoder fusion: bonus)")

R.finish()
