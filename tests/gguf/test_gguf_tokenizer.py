"""The tokenizer built from GGUF metadata (src/gguf/gguf_tokenizer.c) against HF `tokenizers`, for each
tokenizer.ggml.pre family the reader maps and for tokenizer.ggml.add_bos_token / add_eos_token.

The vocabulary and merges are the llama-gen fixture's (a byte-level BPE). For each family the GGUF file gets
them with the `pre` label llama.cpp's converter writes, and the HF reference is the same vocabulary and merges
with the normalizer, pre-tokenizer and post-processor of that family's real tokenizer.json (GPT-2, SmolLM2,
Llama-3, Qwen2; written out below as test data). Ids must be equal on texts that exercise what differs between
the families: digit runs, contractions in upper case, newlines, decomposed accents (Qwen2's NFC), a vocabulary
token no merge builds (Llama-3's ignore_merges), Llama-3's BOS when the file has no add_bos_token, CJK, emoji,
special-token text, pairs, with and without special tokens. Broken flag metadata, repeated tokens and tokens
with NUL bytes are refused with a message."""
import json
import os
import subprocess
import sys

import gguf
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "export"))
from export_common import TMP, Tally  # noqa: E402

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(TD_BIN)), "td_gguf_driver")
FIXTURES = os.environ.get("TD_FIXTURES", os.path.join(HERE, "..", "fixtures"))
t = Tally()
work = os.path.join(TMP, "gguf_tok")
os.makedirs(work, exist_ok=True)

fixture = json.load(open(os.path.join(FIXTURES, "hf", "llama-gen", "tokenizer.json")))
BOS_ID, EOS_ID = 1, 0  # two different tokens, so a swapped id shows

LLAMA3_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
            "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def byte_level(use_regex, trim_offsets=True):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": trim_offsets, "use_regex": use_regex}


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


# each family's tokenizer.json, by the label llama.cpp gives it: normalizer, pre-tokenizer, the BPE model's
# ignore_merges, and whether its post-processor adds BOS (what applies when the GGUF has no add_bos_token)
LLAMA3 = (None, {"type": "Sequence", "pretokenizers": [split(LLAMA3_RE), byte_level(False)]}, True, True)
FAMILIES = {
    "gpt2": (None, byte_level(True), False, False),
    "smollm": (None, {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                              byte_level(True)]}, False, False),
    "llama-bpe": LLAMA3,
    "llama3": LLAMA3,
    "qwen2": ({"type": "NFC"}, {"type": "Sequence", "pretokenizers": [split(QWEN2_RE), byte_level(False, False)]},
              False, False),
}
# a token the merges cannot build: only ignore_merges (Llama-3) takes it whole
EXTRA = "\u0120zyxw"


def template(add_bos, add_eos):
    """transformers' LlamaTokenizerFast.update_post_processor for these flags."""
    bos, eos = fixture_token(BOS_ID), fixture_token(EOS_ID)
    single = (f"{bos}:0 " if add_bos else "") + "$A:0" + (f" {eos}:0" if add_eos else "")
    pair = single + (f" {bos}:1" if add_bos else "") + " $B:1" + (f" {eos}:1" if add_eos else "")
    specials = {}
    if add_bos:
        specials[bos] = {"id": bos, "ids": [BOS_ID], "tokens": [bos]}
    if add_eos:
        specials[eos] = {"id": eos, "ids": [EOS_ID], "tokens": [eos]}

    def pieces(s):
        out = []
        for p in s.split():
            name, type_id = p.rsplit(":", 1)
            kind = "Sequence" if name.startswith("$") else "SpecialToken"
            out.append({kind: {"id": name.lstrip("$"), "type_id": int(type_id)}})
        return out
    return {"type": "TemplateProcessing", "single": pieces(single), "pair": pieces(pair), "special_tokens": specials}


def fixture_token(i):
    return next(tok for tok, j in fixture["model"]["vocab"].items() if j == i)


def hf_tokenizer(pre, add_bos, add_eos):
    d = json.loads(json.dumps(fixture))
    d["normalizer"], d["pre_tokenizer"], d["model"]["ignore_merges"], _ = FAMILIES[pre]
    d["model"]["vocab"][EXTRA] = len(d["model"]["vocab"])
    post = [byte_level(True)]
    if add_bos or add_eos:
        post.append(template(add_bos, add_eos))
    d["post_processor"] = {"type": "Sequence", "processors": post}
    return Tokenizer.from_str(json.dumps(d))


