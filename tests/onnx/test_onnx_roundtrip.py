#!/usr/bin/env python3
"""ONNX round trip through `tdeploy onnx-save`, judged by onnx and ONNX Runtime.

For every $TD_FIXTURES/onnx/*.onnx:
  - load -> save gives a ModelProto equal to the original (onnx.load(a) == onnx.load(b));
  - onnx.checker.check_model(full_check=True) passes on the output wherever it passes on the input;
  - ONNX Runtime (CPU) gives bit-identical outputs for original and round-tripped models on the golden
    inputs ($TD_FIXTURES/hf/<name>/golden.safetensors, tensors `input.<name>`);
  - saved with external data (--external-data), loaded back by onnx/ORT (identical outputs) and by tdeploy
    (saving it inline again gives a proto equal to the original).
Every model.onnx of the libonnx-testdata node tests is round-tripped too (proto equality).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

FIX = os.environ.get("TD_FIXTURES", "")
TMP = os.environ.get("TD_TMP", "/tmp")
BIN = os.environ.get("TD_BIN", "")
failures = []


def report(ok, name, detail=""):
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}")
    if not ok:
        failures.append(name)


def run_save(src, dst, *extra):
    r = subprocess.run([BIN, "onnx-save", "-q", src, "-o", dst, *extra], capture_output=True, text=True)
    if r.returncode != 0:
        return r.stderr.strip() or f"exit {r.returncode}"
    return None


def checker_ok(model_or_path):
    try:
        onnx.checker.check_model(model_or_path, full_check=True)
        return True
    except Exception:  # noqa: BLE001 - any checker failure counts
        return False


def ort_outputs(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: feeds[n] for n in names})


def same_outputs(a, b):
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
                                    for x, y in zip(a, b))


def fixture_cases(work):
    onnx_dir = os.path.join(FIX, "onnx")
    files = sorted(f for f in os.listdir(onnx_dir) if f.endswith(".onnx"))
    report(len(files) > 0, "fixtures present", onnx_dir)
    for f in files:
        src = os.path.join(onnx_dir, f)
        name = f.split(".")[0]
        out = os.path.join(work, f)
        err = run_save(src, out)
        report(err is None, f"{f}: onnx-save", err or "")
        if err:
            continue
        orig = onnx.load(src)
        report(onnx.load(out) == orig, f"{f}: proto equal after round trip")
        if checker_ok(src):
            report(checker_ok(out), f"{f}: checker full_check on output")
        golden = os.path.join(FIX, "hf", name, "golden.safetensors")
        feeds = {}
        if os.path.exists(golden):
            g = load_file(golden)
            feeds = {k[len("input."):]: v for k, v in g.items() if k.startswith("input.")}
        report(bool(feeds), f"{f}: golden inputs found", golden)
        if not feeds:
            continue
        ref = ort_outputs(src, feeds)
        report(same_outputs(ref, ort_outputs(out, feeds)), f"{f}: ORT outputs bit-identical (inline)")
        # external data
        ext_dir = os.path.join(work, name + "_ext")
        os.makedirs(ext_dir, exist_ok=True)
        ext = os.path.join(ext_dir, "model.onnx")
        err = run_save(src, ext, "--external-data", "--external-threshold", "1024")
        report(err is None and os.path.exists(ext + ".data"), f"{f}: save with external data", err or "")
        if err:
            continue
        n_ext = sum(1 for t in onnx.load(ext, load_external_data=False).graph.initializer
                    if t.data_location == onnx.TensorProto.EXTERNAL)
        report(n_ext > 0, f"{f}: initializers stored externally", str(n_ext))
        report(checker_ok(ext), f"{f}: checker full_check on external-data model")
        m_ext_inline = onnx.load(ext)
        for t in m_ext_inline.graph.initializer:  # onnx.load marks loaded external tensors DEFAULT explicitly
            if t.HasField("data_location") and t.data_location == onnx.TensorProto.DEFAULT:
                t.ClearField("data_location")
        report(m_ext_inline == orig, f"{f}: external-data model equals original apart from layout")
        report(same_outputs(ref, ort_outputs(ext, feeds)), f"{f}: ORT outputs bit-identical (external data)")
        back = os.path.join(work, name + "_back.onnx")
        err = run_save(ext, back, "--no-external-data")
        report(err is None and onnx.load(back) == orig, f"{f}: tdeploy reads external data back", err or "")


def testdata_cases(work):
    r = subprocess.run(["dpkg", "-L", "libonnx-testdata"], capture_output=True, text=True)
    files = [p for p in r.stdout.split() if p.endswith("/model.onnx")]
    report(len(files) > 0, "libonnx-testdata models present")
    bad = []
    for i, src in enumerate(files):
        out = os.path.join(work, f"td_{i}.onnx")
        err = run_save(src, out)
        if err is not None or onnx.load(src) != onnx.load(out):
            bad.append(f"{src}: {err or 'proto differs'}")
        if os.path.exists(out):
            os.remove(out)
    report(not bad, f"libonnx-testdata: {len(files) - len(bad)}/{len(files)} node-test models round-trip exactly",
           "; ".join(bad[:5]))


def main():
    if not FIX or not BIN:
        print("FAIL: TD_FIXTURES and TD_BIN must be set")
        return 1
    work = os.path.join(TMP, "onnx_roundtrip")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    fixture_cases(work)
    testdata_cases(work)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
