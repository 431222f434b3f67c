/* Triton model repository writer (layout in triton.h). */
#define _GNU_SOURCE
#include "deploy/triton.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "deploy/output_dir.h"
#include "deploy/pbtxt.h"
#include "deploy/tree.h"
#include "deploy/triton_write.h"
#include "hf/max_length.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKENIZER_JSON_MAX (256u << 20)
#define SMALL_JSON_MAX (16u << 20)
#define TEXT_INPUT "TEXT"

/* Inputs a tokenizer produces; a model input outside this list cannot be fed by the ensemble. */
static const char *const tokenizer_outputs[] = {"input_ids", "attention_mask", "token_type_ids"};

const char *td_triton_type_name(td_dtype t) {
    switch (t) {
    case TD_BOOL: return "TYPE_BOOL";
    case TD_U8: return "TYPE_UINT8";
    case TD_I8: return "TYPE_INT8";
    case TD_I16: return "TYPE_INT16";
    case TD_I32: return "TYPE_INT32";
    case TD_I64: return "TYPE_INT64";
    case TD_F16: return "TYPE_FP16";
    case TD_BF16: return "TYPE_BF16";
    case TD_F32: return "TYPE_FP32";
    case TD_F64: return "TYPE_FP64";
    case TD_STRING: return "TYPE_STRING";
    default: return NULL;
    }
}

bool td_triton_safe_model_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

static bool is_tokenizer_output(const char *name) {
    for (size_t i = 0; i < sizeof tokenizer_outputs / sizeof *tokenizer_outputs; i++)
        if (strcmp(name, tokenizer_outputs[i]) == 0)
            return true;
    return false;
}

static td_status check_tensors(td_ctx *ctx, const td_triton_spec *sp, const td_triton_tensor *t, size_t n,
                               const char *kind) {
    if (n == 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "Triton model %s: the model has no %ss", sp->name, kind);
    for (size_t i = 0; i < n; i++) {
        if (!t[i].name || !*t[i].name)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "Triton model %s: %s %zu has no name", sp->name, kind, i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(t[i].name, t[j].name) == 0)
                return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "Triton model %s: two %ss are named \"%s\"", sp->name,
                               kind, t[i].name);
        if (!td_triton_type_name(t[i].dtype) || t[i].dtype == TD_STRING)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "Triton model %s: %s \"%s\" has element type %s, which tdeploy "
                           "does not map to a Triton type", sp->name, kind, t[i].name, td_dtype_name(t[i].dtype));
        if (t[i].ndim > TD_TRITON_MAX_DIMS)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "Triton model %s: %s \"%s\" has %zu dimensions (at most %d)",
                           sp->name, kind, t[i].name, t[i].ndim, TD_TRITON_MAX_DIMS);
        for (size_t d = 0; d < t[i].ndim; d++)
            if (t[i].dims[d] < -1)
                return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "Triton model %s: %s \"%s\" dimension %zu is %lld",
                               sp->name, kind, t[i].name, d, (long long)t[i].dims[d]);
        if (sp->batch_max > 0) {
            if (t[i].ndim == 0)
                return td_fail(ctx, TD_ERR_SHAPE,
                               "Triton model %s: %s \"%s\" is a scalar, so it has no batch dimension for "
                               "max_batch_size %lld; use batch size 0 (no Triton batching)",
                               sp->name, kind, t[i].name, (long long)sp->batch_max);
            if (t[i].dims[0] != -1 && t[i].dims[0] < sp->batch_max)
                return td_fail(ctx, TD_ERR_SHAPE,
                               "Triton model %s: %s \"%s\" has a fixed batch dimension %lld, smaller than the "
                               "maximum batch %lld; export with a dynamic batch axis",
                               sp->name, kind, t[i].name, (long long)t[i].dims[0], (long long)sp->batch_max);
        }
    }
    return TD_OK;
}

