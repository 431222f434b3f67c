/* sentence-transformers: modules.json, pooling config, sentence_bert_config.json. */
#define _GNU_SOURCE
#include "hf/st_modules.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "hf/json_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MODULES 256

static const struct {
    unsigned bit;
    const char *mode;    /* new-style pooling_mode value */
    const char *old_key; /* classic boolean key */
} pool_modes[] = {
    {TD_POOL_CLS, "cls", "pooling_mode_cls_token"},
    {TD_POOL_MEAN, "mean", "pooling_mode_mean_tokens"},
    {TD_POOL_MAX, "max", "pooling_mode_max_tokens"},
    {TD_POOL_MEAN_SQRT_LEN, "mean_sqrt_len_tokens", "pooling_mode_mean_sqrt_len_tokens"},
    {TD_POOL_WEIGHTED_MEAN, "weightedmean", "pooling_mode_weightedmean_tokens"},
    {TD_POOL_LAST_TOKEN, "lasttoken", "pooling_mode_lasttoken"},
};
#define N_POOL_MODES (sizeof pool_modes / sizeof pool_modes[0])

const char *td_st_module_kind_name(td_st_module_kind k) {
    switch (k) {
    case TD_ST_MODULE_TRANSFORMER: return "Transformer";
    case TD_ST_MODULE_POOLING: return "Pooling";
    case TD_ST_MODULE_NORMALIZE: return "Normalize";
    case TD_ST_MODULE_DENSE: return "Dense";
    default: return "other";
    }
}

const char *td_st_pooling_name(unsigned modes, char *buf, size_t n) {
    buf[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < N_POOL_MODES; i++)
        if (modes & pool_modes[i].bit) {
            int w = snprintf(buf + used, n - used, "%s%s", used ? "+" : "", pool_modes[i].mode);
            if (w < 0 || (size_t)w >= n - used)
                break;
            used += (size_t)w;
        }
    if (!modes)
        snprintf(buf, n, "none");
    return buf;
}

void td_st_info_free(td_st_info *info) {
    if (!info)
        return;
    for (size_t i = 0; i < info->n_modules; i++) {
        free(info->modules[i].type);
        free(info->modules[i].path);
        free(info->modules[i].name);
    }
    free(info->modules);
    free(info);
}

/* Class name after the last '.', matched to a kind. */
static td_st_module_kind kind_of(const char *type) {
    const char *dot = strrchr(type, '.');
    const char *cls = dot ? dot + 1 : type;
    if (strcmp(cls, "Transformer") == 0)
        return TD_ST_MODULE_TRANSFORMER;
    if (strcmp(cls, "Pooling") == 0)
        return TD_ST_MODULE_POOLING;
    if (strcmp(cls, "Normalize") == 0)
        return TD_ST_MODULE_NORMALIZE;
    if (strcmp(cls, "Dense") == 0)
        return TD_ST_MODULE_DENSE;
    return TD_ST_MODULE_OTHER;
}

/* dir joined with a module's relative path ("" = dir itself). */
static td_status module_dir(td_ctx *ctx, const char *dir, const char *rel, char **out) {
    if (rel[0] == '\0') {
        *out = strdup(dir);
        return *out ? TD_OK : td_fail_oom(ctx, strlen(dir), "a path");
    }
    return td_path_join(ctx, dir, rel, true, out);
}

static td_status parse_pooling(td_ctx *ctx, td_st_info *info, const char *path) {
    cJSON *j = NULL;
    TD_TRY(td_hf_json_load(ctx, path, &j));
    td_status s = TD_OK;
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "pooling_mode");
    if (mode && !cJSON_IsNull(mode)) {
        /* newer sentence-transformers: "pooling_mode": "mean" or a list of modes */
        const cJSON *first = cJSON_IsArray(mode) ? mode->child : mode;
        for (const cJSON *m = first; m; m = cJSON_IsArray(mode) ? m->next : NULL) {
            size_t k = 0;
            while (k < N_POOL_MODES && !(cJSON_IsString(m) && strcmp(m->valuestring, pool_modes[k].mode) == 0))
                k++;
            if (k == N_POOL_MODES) {
                s = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: \"pooling_mode\" %s%s%s is not a known mode (cls, mean, max, "
                            "mean_sqrt_len_tokens, weightedmean, lasttoken)", path, cJSON_IsString(m) ? "\"" : "",
                            cJSON_IsString(m) ? m->valuestring : td_hf_json_type_name(m), cJSON_IsString(m) ? "\"" : "");
                goto out;
            }
            info->pooling_modes |= pool_modes[k].bit;
        }
    } else {
        for (size_t k = 0; k < N_POOL_MODES; k++) {
            bool on;
            s = td_hf_json_bool(ctx, j, path, pool_modes[k].old_key, false, true, &on);
            if (s != TD_OK)
                goto out;
            if (on)
                info->pooling_modes |= pool_modes[k].bit;
        }
    }
    if (!info->pooling_modes) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s selects no pooling mode; set pooling_mode (or pooling_mode_*_tokens)", path);
        goto out;
    }
    int64_t dim_new, dim_old;
    if ((s = td_hf_json_int(ctx, j, path, "embedding_dimension", -1, true, 1, 1 << 20, &dim_new)) != TD_OK ||
        (s = td_hf_json_int(ctx, j, path, "word_embedding_dimension", -1, true, 1, 1 << 20, &dim_old)) != TD_OK ||
        (s = td_hf_json_bool(ctx, j, path, "include_prompt", true, true, &info->include_prompt)) != TD_OK)
        goto out;
    info->word_embedding_dimension = dim_old > 0 ? dim_old : dim_new;
    info->has_pooling = true;
out:
    cJSON_Delete(j);
    return s;
}

