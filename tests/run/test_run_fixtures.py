"""`tdeploy run` from raw text on the HF fixtures against the golden outputs
transformers computed from the same texts (make_fixtures.py), within 1e-4.

For each fixture the texts the generator used are re-tokenized by `tdeploy run`
and its input_ids must equal the golden input.input_ids on the real (unpadded)
positions first, so the output comparison is meaningful. Then:
  minilm-st    sentence embeddings (texts from golden metadata, max_length 32)
  bert-seqcls  logits, argmax label, softmax scores vs numpy
  bert-tokcls  per-token logits; entities vs an independent "simple" aggregation,
               offsets/words vs the `tokenizers` library
  bert-qa      start/end logits; the answer span vs an independent span search
The same runs go through (b) the PyTorch-exported .onnx files with --tokenizer and
(c) engine directories (model.onnx / model-optimized.onnx + tokenizer files) and
what `tdeploy convert` writes."""
import json
import os
import shutil

import numpy as np
from safetensors import safe_open
from tokenizers import Tokenizer

from run_common import FIXTURES, TMP, Tally, qa_best_span, run, run_json, simple_aggregation, softmax

TOL = 1e-4
HF = os.path.join(FIXTURES, "hf")
t = Tally()


def golden(name):
    with safe_open(os.path.join(HF, name, "golden.safetensors"), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


def fixture_texts(name):
    # TEXTS of make_fixtures.py, as saved in every fixture's tokenizer_golden.json
    return json.load(open(os.path.join(HF, name, "tokenizer_golden.json"), encoding="utf-8"))["texts"]


def check_ids(label, objs, g):
    ids, mask = g["input.input_ids"], g["input.attention_mask"]
    ok = len(objs) == ids.shape[0]
    for i, o in enumerate(objs if ok else []):
        n = int(mask[i].sum())
        # a windowed task (token classification, QA) runs a longer text in more windows: the first is the golden row
        ok &= o["input_ids"][:n] == ids[i, :n].tolist() and (o.get("windows", 1) > 1 or len(o["input_ids"]) == n)
    return t.check(ok, f"{label}: re-tokenized input_ids == golden input.input_ids (real positions)")


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def id2label_of(name):
    cfg = json.load(open(os.path.join(HF, name, "config.json")))
    return {int(k): v for k, v in cfg["id2label"].items()}


# ---------------------------------------------------------------- per task

def embedding(label, model, extra=()):
    g, meta = golden("minilm-st")
    texts = json.loads(meta["texts"])
    args = ["run", model, "--max-length", "32", "--batch-size", "4", *extra]
    for s in texts:
        args += ["--text", s]
    rc, objs, err = run_json(args)
    if not t.check(rc == 0 and len(objs) == len(texts), f"{label}: run exits 0 with one object per text", err):
        return
    check_ids(label, objs, g)
    got = np.array([o["embedding"] for o in objs])
    ref = g["output.sentence_embedding"]
    t.check(got.shape == ref.shape and max_abs(got, ref) <= TOL,
            f"{label}: sentence_embedding within {TOL}", f"max abs {max_abs(got, ref) if got.shape == ref.shape else got.shape}")


def seqcls(label, model, extra=()):
    g, _ = golden("bert-seqcls")
    T = fixture_texts("bert-seqcls")
    texts = [T[1], T[6], T[0]]
    id2label = id2label_of("bert-seqcls")
    args = ["run", model, "--max-length", "24", "--top-k", "3", *extra]
    for s in texts:
        args += ["--text", s]
    rc, objs, err = run_json(args)
    if not t.check(rc == 0 and len(objs) == 3, f"{label}: run exits 0", err):
        return
    check_ids(label, objs, g)
    got = np.array([o["logits"] for o in objs])
    ref = g["output.logits"]
    t.check(max_abs(got, ref) <= TOL, f"{label}: logits within {TOL}", f"max abs {max_abs(got, ref)}")
    for i, o in enumerate(objs):
        p = softmax(o["logits"])
        order = sorted(range(len(p)), key=lambda k: (-p[k], k))
        t.check(o["label"] == id2label[int(np.argmax(ref[i]))], f"{label}[{i}]: label {o['label']} == golden argmax")
        t.check([x["label"] for x in o["top"]] == [id2label[k] for k in order] and
                max(abs(x["score"] - p[k]) for x, k in zip(o["top"], order)) <= 1e-6,
                f"{label}[{i}]: top-3 labels and scores == numpy softmax of the logits")


def tokcls(label, model, extra=()):
    g, _ = golden("bert-tokcls")
    T = fixture_texts("bert-tokcls")
    texts = [T[1], T[6], T[0]]
    id2label = id2label_of("bert-tokcls")
    hf_tok = Tokenizer.from_file(os.path.join(HF, "bert-tokcls", "tokenizer.json"))
    hf_tok.enable_truncation(24)  # the golden batch's max_length
    args = ["run", model, "--max-length", "24", *extra]
    for s in texts:
        args += ["--text", s]
    rc, objs, err = run_json(args)
    if not t.check(rc == 0 and len(objs) == 3, f"{label}: run exits 0", err):
        return
    check_ids(label, objs, g)
    mask = g["input.attention_mask"]
    worst = 0.0
    for i, o in enumerate(objs):
        n = int(mask[i].sum())
        got = np.array(o["logits"])[:n]  # the first window is the golden row
        worst = max(worst, max_abs(got, g["output.logits"][i, :n]) if got.shape == (n, 5) else 1e9)
    t.check(worst <= TOL, f"{label}: per-token logits within {TOL} (real positions)", f"max abs {worst}")
    for i, o in enumerate(objs):
        if o["windows"] == 1:  # texts run in windows: tests/run/test_run_long_inputs.py
            check_entities(f"{label}[{i}]", o, texts[i], hf_tok, id2label)
    # words with characters the vocabulary lacks become [UNK]: the entity word then shows the original text
    rc, objs, err = run_json(["run", model, "--text", UNK_TEXT, *extra])
    if t.check(rc == 0 and "[UNK]" in hf_tok.encode(UNK_TEXT).tokens, f"{label}: run on a text with [UNK] tokens", err):
        check_entities(f"{label}[unk]", objs[0], UNK_TEXT, hf_tok, id2label)


UNK_TEXT = "Жук ЖЖ big Ж and ok"


def check_entities(label, o, text, hf_tok, id2label):
    enc = hf_tok.encode(text)
    ids = o["input_ids"]
    special = [bool(m) for m in enc.special_tokens_mask]
    want = simple_aggregation(np.array(o["logits"]), special, id2label)
    got = [(e["entity_group"], e["score"], e["first_token"], e["last_token"]) for e in o["entities"]]
    same = ids == enc.ids and len(want) == len(got) and all(
        a[0] == b[0] and abs(a[1] - b[1]) <= 1e-6 and a[2] == b[2] and a[3] == b[3] for a, b in zip(want, got))
    t.check(same, f"{label}: {len(got)} entities == independent simple aggregation", f"{got} vs {want}")
    # offsets (characters) from the tokenizers library; the word is the member tokens through the decoder, an
    # unknown token standing for its original text (as the pipeline's gather_pre_entities does)
    offs = enc.offsets
    ok = True
    for e in o["entities"]:
        ok &= e["start"] == offs[e["first_token"]][0] and e["end"] == offs[e["last_token"]][1]
        toks = [text[offs[k][0]:offs[k][1]] if enc.tokens[k] == "[UNK]" else enc.tokens[k]
                for k in range(e["first_token"], e["last_token"] + 1) if not special[k]]
        ok &= e["word"] == hf_tok.decoder.decode(toks)
    t.check(ok, f"{label}: entity start/end (characters) and words == tokenizers' offsets and decoder")


QA_PAIRS = [  # make_fixtures.py bert_family(): the questions and contexts of bert-qa's golden batch
    ("what is it?", "it is a tiny test model for question answering."),
    ("who?", "nobody knows."),
]


def qa(label, model, extra=()):
    g, _ = golden("bert-qa")
    hf_tok = Tokenizer.from_file(os.path.join(HF, "bert-qa", "tokenizer.json"))
    cls_id = hf_tok.token_to_id("[CLS]")
    args = ["run", model, *extra]
    for q, c in QA_PAIRS:
        args += ["--text", q, "--text-pair", c]
    rc, objs, err = run_json(args)
    if not t.check(rc == 0 and len(objs) == 2, f"{label}: run exits 0", err):
        return
    check_ids(label, objs, g)
    mask = g["input.attention_mask"]
    worst = 0.0
    for i, o in enumerate(objs):
        n = int(mask[i].sum())
        for k in ("start", "end"):
            worst = max(worst, max_abs(o[f"{k}_logits"], g[f"output.{k}_logits"][i, :n]))
    t.check(worst <= TOL, f"{label}: start/end logits within {TOL} (real positions)", f"max abs {worst}")
    for i, o in enumerate(objs):
        q, c = QA_PAIRS[i]
        enc = hf_tok.encode(q, c)
        context = np.array([s == 1 for s in enc.sequence_ids])
        cls = np.array([x == cls_id for x in enc.ids])
        s, e, score = qa_best_span(np.array(o["start_logits"]), np.array(o["end_logits"]), context, cls)
        t.check(o["start_token"] == s and o["end_token"] == e and abs(o["score"] - score) <= 1e-6,
                f"{label}[{i}]: span tokens {o['start_token']}..{o['end_token']} score {o['score']:.6f} "
                f"== independent search {s}..{e} {score:.6f}")
        # align_to_words (the pipeline's default): whole words, from the tokenizers library's word spans
        cs = enc.word_to_chars(enc.word_ids[s], sequence_index=1)[0]
        ce = enc.word_to_chars(enc.word_ids[e], sequence_index=1)[1]
        t.check(o["start"] == cs and o["end"] == ce and o["answer"] == c[cs:ce],
                f"{label}[{i}]: answer {o['answer']!r} == context[{cs}:{ce}] (tokenizers' word spans)")


# ---------------------------------------------------------------- sources

TASKS = {"minilm-st": embedding, "bert-seqcls": seqcls, "bert-tokcls": tokcls, "bert-qa": qa}

# (a) HF directories, exported in memory
for name, fn in TASKS.items():
    fn(f"{name} (HF dir)", os.path.join(HF, name))

# (b) .onnx files PyTorch exported (no tdeploy metadata): tokenizer + config from --tokenizer
for name in ["bert-seqcls", "bert-tokcls", "bert-qa"]:
    onnx = os.path.join(FIXTURES, "onnx", f"{name}.torchscript.onnx")
    TASKS[name](f"{name} (torch .onnx + --tokenizer)", onnx, ["--tokenizer", os.path.join(HF, name)])

# (c) engine directories: model.onnx from `tdeploy export` + tokenizer files only (task, labels and
# max length come from the ONNX metadata), then the same with model-optimized.onnx added
for name, fn in TASKS.items():
    eng = os.path.join(TMP, "run_engine", name)
    shutil.rmtree(eng, ignore_errors=True)
    os.makedirs(eng)
    rc, _, err = run(["export", "-m", os.path.join(HF, name), "-o", os.path.join(eng, "model.onnx")])
    if not t.check(rc == 0, f"{name}: tdeploy export for the engine dir", err):
        continue
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(HF, name, f), eng)
    fn(f"{name} (engine dir, model.onnx)", eng)
    rc, _, err = run(["optimize", os.path.join(eng, "model.onnx"), "-o", os.path.join(eng, "model-optimized.onnx")])
    if t.check(rc == 0, f"{name}: tdeploy optimize for the engine dir", err):
        os.remove(os.path.join(eng, "model.onnx"))  # prove model-optimized.onnx is what runs
        fn(f"{name} (engine dir, model-optimized.onnx)", eng)

