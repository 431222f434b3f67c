"""The optimizer on BERT graphs written by bench/make_bert_onnx.py in the PyTorch-export style with the attention
mask forms the fixtures do not have: (1 - Cast(attention_mask)) * -10000 (becomes Attention's 2-D mask_index with
mask_filter_value) and a bool mask through Where broadcast over query positions (becomes an expanded
attention_bias). Outputs of the optimized graph against the unoptimized one in ONNX Runtime, 1e-4; fp16 relative
error <= 1e-2."""
import os
import sys

import numpy as np

from opt_common import Results, optimize, require_env, run_ort, TMP

require_env()
sys.path.insert(0, os.path.join(os.environ.get("TD_SRC", "."), "bench"))
import make_bert_onnx  # noqa: E402
import onnx  # noqa: E402

R = Results("test_optimize_generated")
OUT = os.path.join(TMP, "opt_generated")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(1)
feeds = {"input_ids": rng.integers(0, 1000, (3, 7), dtype=np.int64),
         "token_type_ids": rng.integers(0, 2, (3, 7), dtype=np.int64),
         "attention_mask": np.array([[1] * 7, [1] * 5 + [0] * 2, [1] * 2 + [0] * 5], np.int64)}
for mask in ("sub-mul", "bool"):
    src = os.path.join(OUT, f"tiny-{mask}.onnx")
    onnx.save(make_bert_onnx.build("bert-tiny", mask=mask, vocab=1000, max_pos=64), src)
    ref = run_ort(src, feeds)["last_hidden_state"]
    for prec in ("fp32", "fp16"):
        case = f"bert-tiny mask={mask} {prec}"
        try:
            dst = os.path.join(OUT, f"tiny-{mask}.{prec}.onnx")
            f = optimize(src, dst, "--precision", prec)["fusions"]
            R.check(f"{case} fused", f["Attention"] == 2 and f["SkipLayerNormalization"] == 4 and f["BiasGelu"] == 2
                    and f["EmbedLayerNormalization"] == 1, str({k: v for k, v in f.items() if v}))
            out = run_ort(dst, feeds)["last_hidden_state"].astype(np.float32)
            if prec == "fp32":
                err = float(np.abs(out - ref).max())
                R.check(f"{case} outputs", err <= 1e-4, f"max abs {err:.2e}")
            else:
                rel = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
                R.check(f"{case} outputs", rel <= 1e-2 and np.isfinite(out).all(), f"rel {rel:.2e}")
        except Exception as e:
            R.check(case, False, str(e)[:300])
R.finish()
