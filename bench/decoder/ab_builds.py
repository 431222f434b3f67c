#!/usr/bin/env python3
"""Two tdeploy builds generating on the same decoder ONNX, side by side in one run (rounds alternate A, B).

For a change inside tdeploy's generator or runtime (e.g. the fused attention bound to the cache in place vs the
standard attention with KvCacheAppend): build the base commit elsewhere (git archive BASE | tar -x -C DIR; cmake),
then
    python3 bench/decoder/ab_builds.py MODEL.onnx BIN_A BIN_B [--threads 1] [--rounds 4] [--prompt 128] [--new 128]
Equal work: the same random prompt ids (fixed seed), greedy, eos ignored, batch 1, the same threads. Per build: the
generator's own prefill tokens/s and decode ms/token (wall and process CPU time, from generate --json) and its
runtime stats; per round the ratio B/A; medians and ranges over rounds; the tokens must be identical (exit 1 if
not). MODEL.onnx: e.g. bench_decoder.py's export of SmolLM2-135M (--work DIR/smollm2-135m.onnx)."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("bin_a")
ap.add_argument("bin_b")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--new", type=int, default=128)
a = ap.parse_args()

ids = ",".join(map(str, np.random.default_rng(0).integers(100, 40000, a.prompt).tolist()))
bins = [a.bin_a, a.bin_b]
res = {b: [] for b in bins}
load = []
for _ in range(a.rounds):
    load.append(os.getloadavg()[0])
    for b in bins:
        r = subprocess.run([b, "generate", a.model, "--prompt-ids", ids, "--max-new-tokens", str(a.new), "--ignore-eos",
                            "--threads", str(a.threads), "--json"], capture_output=True, text=True, check=True)
        d = json.loads(r.stdout)
        n = len(d["results"][0]["ids"])
        res[b].append({"prefill": a.prompt / d["prefill_seconds"], "prefill_cpu": a.prompt / d["prefill_cpu_seconds"],
                       "decode": d["decode_seconds"] / (n - 1) * 1e3, "decode_cpu": d["decode_cpu_seconds"] / (n - 1) * 1e3,
                       "ids": d["results"][0]["ids"], "runtime": d.get("runtime")})
same = all(x["ids"] == y["ids"] for x, y in zip(res[bins[0]], res[bins[1]]))
print(f"{a.threads} thread(s), prompt {a.prompt}, {a.new} new tokens, {a.rounds} rounds alternating; "
      f"{os.cpu_count()} cpus, load average {min(load):.1f}-{max(load):.1f}; tokens identical: {same}")


def med(v):
    v = sorted(v)
    return f"{np.median(v):.2f} ({v[0]:.2f}-{v[-1]:.2f})"


keys = ("prefill", "prefill_cpu", "decode", "decode_cpu")
print("| build | prefill tokens/s (wall) | prefill tokens/s (CPU) | decode ms/token (wall) | decode ms/token (CPU) |")
print("|---|---|---|---|---|")
for tag, b in zip("AB", bins):
    print(f"| {tag} {b} | " + " | ".join(med([r[k] for r in res[b]]) for k in keys) + " |")
    print(f"  runtime: {res[b][0]['runtime']}")
print("per-round ratios B/A: " + "; ".join(
    f"{k} {med([y[k] / x[k] for x, y in zip(res[bins[0]], res[bins[1]])])}" for k in keys))
sys.exit(0 if same else 1)
