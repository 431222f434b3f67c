"""The ONNX Runtime variant's Python tokenizer model (NAME_tokenize, model.py written
by `tdeploy convert --triton-backend onnxruntime`) and its ensemble, served by the
real tritonserver (2.51.0) with the wheel's Python backend:

- the server's Python ignores PYTHONPATH and the wheel's stub breaks with numpy 2,
  so model.py puts the folders of TDEPLOY_TRITON_PYTHONPATH and of its config
  parameter python_path first on sys.path; both ways load it (numpy < 2 and
  tokenizers installed there by scripts/install-deps.sh), and without either the
  model fails to load with the missing numpy named;
- its outputs (input_ids, attention_mask, token_type_ids) equal HF `tokenizers` on
  the same tokenizer.json (and the fixture's transformers ids), over HTTP and gRPC;
- the ensemble: the ONNX Runtime backend is not in the wheel (the output says so and
  the unmodified ensemble does not load); with the ONNX step served by the tdeploy
  backend instead (same model.onnx, stated in the output), the ensemble loads and
  TEXT -> logits equals ONNX Runtime (Python) on HF tokenizers ids."""
import json
import os
import re
import shutil
import sys

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as tg
import tritonclient.http as th
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from triton_common import FIX, PY_DEPS, TMP, Server, Tally, bytes_tensor, close, convert, require_server  # noqa: E402

TOL = 1e-5
FIXTURES = ["bert-seqcls", "roberta-seqcls"]  # WordPiece and byte-level BPE (with a pad token and type ids)

t = Tally()
require_server(t)
if not t.check(os.path.isdir(os.path.join(PY_DEPS, "numpy")) and os.path.isdir(os.path.join(PY_DEPS, "tokenizers")),
               f"numpy < 2 and tokenizers for the server's Python in {PY_DEPS}",
               "run scripts/install-deps.sh (or set TD_TRITON_PYTHONPATH)"):
    t.finish()
ROOT = os.path.join(TMP, "pytok")
shutil.rmtree(ROOT, ignore_errors=True)
os.makedirs(ROOT)


def set_param(model_dir, key, value):
    path = os.path.join(model_dir, "config.pbtxt")
    text = open(path).read()
    new, n = re.subn(r'(key:\s*"%s"\s*value\s*\{\s*string_value:\s*)"[^"]*"' % key, r'\1"%s"' % value, text)
    assert n == 1, f"{path} has no parameter {key}"
    open(path, "w").write(new)


def infer(proto, client, model, inputs, outputs):
    mod = th if proto == "http" else tg
    ins = []
    for name, arr in inputs.items():
        x = mod.InferInput(name, list(arr.shape), "BYTES")
        x.set_data_from_numpy(arr)
        ins.append(x)
    outs = [mod.InferRequestedOutput(o) for o in outputs]
    r = client.infer(model, ins, outputs=outs, timeout=300) if proto == "http" else \
        client.infer(model, ins, outputs=outs, client_timeout=300)
    return {o: r.as_numpy(o) for o in outputs}


def hf_batch(tok_path, texts, max_length, pad_token):
    """HF tokenizers' ids for one request: truncated at max_length, padded to the longest text with pad_token."""
    tok = Tokenizer.from_file(tok_path)
    tok.enable_truncation(max_length)
    tok.no_padding()
    enc = tok.encode_batch(texts)
    seq = max(len(e.ids) for e in enc)
    pad = tok.token_to_id(pad_token)
    ids = np.full((len(enc), seq), pad if pad is not None else 0, np.int64)
    mask, types = np.zeros_like(ids), np.zeros_like(ids)
    for r, e in enumerate(enc):
        ids[r, :len(e.ids)], mask[r, :len(e.ids)], types[r, :len(e.ids)] = e.ids, 1, e.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def config_of(model_dir):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2
    cfg = model_config_pb2.ModelConfig()
    text_format.Parse(open(os.path.join(model_dir, "config.pbtxt")).read(), cfg)
    return cfg


def params_of(model_dir):
    return {k: v.string_value for k, v in config_of(model_dir).parameters.items()}


def outputs_of(model_dir):
    return [o.name for o in config_of(model_dir).output]


