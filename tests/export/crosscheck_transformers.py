#!/usr/bin/env python3
"""Developer cross-check (not run by ctest: needs torch + transformers, e.g. the venv
bench/export_bench.py creates): every random-config model that test_export_configs.py
exported under TD_TMP/export_configs is loaded with the transformers class named in its
config.architectures and run in float32 (eager attention) on a padded batch; ONNX Runtime
on tdeploy's export must match within 1e-4 on every output.

usage: VENV/bin/python tests/export/crosscheck_transformers.py BUILD/tmp/export_configs
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort
import torch
import transformers


def main(root):
    torch.set_num_threads(1)
    failures = 0
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        onnx_path = d + ".onnx"
        # error cases, the HF cache and sentence-transformers pipelines (not a transformers class) are skipped
        if not os.path.isdir(d) or name.startswith(("err", "st_")) or not os.path.exists(onnx_path):
            continue
        c = json.load(open(os.path.join(d, "config.json")))
        arch = c["architectures"][0]
        model = getattr(transformers, arch).from_pretrained(d, attn_implementation="eager").eval()
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        int32 = sess.get_inputs()[0].type == "tensor(int32)"
        rng = np.random.default_rng(3)
        batch, seq, pad = 3, 10, c.get("pad_token_id", 0)
        ids = rng.integers(3, c["vocab_size"], (batch, seq))
        mask = np.ones((batch, seq), np.int64)
        for row, n in ((1, 7), (2, 4)):
            ids[row, n:] = pad
            mask[row, n:] = 0
        tt = np.zeros((batch, seq), np.int64)
        if "token_type_ids" in names:
            tt[:, 5:] = 1
            tt[mask == 0] = 0
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}
        got = dict(zip([o.name for o in sess.get_outputs()],
                       sess.run(None, {k: feeds[k].astype(np.int32 if int32 else np.int64) for k in names})))
        with torch.no_grad():
            out = model(**{k: torch.tensor(feeds[k]) for k in names})
        worst = max(float(np.abs(v - getattr(out, k).float().numpy()).max()) for k, v in got.items())
        ok = worst <= 1e-4
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name} ({arch}) {sorted(got)}: max abs {worst:.2e}", flush=True)
    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
