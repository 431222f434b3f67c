"""Load bench: a tdeploy model served by the real tritonserver (tdeploy backend, dynamic batching) against the
same model's in-process session at the same batch sizes.

    TD_BIN=build/tdeploy python3 bench/triton/load_bench.py [--model DIR] [--clients 16] [--seconds 30]
                                                           [--rounds 3] [--mode tokens|text] [--threads 2] [--json OUT]

--model is a `tdeploy convert` output directory (default: all-MiniLM-L6-v2 converted into bench/out/triton/minilm
with --batch-size 1 16 16 when that folder has no model yet). One server on 127.0.0.1, free ports, killed at the end.

1. load: --clients concurrent gRPC clients for --seconds, each sending one row at a time (every request the same
   text, or its token ids in --mode tokens): completed and failed requests, sequences/s, latency p50/p99, and the
   batch sizes Triton's dynamic batcher formed (the server's batch statistics);
2. where the server's time goes per request, from Triton's statistics (which the backend reports per phase):
   queue, compute_input (read the request, tokenize, pack, bind), compute_infer (the session run), compute_output
   (cut the outputs into the responses, send); and the server process's CPU time per served row (all its threads:
   gRPC, batcher, backend) from /proc;
3. interleaved rounds (--rounds), each: the in-process session (bench/cpu's session_bench on model-optimized.onnx)
   at exactly the batch mix of phase 1 and at (1, seq), then the server under --clients for --seconds/3, then
   at concurrency 1 for --seconds/6. Per round: served / in-process throughput (wall) and CPU ms per row of both
   (the server process's vs the session's own), and the concurrency-1 p50 over the in-process 1-row median.
   Medians and ranges over the rounds are reported: on a shared host single rounds mean little. Also per round:
   the concurrency-1 client mean latency minus the same requests' mean compute_infer (the session run inside the
   server): what serving adds (gRPC both ways, queue, the backend's input and output work), measured in one run.

The clients run in this Python process on the same cores as the server, so the wall-clock ratio charges the server
with the clients' CPU too on a small host; the CPU-time ratio (server process vs session, per row) does not.
The session side does no tokenization and no transport; --mode text adds the backend's tokenizer to the served
side only (use tokens for the serving-overhead figure)."""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import tritonclient.grpc as tg

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("TD_BIN", os.path.join(SRC, "build", "tdeploy"))
os.environ.setdefault("TD_TMP", os.path.join(SRC, "bench", "out"))
sys.path.insert(0, os.path.join(SRC, "tests", "triton"))
from triton_common import TD_BIN, Server, bytes_tensor  # noqa: E402

TEXT = ("tdeploy turns Hugging Face transformer models into fast, validated inference artifacts that a Triton "
        "server can run without any Python in the request path.")


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1e3, q)) if xs else float("nan")


def med_range(xs):
    return {"median": float(np.median(xs)), "min": float(min(xs)), "max": float(max(xs))} if xs else None


