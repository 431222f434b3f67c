/* config.json of a Hugging Face model as one typed struct: the API the exporter
 * reads a model's hyper-parameters from.
 *
 *     td_hf_config *cfg;
 *     TD_TRY(td_hf_config_load(ctx, "/path/to/model_dir/config.json", &cfg));
 *     switch (cfg->family) { case TD_HF_BERT: ... cfg->hidden_size, cfg->enc.type_vocab_size ... }
 *     td_hf_config_free(cfg);
 *
 * Every family's own key names are mapped onto the common fields (gpt2's n_embd
 * and distilbert's dim both land in hidden_size, ...), and a key the file leaves
 * out gets the value transformers' config class would give it (BertConfig,
 * RobertaConfig, XLMRobertaConfig, DistilBertConfig, ElectraConfig, GPT2Config,
 * LlamaConfig, MistralConfig, Qwen2Config, Phi3Config). Values are checked: a string where a
 * number belongs, a negative or absurd size, hidden_size not divisible by the head
 * count, ... are TD_ERR_FORMAT naming the file and the key. An unknown model_type
 * is TD_ERR_UNSUPPORTED listing the supported ones. */
#ifndef TD_HF_CONFIG_H
#define TD_HF_CONFIG_H

#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

typedef enum td_hf_family {
    TD_HF_UNKNOWN = 0,
    TD_HF_BERT,        /* model_type "bert" */
    TD_HF_ROBERTA,     /* "roberta" */
    TD_HF_XLM_ROBERTA, /* "xlm-roberta" */
    TD_HF_DISTILBERT,  /* "distilbert" */
    TD_HF_ELECTRA,     /* "electra" */
    TD_HF_GPT2,        /* "gpt2" */
    TD_HF_LLAMA,       /* "llama" */
    TD_HF_MISTRAL,     /* "mistral" */
    TD_HF_QWEN2,       /* "qwen2" */
    TD_HF_PHI3,        /* "phi3" */
    TD_HF_FAMILY_COUNT
} td_hf_family;

/* "bert", "xlm-roberta", ... (the model_type spelling); "unknown" otherwise. */
const char *td_hf_family_name(td_hf_family f);
/* Encoder families (bidirectional, LayerNorm, absolute positions) vs decoders. */
bool td_hf_family_is_encoder(td_hf_family f);

#define TD_HF_MAX_EOS 16

typedef struct td_hf_label {
    int64_t id;
    char *label;
} td_hf_label;

typedef struct td_hf_config {
    td_hf_family family;
    char *path;                 /* the config.json read */
    char *model_type;           /* as written in the file */
    char **architectures;       /* "BertForSequenceClassification", ...; may be empty */
    size_t n_architectures;

    /* ---- common fields (every family, names normalized to BERT's) ---- */
    int64_t vocab_size;
    int64_t hidden_size;             /* gpt2 n_embd, distilbert dim */
    int64_t num_hidden_layers;       /* gpt2 n_layer, distilbert n_layers */
    int64_t num_attention_heads;     /* gpt2 n_head, distilbert n_heads */
    int64_t intermediate_size;       /* gpt2 n_inner (null -> 4 * n_embd), distilbert hidden_dim */
    int64_t max_position_embeddings; /* gpt2 n_positions */
    char *hidden_act;                /* gpt2 activation_function, distilbert activation: "gelu", "gelu_new", "silu" */
    double norm_eps;                 /* layer_norm_eps / layer_norm_epsilon / rms_norm_eps; distilbert fixed 1e-12 */
    int64_t head_dim;                /* hidden_size / num_attention_heads unless the config sets head_dim */
    int64_t pad_token_id;            /* -1 when None */
    int64_t bos_token_id;            /* -1 when None */
    int64_t eos_token_ids[TD_HF_MAX_EOS]; /* eos_token_id may be an int or a list */
    size_t n_eos_token_ids;
    bool tie_word_embeddings;
    char *dtype;                     /* "dtype" or legacy "torch_dtype" ("float32", "bfloat16"); NULL if absent */

    /* ---- task head ---- */
    int64_t num_labels;              /* len(id2label) if given, else num_labels, else 2 (as transformers) */
    td_hf_label *id2label;           /* num_labels entries sorted by id ("LABEL_i" when the file has none) */
    bool has_id2label;               /* the file had an explicit id2label */
    char *problem_type;              /* NULL, "regression", "single_label_classification", ... */

    /* ---- encoders: bert, roberta, xlm-roberta, electra (and distilbert where noted) ---- */
    struct {
        int64_t type_vocab_size;         /* 0 for distilbert (no token types) */
        char *position_embedding_type;   /* "absolute" (default), "relative_key", "relative_key_query" */
        int64_t embedding_size;          /* electra: embedding width (projected to hidden when different);
                                          * others: == hidden_size */
        bool sinusoidal_pos_embds;       /* distilbert */
    } enc;

    /* ---- gpt2 ---- */
    struct {
        bool scale_attn_weights;
        bool scale_attn_by_inverse_layer_idx;
        bool reorder_and_upcast_attn;
    } gpt2;

    /* ---- decoders: llama, mistral, qwen2, phi3 ---- */
    struct {
        int64_t num_key_value_heads;
        double rope_theta;               /* rope_theta, or rope_parameters.rope_theta (transformers >= 5) */
        const struct cJSON *rope_scaling; /* raw "rope_scaling" (or "rope_parameters") object, NULL if absent; owned by json */
        bool qkv_bias;                   /* llama attention_bias; qwen2 always; mistral never */
        bool o_bias;                     /* llama attention_bias only */
        bool mlp_bias;                   /* llama mlp_bias */
        int64_t sliding_window;          /* 0 = full attention (mistral/phi3 sliding_window, qwen2 if use_sliding_window) */
        double partial_rotary_factor;    /* share of head_dim that rope rotates (phi3; 1.0 elsewhere) */
    } dec;

    struct cJSON *json; /* the whole parsed file, for keys not typed above; owned */
} td_hf_config;

/* Parse path (a config.json). *out owns everything; free with td_hf_config_free. */
td_status td_hf_config_load(td_ctx *ctx, const char *path, td_hf_config **out);
/* Parse config text already in memory; label names it in messages. */
td_status td_hf_config_parse(td_ctx *ctx, const char *text, size_t len, const char *label, td_hf_config **out);
void td_hf_config_free(td_hf_config *cfg); /* NULL is harmless */

/* Label of class id, NULL if id is not in id2label. */
const char *td_hf_config_label(const td_hf_config *cfg, int64_t id);

/* Comma-separated list of supported model_type values (for messages). */
const char *td_hf_supported_model_types(void);

#endif
