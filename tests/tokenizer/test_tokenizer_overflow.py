#!/usr/bin/env python3
"""Truncation with a stride returns the overflowing windows exactly as HF `tokenizers` does.

For the fixture tokenizers (bert-base, roberta-seqcls, xlmr-base) and long generated texts, encodes with
`td_tok_tool jsonl` (options.return_overflowing; tests/tools) and with HF
`enable_truncation(max_length=M, stride=S, strategy=..., direction=...)`, and requires the same main
encoding and the same `.overflowing` rows (count, ids, type ids, attention mask, special-tokens mask,
character offsets). Cases: single texts (right and left truncation), pairs with only_second (question
kept whole, context windows), only_first, and longest_first where it cuts one text; padded rows too.
Where HF cuts both texts of a pair (its overflow is nested) tdeploy must refuse with a "not supported"
error instead of returning anything. Prints per-case results; exits non-zero on any failure.
"""
import json
import os
import random
import subprocess
import sys

from tokenizers import Tokenizer

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
# the JSON-lines driver is a test tool beside the binary, not a tdeploy command
TOK_TOOL = os.environ.get("TD_TOK_TOOL", os.path.join(os.path.dirname(TD_BIN), "td_tok_tool"))
FX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
TD_TMP = os.environ.get("TD_TMP", "/tmp")

WORDS = ("the quick brown fox jumps over lazy dog hello world tokenizer transformer unbelievable naïve café "
         "résumé Zürich straße Ελληνικά русский текст 日本語 中文 don't it's 3.14 2026 🙂 — , . ! ?").split()


