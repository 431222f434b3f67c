#!/usr/bin/env python3
"""Generates a corpus of hostile safetensors files, config.json files and model
directories. Each case is (name, path to give `tdeploy inspect`, keyword the error
message must contain). Used by test_bad_hf.py; run directly to write the corpus:
    python3 gen_bad_hf.py OUTDIR"""
import json
import os
import struct
import sys

GOOD_CONFIG = {
    "model_type": "bert", "architectures": ["BertModel"], "vocab_size": 100, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
    "max_position_embeddings": 64, "type_vocab_size": 2,
}


def st_bytes(header, data=b"", header_len=None, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(h) if header_len is None else header_len
    return struct.pack("<Q", n) + h + data


def build(out):
    cases = []

    def st(name, blob, keyword):
        p = os.path.join(out, name + ".safetensors")
        with open(p, "wb") as f:
            f.write(blob)
        cases.append((name, p, keyword))

    def model_dir(name, config, keyword, config_raw=None, files=None):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "wb") as f:
            f.write(config_raw if config_raw is not None else json.dumps(config).encode())
        for fname, blob in (files or {"model.safetensors": st_bytes({"w": {"dtype": "F32", "shape": [1],
                                                                            "data_offsets": [0, 4]}}, b"\0" * 4)}).items():
            with open(os.path.join(d, fname), "wb") as f:
                f.write(blob)
        cases.append((name, d, keyword))

    t1 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    # --- safetensors ---
    st("st_empty", b"", "header")
    st("st_truncated_len", b"\x10\x00\x00", "header")
    st("st_huge_header_len", st_bytes({}, header_len=2**63), "header")
    st("st_header_over_100mb", st_bytes({}, header_len=200 * 1024 * 1024), "header")
    st("st_header_past_eof", st_bytes({"a": t1}, header_len=4096), "header")
    st("st_invalid_utf8", st_bytes(None, b"\0" * 8, raw_header=b'{"a\xff\xfe": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'), "UTF-8")
    st("st_not_json", st_bytes(None, raw_header=b"{not json"), "JSON")
    st("st_json_array", st_bytes(None, raw_header=b"[1, 2, 3]"), "object")
    st("st_deep_nesting", st_bytes(None, raw_header=b"{\"a\": " + b"[" * 100000 + b"]" * 100000 + b"}"), "JSON")
    st("st_missing_dtype", st_bytes({"a": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "dtype")
    st("st_bad_dtype", st_bytes({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "dtype")
    st("st_negative_dim", st_bytes({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8), "shape")
    st("st_float_dim", st_bytes({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}}, b"\0" * 8), "shape")
    st("st_shape_overflow", st_bytes({"a": {"dtype": "F32", "shape": [2**40, 2**40, 2**20], "data_offsets": [0, 8]}}, b"\0" * 8), "overflow")
    st("st_size_mismatch", st_bytes({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "a")
    st("st_overlap", st_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12), "overlap")
    st("st_gap", st_bytes({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                           "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, b"\0" * 12), "gap")
    st("st_trailing_bytes", st_bytes({"a": t1}, b"\0" * 16), "trailing")
    st("st_offsets_past_eof", st_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8), "a")
    st("st_begin_after_end", st_bytes({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, b"\0" * 8), "a")
    st("st_offsets_not_list", st_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": "0-8"}}, b"\0" * 8), "data_offsets")
    st("st_duplicate_name", st_bytes(None, b"\0" * 16, raw_header=b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}'), "a")
    st("st_metadata_not_string", st_bytes({"__metadata__": {"format": 3}, "a": t1}, b"\0" * 8), "metadata")
    st("st_tensor_not_object", st_bytes({"a": [1, 2]}, b"\0" * 8), "a")
    # --- config.json / model directories ---
    model_dir("cfg_deep_nesting", None, "JSON", config_raw=b"[" * 100000 + b"]" * 100000)
    model_dir("cfg_invalid_utf8", None, "UTF-8", config_raw=b'{"model_type": "be\xffrt"}')
    model_dir("cfg_truncated", None, "JSON", config_raw=b'{"model_type": "bert", "hidden_size": 3')
    model_dir("cfg_not_object", None, "object", config_raw=b'["bert"]')
    model_dir("cfg_unknown_model_type", dict(GOOD_CONFIG, model_type="wav2vec2"), "wav2vec2")
    model_dir("cfg_missing_model_type", {k: v for k, v in GOOD_CONFIG.items() if k != "model_type"}, "model_type")
    model_dir("cfg_hidden_size_string", dict(GOOD_CONFIG, hidden_size="32"), "hidden_size")
    model_dir("cfg_negative_layers", dict(GOOD_CONFIG, num_hidden_layers=-1), "num_hidden_layers")
    model_dir("cfg_heads_not_divisor", dict(GOOD_CONFIG, num_attention_heads=5), "num_attention_heads")
    model_dir("cfg_absurd_vocab", dict(GOOD_CONFIG, vocab_size=10**15), "vocab_size")
    model_dir("dir_pickle_only", GOOD_CONFIG, "safetensors", files={"pytorch_model.bin": b"PK\x03\x04 not really"})
    model_dir("dir_bad_weights", GOOD_CONFIG, "header", files={"model.safetensors": b"\x01\x02"})
    model_dir("dir_bad_index", GOOD_CONFIG, "index", files={
        "model.safetensors.index.json": json.dumps({"weight_map": {"w": "../../etc/passwd"}}).encode()})
    return cases


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "bad_hf_corpus"
    os.makedirs(out, exist_ok=True)
    for name, path, kw in build(out):
        print(name, path, kw)
