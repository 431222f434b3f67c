"""tdeploy export on every encoder fixture, checked against transformers' golden
outputs with ONNX Runtime: fp32 (max abs error <= 1e-4 on every output), fp16
(relative error <= 1e-2, same argmax for classification heads), int32 inputs,
padding invariance (every row of a padded batch equals its unpadded single-row
run at the real positions), and the opsets 14..21."""
import os

import numpy as np
import onnx
import onnx.numpy_helper
from safetensors.numpy import load_file

from export_common import FIXTURES, TMP, Tally, checked_session, load_json, max_abs, metadata, rel_err, run, \
    run_export

# fixture -> (expected task, expected graph inputs)
FIXTURE_TASKS = {
    "bert-base": ("feature-extraction", ["input_ids", "token_type_ids", "attention_mask"]),
    "bert-seqcls": ("classification", ["input_ids", "token_type_ids", "attention_mask"]),
    "bert-tokcls": ("token-classification", ["input_ids", "token_type_ids", "attention_mask"]),
    "bert-qa": ("question-answering", ["input_ids", "token_type_ids", "attention_mask"]),
    "roberta-seqcls": ("classification", ["input_ids", "attention_mask"]),
    "xlmr-base": ("feature-extraction", ["input_ids", "attention_mask"]),
    "distilbert-seqcls": ("classification", ["input_ids", "attention_mask"]),
    "electra-base": ("feature-extraction", ["input_ids", "token_type_ids", "attention_mask"]),
    "minilm-st": ("embedding", ["input_ids", "token_type_ids", "attention_mask"]),
}
SEQUENCE_OUTPUTS = {"last_hidden_state", "start_logits", "end_logits"}
OPSET_SWEEP = {"bert-base", "roberta-seqcls", "minilm-st"}

t = Tally()
out_dir = os.path.join(TMP, "export_fixtures")
os.makedirs(out_dir, exist_ok=True)


def export_ok(name, model_dir, out, *args):
    p = run_export(model_dir, out, *args)
    return t.check(p.returncode == 0 and os.path.isfile(out), f"{name}: export {' '.join(args)}".rstrip(),
                   p.stderr.strip()[-400:] if p.returncode else "")


def is_sequence_output(name, task):
    return name in SEQUENCE_OUTPUTS or (name == "logits" and task == "token-classification")


def argmax_ok(name, task, out, ref, mask):
    """Same predicted class: per row for sequence classification, per real token for token classification,
    over the real positions for span logits."""
    if name == "logits" and task == "classification":
        return np.array_equal(out.argmax(-1), ref.argmax(-1))
    if name == "logits" and task == "token-classification":
        m = mask.astype(bool)
        return np.array_equal(out.argmax(-1)[m], ref.argmax(-1)[m])
    if name in ("start_logits", "end_logits"):
        masked = lambda x: np.where(mask.astype(bool), x, -np.inf)
        return np.array_equal(masked(out).argmax(-1), masked(ref).argmax(-1))
    return True


def padding_checks(name, task, sess, feeds, ref_outputs, pad_id):
    """Real positions of each row of the padded batch equal the single-row unpadded result; extra padding
    columns change nothing at the real positions."""
    mask = feeds["attention_mask"]
    for i in range(mask.shape[0]):
        n = int(mask[i].sum())
        if not np.all(mask[i, :n] == 1):
            t.check(False, f"{name}: row {i} is not right-padded (fixture layout changed?)")
            continue
        single = run(sess, {k: v[i:i + 1, :n] for k, v in feeds.items()})
        worst = 0.0
        for k, v in single.items():
            b = ref_outputs[k][i:i + 1]
            if is_sequence_output(k, task):
                b = b[:, :n]
            worst = max(worst, max_abs(v, b))
        t.check(worst <= 1e-4, f"{name}: row {i} ({n} real tokens) unpadded vs padded batch", f"max abs {worst:.2e}")
    extra = 7
    more = {k: np.concatenate([v, np.full((v.shape[0], extra), pad_id if k == "input_ids" else 0, v.dtype)], 1)
            for k, v in feeds.items()}
    res = run(sess, more)
    worst = 0.0
    for k, v in res.items():
        if is_sequence_output(k, task):
            v = v[:, :mask.shape[1]]
        worst = max(worst, max_abs(v, ref_outputs[k]))
    t.check(worst <= 1e-4, f"{name}: {extra} extra padding columns", f"max abs {worst:.2e}")


