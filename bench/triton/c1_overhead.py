"""Concurrency-1 latency: what serving through tritonserver adds over the in-process session, and where it goes.

    TD_BIN=build/tdeploy python3 bench/triton/c1_overhead.py [--model DIR] [--rounds 8] [--requests 200]
                                                             [--threads 2] [--nice N] [--json OUT]

--model is a `tdeploy convert` output directory (default: bench/out/triton/minilm, which load_bench.py converts
from all-MiniLM-L6-v2). `tdeploy triton-repo` writes its model-optimized.onnx into one repository under several
served configurations (VARIANTS: the dynamic batcher as convert writes it, its queue delay at 0, no dynamic
batcher), one tritonserver on 127.0.0.1 loads them all, and rounds alternate, in a rotating order:

- in-process: bench/cpu's session_bench on the same file, 1 row of the bench sentence's tokens, --requests runs
  back to back in one process after a warm-up: the median run (wall) and its process CPU;
- in-process with gaps: the same session_bench runs, but each one after a pause as long as the served client's
  round trip outside the server (--gap-us, default 1000), so the session's thread pool goes idle between runs as
  it does between served requests (its workers spin ~50-100 us after a job, then sleep);
- served, per variant: one gRPC client (tritonclient, this process, one thread), --requests requests of 1 row as
  token ids, one after the other: the p50 of the client latency; Triton's statistics (the statistics extension)
  for the same requests: queue, compute_input, compute_infer, compute_output per request; and the client's own
  CPU per request (thread_time around infer(): protobuf and gRPC in Python), and the server process's CPU per
  request (all its threads, /proc) against the session's process CPU per run;
- with --load-seconds S, each batcher variant also serves --load-clients (16) concurrent clients for S seconds
  right after its concurrency-1 requests: throughput and server CPU per row (does the queue delay matter?).

Per round and variant: served p50 - in-process median ("p50 adds"), and the split of the served mean: server
phases, and the rest (client library + gRPC both ways + Triton's front end). Medians and ranges over rounds.
--nice N runs the server, this process and session_bench at nice N, their autogroups too (negative needs root): on a
shared host it shortens the wait for a core, for both sides alike. session_bench runs in a session of its own like
the server (see session_runs)."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import tritonclient.grpc as tg

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("TD_BIN", os.path.join(SRC, "build", "tdeploy"))
os.environ.setdefault("TD_TMP", os.path.join(SRC, "bench", "out"))
sys.path.insert(0, os.path.join(SRC, "tests", "triton"))
sys.path.insert(0, HERE)
from load_bench import PHASES, TEXT, med_range, serve, server_cpu_s, statistics  # noqa: E402
from triton_common import TD_BIN, Server  # noqa: E402

# name -> triton-repo flags (the model's --batch-size 1 16 16 as load_bench converts it)
VARIANTS = {
    "batcher_100us": ["--batch-size", "1", "16", "16", "--max-queue-delay-us", "100"],  # convert's default delay
    "batcher_0us": ["--batch-size", "1", "16", "16", "--max-queue-delay-us", "0"],
}


def session_runs(onnx, seq, threads, runs, gap_us, nice):
    """session_bench: median wall and CPU (ms) of one 1 x seq run, back to back or with gap_us between runs. It runs
    in a session of its own, as the server does: with the kernel's autogroup scheduling (Linux's default for
    desktop/server kernels, /proc/sys/kernel/sched_autogroup_enabled) CPU is shared between sessions first, so a
    session_bench inside this process's session would compete on other terms than the server."""
    exe = os.path.join(os.path.dirname(TD_BIN), "session_bench")
    cmd = [exe, onnx, "1", str(seq), "--threads", str(threads), "--runs", str(runs), "--warmup", "10",
           "--vocab", "30000"]
    if gap_us:
        cmd += ["--gap-us", str(gap_us)]
    if nice is not None:  # the autogroup's nice (a process's own nice only ranks it inside its group)
        cmd = ["sh", "-c", f"echo {nice} > /proc/self/autogroup 2>/dev/null; exec \"$@\"", "sh"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, start_new_session=True)
    if p.returncode:
        raise RuntimeError(p.stderr)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return r["median_ms"], r["median_cpu_ms"]


