"""Config auto-complete of the tdeploy backend against the real tritonserver (2.51.0):
a model folder whose config.pbtxt says little more than `backend: "tdeploy"` loads
with auto-complete on (the server's default), and the config the server then reports
(GET /v2/models/NAME/config) has max_batch_size, dynamic batching, the graph's token
inputs (+ TEXT / TEXT_PAIR when tokenizer.json is there) and its outputs, filled from
the model file; inference through the completed config equals ONNX Runtime. A value
the config does give (max_batch_size) is kept. With --disable-auto-complete-config
the same minimal config fails to load, with the reason."""
import json
import os
import shutil
import sys
import urllib.request

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as tg
import tritonclient.http as th
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from triton_common import FIX, TMP, Server, Tally, bytes_tensor, close, convert, load_safetensors, \
    require_server  # noqa: E402

TOL = 1e-5
t = Tally()
require_server(t)
ROOT = os.path.join(TMP, "autocomplete")
shutil.rmtree(ROOT, ignore_errors=True)
os.makedirs(ROOT)

conv = {}
for name in ("bert-seqcls", "bert-tokcls"):
    out = os.path.join(ROOT, "conv", name)
    p = convert(os.path.join(FIX, "hf", name), out, "--triton-backend", "tdeploy")
    if t.check(p.returncode == 0, f"{name}: convert", p.stderr[-600:]):
        conv[name] = out
if len(conv) < 2:
    t.finish()

# seqcls_min: the converted model + its tokenizer files under a config of one line
# tokcls_ids: the model file alone (no tokenizer: token tensors only), the config giving only max_batch_size
repo = os.path.join(ROOT, "repo")
models = {"seqcls_min": ("bert-seqcls", True, 'backend: "tdeploy"\n'),
          "tokcls_ids": ("bert-tokcls", False, 'backend: "tdeploy"\nmax_batch_size: 2\n')}
for model, (src, tok, cfg) in models.items():
    ver = os.path.join(repo, model, "1")
    os.makedirs(ver)
    shutil.copy(os.path.join(conv[src], "triton", src, "1", "model-optimized.onnx"), ver)
    for f in ("tokenizer.json", "tokenizer_config.json") if tok else ():
        shutil.copy(os.path.join(conv[src], "triton", src, "1", f), ver)
    with open(os.path.join(repo, model, "config.pbtxt"), "w") as f:
        f.write(cfg)


def served_config(srv, model):
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.http}/v2/models/{model}/config", timeout=30) as r:
        return json.loads(r.read())


def ort_outputs(path, feeds):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()],
                    sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})))


