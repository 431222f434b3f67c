"""`tdeploy run` on bad input: each case must exit 1 (2 for usage errors) with a
message naming the problem, never crash (sanitizer reports exit 99) or print
half an answer. Plus input-format cases that must work: stdin, tab-separated
pairs, CRLF lines, empty lines, mixed --text + --texts numbering."""
import json
import os
import shutil

from run_common import FIXTURES, TMP, Tally, run, run_json

HF = os.path.join(FIXTURES, "hf")
ST, SEQ, TOK, QA = (os.path.join(HF, n) for n in ["minilm-st", "bert-seqcls", "bert-tokcls", "bert-qa"])
WORK = os.path.join(TMP, "run_errors")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
t = Tally()


def write(name, data):
    p = os.path.join(WORK, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def expect_fail(label, args, keywords, code=1, stdin=None):
    rc, out, err = run(args, stdin=stdin)
    low = err.lower()
    missing = [k for k in keywords if k.lower() not in low]
    t.check(rc == code and not missing and "answer" not in out and "embedding" not in out,
            f"{label}: exit {code}, message has {keywords}", f"rc={rc} missing={missing} err={err.strip()[:300]}")


# a bare .onnx without any tokenizer beside it
bare = os.path.join(WORK, "bare")
os.makedirs(bare)
shutil.copy(os.path.join(FIXTURES, "onnx", "bert-seqcls.torchscript.onnx"), os.path.join(bare, "m.onnx"))
# an engine directory whose model.onnx is not ONNX
badeng = os.path.join(WORK, "badeng")
os.makedirs(badeng)
write("badeng/model.onnx", b"\x08\x07garbage that is not a protobuf model")
shutil.copy(os.path.join(HF, "bert-seqcls", "tokenizer.json"), badeng)

# engine directories with a broken helper file beside a good model.onnx
for bad, content, kw in [("config.json", b"{not json", "config.json"),
                         ("sentence_bert_config.json", b'{"max_seq_length": "long"}', "max_seq_length"),
                         ("tokenizer.json", b'{"model": 7}', "tokenizer")]:
    d = os.path.join(WORK, "eng_bad_" + bad.split(".")[0])
    os.makedirs(d)
    shutil.copy(os.path.join(FIXTURES, "onnx", "bert-seqcls.torchscript.onnx"), os.path.join(d, "model.onnx"))
    for f in ["tokenizer.json", "config.json"]:
        shutil.copy(os.path.join(HF, "bert-seqcls", f), d)
    write(os.path.relpath(os.path.join(d, bad), WORK), content)
    expect_fail(f"engine dir with a corrupt {bad}", ["run", d, "--text", "x"], [kw])

expect_fail("unknown task", ["run", SEQ, "--task", "banana", "--text", "x"], ["unknown task", "banana"], code=2)
expect_fail("a task not supported yet", ["run", SEQ, "--task", "summarization", "--text", "x"],
            ["summarization", "not supported (yet)"], code=2)
expect_fail("missing tokenizer next to .onnx", ["run", os.path.join(bare, "m.onnx"), "--text", "x"],
            ["tokenizer.json", "--tokenizer"])
expect_fail("--tokenizer dir without tokenizer.json", ["run", os.path.join(bare, "m.onnx"), "--tokenizer", bare,
                                                       "--text", "x"], ["tokenizer.json"])
expect_fail("text pair for a single-text task (embedding)", ["run", ST, "--text", "a", "--text-pair", "b"],
            ["single texts", "embedding"])
expect_fail("text pair for token-classification", ["run", TOK, "--text", "a", "--text-pair", "b"], ["single texts"])
expect_fail("QA without a context", ["run", QA, "--text", "what?"], ["question", "context"])
expect_fail("QA with an empty context", ["run", QA, "--text", "what?", "--text-pair", ""], ["context has no tokens"])
expect_fail("invalid UTF-8 in --texts", ["run", ST, "--texts", write("bad_utf8.txt", b"fine\nbad \xff\xfe here\n")],
            ["utf-8", "byte offset 4"])
expect_fail("invalid UTF-8 in --text", ["run", SEQ, "--text", b"caf\xc3".decode("utf-8", "surrogateescape")],
            ["utf-8"])
expect_fail("NUL byte in a line", ["run", ST, "--texts", write("nul.txt", b"a\x00b\n")], ["nul"])
expect_fail("missing --texts file", ["run", ST, "--texts", os.path.join(WORK, "nope.txt")], ["cannot open"])
expect_fail("empty --texts file", ["run", ST, "--texts", write("empty.txt", b"")], ["no lines"])
expect_fail("model that does not exist", ["run", os.path.join(WORK, "no_such_model"), "--text", "x"], ["not found"])
expect_fail("a file that is not .onnx", ["run", write("notes.txt", b"hello"), "--text", "x"], [".onnx"])
expect_fail("engine dir with a corrupt model.onnx", ["run", badeng, "--text", "x"], ["model.onnx"])
expect_fail("--task with an output the .onnx lacks",
            ["run", os.path.join(FIXTURES, "onnx", "bert-seqcls.torchscript.onnx"), "--tokenizer", SEQ,
             "--task", "question-answering", "--text", "x", "--text-pair", "y"], ["start_logits"])
expect_fail("QA file mixing pair and single lines",
            ["run", QA, "--texts", write("mixed.txt", b"q1\tcontext one\nq2 without context\n")], ["line 2", "tab"])
expect_fail("--max-length smaller than the special tokens", ["run", SEQ, "--max-length", "1", "--text", "x"],
            ["max_length"])
expect_fail("--precision int8 on run (the int8 graph is built by convert): a usage error",
            ["run", SEQ, "--precision", "int8", "--text", "x"], ["--precision", "fp16"], code=2)
expect_fail("no input", ["run", SEQ], ["--text"], code=2)
expect_fail("--text-pair count differs", ["run", SEQ, "--text", "a", "--text", "b", "--text-pair", "c"],
            ["text-pair"], code=2)
expect_fail("bad --batch-size", ["run", SEQ, "--batch-size", "0", "--text", "a"], ["--batch-size"], code=2)
expect_fail("unknown flag", ["run", SEQ, "--frobnicate", "--text", "a"], ["unknown flag"], code=2)

# --precision reaches the weights of an .onnx model: bf16 answers differ from fp32 ones (slightly)
onnx_args = ["run", os.path.join(FIXTURES, "onnx", "bert-seqcls.torchscript.onnx"), "--tokenizer", SEQ, "--text", "x y z"]
rc32, o32, e32 = run_json(onnx_args)
rc16, o16, e16 = run_json(onnx_args + ["--precision", "bf16"])
t.check(rc32 == 0 and rc16 == 0 and o32[0]["logits"] != o16[0]["logits"]
        and max(abs(a - b) for a, b in zip(o32[0]["logits"], o16[0]["logits"])) < 0.05,
        "--precision bf16 on an .onnx file changes the answers a little", e32 + e16)

# ... and of an HF directory (exported and optimized in memory): fp16/bf16 answers differ slightly from fp32, and
# the HF directory's fp32 answer equals the .onnx file's within float noise (same model, same fused graph)
hf_args = ["run", SEQ, "--text", "x y z"]
rch, oh, eh = run_json(hf_args)
t.check(rch == 0 and rc32 == 0 and max(abs(a - b) for a, b in zip(oh[0]["logits"], o32[0]["logits"])) < 1e-4,
        "HF directory fp32 == the .onnx file's fp32 answer", eh)
for prec, tol in [("fp16", 0.01), ("bf16", 0.05)]:
    rcp, op, ep = run_json(hf_args + ["--precision", prec])
    t.check(rcp == 0 and rch == 0 and op[0]["logits"] != oh[0]["logits"]
            and max(abs(a - b) for a, b in zip(oh[0]["logits"], op[0]["logits"])) < tol,
            f"--precision {prec} on an HF directory changes the answers a little (< {tol})", ep)

# ---- input formats that must work
rc, a, err = run_json(["run", SEQ, "--text", "same"])
rc2, b, err2 = run_json(["run", "-m", SEQ, "--text", "same"])
t.check(rc == 0 and rc2 == 0 and a == b, "-m MODEL (as export and convert spell it) == the positional model", err2)
expect_fail("two models", ["run", SEQ, "-m", SEQ, "--text", "x"], ["two models"], code=2)
rc, objs, err = run_json(["run", ST, "--texts", "-", "--batch-size", "2"],
                         stdin=b"\xef\xbb\xbfone\r\ntwo\n\nthree\tfour\nlast")
t.check(rc == 0 and [o["text"] for o in objs] == ["one", "two", "", "three\tfour", "last"]
        and [o["index"] for o in objs] == [0, 1, 2, 3, 4],
        "stdin: BOM and CRLF stripped, empty line is a text, tab stays in the text of a single-text task, no final newline",
        err + str([o.get("text") for o in objs]))
rc, objs, err = run_json(["run", QA, "--texts", write("qa.txt", "what is it?\tit is a tiny test model.\nwho?\tnobody knows.\n"
                                                      .encode())])
t.check(rc == 0 and [o.get("text_pair") for o in objs] == ["it is a tiny test model.", "nobody knows."]
        and all(o["answer"] == o["text_pair"][o["start"]:o["end"]] for o in objs),
        "QA lines 'question<TAB>context': answers are slices of the contexts", err)
rc, objs, err = run_json(["run", SEQ, "--text", "first", "--texts", write("two.txt", b"second\nthird\n"),
                          "--batch-size", "2"])
t.check(rc == 0 and [(o["index"], o["text"]) for o in objs] == [(0, "first"), (1, "second"), (2, "third")],
        "--text inputs come first, then the file's lines, numbered across batches", err)
rc, objs, err = run_json(["run", SEQ, "--text", "premise", "--text-pair", "hypothesis"])
rc2, single, err2 = run_json(["run", SEQ, "--text", "premise", "--text", "hypothesis"])
# [CLS] A [SEP] B [SEP] is one token shorter than [CLS] A [SEP] + [CLS] B [SEP]
t.check(rc == 0 and rc2 == 0 and objs[0]["text_pair"] == "hypothesis"
        and objs[0]["n_tokens"] == single[0]["n_tokens"] + single[1]["n_tokens"] - 1,
        "classification accepts a text pair (encoded as one pair row)", err + err2)
long_text = " ".join(["word"] * 200)
rc, objs, err = run_json(["run", SEQ, "--text", long_text])
t.check(rc == 0 and objs[0]["n_tokens"] == 64 and objs[0]["truncated"],
        "a long text is truncated to the model's maximum (model_max_length 64)", err)
rc, out, err = run(["run", ST, "--text", "Hello world!", "-q"])
t.check(rc == 0 and "embedding (48 values, norm 1.0000)" in out and err == "", "human output, -q keeps stderr empty",
        out + err)
rc, out, err = run(["run", os.path.join(HF, "bert-base"), "--text", "Hello world"])
t.check(rc == 0 and "last_hidden_state" in out and "mean-pooled" in out, "feature-extraction human output", out + err)
rc, objs, err = run_json(["run", os.path.join(HF, "bert-base"), "--text", "Hello world"])
t.check(rc == 0 and len(objs[0]["last_hidden_state"]) == objs[0]["n_tokens"] and len(objs[0]["mean_pooled"]) == 32,
        "feature-extraction --json: per-token states + mean-pooled vector", err)

t.finish()
