/* Model configuration JSON -> tb_config (see tb_config.h). Triton serializes the
 * config with protobuf's JSON mapping, so int64 fields (dims) arrive as strings
 * and int32 fields (max_batch_size) as numbers; both forms are accepted. */
#include "triton_backend/tb_config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return false;
}

/* A JSON number or a decimal string holding an integer in [lo, hi]. */
static bool json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out) {
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d < (double)lo || d > (double)hi || d != (double)(int64_t)d)
            return false;
        *out = (int64_t)d;
        return true;
    }
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v->valuestring, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

/* parameters { key: K value { string_value: V } } -> V, or NULL when absent. */
static const char *param(const cJSON *root, const char *key) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "parameters"), key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "string_value");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool param_int(const cJSON *root, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err,
                      size_t n) {
    const char *s = param(root, key);
    if (!s)
        return true; /* keep the default */
    cJSON tmp = {.type = cJSON_String, .valuestring = (char *)s};
    if (!json_int(&tmp, lo, hi, out))
        return fail(err, n, "parameter \"%s\" is \"%s\"; it takes an integer from %lld to %lld", key, s,
                    (long long)lo, (long long)hi);
    return true;
}

static bool param_file(const cJSON *root, const char *key, const char *dflt, char *dst, size_t cap, char *err,
                       size_t n) {
    const char *s = param(root, key);
    if (!s)
        s = dflt;
    /* a plain file name inside the version directory: no separators, no "..", not hidden */
    if (!*s || strlen(s) >= cap || strchr(s, '/') || s[0] == '.')
        return fail(err, n, "parameter \"%s\" is \"%s\"; it takes a file name inside the version directory", key, s);
    snprintf(dst, cap, "%s", s);
    return true;
}

static bool parse_inputs(const cJSON *root, tb_config *c, char *err, size_t n) {
    const cJSON *in;
    cJSON_ArrayForEach(in, cJSON_GetObjectItemCaseSensitive(root, "input")) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name");
        if (!cJSON_IsString(name))
            return fail(err, n, "an input has no name");
        const char *nm = name->valuestring;
        if (strcmp(nm, TB_TEXT_INPUT) == 0)
            c->has_text = true;
        else if (strcmp(nm, TB_PAIR_INPUT) == 0)
            c->has_pair = true;
        else if (strcmp(nm, "input_ids") == 0)
            c->has_ids = true;
        else if (strcmp(nm, "attention_mask") == 0)
            c->has_mask = true;
        else if (strcmp(nm, "token_type_ids") == 0)
            c->has_types = true;
        else
            return fail(err, n,
                        "input \"%s\" is not one the tdeploy backend fills (TEXT, TEXT_PAIR, input_ids, "
                        "attention_mask, token_type_ids)",
                        nm);
    }
    if (!c->has_text && !c->has_ids)
        return fail(err, n, "the config has neither a TEXT input nor an input_ids input");
    if (c->has_pair && !c->has_text)
        return fail(err, n, "TEXT_PAIR needs a TEXT input beside it");
    return true;
}

static bool parse_outputs(const cJSON *root, tb_config *c, char *err, size_t n) {
    const cJSON *out;
    cJSON_ArrayForEach(out, cJSON_GetObjectItemCaseSensitive(root, "output")) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(out, "name");
        if (!cJSON_IsString(name) || strlen(name->valuestring) >= TB_NAME_MAX)
            return fail(err, n, "an output has no name or a name of %d or more bytes", TB_NAME_MAX);
        if (c->n_outputs == TB_MAX_OUTPUTS)
            return fail(err, n, "more than %d outputs", TB_MAX_OUTPUTS);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(out, "data_type");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "TYPE_FP32") != 0)
            return fail(err, n, "output \"%s\" must be TYPE_FP32 (the backend returns float32)", name->valuestring);
        tb_output_config *o = &c->outputs[c->n_outputs++];
        snprintf(o->name, sizeof o->name, "%s", name->valuestring);
        const cJSON *dims = cJSON_GetObjectItemCaseSensitive(out, "dims");
        int64_t d0 = 0;
        if (cJSON_GetArraySize(dims) >= 1 && !json_int(cJSON_GetArrayItem(dims, 0), -1, INT64_MAX, &d0))
            return fail(err, n, "output \"%s\" has a dimension that is not an integer >= -1", o->name);
        o->per_token = cJSON_GetArraySize(dims) >= 1 && d0 == -1;
    }
    if (c->n_outputs == 0)
        return fail(err, n, "the config names no outputs");
    return true;
}

