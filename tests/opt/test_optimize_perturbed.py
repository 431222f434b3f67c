"""Graphs the fusions must not (fully) recognise still optimize correctly: fixture graphs edited with the onnx
package (a GELU constant changed, the erf divisor changed, an attention intermediate with an extra consumer, a
LayerNorm replaced by its ReduceMean/Pow/Sqrt decomposition with another epsilon). For each, the optimized graph
must give the same outputs as the edited original in ONNX Runtime (1e-4), and the affected layer must not be fused
(or, for the decomposed LayerNorm, be fused back with its own epsilon)."""
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from opt_common import FIX, Results, golden, optimize, require_env, run_ort, TMP

require_env()
R = Results("test_optimize_perturbed")
OUT = os.path.join(TMP, "opt_perturbed")
os.makedirs(OUT, exist_ok=True)
L0 = "/m/encoder/layer.0/"


def const_node(g, output):
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] == output:
            return n
    raise KeyError(output)


def set_const(g, output, value):
    n = const_node(g, output)
    old = numpy_helper.to_array(n.attribute[0].t)
    n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(value, dtype=old.dtype).reshape(old.shape)))


def consumer(g, value, op):
    for n in g.node:
        if n.op_type == op and value in n.input:
            return n
    raise KeyError(f"{op} reading {value}")


def producer(g, value):
    for n in g.node:
        if value in n.output:
            return n
    raise KeyError(value)


def gelu_half(m):
    """layer 0: 0.5 of the erf GELU becomes 0.55 (a different function)."""
    set_const(m.graph, L0 + "intermediate/intermediate_act_fn/Constant_2_output_0", 0.55)


def erf_divisor(m):
    """layer 0: x / 1.41421 inside erf becomes x / 1.3."""
    set_const(m.graph, L0 + "intermediate/intermediate_act_fn/Constant_output_0", 1.3)


def extra_consumer(m):
    """layer 0: the attention probabilities also become a graph output."""
    sm = [n for n in m.graph.node if n.op_type == "Softmax" and n.output[0].startswith(L0)][0]
    m.graph.output.append(helper.make_tensor_value_info(sm.output[0], onnx.TensorProto.FLOAT, None))


def decomposed_ln(m):
    """layer 0 attention-output LayerNorm written out as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add with
    epsilon 1e-3 instead of 1e-12."""
    g = m.graph
    ln = [n for n in g.node if n.op_type == "LayerNormalization" and n.output[0].startswith(L0 + "attention")][0]
    x, gamma, beta = ln.input
    y = ln.output[0]
    p = "/perturbed_ln/"
    g.initializer.extend([numpy_helper.from_array(np.array(2.0, np.float32), p + "two"),
                          numpy_helper.from_array(np.array(1e-3, np.float32), p + "eps")])
    nodes = [
        helper.make_node("ReduceMean", [x], [p + "mean"], axes=[-1]),
        helper.make_node("Sub", [x, p + "mean"], [p + "d"]),
        helper.make_node("Pow", [p + "d", p + "two"], [p + "sq"]),
        helper.make_node("ReduceMean", [p + "sq"], [p + "var"], axes=[-1]),
        helper.make_node("Add", [p + "var", p + "eps"], [p + "ve"]),
        helper.make_node("Sqrt", [p + "ve"], [p + "sd"]),
        helper.make_node("Div", [p + "d", p + "sd"], [p + "n"]),
        helper.make_node("Mul", [p + "n", gamma], [p + "s"]),
        helper.make_node("Add", [p + "s", beta], [y]),
    ]
    idx = list(g.node).index(ln)
    g.node.remove(ln)
    for k, n in enumerate(nodes):
        g.node.insert(idx + k, n)


CASES = [
    # name, edit, fusion kind whose count drops by one, expected count of that kind after the edit
    ("gelu-half", gelu_half, ("BiasGelu", "Gelu"), 1),
    ("erf-divisor", erf_divisor, ("BiasGelu", "Gelu"), 1),
    ("extra-consumer", extra_consumer, ("Attention",), 1),
    ("decomposed-ln-eps1e-3", decomposed_ln, ("SkipLayerNormalization",), 4),
]

for src in ("bert-base.torchscript.onnx", "bert-base.torchscript-sdpa.onnx"):
    path = os.path.join(FIX, "onnx", src)
    feeds, _ = golden(path)
    for name, edit, kinds, expect in CASES:
        case = f"{src} {name}"
        try:
            m = onnx.load(path)
            edit(m)
            edited = os.path.join(OUT, f"{src}.{name}.onnx")
            onnx.save(m, edited)
            ref = run_ort(edited, feeds)
            dst = os.path.join(OUT, f"{src}.{name}.opt.onnx")
            rep = optimize(edited, dst)
            got = sum(rep["fusions"][k] for k in kinds)
            R.check(f"{case} {'+'.join(kinds)} count", got == expect, f"got {got}, want {expect}")
            outs = run_ort(dst, feeds)
            worst = max(float(np.abs(outs[k] - ref[k]).max()) for k in ref)
            R.check(f"{case} outputs unchanged", worst <= 1e-4 and set(outs) == set(ref), f"max abs {worst:.2e}")
        except Exception as e:
            R.check(case, False, str(e)[:300])

R.finish()
