/* Reading config.json, tokenizer_config.json and the sentence-transformers files
 * into a td_encoder_spec (see spec.h). Defaults are transformers' for each config
 * class, so a config that omits a key means what it means to transformers. */
#define _GNU_SOURCE
#include "export/spec.h"

#include "core/fs.h"
#include "export/builder.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_BYTES (16u << 20)

static td_status read_json(td_ctx *ctx, const char *path, cJSON **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    TD_TRY(td_read_file(ctx, path, JSON_MAX_BYTES, &text, &len));
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: not valid JSON", path);
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return td_fail(ctx, TD_ERR_FORMAT, "%s: expected a JSON object or array at top level", path);
    }
    *out = j;
    return TD_OK;
}

/* Integer key with a default; must be an integral number in [lo, hi]. */
static td_status get_int(td_ctx *ctx, const cJSON *o, const char *key, int64_t dflt, int64_t lo, int64_t hi,
                         const char *path, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return TD_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" must be an integer in [%lld, %lld]", path, key,
                       (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return TD_OK;
}

static td_status get_float(td_ctx *ctx, const cJSON *o, const char *key, double dflt, const char *path, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = (float)dflt;
        return TD_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0) || v->valuedouble > 1.0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" must be a number in [0, 1]", path, key);
    *out = (float)v->valuedouble;
    return TD_OK;
}

static td_status get_str(td_ctx *ctx, const cJSON *o, const char *key, const char *dflt, const char *path, char *buf,
                         size_t buflen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    const char *s = dflt;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" must be a string", path, key);
        s = v->valuestring;
    }
    if (strlen(s) >= buflen)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" value is too long (%zu bytes)", path, key, strlen(s));
    snprintf(buf, buflen, "%s", s);
    return TD_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static td_head_kind head_of(const char *arch) {
    if (!*arch || ends_with(arch, "Model"))
        return TD_HEAD_NONE;
    if (ends_with(arch, "ForSequenceClassification"))
        return TD_HEAD_SEQCLS;
    if (ends_with(arch, "ForTokenClassification"))
        return TD_HEAD_TOKCLS;
    if (ends_with(arch, "ForQuestionAnswering"))
        return TD_HEAD_QA;
    if (strcmp(arch, "ElectraForPreTraining") == 0)
        return TD_HEAD_ELECTRA_DISCRIM;
    return TD_HEAD_OTHER;
}

#define DIM_MAX (1 << 20)