# ---- the ONNX Runtime variant of each fixture: NAME (onnxruntime), NAME_tokenize (python), NAME_inference (ensemble)
convs = {}
for name in FIXTURES:
    out = os.path.join(ROOT, "conv", name)
    p = convert(os.path.join(FIX, "hf", name), out, "--triton-backend", "onnxruntime")
    if t.check(p.returncode == 0, f"{name}: convert --triton-backend onnxruntime", p.stderr[-800:]):
        convs[name] = out
if not convs:
    t.finish()
for name, out in convs.items():
    py = open(os.path.join(out, "triton", f"{name}_tokenize", "1", "model.py")).read()
    t.check("TDEPLOY_TRITON_PYTHONPATH" in py and params_of(os.path.join(out, "triton", f"{name}_tokenize")).get(
        "python_path") == "", f"{name}: model.py reads TDEPLOY_TRITON_PYTHONPATH; config has an empty python_path")


def check_tokenizer(srv, name, tok_dir, label):
    """NAME_tokenize over HTTP and gRPC against HF tokenizers (and transformers' ids from the fixture goldens)."""
    params = params_of(tok_dir)
    max_length = int(params["max_length"])
    outputs = outputs_of(tok_dir)
    gold = json.load(open(os.path.join(FIX, "hf", name, "tokenizer_golden.json"), encoding="utf-8"))
    texts = gold["texts"]
    http = th.InferenceServerClient(f"127.0.0.1:{srv.http}", connection_timeout=300, network_timeout=300)
    grpc = tg.InferenceServerClient(f"127.0.0.1:{srv.grpc}")
    for proto, client in (("http", http), ("grpc", grpc)):
        bad, golden_bad, n = [], [], 0
        for c0 in range(0, len(texts), 4):  # requests of 4 rows (max_batch_size is 8)
            chunk = texts[c0:c0 + 4]
            got = infer(proto, client, f"{name}_tokenize", {"TEXT": bytes_tensor(chunk)}, outputs)
            want = hf_batch(os.path.join(tok_dir, "1", "tokenizer.json"), chunk, max_length, params["pad_token"])
            for o in outputs:
                if got[o].shape != want[o].shape or not np.array_equal(got[o], want[o]):
                    bad.append((c0, o, got[o].shape, want[o].shape))
            for r, text_ids in enumerate(gold["ids"][c0:c0 + 4]):
                if len(text_ids) <= max_length:  # transformers' ids, untruncated: only the rows that fit
                    n += 1
                    row = got["input_ids"][r][got["attention_mask"][r].astype(bool)].tolist()
                    if row != text_ids:
                        golden_bad.append(c0 + r)
        t.check(not bad, f"{name}_tokenize ({label}): {proto}, {len(texts)} texts: {', '.join(outputs)} == HF "
                         f"tokenizers (truncation {max_length}, padding {params['pad_token']})", bad[:3])
        t.check(n > 0 and not golden_bad, f"{name}_tokenize ({label}): {proto}: {n} rows == transformers' ids "
                                          f"(tokenizer_golden.json)", golden_bad[:5])


# ---- 1: the repositories as written, TDEPLOY_TRITON_PYTHONPATH set for the server
env = dict(os.environ, TDEPLOY_TRITON_PYTHONPATH=PY_DEPS)
with Server([os.path.join(out, "triton") for out in convs.values()], "pytok-env", env=env) as srv:
    index = srv.index()
    log = srv.log_text()
    for name in convs:
        tok_dir = os.path.join(convs[name], "triton", f"{name}_tokenize")
        if t.check(srv.ready(f"{name}_tokenize"), f"{name}_tokenize loads (TDEPLOY_TRITON_PYTHONPATH)",
                   index.get(f"{name}_tokenize")):
            check_tokenizer(srv, name, tok_dir, "env")
        m = index.get(name, {})
        t.check(m.get("state") != "READY" and "onnxruntime" in m.get("reason", ""),
                f"{name} (platform onnxruntime_onnx): not loaded, the server names the missing onnxruntime backend",
                m)
        t.note(f"the nvidia-pytriton wheel has no ONNX Runtime backend: {name} is {m.get('state')}: "
               f"{m.get('reason', '').splitlines()[0] if m.get('reason') else ''}")
        t.check(not srv.ready(f"{name}_inference"), f"{name}_inference (ensemble) does not load without its ONNX step")