/* The generation model's config (tb_config.h): decoupled, unbatched, TEXT in, TEXT_OUTPUT / FINISH_REASON out. */
static bool parse_generation(const cJSON *root, tb_config *c, char *err, size_t n) {
    const cJSON *policy = cJSON_GetObjectItemCaseSensitive(root, "model_transaction_policy");
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(policy, "decoupled")))
        return fail(err, n, "task text-generation streams its text: add model_transaction_policy { decoupled: true }");
    if (c->max_batch_size != 0)
        return fail(err, n, "task text-generation runs one request at a time: set max_batch_size: 0 (it is %lld)",
                    (long long)c->max_batch_size);
    static const char *const inputs[] = {TB_TEXT_INPUT, "max_new_tokens", "temperature", "top_k", "top_p",
                                         "repetition_penalty", "seed"};
    const cJSON *in;
    cJSON_ArrayForEach(in, cJSON_GetObjectItemCaseSensitive(root, "input")) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name");
        bool known = false;
        for (size_t i = 0; cJSON_IsString(name) && i < sizeof inputs / sizeof *inputs; i++)
            known |= strcmp(name->valuestring, inputs[i]) == 0;
        if (!known)
            return fail(err, n,
                        "input \"%s\" is not one the generation model takes (TEXT, max_new_tokens, temperature, "
                        "top_k, top_p, repetition_penalty, seed)",
                        cJSON_IsString(name) ? name->valuestring : "");
        c->has_text |= strcmp(name->valuestring, TB_TEXT_INPUT) == 0;
    }
    if (!c->has_text)
        return fail(err, n, "task text-generation needs a TEXT input (TYPE_STRING, dims [ 1 ])");
    const cJSON *out;
    cJSON_ArrayForEach(out, cJSON_GetObjectItemCaseSensitive(root, "output")) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(out, "name");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(out, "data_type");
        if (!cJSON_IsString(name) ||
            (strcmp(name->valuestring, TB_GEN_OUTPUT) != 0 && strcmp(name->valuestring, TB_GEN_FINISH) != 0))
            return fail(err, n, "output \"%s\" is not one the generation model produces (TEXT_OUTPUT, FINISH_REASON)",
                        cJSON_IsString(name) ? name->valuestring : "");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "TYPE_STRING") != 0)
            return fail(err, n, "output \"%s\" must be TYPE_STRING", name->valuestring);
        if (c->n_outputs == TB_MAX_OUTPUTS)
            return fail(err, n, "more than %d outputs", TB_MAX_OUTPUTS);
        tb_output_config *o = &c->outputs[c->n_outputs++];
        snprintf(o->name, sizeof o->name, "%s", name->valuestring);
    }
    if (c->n_outputs == 0 || strcmp(c->outputs[0].name, TB_GEN_OUTPUT) != 0)
        return fail(err, n, "task text-generation needs TEXT_OUTPUT as its first output (TYPE_STRING, dims [ 1 ])");
    c->max_new_tokens = 64;
    return param_int(root, "max_new_tokens", 1, 1 << 24, &c->max_new_tokens, err, n);
}

bool tb_config_parse(const char *json, size_t len, tb_config *c, char *err, size_t n) {
    memset(c, 0, sizeof *c);
    c->precision = TD_PRECISION_FP32;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail(err, n, "the model configuration is not a JSON object");
    }
    bool ok = false;
    int64_t v = 0;
    const cJSON *mbs = cJSON_GetObjectItemCaseSensitive(root, "max_batch_size");
    if (mbs && !json_int(mbs, 0, INT32_MAX, &c->max_batch_size)) {
        fail(err, n, "max_batch_size is not an integer >= 0");
        goto out;
    }
    const char *task = param(root, "task");
    c->generate = task && strcmp(task, TB_GEN_TASK) == 0;
    if (!c->generate && c->max_batch_size == 0) {
        fail(err, n, "max_batch_size is 0; the tdeploy backend needs Triton batching (max_batch_size >= 1) so that "
                     "every tensor has its batch dimension first");
        goto out;
    }
    if (!param_int(root, "threads", 0, 1024, &v, err, n))
        goto out;
    c->threads = (int)v;
    if (!param_int(root, "max_length", 0, 1 << 24, &c->max_length, err, n))
        goto out;
    c->max_length_given = param(root, "max_length") != NULL;
    const char *p = param(root, "precision");
    if (p && strcmp(p, "fp32") == 0)
        c->precision = TD_PRECISION_FP32;
    else if (p && strcmp(p, "fp16") == 0)
        c->precision = TD_PRECISION_FP16;
    else if (p && strcmp(p, "bf16") == 0)
        c->precision = TD_PRECISION_BF16;
    else if (p) {
        fail(err, n, "parameter \"precision\" is \"%s\"; it takes fp32, fp16 or bf16", p);
        goto out;
    }
    const char *t = param(root, "truncation");
    if (t && strcmp(t, "reject") == 0)
        c->reject_too_long = true;
    else if (t && strcmp(t, "truncate") != 0) {
        fail(err, n, "parameter \"truncation\" is \"%s\"; it takes truncate or reject", t);
        goto out;
    }
    if (!param_file(root, "model_file", "model-optimized.onnx", c->model_file, sizeof c->model_file, err, n) ||
        !param_file(root, "engine_file", "model.engine", c->engine_file, sizeof c->engine_file, err, n))
        goto out;
    bool parsed = c->generate ? parse_generation(root, c, err, n)
                              : parse_inputs(root, c, err, n) && parse_outputs(root, c, err, n);
    if (!parsed)
        goto out;
    ok = true;
out:
    cJSON_Delete(root);
    return ok;
}