static td_status check_spec(td_ctx *ctx, const td_triton_spec *sp) {
    if (!td_triton_safe_model_name(sp->name))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "'%s' is not a usable Triton model name: use letters, digits, '_', '-' and '.' (not first)",
                       sp->name ? sp->name : "(null)");
    if (!sp->onnx_path || !td_is_file(sp->onnx_path))
        return td_fail(ctx, TD_ERR_NOT_FOUND, "ONNX file %s not found", sp->onnx_path ? sp->onnx_path : "(null)");
    if (sp->generation) { /* the decoupled model takes TEXT only: no tensors, batching or truncation to check */
        if (sp->serving != TD_TRITON_SERVE_TDEPLOY || sp->device != TD_TRITON_CPU)
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "Triton model %s: text generation is served by the tdeploy backend on CPU instances only "
                           "(--triton-backend tdeploy, --device cpu)",
                           sp->name);
        if (!sp->tokenizer_dir)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "Triton model %s: text generation needs the folder of the model's tokenizer.json", sp->name);
        return TD_OK;
    }
    if (sp->batch_max < 0 || (sp->batch_max > 0 && (sp->batch_min < 1 || sp->batch_min > sp->batch_opt ||
                                                    sp->batch_opt > sp->batch_max)))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "batch sizes must satisfy 1 <= min <= opt <= max (got %lld %lld %lld), or max 0 for no "
                       "Triton batching",
                       (long long)sp->batch_min, (long long)sp->batch_opt, (long long)sp->batch_max);
    if (sp->batch_max > INT32_MAX || sp->nb_instances < 1 || sp->nb_instances > 1024 || sp->max_queue_delay_us < 0 ||
        sp->max_length < 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "Triton model %s: need batch max <= 2^31-1, 1 <= instances <= 1024, queue delay >= 0, "
                       "max length >= 0",
                       sp->name);
    TD_TRY(check_tensors(ctx, sp, sp->inputs, sp->n_inputs, "input"));
    TD_TRY(check_tensors(ctx, sp, sp->outputs, sp->n_outputs, "output"));
    for (size_t i = 0; i < sp->n_outputs; i++)
        for (size_t j = 0; j < sp->n_inputs; j++)
            if (strcmp(sp->outputs[i].name, sp->inputs[j].name) == 0)
                return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "Triton model %s: \"%s\" is both an input and an output",
                               sp->name, sp->outputs[i].name);
    if (sp->tokenizer_dir) {
        bool has_ids = false;
        for (size_t i = 0; i < sp->n_inputs; i++) {
            const td_triton_tensor *t = &sp->inputs[i];
            if (!is_tokenizer_output(t->name))
                return td_fail(ctx, TD_ERR_UNSUPPORTED,
                               "Triton model %s: input \"%s\" is not something a tokenizer produces (input_ids, "
                               "attention_mask, token_type_ids), so the text ensemble cannot feed it; write the "
                               "repository without --tokenizer",
                               sp->name, t->name);
            if ((t->dtype != TD_I64 && t->dtype != TD_I32) || t->ndim != 2)
                return td_fail(ctx, TD_ERR_UNSUPPORTED,
                               "Triton model %s: input \"%s\" is %s with %zu dimensions; the tokenizer feeds int64 or "
                               "int32 (batch, sequence) tensors",
                               sp->name, t->name, td_dtype_name(t->dtype), t->ndim);
            has_ids |= strcmp(t->name, "input_ids") == 0;
        }
        if (!has_ids)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "Triton model %s has no input_ids input for the tokenizer to feed",
                           sp->name);
        for (size_t i = 0; i < sp->n_outputs; i++)
            if (strcmp(sp->outputs[i].name, TEXT_INPUT) == 0)
                return td_fail(ctx, TD_ERR_UNSUPPORTED,
                               "Triton model %s: an output is named TEXT, the ensemble's input name", sp->name);
    }
    return TD_OK;
}

/* dims: [ a, b ] without the batch dimension when Triton batches. */
static void put_dims(td_pbtxt *b, const td_triton_tensor *t, bool batched) {
    td_pbtxt_printf(b, "    dims: [ ");
    size_t first = batched ? 1 : 0;
    if (t->ndim == first) /* a per-row scalar: Triton spells it [ 1 ] */
        td_pbtxt_printf(b, "1");
    for (size_t d = first; d < t->ndim; d++)
        td_pbtxt_printf(b, "%s%lld", d > first ? ", " : "", (long long)t->dims[d]);
    td_pbtxt_printf(b, " ]\n");
}

