"""tdeploy's CPU runtime and generation loop on decoders, against transformers' goldens and ONNX Runtime.

1. The runtime (tdeploy infer, one process per step) on tdeploy's exports and on Optimum's exports of every
   generation fixture: prefill logits, greedy through the cache, left-padded batch, step logits.
2. tdeploy generate (the C loop): greedy tokens identical to the goldens for single prompts and the left-padded
   batch, from an HF directory (exported in memory) and from Optimum's .onnx.
3. Repetition penalty: the C loop's greedy tokens equal a numpy implementation of transformers' processor
   driven through ONNX Runtime. Sampling: a seed reproduces, top-k 1 is greedy.
4. Stop strings, streaming (the streamed text is the final text), errors (context overflow, encoders, flags)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "export"))
from decoder_common import check_fixture, goldens, ort_runner, positions  # noqa: E402
from export_common import BIN, FIXTURES, TMP, Tally, run_export  # noqa: E402

GEN = ["gpt2-gen", "llama-gen", "qwen2-lm", "mistral-lm", "phi3-lm"]
t = Tally()
work = os.path.join(TMP, "generate")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)


def hf(name):
    return os.path.join(FIXTURES, "hf", name)


def optimum(name):
    return os.path.join(FIXTURES, "onnx", name + ".optimum-past.onnx")


def infer_runner(path):
    """A step through `tdeploy infer` (the CPU runtime), same interface as decoder_common.ort_runner."""
    ref = ort_runner(path)  # only for the shapes of empty past tensors
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ins = {i.name: i for i in ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).get_inputs()}
    del ref

    def step(ids, mask, pos, past):
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64),
                "position_ids": pos.astype(np.int64)}
        for n, i in ins.items():
            if n.startswith("past_key_values."):
                feed[n] = past[n] if past is not None else np.zeros((ids.shape[0], i.shape[1], 0, i.shape[3]),
                                                                    np.float32)
        feed = {k: np.ascontiguousarray(v) for k, v in feed.items() if k in ins}
        fin, fout = os.path.join(work, "in.safetensors"), os.path.join(work, "out.safetensors")
        save_file(feed, fin)
        r = subprocess.run([BIN, "infer", path, "--inputs", fin, "-o", fout, "--threads", "1", "-q"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"tdeploy infer failed: {r.stderr.strip()[-300:]}")
        f = safe_open(fout, "np")
        present = {k.replace("present", "past_key_values", 1): f.get_tensor(k) for k in f.keys()
                   if k.startswith("present")}
        return f.get_tensor("logits"), present

    return step


# 1. the runtime on both exports
for name in GEN:
    out = os.path.join(work, name + ".onnx")
    r = run_export(hf(name), out, "--task", "text-generation")
    if t.check(r.returncode == 0, f"{name}: export", r.stderr.strip()[-200:]):
        try:
            check_fixture(t, f"{name} runtime (tdeploy export)", infer_runner(out), hf(name))
        except RuntimeError as e:
            t.check(False, f"{name} runtime (tdeploy export)", str(e))
    try:
        check_fixture(t, f"{name} runtime (Optimum export)", infer_runner(optimum(name)), hf(name))
    except RuntimeError as e:
        t.check(False, f"{name} runtime (Optimum export)", str(e))


def generate(model, *args, timeout=300):
    r = subprocess.run([BIN, "generate", model, "--threads", "1", *args], capture_output=True, text=True,
                       timeout=timeout)
    return r


def gen_json(model, prompts, new, *args):
    flags = []
    for p in prompts:
        flags += ["--prompt-ids", ",".join(map(str, p))]
    r = generate(model, *flags, "--max-new-tokens", str(new), "--json", *args)
    if r.returncode != 0:
        return None, r.stderr.strip()[-300:]
    return json.loads(r.stdout), ""


# 2. the C loop: greedy tokens, single prompts and the left-padded batch, HF dir and Optimum .onnx
for name in GEN + ["gpt2-lm", "llama-lm"]:
    g = goldens(hf(name))
    models = [(hf(name), [])]
    if name in GEN:
        models.append((optimum(name), ["--tokenizer", hf(name)]))
    for model, extra in models:
        kind = "optimum" if model.endswith(".onnx") else "hf dir"
        for i, gr in enumerate(g["greedy"]):
            want = gr["output_ids"][len(gr["prompt_ids"]):]
            d, err = gen_json(model, [gr["prompt_ids"]], len(want), "--ignore-eos", *extra)
            got = d["results"][0]["ids"] if d else None
            t.check(got == want, f"{name} generate ({kind}): greedy[{i}] {len(want)} tokens",
                    err or ("" if got == want else f"got {got} want {want}"))
        if "batch_greedy" in g:
            bg = g["batch_greedy"]
            d, err = gen_json(model, bg["prompt_ids"], len(bg["output_ids"][0]), "--ignore-eos", *extra)
            got = [row["ids"] for row in d["results"]] if d else None
            t.check(got == bg["output_ids"], f"{name} generate ({kind}): left-padded batch of {len(bg['prompt_ids'])}",
                    err or ("" if got == bg["output_ids"] else f"got {got}"))


# 2b. the in-place KV cache: on tdeploy's graphs (fused by the generator's optimizer into GroupQueryAttention /
# MultiHeadAttention, then bound to the request's cache) a request builds 2 plans (prefill, decode), its session
# allocations do not grow with the number of tokens, and no cache byte is copied (runtime stats of generate --json);
# the same for a graph that comes fused already (`tdeploy optimize` of the export, as convert's model-optimized.onnx),
# with the goldens' tokens; Optimum's graphs take the copying path (and stay correct above) and say why
def in_place_fused(rt):
    return (rt.get("kv_in_place") is True and rt.get("plans") == 2 and rt.get("cache_copy_bytes") == 0 and
            "fused attention" in rt.get("kv_cache", ""))


for name in GEN:
    bg = goldens(hf(name))["batch_greedy"]
    stats = {}
    for new in (3, 12):
        d, err = gen_json(hf(name), bg["prompt_ids"], new, "--ignore-eos")
        stats[new] = d["runtime"] if d else {"error": err}
    a, b = stats[3], stats[12]
    t.check(in_place_fused(a) and in_place_fused(b) and a["session_allocs"] == b["session_allocs"],
            f"{name}: fused attention on the cache in place, batch of {len(bg['prompt_ids'])}: 2 plans, as many "
            "session allocations for 12 new tokens as for 3, no cache byte copied", f"3 tokens {a}, 12 tokens {b}")
    exported = os.path.join(work, name + ".onnx")
    fused = os.path.join(work, name + ".fused.onnx")
    r = subprocess.run([BIN, "export", "-m", hf(name), "-o", exported, "--task", "text-generation", "-q"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        r = subprocess.run([BIN, "optimize", exported, "-o", fused, "-q"], capture_output=True, text=True)
    if not t.check(r.returncode == 0, f"{name}: export + optimize (an already-fused graph)", r.stderr.strip()[-300:]):
        continue
    d, err = gen_json(fused, bg["prompt_ids"], len(bg["output_ids"][0]), "--ignore-eos", "--tokenizer", hf(name))
    got = [row["ids"] for row in d["results"]] if d else None
    rt = d["runtime"] if d else {}
    t.check(got == bg["output_ids"] and in_place_fused(rt),
            f"{name}: already-fused graph: left-padded batch tokens as the goldens, cache in place",
            err or f"{rt}" + ("" if got == bg["output_ids"] else f" got {got}"))
d, err = gen_json(optimum("llama-gen"), [[1, 2, 3]], 4, "--ignore-eos", "--tokenizer", hf("llama-gen"))
rt = d["runtime"] if d else {}
t.check(rt.get("kv_in_place") is False and rt.get("cache_copy_bytes", 0) > 0 and
        rt.get("kv_cache", "").startswith("copied per step: "),
        "Optimum's graph: the copying path (not rewritten), said in runtime.kv_cache", err or str(rt))


# 3. repetition penalty against numpy + ONNX Runtime; sampling reproducibility
def penalized_greedy(step, prompt, new, penalty):
    ids = np.array([prompt], np.int64)
    mask = np.ones_like(ids)
    logits, past = step(ids, mask, positions(mask), None)
    seq, out = list(prompt), []
    for _ in range(new):
        x = logits[0, -1].astype(np.float32).copy()
        u = np.unique(seq)
        s = x[u]
        x[u] = np.where(s < 0, s * penalty, s / penalty)
        nxt = int(x.argmax())
        out.append(nxt)
        seq.append(nxt)
        mask = np.concatenate([mask, [[1]]], 1)
        logits, past = step(np.array([[nxt]], np.int64), mask, positions(mask)[:, -1:], past)
    return out


prompt = goldens(hf("llama-gen"))["greedy"][0]["prompt_ids"]
want = penalized_greedy(ort_runner(optimum("llama-gen")), prompt, 20, 1.5)
d, err = gen_json(hf("llama-gen"), [prompt], 20, "--ignore-eos", "--repetition-penalty", "1.5")
got = d["results"][0]["ids"] if d else None
plain = goldens(hf("llama-gen"))["greedy"][0]["output_ids"][len(prompt):][:20]
t.check(got == want and want != plain, "repetition penalty 1.5: C loop == numpy/ORT reference (and != plain greedy)",
        err or f"got {got} want {want}")

runs = [gen_json(hf("qwen2-lm"), [prompt], 16, "--ignore-eos", "--do-sample", "--seed", s, "--temperature", "1.3")[0]
        for s in ("7", "7", "8")]
ids = [r["results"][0]["ids"] if r else None for r in runs]
t.check(ids[0] is not None and ids[0] == ids[1] and ids[0] != ids[2], "sampling: same seed same tokens, other seed "
        "other tokens", str(ids))
greedy_ids = gen_json(hf("qwen2-lm"), [prompt], 16, "--ignore-eos")[0]["results"][0]["ids"]
topk1 = gen_json(hf("qwen2-lm"), [prompt], 16, "--ignore-eos", "--top-k", "1", "--seed", "3")[0]["results"][0]["ids"]
t.check(topk1 == greedy_ids, "sampling with top-k 1 is greedy", f"{topk1} vs {greedy_ids}")
minp = gen_json(hf("qwen2-lm"), [prompt], 16, "--ignore-eos", "--min-p", "1.0", "--seed", "3")[0]["results"][0]["ids"]
t.check(minp == greedy_ids, "sampling with min-p 1 is greedy", f"{minp} vs {greedy_ids}")

# 4. stop strings and streaming
d, err = gen_json(hf("llama-gen"), [prompt], 24, "--ignore-eos")
full = d["results"][0]["text"] if d else ""
stop = full[len(full) // 2: len(full) // 2 + 3]
d2, err2 = gen_json(hf("llama-gen"), [prompt], 24, "--ignore-eos", "--stop", stop)
r2 = d2["results"][0] if d2 else {}
t.check(len(stop) == 3 and r2.get("finish") == "stop" and r2.get("text") == full[:full.find(stop)]
        and len(r2.get("ids", [])) < 24, "stop string ends the row and cuts the text before it",
        err2 or f"stop {stop!r}: {r2}")
text_prompt = "hello world"
r = generate(hf("gpt2-gen"), "--prompt", text_prompt, "--max-new-tokens", "20", "--ignore-eos", "-q")
dj = generate(hf("gpt2-gen"), "--prompt", text_prompt, "--max-new-tokens", "20", "--ignore-eos", "--json")
streamed = r.stdout[:-1] if r.stdout.endswith("\n") else r.stdout
final = json.loads(dj.stdout)["results"][0]["text"] if dj.returncode == 0 else None
t.check(r.returncode == 0 and streamed == final, "streamed stdout equals the final text", f"{streamed!r} vs {final!r}")

rr = subprocess.run([BIN, "run", hf("gpt2-gen"), "--text", text_prompt, "--json", "--threads", "1"],
                    capture_output=True, text=True, timeout=300)
dg = generate(hf("gpt2-gen"), "--prompt", text_prompt, "--json")
same = rr.returncode == 0 and dg.returncode == 0 and \
    json.loads(rr.stdout)["results"][0]["ids"] == json.loads(dg.stdout)["results"][0]["ids"]
t.check(same, "tdeploy run on a decoder generates what tdeploy generate does", rr.stderr.strip()[-200:])


def refused(label, args, rc, needle):
    r = generate(*args)
    t.check(r.returncode == rc and needle in r.stderr, f"refused: {label}", f"rc {r.returncode}: "
            f"{r.stderr.strip()[-240:]}")


long_prompt = ",".join(["5"] * 70)  # gpt2-lm has 64 positions
refused("prompt longer than the context", [hf("gpt2-lm"), "--prompt-ids", long_prompt], 1, "context is 64")
# max_new_tokens past the context: generation stops with finish "context" when prompt + new tokens fill it
r = generate(hf("gpt2-lm"), "--prompt-ids", "5,6,7", "--max-new-tokens", "62", "--ignore-eos", "--json")
res = json.loads(r.stdout)["results"][0] if r.returncode == 0 else {}
t.check(len(res.get("ids", [])) == 61 and res.get("finish") == "context" and "context full" in r.stderr,
        "max_new_tokens past the context: 61 tokens (64 positions), finish 'context', a 'context full' note",
        f"rc {r.returncode}: {str(res)[-200:]} {r.stderr.strip()[-200:]}")
r = generate(hf("gpt2-lm"), "--prompt-ids", ",".join(["5"] * 64), "--max-new-tokens", "4", "--json")
res = json.loads(r.stdout)["results"][0] if r.returncode == 0 else {}
t.check(res.get("ids") == [] and res.get("finish") == "context", "a prompt that fills the context: no tokens, "
        "finish 'context'", f"rc {r.returncode}: {str(res)[-200:]} {r.stderr.strip()[-200:]}")
refused("an encoder", [hf("bert-base"), "--prompt", "hi"], 1, "not possible for")
refused("an encoder .onnx", [os.path.join(FIXTURES, "onnx", "bert-base.torchscript.onnx"), "--prompt-ids", "1,2"],
        1, "not a decoder with a KV cache")
refused("token id outside the vocabulary", [hf("llama-gen"), "--prompt-ids", "5,99999"], 1, "outside the vocabulary")
refused("bad --top-p", [hf("llama-gen"), "--prompt-ids", "5", "--top-p", "1.5"], 2, "--top-p")
refused("no prompt", [hf("llama-gen")], 2, "--prompt")
refused("--precision int8 on an HF model (int8 activations are a GGUF's block option)",
        [hf("llama-gen"), "--prompt-ids", "5", "--precision", "int8"], 1, "applies to a .gguf file")
refused("an unknown --precision", [hf("llama-gen"), "--prompt-ids", "5", "--precision", "int3"], 2, "auto, fp32, int8")
t.finish()
