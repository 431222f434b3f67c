"""Decoder goldens (tests/fixtures/README.md, "Generation fixtures") checked through any
runner of an ONNX decoder with a KV cache in the Optimum layout.

A runner is `step(input_ids, attention_mask, position_ids, past) -> (logits, present)` where
past/present map "past_key_values.N.key"-style names to (batch, kv_heads, past, head_dim)
arrays. ort_runner() drives ONNX Runtime; the checks mirror transformers' generate():
position_ids = cumsum(mask) - 1 (1 where masked), greedy argmax, left padding for batches."""
import json

import numpy as np
import onnxruntime as ort
from safetensors import safe_open

ATOL = 1e-4


def ort_runner(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in s.get_inputs()}
    outs = [o.name for o in s.get_outputs()]
    past_names = [n for n in ins if n.startswith("past_key_values.")]
    shapes = {n: ins[n].shape for n in past_names}
    int_dt = np.int32 if ins["input_ids"].type == "tensor(int32)" else np.int64

    def empty_past(batch):
        return {n: np.zeros((batch, shapes[n][1], 0, shapes[n][3]), np.float32) for n in past_names}

    def step(ids, mask, pos, past):
        feed = {"input_ids": ids.astype(int_dt), "attention_mask": mask.astype(int_dt)}
        if "position_ids" in ins:
            feed["position_ids"] = pos.astype(int_dt)
        feed.update(past if past is not None else empty_past(ids.shape[0]))
        r = dict(zip(outs, s.run(None, feed)))
        present = {k.replace("present", "past_key_values", 1): v for k, v in r.items() if k.startswith("present")}
        return r["logits"], present

    return step


def positions(mask):
    pos = np.cumsum(mask, 1) - 1
    pos[mask == 0] = 1
    return pos.astype(np.int64)


def goldens(fixture_dir):
    f = safe_open(fixture_dir + "/golden.safetensors", "np")
    meta = f.metadata()
    g = {"ids": f.get_tensor("input.input_ids"), "mask": f.get_tensor("input.attention_mask"),
         "logits": f.get_tensor("output.logits")}
    if "greedy" in meta:
        g["greedy"] = json.loads(meta["greedy"])
        g["batch_greedy"] = json.loads(meta["batch_greedy"])
        g["step_logits"] = np.array(json.loads(meta["step_logits"]), np.float32)
    else:  # gpt2-lm / llama-lm: one prompt, greedy_prompt_ids + greedy_output_ids
        g["greedy"] = [{"prompt_ids": json.loads(meta["greedy_prompt_ids"]),
                        "output_ids": json.loads(meta["greedy_output_ids"])}]
    return g


def greedy(step, prompts, new_tokens, pad_id=0, record_steps=0):
    """Left-padded greedy generation of prompts (lists of ids); returns (new ids per row, step logits of row 0)."""
    b, n = len(prompts), max(len(p) for p in prompts)
    ids = np.full((b, n), pad_id, np.int64)
    mask = np.zeros((b, n), np.int64)
    for r, p in enumerate(prompts):
        ids[r, n - len(p):] = p
        mask[r, n - len(p):] = 1
    logits, past = step(ids, mask, positions(mask), None)
    out, steps = [[] for _ in prompts], []
    for t in range(new_tokens):
        last = logits[:, -1]
        if t < record_steps:
            steps.append(last[0].copy())
        nxt = last.argmax(-1)
        for r in range(b):
            out[r].append(int(nxt[r]))
        if t + 1 == new_tokens:
            break
        mask = np.concatenate([mask, np.ones((b, 1), np.int64)], 1)
        logits, past = step(nxt[:, None].astype(np.int64), mask, positions(mask)[:, -1:], past)
    return out, steps


def check_fixture(tally, label, step, fixture_dir):
    """Prefill logits, every greedy golden, the left-padded batch and the step logits."""
    g = goldens(fixture_dir)
    mask = g["mask"]
    logits, present = step(g["ids"], mask, positions(mask), None)
    err = float(np.abs(logits - g["logits"])[mask.astype(bool)].max())
    tally.check(err <= ATOL, f"{label}: prefill logits", f"max abs err {err:.2e}")
    k0 = present["past_key_values.0.key"]
    tally.check(k0.shape[0] == mask.shape[0] and k0.shape[2] == mask.shape[1], f"{label}: present shape",
                str(k0.shape))
    for i, gr in enumerate(g["greedy"]):
        p = gr["prompt_ids"]
        want = gr["output_ids"][len(p):]
        got, steps = greedy(step, [p], len(want), record_steps=4 if i == 0 else 0)
        tally.check(got[0] == want, f"{label}: greedy[{i}] {len(want)} tokens with the cache",
                    "" if got[0] == want else f"got {got[0]} want {want}")
        if i == 0 and "step_logits" in g:
            se = float(np.abs(np.stack(steps) - g["step_logits"]).max())
            tally.check(se <= ATOL, f"{label}: step logits (4 greedy steps)", f"max abs err {se:.2e}")
    if "batch_greedy" in g:
        bg = g["batch_greedy"]
        want = bg["output_ids"]
        got, _ = greedy(step, bg["prompt_ids"], len(want[0]))
        tally.check(got == want, f"{label}: left-padded batch of {len(want)} x {len(want[0])} greedy tokens",
                    "" if got == want else f"got {got} want {want}")