void td_triton_put_tensors(td_pbtxt *b, const char *section, const td_triton_tensor *t, size_t n, bool batched) {
    td_pbtxt_printf(b, "%s [\n", section);
    for (size_t i = 0; i < n; i++) {
        td_pbtxt_printf(b, "  {\n    name: ");
        td_pbtxt_quoted(b, t[i].name);
        td_pbtxt_printf(b, "\n    data_type: %s\n", td_triton_type_name(t[i].dtype));
        put_dims(b, &t[i], batched);
        td_pbtxt_printf(b, "  }%s\n", i + 1 < n ? "," : "");
    }
    td_pbtxt_printf(b, "]\n");
}

void td_triton_put_param(td_pbtxt *b, const char *key, const char *value) {
    td_pbtxt_printf(b, "parameters {\n  key: ");
    td_pbtxt_quoted(b, key);
    td_pbtxt_printf(b, "\n  value { string_value: ");
    td_pbtxt_quoted(b, value);
    td_pbtxt_printf(b, " }\n}\n");
}

void td_triton_put_header(td_pbtxt *b, const char *name, const char *suffix) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", name, suffix);
    td_pbtxt_printf(b, "# written by tdeploy %s\nname: ", td_version());
    td_pbtxt_quoted(b, full);
    td_pbtxt_printf(b, "\n");
}

static void model_config(td_pbtxt *b, const td_triton_spec *sp) {
    bool batched = sp->batch_max > 0;
    td_triton_put_header(b, sp->name, "");
    td_pbtxt_printf(b, "platform: \"onnxruntime_onnx\"\nbackend: \"onnxruntime\"\n");
    td_pbtxt_printf(b, "max_batch_size: %lld\ndefault_model_filename: \"model.onnx\"\n", (long long)sp->batch_max);
    td_triton_put_tensors(b, "input", sp->inputs, sp->n_inputs, batched);
    td_triton_put_tensors(b, "output", sp->outputs, sp->n_outputs, batched);
    if (batched) {
        td_pbtxt_printf(b, "dynamic_batching {\n  preferred_batch_size: [ %lld", (long long)sp->batch_opt);
        if (sp->batch_max != sp->batch_opt)
            td_pbtxt_printf(b, ", %lld", (long long)sp->batch_max);
        td_pbtxt_printf(b, " ]\n  max_queue_delay_microseconds: %lld\n}\n", (long long)sp->max_queue_delay_us);
    }
    td_pbtxt_printf(b, "instance_group [\n  {\n    count: %d\n    kind: %s\n  }\n]\n", sp->nb_instances,
                    sp->device == TD_TRITON_GPU ? "KIND_GPU" : "KIND_CPU");
}


/* "pad_token": "[PAD]" or {"content": "[PAD]", ...} */
static bool json_token(const cJSON *v, char *out, size_t n) {
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= n)
        return false;
    snprintf(out, n, "%s", v->valuestring);
    return true;
}

static cJSON *read_json_if_present(td_ctx *ctx, const char *dir, const char *file, size_t max, td_status *s) {
    char *path = NULL, *text = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    *s = td_path_join(ctx, dir, file, false, &path);
    if (*s != TD_OK || !td_is_file(path))
        goto out;
    if ((*s = td_read_file(ctx, path, max, &text, &len)) != TD_OK)
        goto out;
    if (!(j = cJSON_ParseWithLength(text, len)))
        *s = td_fail(ctx, TD_ERR_FORMAT, "%s is not valid JSON", path);
out:
    free(path);
    free(text);
    return j;
}

