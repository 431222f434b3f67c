#!/usr/bin/env python3
"""ONNX load/save benchmark: tdeploy vs onnx (Python) on a bert-base-sized model.

Generates (once, cached) a BERT-base-shaped ONNX graph with random float32
weights (~110M parameters, ~440 MB) using onnx.helper, then measures, each run
in a fresh child process:
  - tdeploy onnx-save IN -o OUT --json   (load + check, then save; timings from --json)
  - tdeploy inspect IN                    (load + check only: peak RSS of a load)
  - python onnx.load(IN)                  (time + peak RSS of the child)
Peak RSS is ru_maxrss of the child (resource.getrusage(RUSAGE_CHILDREN) deltas are
not per child, so each measurement runs under its own python -c wrapper).

usage: bench/onnx_io_bench.py [--tdeploy build/tdeploy] [--dir /tmp/td_onnx_bench] [--runs 5]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN, LAYERS, FF, VOCAB, POS = 768, 12, 3072, 30522, 512


def make_model(path):
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def w(name, *shape):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape, dtype=np.float32) * 0.02), name))
        return name

    w("word_emb", VOCAB, HIDDEN)
    w("pos_emb", POS, HIDDEN)
    w("type_emb", 2, HIDDEN)
    nodes.append(helper.make_node("Gather", ["word_emb", "input_ids"], ["emb"]))
    x = "emb"
    for l in range(LAYERS):
        p = f"l{l}."
        for nm, shape in [("q", (HIDDEN, HIDDEN)), ("k", (HIDDEN, HIDDEN)), ("v", (HIDDEN, HIDDEN)),
                          ("o", (HIDDEN, HIDDEN)), ("ff1", (HIDDEN, FF)), ("ff2", (FF, HIDDEN))]:
            w(p + nm + ".w", *shape)
            w(p + nm + ".b", shape[1])
        w(p + "ln1.g", HIDDEN), w(p + "ln1.b", HIDDEN), w(p + "ln2.g", HIDDEN), w(p + "ln2.b", HIDDEN)
        nodes += [
            helper.make_node("MatMul", [x, p + "v.w"], [p + "v"]),
            helper.make_node("Add", [p + "v", p + "v.b"], [p + "vb"]),
            helper.make_node("MatMul", [p + "vb", p + "o.w"], [p + "o"]),
            helper.make_node("Add", [p + "o", x], [p + "r1"]),
            helper.make_node("LayerNormalization", [p + "r1", p + "ln1.g", p + "ln1.b"], [p + "h1"], axis=-1),
            helper.make_node("MatMul", [p + "h1", p + "ff1.w"], [p + "f1"]),
            helper.make_node("Relu", [p + "f1"], [p + "f1r"]),
            helper.make_node("MatMul", [p + "f1r", p + "ff2.w"], [p + "f2"]),
            helper.make_node("Add", [p + "f2", p + "h1"], [p + "r2"]),
            helper.make_node("LayerNormalization", [p + "r2", p + "ln2.g", p + "ln2.b"], [p + "out"], axis=-1),
        ]
        x = p + "out"
    graph = helper.make_graph(
        nodes, "bert_base_like",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "sequence", HIDDEN])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx_io_bench")
    onnx.save(model, path)


LAST_CPU = [0.0]


def run_child(cmd):
    """Run cmd in a child; return (wall seconds, peak RSS bytes, stdout); CPU seconds go to LAST_CPU."""
    wrapper = ("import resource,subprocess,sys,time,json;t=time.perf_counter();"
               "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);e=time.perf_counter()-t;"
               "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
               "print(json.dumps({'rc':r.returncode,'wall':e,'rss':u.ru_maxrss*1024,'cpu':u.ru_utime+u.ru_stime,"
               "'out':r.stdout,'err':r.stderr}))")
    r = subprocess.run([sys.executable, "-c", wrapper] + cmd, capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    if d["rc"] != 0:
        raise SystemExit(f"{cmd} failed: {d['err']}")
    LAST_CPU[0] = d["cpu"]
    return d["wall"], d["rss"], d["out"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tdeploy", default=os.path.join(os.path.dirname(__file__), "..", "build", "tdeploy"))
    ap.add_argument("--dir", default="/tmp/td_onnx_bench")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    src = os.path.join(a.dir, "bert_base_like.onnx")
    if not os.path.exists(src):
        t = time.perf_counter()
        make_model(src)
        print(f"generated {src} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    size = os.path.getsize(src)
    out = os.path.join(a.dir, "roundtrip.onnx")
    res = {"td_load": [], "td_save": [], "td_rss_save": [], "td_rss_inspect": [], "td_inspect_wall": [], "td_inspect_cpu": [],
           "py_load": [], "py_rss": [], "py_save": [], "py_cpu": []}
    pyload = "import onnx,time,sys;t=time.perf_counter();m=onnx.load(sys.argv[1]);print(time.perf_counter()-t)"
    pysave = ("import onnx,time,sys;m=onnx.load(sys.argv[1]);t=time.perf_counter();onnx.save(m,sys.argv[2]);"
              "print(time.perf_counter()-t)")
    for _ in range(a.runs):
        wall, rss, o = run_child([a.tdeploy, "onnx-save", src, "-o", out, "--json"])
        d = json.loads(o)
        res["td_load"].append(d["load_s"])
        res["td_save"].append(d["save_s"])
        res["td_rss_save"].append(rss)
        wall, rss, _ = run_child([a.tdeploy, "inspect", src])
        res["td_inspect_wall"].append(wall)
        res["td_inspect_cpu"].append(LAST_CPU[0])
        res["td_rss_inspect"].append(rss)
        wall, rss, o = run_child([sys.executable, "-c", pyload, src])
        res["py_load"].append(float(o))
        res["py_cpu"].append(LAST_CPU[0])
        res["py_rss"].append(rss)
        wall, rss, o = run_child([sys.executable, "-c", pysave, src, os.path.join(a.dir, "py_roundtrip.onnx")])
        res["py_save"].append(float(o))
    med = {k: statistics.median(v) for k, v in res.items()}
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"machine: {cpu}, {os.cpu_count()} cores, {platform.platform()}, load average {os.getloadavg()[0]:.1f}")
    print(f"model: {src} ({size / 1e6:.1f} MB), {a.runs} runs, medians")
    print(f"tdeploy load+check:           {med['td_load']:.3f} s")
    print(f"tdeploy inspect (process):    {med['td_inspect_wall']:.3f} s wall, {med['td_inspect_cpu']:.3f} s CPU, peak RSS {med['td_rss_inspect'] / 1e6:.1f} MB "
          f"({med['td_rss_inspect'] / size:.2f}x file)")
    print(f"tdeploy save:                 {med['td_save']:.3f} s (load+save peak RSS {med['td_rss_save'] / 1e6:.1f} MB, "
          f"{med['td_rss_save'] / size:.2f}x file)")
    print(f"python onnx.load:             {med['py_load']:.3f} s (process CPU {med['py_cpu']:.3f} s), peak RSS {med['py_rss'] / 1e6:.1f} MB "
          f"({med['py_rss'] / size:.2f}x file, incl. interpreter)")
    print(f"python onnx.save:             {med['py_save']:.3f} s")
    print(json.dumps({"file_bytes": size, **med}))


if __name__ == "__main__":
    main()
