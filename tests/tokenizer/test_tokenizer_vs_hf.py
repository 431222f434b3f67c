#!/usr/bin/env python3
"""tdeploy's tokenizer against the HF `tokenizers` library (the reference).

Builds a set of tokenizers with `tokenizers` (trained on a corpus generated here,
or assembled from vocab dicts), saves each as tokenizer.json under TD_TMP, encodes
a few hundred varied texts with both, and requires identical ids, type ids,
special-token masks and offsets (our byte offsets converted to HF's char offsets),
plus identical decode output (skip_special_tokens true and false).
Prints per-tokenizer pass/fail counts; exits non-zero on any mismatch.
"""
import base64
import json
import os
import random
import struct
import subprocess
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
# the JSON-lines driver is a test tool beside the binary, not a tdeploy command
TOK_TOOL = os.environ.get("TD_TOK_TOOL", os.path.join(os.path.dirname(TD_BIN), "td_tok_tool"))
TD_TMP = os.environ.get("TD_TMP", "/tmp")
OUT = os.path.join(TD_TMP, "tokenizer_vs_hf")

WORDS = ("the quick brown fox jumps over lazy dog hello world tokenizer transformer model inference "
         "unbelievable antidisestablishmentarianism naïve café résumé façade jalapeño Zürich straße "
         "Ελληνικά русский текст שלום עולם مرحبا بالعالم हिन्दी ภาษาไทย 한국어 日本語 中文 文本 テキスト "
         "don't it's we're they've I'm you'll he'd").split()
