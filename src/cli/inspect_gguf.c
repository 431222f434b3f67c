/* tdeploy inspect for .gguf files: version, alignment, key/values (scalars with
 * their value, strings cut at 200 bytes, arrays as element type and count),
 * tensor count by ggml type and bytes, every tensor with -v or --json. */
#define _GNU_SOURCE
#include "cli/cli.h"

#include "gguf/gguf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *vtype_name(td_gguf_vtype t) {
    static const char *n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64",
                              "i64", "f64"};
    return (unsigned)t < sizeof n / sizeof n[0] ? n[t] : "?";
}

/* The value as JSON (strings as given, cut at 200 bytes in text mode; arrays as {type, count}). */
static cJSON *kv_json(const td_gguf_kv *kv, bool full) {
    switch (kv->type) {
    case TD_GGUF_STRING: {
        size_t n = full || kv->str.len <= 200 ? (size_t)kv->str.len : 200;
        char *s = strndup(kv->str.s, n);
        cJSON *o = cJSON_CreateString(s ? s : "");
        free(s);
        return o;
    }
    case TD_GGUF_ARRAY: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "array_of", vtype_name(kv->elem));
        cJSON_AddNumberToObject(o, "count", (double)kv->count);
        return o;
    }
    case TD_GGUF_BOOL: return cJSON_CreateBool(kv->v.b);
    case TD_GGUF_F32:
    case TD_GGUF_F64: return cJSON_CreateNumber(kv->v.f);
    case TD_GGUF_I8:
    case TD_GGUF_I16:
    case TD_GGUF_I32:
    case TD_GGUF_I64: return cJSON_CreateNumber((double)kv->v.i);
    default: return cJSON_CreateNumber((double)kv->v.u);
    }
}

int td_inspect_gguf(const char *path, bool json, bool verbose) {
    td_ctx *ctx = td_ctx_new();
    td_gguf *f = NULL;
    if (!ctx)
        return TD_EXIT_FAIL;
    td_status st = td_gguf_open(ctx, path, &f);
    if (st != TD_OK) {
        int rc = td_cli_report("inspect", ctx, st);
        td_ctx_free(ctx);
        return rc;
    }
    uint64_t bytes = 0;
    uint64_t per_type[64] = {0};
    for (size_t i = 0; i < f->n_tensors; i++) {
        bytes += f->tensors[i].nbytes;
        per_type[f->tensors[i].type < 64 ? f->tensors[i].type : 63]++;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "gguf");
    cJSON_AddNumberToObject(o, "version", f->version);
    cJSON_AddNumberToObject(o, "alignment", (double)f->alignment);
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    for (size_t i = 0; i < f->n_kvs; i++)
        cJSON_AddItemToObject(md, f->kvs[i].key, kv_json(&f->kvs[i], json));
    cJSON_AddNumberToObject(o, "tensor_bytes", (double)bytes);
    cJSON *types = cJSON_AddObjectToObject(o, "tensor_types");
    for (uint32_t t = 0; t < 64; t++)
        if (per_type[t])
            cJSON_AddNumberToObject(types, td_ggml_type_name(t), (double)per_type[t]);
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < f->n_tensors; i++) {
        const td_gguf_tensor *t = &f->tensors[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", t->name);
        cJSON_AddStringToObject(e, "type", td_ggml_type_name(t->type));
        cJSON *d = cJSON_AddArrayToObject(e, "dims");
        for (int k = 0; k < t->n_dims; k++)
            cJSON_AddItemToArray(d, cJSON_CreateNumber((double)t->dims[k]));
        cJSON_AddNumberToObject(e, "offset", (double)t->offset);
        cJSON_AddNumberToObject(e, "nbytes", (double)t->nbytes);
        cJSON_AddItemToArray(ts, e);
    }
    if (json) {
        char *s = cJSON_Print(o);
        if (s)
            printf("%s\n", s);
        free(s);
    } else {
        printf("GGUF v%u file %s: %zu tensors, %.1f MB of tensor data, alignment %llu\n", f->version, path,
               f->n_tensors, (double)bytes / 1e6, (unsigned long long)f->alignment);
        printf("tensor types:");
        for (uint32_t t = 0; t < 64; t++)
            if (per_type[t])
                printf(" %s x%llu", td_ggml_type_name(t), (unsigned long long)per_type[t]);
        printf("\nmetadata (%zu keys):\n", f->n_kvs);
        for (size_t i = 0; i < f->n_kvs; i++) {
            cJSON *v = kv_json(&f->kvs[i], false);
            char *s = v ? cJSON_PrintUnformatted(v) : NULL;
            printf("  %-44s %-6s %s\n", f->kvs[i].key, vtype_name(f->kvs[i].type), s ? s : "?");
            free(s);
            cJSON_Delete(v);
        }
        if (verbose)
            for (size_t i = 0; i < f->n_tensors; i++) {
                const td_gguf_tensor *t = &f->tensors[i];
                printf("  %-40s %-5s", t->name, td_ggml_type_name(t->type));
                for (int k = 0; k < t->n_dims; k++)
                    printf("%s%lld", k ? " x " : " ", (long long)t->dims[k]);
                printf("\n");
            }
    }
    cJSON_Delete(o);
    td_gguf_free(f);
    td_ctx_free(ctx);
    return TD_EXIT_OK;
}
