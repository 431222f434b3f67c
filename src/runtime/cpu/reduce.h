/* ReduceSum / ReduceMean / ReduceMax over arbitrary axes of a float tensor.
 * axes: n_axes entries in [-rank, rank), no duplicates; n_axes == 0 reduces
 * every axis (the caller handles ONNX's noop_with_empty_axes). keepdims keeps
 * reduced axes as size 1. Sums accumulate in double. Empty reductions: sum 0,
 * mean NaN (0/0), max -inf. */
#ifndef TD_RUNTIME_CPU_REDUCE_H
#define TD_RUNTIME_CPU_REDUCE_H

#include "core/ctx.h"
#include "core/threadpool.h"

#include <stdbool.h>
#include <stdint.h>

#define TD_REDUCE_MAX_RANK 8

typedef enum td_reduce_op { TD_REDUCE_SUM, TD_REDUCE_MEAN, TD_REDUCE_MAX } td_reduce_op;

/* Output shape only (for allocation): writes out_dims (rank entries with keepdims,
 * fewer without) and *out_rank. Validates axes. */
td_status td_reduce_shape(td_ctx *ctx, const int64_t *dims, int rank, const int64_t *axes, int n_axes, bool keepdims,
                          int64_t *out_dims, int *out_rank);

td_status td_cpu_reduce(td_ctx *ctx, td_threadpool *pool, td_reduce_op op, const float *x, const int64_t *dims,
                        int rank, const int64_t *axes, int n_axes, float *out);

#endif