PIECES = ["  ", "\t", "\n", "\r\n", "   \t ", "\u00a0", "\u3000", "\u2003", ".", ",", "!", "?", ";", ":", "'", "\"",
          "(", ")", "[", "]", "{", "}", "-", "--", "—", "…", "/", "\\", "@", "#", "$", "%", "&", "*", "+", "=",
          "123", "2026", "3.14159", "٣٤٥", "१२३", "Ⅻ", "²", "½", "①", "ﬁ", "Ａｂｃ", "ｶﾀｶﾅ",
          "e\u0301", "a\u0308\u0301", "\u0301x", "n\u0303", "Å", "Ω", "ǅ", "İstanbul", "ß", "ﬀ",
          "🙂", "🚀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "©®™", "\u200b", "\ufeff", "\x01", "\x7f", "\x1b[0m",
          "\u202e", "\u0085", "\ufffd", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𠀀𠀁", "가각", "각", "URL: https://example.com/a?b=1&c=2",
          "MiXeD CaSe", "UPPER", "lower", "x" * 120, "ab" * 300, "αβγ" * 40]
SPECIAL_BITS = ["<ent>", " <ent> ", "[X]", "foo", "Foo", "FOO bar", "<mask>", " <mask>", "hello", "Hello world",
                "<s>", "</s>", "[CLS]", "<unk>"]


def gen_texts(rng, n, specials=False):
    out = ["", " ", "a", "A.", "  leading and trailing  ", "\t\n", "x" * 1000]
    while len(out) < n:
        k = rng.randint(1, 12)
        parts = []
        for _ in range(k):
            r = rng.random()
            if r < 0.55:
                parts.append(rng.choice(WORDS))
            elif r < 0.9 or not specials:
                parts.append(rng.choice(PIECES))
            else:
                parts.append(rng.choice(SPECIAL_BITS))
            parts.append(rng.choice([" ", " ", " ", "", "  ", "\n"]))
        out.append("".join(parts))
    return out


def corpus(rng):
    return gen_texts(rng, 1500) + [" ".join(WORDS)] * 3


# ---- a tiny darts-clone double-array builder, to make a Precompiled charsmap ----
def build_charsmap(mapping):
    """mapping: {source str: replacement str}. Returns the SentencePiece charsmap blob."""
    table = b""
    values = {}
    for k, v in mapping.items():
        values[k.encode()] = len(table)
        table += v.encode() + b"\0"
    # trie of byte keys
    root = {}
    for key in values:
        node = root
        for b in key:
            node = node.setdefault(b, {})
        node[None] = values[key]
    units = {}
    used = set([0])

    def place(node, idx):
        labels = sorted(k for k in node if k is not None)
        need = ([0] if None in node else []) + labels
        base = 256
        while any((base ^ c) in used for c in need) or base == idx:
            base += 256
        for c in need:
            used.add(base ^ c)
        offset = idx ^ base
        assert offset < (1 << 21)
        units[idx] = units.get(idx, 0) | (offset << 10)
        if None in node:
            units[base] = (1 << 31) | node[None]
        for c in labels:
            child = node[c]
            units[base ^ c] = c | ((1 << 8) if None in child else 0)
        for c in labels:
            place(node[c], base ^ c)

    place(root, 0)
    n = max(units) + 1
    arr = [units.get(i, 0) for i in range(n)]
    trie = b"".join(struct.pack("<I", u) for u in arr)
    return struct.pack("<I", len(trie)) + trie + table


CHARSMAP = {"Ａ": "A", "ｂ": "b", "ｃ": "c", "ﬁ": "fi", "①": "1", "\u00a0": " ", "\u3000": " ", "e\u0301": "é",
            "\u200b": "", "ﬀ": "ff", "Ω": "Ω", "²": "2", "™": "TM", "…": "...", "\t": " ", "ｶ": "カ"}


def train(tok, trainer, rng, lines=None):
    # Unigram training is slow on long unsplit lines: those tokenizers train on fewer lines
    tok.train_from_iterator(corpus(rng)[:lines], trainer)
    return tok


def add_byte_tokens(tok, unigram=False):
    j = json.loads(tok.to_str())
    m = j["model"]
    m["byte_fallback"] = True
    if unigram:
        have = {p for p, _ in m["vocab"]}
        for b in range(256):
            name = "<0x%02X>" % b
            if name not in have:
                m["vocab"].append([name, -20.0])
    else:
        nxt = max(m["vocab"].values()) + 1
        for b in range(256):
            name = "<0x%02X>" % b
            if name not in m["vocab"]:
                m["vocab"][name] = nxt
                nxt += 1
    return Tokenizer.from_str(json.dumps(j))


def bert_template(tok):
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return tok


BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizers(rng):
    T = {}
    # WordPiece + BertNormalizer + BertPreTokenizer
    t = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    train(t, trainers.WordPieceTrainer(show_progress=False, vocab_size=700, special_tokens=BERT_SPECIALS), rng)
    T["wordpiece_bert"] = bert_template(t)
    t.decoder = decoders.WordPiece()

    # cased WordPiece, BertProcessing, Whitespace pre-tokenizer, accents kept
    t = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=30))
    t.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, handle_chinese_chars=False)
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    train(t, trainers.WordPieceTrainer(show_progress=False, vocab_size=500, special_tokens=BERT_SPECIALS), rng)
    t.post_processor = processors.BertProcessing(("[SEP]", t.token_to_id("[SEP]")), ("[CLS]", t.token_to_id("[CLS]")))
    t.decoder = decoders.WordPiece(cleanup=False)
    T["wordpiece_cased"] = t

    # BPE with end-of-word suffix, fused unk, several normalizers/pre-tokenizers
    t = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>", fuse_unk=True))
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                               pre_tokenizers.Digits(individual_digits=True)])
    train(t, trainers.BpeTrainer(show_progress=False, vocab_size=600, special_tokens=["<unk>"], end_of_word_suffix="</w>"), rng)
    t.decoder = decoders.BPEDecoder(suffix="</w>")
    T["bpe_suffix"] = t

    # BPE with continuing-subword prefix
    t = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
    t.normalizer = normalizers.NFKC()
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits()])
    train(t, trainers.BpeTrainer(show_progress=False, vocab_size=600, special_tokens=BERT_SPECIALS, continuing_subword_prefix="##"), rng)
    T["bpe_prefix"] = bert_template(t)
    t.decoder = decoders.WordPiece()

    # byte-level BPE, roberta style
    for name, aps in (("bytelevel_roberta", False), ("bytelevel_prefix", True)):
        t = Tokenizer(models.BPE())
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=aps)
        train(t, trainers.BpeTrainer(show_progress=False, vocab_size=800, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()), rng)
        t.decoder = decoders.ByteLevel()
        if aps:
            t.post_processor = processors.ByteLevel(trim_offsets=True)
        else:
            t.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                            add_prefix_space=False)
        T[name] = t

    # llama-3 style: Split regex + ByteLevel without regex, Sequence post-processor
    t = Tokenizer(models.BPE(ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
                             behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    train(t, trainers.BpeTrainer(show_progress=False, vocab_size=800, special_tokens=["<|begin|>", "<|end|>"],
                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()), rng)
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin|> $A", pair="<|begin|> $A <|begin|> $B:1",
                                      special_tokens=[("<|begin|>", t.token_to_id("<|begin|>"))])])
    T["bytelevel_llama3"] = t

    # Unigram + Metaspace + NFKC (xlm-r style)
    t = Tokenizer(models.Unigram())
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    train(t, trainers.UnigramTrainer(show_progress=False, vocab_size=500, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                     unk_token="<unk>"), rng, 500)
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    t.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                     special_tokens=[("<s>", 0), ("</s>", 2)])
    T["unigram_nfkc"] = t

    # Unigram + Precompiled charsmap, Metaspace prepend "first", no split
    t = Tokenizer(models.Unigram())
    t.normalizer = normalizers.Sequence([normalizers.Precompiled(build_charsmap(CHARSMAP)),
                                         normalizers.Strip(left=True, right=True)])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    train(t, trainers.UnigramTrainer(show_progress=False, vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], unk_token="<unk>"), rng, 500)
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    T["unigram_precompiled"] = t

    # Unigram with byte fallback, Metaspace never + Prepend normalizer
    t = Tokenizer(models.Unigram())
    t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    train(t, trainers.UnigramTrainer(show_progress=False, vocab_size=300, special_tokens=["<unk>", "<s>"], unk_token="<unk>"),
          rng, 150)
    t = add_byte_tokens(t, unigram=True)
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                   decoders.Strip(" ", 1, 0)])
    T["unigram_bytefallback"] = t

    # BPE with byte fallback, llama-2 style
    t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    train(t, trainers.BpeTrainer(show_progress=False, vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"]), rng)
    t = add_byte_tokens(t)
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                   decoders.Strip(" ", 1, 0)])
    t.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                     special_tokens=[("<s>", t.token_to_id("<s>"))])
    T["bpe_bytefallback"] = t

    # Split behaviours and normalizer combinations on a WordPiece model
    behaviours = ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"]
    for i, beh in enumerate(behaviours):
        t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        norms = [normalizers.Strip(), normalizers.Replace(Regex(r"[0-9]+"), "<num>"), normalizers.NFKD(),
                 normalizers.Lowercase()]
        if i % 2:
            norms = [normalizers.NFC(), normalizers.Prepend("_"), normalizers.Replace("e", "ee")]
        t.normalizer = normalizers.Sequence(norms)
        pat = Regex(r"\s+|[,.;:!?]") if i < 3 else " "
        t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(pat, behavior=beh, invert=(i == 4)),
                                                   pre_tokenizers.Punctuation(behavior=behaviours[(i + 1) % 5])])
        train(t, trainers.WordPieceTrainer(show_progress=False, vocab_size=400, special_tokens=BERT_SPECIALS), rng)
        t.decoder = decoders.WordPiece()
        T["split_" + beh] = t

    # Added tokens: lstrip / rstrip / single_word / normalized / special
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    train(t, trainers.WordPieceTrainer(show_progress=False, vocab_size=600, special_tokens=BERT_SPECIALS), rng)
    t.add_tokens([AddedToken("<ent>", lstrip=True, rstrip=True), AddedToken("hello", single_word=True),
                  AddedToken("Foo", normalized=True), AddedToken("[X]", normalized=False)])
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False)])
    T["added_tokens"] = bert_template(t)
    t.decoder = decoders.WordPiece()

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    train(t, trainers.BpeTrainer(show_progress=False, vocab_size=600, special_tokens=["<|endoftext|>"],
                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()), rng)
    t.add_tokens([AddedToken(" world", normalized=False), AddedToken("FOO", single_word=True, rstrip=True)])
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False)])
    t.decoder = decoders.ByteLevel()
    T["added_tokens_bytelevel"] = t
    return T


