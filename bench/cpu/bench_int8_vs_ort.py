#!/usr/bin/env python3
"""int8 CPU inference: tdeploy vs ONNX Runtime, side by side in one run, 2 threads each.

Models: random-weight MiniLM-L6-H384 and bert-base (bench/make_model.py), exported by `tdeploy export`
(feature-extraction), as bench_vs_ort.py prepares them.
  tdeploy fp32: `tdeploy optimize` (fused) on tdeploy's CPU runtime;
  tdeploy int8: `tdeploy optimize --precision int8` (DynamicQuantizeMatMul + MultiHeadAttention);
  tdeploy int8 w7: the same with --int8-weight-bits 7 (weights in [-63, 63]: the AVX2 kernel's paired path);
  ORT fp32:     onnxruntime.transformers.optimizer.optimize_model (model_type bert), ORT_ENABLE_ALL;
  ORT int8:     that graph after onnxruntime.quantization.quantize_dynamic(per_channel=True, QInt8,
                op_types MatMul/Attention, MatMulConstBOnly), ORT_ENABLE_ALL.
Equal work: the same random ids and full masks bound as inputs on both sides, every output read (ORT copies
them into numpy; session_bench sums them). Shapes batch x seq 1x16, 1x128, 8x128, 32x128. Each shape
alternates the four configurations --rounds times; reported: median of the rounds' medians (ms), the
ORT int8 / tdeploy int8 ratios (8-bit and 7-bit weights) and their ranges over rounds (> 1: tdeploy
faster), tdeploy int8's speedup over tdeploy fp32. --clock cpu times process CPU time on both sides instead
of wall time (with --threads 1: what each side costs, whatever else runs on the host). Load averages at start and end are printed: on a shared host the figures move.

usage: bench/cpu/bench_int8_vs_ort.py [--build build] [--dir /tmp/td_cpu_bench] [--runs 10] [--rounds 3]
                                      [--models minilm-l6-h384,bert-base] [--shapes 1x16,1x128,8x128,32x128]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_vs_ort as base  # noqa: E402  (prepare, timing helpers, model dims)


def prepare_int8(build, d, model, ort_opt):
    exported = os.path.join(d, model + ".onnx")
    td8 = os.path.join(d, model + "-tdeploy-int8.onnx")
    td8w7 = os.path.join(d, model + "-tdeploy-int8w7.onnx")
    ort8 = os.path.join(d, model + "-ort-int8.onnx")
    if not os.path.exists(td8):
        subprocess.run([os.path.join(build, "tdeploy"), "optimize", exported, "-o", td8, "--precision", "int8", "-q"],
                       check=True)
    if not os.path.exists(td8w7):
        subprocess.run([os.path.join(build, "tdeploy"), "optimize", exported, "-o", td8w7, "--precision", "int8",
                        "--int8-weight-bits", "7", "-q"], check=True)
    if not os.path.exists(ort8):
        import logging
        logging.getLogger().setLevel(logging.ERROR)
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(ort_opt, ort8, per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1})
    return td8, td8w7, ort8


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(base.ROOT, "build"))
    ap.add_argument("--dir", default="/tmp/td_cpu_bench")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="minilm-l6-h384,bert-base")
    ap.add_argument("--shapes", default="1x16,1x128,8x128,32x128")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time on both sides (use with --threads 1 on a busy host)")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    import onnxruntime as ort
    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    la = os.getloadavg()
    print(f"machine: {base.cpu_model()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; {a.threads} threads; {a.clock} clock; "
          f"load average at start {la[0]:.1f} {la[1]:.1f} {la[2]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}")
    print("| model | batch x seq | tdeploy fp32 ms | tdeploy int8 ms | tdeploy int8 w7 ms | ORT fp32 ms | ORT int8 ms | "
          "ORT int8 / tdeploy int8 (range) | ORT int8 / tdeploy int8 w7 (range) | tdeploy int8 vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in a.models.split(","):
        fused, ort_opt = base.prepare(a.build, a.dir, model)
        td8, td8w7, ort8 = prepare_int8(a.build, a.dir, model, ort_opt)
        sessions = {}
        for key, path in (("fp32", ort_opt), ("int8", ort8)):
            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sessions[key] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sessions["int8"].get_inputs()]
        for b, s in shapes:
            runs = a.runs if b * s <= 1024 else max(3, a.runs // 3)
            t = {k: [] for k in ("td32", "td8", "td7", "ox32", "ox8")}
            for _ in range(max(1, a.rounds)):
                t["td32"].append(base.time_tdeploy(a.build, fused, b, s, runs, a.threads, a.clock))
                t["td8"].append(base.time_tdeploy(a.build, td8, b, s, runs, a.threads, a.clock))
                t["td7"].append(base.time_tdeploy(a.build, td8w7, b, s, runs, a.threads, a.clock))
                t["ox32"].append(base.time_ort(sessions["fp32"], names, b, s, runs, a.clock))
                t["ox8"].append(base.time_ort(sessions["int8"], names, b, s, runs, a.clock))
            m = {k: statistics.median(v) for k, v in t.items()}
            r8 = [o / d for o, d in zip(t["ox8"], t["td8"])]
            r7 = [o / d for o, d in zip(t["ox8"], t["td7"])]
            print(f"| {model} | {b}x{s} | {m['td32']:.2f} | {m['td8']:.2f} | {m['td7']:.2f} | {m['ox32']:.2f} | "
                  f"{m['ox8']:.2f} | {statistics.median(r8):.2f}x ({min(r8):.2f}-{max(r8):.2f}) | "
                  f"{statistics.median(r7):.2f}x ({min(r7):.2f}-{max(r7):.2f}) | {m['td32'] / m['td8']:.2f}x |",
                  flush=True)
    la = os.getloadavg()
    print(f"load average at end {la[0]:.1f} {la[1]:.1f} {la[2]:.1f}")


if __name__ == "__main__":
    main()
