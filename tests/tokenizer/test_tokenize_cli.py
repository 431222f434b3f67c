#!/usr/bin/env python3
"""`tdeploy tokenize` CLI: JSON and table output agree with the fixtures' HF golden ids,
--pair / --max-length / --no-special-tokens behave like HF, bad inputs fail cleanly
(non-zero exit, a message naming the problem, nothing on stdout)."""
import json
import os
import subprocess
import sys

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
FX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
TD_TMP = os.environ.get("TD_TMP", "/tmp")

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}")


def run(*args, input_bytes=None):
    return subprocess.run([TD_BIN, "tokenize", *args], capture_output=True, input=input_bytes)


def main():
    for model in ("bert-base", "roberta-seqcls", "xlmr-base", "gpt2-lm"):
        d = os.path.join(FX, "hf", model)
        g = json.load(open(os.path.join(d, "tokenizer_golden.json"), encoding="utf-8"))
        for i in (0, 6, 7, 8):
            text = g["texts"][i]
            p = run("-m", d, text, "--json", "--decode")
            ok = p.returncode == 0
            out = json.loads(p.stdout) if ok else {}
            check(ok and out["ids"] == g["ids"][i], f"{model} --json ids text {i}")
            check(ok and out["decoded"] == g["decoded"][i], f"{model} --decode text {i}")
            check(ok and len(out["offsets"]) == len(out["ids"]) == len(out["attention_mask"]),
                  f"{model} --json arrays line up")
            # offsets are byte offsets into the text
            tb = text.encode()
            check(ok and all(0 <= s <= e <= len(tb) for s, e in out["offsets"]), f"{model} offsets in range")
        a, b = g["pairs"][0]
        p = run("-m", d, a, "--pair", b, "--json")
        check(p.returncode == 0 and json.loads(p.stdout)["ids"] == g["pair_ids"][0], f"{model} --pair ids")
        # --max-length truncates to exactly N (specials included) like HF truncation=True, max_length=N
        p = run("-m", d, g["texts"][16], "--max-length", "10", "--json")
        out = json.loads(p.stdout) if p.returncode == 0 else {}
        want = g["ids"][16]
        if model in ("gpt2-lm",):
            exp = want[:10]
        else:
            exp = want[:9] + [want[-1]]
        check(out.get("ids") == exp, f"{model} --max-length 10")
        p = run("-m", d, "Hello world!", "--no-special-tokens", "--json")
        out = json.loads(p.stdout) if p.returncode == 0 else {}
        special = set(g["ids"][0]) - set(g["ids"][0][1:-1]) if model != "gpt2-lm" else set()
        check(p.returncode == 0 and not (set(out["ids"]) & special) and len(out["ids"]) ==
              len(g["ids"][0]) - (0 if model == "gpt2-lm" else 2), f"{model} --no-special-tokens")
        p = run("-m", d, "Hello world!")
        check(p.returncode == 0 and b"offsets" in p.stdout and b"tokens" in p.stdout, f"{model} table output")

    d = os.path.join(FX, "hf", "bert-base")
    # tokenizer.json path works as well as the directory
    p = run("-m", os.path.join(d, "tokenizer.json"), "Hello", "--json")
    check(p.returncode == 0, "tokenizer.json path accepted")
    # errors: missing model dir, malformed tokenizer.json, invalid UTF-8 argument, usage errors
    p = run("-m", "/nonexistent/model", "hi")
    check(p.returncode == 1 and b"no such file" in p.stderr and not p.stdout, "missing model dir -> exit 1")
    bad_dir = os.path.join(TD_TMP, "tokenize_cli_bad")
    os.makedirs(bad_dir, exist_ok=True)
    with open(os.path.join(bad_dir, "tokenizer.json"), "w") as f:
        f.write('{"model": {"type": "Quantum", "vocab": {}}}')
    p = run("-m", bad_dir, "hi")
    check(p.returncode == 1 and b"Quantum" in p.stderr, "unknown model type named in the error")
    with open(os.path.join(bad_dir, "tokenizer.json"), "w") as f:
        f.write('{"model": {"type": "WordPiece", "vocab": {"a": 0')
    p = run("-m", bad_dir, "hi")
    check(p.returncode == 1 and b"invalid JSON" in p.stderr, "truncated tokenizer.json -> clear error")
    p = subprocess.run([TD_BIN.encode(), b"tokenize", b"-m", d.encode(), b"ab\xff\xfe"], capture_output=True)
    check(p.returncode == 1 and b"byte offset 2" in p.stderr, "invalid UTF-8 text -> error with byte offset")
    p = run("-m", d)
    check(p.returncode == 2, "missing text -> usage error")
    p = run("-m", d, "x", "--max-length", "-3")
    check(p.returncode == 2, "bad --max-length -> usage error")
    p = run("--help")
    check(p.returncode == 0 and b"usage" in p.stdout, "--help")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
