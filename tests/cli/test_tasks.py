#!/usr/bin/env python3
"""Task names and generation models, in every command that takes --task:
the names users bring from transformers pipelines, Optimum and
transformer-deploy are accepted as aliases and give the same result as the
canonical name; a text-generation model is never answered as if it were an
encoder: decoders generate (run hands them to the generation loop, export takes
--task text-generation and its aliases), and a generation graph without a KV
cache or a command that cannot handle decoders yet (convert) is refused with
"not supported (yet)" and a non-zero exit."""
import json
import os
import shutil
import subprocess
import sys

TD_BIN = os.environ["TD_BIN"]
FX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
WORK = os.path.join(os.environ.get("TD_TMP", "/tmp"), "cli_tasks")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
HF, ONNX = os.path.join(FX, "hf"), os.path.join(FX, "onnx")
passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {what}{'' if ok else ' ' + detail}")


def run(args):
    p = subprocess.run([TD_BIN] + args, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def run_json(args):
    rc, out, err = run(args + ["--json"])
    return rc, [json.loads(l) for l in out.splitlines() if l.strip()] if rc == 0 else [], err


ALIASES = {
    "token-classification": ["ner", "token-classification"],
    "classification": ["text-classification", "sentiment-analysis", "sequence-classification"],
    "embedding": ["sentence-similarity", "embeddings", "sentence-embeddings"],
    "feature-extraction": ["default", "features"],
    "question-answering": ["qa"],
}
MODEL = {"token-classification": "bert-tokcls", "classification": "bert-seqcls", "embedding": "minilm-st",
         "feature-extraction": "bert-base", "question-answering": "bert-qa"}
for canon, names in ALIASES.items():
    d = os.path.join(HF, MODEL[canon])
    extra = ["--text-pair", "it is a tiny test model."] if canon == "question-answering" else []
    rc, ref, err = run_json(["run", d, "--task", canon, "--text", "what is John doing in Paris?"] + extra)
    check(rc == 0 and ref and ref[0]["task"] == canon, f"run --task {canon}", err)
    for n in names:
        rc, got, err = run_json(["run", d, "--task", n, "--text", "what is John doing in Paris?"] + extra)
        check(rc == 0 and got == ref, f"run --task {n} == --task {canon}", err)
    # export and triton-repo take the same names
    out = os.path.join(WORK, f"{MODEL[canon]}-{names[0]}.onnx")
    rc, so, err = run(["export", "-m", d, "--task", names[0], "-o", out, "--json"])
    check(rc == 0 and json.loads(so)["task"] == canon, f"export --task {names[0]} exports {canon}", err)
    repo = os.path.join(WORK, f"repo-{names[0]}")
    rc, so, err = run(["triton-repo", out, "-o", repo, "--task", names[0], "--tokenizer", d, "--json",
                       "--triton-backend", "onnxruntime"])
    j = json.loads(so) if rc == 0 else {}
    cfg = os.path.join(repo, "model_inference", "config.pbtxt")
    check(rc == 0 and j.get("task") == canon and j.get("models") == ["model", "model_tokenize", "model_inference"]
          and os.path.isfile(cfg) and canon in open(cfg).read(),
          f"triton-repo --task {names[0]} records {canon} (and --json lists the models)", err + so)

# generation models where an encoder is expected, or without a KV cache: refused with exit 1 ("not supported
# (yet)"), no answer printed
NOT_YET = "not supported (yet)"
cases = [
    ("run on a GPT-2 ONNX without a KV cache (config.json beside the tokenizer)",
     ["run", os.path.join(ONNX, "gpt2-lm.torchscript.onnx"), "--tokenizer", os.path.join(HF, "gpt2-lm"), "--text", "hi"]),
    ("run on a GPT-2 ONNX with --task token-classification",
     ["run", os.path.join(ONNX, "gpt2-lm.torchscript.onnx"), "--tokenizer", os.path.join(HF, "gpt2-lm"),
      "--task", "token-classification", "--text", "hi"]),
]
for what, args in cases:
    rc, out, err = run(args)
    check(rc == 1 and NOT_YET in err and "text-generation" in err and out == "", f"{what}: exit 1, {NOT_YET}",
          f"rc={rc} out={out[:100]!r} err={err.strip()[:300]!r}")

# text-generation (issue 15): decoders export and generate, also through run and the task aliases
ok_cases = [
    ("run on a Llama HF directory generates", ["run", os.path.join(HF, "llama-lm"), "--text", "hi", "--json"]),
    ("run on an Optimum GPT-2 ONNX with a KV cache generates",
     ["run", os.path.join(ONNX, "gpt2-gen.optimum-past.onnx"), "--tokenizer", os.path.join(HF, "gpt2-gen"),
      "--text", "hi", "--json"]),
    ("run --task causal-lm on a Qwen2 HF directory generates",
     ["run", os.path.join(HF, "qwen2-lm"), "--task", "causal-lm", "--text", "hi", "--json"]),
]
for what, args in ok_cases:
    rc, out, err = run(args)
    res = json.loads(out)["results"] if rc == 0 else []
    check(rc == 0 and len(res) == 1 and len(res[0]["ids"]) > 0, what, f"rc={rc} err={err.strip()[:300]!r}")
rc, out, err = run(["convert", "-m", os.path.join(HF, "gpt2-lm"), "-o", os.path.join(WORK, "g"), "--no-bench", "-q"])
check(rc == 0 and os.path.isfile(os.path.join(WORK, "g", "model-optimized.onnx")),
      "convert of a GPT-2 HF directory converts it as a decoder", f"rc={rc} err={err.strip()[:300]!r}")
for alias in ("text-generation", "text-generation-with-past", "causal-lm"):
    rc, out, err = run(["export", "-m", os.path.join(HF, "qwen2-lm"), "--task", alias, "-o",
                        os.path.join(WORK, "q.onnx"), "--json"])
    check(rc == 0 and json.loads(out)["task"] == "text-generation", f"export --task {alias} of a Qwen2 directory",
          err.strip()[:300])

# the GPT-2 ONNX without any config.json: its logits score every vocabulary entry, so it is still refused
bare = os.path.join(WORK, "gpt2-bare")
os.makedirs(bare)
shutil.copy(os.path.join(ONNX, "gpt2-lm.torchscript.onnx"), os.path.join(bare, "model.onnx"))
shutil.copy(os.path.join(HF, "gpt2-lm", "tokenizer.json"), bare)
rc, out, err = run(["run", bare, "--text", "hi"])
check(rc == 1 and NOT_YET in err and "vocabulary" in err and out == "",
      "run on a GPT-2 ONNX without config.json: refused from its logits", f"rc={rc} err={err.strip()[:300]!r}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