def check_fixture(name):
    model_dir = os.path.join(FIXTURES, "hf", name)
    task, inputs = FIXTURE_TASKS[name]
    cfg = load_json(os.path.join(model_dir, "config.json"))
    golden = load_file(os.path.join(model_dir, "golden.safetensors"))
    feeds = {k[len("input."):]: v for k, v in golden.items() if k.startswith("input.")}
    refs = {k[len("output."):]: v for k, v in golden.items() if k.startswith("output.")}

    # fp32
    out = os.path.join(out_dir, f"{name}.onnx")
    if not export_ok(name, model_dir, out):
        return
    try:
        model, sess = checked_session(out)
    except Exception as e:  # checker or ORT refused the file
        t.check(False, f"{name}: onnx.checker + ORT load", str(e)[:400])
        return
    t.check(True, f"{name}: onnx.checker full_check + ORT load")
    t.check([i.name for i in sess.get_inputs()] == inputs, f"{name}: inputs {inputs}",
            str([i.name for i in sess.get_inputs()]))
    t.check(sorted(o.name for o in sess.get_outputs()) == sorted(refs), f"{name}: outputs {sorted(refs)}",
            str([o.name for o in sess.get_outputs()]))
    # initializers carry the HF tensor names and exactly the checkpoint's bytes; every checkpoint tensor is used,
    # except a pooler the task does not need
    ckpt = load_file(os.path.join(model_dir, "model.safetensors"))
    inits = {i.name: i for i in model.graph.initializer}
    same = all(onnx.numpy_helper.to_array(inits[k]).tobytes() == v.tobytes() for k, v in ckpt.items() if k in inits)
    unused = sorted(k for k in ckpt if k not in inits)
    t.check(same and all(".pooler." in "." + k for k in unused),
            f"{name}: initializers named and valued as the checkpoint", f"unused: {unused}" if unused else "")
    md = metadata(model)
    t.check(md.get("task") == task, f"{name}: task {task} (derived)", str(md.get("task")))
    if "id2label" in cfg and task in ("classification", "token-classification"):
        import json
        t.check(json.loads(md.get("id2label", "{}")) == cfg["id2label"], f"{name}: id2label in metadata_props")
    res = run(sess, feeds)
    for k, ref in refs.items():
        if k in res:
            err = max_abs(res[k], ref)
            t.check(err <= 1e-4, f"{name}: fp32 {k}", f"max abs error {err:.2e}")
    padding_checks(name, task, sess, feeds, refs, cfg.get("pad_token_id", 0) or 0)

    # --cache-output changes how the file is written (page cache, not O_DIRECT), never its bytes
    cached = os.path.join(out_dir, f"{name}.cached.onnx")
    if export_ok(name, model_dir, cached, "--cache-output"):
        with open(cached, "rb") as a, open(out, "rb") as b:
            t.check(a.read() == b.read(), f"{name}: --cache-output writes the same bytes")

    # int32 inputs
    out32 = os.path.join(out_dir, f"{name}.int32.onnx")
    if export_ok(name, model_dir, out32, "--int32-inputs"):
        _, s32 = checked_session(out32)
        t.check(all(i.type == "tensor(int32)" for i in s32.get_inputs()), f"{name}: int32 input types")
        r32 = run(s32, feeds, int32=True)
        for k, ref in refs.items():
            err = max_abs(r32[k], ref)
            t.check(err <= 1e-4, f"{name}: int32-inputs {k}", f"max abs error {err:.2e}")

    # fp16 weights
    out16 = os.path.join(out_dir, f"{name}.fp16.onnx")
    if export_ok(name, model_dir, out16, "--dtype", "fp16"):
        m16, s16 = checked_session(out16)
        n16 = sum(1 for i in m16.graph.initializer if i.data_type == 10)
        t.check(n16 > 0, f"{name}: fp16 initializers present", f"{n16} fp16 initializers")
        r16 = run(s16, feeds)
        for k, ref in refs.items():
            err = rel_err(r16[k], ref)
            same = argmax_ok(k, task, r16[k], ref, feeds["attention_mask"])
            t.check(err <= 1e-2 and same, f"{name}: fp16 {k}", f"rel error {err:.2e}, argmax same: {same}")

    # opsets
    if name in OPSET_SWEEP:
        for opset in range(14, 22):
            if opset == 17:
                continue
            o = os.path.join(out_dir, f"{name}.opset{opset}.onnx")
            if not export_ok(name, model_dir, o, "--opset", str(opset)):
                continue
            try:
                mo, so = checked_session(o)
            except Exception as e:
                t.check(False, f"{name}: opset {opset} checker + ORT", str(e)[:300])
                continue
            ro = run(so, feeds)
            err = max(max_abs(ro[k], refs[k]) for k in refs)
            ops = {op.op_type for op in mo.graph.node}
            ln = "LayerNormalization" in ops
            t.check(err <= 1e-4 and ln == (opset >= 17), f"{name}: opset {opset}",
                    f"max abs error {err:.2e}, LayerNormalization op: {ln}")


for fixture in FIXTURE_TASKS:
    if not os.path.isdir(os.path.join(FIXTURES, "hf", fixture)):
        t.check(False, f"{fixture}: fixture directory missing under {FIXTURES}/hf")
        continue
    check_fixture(fixture)
t.finish()
