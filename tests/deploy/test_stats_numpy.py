#!/usr/bin/env python3
"""td_latency_stats_compute (src/deploy/stats.c) against numpy, through the test
driver tests/tools/stats_driver.c (the function is internal to the library): mean,
sample sd (ddof=1), min, max and the p50/p90/p95/p99 percentiles with numpy's "linear" method and its "inverted_cdf" (nearest-rank)
method, on random, tied, tiny and skewed sample sets."""
import os
import subprocess
import sys

import numpy as np

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(TD_BIN)), "td_stats_driver")
FIELDS = ("n", "total", "mean", "sd", "min", "max", "p50", "p90", "p95", "p99")


class Stats:
    """The driver's fields as attributes."""


results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(f"{'PASS' if cond else 'FAIL'}: {name}{'' if cond else ' -- ' + str(detail)}")


def compute(x, method):
    """Run the driver (tests/tools/stats_driver.c) on the samples; (status, Stats)."""
    text = f"{method} {len(x)} " + " ".join(repr(float(v)) for v in x)
    p = subprocess.run([DRIVER], input=text, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: {DRIVER} exited {p.returncode}: {p.stderr.strip()}")
    vals = p.stdout.split()
    s = Stats()
    for k, v in zip(FIELDS, vals[1:]):
        setattr(s, k, int(v) if k == "n" else float(v))
    return int(vals[0]), s


rng = np.random.default_rng(1234)
cases = {
    "uniform-1000": rng.uniform(0.001, 0.002, 1000),
    "lognormal-257": rng.lognormal(-5, 0.5, 257),
    "ties-50": np.repeat([0.01, 0.02, 0.03, 0.05, 0.08], 10)[rng.permutation(50)],
    "two": np.array([0.2, 0.1]),
    "three": np.array([3.0, 1.0, 2.0]),
    "seven": rng.uniform(0, 1, 7),
    "one": np.array([0.5]),
    "outlier-100": np.concatenate([np.full(99, 0.01), [1.0]]),
}
for name, x in cases.items():
    for method, np_method in ((0, "linear"), (1, "inverted_cdf")):
        rc, s = compute(list(x), method)
        ok = rc == 0
        want = {"mean": x.mean(), "sd": x.std(ddof=1) if len(x) > 1 else 0.0, "min": x.min(), "max": x.max(),
                "total": x.sum()}
        for q in (50, 90, 95, 99):
            want[f"p{q}"] = np.percentile(x, q, method=np_method)
        bad = {k: (getattr(s, k), v) for k, v in want.items()
               if not np.isclose(getattr(s, k), v, rtol=1e-12, atol=1e-15)}
        check(f"{name} {np_method}", ok and not bad and s.n == len(x), bad or rc)

rc, _ = compute([], 0)
check("no samples refused", rc != 0)
rc, _ = compute([1.0, float("inf")], 0)
check("infinite sample refused", rc != 0)

failed = results.count(False)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
