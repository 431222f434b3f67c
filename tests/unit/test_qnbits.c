/* MatMulNBits kernels: a hand-computed case for the reference, then random shapes / bits / block sizes /
 * zero-point kinds / row counts: the optimized fp32 path against the fp32 reference (tight), the optimized
 * int8 path against the scalar int8 algorithm (tight) and against the fp32 reference (the activation
 * quantization error, loose). On a CPU without AVX-512 the optimized entry runs the scalar code. */
#include "core/threadpool.h"
#include "runtime/cpu/qnbits.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float rndf(void) { return (float)(rnd() % 20001) / 10000.0f - 1.0f; }

/* max |x - y| / max(1, max |y|) */
static double rel_err(const float *x, const float *y, int64_t n) {
    double e = 0, m = 1;
    for (int64_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)x[i] - y[i]));
        m = fmax(m, fabs((double)y[i]));
    }
    return e / m;
}

static void hand_case(void) {
    /* K=20, block 16 (2 blocks, second padded), N=1, 4-bit, packed uint8 zero points 3 and 9 */
    uint8_t b[2 * 8] = {0};
    for (int k = 0; k < 32; k++)
        b[k / 2] |= (uint8_t)((k % 16) << (4 * (k & 1))); /* code of element k is k % 16 */
    float scales[2] = {0.5f, -2.0f}, a[20], y;
    uint8_t zp[1] = {3 | (9 << 4)};
    double want = 0;
    for (int k = 0; k < 20; k++) {
        a[k] = (float)(k + 1);
        want += a[k] * ((k % 16) - (k < 16 ? 3 : 9)) * (k < 16 ? 0.5 : -2.0);
    }
    td_qnbits_raw w = {20, 1, 4, 16, b, scales, zp, NULL};
    td_qnbits_ref(&w, a, 1, NULL, &y);
    CHECK_MSG(fabs(y - want) < 1e-3, "reference %g, hand %g", y, want);
}

static void random_case(td_threadpool *pool, int threads, int iter) {
    int bits = rnd() % 2 ? 4 : 8, bs = 16 << (rnd() % 5);
    int64_t K = 1 + rnd() % 700, N = 1 + rnd() % 70, M = iter % 3 == 0 ? 1 : 1 + rnd() % 9;
    if (iter % 7 == 0)
        K = (int64_t)bs * (1 + rnd() % 4); /* whole blocks */
    int64_t kb = td_qnbits_kb(K, bs), blob = (int64_t)bs * bits / 8, zrow = (kb * bits + 7) / 8;
    int zkind = rnd() % 3; /* 0 none, 1 uint8 packed, 2 float */
    uint8_t *b = malloc((size_t)(N * kb * blob)), *zu = malloc((size_t)(N * zrow));
    float *s = malloc((size_t)(N * kb) * 4), *zf = malloc((size_t)(N * kb) * 4), *bias = malloc((size_t)N * 4);
    float *a = malloc((size_t)(M * K) * 4), *y_ref = malloc((size_t)(M * N) * 4), *y = malloc((size_t)(M * N) * 4);
    float *y_i8ref = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < N * kb * blob; i++)
        b[i] = (uint8_t)rnd();
    for (int64_t i = 0; i < N * zrow; i++)
        zu[i] = (uint8_t)rnd();
    for (int64_t i = 0; i < N * kb; i++)
        s[i] = rndf() * 0.05f, zf[i] = (float)(rnd() % (1u << bits));
    for (int64_t i = 0; i < N; i++)
        bias[i] = rndf();
    for (int64_t i = 0; i < M * K; i++)
        a[i] = rndf() * (i % 5 == 0 ? 4.0f : 1.0f);
    const float *use_bias = rnd() % 2 ? bias : NULL;
    td_qnbits_raw raw = {K, N, bits, bs, b, s, zkind == 1 ? zu : NULL, zkind == 2 ? zf : NULL};
    td_qnbits_w *w = NULL;
    CHECK(td_qnbits_prepare(NULL, &raw, &w) == TD_OK);
    void *scratch = malloc(td_qnbits_scratch(w, M, threads));
    td_rt_env env = {.threads = threads, .pool = pool};
    td_qnbits_ref(&raw, a, M, use_bias, y_ref);

    td_qnbits_gemm(w, a, M, use_bias, y, false, scratch, &env);
    double e32 = rel_err(y, y_ref, M * N);
    CHECK_MSG(e32 < 1e-5, "fp32 path: bits %d block %d K %lld N %lld M %lld zp %d: error %g", bits, bs, (long long)K,
              (long long)N, (long long)M, zkind, e32);

    td_qnbits_i8_ref(w, a, M, use_bias, y_i8ref, scratch);
    td_qnbits_gemm(w, a, M, use_bias, y, true, scratch, &env);
    double e8 = rel_err(y, y_i8ref, M * N), e8q = rel_err(y, y_ref, M * N);
    CHECK_MSG(e8 < 1e-5, "int8 path vs scalar int8: bits %d block %d K %lld N %lld M %lld zp %d: error %g", bits, bs,
              (long long)K, (long long)N, (long long)M, zkind, e8);
    /* activations rounded to 8 bits per block: error a few 1e-3 of the largest output */
    CHECK_MSG(e8q < 3e-2, "int8 path vs fp32 reference: bits %d block %d K %lld: error %g", bits, bs, (long long)K, e8q);
    free(w), free(scratch), free(b), free(zu), free(s), free(zf), free(bias), free(a), free(y_ref), free(y),
        free(y_i8ref);
}