static td_status load_hparams(td_ctx *ctx, const cJSON *c, const char *path, td_encoder_spec *s) {
    if (s->family == TD_FAM_DISTILBERT) {
        /* DistilBertConfig names and defaults; its LayerNorms use eps 1e-12 in the module code. */
        TD_TRY(get_int(ctx, c, "vocab_size", 30522, 1, INT32_MAX, path, &s->vocab));
        TD_TRY(get_int(ctx, c, "dim", 768, 1, DIM_MAX, path, &s->hidden));
        TD_TRY(get_int(ctx, c, "n_layers", 6, 0, 4096, path, &s->layers));
        TD_TRY(get_int(ctx, c, "n_heads", 12, 1, DIM_MAX, path, &s->heads));
        TD_TRY(get_int(ctx, c, "hidden_dim", 3072, 1, DIM_MAX, path, &s->intermediate));
        TD_TRY(get_int(ctx, c, "max_position_embeddings", 512, 1, INT32_MAX, path, &s->max_positions));
        TD_TRY(get_str(ctx, c, "activation", "gelu", path, s->hidden_act, sizeof s->hidden_act));
        TD_TRY(get_int(ctx, c, "pad_token_id", 0, -1, INT32_MAX, path, &s->pad_token_id));
        s->layer_norm_eps = 1e-12f;
        s->type_vocab = 0;
        s->embedding_size = s->hidden;
        s->has_token_types = false;
        return TD_OK;
    }
    bool electra = s->family == TD_FAM_ELECTRA;
    int64_t dflt_pad = s->family == TD_FAM_ROBERTA ? 1 : 0;
    int64_t dflt_vocab = strcmp(s->model_type, "roberta") == 0 ? 50265 : 30522;
    TD_TRY(get_int(ctx, c, "vocab_size", dflt_vocab, 1, INT32_MAX, path, &s->vocab));
    TD_TRY(get_int(ctx, c, "hidden_size", electra ? 256 : 768, 1, DIM_MAX, path, &s->hidden));
    TD_TRY(get_int(ctx, c, "num_hidden_layers", 12, 0, 4096, path, &s->layers));
    TD_TRY(get_int(ctx, c, "num_attention_heads", electra ? 4 : 12, 1, DIM_MAX, path, &s->heads));
    TD_TRY(get_int(ctx, c, "intermediate_size", electra ? 1024 : 3072, 1, DIM_MAX, path, &s->intermediate));
    TD_TRY(get_int(ctx, c, "max_position_embeddings", 512, 1, INT32_MAX, path, &s->max_positions));
    TD_TRY(get_int(ctx, c, "type_vocab_size", 2, 0, INT32_MAX, path, &s->type_vocab));
    TD_TRY(get_int(ctx, c, "pad_token_id", dflt_pad, -1, INT32_MAX, path, &s->pad_token_id));
    TD_TRY(get_float(ctx, c, "layer_norm_eps", 1e-12, path, &s->layer_norm_eps));
    TD_TRY(get_str(ctx, c, "hidden_act", "gelu", path, s->hidden_act, sizeof s->hidden_act));
    if (electra)
        TD_TRY(get_int(ctx, c, "embedding_size", 128, 1, DIM_MAX, path, &s->embedding_size));
    else
        s->embedding_size = s->hidden;
    s->has_token_types = s->type_vocab > 0;

    char pet[32];
    TD_TRY(get_str(ctx, c, "position_embedding_type", "absolute", path, pet, sizeof pet));
    if (strcmp(pet, "absolute") != 0)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s: position_embedding_type \"%s\" is not supported (only \"absolute\" is)", path, pet);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(c, "is_decoder");
    if (cJSON_IsTrue(dec))
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: is_decoder=true (a %s used as a causal decoder) is not supported",
                       path, s->model_type);
    return TD_OK;
}

static td_status load_labels(td_ctx *ctx, const cJSON *c, const char *path, td_encoder_spec *s) {
    const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(c, "id2label");
    int64_t n = 0;
    if (id2label && !cJSON_IsNull(id2label)) {
        if (!cJSON_IsObject(id2label))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: \"id2label\" must be an object", path);
        for (const cJSON *e = id2label->child; e; e = e->next) {
            if (!cJSON_IsString(e))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: id2label[\"%s\"] must be a string", path, e->string);
            n++;
        }
        s->id2label_json = cJSON_PrintUnformatted(id2label);
        if (!s->id2label_json)
            return td_fail_oom(ctx, 0, "id2label");
    }
    int64_t nl = 2;
    TD_TRY(get_int(ctx, c, "num_labels", n > 0 ? n : 2, 1, INT32_MAX, path, &nl));
    s->num_labels = n > 0 ? n : nl; /* transformers derives num_labels from id2label */
    return TD_OK;
}

/* tokenizer_config.json model_input_names decides whether token_type_ids is an input. */
static td_status load_tokenizer_inputs(td_ctx *ctx, const char *dir, td_encoder_spec *s) {
    char *path = NULL;
    TD_TRY(td_path_join(ctx, dir, "tokenizer_config.json", false, &path));
    td_status st = TD_OK;
    cJSON *j = NULL;
    /* default: token types are an input when the model can distinguish more than one */
    s->token_type_input = s->has_token_types && s->type_vocab > 1;
    if (!td_is_file(path))
        goto out;
    st = read_json(ctx, path, &j);
    if (st != TD_OK)
        goto out;
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(j, "model_input_names");
    if (!names || !cJSON_IsArray(names))
        goto out;
    s->tokenizer_names_known = true;
    bool listed = false;
    for (const cJSON *e = names->child; e; e = e->next)
        if (cJSON_IsString(e) && strcmp(e->valuestring, "token_type_ids") == 0)
            listed = true;
    /* a model without a token type table ignores them; the input would be dead */
    s->token_type_input = listed && s->has_token_types;
out:
    cJSON_Delete(j);
    free(path);
    return st;
}

