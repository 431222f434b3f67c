#!/usr/bin/env python3
"""What `convert` and `triton-repo` write, and what they must never touch.

  - a folder with the user's own files is refused (nothing changed) unless --force;
  - a failed validation (exit 3) leaves the previous good output as it was (the run
    goes to OUTDIR.failed), and so do an error and SIGINT mid-run;
  - an existing Triton repository keeps its other models (convert's OUTDIR/triton
    and triton-repo -o REPO); a model folder tdeploy did not write is refused
    unless --force;
  - output files are copies, never hard links to the model's files (own inode,
    an edit of the output leaves the source unchanged);
  - one max length per model: run, convert's Triton tokenizer and triton-repo cut
    at the same length (sentence_bert_config max_seq_length here), report.json and
    config.pbtxt say it, a profile max below it is a warning naming both numbers;
  - --precision fp16/bf16 reaches model-optimized.onnx and the Triton model
    (initializers in that type, ONNX Runtime agrees with the fp32 model.onnx), and
    report.json says what was written;
  - the benchmark: each shape measured once, every shape in the summary table,
    --no-bench, a progress bar with an ETA on a terminal only (not with -q).
The source model is a copy of the minilm-st fixture inside TD_TMP, on the same
file system as the outputs, so that a hard link would be possible there."""
import glob
import hashlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

BIN = os.environ["TD_BIN"]
FIX = os.path.join(os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                               "fixtures")), "hf")
TMP = os.path.join(os.environ.get("TD_TMP", "/tmp"), "outputs_test")
ST_MAX = 24  # sentence_bert_config max_seq_length of the source copy (tokenizer_config says 32, positions 64)
FAST = ["--seq-len", "1", "8", str(ST_MAX), "--warmup", "1", "--threads", "2"]

results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(f"{'PASS' if cond else 'FAIL'}: {name}{'' if cond else ' -- ' + str(detail)[:1500]}", flush=True)
    return bool(cond)


