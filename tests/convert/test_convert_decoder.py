#!/usr/bin/env python3
"""`tdeploy convert` on the decoder fixtures (task text-generation): model.onnx and
model-optimized.onnx written and accepted by onnx.checker, validation (prefill
logits within atol+rtol of the reference backend on model.onnx, greedy tokens
identical for single prompts and a left-padded batch) passes (the exported graph
against transformers' goldens is tests/export's job); the benchmark reports batch 1 and 8;
--no-bench is honoured; a backend outside the tolerance (fp16 with atol = rtol =
0) fails validation with exit 3, OUTDIR.failed and OUTDIR
untouched; --precision int4 / int8 write MatMulNBits blocks and pass by the
near-top rule; int4 on an encoder and a foreign OUTDIR are refused."""
import glob
import json
import math
import os
import shutil
import subprocess
import sys

import onnx

BIN = os.environ["TD_BIN"]
FIX = os.path.join(os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")), "hf")
TMP = os.path.join(os.environ.get("TD_TMP", "/tmp"), "convert_decoder_test")
DECODERS = ["gpt2-gen", "gpt2-lm", "llama-gen", "llama-lm", "qwen2-lm", "mistral-lm", "phi3-lm"]

passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    passed += bool(cond)
    failed += not cond
    print(f"{'PASS' if cond else 'FAIL'} {what}" + ("" if cond or not detail else f": {detail}"))
    return cond


def run(args):
    return subprocess.run([BIN, "convert"] + args, capture_output=True, text=True, timeout=600)


def no_leftovers(out):
    parent, base = os.path.split(out.rstrip("/"))
    return not glob.glob(os.path.join(parent, base + ".tmp.*"))


shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)

# every decoder fixture: converted, validated (logits and greedy tokens), with its Triton repository
for name in DECODERS:
    out = os.path.join(TMP, name)
    r = run(["-m", os.path.join(FIX, name), "-o", out, "--no-bench", "--threads", "2", "-q"])
    if not check(r.returncode == 0, f"{name}: exit 0", f"rc={r.returncode} err={r.stderr.strip()[-400:]!r}"):
        continue
    files_ok = all(os.path.isfile(os.path.join(out, f)) for f in ("model.onnx", "model-optimized.onnx", "report.json"))
    cfg_path = os.path.join(out, "triton", name, "config.pbtxt")
    cfg = open(cfg_path).read() if os.path.isfile(cfg_path) else ""
    check(files_ok and no_leftovers(out), f"{name}: model.onnx, model-optimized.onnx, report.json, no staging left")
    # the Triton model streams generation on the tdeploy backend (tests/triton/test_triton_generate.py serves it)
    check('backend: "tdeploy"' in cfg and "decoupled: true" in cfg and
          os.path.isfile(os.path.join(out, "triton", name, "1", "model-optimized.onnx")) and
          os.path.isfile(os.path.join(out, "triton", name, "1", "tokenizer.json")),
          f"{name}: triton/{name}: decoupled tdeploy-backend model with model-optimized.onnx and tokenizer.json")
    try:
        onnx.checker.check_model(os.path.join(out, "model.onnx"))
        check(True, f"{name}: model.onnx passes onnx.checker")
    except Exception as e:  # noqa: BLE001 - any checker error fails the case
        check(False, f"{name}: model.onnx passes onnx.checker", str(e)[:300])
    rep = json.load(open(os.path.join(out, "report.json")))
    vals = [v for v in rep.get("validation", []) if v.get("output") == "logits"]
    gt = rep.get("greedy_tokens", {})
    check(len(vals) == 1 and vals[0]["passed"] and vals[0]["n_compared"] > 0 and vals[0]["max_abs_diff"] <= 1e-4,
          f"{name}: prefill logits within 1e-4 of the reference", json.dumps(vals)[:300])
    # 4 single prompts + the 4 rows of the left-padded batch
    check(gt.get("passed") is True and gt.get("generations") == 8 and gt.get("identical") == 8 and
          gt.get("new_tokens", 0) >= 1, f"{name}: greedy tokens identical in 8 of 8 generations", json.dumps(gt))
    check(rep.get("generation_benchmark") == [], f"{name}: --no-bench: no benchmark entries")
    check("decoupled" in rep.get("triton_repository", "") and
          rep.get("written_precision", {}).get("triton") == "fp32",
          f"{name}: report names the decoupled Triton repository", json.dumps(rep.get("triton_repository")))

