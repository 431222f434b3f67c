/* Layer normalization over the last axis of a (rows, cols) fp32 buffer, with the
 * optional skip/bias inputs of ONNX Runtime's SkipLayerNormalization:
 *   s   = x + skip + bias                     (skip, bias optional)
 *   out = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta   (beta optional)
 * var is the biased (population) variance, as in ONNX LayerNormalization.
 * skip (skip_rows, cols) repeats every skip_rows rows (skip_rows == rows or 0
 * for a full skip; 1 for a broadcast (cols) vector). Optional outputs: sum_out
 * (rows, cols) = s (ORT's input_skip_bias_sum), mean_out / inv_std_out (rows).
 * out may alias x or skip. */
#ifndef TD_RUNTIME_CPU_LAYERNORM_H
#define TD_RUNTIME_CPU_LAYERNORM_H

#include "core/threadpool.h"

#include <stddef.h>

typedef struct td_layernorm_args {
    size_t rows, cols;
    const float *x;     /* (rows, cols) */
    const float *skip;  /* (skip_rows, cols) or NULL */
    size_t skip_rows;
    const float *bias;  /* (cols) or NULL */
    const float *gamma; /* (cols) */
    const float *beta;  /* (cols) or NULL */
    float eps;
    float *out;         /* (rows, cols) */
    float *sum_out;     /* (rows, cols) or NULL */
    float *mean_out;    /* (rows) or NULL */
    float *inv_std_out; /* (rows) or NULL */
} td_layernorm_args;

void td_cpu_layernorm(td_threadpool *pool, const td_layernorm_args *a);

#endif
