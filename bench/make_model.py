#!/usr/bin/env python3
"""Write a random-weight Hugging Face BERT directory of a real model's size, for
benchmarks (numpy + safetensors + tokenizers only, no torch).

    python3 bench/make_model.py --size bert-base --out DIR [--task seqcls] [--seed 0]

Sizes: minilm-l6-h384 (6 layers, hidden 384, 12 heads, FFN 1536), bert-base
(12/768/12/3072), bert-large (24/1024/16/4096); vocab 30522, 512 positions, 2
token types. Writes config.json (as transformers saves a BertModel /
BertForSequenceClassification), model.safetensors with the HF tensor names
(Linear weights are (out, in)), and a WordPiece tokenizer.json +
tokenizer_config.json + vocab.txt over a generated vocabulary of exactly
vocab_size entries (bert-base-uncased special-token layout: [PAD]=0, [UNK]=100,
[CLS]=101, [SEP]=102, [MASK]=103). Weights ~ N(0, 0.02), LayerNorm gamma 1 /
beta 0, biases 0, fixed seed: the same arguments always give the same files."""
import argparse
import itertools
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

SIZES = {
    "minilm-l6-h384": dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536),
    "bert-base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "bert-large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096),
}
VOCAB_SIZE = 30522
MAX_POS = 512
TYPE_VOCAB = 2
LABELS = ["negative", "neutral", "positive"]


def config_for(size, task):
    s = SIZES[size]
    cfg = {
        "add_cross_attention": False,
        "architectures": ["BertForSequenceClassification" if task == "seqcls" else "BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": None,
        "classifier_dropout": None,
        "dtype": "float32",
        "eos_token_id": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": s["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": s["intermediate_size"],
        "is_decoder": False,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": MAX_POS,
        "model_type": "bert",
        "num_attention_heads": s["num_attention_heads"],
        "num_hidden_layers": s["num_hidden_layers"],
        "pad_token_id": 0,
        "tie_word_embeddings": True,
        "transformers_version": "5.17.0",
        "type_vocab_size": TYPE_VOCAB,
        "use_cache": True,
        "vocab_size": VOCAB_SIZE,
    }
    if task == "seqcls":
        cfg["id2label"] = {str(i): l for i, l in enumerate(LABELS)}
        cfg["label2id"] = {l: i for i, l in enumerate(LABELS)}
    return dict(sorted(cfg.items()))


def weights_for(size, task, seed):
    s = SIZES[size]
    h, f = s["hidden_size"], s["intermediate_size"]
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)).astype(np.float32)

    def zeros(*shape):
        return np.zeros(shape, dtype=np.float32)

    def ones(*shape):
        return np.ones(shape, dtype=np.float32)

    t = {}
    t["embeddings.word_embeddings.weight"] = normal(VOCAB_SIZE, h)
    t["embeddings.word_embeddings.weight"][0] = 0.0  # padding_idx row, as nn.Embedding initializes it
    t["embeddings.position_embeddings.weight"] = normal(MAX_POS, h)
    t["embeddings.token_type_embeddings.weight"] = normal(TYPE_VOCAB, h)
    t["embeddings.LayerNorm.weight"] = ones(h)
    t["embeddings.LayerNorm.bias"] = zeros(h)
    for i in range(s["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            t[p + f"attention.self.{name}.weight"] = normal(h, h)
            t[p + f"attention.self.{name}.bias"] = zeros(h)
        t[p + "attention.output.dense.weight"] = normal(h, h)
        t[p + "attention.output.dense.bias"] = zeros(h)
        t[p + "attention.output.LayerNorm.weight"] = ones(h)
        t[p + "attention.output.LayerNorm.bias"] = zeros(h)
        t[p + "intermediate.dense.weight"] = normal(f, h)
        t[p + "intermediate.dense.bias"] = zeros(f)
        t[p + "output.dense.weight"] = normal(h, f)
        t[p + "output.dense.bias"] = zeros(h)
        t[p + "output.LayerNorm.weight"] = ones(h)
        t[p + "output.LayerNorm.bias"] = zeros(h)
    t["pooler.dense.weight"] = normal(h, h)
    t["pooler.dense.bias"] = zeros(h)
    if task == "seqcls":
        # BertForSequenceClassification prefixes the encoder with "bert."
        t = {"bert." + k: v for k, v in t.items()}
        t["classifier.weight"] = normal(len(LABELS), h)
        t["classifier.bias"] = zeros(len(LABELS))
    return t


def make_vocab(n):
    """bert-base-uncased-like layout, then characters, ##characters and generated
    lower-case words / ##pieces until exactly n entries."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab += chars + ["##" + c for c in chars]
    seen = set(vocab)
    onsets = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr", "pl"]
    nuclei = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
    codas = ["", "n", "r", "s", "t", "l", "nd", "ng"]
    syllables = [o + v + c for o in onsets for v in nuclei for c in codas]
    for length in itertools.count(1):
        for combo in itertools.product(syllables, repeat=length):
            word = "".join(combo)
            for tok in (word, "##" + word):
                if len(vocab) >= n:
                    return vocab
                if tok not in seen:
                    seen.add(tok)
                    vocab.append(tok)


def write_tokenizer(out, vocab):
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")])
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    cfg = {
        "backend": "tokenizers",
        "cls_token": "[CLS]",
        "do_lower_case": True,
        "mask_token": "[MASK]",
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        "model_max_length": MAX_POS,
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "tokenizer_class": "BertTokenizer",
        "unk_token": "[UNK]",
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", required=True, choices=sorted(SIZES))
    ap.add_argument("--out", required=True, help="directory to create (or overwrite files in)")
    ap.add_argument("--task", choices=["base", "seqcls"], default="base")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config_for(args.size, args.task), f, indent=2)
        f.write("\n")
    tensors = weights_for(args.size, args.task, args.seed)
    tmp = os.path.join(args.out, "model.safetensors.tmp")
    save_file(tensors, tmp, metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(args.out, "model.safetensors"))
    vocab = make_vocab(VOCAB_SIZE)
    assert len(vocab) == VOCAB_SIZE and len(set(vocab)) == VOCAB_SIZE
    write_tokenizer(args.out, vocab)
    n = sum(v.size for v in tensors.values())
    print(f"{args.out}: {args.size} ({args.task}), {len(tensors)} tensors, {n / 1e6:.1f}M parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