# the benchmark: batch 1 and 8, p50 <= p95, throughput consistent with the latency
out = os.path.join(TMP, "bench")
r = run(["-m", os.path.join(FIX, "llama-gen"), "-o", out, "--nb-measures", "3", "--warmup", "1", "--threads", "2", "-q"])
if check(r.returncode == 0, "benchmark run: exit 0", r.stderr.strip()[-400:]):
    gb = json.load(open(os.path.join(out, "report.json")))["generation_benchmark"]
    check([b["batch"] for b in gb] == [1, 8], "benchmark at batch 1 and 8", json.dumps(gb)[:300])
    for b in gb:
        check(b["runs"] == 3 and 0 < b["ttft_ms_p50"] <= b["ttft_ms_p95"] and
              0 < b["decode_ms_per_token_p50"] <= b["decode_ms_per_token_p95"] and
              abs(b["prefill_tokens_per_s"] - b["batch"] * b["prompt_tokens"] / (b["ttft_ms_p50"] / 1e3)) <=
              1e-6 * b["prefill_tokens_per_s"] and b["new_tokens"] >= 2,
              f"benchmark batch {b['batch']}: figures consistent", json.dumps(b))
    check("TTFT" in r.stdout and "ms/tok" in r.stdout, "summary table printed", r.stdout[-300:])

# --seq-len / --batch-size set the validated and benchmarked prompt lengths and batches
out = os.path.join(TMP, "shapes")
r = run(["-m", os.path.join(FIX, "llama-gen"), "-o", out, "--seq-len", "4", "8", "12", "--batch-size", "1", "2", "6",
         "--nb-measures", "2", "--warmup", "0", "--threads", "2", "-q"])
if check(r.returncode == 0, "--seq-len 4 8 12 --batch-size 1 2 6: exit 0", r.stderr.strip()[-400:]):
    rep = json.load(open(os.path.join(out, "report.json")))
    gt, gb = rep["greedy_tokens"], rep["generation_benchmark"]
    check(gt["prompt_tokens_min"] >= 4 and gt["prompt_tokens_max"] <= 12 and gt["batch_rows"] == 6 and
          gt["generations"] == 4 + 6 and gt["passed"], "validation: prompts of 4..12 tokens, a batch of 6 rows",
          json.dumps(gt))
    check([b["batch"] for b in gb] == [1, 2, 6] and all(b["prompt_tokens"] == 8 for b in gb),
          "benchmark at batch 1, 2, 6 with prompts of 8 tokens", json.dumps(gb)[:300])
for bad, why in [(["4", "8", "256"], "MAX = the context"), (["4", "255", "255"], "OPT leaves < 2 new tokens")]:
    out = os.path.join(TMP, "misfit")
    r = run(["-m", os.path.join(FIX, "llama-gen"), "-o", out, "--seq-len", *bad, "-q"])
    check(r.returncode == 2 and "at most 255" in r.stderr and not os.path.exists(out) and no_leftovers(out),
          f"--seq-len {' '.join(bad)} ({why}): usage error naming the limit, nothing written",
          f"rc={r.returncode} err={r.stderr.strip()[-300:]!r}")

# bf16 decoders pass validation with the bf16 tolerance (the masks' -FLT_MAX used to round to -inf in bfloat16:
# fully masked rows of the left-padded batch became NaN, the logits non-finite and convert exited 3)
for name in ["llama-lm", "gpt2-lm"]:
    out = os.path.join(TMP, "bf16-" + name)
    r = run(["-m", os.path.join(FIX, name), "-o", out, "--precision", "bf16", "--no-bench", "--threads", "2", "-q"])
    if check(r.returncode == 0, f"{name} bf16: exit 0", f"rc={r.returncode} err={r.stderr.strip()[-400:]!r}"):
        rep = json.load(open(os.path.join(out, "report.json")))
        vals = [v for v in rep.get("validation", []) if v.get("output") == "logits"]
        gt = rep.get("greedy_tokens", {})
        check(len(vals) == 1 and vals[0]["passed"] and math.isfinite(vals[0]["max_abs_diff"]) and
              gt.get("passed") is True and gt.get("identical") == 8,
              f"{name} bf16: finite logits within the bf16 tolerance, greedy tokens identical",
              json.dumps(vals)[:300] + json.dumps(gt))

