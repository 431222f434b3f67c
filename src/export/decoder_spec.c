/* config.json + checkpoint -> td_decoder_spec (see decoder_spec.h). Defaults are
 * transformers' (the typed config already applies them); rope scaling follows
 * transformers' modeling_rope_utils for the types supported here. */
#define _GNU_SOURCE
#include "export/decoder_spec.h"

#include "export/builder.h"
#include "gguf/gguf.h"
#include "core/str.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool td_decoder_family(const td_hf_config *cfg) {
    return cfg && (cfg->family == TD_HF_GPT2 || cfg->family == TD_HF_LLAMA || cfg->family == TD_HF_MISTRAL ||
                   cfg->family == TD_HF_QWEN2 || cfg->family == TD_HF_PHI3);
}

/* A number from the rope scaling object, with a default; a non-number is an error naming the key. */
static td_status rope_num(td_ctx *ctx, const char *path, const cJSON *rs, const char *key, double dflt, double *out) {
    const cJSON *v = rs ? cJSON_GetObjectItemCaseSensitive(rs, key) : NULL;
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return TD_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: rope scaling \"%s\" must be a number", path, key);
    *out = v->valuedouble;
    return TD_OK;
}

td_status td_decoder_rope(td_ctx *ctx, const char *path, double theta, const cJSON *rs, td_decoder_spec *s) {
    if (s->rotary_dim < 2 || s->rotary_dim % 2 != 0 || s->rotary_dim > s->head_dim)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: rotary dimension %lld (head_dim %lld) must be even, at least 2 "
                       "and at most head_dim", path, (long long)s->rotary_dim, (long long)s->head_dim);
    const char *type = "default";
    if (rs) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!t || cJSON_IsNull(t))
            t = cJSON_GetObjectItemCaseSensitive(rs, "type"); /* transformers < 4.45 spelling */
        if (t && !cJSON_IsNull(t)) {
            if (!cJSON_IsString(t))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: rope \"rope_type\" must be a string", path);
            type = t->valuestring;
        }
    }
    if (strcmp(type, "default") != 0 && strcmp(type, "linear") != 0 && strcmp(type, "llama3") != 0)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s: rope_type \"%.32s\" is not supported (supported: default, linear, llama3); its "
                       "frequencies depend on the sequence length or need attention scaling this exporter does not "
                       "build",
                       path, type);
    snprintf(s->rope_type, sizeof s->rope_type, "%s", type);
    int64_t half = s->rotary_dim / 2;
    s->inv_freq = malloc((size_t)half * sizeof(float));
    if (!s->inv_freq)
        return td_fail_oom(ctx, (size_t)half * sizeof(float), "rope frequencies");
    double *f = malloc((size_t)half * sizeof(double));
    if (!f)
        return td_fail_oom(ctx, (size_t)half * sizeof(double), "rope frequencies");
    for (int64_t i = 0; i < half; i++)
        f[i] = 1.0 / pow(theta, (double)(2 * i) / (double)s->rotary_dim);
    td_status st = TD_OK;
    double factor = 1.0;
    if (strcmp(type, "default") != 0)
        st = rope_num(ctx, path, rs, "factor", 1.0, &factor);
    if (st == TD_OK && strcmp(type, "default") != 0 && !(factor >= 1e-6 && factor <= 1e6))
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: rope scaling \"factor\" %g is out of range", path, factor);
    if (st == TD_OK && strcmp(type, "linear") == 0) {
        for (int64_t i = 0; i < half; i++)
            f[i] /= factor;
    } else if (st == TD_OK && strcmp(type, "llama3") == 0) {
        double lo = 1, hi = 4, old = 8192;
        st = rope_num(ctx, path, rs, "low_freq_factor", 1.0, &lo);
        if (st == TD_OK)
            st = rope_num(ctx, path, rs, "high_freq_factor", 4.0, &hi);
        if (st == TD_OK)
            st = rope_num(ctx, path, rs, "original_max_position_embeddings", 8192, &old);
        if (st == TD_OK && !(hi > lo && lo > 0 && old > 0))
            st = td_fail(ctx, TD_ERR_FORMAT,
                         "%s: llama3 rope scaling needs high_freq_factor > low_freq_factor > 0 and "
                         "original_max_position_embeddings > 0",
                         path);
        double lo_wavelen = old / lo, hi_wavelen = old / hi;
        for (int64_t i = 0; st == TD_OK && i < half; i++) {
            double wavelen = 2 * M_PI / f[i];
            double scaled = wavelen > lo_wavelen ? f[i] / factor : f[i];
            if (!(wavelen < hi_wavelen) && !(wavelen > lo_wavelen)) {
                double smooth = (old / wavelen - lo) / (hi - lo);
                scaled = (1 - smooth) * scaled / factor + smooth * scaled;
            }
            f[i] = scaled;
        }
    }
    for (int64_t i = 0; i < half; i++)
        s->inv_freq[i] = (float)f[i];
    free(f);
    return st;
}

