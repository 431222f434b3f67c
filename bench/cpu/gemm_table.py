#!/usr/bin/env python3
"""Turns the TSV lines of gemm_bench (backend threads kind M N K batch GFLOP/s)
into one markdown table per thread count: rows = shapes, columns = backends."""
import sys
from collections import OrderedDict

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
order = ["tdeploy", "openblas", "openblas-skylakex", "openblas-haswell", "blis-openmp", "blis-pthread", "onednn"]
backends = [b for b in order if any(r[0] == b for r in rows)]
for threads in sorted({r[1] for r in rows}):
    shapes = OrderedDict()
    for r in rows:
        if r[1] != threads:
            continue
        key = (r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6]))
        shapes.setdefault(key, {})[r[0]] = float(r[7])
    print(f"\n{threads} thread(s), GFLOP/s (median of 7):\n")
    print("| kind | M | N | K | batch | " + " | ".join(backends) + " |")
    print("|---|---|---|---|---|" + "---|" * len(backends))
    sums = {b: [] for b in backends}
    for key in sorted(shapes, key=lambda k: (k[0], k[3], k[2], k[1])):
        vals = shapes[key]
        best = max(vals.values())
        cells = []
        for b in backends:
            v = vals.get(b)
            if v is not None:
                sums[b].append(v)
            cells.append("-" if v is None else (f"**{v:.0f}**" if v == best else f"{v:.0f}"))
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | " + " | ".join(cells) + " |")
    import statistics
    print("| geomean | | | | | " + " | ".join(
        f"{statistics.geometric_mean(sums[b]):.0f}" if sums[b] else "-" for b in backends) + " |")
