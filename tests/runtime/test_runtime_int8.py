#!/usr/bin/env python3
"""int8 encoders (`tdeploy optimize --precision int8`, DynamicQuantizeMatMul) against ONNX Runtime.

1. One DynamicQuantizeMatMul node, random A (1 and many rows), B (K, N) int8 with per-column
   scales (7-bit weight values, so no ORT kernel saturates), bias: tdeploy and ONNX Runtime both land within their activation-quantization error
   bound of the product with the dequantized weights (A in fp32). This pins the op's layout and
   semantics (B as (K, N), b_scale per column, bias) on the reference nobody here wrote; tdeploy
   quantizes per row (finer than ORT's per tensor), so its bound uses each row's range and a
   127-level step (the AVX2 kernel's; VNNI uses 255, inside the same bound).
2. Every encoder fixture: tdeploy export -> optimize --precision int8; the result passes
   onnx.checker, has no float MatMul weight left, one MultiHeadAttention per fp32 Attention;
   on random ids, token types and right padding at several shapes, ONNX Runtime and tdeploy run
   it; against the fp32 graph (ONNX Runtime) tdeploy's rows keep cosine >= 0.99 (mean, per shape)
   and its relative L2 error over all shapes is at most 1.5x ONNX Runtime's on the same int8 graph
   (+1e-3);
   1 and 2 threads give bit-identical outputs. All of it again with --int8-weight-bits 7 (weights
   in [-63, 63], which the AVX2 kernel sums in pairs), whose weights must stay in that range.
3. Bad graphs: uint8 weights, non-zero weight zero points, --target portable with int8 fail with
   messages that name the problem; --int8-weight-bits without int8 or other than 8/7 is a usage error
   (exit 2) for optimize and convert.
Prints one line per case and "N passed, M failed"; exits non-zero on any failure."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

FIX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
BIN = os.environ.get("TD_BIN", "tdeploy")
TMP = os.environ.get("TD_TMP", "/tmp")
ENCODERS = ["bert-base", "bert-qa", "bert-seqcls", "bert-tokcls", "distilbert-seqcls", "electra-base",
            "roberta-seqcls", "xlmr-base", "minilm-st"]
SHAPES = [(1, 1), (1, 7), (2, 5), (3, 16)]

passed = failed = 0


def report(ok, what, detail=""):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {what} {detail}".rstrip(), flush=True)


def infer(model, feeds, threads=None, extra=()):
    inp, out = os.path.join(TMP, "i8_in.safetensors"), os.path.join(TMP, "i8_out.safetensors")
    save_file(feeds, inp)
    if os.path.exists(out):
        os.remove(out)
    cmd = [BIN, "infer", model, "--inputs", inp, "-o", out, *extra] + (["--threads", str(threads)] if threads else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r, (load_file(out) if r.returncode == 0 else None)


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


# ---- 1. the op against ONNX Runtime ----
def dqmm_model(path, K, N, bq, scale, bias, zp=None, b_type=TensorProto.INT8):
    inits = [numpy_helper.from_array(bq, "B"), numpy_helper.from_array(scale, "s")]
    ins = ["A", "B", "s"]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, "zp"))
        ins.append("zp")
    else:
        ins.append("")
    inits.append(numpy_helper.from_array(bias, "bias"))
    ins.append("bias")
    node = helper.make_node("DynamicQuantizeMatMul", ins, ["Y"], domain="com.microsoft")
    g = helper.make_graph([node], "dqmm", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["m", K])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["m", N])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    onnx.save(m, path)


def check_op(rng):
    for M, K, N in [(1, 64, 40), (1, 300, 97), (9, 128, 50), (33, 77, 130)]:
        # weights on a 7-bit grid (+-63): ONNX Runtime's AVX2 kernel (vpmaddubsw) saturates 16-bit pair sums
        # of 255 x 127 products, which would make the oracle itself wrong on hosts without VNNI
        W = rng.normal(0, 0.05, (K, N)).astype(np.float32)
        scale = (np.abs(W).max(axis=0) / 63).astype(np.float32)
        bq = np.clip(np.rint(W / scale), -63, 63).astype(np.int8)
        bias = rng.normal(0, 1, N).astype(np.float32)
        path = os.path.join(TMP, "i8_dqmm.onnx")
        dqmm_model(path, K, N, bq, scale, bias)
        A = (rng.normal(0, 2, (M, K)) + rng.normal(0, 3, (M, 1))).astype(np.float32)  # rows of different ranges
        Wd = bq.astype(np.float64) * scale
        exact = A.astype(np.float64) @ Wd + bias
        absw = np.abs(Wd).sum(axis=0)
        lo, hi = np.minimum(A.min(), 0), np.maximum(A.max(), 0)
        ort_bound = (hi - lo) / 255 * absw[None, :] * 0.5 * 1.01 + 1e-4  # per tensor, 255 levels
        rlo, rhi = np.minimum(A.min(axis=1), 0)[:, None], np.maximum(A.max(axis=1), 0)[:, None]
        td_bound = (rhi - rlo) / 127 * absw[None, :] * 0.5 * 1.01 + 1e-4  # per row, 127 levels
        got_ort = ort_session(path).run(None, {"A": A})[0]
        r, out = infer(path, {"A": A})
        report(r.returncode == 0, f"DynamicQuantizeMatMul {M}x{K}x{N} tdeploy infer", r.stderr.strip()[-300:])
        if out is None:
            continue
        got = out["Y"]
        e_ort, e_td = np.abs(got_ort - exact), np.abs(got - exact)
        report(bool((e_ort <= ort_bound).all()), f"DynamicQuantizeMatMul {M}x{K}x{N} ONNX Runtime within its bound",
               f"worst {float((e_ort / ort_bound).max()):.3f} of the bound")
        report(bool((e_td <= td_bound).all()), f"DynamicQuantizeMatMul {M}x{K}x{N} tdeploy within its bound",
               f"worst {float((e_td / td_bound).max()):.3f} of the bound")


def check_fusion(rng):
    """DynamicQuantizeMatMul -> BiasGelu and -> SkipLayerNormalization run fused in tdeploy (the GEMM epilogue);
    exposing the product as a graph output prevents the fusion: both must agree (GELU: vector vs scalar form,
    a few ulp) and match ONNX Runtime's unfused run within the quantization error."""
    M, K, N = 37, 96, 80
    W = rng.normal(0, 0.1, (K, N)).astype(np.float32)
    scale = (np.abs(W).max(axis=0) / 63).astype(np.float32)
    bq = np.clip(np.rint(W / scale), -63, 63).astype(np.int8)
    A = rng.normal(0, 1, (M, K)).astype(np.float32)
    for consumer in ("BiasGelu", "SkipLayerNormalization"):
        inits = [numpy_helper.from_array(bq, "B"), numpy_helper.from_array(scale, "s"),
                 numpy_helper.from_array(rng.normal(0, 1, N).astype(np.float32), "b")]
        nodes = [helper.make_node("DynamicQuantizeMatMul", ["A", "B", "s"], ["P"], domain="com.microsoft")]
        ins = [helper.make_tensor_value_info("A", TensorProto.FLOAT, [M, K])]
        feeds = {"A": A}
        if consumer == "BiasGelu":
            nodes.append(helper.make_node("BiasGelu", ["P", "b"], ["Y"], domain="com.microsoft"))
        else:
            inits += [numpy_helper.from_array(np.ones(N, np.float32), "g"),
                      numpy_helper.from_array(np.zeros(N, np.float32), "beta")]
            ins.append(helper.make_tensor_value_info("R", TensorProto.FLOAT, [M, N]))
            feeds["R"] = rng.normal(0, 1, (M, N)).astype(np.float32)
            nodes.append(helper.make_node("SkipLayerNormalization", ["P", "R", "g", "beta", "b"], ["Y"],
                                          domain="com.microsoft", epsilon=1e-5))
        outs = {}
        for exposed in (False, True):
            o = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [M, N])]
            if exposed:
                o.append(helper.make_tensor_value_info("P", TensorProto.FLOAT, [M, N]))
            g = helper.make_graph(nodes, "fuse", ins, o, inits)
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
            m.ir_version = 8
            path = os.path.join(TMP, f"i8_fuse_{consumer}_{int(exposed)}.onnx")
            onnx.save(m, path)
            r, out = infer(path, feeds)
            outs[exposed] = out["Y"] if out is not None else None
            if not exposed:
                want = ort_session(path).run(None, feeds)[0]
                j = subprocess.run([BIN, "infer", path, "--inputs", os.path.join(TMP, "i8_in.safetensors"), "-o",
                                    os.path.join(TMP, "i8_fused.safetensors"), "--json"], capture_output=True, text=True)
                fused = json.loads(j.stdout).get("fused_nodes") if j.returncode == 0 else None
                report(fused == 1, f"DynamicQuantizeMatMul -> {consumer} fuses", f"fused_nodes {fused}")
        if outs[False] is None or outs[True] is None:
            report(False, f"DynamicQuantizeMatMul -> {consumer} runs", r.stderr.strip()[-300:])
            continue
        d = float(np.max(np.abs(outs[False] - outs[True]) / (1 + np.abs(outs[True]))))
        report(d <= 1e-5, f"DynamicQuantizeMatMul -> {consumer}: fused = unfused", f"max rel diff {d:.2g}")
        e = rel_l2(outs[False].astype(np.float64), want.astype(np.float64))
        report(e <= 0.02, f"DynamicQuantizeMatMul -> {consumer}: fused vs ONNX Runtime", f"rel L2 {e:.4f}")


