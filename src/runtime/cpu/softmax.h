/* Softmax over the last axis of a (rows, cols) fp32 buffer, y = exp(x - max) /
 * sum(exp(x - max)) per row (subtracting the row max keeps exp in range).
 * y may alias x. A row that is all -inf gives NaN, as the definition does. */
#ifndef TD_RUNTIME_CPU_SOFTMAX_H
#define TD_RUNTIME_CPU_SOFTMAX_H

#include "core/threadpool.h"

#include <stddef.h>

void td_cpu_softmax(td_threadpool *pool, const float *x, float *y, size_t rows, size_t cols);
/* log(softmax) per row as x - max - log(sum(exp(x - max))), finite wherever the answer is. y may alias x. */
void td_cpu_log_softmax(td_threadpool *pool, const float *x, float *y, size_t rows, size_t cols);
/* One row, single-threaded (used inside fused kernels). */
void td_cpu_softmax_row(const float *x, float *y, size_t cols);

#endif