td_status td_triton_tokenizer_params(td_ctx *ctx, const td_triton_spec *sp, td_triton_tok_params *tp) {
    td_status s = TD_OK;
    cJSON *cfg = NULL, *map = NULL, *tok = NULL;
    memset(tp, 0, sizeof *tp);
    tok = read_json_if_present(ctx, sp->tokenizer_dir, "tokenizer.json", TOKENIZER_JSON_MAX, &s);
    if (s != TD_OK)
        goto out;
    if (!tok) {
        s = td_fail(ctx, TD_ERR_NOT_FOUND,
                    "%s has no tokenizer.json; the Triton tokenizer model needs the fast-tokenizer file (save the "
                    "tokenizer with a recent transformers to get one)",
                    sp->tokenizer_dir);
        goto out;
    }
    if ((cfg = read_json_if_present(ctx, sp->tokenizer_dir, "tokenizer_config.json", SMALL_JSON_MAX, &s)), s != TD_OK)
        goto out;
    if ((map = read_json_if_present(ctx, sp->tokenizer_dir, "special_tokens_map.json", SMALL_JSON_MAX, &s)),
        s != TD_OK)
        goto out;
    const cJSON *padding = cJSON_GetObjectItemCaseSensitive(tok, "padding");
    if (!(cfg && json_token(cJSON_GetObjectItemCaseSensitive(cfg, "pad_token"), tp->pad_token, sizeof tp->pad_token)) &&
        !(map && json_token(cJSON_GetObjectItemCaseSensitive(map, "pad_token"), tp->pad_token, sizeof tp->pad_token)) &&
        !(cJSON_IsObject(padding) &&
          json_token(cJSON_GetObjectItemCaseSensitive(padding, "pad_token"), tp->pad_token, sizeof tp->pad_token)))
        tp->pad_token[0] = '\0'; /* none: model.py pads with id 0, masked out */
    /* Sequence length: a fixed sequence dimension wins (the model accepts nothing else). */
    for (size_t i = 0; i < sp->n_inputs; i++)
        if (strcmp(sp->inputs[i].name, "input_ids") == 0 && sp->inputs[i].dims[1] > 0)
            tp->pad_to_length = sp->inputs[i].dims[1];
    if (tp->pad_to_length && sp->max_length && sp->max_length != tp->pad_to_length) {
        s = td_fail(ctx, TD_ERR_SHAPE, "Triton model %s: max length %lld but the model's sequence dimension is fixed at %lld",
                    sp->name, (long long)sp->max_length, (long long)tp->pad_to_length);
        goto out;
    }
    tp->max_length = tp->pad_to_length ? tp->pad_to_length : sp->max_length;
    /* else the model's one max length (hf/max_length.h), from the files beside the tokenizer, as `run` cuts */
    if (!tp->max_length)
        s = td_hf_max_length_of_dir(ctx, sp->tokenizer_dir, &tp->max_length, NULL);
out:
    cJSON_Delete(cfg);
    cJSON_Delete(map);
    cJSON_Delete(tok);
    return s;
}

static void tokenizer_config(td_pbtxt *b, const td_triton_spec *sp, const td_triton_tok_params *tp) {
    bool batched = sp->batch_max > 0;
    td_triton_put_header(b, sp->name, "_tokenize");
    td_pbtxt_printf(b, "backend: \"python\"\nmax_batch_size: %lld\n", (long long)sp->batch_max);
    td_pbtxt_printf(b, "input [\n  {\n    name: \"" TEXT_INPUT "\"\n    data_type: TYPE_STRING\n    dims: [ %s ]\n  }\n]\n",
                    batched ? "1" : "-1");
    td_pbtxt_printf(b, "output [\n");
    for (size_t i = 0; i < sp->n_inputs; i++) {
        td_pbtxt_printf(b, "  {\n    name: ");
        td_pbtxt_quoted(b, sp->inputs[i].name);
        td_pbtxt_printf(b, "\n    data_type: %s\n    dims: [ %s ]\n  }%s\n", td_triton_type_name(sp->inputs[i].dtype),
                        batched ? "-1" : "-1, -1", i + 1 < sp->n_inputs ? "," : "");
    }
    td_pbtxt_printf(b, "]\ninstance_group [\n  {\n    count: %d\n    kind: KIND_CPU\n  }\n]\n", sp->nb_instances);
    char num[32];
    td_triton_put_param(b, "tokenizer_file", "tokenizer.json");
    snprintf(num, sizeof num, "%lld", (long long)tp->max_length);
    td_triton_put_param(b, "max_length", num);
    snprintf(num, sizeof num, "%lld", (long long)tp->pad_to_length);
    td_triton_put_param(b, "pad_to_length", num);
    td_triton_put_param(b, "pad_token", tp->pad_token);
    /* model.py reads it at import (see there): the server's Python ignores PYTHONPATH */
    td_pbtxt_printf(b, "# folders (':'-separated) with numpy < 2 and tokenizers for the server's Python; the\n"
                       "# environment variable TDEPLOY_TRITON_PYTHONPATH of the server is read too\n");
    td_triton_put_param(b, "python_path", "");
}

