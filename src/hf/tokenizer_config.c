/* tokenizer_config.json -> td_tokenizer_config. */
#define _GNU_SOURCE
#include "hf/tokenizer_config.h"

#include "core/ctx.h"
#include "hf/json_util.h"

#include <stdlib.h>
#include <string.h>

void td_tokenizer_config_free(td_tokenizer_config *tc) {
    if (!tc)
        return;
    free(tc->path);
    for (size_t i = 0; i < tc->n_model_input_names; i++)
        free(tc->model_input_names[i]);
    free(tc->model_input_names);
    free(tc->padding_side);
    free(tc->truncation_side);
    free(tc->pad_token);
    free(tc->unk_token);
    free(tc->cls_token);
    free(tc->sep_token);
    free(tc->mask_token);
    free(tc->bos_token);
    free(tc->eos_token);
    free(tc->tokenizer_class);
    cJSON_Delete(tc->json);
    free(tc);
}

/* A special token is a string or an AddedToken object {"content": "...", ...}. */
static td_status special_token(td_ctx *ctx, const td_tokenizer_config *tc, const char *key, char **out) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tc->json, key);
    if (!v || cJSON_IsNull(v))
        return TD_OK;
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" must be a token string or an object with a \"content\" "
                       "string", tc->path, key);
    *out = strdup(v->valuestring);
    return *out ? TD_OK : td_fail_oom(ctx, strlen(v->valuestring), "a token");
}

static td_status tristate(td_ctx *ctx, const td_tokenizer_config *tc, const char *key, int *out) {
    *out = -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tc->json, key);
    if (!v || cJSON_IsNull(v))
        return TD_OK;
    bool b;
    TD_TRY(td_hf_json_bool(ctx, tc->json, tc->path, key, false, true, &b));
    *out = b;
    return TD_OK;
}

static td_status side(td_ctx *ctx, const td_tokenizer_config *tc, const char *key, char **out) {
    TD_TRY(td_hf_json_string(ctx, tc->json, tc->path, key, "right", true, out));
    if (!*out && !(*out = strdup("right")))
        return td_fail_oom(ctx, 8, "a string");
    if (strcmp(*out, "right") != 0 && strcmp(*out, "left") != 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is \"%s\"; it must be \"right\" or \"left\"", tc->path, key,
                       *out);
    return TD_OK;
}

static td_status parse(td_ctx *ctx, td_tokenizer_config *tc) {
    const cJSON *j = tc->json;
    /* model_max_length: transformers stores int(1e30) for "no limit" */
    const cJSON *mml = cJSON_GetObjectItemCaseSensitive(j, "model_max_length");
    tc->model_max_length = -1;
    if (mml && !cJSON_IsNull(mml)) {
        if (!cJSON_IsNumber(mml) || mml->valuedouble < 0)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: \"model_max_length\" is %s; it must be a non-negative integer",
                           tc->path, td_hf_json_type_name(mml));
        if (mml->valuedouble < 1e15)
            TD_TRY(td_hf_json_int(ctx, j, tc->path, "model_max_length", -1, true, 0, (int64_t)1e15,
                                  &tc->model_max_length));
    }
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(j, "model_input_names");
    if (names && !cJSON_IsNull(names)) {
        if (!cJSON_IsArray(names))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: \"model_input_names\" is %s; it must be a list of strings",
                           tc->path, td_hf_json_type_name(names));
        size_t n = (size_t)cJSON_GetArraySize(names);
        tc->model_input_names = calloc(n ? n : 1, sizeof *tc->model_input_names);
        if (!tc->model_input_names)
            return td_fail_oom(ctx, n * sizeof(char *), "model_input_names");
        for (const cJSON *e = names->child; e; e = e->next) {
            if (!cJSON_IsString(e))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: \"model_input_names\" holds %s; it must hold strings",
                               tc->path, td_hf_json_type_name(e));
            if (!(tc->model_input_names[tc->n_model_input_names++] = strdup(e->valuestring)))
                return td_fail_oom(ctx, strlen(e->valuestring), "model_input_names");
        }
    }
    TD_TRY(tristate(ctx, tc, "do_lower_case", &tc->do_lower_case));
    TD_TRY(tristate(ctx, tc, "add_prefix_space", &tc->add_prefix_space));
    TD_TRY(tristate(ctx, tc, "clean_up_tokenization_spaces", &tc->clean_up_tokenization_spaces));
    TD_TRY(side(ctx, tc, "padding_side", &tc->padding_side));
    TD_TRY(side(ctx, tc, "truncation_side", &tc->truncation_side));
    TD_TRY(special_token(ctx, tc, "pad_token", &tc->pad_token));
    TD_TRY(special_token(ctx, tc, "unk_token", &tc->unk_token));
    TD_TRY(special_token(ctx, tc, "cls_token", &tc->cls_token));
    TD_TRY(special_token(ctx, tc, "sep_token", &tc->sep_token));
    TD_TRY(special_token(ctx, tc, "mask_token", &tc->mask_token));
    TD_TRY(special_token(ctx, tc, "bos_token", &tc->bos_token));
    TD_TRY(special_token(ctx, tc, "eos_token", &tc->eos_token));
    TD_TRY(td_hf_json_string(ctx, j, tc->path, "tokenizer_class", NULL, true, &tc->tokenizer_class));
    return TD_OK;
}

td_status td_tokenizer_config_load(td_ctx *ctx, const char *path, td_tokenizer_config **out) {
    *out = NULL;
    td_tokenizer_config *tc = calloc(1, sizeof *tc);
    if (!tc || !(tc->path = strdup(path))) {
        free(tc);
        return td_fail_oom(ctx, sizeof *tc, "a tokenizer config");
    }
    td_status s = td_hf_json_load(ctx, path, &tc->json);
    if (s == TD_OK)
        s = parse(ctx, tc);
    if (s != TD_OK)
        td_tokenizer_config_free(tc);
    else
        *out = tc;
    return s;
}
