"""Helpers shared by the export tests: run `tdeploy export`, check the file with
onnx.checker, run it with ONNX Runtime, compare, and keep a pass/fail tally."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort

BIN = os.environ.get("TD_BIN", "tdeploy")
TMP = os.environ.get("TD_TMP", "/tmp")
FIXTURES = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))


class Tally:
    def __init__(self):
        self.failed = []
        self.passed = 0

    def check(self, ok, label, detail=""):
        print(f"{'PASS' if ok else 'FAIL'} {label}{(': ' + detail) if detail else ''}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(label)
        return ok

    def finish(self):
        print(f"\n{self.passed} passed, {len(self.failed)} failed")
        for f in self.failed:
            print("  failed:", f)
        sys.exit(1 if self.failed else 0)


def run_export(model_dir, out, *args):
    """Run tdeploy export; returns CompletedProcess (stdout/stderr as text)."""
    if os.path.exists(out):
        os.remove(out)
    cmd = [BIN, "export", "-m", model_dir, "-o", out, "-q", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def checked_session(path):
    """onnx.checker full check, then an ONNX Runtime CPU session."""
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return model, ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(sess, feeds, int32=False):
    names = [i.name for i in sess.get_inputs()]
    dt = np.int32 if int32 else np.int64
    res = sess.run(None, {n: np.ascontiguousarray(feeds[n]).astype(dt) for n in names})
    return dict(zip([o.name for o in sess.get_outputs()], res))


def max_abs(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()) if np.size(a) else 0.0


def rel_err(out, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(out, np.float64) - ref) / max(np.linalg.norm(ref), 1e-30))


def metadata(model):
    return {p.key: p.value for p in model.metadata_props}


def load_json(path):
    with open(path) as f:
        return json.load(f)
