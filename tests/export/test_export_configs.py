"""tdeploy export on configurations the fixtures do not cover (activations, eps,
head counts, label counts, token types, ELECTRA projection, heads of every family,
sentence-transformers pooling modes, bf16 checkpoints, opsets), on random-weight
models written by hf_random_model.py; ONNX Runtime on the export is compared with
the independent numpy implementation in numpy_reference.py. Then error cases:
non-zero exit, a message naming the problem, and no output file left behind."""
import json
import os
import shutil

import ml_dtypes  # installed with onnx; numpy has no bfloat16
import numpy as np
from safetensors.numpy import load_file, save_file

import hf_random_model as gen
import numpy_reference as ref
from export_common import TMP, Tally, checked_session, max_abs, metadata, run, run_export

t = Tally()
root = os.path.join(TMP, "export_configs")
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root)


def make_inputs(c, rng, batch=3, seq=11, token_types=True):
    pad = c.get("pad_token_id", 0)
    vocab = c["vocab_size"]
    lengths = [seq, max(2, seq - 4), max(1, seq - 8)][:batch]
    ids = np.full((batch, seq), pad, np.int64)
    mask = np.zeros((batch, seq), np.int64)
    tt = np.zeros((batch, seq), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(3, vocab, n)
        mask[i, :n] = 1
        if token_types:
            tt[i, n // 2:n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}


def check_case(label, model_type, arch, task, *export_args, input_names=None, weights_dtype=np.float32,
               labels=None, st=None, expect_inputs=None, tol=1e-4, **config):
    """Write a model, export it, compare ORT with the numpy reference."""
    d = os.path.join(root, label)
    c, w = gen.write_model(d, model_type, arch, seed=len(label), input_names=input_names,
                           weights_dtype=weights_dtype, labels=labels, **config)
    pooling, normalize = None, False
    if st is not None:
        pooling, normalize = st
        write_sentence_transformers(d, pooling, normalize)
    out = os.path.join(root, label + ".onnx")
    p = run_export(d, out, *export_args)
    if not t.check(p.returncode == 0, f"{label}: export", p.stderr.strip()[-400:]):
        return
    try:
        model, sess = checked_session(out)
    except Exception as e:
        t.check(False, f"{label}: onnx.checker + ORT", str(e)[:400])
        return
    names = [i.name for i in sess.get_inputs()]
    if expect_inputs is not None:
        t.check(names == expect_inputs, f"{label}: inputs {expect_inputs}", str(names))
    t.check(metadata(model).get("task") == task, f"{label}: task {task}", str(metadata(model).get("task")))
    rng = np.random.default_rng(7)
    feeds = make_inputs(c, rng, token_types="token_type_ids" in names)
    res = run(sess, feeds, int32="--int32-inputs" in export_args)
    wf = {k: v.astype(np.float32) if v.dtype != np.float32 else v for k, v in w.items()}
    if weights_dtype != np.float32:  # bf16 checkpoint: the reference sees the same rounded values
        wf = {k: np.asarray(v, np.float32) for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
    want = ref.forward(c, wf, arch, feeds["input_ids"], feeds["attention_mask"],
                       feeds["token_type_ids"] if "token_type_ids" in names else None, task=task, pooling=pooling,
                       normalize=normalize)
    t.check(sorted(res) == sorted(want), f"{label}: outputs {sorted(want)}", str(sorted(res)))
    for k, v in want.items():
        if k in res:
            err = max_abs(res[k], v)
            t.check(err <= tol, f"{label}: {k} vs numpy reference", f"max abs error {err:.2e}")


def write_sentence_transformers(d, pooling, normalize, old_format=None):
    mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        mods.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    with open(os.path.join(d, "modules.json"), "w") as f:
        json.dump(mods, f)
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    keys = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
            "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens"}
    if len(pooling) == 1 and pooling[0] != "mean_sqrt_len":
        cfg = {"word_embedding_dimension": 32, "pooling_mode": pooling[0]}  # newer sentence-transformers
    else:
        cfg = {"word_embedding_dimension": 32, **{v: k in pooling for k, v in keys.items()}}
    with open(os.path.join(d, "1_Pooling", "config.json"), "w") as f:
        json.dump(cfg, f)


FE, CLS, TOK, QA, EMB = ("feature-extraction", "classification", "token-classification", "question-answering",
                         "embedding")

# activations, eps and head counts
check_case("bert_relu", "bert", "BertModel", FE, hidden_act="relu")
check_case("bert_gelu_new_heads3", "bert", "BertModel", FE, hidden_act="gelu_new", hidden_size=48,
           num_attention_heads=3, intermediate_size=80)
check_case("bert_silu_eps1e-5_heads1", "bert", "BertModel", FE, hidden_act="silu", layer_norm_eps=1e-5,
           num_attention_heads=1)
check_case("bert_gelu_pytorch_tanh_heads16", "bert", "BertModel", FE, hidden_act="gelu_pytorch_tanh",
           hidden_size=64, num_attention_heads=16)
for act in ("gelu_fast", "quick_gelu", "gelu_10", "relu6", "leaky_relu", "mish", "tanh", "sigmoid", "swish",
            "linear", "laplace", "relu2", "gelu_accurate"):
    check_case(f"bert_{act}", "bert", "BertModel", FE, hidden_act=act, num_hidden_layers=1)
# labels, token types, heads of every family
check_case("bert_seqcls_1label_type1", "bert", "BertForSequenceClassification", CLS, num_labels=1,
           type_vocab_size=1, expect_inputs=["input_ids", "attention_mask"])
check_case("bert_tokcls_7labels", "bert", "BertForTokenClassification", TOK, labels=7)
check_case("bert_qa_eps1e-6", "bert", "BertForQuestionAnswering", QA, layer_norm_eps=1e-6)
check_case("bert_tokenizer_no_token_types", "bert", "BertModel", FE, input_names=["input_ids", "attention_mask"],
           expect_inputs=["input_ids", "attention_mask"])
check_case("roberta_seqcls_7labels_quick_gelu", "roberta", "RobertaForSequenceClassification", CLS, labels=7,
           hidden_act="quick_gelu", expect_inputs=["input_ids", "attention_mask"])
check_case("roberta_qa", "roberta", "RobertaForQuestionAnswering", QA)
check_case("xlmr_tokcls_3labels", "xlm-roberta", "XLMRobertaForTokenClassification", TOK, labels=3,
           pad_token_id=1)
check_case("distilbert_tokcls_3labels_relu", "distilbert", "DistilBertForTokenClassification", TOK, labels=3,
           activation="relu", expect_inputs=["input_ids", "attention_mask"])
check_case("distilbert_qa", "distilbert", "DistilBertForQuestionAnswering", QA)
check_case("distilbert_base", "distilbert", "DistilBertModel", FE, n_heads=2)
check_case("electra_seqcls_projection", "electra", "ElectraForSequenceClassification", CLS, labels=3,
           embedding_size=16)
check_case("electra_seqcls_no_projection", "electra", "ElectraForSequenceClassification", CLS, labels=3,
           embedding_size=32)
check_case("electra_discriminator_gelu_new", "electra", "ElectraForPreTraining", TOK, hidden_act="gelu_new")
check_case("electra_tokcls", "electra", "ElectraForTokenClassification", TOK, labels=5)
check_case("electra_qa", "electra", "ElectraForQuestionAnswering", QA)
# checkpoint dtypes, export dtypes, opsets, input types
check_case("bert_bf16_checkpoint", "bert", "BertForSequenceClassification", CLS, weights_dtype=ml_dtypes.bfloat16)
check_case("roberta_opset14_int32", "roberta", "RobertaModel", FE, "--opset", "14", "--int32-inputs")
check_case("distilbert_opset21", "distilbert", "DistilBertForSequenceClassification", CLS, "--opset", "21")
# sentence-transformers pooling
check_case("st_max_normalize_opset14", "bert", "BertModel", EMB, "--opset", "14", st=(["max"], True))
check_case("st_max_opset18", "bert", "BertModel", EMB, "--opset", "18", st=(["max"], False))
check_case("st_cls", "bert", "BertModel", EMB, st=(["cls"], True))
check_case("st_mean_sqrt_len", "roberta", "RobertaModel", EMB, st=(["mean_sqrt_len"], False))
check_case("st_cls_mean_concat", "distilbert", "DistilBertModel", EMB, st=(["cls", "mean"], True))
check_case("st_features_task", "bert", "BertModel", FE, "--task", "feature-extraction", st=(["mean"], True))

# a fully masked row must give finite outputs (no NaN from the mask)
d = os.path.join(root, "bert_relu")
_, sess = checked_session(os.path.join(root, "bert_relu.onnx"))
feeds = make_inputs(gen.default_config("bert"), np.random.default_rng(1))
feeds["attention_mask"][2, :] = 0
r = run(sess, feeds)
t.check(all(np.isfinite(v).all() for v in r.values()), "fully masked row: outputs finite")


# ---------------- errors ----------------
def check_error(label, model_dir, must_name, *args):
    out_dir = os.path.join(root, "err_out_" + label)
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "model.onnx")
    p = run_export(model_dir, out, *args)
    msg = p.stderr.strip()
    left = os.listdir(out_dir)
    names = all(s in msg for s in must_name)
    t.check(p.returncode != 0 and names and not left, f"error {label}",
            f"exit {p.returncode}, message names {must_name}: {names}, files left: {left}; stderr: {msg[-300:]}")


def model_with(label, model_type, arch, **config):
    d = os.path.join(root, label)
    gen.write_model(d, model_type, arch, **config)
    return d


d = model_with("err_missing", "bert", "BertForSequenceClassification")
w = load_file(os.path.join(d, "model.safetensors"))
del w["bert.encoder.layer.1.attention.self.key.weight"]
save_file(w, os.path.join(d, "model.safetensors"))
check_error("missing tensor", d, ["bert.encoder.layer.1.attention.self.key.weight"])

d = model_with("err_shape", "bert", "BertModel")
w = load_file(os.path.join(d, "model.safetensors"))
w["encoder.layer.0.intermediate.dense.weight"] = np.zeros((60, 32), np.float32)
save_file(w, os.path.join(d, "model.safetensors"))
check_error("wrong shape", d, ["encoder.layer.0.intermediate.dense.weight", "[60, 32]", "[64, 32]"])

d = model_with("err_act", "bert", "BertModel", hidden_act="prelu")
check_error("unsupported activation", d, ["prelu"])
d = model_with("err_act2", "bert", "BertModel", hidden_act="swiglu_nonexistent")
check_error("unknown activation", d, ["swiglu_nonexistent"])

d = model_with("err_type", "bert", "BertModel")
c = json.load(open(os.path.join(d, "config.json")))
c["model_type"] = "gpt2"
json.dump(c, open(os.path.join(d, "config.json"), "w"))
check_error("unsupported model type", d, ["gpt2"])

d = model_with("err_relative", "bert", "BertModel", position_embedding_type="relative_key")
check_error("relative_key position embeddings", d, ["relative_key"])

d = model_with("err_task", "bert", "BertForSequenceClassification")
check_error("impossible task", d, ["question-answering", "classification", "feature-extraction"], "--task",
            "question-answering")
d = model_with("err_task2", "distilbert", "DistilBertModel")
check_error("classification on a base model", d, ["classification", "feature-extraction"], "--task",
            "classification")
check_error("opset 13", d, ["13", "14..21"], "--opset", "13")
check_error("opset 22", d, ["22", "14..21"], "--opset", "22")
check_error("dtype int8", d, ["int8"], "--dtype", "int8")
check_error("not a directory", os.path.join(root, "nope"), ["nope"])


d = model_with("err_dense", "bert", "BertModel")
write_sentence_transformers(d, ["mean"], False)
mods = json.load(open(os.path.join(d, "modules.json")))
mods.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
json.dump(mods, open(os.path.join(d, "modules.json"), "w"))
check_error("sentence-transformers Dense module", d, ["Dense"])
d = model_with("err_lasttoken", "bert", "BertModel")
write_sentence_transformers(d, ["mean"], False)
json.dump({"word_embedding_dimension": 32, "pooling_mode_lasttoken": True},
          open(os.path.join(d, "1_Pooling", "config.json"), "w"))
check_error("last-token pooling", d, ["last"])

# -m org/name from the local Hugging Face cache (HF_HUB_CACHE layout: models--org--name/snapshots/<rev>/)
cache = os.path.join(root, "hf_cache")
snap = os.path.join(cache, "models--acme--tiny-bert", "snapshots", "0123abcd")
gen.write_model(snap, "bert", "BertForSequenceClassification", labels=3)
os.makedirs(os.path.join(cache, "models--acme--tiny-bert", "refs"), exist_ok=True)
open(os.path.join(cache, "models--acme--tiny-bert", "refs", "main"), "w").write("0123abcd")
out = os.path.join(root, "hub_id.onnx")
env = dict(os.environ, HF_HUB_CACHE=cache)
import subprocess  # noqa: E402
from export_common import BIN  # noqa: E402
p = subprocess.run([BIN, "export", "-m", "acme/tiny-bert", "-o", out, "--json"], capture_output=True, text=True,
                   env=env, timeout=120)
ok = p.returncode == 0 and os.path.isfile(out)
summary = json.loads(p.stdout) if ok else {}
t.check(ok and summary.get("task") == "classification" and summary.get("num_labels") == 3,
        "-m org/name from the HF cache, --json summary", "" if ok else (p.stderr or p.stdout)[-300:])

t.finish()
