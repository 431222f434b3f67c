/* The model's max length, one rule (max_length.h). */
#include "hf/max_length.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "hf/tokenizer_config.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

int64_t td_hf_position_limit(const td_hf_config *c) {
    if (!c || c->max_position_embeddings <= 0)
        return 0;
    int64_t limit = c->max_position_embeddings;
    if (c->family == TD_HF_ROBERTA || c->family == TD_HF_XLM_ROBERTA)
        limit -= c->pad_token_id + 1; /* positions start after the padding index */
    return limit;
}

int64_t td_hf_max_length(const td_hf_config *config, int64_t st_max, int64_t tok_max, const char **source) {
    int64_t limit = td_hf_position_limit(config);
    const char *src = "config.json max_position_embeddings";
    int64_t cap = -1;
    const char *cap_src = NULL;
    if (st_max > 0)
        cap = st_max, cap_src = "sentence_bert_config.json max_seq_length";
    else if (tok_max > 0)
        cap = tok_max, cap_src = "tokenizer_config.json model_max_length";
    if (cap > 0 && (limit <= 0 || cap < limit))
        limit = cap, src = cap_src;
    if (limit <= 0)
        limit = 0, src = "nothing (no config.json, sentence_bert_config.json or tokenizer_config.json length)";
    if (source)
        *source = src;
    return limit;
}

/* sentence_bert_config.json's max_seq_length; 0 when the file or the key is absent.
 * Read directly: a convert output has the file but not the module folders. */
static td_status st_max_seq_length(td_ctx *ctx, const char *dir, int64_t *out) {
    *out = 0;
    char *path = NULL, *text = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    td_status st = td_path_join(ctx, dir, "sentence_bert_config.json", false, &path);
    if (st != TD_OK || !td_is_file(path))
        goto out;
    if ((st = td_read_file(ctx, path, 1 << 20, &text, &len)) != TD_OK)
        goto out;
    j = cJSON_ParseWithLength(text, len);
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, "max_seq_length") : NULL;
    if (!j || !cJSON_IsObject(j)) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s is not a JSON object", path);
    } else if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > (double)(1 << 24) ||
            v->valuedouble != (double)(int64_t)v->valuedouble)
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: max_seq_length must be a positive integer", path);
        else
            *out = (int64_t)v->valuedouble;
    }
out:
    cJSON_Delete(j);
    free(text);
    free(path);
    return st;
}

td_status td_hf_max_length_of_dir(td_ctx *ctx, const char *dir, int64_t *len, const char **source) {
    td_hf_config *cfg = NULL;
    td_tokenizer_config *tc = NULL;
    char *path = NULL;
    int64_t st_max = 0;
    *len = 0;
    td_status s = td_path_join(ctx, dir, "config.json", false, &path);
    if (s == TD_OK && td_is_file(path)) {
        /* a config.json tdeploy cannot type (a decoder's, another tool's) only gives no position limit */
        td_ctx quiet = {0};
        if (td_hf_config_load(&quiet, path, &cfg) != TD_OK)
            cfg = NULL;
    }
    free(path);
    path = NULL;
    if (s == TD_OK)
        s = td_path_join(ctx, dir, "tokenizer_config.json", false, &path);
    if (s == TD_OK && td_is_file(path))
        s = td_tokenizer_config_load(ctx, path, &tc);
    if (s == TD_OK)
        s = st_max_seq_length(ctx, dir, &st_max);
    if (s == TD_OK)
        *len = td_hf_max_length(cfg, st_max, tc ? tc->model_max_length : -1, source);
    free(path);
    td_hf_config_free(cfg);
    td_tokenizer_config_free(tc);
    return s;
}
