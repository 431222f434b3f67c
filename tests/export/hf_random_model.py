"""Random-weight Hugging Face encoder directories, written the way transformers'
save_pretrained lays them out (config.json with the class's keys, model.safetensors
with the module tree's tensor names, tokenizer_config.json with model_input_names).

Used by tests/export/test_export_configs.py (small models) and bench/export_bench.py
(bert-base / bert-large sizes). numpy + safetensors only: no torch, no transformers.
"""
import json
import os

import numpy as np
from safetensors.numpy import save_file

FAMILY_PREFIX = {"bert": "bert.", "roberta": "roberta.", "xlm-roberta": "roberta.",
                 "distilbert": "distilbert.", "electra": "electra."}


def default_config(model_type, **kw):
    """A config dict with every key the config class writes (small sizes by default)."""
    if model_type == "distilbert":
        c = {"model_type": "distilbert", "vocab_size": 120, "dim": 32, "n_layers": 2, "n_heads": 4,
             "hidden_dim": 64, "activation": "gelu", "max_position_embeddings": 40, "dropout": 0.1,
             "attention_dropout": 0.1, "sinusoidal_pos_embds": False, "pad_token_id": 0,
             "initializer_range": 0.02, "qa_dropout": 0.1, "seq_classif_dropout": 0.2}
    else:
        c = {"model_type": model_type, "vocab_size": 120, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
             "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 40,
             "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
             "pad_token_id": 1 if model_type in ("roberta", "xlm-roberta") else 0,
             "position_embedding_type": "absolute", "use_cache": True, "classifier_dropout": None}
        if model_type in ("roberta", "xlm-roberta"):
            c.update(bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                     max_position_embeddings=c["max_position_embeddings"] + 2)
        if model_type == "electra":
            c.update(embedding_size=16, summary_type="first", summary_use_proj=True,
                     summary_activation="gelu", summary_last_dropout=0.1)
    c.update(kw)
    c.setdefault("transformers_version", "4.46.0")
    return c


def _dims(c):
    if c["model_type"] == "distilbert":
        return c["dim"], c["hidden_dim"], c["n_layers"], c["dim"], 0
    return (c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
            c.get("embedding_size", c["hidden_size"]) if c["model_type"] == "electra" else c["hidden_size"],
            c["type_vocab_size"])


def random_weights(c, arch, rng, dtype=np.float32, scale=0.1):
    """name -> array for architecture arch ("BertModel", "RobertaForSequenceClassification", ...)."""
    mt = c["model_type"]
    H, I, L, E, T = _dims(c)
    base = arch.endswith("Model")
    P = "" if base else FAMILY_PREFIX[mt]
    w = {}

    def lin(name, out, inp):
        w[name + ".weight"] = (rng.standard_normal((out, inp)) * scale).astype(dtype)
        w[name + ".bias"] = (rng.standard_normal(out) * scale).astype(dtype)

    def ln(name, n):
        w[name + ".weight"] = (1.0 + rng.standard_normal(n) * 0.1).astype(dtype)
        w[name + ".bias"] = (rng.standard_normal(n) * 0.1).astype(dtype)

    w[P + "embeddings.word_embeddings.weight"] = (rng.standard_normal((c["vocab_size"], E)) * 0.5).astype(dtype)
    w[P + "embeddings.position_embeddings.weight"] = (
        rng.standard_normal((c["max_position_embeddings"], E)) * 0.5).astype(dtype)
    if mt != "distilbert" and T > 0:
        w[P + "embeddings.token_type_embeddings.weight"] = (rng.standard_normal((T, E)) * 0.5).astype(dtype)
    ln(P + "embeddings.LayerNorm", E)
    if mt == "electra" and E != H:
        lin(P + "embeddings_project", H, E)
    for i in range(L):
        if mt == "distilbert":
            p = f"{P}transformer.layer.{i}."
            for m in ("q_lin", "k_lin", "v_lin", "out_lin"):
                lin(p + "attention." + m, H, H)
            ln(p + "sa_layer_norm", H)
            lin(p + "ffn.lin1", I, H)
            lin(p + "ffn.lin2", H, I)
            ln(p + "output_layer_norm", H)
        else:
            p = f"{P}encoder.layer.{i}."
            for m in ("query", "key", "value"):
                lin(p + "attention.self." + m, H, H)
            lin(p + "attention.output.dense", H, H)
            ln(p + "attention.output.LayerNorm", H)
            lin(p + "intermediate.dense", I, H)
            lin(p + "output.dense", H, I)
            ln(p + "output.LayerNorm", H)
    nl = c.get("num_labels", len(c.get("id2label", {})) or 2)
    if mt in ("bert",) and (base or arch.endswith("SequenceClassification")):
        lin(P + "pooler.dense", H, H)
    if arch.endswith("SequenceClassification"):
        if mt == "bert":
            lin("classifier", nl, H)
        elif mt == "distilbert":
            lin("pre_classifier", H, H)
            lin("classifier", nl, H)
        else:  # roberta, xlm-roberta, electra
            lin("classifier.dense", H, H)
            lin("classifier.out_proj", nl, H)
    elif arch.endswith("TokenClassification"):
        lin("classifier", nl, H)
    elif arch.endswith("QuestionAnswering"):
        lin("qa_outputs", 2, H)
    elif arch == "ElectraForPreTraining":
        lin("discriminator_predictions.dense", H, H)
        lin("discriminator_predictions.dense_prediction", 1, H)
    return w


def write_model(path, model_type, arch, seed=0, input_names=None, weights_dtype=np.float32, labels=None,
                weight_scale=0.1, **config):
    """Write a model directory and return (config dict, weights dict)."""
    os.makedirs(path, exist_ok=True)
    c = default_config(model_type, **config)
    c["architectures"] = [arch]
    if labels is not None:
        c["id2label"] = {str(i): f"LABEL_{i}" for i in range(labels)}
        c["label2id"] = {f"LABEL_{i}": i for i in range(labels)}
    rng = np.random.default_rng(seed)
    w = random_weights(c, arch, rng, weights_dtype, weight_scale)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    save_file(w, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    if input_names is not None:
        with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
            json.dump({"model_input_names": input_names, "model_max_length": 512}, f)
    return c, w