# an engine whose graph takes int32 ids (export --int32-inputs): run converts its int64 batch
eng = os.path.join(TMP, "run_engine", "bert-seqcls-int32")
shutil.rmtree(eng, ignore_errors=True)
os.makedirs(eng)
rc, _, err = run(["export", "-m", os.path.join(HF, "bert-seqcls"), "-o", os.path.join(eng, "model.onnx"),
                  "--int32-inputs"])
if t.check(rc == 0, "bert-seqcls: export --int32-inputs", err):
    shutil.copy(os.path.join(HF, "bert-seqcls", "tokenizer.json"), eng)
    seqcls("bert-seqcls (engine dir, int32 inputs)", eng)

# a graph without an attention_mask input (here: the mask computed as ones inside the graph): padding would be
# attended to, so run must give every text its own model run and still match the golden logits
import onnx
from onnx import helper, TensorProto
m = onnx.load(os.path.join(FIXTURES, "onnx", "bert-seqcls.torchscript.onnx"))
keep = [i for i in m.graph.input if i.name != "attention_mask"]
del m.graph.input[:]
m.graph.input.extend(keep)
m.graph.node.insert(0, helper.make_node("ConstantOfShape", ["nomask_shape"], ["attention_mask"],
                                        value=helper.make_tensor("one", TensorProto.INT64, [1], [1])))
