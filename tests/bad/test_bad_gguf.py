#!/usr/bin/env python3
"""Every hostile or unsupported GGUF file from gen_bad_gguf.py must make its tdeploy command (inspect, export,
generate) exit with status 1 (an error, not a crash signal, not a sanitizer report, not success) within a time
limit, with a message naming the problem (the case's keyword) on stderr; export must leave no output file. Controls:
the same generator's valid tiny model inspects, exports and generates, so the refusals are not blanket failures."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_bad_gguf  # noqa: E402

TMP = os.environ.get("TD_TMP", "/tmp")
BIN = os.environ.get("TD_BIN", "")


def command(kind, path, out):
    if kind == "inspect":
        return [BIN, "inspect", path]
    if kind == "export":
        return [BIN, "export", "-m", path, "-o", out, "-q"]
    gen = [BIN, "generate", path, "--max-new-tokens", "4", "-q", "--threads", "1"]
    if kind == "generate-chat":
        return gen + ["--chat", "Hi"]
    if kind == "generate-long":
        return gen + ["--prompt", "the " * 40]
    return gen + ["--prompt", "Hi"]


def run(kind, path, out):
    try:
        r = subprocess.run(command(kind, path, out), capture_output=True, text=True, timeout=120)
        return r.returncode, r.stderr
    except subprocess.TimeoutExpired:
        return None, "timed out"


def main():
    if not BIN:
        print("FAIL: TD_BIN not set")
        return 1
    out = os.path.join(TMP, "bad_gguf")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cases = gen_bad_gguf.build(out)
    failures = 0
    onnx = os.path.join(out, "out.onnx")
    for name, path, kind, keyword in cases:
        rc, err = run(kind, path, onnx)
        err = err.replace(path, "FILE")  # the keyword must be in the message, not in the case's file name
        left = os.path.exists(onnx)
        ok = rc == 1 and keyword.lower() in err.lower() and "error" in err and "Sanitizer" not in err and not left
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {kind} {name}: rc={rc} keyword {keyword!r}"
              f"{' (output left behind)' if left else ''}: {err.strip()[:240]}")
        if left:
            os.remove(onnx)
    good = os.path.join(out, "good.gguf")
    gen_bad_gguf.write_model(good)
    for kind in ("inspect", "export", "generate", "generate-chat"):
        rc, err = run(kind, good, onnx)
        ok = rc == 0
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} control: {kind} of the valid tiny model: rc={rc} {err.strip()[-200:]}")
    total = len(cases) + 4
    print(f"{total - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
