"""Independent numpy forward pass of BERT / RoBERTa / DistilBERT / ELECTRA encoders
and their heads, written from the published math (transformers' module
semantics), in float64, to check the exporter's ONNX graphs.

forward(config, weights, arch, input_ids, attention_mask, token_type_ids=None,
        task=None, pooling=None, normalize=False) -> dict of outputs.
"""
import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def erf(x):
    """Exact erf elementwise (math.erf; numpy has none and scipy is not a dependency)."""
    return _erf(x)


def activation(name, x):
    if name in ("gelu", "gelu_python"):
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate"):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "gelu_10":
        return np.clip(activation("gelu", x), -10, 10)
    if name == "quick_gelu":
        return x / (1.0 + np.exp(-1.702 * x))
    if name in ("silu", "swish"):
        return x / (1.0 + np.exp(-x))
    if name == "relu":
        return np.maximum(x, 0)
    if name == "relu6":
        return np.clip(x, 0, 6)
    if name == "relu2":
        return np.maximum(x, 0) ** 2
    if name == "leaky_relu":
        return np.where(x >= 0, x, 0.01 * x)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "mish":
        return x * np.tanh(np.log1p(np.exp(x)))
    if name == "linear":
        return x
    if name == "laplace":
        return 0.5 * (1.0 + erf((x - 0.707107) / (0.282095 * math.sqrt(2.0))))
    raise ValueError(name)


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


class _W:
    def __init__(self, weights, prefix):
        self.w = weights  # converted to float64 on use (embedding tables: only the rows used)
        self.p = prefix

    def __call__(self, name, enc=True):
        return np.asarray(self.w[(self.p if enc else "") + name], dtype=np.float64)

    def rows(self, name, idx):
        return np.asarray(self.w[self.p + name][idx], dtype=np.float64)

    def linear(self, x, name, enc=True):
        return x @ self(name + ".weight", enc).T + self(name + ".bias", enc)


def _prefix(weights, model_type):
    fam = {"bert": "bert.", "roberta": "roberta.", "xlm-roberta": "roberta.", "distilbert": "distilbert.",
           "electra": "electra."}[model_type]
    return fam if fam + "embeddings.word_embeddings.weight" in weights else ""


def encoder(c, weights, ids, mask, tt=None):
    mt = c["model_type"]
    W = _W(weights, _prefix(weights, mt))
    B, S = ids.shape
    if mt == "distilbert":
        H, heads, L, act, eps = c["dim"], c["n_heads"], c["n_layers"], c["activation"], 1e-12
    else:
        H, heads, L = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
        act, eps = c.get("hidden_act", "gelu"), c.get("layer_norm_eps", 1e-12)
    x = W.rows("embeddings.word_embeddings.weight", ids)
    if mt in ("roberta", "xlm-roberta"):
        pad = c["pad_token_id"]
        real = (ids != pad).astype(np.int64)
        pos = np.cumsum(real, axis=1) * real + pad
    else:
        pos = np.broadcast_to(np.arange(S), (B, S))
    x = x + W.rows("embeddings.position_embeddings.weight", pos)
    if mt != "distilbert" and c.get("type_vocab_size", 2) > 0:
        t = tt if tt is not None else np.zeros_like(ids)
        x = x + W.rows("embeddings.token_type_embeddings.weight", t)
    x = layer_norm(x, W("embeddings.LayerNorm.weight"), W("embeddings.LayerNorm.bias"), eps)
    if mt == "electra" and c.get("embedding_size", H) != H:
        x = W.linear(x, "embeddings_project")
    d = H // heads
    neg = np.where(mask[:, None, None, :] > 0, 0.0, -1e30)
    for i in range(L):
        if mt == "distilbert":
            p = f"transformer.layer.{i}."
            names = ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm",
                     "ffn.lin1", "ffn.lin2", "output_layer_norm")
        else:
            p = f"encoder.layer.{i}."
            names = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                     "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")
        q, k, v = (W.linear(x, p + n).reshape(B, S, heads, d).transpose(0, 2, 1, 3) for n in names[:3])
        probs = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + neg)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(B, S, H)
        a = W.linear(ctx, p + names[3])
        x = layer_norm(a + x, W(p + names[4] + ".weight"), W(p + names[4] + ".bias"), eps)
        f = W.linear(activation(act, W.linear(x, p + names[5])), p + names[6])
        x = layer_norm(f + x, W(p + names[7] + ".weight"), W(p + names[7] + ".bias"), eps)
    return x, W


def forward(c, weights, arch, ids, mask, tt=None, task=None, pooling=None, normalize=False):
    """Outputs of the model for task ('feature-extraction', 'classification', ...)."""
    h, W = encoder(c, weights, ids, mask, tt)
    mt = c["model_type"]
    out = {}
    if task == "feature-extraction":
        out["last_hidden_state"] = h
        if W.p + "pooler.dense.weight" in W.w:
            out["pooler_output"] = np.tanh(W.linear(h[:, 0], "pooler.dense"))
    elif task == "embedding":
        m = mask[:, :, None].astype(np.float64)
        parts = []
        for mode in pooling:
            if mode == "cls":
                parts.append(h[:, 0])
            elif mode == "max":
                parts.append(np.where(m > 0, h, -1e9).max(1))
            elif mode == "mean":
                parts.append((h * m).sum(1) / np.maximum(m.sum(1), 1e-9))
            elif mode == "mean_sqrt_len":
                parts.append((h * m).sum(1) / np.sqrt(np.maximum(m.sum(1), 1e-9)))
        e = np.concatenate(parts, axis=1)
        if normalize:
            e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        out["sentence_embedding"] = e
    elif task == "classification":
        first = h[:, 0]
        if mt == "bert":
            logits = W.linear(np.tanh(W.linear(first, "pooler.dense")), "classifier", enc=False)
        elif mt == "distilbert":
            logits = W.linear(np.maximum(W.linear(first, "pre_classifier", enc=False), 0), "classifier", enc=False)
        elif mt == "electra":
            logits = W.linear(activation("gelu", W.linear(first, "classifier.dense", enc=False)),
                              "classifier.out_proj", enc=False)
        else:
            logits = W.linear(np.tanh(W.linear(first, "classifier.dense", enc=False)), "classifier.out_proj",
                              enc=False)
        out["logits"] = logits
    elif task == "token-classification":
        if arch == "ElectraForPreTraining":
            x = activation(c.get("hidden_act", "gelu"), W.linear(h, "discriminator_predictions.dense", enc=False))
            out["logits"] = W.linear(x, "discriminator_predictions.dense_prediction", enc=False)[..., 0]
        else:
            out["logits"] = W.linear(h, "classifier", enc=False)
    elif task == "question-answering":
        x = W.linear(h, "qa_outputs", enc=False)
        out["start_logits"], out["end_logits"] = x[..., 0], x[..., 1]
    else:
        raise ValueError(task)
    return out
