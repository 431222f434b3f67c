#!/usr/bin/env python3
"""Every hostile safetensors file, config.json and model directory from
gen_bad_hf.py must make `tdeploy inspect` exit with status 1 (an error, not a crash
signal, not a sanitizer report, not success) within a time limit, with a message
that names the problem (the case's keyword) on stderr."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_bad_hf  # noqa: E402

TMP = os.environ.get("TD_TMP", "/tmp")
BIN = os.environ.get("TD_BIN", "")
FIXTURES = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))


def main():
    if not BIN:
        print("FAIL: TD_BIN not set")
        return 1
    out = os.path.join(TMP, "bad_hf")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cases = gen_bad_hf.build(out)
    failures = 0
    for name, path, keyword in cases:
        try:
            r = subprocess.run([BIN, "inspect", path], capture_output=True, text=True, timeout=60)
            rc, err = r.returncode, r.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, "timed out"
        ok = rc == 1 and keyword.lower() in err.lower() and "error" in err and "Sanitizer" not in err
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: rc={rc} keyword {keyword!r}: {err.strip()[:240]}")
    # control: a real fixture directory inspects fine, so failures above are not blanket failures
    good = os.path.join(FIXTURES, "hf", "bert-base")
    r = subprocess.run([BIN, "inspect", good], capture_output=True, text=True, timeout=60)
    ok = r.returncode == 0
    failures += not ok
    print(f"{'PASS' if ok else 'FAIL'} control {good}: rc={r.returncode}")
    total = len(cases) + 1
    print(f"{total - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