def hf_configure(tok, opts):
    """Set HF truncation/padding to match our jsonl "options" (None: both off)."""
    tok.no_truncation()
    tok.no_padding()
    if not opts:
        return
    if "max_length" in opts:
        tok.enable_truncation(opts["max_length"], stride=opts.get("stride", 0), strategy=opts.get("strategy", "longest_first"),
                              direction="left" if opts.get("trunc_left") else "right")
    if "pad" in opts:
        pad_id = 0
        tok.enable_padding(direction="left" if opts.get("pad_left") else "right", pad_id=pad_id, pad_type_id=0,
                           pad_token=tok.id_to_token(0), length=opts.get("pad_length") if opts["pad"] == "fixed" else None,
                           pad_to_multiple_of=opts.get("pad_to_multiple_of"))


def run_case(tok, inp, res):
    text, pair, add = inp["text"], inp.get("pair"), inp.get("add_special_tokens", True)
    try:
        hf_configure(tok, inp.get("options"))
        enc = tok.encode(text, pair, add_special_tokens=add)
    except BaseException as ex:  # HF refused (or panicked: pyo3 PanicException): we must refuse too
        return "error" in res, f"HF error {ex!r}, ours {res.get('error', 'ok')!r}"
    if "error" in res:
        return False, f"ours failed: {res['error']}"
    problems = []
    if res["ids"] != enc.ids:
        problems.append(f"ids\n      hf  {enc.ids}\n      ours{res['ids']}\n      hf tokens {enc.tokens}\n"
                        f"      our tokens {res['tokens']}")
    if res["type_ids"] != enc.type_ids:
        problems.append(f"type_ids hf {enc.type_ids} ours {res['type_ids']}")
    if res["word_ids"] != [-1 if w is None else w for w in enc.word_ids]:
        problems.append(f"word_ids hf {enc.word_ids} ours {res['word_ids']}")
    if res["special_tokens_mask"] != enc.special_tokens_mask:
        problems.append(f"special_tokens_mask hf {enc.special_tokens_mask} ours {res['special_tokens_mask']}")
    if res["attention_mask"] != enc.attention_mask:
        problems.append(f"attention_mask hf {enc.attention_mask} ours {res['attention_mask']}")
    if not problems:
        # exact: our char offsets (converted per sequence before post-processing, where HF's Python API does it)
        ours = [(res["char_offsets"][2 * i], res["char_offsets"][2 * i + 1]) for i in range(len(res["ids"]))]
        if ours != list(enc.offsets):
            bad = [(i, enc.tokens[i], enc.offsets[i], ours[i]) for i in range(len(ours)) if ours[i] != enc.offsets[i]]
            problems.append(f"char offsets (index, token, hf, ours) {bad[:6]}")
        # byte offsets: the same positions, except where ByteLevel trimming cut inside a multi-byte char
        # (HF trims char offsets in Python and byte offsets in Rust; ours are Rust's byte semantics)
        seqs = enc.sequence_ids
        for i in range(len(res["ids"])):
            s, e = res["offsets"][2 * i], res["offsets"][2 * i + 1]
            if seqs[i] is None or not enc.attention_mask[i]:
                continue
            src = (pair if seqs[i] == 1 else text).encode()
            if any(0 < x < len(src) and (src[x] & 0xC0) == 0x80 for x in (s, e)):
                continue
            conv = (len(src[:s].decode()), len(src[:e].decode()))
            if conv != tuple(enc.offsets[i]):
                problems.append(f"byte offsets of token {i} {enc.tokens[i]!r}: ours {s, e} -> chars {conv}, "
                                f"hf {enc.offsets[i]}")
                break
    for skip, key in ((False, "decoded"), (True, "decoded_skip")):
        want = tok.decode(enc.ids, skip_special_tokens=skip)
        if res[key] != want:
            problems.append(f"decode(skip={skip}) hf {want!r} ours {res[key]!r}")
    return not problems, "; ".join(problems)