def session_bench(onnx, batch, seq, threads, runs):
    """bench/cpu/session_bench: wall and process-CPU medians (s) of one run at (batch, seq)."""
    exe = os.path.join(os.path.dirname(TD_BIN), "session_bench")
    p = subprocess.run([exe, onnx, str(batch), str(seq), "--threads", str(threads), "--runs", str(runs),
                        "--warmup", "3", "--vocab", "30000"], capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise RuntimeError(p.stderr)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return r["median_ms"] / 1e3, r["median_cpu_ms"] / 1e3


def session_mix(onnx, hist, seq, threads):
    """The session's wall and CPU time for the batch mix hist {batch: count}, per row."""
    rows = sum(b * n for b, n in hist.items())
    wall = cpu = 0.0
    for b, n in hist.items():
        w, c = session_bench(onnx, b, seq, threads, 20)
        wall, cpu = wall + n * w, cpu + n * c
    return rows / wall, cpu / rows


def request_inputs(mode, ids):
    if mode == "text":
        x = tg.InferInput("TEXT", [1, 1], "BYTES")
        x.set_data_from_numpy(bytes_tensor([TEXT]))
        return [x]
    ins = []
    for name, arr in (("input_ids", ids), ("attention_mask", np.ones_like(ids))):
        x = tg.InferInput(name, list(arr.shape), "INT64")
        x.set_data_from_numpy(arr)
        ins.append(x)
    return ins


def client_loop(port, model, mode, ids, deadline, lat, fails, max_requests):
    c = tg.InferenceServerClient(f"127.0.0.1:{port}")
    ins = request_inputs(mode, ids)
    out = [tg.InferRequestedOutput("sentence_embedding")]
    for _ in range(max_requests):  # bounded in count as well as time
        if time.time() >= deadline:
            break
        t0 = time.perf_counter()
        try:
            r = c.infer(model, ins, outputs=out, client_timeout=30)
            if r.as_numpy("sentence_embedding").shape[0] != 1:
                raise RuntimeError("bad shape")
            lat.append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - counted as a failed request
            fails.append(str(e)[:200])
    c.close()


def server_cpu_s(pid):
    """utime + stime of the server process, all threads (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def statistics(port, model):
    c = tg.InferenceServerClient(f"127.0.0.1:{port}")
    st = c.get_inference_statistics(model, as_json=True)["model_stats"][0]
    c.close()
    inf = st.get("inference_stats", {})
    out = {k: (int(inf.get(k, {}).get("count", 0)), int(inf.get(k, {}).get("ns", 0))) for k in ("success",) + PHASES}
    out["batches"] = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in st.get("batch_stats", [])}
    out["batch_ns"] = {k: sum(int(b[k]["ns"]) for b in st.get("batch_stats", [])) for k in PHASES[1:]}
    out["executions"] = int(st.get("execution_count", 0))
    return out


def breakdown(s0, s1):
    """Per request (us, Triton's per-request statistics) and per batch execution (us, batch statistics)."""
    per_req = {}
    for k in PHASES:
        n, ns = s1[k][0] - s0[k][0], s1[k][1] - s0[k][1]
        per_req[k] = ns / n / 1e3 if n else float("nan")
    execs = s1["executions"] - s0["executions"]
    per_exec = {k: (s1["batch_ns"][k] - s0["batch_ns"][k]) / execs / 1e3 if execs else float("nan")
                for k in PHASES[1:]}
    hist = {b: s1["batches"].get(b, 0) - s0["batches"].get(b, 0) for b in s1["batches"]}
    return {"per_request_us": per_req, "per_execution_us": per_exec, "executions": execs,
            "batches": {b: n for b, n in sorted(hist.items()) if n > 0}}


def serve(srv, name, mode, ids, clients, seconds):
    """clients concurrent clients for seconds: latencies, failures, server CPU and statistics."""
    lat, fails = [], []
    s0, c0 = statistics(srv.grpc, name), server_cpu_s(srv.proc.pid)
    deadline = time.time() + seconds
    ths = [threading.Thread(target=client_loop, args=(srv.grpc, name, mode, ids, deadline, lat, fails, 10**6))
           for _ in range(clients)]
    t0 = time.perf_counter()
    [x.start() for x in ths]
    [x.join(seconds + 120) for x in ths]
    wall = time.perf_counter() - t0
    c1, s1 = server_cpu_s(srv.proc.pid), statistics(srv.grpc, name)
    rows = len(lat)
    return {"requests": rows, "failed": len(fails), "fail_samples": fails[:3], "wall_s": wall,
            "seq_per_s": rows / wall, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "mean_ms": float(np.mean(lat)) * 1e3 if lat else float("nan"),
            "server_cpu_ms_per_row": (c1 - c0) * 1e3 / rows if rows else float("nan"), **breakdown(s0, s1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mode", choices=["tokens", "text"], default="tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    out = os.environ["TD_TMP"]
    os.makedirs(out, exist_ok=True)
    model_dir = a.model or os.path.join(out, "triton", "minilm")
    if not a.model and not os.path.isfile(os.path.join(model_dir, "model-optimized.onnx")):
        p = subprocess.run([TD_BIN, "convert", "-m", "sentence-transformers/all-MiniLM-L6-v2", "-o", model_dir,
                            "--name", "minilm", "--batch-size", "1", "16", "16", "--threads", str(a.threads),
                            "--nb-measures", "2", "--warmup", "0", "-q"], capture_output=True, text=True, timeout=900)
        if p.returncode:
            sys.exit(f"convert failed: {p.stderr[-1000:]}")
    name = [d for d in os.listdir(os.path.join(model_dir, "triton"))
            if os.path.isfile(os.path.join(model_dir, "triton", d, "1", "model-optimized.onnx"))][0]
    onnx = os.path.join(model_dir, "model-optimized.onnx")
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()  # MiniLM's tokenizer.json pads to 128; the backend does not pad single rows
    ids = np.array([tok.encode(TEXT).ids], np.int64)
    seq = ids.shape[1]
    res = {"model": name, "mode": a.mode, "seq": seq, "clients": a.clients, "seconds": a.seconds,
           "threads": a.threads, "machine": machine(), "load_avg_before": os.getloadavg(), "rounds": []}
    with Server([os.path.join(model_dir, "triton")], "bench") as srv:
        client_loop(srv.grpc, name, a.mode, ids, time.time() + 3, [], [], 1000)  # warm-up
        # 1: the load goal as stated: --clients for --seconds, no failed request
        res["load"] = serve(srv, name, a.mode, ids, a.clients, a.seconds)
        hist = res["load"]["batches"]
        top = dict(sorted(hist.items(), key=lambda kv: -kv[0] * kv[1])[:6])  # the batch sizes carrying most rows
        # 2..: interleaved rounds, in-process then served, the same batch mix
        for r in range(a.rounds):
            rd = {"load_avg": os.getloadavg()[0]}
            rd["inproc_seq_per_s"], rd["inproc_cpu_ms_per_row"] = session_mix(onnx, top, seq, a.threads)
            rd["inproc_cpu_ms_per_row"] *= 1e3
            w1, c1 = session_bench(onnx, 1, seq, a.threads, 50)
            rd["inproc_1row_ms"], rd["inproc_1row_cpu_ms"] = w1 * 1e3, c1 * 1e3
            rd["served"] = serve(srv, name, a.mode, ids, a.clients, a.seconds / 3)
            rd["c1"] = serve(srv, name, a.mode, ids, 1, a.seconds / 6)
            rd["ratio_wall"] = rd["served"]["seq_per_s"] / rd["inproc_seq_per_s"]
            rd["ratio_cpu"] = rd["inproc_cpu_ms_per_row"] / rd["served"]["server_cpu_ms_per_row"]
            rd["c1_p50_over_ms"] = rd["c1"]["p50_ms"] - rd["inproc_1row_ms"]
            rd["c1_cpu_over_ms"] = rd["c1"]["server_cpu_ms_per_row"] - rd["inproc_1row_cpu_ms"]
            # the same requests' own session time inside the server (Triton's compute_infer) against what the
            # client saw: what serving adds, measured at the same moment in the same process
            rd["c1_added_mean_ms"] = rd["c1"]["mean_ms"] - rd["c1"]["per_request_us"]["compute_infer"] / 1e3
            res["rounds"].append(rd)
            print(f"round {r + 1}: load {rd['load_avg']:.1f}, wall ratio {rd['ratio_wall']:.3f}, CPU ratio "
                  f"{rd['ratio_cpu']:.3f}, c1 p50 +{rd['c1_p50_over_ms']:.2f} ms, c1 CPU +{rd['c1_cpu_over_ms']:.2f} "
                  f"ms, c1 client mean - compute_infer +{rd['c1_added_mean_ms']:.2f} ms", file=sys.stderr, flush=True)
        res["load_avg_during"] = os.getloadavg()
    rs = res["rounds"]
    res["summary"] = {k: med_range([x[k] for x in rs]) for k in
                      ("ratio_wall", "ratio_cpu", "c1_p50_over_ms", "c1_cpu_over_ms", "c1_added_mean_ms")}
    res["load_avg_after"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    sys.exit(1 if res["load"]["failed"] or any(x["served"]["failed"] or x["c1"]["failed"] for x in rs) else 0)


def machine():
    try:
        model = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except (OSError, IndexError):
        model = "?"
    return f"{model}, {os.cpu_count()} logical CPUs"


if __name__ == "__main__":
    main()