m.graph.node.insert(0, helper.make_node("Shape", ["input_ids"], ["nomask_shape"]))
eng = os.path.join(TMP, "run_engine", "bert-seqcls-nomask")
shutil.rmtree(eng, ignore_errors=True)
os.makedirs(eng)
onnx.save(m, os.path.join(eng, "model.onnx"))
for f in ["tokenizer.json", "config.json"]:
    shutil.copy(os.path.join(HF, "bert-seqcls", f), eng)
seqcls("bert-seqcls (graph without attention_mask input)", eng)
# with a long neighbour, padding a short text would change it: its logits must equal those of running it alone
_, alone, _ = run_json(["run", eng, "--text", "a"])
_, batched, err = run_json(["run", eng, "--text", " ".join(["word"] * 80), "--text", "a"])
t.check(len(alone) == 1 and len(batched) == 2 and max_abs(alone[0]["logits"], batched[1]["logits"]) <= 1e-7,
        "no attention_mask input: a short text batched with a long one == the short text alone", err)

# (c) what `tdeploy convert` writes (model-optimized.onnx, report.json, copies of the tokenizer and config files)
for name, fn in TASKS.items():
    out = os.path.join(TMP, "run_convert", name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    rc, _, err = run(["convert", "-m", os.path.join(HF, name), "-o", out, "--nb-measures", "2", "--warmup", "1", "-q"])
    if t.check(rc == 0 and os.path.isfile(os.path.join(out, "model-optimized.onnx")), f"{name}: tdeploy convert", err):
        fn(f"{name} (tdeploy convert output)", out)

# convert of a model in the HF cache, whose snapshot files are relative symlinks into blobs/: the copies in the
# output directory must still be readable files (they were dangling hard links to the symlinks once)
cache = os.path.join(TMP, "run_hf_home")
shutil.rmtree(cache, ignore_errors=True)
repo = os.path.join(cache, "hub", "models--tdeploy-test--minilm-st")
snap = os.path.join(repo, "snapshots", "0" * 40)
src = os.path.join(HF, "minilm-st")
for root, _, files in os.walk(src):
    for f in files:
        rel = os.path.relpath(os.path.join(root, f), src)
        blob = os.path.join(repo, "blobs", rel.replace("/", "_"))
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        shutil.copy(os.path.join(root, f), blob)
        link = os.path.join(snap, rel)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
os.makedirs(os.path.join(repo, "refs"))
open(os.path.join(repo, "refs", "main"), "w").write("0" * 40)
env = dict(os.environ, HF_HOME=cache, HF_HUB_OFFLINE="1")
env.pop("HF_HUB_CACHE", None)
out = os.path.join(TMP, "run_convert", "cached-minilm-st")
shutil.rmtree(out, ignore_errors=True)
rc, _, err = run(["convert", "-m", "tdeploy-test/minilm-st", "-o", out, "--nb-measures", "2", "--warmup", "1", "-q"],
                 env=env)
if t.check(rc == 0, "convert of a cached hub model (symlinked snapshot)", err):
    t.check(all(os.path.isfile(os.path.join(out, f)) for f in ["tokenizer.json", "config.json"]),
            "its tokenizer.json and config.json copies are readable files")
    embedding("minilm-st (convert output of the cached model)", out)

t.finish()
