#!/usr/bin/env python3
"""Extreme values through every op with exp, log, division or a normalization, vs ONNX Runtime.

Each case is a one-node graph (onnx.helper) fed rows of hard inputs: large magnitudes ([0, 120] is the
LogSoftmax case that used to give [-inf, 0]; +-1e30; +-FLT_MAX), -inf masks (some keys, every key),
all-equal rows, denormals, the exp overflow/underflow edges, and NaN/inf. ONNX Runtime (CPU provider)
runs the graph; `tdeploy infer` runs it on both backends: "cpu" (optimized kernels, 1 and 2 threads)
and "reference" (ref_kern.h loops). An output element passes when both are NaN, or both are the same
infinity, or both are finite and |got - want| <= 1e-5 + 1e-4 * |want|.

Two documented departures from ONNX Runtime's answer:
- GELU of -inf is -0 (the limit), where ONNX Runtime evaluates x * (1 + erf(x/sqrt2)) = -inf * 0 = NaN.
- Rows whose fp32 intermediates overflow although the answer is finite (sums of squares of 1e30, sums of
  +-FLT_MAX: normalizations and reductions) have no fp32 answer the spec fixes: ONNX Runtime gives NaN,
  inf or beta depending on its summation order. There the reference backend must give the exact answer
  (numpy in float64) and the optimized backend is not compared (its fp32 statistics overflow too).
Prints one line per case and backend and an "N passed, M failed" summary; exits non-zero on any
failure."""
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

BIN = os.environ.get("TD_BIN", "tdeploy")
TMP = os.environ.get("TD_TMP", "/tmp")
FMAX = np.finfo(np.float32).max
INF, NAN = np.inf, np.nan
passed = failed = 0

# rows of 4: every row-wise op (softmax, normalizations, reductions) sees each pattern as one row
ROWS = {
    "logsoftmax_120": [0.0, 120.0, -120.0, 1.0],
    "large_1e30": [1e30, -1e30, 0.0, 3e38],
    "flt_max": [-FMAX, FMAX, -FMAX, 0.0],
    "neg_inf_mask": [0.0, -INF, -INF, 1.0],
    "flt_min_mask": [0.0, -FMAX, -FMAX, 1.0],
    "all_masked": [-INF, -INF, -INF, -INF],
    "all_equal": [5.0, 5.0, 5.0, 5.0],
    "all_equal_huge": [-1e30, -1e30, -1e30, -1e30],
    "denormal": [1e-40, -1e-40, 1.4e-45, 0.0],
    "exp_edges": [88.7, 89.0, -87.4, -104.0],
    "small": [1e-3, -2e-3, 3e-3, 1e-7],
    "nan": [NAN, 1.0, 2.0, 3.0],
    "pos_inf": [INF, 1.0, 2.0, 3.0],
    "neg_inf": [-INF, 1.0, 2.0, 3.0],
}
NONFINITE = {"all_masked", "nan", "pos_inf", "neg_inf", "neg_inf_mask"}


def rows(names=None, skip=()):
    names = [n for n in (names or ROWS) if n not in skip]
    return names, np.array([ROWS[n] for n in names], dtype=np.float32)


def model(name, nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, name,
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT if a.dtype == np.float32
                                                         else TensorProto.INT32, a.shape) for n, a in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8 if opset < 19 else 9
    return m


def close(got, want):
    """Element mask of agreement: same NaN, same infinity, or finite and within tolerance."""
    got, want = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(got) & np.isnan(want)
    same_inf = np.isinf(got) & np.isinf(want) & (np.sign(got) == np.sign(want))
    fin = np.isfinite(got) & np.isfinite(want)
    with np.errstate(invalid="ignore", over="ignore"):
        near = fin & (np.abs(got - want) <= 1e-5 + 1e-4 * np.abs(want))
    return both_nan | same_inf | near


OVERFLOW_ROWS = ["large_1e30", "flt_max", "flt_min_mask", "all_equal_huge"]


