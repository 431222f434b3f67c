/* Elementwise float functions over contiguous arrays: y[i] = f(x[i]), in place
 * allowed (y == x). Split over the pool in 64-byte aligned chunks; NULL pool =
 * one thread. With AVX-512 these use vecmath.h (max errors measured by
 * tests/unit/test_cpu_math.c), otherwise libm. */
#ifndef TD_RUNTIME_CPU_ACTIVATIONS_H
#define TD_RUNTIME_CPU_ACTIVATIONS_H

#include "core/threadpool.h"

#include <stddef.h>

typedef enum td_unary {
    TD_UNARY_EXP,
    TD_UNARY_TANH,
    TD_UNARY_ERF,
    TD_UNARY_SIGMOID,
    TD_UNARY_RELU,
    TD_UNARY_GELU_ERF,
    TD_UNARY_GELU_TANH,
} td_unary;

void td_cpu_unary(td_threadpool *pool, td_unary op, const float *x, float *y, size_t n);

/* y = f(x + bias[i % cols]) over rows x cols: the BiasGelu / FastGelu pattern. bias may be NULL. */
void td_cpu_bias_unary(td_threadpool *pool, td_unary op, const float *x, const float *bias, float *y, size_t rows,
                       size_t cols);

#endif