static void map_entries(td_pbtxt *b, const char *section, const td_triton_tensor *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        td_pbtxt_printf(b, "      %s {\n        key: ", section);
        td_pbtxt_quoted(b, t[i].name);
        td_pbtxt_printf(b, "\n        value: ");
        td_pbtxt_quoted(b, t[i].name);
        td_pbtxt_printf(b, "\n      }\n");
    }
}

static void ensemble_config(td_pbtxt *b, const td_triton_spec *sp, const td_triton_tok_params *tp) {
    bool batched = sp->batch_max > 0;
    td_triton_put_header(b, sp->name, "_inference");
    td_pbtxt_printf(b, "platform: \"ensemble\"\nmax_batch_size: %lld\n", (long long)sp->batch_max);
    td_pbtxt_printf(b, "input [\n  {\n    name: \"" TEXT_INPUT "\"\n    data_type: TYPE_STRING\n    dims: [ %s ]\n  }\n]\n",
                    batched ? "1" : "-1");
    td_triton_put_tensors(b, "output", sp->outputs, sp->n_outputs, batched);
    td_pbtxt_printf(b, "ensemble_scheduling {\n  step [\n    {\n      model_name: ");
    char sub[256];
    snprintf(sub, sizeof sub, "%s_tokenize", sp->name);
    td_pbtxt_quoted(b, sub);
    td_pbtxt_printf(b, "\n      model_version: -1\n      input_map {\n        key: \"" TEXT_INPUT
                       "\"\n        value: \"" TEXT_INPUT "\"\n      }\n");
    map_entries(b, "output_map", sp->inputs, sp->n_inputs);
    td_pbtxt_printf(b, "    },\n    {\n      model_name: ");
    td_pbtxt_quoted(b, sp->name);
    td_pbtxt_printf(b, "\n      model_version: -1\n");
    map_entries(b, "input_map", sp->inputs, sp->n_inputs);
    map_entries(b, "output_map", sp->outputs, sp->n_outputs);
    td_pbtxt_printf(b, "    }\n  ]\n}\n");
    if (sp->task)
        td_triton_put_param(b, "task", sp->task);
    /* what the served model truncates a text to (the tokenizer model does it; 0: no truncation) */
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)tp->max_length);
    td_triton_put_param(b, "max_length", num);
}

/* dir/rel/.../ created as needed; returns dir/rel joined (malloc'd) in *out. */
td_status td_triton_make_subdir(td_ctx *ctx, const char *dir, const char *rel, char **out) {
    char *p = NULL;
    td_status s = td_path_join(ctx, dir, rel, true, &p);
    if (s != TD_OK)
        return s;
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        s = td_fail(ctx, TD_ERR_IO, "cannot create directory %s: %s", p, strerror(errno));
        free(p);
        return s;
    }
    if (out)
        *out = p;
    else
        free(p);
    return TD_OK;
}

td_status td_triton_write_text(td_ctx *ctx, const char *dir, const char *file, const td_pbtxt *b) {
    if (b->oom)
        return td_fail_oom(ctx, b->len, "a Triton config");
    char *p = NULL;
    TD_TRY(td_path_join(ctx, dir, file, true, &p));
    td_status s = td_write_file_atomic(ctx, p, b->data ? b->data : "", b->len);
    free(p);
    return s;
}

