#!/usr/bin/env python3
"""Issue 16's decoder anchor, side by side in one run: generation from the same SmolLM2-135M-Instruct Q4_1 GGUF
(scripts/setup-smollm2.sh) by
- tdeploy: `tdeploy generate FILE.gguf --precision int8` (blocks kept quantized: MatMulNBits with int8 activations,
  llama.cpp's arithmetic, so equal work; the default precision multiplies fp32 activations), its own timing of the
  prefill and of the decode steps (graph building and load outside both);
- llama.cpp: llama-bench (bench/decoder/build_llama_cpp.sh: llama-cpp-python 0.3.36's vendored llama.cpp,
  GGML_NATIVE), pp = prefill of PROMPT tokens, tg = NEW tokens generated from an empty context;
- ONNX Runtime: the graph `tdeploy export -m FILE.gguf --precision int8` writes (MatMulNBits / GatherBlockQuantized, the same
  blocks), InferenceSession(ORT_ENABLE_ALL), greedy loop through past/present in Python.
Equal work: batch 1, PROMPT random prompt tokens (fixed seed), NEW tokens (eos ignored), THREADS threads each, all
pinned to the same CPUs. CPU time (busy hosts stretch wall time, not it) per token: tdeploy's own prefill/decode
CPU seconds; llama.cpp's from the child's rusage of llama-bench runs without warm-up, the load and one token
subtracted: decode (tg NEW - tg 1) / (NEW - 1), prefill (pp PROMPT - tg 1) / PROMPT; ORT's process time. Rounds alternate tdeploy / llama.cpp / ORT; the table gives medians and ranges over
rounds, and the per-round ratio tdeploy / llama.cpp (tokens/s). Greedy agreement: tdeploy's tokens vs ORT's on
the same quantized graph, and vs tdeploy's own dequantized fp32 run (--precision fp32).
usage: quant_vs_llama_cpp.py [--rounds 5] [--prompt 128] [--new 128] [--threads 2]"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--new", type=int, default=128)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--bin", default=os.path.join(ROOT, "build", "tdeploy"))
ap.add_argument("--work", default="/tmp/td_bench_quant")
a = ap.parse_args()

gguf = subprocess.run([os.path.join(ROOT, "scripts", "setup-smollm2.sh")], capture_output=True, text=True,
                      check=True).stdout.strip()
llama_bench = subprocess.run([os.path.join(HERE, "build_llama_cpp.sh")], capture_output=True, text=True,
                             check=True).stdout.strip()
os.makedirs(a.work, exist_ok=True)
onnx_path = os.path.join(a.work, "smollm2-135m-q4_1.onnx")
if not os.path.exists(onnx_path):
    subprocess.run([a.bin, "export", "-m", gguf, "-o", onnx_path, "-q", "--precision", "int8"], check=True)
cpus = ",".join(str(i) for i in range(a.threads))
pin = ["taskset", "-c", cpus]
os.sched_setaffinity(0, set(range(a.threads)))  # ORT runs in this process
prompt = np.random.default_rng(0).integers(100, 40000, a.prompt).tolist()


def child_cpu(cmd):
    """CPU seconds (user + system) of one child process run to its end."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, capture_output=True, check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def run_tdeploy(precision="int8"):
    r = subprocess.run(pin + [a.bin, "generate", gguf, "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens",
                              str(a.new), "--ignore-eos", "--threads", str(a.threads), "--precision", precision,
                              "--json"], capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    n = len(d["results"][0]["ids"])
    cpu = (d["prefill_cpu_seconds"] * 1e3 / a.prompt, d["decode_cpu_seconds"] * 1e3 / (n - 1))
    return a.prompt / d["prefill_seconds"], (n - 1) / d["decode_seconds"], d["results"][0]["ids"], cpu


def run_llama():
    r = subprocess.run(pin + [llama_bench, "-m", gguf, "-t", str(a.threads), "-p", str(a.prompt), "-n", str(a.new),
                              "-r", "1", "-o", "json"], capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    pp = next(x["avg_ts"] for x in d if x["n_prompt"] > 0 and x["n_gen"] == 0)
    tg = next(x["avg_ts"] for x in d if x["n_gen"] > 0 and x["n_prompt"] == 0)
    base = pin + [llama_bench, "-m", gguf, "-t", str(a.threads), "-r", "1", "--no-warmup", "-o", "json"]
    one = child_cpu(base + ["-p", "0", "-n", "1"])
    cpu = ((child_cpu(base + ["-p", str(a.prompt), "-n", "0"]) - one) * 1e3 / a.prompt,
           (child_cpu(base + ["-p", "0", "-n", str(a.new)]) - one) * 1e3 / (a.new - 1))
    return pp, tg, None, cpu


import onnxruntime as ort  # noqa: E402

so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
ins = {i.name: i for i in sess.get_inputs()}
outs = [o.name for o in sess.get_outputs()]


def run_ort():
    ids = np.array([prompt], np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(a.prompt)[None]}
    for n, i in ins.items():
        if n.startswith("past_key_values"):
            feed[n] = np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
    t0, c0 = time.perf_counter(), time.process_time()
    r = dict(zip(outs, sess.run(None, feed)))
    t1, c1 = time.perf_counter(), time.process_time()
    toks = []
    for step in range(a.new):
        nxt = r["logits"][:, -1].argmax(-1)
        toks.append(int(nxt[0]))
        if step + 1 == a.new:
            break
        feed = {"input_ids": nxt[:, None].astype(np.int64), "attention_mask": np.ones((1, a.prompt + step + 1), np.int64),
                "position_ids": np.full((1, 1), a.prompt + step, np.int64)}
        feed.update({k.replace("present", "past_key_values"): v for k, v in r.items() if k.startswith("present")})
        r = dict(zip(outs, sess.run(None, feed)))
    t2, c2 = time.perf_counter(), time.process_time()
    return a.prompt / (t1 - t0), (a.new - 1) / (t2 - t1), toks, ((c1 - c0) * 1e3 / a.prompt,
                                                                  (c2 - c1) * 1e3 / (a.new - 1))


res = {"tdeploy": [], "llama.cpp": [], "ort": []}
loads = []
for rnd in range(a.rounds):
    loads.append(os.getloadavg()[0])
    res["tdeploy"].append(run_tdeploy())
    res["llama.cpp"].append(run_llama())
    res["ort"].append(run_ort())
fp32 = run_tdeploy("fp32")[2]
td, ot = res["tdeploy"][0][2], res["ort"][0][2]


def agree(x, y):
    """Tokens up to the first difference, and the share of equal positions."""
    first = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    return first, sum(p == q for p, q in zip(x, y)) / max(len(x), 1)


cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
print(f"SmolLM2-135M-Instruct Q4_1 GGUF, prompt {a.prompt}, {a.new} new tokens, batch 1, {a.threads} threads "
      f"(pinned to cpus {cpus}), {a.rounds} interleaved rounds")
print(f"machine: {cpu}, {os.cpu_count()} cpus, load average at round starts {min(loads):.1f}-{max(loads):.1f}")
print("| | prefill tokens/s | decode tokens/s |")
print("|---|---|---|")
for k in res:
    pre = sorted(r[0] for r in res[k])
    dec = sorted(r[1] for r in res[k])
    print(f"| {k} | {np.median(pre):.0f} ({pre[0]:.0f}-{pre[-1]:.0f}) | {np.median(dec):.1f} "
          f"({dec[0]:.1f}-{dec[-1]:.1f}) |")
for i, name in ((0, "prefill"), (1, "decode")):
    rat = sorted(t[i] / l[i] for t, l in zip(res["tdeploy"], res["llama.cpp"]))
    print(f"tdeploy / llama.cpp {name} tokens/s per round: median {np.median(rat):.2f}x, range {rat[0]:.2f}-{rat[-1]:.2f}x")
print("CPU time, ms per token (all threads of the process):")
print("| | prefill CPU ms/token | decode CPU ms/token |")
print("|---|---|---|")
for k in res:
    pre = sorted(r[3][0] for r in res[k])
    dec = sorted(r[3][1] for r in res[k])
    print(f"| {k} | {np.median(pre):.2f} ({pre[0]:.2f}-{pre[-1]:.2f}) | {np.median(dec):.2f} "
          f"({dec[0]:.2f}-{dec[-1]:.2f}) |")
for i, name in ((0, "prefill"), (1, "decode")):
    rat = sorted(l[3][i] / t[3][i] for t, l in zip(res["tdeploy"], res["llama.cpp"]))
    print(f"llama.cpp / tdeploy {name} CPU time per token, per round (> 1: tdeploy cheaper): median "
          f"{np.median(rat):.2f}x, range {rat[0]:.2f}-{rat[-1]:.2f}x")
f, s = agree(td, ot)
print(f"greedy tokens, tdeploy vs ORT (same quantized graph): first {f} identical, {100 * s:.0f}% of positions equal")
f, s = agree(td, fp32)
print(f"greedy tokens, tdeploy quantized vs tdeploy --precision fp32: first {f} identical, {100 * s:.0f}% equal")