static td_status parse_sbert_config(td_ctx *ctx, td_st_info *info, const char *dir) {
    char *path = NULL;
    cJSON *j = NULL;
    TD_TRY(td_path_join(ctx, dir, "sentence_bert_config.json", false, &path));
    td_status s = TD_OK;
    if (!td_is_file(path))
        goto out;
    if ((s = td_hf_json_load(ctx, path, &j)) != TD_OK ||
        (s = td_hf_json_int(ctx, j, path, "max_seq_length", -1, true, 1, 1 << 24, &info->max_seq_length)) != TD_OK)
        goto out;
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(j, "do_lower_case");
    if (lc && !cJSON_IsNull(lc)) {
        bool v;
        if ((s = td_hf_json_bool(ctx, j, path, "do_lower_case", false, true, &v)) != TD_OK)
            goto out;
        info->do_lower_case = v;
    }
out:
    cJSON_Delete(j);
    free(path);
    return s;
}

td_status td_st_info_load(td_ctx *ctx, const char *dir, td_st_info **out) {
    *out = NULL;
    char *modules_path = NULL, *mdir = NULL, *pool_path = NULL;
    cJSON *j = NULL;
    td_st_info *info = NULL;
    td_status s = td_path_join(ctx, dir, "modules.json", false, &modules_path);
    if (s != TD_OK)
        return s;
    if (!td_is_file(modules_path))
        goto out; /* not a sentence-transformers directory */
    if ((s = td_hf_json_load_value(ctx, modules_path, &j)) != TD_OK)
        goto out;
    if (!cJSON_IsArray(j)) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: top level is %s; it must be a list of modules", modules_path,
                    td_hf_json_type_name(j));
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(j);
    if (n == 0 || n > MAX_MODULES) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s lists %zu modules; expected 1 to %d", modules_path, n, MAX_MODULES);
        goto out;
    }
    info = calloc(1, sizeof *info);
    if (!info || !(info->modules = calloc(n, sizeof *info->modules))) {
        s = td_fail_oom(ctx, n * sizeof *info->modules, "modules");
        goto out;
    }
    info->max_seq_length = -1;
    info->do_lower_case = -1;
    info->include_prompt = true;
    for (const cJSON *m = j->child; m; m = m->next) {
        td_st_module *mod = &info->modules[info->n_modules];
        if (!cJSON_IsObject(m)) {
            s = td_fail(ctx, TD_ERR_FORMAT, "%s: entry %zu is %s; it must be an object with type and path",
                        modules_path, info->n_modules, td_hf_json_type_name(m));
            goto out;
        }
        info->n_modules++;
        if ((s = td_hf_json_string(ctx, m, modules_path, "type", NULL, false, &mod->type)) != TD_OK ||
            (s = td_hf_json_string(ctx, m, modules_path, "path", "", false, &mod->path)) != TD_OK ||
            (s = td_hf_json_string(ctx, m, modules_path, "name", "", true, &mod->name)) != TD_OK)
            goto out;
        if (!mod->type) {
            s = td_fail(ctx, TD_ERR_FORMAT, "%s: entry %zu has no \"type\"", modules_path, info->n_modules - 1);
            goto out;
        }
        if (!mod->name && !(mod->name = strdup(""))) {
            s = td_fail_oom(ctx, 1, "a string");
            goto out;
        }
        mod->kind = kind_of(mod->type);
        free(mdir);
        mdir = NULL;
        if ((s = module_dir(ctx, dir, mod->path, &mdir)) != TD_OK) {
            td_wrap(ctx, "%s: entry %zu", modules_path, info->n_modules - 1);
            goto out;
        }
        if (mod->kind == TD_ST_MODULE_POOLING) {
            if (info->has_pooling) {
                s = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s lists two Pooling modules", modules_path);
                goto out;
            }
            free(pool_path);
            pool_path = NULL;
            if ((s = td_path_join(ctx, mdir, "config.json", false, &pool_path)) != TD_OK ||
                (s = parse_pooling(ctx, info, pool_path)) != TD_OK)
                goto out;
        } else if (mod->kind == TD_ST_MODULE_NORMALIZE) {
            info->has_normalize = true;
        } else if (mod->kind == TD_ST_MODULE_TRANSFORMER) {
            if ((s = parse_sbert_config(ctx, info, mdir)) != TD_OK)
                goto out;
        }
    }
    *out = info;
    info = NULL;
out:
    td_st_info_free(info);
    cJSON_Delete(j);
    free(modules_path);
    free(mdir);
    free(pool_path);
    return s;
}

td_status td_st_info_check_supported(td_ctx *ctx, const td_st_info *info, const char *dir) {
    for (size_t i = 0; i < info->n_modules; i++) {
        td_st_module_kind k = info->modules[i].kind;
        if (k != TD_ST_MODULE_TRANSFORMER && k != TD_ST_MODULE_POOLING && k != TD_ST_MODULE_NORMALIZE)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s/modules.json: module %zu (%s) is not supported; tdeploy "
                           "handles Transformer, Pooling and Normalize modules", dir, i, info->modules[i].type);
        if (k == TD_ST_MODULE_TRANSFORMER && i != 0)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s/modules.json: the Transformer must be module 0", dir);
    }
    unsigned ok = TD_POOL_CLS | TD_POOL_MEAN | TD_POOL_MAX | TD_POOL_MEAN_SQRT_LEN;
    if (info->pooling_modes & ~ok) {
        char buf[128];
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: pooling %s is not supported; tdeploy handles cls, mean, max and "
                       "mean_sqrt_len_tokens", dir, td_st_pooling_name(info->pooling_modes & ~ok, buf, sizeof buf));
    }
    return TD_OK;
}
