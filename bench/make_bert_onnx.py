#!/usr/bin/env python3
"""Write a random-weight BERT encoder as an ONNX graph in the style PyTorch's TorchScript exporter writes
(opset 17: MatMul + bias Add, shapes computed with Shape/Gather/Unsqueeze/Concat, erf GELU, LayerNormalization,
attention mask from attention_mask through Unsqueeze/Cast/Sub/Mul, or with --mask bool through Cast to bool and
Where), for optimizer benchmarks and tests.

    python3 bench/make_bert_onnx.py --size bert-large --out model.onnx [--layers N] [--seed 0]

Sizes as bench/make_model.py (plus bert-tiny, 2/64/4/256, for tests): bert-base (12/768/12/3072), bert-large (24/1024/16/4096); vocab 30522, 512
positions. Weights ~ N(0, 0.02) (fixed seed), LayerNorm gamma 1 / beta 0, biases 0."""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZES = {"bert-tiny": (2, 64, 4, 256), "bert-base": (12, 768, 12, 3072), "bert-large": (24, 1024, 16, 4096)}


def build(size, layers=None, seed=0, vocab=30522, max_pos=512, mask="sub-mul"):
    n_layers, hidden, heads, ffn = SIZES[size]
    n_layers = layers or n_layers
    hd = hidden // heads
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    cnt = [0]

    def w(name, *shape, kind="normal"):
        if kind == "normal":
            a = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
        else:
            a = np.full(shape, 1.0 if kind == "ones" else 0.0, np.float32)
        inits.append(numpy_helper.from_array(a, name))
        return name

    def c(value, dtype=np.int64):
        cnt[0] += 1
        name = f"const_{cnt[0]}"
        nodes.append(helper.make_node("Constant", [], [name],
                                      value=numpy_helper.from_array(np.array(value, dtype=dtype))))
        return name

    def node(op, ins, **attrs):
        cnt[0] += 1
        out = f"{op}_{cnt[0]}"
        nodes.append(helper.make_node(op, ins, [out], name=f"/{op}_{cnt[0]}", **attrs))
        return out

    ids, tt, am = "input_ids", "token_type_ids", "attention_mask"
    seq = node("Gather", [node("Shape", [ids]), c(1)], axis=0)
    pos = node("Slice", ["position_ids_buffer", c([0]), node("Unsqueeze", [seq, c([0])]), c([1]), c([1])])
    inits.append(numpy_helper.from_array(np.arange(max_pos, dtype=np.int64).reshape(1, max_pos), "position_ids_buffer"))
    e = node("Add", [node("Gather", [w("word_embeddings", vocab, hidden), ids]),
                     node("Gather", [w("token_type_embeddings", 2, hidden), tt])])
    e = node("Add", [e, node("Gather", [w("position_embeddings", max_pos, hidden), pos])])
    x = node("LayerNormalization", [e, w("emb_ln_g", hidden, kind="ones"), w("emb_ln_b", hidden, kind="zeros")],
             axis=-1, epsilon=1e-12)
    m = node("Unsqueeze", [node("Unsqueeze", [am, c([1])]), c([2])])
    if mask == "sub-mul":  # additive (batch, 1, 1, seq): (1 - mask) * -10000, as older transformers export it
        m = node("Mul", [node("Sub", [c(1.0, np.float32), node("Cast", [m], to=TensorProto.FLOAT)]),
                         c(-10000.0, np.float32)])
    else:  # "bool": Where(bool mask, 0, -10000), broadcast over query positions
        m = node("Where", [node("Cast", [m], to=TensorProto.BOOL), c(0.0, np.float32), c(-10000.0, np.float32)])
    for L in range(n_layers):
        p = f"l{L}."
        b = node("Gather", [node("Shape", [x]), c(0)], axis=0)
        s = node("Gather", [node("Shape", [x]), c(1)], axis=0)
        heads_shape = node("Concat", [node("Unsqueeze", [b, c([0])]), node("Unsqueeze", [s, c([0])]),
                                      c([heads]), c([hd])], axis=0)

        def proj(name):
            y = node("Add", [w(p + name + ".bias", hidden, kind="zeros"),
                             node("MatMul", [x, w(p + name + ".weight", hidden, hidden)])])
            return node("Reshape", [y, heads_shape])

        q = node("Transpose", [proj("q")], perm=[0, 2, 1, 3])
        k = node("Transpose", [proj("k")], perm=[0, 2, 3, 1])
        v = node("Transpose", [proj("v")], perm=[0, 2, 1, 3])
        sc = node("Div", [node("MatMul", [q, k]), c(float(np.sqrt(hd)), np.float32)])
        pr = node("Softmax", [node("Add", [sc, m])], axis=-1)
        ctx = node("Transpose", [node("MatMul", [pr, v])], perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, node("Concat", [node("Unsqueeze", [b, c([0])]), node("Unsqueeze", [s, c([0])]),
                                                    c([hidden])], axis=0)])
        ao = node("Add", [w(p + "o.bias", hidden, kind="zeros"), node("MatMul", [ctx, w(p + "o.weight", hidden, hidden)])])
        x = node("LayerNormalization", [node("Add", [ao, x]), w(p + "ln1.g", hidden, kind="ones"),
                                        w(p + "ln1.b", hidden, kind="zeros")], axis=-1, epsilon=1e-12)
        h = node("Add", [w(p + "ffn1.bias", ffn, kind="zeros"), node("MatMul", [x, w(p + "ffn1.weight", hidden, ffn)])])
        g = node("Mul", [node("Mul", [h, node("Add", [node("Erf", [node("Div", [h, c(1.4142135381698608, np.float32)])]),
                                                       c(1.0, np.float32)])]), c(0.5, np.float32)])
        f = node("Add", [w(p + "ffn2.bias", hidden, kind="zeros"), node("MatMul", [g, w(p + "ffn2.weight", ffn, hidden)])])
        x = node("LayerNormalization", [node("Add", [f, x]), w(p + "ln2.g", hidden, kind="ones"),
                                        w(p + "ln2.b", hidden, kind="zeros")], axis=-1, epsilon=1e-12)
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        nodes, "bert",
        [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in (ids, tt, am)],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [hidden])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="bert-large", choices=sorted(SIZES))
    ap.add_argument("--layers", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mask", default="sub-mul", choices=["sub-mul", "bool"])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    onnx.save(build(a.size, a.layers, a.seed, mask=a.mask), a.out)
