#!/usr/bin/env python3
"""Optimizer benchmark: tdeploy optimize vs onnxruntime.transformers.optimizer on the same BERT graph.

    python3 bench/optimize_bench.py --bin build/tdeploy [--size bert-large] [--runs 3] [--work DIR]

Writes a random-weight graph with bench/make_bert_onnx.py (PyTorch-export style, opset 17), then times, each in its
own process, with wall time and peak RSS (getrusage of the child):
  tdeploy optimize IN -o OUT                        (fp32, fused)
  tdeploy optimize IN -o OUT --precision fp16
  onnxruntime optimize_model(model_type bert, num_heads, hidden_size, opt_level 0: its Python fusions only,
    as the fixtures README counts them; opt_level >= 1 also needs torch) + save
  onnxruntime optimize_model + convert_float_to_float16(keep_io_types=True) + save
Prints medians of wall and CPU (user+sys) time, the ratios to onnxruntime, and peak RSS relative to the model
file's size. `tdeploy optimize --json` splits its own time into load / optimize / save."""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_bert_onnx  # noqa: E402

ORT_SCRIPT = r"""
import sys, warnings
warnings.filterwarnings("ignore")
from onnxruntime.transformers.optimizer import optimize_model
src, dst, heads, hidden, fp16 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
m = optimize_model(src, model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
if fp16:
    m.convert_float_to_float16(keep_io_types=True)
m.save_model_to_file(dst)
"""


def run(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err[-500:]}")
    return wall, ru.ru_maxrss * 1024, ru.ru_utime + ru.ru_stime  # ru_maxrss is in KiB on Linux


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--size", default="bert-large", choices=sorted(make_bert_onnx.SIZES))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ort-runs", type=int, default=1)
    ap.add_argument("--work", default="/tmp/td_opt_bench")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    src = os.path.join(a.work, f"{a.size}.onnx")
    if not os.path.exists(src):
        print(f"writing {src} ...", flush=True)
        import onnx
        onnx.save(make_bert_onnx.build(a.size), src)
    size = os.path.getsize(src)
    _, hidden, heads, _ = make_bert_onnx.SIZES[a.size]
    cases = [
        ("tdeploy fp32", lambda o: [a.bin, "optimize", src, "-o", o, "-q"], a.runs),
        ("tdeploy fp16", lambda o: [a.bin, "optimize", src, "-o", o, "-q", "--precision", "fp16"], a.runs),
        ("onnxruntime fp32", lambda o: [sys.executable, "-c", ORT_SCRIPT, src, o, str(heads), str(hidden), "0"],
         a.ort_runs),
        ("onnxruntime fp16", lambda o: [sys.executable, "-c", ORT_SCRIPT, src, o, str(heads), str(hidden), "1"],
         a.ort_runs),
    ]
    res = {}
    print(f"model {a.size}: {size / 1e9:.2f} GB ({src})")
    for name, cmd, runs in cases:
        out = os.path.join(a.work, name.replace(" ", "_") + ".onnx")
        walls, rss, cpus = [], [], []
        if runs <= 0:  # --ort-runs 0: measure tdeploy only
            continue
        for _ in range(runs):
            w, r, c = run(cmd(out))
            walls.append(w)
            rss.append(r)
            cpus.append(c)
        res[name] = (statistics.median(walls), max(rss), statistics.median(cpus))
        print(f"{name:18s} median wall {res[name][0]:7.2f} s, cpu (user+sys) {res[name][2]:7.2f} s over {runs} "
              f"run(s), peak RSS {res[name][1] / 1e9:5.2f} GB ({res[name][1] / size:.2f}x model)", flush=True)
    for prec in ("fp32", "fp16"):
        if f"onnxruntime {prec}" not in res:
            continue
        t, o = res[f"tdeploy {prec}"][0], res[f"onnxruntime {prec}"][0]
        oc, tc = res[f"onnxruntime {prec}"][2], res[f"tdeploy {prec}"][2]
        print(f"{prec}: onnxruntime / tdeploy ratio: wall {o / t:.1f}x, cpu {oc / tc:.1f}x")


if __name__ == "__main__":
    main()
