#!/usr/bin/env python3
"""com.microsoft contrib ops of the CPU runtime vs ONNX Runtime.

The ONNX node tests have no cases for contrib ops, so this builds small graphs
for each (Gelu, BiasGelu, FastGelu, SkipLayerNormalization,
EmbedLayerNormalization, Attention, MultiHeadAttention) with their optional
inputs/outputs and mask forms, runs them with ONNX Runtime and with
`tdeploy infer`, and compares every output (1e-4 absolute + 1e-4 relative for
float32, exact for integers). Prints one line per case; exits non-zero on any
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
failures = 0
rng = np.random.default_rng(1234)

NP2ONNX = {np.float32: TensorProto.FLOAT, np.int32: TensorProto.INT32, np.int64: TensorProto.INT64}


def model(name, nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, name,
                          [helper.make_tensor_value_info(n, NP2ONNX[a.dtype.type], a.shape) for n, a in inputs],
                          [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


def check(case, m, feeds, atol=1e-4):
    global failures
    path = os.path.join(TMP, f"contrib_{case}.onnx")
    onnx.save(m, path)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    names = [o.name for o in m.graph.output]
    inp, out = os.path.join(TMP, f"contrib_{case}.in.safetensors"), os.path.join(TMP, f"contrib_{case}.out.safetensors")
    save_file(feeds, inp)
    r = subprocess.run([BIN, "infer", path, "--inputs", inp, "-o", out], capture_output=True, text=True)
    if r.returncode != 0:
        failures += 1
        print(f"FAIL {case}: {r.stderr.strip()}")
        return
    got = load_file(out)
    for n, w in zip(names, want):
        g = got.get(n)
        if g is None or g.shape != w.shape or g.dtype != w.dtype:
            failures += 1
            print(f"FAIL {case} {n}: got {None if g is None else (g.dtype, g.shape)}, want {(w.dtype, w.shape)}")
            continue
        if np.issubdtype(w.dtype, np.floating):
            d = np.abs(g.astype(np.float64) - w)
            err = float(d.max()) if w.size else 0.0
            ok = bool(np.all(d <= atol + 1e-4 * np.abs(w)))
        else:
            err = int(np.max(np.abs(g.astype(np.int64) - w.astype(np.int64)))) if w.size else 0
            ok = err == 0
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {case} {n} err={err:.3g}")


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def gelus():
    x, b = f32(2, 3, 8), f32(8)
    for op, ins in [("Gelu", ["x"]), ("BiasGelu", ["x", "b"]), ("FastGelu", ["x"]), ("FastGelu", ["x", "b"])]:
        feeds = {"x": x} if len(ins) == 1 else {"x": x, "b": b}
        n = helper.make_node(op, ins, ["y"], domain="com.microsoft")
        check(f"{op}_{len(ins)}", model(op, [n], list(feeds.items()), [("y", TensorProto.FLOAT)]), feeds)


def skip_ln():
    B, S, H = 2, 5, 16
    x, skip, g, b, bias = f32(B, S, H), f32(B, S, H), f32(H), f32(H), f32(H)
    for variant, ins, outs in [
        ("basic", ["x", "skip", "g"], ["y"]),
        ("beta", ["x", "skip", "g", "b"], ["y"]),
        ("bias_sum", ["x", "skip", "g", "b", "bias"], ["y", "", "", "sum"]),
    ]:
        feeds = {"x": x, "skip": skip}
        inits = [(k, v) for k, v in {"g": g, "b": b, "bias": bias}.items() if k in ins]
        n = helper.make_node("SkipLayerNormalization", ins, outs, domain="com.microsoft", epsilon=1e-5)
        m = model("sln", [n], list(feeds.items()), [(o, TensorProto.FLOAT) for o in outs if o], inits)
        check(f"SkipLayerNormalization_{variant}", m, feeds)
    # skip (S, H) broadcast over the batch (ORT accepts 2-D skip)
    n = helper.make_node("SkipLayerNormalization", ["x", "skip", "g", "b", "bias"], ["y"], domain="com.microsoft",
                         epsilon=1e-5)
    feeds = {"x": x, "skip": f32(S, H)}
    m = model("sln", [n], list(feeds.items()), [("y", TensorProto.FLOAT)], [("g", g), ("b", b), ("bias", bias)])
    check("SkipLayerNormalization_skip_broadcast", m, feeds)


def rms_norms():
    B, S, H = 2, 5, 16
    x, skip, g, bias = f32(B, S, H), f32(B, S, H), f32(H), f32(H)
    n = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], axis=-1, epsilon=1e-6)
    check("SimplifiedLayerNormalization", model("rms", [n], [("x", x)], [("y", TensorProto.FLOAT)], [("g", g)]),
          {"x": x})
    for variant, ins, outs in [("basic", ["x", "skip", "g"], ["y"]),
                               ("bias_sum", ["x", "skip", "g", "bias"], ["y", "", "", "sum"])]:
        n = helper.make_node("SkipSimplifiedLayerNormalization", ins, outs, domain="com.microsoft", epsilon=1e-6)
        inits = [(k, v) for k, v in {"g": g, "bias": bias}.items() if k in ins]
        m = model("srms", [n], [("x", x), ("skip", skip)], [(o, TensorProto.FLOAT) for o in outs if o], inits)
        check(f"SkipSimplifiedLayerNormalization_{variant}", m, {"x": x, "skip": skip})


def embed_ln():
    B, S, H, V, P = 2, 6, 16, 50, 12
    ids = rng.integers(0, V, size=(B, S)).astype(np.int32)
    seg = rng.integers(0, 2, size=(B, S)).astype(np.int32)
    mask = np.ones((B, S), dtype=np.int32)
    mask[1, 4:] = 0
    inits = [("we", f32(V, H)), ("pe", f32(P, H)), ("se", f32(2, H)), ("g", f32(H)), ("b", f32(H))]
    n = helper.make_node("EmbedLayerNormalization", ["ids", "seg", "we", "pe", "se", "g", "b", "mask"],
                         ["y", "mask_index"], domain="com.microsoft", epsilon=1e-12)
    feeds = {"ids": ids, "seg": seg, "mask": mask}
    m = model("eln", [n], list(feeds.items()), [("y", TensorProto.FLOAT), ("mask_index", TensorProto.INT32)], inits)
    check("EmbedLayerNormalization", m, feeds)
    # DistilBERT form: no segment ids / embedding
    n = helper.make_node("EmbedLayerNormalization", ["ids", "", "we", "pe", "", "g", "b", "mask"],
                         ["y", "mask_index"], domain="com.microsoft", epsilon=1e-12)
    feeds = {"ids": ids, "mask": mask}
    m = model("eln2", [n], list(feeds.items()), [("y", TensorProto.FLOAT), ("mask_index", TensorProto.INT32)],
              [i for i in inits if i[0] != "se"])
    check("EmbedLayerNormalization_no_segment", m, feeds)


def attention():
    B, S, Hin, N = 2, 5, 16, 4
    x = f32(B, S, Hin)
    w, bias = f32(Hin, 3 * Hin) * 0.3, f32(3 * Hin)
    lens = np.array([5, 3], dtype=np.int32)
    raw = np.ones((B, S), dtype=np.int32)
    raw[1, 3:] = 0
    for variant, extra, feeds_extra, attrs in [
        ("nomask", [], {}, {}),
        ("lens", ["mask"], {"mask": lens}, {}),
        ("raw2d", ["mask"], {"mask": raw}, {}),
        ("causal", [], {}, {"unidirectional": 1}),
        ("causal_raw", ["mask"], {"mask": raw}, {"unidirectional": 1}),
    ]:
        ins = ["x", "w", "bias"] + extra
        n = helper.make_node("Attention", ins, ["y"], domain="com.microsoft", num_heads=N, **attrs)
        feeds = {"x": x, **feeds_extra}
        m = model("attn", [n], list(feeds.items()), [("y", TensorProto.FLOAT)], [("w", w), ("bias", bias)])
        check(f"Attention_{variant}", m, feeds)
    # past / present
    P = 3
    past = f32(2, B, N, P, Hin // N)
    n = helper.make_node("Attention", ["x", "w", "bias", "", "past"], ["y", "present"], domain="com.microsoft",
                         num_heads=N, unidirectional=1)
    feeds = {"x": x, "past": past}
    m = model("attn_past", [n], list(feeds.items()), [("y", TensorProto.FLOAT), ("present", TensorProto.FLOAT)],
              [("w", w), ("bias", bias)])
    check("Attention_past", m, feeds)


def mha():
    B, S, L, N, H = 2, 4, 6, 2, 8
    q, k, v = f32(B, S, N * H), f32(B, L, N * H), f32(B, L, N * H)
    bias = f32(3 * N * H)
    kpm = np.ones((B, L), dtype=np.int32)
    kpm[0, 4:] = 0
    ab = f32(1, N, S, L)
    for variant, ins, feeds, inits in [
        ("plain", ["q", "k", "v"], {"q": q, "k": k, "v": v}, []),
        ("bias", ["q", "k", "v", "bias"], {"q": q, "k": k, "v": v}, [("bias", bias)]),
        ("kpm", ["q", "k", "v", "", "kpm"], {"q": q, "k": k, "v": v, "kpm": kpm}, []),
        ("attn_bias", ["q", "k", "v", "", "", "ab"], {"q": q, "k": k, "v": v, "ab": ab}, []),
    ]:
        n = helper.make_node("MultiHeadAttention", ins, ["y"], domain="com.microsoft", num_heads=N)
        m = model("mha", [n], list(feeds.items()), [("y", TensorProto.FLOAT)], inits)
        check(f"MultiHeadAttention_{variant}", m, feeds)
    # self attention with past_key/past_value and present outputs, causal
    P = 3
    ks, vs = f32(B, S, N * H), f32(B, S, N * H)
    pk, pv = f32(B, N, P, H), f32(B, N, P, H)
    n = helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "", "", "pk", "pv"], ["y", "pres_k", "pres_v"],
                         domain="com.microsoft", num_heads=N, unidirectional=1)
    feeds = {"q": q, "k": ks, "v": vs, "pk": pk, "pv": pv}
    m = model("mha_past", [n], list(feeds.items()),
              [("y", TensorProto.FLOAT), ("pres_k", TensorProto.FLOAT), ("pres_v", TensorProto.FLOAT)])
    check("MultiHeadAttention_past", m, feeds)


def main():
    for f in (gelus, skip_ln, rms_norms, embed_ln, attention, mha):
        f()
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