# validation failures: exit 3, OUTDIR.failed written, OUTDIR left as it was
for what, extra in [("fp16 with atol 0 rtol 0", ["--precision", "fp16", "--atol", "0", "--rtol", "0"])]:
    out = os.path.join(TMP, "fail-" + extra[1])
    r = run(["-m", os.path.join(FIX, "llama-gen"), "-o", out, "--no-bench", "-q"] + extra)
    ok = r.returncode == 3 and os.path.isdir(out + ".failed") and not os.path.exists(out) and no_leftovers(out)
    if check(ok, f"{what}: exit 3, OUTDIR.failed only", f"rc={r.returncode} err={r.stderr.strip()[-300:]!r}"):
        rep = json.load(open(os.path.join(out + ".failed", "report.json")))
        check(not rep["validation"][0]["passed"] or not rep["greedy_tokens"]["passed"],
              f"{what}: report.json says what failed", json.dumps(rep["validation"])[:300])
# a passing run after a failed one replaces nothing it must not and removes the stale OUTDIR.failed
out = os.path.join(TMP, "fail-fp16")
r = run(["-m", os.path.join(FIX, "llama-gen"), "-o", out, "--no-bench", "-q"])
check(r.returncode == 0 and os.path.isdir(out) and not os.path.exists(out + ".failed"),
      "a passing run after a failed one: OUTDIR written, stale OUTDIR.failed removed", r.stderr.strip()[-300:])

# --precision int4 | int8: model-optimized.onnx holds MatMulNBits blocks of that width (as optimize --precision), the
# validation reports max abs logits error, top-1, near-top and greedy agreement and passes by the near-top rule
# (convert/decoder.h); a run whose precision were silently ignored has no MatMulNBits and logits equal to the
# reference's within rounding, so it fails the checks below
for name, prec in [("llama-lm", "int4"), ("gpt2-lm", "int4"), ("llama-lm", "int8"), ("gpt2-lm", "int8")]:
    out = os.path.join(TMP, f"{prec}-{name}")
    r = run(["-m", os.path.join(FIX, name), "-o", out, "--precision", prec, "--nb-measures", "2", "--warmup", "0",
             "--threads", "2", "-q"])
    if not check(r.returncode == 0, f"{name} {prec}: exit 0", f"rc={r.returncode} err={r.stderr.strip()[-400:]!r}"):
        continue
    m = onnx.load(os.path.join(out, "model-optimized.onnx"), load_external_data=False)
    nb = [n for n in m.graph.node if n.op_type == "MatMulNBits"]
    inits = {i.name for i in m.graph.initializer}
    float_w = [n.input[1] for n in m.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits]
    check(len(nb) >= 4 and not float_w and
          all({a.name: a.i for a in n.attribute}.get("bits") == int(prec[3:]) for n in nb),
          f"{name} {prec}: model-optimized.onnx: every weight MatMul is MatMulNBits of {prec[3:]} bits",
          f"{len(nb)} MatMulNBits, float weight MatMuls {float_w[:3]}")
    served = os.path.join(out, "triton", name, "1", "model-optimized.onnx")
    check(os.path.isfile(served) and open(served, "rb").read() == open(os.path.join(out, "model-optimized.onnx"),
                                                                       "rb").read(),
          f"{name} {prec}: the Triton model serves the quantized model-optimized.onnx")
    rep = json.load(open(os.path.join(out, "report.json")))
    v = [v for v in rep.get("validation", []) if v.get("output") == "logits"]
    v = v[0] if len(v) == 1 else {}
    gt = rep.get("greedy_tokens", {})
    # quantization moves the logits (an ignored precision would be within fp32 rounding, < 1e-4)
    check(v.get("passed") is True and v.get("finite") is True and 1e-3 < v.get("max_abs_diff", 0) < 10 and
          v.get("elementwise_decides") is False and v.get("near_top_agreement", 0) >= 0.95 and
          v.get("min_near_top_agreement") == 0.95 and
          v.get("near_top_tolerance") == (0.5 if prec == "int4" else 0.1) and
          0 < v.get("argmax_agreement", -1) <= v["near_top_agreement"] and v.get("top1_positions", 0) > 0,
          f"{name} {prec}: logits moved by quantization, near-top agreement >= 95% decides, top-1 reported",
          json.dumps(v)[:500])
    check(gt.get("decides") is False and gt.get("passed") is True and gt.get("generations") == 8 and
          0 <= gt.get("leading_tokens_identical", -1) <= gt.get("tokens", -1) and gt.get("tokens", 0) > 0,
          f"{name} {prec}: greedy agreement reported ({gt.get('leading_tokens_identical')} of {gt.get('tokens')} "
          "leading tokens)", json.dumps(gt))
    check(rep.get("written_precision", {}).get("model-optimized.onnx") == prec and
          rep.get("written_precision", {}).get("triton") == prec and
          rep.get("options", {}).get("precision") == prec,
          f"{name} {prec}: report names the written precision", json.dumps(rep.get("written_precision")))
    gb = rep.get("generation_benchmark", [])
    check([b["batch"] for b in gb] == [1, 8] and all(b["decode_ms_per_token_p50"] > 0 for b in gb),
          f"{name} {prec}: benchmarked at batch 1 and 8", json.dumps(gb)[:300])
