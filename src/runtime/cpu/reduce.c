/* The input is viewed as alternating kept / reduced axis groups after merging
 * neighbours of the same kind. Each output element is one position of the kept
 * axes; threads split the output elements and each walks its reduced positions.
 * When the reduced axes are the innermost (the usual case: mean over hidden),
 * that walk is a contiguous run. */
#include "runtime/cpu/reduce.h"

#include "core/checked.h"

#include <math.h>
#include <stdlib.h>

static td_status normalize_axes(td_ctx *ctx, int rank, const int64_t *axes, int n_axes, bool reduced[]) {
    for (int i = 0; i < rank; i++)
        reduced[i] = n_axes == 0;
    for (int i = 0; i < n_axes; i++) {
        int64_t ax = axes[i];
        if (ax < -rank || ax >= rank)
            return td_fail(ctx, TD_ERR_SHAPE, "reduce: axis %lld is out of range for a rank-%d tensor",
                           (long long)ax, rank);
        if (ax < 0)
            ax += rank;
        if (reduced[ax])
            return td_fail(ctx, TD_ERR_SHAPE, "reduce: axis %lld is listed twice", (long long)axes[i]);
        reduced[ax] = true;
    }
    return TD_OK;
}

td_status td_reduce_shape(td_ctx *ctx, const int64_t *dims, int rank, const int64_t *axes, int n_axes, bool keepdims,
                          int64_t *out_dims, int *out_rank) {
    bool reduced[TD_REDUCE_MAX_RANK];
    if (rank < 0 || rank > TD_REDUCE_MAX_RANK)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "reduce: rank %d (at most %d supported)", rank, TD_REDUCE_MAX_RANK);
    TD_TRY(normalize_axes(ctx, rank, axes, n_axes, reduced));
    int n = 0;
    for (int i = 0; i < rank; i++) {
        if (!reduced[i])
            out_dims[n++] = dims[i];
        else if (keepdims)
            out_dims[n++] = 1;
    }
    *out_rank = n;
    return TD_OK;
}

typedef struct {
    td_reduce_op op;
    const float *x;
    float *out;
    int n_kept, n_red;
    int64_t kept_dims[TD_REDUCE_MAX_RANK], kept_strides[TD_REDUCE_MAX_RANK];
    int64_t red_dims[TD_REDUCE_MAX_RANK], red_strides[TD_REDUCE_MAX_RANK];
    int64_t red_count;
} reduce_job;

static void worker(void *arg, size_t begin, size_t end, int thread) {
    const reduce_job *j = arg;
    for (size_t o = begin; o < end; o++) {
        /* base offset of output element o */
        int64_t r = (int64_t)o, base = 0;
        for (int ax = j->n_kept - 1; ax >= 0; ax--) {
            base += (r % j->kept_dims[ax]) * j->kept_strides[ax];
            r /= j->kept_dims[ax];
        }
        double sum = 0;
        float mx = -INFINITY;
        bool nan = false;
        int64_t idx[TD_REDUCE_MAX_RANK] = {0};
        int inner = j->n_red - 1;
        int64_t inner_n = j->n_red ? j->red_dims[inner] : 1, inner_s = j->n_red ? j->red_strides[inner] : 0;
        for (int64_t done = 0; done < j->red_count; done += inner_n) {
            int64_t off = base;
            for (int ax = 0; ax < inner; ax++)
                off += idx[ax] * j->red_strides[ax];
            const float *p = j->x + off;
            if (j->op == TD_REDUCE_MAX) {
                for (int64_t i = 0; i < inner_n; i++) {
                    float v = p[i * inner_s];
                    nan |= v != v;
                    mx = v > mx ? v : mx;
                }
            } else {
                for (int64_t i = 0; i < inner_n; i++)
                    sum += p[i * inner_s];
            }
            for (int ax = inner - 1; ax >= 0; ax--) {
                if (++idx[ax] < j->red_dims[ax])
                    break;
                idx[ax] = 0;
            }
        }
        float v;
        if (j->op == TD_REDUCE_MAX)
            v = nan ? NAN : mx;
        else if (j->op == TD_REDUCE_MEAN)
            v = j->red_count ? (float)(sum / (double)j->red_count) : NAN;
        else
            v = (float)sum;
        j->out[o] = v;
    }
}

td_status td_cpu_reduce(td_ctx *ctx, td_threadpool *pool, td_reduce_op op, const float *x, const int64_t *dims,
                        int rank, const int64_t *axes, int n_axes, float *out) {
    bool reduced[TD_REDUCE_MAX_RANK];
    if (rank < 0 || rank > TD_REDUCE_MAX_RANK)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "reduce: rank %d (at most %d supported)", rank, TD_REDUCE_MAX_RANK);
    TD_TRY(normalize_axes(ctx, rank, axes, n_axes, reduced));
    reduce_job j = {.op = op, .x = x, .out = out, .red_count = 1};
    int64_t stride = 1, n_out = 1, strides[TD_REDUCE_MAX_RANK];
    for (int ax = rank - 1; ax >= 0; ax--) {
        strides[ax] = stride;
        if (!td_mul_i64(stride, dims[ax], &stride))
            return td_fail(ctx, TD_ERR_OVERFLOW, "reduce: element count overflows");
    }
    for (int ax = 0; ax < rank; ax++) {
        if (dims[ax] == 1)
            continue; /* moves nothing either way */
        if (reduced[ax]) {
            /* merge with the previous reduced axis when contiguous with it */
            if (j.n_red && j.red_strides[j.n_red - 1] == strides[ax] * dims[ax] && ax > 0 && reduced[ax - 1]) {
                j.red_dims[j.n_red - 1] *= dims[ax];
                j.red_strides[j.n_red - 1] = strides[ax];
            } else {
                j.red_dims[j.n_red] = dims[ax];
                j.red_strides[j.n_red++] = strides[ax];
            }
            j.red_count *= dims[ax];
        } else {
            j.kept_dims[j.n_kept] = dims[ax];
            j.kept_strides[j.n_kept++] = strides[ax];
            n_out *= dims[ax];
        }
    }
    if (n_out == 0)
        return TD_OK;
    if (j.red_count == 0) {
        for (int64_t o = 0; o < n_out; o++)
            out[o] = op == TD_REDUCE_SUM ? 0.0f : op == TD_REDUCE_MEAN ? NAN : -INFINITY;
        return TD_OK;
    }
    td_parallel_for_n(pool, (size_t)n_out, stride < 16384 ? 1 : td_threadpool_threads(pool), worker, &j);
    return TD_OK;
}