static td_status parse_pooling(td_ctx *ctx, const char *path, const cJSON *p, td_encoder_spec *s) {
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(p, "pooling_mode");
    if (cJSON_IsString(mode)) {
        /* newer sentence-transformers: one mode by name */
        static const struct {
            const char *name;
            int flag;
        } modes[] = {{"cls", TD_POOL_CLS}, {"cls_token", TD_POOL_CLS}, {"max", TD_POOL_MAX},
                     {"max_tokens", TD_POOL_MAX}, {"mean", TD_POOL_MEAN}, {"mean_tokens", TD_POOL_MEAN},
                     {"mean_sqrt_len_tokens", TD_POOL_MEAN_SQRT_LEN}, {"mean_sqrt_len", TD_POOL_MEAN_SQRT_LEN}};
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
            if (strcmp(mode->valuestring, modes[i].name) == 0)
                s->pooling = modes[i].flag;
        if (!s->pooling)
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "%s: pooling_mode \"%s\" is not supported (supported: cls, max, mean, mean_sqrt_len_tokens)",
                           path, mode->valuestring);
        return TD_OK;
    }
    static const struct {
        const char *key;
        int flag;
    } flags[] = {{"pooling_mode_cls_token", TD_POOL_CLS},
                 {"pooling_mode_max_tokens", TD_POOL_MAX},
                 {"pooling_mode_mean_tokens", TD_POOL_MEAN},
                 {"pooling_mode_mean_sqrt_len_tokens", TD_POOL_MEAN_SQRT_LEN},
                 {"pooling_mode_weightedmean_tokens", 0},
                 {"pooling_mode_lasttoken", 0}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, flags[i].key);
        if (!cJSON_IsTrue(v))
            continue;
        if (!flags[i].flag)
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "%s: %s is not supported (supported: cls, max, mean, mean_sqrt_len_tokens)", path,
                           flags[i].key);
        s->pooling |= flags[i].flag;
    }
    if (!s->pooling)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: no pooling mode is enabled", path);
    return TD_OK;
}