# ---- 2: python_path in config.pbtxt instead (first fixture), nothing for the second: it must fail, naming numpy;
# the ONNX step of the first fixture served by the tdeploy backend, so that its ensemble loads and runs
repo2 = os.path.join(ROOT, "param")
first, second = FIXTURES[0], FIXTURES[1]
repos2 = []
if first in convs:
    shutil.copytree(os.path.join(convs[first], "triton"), repo2, symlinks=True)
    set_param(os.path.join(repo2, f"{first}_tokenize"), "python_path", PY_DEPS)
    cfg_path = os.path.join(repo2, first, "config.pbtxt")
    cfg = open(cfg_path).read()
    cfg = cfg.replace('platform: "onnxruntime_onnx"\n', "").replace('backend: "onnxruntime"', 'backend: "tdeploy"')
    cfg = cfg.replace('default_model_filename: "model.onnx"\n', "")
    cfg += 'parameters {\n  key: "model_file"\n  value { string_value: "model.onnx" }\n}\n'
    open(cfg_path, "w").write(cfg)
    repos2.append(repo2)
if second in convs:
    repos2.append(os.path.join(convs[second], "triton"))
env = dict(os.environ)
env.pop("TDEPLOY_TRITON_PYTHONPATH", None)
with Server(repos2, "pytok-param", env=env) as srv:
    index = srv.index()
    if first in convs:
        if t.check(srv.ready(f"{first}_tokenize"), f"{first}_tokenize loads (config.pbtxt python_path)",
                   index.get(f"{first}_tokenize")):
            check_tokenizer(srv, first, os.path.join(repo2, f"{first}_tokenize"), "python_path")
        t.note(f"{first}_inference: its ONNX step runs on the tdeploy backend here (model.onnx, "
               f"backend \"tdeploy\"), standing in for the ONNX Runtime backend the wheel lacks")
        if t.check(srv.ready(f"{first}_inference"), f"{first}_inference (ensemble: python tokenizer -> model) loads",
                   index.get(f"{first}_inference")):
            gold = json.load(open(os.path.join(FIX, "hf", first, "tokenizer_golden.json"), encoding="utf-8"))
            texts = gold["texts"]
            tok_params = params_of(os.path.join(repo2, f"{first}_tokenize"))
            max_length = int(tok_params["max_length"])
            sess = ort.InferenceSession(os.path.join(repo2, first, "1", "model.onnx"),
                                        providers=["CPUExecutionProvider"])
            outs = outputs_of(os.path.join(repo2, f"{first}_inference"))
            http = th.InferenceServerClient(f"127.0.0.1:{srv.http}", connection_timeout=300, network_timeout=300)
            grpc = tg.InferenceServerClient(f"127.0.0.1:{srv.grpc}")
            for proto, client in (("http", http), ("grpc", grpc)):
                worst = (True, "")
                for c0 in range(0, len(texts), 4):
                    chunk = texts[c0:c0 + 4]
                    got = infer(proto, client, f"{first}_inference", {"TEXT": bytes_tensor(chunk)}, outs)
                    feeds = hf_batch(os.path.join(repo2, f"{first}_tokenize", "1", "tokenizer.json"), chunk,
                                     max_length, tok_params["pad_token"])
                    ref = dict(zip([o.name for o in sess.get_outputs()],
                                   sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})))
                    for o in outs:
                        ok, d = close(got[o], ref[o], TOL, TOL)
                        if worst[0]:
                            worst = (ok, d)
                t.check(worst[0], f"{first}_inference: {proto} TEXT ({len(texts)} rows) -> {', '.join(outs)} == "
                                  f"ONNX Runtime on HF tokenizers ids within {TOL}", worst[1])
    if second in convs:
        m = index.get(f"{second}_tokenize", {})
        t.check(m.get("state") != "READY" and "numpy" in m.get("reason", ""),
                f"{second}_tokenize without python_path or TDEPLOY_TRITON_PYTHONPATH: not loaded, naming numpy "
                f"(what the setting fixes)", m)
t.finish()
