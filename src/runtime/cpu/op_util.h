/* Helpers shared by the CPU op implementations: element access across dtypes,
 * attribute/axis handling, numpy broadcasting and dtype checks. */
#ifndef TD_RUNTIME_CPU_OP_UTIL_H
#define TD_RUNTIME_CPU_OP_UTIL_H

#include "core/checked.h"
#include "runtime/rt.h"
#include "tdeploy/session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- dtype classes the runtime implements ---- */
static inline bool td_is_float_dt(td_dtype t) { return t == TD_F32 || t == TD_F16 || t == TD_BF16; }
static inline bool td_is_int_dt(td_dtype t) { return t == TD_I32 || t == TD_I64; }
static inline bool td_is_num_dt(td_dtype t) { return td_is_float_dt(t) || td_is_int_dt(t); }
static inline bool td_is_any_dt(td_dtype t) { return td_is_num_dt(t) || t == TD_BOOL; }

/* memcpy that accepts NULL pointers when n == 0 (empty tensors have no data). */
static inline void td_memcpy(void *dst, const void *src, size_t n) {
    if (n)
        memcpy(dst, src, n);
}

/* ---- element access (index in elements) ---- */
static inline float td_ldf(const void *p, td_dtype t, int64_t i) {
    switch (t) {
    case TD_F32: return ((const float *)p)[i];
    case TD_F16: return td_f16_to_f32(((const uint16_t *)p)[i]);
    case TD_BF16: return td_bf16_to_f32(((const uint16_t *)p)[i]);
    case TD_I32: return (float)((const int32_t *)p)[i];
    case TD_I64: return (float)((const int64_t *)p)[i];
    case TD_BOOL: return ((const uint8_t *)p)[i] ? 1.0f : 0.0f;
    default: return 0.0f;
    }
}
static inline void td_stf(void *p, td_dtype t, int64_t i, float v) {
    switch (t) {
    case TD_F32: ((float *)p)[i] = v; break;
    case TD_F16: ((uint16_t *)p)[i] = td_f32_to_f16(v); break;
    case TD_BF16: ((uint16_t *)p)[i] = td_f32_to_bf16(v); break;
    case TD_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case TD_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case TD_BOOL: ((uint8_t *)p)[i] = v != 0.0f; break;
    default: break;
    }
}
static inline int64_t td_ldi(const void *p, td_dtype t, int64_t i) {
    switch (t) {
    case TD_I64: return ((const int64_t *)p)[i];
    case TD_I32: return ((const int32_t *)p)[i];
    case TD_BOOL: return ((const uint8_t *)p)[i] != 0;
    case TD_F32: case TD_F16: case TD_BF16: {
        float f = td_ldf(p, t, i);
        return isnan(f) ? 0 : (f >= 9.2e18f ? INT64_MAX : (f <= -9.2e18f ? INT64_MIN : (int64_t)f));
    }
    default: return 0;
    }
}
static inline void td_sti(void *p, td_dtype t, int64_t i, int64_t v) {
    switch (t) {
    case TD_I64: ((int64_t *)p)[i] = v; break;
    case TD_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case TD_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    default: td_stf(p, t, i, (float)v); break;
    }
}

/* ---- axes and int lists ---- */
/* Normalize axis in [-rank, rank) to [0, rank); false if out of range. */
static inline bool td_norm_axis(int64_t axis, int rank, int *out) {
    *out = 0;
    if (axis < -rank || axis >= rank)
        return false;
    *out = (int)(axis < 0 ? axis + rank : axis);
    return true;
}

/* Read an int32/int64 1-D (or scalar) tensor into out (at most max values). */
/* Slice (any opset): per-axis start and step and the output shape, from the node's attributes or its
 * starts/ends/axes/steps inputs (host data); ONNX clamping rules. Shared by the CPU and CUDA backends. */
td_status td_slice_plan(td_ctx *ctx, const td_rt_node *rn, td_rt_tensor *const *in, int64_t *start, int64_t *step,
                        int64_t *shape);
