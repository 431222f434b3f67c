/* llama-family GGUF files (llama.cpp's convert_hf_to_gguf layout) for the decoder
 * exporter: the spec from the metadata ({arch}.block_count, ...), and each HF
 * tensor name served from its GGUF tensor (token_embd, blk.N.attn_q, ...),
 * dequantized to float32 at load. GGUF dims are torch's reversed (dims[0] is the
 * row length), so an (out, in) weight has the same bytes order in both.
 *
 * llama.cpp's converter permutes the rows of q_proj and k_proj of "llama"
 * models for its rope kernel: within each head of D rows, HF row a*(D/2) + b
 * (a in {0, 1}: the two rotated halves) is stored as row 2*b + a. The inverse
 * is applied here so the graph keeps transformers' rotate_half layout. */
#define _GNU_SOURCE
#include "export/decoder_spec.h"
#include "export/weights.h"
#include "gguf/gguf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/decoder_gguf.h"

bool td_xw_gguf_name(const char *hf, char *out, size_t n) {
    static const struct {
        const char *hf, *gg;
    } top[] = {{"model.embed_tokens.weight", "token_embd.weight"},
               {"model.norm.weight", "output_norm.weight"},
               {"lm_head.weight", "output.weight"}},
      layer[] = {{"input_layernorm.weight", "attn_norm.weight"},
                 {"self_attn.q_proj.weight", "attn_q.weight"},
                 {"self_attn.q_proj.bias", "attn_q.bias"},
                 {"self_attn.k_proj.weight", "attn_k.weight"},
                 {"self_attn.k_proj.bias", "attn_k.bias"},
                 {"self_attn.v_proj.weight", "attn_v.weight"},
                 {"self_attn.v_proj.bias", "attn_v.bias"},
                 {"self_attn.o_proj.weight", "attn_output.weight"},
                 {"self_attn.o_proj.bias", "attn_output.bias"},
                 {"post_attention_layernorm.weight", "ffn_norm.weight"},
                 {"mlp.gate_proj.weight", "ffn_gate.weight"},
                 {"mlp.up_proj.weight", "ffn_up.weight"},
                 {"mlp.down_proj.weight", "ffn_down.weight"}};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (!strcmp(hf, top[i].hf)) {
            snprintf(out, n, "%s", top[i].gg);
            return true;
        }
    unsigned layer_i;
    int used = 0;
    if (sscanf(hf, "model.layers.%u.%n", &layer_i, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++)
            if (!strcmp(hf + used, layer[i].hf)) {
                snprintf(out, n, "blk.%u.%s", layer_i, layer[i].gg);
                return true;
            }
    return false;
}

/* Rows (heads x D) x cols stored with llama.cpp's rope permutation -> HF order. */
static void unpermute_rows(const float *src, float *dst, int64_t heads, int64_t d, int64_t cols) {
    int64_t half = d / 2;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t a = 0; a < 2; a++)
            for (int64_t b = 0; b < half; b++)
                memcpy(dst + (h * d + a * half + b) * cols, src + (h * d + 2 * b + a) * cols,
                       (size_t)cols * sizeof *dst);
}