static td_status from_config(td_ctx *ctx, const td_hf_config *c, td_decoder_spec *s) {
    s->layout = c->family == TD_HF_GPT2 ? TD_DEC_GPT2 : TD_DEC_LLAMA;
    snprintf(s->model_type, sizeof s->model_type, "%s", td_hf_family_name(c->family));
    if (c->n_architectures > 0) {
        if (strlen(c->architectures[0]) >= sizeof s->architecture)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: architectures[0] is too long", c->path);
        snprintf(s->architecture, sizeof s->architecture, "%s", c->architectures[0]);
    }
    const char *a = s->architecture;
    s->has_lm_head = !*a || td_str_ends_with(a, "ForCausalLM") || td_str_ends_with(a, "LMHeadModel");
    if (!s->has_lm_head && !td_str_ends_with(a, "Model"))
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s: architecture %s is not a causal language model; text-generation export supports "
                       "*ForCausalLM and GPT2LMHeadModel checkpoints",
                       c->path, a);
    s->vocab = c->vocab_size;
    s->hidden = c->hidden_size;
    s->layers = c->num_hidden_layers;
    s->heads = c->num_attention_heads;
    s->kv_heads = s->layout == TD_DEC_GPT2 ? c->num_attention_heads : c->dec.num_key_value_heads;
    s->head_dim = c->head_dim;
    s->intermediate = c->intermediate_size;
    s->max_positions = c->max_position_embeddings;
    s->norm_eps = (float)c->norm_eps;
    s->bos_token_id = c->bos_token_id;
    s->pad_token_id = c->pad_token_id;
    s->n_eos_token_ids = c->n_eos_token_ids;
    memcpy(s->eos_token_ids, c->eos_token_ids, sizeof s->eos_token_ids);
    if (!c->hidden_act || strlen(c->hidden_act) >= sizeof s->hidden_act || !td_eb_activation_supported(c->hidden_act))
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: activation \"%s\" is not supported (supported: %s)", c->path,
                       c->hidden_act ? c->hidden_act : "", td_eb_activation_names());
    snprintf(s->hidden_act, sizeof s->hidden_act, "%s", c->hidden_act);
    if (s->kv_heads < 1 || s->heads % s->kv_heads != 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: %lld attention heads are not a multiple of %lld key/value heads",
                       c->path, (long long)s->heads, (long long)s->kv_heads);
    if (s->layout == TD_DEC_GPT2) {
        if (c->head_dim * c->num_attention_heads != c->hidden_size)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: n_embd %lld is not divisible by n_head %lld", c->path,
                           (long long)c->hidden_size, (long long)c->num_attention_heads);
        s->scale_attn_weights = c->gpt2.scale_attn_weights;
        s->scale_attn_by_inverse_layer_idx = c->gpt2.scale_attn_by_inverse_layer_idx;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c->json, "add_cross_attention")))
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "%s: add_cross_attention=true (an encoder-decoder GPT-2) is not supported", c->path);
        s->lm_head_tied = true; /* GPT2LMHeadModel always ties lm_head to wte */
        return TD_OK;
    }
    s->qkv_bias = c->dec.qkv_bias;
    s->o_bias = c->dec.o_bias;
    s->mlp_bias = c->dec.mlp_bias;
    s->fused_qkv = s->fused_gate_up = c->family == TD_HF_PHI3;
    s->lm_head_tied = c->tie_word_embeddings;
    s->sliding_window = c->dec.sliding_window;
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(c->json, "layer_types");
    if (cJSON_IsArray(lt)) {
        /* one attention kind for every layer is what the graph builds; a per-layer mix is refused */
        const cJSON *e;
        cJSON_ArrayForEach(e, lt) {
            if (!cJSON_IsString(e))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: \"layer_types\" must be a list of strings", c->path);
            bool sliding = strcmp(e->valuestring, "sliding_attention") == 0;
            if (!sliding && strcmp(e->valuestring, "full_attention") != 0)
                return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: layer type \"%.32s\" is not supported", c->path,
                               e->valuestring);
            if (sliding != (s->sliding_window > 0))
                return td_fail(ctx, TD_ERR_UNSUPPORTED,
                               "%s: \"layer_types\" mixes full and sliding-window layers; only one kind for all "
                               "layers is supported",
                               c->path);
        }
    }
    double prf = c->dec.partial_rotary_factor > 0 ? c->dec.partial_rotary_factor : 1.0;
    s->rotary_dim = (int64_t)((double)s->head_dim * prf);
    return td_decoder_rope(ctx, c->path, c->dec.rope_theta, c->dec.rope_scaling, s);
}

