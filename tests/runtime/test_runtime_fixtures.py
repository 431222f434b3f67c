#!/usr/bin/env python3
"""CPU runtime vs references on every fixture ONNX model.

1. `tdeploy infer` on the fixture's golden inputs matches the golden outputs
   (transformers, float32) within 1e-4 absolute.
2. On randomized inputs at several (batch, sequence) shapes -- random ids within
   the vocabulary, random token types, random right padding in attention_mask --
   `tdeploy infer` matches ONNX Runtime within 1e-4 absolute.
3. The same for what the rest of tdeploy produces from them: `tdeploy optimize`
   output (fused com.microsoft ops; golden + ONNX Runtime), fp16/bf16 optimized
   graphs (relative L2 error vs golden <= 1e-3 / 1e-2) and `tdeploy export`
   output for every HF fixture the exporter supports (golden + ONNX Runtime).
4. Bad inputs (unknown name, missing input, wrong dtype, wrong rank, symbolic
   dims that disagree) fail with a message naming the problem and write no file.
Prints one line per case; exits non-zero on any failure."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file, save_file

FIX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
BIN = os.environ.get("TD_BIN", "tdeploy")
TMP = os.environ.get("TD_TMP", "/tmp")
TOL = 1e-4
SHAPES = [(1, 1), (1, 7), (2, 5), (3, 16)]

failures = 0


def report(ok, what, detail=""):
    global failures
    if not ok:
        failures += 1
    print(f"{'PASS' if ok else 'FAIL'} {what} {detail}".rstrip(), flush=True)


def infer(model, inputs_path, out_path, extra=()):
    if os.path.exists(out_path):
        os.remove(out_path)
    r = subprocess.run([BIN, "infer", model, "--inputs", inputs_path, "-o", out_path, *extra],
                       capture_output=True, text=True)
    return r


def max_err(a, b):
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def random_inputs(sess, cfg, batch, seq, rng):
    feeds = {}
    vocab = int(cfg.get("vocab_size", 100))
    types = int(cfg.get("type_vocab_size", 1) or 1)
    lengths = rng.integers(1, seq + 1, size=batch)
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = rng.integers(0, vocab, size=(batch, seq), dtype=np.int64)
        elif i.name == "token_type_ids":
            feeds[i.name] = rng.integers(0, max(types, 1), size=(batch, seq), dtype=np.int64)
        elif i.name == "attention_mask":
            m = np.zeros((batch, seq), dtype=np.int64)
            for b, n in enumerate(lengths):
                m[b, :n] = 1
            feeds[i.name] = m
        else:
            raise RuntimeError(f"unexpected input {i.name}")
    return feeds


def check_model(path, arch=None, shapes=SHAPES, threads=None):
    name = os.path.basename(path)
    arch = arch or name.split(".")[0]
    golden = os.path.join(FIX, "hf", arch, "golden.safetensors")
    out = os.path.join(TMP, f"rt_{name}.out.safetensors")
    extra = ["--threads", str(threads)] if threads else []
    # 1. golden
    r = infer(path, golden, out, extra)
    if r.returncode != 0:
        report(False, f"{name} golden", r.stderr.strip())
    else:
        got, ref = load_file(out), load_file(golden)
        for k, v in sorted(got.items()):
            want = ref.get("output." + k)
            if want is None:
                report(False, f"{name} golden {k}", "no golden output")
                continue
            e = max_err(v, want)
            report(e <= TOL, f"{name} golden {k}", f"max_abs_err={e:.3g}")
    # 2. ORT on random inputs
    cfg = json.load(open(os.path.join(FIX, "hf", arch, "config.json")))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(abs(hash(name)) % (2**32))
    for batch, seq in shapes:
        feeds = random_inputs(sess, cfg, batch, seq, rng)
        inp = os.path.join(TMP, f"rt_{name}_{batch}x{seq}.in.safetensors")
        save_file(feeds, inp)
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        r = infer(path, inp, out, extra)
        if r.returncode != 0:
            report(False, f"{name} ort {batch}x{seq}", r.stderr.strip())
            continue
        got = load_file(out)
        for k, v in sorted(want.items()):
            e = max_err(got[k], v) if k in got else float("inf")
            report(e <= TOL, f"{name} ort {batch}x{seq} {k}", f"max_abs_err={e:.3g}")


def tool(args, what):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    if r.returncode != 0:
        report(False, what, r.stderr.strip())
        return False
    return True


def check_optimized(path):
    name = os.path.basename(path)
    arch = name.split(".")[0]
    opt = os.path.join(TMP, f"rt_{name}.opt.onnx")
    if tool(["optimize", path, "-o", opt], f"{name} optimize"):
        check_model(opt, arch, shapes=[(2, 5), (3, 16)], threads=2)
    golden = os.path.join(FIX, "hf", arch, "golden.safetensors")
    for prec, tol in (("fp16", 1e-3), ("bf16", 1e-2)):
        low = os.path.join(TMP, f"rt_{name}.{prec}.onnx")
        out = os.path.join(TMP, f"rt_{name}.{prec}.out.safetensors")
        if not tool(["optimize", path, "-o", low, "--precision", prec], f"{name} optimize {prec}"):
            continue
        r = infer(low, golden, out)
        if r.returncode != 0:
            report(False, f"{name} {prec} golden", r.stderr.strip())
            continue
        got, ref = load_file(out), load_file(golden)
        for k, v in sorted(got.items()):
            want = ref["output." + k].astype(np.float64)
            rel = float(np.linalg.norm(v.astype(np.float64) - want) / max(np.linalg.norm(want), 1e-30))
            report(rel <= tol, f"{name} {prec} golden {k}", f"rel_l2_err={rel:.3g}")


def check_exported(arch):
    exported = os.path.join(TMP, f"rt_{arch}.export.onnx")
    r = subprocess.run([BIN, "export", "-m", os.path.join(FIX, "hf", arch), "-o", exported, "-q"],
                       capture_output=True, text=True)
    if r.returncode == 0 and json.loads(subprocess.run([BIN, "inspect", exported, "--json"], capture_output=True,
                                                       text=True).stdout).get("metadata", {}).get("task") == \
            "text-generation":
        print(f"NOTE {arch}: a decoder (KV cache): tests/generate/test_generate.py runs it in this runtime")
        return
    if r.returncode != 0:
        if "unsupported" in r.stderr:
            print(f"NOTE {arch}: not exportable by tdeploy export ({r.stderr.strip().splitlines()[-1]})")
            return
        report(False, f"{arch} export", r.stderr.strip())
        return
    check_model(exported, arch, shapes=[(1, 7), (3, 16)], threads=1)


def check_bad_inputs(path):
    name = os.path.basename(path)
    out = os.path.join(TMP, f"rt_bad_{name}.out.safetensors")
    ids = np.ones((1, 4), dtype=np.int64)
    cases = {
        "unknown input": ({"input_ids": ids, "attention_mask": ids, "bogus": ids}, "bogus"),
        "missing input": ({"input_ids": ids}, "attention_mask"),
        "wrong dtype": ({"input_ids": ids.astype(np.int32), "attention_mask": ids}, "int32"),
        "wrong rank": ({"input_ids": ids.reshape(4), "attention_mask": ids}, "rank"),
        "symbol mismatch": ({"input_ids": ids, "attention_mask": np.ones((1, 5), dtype=np.int64)}, "sequence"),
        "id outside vocab": ({"input_ids": ids * 5000, "attention_mask": ids}, "index 5000"),
    }
    for what, (feeds, needle) in cases.items():
        inp = os.path.join(TMP, f"rt_bad_{what.replace(' ', '_')}.safetensors")
        save_file(feeds, inp)
        r = infer(path, inp, out)
        ok = r.returncode != 0 and needle in r.stderr and not os.path.exists(out)
        report(ok, f"{name} bad input: {what}", r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "(no message)")


def main():
    # *.optimum-past.onnx are KV-cache decoder graphs (past_key_values inputs the golden
    # files do not hold): the decoder tests run them, not these encoder-runtime checks.
    models = sorted(m for m in glob.glob(os.path.join(FIX, "onnx", "*.onnx")) if not m.endswith(".optimum-past.onnx"))
    if not models:
        report(False, "fixtures", f"no ONNX fixtures under {FIX}/onnx")
    for m in models:
        check_model(m)
        check_optimized(m)
    hf_dir = os.path.join(FIX, "hf")
    for arch in sorted(os.listdir(hf_dir)) if os.path.isdir(hf_dir) else []:
        if os.path.exists(os.path.join(FIX, "hf", arch, "golden.safetensors")):
            check_exported(arch)
    check_bad_inputs(os.path.join(FIX, "onnx", "distilbert-seqcls.torchscript.onnx"))
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
