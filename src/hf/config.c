/* config.json -> td_hf_config, with transformers' defaults for absent keys. */
#define _GNU_SOURCE
#include "hf/config.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "hf/json_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds well above any released model; a larger value is a corrupt or
 * hostile file, and bounding them keeps every size product far from overflow. */
#define MAX_VOCAB (1ll << 24)
#define MAX_HIDDEN (1ll << 17)
#define MAX_LAYERS 1024ll
#define MAX_HEADS 4096ll
#define MAX_INTERMEDIATE (1ll << 20)
#define MAX_POSITIONS (1ll << 26)
#define MAX_TYPE_VOCAB (1ll << 16)
#define MAX_TOKEN_ID ((1ll << 31) - 1)
#define MAX_LABELS (1ll << 20)

static const char *const family_names[TD_HF_FAMILY_COUNT] = {
    [TD_HF_UNKNOWN] = "unknown",     [TD_HF_BERT] = "bert",   [TD_HF_ROBERTA] = "roberta",
    [TD_HF_XLM_ROBERTA] = "xlm-roberta", [TD_HF_DISTILBERT] = "distilbert", [TD_HF_ELECTRA] = "electra",
    [TD_HF_GPT2] = "gpt2",           [TD_HF_LLAMA] = "llama", [TD_HF_MISTRAL] = "mistral",
    [TD_HF_QWEN2] = "qwen2",         [TD_HF_PHI3] = "phi3",
};

const char *td_hf_family_name(td_hf_family f) {
    return (int)f >= 0 && f < TD_HF_FAMILY_COUNT ? family_names[f] : "unknown";
}

bool td_hf_family_is_encoder(td_hf_family f) {
    return f == TD_HF_BERT || f == TD_HF_ROBERTA || f == TD_HF_XLM_ROBERTA || f == TD_HF_DISTILBERT ||
           f == TD_HF_ELECTRA;
}

const char *td_hf_supported_model_types(void) {
    return "bert, roberta, xlm-roberta, distilbert, electra, gpt2, llama, mistral, qwen2, phi3";
}

void td_hf_config_free(td_hf_config *cfg) {
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->model_type);
    for (size_t i = 0; i < cfg->n_architectures; i++)
        free(cfg->architectures[i]);
    free(cfg->architectures);
    free(cfg->hidden_act);
    free(cfg->dtype);
    for (int64_t i = 0; cfg->id2label && i < cfg->num_labels; i++)
        free(cfg->id2label[i].label);
    free(cfg->id2label);
    free(cfg->problem_type);
    free(cfg->enc.position_embedding_type);
    cJSON_Delete(cfg->json);
    free(cfg);
}

/* id2label is sorted by id (parse_labels), so a lookup is a binary search: up to 2^20 labels, looked up once
 * per class by callers that walk every class, must not cost n^2. */