/* src_dir/rel -> dst_dir/rel (rel checked: relative, no ".."; subfolders created). */
td_status td_triton_place_model(td_ctx *ctx, const char *onnx_path, const char *const *external_data, size_t n,
                                const char *ver) {
    char *onnx_dir = td_path_dirname(onnx_path), *model_dst = NULL;
    if (!onnx_dir)
        return td_fail_oom(ctx, 256, "a path");
    td_status s = td_path_join(ctx, ver, "model-optimized.onnx", true, &model_dst);
    if (s == TD_OK)
        s = td_copy_file(ctx, onnx_path, model_dst);
    for (size_t i = 0; s == TD_OK && i < n; i++)
        if ((s = td_triton_place_file(ctx, onnx_dir, external_data[i], ver, true)) != TD_OK)
            td_wrap(ctx, "copying the external data of %s", onnx_path);
    free(onnx_dir);
    free(model_dst);
    return s;
}

td_status td_triton_place_file(td_ctx *ctx, const char *src_dir, const char *rel, const char *dst_dir, bool required) {
    char *src = NULL, *dst = NULL;
    td_status s = td_path_join(ctx, src_dir, rel, true, &src);
    if (s == TD_OK)
        s = td_path_join(ctx, dst_dir, rel, true, &dst);
    if (s != TD_OK)
        goto out;
    if (!td_is_file(src)) {
        if (required)
            s = td_fail(ctx, TD_ERR_NOT_FOUND, "%s not found", src);
        goto out;
    }
    /* external data may sit in a subfolder of the ONNX file's folder */
    for (char *c = dst + strlen(dst_dir) + 1; (c = strchr(c, '/')); c++) {
        *c = '\0';
        int rc = mkdir(dst, 0755);
        *c = '/';
        if (rc != 0 && errno != EEXIST) {
            s = td_fail(ctx, TD_ERR_IO, "cannot create a directory for %s: %s", dst, strerror(errno));
            goto out;
        }
    }
    s = td_copy_file(ctx, src, dst);
out:
    free(src);
    free(dst);
    return s;
}

static td_status write_onnxruntime_tree(td_ctx *ctx, const td_triton_spec *sp, const char *root) {
    td_pbtxt b = {0};
    char *dir = NULL, *ver = NULL, *onnx_dir = NULL, *name = NULL;
    td_status s = TD_OK;
    td_triton_tok_params tp;
    if (sp->tokenizer_dir && (s = td_triton_tokenizer_params(ctx, sp, &tp)) != TD_OK)
        goto out;

    /* NAME: the ONNX model */
    if ((s = td_triton_make_subdir(ctx, root, sp->name, &dir)) != TD_OK || (s = td_triton_make_subdir(ctx, dir, "1", &ver)) != TD_OK)
        goto out;
    model_config(&b, sp);
    if ((s = td_triton_write_text(ctx, dir, "config.pbtxt", &b)) != TD_OK)
        goto out;
    if (!(onnx_dir = td_path_dirname(sp->onnx_path))) {
        s = td_fail_oom(ctx, 256, "a path");
        goto out;
    }
    char *model_dst = NULL;
    if ((s = td_path_join(ctx, ver, "model.onnx", true, &model_dst)) != TD_OK)
        goto out;
    s = td_copy_file(ctx, sp->onnx_path, model_dst);
    free(model_dst);
    if (s != TD_OK)
        goto out;
    for (size_t i = 0; i < sp->n_external_data; i++)
        if ((s = td_triton_place_file(ctx, onnx_dir, sp->external_data[i], ver, true)) != TD_OK) {
            td_wrap(ctx, "copying the external data of %s", sp->onnx_path);
            goto out;
        }
    if (!sp->tokenizer_dir)
        goto out;

    /* NAME_tokenize: Python backend */
    free(dir), free(ver), dir = ver = NULL;
    td_pbtxt_free(&b);
    if (asprintf(&name, "%s_tokenize", sp->name) < 0) {
        name = NULL;
        s = td_fail_oom(ctx, 256, "a name");
        goto out;
    }
    if ((s = td_triton_make_subdir(ctx, root, name, &dir)) != TD_OK || (s = td_triton_make_subdir(ctx, dir, "1", &ver)) != TD_OK)
        goto out;
    tokenizer_config(&b, sp, &tp);
    if ((s = td_triton_write_text(ctx, dir, "config.pbtxt", &b)) != TD_OK)
        goto out;
    td_pbtxt_free(&b);
    td_pbtxt_printf(&b, "%s", td_triton_tokenizer_model_py);
    if ((s = td_triton_write_text(ctx, ver, "model.py", &b)) != TD_OK)
        goto out;
    if ((s = td_triton_place_file(ctx, sp->tokenizer_dir, "tokenizer.json", ver, true)) != TD_OK ||
        (s = td_triton_place_file(ctx, sp->tokenizer_dir, "tokenizer_config.json", ver, false)) != TD_OK ||
        (s = td_triton_place_file(ctx, sp->tokenizer_dir, "special_tokens_map.json", ver, false)) != TD_OK)
        goto out;

    /* NAME_inference: the ensemble */
    free(dir), free(ver), free(name), dir = ver = name = NULL;
    td_pbtxt_free(&b);
    if (asprintf(&name, "%s_inference", sp->name) < 0) {
        name = NULL;
        s = td_fail_oom(ctx, 256, "a name");
        goto out;
    }
    if ((s = td_triton_make_subdir(ctx, root, name, &dir)) != TD_OK || (s = td_triton_make_subdir(ctx, dir, "1", &ver)) != TD_OK)
        goto out;
    ensemble_config(&b, sp, &tp);
    s = td_triton_write_text(ctx, dir, "config.pbtxt", &b);
out:
    td_pbtxt_free(&b);
    free(dir);
    free(ver);
    free(onnx_dir);
    free(name);
    return s;
}

