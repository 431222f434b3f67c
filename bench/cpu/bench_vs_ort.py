#!/usr/bin/env python3
"""tdeploy's CPU runtime vs ONNX Runtime (CPU), side by side in one run, fp32, 2 threads each.

Models: random-weight MiniLM-L6-H384 and bert-base HF directories (bench/make_model.py), exported by
`tdeploy export` (feature-extraction). tdeploy runs its fused graph (`tdeploy optimize`). ONNX Runtime runs,
by default (--ort-graph tdeploy-fused), that same fused file with every graph optimization enabled: its
com.microsoft contrib ops (EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu) are the ones
ONNX Runtime's own transformers optimizer emits, so both runtimes execute the identical fully fused graph.
--ort-graph ort-optimizer instead runs the export through onnxruntime.transformers.optimizer.optimize_model
(model_type bert). Whichever graph ONNX Runtime gets, the script asserts it is fully fused (one
EmbedLayerNormalization, an Attention per layer, two SkipLayerNormalizations per layer, a BiasGelu/Gelu/
FastGelu per layer) and stops otherwise, so the baseline is never a partly fused graph. (ONNX Runtime
1.32's optimizer fuses only the SkipLayerNormalizations of tdeploy's export -- no Attention, GELU or
embedding fusion -- which is what figures taken with it before 2026-12-07 compared against.) Shapes: batch x seq 1x16, 1x128, 8x128, 32x128. Inputs: random ids, full attention mask.

Equal work: each timed ONNX Runtime call is InferenceSession.run(None, feed), which binds the numpy inputs
and returns every output as a new numpy array; each timed tdeploy run (bench/cpu/session_bench.c) binds
every input, runs, and copies every output into a freshly allocated buffer. Only ONNX Runtime's Python
call overhead (tens of microseconds) is on one side alone; it counts against ONNX Runtime at 1x16.

Reported per shape, from --rounds alternating rounds (tdeploy, then ONNX Runtime, per round): the median
ms of each side and the range (min-max) of the per-round medians, the ratio (ONNX Runtime / tdeploy:
> 1 means tdeploy is faster) as the median and the range over rounds, and tdeploy's GFLOP/s. Never the
best run. The load average is printed at the start and the end: on a shared host, quote it with the figures.
--clock cpu times process CPU time instead of wall time on both sides (session_bench's median_cpu_ms,
time.process_time() around ONNX Runtime's run): with --threads 1 that is what each side costs even when other
jobs keep the cores busy, where wall time mostly measures the waits for a core. With more threads CPU time
also counts spinning workers, so use it with --threads 1.

usage: bench/cpu/bench_vs_ort.py [--build build] [--dir /tmp/td_cpu_bench] [--runs 10] [--models minilm-l6-h384,bert-base]
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHAPES = [(1, 16), (1, 128), (8, 128), (32, 128)]
DIMS = {"minilm-l6-h384": (6, 384, 12, 1536), "bert-base": (12, 768, 12, 3072)}


def flops(model, b, s):
    layers, h, heads, ff = DIMS[model]
    t = b * s
    per_layer = 2 * t * h * (3 * h) + 2 * t * h * h + 2 * 2 * t * h * ff + 2 * 2 * b * s * s * h
    return layers * per_layer


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def prepare(build, d, model, ort_graph="tdeploy-fused"):
    src = os.path.join(d, model)
    if not os.path.exists(os.path.join(src, "model.safetensors")):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_model.py"), "--size", model, "--out", src],
                       check=True, stdout=subprocess.DEVNULL)
    exported = os.path.join(d, model + ".onnx")
    fused = os.path.join(d, model + "-tdeploy-fused.onnx")
    ort_opt = os.path.join(d, model + "-ort-optimized.onnx")
    tdeploy = os.path.join(build, "tdeploy")
    if not os.path.exists(exported):
        subprocess.run([tdeploy, "export", "-m", src, "--task", "feature-extraction", "-o", exported, "-q"], check=True)
    if not os.path.exists(fused):
        subprocess.run([tdeploy, "optimize", exported, "-o", fused, "-q"], check=True)
    if ort_graph == "tdeploy-fused":
        check_ort_fusions(fused, model)
        return fused, fused
    if not os.path.exists(ort_opt):
        from onnxruntime.transformers.optimizer import optimize_model
        layers, h, heads, ff = DIMS[model]
        m = optimize_model(exported, model_type="bert", num_heads=heads, hidden_size=h, opt_level=0)  # python fusions; the session applies ORT_ENABLE_ALL
        m.save_model_to_file(ort_opt)
    check_ort_fusions(ort_opt, model)
    return fused, ort_opt


def check_ort_fusions(path, model):
    """The baseline must be ONNX Runtime's fully fused graph: fail loudly if its optimizer missed a fusion."""
    import onnx
    layers = DIMS[model][0]
    counts = {}
    for n in onnx.load(path, load_external_data=False).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    gelu = counts.get("BiasGelu", 0) + counts.get("Gelu", 0) + counts.get("FastGelu", 0)
    want = {"EmbedLayerNormalization": 1, "Attention": layers, "SkipLayerNormalization": 2 * layers}
    got = {k: counts.get(k, 0) for k in want}
    if got != want or gelu != layers:
        sys.exit(f"{path}: ONNX Runtime's optimizer fused {got} and {gelu} GELUs, expected {want} and {layers} "
                 f"GELUs: the baseline would not be its best graph")
    print(f"ONNX Runtime's graph ({os.path.basename(path)}): {got}, GELU {gelu}", flush=True)


