/* Checkpoint tensors -> graph initializers (see weights.h). */
#define _GNU_SOURCE
#include "export/weights.h"

#include "core/tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 512

/* Convert n elements of src (F32/F16/BF16) to dst dtype (F32/F16) in a new buffer. */
static void *convert(const void *src, td_dtype from, td_dtype to, size_t n) {
    void *dst = malloc(n * td_dtype_size(to) + 1);
    if (!dst)
        return NULL;
    if (from == TD_F32 && to == TD_F16) {
        td_f32_to_f16_array(src, dst, n);
    } else if (from == TD_F16 && to == TD_F32) {
        td_f16_to_f32_array(src, dst, n);
    } else if (from == TD_BF16 && to == TD_F32) {
        td_bf16_to_f32_array(src, dst, n);
    } else if (from == TD_BF16 && to == TD_F16) {
        /* via float32 in blocks, exact for values fp16 can hold */
        float tmp[1024];
        uint16_t *d = dst;
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i += 1024) {
            size_t k = n - i < 1024 ? n - i : 1024;
            td_bf16_to_f32_array(s + i, tmp, k);
            td_f32_to_f16_array(tmp, d + i, k);
        }
    } else if (from == TD_F64) {
        const double *s = src;
        if (to == TD_F32)
            for (size_t i = 0; i < n; i++)
                ((float *)dst)[i] = (float)s[i];
        else
            for (size_t i = 0; i < n; i++)
                ((uint16_t *)dst)[i] = td_f32_to_f16((float)s[i]);
    } else {
        free(dst);
        return NULL;
    }
    return dst;
}

static td_value *param_v(td_xw *w, td_dtype dtype, int rank, const int64_t *dims, const char *fmt, va_list ap) {
    td_eb *b = w->b;
    if (td_eb_status(b) != TD_OK)
        return NULL;
    char name[NAME_MAX_LEN];
    vsnprintf(name, sizeof name, fmt, ap);
    td_value *existing = td_graph_find(b->g, name);
    if (existing && existing->initializer) {
        if (existing->initializer->dtype != dtype) {
            td_eb_fail(b, td_fail(b->ctx, TD_ERR_INTERNAL, "tensor '%s' is needed as both %s and %s", name,
                                  td_dtype_name(existing->initializer->dtype), td_dtype_name(dtype)));
            return NULL;
        }
        return existing; /* tied weight: one initializer */
    }
    if (w->gguf)
        return td_xw_gguf_param(w, dtype, rank, dims, name);
    const td_st_tensor *t = td_checkpoint_find(w->ck, name);
    if (!t) {
        td_eb_fail(b, td_fail(b->ctx, TD_ERR_NOT_FOUND, "%s: tensor '%s' (%s) is missing from the checkpoint",
                              td_checkpoint_path(w->ck), name, w->why));
        return NULL;
    }
    bool same = t->rank == rank;
    for (int i = 0; same && i < rank; i++)
        same = t->dims[i] == dims[i];
    if (!same) {
        char want[128], got[128];
        td_shape_str(dims, rank, want, sizeof want);
        td_shape_str(t->dims, t->rank, got, sizeof got);
        td_eb_fail(b, td_fail(b->ctx, TD_ERR_SHAPE,
                              "%s: tensor '%s' has shape %s but config.json implies %s (%s); the config and the "
                              "weights do not belong together",
                              t->path, name, got, want, w->why));
        return NULL;
    }
    if (t->dtype != TD_F32 && t->dtype != TD_F16 && t->dtype != TD_BF16 && t->dtype != TD_F64) {
        td_eb_fail(b, td_fail(b->ctx, TD_ERR_DTYPE, "%s: tensor '%s' is %s; export needs a floating-point weight",
                              t->path, name, td_dtype_name(t->dtype)));
        return NULL;
    }
    td_tensor *tensor = NULL;
    td_status s;
    if (t->dtype == dtype && t->map) {
        size_t offset = (size_t)((const uint8_t *)t->data - t->map->data);
        if (t->nbytes == 0)
            offset = 0;
        s = td_tensor_new_mapped(b->ctx, name, dtype, rank, dims, t->map, offset, t->nbytes, &tensor);
    } else if (t->dtype == dtype) {
        s = td_tensor_new_copy(b->ctx, name, dtype, rank, dims, t->data, t->nbytes, &tensor);
    } else {
        size_t n = (size_t)t->numel;
        void *buf = convert(t->data, t->dtype, dtype, n);
        if (!buf)
            s = td_fail(b->ctx, TD_ERR_OUT_OF_MEMORY,
                        "out of memory converting tensor '%s' from %s to %s (%zu elements)", name,
                        td_dtype_name(t->dtype), td_dtype_name(dtype), n);
        else
            s = td_tensor_new_owned(b->ctx, name, dtype, rank, dims, buf, n * td_dtype_size(dtype), &tensor);
    }
    if (s != TD_OK) {
        td_eb_fail(b, s);
        return NULL;
    }
    w->bytes += tensor->nbytes;
    return td_eb_initializer(b, tensor);
}

td_value *td_xw_param(td_xw *w, td_dtype dtype, int rank, const int64_t *dims, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    td_value *v = param_v(w, dtype, rank, dims, fmt, ap);
    va_end(ap);
    return v;
}

td_value *td_xw_vec(td_xw *w, td_dtype dtype, int64_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int64_t dims[1] = {n};
    td_value *v = param_v(w, dtype, 1, dims, fmt, ap);
    va_end(ap);
    return v;
}

td_value *td_xw_mat(td_xw *w, td_dtype dtype, int64_t rows, int64_t cols, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int64_t dims[2] = {rows, cols};
    td_value *v = param_v(w, dtype, 2, dims, fmt, ap);
    va_end(ap);
    return v;
}

bool td_xw_has(const td_xw *w, const char *fmt, ...) {
    char name[NAME_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return td_checkpoint_find(w->ck, name) != NULL;
}