# ---- 2. fixtures ----
def tool(args, what):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    report(r.returncode == 0, what, r.stderr.strip()[-300:] if r.returncode else "")
    return r.returncode == 0


def random_feeds(sess, cfg, batch, seq, rng):
    feeds = {}
    lengths = rng.integers(1, seq + 1, size=batch)
    lengths[0] = seq
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = rng.integers(0, int(cfg.get("vocab_size", 100)), size=(batch, seq), dtype=np.int64)
        elif i.name == "token_type_ids":
            feeds[i.name] = rng.integers(0, max(int(cfg.get("type_vocab_size", 1) or 1), 1), size=(batch, seq),
                                         dtype=np.int64)
        elif i.name == "attention_mask":
            m = np.zeros((batch, seq), dtype=np.int64)
            for b, n in enumerate(lengths):
                m[b, :n] = 1
            feeds[i.name] = m
    return feeds


def rows(x, mask):
    """Last-axis rows at real positions (per-token outputs) or per batch item."""
    x = x.astype(np.float64)
    if x.ndim >= 3 and mask is not None and x.shape[:2] == mask.shape:
        return x[mask.astype(bool)].reshape(-1, x.shape[-1])
    if x.ndim == 2 and mask is not None and x.shape == mask.shape:  # span logits: real positions, one vector
        return np.where(mask.astype(bool), x, 0.0).reshape(1, -1)
    return x.reshape(-1, x.shape[-1]) if x.ndim >= 2 else x.reshape(1, -1)


