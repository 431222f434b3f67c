#include "runtime/cpu/softmax.h"

#include "runtime/cpu/vecmath.h"

#include <math.h>

void td_cpu_softmax_row(const float *x, float *y, size_t n) {
    if (n == 0)
        return;
#ifdef __AVX512F__
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = td_v16_mask(n - i);
        mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, x + i));
    }
    /* a NaN in the row may be dropped by max_ps, but exp(NaN - max) then makes the sum and so the whole row NaN */
    __m512 vmax = _mm512_set1_ps(td_v16_hmax(mx));
    __m512 sum = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = td_v16_mask(n - i);
        __m512 e = td_v16_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(y + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / td_v16_hsum(sum));
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = td_v16_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), inv));
    }
#else
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        y[i] = expf(x[i] - mx);
        sum += y[i];
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++)
        y[i] *= inv;
#endif
}

typedef struct {
    const float *x;
    float *y;
    size_t cols;
} softmax_job;

static void worker(void *arg, size_t begin, size_t end, int thread) {
    const softmax_job *j = arg;
    for (size_t r = begin; r < end; r++)
        td_cpu_softmax_row(j->x + r * j->cols, j->y + r * j->cols, j->cols);
}

void td_cpu_softmax(td_threadpool *pool, const float *x, float *y, size_t rows, size_t cols) {
    softmax_job j = {.x = x, .y = y, .cols = cols};
    if (rows == 0 || cols == 0)
        return;
    td_parallel_for_n(pool, rows, rows * cols < 8192 ? 1 : td_threadpool_threads(pool), worker, &j);
}

/* log(softmax): the log of a softmax that underflowed to 0 would be -inf where the true value is finite
 * ([0, 120] -> [-120, 0]), so the difference to the max is kept and only the sum goes through log. */
static void log_softmax_row(const float *x, float *y, size_t n) {
    /* Plain loops on every target (LogSoftmax is off the encoders' hot path, and a vector variant would run
     * only on AVX-512 hosts, which CI does not have): NaN anywhere makes the sum NaN and so the whole row. */
    if (n == 0)
        return;
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++)
        sum += expf(x[i] - mx);
    float lse = logf(sum);
    for (size_t i = 0; i < n; i++)
        y[i] = (x[i] - mx) - lse;
}

static void log_worker(void *arg, size_t begin, size_t end, int thread) {
    const softmax_job *j = arg;
    for (size_t r = begin; r < end; r++)
        log_softmax_row(j->x + r * j->cols, j->y + r * j->cols, j->cols);
}

void td_cpu_log_softmax(td_threadpool *pool, const float *x, float *y, size_t rows, size_t cols) {
    softmax_job j = {.x = x, .y = y, .cols = cols};
    if (rows == 0 || cols == 0)
        return;
    td_parallel_for_n(pool, rows, rows * cols < 8192 ? 1 : td_threadpool_threads(pool), log_worker, &j);
}