const char *td_hf_config_label(const td_hf_config *cfg, int64_t id) {
    int64_t lo = 0, hi = cfg->num_labels;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cfg->id2label[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < cfg->num_labels && cfg->id2label[lo].id == id ? cfg->id2label[lo].label : NULL;
}

/* Transformers defaults for the keys each family spells its own way. */
struct family_defaults {
    td_hf_family family;
    int64_t vocab, hidden, layers, heads, intermediate, positions, type_vocab, pad, bos, eos;
    const char *act;
    double eps;
    bool tie;
};

static const struct family_defaults defaults[] = {
    /* BertConfig */
    {TD_HF_BERT, 30522, 768, 12, 12, 3072, 512, 2, 0, -1, -1, "gelu", 1e-12, true},
    /* RobertaConfig */
    {TD_HF_ROBERTA, 50265, 768, 12, 12, 3072, 512, 2, 1, 0, 2, "gelu", 1e-12, true},
    /* XLMRobertaConfig */
    {TD_HF_XLM_ROBERTA, 30522, 768, 12, 12, 3072, 512, 2, 1, 0, 2, "gelu", 1e-12, true},
    /* DistilBertConfig: dim, n_layers, n_heads, hidden_dim (4 * 768), activation; LayerNorm eps fixed 1e-12 */
    {TD_HF_DISTILBERT, 30522, 768, 6, 12, 3072, 512, 0, 0, -1, -1, "gelu", 1e-12, true},
    /* ElectraConfig: hidden 256, embedding_size 128, 4 heads, intermediate 1024 */
    {TD_HF_ELECTRA, 30522, 256, 12, 4, 1024, 512, 2, 0, -1, -1, "gelu", 1e-12, true},
    /* GPT2Config: n_embd, n_layer, n_head, n_inner (None -> 4 * n_embd), n_positions */
    {TD_HF_GPT2, 50257, 768, 12, 12, -1, 1024, 0, -1, 50256, 50256, "gelu_new", 1e-5, true},
    /* LlamaConfig */
    {TD_HF_LLAMA, 32000, 4096, 32, 32, 11008, 2048, 0, -1, 1, 2, "silu", 1e-6, false},
    /* MistralConfig */
    {TD_HF_MISTRAL, 32000, 4096, 32, 32, 14336, 4096 * 32, 0, -1, 1, 2, "silu", 1e-6, false},
    /* Qwen2Config */
    {TD_HF_QWEN2, 151936, 4096, 32, 32, 22016, 32768, 0, -1, -1, -1, "silu", 1e-6, false},
    /* Phi3Config */
    {TD_HF_PHI3, 32064, 3072, 32, 32, 8192, 4096, 0, 32000, 1, 32000, "silu", 1e-5, false},
};

static const struct family_defaults *defaults_for(td_hf_family f) {
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (defaults[i].family == f)
            return &defaults[i];
    return NULL;
}

/* Keys as each family names them. */
struct key_names {
    const char *hidden, *layers, *heads, *intermediate, *positions, *act, *eps;
};

static struct key_names keys_for(td_hf_family f) {
    if (f == TD_HF_DISTILBERT)
        return (struct key_names){"dim", "n_layers", "n_heads", "hidden_dim", "max_position_embeddings", "activation",
                                  NULL};
    if (f == TD_HF_GPT2)
        return (struct key_names){"n_embd", "n_layer", "n_head", "n_inner", "n_positions", "activation_function",
                                  "layer_norm_epsilon"};
    if (td_hf_family_is_encoder(f))
        return (struct key_names){"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                  "max_position_embeddings", "hidden_act", "layer_norm_eps"};
    return (struct key_names){"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                              "max_position_embeddings", "hidden_act", "rms_norm_eps"};
}

static td_status parse_architectures(td_ctx *ctx, td_hf_config *cfg, const cJSON *j) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    if (!a || cJSON_IsNull(a))
        return TD_OK;
    if (!cJSON_IsArray(a))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"architectures\" is %s; it must be a list of class names", cfg->path,
                       td_hf_json_type_name(a));
    size_t n = (size_t)cJSON_GetArraySize(a);
    cfg->architectures = calloc(n ? n : 1, sizeof *cfg->architectures);
    if (!cfg->architectures)
        return td_fail_oom(ctx, n * sizeof(char *), "architectures");
    for (const cJSON *e = a->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: \"architectures\" holds %s; it must hold class name strings",
                           cfg->path, td_hf_json_type_name(e));
        if (!(cfg->architectures[cfg->n_architectures++] = strdup(e->valuestring)))
            return td_fail_oom(ctx, strlen(e->valuestring), "architectures");
    }
    return TD_OK;
}

