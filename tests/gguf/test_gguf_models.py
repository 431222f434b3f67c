"""Decoders from GGUF files.

1. The llama-gen (arch llama: Q/K rows permuted as llama.cpp's converter does) and qwen2-lm (arch qwen2: q/k/v
   biases, tied embeddings) fixtures written as GGUF by gguf-py with float32 tensors: `tdeploy export -m x.gguf`
   run by ONNX Runtime matches transformers' goldens (prefill, greedy through the cache, left-padded batch, step
   logits); the same with Q8_0 / Q4_0 / Q4_1 weights matches an HF-format export of the numpy-dequantized weights.
2. The tokenizer from GGUF metadata: `tdeploy generate x.gguf --prompt T` tokenizes T to the ids HF tokenizers
   gives with the fixture's tokenizer.json.
3. SmolLM2-135M-Instruct Q4_1 (scripts/setup-smollm2.sh; skipped with a note when it is not installed): logits on a
   fixed prompt through tdeploy's runtime within 1e-4 of a numpy forward pass over the numpy-dequantized GGUF, and
   the ChatML question about France answered with Paris."""
import json
import os
import shutil
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
from gguf_fixture import unpermute, write_gguf  # noqa: E402
from decoder_common import check_fixture, ort_runner  # noqa: E402
from export_common import BIN, FIXTURES, TMP, Tally, run_export  # noqa: E402

t = Tally()
work = os.path.join(TMP, "gguf_models")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)

# 1. fixtures as GGUF
for name, arch in [("llama-gen", "llama"), ("qwen2-lm", "qwen2")]:
    fx = os.path.join(FIXTURES, "hf", name)
    g32 = os.path.join(work, f"{name}.f32.gguf")
    write_gguf(fx, g32, arch)
    onnx32 = os.path.join(work, f"{name}.f32.onnx")
    r = run_export(g32, onnx32)
    if t.check(r.returncode == 0, f"{name}: export from GGUF (F32)", r.stderr.strip()[-300:]):
        check_fixture(t, f"{name} from GGUF F32", ort_runner(onnx32), fx)
    for qt in (Q.Q8_0, Q.Q4_0, Q.Q4_1):
        gq = os.path.join(work, f"{name}.{qt.name}.gguf")
        deq = write_gguf(fx, gq, arch, qt)
        # the reference: an HF directory holding the numpy-dequantized (and un-permuted) weights
        refdir = os.path.join(work, f"{name}.{qt.name}.hf")
        shutil.copytree(fx, refdir)
        save_file(deq, os.path.join(refdir, "model.safetensors"), metadata={"format": "pt"})
        oq, oref = os.path.join(work, f"{name}.{qt.name}.onnx"), os.path.join(work, f"{name}.{qt.name}.ref.onnx")
        # --precision fp32: the dequantized path (test_gguf_quant_models checks the blocks kept quantized)
        r1, r2 = run_export(gq, oq, "--precision", "fp32"), run_export(refdir, oref, "--task", "text-generation")
        if not t.check(r1.returncode == 0 and r2.returncode == 0, f"{name}: export from GGUF ({qt.name})",
                       (r1.stderr + r2.stderr).strip()[-300:]):
            continue
        ids = np.array([[5, 77, 300, 12, 901, 44, 7, 256]], np.int64)
        mask = np.ones_like(ids)
        pos = np.arange(ids.shape[1])[None]
        a, _ = ort_runner(oq)(ids, mask, pos, None)
        b, _ = ort_runner(oref)(ids, mask, pos, None)
        err = float(np.abs(a - b).max())
        t.check(err <= 1e-4, f"{name} {qt.name}: GGUF logits == numpy-dequantized reference", f"max abs {err:.2e}")