def check(case, m, feeds, labels, fix=None, exact=None):
    """labels: a name per row of the first output (for the failure message). fix(x, want): ORT's answer
    with the documented departures applied. exact: (fp64 answer, rows) for rows whose fp32 intermediates
    overflow: the reference backend must match it there, the optimized one is not compared there."""
    global passed, failed
    path = os.path.join(TMP, f"extreme_{case}.onnx")
    onnx.save(m, path)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    if fix:
        want = [fix(w) for w in want]
    inp = os.path.join(TMP, f"extreme_{case}.in.safetensors")
    save_file(feeds, inp)
    for backend, threads in [("cpu", "1"), ("cpu", "2"), ("reference", "1")]:
        out = os.path.join(TMP, f"extreme_{case}.{backend}{threads}.out.safetensors")
        r = subprocess.run([BIN, "infer", path, "--inputs", inp, "-o", out, "--backend", backend, "--threads", threads],
                           capture_output=True, text=True)
        tag = f"{case} [{backend} x{threads}]"
        if r.returncode != 0:
            failed += 1
            print(f"FAIL {tag}: exit {r.returncode}: {r.stderr.strip()}")
            continue
        got = load_file(out)
        bad = []
        for o, w in zip(m.graph.output, want):
            g = got.get(o.name)
            if g is None or g.shape != w.shape:
                bad.append(f"{o.name}: shape {None if g is None else g.shape} want {w.shape}")
                continue
            ok = close(g, w)
            if exact is not None:
                ex, ex_rows = exact
                if backend == "reference":
                    with np.errstate(over="ignore"):
                        ok[ex_rows] = close(g[ex_rows], ex[ex_rows].astype(np.float32))
                else:
                    ok[ex_rows] = True
            if not ok.all():
                idx = np.argwhere(~ok)[0]
                r = idx[-2] if w.ndim >= 2 else idx[0]
                row = labels[r] if r < len(labels) else "?"
                bad.append(f"{o.name}{list(idx)} row '{row}': got {g[tuple(idx)]!r} want {w[tuple(idx)]!r}")
        if bad:
            failed += 1
            print(f"FAIL {tag}: " + "; ".join(bad[:3]))
        else:
            passed += 1
            print(f"PASS {tag}")


def gelu_limit(arg):
    """GELU(-inf) = -0 (the limit), where ONNX Runtime's formula gives NaN."""
    def fix(w):
        w = w.copy()
        w[np.isneginf(arg)] = -0.0
        return w
    return fix


def unary_cases():
    names, x = rows()
    flat = x.reshape(-1, 1)  # one element per row: the label of each element is its pattern
    lab = [n for n in names for _ in range(4)]
    for op in ["Exp", "Log", "Sqrt", "Reciprocal", "Sigmoid", "Tanh", "Erf"]:
        check(op, model(op, [helper.make_node(op, ["x"], ["y"])], [("x", flat)], ["y"]), {"x": flat}, lab)
    for approx in ["none", "tanh"]:
        n = helper.make_node("Gelu", ["x"], ["y"], approximate=approx)
        check(f"Gelu_{approx}", model("gelu", [n], [("x", flat)], ["y"], opset=20), {"x": flat}, lab,
              fix=gelu_limit(flat))
    for op in ["Gelu", "FastGelu"]:
        n = helper.make_node(op, ["x"], ["y"], domain="com.microsoft")
        check(f"ms_{op}", model(op, [n], [("x", flat)], ["y"]), {"x": flat}, lab, fix=gelu_limit(flat))
    # bias forms: the bias moves values across the edges too
    x4, b = x, np.array([1.0, -1.0, 1e30, -0.5], dtype=np.float32)
    for op in ["BiasGelu", "FastGelu"]:
        n = helper.make_node(op, ["x", "b"], ["y"], domain="com.microsoft")
        check(f"ms_{op}_bias", model(op, [n], [("x", x4)], ["y"], [("b", b)]), {"x": x4}, names,
              fix=gelu_limit(x4 + b))


def binary_cases():
    names, x = rows()
    lab = names
    # denominators: zeros of both signs, denormals, huge, infinities, NaN
    den = np.array([0.0, -0.0, 1e-40, 3e38], dtype=np.float32)
    for op, other in [("Div", den), ("Pow", np.array([2.0, 0.5, -1.0, 3.0], dtype=np.float32))]:
        n = helper.make_node(op, ["x", "d"], ["y"])
        check(f"{op}", model(op, [n], [("x", x)], ["y"], [("d", other)]), {"x": x}, lab)
        n = helper.make_node(op, ["d", "x"], ["y"])  # the extreme values as divisor / exponent
        check(f"{op}_swapped", model(op, [n], [("x", x)], ["y"], [("d", other)]), {"x": x}, lab)


