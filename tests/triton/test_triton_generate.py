"""Text generation served by the real tritonserver (2.51.0) in decoupled (streaming)
mode: the repository `tdeploy convert --task text-generation` writes for the decoder
fixtures (gpt2-gen, llama-gen), driven over gRPC streaming (tritonclient.grpc
start_stream / async_stream_infer):

- greedy: for each of the fixture's `greedy` goldens (transformers generate with
  do_sample=False), the prompt text (HF tokenizers' decode of the golden prompt ids,
  which encodes back to the same ids) streams TEXT_OUTPUT pieces whose concatenation
  equals HF tokenizers' decode of transformers' new tokens; more than one piece
  arrives; the last response has the final flag and FINISH_REASON "length";
- sampling (temperature, top_k, seed): the same text as `tdeploy generate` with the
  same controls on the served model-optimized.onnx, and the same again on a rerun;
- errors, each a final error response naming the problem, the server and the model
  staying up: no TEXT, empty TEXT, non-UTF-8 TEXT, max_new_tokens 0, a prompt longer
  than the context, TEXT as INT32, temperature < 0, top_p 0; HTTP (no streaming)
  refuses the decoupled model; prompt + max_new_tokens past the context is no error:
  it streams until the context is full and ends with FINISH_REASON "context";
- cancellation: a long generation cancelled by the client ends, and the next
  request is answered; SIGTERM with a generation in flight: it streams to its end
  and the server exits 0."""
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import tritonclient.http as th
from safetensors import safe_open
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from triton_common import (FIX, TD_BIN, TMP, Server, Stream, Tally, convert, require_server, scalar,  # noqa: E402
                           text_in)

DECODERS = ["gpt2-gen", "llama-gen"]
WAIT = 300  # seconds for any one response (the ASan job is slow)

t = Tally()
require_server(t)
ROOT = os.path.join(TMP, "generate")
shutil.rmtree(ROOT, ignore_errors=True)
os.makedirs(ROOT)


# ---- convert each decoder fixture: its triton/ folder holds the decoupled generation model
repos = {}
for name in DECODERS:
    out = os.path.join(ROOT, "conv", name)
    p = convert(os.path.join(FIX, "hf", name), out, "--threads", "2")
    if t.check(p.returncode == 0 and os.path.isfile(os.path.join(out, "triton", name, "config.pbtxt")),
               f"{name}: convert --task text-generation writes triton/{name}", p.stderr[-800:]):
        repos[name] = out
if not repos:
    t.finish()
# an int4 decoder (convert --precision int4): its served model-optimized.onnx holds 4-bit MatMulNBits blocks
Q4 = "llama-gen-int4"
q4_out = os.path.join(ROOT, "conv", Q4)
p = convert(os.path.join(FIX, "hf", "llama-gen"), q4_out, "--threads", "2", "--precision", "int4", "--name", Q4)
q4_onnx = os.path.join(q4_out, "triton", Q4, "1", "model-optimized.onnx")
if t.check(p.returncode == 0 and os.path.isfile(q4_onnx), f"{Q4}: convert --precision int4 writes triton/{Q4}",
           p.stderr[-800:]):
    import onnx
    nb = [n for n in onnx.load(q4_onnx, load_external_data=False).graph.node if n.op_type == "MatMulNBits"]
    t.check(len(nb) >= 4 and all({a.name: a.i for a in n.attribute}.get("bits") == 4 for n in nb),
            f"{Q4}: the served model holds 4-bit MatMulNBits", f"{len(nb)} MatMulNBits")
    repos_q4 = [os.path.join(q4_out, "triton")]
else:
    repos_q4 = []