with Server([repo, os.path.join(conv["bert-seqcls"], "triton")], "autocomplete") as srv:
    index = srv.index()
    for model in models:
        t.check(srv.ready(model), f"{model}: a minimal config.pbtxt loads with auto-complete on", index.get(model))
    if srv.ready("seqcls_min"):
        cfg = served_config(srv, "seqcls_min")
        ins = {i["name"]: i for i in cfg.get("input", [])}
        outs = {o["name"]: o for o in cfg.get("output", [])}
        t.check(cfg.get("max_batch_size") == 4 and "dynamic_batching" in cfg,
                "seqcls_min: max_batch_size 4 and dynamic batching filled in", cfg.get("max_batch_size"))
        t.check(set(ins) == {"input_ids", "attention_mask", "token_type_ids", "TEXT", "TEXT_PAIR"} and
                ins["input_ids"]["data_type"] == "TYPE_INT64" and [int(d) for d in ins["input_ids"]["dims"]] == [-1]
                and ins["TEXT"]["data_type"] == "TYPE_STRING" and ins["input_ids"].get("allow_ragged_batch"),
                "seqcls_min: inputs filled from the graph (+ TEXT, TEXT_PAIR: tokenizer.json is there)", ins)
        t.check(set(outs) == {"logits"} and outs["logits"]["data_type"] == "TYPE_FP32" and
                [int(d) for d in outs["logits"]["dims"]] == [3], "seqcls_min: output logits [3] filled in", outs)
        gold = json.load(open(os.path.join(FIX, "hf", "bert-seqcls", "tokenizer_golden.json"), encoding="utf-8"))
        texts = gold["texts"][:4]
        tok = Tokenizer.from_file(os.path.join(repo, "seqcls_min", "1", "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        enc = [tok.encode(x) for x in texts]
        seq = max(len(e.ids) for e in enc)
        feeds = {k: np.zeros((len(enc), seq), np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        for r, e in enumerate(enc):
            n = len(e.ids)
            feeds["input_ids"][r, :n], feeds["attention_mask"][r, :n], feeds["token_type_ids"][r, :n] = \
                e.ids, 1, e.type_ids
        ref = ort_outputs(os.path.join(repo, "seqcls_min", "1", "model-optimized.onnx"), feeds)["logits"]
        for proto, mod, client in (("http", th, th.InferenceServerClient(f"127.0.0.1:{srv.http}")),
                                   ("grpc", tg, tg.InferenceServerClient(f"127.0.0.1:{srv.grpc}"))):
            x = mod.InferInput("TEXT", [len(texts), 1], "BYTES")
            x.set_data_from_numpy(bytes_tensor(texts))
            got = client.infer("seqcls_min", [x]).as_numpy("logits")
            full = client.infer("bert-seqcls", [x]).as_numpy("logits")
            ok, d = close(got, full, 1e-6)
            # equal only if texts are cut at 64 as convert's max_length says (tokenizer.json's own truncation is 24,
            # two of these texts are longer): with no max_length in the config the backend takes the model's own
            t.check(ok, f"seqcls_min: {proto} TEXT == the same request to the convert-written bert-seqcls", d)
            ok, d = close(got, ref, TOL, TOL)
            t.check(ok, f"seqcls_min: {proto} TEXT through the completed config == ONNX Runtime within {TOL}", d)
            client.close()
    if srv.ready("tokcls_ids"):
        cfg = served_config(srv, "tokcls_ids")
        ins = {i["name"] for i in cfg.get("input", [])}
        outs = {o["name"]: [int(d) for d in o["dims"]] for o in cfg.get("output", [])}
        t.check(cfg.get("max_batch_size") == 2, "tokcls_ids: the config's max_batch_size 2 is kept",
                cfg.get("max_batch_size"))
        t.check("input_ids" in ins and "TEXT" not in ins, "tokcls_ids: token inputs only (no tokenizer.json)", ins)
        t.check(list(outs.values()) and all(d[0] == -1 and len(d) == 2 for d in outs.values()),
                "tokcls_ids: per-token output dims [-1, labels]", outs)
        g = load_safetensors(os.path.join(FIX, "hf", "bert-tokcls", "golden.safetensors"))
        feeds = {k[6:]: v for k, v in g.items() if k.startswith("input.")}
        feeds = {k: feeds[k][:2] for k in ("input_ids", "attention_mask", "token_type_ids") if k in feeds}
        ref = ort_outputs(os.path.join(repo, "tokcls_ids", "1", "model-optimized.onnx"),
                          {k: v.astype(np.int64) for k, v in feeds.items()})
        client = tg.InferenceServerClient(f"127.0.0.1:{srv.grpc}")
        ins_ = []
        for k, v in feeds.items():
            x = tg.InferInput(k, list(v.shape), "INT64")
            x.set_data_from_numpy(v.astype(np.int64))
            ins_.append(x)
        res = client.infer("tokcls_ids", ins_)
        mask = feeds["attention_mask"].astype(bool)
        for o in outs:
            ok, d = close(res.as_numpy(o)[mask], ref[o][mask], TOL, TOL)
            t.check(ok, f"tokcls_ids: grpc token tensors, {o} == ONNX Runtime within {TOL}", d)
        client.close()

with Server([repo], "no-autocomplete", extra=["--disable-auto-complete-config"]) as srv:
    m = srv.index().get("seqcls_min", {})
    t.check(m.get("state") != "READY" and "max_batch_size is 0" in m.get("reason", ""),
            "seqcls_min with --disable-auto-complete-config: not loaded, the reason names what the config lacks", m)
t.finish()