/* The AVX2 activation quantizer gives the scalar one's bytes, scales and sums exactly (whole and partial
 * blocks, zero blocks, values at the rounding midpoints). */
static void quant_row_case(int iter) {
    int bs = 32 << (iter % 3);
    int64_t K = 1 + rnd() % 700;
    if (iter % 4 == 0)
        K = (int64_t)bs * (1 + rnd() % 20);
    int64_t kb = td_qnbits_kb(K, bs);
    float *a = malloc((size_t)K * 4), *da0 = malloc((size_t)kb * 4), *da1 = malloc((size_t)kb * 4);
    int8_t *q0 = malloc((size_t)(kb * bs)), *q1 = malloc((size_t)(kb * bs));
    int32_t *s0 = malloc((size_t)kb * 4), *s1 = malloc((size_t)kb * 4);
    for (int64_t i = 0; i < K; i++)
        a[i] = rndf() * (i % 7 == 0 ? 8.0f : 1.0f);
    if (iter % 5 == 0)
        for (int64_t i = 0; i < K && i < bs; i++)
            a[i] = 0.0f; /* an all-zero block: scale 0, codes 0 */
    if (iter % 6 == 0 && K >= 3)
        a[0] = 127.0f, a[1] = 0.5f, a[2] = -1.5f; /* d = 1: 0.5 and -1.5 sit on rounding midpoints (even: 0, -2) */
    td_qnbits_quant_row(a, K, bs, q0, da0, s0);
    td_qnbits_quant_row_fast(a, K, bs, q1, da1, s1);
    CHECK_MSG(!memcmp(q0, q1, (size_t)(kb * bs)) && !memcmp(da0, da1, (size_t)kb * 4) &&
                  !memcmp(s0, s1, (size_t)kb * 4),
              "quant_row_fast differs from the scalar quantizer: K %lld block %d", (long long)K, bs);
    free(a), free(da0), free(da1), free(q0), free(q1), free(s0), free(s1);
}

/* Decode GEMVs (M = 1) at SmolLM2's widths (K 576, 1536) and small ones, Q4_1-like float zero points or none,
 * 4- and 8-bit: the same results as the scalar int8 algorithm. */
static void decode_case(td_threadpool *pool, int threads, int iter) {
    int bits = iter % 2 ? 8 : 4, bs = 32;
    const int64_t Ks[] = {64, 128, 576, 1536};
    int64_t K = Ks[iter % 4], N = 1 + rnd() % 23, kb = K / bs, blob = bs * bits / 8;
    uint8_t *b = malloc((size_t)(N * kb * blob));
    float *s = malloc((size_t)(N * kb) * 4), *zf = malloc((size_t)(N * kb) * 4), *bias = malloc((size_t)N * 4);
    float *a = malloc((size_t)K * 4), *y = malloc((size_t)N * 4), *y_ref = malloc((size_t)N * 4);
    for (int64_t i = 0; i < N * kb * blob; i++)
        b[i] = (uint8_t)rnd();
    for (int64_t i = 0; i < N * kb; i++)
        s[i] = rndf() * 0.05f, zf[i] = (float)(rnd() % (1u << bits));
    for (int64_t i = 0; i < N; i++)
        bias[i] = rndf();
    for (int64_t i = 0; i < K; i++)
        a[i] = rndf();
    td_qnbits_raw raw = {K, N, bits, bs, b, s, NULL, iter % 3 ? zf : NULL};
    td_qnbits_w *w = NULL;
    CHECK(td_qnbits_prepare(NULL, &raw, &w) == TD_OK);
    void *scratch = malloc(td_qnbits_scratch(w, 1, threads));
    td_rt_env env = {.threads = threads, .pool = pool};
    td_qnbits_i8_ref(w, a, 1, bias, y_ref, scratch);
    td_qnbits_gemm(w, a, 1, bias, y, true, scratch, &env);
    double e = rel_err(y, y_ref, N);
    CHECK_MSG(e < 1e-5, "decode GEMV vs scalar int8: bits %d K %lld N %lld: error %g", bits, (long long)K, (long long)N,
              e);
    free(w), free(scratch), free(b), free(s), free(zf), free(bias), free(a), free(y), free(y_ref);
}

int main(void) {
    printf("AVX-512 VNNI kernels: %s; AVX2 int8 and fp32 kernels (4- and 8-bit): %s\n", td_qnbits_have_avx512() ? "yes" : "no (scalar fallback checked)", td_qnbits_have_avx2() ? "yes" : "no");
    hand_case();
    for (int threads = 1; threads <= 3; threads += 2) {
        td_threadpool *pool = NULL;
        CHECK(td_threadpool_create(NULL, threads, &pool) == TD_OK);
        for (int iter = 0; iter < 150; iter++)
            random_case(pool, threads, iter);
        td_threadpool_free(pool);
    }
    /* after the random cases, so that their draws stay the ones they always were */
    for (int iter = 0; iter < 200; iter++)
        quant_row_case(iter);
    for (int threads = 1; threads <= 3; threads += 2) {
        td_threadpool *pool = NULL;
        CHECK(td_threadpool_create(NULL, threads, &pool) == TD_OK);
        for (int iter = 0; iter < 40; iter++)
            decode_case(pool, threads, iter);
        td_threadpool_free(pool);
    }
    return td_test_finish("test_qnbits");
}