td_value *td_xw_gguf_param(td_xw *w, td_dtype dtype, int rank, const int64_t *dims, const char *name) {
    td_eb *b = w->b;
    const td_gguf *f = w->gguf->f;
    char gg[160];
    const td_gguf_tensor *t = td_xw_gguf_name(name, gg, sizeof gg) ? td_gguf_tensor_find(f, gg) : NULL;
    if (!t) {
        td_eb_fail(b, td_fail(b->ctx, TD_ERR_NOT_FOUND, "%s: tensor '%s' (for %s) is missing from the GGUF file",
                              f->path, td_xw_gguf_name(name, gg, sizeof gg) ? gg : "?", name));
        return NULL;
    }
    bool same = t->n_dims == rank && dtype == TD_F32;
    for (int i = 0; same && i < rank; i++)
        same = t->dims[rank - 1 - i] == dims[i];
    if (!same) {
        char want[128] = "", got[128] = "";
        for (int i = 0; i < rank; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)dims[i]);
        for (int i = t->n_dims; i-- > 0;)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i + 1 < t->n_dims ? ", " : "",
                     (long long)t->dims[i]);
        td_eb_fail(b, td_fail(b->ctx, TD_ERR_SHAPE, "%s: tensor '%s' has shape (%s) but the metadata implies (%s)",
                              f->path, gg, got, want));
        return NULL;
    }
    size_t n = (size_t)t->numel;
    float *buf = malloc(n * sizeof *buf), *tmp = NULL;
    td_status s = buf ? td_gguf_dequantize(b->ctx, t, buf) : td_fail_oom(b->ctx, n * sizeof *buf, gg);
    bool is_q = strstr(name, "q_proj") != NULL, is_k = strstr(name, "k_proj") != NULL;
    if (s == TD_OK && w->gguf->unpermute && (is_q || is_k)) {
        int64_t heads = is_q ? w->gguf->heads : w->gguf->kv_heads;
        int64_t rows = dims[0], cols = rank == 2 ? dims[1] : 1;
        if (rows % heads != 0 || (rows / heads) % 2 != 0)
            s = td_fail(b->ctx, TD_ERR_SHAPE, "%s: '%s' has %lld rows, not %lld heads of an even size", f->path, gg,
                        (long long)rows, (long long)heads);
        else if (!(tmp = malloc(n * sizeof *tmp)))
            s = td_fail_oom(b->ctx, n * sizeof *tmp, gg);
        else {
            unpermute_rows(buf, tmp, heads, rows / heads, cols);
            free(buf);
            buf = tmp;
        }
    }
    td_tensor *tensor = NULL;
    if (s == TD_OK)
        s = td_tensor_new_owned(b->ctx, name, TD_F32, rank, dims, buf, n * sizeof *buf, &tensor);
    else
        free(buf);
    if (s != TD_OK) {
        td_eb_fail(b, s);
        return NULL;
    }
    w->bytes += tensor->nbytes;
    return td_eb_initializer(b, tensor);
}

/* ---------------- spec ---------------- */

static td_status key_int(td_ctx *ctx, const td_gguf *f, const char *arch, const char *key, int64_t dflt, int64_t lo,
                         int64_t hi, int64_t *out) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    if (!td_gguf_find(f, k) && dflt >= 0) {
        *out = dflt;
        return TD_OK;
    }
    TD_TRY(td_gguf_get_int(ctx, f, k, out));
    if (*out < lo || *out > hi)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: %s is %lld (expected %lld..%lld)", f->path, k, (long long)*out,
                       (long long)lo, (long long)hi);
    return TD_OK;
}

static td_status key_float(td_ctx *ctx, const td_gguf *f, const char *arch, const char *key, double dflt,
                           double *out) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    if (!td_gguf_find(f, k)) {
        *out = dflt;
        return TD_OK;
    }
    return td_gguf_get_float(ctx, f, k, out);
}

static void token_id(const td_gguf *f, const char *key, int64_t *out) {
    td_ctx quiet = {0};
    if (td_gguf_get_int(&quiet, f, key, out) != TD_OK)
        *out = -1;
}

