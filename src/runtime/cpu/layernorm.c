/* One row at a time: pass 1 forms s (into sum_out, or out when there is no
 * sum output) and its mean, pass 2 the variance around that mean (two passes
 * avoid the cancellation of E[s^2] - E[s]^2), pass 3 normalizes. */
#include "runtime/cpu/layernorm.h"

#include "runtime/cpu/vecmath.h"

#include <math.h>

static void row(const td_layernorm_args *a, size_t r) {
    size_t n = a->cols;
    const float *x = a->x + r * n;
    const float *skip = a->skip ? a->skip + (a->skip_rows ? r % a->skip_rows : r) * n : NULL;
    float *s = a->sum_out ? a->sum_out + r * n : a->out + r * n;
    float *y = a->out + r * n;
    float mean, var;
#ifdef __AVX512F__
    __m512 acc = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = td_v16_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        if (skip)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, skip + i));
        if (a->bias)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, a->bias + i));
        _mm512_mask_storeu_ps(s + i, m, v);
        acc = _mm512_add_ps(acc, v);
    }
    mean = td_v16_hsum(acc) / (float)n;
    __m512 vm = _mm512_set1_ps(mean);
    acc = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = td_v16_mask(n - i);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, s + i), vm);
        acc = _mm512_fmadd_ps(d, d, acc);
    }
    var = td_v16_hsum(acc) / (float)n;
    float inv = 1.0f / sqrtf(var + a->eps);
    __m512 vi = _mm512_set1_ps(inv);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = td_v16_mask(n - i);
        __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vm), vi);
        __m512 v = _mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, a->gamma + i));
        if (a->beta)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, a->beta + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
#elif defined(TD_VEC_AVX2)
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8) {
        __m256 v = td_v8_load_n(x + i, n - i); /* lanes past the row read as 0 */
        if (skip)
            v = _mm256_add_ps(v, td_v8_load_n(skip + i, n - i));
        if (a->bias)
            v = _mm256_add_ps(v, td_v8_load_n(a->bias + i, n - i));
        td_v8_store_n(s + i, n - i, v);
        acc = _mm256_add_ps(acc, v);
    }
    mean = td_v8_hsum(acc) / (float)n;
    __m256 vm = _mm256_set1_ps(mean);
    acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8) {
        __m256 d = td_v8_keep_n(_mm256_sub_ps(td_v8_load_n(s + i, n - i), vm), n - i, _mm256_setzero_ps());
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    var = td_v8_hsum(acc) / (float)n;
    float inv = 1.0f / sqrtf(var + a->eps);
    __m256 vi = _mm256_set1_ps(inv);
    for (size_t i = 0; i < n; i += 8) {
        __m256 d = _mm256_mul_ps(_mm256_sub_ps(td_v8_load_n(s + i, n - i), vm), vi);
        __m256 v = _mm256_mul_ps(d, td_v8_load_n(a->gamma + i, n - i));
        if (a->beta)
            v = _mm256_add_ps(v, td_v8_load_n(a->beta + i, n - i));
        td_v8_store_n(y + i, n - i, v);
    }
#else
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] + (skip ? skip[i] : 0.0f) + (a->bias ? a->bias[i] : 0.0f);
        s[i] = v;
        sum += v;
    }
    mean = sum / (float)n;
    float sq = 0.0f;
    for (size_t i = 0; i < n; i++)
        sq += (s[i] - mean) * (s[i] - mean);
    var = sq / (float)n;
    float inv = 1.0f / sqrtf(var + a->eps);
    for (size_t i = 0; i < n; i++)
        y[i] = (s[i] - mean) * inv * a->gamma[i] + (a->beta ? a->beta[i] : 0.0f);
#endif
    if (a->mean_out)
        a->mean_out[r] = mean;
    if (a->inv_std_out)
        a->inv_std_out[r] = inv;
}

static void worker(void *arg, size_t begin, size_t end, int thread) {
    for (size_t r = begin; r < end; r++)
        row(arg, r);
}

void td_cpu_layernorm(td_threadpool *pool, const td_layernorm_args *a) {
    if (a->rows == 0 || a->cols == 0)
        return;
    td_parallel_for_n(pool, a->rows, a->rows * a->cols < 8192 ? 1 : td_threadpool_threads(pool), worker,
                      (void *)a);
}
