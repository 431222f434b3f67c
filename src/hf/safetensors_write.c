/* safetensors writer: header JSON built by hand (cJSON would print large offsets
 * as 1e+15, which no safetensors reader accepts), padded with spaces to 8 bytes,
 * then the tensor bytes, all through an atomic file. */
#include "hf/safetensors.h"

#include "core/checked.h"
#include "core/ctx.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_fmt_u64(strbuf *b, uint64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    sb_add(b, tmp, (size_t)n);
}

/* JSON string literal: escape quotes, backslashes and control characters. */
static void sb_json_string(strbuf *b, const char *s) {
    sb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            sb_add(b, esc, 2);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_add(b, esc, 6);
        } else {
            sb_add(b, (const char *)p, 1);
        }
    }
    sb_add(b, "\"", 1);
}

static td_status check_inputs(td_ctx *ctx, const char *path, const td_st_write_tensor *tensors, size_t n,
                              const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                              size_t *nbytes) {
    for (size_t i = 0; i < n; i++) {
        const td_st_write_tensor *t = &tensors[i];
        if (!t->name || strcmp(t->name, "__metadata__") == 0)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "writing %s: tensor %zu has no usable name", path, i);
        if (!td_utf8_valid((const uint8_t *)t->name, strlen(t->name), NULL))
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "writing %s: tensor %zu name is not valid UTF-8", path, i);
        for (size_t k = 0; k < i; k++)
            if (strcmp(tensors[k].name, t->name) == 0)
                return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "writing %s: tensor name '%s' given twice", path, t->name);
        if (!td_dtype_safetensors_name(t->dtype) || td_dtype_size(t->dtype) == 0)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "writing %s: tensor '%s' has dtype %s, which safetensors cannot "
                           "store", path, t->name, td_dtype_name(t->dtype));
        int64_t numel;
        if (t->rank < 0 || (t->rank > 0 && !t->dims) || !td_shape_numel(t->dims, t->rank, &numel) ||
            !td_mul_size((size_t)numel, td_dtype_size(t->dtype), &nbytes[i]))
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "writing %s: tensor '%s' has a negative or overflowing shape",
                           path, t->name);
        if (nbytes[i] && !t->data)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "writing %s: tensor '%s' has no data", path, t->name);
    }
    for (size_t i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i] ||
            !td_utf8_valid((const uint8_t *)meta_keys[i], strlen(meta_keys[i]), NULL) ||
            !td_utf8_valid((const uint8_t *)meta_values[i], strlen(meta_values[i]), NULL))
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "writing %s: metadata entry %zu is missing or not UTF-8",
                           path, i);
        for (size_t k = 0; k < i; k++)
            if (strcmp(meta_keys[k], meta_keys[i]) == 0)
                return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "writing %s: metadata key '%s' given twice", path,
                               meta_keys[i]);
    }
    return TD_OK;
}

td_status td_st_write(td_ctx *ctx, const char *path, const td_st_write_tensor *tensors, size_t n,
                      const char *const *meta_keys, const char *const *meta_values, size_t n_meta) {
    td_status s = TD_OK;
    strbuf hb = {0};
    td_atomic_file af = {0};
    size_t *nbytes = calloc(n ? n : 1, sizeof *nbytes);
    if (!nbytes) {
        s = td_fail_oom(ctx, n * sizeof *nbytes, "tensor sizes");
        goto out;
    }
    s = check_inputs(ctx, path, tensors, n, meta_keys, meta_values, n_meta, nbytes);
    if (s != TD_OK)
        goto out;

    sb_str(&hb, "{");
    bool first = true;
    if (n_meta) {
        sb_str(&hb, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i)
                sb_str(&hb, ",");
            sb_json_string(&hb, meta_keys[i]);
            sb_str(&hb, ":");
            sb_json_string(&hb, meta_values[i]);
        }
        sb_str(&hb, "}");
        first = false;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const td_st_write_tensor *t = &tensors[i];
        if (!first)
            sb_str(&hb, ",");
        first = false;
        sb_json_string(&hb, t->name);
        sb_str(&hb, ":{\"dtype\":\"");
        sb_str(&hb, td_dtype_safetensors_name(t->dtype));
        sb_str(&hb, "\",\"shape\":[");
        for (int d = 0; d < t->rank; d++) {
            if (d)
                sb_str(&hb, ",");
            sb_fmt_u64(&hb, (uint64_t)t->dims[d]);
        }
        sb_str(&hb, "],\"data_offsets\":[");
        sb_fmt_u64(&hb, offset);
        sb_str(&hb, ",");
        if (!td_add_u64(offset, nbytes[i], &offset)) {
            s = td_fail(ctx, TD_ERR_OVERFLOW, "writing %s: total tensor size overflows", path);
            goto out;
        }
        sb_fmt_u64(&hb, offset);
        sb_str(&hb, "]}");
    }
    sb_str(&hb, "}");
    while (hb.len % 8 != 0)
        sb_str(&hb, " ");
    if (hb.oom) {
        s = td_fail_oom(ctx, hb.cap * 2, "the safetensors header");
        goto out;
    }
    if (hb.len > TD_ST_MAX_HEADER_BYTES) {
        s = td_fail(ctx, TD_ERR_UNSUPPORTED, "writing %s: header would be %zu bytes, above the format's 100 MB limit",
                    path, hb.len);
        goto out;
    }
    uint8_t lenbuf[8];
    for (int b = 0; b < 8; b++)
        lenbuf[b] = (uint8_t)((uint64_t)hb.len >> (8 * b));
    s = td_atomic_open(ctx, &af, path);
    if (s != TD_OK)
        goto out;
    s = td_atomic_write(ctx, &af, lenbuf, 8);
    if (s == TD_OK)
        s = td_atomic_write(ctx, &af, hb.p, hb.len);
    for (size_t i = 0; i < n && s == TD_OK; i++)
        s = td_atomic_write(ctx, &af, tensors[i].data, nbytes[i]);
    if (s == TD_OK)
        s = td_atomic_commit(ctx, &af);
out:
    td_atomic_abort(&af);
    free(hb.p);
    free(nbytes);
    return s;
}
