"""Files tdeploy export/optimize write lay out every large inline raw_data at an
8-byte aligned file offset (td_onnx_save_options.align_raw_data), and remain
standard ONNX: onnx.checker full_check passes, onnx.load decodes them to the same
message as a canonical re-save (tdeploy onnx-save), and ONNX Runtime computes
the same outputs from both."""
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort

from opt_common import BIN, ENCODERS, FIX, TMP, fixture_name, onnx_fixtures, require_env

ALIGN = 8          # TD_ONNX_ALIGN_BYTES
MIN_BYTES = 4096   # TD_ONNX_ALIGN_MIN_BYTES
HF = ["bert-base", "bert-seqcls", "distilbert-seqcls", "roberta-seqcls", "minilm-st", "xlmr-base"]


def varint(buf, pos, end):
    v, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError(f"truncated varint at {pos}")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, pos


def fields(buf, pos, end):
    """(field number, wire type, value or (payload offset, payload length)) of each field in [pos, end)."""
    while pos < end:
        key, pos = varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = varint(buf, pos, end)
            yield num, wt, v
        elif wt == 1:
            pos += 8
            yield num, wt, None
        elif wt == 5:
            pos += 4
            yield num, wt, None
        elif wt == 2:
            n, pos = varint(buf, pos, end)
            if pos + n > end:
                raise ValueError(f"field {num} overruns its message at {pos}")
            yield num, wt, (pos, n)
            pos += n
        else:
            raise ValueError(f"wire type {wt} at {pos}")


def raw_data_offsets(path):
    """[(raw_data file offset, length)] of the top-level graph's initializers."""
    with open(path, "rb") as f:
        buf = f.read()
    out = []
    for num, wt, v in fields(buf, 0, len(buf)):
        if num == 7 and wt == 2:
            for gnum, gwt, gv in fields(buf, v[0], v[0] + v[1]):
                if gnum == 5 and gwt == 2:
                    for tnum, twt, tv in fields(buf, gv[0], gv[0] + gv[1]):
                        if tnum == 9 and twt == 2:
                            out.append(tv)
    return out


def run(args):
    r = subprocess.run([BIN] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tdeploy {' '.join(args)} failed: {r.stderr.strip()}")


def feeds(model):
    rng = np.random.default_rng(7)
    out = {}
    for i in model.graph.input:
        tt = i.type.tensor_type
        dt = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        shape = [2 if k == 0 else 8 for k, _ in enumerate(tt.shape.dim)]
        if "mask" in i.name:
            out[i.name] = np.ones(shape, dt)
        elif "token_type" in i.name:
            out[i.name] = np.zeros(shape, dt)
        else:
            out[i.name] = rng.integers(1, 100, shape).astype(dt)
    return out


def check_file(path, canon):
    """Problems of the aligned file path against its canonical re-save canon; [] = fine."""
    bad = []
    offs = raw_data_offsets(path)
    big = [(o, n) for o, n in offs if n >= MIN_BYTES]
    if not big:
        bad.append("no raw_data of >= 4 KiB found (test would prove nothing)")
    mis = [(o, n) for o, n in big if o % ALIGN]
    if mis:
        bad.append(f"{len(mis)} of {len(big)} large raw_data misaligned, first at offset {mis[0][0]}")
    onnx.checker.check_model(path, full_check=True)
    a, b = onnx.load(path), onnx.load(canon)
    if a.SerializeToString(deterministic=True) != b.SerializeToString(deterministic=True):
        bad.append("onnx.load decodes it differently from the canonical re-save")
    if os.path.getsize(canon) == os.path.getsize(path) and open(canon, "rb").read() == open(path, "rb").read():
        bad.append("the canonical re-save is byte-identical: the aligned layout was not used")
    f = feeds(a)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ya = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, f)
    yb = ort.InferenceSession(canon, so, providers=["CPUExecutionProvider"]).run(None, f)
    for k, (x, y) in enumerate(zip(ya, yb)):
        if not np.array_equal(x, y):
            bad.append(f"ORT output {k} differs from the canonical file's")
    return bad, len(big)


def main():
    require_env()
    work = os.path.join(TMP, "aligned_save")
    os.makedirs(work, exist_ok=True)
    cases = []
    for name in HF:
        for dtype in ("fp32", "fp16"):
            cases.append((f"{name}-{dtype}", ["export", "-q", "-m", os.path.join(FIX, "hf", name), "--dtype", dtype]))
    fails = 0
    for tag, cmd in cases:
        exp = os.path.join(work, f"{tag}.onnx")
        opt = os.path.join(work, f"{tag}-opt.onnx")
        try:
            run(cmd + ["-o", exp])
            run(["optimize", "-q", exp, "-o", opt])
            for label, path in (("export", exp), ("optimize", opt)):
                canon = path + ".canon.onnx"
                run(["onnx-save", path, "-o", canon])
                bad, n = check_file(path, canon)
                print(f"{'FAIL' if bad else 'ok  '} {tag} {label}: {n} large raw_data" + ("; " + "; ".join(bad) if bad else ""))
                fails += bool(bad)
        except Exception as e:  # noqa: BLE001 - report the case and go on
            print(f"FAIL {tag}: {e}")
            fails += 1
    for src in onnx_fixtures():
        if not fixture_name(src).startswith(ENCODERS) or "sdpa" in src:
            continue  # decoders' fused ops (SimplifiedLayerNormalization) do not run in ORT at opset 17
        tag = fixture_name(src)
        opt = os.path.join(work, f"fx-{tag}-opt.onnx")
        try:
            run(["optimize", "-q", src, "-o", opt])
            canon = opt + ".canon.onnx"
            run(["onnx-save", opt, "-o", canon])
            bad, n = check_file(opt, canon)
            print(f"{'FAIL' if bad else 'ok  '} fixture {tag} optimize: {n} large raw_data" + ("; " + "; ".join(bad) if bad else ""))
            fails += bool(bad)
        except Exception as e:  # noqa: BLE001
            print(f"FAIL fixture {tag}: {e}")
            fails += 1
    print(f"{fails} failure(s)")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
