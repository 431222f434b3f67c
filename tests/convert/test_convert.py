#!/usr/bin/env python3
"""`tdeploy convert` end to end on every encoder fixture: all files present,
validation passes, report consistent with the run, Triton configs valid (parsed
with Triton's own ModelConfig protobuf and checked against the ONNX model); a
backend outside the tolerance is caught by validation; bad inputs (missing model,
unsupported architecture, impossible task, bad shapes, unwritable OUTDIR,
SIGINT) give a clear message, a non-zero exit and nothing half-written."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

BIN = os.environ["TD_BIN"]
FIX = os.path.join(os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")), "hf")
TMP = os.path.join(os.environ.get("TD_TMP", "/tmp"), "convert_test")
ENCODERS = ["bert-base", "bert-seqcls", "bert-tokcls", "bert-qa", "roberta-seqcls", "xlmr-base", "distilbert-seqcls",
            "electra-base", "minilm-st"]
TYPES = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.INT32: "TYPE_INT32",
         onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}
SHAPE_ARGS = ["--seq-len", "1", "12", "24", "--batch-size", "1", "2", "3", "--nb-measures", "3", "--warmup", "1",
              "--threads", "2", "-q"]

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
    print(f"{'PASS' if cond else 'FAIL'} {what}")
    return cond


def run(args, **kw):
    return subprocess.run([BIN, "convert"] + args, capture_output=True, text=True, timeout=600, **kw)


def no_leftovers(out):
    parent, base = os.path.split(out.rstrip("/"))
    return not glob.glob(os.path.join(parent, base + ".tmp.*"))


def check_triton_config(cfg_path, onnx_path, batch_max):
    cfg = model_config_pb2.ModelConfig()
    text_format.Parse(open(cfg_path).read(), cfg)
    m = onnx.load(onnx_path, load_external_data=False)
    ok = cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == batch_max and cfg.dynamic_batching is not None
    for kind, values in (("input", [i for i in m.graph.input]), ("output", list(m.graph.output))):
        entries = {e.name: e for e in getattr(cfg, kind)}
        ok &= len(entries) == len(values)
        for v in values:
            e = entries.get(v.name)
            if e is None:
                return False
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim][1:]
            ok &= model_config_pb2.DataType.Name(e.data_type) == TYPES[v.type.tensor_type.elem_type]
            ok &= list(e.dims) == dims
    return ok


def check_tdeploy_config(model_dir, onnx_path, batch_max):
    """The tdeploy backend's model: its token inputs (optional, ragged), TEXT/TEXT_PAIR, the graph's outputs."""
    cfg = model_config_pb2.ModelConfig()
    text_format.Parse(open(os.path.join(model_dir, "config.pbtxt")).read(), cfg)
    m = onnx.load(onnx_path, load_external_data=False)
    ok = cfg.backend == "tdeploy" and cfg.max_batch_size == batch_max and cfg.HasField("dynamic_batching")
    ins = {e.name: e for e in cfg.input}
    ok &= set(ins) == {i.name for i in m.graph.input} | {"TEXT", "TEXT_PAIR"}
    ok &= all(e.optional and (e.allow_ragged_batch or e.data_type == model_config_pb2.TYPE_STRING) for e in ins.values())
    outs = {e.name: list(e.dims) for e in cfg.output}
    want = {v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim][1:]
            for v in m.graph.output}
    ok &= outs == want
    with open(onnx_path, "rb") as a, open(os.path.join(model_dir, "1", "model-optimized.onnx"), "rb") as b:
        ok &= a.read() == b.read()
    return ok and os.path.isfile(os.path.join(model_dir, "1", "tokenizer.json"))


def test_fixture(name):
    out = os.path.join(TMP, name)
    r = run(["-m", os.path.join(FIX, name), "-o", out, "--triton-backend", "both"] + SHAPE_ARGS)
    if not check(r.returncode == 0, f"{name}: convert exit 0 ({r.stderr.strip()[-300:]})"):
        return
    for f in ["model.onnx", "model-optimized.onnx", "report.json", "tokenizer.json", "config.json"]:
        check(os.path.isfile(os.path.join(out, f)), f"{name}: {f} written")
    onnx.checker.check_model(os.path.join(out, "model.onnx"), full_check=True)
    rep = json.load(open(os.path.join(out, "report.json")))
    check(rep["shapes"] == {"batch": [1, 2, 3], "sequence": [1, 12, 24]}, f"{name}: report shapes")
    outs = [o.name for o in onnx.load(os.path.join(out, "model.onnx"), load_external_data=False).graph.output]
    val = [v for v in rep["validation"] if v["backend"] == "cpu"]
    check(sorted(v["output"] for v in val) == sorted(outs), f"{name}: validation covers every output {outs}")
    check(all(v["passed"] and v["n_compared"] > 0 and v["max_abs_diff"] <= v["atol"] + 1e-12 for v in val),
          f"{name}: validation passed " + ", ".join(f"{v['output']} max abs {v['max_abs_diff']:.2e}" for v in val))
    benches = {(b["backend"], b["batch"], b["sequence"]) for b in rep["benchmarks"]}
    want = {(be, b, q) for be in ("reference", "cpu") for b, q in ((2, 12), (1, 1), (3, 24))}
    check(benches == want, f"{name}: benchmarks at the opt shape and, with --nb-measures, both corners {benches}")
    check(all(b["latency_s"]["n"] == 3 and b["latency_s"]["min"] > 0 and b["throughput"]["tokens_per_s"] > 0
              for b in rep["benchmarks"]), f"{name}: latency figures")
    cfg_json = json.load(open(os.path.join(FIX, name, "config.json")))
    layers = cfg_json.get("num_hidden_layers", cfg_json.get("n_layers"))
    fus = rep["optimizer"]["fusions"]
    check(fus.get("Attention") == layers and fus.get("SkipLayerNormalization", 0) >= layers,
          f"{name}: model-optimized.onnx fully fused ({layers} layers): {fus}")
    check(check_tdeploy_config(os.path.join(out, "triton", name), os.path.join(out, "model-optimized.onnx"), 3),
          f"{name}: tdeploy-backend Triton config matches the optimized model")
    model_name = name + "_onnxruntime"
    cfg = os.path.join(out, "triton", model_name, "config.pbtxt")
    check(check_triton_config(cfg, os.path.join(out, "triton", model_name, "1", "model.onnx"), 3),
          f"{name}: Triton config matches the ONNX model")
    for extra in ("_tokenize", "_inference"):
        p = os.path.join(out, "triton", model_name + extra, "config.pbtxt")
        cfg = model_config_pb2.ModelConfig()
        ok = os.path.isfile(p)
        if ok:
            text_format.Parse(open(p).read(), cfg)
        check(ok, f"{name}: {model_name + extra} config parses")
    check(no_leftovers(out), f"{name}: no temporary directories left")


def test_validation_failure():
    # a backend that differs from the reference beyond the tolerance: bf16 weights checked at zero tolerance
    # (the product has no fault-injection hook; a real difference has to be caught)
    out = os.path.join(TMP, "fault")
    r = run(["-m", os.path.join(FIX, "bert-seqcls"), "-o", out, "--precision", "bf16", "--atol", "0", "--rtol", "0"]
            + SHAPE_ARGS)
    check(r.returncode == 3 and "validation failed" in r.stderr, f"bf16 at zero tolerance: exit 3 ({r.stderr.strip()[-200:]})")
    rep = json.load(open(os.path.join(out + ".failed", "report.json")))
    check(any(not v["passed"] for v in rep["validation"] if v["backend"] == "cpu"), "zero tolerance: report says failed")
    check(not os.path.exists(out) and not os.path.exists(os.path.join(out + ".failed", "triton", "bert-seqcls")),
          "zero tolerance: OUTDIR not written, no Triton model for it")
    check(all(os.path.exists(p) for p in rep["artifacts"].values()),
          f"zero tolerance: every artifact report.json lists exists ({rep.get('artifacts')})")
    check("no Triton model" in r.stdout and "and the Triton model" not in r.stdout,
          f"zero tolerance: the summary does not claim a Triton model was written ({r.stdout[-400:]})")


def test_errors():
    # a model family tdeploy does not export (gpt2 was the example until decoders landed): t5
    t5 = os.path.join(TMP, "t5-like")
    shutil.rmtree(t5, ignore_errors=True)
    shutil.copytree(os.path.join(FIX, "gpt2-lm"), t5)
    cfg = json.load(open(os.path.join(t5, "config.json")))
    cfg.update(model_type="t5", architectures=["T5ForConditionalGeneration"])
    json.dump(cfg, open(os.path.join(t5, "config.json"), "w"))
    cases = [
        ("missing model", ["-m", os.path.join(TMP, "does-not-exist")], "not found"),
        ("unsupported architecture", ["-m", t5], "t5"),
        ("impossible task", ["-m", os.path.join(FIX, "bert-base"), "--task", "question-answering"], "question"),
        ("unknown task", ["-m", os.path.join(FIX, "bert-base"), "--task", "translation"], "translation"),
        ("min > max", ["-m", os.path.join(FIX, "bert-base"), "--seq-len", "64", "32", "16"], "MIN <= OPT <= MAX"),
        ("seq too long", ["-m", os.path.join(FIX, "bert-base"), "--seq-len", "1", "8", "100000"], "seq-len"),
        ("bad precision", ["-m", os.path.join(FIX, "bert-base"), "--precision", "int3"], "precision"),
        ("unknown backend", ["-m", os.path.join(FIX, "bert-base"), "--backend", "tpu"], "tpu"),
    ]
    for what, args, kw in cases:
        out = os.path.join(TMP, "err_" + what.replace(" ", "_"))
        r = run(args + ["-o", out, "--nb-measures", "1", "-q"])
        check(r.returncode in (1, 2) and kw.lower() in r.stderr.lower() and not os.path.exists(out) and no_leftovers(out),
              f"error '{what}': exit {r.returncode}, message: {r.stderr.strip()[:200]}")
    blocker = os.path.join(TMP, "a_file")
    open(blocker, "w").close()
    out = os.path.join(blocker, "out")
    r = run(["-m", os.path.join(FIX, "bert-base"), "-o", out, "-q"])
    check(r.returncode == 1 and blocker in r.stderr, f"error 'unwritable OUTDIR': exit {r.returncode}: {r.stderr.strip()[:200]}")


def test_sigint():
    out = os.path.join(TMP, "interrupted")
    p = subprocess.Popen([BIN, "convert", "-m", os.path.join(FIX, "bert-base"), "-o", out, "--seq-len", "1", "64",
                          "64", "--batch-size", "1", "4", "4", "--nb-measures", "1000000", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    parent = os.path.dirname(out)
    while time.time() < deadline and not glob.glob(os.path.join(parent, "interrupted.tmp.*", "report.json")):
        # wait until the run is in its benchmark (model files already in the staging directory)
        if glob.glob(os.path.join(parent, "interrupted.tmp.*", "model-optimized.onnx")):
            time.sleep(1.0)
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    check(p.returncode == 130 and "interrupted" in err and not os.path.exists(out) and no_leftovers(out),
          f"SIGINT: exit {p.returncode}, nothing written: {err.strip()[:200]}")


def test_hub_download():
    """convert -m org/name that is not in the cache downloads it from HF_ENDPOINT (a local server in the Hub's
    URL layout) into HF_HOME, then converts it; a second run needs no request."""
    import hashlib
    import http.server
    import threading
    src = os.path.join(FIX, "bert-seqcls")
    files = {f: open(os.path.join(src, f), "rb").read() for f in os.listdir(src) if not f.startswith("golden")}
    commit = hashlib.sha1(b"test-commit").hexdigest()
    seen = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            seen.append(self.path)
            parts = self.path.split("?")[0].split("/")
            if self.path.startswith("/api/models/test-org/bert-seqcls/revision/"):
                body = json.dumps({"id": "test-org/bert-seqcls", "sha": commit,
                                   "siblings": [{"rfilename": f} for f in files]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
            elif len(parts) >= 6 and "/".join(parts[1:4]) == "test-org/bert-seqcls/resolve" and parts[5] in files:
                body = files[parts[5]]
                self.send_response(200)
                self.send_header("ETag", '"%s"' % hashlib.sha256(body).hexdigest())
                self.send_header("X-Repo-Commit", commit)
            else:
                body = b'{"error": "not found"}'
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

    server = http.server.HTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_HOME": os.path.join(TMP, "hf")})
    try:
        out = os.path.join(TMP, "hub_convert")
        r = run(["-m", "test-org/bert-seqcls", "-o", out] + SHAPE_ARGS, env=env)
        check(r.returncode == 0 and os.path.isfile(os.path.join(out, "model.onnx")) and len(seen) > 0,
              f"hub: convert downloads a model that is not cached ({len(seen)} requests) {r.stderr.strip()[-200:]}")
        n = len(seen)
        r = run(["-m", "test-org/bert-seqcls", "-o", out] + SHAPE_ARGS, env=env)
        check(r.returncode == 0 and len(seen) == n, f"hub: second convert is a cache hit ({len(seen) - n} requests)")
        r = run(["-m", "test-org/missing", "-o", os.path.join(TMP, "hub_missing")] + SHAPE_ARGS, env=env)
        check(r.returncode == 1 and "test-org/missing" in r.stderr, f"hub: missing repo: {r.stderr.strip()[:200]}")
    finally:
        server.shutdown()


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    for name in ENCODERS:
        test_fixture(name)
    test_validation_failure()
    test_errors()
    test_sigint()
    test_hub_download()
    print(f"{failures == 0 and 'ok' or 'FAILED'}: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