/* modules.json: Transformer -> Pooling -> (Normalize). Anything else is refused by name. */
static td_status load_sentence_transformers(td_ctx *ctx, const char *dir, td_encoder_spec *s) {
    char *path = NULL, *ppath = NULL, *pool_dir = NULL;
    cJSON *mods = NULL, *pool = NULL;
    td_status st = td_path_join(ctx, dir, "modules.json", false, &path);
    if (st != TD_OK)
        goto out;
    if (!td_is_file(path)) {
        if (!(s->transformer_dir = strdup(dir)))
            st = td_fail_oom(ctx, strlen(dir), "a path");
        goto out;
    }
    st = read_json(ctx, path, &mods);
    if (st != TD_OK)
        goto out;
    if (!cJSON_IsArray(mods)) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: expected a list of modules", path);
        goto out;
    }
    s->is_sentence_transformer = true;
    int idx = 0;
    for (const cJSON *m = mods->child; m; m = m->next, idx++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(m, "type");
        const cJSON *mpath = cJSON_GetObjectItemCaseSensitive(m, "path");
        if (!cJSON_IsString(type) || (mpath && !cJSON_IsString(mpath))) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: module %d needs a string \"type\" and \"path\"", path, idx);
            goto out;
        }
        const char *t = type->valuestring;
        const char *rel = mpath ? mpath->valuestring : "";
        const char *dot = strrchr(t, '.');
        const char *cls = dot ? dot + 1 : t;
        if (strcmp(cls, "Transformer") == 0) {
            free(s->transformer_dir);
            s->transformer_dir = NULL;
            if (rel[0] == '\0') /* the transformer lives at the top of the directory */
                st = (s->transformer_dir = strdup(dir)) ? TD_OK : td_fail_oom(ctx, strlen(dir), "a path");
            else
                st = td_path_join(ctx, dir, rel, true, &s->transformer_dir);
        } else if (strcmp(cls, "Pooling") == 0) {
            st = td_path_join(ctx, dir, rel, true, &pool_dir);
            if (st == TD_OK)
                st = td_path_join(ctx, pool_dir, "config.json", false, &ppath);
            if (st == TD_OK)
                st = read_json(ctx, ppath, &pool);
            if (st == TD_OK)
                st = parse_pooling(ctx, ppath, pool, s);
        } else if (strcmp(cls, "Normalize") == 0) {
            s->normalize = true;
        } else {
            st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                         "%s: sentence-transformers module %d (%s) is not supported (supported: Transformer, "
                         "Pooling, Normalize)",
                         path, idx, t);
        }
        if (st != TD_OK)
            goto out;
    }
    if (!s->transformer_dir)
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: no Transformer module", path);
    else if (!s->pooling)
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: no Pooling module", path);
out:
    cJSON_Delete(mods);
    cJSON_Delete(pool);
    free(path);
    free(ppath);
    free(pool_dir);
    return st;
}

td_status td_encoder_spec_load(td_ctx *ctx, const char *dir, td_encoder_spec *s) {
    memset(s, 0, sizeof *s);
    char *path = NULL;
    cJSON *c = NULL;
    td_status st = load_sentence_transformers(ctx, dir, s);
    if (st != TD_OK)
        goto out;
    st = td_path_join(ctx, s->transformer_dir, "config.json", false, &path);
    if (st != TD_OK)
        goto out;
    if (!td_is_file(path)) {
        st = td_fail(ctx, TD_ERR_NOT_FOUND, "%s: no config.json (is this a Hugging Face model directory?)",
                     s->transformer_dir);
        goto out;
    }
    st = read_json(ctx, path, &c);
    if (st != TD_OK)
        goto out;
    if (!cJSON_IsObject(c)) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: expected a JSON object", path);
        goto out;
    }
    st = get_str(ctx, c, "model_type", "", path, s->model_type, sizeof s->model_type);
    if (st != TD_OK)
        goto out;
    if (!strcmp(s->model_type, "bert"))
        s->family = TD_FAM_BERT;
    else if (!strcmp(s->model_type, "roberta") || !strcmp(s->model_type, "xlm-roberta"))
        s->family = TD_FAM_ROBERTA;
    else if (!strcmp(s->model_type, "distilbert"))
        s->family = TD_FAM_DISTILBERT;
    else if (!strcmp(s->model_type, "electra"))
        s->family = TD_FAM_ELECTRA;
    else {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                     "%s: model_type \"%s\" is not supported by export (supported: bert, roberta, xlm-roberta, "
                     "distilbert, electra)",
                     path, s->model_type);
        goto out;
    }
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(c, "architectures");
    if (cJSON_IsArray(archs) && cJSON_IsString(archs->child)) {
        if (strlen(archs->child->valuestring) >= sizeof s->architecture) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: architectures[0] is too long", path);
            goto out;
        }
        snprintf(s->architecture, sizeof s->architecture, "%s", archs->child->valuestring);
    }
    s->head = head_of(s->architecture);
    if ((st = load_hparams(ctx, c, path, s)) != TD_OK || (st = load_labels(ctx, c, path, s)) != TD_OK)
        goto out;
    if (s->hidden % s->heads != 0) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: hidden size %lld is not a multiple of the %lld attention heads", path,
                     (long long)s->hidden, (long long)s->heads);
        goto out;
    }
    if (!td_eb_activation_supported(s->hidden_act)) {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: activation \"%s\" is not supported (supported: %s)", path,
                     s->hidden_act, td_eb_activation_names());
        goto out;
    }
    st = load_tokenizer_inputs(ctx, s->transformer_dir, s);
