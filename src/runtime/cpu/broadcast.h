/* numpy-style broadcasting for elementwise kernels.
 *
 * td_bcast_plan_make aligns up to TD_BCAST_MAX_INPUTS input shapes on their last
 * axis, computes the output shape (each axis: equal sizes, or 1 stretched to the
 * other size) and per-input element strides (0 on stretched axes), then merges
 * adjacent axes that are contiguous for every input so most plans end up with
 * one or two axes. td_bcast_run walks the output in row-major order, splits the
 * outer rows over the pool and calls a row function on each run of the innermost
 * axis. */
#ifndef TD_RUNTIME_CPU_BROADCAST_H
#define TD_RUNTIME_CPU_BROADCAST_H

#include "core/ctx.h"
#include "core/threadpool.h"

#include <stddef.h>
#include <stdint.h>

#define TD_BCAST_MAX_RANK 8
#define TD_BCAST_MAX_INPUTS 3

typedef struct td_bcast_plan {
    int n_inputs;
    int out_rank;                        /* rank of the broadcast output shape */
    int64_t out_dims[TD_BCAST_MAX_RANK]; /* output shape, as the op reports it */
    int64_t numel;
    /* merged iteration space (rank >= 1) */
    int rank;
    int64_t dims[TD_BCAST_MAX_RANK];
    int64_t strides[TD_BCAST_MAX_INPUTS][TD_BCAST_MAX_RANK]; /* in elements */
} td_bcast_plan;

/* dims[i] (ranks[i] entries, all >= 0) for each input. Fails with TD_ERR_SHAPE
 * naming the axis when two sizes are neither equal nor 1, TD_ERR_UNSUPPORTED above
 * TD_BCAST_MAX_RANK, TD_ERR_OVERFLOW when the element count overflows. */
td_status td_bcast_plan_make(td_ctx *ctx, int n_inputs, const int64_t *const dims[], const int ranks[],
                             td_bcast_plan *plan);

/* Row function: out[0..n) from in[i][k * in_stride[i]] (out elements are
 * contiguous, out_esize bytes each). */
typedef void (*td_bcast_row_fn)(void *ctx, void *out, const void *const in[], const int64_t in_stride[],
                                int64_t n);

/* in_esize[i] / out_esize: element sizes in bytes. */
void td_bcast_run(td_threadpool *pool, const td_bcast_plan *plan, const void *const in[], const size_t in_esize[],
                  void *out, size_t out_esize, td_bcast_row_fn fn, void *fn_ctx);

#endif
