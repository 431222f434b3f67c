#!/usr/bin/env python3
"""td_latency_stats_compute (src/deploy/stats.c) against numpy, through ctypes
on libtdeploy.so: mean, sample sd (ddof=1), min, max and the p50/p90/p95/p99
percentiles with numpy's "linear" method and its "inverted_cdf" (nearest-rank)
method, on random, tied, tiny and skewed sample sets."""
import ctypes
import os
import subprocess
import sys

import numpy as np

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
LIB = os.path.join(os.path.dirname(os.path.abspath(TD_BIN)), "libtdeploy.so")


def sanitizer_runtime():
    """A libtdeploy.so built with -fsanitize=address (the CI sanitizer build, clang)
    needs the ASan runtime loaded before anything else: find it, or None."""
    nm = subprocess.run(["nm", "-D", "--undefined-only", LIB], capture_output=True, text=True)
    if "__asan_" not in nm.stdout:
        return None
    for cc in ("clang", "clang-14"):
        try:
            rt = subprocess.run([cc, "-print-file-name=libclang_rt.asan-x86_64.so"], capture_output=True,
                                text=True).stdout.strip()
        except FileNotFoundError:
            continue
        if os.path.isfile(rt):
            return rt
    sys.exit("FAIL: libtdeploy.so needs the ASan runtime but clang's libclang_rt.asan-x86_64.so was not found")


if os.environ.get("TD_STATS_REEXEC") != "1":
    rt = sanitizer_runtime()
    if rt:  # run again with the runtime preloaded; python's own allocations are not ours to leak-check
        env = dict(os.environ, LD_PRELOAD=rt, TD_STATS_REEXEC="1",
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)
lib = ctypes.CDLL(LIB)


class Stats(ctypes.Structure):
    _fields_ = [("n", ctypes.c_size_t), ("total", ctypes.c_double), ("mean", ctypes.c_double),
                ("sd", ctypes.c_double), ("min", ctypes.c_double), ("max", ctypes.c_double),
                ("p50", ctypes.c_double), ("p90", ctypes.c_double), ("p95", ctypes.c_double),
                ("p99", ctypes.c_double), ("method", ctypes.c_int)]


lib.td_ctx_new.restype = ctypes.c_void_p
lib.td_ctx_free.argtypes = [ctypes.c_void_p]
lib.td_latency_stats_compute.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_double), ctypes.c_size_t,
                                         ctypes.c_int, ctypes.POINTER(Stats)]
lib.td_latency_stats_compute.restype = ctypes.c_int
ctx = lib.td_ctx_new()

results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(f"{'PASS' if cond else 'FAIL'}: {name}{'' if cond else ' -- ' + str(detail)}")


def compute(x, method):
    arr = (ctypes.c_double * len(x))(*x)
    s = Stats()
    rc = lib.td_latency_stats_compute(ctx, arr, len(x), method, ctypes.byref(s))
    return rc, s


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
lib.td_ctx_free(ctx)

failed = results.count(False)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