out:
    cJSON_Delete(c);
    free(path);
    if (st != TD_OK)
        td_encoder_spec_free(s);
    return st;
}

void td_encoder_spec_free(td_encoder_spec *s) {
    if (!s)
        return;
    free(s->id2label_json);
    free(s->transformer_dir);
    s->id2label_json = NULL;
    s->transformer_dir = NULL;
}

/* ---------------- tasks ---------------- */

static const char *const k_task_names[] = {"auto", "feature-extraction", "embedding", "classification",
                                           "token-classification", "question-answering"};

const char *td_export_task_name(td_export_task t) {
    return (unsigned)t < sizeof k_task_names / sizeof k_task_names[0] ? k_task_names[t] : "?";
}

bool td_export_task_parse(const char *s, td_export_task *out) {
    static const struct {
        const char *name;
        td_export_task t;
    } aliases[] = {{"auto", TD_TASK_AUTO},
                   {"feature-extraction", TD_TASK_FEATURES},
                   {"features", TD_TASK_FEATURES},
                   {"embedding", TD_TASK_EMBEDDING},
                   {"sentence-embedding", TD_TASK_EMBEDDING},
                   {"sentence-similarity", TD_TASK_EMBEDDING},
                   {"classification", TD_TASK_CLASSIFICATION},
                   {"text-classification", TD_TASK_CLASSIFICATION},
                   {"sequence-classification", TD_TASK_CLASSIFICATION},
                   {"token-classification", TD_TASK_TOKEN_CLASSIFICATION},
                   {"question-answering", TD_TASK_QUESTION_ANSWERING},
                   {"qa", TD_TASK_QUESTION_ANSWERING}};
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(s, aliases[i].name) == 0) {
            *out = aliases[i].t;
            return true;
        }
    return false;
}

static td_export_task head_task(td_head_kind h) {
    switch (h) {
    case TD_HEAD_SEQCLS: return TD_TASK_CLASSIFICATION;
    case TD_HEAD_TOKCLS:
    case TD_HEAD_ELECTRA_DISCRIM: return TD_TASK_TOKEN_CLASSIFICATION;
    case TD_HEAD_QA: return TD_TASK_QUESTION_ANSWERING;
    default: return TD_TASK_AUTO;
    }
}

td_status td_encoder_spec_task(td_ctx *ctx, const td_encoder_spec *s, td_export_task requested,
                               td_export_task *out) {
    /* possible: the encoder's features always; the embedding pipeline when
     * sentence-transformers describes one; the head task of the architecture */
    td_export_task possible[3];
    int n = 0;
    td_export_task ht = head_task(s->head);
    if (s->is_sentence_transformer)
        possible[n++] = TD_TASK_EMBEDDING;
    if (ht != TD_TASK_AUTO)
        possible[n++] = ht;
    possible[n++] = TD_TASK_FEATURES;
    if (requested == TD_TASK_AUTO) {
        *out = possible[0];
        return TD_OK;
    }
    for (int i = 0; i < n; i++)
        if (possible[i] == requested) {
            *out = requested;
            return TD_OK;
        }
    char list[160] = "";
    for (int i = 0; i < n; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", td_export_task_name(possible[i]));
    }
    return td_fail(ctx, TD_ERR_UNSUPPORTED,
                   "task %s is not possible for %s (model_type %s%s): possible tasks are %s",
                   td_export_task_name(requested), s->architecture[0] ? s->architecture : "this model", s->model_type,
                   s->is_sentence_transformer ? ", sentence-transformers" : "", list);
}
