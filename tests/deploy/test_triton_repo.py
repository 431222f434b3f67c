#!/usr/bin/env python3
"""tdeploy triton-repo against Triton's own ModelConfig schema, the ONNX files'
signatures (onnx), ONNX Runtime and HF tokenizers.

For fixture models (with and without token_type_ids, 2-D and 3-D outputs, a
decoder without a pad token) it writes a repository and checks:
  - every config.pbtxt parses with tritonclient's model_config_pb2 (text_format);
  - the ONNX model's config: platform, max_batch_size, inputs/outputs (names,
    TYPE_*, dims without the batch dim) equal to the ONNX graph's, dynamic
    batching and instance group as asked; model.onnx has the same bytes;
  - the ensemble wiring: every step's model exists in the repository, every
    input_map key is an input of that step's model and its value is an
    ensemble input or an earlier step's output, every output_map key is an
    output of the model, every ensemble output is produced with the model
    output's type and dims;
  - the tokenizer model.py, run with a stand-in triton_python_backend_utils,
    gives the ids, masks and types HF tokenizers / the fixtures' golden ids
    give, in the configured dtypes, and ONNX Runtime accepts them;
  - unbatched mode (max_batch_size 0), pbtxt string escaping, external data
    copying, adding a model to an existing repository and clean failure
    (tests/convert/test_outputs.py covers replacing and --force).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf import json_format, text_format
from onnx import TensorProto, helper
from tokenizers import Tokenizer
from tritonclient.grpc import model_config_pb2 as mc

FIX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
TMP = os.path.join(os.environ.get("TD_TMP", "/tmp"), "triton_repo")

results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(f"{'PASS' if cond else 'FAIL'}: {name}{'' if cond else ' -- ' + str(detail)[:2000]}", flush=True)


ONNX_TO_TRITON = {TensorProto.INT64: "TYPE_INT64", TensorProto.INT32: "TYPE_INT32", TensorProto.FLOAT: "TYPE_FP32",
                  TensorProto.FLOAT16: "TYPE_FP16", TensorProto.BFLOAT16: "TYPE_BF16", TensorProto.DOUBLE: "TYPE_FP64",
                  TensorProto.BOOL: "TYPE_BOOL", TensorProto.INT8: "TYPE_INT8", TensorProto.UINT8: "TYPE_UINT8"}


def load_config(path):
    cfg = mc.ModelConfig()
    with open(path, encoding="utf-8") as f:
        text_format.Parse(f.read(), cfg)
    return cfg


def onnx_signature(path):
    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}

    def sig(v):
        t = v.type.tensor_type
        return {"name": v.name, "type": ONNX_TO_TRITON[t.elem_type],
                "dims": [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim]}
    return [sig(v) for v in m.graph.input if v.name not in inits], [sig(v) for v in m.graph.output]


def io_list(entries):
    return [{"name": e.name, "type": mc.DataType.Name(e.data_type), "dims": list(e.dims)} for e in entries]


def tdeploy(*args):
    # this file tests the ONNX Runtime layout; tests/triton/ serves the tdeploy backend's (the default)
    return subprocess.run([TD_BIN, "triton-repo", "--triton-backend", "onnxruntime", *args], capture_output=True,
                          text=True, timeout=120)


# ---------------------------------------------------------------- stand-in for Triton's Python backend utils
class _Tensor:
    def __init__(self, name, array):
        self._name, self._array = name, array

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class _Response:
    def __init__(self, output_tensors, error=None):
        self.output_tensors, self.error = output_tensors, error


class _Error:
    def __init__(self, message):
        self.message = message


class _Request:
    def __init__(self, **inputs):
        self.inputs = {k: _Tensor(k, v) for k, v in inputs.items()}


_NP = {"TYPE_INT64": np.int64, "TYPE_INT32": np.int32, "TYPE_FP32": np.float32, "TYPE_FP16": np.float16,
       "TYPE_STRING": np.object_, "TYPE_BOOL": np.bool_}
pb_utils = types.ModuleType("triton_python_backend_utils")
pb_utils.Tensor = _Tensor
pb_utils.InferenceResponse = _Response
pb_utils.TritonError = _Error
pb_utils.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
pb_utils.triton_string_to_numpy = lambda s: _NP[s]
sys.modules["triton_python_backend_utils"] = pb_utils


def load_tokenizer_model(model_dir):
    """Import model.py and initialize it the way Triton does (model_config as JSON)."""
    spec = importlib.util.spec_from_file_location(f"tok_{abs(hash(model_dir))}", os.path.join(model_dir, "1", "model.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = load_config(os.path.join(model_dir, "config.pbtxt"))
    model = mod.TritonPythonModel()
    model.initialize({"model_config": json.dumps(json_format.MessageToDict(cfg, preserving_proto_field_name=True)),
                      "model_repository": model_dir, "model_version": "1", "model_name": cfg.name})
    return model, cfg


def text_batch(texts, batched):
    arr = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    return arr.reshape(-1, 1) if batched else arr


def check_ensemble(repo, name, model_cfg, tok_cfg, ens_cfg):
    configs = {model_cfg.name: model_cfg, tok_cfg.name: tok_cfg}
    check(f"{name}: ensemble platform", ens_cfg.platform == "ensemble")
    check(f"{name}: ensemble version dir exists", os.path.isdir(os.path.join(repo, ens_cfg.name, "1")))
    available = {i.name for i in ens_cfg.input}
    produced = []
    steps = ens_cfg.ensemble_scheduling.step
    check(f"{name}: two steps, tokenizer then model",
          [s.model_name for s in steps] == [tok_cfg.name, model_cfg.name], [s.model_name for s in steps])
    for s in steps:
        sub = configs.get(s.model_name)
        check(f"{name}: step model {s.model_name} is in the repository",
              sub is not None and os.path.isfile(os.path.join(repo, s.model_name, "config.pbtxt")))
        if sub is None:
            continue
        sub_in = {i.name: i for i in sub.input}
        sub_out = {o.name: o for o in sub.output}
        check(f"{name}: {s.model_name} input_map keys are its inputs and cover them",
              set(s.input_map) == set(sub_in), (set(s.input_map), set(sub_in)))
        check(f"{name}: {s.model_name} input_map values exist when the step runs",
              all(v in available for v in s.input_map.values()), (dict(s.input_map), available))
        check(f"{name}: {s.model_name} output_map keys are its outputs", set(s.output_map) <= set(sub_out))
        for k, v in s.output_map.items():
            available.add(v)
            produced.append((v, sub_out[k]))
    prod = {v: o for v, o in produced}
    check(f"{name}: no tensor produced twice", len(prod) == len(produced))
    for o in ens_cfg.output:
        src = prod.get(o.name)
        check(f"{name}: ensemble output {o.name} produced with the same type and dims",
              src is not None and src.data_type == o.data_type and list(src.dims) == list(o.dims))
    # the tokenizer's outputs feed the model's inputs with the same types and compatible dims
    for i in model_cfg.input:
        t = {o.name: o for o in tok_cfg.output}.get(i.name)
        check(f"{name}: tokenizer output {i.name} has the model input's type",
              t is not None and t.data_type == i.data_type and len(t.dims) == len(i.dims))


def check_repo(name, onnx_path, tok_dir, batch, instances, device, extra=()):
    out = os.path.join(TMP, name)
    args = [onnx_path, "--name", name, "--task", "sentiment-analysis", "--batch-size", *map(str, batch),
            "--nb-instances", str(instances), "--device", device, "-o", out, *extra]
    if tok_dir:
        args += ["--tokenizer", tok_dir]
    p = tdeploy(*args)
    check(f"{name}: triton-repo exits 0", p.returncode == 0, p.stderr)
    if p.returncode:
        return None
    batched = batch[2] > 0
    ins, outs = onnx_signature(onnx_path)
    cfg = load_config(os.path.join(out, name, "config.pbtxt"))
    check(f"{name}: name and platform", cfg.name == name and cfg.platform == "onnxruntime_onnx", cfg)
    check(f"{name}: max_batch_size", cfg.max_batch_size == batch[2])
    drop = 1 if batched else 0
    want_in = [{**s, "dims": s["dims"][drop:] or [1]} for s in ins]
    want_out = [{**s, "dims": s["dims"][drop:] or [1]} for s in outs]
    check(f"{name}: inputs match the ONNX graph", io_list(cfg.input) == want_in, (io_list(cfg.input), want_in))
    check(f"{name}: outputs match the ONNX graph", io_list(cfg.output) == want_out, (io_list(cfg.output), want_out))
    if batched:
        want_pref = [batch[1]] + ([batch[2]] if batch[2] != batch[1] else [])
        check(f"{name}: dynamic batching", cfg.HasField("dynamic_batching")
              and list(cfg.dynamic_batching.preferred_batch_size) == want_pref
              and cfg.dynamic_batching.max_queue_delay_microseconds == 0, cfg.dynamic_batching)
    else:
        check(f"{name}: no dynamic batching without a batch dim", not cfg.HasField("dynamic_batching"))
    kind = mc.ModelInstanceGroup.KIND_GPU if device == "gpu" else mc.ModelInstanceGroup.KIND_CPU
    check(f"{name}: instance group", len(cfg.instance_group) == 1 and cfg.instance_group[0].count == instances
          and cfg.instance_group[0].kind == kind, cfg.instance_group)
    with open(onnx_path, "rb") as a, open(os.path.join(out, name, "1", "model.onnx"), "rb") as b:
        check(f"{name}: model.onnx is the same file", a.read() == b.read())
    sess = ort.InferenceSession(os.path.join(out, name, "1", "model.onnx"), providers=["CPUExecutionProvider"])
    if not tok_dir:
        return out, cfg, sess
    tok_cfg = load_config(os.path.join(out, name + "_tokenize", "config.pbtxt"))
    ens_cfg = load_config(os.path.join(out, name + "_inference", "config.pbtxt"))
    check(f"{name}: tokenizer is a python backend model on CPU", tok_cfg.backend == "python"
          and tok_cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU)
    text_in = tok_cfg.input[0]
    check(f"{name}: TEXT is TYPE_STRING {[1] if batched else [-1]}", len(tok_cfg.input) == 1 and text_in.name == "TEXT"
          and text_in.data_type == mc.TYPE_STRING and list(text_in.dims) == ([1] if batched else [-1]))
    with open(os.path.join(tok_dir, "tokenizer.json"), "rb") as a, \
            open(os.path.join(out, name + "_tokenize", "1", "tokenizer.json"), "rb") as b:
        check(f"{name}: tokenizer.json copied", a.read() == b.read())
    check_ensemble(out, name, cfg, tok_cfg, ens_cfg)
    check(f"{name}: task recorded", ens_cfg.parameters["task"].string_value == "classification")  # the alias, recorded by its canonical name
    return out, cfg, sess


def check_tokenizer_outputs(name, out, tok_dir, sess, batched, max_length, golden):
    model, tok_cfg = load_tokenizer_model(os.path.join(out, name + "_tokenize"))
    ref = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    ref.enable_truncation(max_length)
    out_names = [o.name for o in tok_cfg.output]
    dtypes = {o.name: _NP[mc.DataType.Name(o.data_type)] for o in tok_cfg.output}
    # one text per request: the golden ids of the fixture (made by transformers' tokenizer)
    singles = [(t, ids) for t, ids in zip(golden["texts"], golden["ids"]) if len(ids) <= max_length]
    resps = model.execute([_Request(TEXT=text_batch([t], batched)) for t, _ in singles])
    ok = len(resps) == len(singles)
    for (t, ids), r in zip(singles, resps):
        got = {x.name(): x.as_numpy() for x in r.output_tensors}
        ok = ok and r.error is None and got["input_ids"].tolist() == [ids]
        ok = ok and all(got[n].dtype == dtypes[n] for n in out_names)
    check(f"{name}: model.py single texts equal the golden ids ({len(singles)} texts)", ok)
    # a batch request: padded to the longest, truncated at max_length; same as HF tokenizers and golden batch
    texts = golden["batch_texts"]
    r = model.execute([_Request(TEXT=text_batch(texts, batched))])[0]
    got = {x.name(): x.as_numpy() for x in r.output_tensors}
    ref.enable_padding(pad_id=ref.token_to_id(tok_cfg.parameters["pad_token"].string_value) or 0,
                       pad_token=tok_cfg.parameters["pad_token"].string_value or "[PAD]")
    enc = ref.encode_batch(texts)
    want = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
            "token_type_ids": [e.type_ids for e in enc]}
    check(f"{name}: batch outputs are exactly the model's inputs", sorted(got) == sorted(i.name for i in sess.get_inputs()))
    check(f"{name}: batch equals HF tokenizers", all(got[k].tolist() == want[k] for k in got), got)
    if golden.get("batch_max_length") == max_length:
        check(f"{name}: batch equals the golden padded batch",
              got["input_ids"].tolist() == golden["batch_input_ids"]
              and got["attention_mask"].tolist() == golden["batch_attention_mask"])
    res = sess.run(None, {k: v for k, v in got.items()})
    check(f"{name}: ONNX Runtime runs on the tokenizer's outputs", res and res[0].shape[0] == len(texts))
    # a bad request gets an error response, the others still succeed
    rs = model.execute([_Request(TEXT=text_batch(["fine"], batched)), _Request()])
    check(f"{name}: a broken request fails alone", rs[0].error is None and rs[1].error is not None)


def golden_of(model):
    with open(os.path.join(FIX, "hf", model, "tokenizer_golden.json"), encoding="utf-8") as f:
        return json.load(f)


if not os.path.isdir(os.path.join(FIX, "onnx")):
    print(f"FAIL: fixtures {FIX} not found (set TD_FIXTURES to the shared fixtures directory)")
    print("0 passed, 1 failed")
    sys.exit(1)
shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)


def listdir(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else None


# ---- real fixtures with the text ensemble
for name, onnx_name, hf, batch, inst, dev in [
    ("bert_seqcls", "bert-seqcls", "bert-seqcls", (1, 4, 16), 2, "cpu"),
    ("distilbert", "distilbert-seqcls", "distilbert-seqcls", (1, 8, 8), 1, "gpu"),
    ("gpt2", "gpt2-lm", "gpt2-lm", (1, 2, 4), 1, "cpu"),
    ("xlmr", "xlmr-base", "xlmr-base", (1, 8, 32), 3, "cpu"),
]:
    onnx_path = os.path.join(FIX, "onnx", f"{onnx_name}.torchscript.onnx")
    tok_dir = os.path.join(FIX, "hf", hf)
    r = check_repo(name, onnx_path, tok_dir, batch, inst, dev, extra=("--max-length", "16"))
    if r:
        check_tokenizer_outputs(name, r[0], tok_dir, r[2], True, 16, golden_of(hf))

# ---- unbatched: max_batch_size 0, full dims, TEXT [-1]
onnx_path = os.path.join(FIX, "onnx", "bert-base.torchscript.onnx")
r = check_repo("bert_unbatched", onnx_path, os.path.join(FIX, "hf", "bert-base"), (0, 0, 0), 1, "cpu",
               extra=("--max-length", "16"))
if r:
    check_tokenizer_outputs("bert_unbatched", r[0], os.path.join(FIX, "hf", "bert-base"), r[2], False, 16,
                            golden_of("bert-base"))

# ---- odd tensor names (escaping), fp16, external data, no tokenizer
odd_dir = os.path.join(TMP, "odd_src")
os.makedirs(os.path.join(odd_dir, "weights"))
in_name, out_name = 'we"ird\\ näme\n\t', "out/é 😀"
w = helper.make_tensor("w", TensorProto.FLOAT16, [4], np.arange(4, dtype=np.float16).tobytes(), raw=True)
graph = helper.make_graph([helper.make_node("Add", [in_name, "w"], [out_name])], "odd",
                          [helper.make_tensor_value_info(in_name, TensorProto.FLOAT16, ["batch", 4])],
                          [helper.make_tensor_value_info(out_name, TensorProto.FLOAT16, ["batch", 4])], [w])
odd_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
odd_path = os.path.join(odd_dir, "odd.onnx")
onnx.save_model(odd_model, odd_path, save_as_external_data=True, all_tensors_to_one_file=True,
                location="weights/odd.bin", size_threshold=0)
r = check_repo("odd", odd_path, None, (2, 2, 8), 1, "cpu")
if r:
    out, cfg, sess = r
    check("odd: escaped names parse back exactly", cfg.input[0].name == in_name and cfg.output[0].name == out_name,
          (cfg.input[0].name, cfg.output[0].name))
    ext = os.path.join(out, "odd", "1", "weights", "odd.bin")
    check("odd: external data placed next to model.onnx", os.path.isfile(ext))
    x = np.ones((3, 4), dtype=np.float16)
    check("odd: ONNX Runtime loads the copied model with its external data",
          np.array_equal(sess.run(None, {in_name: x})[0], x + np.arange(4, dtype=np.float16)))

# ---- a fixed sequence length: the tokenizer pads and truncates to it
fixed_dir = os.path.join(TMP, "fixed_src")
os.makedirs(fixed_dir)
graph = helper.make_graph(
    [helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked_ids"])], "fixed",
    [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", 8]),
     helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", 8])],
    [helper.make_tensor_value_info("masked_ids", TensorProto.INT32, ["batch", 8])])
fixed_path = os.path.join(fixed_dir, "fixed.onnx")
onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), fixed_path)
tok_dir = os.path.join(FIX, "hf", "distilbert-seqcls")
r = check_repo("fixed", fixed_path, tok_dir, (1, 4, 4), 1, "cpu")
if r:
    out, cfg, sess = r
    model, tok_cfg = load_tokenizer_model(os.path.join(out, "fixed_tokenize"))
    texts = ["short", "The quick brown fox jumps over the lazy dog again and again."]
    resp = model.execute([_Request(TEXT=text_batch(texts, True))])[0]
    got = {x.name(): x.as_numpy() for x in resp.output_tensors}
    ref = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    ref.enable_truncation(8)
    ref.enable_padding(pad_id=ref.token_to_id("[PAD]"), pad_token="[PAD]", length=8)
    want = ref.encode_batch(texts)
    check("fixed: int32 ids padded and truncated to the model's 8",
          got["input_ids"].dtype == np.int32 and got["input_ids"].tolist() == [e.ids for e in want]
          and got["attention_mask"].tolist() == [e.attention_mask for e in want], got)
    check("fixed: ONNX Runtime accepts them", sess.run(None, got)[0].shape == (2, 8))
    p = tdeploy(fixed_path, "--name", "fixed2", "--tokenizer", tok_dir, "--max-length", "16", "-o",
                os.path.join(TMP, "fixed2"))
    check("fixed: a --max-length that contradicts the fixed length is refused", p.returncode != 0
          and "fixed" in p.stderr, p.stderr)

# ---- atomic replacement and clean failure
target = os.path.join(TMP, "replace")
p1 = tdeploy(os.path.join(FIX, "onnx", "bert-seqcls.torchscript.onnx"), "--name", "first", "-o", target)
p2 = tdeploy(os.path.join(FIX, "onnx", "bert-seqcls.torchscript.onnx"), "--name", "second", "-o", target)
check("replace: both runs exit 0", p1.returncode == 0 and p2.returncode == 0, p1.stderr + p2.stderr)
check("replace: a second model joins the repository, the first stays",
      listdir(target) == [".tdeploy-output", "first", "second"], listdir(target))
bad_tok = os.path.join(TMP, "no_tokenizer_here")
os.makedirs(bad_tok)
p3 = tdeploy(os.path.join(FIX, "onnx", "bert-seqcls.torchscript.onnx"), "--name", "third", "--tokenizer", bad_tok,
             "-o", target)
check("failure: missing tokenizer.json fails clearly", p3.returncode != 0 and "tokenizer.json" in p3.stderr, p3.stderr)
check("failure: the existing repository is untouched", listdir(target) == [".tdeploy-output", "first", "second"],
      listdir(target))
check("failure: no temporary directory left", not [d for d in os.listdir(TMP) if ".tmp." in d], os.listdir(TMP))
p4 = tdeploy(os.path.join(FIX, "onnx", "bert-seqcls.torchscript.onnx"), "--name", "../evil", "-o", target)
check("bad model name refused", p4.returncode != 0 and "model name" in p4.stderr, p4.stderr)
p5 = tdeploy(os.path.join(FIX, "onnx", "bert-seqcls.torchscript.onnx"), "--batch-size", "4", "2", "8", "-o", target)
check("min > opt refused", p5.returncode != 0, p5.stderr)
junk = os.path.join(TMP, "junk.onnx")
with open(junk, "wb") as f:
    f.write(b"\xff\x00 definitely not protobuf" * 10)
p6 = tdeploy(junk, "-o", os.path.join(TMP, "junk_out"))
check("non-ONNX input refused", p6.returncode != 0 and "ONNX" in p6.stderr and not os.path.exists(os.path.join(TMP, "junk_out")),
      p6.stderr)

failed = results.count(False)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