static int cmp_label(const void *a, const void *b) {
    const td_hf_label *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* id2label keys are strings transformers turns into ints; num_labels follows
 * len(id2label), else the num_labels key, else 2 (LABEL_0, LABEL_1). */
static td_status parse_labels(td_ctx *ctx, td_hf_config *cfg, const cJSON *j) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "id2label");
    if (m && !cJSON_IsNull(m)) {
        if (!cJSON_IsObject(m))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: \"id2label\" is %s; it must map class ids to names", cfg->path,
                           td_hf_json_type_name(m));
        int64_t n = cJSON_GetArraySize(m);
        if (n > MAX_LABELS)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: \"id2label\" has %lld entries, more than %lld", cfg->path,
                           (long long)n, MAX_LABELS);
        cfg->id2label = calloc(n ? (size_t)n : 1, sizeof *cfg->id2label);
        if (!cfg->id2label)
            return td_fail_oom(ctx, (size_t)n * sizeof *cfg->id2label, "id2label");
        cfg->has_id2label = true;
        for (const cJSON *e = m->child; e; e = e->next) {
            char *endp;
            long long id = strtoll(e->string, &endp, 10);
            if (!e->string[0] || *endp || id < 0 || id > MAX_LABELS)
                return td_fail(ctx, TD_ERR_FORMAT, "%s: id2label key \"%s\" is not a class id (0, 1, ...)", cfg->path,
                               e->string);
            if (!cJSON_IsString(e))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: id2label[\"%s\"] is %s; it must be a label string", cfg->path,
                               e->string, td_hf_json_type_name(e));
            cfg->id2label[cfg->num_labels].id = id;
            if (!(cfg->id2label[cfg->num_labels++].label = strdup(e->valuestring)))
                return td_fail_oom(ctx, strlen(e->valuestring), "id2label");
        }
        qsort(cfg->id2label, (size_t)cfg->num_labels, sizeof *cfg->id2label, cmp_label);
        for (int64_t i = 1; i < cfg->num_labels; i++)
            if (cfg->id2label[i].id == cfg->id2label[i - 1].id)
                return td_fail(ctx, TD_ERR_FORMAT, "%s: id2label gives class %lld twice", cfg->path,
                               (long long)cfg->id2label[i].id);
    } else {
        int64_t n;
        TD_TRY(td_hf_json_int(ctx, j, cfg->path, "num_labels", 2, true, 0, MAX_LABELS, &n));
        cfg->id2label = calloc(n ? (size_t)n : 1, sizeof *cfg->id2label);
        if (!cfg->id2label)
            return td_fail_oom(ctx, (size_t)n * sizeof *cfg->id2label, "id2label");
        for (int64_t i = 0; i < n; i++) {
            char buf[32];
            snprintf(buf, sizeof buf, "LABEL_%lld", (long long)i);
            cfg->id2label[i].id = i;
            cfg->num_labels = i + 1;
            if (!(cfg->id2label[i].label = strdup(buf)))
                return td_fail_oom(ctx, sizeof buf, "id2label");
        }
    }
    const cJSON *l2i = cJSON_GetObjectItemCaseSensitive(j, "label2id");
    if (l2i && !cJSON_IsNull(l2i) && !cJSON_IsObject(l2i))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"label2id\" is %s; it must map names to class ids", cfg->path,
                       td_hf_json_type_name(l2i));
    TD_TRY(td_hf_json_string(ctx, j, cfg->path, "problem_type", NULL, true, &cfg->problem_type));
    if (cfg->problem_type && strcmp(cfg->problem_type, "regression") != 0 &&
        strcmp(cfg->problem_type, "single_label_classification") != 0 &&
        strcmp(cfg->problem_type, "multi_label_classification") != 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"problem_type\" is \"%s\"; transformers accepts regression, "
                       "single_label_classification or multi_label_classification", cfg->path, cfg->problem_type);
    return TD_OK;
}

/* eos_token_id: int, list of ints, or null. */
static td_status parse_eos(td_ctx *ctx, td_hf_config *cfg, const cJSON *j, int64_t dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "eos_token_id");
    if (v && cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e; e = e->next) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > (double)MAX_TOKEN_ID ||
                e->valuedouble != (double)(int64_t)e->valuedouble)
                return td_fail(ctx, TD_ERR_FORMAT, "%s: \"eos_token_id\" list holds %s; it must hold token ids",
                               cfg->path, td_hf_json_type_name(e));
            if (cfg->n_eos_token_ids == TD_HF_MAX_EOS)
                return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: \"eos_token_id\" lists more than %d ids", cfg->path,
                               TD_HF_MAX_EOS);
            cfg->eos_token_ids[cfg->n_eos_token_ids++] = (int64_t)e->valuedouble;
        }
        return TD_OK;
    }
    int64_t id;
    TD_TRY(td_hf_json_int(ctx, j, cfg->path, "eos_token_id", dflt, true, -1, MAX_TOKEN_ID, &id));
    if (v && cJSON_IsNull(v))
        id = -1;
    if (id >= 0)
        cfg->eos_token_ids[cfg->n_eos_token_ids++] = id;
    return TD_OK;
}

/* Optional token id: absent -> default, null -> -1 (None). */
static td_status token_id(td_ctx *ctx, td_hf_config *cfg, const cJSON *j, const char *key, int64_t dflt, int64_t *out) {
    TD_TRY(td_hf_json_int(ctx, j, cfg->path, key, dflt, true, -1, MAX_TOKEN_ID, out));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (v && cJSON_IsNull(v))
        *out = -1;
    return TD_OK;
}