def tdeploy(*args, env=None):
    # the checks below read the ONNX Runtime layout (model.onnx, NAME_tokenize, NAME_inference); the default
    # tdeploy-backend layout is served and checked in tests/triton/
    if args and args[0] in ("convert", "triton-repo"):
        args = (args[0], "--triton-backend", "onnxruntime", *args[1:])
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=600, env=env)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree_digest(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = digest(p)
    return out


def no_leftovers(out):
    parent, base = os.path.split(out.rstrip("/"))
    return not [e for e in os.listdir(parent) if e.startswith(base + ".tmp.") or e.startswith(base + ".old.")]


def make_source():
    src = os.path.join(TMP, "src")
    shutil.copytree(os.path.join(FIX, "minilm-st"), src)
    p = os.path.join(src, "sentence_bert_config.json")
    cfg = json.load(open(p))
    cfg["max_seq_length"] = ST_MAX
    json.dump(cfg, open(p, "w"))
    return src


def pbtxt_param(path, key):
    text = open(path).read()
    i = text.find(f'key: "{key}"')
    if i < 0:
        return None
    j = text.find('string_value: "', i) + len('string_value: "')
    return text[j:text.find('"', j)]


def test_links(src, out):
    name = "src"
    pairs = [("config.json", "config.json"), ("tokenizer.json", "tokenizer.json"),
             ("tokenizer.json", f"triton/{name}_tokenize/1/tokenizer.json"),
             ("model-optimized.onnx", f"triton/{name}/1/model.onnx")]
    for a, b in pairs:
        pa = os.path.join(out if a.startswith("model") else src, a)
        pb = os.path.join(out, b)
        sa, sb = os.stat(pa), os.stat(pb)
        check(f"copy, not a link: {b} has its own inode", sa.st_ino != sb.st_ino and sb.st_nlink == 1,
              f"inode {sa.st_ino}/{sb.st_ino} nlink {sb.st_nlink}")
    before = digest(os.path.join(src, "config.json"))
    with open(os.path.join(out, "config.json"), "a") as f:
        f.write("\n")
    check("editing OUTDIR/config.json leaves the source unchanged", digest(os.path.join(src, "config.json")) == before)
    # triton-repo copies the user's ONNX file too
    repo = os.path.join(TMP, "link_repo")
    r = tdeploy("triton-repo", os.path.join(out, "model.onnx"), "-o", repo, "--name", "m")
    st_in, st_out = os.stat(os.path.join(out, "model.onnx")), os.stat(os.path.join(repo, "m", "1", "model.onnx"))
    check("triton-repo: model.onnx is a copy of the input", r.returncode == 0 and st_in.st_ino != st_out.st_ino
          and st_in.st_nlink == 1, r.stderr)


def test_user_folder(src):
    user = os.path.join(TMP, "user")
    os.makedirs(user)
    with open(os.path.join(user, "notes.txt"), "w") as f:
        f.write("mine")
    r = tdeploy("convert", "-m", src, "-o", user, "--no-bench", "-q", *FAST)
    check("a folder with the user's files is refused", r.returncode not in (0, 3) and "--force" in r.stderr,
          f"exit {r.returncode}: {r.stderr}")
    check("... and left as it was", sorted(os.listdir(user)) == ["notes.txt"] and no_leftovers(user), os.listdir(user))
    r = tdeploy("convert", "-m", src, "-o", user, "--no-bench", "-q", "--force", *FAST)
    check("--force replaces it", r.returncode == 0 and not os.path.exists(os.path.join(user, "notes.txt"))
          and os.path.isfile(os.path.join(user, ".tdeploy-output")), r.stderr)
    empty = os.path.join(TMP, "empty")
    os.makedirs(empty)
    r = tdeploy("convert", "-m", src, "-o", empty, "--no-bench", "-q", *FAST)
    check("an empty folder is used without --force", r.returncode == 0, r.stderr)


def test_failed_validation_keeps_output(src, out):
    before = tree_digest(out)
    r = tdeploy("convert", "-m", src, "-o", out, "--no-bench", "-q", "--precision", "fp16", "--atol", "0", "--rtol",
                "0", *FAST)
    check("fp16 with zero tolerance fails validation (exit 3)", r.returncode == 3, f"exit {r.returncode}: {r.stderr}")
    check("exit 3 leaves the previous good output untouched", tree_digest(out) == before)
    failed = out + ".failed"
    rep = json.load(open(os.path.join(failed, "report.json"))) if os.path.isfile(
        os.path.join(failed, "report.json")) else {}
    check("the failed run is in OUTDIR.failed with its report", any(not v["passed"] for v in rep.get("validation", []))
          and failed in r.stderr and no_leftovers(out), r.stderr)
    r = tdeploy("convert", "-m", src, "-o", out, "--no-bench", "-q", "--texts", os.path.join(TMP, "missing.txt"),
                *FAST)
    check("an error mid-run (validation texts missing) leaves the previous output untouched",
          r.returncode == 1 and tree_digest(out) == before and no_leftovers(out), f"exit {r.returncode}: {r.stderr}")


def test_interrupt_keeps_output(src, out):
    before = tree_digest(out)
    p = subprocess.Popen([BIN, "convert", "-m", src, "-o", out, "--seq-len", "1", "8", str(ST_MAX), "--nb-measures",
                          "100000000", "--threads", "2", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent, base = os.path.split(out)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:  # wait for the benchmark: the staging folder is full by then
        if glob.glob(os.path.join(parent, base + ".tmp.*", "model-optimized.onnx")):
            time.sleep(1.0)
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    check("SIGINT (exit 130) leaves the previous output untouched",
          p.returncode == 130 and tree_digest(out) == before and no_leftovers(out), f"exit {p.returncode}: {err}")


def test_triton_repositories(src, out):
    # another model in convert's OUTDIR/triton survives a new convert into OUTDIR
    r = tdeploy("triton-repo", os.path.join(out, "model.onnx"), "-o", os.path.join(out, "triton"), "--name", "other")
    check("triton-repo adds a model to convert's repository", r.returncode == 0, r.stderr)
    other = tree_digest(os.path.join(out, "triton", "other"))
    r = tdeploy("convert", "-m", src, "-o", out, "--no-bench", "-q", *FAST)
    check("convert into the same OUTDIR keeps the other model",
          r.returncode == 0 and tree_digest(os.path.join(out, "triton", "other")) == other
          and os.path.isdir(os.path.join(out, "triton", "src")), r.stderr)
    check("a passing run removes the stale OUTDIR.failed", not os.path.exists(out + ".failed"))
    # a repository with a model tdeploy did not write
    repo = os.path.join(TMP, "repo")
    theirs = os.path.join(repo, "theirs")
    os.makedirs(os.path.join(theirs, "1"))
    with open(os.path.join(theirs, "config.pbtxt"), "w") as f:
        f.write('name: "theirs"\nplatform: "onnxruntime_onnx"\n')
    with open(os.path.join(theirs, "1", "model.onnx"), "wb") as f:
        f.write(b"their bytes")
    before = tree_digest(repo)
    onnx_in = os.path.join(out, "model-optimized.onnx")
    r = tdeploy("triton-repo", onnx_in, "-o", repo, "--name", "mine", "--tokenizer", out)
    check("triton-repo into a repository keeps its other model",
          r.returncode == 0 and all(tree_digest(repo).get(k) == v for k, v in before.items())
          and os.path.isdir(os.path.join(repo, "mine_inference")), r.stderr)
    r = tdeploy("triton-repo", onnx_in, "-o", repo, "--name", "theirs")
    check("a model folder tdeploy did not write is refused", r.returncode != 0 and "--force" in r.stderr
          and tree_digest(theirs) == {k[len("theirs/"):]: v for k, v in before.items()} and no_leftovers(repo),
          r.stderr)
    before_repo = tree_digest(repo)
    r = tdeploy("convert", "-m", src, "-o", repo, "--no-bench", "-q", *FAST)
    check("convert does not replace a Triton repository (not a convert output) without --force",
          r.returncode not in (0, 3) and "--force" in r.stderr and tree_digest(repo) == before_repo, r.stderr)
    made = os.path.join(TMP, "made_by_triton_repo")
    r = tdeploy("triton-repo", onnx_in, "-o", made, "--name", "x")
    before_made = tree_digest(made)
    r = tdeploy("convert", "-m", src, "-o", made, "--no-bench", "-q", *FAST)
    check("... nor one triton-repo created (its marker is not convert's)",
          r.returncode not in (0, 3) and tree_digest(made) == before_made, r.stderr)
    r = tdeploy("triton-repo", onnx_in, "-o", repo, "--name", "theirs", "--force")
    check("--force replaces it, the rest stays", r.returncode == 0 and digest(os.path.join(theirs, "1", "model.onnx"))
          == digest(onnx_in) and os.path.isdir(os.path.join(repo, "mine")), r.stderr)


def test_max_length(src, out):
    rep = json.load(open(os.path.join(out, "report.json")))
    check("report.json: max_length from sentence_bert_config", rep.get("max_length", {}).get("tokens") == ST_MAX
          and "sentence_bert_config" in rep["max_length"].get("source", ""), rep.get("max_length"))
    tok = pbtxt_param(os.path.join(out, "triton", "src_tokenize", "config.pbtxt"), "max_length")
    ens = pbtxt_param(os.path.join(out, "triton", "src_inference", "config.pbtxt"), "max_length")
    check(f"convert's Triton tokenizer and ensemble cut at {ST_MAX}", tok == str(ST_MAX) and ens == str(ST_MAX),
          (tok, ens))
    repo = os.path.join(TMP, "maxlen_repo")
    r = tdeploy("triton-repo", os.path.join(out, "model-optimized.onnx"), "-o", repo, "--tokenizer", out)
    got = pbtxt_param(os.path.join(repo, "model_tokenize", "config.pbtxt"), "max_length") if r.returncode == 0 else None
    check(f"triton-repo cuts at {ST_MAX}", got == str(ST_MAX), (got, r.stderr))
    long_text = "word " * 200
    for what, model in (("the HF folder", src), ("the convert output", out)):
        r = tdeploy("run", model, "--text", long_text, "--json", "-q")
        n = json.loads(r.stdout.splitlines()[0])["n_tokens"] if r.returncode == 0 else None
        check(f"run on {what} cuts at {ST_MAX}", n == ST_MAX, (n, r.stderr))
    wout = os.path.join(TMP, "maxlen_warn")
    r = tdeploy("convert", "-m", src, "-o", wout, "--no-bench", "--seq-len", "1", "8", "16", "--threads", "2")
    check("a profile max below the model's max length is a warning naming both",
          r.returncode == 0 and "warning" in r.stderr and "16" in r.stderr and str(ST_MAX) in r.stderr, r.stderr)


def float_initializer_types(path):
    """{dtype: elements} of the float initializers, the dtypes of the weights MatMul/Gemm/Attention
    multiply by (their input 1), and the graph's input/output dtypes."""
    m = onnx.load(path)
    kinds, inits = {}, {t.name: t for t in m.graph.initializer}
    for t in m.graph.initializer:
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16):
            n = int(np.prod(t.dims)) if t.dims else 1
            kinds[t.data_type] = kinds.get(t.data_type, 0) + n
    gemm_weights = {inits[n.input[1]].data_type for n in m.graph.node
                    if n.op_type in ("MatMul", "Gemm", "Attention") and len(n.input) > 1 and n.input[1] in inits}
    io = [v.type.tensor_type.elem_type for v in list(m.graph.input) + list(m.graph.output)]
    return kinds, gemm_weights, io


def test_precision(src):
    ids = np.array([[2, 50, 407, 286, 65, 206, 127, 148, 3]], dtype=np.int64)
    for prec, dt in (("fp16", onnx.TensorProto.FLOAT16), ("bf16", onnx.TensorProto.BFLOAT16)):
        out = os.path.join(TMP, "prec_" + prec)
        r = tdeploy("convert", "-m", src, "-o", out, "--no-bench", "-q", "--precision", prec, *FAST)
        if not check(f"{prec}: convert exit 0", r.returncode == 0, r.stderr):
            continue
        for f in ("model-optimized.onnx", "triton/src/1/model.onnx"):
            kinds, gemm, io = float_initializer_types(os.path.join(out, f))
            low = kinds.get(dt, 0) / max(1, sum(kinds.values()))
            check(f"{prec}: {f}: every MatMul/Attention weight is {prec} ({low:.0%} of all float weights), "
                  "float32 IO", gemm == {dt} and all(t in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64) for t in io),
                  (kinds, gemm))
        kinds, _, _ = float_initializer_types(os.path.join(out, "model.onnx"))
        check(f"{prec}: model.onnx stays the fp32 reference", set(kinds) == {onnx.TensorProto.FLOAT}, kinds)
        rep = json.load(open(os.path.join(out, "report.json")))
        check(f"{prec}: report says what was written", rep.get("written_precision") ==
              {"model.onnx": "fp32", "model-optimized.onnx": prec, "triton": prec}, rep.get("written_precision"))
        if prec == "fp16":  # ONNX Runtime's CPU provider has no bf16 Attention kernel
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            got = ort.InferenceSession(os.path.join(out, "model-optimized.onnx")).run(None, feeds)[0]
            want = ort.InferenceSession(os.path.join(out, "model.onnx")).run(None, feeds)[0]
            err = float(np.abs(got - want).max())
            check(f"fp16: ONNX Runtime runs the written model, max abs diff {err:.2e} vs fp32", err < 1e-2)


def run_in_pty(args):
    """stdout and stderr of a command that sees a terminal on stderr."""
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN, *args], stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif p.poll() is not None:
            break
    p.wait()
    os.close(master)
    return p.returncode, b"".join(chunks).decode(errors="replace")


