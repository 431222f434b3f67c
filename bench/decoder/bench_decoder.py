#!/usr/bin/env python3
"""Decoder generation, tdeploy vs ONNX Runtime on the same exported ONNX, side by side in one run.

Model: SmolLM2-135M-Instruct Q4_1 (scripts/setup-smollm2.sh), exported by `tdeploy export -m FILE.gguf`
(weights dequantized to fp32). Equal work: the same prompt ids (random, fixed seed, PROMPT tokens), greedy,
NEW tokens with eos ignored, batch 1, THREADS threads.
- tdeploy: `tdeploy generate MODEL.onnx --prompt-ids ... --json` (its own timing of the prefill and of the decode
  steps, wall and process CPU time; the process start and graph load are outside both).
- ONNX Runtime: InferenceSession(ORT_ENABLE_ALL: its own graph optimizer) on the same file, the same greedy loop
  through past_key_values/present in Python (numpy argmax; the loop's overhead is part of ORT's decode figure),
  timed with time.perf_counter (wall) and time.process_time (CPU of the process).
Rounds alternate tdeploy / ORT. For each round the ratio tdeploy/ORT of decode ms/token and ORT/tdeploy of prefill
time (so > 1 means tdeploy is faster at prefill, < 1 faster at decode) is computed from wall and from CPU time;
the tables give medians and ranges over rounds. On a busy host the CPU-time figures of a 1-thread run (--threads 1)
are the ones that mean something: wall time there is mostly waiting for a core, and with 2 threads the CPU time
includes both runtimes' spin-waiting. With --batch B, B different prompts of the same length are generated
together (no padding).
usage: bench_decoder.py [--rounds 3] [--prompt 128] [--new 128] [--threads 2] [--batch 1] [--json FILE]"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--new", type=int, default=128)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--bin", default=os.path.join(ROOT, "build", "tdeploy"))
ap.add_argument("--work", default="/tmp/td_bench_decoder")
ap.add_argument("--json", help="also write every round's figures here")
a = ap.parse_args()

gguf = subprocess.run([os.path.join(ROOT, "scripts", "setup-smollm2.sh")], capture_output=True, text=True,
                      check=True).stdout.strip()
os.makedirs(a.work, exist_ok=True)
onnx_path = os.path.join(a.work, "smollm2-135m.onnx")
if not os.path.exists(onnx_path):
    # --precision fp32: the GGUF blocks dequantized (export keeps them quantized by default)
    subprocess.run([a.bin, "export", "-m", gguf, "-o", onnx_path, "--precision", "fp32", "-q"], check=True)
rng = np.random.default_rng(0)
prompts = rng.integers(100, 40000, (a.batch, a.prompt)).tolist()
prompt = prompts[0]


def run_tdeploy():
    flags = []
    for p in prompts:
        flags += ["--prompt-ids", ",".join(map(str, p))]
    r = subprocess.run([a.bin, "generate", onnx_path, *flags, "--max-new-tokens", str(a.new), "--ignore-eos",
                        "--threads", str(a.threads), "--json"], capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    n = len(d["results"][0]["ids"])
    return {"prefill": d["prefill_seconds"], "decode": d["decode_seconds"] / (n - 1),
            "prefill_cpu": d["prefill_cpu_seconds"], "decode_cpu": d["decode_cpu_seconds"] / (n - 1),
            "ids": [row["ids"] for row in d["results"]]}


import onnxruntime as ort  # noqa: E402

so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
ins = {i.name: i for i in sess.get_inputs()}
outs = [o.name for o in sess.get_outputs()]


def run_ort():
    ids = np.array(prompts, np.int64)
    b = len(prompts)
    mask = np.ones_like(ids)
    feed = {"input_ids": ids, "attention_mask": mask, "position_ids": np.tile(np.arange(len(prompt)), (b, 1))}
    for n, i in ins.items():
        if n.startswith("past_key_values"):
            feed[n] = np.zeros((b, i.shape[1], 0, i.shape[3]), np.float32)
    t0, c0 = time.perf_counter(), time.process_time()
    r = dict(zip(outs, sess.run(None, feed)))
    t1, c1 = time.perf_counter(), time.process_time()
    toks = [[] for _ in range(b)]
    for step in range(a.new):
        nxt = r["logits"][:, -1].argmax(-1)
        for k in range(b):
            toks[k].append(int(nxt[k]))
        if step + 1 == a.new:
            break
        mask = np.ones((b, len(prompt) + step + 1), np.int64)
        feed = {"input_ids": nxt[:, None].astype(np.int64), "attention_mask": mask,
                "position_ids": np.full((b, 1), len(prompt) + step, np.int64)}
        feed.update({k.replace("present", "past_key_values"): v for k, v in r.items() if k.startswith("present")})
        r = dict(zip(outs, sess.run(None, feed)))
    t2, c2 = time.perf_counter(), time.process_time()
    return {"prefill": t1 - t0, "decode": (t2 - t1) / (a.new - 1), "prefill_cpu": c1 - c0,
            "decode_cpu": (c2 - c1) / (a.new - 1), "ids": toks}


res = {"tdeploy": [], "ort": []}
load = []
for rnd in range(a.rounds):
    load.append(os.getloadavg()[0])
    res["tdeploy"].append(run_tdeploy())
    res["ort"].append(run_ort())
same = all(t["ids"] == o["ids"] for t, o in zip(res["tdeploy"], res["ort"]))
print(f"SmolLM2-135M (fp32, dequantized Q4_1), prompt {a.prompt}, {a.new} new tokens, batch {a.batch}, "
      f"{a.threads} thread(s), {a.rounds} rounds alternating; greedy tokens identical in every round: {same}")
print(f"machine: {os.cpu_count()} cpus, load average {min(load):.1f}-{max(load):.1f} at the rounds' starts")


def med(v):
    v = sorted(v)
    return f"{np.median(v):.2f} ({v[0]:.2f}-{v[-1]:.2f})"


print("| | prefill tokens/s (wall) | decode ms/token (wall) | prefill tokens/s (CPU) | decode ms/token (CPU) |")
print("|---|---|---|---|---|")
for k in ("tdeploy", "ort"):
    rs = res[k]
    print(f"| {k} | {med([a.batch * a.prompt / r['prefill'] for r in rs])} | {med([r['decode'] * 1e3 for r in rs])} | "
          f"{med([a.batch * a.prompt / r['prefill_cpu'] for r in rs])} | {med([r['decode_cpu'] * 1e3 for r in rs])} |")
print("per-round ratios, median (range):")
for clock, sfx in (("wall", ""), ("CPU", "_cpu")):
    dec = [t["decode" + sfx] / o["decode" + sfx] for t, o in zip(res["tdeploy"], res["ort"])]
    pre = [o["prefill" + sfx] / t["prefill" + sfx] for t, o in zip(res["tdeploy"], res["ort"])]
    print(f"  {clock}: decode tdeploy/ORT {med(dec)} (goal <= 0.85); prefill speed tdeploy/ORT {med(pre)} (goal >= 1)")
if a.json:
    with open(a.json, "w") as f:
        json.dump({"args": vars(a), "load": load, "rounds": {k: [{x: y for x, y in r.items() if x != "ids"}
                                                                   for r in v] for k, v in res.items()}}, f, indent=1)
sys.exit(0 if same else 1)
