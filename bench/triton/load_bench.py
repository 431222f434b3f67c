"""Load bench: a tdeploy model served by the real tritonserver (tdeploy backend, dynamic batching) against the
same model's in-process session at the same batch sizes.

    TD_BIN=build/tdeploy python3 bench/triton/load_bench.py [--model DIR] [--clients 16] [--seconds 30]
                                                           [--mode tokens|text] [--threads 2] [--json OUT]

--model is a `tdeploy convert` output directory (default: all-MiniLM-L6-v2 converted into bench/out/triton/minilm
with --batch-size 1 16 16). One server on 127.0.0.1, free ports, killed at the end.

1. concurrency 1 for --seconds/3: gRPC latency p50/p99 of one 1-row request, next to the in-process session's
   median at (1, seq);
2. --clients concurrent gRPC clients for --seconds, each sending one row at a time (every request the same text,
   or its token ids in --mode tokens): completed and failed requests, sequences/s, latency p50/p99, and the batch
   sizes Triton's dynamic batcher formed (the server's batch statistics);
3. in-process: bench/cpu's session_bench on model-optimized.onnx at exactly those batch sizes and the same
   sequence length, before and after phase 2 (the range is reported): the time the session needs for the same
   batches gives the in-process throughput for equal work.

The session side does no tokenization; --mode text adds the backend's tokenizer to the served side only (so the
ratio understates the serving overhead less in tokens mode: use tokens for the overhead figure)."""
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


def session_bench(onnx, batch, seq, threads, runs):
    exe = os.path.join(os.path.dirname(TD_BIN), "session_bench")
    p = subprocess.run([exe, onnx, str(batch), str(seq), "--threads", str(threads), "--runs", str(runs),
                        "--warmup", "3", "--vocab", "30000"], capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise RuntimeError(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])["median_ms"] / 1e3


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


def batch_histogram(port, model):
    c = tg.InferenceServerClient(f"127.0.0.1:{port}")
    st = c.get_inference_statistics(model, as_json=True)["model_stats"][0]
    c.close()
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in st.get("batch_stats", [])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--mode", choices=["tokens", "text"], default="tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    out = os.environ["TD_TMP"]
    os.makedirs(out, exist_ok=True)
    model_dir = a.model or os.path.join(out, "triton", "minilm")
    if not a.model:
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
           "threads": a.threads, "machine": machine(), "load_avg_before": os.getloadavg()}

    in1 = [session_bench(onnx, 1, seq, a.threads, 200)]
    with Server([os.path.join(model_dir, "triton")], "bench") as srv:
        # phase 1: concurrency 1
        lat, fails = [], []
        client_loop(srv.grpc, name, a.mode, ids, time.time() + 3, [], [], 1000)  # warm-up
        client_loop(srv.grpc, name, a.mode, ids, time.time() + a.seconds / 3, lat, fails, 100000)
        res["c1"] = {"requests": len(lat), "failed": len(fails), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
        # phase 2: many clients
        h0 = batch_histogram(srv.grpc, name)
        lat, fails = [], []
        deadline = time.time() + a.seconds
        ths = [threading.Thread(target=client_loop, args=(srv.grpc, name, a.mode, ids, deadline, lat, fails, 10**6))
               for _ in range(a.clients)]
        t0 = time.perf_counter()
        [x.start() for x in ths]
        [x.join(a.seconds + 120) for x in ths]
        wall = time.perf_counter() - t0
        h1 = batch_histogram(srv.grpc, name)
        res["load_avg_during"] = os.getloadavg()
    hist = {b: h1.get(b, 0) - h0.get(b, 0) for b in h1 if h1.get(b, 0) - h0.get(b, 0) > 0}
    res["load"] = {"requests": len(lat), "failed": len(fails), "fail_samples": fails[:3], "wall_s": wall,
                   "seq_per_s": len(lat) / wall, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                   "batches": {str(k): v for k, v in sorted(hist.items())}}
    in1.append(session_bench(onnx, 1, seq, a.threads, 200))
    # in-process: the session's time for the same batches (before and after the load phase)
    top = sorted(hist, key=lambda b: -hist[b] * b)[:6]  # the batch sizes that carried most rows
    rows = sum(hist[b] * b for b in top)
    times = []
    for _ in range(2):
        per = {b: session_bench(onnx, b, seq, a.threads, 30) for b in top}
        times.append(sum(hist[b] * per[b] for b in top))
    inproc = [rows / x for x in times]
    res["in_process"] = {"batch_sizes": top, "rows": rows, "seq_per_s_range": [min(inproc), max(inproc)],
                         "latency_1x_ms_range": [min(in1) * 1e3, max(in1) * 1e3]}
    served_rows_s = res["load"]["seq_per_s"]
    res["ratio_served_vs_inprocess_range"] = [served_rows_s / max(inproc), served_rows_s / min(inproc)]
    res["c1_overhead_ms_range"] = [res["c1"]["p50_ms"] - max(in1) * 1e3, res["c1"]["p50_ms"] - min(in1) * 1e3]
    res["load_avg_after"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    sys.exit(1 if res["load"]["failed"] else 0)


def machine():
    try:
        model = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except (OSError, IndexError):
        model = "?"
    return f"{model}, {os.cpu_count()} logical CPUs"


if __name__ == "__main__":
    main()
