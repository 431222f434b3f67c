#!/usr/bin/env python3
"""Turns the lines of run_gemm_bench.sh (round, then gemm_bench's backend threads
kind M N K batch GFLOP/s) into one markdown table per thread count: rows =
shapes, columns = backends, cells = median over rounds.
Usage: gemm_table.py raw.tsv [wall|cpu]  (which GFLOP/s column, default wall)."""
import statistics
import sys
from collections import OrderedDict, defaultdict

col = 8 if len(sys.argv) > 2 and sys.argv[2] == "cpu" else 7
raw = [l.rstrip("\n").split("\t")[1:] for l in open(sys.argv[1]) if l.strip()]
groups = defaultdict(list)
for r in raw:
    groups[tuple(r[:7])].append(float(r[col]))
rows = [list(k) + [statistics.median(v)] for k, v in groups.items()]
order = ["tdeploy", "tdeploy-bf16", "tdeploy-f16", "openblas", "openblas-skylakex", "openblas-haswell", "blis-openmp", "blis-pthread", "onednn"]
backends = [b for b in order if any(r[0] == b for r in rows)]
for threads in sorted({r[1] for r in rows}):
    shapes = OrderedDict()
    for r in rows:
        if r[1] != threads:
            continue
        key = (r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6]))
        shapes.setdefault(key, {})[r[0]] = float(r[7])
    print(f"\n{threads} thread(s), GFLOP/s ({'CPU time / threads' if col == 8 else 'wall time'}):\n")
    print("| kind | M | N | K | batch | " + " | ".join(backends) + " |")
    print("|---|---|---|---|---|" + "---|" * len(backends))
    sums = {(b, k): [] for b in backends for k in ("linear", "attn")}
    for key in sorted(shapes, key=lambda k: (k[0], k[3], k[2], k[1])):
        vals = shapes[key]
        best = max(vals.values())
        cells = []
        for b in backends:
            v = vals.get(b)
            if v is not None:
                sums[(b, "linear" if key[0] == "linear" else "attn")].append(v)
            cells.append("-" if v is None else (f"**{v:.0f}**" if v == best else f"{v:.0f}"))
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | " + " | ".join(cells) + " |")
    for kind in ("linear", "attn"):
        print(f"| geomean {kind} | | | | | " + " | ".join(
            f"{statistics.geometric_mean(sums[(b, kind)]):.0f}" if sums[(b, kind)] else "-" for b in backends) + " |")
