"""GPU test suite (run by tests/gpu/run_gpu_tests.sh on a machine with a GPU).

For every encoder fixture (PyTorch .torchscript and -sdpa ONNX exports, and
tdeploy's own export) x precision (fp32, fp16, bf16) x shape corner (min, opt,
max) x padded/unpadded batch: the CUDA backend's outputs on the optimized
graph against the CPU runtime's fp32 outputs on the original graph.
Tolerances (issue 12): fp32 max |a-b| <= 1e-4 (TF32 off); fp16
||a-b||/||b|| <= 2e-3; bf16 <= 1e-2; identical argmax for classification,
token classification (real tokens) and QA start/end. Each CUDA case runs three
times (the second and third replay a CUDA graph) and the replays must equal
the first run bit for bit. Then: 100 sessions created, run and freed must give
back their device memory. Prints "N passed, M failed" and writes summary.json.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import tdlib  # noqa: E402

SRC = Path(os.environ.get("TD_SRC", Path(__file__).resolve().parents[2]))
BIN = Path(os.environ["TD_BIN"])
LIB = os.environ["TD_LIB"]
FIX = Path(os.environ.get("TD_FIXTURES", SRC / "tests/fixtures"))
TMP = Path(os.environ.get("TD_TMP", "/tmp/td_gpu"))
OUT = Path(os.environ.get("OUT", TMP))
QUICK = os.environ.get("TD_GPU_QUICK") == "1"
BACKEND = os.environ.get("TD_GPU_BACKEND", "cuda")  # "cpu" checks this harness on a machine without a GPU
TMP.mkdir(parents=True, exist_ok=True)

MODELS = ["bert-seqcls", "bert-tokcls", "bert-qa", "bert-base", "distilbert-seqcls", "electra-base",
          "roberta-seqcls", "xlmr-base"]
TOL = {"fp32": ("maxabs", 1e-4), "fp16": ("relnorm", 2e-3), "bf16": ("relnorm", 1e-2)}

results = []


def record(name, ok, detail=""):
    results.append({"case": name, "ok": bool(ok), "detail": detail})
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)


def tdeploy(*args):
    r = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tdeploy {' '.join(map(str, args))}: {r.stderr.strip()}")
    return r.stdout


def feeds_for(sess, cfg, B, S, padded, seed):
    rs = np.random.RandomState(seed)
    vocab = cfg["vocab_size"]
    ids = rs.randint(5, vocab, size=(B, S)).astype(np.int64)
    mask = np.ones((B, S), np.int64)
    if padded and S > 1:
        lens = rs.randint(1, S + 1, size=B)
        lens[0] = S
        for b in range(B):
            mask[b, lens[b]:] = 0
            ids[b, lens[b]:] = cfg.get("pad_token_id", 0) or 0
    f = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros((B, S), np.int64)}
    return {k: f[k] for k in sess.inputs}, mask


def compare(prec, ref, got, mask, task_outputs):
    kind, tol = TOL[prec]
    worst = 0.0
    for name, r in ref.items():
        g = got[name]
        if g.shape != r.shape:
            return False, f"{name}: shape {g.shape} vs {r.shape}"
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        if r.ndim == 3 and mask is not None and r.shape[:2] == mask.shape:
            keep = mask.astype(bool)  # padded positions carry no meaning
            r64, g64 = r64[keep], g64[keep]
        if not np.all(np.isfinite(g64)):
            return False, f"{name}: non-finite values"
        if kind == "maxabs":
            err = float(np.max(np.abs(g64 - r64))) if r64.size else 0.0
        else:
            err = float(np.linalg.norm(g64 - r64) / max(np.linalg.norm(r64), 1e-30))
        worst = max(worst, err)
        if err > tol:
            return False, f"{name}: {kind} {err:.3g} > {tol}"
        if name in task_outputs:
            ra, ga = np.argmax(r, axis=-1), np.argmax(g, axis=-1)
            if r.ndim == 3 and mask is not None:
                ra, ga = ra[mask.astype(bool)], ga[mask.astype(bool)]
            if not np.array_equal(ra, ga):
                return False, f"{name}: argmax differs at {int(np.sum(ra != ga))} positions"
    return True, f"{kind} {worst:.3g}"


def model_files(m):
    """(label, original ONNX) pairs for a fixture: both PyTorch exports and tdeploy's own."""
    out = []
    for v in ("torchscript", "torchscript-sdpa"):
        p = FIX / "onnx" / f"{m}.{v}.onnx"
        if p.exists():
            out.append((f"{m}.{v}", p))
    own = TMP / f"{m}.tdeploy.onnx"
    try:
        tdeploy("export", "-m", FIX / "hf" / m, "-o", own)
        out.append((f"{m}.tdeploy", own))
    except RuntimeError as e:
        record(f"{m}.tdeploy export", False, str(e)[:300])
    return out


