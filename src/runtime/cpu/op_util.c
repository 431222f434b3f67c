/* Shared op helpers (see op_util.h). */
#include "runtime/cpu/op_util.h"

#include <stdio.h>

td_status td_read_int_list(td_ctx *ctx, const td_rt_node *rn, const td_rt_tensor *t, const char *what, int64_t *out,
                           int max, int *n) {
    if (!t || (!t->data && td_rt_numel(t) > 0))
        return td_node_fail(ctx, rn, TD_ERR_INTERNAL, "%s: values not available while planning", what);
    if (t->dtype != TD_I64 && t->dtype != TD_I32)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "%s must be int32 or int64, got %s", what, td_dtype_name(t->dtype));
    if (t->rank > 1)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "%s must be a 1-D tensor, got rank %d", what, t->rank);
    int64_t cnt = td_rt_numel(t);
    if (cnt > max)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "%s has %lld entries (at most %d supported)", what,
                            (long long)cnt, max);
    for (int64_t i = 0; i < cnt; i++)
        out[i] = td_ldi(t->data, t->dtype, i);
    *n = (int)cnt;
    return TD_OK;
}

td_status td_check_dtype(td_ctx *ctx, const td_rt_node *rn, int slot, td_dtype t, bool (*ok)(td_dtype),
                         const char *allowed) {
    if (ok(t))
        return TD_OK;
    return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "input %d has dtype %s, which this op does not support here (supported: %s)",
                        slot, td_dtype_name(t), allowed);
}

td_status td_check_inputs(td_ctx *ctx, const td_rt_node *rn, int min_in, int max_in, int min_out, int max_out) {
    if (rn->n_in < min_in || rn->n_in > max_in)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "has %d inputs, expected %d..%d", rn->n_in, min_in, max_in);
    if (rn->n_out < min_out || rn->n_out > max_out)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "has %d outputs, expected %d..%d", rn->n_out, min_out, max_out);
    for (int i = 0; i < min_in; i++)
        if (rn->in[i] < 0)
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "required input %d is missing", i);
    return TD_OK;
}

td_status td_check_same(td_ctx *ctx, const td_rt_node *rn, const td_dtype *in, int from, int to) {
    for (int i = from + 1; i < to && i < rn->n_in; i++)
        if (rn->in[i] >= 0 && in[i] != in[from])
            return td_node_fail(ctx, rn, TD_ERR_DTYPE, "input %d is %s but input %d is %s (they must match)", i,
                                td_dtype_name(in[i]), from, td_dtype_name(in[from]));
    return TD_OK;
}

td_status td_unsupported_attr(td_ctx *ctx, const td_rt_node *rn, const char *attr, const char *value) {
    return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "attribute %s=%s is not supported by the runtime", attr, value);
}

td_status td_broadcast_shape(td_ctx *ctx, const td_rt_node *rn, td_rt_tensor *const *in, int n, td_rt_tensor *out) {
    int rank = 0;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->rank > rank)
            rank = in[i]->rank;
    out->rank = rank;
    for (int d = 0; d < rank; d++) {
        int64_t dim = 1;
        for (int i = 0; i < n; i++) {
            if (!in[i])
                continue;
            int k = d - (rank - in[i]->rank);
            if (k < 0)
                continue;
            int64_t x = in[i]->shape[k];
            if (x == dim || x == 1)
                continue;
            if (dim == 1) {
                dim = x;
                continue;
            }
            char a[128], b[128];
            int j = 0;
            while (j < n && (!in[j] || in[j] == in[i]))
                j++;
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "shapes %s and %s cannot be broadcast (axis %d: %lld vs %lld)",
                                td_shape_str(in[j < n ? j : 0]->shape, in[j < n ? j : 0]->rank, a, sizeof a),
                                td_shape_str(in[i]->shape, in[i]->rank, b, sizeof b), d, (long long)dim, (long long)x);
        }
        out->shape[d] = dim;
    }
    return TD_OK;
}