def text(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def cases(rng):
    out = []
    for k in range(12):
        m, s = rng.choice([(8, 0), (8, 3), (12, 5), (16, 2), (20, 9), (32, 7)])
        out.append({"text": text(rng, rng.randint(10, 90)),
                    "options": {"max_length": m, "stride": s, "trunc_left": k % 3 == 2}})
    for k in range(14):
        m, s = rng.choice([(24, 4), (30, 10), (40, 8), (64, 16)])
        out.append({"text": text(rng, rng.randint(3, 8)), "pair": text(rng, rng.randint(20, 120)),
                    "options": {"max_length": m, "stride": s, "strategy": "only_second", "trunc_left": k % 4 == 3}})
    for k in range(5):
        out.append({"text": text(rng, rng.randint(20, 80)), "pair": text(rng, rng.randint(2, 6)),
                    "options": {"max_length": 24, "stride": 5, "strategy": "only_first"}})
    for k in range(6):  # longest_first: the even ones cut one text only, the odd ones cut both (unsupported)
        a, b = (text(rng, 40), text(rng, 3)) if k % 2 == 0 else (text(rng, 40), text(rng, 40))
        out.append({"text": a, "pair": b, "options": {"max_length": 20, "stride": 3, "strategy": "longest_first"}})
    for k in range(4):  # padded rows: overflowing rows are padded to the main row's target
        out.append({"text": text(rng, 3), "pair": text(rng, 60),
                    "options": {"max_length": 25, "stride": 6, "strategy": "only_second", "pad": "fixed",
                                "pad_length": 32, "pad_left": k % 2 == 1}})
    out.append({"text": text(rng, 5), "options": {"max_length": 40, "stride": 4}})  # nothing cut: no overflow
    out.append({"text": text(rng, 5), "pair": text(rng, 80), "add_special_tokens": False,
                "options": {"max_length": 20, "stride": 4, "strategy": "only_second"}})
    for c in out:
        c["options"]["return_overflowing"] = True
    return out


def hf_encode(tok, c):
    o = c["options"]
    tok.no_truncation()
    tok.no_padding()
    tok.enable_truncation(o["max_length"], stride=o["stride"], strategy=o.get("strategy", "longest_first"),
                          direction="left" if o.get("trunc_left") else "right")
    if o.get("pad"):
        pad = next(t for t in ("[PAD]", "<pad>") if tok.token_to_id(t) is not None)  # the fixture's own pad token
        tok.enable_padding(direction="left" if o.get("pad_left") else "right", pad_id=tok.token_to_id(pad),
                           pad_type_id=0, pad_token=pad, length=o.get("pad_length"))
    return tok.encode(c["text"], c.get("pair"), add_special_tokens=c.get("add_special_tokens", True))


def diff(hf, ours, where):
    probs = []
    for key in ("ids", "type_ids", "attention_mask", "special_tokens_mask"):
        if getattr(hf, key) != ours[key]:
            probs.append(f"{where} {key}: hf {getattr(hf, key)} ours {ours[key]}")
    co = ours.get("char_offsets")
    mine = [tuple(co[2 * i:2 * i + 2]) for i in range(len(co) // 2)] if co is not None else None
    if mine != list(hf.offsets):
        probs.append(f"{where} offsets: hf {hf.offsets} ours {mine}")
    return probs


def main():
    rng = random.Random(2026)
    all_cases = cases(rng)
    fails = 0
    counts = {"rows": 0, "unsupported": 0}
    for name in ("bert-base", "roberta-seqcls", "xlmr-base"):
        path = os.path.join(FX, "hf", name, "tokenizer.json")
        tok = Tokenizer.from_file(path)
        inp = os.path.join(TD_TMP, f"overflow_{name}.jsonl")
        with open(inp, "w", encoding="utf-8") as f:
            for c in all_cases:
                f.write(json.dumps(c, ensure_ascii=False) + "\n")
        p = subprocess.run([TOK_TOOL, "jsonl", path, inp], capture_output=True)
        outs = [json.loads(x) for x in p.stdout.decode().split("\n") if x]
        if p.returncode or len(outs) != len(all_cases):
            print(f"FAIL {name}: exit {p.returncode}, {len(outs)} results for {len(all_cases)} cases "
                  f"{p.stderr.decode(errors='replace')[:300]}")
            fails += 1
            continue
        for i, (c, res) in enumerate(zip(all_cases, outs)):
            label = f"{name} case {i} {'pair' if 'pair' in c else 'single'} {json.dumps(c['options'])}"
            try:
                hf = hf_encode(tok, c)
            except BaseException as ex:  # HF refused (pyo3 PanicException for stride >= kept length): so must we
                ok = "error" in res
                print(f"{'ok  ' if ok else 'FAIL'} {label} HF refused ({str(ex)[:80]!r}), ours "
                      f"{res.get('error', 'returned a result')!r}"[:400])
                fails += not ok
                continue
            nested = any(o.overflowing for o in hf.overflowing)
            if nested:
                label += " [HF nests the overflow: we must refuse]"
                ok = "not supported" in res.get("error", "")
                counts["unsupported"] += ok
                why = "" if ok else f"HF nests the overflow (both texts cut): expected our unsupported error, got " \
                                    f"{res.get('error', 'a result')!r}"
            elif "error" in res:
                ok, why = False, f"ours failed: {res['error']}"
            else:
                main_res = dict(res, char_offsets=res["char_offsets"])
                probs = diff(hf, main_res, "main")
                rows = res.get("overflowing", [])
                if len(rows) != len(hf.overflowing):
                    probs.append(f"{len(hf.overflowing)} overflowing rows in HF, {len(rows)} ours")
                else:
                    for k, (h, r) in enumerate(zip(hf.overflowing, rows)):
                        probs += diff(h, r, f"overflow {k}")
                    counts["rows"] += len(rows)
                ok, why = not probs, "; ".join(probs)
            if "pair" not in c and "strategy" not in c["options"] and len(hf.overflowing) == 0 and \
                    c["options"]["max_length"] < 40:
                ok, why = False, "test case did not overflow in HF (the case is too short)"
            print(f"{'ok  ' if ok else 'FAIL'} {label} ({len(hf.overflowing)} HF rows){'' if ok else ': ' + why[:1500]}")
            fails += not ok
    # stride >= the kept length: HF refuses (panics); we must refuse with an error, not output
    c = {"text": text(rng, 60), "options": {"max_length": 10, "stride": 8, "return_overflowing": True}}
    inp = os.path.join(TD_TMP, "overflow_bad_stride.jsonl")
    with open(inp, "w", encoding="utf-8") as f:
        f.write(json.dumps(c) + "\n")
    p = subprocess.run([TOK_TOOL, "jsonl", os.path.join(FX, "hf", "bert-base", "tokenizer.json"),
                        inp], capture_output=True)
    res = json.loads(p.stdout.decode().strip() or "{}")
    ok = "stride" in res.get("error", "")
    print(f"{'ok  ' if ok else 'FAIL'} stride 8 >= kept length 8 is refused: {res.get('error', res)!r}"[:300])
    fails += not ok
    print(f"{counts['rows']} overflowing rows compared, {counts['unsupported']} nested cases refused, {fails} failures")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
