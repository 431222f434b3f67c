"""The decoder fixtures (llama-gen: arch llama, qwen2-lm: arch qwen2) written as GGUF files by gguf-py, as
llama.cpp's convert_hf_to_gguf lays them out (Q/K rows of llama permuted for its rope, the tokenizer in the
metadata), with float32 or quantized weights. Used by tests/gguf and tests/triton."""
import json
import os

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file

import gguf_reference as ref

NAMES = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
         "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.weight": "attn_k.weight",
         "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.weight": "attn_v.weight",
         "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.weight": "attn_output.weight",
         "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
         "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}


def permute(w, n_head):
    """llama.cpp convert_hf_to_gguf's LlamaModel.permute (rows of each head interleaved for its rope)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    return f"blk.{parts[2]}." + NAMES[".".join(parts[3:])]


def write_gguf(fixture, out, arch, qtype=Q.F32):
    cfg = json.load(open(os.path.join(fixture, "config.json")))
    tok = json.load(open(os.path.join(fixture, "tokenizer.json")))
    weights = load_file(os.path.join(fixture, "model.safetensors"))
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    w = gguf.GGUFWriter(out, arch)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg.get("rope_parameters", {}).get("rope_theta", 10000.0))
    if "head_dim" in cfg:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv_: kv_[1])
    specials = {a["id"] for a in tok["added_tokens"] if a["special"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list([v for v, _ in vocab])
    w.add_token_types([3 if i in specials else 1 for _, i in vocab])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_bos_token_id(cfg["bos_token_id"])
    dequantized = {}
    for name, x in weights.items():
        x = x.astype(np.float32)
        if arch == "llama" and name.endswith("q_proj.weight"):
            x = permute(x, heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            x = permute(x, kv)
        qt = qtype if x.ndim == 2 and x.shape[1] % 32 == 0 else Q.F32
        data = gguf.quants.quantize(x, qt) if qt != Q.F32 else x
        w.add_tensor(gguf_name(name), data, raw_dtype=qt)
        back = ref.dequantize(data.tobytes(), qt.name).reshape(x.shape)  # the numpy reference, not gguf-py's
        if arch == "llama" and name.endswith("q_proj.weight"):
            back = unpermute(back, heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            back = unpermute(back, kv)
        dequantized[name] = back
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dequantized