static td_status parse_common(td_ctx *ctx, td_hf_config *cfg, const cJSON *j) {
    const struct family_defaults *d = defaults_for(cfg->family);
    struct key_names k = keys_for(cfg->family);
    const char *p = cfg->path;
    TD_TRY(td_hf_json_int(ctx, j, p, "vocab_size", d->vocab, false, 1, MAX_VOCAB, &cfg->vocab_size));
    TD_TRY(td_hf_json_int(ctx, j, p, k.hidden, d->hidden, false, 1, MAX_HIDDEN, &cfg->hidden_size));
    TD_TRY(td_hf_json_int(ctx, j, p, k.layers, d->layers, false, 1, MAX_LAYERS, &cfg->num_hidden_layers));
    TD_TRY(td_hf_json_int(ctx, j, p, k.heads, d->heads, false, 1, MAX_HEADS, &cfg->num_attention_heads));
    /* gpt2's n_inner may be null, meaning 4 * n_embd */
    TD_TRY(td_hf_json_int(ctx, j, p, k.intermediate, d->intermediate, cfg->family == TD_HF_GPT2, 1, MAX_INTERMEDIATE,
                          &cfg->intermediate_size));
    if (cfg->family == TD_HF_GPT2) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "n_inner");
        if (!v || cJSON_IsNull(v))
            cfg->intermediate_size = 4 * cfg->hidden_size;
    }
    TD_TRY(td_hf_json_int(ctx, j, p, k.positions, d->positions, false, 1, MAX_POSITIONS,
                          &cfg->max_position_embeddings));
    TD_TRY(td_hf_json_string(ctx, j, p, k.act, d->act, false, &cfg->hidden_act));
    if (k.eps)
        TD_TRY(td_hf_json_double(ctx, j, p, k.eps, d->eps, false, 1e-30, 1.0, &cfg->norm_eps));
    else
        cfg->norm_eps = d->eps;
    TD_TRY(token_id(ctx, cfg, j, "pad_token_id", d->pad, &cfg->pad_token_id));
    TD_TRY(token_id(ctx, cfg, j, "bos_token_id", d->bos, &cfg->bos_token_id));
    TD_TRY(parse_eos(ctx, cfg, j, d->eos));
    TD_TRY(td_hf_json_bool(ctx, j, p, "tie_word_embeddings", d->tie, false, &cfg->tie_word_embeddings));
    /* transformers >= 4.56 writes "dtype"; older files "torch_dtype" */
    TD_TRY(td_hf_json_string(ctx, j, p, "dtype", NULL, true, &cfg->dtype));
    if (!cfg->dtype)
        TD_TRY(td_hf_json_string(ctx, j, p, "torch_dtype", NULL, true, &cfg->dtype));

    /* head_dim: explicit (decoders) or hidden / heads, which must then divide. */
    int64_t head_dim = 0;
    if (!td_hf_family_is_encoder(cfg->family) && cfg->family != TD_HF_GPT2)
        TD_TRY(td_hf_json_int(ctx, j, p, "head_dim", 0, true, 1, MAX_HIDDEN, &head_dim));
    if (head_dim == 0) {
        if (cfg->hidden_size % cfg->num_attention_heads != 0)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" %lld is not divisible by \"%s\" %lld", p, k.hidden,
                           (long long)cfg->hidden_size, k.heads, (long long)cfg->num_attention_heads);
        head_dim = cfg->hidden_size / cfg->num_attention_heads;
    }
    cfg->head_dim = head_dim;
    if (cfg->pad_token_id >= cfg->vocab_size)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"pad_token_id\" %lld is outside the vocabulary (vocab_size %lld)", p,
                       (long long)cfg->pad_token_id, (long long)cfg->vocab_size);
    return TD_OK;
}

