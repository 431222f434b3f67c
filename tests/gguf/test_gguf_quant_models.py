"""Every tensor type tdeploy dequantizes, through a whole model: a small llama-family GGUF (2 layers, hidden 256 so
that the 256-value K-quant blocks fit a row, grouped-query attention with 4 heads over 2 KV heads, untied
output) written by gguf-py with all its matrices in one type (F16, BF16, Q8_0, Q4_0, Q4_1 quantized by gguf-py
from random weights; Q4_K and Q6_K as random blocks with small scales, which gguf-py cannot quantize), q/k rows
permuted as llama.cpp's converter stores them.

`tdeploy export` builds the ONNX decoder from it; the logits of a prompt, run by ONNX Runtime and by tdeploy's own
runtime (`tdeploy infer`), must equal a float64 numpy forward pass over the tensors dequantized by
tests/gguf/gguf_reference.py (written from ggml's block layouts, not from tdeploy's C) within 1e-4 (`--precision
fp32`: weights dequantized). The default export keeps the Q4_0/Q4_1/Q8_0/Q4_K/Q6_K blocks (MatMulNBits,
GatherBlockQuantized): checked for its ops, against ONNX Runtime on the same graph and against the reference
within float rounding (fp32 activations, the default) and within 8-bit activation rounding (--precision int8)
(check_quantized)."""
import os
import subprocess
import sys

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "export"))
import gguf_reference as ref  # noqa: E402
from decoder_common import ort_runner  # noqa: E402
from export_common import BIN, TMP, Tally, run_export  # noqa: E402

t = Tally()
work = os.path.join(TMP, "gguf_quant_models")
os.makedirs(work, exist_ok=True)
L, E, H, KV, F, V = 2, 256, 4, 2, 512, 512
D = E // H
EPS, THETA = 1e-5, 10000.0


