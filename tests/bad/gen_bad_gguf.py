#!/usr/bin/env python3
"""Generates a corpus of hostile or unsupported GGUF files. Each case is (name, path, command, keyword): the
tdeploy command that must refuse the file (`inspect` for a broken file, `export` for a file that parses but is no
model tdeploy can build, `generate` for a model whose tokenizer, chat template or context cannot serve the
request) and a keyword its error message must contain. Used by test_bad_gguf.py; run directly to write the
corpus:  python3 gen_bad_gguf.py OUTDIR"""
import os
import struct
import sys

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gguf"))
import gguf_reference as ref  # noqa: E402

E, F, H, V = 64, 128, 4, 300  # a valid tiny llama: 1 layer, head_dim 16


def tokens():
    """A byte-level vocabulary: the 256 byte symbols of GPT-2's ByteLevel, then a few merges' results."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in cs]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
    vocab += ["".join(m) for m in merges]
    return vocab + [f"<extra{i}>" for i in range(V - len(vocab))], [" ".join(m) for m in merges]


def write_model(path, arch="llama", meta=None, skip=(), shapes=None, types=None, extra=None, tok=True,
                tok_meta=None, vocab=None):
    """A tiny llama GGUF by gguf-py; meta overrides/removes (None) llama.* keys, skip drops tensors, shapes and
    types override a tensor's shape / ggml type, extra adds tensors, tok_meta overrides tokenizer keys."""
    w = gguf.GGUFWriter(path, arch)
    keys = {"block_count": 1, "context_length": 64, "embedding_length": E, "feed_forward_length": F,
            "attention.head_count": H, "attention.head_count_kv": H, "attention.layer_norm_rms_epsilon": 1e-5}
    keys.update(meta or {})
    for k, v in keys.items():
        if v is None:
            continue
        if isinstance(v, float):
            w.add_float32(f"{arch}.{k}", v)
        elif isinstance(v, str):
            w.add_string(f"{arch}.{k}", v)
        else:
            w.add_uint32(f"{arch}.{k}", v)
    if tok:
        toks, merges = vocab or tokens()
        tm = {"model": "gpt2", "pre": "smollm", "bos": 1, "eos": 2,
              "template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"}
        tm.update(tok_meta or {})
        w.add_tokenizer_model(tm["model"])
        w.add_tokenizer_pre(tm["pre"])
        w.add_token_list(toks)
        w.add_token_types(tm.get("types", [3 if i < 3 else 1 for i in range(len(toks))]))
        w.add_token_merges(merges)
        if tm["bos"] is not None:
            w.add_bos_token_id(tm["bos"])
        w.add_eos_token_id(tm["eos"])
        if tm.get("add_bos") is not None:
            w.add_add_bos_token(tm["add_bos"])
        w.add_chat_template(tm["template"])
    rng = np.random.default_rng(0)
    base = {"token_embd.weight": (V, E), "output_norm.weight": (E,), "blk.0.attn_norm.weight": (E,),
            "blk.0.ffn_norm.weight": (E,), "blk.0.attn_q.weight": (E, E), "blk.0.attn_k.weight": (E, E),
            "blk.0.attn_v.weight": (E, E), "blk.0.attn_output.weight": (E, E), "blk.0.ffn_gate.weight": (F, E),
            "blk.0.ffn_up.weight": (F, E), "blk.0.ffn_down.weight": (E, F)}
    base.update(shapes or {})
    base.update(extra or {})
    for name, shape in base.items():
        if name in skip:
            continue
        qt = (types or {}).get(name, Q.F32)
        x = (0.05 * rng.standard_normal(shape)).astype(np.float32)
        w.add_tensor(name, gguf.quants.quantize(x, qt) if qt != Q.F32 else x, raw_dtype=qt if qt != Q.F32 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def build(out):
    cases = []

    def raw(name, blob, keyword):
        p = os.path.join(out, name + ".gguf")
        with open(p, "wb") as f:
            f.write(blob)
        cases.append((name, p, "inspect", keyword))

    def model(name, command, keyword, **kw):
        p = os.path.join(out, name + ".gguf")
        write_model(p, **kw)
        cases.append((name, p, command, keyword))

    # ---- broken files: `tdeploy inspect` refuses them (the reader) ----
    good_kvs = [ref.kv_str("general.architecture", "llama"), ref.kv_u32("general.alignment", 32)]
    data = ref.random_blocks("Q8_0", 2, np.random.default_rng(1)).tobytes()
    info = [ref.tensor_info("w", [64], ref.GGML["Q8_0"], 0)]
    good = ref.build(good_kvs, info, data)
    raw("truncated_header", good[:20], "truncated")
    raw("truncated_data", good[:-1], "outside the file")
    raw("wrong_magic", b"GGML" + good[4:], "not a GGUF file")
    raw("version_1", ref.build(good_kvs, info, data, version=1), "version 1")
    raw("big_endian", ref.build(good_kvs, info, data, version=0x03000000), "big-endian")
    raw("tensor_count_2e60", ref.build(good_kvs, info, data, n_tensors=1 << 60), "more than")
    raw("string_past_end", ref.build([ref.kv("k", 8, struct.pack("<Q", 1 << 62))], [], b""), "truncated")
    raw("array_of_2e61", ref.build([ref.kv("k", 9, struct.pack("<IQ", 10, 1 << 61))], [], b""), "array")
    raw("duplicate_key", ref.build(good_kvs + [ref.kv_u32("general.alignment", 32)], info, data), "twice")
    raw("duplicate_tensor", ref.build(good_kvs, [ref.tensor_info("a", [32], 8, 0), ref.tensor_info("a", [32], 8, 64)],
                                      data + b"\0" * 64), "twice")
    raw("overlap", ref.build(good_kvs, [ref.tensor_info("a", [64], 8, 0), ref.tensor_info("b", [32], 8, 32)], data),
        "overlap")
    raw("misaligned", ref.build(good_kvs, [ref.tensor_info("w", [32], 8, 4)], data), "alignment")
    raw("offset_2e64", ref.build(good_kvs, [ref.tensor_info("w", [64], 8, (1 << 64) - 32)], data), "outside the file")
    raw("dims_overflow", ref.build(good_kvs, [ref.tensor_info("w", [1 << 32, 1 << 32], 0, 0)], data), "63 bits")
    raw("unknown_ggml_type", ref.build(good_kvs, [ref.tensor_info("w", [64], 77, 0)], data), "77")
    raw("partial_block", ref.build(good_kvs, [ref.tensor_info("w", [48], 8, 0)], data), "block size")
    raw("alignment_48", ref.build([ref.kv_u32("general.alignment", 48)], info, data), "alignment")
    raw("nul_in_name", ref.build(good_kvs, [ref.tensor_info("a\0b", [64], 8, 0)], data), "NUL")

    # ---- files that parse but are no model tdeploy builds: `tdeploy export` refuses them ----
    model("arch_falcon", "export", "falcon", arch="falcon")
    model("no_block_count", "export", "block_count", meta={"block_count": None})
    model("heads_do_not_divide", "export", "do not divide", meta={"attention.head_count": 3,
                                                                  "attention.head_count_kv": 3})
    model("kv_heads_above_heads", "export", "head_count_kv", meta={"attention.head_count_kv": 8})
    model("block_count_absurd", "export", "block_count", meta={"block_count": 1 << 20})
    model("missing_tensor", "export", "blk.0.ffn_up.weight", skip=("blk.0.ffn_up.weight",))
    model("wrong_shape", "export", "shape", shapes={"blk.0.attn_v.weight": (E, 2 * E)})
    model("q5_0_tensor", "export", "is Q5_0", types={"blk.0.ffn_gate.weight": Q.Q5_0})
    model("rope_freqs", "export", "rope_freqs", extra={"rope_freqs.weight": (8,)})
    model("rope_scaling_yarn", "export", "yarn", meta={"rope.scaling.type": "yarn"})

    # ---- models whose tokenizer, template or context cannot serve a request: `tdeploy generate` refuses ----
    model("tokenizer_spm", "generate", "gpt2", tok_meta={"model": "llama"})
    model("tokenizer_pre_unknown", "generate", "tokenizer.ggml.pre", tok_meta={"pre": "mystery"})
    toks, merges = tokens()
    model("tokenizer_duplicate", "generate", "twice", vocab=(toks[:-1] + [toks[10]], merges))
    model("tokenizer_add_bos_no_id", "generate", "bos_token_id", tok_meta={"bos": None, "add_bos": True})
    model("tokenizer_types_short", "generate", "token_type", tok_meta={"types": [1, 1]})
    model("tokenizer_merge_unknown", "generate", "merge", vocab=(toks, merges + ["q z"]))
    model("no_tokenizer", "generate", "tokenizer", tok=False)
    model("template_nested", "generate-chat", "nested",
          tok_meta={"template": "{% if true %}" * 50000 + "x" + "{% endif %}" * 50000})
    model("template_raises", "generate-chat", "roles must alternate",
          tok_meta={"template": "{{ raise_exception('roles must alternate') }}"})
    model("template_overflow", "generate-chat", "integer overflow",
          tok_meta={"template": "{{ (-9223372036854775807 - 1) % -1 }}"})
    model("prompt_past_context", "generate-long", "context", meta={"context_length": 16})
    return cases


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: gen_bad_gguf.py OUTDIR")
    os.makedirs(sys.argv[1], exist_ok=True)
    for c in build(sys.argv[1]):
        print(*c)
