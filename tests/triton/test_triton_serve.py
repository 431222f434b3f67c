"""The repositories `tdeploy convert` writes, served by the real tritonserver
(2.51.0) through libtriton_tdeploy.so, checked over HTTP and gRPC with tritonclient:

- every encoder fixture: token tensors (the fixture's padded golden batch) against
  the transformers golden outputs and ONNX Runtime on model-optimized.onnx; raw text
  (TEXT, TEXT_PAIR for QA) against ONNX Runtime fed by HF `tokenizers` ids;
- the real all-MiniLM-L6-v2: text embeddings against sentence-transformers'
  (tests/data/minilm_reference) and ONNX Runtime;
- the ONNX Runtime variant (--triton-backend both): loaded where the server can; the
  wheel has no onnxruntime backend, which the output says instead of pretending."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as tg
import tritonclient.http as th
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from triton_common import (ENCODERS, FIX, SRC, TMP, Server, Tally, bytes_tensor, close, convert,  # noqa: E402
                           load_safetensors, require_server)

TOL = 1e-5  # the backend runs tdeploy's runtime: the same numbers as `tdeploy run`, ORT agrees within this
GOLD_TOL = 1e-4  # transformers (PyTorch) vs our kernels, as tdeploy convert validates
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

t = Tally()
require_server(t)
# only this test's own folder: test_triton_faults runs beside it (ctest -j) and keeps its server log under TMP
ROOT = os.path.join(TMP, "serve")
shutil.rmtree(ROOT, ignore_errors=True)
os.makedirs(ROOT)


def ort_session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def ort_run(sess, ids, mask, types):
    feeds = {}
    for i in sess.get_inputs():
        v = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}[i.name]
        feeds[i.name] = v.astype(np.int32 if i.type == "tensor(int32)" else np.int64)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def hf_encode(tok_path, texts, pairs, max_length):
    tok = Tokenizer.from_file(tok_path)
    tok.no_padding()
    tok.enable_truncation(max_length)
    enc = [tok.encode(a, b) if b is not None else tok.encode(a) for a, b in zip(texts, pairs or [None] * len(texts))]
    seq = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), seq), np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for r, e in enumerate(enc):
        ids[r, :len(e.ids)], mask[r, :len(e.ids)], types[r, :len(e.ids)] = e.ids, 1, e.type_ids
    return ids, mask, types


def config_of(model_dir):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2
    cfg = model_config_pb2.ModelConfig()
    text_format.Parse(open(os.path.join(model_dir, "config.pbtxt")).read(), cfg)
    return cfg


def infer(proto, client, model, inputs, outputs):
    mod = th if proto == "http" else tg
    ins = []
    for name, arr in inputs.items():
        dt = "BYTES" if arr.dtype == object else {np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}[arr.dtype]
        x = mod.InferInput(name, list(arr.shape), dt)
        x.set_data_from_numpy(arr)
        ins.append(x)
    r = client.infer(model, ins, outputs=[mod.InferRequestedOutput(o) for o in outputs], timeout=600) \
        if proto == "http" else client.infer(model, ins, outputs=[mod.InferRequestedOutput(o) for o in outputs],
                                             client_timeout=600)
    return {o: r.as_numpy(o) for o in outputs}


def real_positions(out, mask):
    """Per-token outputs compared on real tokens only (padding is free to differ)."""
    return out[mask.astype(bool)] if out.ndim >= 2 and out.shape[:2] == mask.shape else out


# ---- convert every fixture (+ MiniLM) with both Triton variants
repos, models = [], []
for name in ENCODERS:
    out = os.path.join(ROOT, "conv", name)
    p = convert(os.path.join(FIX, "hf", name), out, "--triton-backend", "both")
    if t.check(p.returncode == 0, f"{name}: convert --triton-backend both", p.stderr[-800:]):
        repos.append(os.path.join(out, "triton"))
        models.append((name, out))

# the served max_length is the model's own (256, as `tdeploy run` cuts) whatever the profile; a short validation
# profile keeps the conversion cheap, also in the ASan job
minilm_out = os.path.join(ROOT, "conv", "minilm")
p = convert(MINILM, minilm_out, "--name", "minilm", "--triton-backend", "tdeploy", "--seq-len", "1", "16", "32")
if p.returncode != 0 and "not" in p.stderr:  # not in the cache yet: the project's setup script puts it there
    s = subprocess.run(["bash", os.path.join(SRC, "scripts", "setup-default-model.sh")], capture_output=True,
                       text=True, timeout=900)
    p = convert(MINILM, minilm_out, "--name", "minilm", "--triton-backend", "tdeploy", "--seq-len", "1", "16", "32")
if t.check(p.returncode == 0, f"{MINILM}: convert", p.stderr[-800:]):
    repos.append(os.path.join(minilm_out, "triton"))

with Server(repos, "serve") as srv:
    index = srv.index()
    # generous timeouts: the ASan job runs the real MiniLM instrumented
    http = th.InferenceServerClient(f"127.0.0.1:{srv.http}", connection_timeout=600, network_timeout=600)
    grpc = tg.InferenceServerClient(f"127.0.0.1:{srv.grpc}")
    log = srv.log_text()
    for name, out in models:
        model_dir = os.path.join(out, "triton", name)
        cfg = config_of(model_dir)
        if not t.check(srv.ready(name), f"{name}: the tdeploy-backend model loads", index.get(name)):
            continue
        outputs = [o.name for o in cfg.output]
        sess = ort_session(os.path.join(out, "model-optimized.onnx"))
        max_length = int(cfg.parameters["max_length"].string_value)

        # token tensors: the fixture's padded golden batch
        g = load_safetensors(os.path.join(FIX, "hf", name, "golden.safetensors"))
        feeds = {k[6:]: v for k, v in g.items() if k.startswith("input.") and k[6:] in {i.name for i in cfg.input}}
        mask = feeds.get("attention_mask", np.ones_like(feeds["input_ids"]))
        ref = ort_run(sess, feeds["input_ids"], mask, feeds.get("token_type_ids", np.zeros_like(mask)))
        for proto, client in (("http", http), ("grpc", grpc)):
            got = infer(proto, client, name, feeds, outputs)
            for o in outputs:
                ok, d = close(real_positions(got[o], mask), real_positions(ref[o], mask), TOL, TOL)
                t.check(ok, f"{name}: {proto} token tensors, {o} == ONNX Runtime within {TOL}", d)
                if "output." + o in g:
                    ok, d = close(real_positions(got[o], mask), real_positions(g["output." + o], mask), GOLD_TOL)
                    t.check(ok, f"{name}: {proto} token tensors, {o} == transformers golden within {GOLD_TOL}", d)

        # raw text: TEXT (+ TEXT_PAIR for question answering), tokenized inside the backend
        tg_json = json.load(open(os.path.join(FIX, "hf", name, "tokenizer_golden.json"), encoding="utf-8"))
        if name == "bert-qa":
            texts, pairs = [a for a, _ in tg_json["pairs"]], [b for _, b in tg_json["pairs"]]
        else:
            texts, pairs = tg_json["texts"], None
        for proto, client in (("http", http), ("grpc", grpc)):
            worst = {o: (True, "") for o in outputs}
            for c0 in range(0, len(texts), cfg.max_batch_size):  # requests of at most max_batch_size rows
                ct, cp = texts[c0:c0 + cfg.max_batch_size], pairs[c0:c0 + cfg.max_batch_size] if pairs else None
                ids, mask, types = hf_encode(os.path.join(model_dir, "1", "tokenizer.json"), ct, cp, max_length)
                ref = ort_run(sess, ids, mask, types)
                inputs = {"TEXT": bytes_tensor(ct)}
                if cp:
                    inputs["TEXT_PAIR"] = bytes_tensor(cp)
                got = infer(proto, client, name, inputs, outputs)
                for o in outputs:
                    ok, d = close(real_positions(got[o], mask), real_positions(ref[o], mask), TOL, TOL)
                    if worst[o][0]:
                        worst[o] = (ok, d)
            for o in outputs:
                t.check(worst[o][0], f"{name}: {proto} TEXT{' + TEXT_PAIR' if pairs else ''} ({len(texts)} rows), "
                                     f"{o} == ONNX Runtime on HF tokenizers ids within {TOL}", worst[o][1])

        # the ONNX Runtime variant written beside it: load it where the server can, say what it cannot
        for suffix in ("_onnxruntime", "_onnxruntime_tokenize", "_onnxruntime_inference"):
            m = index.get(name + suffix, {})
            state, reason = m.get("state"), m.get("reason", "")
            if state == "READY":
                t.check(True, f"{name}{suffix}: loaded")
                continue
            if not reason:  # an ensemble whose steps failed is not even indexed: its reason is in the log
                lines = [l for l in log.splitlines() if f"'{name}{suffix}'" in l]
                reason = lines[0].split('"', 1)[-1][:300] if lines else ""
            t.check(bool(reason), f"{name}{suffix}: not loaded, and the server says why", m)
            t.note(f"{name}{suffix} is {state or 'not loaded'}: {reason.splitlines()[0] if reason else ''}")

    # the real all-MiniLM-L6-v2 against sentence-transformers' embeddings
    ml = config_of(os.path.join(minilm_out, "triton", "minilm")).parameters["max_length"].string_value
    t.check(ml == "256", f"minilm: config max_length is the model's 256 (sentence_bert_config), got {ml}")
    if srv.ready("minilm"):
        ref = json.load(open(os.path.join(SRC, "tests", "data", "minilm_reference", "reference.json"),
                             encoding="utf-8"))
        cases = ref["cases"]
        texts = [c["text"] for c in cases]
        want = np.array([c["embedding"] for c in cases], np.float32)
        sess = ort_session(os.path.join(minilm_out, "model-optimized.onnx"))
        ids, mask, types = hf_encode(os.path.join(minilm_out, "tokenizer.json"), texts, None, 256)
        ort_emb = ort_run(sess, ids, mask, types)["sentence_embedding"]
        for proto, client in (("http", http), ("grpc", grpc)):
            got = np.concatenate([infer(proto, client, "minilm", {"TEXT": bytes_tensor(texts[i:i + 8])},
                                        ["sentence_embedding"])["sentence_embedding"]
                                  for i in range(0, len(texts), 8)])
            ok, d = close(got, want, GOLD_TOL)
            t.check(ok, f"minilm: {proto} TEXT, {len(texts)} embeddings == sentence-transformers within {GOLD_TOL}", d)
            ok, d = close(got, ort_emb, TOL, TOL)
            t.check(ok, f"minilm: {proto} TEXT == ONNX Runtime on HF tokenizers ids within {TOL}", d)
    else:
        t.check(False, "minilm: the tdeploy-backend model loads", srv.index().get("minilm"))
    t.check("onnxruntime" in log, "server log names the missing onnxruntime backend")
t.finish()
