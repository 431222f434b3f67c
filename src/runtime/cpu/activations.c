#include "runtime/cpu/activations.h"

#include "runtime/cpu/vecmath.h"

#include <math.h>

/* chunk of work handed to one thread: at least this many floats */
#define CHUNK 4096

#ifdef __AVX512F__
static inline __attribute__((always_inline)) __m512 apply16(td_unary op, __m512 v) {
    switch (op) {
    case TD_UNARY_EXP: return td_v16_exp(v);
    case TD_UNARY_TANH: return td_v16_tanh(v);
    case TD_UNARY_ERF: return td_v16_erf(v);
    case TD_UNARY_SIGMOID: return td_v16_sigmoid(v);
    case TD_UNARY_RELU: return _mm512_max_ps(v, _mm512_setzero_ps());
    case TD_UNARY_GELU_ERF: return td_v16_gelu_erf(v);
    case TD_UNARY_GELU_TANH: return td_v16_gelu_tanh(v);
    }
    return v;
}
#define DEFINE_LOOP(OP)                                                                \
    static void loop_##OP(const float *x, const float *bias, float *y, size_t n) {     \
        for (size_t i = 0; i < n; i += 16) {                                           \
            __mmask16 m = td_v16_mask(n - i);                                          \
            __m512 v = _mm512_maskz_loadu_ps(m, x + i);                                \
            if (bias)                                                                  \
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + i));              \
            _mm512_mask_storeu_ps(y + i, m, apply16(OP, v));                           \
        }                                                                              \
    }
#elif defined(TD_VEC_AVX2)
static inline __attribute__((always_inline)) __m256 apply8(td_unary op, __m256 v) {
    switch (op) {
    case TD_UNARY_EXP: return td_v8_exp(v);
    case TD_UNARY_TANH: return td_v8_tanh(v);
    case TD_UNARY_ERF: return td_v8_erf(v);
    case TD_UNARY_SIGMOID: return td_v8_sigmoid(v);
    case TD_UNARY_RELU: return _mm256_max_ps(v, _mm256_setzero_ps()); /* NaN -> 0, as with AVX-512 */
    case TD_UNARY_GELU_ERF: return td_v8_gelu_erf(v);
    case TD_UNARY_GELU_TANH: return td_v8_gelu_tanh(v);
    }
    return v;
}
#define DEFINE_LOOP(OP)                                                                \
    static void loop_##OP(const float *x, const float *bias, float *y, size_t n) {     \
        for (size_t i = 0; i < n; i += 8) {                                            \
            __m256 v = td_v8_load_n(x + i, n - i);                                     \
            if (bias)                                                                  \
                v = _mm256_add_ps(v, td_v8_load_n(bias + i, n - i));                   \
            td_v8_store_n(y + i, n - i, apply8(OP, v));                                \
        }                                                                              \
    }
#else
static inline float apply1(td_unary op, float v) {
    switch (op) {
    case TD_UNARY_EXP: return expf(v);
    case TD_UNARY_TANH: return tanhf(v);
    case TD_UNARY_ERF: return erff(v);
    case TD_UNARY_SIGMOID: return td_s_sigmoid(v);
    case TD_UNARY_RELU: return v > 0.0f ? v : 0.0f; /* NaN -> 0 like max(x, 0) on AVX-512 */
    case TD_UNARY_GELU_ERF: return td_s_gelu_erf(v);
    case TD_UNARY_GELU_TANH: return td_s_gelu_tanh(v);
    }
    return v;
}
#define DEFINE_LOOP(OP)                                                            \
    static void loop_##OP(const float *x, const float *bias, float *y, size_t n) { \
        for (size_t i = 0; i < n; i++)                                             \
            y[i] = apply1(OP, x[i] + (bias ? bias[i] : 0.0f));                     \
    }
#endif

DEFINE_LOOP(TD_UNARY_EXP)
DEFINE_LOOP(TD_UNARY_TANH)
DEFINE_LOOP(TD_UNARY_ERF)
DEFINE_LOOP(TD_UNARY_SIGMOID)
DEFINE_LOOP(TD_UNARY_RELU)
DEFINE_LOOP(TD_UNARY_GELU_ERF)
DEFINE_LOOP(TD_UNARY_GELU_TANH)

typedef void (*loop_fn)(const float *, const float *, float *, size_t);

static loop_fn loop_for(td_unary op) {
    switch (op) {
    case TD_UNARY_EXP: return loop_TD_UNARY_EXP;
    case TD_UNARY_TANH: return loop_TD_UNARY_TANH;
    case TD_UNARY_ERF: return loop_TD_UNARY_ERF;
    case TD_UNARY_SIGMOID: return loop_TD_UNARY_SIGMOID;
    case TD_UNARY_RELU: return loop_TD_UNARY_RELU;
    case TD_UNARY_GELU_ERF: return loop_TD_UNARY_GELU_ERF;
    case TD_UNARY_GELU_TANH: return loop_TD_UNARY_GELU_TANH;
    }
    return loop_TD_UNARY_RELU;
}

typedef struct {
    loop_fn fn;
    const float *x, *bias;
    float *y;
    size_t n, rows, cols;
} unary_job;

static void flat_worker(void *arg, size_t begin, size_t end, int thread) {
    const unary_job *j = arg;
    size_t b = begin * CHUNK, e = end * CHUNK < j->n ? end * CHUNK : j->n;
    j->fn(j->x + b, NULL, j->y + b, e - b);
}

void td_cpu_unary(td_threadpool *pool, td_unary op, const float *x, float *y, size_t n) {
    unary_job j = {.fn = loop_for(op), .x = x, .y = y, .n = n};
    td_parallel_for(pool, (n + CHUNK - 1) / CHUNK, flat_worker, &j);
}

static void rows_worker(void *arg, size_t begin, size_t end, int thread) {
    const unary_job *j = arg;
    for (size_t r = begin; r < end; r++)
        j->fn(j->x + r * j->cols, j->bias, j->y + r * j->cols, j->cols);
}

void td_cpu_bias_unary(td_threadpool *pool, td_unary op, const float *x, const float *bias, float *y, size_t rows,
                       size_t cols) {
    unary_job j = {.fn = loop_for(op), .x = x, .bias = bias, .y = y, .rows = rows, .cols = cols};
    if (cols == 0)
        return;
    td_parallel_for_n(pool, rows, rows * cols < CHUNK ? 1 : td_threadpool_threads(pool), rows_worker, &j);
}