def llama_cpp_permute(w, n_head):
    """convert_hf_to_gguf's LlamaModel.permute: HF (rotate_half) row order -> llama.cpp's interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_order(w, n_head):
    """Inverse of llama_cpp_permute."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def small_k_blocks(kind, n_blocks, rng):
    """Random K-quant blocks whose fp16 scales keep the weights below ~0.2 (a sane forward pass)."""
    elems, size = ref.BLOCK[kind]
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    f16 = lambda lo, hi: rng.uniform(lo, hi, n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    if kind == "Q4_K":
        b[:, 0:2], b[:, 2:4] = f16(1e-4, 2e-4), f16(1e-4, 2e-4)
    else:  # Q6_K: d is the last two bytes
        b[:, 208:210] = f16(5e-6, 1e-5)
    return b


def write_model(path, qt, rng):
    """The GGUF; returns {gguf tensor name: float64 array in HF layout (rows, cols)} from the numpy reference."""
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(L)
    w.add_context_length(128)
    w.add_embedding_length(E)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_freq_base(THETA)
    shapes = {"token_embd.weight": (V, E), "output.weight": (V, E), "output_norm.weight": (E,)}
    for i in range(L):
        shapes.update({f"blk.{i}.attn_norm.weight": (E,), f"blk.{i}.ffn_norm.weight": (E,),
                       f"blk.{i}.attn_q.weight": (H * D, E), f"blk.{i}.attn_k.weight": (KV * D, E),
                       f"blk.{i}.attn_v.weight": (KV * D, E), f"blk.{i}.attn_output.weight": (E, H * D),
                       f"blk.{i}.ffn_gate.weight": (F, E), f"blk.{i}.ffn_up.weight": (F, E),
                       f"blk.{i}.ffn_down.weight": (E, F)})
    ref_weights = {}
    for name, shape in shapes.items():
        if len(shape) == 1:  # norms stay F32, as llama.cpp keeps them
            x = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            w.add_tensor(name, x)
            ref_weights[name] = x.astype(np.float64)
            continue
        if qt in (Q.Q4_K, Q.Q6_K):
            raw = small_k_blocks(qt.name, shape[0] * shape[1] // 256, rng).reshape(shape[0], -1)
        else:
            raw = gguf.quants.quantize((0.05 * rng.standard_normal(shape)).astype(np.float32), qt)
        w.add_tensor(name, raw, raw_dtype=qt)
        stored = ref.dequantize(raw.tobytes(), qt.name).reshape(shape).astype(np.float64)
        # what the file holds for q/k is llama.cpp's row order; the model means the HF order
        if ".attn_q." in name:
            stored = hf_order(stored, H)
        elif ".attn_k." in name:
            stored = hf_order(stored, KV)
        ref_weights[name] = stored
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return ref_weights


def rms(x, g):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * g


def forward(Wt, ids):
    """transformers' LlamaForCausalLM in float64: (S,) ids -> (S, V) logits."""
    S = len(ids)
    h = Wt["token_embd.weight"][ids]
    inv = 1.0 / THETA ** (np.arange(0, D, 2) / D)
    ang = np.arange(S)[:, None] * inv[None]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = lambda x: np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
    mask = np.triu(np.full((S, S), -np.inf), 1)
    for i in range(L):
        x = rms(h, Wt[f"blk.{i}.attn_norm.weight"])
        q = (x @ Wt[f"blk.{i}.attn_q.weight"].T).reshape(S, H, D).transpose(1, 0, 2)
        k = (x @ Wt[f"blk.{i}.attn_k.weight"].T).reshape(S, KV, D).transpose(1, 0, 2)
        v = (x @ Wt[f"blk.{i}.attn_v.weight"].T).reshape(S, KV, D).transpose(1, 0, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = np.repeat(k, H // KV, 0), np.repeat(v, H // KV, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(D) + mask
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        h = h + (p @ v).transpose(1, 0, 2).reshape(S, E) @ Wt[f"blk.{i}.attn_output.weight"].T
        x = rms(h, Wt[f"blk.{i}.ffn_norm.weight"])
        g, u = x @ Wt[f"blk.{i}.ffn_gate.weight"].T, x @ Wt[f"blk.{i}.ffn_up.weight"].T
        h = h + (g / (1 + np.exp(-g)) * u) @ Wt[f"blk.{i}.ffn_down.weight"].T
    return rms(h, Wt["output_norm.weight"]) @ Wt["output.weight"].T


BLOCK_TYPES = ("Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K")  # re-packed into MatMulNBits blocks, never dequantized
GATHER_TYPES = ("Q8_0", "Q4_0", "Q6_K")  # default zero points: the table is gathered from its blocks too


def check_quantized(qt, path, want, feeds, inp, int8):
    """The default export of a GGUF keeps block-quantized matrices in their blocks: every projection and the
    lm_head become com.microsoft MatMulNBits, the embedding table a GatherBlockQuantized where its zero points
    are the default; no float copy of those weights is in the file. By default the MatMulNBits multiply fp32
    activations (accuracy_level 0: the dequantized model's results, to float rounding); with --precision int8
    the activations are quantized to int8 per block (accuracy_level 4, llama.cpp's arithmetic). tdeploy's
    runtime must match ONNX Runtime on that very graph, and both the float64 reference over the dequantized
    weights: within float rounding (fp32 activations) or the error of 8-bit activations (int8)."""
    name = qt.name + (" int8" if int8 else "")
    onnx_q = os.path.join(work, f"tiny-{qt.name}-q{'8' if int8 else ''}.onnx")
    r = run_export(path, onnx_q, *(["--precision", "int8"] if int8 else []))
    if not t.check(r.returncode == 0, f"{name}: tdeploy export (blocks kept) from the GGUF", r.stderr.strip()[-300:]):
        return
    import onnx as onnx_lib
    m = onnx_lib.load(onnx_q)
    onnx_lib.checker.check_model(m)
    ops = [n.op_type for n in m.graph.node]
    big_float = [i.name for i in m.graph.initializer if i.data_type == onnx_lib.TensorProto.FLOAT and
                 int(np.prod(i.dims)) >= E * E // 4 and ".q" not in i.name]
    if qt.name in BLOCK_TYPES:
        levels = {a.i for n in m.graph.node if n.op_type == "MatMulNBits" for a in n.attribute
                  if a.name == "accuracy_level"}
        t.check(levels == {4 if int8 else 0}, f"{name}: MatMulNBits accuracy_level {4 if int8 else 0} "
                f"({'int8' if int8 else 'fp32'} activations)", f"{levels}")
        t.check(ops.count("MatMulNBits") == 7 * L + 1 and ops.count("MatMul") == 2 * L,
                f"{name}: every projection and the lm_head are MatMulNBits (attention's two MatMuls stay)",
                f"{ops.count('MatMulNBits')} MatMulNBits, {ops.count('MatMul')} MatMul")
        gathered = qt.name in GATHER_TYPES
        t.check(("GatherBlockQuantized" in ops) == gathered and big_float == ([] if gathered else
                ["model.embed_tokens.weight"]), f"{name}: embedding gathered from its blocks: {gathered}; no other "
                "float copy of a matrix", f"float initializers {big_float}")
    else:  # F16 / BF16: no block layout, dequantized as before
        t.check("MatMulNBits" not in ops, f"{name}: no block layout, float32 graph")
        return
    ort_logits, _ = ort_runner(onnx_q)(feeds["input_ids"], feeds["attention_mask"], feeds["position_ids"], None)
    out = os.path.join(work, "out_q.safetensors")
    rr = subprocess.run([BIN, "infer", onnx_q, "--inputs", inp, "-o", out, "-q"], capture_output=True, text=True,
                        timeout=300)
    if not t.check(rr.returncode == 0, f"{name}: tdeploy infer runs the quantized export", rr.stderr[-200:]):
        return
    td = load_file(out)["logits"][0]
    scale = float(np.abs(want).max())
    # ONNX Runtime takes int8 activations only with integer zero points (Q8_0, Q4_0, Q6_K: the same per-block
    # rounding as tdeploy; each layer alone agrees to ~1e-6, but a float summation-order difference upstream can
    # move an activation across a rounding boundary, one quantum = 1/127 of its block's largest value, and later
    # layers carry that on); with float zero points (Q4_1, Q4_K) it computes in fp32 while tdeploy keeps int8
    # activations, so they differ by the whole rounding
    tol = 2e-2 * scale if qt.name in GATHER_TYPES else 3e-2 * scale
    fp32_tol = 1e-4 * max(1.0, scale)  # fp32 activations: float summation order only
    if not int8:
        tol = fp32_tol
    err = float(np.abs(td - ort_logits[0]).max())
    t.check(err <= tol, f"{name}: tdeploy == ONNX Runtime on the MatMulNBits graph", f"max abs {err:.2e} "
            f"(tolerance {tol:.2e}, logits up to {scale:.2f})")
    err = float(np.abs(td - want).max())
    t.check(err <= (3e-2 * scale if int8 else fp32_tol), f"{name}: quantized run == float64 reference over the "
            f"dequantized weights, within {'8-bit activation' if int8 else 'float'} rounding",
            f"max abs {err:.2e}, logits up to {scale:.2f}")
    t.check(np.array_equal(td.argmax(-1), want.argmax(-1)) or err <= 1e-2 * scale,
            f"{name}: next-token argmax of the quantized run as the reference's", f"{td.argmax(-1)} vs {want.argmax(-1)}")
    # the optimizer types MatMulNBits / GatherBlockQuantized outputs (their shapes come from attributes and the
    # data), so the fusions after them match as on a float graph: RMSNorm and rotary fused, same logits
    onnx_o = os.path.join(work, f"tiny-{qt.name}-q{'8' if int8 else ''}-opt.onnx")
    r = subprocess.run([BIN, "optimize", onnx_q, "-o", onnx_o, "--json"], capture_output=True, text=True, timeout=300)
    if not t.check(r.returncode == 0, f"{name}: tdeploy optimize on the quantized export", r.stderr[-300:]):
        return
    import json
    fus = json.loads(r.stdout).get("fusions", {})
    t.check(fus.get("SkipSimplifiedLayerNormalization", 0) + fus.get("SimplifiedLayerNormalization", 0) == 2 * L + 1
            and fus.get("RotaryEmbedding", 0) == 2 * L,
            f"{name}: optimize fuses every RMSNorm and rotary after the block-quantized ops", json.dumps(fus))
    rr = subprocess.run([BIN, "infer", onnx_o, "--inputs", inp, "-o", out, "-q"], capture_output=True, text=True,
                        timeout=300)
    if t.check(rr.returncode == 0, f"{name}: tdeploy infer runs the optimized quantized graph", rr.stderr[-200:]):
        err = float(np.abs(load_file(out)["logits"][0] - td).max())
        t.check(err <= (2e-2 * scale if int8 else fp32_tol), f"{name}: optimized == unoptimized quantized graph "
                "(within activation rounding)",
                f"max abs {err:.2e}, logits up to {scale:.2f}")


rng = np.random.default_rng(7)
ids = np.array([[3, 141, 59, 265, 358, 97, 93, 238, 462, 64, 33, 8]], np.int64)
S = ids.shape[1]
# the reference's own check: the permutation helpers are inverses, and do move rows
w0 = rng.standard_normal((H * D, 3))
t.check(np.array_equal(hf_order(llama_cpp_permute(w0, H), H), w0) and not np.array_equal(llama_cpp_permute(w0, H), w0),
        "reference: llama.cpp's q/k permutation and its inverse")
for qt in (Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q6_K):
    path = os.path.join(work, f"tiny-{qt.name}.gguf")
    Wt = write_model(path, qt, rng)
    want = forward(Wt, ids[0])
    onnx = os.path.join(work, f"tiny-{qt.name}.onnx")
    r = run_export(path, onnx, "--precision", "fp32")
    if not t.check(r.returncode == 0, f"{qt.name}: tdeploy export --precision fp32 from the GGUF", r.stderr.strip()[-300:]):
        continue
    logits, _ = ort_runner(onnx)(ids, np.ones_like(ids), np.arange(S)[None], None)
    err = float(np.abs(logits[0] - want).max())
    t.check(err <= 1e-4, f"{qt.name}: ONNX Runtime logits == numpy over gguf_reference", f"max abs {err:.2e}, "
            f"logits up to {float(np.abs(want).max()):.2f}")
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(S, dtype=np.int64)[None]}
    for i in range(L):
        for kv in ("key", "value"):
            feeds[f"past_key_values.{i}.{kv}"] = np.zeros((1, KV, 0, D), np.float32)
    inp, out = os.path.join(work, "in.safetensors"), os.path.join(work, "out.safetensors")
    save_file(feeds, inp)
    rr = subprocess.run([BIN, "infer", onnx, "--inputs", inp, "-o", out, "-q"], capture_output=True, text=True,
                        timeout=300)
    if t.check(rr.returncode == 0, f"{qt.name}: tdeploy infer runs the export", rr.stderr[-200:]):
        err = float(np.abs(load_file(out)["logits"][0] - want).max())
        t.check(err <= 1e-4, f"{qt.name}: tdeploy runtime logits == numpy over gguf_reference", f"max abs {err:.2e}")
    check_quantized(qt, path, want, feeds, inp, int8=False)
    check_quantized(qt, path, want, feeds, inp, int8=True)
t.finish()