static td_status parse_encoder(td_ctx *ctx, td_hf_config *cfg, const cJSON *j) {
    const struct family_defaults *d = defaults_for(cfg->family);
    const char *p = cfg->path;
    if (cfg->family == TD_HF_DISTILBERT) {
        TD_TRY(td_hf_json_bool(ctx, j, p, "sinusoidal_pos_embds", false, false, &cfg->enc.sinusoidal_pos_embds));
        cfg->enc.type_vocab_size = 0;
        cfg->enc.embedding_size = cfg->hidden_size;
        if (!(cfg->enc.position_embedding_type = strdup("absolute")))
            return td_fail_oom(ctx, 16, "a string");
        return TD_OK;
    }
    TD_TRY(td_hf_json_int(ctx, j, p, "type_vocab_size", d->type_vocab, false, 1, MAX_TYPE_VOCAB,
                          &cfg->enc.type_vocab_size));
    TD_TRY(td_hf_json_string(ctx, j, p, "position_embedding_type", "absolute", true,
                             &cfg->enc.position_embedding_type));
    if (!cfg->enc.position_embedding_type && !(cfg->enc.position_embedding_type = strdup("absolute")))
        return td_fail_oom(ctx, 16, "a string");
    if (strcmp(cfg->enc.position_embedding_type, "absolute") != 0 &&
        strcmp(cfg->enc.position_embedding_type, "relative_key") != 0 &&
        strcmp(cfg->enc.position_embedding_type, "relative_key_query") != 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"position_embedding_type\" is \"%s\"; expected absolute, "
                       "relative_key or relative_key_query", p, cfg->enc.position_embedding_type);
    if (cfg->family == TD_HF_ELECTRA)
        TD_TRY(td_hf_json_int(ctx, j, p, "embedding_size", 128, false, 1, MAX_HIDDEN, &cfg->enc.embedding_size));
    else
        cfg->enc.embedding_size = cfg->hidden_size;
    /* RoBERTa-style position ids start at pad_token_id + 1 */
    if ((cfg->family == TD_HF_ROBERTA || cfg->family == TD_HF_XLM_ROBERTA) && cfg->pad_token_id < 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"pad_token_id\" is null, but %s numbers positions from it; set it "
                       "(usually 1)", p, cfg->model_type);
    return TD_OK;
}

static td_status parse_gpt2(td_ctx *ctx, td_hf_config *cfg, const cJSON *j) {
    const char *p = cfg->path;
    TD_TRY(td_hf_json_bool(ctx, j, p, "scale_attn_weights", true, false, &cfg->gpt2.scale_attn_weights));
    TD_TRY(td_hf_json_bool(ctx, j, p, "scale_attn_by_inverse_layer_idx", false, false,
                           &cfg->gpt2.scale_attn_by_inverse_layer_idx));
    TD_TRY(td_hf_json_bool(ctx, j, p, "reorder_and_upcast_attn", false, false, &cfg->gpt2.reorder_and_upcast_attn));
    return TD_OK;
}

static td_status parse_decoder(td_ctx *ctx, td_hf_config *cfg, const cJSON *j) {
    const char *p = cfg->path;
    /* num_key_value_heads default: llama None -> num_attention_heads, mistral 8, qwen2 32 */
    int64_t kv_dflt = cfg->family == TD_HF_MISTRAL ? 8 : cfg->family == TD_HF_QWEN2 ? 32 : cfg->num_attention_heads;
    TD_TRY(td_hf_json_int(ctx, j, p, "num_key_value_heads", kv_dflt, true, 1, MAX_HEADS,
                          &cfg->dec.num_key_value_heads));
    const cJSON *kv = cJSON_GetObjectItemCaseSensitive(j, "num_key_value_heads");
    if (kv && cJSON_IsNull(kv))
        cfg->dec.num_key_value_heads = cfg->num_attention_heads;
    if (cfg->num_attention_heads % cfg->dec.num_key_value_heads != 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"num_attention_heads\" %lld is not a multiple of "
                       "\"num_key_value_heads\" %lld", p, (long long)cfg->num_attention_heads,
                       (long long)cfg->dec.num_key_value_heads);

    /* rope: transformers < 5 writes rope_theta (+ rope_scaling); >= 5 rope_parameters {rope_theta, rope_type, ...} */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"rope_parameters\" is %s; it must be an object", p,
                       td_hf_json_type_name(rp));
    if (rs && !cJSON_IsNull(rs) && !cJSON_IsObject(rs))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"rope_scaling\" is %s; it must be an object or null", p,
                       td_hf_json_type_name(rs));
    TD_TRY(td_hf_json_double(ctx, j, p, "rope_theta", 10000.0, false, 1e-6, 1e12, &cfg->dec.rope_theta));
    if (cJSON_IsObject(rp)) {
        TD_TRY(td_hf_json_double(ctx, rp, p, "rope_theta", cfg->dec.rope_theta, false, 1e-6, 1e12,
                                 &cfg->dec.rope_theta));
        cfg->dec.rope_scaling = rp;
    }
    if (cJSON_IsObject(rs))
        cfg->dec.rope_scaling = rs;
    /* partial_rotary_factor: Phi3Config key (default 1.0), also inside rope_parameters in transformers >= 5 */
    TD_TRY(td_hf_json_double(ctx, j, p, "partial_rotary_factor", 1.0, false, 1e-6, 1.0,
                             &cfg->dec.partial_rotary_factor));
    if (cJSON_IsObject(rp))
        TD_TRY(td_hf_json_double(ctx, rp, p, "partial_rotary_factor", cfg->dec.partial_rotary_factor, false, 1e-6,
                                 1.0, &cfg->dec.partial_rotary_factor));

    if (cfg->family == TD_HF_LLAMA) {
        bool attention_bias;
        TD_TRY(td_hf_json_bool(ctx, j, p, "attention_bias", false, false, &attention_bias));
        cfg->dec.qkv_bias = cfg->dec.o_bias = attention_bias;
        TD_TRY(td_hf_json_bool(ctx, j, p, "mlp_bias", false, false, &cfg->dec.mlp_bias));
    } else if (cfg->family == TD_HF_QWEN2) {
        cfg->dec.qkv_bias = true; /* Qwen2Attention: q/k/v projections always carry a bias, o_proj never */
        bool use_sw;
        int64_t sw;
        TD_TRY(td_hf_json_bool(ctx, j, p, "use_sliding_window", false, false, &use_sw));
        TD_TRY(td_hf_json_int(ctx, j, p, "sliding_window", 4096, true, 0, MAX_POSITIONS, &sw));
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "sliding_window");
        cfg->dec.sliding_window = use_sw && !(v && cJSON_IsNull(v)) ? sw : 0;
    } else if (cfg->family == TD_HF_MISTRAL || cfg->family == TD_HF_PHI3) {
        /* Phi3Config: sliding_window None by default; MistralConfig 4096 */
        int64_t sw_dflt = cfg->family == TD_HF_MISTRAL ? 4096 : 0;
        TD_TRY(td_hf_json_int(ctx, j, p, "sliding_window", sw_dflt, true, 0, MAX_POSITIONS,
                              &cfg->dec.sliding_window));
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "sliding_window");
        if (v && cJSON_IsNull(v))
            cfg->dec.sliding_window = 0;
    }
    return TD_OK;
}

