#include "runtime/cpu/broadcast.h"

#include "core/checked.h"

#include <string.h>

td_status td_bcast_plan_make(td_ctx *ctx, int n_inputs, const int64_t *const dims[], const int ranks[],
                             td_bcast_plan *plan) {
    memset(plan, 0, sizeof *plan);
    if (n_inputs < 1 || n_inputs > TD_BCAST_MAX_INPUTS)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "broadcast: %d inputs (1..%d supported)", n_inputs,
                       TD_BCAST_MAX_INPUTS);
    int rank = 0;
    for (int i = 0; i < n_inputs; i++) {
        if (ranks[i] < 0 || ranks[i] > TD_BCAST_MAX_RANK)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "broadcast: input %d has rank %d; at most %d is supported", i,
                           ranks[i], TD_BCAST_MAX_RANK);
        rank = ranks[i] > rank ? ranks[i] : rank;
    }
    plan->n_inputs = n_inputs;
    plan->out_rank = rank;
    /* aligned[i][ax]: input i's size on output axis ax (1 where it has no axis) */
    int64_t aligned[TD_BCAST_MAX_INPUTS][TD_BCAST_MAX_RANK];
    int64_t numel = 1;
    for (int ax = 0; ax < rank; ax++) {
        int64_t size = 1;
        for (int i = 0; i < n_inputs; i++) {
            int off = ax - (rank - ranks[i]);
            int64_t d = off >= 0 ? dims[i][off] : 1;
            if (d < 0)
                return td_fail(ctx, TD_ERR_SHAPE, "broadcast: input %d has negative size %lld on axis %d", i,
                               (long long)d, off);
            aligned[i][ax] = d;
            if (d != 1) {
                if (size != 1 && size != d)
                    return td_fail(ctx, TD_ERR_SHAPE,
                                   "broadcast: sizes %lld and %lld on output axis %d are neither equal nor 1",
                                   (long long)size, (long long)d, ax);
                size = d;
            }
        }
        plan->out_dims[ax] = size;
        if (!td_mul_i64(numel, size, &numel))
            return td_fail(ctx, TD_ERR_OVERFLOW, "broadcast: output element count overflows");
    }
    plan->numel = numel;
    /* contiguous strides of each input, 0 where stretched */
    int64_t st[TD_BCAST_MAX_INPUTS][TD_BCAST_MAX_RANK];
    for (int i = 0; i < n_inputs; i++) {
        int64_t s = 1;
        for (int ax = rank - 1; ax >= 0; ax--) {
            st[i][ax] = aligned[i][ax] == 1 ? 0 : s;
            s *= aligned[i][ax];
        }
    }
    /* merge axis ax into the run below it when that is valid for every input:
     * stride[ax] == stride[below] * dims[below] (including both 0) */
    int m = 0;
    for (int ax = 0; ax < rank; ax++) {
        if (plan->out_dims[ax] == 1)
            continue; /* size-1 axes do not move any pointer */
        bool merge = m > 0;
        for (int i = 0; i < n_inputs && merge; i++)
            merge = plan->strides[i][m - 1] == st[i][ax] * plan->out_dims[ax];
        if (merge) {
            plan->dims[m - 1] *= plan->out_dims[ax];
            for (int i = 0; i < n_inputs; i++)
                plan->strides[i][m - 1] = st[i][ax];
        } else {
            plan->dims[m] = plan->out_dims[ax];
            for (int i = 0; i < n_inputs; i++)
                plan->strides[i][m] = st[i][ax];
            m++;
        }
    }
    if (m == 0) { /* scalar output (or all axes of size 1) */
        plan->dims[0] = numel == 0 ? 0 : 1;
        m = 1;
    }
    if (numel == 0)
        plan->dims[0] = 0;
    plan->rank = m;
    return TD_OK;
}

typedef struct {
    const td_bcast_plan *plan;
    const void *const *in;
    const size_t *in_esize;
    char *out;
    size_t out_esize;
    td_bcast_row_fn fn;
    void *fn_ctx;
    int64_t inner;
} run_job;

static void run_rows(void *arg, size_t begin, size_t end, int thread) {
    const run_job *j = arg;
    const td_bcast_plan *p = j->plan;
    int outer = p->rank - 1;
    int64_t idx[TD_BCAST_MAX_RANK];
    /* multi-index of row `begin` over the outer axes */
    int64_t r = (int64_t)begin;
    for (int ax = outer - 1; ax >= 0; ax--) {
        idx[ax] = r % p->dims[ax];
        r /= p->dims[ax];
    }
    const void *ptr[TD_BCAST_MAX_INPUTS];
    int64_t inner_stride[TD_BCAST_MAX_INPUTS];
    for (size_t row = begin; row < end; row++) {
        for (int i = 0; i < p->n_inputs; i++) {
            int64_t off = 0;
            for (int ax = 0; ax < outer; ax++)
                off += idx[ax] * p->strides[i][ax];
            ptr[i] = (const char *)j->in[i] + (size_t)off * j->in_esize[i];
            inner_stride[i] = p->strides[i][outer];
        }
        j->fn(j->fn_ctx, j->out + row * (size_t)j->inner * j->out_esize, ptr, inner_stride, j->inner);
        for (int ax = outer - 1; ax >= 0; ax--) {
            if (++idx[ax] < p->dims[ax])
                break;
            idx[ax] = 0;
        }
    }
}

void td_bcast_run(td_threadpool *pool, const td_bcast_plan *plan, const void *const in[], const size_t in_esize[],
                  void *out, size_t out_esize, td_bcast_row_fn fn, void *fn_ctx) {
    if (plan->numel == 0)
        return;
    int64_t inner = plan->dims[plan->rank - 1];
    size_t rows = (size_t)(plan->numel / inner);
    run_job j = {.plan = plan, .in = in, .in_esize = in_esize, .out = out, .out_esize = out_esize, .fn = fn,
                 .fn_ctx = fn_ctx, .inner = inner};
    td_parallel_for_n(pool, rows, plan->numel < 16384 ? 1 : td_threadpool_threads(pool), run_rows, &j);
}