def write_gguf(path, pre, add_bos=None, add_eos=None, bos_id=BOS_ID, eos_id=EOS_ID, extra_tokens=()):
    vocab = sorted(fixture["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab += [(tok, len(vocab) + i) for i, tok in enumerate([EXTRA, *extra_tokens])]
    specials = {a["id"] for a in fixture["added_tokens"] if a["special"]}
    others = {a["id"] for a in fixture["added_tokens"] if not a["special"]}
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list([v for v, _ in vocab])
    w.add_token_types([3 if i in specials else 4 if i in others else 1 for _, i in vocab])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in fixture["model"]["merges"]])
    if bos_id is not None:
        w.add_bos_token_id(bos_id)
    if eos_id is not None:
        w.add_eos_token_id(eos_id)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if add_eos is not None:
        w.add_add_eos_token(add_eos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tokenize(path, items):
    r = subprocess.run([DRIVER, "tokenize", path], input=json.dumps(items), capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        sys.exit(f"FAIL: gguf driver tokenize exited {r.returncode} (crash?): {r.stderr[-300:]}")
    return [json.loads(ln) if ln.startswith("[") else ln for ln in r.stdout.splitlines()]


TEXTS = ["Hello world", "The year 2024 had 365 days; pi is 3.14159 and 1234567 is long",
         "I'M they've WE'LL it's you'D", "tabs\tand\nnewlines\r\n\n   indented\n", "   leading", "trailing   ",
         "e\u0301te\u0301 au cafe\u0301 vs \u00e9t\u00e9", "Ａｂｃ ｆｕｌｌ width, ﬁ ligature",
         "日本語のテキスト 🙂👍🏽", "x=1+2*3; y = [a, b] // comment!!", "Ⅻ ½ ² ١٢٣ digits",
         fixture_token(EOS_ID) + " special in text " + fixture_token(BOS_ID), "a zyxw b zyxwv", ""]
PAIRS = [("A question?", "The answer 42."), ("x", "")]

for pre in FAMILIES:
    for add_bos, add_eos in [(None, None), (True, None), (True, True), (False, True)]:
        label = f"pre={pre} add_bos={add_bos} add_eos={add_eos}"
        path = os.path.join(work, f"{pre}-{add_bos}-{add_eos}.gguf")
        write_gguf(path, pre, add_bos, add_eos)
        hf = hf_tokenizer(pre, FAMILIES[pre][3] if add_bos is None else add_bos, bool(add_eos))
        items = [{"text": s, "special": sp} for s in TEXTS for sp in (True, False)] + \
                [{"text": a, "pair": b, "special": sp} for a, b in PAIRS for sp in (True, False)]
        got = tokenize(path, items)
        bad = []
        for it, g in zip(items, got):
            want = hf.encode(it["text"], it.get("pair"), add_special_tokens=it["special"]).ids
            if g != want:
                bad.append((it, g, want))
        t.check(len(got) == len(items) and not bad, f"{label}: ids == HF tokenizers on {len(items)} inputs",
                f"{len(bad)} differ, first: {bad[:1]}" if bad else "")

# the flags need a valid token id; an unknown pre-tokenizer label is named
refusals = [("add_bos_token without bos_token_id", dict(add_bos=True, bos_id=None), "bos_token_id"),
            ("bos_token_id past the vocabulary", dict(add_bos=True, bos_id=1 << 20), "not a token id"),
            ("add_eos_token with eos_token_id -1", dict(add_eos=True, eos_id=None), "eos_token_id"),
            ("unknown pre-tokenizer", dict(pre="falcon"), "falcon"),
            ("a token twice", dict(extra_tokens=[fixture_token(500)]), "twice (ids 500 and 1025)"),
            ("a NUL byte in a token", dict(extra_tokens=["x\0y"]), "NUL"),
            ("Llama-3's default BOS without bos_token_id", dict(pre="llama-bpe", bos_id=None), "bos_token_id")]
for label, kw, needle in refusals:
    path = os.path.join(work, "bad.gguf")
    write_gguf(path, kw.pop("pre", "gpt2"), **kw)
    got = tokenize(path, [{"text": "hi", "special": True}])
    msg = got[0] if got and isinstance(got[0], str) else ""
    t.check(msg.startswith("error:") and needle in msg, f"refused: {label}", msg or str(got))
t.finish()
