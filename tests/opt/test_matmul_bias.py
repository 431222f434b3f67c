"""The matmul_bias pass on small graphs built here: Add(MatMul(A, W), b) with A and W 2-D and b a constant bias on
the last axis becomes Gemm(A, W, b) (standard ONNX, for the fused and the portable target alike; bias as either Add
operand, shape (N) or (1, N), fixed or dynamic batch). Left alone: a bias that broadcasts but not on the last axis
((M, 1), (M, N)), a MatMul output that another node also reads, a bias that is not a constant (graph input, or an
initializer that is also a graph input), a rank-3 A (Gemm is 2-D). Every case: outputs of the optimized graph
against the unoptimized one in ONNX Runtime, and the pass's count in --json."""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from opt_common import Results, op_counts, optimize, require_env, run_ort, TMP

require_env()
R = Results("test_matmul_bias")
OUT = os.path.join(TMP, "opt_matmul_bias")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(5)
M, K, N = 3, 5, 4


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def build(name, a_shape, bias=None, bias_first=False, bias_input=False, bias_also_input=False, extra_use=False):
    """A (a_shape) @ W (K, N) + bias -> Y; bias is an array (initializer) or, with bias_input, a graph input."""
    w = rng.standard_normal((K, N)).astype(np.float32)
    inits = [const("W", w)]
    inputs = [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)]
    if bias_input:
        inputs.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, list(bias.shape)))
    else:
        inits.append(const("bias", bias))
        if bias_also_input:  # an initializer that is also a graph input can be overridden: not a constant
            inputs.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, list(bias.shape)))
    add_in = ["bias", "mm"] if bias_first else ["mm", "bias"]
    nodes = [helper.make_node("MatMul", ["A", "W"], ["mm"], name="matmul"),
             helper.make_node("Add", add_in, ["Y"], name="add")]
    out_shape = list(a_shape[:-1]) + [N]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, out_shape)]
    if extra_use:  # the MatMul output is read again: folding the bias would have to keep the MatMul
        nodes.append(helper.make_node("Relu", ["mm"], ["Z"], name="relu"))
        outputs.append(helper.make_tensor_value_info("Z", TensorProto.FLOAT, out_shape))
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(m, path)
    return path


def feeds_for(path, a_shape):
    m = onnx.load(path)
    f = {"A": rng.standard_normal([d if isinstance(d, int) else 6 for d in a_shape]).astype(np.float32)}
    for i in m.graph.input:
        if i.name == "bias":
            f["bias"] = rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
    return f


def run_case(name, a_shape, expect_gemm, **kw):
    src = build(name, a_shape, **kw)
    feeds = feeds_for(src, a_shape)
    ref = run_ort(src, feeds)
    for target in ("fused", "portable"):
        case = f"{name} {target}"
        dst = os.path.join(OUT, f"{name}.{target}.onnx")
        try:
            rep = optimize(src, dst, "--target", target)
        except RuntimeError as e:
            R.check(case, False, str(e))
            continue
        changes = {p["name"]: p["changes"] for p in rep["passes"]}.get("matmul_bias")
        c = op_counts(dst)
        m = onnx.load(dst)
        onnx.checker.check_model(m)
        domains = {n.domain for n in m.graph.node} - {""}
        if expect_gemm:
            ok = changes == 1 and c.get("Gemm") == 1 and "MatMul" not in c and "Add" not in c and not domains
        else:
            ok = changes == 0 and "Gemm" not in c and c.get("MatMul") == 1 and c.get("Add") == 1
        R.check(f"{case} {'Gemm' if expect_gemm else 'left alone'}", ok, f"pass changes {changes}, ops {c}")
        if expect_gemm:
            gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
            attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
            R.check(f"{case} Gemm reads A, W, bias with default attributes",
                    list(gemm.input) == ["A", "W", "bias"] and all(attrs.get(k, d) == d for k, d in
                                                                  (("alpha", 1.0), ("beta", 1.0), ("transA", 0),
                                                                   ("transB", 0))), f"{list(gemm.input)} {attrs}")
        out = run_ort(dst, feeds)
        errs = [float(np.abs(out[k] - ref[k]).max()) for k in ref]
        R.check(f"{case} outputs vs unoptimized (ONNX Runtime)", set(out) == set(ref) and max(errs) <= 1e-5,
                f"max abs {max(errs):.1e}")


bias = rng.standard_normal(N).astype(np.float32)
run_case("bias-n", [M, K], True, bias=bias)
run_case("bias-first", [M, K], True, bias=bias, bias_first=True)
run_case("bias-1n", [M, K], True, bias=bias.reshape(1, N))
run_case("dynamic-batch", ["batch", K], True, bias=bias)
run_case("bias-m1", [M, K], False, bias=rng.standard_normal((M, 1)).astype(np.float32))
run_case("bias-mn", [M, K], False, bias=rng.standard_normal((M, N)).astype(np.float32))
run_case("matmul-read-twice", [M, K], False, bias=bias, extra_use=True)
run_case("bias-input", [M, K], False, bias=bias, bias_input=True)
run_case("bias-overridable", [M, K], False, bias=bias, bias_also_input=True)
run_case("rank3", [2, M, K], False, bias=bias)

# the pass by name, on both targets
src = os.path.join(OUT, "bias-n.onnx")
for target in ("fused", "portable"):
    try:
        rep = optimize(src, os.path.join(OUT, f"only.{target}.onnx"), "--target", target, "--passes",
                       "shape,matmul_bias")
        names = [p["name"] for p in rep["passes"]]
        changes = {p["name"]: p["changes"] for p in rep["passes"]}
        R.check(f"--passes shape,matmul_bias {target}", names == ["shape", "matmul_bias"] and
                changes["matmul_bias"] == 1, str(rep["passes"]))
    except RuntimeError as e:
        R.check(f"--passes shape,matmul_bias {target}", False, str(e))
R.finish()
