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


def build_engine(src, out, prec, smax, extra=()):
    return json.loads(tdeploy("build", src, "-o", out, "--precision", prec, "--min", "1x8", "--opt", "4x32",
                              "--max", f"8x{smax}", "--json", *extra))


def engines(lib):
    """Engines built by `tdeploy build` (from the PyTorch ONNX export and from the model directory), run through
    the session API exactly like ONNX files, at every profile corner; inputs outside the profile are refused."""
    for m in MODELS if not QUICK else MODELS[:1]:
        cfg = json.load(open(FIX / "hf" / m / "config.json"))
        maxpos = cfg.get("max_position_embeddings", 512)
        if cfg.get("model_type") in ("roberta", "xlm-roberta"):
            maxpos -= (cfg.get("pad_token_id", 1) or 1) + 1
        smax = min(64, maxpos)
        ref_sess = tdlib.Session(lib, FIX / "onnx" / f"{m}.torchscript.onnx", "cpu")
        for src_label, src in (("onnx", FIX / "onnx" / f"{m}.torchscript.onnx"), ("dir", FIX / "hf" / m)):
            for prec in ("fp32", "fp16", "bf16"):
                eng = TMP / f"{m}.{src_label}.{prec}.engine"
                label = f"engine {m} from {src_label} {prec}"
                try:
                    rep = build_engine(src, eng, prec, smax)
                    p0 = rep["profiles"][0]
                    record(f"{label}: build, planned arena {p0['arena_bytes']} <= naive {p0['naive_bytes']}",
                           0 < p0["arena_bytes"] <= p0["naive_bytes"], f"{rep['seconds']['total']:.2f} s")
                    es = tdlib.Session(lib, eng, None)  # engines default to the CUDA backend
                except RuntimeError as e:
                    record(f"{label}: build + load", False, str(e)[:400])
                    continue
                for cname, B, S in (("min", 1, 8), ("opt", 4, 32), ("max", 8, smax)):
                    for padded in (False, True):
                        case = f"{label} {cname} {B}x{S}{' padded' if padded else ''}"
                        try:
                            feeds, mask = feeds_for(es, cfg, B, S, padded, seed=B * 7 + S)
                            rf, _ = feeds_for(ref_sess, cfg, B, S, padded, seed=B * 7 + S)
                            ok, detail = compare(prec, ref_sess.run(rf), es.run(feeds), mask if padded else None,
                                                 {"logits", "start_logits", "end_logits"})
                            record(case, ok, detail)
                        except RuntimeError as e:
                            record(case, False, str(e)[:400])
                try:
                    feeds, _ = feeds_for(es, cfg, 9, 8, False, 1)
                    es.run(feeds)
                    record(f"{label}: 9x8 outside the profile is refused", False, "it ran")
                except RuntimeError as e:
                    record(f"{label}: 9x8 outside the profile is refused", "profile" in str(e) and "tdeploy build" in str(e),
                           str(e)[:200])
                es.close()
        ref_sess.close()


def shared_threads(lib):
    """One loaded engine, 4 host threads, each its own session (stream + activation memory): every thread's
    outputs equal the single-thread outputs; a session added to a loaded engine adds no weight memory."""
    import threading
    m = "bert-seqcls"
    cfg = json.load(open(FIX / "hf" / m / "config.json"))
    eng = TMP / "shared.fp16.engine"
    build_engine(FIX / "onnx" / f"{m}.torchscript.onnx", eng, "fp16", 64)
    mf = tdlib.ModelFile(lib, eng)
    shapes = [(1, 8), (4, 32), (8, 64), (2, 17)]
    want = {}
    s0 = tdlib.Session(lib, None, None, shared=mf)
    for sh in shapes:
        want[sh] = s0.run(feeds_for(s0, cfg, *sh, True, sh[0] * 100 + sh[1])[0])["logits"]
    errors = []

    def worker(k):
        try:
            s = tdlib.Session(lib, None, None, shared=mf, own_ctx=True)
            for it in range(25):
                sh = shapes[(it + k) % len(shapes)]
                got = s.run(feeds_for(s, cfg, *sh, True, sh[0] * 100 + sh[1])[0])["logits"]
                if not np.array_equal(got, want[sh]):
                    errors.append(f"thread {k} shape {sh} differs")
            s.close()
        except RuntimeError as e:
            errors.append(f"thread {k}: {e}")

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    s0.close()
    mf.close()
    record("4 threads sharing one loaded engine: outputs equal single-thread", not errors, "; ".join(errors)[:300])


