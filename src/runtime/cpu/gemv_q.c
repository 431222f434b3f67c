/* GEMV on Q8_0 / Q4_0 blocks (definition in gemv_q.h). Each row: per block,
 * the 32 weights are widened to fp32 in four 8-lane registers, multiplied
 * with the matching 32 floats of x into one partial sum, and that partial is
 * scaled by the block's d into the row accumulator (one FMA per block). Four
 * rows at a time share the loads of x. Parallel over rows. Without AVX2 the
 * rows run through scalar loops. */
#include "runtime/cpu/gemv_q.h"

#include "core/checked.h"
#include "core/dtype.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TD_GEMVQ_AVX2 1
#include <immintrin.h>
#endif

size_t td_qblock_bytes(td_qblock_type t) { return t == TD_QBLOCK_Q8_0 ? 2 + 32 : 2 + 16; }

td_status td_qmatrix_bytes(td_ctx *ctx, td_qblock_type t, int64_t N, int64_t K, size_t *bytes) {
    if (K <= 0 || K % TD_QBLOCK_SIZE || N < 0)
        return td_fail(ctx, TD_ERR_SHAPE, "block-quantized matrix (%lld, %lld): the row length must be a positive "
                       "multiple of %d", (long long)N, (long long)K, TD_QBLOCK_SIZE);
    size_t rows;
    if (!td_mul_size((size_t)N, (size_t)(K / TD_QBLOCK_SIZE), &rows) || !td_mul_size(rows, td_qblock_bytes(t), bytes))
        return td_fail(ctx, TD_ERR_OVERFLOW, "block-quantized matrix (%lld, %lld) overflows the address space",
                       (long long)N, (long long)K);
    return TD_OK;
}

#ifdef TD_GEMVQ_AVX2
static inline float block_d(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return _cvtsh_ss(h); /* F16C: the same value as td_f16_to_f32, without a call per block */
}

/* The 32 weights of a block as four 8-float vectors (without d). */
static inline void widen(td_qblock_type t, const uint8_t *blk, __m256 w[4]) {
    if (t == TD_QBLOCK_Q8_0) {
        for (int i = 0; i < 4; i++)
            w[i] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * i))));
    } else {
        __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 2));
        __m128i eight = _mm_set1_epi8(8), m4 = _mm_set1_epi8(15);
        __m128i lo = _mm_sub_epi8(_mm_and_si128(qs, m4), eight);                     /* elements 0..15 */
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), eight);  /* elements 16..31 */
        w[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
        w[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
        w[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
        w[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
    }
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* rows (<= 4) consecutive rows from r0 */
static void rows_avx2(td_qblock_type t, const uint8_t *W, size_t row_bytes, int64_t r0, int rows, int64_t K,
                      const float *x, float *y) {
    size_t bb = td_qblock_bytes(t);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < K / TD_QBLOCK_SIZE; b++) {
        const float *xb = x + b * TD_QBLOCK_SIZE;
        __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8), x2 = _mm256_loadu_ps(xb + 16),
               x3 = _mm256_loadu_ps(xb + 24);
        for (int r = 0; r < rows; r++) {
            const uint8_t *blk = W + (size_t)(r0 + r) * row_bytes + (size_t)b * bb;
            __m256 w[4];
            widen(t, blk, w);
            __m256 p = _mm256_mul_ps(w[0], x0);
            p = _mm256_fmadd_ps(w[1], x1, p);
            p = _mm256_fmadd_ps(w[2], x2, p);
            p = _mm256_fmadd_ps(w[3], x3, p);
            acc[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(block_d(blk)), acc[r]);
        }
    }
    for (int r = 0; r < rows; r++)
        y[r0 + r] = hsum8(acc[r]);
}

#else
static float block_d(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return td_f16_to_f32(h);
}
#endif

static void row_scalar(td_qblock_type t, const uint8_t *row, int64_t K, const float *x, float *out) {
    size_t bb = td_qblock_bytes(t);
    float acc = 0.0f;
    for (int64_t b = 0; b < K / TD_QBLOCK_SIZE; b++) {
        const uint8_t *blk = row + (size_t)b * bb;
        const float *xb = x + b * TD_QBLOCK_SIZE;
        float p = 0.0f;
        for (int j = 0; j < TD_QBLOCK_SIZE; j++) {
            int q = t == TD_QBLOCK_Q8_0 ? (int8_t)blk[2 + j]
                                        : (j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4)) - 8;
            p += (float)q * xb[j];
        }
        acc += p * block_d(blk);
    }
    *out = acc;
}

typedef struct {
    td_qblock_type t;
    const uint8_t *W;
    size_t row_bytes;
    int64_t K;
    const float *x;
    float *y;
} gemv_job;

static void gemv_worker(void *arg, size_t begin, size_t end, int thread) {
    const gemv_job *j = arg;
    (void)thread;
    size_t r = begin;
#ifdef TD_GEMVQ_AVX2
    for (; r < end; r += 4)
        rows_avx2(j->t, j->W, j->row_bytes, (int64_t)r, end - r < 4 ? (int)(end - r) : 4, j->K, j->x, j->y);
#endif
    for (; r < end; r++)
        row_scalar(j->t, j->W + r * j->row_bytes, j->K, j->x, &j->y[r]);
}

void td_gemv_q(td_threadpool *pool, td_qblock_type t, const void *W, int64_t N, int64_t K, const float *x, float *y) {
    gemv_job j = {t, W, (size_t)(K / TD_QBLOCK_SIZE) * td_qblock_bytes(t), K, x, y};
    if (N <= 0)
        return;
    if (pool && N >= 64)
        td_parallel_for(pool, (size_t)N, gemv_worker, &j);
    else
        gemv_worker(&j, 0, (size_t)N, 0);
}

void td_qblock_quantize_row(td_qblock_type t, const float *w, int64_t K, void *out) {
    uint8_t *o = out;
    for (int64_t b = 0; b < K / TD_QBLOCK_SIZE; b++) {
        const float *v = w + b * TD_QBLOCK_SIZE;
        uint8_t *blk = o + (size_t)b * td_qblock_bytes(t);
        float amax = 0.0f, mx = 0.0f;
        for (int j = 0; j < TD_QBLOCK_SIZE; j++)
            if (fabsf(v[j]) > amax) {
                amax = fabsf(v[j]);
                mx = v[j];
            }
        float d = t == TD_QBLOCK_Q8_0 ? amax / 127.0f : mx / -8.0f;
        uint16_t h = td_f32_to_f16(d);
        memcpy(blk, &h, 2);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        if (t == TD_QBLOCK_Q8_0) {
            for (int j = 0; j < TD_QBLOCK_SIZE; j++)
                blk[2 + j] = (uint8_t)(int8_t)roundf(v[j] * id);
        } else {
            for (int j = 0; j < 16; j++) {
                int a = (int)(v[j] * id + 8.5f), c = (int)(v[j + 16] * id + 8.5f);
                a = a < 0 ? 0 : a > 15 ? 15 : a;
                c = c < 0 ? 0 : c > 15 ? 15 : c;
                blk[2 + j] = (uint8_t)(a | (c << 4));
            }
        }
    }
}
