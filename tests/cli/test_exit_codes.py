#!/usr/bin/env python3
"""Exit codes of every command (2 usage, 1 input/runtime, 3 validation, 130
interrupt): each command is run with bad flags, bad flag values, unknown or
not-yet-supported tasks and missing arguments, and must exit 2 with a message
naming the problem on stderr, print nothing on stdout and create no output
(usage errors are caught before any work starts). Input errors (a missing model
file) exit 1. The interrupt and validation codes are exercised by
tests/convert/test_convert.py."""
import os
import shutil
import subprocess
import sys

TD_BIN = os.environ["TD_BIN"]
FX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
WORK = os.path.join(os.environ.get("TD_TMP", "/tmp"), "cli_exit_codes")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
HF = os.path.join(FX, "hf")
SEQ = os.path.join(HF, "bert-seqcls")
ONNX = os.path.join(FX, "onnx", "bert-seqcls.torchscript.onnx")
GOLDEN = os.path.join(SEQ, "golden.safetensors")
GPT2 = os.path.join(HF, "gpt2-lm")
OUT = os.path.join(WORK, "out")  # every case writes here; it must never appear
passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {what}{'' if ok else ' ' + detail}")


def expect(code, cmd, args, keyword):
    p = subprocess.run([TD_BIN, cmd] + args, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    ok = (p.returncode == code and keyword.lower() in err.lower() and f"tdeploy {cmd}" in err
          and (code != 2 or out == "") and not os.path.exists(OUT))
    check(ok, f"{cmd} {' '.join(a if len(a) < 40 else '...' for a in args)}: exit {code}, says '{keyword}'",
          f"rc={p.returncode} out={out[:100]!r} err={err.strip()[:300]!r} out_exists={os.path.exists(OUT)}")
    shutil.rmtree(OUT, ignore_errors=True)
    if os.path.isfile(OUT):
        os.remove(OUT)


COMMON = {  # a valid invocation of each command, to which a bad flag is added
    "export": ["-m", SEQ, "-o", OUT],
    "convert": ["-m", SEQ, "-o", OUT, "--nb-measures", "1", "-q"],
    "inspect": [ONNX],
    "download": ["org/name", "--offline"],
    "triton-repo": [ONNX, "-o", OUT],
    "onnx-save": [ONNX, "-o", OUT],
    "infer": [ONNX, "--inputs", GOLDEN, "-o", OUT],
    "optimize": [ONNX, "-o", OUT],
    "run": [SEQ, "--text", "x"],
    "tokenize": ["-m", SEQ, "x"],
    "generate": [GPT2, "--prompt", "x", "--max-new-tokens", "1"],
    "build": [ONNX, "-o", OUT],
}
# every command: an unknown flag, and a flag given without its value
for cmd, good in COMMON.items():
    expect(2, cmd, good + ["--frobnicate"], "--frobnicate")
    expect(2, cmd, good + ["--json", "--no-such-flag", "1"], "--no-such-flag")
# missing required arguments
for cmd, args, kw in [("export", [], "-m"), ("convert", [], "-m"), ("inspect", [], "path"),
                      ("download", [], "repository"), ("triton-repo", [ONNX], "-o"), ("onnx-save", [ONNX], "-o"),
                      ("infer", [ONNX], "--inputs"), ("optimize", [ONNX], "-o"), ("run", [SEQ], "--text"),
                      ("tokenize", [], "-m"), ("generate", [], "MODEL"), ("generate", [GPT2], "--prompt"),
                      ("run", [SEQ, "--text"], "--text"), ("export", ["-m"], "-m"),
                      ("convert", ["-m", SEQ, "--seq-len", "1", "2"], "--seq-len"),
                      ("triton-repo", [ONNX, "-o", OUT, "--batch-size", "1"], "--batch-size")]:
    expect(2, cmd, args, kw)

# bad values, unknown and not-yet-supported tasks: exit 2 before any work starts
TASK_CMDS = {"export": COMMON["export"], "convert": COMMON["convert"], "run": COMMON["run"],
             "triton-repo": COMMON["triton-repo"]}
for cmd, good in TASK_CMDS.items():
    expect(2, cmd, good + ["--task", "banana"], "unknown task")
    expect(2, cmd, good + ["--task", "text2text-generation"], "not supported (yet)")
    expect(2, cmd, good + ["--task", "summarization"], "not supported (yet)")
# text-generation is a task since issue 15 (convert: tests/convert/test_convert_decoder.py; triton-repo:
# tests/triton/test_triton_repo_generate.py); triton-repo refuses it for an encoder graph, before writing anything
expect(2, "triton-repo", TASK_CMDS["triton-repo"] + ["--task", "text-generation"], "not a decoder")
for cmd, good in [("convert", COMMON["convert"]), ("infer", COMMON["infer"]), ("optimize", COMMON["optimize"]), ("export", COMMON["export"]),
                  ("run", COMMON["run"])]:
    expect(2, cmd, good + ["--precision", "int3"], "--precision")
for cmd, good in [("convert", COMMON["convert"]), ("triton-repo", COMMON["triton-repo"]), ("run", COMMON["run"]),
                  ("infer", COMMON["infer"])]:
    expect(2, cmd, good + ["--device", "tpu"], "--device")
for cmd, good, flag in [("convert", COMMON["convert"], "--threads"), ("run", COMMON["run"], "--threads"),
                        ("infer", COMMON["infer"], "--threads"), ("run", COMMON["run"], "--batch-size"),
                        ("run", COMMON["run"], "--max-length"), ("run", COMMON["run"], "--stride"),
                        ("tokenize", COMMON["tokenize"], "--max-length"),
                        ("triton-repo", COMMON["triton-repo"], "--nb-instances"),
                        ("triton-repo", COMMON["triton-repo"], "--max-length"),
                        ("onnx-save", COMMON["onnx-save"], "--align"), ("export", COMMON["export"], "--opset"),
                        ("optimize", COMMON["optimize"], "--fold-limit"),
                        ("generate", COMMON["generate"], "--threads"),
                        ("generate", COMMON["generate"], "--max-new-tokens")]:
    expect(2, cmd, good + [flag, "-3"], flag)
    expect(2, cmd, good + [flag, "12abc"], flag)
expect(2, "convert", COMMON["convert"] + ["--seq-len", "64", "32", "16"], "MIN <= OPT <= MAX")
expect(2, "convert", COMMON["convert"] + ["--seq-len", "1", "8", "100"], "--seq-len max 100")  # the model takes 64
expect(2, "convert", COMMON["convert"] + ["--backend", "tpu"], "tpu")
# above the thread pool's 1024: refused up front, not after export + optimize (was exit 1 at 'prepare backends')
expect(2, "convert", COMMON["convert"] + ["--threads", "100000"], "--threads 100000")
expect(2, "convert", COMMON["convert"] + ["--nb-instances", "5000"], "--nb-instances 5000")
expect(2, "convert", COMMON["convert"] + ["--atol", "x"], "--atol")
expect(2, "export", COMMON["export"] + ["--dtype", "int3"], "dtype")
expect(2, "optimize", COMMON["optimize"] + ["--target", "gpu"], "--target")
# optimize onto its own input (also through a symlink) would replace the user's graph: refused, file untouched
mine = os.path.join(WORK, "mine.onnx")
shutil.copyfile(ONNX, mine)
os.symlink(mine, os.path.join(WORK, "alias.onnx"))
before = open(mine, "rb").read()
expect(2, "optimize", [mine, "-o", mine], "input model itself")
expect(2, "optimize", [mine, "-o", os.path.join(WORK, "alias.onnx")], "input model itself")
check(open(mine, "rb").read() == before, "optimize refused in place: the input is unchanged")
p = subprocess.run([TD_BIN, "optimize", mine, "-o", mine, "--force", "-q"], capture_output=True, timeout=300)
check(p.returncode == 0 and open(mine, "rb").read() != before, "optimize --force replaces the input on request",
      p.stderr.decode(errors="replace")[-300:])
# a malformed repository id or revision is a bad value, refused before the cache or network is touched
expect(2, "download", ["../../etc", "--offline"], "not a Hub repository id")
expect(2, "download", ["org/name", "--revision", "../x", "--offline"], "not a usable revision")
# a --max-length above what the model takes is a usage error, said up front (not a node shape mismatch)
expect(2, "run", [SEQ, "--max-length", "100000", "--text", "x"], "--max-length 100000")
expect(2, "run", [ONNX, "--tokenizer", SEQ, "--max-length", "100000", "--text", "x"], "--max-length 100000")

# --threads 0 means one per core in every command that takes it (run and infer used to refuse it)
for cmd, args in [("run", COMMON["run"]), ("infer", [ONNX, "--inputs", GOLDEN, "-o", os.path.join(WORK, "t0.st")]),
                  ("generate", COMMON["generate"])]:
    p = subprocess.run([TD_BIN, cmd] + args + ["--threads", "0", "-q"], capture_output=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    check(p.returncode == 0, f"{cmd} --threads 0: exit 0", p.stderr.decode(errors="replace")[-300:])
expect(2, "infer", COMMON["infer"] + ["--threads", ""], "--threads")

# test hooks are not in the product: they live in test tools (tests/tools)
expect(2, "convert", COMMON["convert"] + ["--inject-fault", "cpu"], "--inject-fault")
expect(2, "tokenize", ["-m", SEQ, "--jsonl", "-"], "--jsonl")
expect(2, "tokenize", ["-m", SEQ, "--file", GOLDEN, "--repeat", "2"], "--file")

# run/build flags shared with infer; build's op check runs before it needs a GPU
expect(2, "run", COMMON["run"] + ["--device", "tpu"], "--device")
expect(2, "run", COMMON["run"] + ["--backend", "gpu0"], "--backend")
expect(2, "build", COMMON["build"] + ["--timing-cache"], "--timing-cache")
expect(2, "convert", COMMON["convert"] + ["--timing-cache"], "--timing-cache")
p = subprocess.run([TD_BIN, "build", ONNX, "-o", OUT, "--timing-cache", os.path.join(WORK, "tc.bin")],
                   capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
err = p.stderr.decode(errors="replace")
if p.returncode == 0:  # a machine with a GPU: an engine was built
    check(os.path.isfile(OUT), "build with a GPU writes the engine")
else:
    check(p.returncode == 1 and "has a CUDA kernel" in err and "use --backend cpu" not in err and not os.path.exists(OUT),
          "build without a GPU: exit 1 after the op check, no engine, no '--backend cpu' hint", err[-400:])
shutil.rmtree(OUT, ignore_errors=True)
if os.path.isfile(OUT):
    os.remove(OUT)
GPT2_SDPA = os.path.join(FX, "onnx", "gpt2-lm.torchscript-sdpa.onnx")
expect(1, "build", [GPT2_SDPA, "-o", OUT], "no CUDA kernel")

# input errors: exit 1
missing = os.path.join(WORK, "does-not-exist")
for cmd, args in [("export", ["-m", missing, "-o", OUT]), ("inspect", [missing]), ("triton-repo", [missing, "-o", OUT]),
                  ("onnx-save", [missing, "-o", OUT]), ("optimize", [missing, "-o", OUT]),
                  ("infer", [missing, "--inputs", GOLDEN, "-o", OUT]), ("run", [missing, "--text", "x"]),
                  ("tokenize", ["-m", missing, "x"]), ("generate", [missing, "--prompt", "x"]),
                  ("build", [missing, "-o", OUT])]:
    expect(1, cmd, args, "does-not-exist")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
