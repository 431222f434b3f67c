"""Fusion counts of tdeploy optimize against onnxruntime.transformers.optimizer.optimize_model (model_type bert for
encoders, gpt2 for decoders; num_heads/hidden_size from the fixture config) on the same files. For every fusion type
ONNX Runtime produces, tdeploy's count must be equal or higher on every encoder fixture. An EmbedLayerNormalization
contains the embedding LayerNorm, so LayerNormalization is compared as LayerNormalization + EmbedLayerNormalization
(ONNX Runtime fuses that LayerNorm into EmbedLayerNormalization on some exports and not on others). Decoders
(gpt2-lm, llama-lm): their fusions are a bonus; their counts are printed side by side, and a lower count is reported
as INFO, not a failure."""
import collections
import os
import warnings

from opt_common import (FUSED_OPS, Results, config, heads_hidden, is_encoder, onnx_fixtures, optimize, op_counts,
                        require_env, TMP)

warnings.filterwarnings("ignore")
require_env()
from onnxruntime.transformers.optimizer import optimize_model  # noqa: E402  (slow import, after the env check)

R = Results("test_ort_parity")
OUT = os.path.join(TMP, "opt_parity")
os.makedirs(OUT, exist_ok=True)

for path in onnx_fixtures():
    base = os.path.basename(path)
    heads, hidden = heads_hidden(config(path))
    mt = "bert" if is_encoder(path) else "gpt2"
    try:
        om = optimize_model(path, model_type=mt, num_heads=heads, hidden_size=hidden, opt_level=0)
        ort_c = collections.Counter(n.op_type for n in om.model.graph.node)
        dst = os.path.join(OUT, base)
        optimize(path, dst)
        td_c = op_counts(dst)
    except Exception as e:
        R.check(base, False, str(e)[:300])
        continue
    td_c = dict(td_c)
    td_c["LayerNormalization"] = td_c.get("LayerNormalization", 0) + td_c.get("EmbedLayerNormalization", 0)
    row = "  ".join(f"{k} {td_c.get(k, 0)}/{ort_c.get(k, 0)}" for k in FUSED_OPS if td_c.get(k, 0) or ort_c.get(k, 0))
    print(f"  {base} (tdeploy/onnxruntime): {row}")
    for k in FUSED_OPS:
        if ort_c.get(k, 0) == 0:
            continue
        ok = td_c.get(k, 0) >= ort_c[k]
        if is_encoder(path):
            R.check(f"{base} {k}", ok, f"tdeploy {td_c.get(k, 0)} onnxruntime {ort_c[k]}")
        elif not ok:
            print(f"INFO {base} {k}: tdeploy {td_c.get(k, 0)} < onnxruntime {ort_c[k]} (decoder fusion: bonus)")

R.finish()