def cosines(a, b):
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.where((na == 0) & (nb == 0), 1.0, (a * b).sum(axis=1) / np.maximum(na * nb, 1e-30))


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def count_ops(path):
    m = onnx.load(path)
    ops = [n.op_type for n in m.graph.node]
    inits = {i.name: i for i in m.graph.initializer}
    float_mm = sum(1 for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits and
                   inits[n.input[1]].data_type == TensorProto.FLOAT)
    return ops, float_mm


def weight_range(path):
    """Largest |value| over the int8 weights of the DynamicQuantizeMatMul nodes."""
    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    return max(int(np.abs(numpy_helper.to_array(inits[n.input[1]]).astype(np.int32)).max())
               for n in m.graph.node if n.op_type == "DynamicQuantizeMatMul")


def check_fixture(arch, rng, bits=8):
    cfg = json.load(open(os.path.join(FIX, "hf", arch, "config.json")))
    exported = os.path.join(TMP, f"i8_{arch}.onnx")
    fp32, int8 = os.path.join(TMP, f"i8_{arch}.opt.onnx"), os.path.join(TMP, f"i8_{arch}.int8w{bits}.onnx")
    if not (tool(["export", "-m", os.path.join(FIX, "hf", arch), "-o", exported, "-q"], f"{arch} export") and
            tool(["optimize", exported, "-o", fp32, "-q"], f"{arch} optimize fp32") and
            tool(["optimize", exported, "-o", int8, "--precision", "int8", "--int8-weight-bits", str(bits), "-q"],
                 f"{arch} optimize int8 ({bits}-bit weights)")):
        return
    wr = weight_range(int8)
    report(wr == (127 if bits == 8 else 63), f"{arch} int8 weights use the {bits}-bit range", f"max |w| = {wr}")
    arch = f"{arch} w{bits}"
    try:
        onnx.checker.check_model(onnx.load(int8))
        report(True, f"{arch} int8 onnx.checker")
    except Exception as e:  # noqa: BLE001 - any checker complaint is a failure
        report(False, f"{arch} int8 onnx.checker", str(e)[:300])
    ops8, float_mm = count_ops(int8)
    ops32, _ = count_ops(fp32)
    report(ops8.count("DynamicQuantizeMatMul") > 0 and float_mm == 0 and
           ops8.count("MultiHeadAttention") == ops32.count("Attention") and "Attention" not in ops8,
           f"{arch} int8 graph", f"{ops8.count('DynamicQuantizeMatMul')} DynamicQuantizeMatMul, "
           f"{ops8.count('MultiHeadAttention')} MultiHeadAttention (fp32 Attention {ops32.count('Attention')}), "
           f"{float_mm} float MatMul weights left")
    s32, s8 = ort_session(exported), ort_session(int8)
    worst_cos, worst_ratio = 1.0, 0.0
    pooled = {}  # output -> real-position values of (tdeploy, fp32, ORT int8) over all shapes
    for batch, seq in SHAPES:
        feeds = random_feeds(s32, cfg, batch, seq, rng)
        ref = dict(zip([o.name for o in s32.get_outputs()], s32.run(None, feeds)))
        o8 = dict(zip([o.name for o in s8.get_outputs()], s8.run(None, feeds)))
        r, td = infer(int8, feeds, threads=1)
        if td is None:
            report(False, f"{arch} {batch}x{seq} tdeploy infer int8", r.stderr.strip()[-300:])
            continue
        r2, td2 = infer(int8, feeds, threads=2)
        same = td2 is not None and all(np.array_equal(td[k], td2[k]) for k in td)
        report(same, f"{arch} {batch}x{seq} int8 1 vs 2 threads bit-identical")
        if (batch, seq) == SHAPES[-1]:  # the reference backend: plain-loop int8 GEMM, unfused epilogues
            r3, tr = infer(int8, feeds, extra=("--backend", "reference"))
            d = max(float(np.max(np.abs(td[k] - tr[k]) / (1 + np.abs(tr[k])))) for k in td) if tr else float("inf")
            report(d <= 1e-4, f"{arch} {batch}x{seq} int8 cpu vs reference backend", f"max rel diff {d:.2g} "
                   f"{r3.stderr.strip()[-200:] if tr is None else ''}")
        mask = feeds.get("attention_mask")
        for name, want in ref.items():
            a, b, c = rows(td[name], mask), rows(want, mask), rows(o8[name], mask)
            cs = cosines(a, b)
            e_td, e_ort = rel_l2(a, b), rel_l2(c, b)
            worst_cos = min(worst_cos, float(cs.mean()))
            for k, v in zip(("td", "ref", "ort"), (a, b, c)):
                pooled.setdefault(name, {}).setdefault(k, []).append(v.ravel())
            # one-value rows (span logits of a 1-token input) have no direction: their error is judged pooled
            ok = cs.mean() >= 0.99 or a.shape[-1] == 1
            report(ok, f"{arch} {batch}x{seq} {name}", f"tdeploy int8 cos mean {cs.mean():.5f} min {cs.min():.5f}, "
                   f"rel L2 {e_td:.4f} (ONNX Runtime int8 {e_ort:.4f})")
            if name in ("logits",) and want.ndim >= 2:
                agree = float((np.argmax(a, axis=-1) == np.argmax(b, axis=-1)).mean())
                agree_ort = float((np.argmax(c, axis=-1) == np.argmax(b, axis=-1)).mean())
                print(f"NOTE {arch} {batch}x{seq} argmax agreement with fp32: tdeploy int8 {agree:.3f}, "
                      f"ONNX Runtime int8 {agree_ort:.3f}")
    for name, p in pooled.items():
        a, b, c = (np.concatenate(p[k]) for k in ("td", "ref", "ort"))
        e_td, e_ort = rel_l2(a, b), rel_l2(c, b)
        worst_ratio = max(worst_ratio, e_td / max(e_ort, 1e-12))
        report(e_td <= 1.5 * e_ort + 1e-3, f"{arch} {name} over all shapes: error at most 1.5x ONNX Runtime int8's",
               f"rel L2 tdeploy {e_td:.4f}, ONNX Runtime {e_ort:.4f}")
    print(f"NOTE {arch}: worst mean cosine {worst_cos:.5f}, worst error ratio tdeploy/ORT {worst_ratio:.2f}")