static td_status from_metadata(td_ctx *ctx, td_gguf *f, td_decoder_spec *s) {
    char *arch = NULL;
    TD_TRY(td_gguf_get_string(ctx, f, "general.architecture", &arch));
    td_status st = TD_OK;
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0) {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: GGUF architecture \"%.32s\" is not supported (supported: llama, "
                     "qwen2)", f->path, arch);
        free(arch);
        return st;
    }
    s->layout = TD_DEC_LLAMA;
    s->gguf_unpermute = !strcmp(arch, "llama");
    snprintf(s->model_type, sizeof s->model_type, "%s", arch);
    snprintf(s->architecture, sizeof s->architecture, "%s", !strcmp(arch, "llama") ? "LlamaForCausalLM"
                                                                                      : "Qwen2ForCausalLM");
    snprintf(s->prefix, sizeof s->prefix, "model.");
    snprintf(s->hidden_act, sizeof s->hidden_act, "silu");
    s->has_lm_head = true;
    const int64_t big = 1ll << 26;
    double eps = 1e-6, theta = 10000;
    if ((st = key_int(ctx, f, arch, "block_count", -1, 1, 4096, &s->layers)) == TD_OK &&
        (st = key_int(ctx, f, arch, "embedding_length", -1, 1, 1 << 20, &s->hidden)) == TD_OK &&
        (st = key_int(ctx, f, arch, "feed_forward_length", -1, 1, 1 << 22, &s->intermediate)) == TD_OK &&
        (st = key_int(ctx, f, arch, "attention.head_count", -1, 1, 4096, &s->heads)) == TD_OK &&
        (st = key_int(ctx, f, arch, "attention.head_count_kv", s->heads, 1, s->heads, &s->kv_heads)) == TD_OK &&
        (st = key_int(ctx, f, arch, "context_length", 2048, 1, big, &s->max_positions)) == TD_OK &&
        (st = key_float(ctx, f, arch, "attention.layer_norm_rms_epsilon", 1e-6, &eps)) == TD_OK &&
        (st = key_float(ctx, f, arch, "rope.freq_base", 10000, &theta)) == TD_OK) {
        if (s->hidden % s->heads != 0 || s->heads % s->kv_heads != 0)
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: embedding_length %lld, head_count %lld and head_count_kv %lld do "
                         "not divide", f->path, (long long)s->hidden, (long long)s->heads, (long long)s->kv_heads);
    }
    if (st == TD_OK)
        st = key_int(ctx, f, arch, "attention.key_length", s->hidden / s->heads, 1, 1 << 16, &s->head_dim);
    if (st == TD_OK)
        st = key_int(ctx, f, arch, "rope.dimension_count", s->head_dim, 1, s->head_dim, &s->rotary_dim);
    s->norm_eps = (float)eps;
    char k[128];
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
    char *scaling = NULL;
    if (st == TD_OK && td_gguf_find(f, k))
        st = td_gguf_get_string(ctx, f, k, &scaling);
    cJSON *rs = NULL;
    if (st == TD_OK && scaling && strcmp(scaling, "none") != 0) {
        double factor = 1;
        if (strcmp(scaling, "linear") != 0)
            st = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: rope scaling \"%.32s\" is not supported (none, linear)",
                         f->path, scaling);
        else if ((st = key_float(ctx, f, arch, "rope.scaling.factor", 1, &factor)) == TD_OK) {
            rs = cJSON_CreateObject();
            if (!rs || !cJSON_AddStringToObject(rs, "rope_type", "linear") ||
                !cJSON_AddNumberToObject(rs, "factor", factor))
                st = td_fail_oom(ctx, 64, "rope scaling");
        }
    }
    if (st == TD_OK && td_gguf_tensor_find(f, "rope_freqs.weight"))
        st = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: per-frequency rope factors (rope_freqs.weight, Llama-3.1 style) "
                     "are not supported", f->path);
    if (st == TD_OK)
        st = td_decoder_rope(ctx, f->path, theta, rs, s);
    cJSON_Delete(rs);
    free(scaling);
    free(arch);
    if (st != TD_OK)
        return st;
    const td_gguf_tensor *emb = td_gguf_tensor_find(f, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return td_fail(ctx, TD_ERR_NOT_FOUND, "%s: token_embd.weight (2-D) is missing", f->path);
    s->vocab = emb->dims[1];
    s->lm_head_tied = !td_gguf_tensor_find(f, "output.weight");
    s->qkv_bias = td_gguf_tensor_find(f, "blk.0.attn_q.bias") != NULL;
    s->o_bias = td_gguf_tensor_find(f, "blk.0.attn_output.bias") != NULL;
    token_id(f, "tokenizer.ggml.bos_token_id", &s->bos_token_id);
    token_id(f, "tokenizer.ggml.padding_token_id", &s->pad_token_id);
    int64_t eos = -1;
    token_id(f, "tokenizer.ggml.eos_token_id", &eos);
    if (eos >= 0) {
        s->eos_token_ids[0] = eos;
        s->n_eos_token_ids = 1;
    }
    return TD_OK;
}

td_status td_decoder_spec_from_gguf(td_ctx *ctx, const char *path, td_decoder_spec *s) {
    memset(s, 0, sizeof *s);
    TD_TRY(td_gguf_open(ctx, path, &s->gguf));
    td_status st = from_metadata(ctx, s->gguf, s);
    if (st != TD_OK)
        td_decoder_spec_free(s);
    return st;
}

/* The td_xw source for a spec made from a GGUF file (static storage per call site is not needed: the caller keeps
 * it beside the td_xw). */
struct td_xw_gguf *td_xw_gguf_new(const td_decoder_spec *s) {
    struct td_xw_gguf *g = calloc(1, sizeof *g);
    if (g) {
        g->f = s->gguf;
        g->heads = s->heads;
        g->kv_heads = s->kv_heads;
        g->unpermute = s->gguf_unpermute;
    }
    return g;
}