def time_tdeploy(build, path, b, s, runs, threads, clock="wall"):
    out = subprocess.run([os.path.join(build, "session_bench"), path, str(b), str(s), "--threads", str(threads),
                          "--runs", str(runs), "--warmup", "3"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median_cpu_ms" if clock == "cpu" else "median_ms"]


def time_ort(sess, names, b, s, runs, clock="wall"):
    rng = np.random.default_rng(1)
    feed = {}
    for n in names:
        if n == "input_ids":
            feed[n] = rng.integers(1000, 30522, size=(b, s), dtype=np.int64)
        elif n == "attention_mask":
            feed[n] = np.ones((b, s), dtype=np.int64)
        else:
            feed[n] = np.zeros((b, s), dtype=np.int64)
    for _ in range(3):
        sess.run(None, feed)
    now = time.process_time if clock == "cpu" else time.perf_counter
    t = []
    for _ in range(runs):
        t0 = now()
        sess.run(None, feed)
        t.append((now() - t0) * 1e3)
    return statistics.median(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--dir", default="/tmp/td_cpu_bench")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="minilm-l6-h384,bert-base")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time, or process CPU time (meaningful with --threads 1 on a busy host)")
    ap.add_argument("--shapes", default=",".join(f"{b}x{s}" for b, s in SHAPES), help="batch x seq list")
    ap.add_argument("--ort-graph", choices=["tdeploy-fused", "ort-optimizer"], default="tdeploy-fused",
                    help="the graph ONNX Runtime runs: tdeploy's fused file, or ONNX Runtime's optimizer's output")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternate tdeploy and ONNX Runtime this many times per shape and report the median of the "
                         "rounds' medians, so a slow moment of a shared host does not land on one side only")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    import onnxruntime as ort
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"load average at start {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{a.threads} thread(s) each; {a.clock} time; ONNX Runtime graph: {a.ort_graph}")
    print(f"| model | batch x seq | tdeploy ms (range) | ONNX Runtime ms (range) | ORT/tdeploy (range) | "
          f"tdeploy GFLOP/s |")
    print(f"|---|---|---|---|---|---|")
    for model in a.models.split(","):
        fused, ort_opt = prepare(a.build, a.dir, model, a.ort_graph)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(ort_opt, so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        for b, s in [tuple(int(v) for v in x.split("x")) for x in a.shapes.split(",")]:
            runs = a.runs if b * s <= 1024 else max(3, a.runs // 3)
            tds, oxs = [], []
            for _ in range(max(1, a.rounds)):
                tds.append(time_tdeploy(a.build, fused, b, s, runs, a.threads, a.clock))
                oxs.append(time_ort(sess, names, b, s, runs, a.clock))
            td, ox = statistics.median(tds), statistics.median(oxs)
            ratios = [o / t for o, t in zip(oxs, tds)]
            gf = flops(model, b, s) / (td * 1e-3) / 1e9
            print(f"| {model} | {b}x{s} | {td:.2f} ({min(tds):.2f}-{max(tds):.2f}) | {ox:.2f} ({min(oxs):.2f}-"
                  f"{max(oxs):.2f}) | {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
                  f"{gf:.0f} |", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}")


if __name__ == "__main__":
    main()