static td_status write_tree(td_ctx *ctx, const td_triton_spec *sp, const char *root) {
    if (sp->generation) {
        td_triton_gen_spec g = {.name = sp->name, .onnx_path = sp->onnx_path, .external_data = sp->external_data,
                                .n_external_data = sp->n_external_data, .model_dir = sp->tokenizer_dir,
                                .nb_instances = sp->nb_instances, .threads = sp->threads,
                                .precision = sp->precision, .max_new_tokens = sp->max_new_tokens};
        return td_triton_write_generation_model(ctx, &g, root);
    }
    if (sp->serving == TD_TRITON_SERVE_ONNXRUNTIME)
        return write_onnxruntime_tree(ctx, sp, root);
    TD_TRY(td_triton_write_tdeploy_model(ctx, sp, root));
    if (sp->serving != TD_TRITON_SERVE_BOTH)
        return TD_OK;
    /* beside it, the same model on ONNX Runtime under NAME_onnxruntime (+ its tokenizer and ensemble) */
    char ort_name[256];
    snprintf(ort_name, sizeof ort_name, "%s_onnxruntime", sp->name);
    td_triton_spec ort = *sp;
    ort.name = ort_name;
    return write_onnxruntime_tree(ctx, &ort, root);
}

/* The folders a spec of this NAME may write, for any --triton-backend: NAME (ONNX Runtime or tdeploy model),
 * NAME_tokenize and NAME_inference (ONNX Runtime with a tokenizer), NAME_onnxruntime* (both). A rewrite with
 * another choice replaces the ones it writes and removes the other tdeploy-written ones (they belong to the
 * replaced model). */
#define N_MODEL_SUFFIXES 6
static const char *const model_suffixes[N_MODEL_SUFFIXES] = {
    "", "_tokenize", "_inference", "_onnxruntime", "_onnxruntime_tokenize", "_onnxruntime_inference"};

/* Before anything is written: every folder of this model that already exists in
 * the repository must be one tdeploy wrote (its config.pbtxt header), unless force. */