# a long-context copy of gpt2-gen for the cancellation check: the fixture's 256 positions generate in ~35 ms, less
# than a client's cancel takes to arrive, so the check could never see a cancel land; with 4096 positions (the
# position table tiled, n_positions raised) a 4000-token generation runs for seconds
LONG = "gpt2-gen-long"
long_dir, long_out = os.path.join(ROOT, LONG), os.path.join(ROOT, "conv", LONG)
os.makedirs(long_dir)
for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    shutil.copy(os.path.join(FIX, "hf", "gpt2-gen", f), long_dir)
cfg = json.load(open(os.path.join(FIX, "hf", "gpt2-gen", "config.json")))
cfg["n_positions"] = 4096
json.dump(cfg, open(os.path.join(long_dir, "config.json"), "w"))
from safetensors.numpy import load_file, save_file  # noqa: E402
wts = load_file(os.path.join(FIX, "hf", "gpt2-gen", "model.safetensors"))
wts["transformer.wpe.weight"] = np.ascontiguousarray(np.tile(wts["transformer.wpe.weight"], (16, 1)))
save_file(wts, os.path.join(long_dir, "model.safetensors"), metadata={"format": "pt"})
p = convert(long_dir, long_out, "--threads", "2", "--name", LONG)
repos_long = [os.path.join(long_out, "triton")] if t.check(
    p.returncode == 0, f"{LONG}: convert writes triton/{LONG} (the cancellation check's model)", p.stderr[-800:]) else []

srv = Server([os.path.join(out, "triton") for out in repos.values()] + repos_q4 + repos_long, "generate").start()
index = srv.index()
stream = Stream(srv.grpc, WAIT)
rid = 0


def run(model, inputs, timeout=WAIT):
    global rid
    rid += 1
    return stream.run(model, inputs, str(rid), timeout)


for name, out in repos.items():
    if not t.check(srv.ready(name), f"{name}: the decoupled tdeploy-backend model loads", index.get(name)):
        continue
    tok = Tokenizer.from_file(os.path.join(FIX, "hf", name, "tokenizer.json"))
    meta = safe_open(os.path.join(FIX, "hf", name, "golden.safetensors"), "np").metadata()
    for k, g in enumerate(json.loads(meta["greedy"])):
        prompt_ids, new_ids = g["prompt_ids"], g["output_ids"][len(g["prompt_ids"]):]
        prompt = tok.decode(prompt_ids, skip_special_tokens=False)
        if not t.check(tok.encode(prompt).ids == prompt_ids, f"{name} greedy[{k}]: the prompt text encodes to the "
                                                             f"golden prompt ids", prompt):
            continue
        want = tok.decode(new_ids, skip_special_tokens=True)
        pieces, finish, err, final = run(name, {"TEXT": text_in(prompt), "temperature": scalar(0, "FP32"),
                                                "max_new_tokens": scalar(len(new_ids), "INT32")})
        got = b"".join(pieces).decode("utf-8", errors="strict") if not err else None
        t.check(err is None and got == want,
                f"{name} greedy[{k}]: streamed text ({len(pieces)} pieces) == transformers' greedy continuation "
                f"({len(new_ids)} tokens)", f"err={err} got={got!r} want={want!r}")
        t.check(final and finish == "length" and len(pieces) >= 2,
                f"{name} greedy[{k}]: more than one piece, then the final response with FINISH_REASON length",
                f"final={final} finish={finish} pieces={len(pieces)}")

    # sampling: the same text as `tdeploy generate` with the same controls on the served model, on every run
    prompt = "Once upon a time"
    ctl = {"temperature": scalar(0.8, "FP32"), "top_k": scalar(20, "INT32"), "seed": scalar(7, "UINT64"),
           "max_new_tokens": scalar(16, "INT32")}
    runs = [run(name, {"TEXT": text_in(prompt), **ctl}) for _ in range(2)]
    cli = subprocess.run([TD_BIN, "generate", os.path.join(out, "triton", name, "1", "model-optimized.onnx"),
                          "--prompt", prompt, "--temperature", "0.8", "--top-k", "20", "--seed", "7",
                          "--max-new-tokens", "16", "--threads", "2", "--json", "-q"],
                         capture_output=True, text=True, timeout=600)
    want = None
    if t.check(cli.returncode == 0, f"{name}: tdeploy generate (sampling) runs", cli.stderr[-400:]):
        res = json.loads(cli.stdout)
        res = res["results"][0] if isinstance(res, dict) and "results" in res else res
        want = res.get("text") if isinstance(res, dict) else None
    texts = [b"".join(p).decode("utf-8", errors="replace") if not e else f"error {e}" for p, _, e, _ in runs]
    t.check(want is not None and texts[0] == want and texts[1] == want,
            f"{name}: sampled stream (temperature 0.8, top_k 20, seed 7) == tdeploy generate's text, twice",
            f"got={texts!r} want={want!r} cli={cli.stdout[:300]!r}")

