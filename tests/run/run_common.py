"""Shared helpers for the `tdeploy run` tests: running the CLI, a pass/fail
tally, and post-processing written independently of tdeploy from the documented
behaviour of transformers' pipelines (numpy only)."""
import json
import os
import subprocess
import sys

import numpy as np

TD_BIN = os.environ["TD_BIN"]
FIXTURES = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
TMP = os.environ.get("TD_TMP", "/tmp")
SRC = os.environ.get("TD_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))


class Tally:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {what}")
        else:
            self.failed += 1
            print(f"FAIL {what} {detail}")
        return ok

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def run(args, stdin=None, env=None):
    p = subprocess.run([TD_BIN] + args, input=stdin, capture_output=True, env=env, timeout=600)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def run_json(args, stdin=None, env=None):
    """Run with --json; returns (exit code, list of objects, stderr)."""
    rc, out, err = run(args + ["--json"], stdin=stdin, env=env)
    objs = [json.loads(l) for l in out.splitlines() if l.strip()] if rc == 0 else []
    return rc, objs, err


def softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def simple_aggregation(logits, special, id2label):
    """TokenClassificationPipeline, aggregation_strategy="simple": per-token
    argmax of the softmax; consecutive tokens of the same tag (label minus a B-/I-
    prefix) are grouped unless the newer one starts with B-; a group's name is
    its first label after the first '-', its score the mean of the token scores;
    groups named "O" are dropped. Returns (name, score, first_token, last_token)."""
    def tag(label):
        if label.startswith("B-"):
            return "B", label[2:]
        if label.startswith("I-"):
            return "I", label[2:]
        return "I", label

    tokens = []
    p = softmax(logits)
    for i in range(len(logits)):
        if special[i]:
            continue
        k = int(np.argmax(p[i]))
        tokens.append((i, id2label[k], float(p[i][k])))
    groups, cur = [], []
    for t in tokens:
        if cur:
            bi, tg = tag(t[1])
            _, last_tg = tag(cur[-1][1])
            if tg == last_tg and bi != "B":
                cur.append(t)
                continue
            groups.append(cur)
        cur = [t]
    if cur:
        groups.append(cur)
    out = []
    for g in groups:
        name = g[0][1].split("-", 1)[-1]
        if name == "O":
            continue
        out.append((name, float(np.mean([t[2] for t in g])), g[0][0], g[-1][0]))
    return out


def qa_best_span(start, end, context, cls, max_answer_len=15):
    """QuestionAnsweringPipeline: logits outside the context (except CLS) become
    -10000, softmax, CLS probability zeroed, best p_start * p_end with
    start <= end < start + max_answer_len over context tokens."""
    keep = np.asarray(context) | np.asarray(cls)
    s = softmax(np.where(keep, start, -10000.0))
    e = softmax(np.where(keep, end, -10000.0))
    s[np.asarray(cls)] = 0
    e[np.asarray(cls)] = 0
    outer = np.triu(np.outer(s, e))
    outer = np.tril(outer, max_answer_len - 1)
    ctx = np.asarray(context)
    outer[~ctx, :] = -1
    outer[:, ~ctx] = -1
    flat = int(np.argmax(outer))
    i, j = divmod(flat, outer.shape[1])
    return i, j, float(outer[i, j])