static td_status check_existing_models(td_ctx *ctx, const td_triton_spec *sp, const char *repo) {
    for (int k = 0; k < N_MODEL_SUFFIXES; k++) {
        char p[4096];
        struct stat st;
        if (snprintf(p, sizeof p, "%s/%s%s", repo, sp->name, model_suffixes[k]) >= (int)sizeof p)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "the output path %s is too long", repo);
        if (lstat(p, &st) != 0)
            continue;
        if (!S_ISDIR(st.st_mode))
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "%s exists and is not a model folder; remove it or choose another --name", p);
        if (!sp->force && !td_triton_model_is_tdeploys(p))
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "%s holds a model tdeploy did not write (its config.pbtxt has no tdeploy header); it was "
                           "left untouched: choose another --name, or pass --force to replace it",
                           p);
    }
    return TD_OK;
}

/* Moves this model's folders from the finished tmp repository into the existing
 * repository out, each swapped in whole; other models in out are not touched. A
 * folder of this model that the new spec does not write (NAME_tokenize and
 * NAME_inference of an earlier run with a tokenizer) is removed when tdeploy
 * wrote it, since it refers to the replaced model. */
static td_status merge_models(td_ctx *ctx, const td_triton_spec *sp, const char *tmp, const char *out) {
    for (int k = 0; k < N_MODEL_SUFFIXES; k++) {
        char from[4096], to[4096];
        if (snprintf(from, sizeof from, "%s/%s%s", tmp, sp->name, model_suffixes[k]) >= (int)sizeof from ||
            snprintf(to, sizeof to, "%s/%s%s", out, sp->name, model_suffixes[k]) >= (int)sizeof to)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "the output path %s is too long", out);
        if (td_is_dir(from))
            TD_TRY(td_output_replace(ctx, from, to, "triton-repo", true, NULL)); /* checked before writing */
        else if (td_is_dir(to) && td_triton_model_is_tdeploys(to))
            TD_TRY(td_remove_tree(ctx, to));
    }
    return TD_OK;
}

td_status td_triton_write_repository(td_ctx *ctx, const td_triton_spec *spec, const char *out_dir) {
    char *tmp = NULL, *parent = NULL;
    td_status s = check_spec(ctx, spec);
    if (s != TD_OK)
        return s;
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/')
        n--;
    char *out = strndup(out_dir, n);
    if (!out) {
        s = td_fail_oom(ctx, n + 16, "a path");
        goto out;
    }
    struct stat st;
    bool existing = lstat(out, &st) == 0;
    if (existing && !S_ISDIR(st.st_mode)) {
        s = td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "%s exists and is not a directory; choose another output folder",
                    out);
        goto out;
    }
    if (existing && (s = check_existing_models(ctx, spec, out)) != TD_OK)
        goto out;
    if (asprintf(&tmp, "%s.tmp.XXXXXX", out) < 0) {
        tmp = NULL;
        s = td_fail_oom(ctx, n + 16, "a path");
        goto out;
    }
    if (!mkdtemp(tmp)) {
        s = td_fail(ctx, TD_ERR_IO, "cannot create a temporary directory next to %s: %s (does its parent exist and is it writable?)",
                    out, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    chmod(tmp, 0755);
    if ((s = write_tree(ctx, spec, tmp)) != TD_OK) {
        td_wrap(ctx, "writing the Triton repository %s (nothing was changed there)", out);
        goto out;
    }
    if (existing) {
        /* an existing repository: only this model's folders change */
        if ((s = merge_models(ctx, spec, tmp, out)) != TD_OK)
            goto out;
    } else {
        if ((s = td_output_write_marker(ctx, tmp, "triton-repo")) != TD_OK)
            goto out;
        if (rename(tmp, out) != 0) {
            s = td_fail(ctx, TD_ERR_IO, "cannot move %s to %s: %s", tmp, out, strerror(errno));
            goto out;
        }
        free(tmp); /* moved: nothing to clean */
        tmp = NULL;
        if ((parent = td_path_dirname(out)))
            s = td_fsync_dir(ctx, parent);
    }
out:
    if (tmp) {
        td_ctx quiet = {0};
        td_remove_tree(&quiet, tmp);
    }
    free(tmp);
    free(parent);
    free(out);
    return s;
}