# the int4 model streams the greedy text `tdeploy generate` makes from the same served file
if repos_q4 and t.check(srv.ready(Q4), f"{Q4}: the decoupled int4 model loads", index.get(Q4)):
    prompt = "Once upon a time"
    pieces, finish, err, final = run(Q4, {"TEXT": text_in(prompt), "temperature": scalar(0, "FP32"),
                                          "max_new_tokens": scalar(12, "INT32")})
    cli = subprocess.run([TD_BIN, "generate", q4_onnx, "--prompt", prompt, "--max-new-tokens", "12", "--threads", "2",
                          "--json", "-q"], capture_output=True, text=True, timeout=600)
    want = None
    if t.check(cli.returncode == 0, f"{Q4}: tdeploy generate (greedy) runs", cli.stderr[-400:]):
        res = json.loads(cli.stdout)
        want = res["results"][0].get("text") if isinstance(res, dict) and "results" in res else None
    got = b"".join(pieces).decode("utf-8", errors="replace") if not err else f"error {err}"
    t.check(want is not None and got == want and final and len(pieces) >= 2,
            f"{Q4}: streamed greedy text == tdeploy generate's on the served int4 file", f"got={got!r} want={want!r}")

# ---- errors: each request gets one final error naming the problem; the model keeps serving
name = next(iter(repos))
too_long = " ".join(["time"] * 400)  # > 256 positions (the fixtures' context)
cases = [
    ("no TEXT", {"max_new_tokens": scalar(4, "INT32")}, "TEXT"),
    ("empty TEXT", {"TEXT": text_in(b"")}, "empty"),
    ("non-UTF-8 TEXT", {"TEXT": text_in(b"ab\xff\xfecd")}, "UTF-8"),
    ("max_new_tokens 0", {"TEXT": text_in("Once"), "max_new_tokens": scalar(0, "INT32")}, "max_new_tokens"),
    ("prompt longer than the context", {"TEXT": text_in(too_long)}, "context"),
    ("TEXT as INT32", {"TEXT": (np.array([3], np.int32), "INT32")}, "TEXT"),
    ("temperature < 0", {"TEXT": text_in("Once"), "temperature": scalar(-1, "FP32")}, "temperature"),
    ("top_p 0", {"TEXT": text_in("Once"), "top_p": scalar(0, "FP32")}, "top_p"),
]
for what, inputs, word in cases:
    pieces, finish, err, final = run(name, inputs, timeout=120)
    t.check(err is not None and word.lower() in err.lower() and not pieces,
            f"{name}: {what}: an error response naming {word}", f"err={err} pieces={len(pieces)}")
# prompt + max_new_tokens past the context is no error: the generation streams until the context is full
pieces, finish, err, final = run(name, {"TEXT": text_in("Once upon a time"), "max_new_tokens": scalar(100000, "INT32")},
                                 timeout=300)
t.check(err is None and final and finish == "context" and pieces,
        f"{name}: prompt + max_new_tokens past the context: streams, then FINISH_REASON 'context'",
        f"err={err} finish={finish} pieces={len(pieces)}")
pieces, finish, err, final = run(name, {"TEXT": text_in("Once upon a time"), "max_new_tokens": scalar(4, "INT32")})
t.check(err is None and final and finish == "length" and pieces, f"{name}: a good request after the errors streams",
        f"err={err} finish={finish}")
try:
    http = th.InferenceServerClient(f"127.0.0.1:{srv.http}")
    x = th.InferInput("TEXT", [1], "BYTES")
    x.set_data_from_numpy(text_in("Once")[0])
    http.infer(name, [x])
    t.check(False, f"{name}: HTTP infer (no streaming) is refused for the decoupled model")