def test_benchmark(src):
    out = os.path.join(TMP, "bench")
    r = tdeploy("convert", "-m", src, "-o", out, "-q", "--seq-len", "1", str(ST_MAX), str(ST_MAX), "--nb-measures", "2",
                "--warmup", "1", "--threads", "2")
    rep = json.load(open(os.path.join(out, "report.json"))) if r.returncode == 0 else {"benchmarks": []}
    shapes = [(b["backend"], b["batch"], b["sequence"]) for b in rep["benchmarks"]]
    check("the opt shape (= max shape) is measured once", r.returncode == 0 and sorted(shapes) == sorted(
        [("reference", 1, ST_MAX), ("cpu", 1, ST_MAX), ("reference", 1, 1), ("cpu", 1, 1)]), shapes)
    check("the summary table has a row per measured shape", f"1x{ST_MAX}" in r.stdout and " 1x1 " in r.stdout,
          r.stdout)
    out2 = os.path.join(TMP, "nobench")
    r = tdeploy("convert", "-m", src, "-o", out2, "-q", "--no-bench", *FAST)
    rep = json.load(open(os.path.join(out2, "report.json"))) if r.returncode == 0 else {}
    check("--no-bench: no benchmark, everything else written", rep.get("benchmarks") == [] and "--no-bench" in r.stdout
          and os.path.isdir(os.path.join(out2, "triton", "src")), r.stderr)
    args = ["convert", "-m", src, "-o", os.path.join(TMP, "bench_tty"), "--seq-len", "1", "8", "8", "--nb-measures",
            "3000", "--warmup", "1", "--threads", "2"]
    rc, err = run_in_pty(args)
    check("on a terminal the benchmark shows progress with an ETA", rc == 0 and "benchmark" in err and "ETA" in err,
          err[-500:])
    rc, err = run_in_pty(args + ["-q"])
    check("-q: no progress on a terminal either", rc == 0 and "ETA" not in err and "\r" not in err, err[-500:])
    r = tdeploy(*args)
    check("not a terminal: no progress drawn", r.returncode == 0 and "ETA" not in r.stderr and "\r" not in r.stderr,
          r.stderr[-500:])


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    src = make_source()
    out = os.path.join(TMP, "out")
    r = tdeploy("convert", "-m", src, "-o", out, "--no-bench", "-q", *FAST)
    if check("convert of the source copy", r.returncode == 0, r.stderr):
        check("the output has tdeploy's marker", os.path.isfile(os.path.join(out, ".tdeploy-output")))
        test_links(src, out)
        test_failed_validation_keeps_output(src, out)
        test_interrupt_keeps_output(src, out)
        test_triton_repositories(src, out)
        test_max_length(src, out)
    test_user_folder(src)
    test_precision(src)
    test_benchmark(src)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
