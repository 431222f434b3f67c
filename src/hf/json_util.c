/* Typed, checked access to small JSON files. */
#define _GNU_SOURCE
#include "hf/json_util.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "hf/safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *td_hf_json_type_name(const cJSON *v) {
    if (!v)
        return "missing";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsArray(v))
        return "a list";
    if (cJSON_IsObject(v))
        return "an object";
    return "an unknown JSON value";
}

static int cmp_key(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

td_status td_hf_json_parse_value(td_ctx *ctx, const char *text, size_t len, const char *label, cJSON **out) {
    *out = NULL;
    size_t bad;
    if (!td_utf8_valid((const uint8_t *)text, len, &bad))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: not valid UTF-8 (byte %zu); re-save the file as UTF-8", label, bad);
    if (memchr(text, '\0', len))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: contains a NUL byte; it is not a JSON text file", label);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        return td_fail(ctx, TD_ERR_FORMAT,
                       "%s: not valid JSON (error near byte %zu, or nested more than %d levels deep); fix or "
                       "re-download the file",
                       label, at, CJSON_NESTING_LIMIT);
    }
    for (const char *p = end; p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return td_fail(ctx, TD_ERR_FORMAT, "%s: unexpected data after the JSON value at byte %zu", label,
                           (size_t)(p - text));
        }
    *out = root;
    return TD_OK;
}

td_status td_hf_json_parse(td_ctx *ctx, const char *text, size_t len, const char *label, cJSON **out) {
    *out = NULL;
    cJSON *root = NULL;
    TD_TRY(td_hf_json_parse_value(ctx, text, len, label, &root));
    td_status s = TD_OK;
    const char **keys = NULL;
    if (!cJSON_IsObject(root)) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: top level is %s; a JSON object was expected", label,
                    td_hf_json_type_name(root));
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(root);
    keys = calloc(n ? n : 1, sizeof *keys);
    if (!keys) {
        s = td_fail_oom(ctx, n * sizeof *keys, "JSON keys");
        goto out;
    }
    size_t k = 0;
    for (const cJSON *e = root->child; e; e = e->next)
        keys[k++] = e->string;
    qsort(keys, n, sizeof *keys, cmp_key);
    for (k = 1; k < n; k++)
        if (strcmp(keys[k - 1], keys[k]) == 0) {
            s = td_fail(ctx, TD_ERR_FORMAT, "%s: key \"%s\" appears twice; keep only one", label, keys[k]);
            goto out;
        }
out:
    free(keys);
    if (s != TD_OK)
        cJSON_Delete(root);
    else
        *out = root;
    return s;
}

static td_status load(td_ctx *ctx, const char *path, bool object, cJSON **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    TD_TRY(td_read_file(ctx, path, TD_HF_JSON_MAX_BYTES, &text, &len));
    td_status s = object ? td_hf_json_parse(ctx, text, len, path, out) : td_hf_json_parse_value(ctx, text, len, path, out);
    free(text);
    return s;
}

td_status td_hf_json_load(td_ctx *ctx, const char *path, cJSON **out) { return load(ctx, path, true, out); }
td_status td_hf_json_load_value(td_ctx *ctx, const char *path, cJSON **out) { return load(ctx, path, false, out); }

/* The item for key, or NULL when absent. Also NULL (with *is_null) for JSON null. */
static const cJSON *lookup(const cJSON *obj, const char *key, bool *is_null) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *is_null = v && cJSON_IsNull(v);
    return *is_null ? NULL : v;
}

td_status td_hf_json_int(td_ctx *ctx, const cJSON *obj, const char *label, const char *key, int64_t dflt,
                         bool null_ok, int64_t lo, int64_t hi, int64_t *out) {
    bool is_null;
    const cJSON *v = lookup(obj, key, &is_null);
    if (is_null && !null_ok)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is null; it must be an integer in [%lld, %lld]", label, key,
                       (long long)lo, (long long)hi);
    if (!v) {
        *out = dflt;
        return TD_OK;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(d) || d != floor(d))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is %s; it must be an integer in [%lld, %lld]", label, key,
                       cJSON_IsNumber(v) ? "not a whole number" : td_hf_json_type_name(v), (long long)lo,
                       (long long)hi);
    if (d < (double)lo || d > (double)hi)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is %.17g; it must be an integer in [%lld, %lld]", label, key, d,
                       (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return TD_OK;
}

td_status td_hf_json_double(td_ctx *ctx, const cJSON *obj, const char *label, const char *key, double dflt,
                            bool null_ok, double lo, double hi, double *out) {
    bool is_null;
    const cJSON *v = lookup(obj, key, &is_null);
    if (is_null && !null_ok)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is null; it must be a number in [%g, %g]", label, key, lo, hi);
    if (!v) {
        *out = dflt;
        return TD_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is %s; it must be a number in [%g, %g]", label, key,
                       td_hf_json_type_name(v), lo, hi);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is %g; it must be a number in [%g, %g]", label, key,
                       v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return TD_OK;
}

td_status td_hf_json_bool(td_ctx *ctx, const cJSON *obj, const char *label, const char *key, bool dflt, bool null_ok,
                          bool *out) {
    bool is_null;
    const cJSON *v = lookup(obj, key, &is_null);
    if (is_null && !null_ok)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is null; it must be true or false", label, key);
    if (!v) {
        *out = dflt;
        return TD_OK;
    }
    if (!cJSON_IsBool(v))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is %s; it must be true or false", label, key,
                       td_hf_json_type_name(v));
    *out = cJSON_IsTrue(v);
    return TD_OK;
}

td_status td_hf_json_string(td_ctx *ctx, const cJSON *obj, const char *label, const char *key, const char *dflt,
                            bool null_ok, char **out) {
    *out = NULL;
    bool is_null;
    const cJSON *v = lookup(obj, key, &is_null);
    if (is_null && !null_ok)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is null; it must be a string", label, key);
    const char *src = dflt;
    if (v) {
        if (!cJSON_IsString(v))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" is %s; it must be a string", label, key,
                           td_hf_json_type_name(v));
        src = v->valuestring;
    }
    if (!src)
        return TD_OK;
    *out = strdup(src);
    if (!*out)
        return td_fail_oom(ctx, strlen(src) + 1, "a JSON string");
    return TD_OK;
}