def main():
    rng = random.Random(1234)
    os.makedirs(OUT, exist_ok=True)
    toks = make_tokenizers(rng)
    texts = gen_texts(random.Random(99), 300, specials=True)
    prng = random.Random(7)
    pairs = [(prng.choice(texts), prng.choice(texts)) for _ in range(40)]
    inputs = [{"text": t} for t in texts] + [{"text": a, "pair": b} for a, b in pairs] + \
             [{"text": t, "add_special_tokens": False} for t in texts[:40]] + \
             [{"text": a, "pair": b, "add_special_tokens": False} for a, b in pairs[:10]]
    # truncation (strategies, direction, stride) and padding (side, fixed, multiple) against HF's
    orng = random.Random(5)
    for k in range(60):
        a, b = pairs[k % len(pairs)]
        opts = {"max_length": orng.choice([5, 8, 13, 40]), "strategy": orng.choice(["longest_first", "only_first",
                                                                                  "only_second"]),
                "trunc_left": orng.random() < 0.5, "pad": orng.choice(["longest", "fixed"]), "pad_length": 24,
                "pad_to_multiple_of": orng.choice([None, 8]), "pad_left": orng.random() < 0.5}
        if orng.random() < 0.3:
            opts["stride"] = 2
        if opts["pad_to_multiple_of"] is None:
            del opts["pad_to_multiple_of"]
        single = k % 3 == 0
        if single and opts["strategy"] == "only_second":
            opts["strategy"] = "longest_first"
        inputs.append({"text": a, "options": opts} if single else {"text": a, "pair": b, "options": opts})
    total_fail = 0
    for name, tok in toks.items():
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        inp_path = os.path.join(d, "inputs.jsonl")
        with open(inp_path, "w", encoding="utf-8") as f:
            for x in inputs:
                f.write(json.dumps(x, ensure_ascii=False) + "\n")
        p = subprocess.run([TOK_TOOL, "jsonl", d, inp_path], capture_output=True)
        if p.returncode != 0:
            print(f"FAIL {name}: tdeploy exited {p.returncode}: {p.stderr.decode(errors='replace')}")
            total_fail += 1
            continue
        outs = [json.loads(line) for line in p.stdout.decode("utf-8").split("\n") if line]
        if len(outs) != len(inputs):
            print(f"FAIL {name}: {len(outs)} results for {len(inputs)} inputs")
            total_fail += 1
            continue
        npass = nfail = 0
        shown = 0
        for inp, res in zip(inputs, outs):
            ok, why = run_case(tok, inp, res)
            if ok:
                npass += 1
            else:
                nfail += 1
                if shown < 4:
                    print(f"  {name}: mismatch on {json.dumps(inp, ensure_ascii=False)[:200]}\n    {why[:1500]}")
                    shown += 1
        total_fail += nfail
        print(f"{'PASS' if not nfail else 'FAIL'} {name:28s} {npass} passed, {nfail} failed")
    print(f"{len(toks)} tokenizers, {total_fail} failures")
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