void td_ewb_init(td_ewb *b, const td_rt_tensor *out, td_rt_tensor *const *in, int n) {
    int64_t st[4][TD_MAX_RANK];
    int rank = out->rank;
    b->n = n;
    for (int i = 0; i < n; i++) {
        int64_t s = 1;
        for (int d = rank - 1; d >= 0; d--) {
            int k = d - (rank - in[i]->rank);
            int64_t dim = k >= 0 ? in[i]->shape[k] : 1;
            st[i][d] = (dim == 1) ? 0 : s;
            s *= dim;
        }
    }
    /* Merge adjacent dims when every operand is contiguous across them. */
    int r = 0;
    for (int d = 0; d < rank; d++) {
        if (out->shape[d] == 1 && rank > 1)
            continue; /* size-1 axes contribute nothing */
        bool merge = r > 0;
        for (int i = 0; i < n && merge; i++)
            if (b->strides[i][r - 1] != st[i][d] * out->shape[d])
                merge = false;
        if (merge) {
            b->shape[r - 1] *= out->shape[d];
            for (int i = 0; i < n; i++)
                b->strides[i][r - 1] = st[i][d];
        } else {
            b->shape[r] = out->shape[d];
            for (int i = 0; i < n; i++)
                b->strides[i][r] = st[i][d];
            r++;
        }
    }
    if (r == 0) {
        b->shape[0] = 1;
        for (int i = 0; i < n; i++)
            b->strides[i][0] = 0;
        r = 1;
    }
    b->rank = r;
}

void td_ewb_run(const td_ewb *b, td_ewb_row_fn fn, void *user) {
    int r = b->rank;
    int64_t len = b->shape[r - 1];
    int64_t inner[4], off[4] = {0, 0, 0, 0}, idx[TD_MAX_RANK] = {0};
    for (int i = 0; i < b->n; i++)
        inner[i] = b->strides[i][r - 1];
    int64_t rows = 1;
    for (int d = 0; d < r - 1; d++)
        rows *= b->shape[d];
    if (len == 0)
        return;
    for (int64_t row = 0; row < rows; row++) {
        fn(user, off, inner, row * len, len);
        for (int d = r - 2; d >= 0; d--) {
            idx[d]++;
            for (int i = 0; i < b->n; i++)
                off[i] += b->strides[i][d];
            if (idx[d] < b->shape[d])
                break;
            for (int i = 0; i < b->n; i++)
                off[i] -= b->strides[i][d] * b->shape[d];
            idx[d] = 0;
        }
    }
}

void td_strided_copy(void *dst, const void *src, size_t esize, int rank, const int64_t *shape,
                     const int64_t *src_strides) {
    int64_t total = 1;
    for (int d = 0; d < rank; d++)
        total *= shape[d];
    if (total == 0)
        return;
    if (rank == 0) {
        td_memcpy(dst, src, esize);
        return;
    }
    int64_t idx[TD_MAX_RANK] = {0};
    int64_t off = 0, inner = shape[rank - 1], is = src_strides[rank - 1];
    uint8_t *d8 = dst;
    const uint8_t *s8 = src;
    for (int64_t o = 0; o < total; o += inner) {
        if (is == 1) {
            td_memcpy(d8 + (size_t)o * esize, s8 + (ptrdiff_t)off * (ptrdiff_t)esize, (size_t)inner * esize);
        } else if (esize == 4) {
            float *dd = (float *)(d8 + (size_t)o * 4);
            const float *ss = (const float *)(s8 + (ptrdiff_t)off * 4);
            for (int64_t k = 0; k < inner; k++)
                dd[k] = ss[k * is];
        } else {
            for (int64_t k = 0; k < inner; k++)
                td_memcpy(d8 + (size_t)(o + k) * esize, s8 + (ptrdiff_t)(off + k * is) * (ptrdiff_t)esize, esize);
        }
        for (int d = rank - 2; d >= 0; d--) {
            idx[d]++;
            off += src_strides[d];
            if (idx[d] < shape[d])
                break;
            off -= src_strides[d] * shape[d];
            idx[d] = 0;
        }
    }
}