def rowwise_cases():
    names, x = rows()
    for op in ["Softmax", "LogSoftmax"]:
        for axis in [-1, 0]:  # last axis (in place) and a strided axis (transposed through scratch)
            xi = x if axis == -1 else np.ascontiguousarray(x.T)
            n = helper.make_node(op, ["x"], ["y"], axis=axis)
            check(f"{op}_axis{axis}", model(op, [n], [("x", xi)], ["y"], opset=13), {"x": xi},
                  names if axis == -1 else ["(column)"] * 4)
    # normalizations: ORT propagates NaN/inf through mean and variance like the definition
    ovf = [names.index(r) for r in OVERFLOW_ROWS]
    xd = x.astype(np.float64)
    g, b = np.array([1.0, 2.0, 0.5, -1.0], dtype=np.float32), np.array([0.1, 0.0, -0.2, 0.3], dtype=np.float32)

    def ln64(v, eps):
        mu = v.mean(-1, keepdims=True)
        with np.errstate(invalid="ignore", over="ignore"):
            return (v - mu) / np.sqrt(((v - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b

    n = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)
    check("LayerNormalization", model("ln", [n], [("x", x)], ["y"], [("g", g), ("b", b)]), {"x": x}, names,
          exact=(ln64(xd, 1e-5), ovf))
    x3 = x.reshape(1, -1, 4)
    skip = np.full_like(x3, 0.5)
    n = helper.make_node("SkipLayerNormalization", ["x", "skip", "g", "b"], ["y"], domain="com.microsoft",
                         epsilon=1e-5)
    check("SkipLayerNormalization", model("sln", [n], [("x", x3), ("skip", skip)], ["y"], [("g", g), ("b", b)]),
          {"x": x3, "skip": skip}, names, exact=(ln64((x3 + skip).astype(np.float64), 1e-5)[0][None], (0, ovf)))
    n = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], axis=-1, epsilon=1e-6)
    with np.errstate(invalid="ignore", over="ignore"):
        rms64 = xd / np.sqrt((xd ** 2).mean(-1, keepdims=True) + 1e-6) * g
    check("SimplifiedLayerNormalization", model("rms", [n], [("x", x)], ["y"], [("g", g)]), {"x": x}, names,
          exact=(rms64, ovf))
    with np.errstate(invalid="ignore", over="ignore"):
        exact64 = {"ReduceMean": xd.mean(-1, keepdims=True), "ReduceSum": xd.sum(-1, keepdims=True),
                   "ReduceL2": np.sqrt((xd ** 2).sum(-1, keepdims=True)), "ReduceProd": xd.prod(-1, keepdims=True),
                   "ReduceSumSquare": (xd ** 2).sum(-1, keepdims=True)}
    for op in ["ReduceMean", "ReduceLogSumExp", "ReduceLogSum", "ReduceL2", "ReduceSumSquare", "ReduceProd",
               "ReduceSum", "ReduceL1"]:
        if op == "ReduceSum":
            n = helper.make_node(op, ["x", "axes"], ["y"], keepdims=1)
            inits = [("axes", np.array([-1], dtype=np.int64))]
        else:
            n = helper.make_node(op, ["x"], ["y"], axes=[-1], keepdims=1)
            inits = []
        ex = (exact64[op], ovf) if op in exact64 else None
        check(op, model(op, [n], [("x", x)], ["y"], inits, opset=13), {"x": x}, names, exact=ex)
    # ReduceMax/Min with NaN: ORT's answer depends on where the NaN sits (std::max), the spec leaves it open
    names2, x2 = rows(skip={"nan"})
    for op in ["ReduceMax", "ReduceMin"]:
        n = helper.make_node(op, ["x"], ["y"], axes=[-1], keepdims=1)
        check(op, model(op, [n], [("x", x2)], ["y"], opset=13), {"x": x2}, names2)


def attention_cases():
    """com.microsoft Attention: huge scores, a key-padding mask that hides some keys of one item and
    every key of the other (ORT fills masked scores with -10000, so a fully masked row is uniform)."""
    rng = np.random.default_rng(7)
    B, S, H, N = 2, 4, 8, 2
    w = rng.standard_normal((H, 3 * H)).astype(np.float32)
    bias = rng.standard_normal(3 * H).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=np.int32)
    for scale_name, mag in [("unit", 1.0), ("large", 1e3), ("huge", 1e15)]:
        x = (rng.standard_normal((B, S, H)) * mag).astype(np.float32)
        n = helper.make_node("Attention", ["x", "w", "bias", "mask"], ["y"], domain="com.microsoft", num_heads=N)
        m = model("att", [n], [("x", x), ("mask", mask)], ["y"], [("w", w), ("bias", bias)])
        check(f"Attention_mask_{scale_name}", m, {"x": x, "mask": mask}, ["batch0", "batch1"])
    # the standard-op form the exporter writes: scores + (1 - mask) * -FLT_MAX, then Softmax
    scores = (rng.standard_normal((B, N, S, S)) * 1e3).astype(np.float32)
    add = ((1.0 - mask.astype(np.float32)) * -FMAX).reshape(B, 1, 1, S)
    nodes = [helper.make_node("Add", ["s", "m"], ["t"]), helper.make_node("Softmax", ["t"], ["y"], axis=-1)]
    m = model("mask_softmax", nodes, [("s", scores)], ["y"], [("m", add)], opset=13)
    check("Softmax_additive_mask", m, {"s": scores}, ["batch0", "batch1"])


def main():
    unary_cases()
    binary_cases()
    rowwise_cases()
    attention_cases()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
