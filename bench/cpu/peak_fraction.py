#!/usr/bin/env python3
"""Fraction of the measured FMA peak that tdeploy's CPU runtime reaches on bert-base 1x128 (fp32, 2 threads).

This host is a 2-vCPU virtual machine whose speed drifts by ~10% from minute to minute (other tenants), so a
peak measured at one moment and a model timed at another can disagree by more than the thing measured. Each
pair here measures the peak (build/fma_peak, FMA-only AVX-512 loop on N threads) and then, right after, the
model (build/session_bench, median of --runs runs after warm-up), and reports the fraction per pair plus the
median over pairs. The model is the same fused bert-base file bench/cpu/bench_vs_ort.py builds (random weights,
`tdeploy export` + `tdeploy optimize`); FLOPs are counted as in that script (2 per multiply-add of every
MatMul/Attention product).

usage: bench/cpu/peak_fraction.py [--build build] [--dir /tmp/td_cpu_bench] [--pairs 8] [--runs 30] [--threads 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_ort import ROOT, cpu_model, flops, prepare  # noqa: E402


def peak(build, threads):
    out = subprocess.run([os.path.join(build, "fma_peak"), str(threads)], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():  # "threads N: zmm X GFLOP/s, ymm Y GFLOP/s" (no zmm part without AVX-512)
        if line.startswith(f"threads {threads}:"):
            parts = line.replace(",", "").split()
            return max(float(parts[i + 1]) for i, w in enumerate(parts) if w in ("zmm", "ymm"))
    raise RuntimeError(f"fma_peak printed no line for {threads} threads: {out!r}")


def model_ms(build, path, runs, threads):
    out = subprocess.run([os.path.join(build, "session_bench"), path, "1", "128", "--threads", str(threads),
                          "--runs", str(runs), "--warmup", "3"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--dir", default="/tmp/td_cpu_bench")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    fused, _ = prepare(a.build, a.dir, "bert-base")
    gflop = flops("bert-base", 1, 128) / 1e9
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; bert-base 1x128 = {gflop:.2f} GFLOP")
    print("| pair | peak GFLOP/s | tdeploy median ms | tdeploy GFLOP/s | fraction of peak |")
    print("|---|---|---|---|---|")
    fr = []
    for i in range(a.pairs):
        p = peak(a.build, a.threads)
        ms = model_ms(a.build, fused, a.runs, a.threads)
        g = gflop / (ms / 1e3)
        fr.append(g / p)
        print(f"| {i + 1} | {p:.1f} | {ms:.1f} | {g:.1f} | {100 * g / p:.1f}% |", flush=True)
    print(f"median fraction {100 * statistics.median(fr):.1f}% (min {100 * min(fr):.1f}%, max {100 * max(fr):.1f}%); "
          f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
