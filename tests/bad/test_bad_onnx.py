#!/usr/bin/env python3
"""Every generated bad ONNX input (gen_bad_onnx.py) must make `tdeploy inspect`
exit with status 1 (not a crash signal, not success) and print a clear message
containing the case's keyword on stderr, within a time limit (no hang)."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_bad_onnx  # noqa: E402

TMP = os.environ.get("TD_TMP", "/tmp")
BIN = os.environ.get("TD_BIN", "")


def main():
    if not BIN:
        print("FAIL: TD_BIN not set")
        return 1
    out = os.path.join(TMP, "bad_onnx")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cases = gen_bad_onnx.build(out)
    failures = 0
    for name, keyword in cases:
        path = os.path.join(out, name, "model.onnx")
        try:
            r = subprocess.run([BIN, "inspect", path], capture_output=True, text=True, timeout=60)
            rc, err = r.returncode, r.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, "timed out"
        ok = rc == 1 and keyword in err and "error" in err
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: rc={rc} expected keyword {keyword!r}; stderr: {err.strip()[:300]}")
    # the model path itself is a FIFO or a directory (must not block or crash)
    special = os.path.join(out, "special_onnx")
    os.makedirs(special)
    fifo = os.path.join(special, "fifo.onnx")
    os.mkfifo(fifo)
    os.makedirs(os.path.join(special, "dir.onnx"))
    for path in (fifo, os.path.join(special, "dir.onnx"), os.path.join(special, "missing.onnx")):
        try:
            r = subprocess.run([BIN, "inspect", path], capture_output=True, text=True, timeout=60)
            rc, err = r.returncode, r.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, "timed out"
        ok = rc == 1 and ("not a regular file" in err or "No such file" in err)
        failures += not ok
        cases.append((path, ""))
        print(f"{'PASS' if ok else 'FAIL'} model path {os.path.basename(path)}: rc={rc}; stderr: {err.strip()[:200]}")
    # sanity: the corpus' good model passes
    good = os.path.join(out, "good.onnx")
    with open(good, "wb") as f:
        f.write(gen_bad_onnx.ok_model().SerializeToString())
    r = subprocess.run([BIN, "inspect", good], capture_output=True, text=True, timeout=60)
    ok = r.returncode == 0
    failures += not ok
    print(f"{'PASS' if ok else 'FAIL'} good model control: rc={r.returncode} {r.stderr.strip()[:200]}")
    print(f"{len(cases) + 1 - failures}/{len(cases) + 1} passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
