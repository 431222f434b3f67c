#!/usr/bin/env python3
"""Opening a bert-base-sized safetensors checkpoint: tdeploy vs the pip
`safetensors` library, side by side in one run.

tdeploy: wall time of `tdeploy inspect MODEL.safetensors` as a whole process
(exec + mmap + header parse + every validation rule + printing), so the figure is
an upper bound of the library's open. safetensors: `safe_open(...)` + listing
keys inside an already-running interpreter (its import time excluded), which
favours it. Medians of --runs runs.

usage: bench/hf_bench.py [--tdeploy build/tdeploy] [--dir /tmp/td_hf_bench] [--runs 50]
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tdeploy", default=os.path.join(HERE, "..", "build", "tdeploy"))
    ap.add_argument("--dir", default="/tmp/td_hf_bench")
    ap.add_argument("--runs", type=int, default=50)
    a = ap.parse_args()
    model = os.path.join(a.dir, "bert-base")
    st = os.path.join(model, "model.safetensors")
    if not os.path.exists(st):
        subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), "--size", "bert-base", "--out", model],
                       check=True)
    size = os.path.getsize(st)
    subprocess.run([a.tdeploy, "inspect", st], check=True, capture_output=True)  # warm the page cache

    td = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        subprocess.run([a.tdeploy, "inspect", st], check=True, capture_output=True)
        td.append(time.perf_counter() - t0)
    from safetensors import safe_open
    py = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        with safe_open(st, "np") as f:
            n = len(list(f.keys()))
        py.append(time.perf_counter() - t0)
    tdm, pym = statistics.median(td), statistics.median(py)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; file {size / 1e6:.1f} MB, "
          f"{n} tensors; load average {os.getloadavg()[0]:.1f}")
    print(f"tdeploy inspect (whole process): median {tdm * 1e3:.2f} ms, min {min(td) * 1e3:.2f} ms")
    print(f"safetensors.safe_open + keys (in-process): median {pym * 1e3:.2f} ms, min {min(py) * 1e3:.2f} ms")
    print(f"goal: tdeploy open under 10 ms -> {'met' if tdm < 0.010 else 'NOT met'}")


if __name__ == "__main__":
    main()