# bad GGUF models: an architecture other than llama/qwen2, a tensor type that is not dequantized
def refused_gguf(label, arch, bad_type, needle):
    p = os.path.join(work, "bad-model.gguf")
    w = gguf.GGUFWriter(p, arch)
    w.add_block_count(1)
    w.add_embedding_length(256)
    w.add_feed_forward_length(256)
    w.add_head_count(4)
    w.add_context_length(64)
    blocks = np.random.default_rng(1).integers(0, 256, (32, 176), dtype=np.uint8)  # 32 x 256 values of Q5_K
    # the first tensor the exporter reads; as Q5_K (a known type that is not dequantized) when bad_type
    w.add_tensor("token_embd.weight", blocks if bad_type else np.zeros((32, 256), np.float32),
                 raw_dtype=Q.Q5_K if bad_type else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = run_export(p, os.path.join(work, "bad.onnx"))
    t.check(r.returncode == 1 and needle in r.stderr, f"refused: GGUF {label}", r.stderr.strip()[-300:])


refused_gguf("architecture falcon", "falcon", False, 'architecture "falcon" is not supported')
refused_gguf("with a Q5_K tensor", "llama", True, "token_embd.weight' is Q5_K")

# 2. tokenizer from the GGUF metadata against HF tokenizers on the fixture's tokenizer.json
from tokenizers import Tokenizer  # noqa: E402

hf_tok = Tokenizer.from_file(os.path.join(FIXTURES, "hf", "llama-gen", "tokenizer.json"))
texts = ["Hello world", "The quick brown fox jumps over the lazy dog.", "tabs\tand\nnewlines\n\n",
         "it's they're we'll I'd", "ÀÉÎ õü ß 日本語 🙂", "x=1+2*3; y = [a, b]"]
g32 = os.path.join(work, "llama-gen.f32.gguf")
bad = []
for text in texts + ["  two  spaces, digits 12345 and ümlauts!", "<|endoftext|>special in text"]:
    r = subprocess.run([BIN, "generate", g32, "--prompt", text, "--max-new-tokens", "1", "--json", "--threads", "1"],
                       capture_output=True, text=True, timeout=120)
    got = json.loads(r.stdout)["results"][0]["prompt_ids"] if r.returncode == 0 else r.stderr[-200:]
    want = hf_tok.encode(text).ids
    if got != want:
        bad.append((text, got, want))
t.check(not bad, f"GGUF tokenizer ids == HF tokenizers on {len(texts) + 2} texts", str(bad[:2]))


# 3. SmolLM2
def smollm_path():
    r = subprocess.run([os.path.join(os.environ.get("TD_SRC", os.path.join(HERE, "..", "..")), "scripts",
                                     "setup-smollm2.sh")], capture_output=True, text=True, timeout=900)
    return r.stdout.strip() if r.returncode == 0 and os.path.isfile(r.stdout.strip()) else None


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def numpy_llama(path, ids):
    """Plain numpy forward pass of a llama GGUF (float64 accumulation), dequantized with gguf_reference."""
    r = gguf.GGUFReader(path)
    f = {k: v for k, v in r.fields.items()}
    val = lambda k: f[k].parts[f[k].data[0]][0]
    L, E, H, KV = (int(val(f"llama.{k}")) for k in ("block_count", "embedding_length", "attention.head_count",
                                                      "attention.head_count_kv"))
    eps, theta = float(val("llama.attention.layer_norm_rms_epsilon")), float(val("llama.rope.freq_base"))
    D = E // H
    T = {t_.name: t_ for t_ in r.tensors}

    def W(name, permuted_heads=0):
        t_ = T[name]
        x = ref.dequantize(t_.data.tobytes(), t_.tensor_type.name).astype(np.float64)
        x = x.reshape([int(d) for d in reversed(t_.shape)]) if len(t_.shape) > 1 else x
        return unpermute(x, permuted_heads) if permuted_heads else x

    emb = W("token_embd.weight")
    h = emb[ids]
    S = len(ids)
    inv = 1.0 / theta ** (np.arange(0, D, 2) / D)
    ang = np.arange(S)[:, None] * inv[None]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = lambda x: np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
    causal = np.triu(np.full((S, S), -np.inf), 1)
    for i in range(L):
        x = rms(h, W(f"blk.{i}.attn_norm.weight"), eps)
        q = (x @ W(f"blk.{i}.attn_q.weight", H).T).reshape(S, H, D).transpose(1, 0, 2)
        k = (x @ W(f"blk.{i}.attn_k.weight", KV).T).reshape(S, KV, D).transpose(1, 0, 2)
        v = (x @ W(f"blk.{i}.attn_v.weight").T).reshape(S, KV, D).transpose(1, 0, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = np.repeat(k, H // KV, 0), np.repeat(v, H // KV, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(D) + causal
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        a = (p @ v).transpose(1, 0, 2).reshape(S, E)
        h = h + a @ W(f"blk.{i}.attn_output.weight").T
        x = rms(h, W(f"blk.{i}.ffn_norm.weight"), eps)
        g, u = x @ W(f"blk.{i}.ffn_gate.weight").T, x @ W(f"blk.{i}.ffn_up.weight").T
        h = h + (g / (1 + np.exp(-g)) * u) @ W(f"blk.{i}.ffn_down.weight").T
    h = rms(h, W("output_norm.weight"), eps)
    head = W("output.weight") if "output.weight" in T else emb
    return h @ head.T


smol = smollm_path()
if smol is None:
    print("NOTE: SmolLM2 GGUF not installed (scripts/setup-smollm2.sh failed or offline): its checks are skipped")
else:
    ids = np.array([[504, 3575, 282, 4649, 314]], np.int64)  # "The capital of France is"
    onnx_smol = os.path.join(work, "smollm2.onnx")
    r = run_export(smol, onnx_smol, "--precision", "fp32")
    if t.check(r.returncode == 0, "SmolLM2: export from GGUF (--precision fp32: dequantized)", r.stderr.strip()[-300:]):
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(5)[None]}
        import onnxruntime as ort
        s = ort.InferenceSession(onnx_smol, providers=["CPUExecutionProvider"])
        for i in s.get_inputs():
            if i.name.startswith("past_key_values"):
                feeds[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
        inp = os.path.join(work, "smol_in.safetensors")
        save_file({k: np.ascontiguousarray(v.astype(np.float32 if v.dtype == np.float32 else np.int64))
                   for k, v in feeds.items()}, inp)
        out = os.path.join(work, "smol_out.safetensors")
        rr = subprocess.run([BIN, "infer", onnx_smol, "--inputs", inp, "-o", out, "-q"], capture_output=True,
                            text=True, timeout=600)
        want = numpy_llama(smol, ids[0])
        if t.check(rr.returncode == 0, "SmolLM2: tdeploy runtime runs the export", rr.stderr[-200:]):
            got = load_file(out)["logits"][0]
            err = float(np.abs(got - want).max())
            t.check(err <= 1e-4, "SmolLM2: runtime logits == numpy reference over the dequantized GGUF",
                    f"max abs {err:.2e}")
        ort_logits = s.run(["logits"], feeds)[0][0]
        err = float(np.abs(ort_logits - want).max())
        t.check(err <= 1e-4, "SmolLM2: ONNX Runtime logits == numpy reference", f"max abs {err:.2e}")
        # the default export keeps the Q4_1 / Q8_0 blocks (MatMulNBits with fp32 activations): the dequantized
        # model's logits to float rounding
        onnx_q = os.path.join(work, "smollm2-q.onnx")
        r = run_export(smol, onnx_q)
        outq = os.path.join(work, "smol_out_q.safetensors")
        rq = subprocess.run([BIN, "infer", onnx_q, "--inputs", inp, "-o", outq, "-q"], capture_output=True,
                            text=True, timeout=600) if r.returncode == 0 else r
        if t.check(rq.returncode == 0, "SmolLM2: export keeping the blocks, run by tdeploy", rq.stderr[-200:]):
            got = load_file(outq)["logits"][0]
            err, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
            t.check(err <= 1e-4 * max(1.0, scale) and got[-1].argmax() == want[-1].argmax(), "SmolLM2 blocks "
                    "kept: logits == numpy reference over the dequantized GGUF (float rounding), same next token",
                    f"max abs {err:.2e}, logits up to {scale:.1f}")
    # the model's own chat template (from the GGUF, with its default system message) through --chat
    chat = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    # the default precision (blocks kept, fp32 activations); with --precision int8 the greedy answer is
    # "L'\u00c9toile, la ...", the very kind of text llama.cpp's llama-simple (0.3.36, same file) generates here
    r = subprocess.run([BIN, "generate", "tdeploy/SmolLM2-135M-Instruct-GGUF", "--chat",
                        "What is the capital of France?", "--max-new-tokens", "24", "--json"],
                       capture_output=True, text=True, timeout=600)
    res = json.loads(r.stdout)["results"][0] if r.returncode == 0 else {}
    t.check("Paris" in res.get("text", "") and res.get("finish") == "eos", "SmolLM2 --chat: answers with Paris "
            "and stops at <|im_end|>", r.stderr[-200:] + json.dumps(res)[:200])
    # the prompt --chat built is the ChatML text jinja2 renders from the same template
    import jinja2
    tmpl = gguf.GGUFReader(smol).fields["tokenizer.chat_template"]
    tmpl = bytes(tmpl.parts[tmpl.data[0]]).decode()
    want = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(tmpl).render(
        messages=[{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
        bos_token="<|im_start|>", eos_token="<|im_end|>")
    r2 = subprocess.run([BIN, "generate", "tdeploy/SmolLM2-135M-Instruct-GGUF", "--prompt-ids", ",".join(
        map(str, res.get("prompt_ids", [0]))), "--max-new-tokens", "1", "--json"], capture_output=True, text=True,
        timeout=600)
    r3 = subprocess.run([BIN, "generate", "tdeploy/SmolLM2-135M-Instruct-GGUF", "--prompt", want,
                         "--max-new-tokens", "1", "--json"], capture_output=True, text=True, timeout=600)
    ids_chat = res.get("prompt_ids")
    ids_text = json.loads(r3.stdout)["results"][0]["prompt_ids"] if r3.returncode == 0 else None
    t.check(want == chat and ids_chat == ids_text and r2.returncode == 0, "SmolLM2 --chat prompt == jinja2's "
            "rendering of the GGUF template, tokenized alike", f"{ids_chat} vs {ids_text}")
t.finish()
