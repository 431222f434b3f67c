#!/usr/bin/env python3
"""-v adds detail and -q removes it, the same way in every command: each command
run on a fixture prints more on stderr with -v than without, and nothing on
stderr with -q; stdout (the command's result) is the same in all three. And
--json is formatted the same way everywhere."""
import json
import os
import shutil
import subprocess
import sys

TD_BIN = os.environ["TD_BIN"]
FX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
WORK = os.path.join(os.environ.get("TD_TMP", "/tmp"), "cli_verbosity")
SEQ = os.path.join(FX, "hf", "bert-seqcls")
ONNX = os.path.join(FX, "onnx", "bert-seqcls.torchscript.onnx")
passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {what}{'' if ok else ' ' + detail}")


CASES = {
    "export": ["-m", SEQ, "-o", os.path.join(WORK, "m.onnx")],
    "optimize": [ONNX, "-o", os.path.join(WORK, "o.onnx")],
    "onnx-save": [ONNX, "-o", os.path.join(WORK, "s.onnx")],
    "infer": [ONNX, "--inputs", os.path.join(SEQ, "golden.safetensors"), "-o", os.path.join(WORK, "i.safetensors")],
    "triton-repo": [ONNX, "-o", os.path.join(WORK, "repo")],
    "tokenize": ["-m", SEQ, "hello world"],
    "run": [SEQ, "--text", "hello world"],
}
for cmd, args in CASES.items():
    res = {}
    for flag in ["", "-v", "-q"]:
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        p = subprocess.run([TD_BIN, cmd] + args + ([flag] if flag else []), capture_output=True, text=True,
                           timeout=300)
        res[flag] = (p.returncode, p.stdout, p.stderr.count("\n"))
    (rc, out, n), (rcv, outv, nv), (rcq, outq, nq) = res[""], res["-v"], res["-q"]
    check(rc == rcv == rcq == 0 and nv > n and nq == 0 and out == outv == outq,
          f"{cmd}: -v adds stderr lines ({n} -> {nv}), -q has none ({nq}), same stdout", str(res)[:300])
# --json: every command prints one indented JSON document; run and onnx-save (which can handle many inputs)
# print JSON Lines, one compact object per input
CASES["inspect"] = [ONNX]
for cmd, args in CASES.items():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    p = subprocess.run([TD_BIN, cmd] + args + ["--json"], capture_output=True, text=True, timeout=300)
    try:
        if cmd in ("run", "onnx-save"):
            docs = [json.loads(l) for l in p.stdout.splitlines()]
            ok = len(docs) == 1 and isinstance(docs[0], dict)
        else:
            ok = isinstance(json.loads(p.stdout), dict) and p.stdout.count("\n") > 1  # indented
    except ValueError:
        ok = False
    check(p.returncode == 0 and ok, f"{cmd} --json: {'JSON Lines' if cmd in ('run', 'onnx-save') else 'one indented document'}",
          p.stdout[:200] + p.stderr[:200])
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