def random_models(lib):
    """Random-weight MiniLM-L6-H384 and bert-base (transformers), exported by tdeploy, engines vs the CPU fp32
    runtime at every corner of a 1x1 / 8x128 / 32x512 profile (32x512 on the CPU takes a few seconds)."""
    try:
        import torch
        import transformers
    except ImportError:
        record("random bert-base / MiniLM models", False, "torch/transformers missing on this machine")
        return
    cfgs = {"minilm-l6-h384": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
            "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)}
    for name, c in cfgs.items():
        d = TMP / f"rand-{name}"
        if not (d / "config.json").exists():
            torch.manual_seed(0)
            cfg = transformers.BertConfig(vocab_size=30522, max_position_embeddings=512, **c)
            transformers.BertModel(cfg, add_pooling_layer=False).eval().save_pretrained(d, safe_serialization=True)
        onnx = TMP / f"rand-{name}.onnx"
        tdeploy("export", "-m", d, "-o", onnx)
        ref = tdlib.Session(lib, onnx, "cpu")
        cfgj = json.load(open(d / "config.json"))
        ref_out = {}
        for prec in ("fp32", "fp16", "bf16"):
            eng = TMP / f"rand-{name}.{prec}.engine"
            try:
                tdeploy("build", d, "-o", eng, "--precision", prec, "--min", "1x1", "--opt", "8x128", "--max", "32x512")
                es = tdlib.Session(lib, eng, None)
            except RuntimeError as e:
                record(f"random {name} {prec} build", False, str(e)[:300])
                continue
            if prec != "fp32":
                # the optimized kernels (cuBLASLt, flash attention) against the simple reference kernels
                os.environ["TDEPLOY_CUDA_REFERENCE"] = "1"
                try:
                    rs_ = tdlib.Session(lib, eng, None)
                finally:
                    del os.environ["TDEPLOY_CUDA_REFERENCE"]
                for B, S in ((2, 77), (4, 128)):
                    f, mask = feeds_for(es, cfgj, B, S, True, 5)
                    ok, detail = compare("fp16", rs_.run(f), es.run(f), mask, set())
                    record(f"random {name} {prec} {B}x{S} padded: optimized kernels vs reference kernels", ok, detail)
                rs_.close()
            for B, S, padded in ((1, 1, False), (8, 128, True), (32, 512, True)):
                case = f"random {name} {prec} {B}x{S}{' padded' if padded else ''}"
                try:
                    feeds, mask = feeds_for(es, cfgj, B, S, padded, 3)
                    if (B, S) not in ref_out:
                        ref_out[(B, S)] = ref.run(feeds_for(ref, cfgj, B, S, padded, 3)[0])
                    ok, detail = compare(prec, ref_out[(B, S)], es.run(feeds), mask if padded else None, set())
                    record(case, ok, detail)
                except RuntimeError as e:
                    record(case, False, str(e)[:300])
            es.close()
        ref.close()


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
    # TD_GPU_PARTS picks parts (comma-separated names below) when device time is short; default all
    want = os.environ.get("TD_GPU_PARTS", "correctness,engines,shared_threads,random_models,leak_check").split(",")
    for part in (correctness, engines, shared_threads, random_models, leak_check):
        if part.__name__ not in want:
            continue
        try:
            part(lib)
        except Exception as e:  # a broken part is a failure, the others still run
            record(part.__name__, False, repr(e)[:300])
    npass = sum(r["ok"] for r in results)
    nfail = len(results) - npass
    summary = {"passed": npass, "failed": nfail, "seconds": round(time.time() - t0, 1), "results": results}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{npass} passed, {nfail} failed")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