def correctness(lib):
    for m in MODELS if not QUICK else MODELS[:2]:
        cfg = json.load(open(FIX / "hf" / m / "config.json"))
        maxpos = cfg.get("max_position_embeddings", 512)
        if cfg.get("model_type") in ("roberta", "xlm-roberta"):
            maxpos -= (cfg.get("pad_token_id", 1) or 1) + 1
        smax = min(64, maxpos)
        corners = [("min", 1, 8), ("opt", 4, 32), ("max", 8, smax)]
        for label, path in model_files(m):
            ref_sess = tdlib.Session(lib, path, "cpu")
            task = {"logits", "start_logits", "end_logits"}
            for prec in ("fp32", "fp16", "bf16"):
                opt = TMP / f"{label}.{prec}.onnx"
                try:
                    tdeploy("optimize", path, "-o", opt, "--precision", prec)
                    cs = tdlib.Session(lib, opt, BACKEND)
                except RuntimeError as e:
                    record(f"{label} {prec} create", False, str(e)[:400])
                    continue
                for cname, B, S in corners:
                    for padded in (False, True):
                        case = f"{label} {prec} {cname} {B}x{S}{' padded' if padded else ''}"
                        try:
                            feeds, mask = feeds_for(cs, cfg, B, S, padded, seed=B * 1000 + S)
                            rf, _ = feeds_for(ref_sess, cfg, B, S, padded, seed=B * 1000 + S)
                            ref = ref_sess.run(rf)
                            got = cs.run(feeds)
                            again = [cs.run(feeds) for _ in range(2)]  # CUDA graph capture + replay
                            ok, detail = compare(prec, ref, got, mask if padded else None, task)
                            for a in again:
                                for k in got:
                                    if not np.array_equal(a[k], got[k]):
                                        ok, detail = False, f"graph replay differs from the first run in {k}"
                            record(case, ok, detail)
                        except RuntimeError as e:
                            record(case, False, str(e)[:400])
                cs.close()
            ref_sess.close()


def device_free_bytes():
    r = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                       capture_output=True, text=True)
    return int(r.stdout.strip().splitlines()[0]) if r.returncode == 0 else None


def leak_check(lib):
    m = "bert-seqcls"
    path = TMP / f"{m}.torchscript.fp16.onnx"
    if not path.exists():
        tdeploy("optimize", FIX / "onnx" / f"{m}.torchscript.onnx", "-o", path, "--precision", "fp16")
    cfg = json.load(open(FIX / "hf" / m / "config.json"))
    s = tdlib.Session(lib, path, "cuda")
    feeds, _ = feeds_for(s, cfg, 2, 16, True, 1)
    s.run(feeds)
    s.close()
    before = device_free_bytes()
    for i in range(100):
        s = tdlib.Session(lib, path, "cuda")
        s.run(feeds)
        s.run(feeds)
        s.close()
    after = device_free_bytes()
    ok = before is not None and after is not None and after <= before
    record("100 sessions create/run/free: device memory returns", ok, f"used MiB before {before}, after {after}")


def main():
    lib = tdlib.Lib(LIB)
    t0 = time.time()
    correctness(lib)
    try:
        leak_check(lib)
    except RuntimeError as e:
        record("100 sessions create/run/free", False, str(e)[:300])
    npass = sum(r["ok"] for r in results)
    nfail = len(results) - npass
    summary = {"passed": npass, "failed": nfail, "seconds": round(time.time() - t0, 1), "results": results}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{npass} passed, {nfail} failed")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