/* transformer.wte (GPT2LMHeadModel) / model.embed_tokens (*ForCausalLM), or the bare model's names. */
static td_status find_prefix(td_ctx *ctx, const td_checkpoint *ck, td_decoder_spec *s) {
    const char *embed = s->layout == TD_DEC_GPT2 ? "wte.weight" : "embed_tokens.weight";
    const char *prefixes[] = {s->layout == TD_DEC_GPT2 ? "transformer." : "model.", ""};
    char name[96];
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%s%s", prefixes[i], embed);
        if (td_checkpoint_find(ck, name)) {
            snprintf(s->prefix, sizeof s->prefix, "%s", prefixes[i]);
            return TD_OK;
        }
    }
    return td_fail(ctx, TD_ERR_NOT_FOUND, "%s: tensor '%s%s' (or '%s') is missing from the checkpoint; is this a %s "
                   "model?", td_checkpoint_path(ck), prefixes[0], embed, embed, s->model_type);
}

td_status td_decoder_spec_from_dir(td_ctx *ctx, td_model_dir *md, td_decoder_spec *s) {
    memset(s, 0, sizeof *s);
    s->md = md;
    td_status st = from_config(ctx, md->config, s);
    if (st == TD_OK)
        st = find_prefix(ctx, md->checkpoint, s);
    /* an untied head must be in the checkpoint; a missing one with tie_word_embeddings unset is the config's error */
    if (st == TD_OK && s->layout == TD_DEC_LLAMA && s->has_lm_head && !s->lm_head_tied &&
        !td_checkpoint_find(md->checkpoint, "lm_head.weight"))
        st = td_fail(ctx, TD_ERR_NOT_FOUND,
                     "%s: tensor 'lm_head.weight' is missing and config.json does not set tie_word_embeddings",
                     td_checkpoint_path(md->checkpoint));
    if (st != TD_OK)
        td_decoder_spec_free(s);
    return st;
}

void td_decoder_spec_free(td_decoder_spec *s) {
    if (!s)
        return;
    td_gguf_free(s->gguf);
    s->gguf = NULL;
    free(s->inv_freq);
    s->inv_freq = NULL;
    td_model_dir_free(s->md);
    s->md = NULL;
}

td_status td_decoder_spec_task(td_ctx *ctx, const td_decoder_spec *s, td_export_task requested, td_export_task *out) {
    if (requested == TD_TASK_AUTO || requested == TD_TASK_TEXT_GENERATION) {
        if (!s->has_lm_head)
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "%s (model_type %s) has no language-model head; text-generation needs a *ForCausalLM "
                           "checkpoint",
                           s->architecture, s->model_type);
        *out = TD_TASK_TEXT_GENERATION;
        return TD_OK;
    }
    return td_fail(ctx, TD_ERR_UNSUPPORTED, "task %s is not possible for %s (model_type %s): possible tasks are %s",
                   td_export_task_name(requested), s->architecture[0] ? s->architecture : "this model", s->model_type,
                   s->has_lm_head ? "text-generation" : "none (no language-model head)");
}