# int4 with an elementwise tolerance it cannot meet: exit 3, OUTDIR.failed only
out = os.path.join(TMP, "int4-atol0")
r = run(["-m", os.path.join(FIX, "llama-lm"), "-o", out, "--precision", "int4", "--atol", "0", "--rtol", "0",
         "--no-bench", "-q"])
check(r.returncode == 3 and os.path.isdir(out + ".failed") and not os.path.exists(out) and no_leftovers(out),
      "int4 with --atol 0 --rtol 0: the elements decide too: exit 3, OUTDIR.failed only",
      f"rc={r.returncode} err={r.stderr.strip()[-300:]!r}")
# the summary table names the quantized rule
r = run(["-m", os.path.join(FIX, "gpt2-lm"), "-o", os.path.join(TMP, "int8-summary"), "--precision", "int8",
         "--no-bench"])
check(r.returncode == 0 and "near-top agreement" in r.stdout and "top-1 agreement" in r.stdout and
      "leading tokens agree (reported)" in r.stdout, "int8 summary: top-1, near-top and greedy agreement printed",
      r.stdout[-600:])

# refused before any work: int4 on an encoder, --int8-weight-bits 7 on a decoder, a folder tdeploy did not create
r = run(["-m", os.path.join(FIX, "minilm-st"), "-o", os.path.join(TMP, "i4enc"), "--precision", "int4", "-q"])
check(r.returncode == 1 and "int4" in r.stderr and "decoder" in r.stderr and not os.path.exists(os.path.join(TMP, "i4enc")),
      "int4 on an encoder: refused with a message", f"rc={r.returncode} err={r.stderr.strip()[-300:]!r}")
r = run(["-m", os.path.join(FIX, "gpt2-gen"), "-o", os.path.join(TMP, "i8w7"), "--precision", "int8",
         "--int8-weight-bits", "7", "-q"])
check(r.returncode == 2 and "weight-bits" in r.stderr and not os.path.exists(os.path.join(TMP, "i8w7")),
      "--int8-weight-bits 7 on a decoder: usage error", f"rc={r.returncode} err={r.stderr.strip()[-300:]!r}")
foreign = os.path.join(TMP, "foreign")
os.makedirs(foreign)
open(os.path.join(foreign, "mine.txt"), "w").write("user data")
r = run(["-m", os.path.join(FIX, "gpt2-gen"), "-o", foreign, "--no-bench", "-q"])
check(r.returncode != 0 and open(os.path.join(foreign, "mine.txt")).read() == "user data" and
      sorted(os.listdir(foreign)) == ["mine.txt"], "a foreign OUTDIR is refused and left alone",
      f"rc={r.returncode} err={r.stderr.strip()[-300:]!r}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
