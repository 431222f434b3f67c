#!/usr/bin/env python3
"""int8 accuracy on the real sentence-transformers/all-MiniLM-L6-v2, next to ONNX Runtime's int8.

1. `tdeploy convert --precision int8` passes its own validation (per-row cosine of every output
   against the fp32 reference, mean >= 0.99) and report.json records the figures.
2. Texts = tests/data/retrieval/pairs.tsv (40 queries, 40 documents) + the 44 texts of
   tests/data/minilm_reference: embeddings from `tdeploy run` on the int8 model-optimized.onnx vs
   `tdeploy run` on the fp32 model.onnx of the same conversion: mean cosine >= 0.99, and for
   >= 95% of the queries the nearest document is the same as with fp32 embeddings.
3. ONNX Runtime's int8 on the same model (its transformers optimizer, then quantize_dynamic with
   per-channel QInt8 weights on MatMul/Attention), run on the same token ids: tdeploy's mean
   cosine to fp32 must be at least ONNX Runtime's (-1e-4), and its retrieval agreement at least
   ONNX Runtime's. All figures are printed.
4. The same for `tdeploy optimize --precision int8 --int8-weight-bits 7` of the conversion's fp32
   model.onnx (weights in [-63, 63], the AVX2 kernel's faster exact path): the same three bounds.
The model must be in the Hugging Face cache (scripts/setup-default-model.sh); when it is not,
the test installs it under $TD_TMP/hf_home with that script, as tests/run does."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort

SRC = os.environ.get("TD_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ.get("TD_BIN", "tdeploy")
TMP = os.environ.get("TD_TMP", "/tmp")
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {what} {detail}".rstrip(), flush=True)
    return ok


def finish():
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def cache_dir(env):
    if env.get("HF_HUB_CACHE"):
        return env["HF_HUB_CACHE"]
    if env.get("HF_HOME"):
        return os.path.join(env["HF_HOME"], "hub")
    if env.get("XDG_CACHE_HOME"):
        return os.path.join(env["XDG_CACHE_HOME"], "huggingface", "hub")
    return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def has_model(cache):
    repo = os.path.join(cache, "models--" + MODEL.replace("/", "--"))
    try:
        rev = open(os.path.join(repo, "refs", "main")).read().strip()
    except OSError:
        return False
    return os.path.isfile(os.path.join(repo, "snapshots", rev, "model.safetensors"))


def model_env():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if has_model(cache_dir(env)):
        return env
    env.pop("HF_HUB_CACHE", None)
    env["HF_HOME"] = os.path.join(TMP, "hf_home")
    if not has_model(cache_dir(env)):
        p = subprocess.run(["bash", os.path.join(SRC, "scripts", "setup-default-model.sh")], env=env,
                           capture_output=True, text=True, timeout=900)
        if not check(p.returncode == 0 and has_model(cache_dir(env)), f"setup-default-model.sh installs {MODEL}",
                     p.stderr[-1000:]):
            finish()
    return env


def run_embeddings(target, texts_file, env, extra=()):
    p = subprocess.run([BIN, "run", target, "--texts", texts_file, "--json", "-q", *extra], env=env,
                       capture_output=True, text=True)
    if not check(p.returncode == 0, f"tdeploy run {os.path.basename(target)}", p.stderr[-500:]):
        finish()
    recs = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    return np.array([r["embedding"] for r in recs], dtype=np.float64), [r["input_ids"] for r in recs]


def ort_int8_model(fp32_path, out_path):
    import logging
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns about every contrib-op output it cannot type
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    opt_path = out_path + ".ortopt.onnx"
    optimize_model(fp32_path, model_type="bert", num_heads=12, hidden_size=384, opt_level=0).save_model_to_file(opt_path)
    quantize_dynamic(opt_path, out_path, per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Attention"], extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1})  # 1: float


def ort_embeddings(path, ids_list):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    out = []
    for ids in ids_list:
        a = np.array([ids], dtype=np.int64)
        feeds = {"input_ids": a, "attention_mask": np.ones_like(a), "token_type_ids": np.zeros_like(a)}
        res = dict(zip([o.name for o in s.get_outputs()], s.run(None, {k: v for k, v in feeds.items() if k in names})))
        out.append(res["sentence_embedding"][0])
    return np.array(out, dtype=np.float64)


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def mean_cos(a, b):
    return float((unit(a) * unit(b)).sum(axis=1).mean())


def nearest_docs(q, d):
    return np.argmax(unit(q) @ unit(d).T, axis=1)


def main():
    env = model_env()
    pairs = [line.rstrip("\n").split("\t") for line in open(os.path.join(SRC, "tests", "data", "retrieval", "pairs.tsv"),
                                                           encoding="utf-8") if line.strip()]
    ref = json.load(open(os.path.join(SRC, "tests", "data", "minilm_reference", "reference.json"), encoding="utf-8"))
    extra = [c["text"] for c in ref["cases"] if c["text"].strip() and "\n" not in c["text"] and "\t" not in c["text"]
             and "\r" not in c["text"]]
    texts = [q for q, _ in pairs] + [d for _, d in pairs] + extra
    nq = len(pairs)
    tf = os.path.join(TMP, "int8_minilm_texts.txt")
    with open(tf, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    out = os.path.join(TMP, "int8_minilm")
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.run([BIN, "convert", "-m", MODEL, "-o", out, "--precision", "int8", "--texts", tf, "--nb-measures",
                        "2", "--warmup", "1", "-q"], env=env, capture_output=True, text=True)
    if not check(p.returncode == 0, "convert --precision int8 passes validation", p.stderr[-800:]):
        finish()
    rep = json.load(open(os.path.join(out, "report.json")))
    vals = [v for v in rep.get("validation", []) if v.get("output") == "sentence_embedding"]
    check(len(vals) == 1 and vals[0]["passed"] and vals[0].get("mean_cosine", 0) >= 0.99 and
          vals[0].get("min_mean_cosine") == 0.99, "report.json: sentence_embedding validated by cosine",
          json.dumps(vals)[:300])

    e8, ids = run_embeddings(out, tf, env)
    e32, ids32 = run_embeddings(os.path.join(out, "model.onnx"), tf, env, ("--tokenizer", out))
    check(ids == ids32, "same token ids for fp32 and int8")
    ort8 = os.path.join(TMP, "int8_minilm_ort.onnx")
    ort_int8_model(os.path.join(out, "model.onnx"), ort8)
    eo = ort_embeddings(ort8, ids)
    eo32 = ort_embeddings(os.path.join(out, "model.onnx"), ids)
    check(mean_cos(e32, eo32) > 0.99999, "tdeploy fp32 = ONNX Runtime fp32 (cosine)", f"{mean_cos(e32, eo32):.7f}")

    c_td, c_ort = mean_cos(e8, e32), mean_cos(eo, e32)
    min_td = float((unit(e8) * unit(e32)).sum(axis=1).min())
    nn32 = nearest_docs(e32[:nq], e32[nq:2 * nq])
    nn8 = nearest_docs(e8[:nq], e8[nq:2 * nq])
    nno = nearest_docs(eo[:nq], eo[nq:2 * nq])
    agree_td, agree_ort = float((nn8 == nn32).mean()), float((nno == nn32).mean())
    own = np.arange(nq)
    print(f"NOTE {len(texts)} texts: mean cosine to fp32: tdeploy int8 {c_td:.5f} (min {min_td:.5f}), "
          f"ONNX Runtime int8 {c_ort:.5f}")
    print(f"NOTE retrieval ({nq} queries): same nearest document as fp32: tdeploy int8 {agree_td:.3f}, "
          f"ONNX Runtime int8 {agree_ort:.3f}; query finds its own document: fp32 {float((nn32 == own).mean()):.3f}, "
          f"tdeploy int8 {float((nn8 == own).mean()):.3f}, ONNX Runtime int8 {float((nno == own).mean()):.3f}")
    check(c_td >= 0.99, "tdeploy int8 mean cosine >= 0.99", f"{c_td:.5f}")
    check(agree_td >= 0.95, "tdeploy int8 nearest-neighbour agreement >= 95%", f"{agree_td:.3f}")
    check(c_td >= c_ort - 1e-4, "tdeploy int8 cosine at least ONNX Runtime int8's", f"{c_td:.5f} vs {c_ort:.5f}")
    check(agree_td >= agree_ort, "tdeploy int8 retrieval agreement at least ONNX Runtime int8's",
          f"{agree_td:.3f} vs {agree_ort:.3f}")

    w7 = os.path.join(out, "model-int8w7.onnx")
    p = subprocess.run([BIN, "optimize", os.path.join(out, "model.onnx"), "-o", w7, "--precision", "int8",
                        "--int8-weight-bits", "7", "-q"], env=env, capture_output=True, text=True)
    if check(p.returncode == 0, "optimize --int8-weight-bits 7", p.stderr[-800:]):
        e7, ids7 = run_embeddings(w7, tf, env, ("--tokenizer", out))
        check(ids7 == ids, "same token ids for the 7-bit-weight model")
        c7 = mean_cos(e7, e32)
        min7 = float((unit(e7) * unit(e32)).sum(axis=1).min())
        nn7 = nearest_docs(e7[:nq], e7[nq:2 * nq])
        agree7 = float((nn7 == nn32).mean())
        print(f"NOTE 7-bit weights: mean cosine to fp32 {c7:.5f} (min {min7:.5f}), same nearest document as fp32 "
              f"{agree7:.3f}, query finds its own document {float((nn7 == own).mean()):.3f}")
        check(c7 >= 0.99, "tdeploy int8 (7-bit weights) mean cosine >= 0.99", f"{c7:.5f}")
        check(agree7 >= 0.95, "tdeploy int8 (7-bit weights) nearest-neighbour agreement >= 95%", f"{agree7:.3f}")
        check(c7 >= c_ort - 1e-4, "tdeploy int8 (7-bit weights) cosine at least ONNX Runtime int8's",
              f"{c7:.5f} vs {c_ort:.5f}")
        check(agree7 >= agree_ort, "tdeploy int8 (7-bit weights) retrieval agreement at least ONNX Runtime int8's",
              f"{agree7:.3f} vs {agree_ort:.3f}")
    finish()


if __name__ == "__main__":
    main()