td_status td_read_int_list(td_ctx *ctx, const td_rt_node *rn, const td_rt_tensor *t, const char *what, int64_t *out,
                           int max, int *n);

/* ---- checks used by init ---- */
td_status td_check_dtype(td_ctx *ctx, const td_rt_node *rn, int slot, td_dtype t, bool (*ok)(td_dtype),
                         const char *allowed);
td_status td_check_inputs(td_ctx *ctx, const td_rt_node *rn, int min_in, int max_in, int min_out, int max_out);
/* Every input in [from, to) has dtype t (same-type constraint T). */
td_status td_check_same(td_ctx *ctx, const td_rt_node *rn, const td_dtype *in, int from, int to);
/* Reject an attribute value the runtime does not implement. */
td_status td_unsupported_attr(td_ctx *ctx, const td_rt_node *rn, const char *attr, const char *value);

/* ---- broadcasting ---- */
td_status td_broadcast_shape(td_ctx *ctx, const td_rt_node *rn, td_rt_tensor *const *in, int n, td_rt_tensor *out);

/* Iteration over a broadcast: dims merged where possible; the last dim is the
 * inner loop. strides are in elements (0 for broadcast axes). */
typedef struct td_ewb {
    int rank;
    int n;
    int64_t shape[TD_MAX_RANK];
    int64_t strides[4][TD_MAX_RANK];
} td_ewb;

void td_ewb_init(td_ewb *b, const td_rt_tensor *out, td_rt_tensor *const *in, int n);

/* Calls fn(ctx_ptr, off[0..n), inner_strides[0..n), out_off, inner_len) for every inner row. */
typedef void (*td_ewb_row_fn)(void *user, const int64_t *off, const int64_t *stride, int64_t out_off, int64_t len);
void td_ewb_run(const td_ewb *b, td_ewb_row_fn fn, void *user);

/* Copy `rows` rows of a (possibly strided) view: the generic strided copy used
 * by Transpose, Expand, Slice, Concat. src_strides are in elements and may be
 * 0 (broadcast) or negative (reverse). */
void td_strided_copy(void *dst, const void *src, size_t esize, int rank, const int64_t *shape,
                     const int64_t *src_strides);

/* ---- fp32 staging for float16/bfloat16 tensors (in node scratch memory) ---- */
/* fp32 view of a float tensor: the data itself for f32, else a converted copy
 * at *scratch (advanced). */
static inline const float *as_f32(const td_rt_tensor *t, float **scratch) {
    if (t->dtype == TD_F32)
        return t->data;
    int64_t n = td_rt_numel(t);
    float *dst = *scratch;
    if (t->dtype == TD_F16)
        td_f16_to_f32_array(t->data, dst, (size_t)n);
    else if (t->dtype == TD_BF16)
        td_bf16_to_f32_array(t->data, dst, (size_t)n);
    else
        for (int64_t i = 0; i < n; i++)
            dst[i] = td_ldf(t->data, t->dtype, i);
    *scratch += (n + 15) / 16 * 16;
    return dst;
}
static inline size_t f32_scratch(const td_rt_tensor *t) {
    return t && t->dtype != TD_F32 ? (size_t)(td_rt_numel(t) + 15) / 16 * 16 * sizeof(float) : 0;
}
/* Output buffer in fp32: the output itself for f32, else scratch (stored back by store_out). */
static inline float *out_f32(td_rt_tensor *t, float **scratch) {
    if (t->dtype == TD_F32)
        return t->data;
    float *dst = *scratch;
    *scratch += (td_rt_numel(t) + 15) / 16 * 16;
    return dst;
}
static inline void store_out(td_rt_tensor *t, const float *src) {
    if (t->dtype == TD_F32)
        return;
    int64_t n = td_rt_numel(t);
    if (t->dtype == TD_F16)
        td_f32_to_f16_array(src, t->data, (size_t)n);
    else if (t->dtype == TD_BF16)
        td_f32_to_bf16_array(src, t->data, (size_t)n);
    else
        for (int64_t i = 0; i < n; i++)
            td_stf(t->data, t->dtype, i, src[i]);
}

#endif
