/* What the decoder exporter builds, derived from an opened model directory: the
 * layer layout (GPT-2 or the Llama family: Llama, Mistral, Qwen2, Phi-3), sizes,
 * biases, the rotary embedding's inverse frequencies (rope scaling applied), the
 * sliding window and the tensor name prefix. Everything the graph cannot express
 * (an unknown rope_type, a head that is not a causal LM, ...) is refused here by
 * name, before any graph is built. */
#ifndef TD_EXPORT_DECODER_SPEC_H
#define TD_EXPORT_DECODER_SPEC_H

#include "export/export.h"
#include "hf/model_dir.h"

typedef enum td_dec_layout {
    TD_DEC_GPT2,  /* LayerNorm, learned positions, Conv1D (in, out) weights, fused c_attn */
    TD_DEC_LLAMA, /* RMSNorm, rotary positions, SiLU-gated MLP, grouped-query attention */
} td_dec_layout;

typedef struct td_decoder_spec {
    td_dec_layout layout;
    char model_type[32];
    char architecture[96];   /* config.architectures[0] or "" */
    char prefix[32];         /* "transformer." / "model." or "" (a bare *Model checkpoint) */

    int64_t vocab, hidden, layers, heads, kv_heads, head_dim, intermediate, max_positions;
    float norm_eps;
    char hidden_act[32];

    bool qkv_bias, o_bias, mlp_bias; /* llama family */
    bool fused_qkv;          /* phi3: self_attn.qkv_proj holds q, k, v rows */
    bool fused_gate_up;      /* phi3: mlp.gate_up_proj holds gate then up rows */
    bool lm_head_tied;       /* logits from the input embedding (no lm_head.weight) */
    bool has_lm_head;        /* a *ForCausalLM / *LMHeadModel checkpoint */
    int64_t sliding_window;  /* 0 = full causal attention */

    /* gpt2 attention scaling */
    bool scale_attn_weights, scale_attn_by_inverse_layer_idx;

    /* rotary embedding (llama family): rotary_dim = head_dim * partial_rotary_factor (even);
     * inv_freq[rotary_dim / 2] with the config's rope scaling applied */
    int64_t rotary_dim;
    float *inv_freq;         /* malloc'd */
    char rope_type[24];      /* "default", "linear", "llama3" */

    /* generation defaults from config.json (for metadata and the runtime) */
    int64_t bos_token_id, pad_token_id;
    int64_t eos_token_ids[TD_HF_MAX_EOS];
    size_t n_eos_token_ids;

    td_model_dir *md;        /* owned; NULL for a GGUF file */
    struct td_gguf *gguf;    /* owned; the GGUF file the weights come from, else NULL */
    bool gguf_unpermute;     /* llama.cpp stored attn_q/attn_k rows permuted for its rope layout */
} td_decoder_spec;

/* True when model_dir's config is a decoder family this exporter builds. */
bool td_decoder_family(const td_hf_config *cfg);

/* Derive the spec from an opened directory (takes md on success and failure). */
td_status td_decoder_spec_from_dir(td_ctx *ctx, td_model_dir *md, td_decoder_spec *spec);
void td_decoder_spec_free(td_decoder_spec *spec);

struct cJSON;
/* s->inv_freq from theta and transformers' rope scaling object rs (NULL: default rope) for
 * s->rotary_dim / s->head_dim; path names the source in messages. */
td_status td_decoder_rope(td_ctx *ctx, const char *path, double theta, const struct cJSON *rs, td_decoder_spec *s);

/* A llama-family GGUF file (general.architecture llama or qwen2) as a spec; hyper-parameters from its
 * metadata (decoder_gguf.c). The spec owns the opened file. */
td_status td_decoder_spec_from_gguf(td_ctx *ctx, const char *path, td_decoder_spec *spec);
/* The weight source a td_xw reads a GGUF spec's tensors from (free() it; NULL when out of memory). */
struct td_xw_gguf *td_xw_gguf_new(const td_decoder_spec *spec);

/* Resolve the task for a decoder: AUTO and text-generation give
 * TD_TASK_TEXT_GENERATION; anything else is an error listing the possible task. */
td_status td_decoder_spec_task(td_ctx *ctx, const td_decoder_spec *spec, td_export_task requested,
                               td_export_task *out);

#endif