static td_hf_family family_from_model_type(const char *t) {
    for (int f = 1; f < TD_HF_FAMILY_COUNT; f++)
        if (strcmp(family_names[f], t) == 0)
            return (td_hf_family)f;
    return TD_HF_UNKNOWN;
}

td_status td_hf_config_parse(td_ctx *ctx, const char *text, size_t len, const char *label, td_hf_config **out) {
    *out = NULL;
    td_status s = TD_OK;
    td_hf_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->path = strdup(label ? label : "config.json"))) {
        free(cfg);
        return td_fail_oom(ctx, sizeof *cfg, "a config");
    }
    s = td_hf_json_parse(ctx, text, len, cfg->path, &cfg->json);
    if (s != TD_OK)
        goto out;
    const cJSON *j = cfg->json;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (!mt) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s has no \"model_type\"; it is not a transformers config.json (supported "
                    "model types: %s)", cfg->path, td_hf_supported_model_types());
        goto out;
    }
    if ((s = td_hf_json_string(ctx, j, cfg->path, "model_type", NULL, false, &cfg->model_type)) != TD_OK)
        goto out;
    cfg->family = family_from_model_type(cfg->model_type);
    if (cfg->family == TD_HF_UNKNOWN) {
        s = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: model_type \"%.64s\" is not supported; tdeploy handles: %s",
                    cfg->path, cfg->model_type, td_hf_supported_model_types());
        goto out;
    }
    if ((s = parse_architectures(ctx, cfg, j)) != TD_OK || (s = parse_common(ctx, cfg, j)) != TD_OK ||
        (s = parse_labels(ctx, cfg, j)) != TD_OK)
        goto out;
    if (td_hf_family_is_encoder(cfg->family))
        s = parse_encoder(ctx, cfg, j);
    else if (cfg->family == TD_HF_GPT2)
        s = parse_gpt2(ctx, cfg, j);
    else
        s = parse_decoder(ctx, cfg, j);
out:
    if (s != TD_OK)
        td_hf_config_free(cfg);
    else
        *out = cfg;
    return s;
}

td_status td_hf_config_load(td_ctx *ctx, const char *path, td_hf_config **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    td_status s = td_read_file(ctx, path, TD_HF_JSON_MAX_BYTES, &text, &len);
    if (s == TD_ERR_NOT_FOUND)
        return td_fail(ctx, TD_ERR_NOT_FOUND, "%s does not exist; a Hugging Face model directory needs its "
                       "config.json", path);
    if (s != TD_OK)
        return s;
    s = td_hf_config_parse(ctx, text, len, path, out);
    free(text);
    return s;
}