except Exception as e:  # noqa: BLE001 - tritonclient raises InferenceServerException
    t.check("decoupled" in str(e), f"{name}: HTTP infer (no streaming) is refused for the decoupled model", str(e))
http.close()  # the server waits for open HTTP connections at shutdown

# ---- cancellation: a long generation stopped by the client ends early (the backend sees the cancel and fails the
# request as cancelled instead of finishing its 4000 tokens); the next stream is answered


def counts():
    st = stream.client.get_inference_statistics(LONG, as_json=True)["model_stats"][0]["inference_stats"]
    return int(st.get("success", {}).get("count", 0)), int(st.get("fail", {}).get("count", 0))


def cancelled_once():
    """One long generation cancelled right after its first piece; returns (first piece arrived, ended as cancelled,
    the counts before/after)."""
    before = counts()
    cancel = Stream(srv.grpc)
    cancel.send(LONG, {"TEXT": text_in("Once upon a time"), "max_new_tokens": scalar(4000, "INT32")}, "long")
    first = None
    try:
        first = cancel.q.get(timeout=WAIT)
    except queue.Empty:
        pass
    cancel.close(cancel=True)
    after = before
    for _ in range(600):  # the request ends (as success or failure) within 60 s
        after = counts()
        if after != before:
            break
        time.sleep(0.1)
    return (first is not None and first[1] is None, after[1] - before[1] == 1 and after[0] == before[0],
            (before, after))


# Up to five attempts (a cancel that arrives after the generation's end cannot land; 4000 tokens take seconds): a
# backend that ignores cancels ends every one of them as a success and fails the check.
attempts = []
for _ in range(5):
    attempts.append(cancelled_once())
    if attempts[-1][1]:
        break
t.check(all(a[0] for a in attempts), f"{LONG}: a long generation streams its first piece before the cancel")
t.check(attempts[-1][1], f"{LONG}: the cancelled generation ended as cancelled, not after its 4000 tokens "
        f"({len(attempts)} attempt(s))", f"success/fail before/after per attempt {[a[2] for a in attempts]}")
pieces, finish, err, final = run(name, {"TEXT": text_in("Once upon a time"), "max_new_tokens": scalar(4, "INT32")})
t.check(err is None and final and finish == "length", f"{name}: after a cancelled stream the next request is answered",
        f"err={err}")

# ---- SIGTERM with a generation in flight (its first piece arrived): it streams to its end, then the server exits
stream.send(name, {"TEXT": text_in("Once upon a time"), "max_new_tokens": scalar(48, "INT32")}, "last")
head = []
try:
    result, error = stream.q.get(timeout=WAIT)
    head = [result.as_numpy("TEXT_OUTPUT").reshape(-1)[0]] if error is None else []
except queue.Empty:
    pass
srv.proc.send_signal(signal.SIGTERM)
pieces, finish, err, final = stream.collect("last")
pieces = head + pieces
t.check(head and err is None and final and finish == "length" and len(pieces) >= 2,
        f"{name}: SIGTERM during a generation: it streams to its end ({len(pieces)} pieces)", f"err={err}")
stream.close()
if srv.sanitizer:
    # under the preloaded ASan runtime tritonserver hangs at exit in its bundled libp11-kit's destructor (see
    # test_triton_faults.py): there the proof is that every model was unloaded, or a clean exit
    for _ in range(600):
        if "Found 0 live models" in srv.log_text() or srv.proc.poll() is not None:
            break
        time.sleep(0.1)
    rc = srv.proc.poll()
    t.check("Found 0 live models" in srv.log_text() or rc == 0,
            "SIGTERM: every model unloaded or the server exited cleanly (sanitizer run)", srv.log_text()[-800:])
else:
    try:
        rc = srv.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        rc = None
    t.check(rc == 0, f"SIGTERM: the server exits cleanly (status {rc})", srv.log_text()[-1500:])
log = srv.log_text()
t.check("Segmentation" not in log and "AddressSanitizer" not in log and "Aborted" not in log,
        "no crash in the server log")
srv.stop()
t.finish()