def served(srv, model, ids, n):
    port = srv.grpc
    c = tg.InferenceServerClient(f"127.0.0.1:{port}")
    ins = []
    for name, arr in (("input_ids", ids), ("attention_mask", np.ones_like(ids))):
        x = tg.InferInput(name, list(arr.shape), "INT64")
        x.set_data_from_numpy(arr)
        ins.append(x)
    out = [tg.InferRequestedOutput("sentence_embedding")]
    for _ in range(5):  # warm this client's channel
        c.infer(model, ins, outputs=out)
    s0, sc0 = statistics(port, model), server_cpu_s(srv.proc.pid)
    lat, cpu = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.thread_time()
        r = c.infer(model, ins, outputs=out, client_timeout=30)
        c1, t1 = time.thread_time(), time.perf_counter()
        if r.as_numpy("sentence_embedding").shape != (1, 384):
            raise RuntimeError("bad output shape")
        lat.append(t1 - t0)
        cpu.append(c1 - c0)
    s1, sc1 = statistics(port, model), server_cpu_s(srv.proc.pid)
    c.close()
    phases = {k: (s1[k][1] - s0[k][1]) / max(1, s1[k][0] - s0[k][0]) / 1e6 for k in PHASES}  # ms per request
    mean = float(np.mean(lat)) * 1e3
    return {"p50_ms": float(np.median(lat)) * 1e3, "mean_ms": mean, "p90_ms": float(np.percentile(lat, 90)) * 1e3,
            "client_cpu_ms": float(np.median(cpu)) * 1e3, "phases_ms": phases,
            "server_cpu_ms": (sc1 - sc0) * 1e3 / n,  # all the server's threads, per request (10 ms ticks)
            "outside_server_ms": mean - sum(phases.values())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gap-us", type=int, default=1000)
    ap.add_argument("--nice", type=int)
    ap.add_argument("--load-seconds", type=float, default=0)
    ap.add_argument("--load-clients", type=int, default=16)
    ap.add_argument("--json")
    a = ap.parse_args()
    out = os.environ["TD_TMP"]
    model_dir = a.model or os.path.join(out, "triton", "minilm")
    onnx = os.path.join(model_dir, "model-optimized.onnx")
    if not os.path.isfile(onnx):
        sys.exit(f"{onnx} not found: run bench/triton/load_bench.py once (it converts all-MiniLM-L6-v2) or pass --model")
    if a.nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, a.nice)
    repo = os.path.join(out, "triton", "c1_repo")
    shutil.rmtree(repo, ignore_errors=True)
    for name, flags in VARIANTS.items():
        p = subprocess.run([TD_BIN, "triton-repo", onnx, "-o", repo, "--name", name, "--tokenizer", model_dir,
                            "--threads", str(a.threads), "-q", *flags], capture_output=True, text=True, timeout=300)
        if p.returncode:
            sys.exit(f"triton-repo {name}: {p.stderr}")
    # the same model without a dynamic_batching block: Triton's default scheduler, one request per execution
    nb = os.path.join(repo, "no_batcher")
    shutil.copytree(os.path.join(repo, "batcher_0us"), nb)
    cfg = open(os.path.join(nb, "config.pbtxt")).read()
    start = cfg.index("dynamic_batching {")
    cfg = cfg[:start] + cfg[cfg.index("}\n", start) + 2:]
    open(os.path.join(nb, "config.pbtxt"), "w").write(cfg.replace('name: "batcher_0us"', 'name: "no_batcher"'))
    names = list(VARIANTS) + ["no_batcher"]

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    ids = np.array([tok.encode(TEXT).ids], np.int64)
    seq = ids.shape[1]
    res = {"model": onnx, "seq": seq, "threads": a.threads, "requests": a.requests, "nice": a.nice,
           "gap_us": a.gap_us, "machine": machine(), "load_avg_before": os.getloadavg(), "rounds": []}
    with Server([repo], "c1") as srv:
        if a.nice is not None:
            os.setpriority(os.PRIO_PROCESS, srv.proc.pid, a.nice)
            for tid in os.listdir(f"/proc/{srv.proc.pid}/task"):  # threads already started
                os.setpriority(os.PRIO_PROCESS, int(tid), a.nice)
            for pid in (srv.proc.pid, os.getpid()):  # the server's session and this one (the client)
                try:
                    with open(f"/proc/{pid}/autogroup", "w") as f:
                        f.write(str(a.nice))
                except OSError:
                    pass
        for n in names:
            if not srv.ready(n):
                sys.exit(f"{n} did not load: {srv.index().get(n)}")
        sides = ["inproc", "inproc_gap"] + names
        for r in range(a.rounds):
            rd = {"load_avg": os.getloadavg()[0]}
            order = sides[r % len(sides):] + sides[:r % len(sides)]  # rotate: no side always first
            for side in order:
                if side == "inproc":
                    rd["inproc_ms"], rd["inproc_cpu_ms"] = session_runs(onnx, seq, a.threads, a.requests, 0, a.nice)
                elif side == "inproc_gap":
                    rd["inproc_gap_ms"], rd["inproc_gap_cpu_ms"] = session_runs(onnx, seq, a.threads, a.requests,
                                                                                a.gap_us, a.nice)
                else:
                    rd[side] = served(srv, side, ids, a.requests)
                    if a.load_seconds and side in VARIANTS:  # the batcher under load: does the delay matter?
                        ld = serve(srv, side, "tokens", ids, a.load_clients, a.load_seconds)
                        rd[side]["load_seq_per_s"], rd[side]["load_failed"] = ld["seq_per_s"], ld["failed"]
                        rd[side]["load_server_cpu_ms_per_row"] = ld["server_cpu_ms_per_row"]
            for n in names:
                rd[n]["p50_adds_ms"] = rd[n]["p50_ms"] - rd["inproc_ms"]
                rd[n]["p50_adds_gap_ms"] = rd[n]["p50_ms"] - rd["inproc_gap_ms"]
                rd[n]["server_cpu_adds_ms"] = rd[n]["server_cpu_ms"] - rd["inproc_cpu_ms"]
            res["rounds"].append(rd)
            print(f"round {r + 1}: load {rd['load_avg']:.1f}, in-process {rd['inproc_ms']:.2f} ms (with gaps "
                  f"{rd['inproc_gap_ms']:.2f}); " + ", ".join(
                      f"{n} p50 {rd[n]['p50_ms']:.2f} (+{rd[n]['p50_adds_ms']:.2f}; queue "
                      f"{rd[n]['phases_ms']['queue']:.2f} in {rd[n]['phases_ms']['compute_input']:.2f} infer "
                      f"{rd[n]['phases_ms']['compute_infer']:.2f} out {rd[n]['phases_ms']['compute_output']:.2f} "
                      f"outside {rd[n]['outside_server_ms']:.2f} client CPU {rd[n]['client_cpu_ms']:.2f} server CPU "
                      f"{rd[n]['server_cpu_ms']:.2f} vs {rd['inproc_cpu_ms']:.2f}"
                      + (f"; load {rd[n]['load_seq_per_s']:.1f}/s" if "load_seq_per_s" in rd[n] else "") + ")"
                      for n in names), file=sys.stderr, flush=True)
    rs = res["rounds"]
    summ = {"inproc_ms": med_range([x["inproc_ms"] for x in rs]),
            "inproc_gap_ms": med_range([x["inproc_gap_ms"] for x in rs])}
    for n in names:
        summ[n] = {k: med_range([x[n][k] for x in rs]) for k in
                   ("p50_ms", "p50_adds_ms", "p50_adds_gap_ms", "outside_server_ms", "client_cpu_ms", "server_cpu_ms",
                    "server_cpu_adds_ms")}
        if a.load_seconds and n in VARIANTS:
            summ[n]["load_seq_per_s"] = med_range([x[n]["load_seq_per_s"] for x in rs])
            summ[n]["load_server_cpu_ms_per_row"] = med_range([x[n]["load_server_cpu_ms_per_row"] for x in rs])
            summ[n]["load_failed"] = sum(x[n]["load_failed"] for x in rs)
        summ[n]["phases_ms"] = {k: med_range([x[n]["phases_ms"][k] for x in rs]) for k in PHASES}
    res["summary"] = summ
    res["load_avg_after"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


def machine():
    try:
        model = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")][0]
    except (OSError, IndexError):
        model = "?"
    return f"{model}, {os.cpu_count()} logical CPUs"


if __name__ == "__main__":
    main()