# ---- 3. refusals ----
def check_errors(rng):
    K, N = 16, 8
    bias, scale = np.zeros(N, np.float32), np.full(N, 0.01, np.float32)
    A = {"A": rng.normal(0, 1, (2, K)).astype(np.float32)}
    path = os.path.join(TMP, "i8_bad.onnx")
    dqmm_model(path, K, N, rng.integers(0, 255, (K, N)).astype(np.uint8), scale, bias)
    r, _ = infer(path, A)
    report(r.returncode != 0 and "uint8" in r.stderr and "DynamicQuantizeMatMul" in r.stderr, "uint8 weights refused",
           r.stderr.strip()[-200:])
    zp = np.zeros(N, np.int8)
    zp[3] = 5
    dqmm_model(path, K, N, rng.integers(-127, 127, (K, N)).astype(np.int8), scale, bias, zp=zp)
    r, _ = infer(path, A)
    report(r.returncode != 0 and "b_zero_point[3] = 5" in r.stderr, "non-zero weight zero point refused",
           r.stderr.strip()[-200:])
    dqmm_model(path, K, N, rng.integers(-127, 127, (K, N)).astype(np.int8), -scale, bias)
    r, _ = infer(path, A)
    report(r.returncode != 0 and "positive" in r.stderr, "negative weight scale refused", r.stderr.strip()[-200:])
    exported = os.path.join(TMP, "i8_bert-seqcls.onnx")
    r = subprocess.run([BIN, "optimize", exported, "-o", os.path.join(TMP, "i8_port.onnx"), "--precision", "int8",
                        "--target", "portable"], capture_output=True, text=True)
    report(r.returncode != 0 and "--target fused" in r.stderr and not os.path.exists(os.path.join(TMP, "i8_port.onnx")),
           "int8 with --target portable refused", r.stderr.strip()[-200:])
    for args in (["optimize", exported, "-o", os.path.join(TMP, "i8_w7.onnx"), "--int8-weight-bits", "7"],
                 ["optimize", exported, "-o", os.path.join(TMP, "i8_w7.onnx"), "--precision", "int8",
                  "--int8-weight-bits", "6"],
                 ["convert", "-m", os.path.join(FIX, "hf", "bert-seqcls"), "-o", os.path.join(TMP, "i8_w7_conv"),
                  "--int8-weight-bits", "7"]):
        r = subprocess.run([BIN, *args], capture_output=True, text=True)
        report(r.returncode == 2 and "--int8-weight-bits" in r.stderr and
               not os.path.exists(os.path.join(TMP, "i8_w7.onnx")) and not os.path.exists(os.path.join(TMP, "i8_w7_conv")),
               f"{args[0]} {' '.join(args[-2:])} refused (usage)", r.stderr.strip()[-200:])


def main():
    rng = np.random.default_rng(1234)
    check_op(rng)
    check_fusion(rng)
    for arch in ENCODERS:
        if os.path.isdir(os.path.join(FIX, "hf", arch)):
            check_fixture(arch, rng)
            check_fixture(arch, rng, bits=7)  # [-63, 63]: the AVX2 kernel's paired path
    check_errors(rng)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
