/* Int8 GEMM (runtime/cpu/gemm_int8.h): the VNNI kernel against the plain-loop
 * reference on many odd shapes (every tile remainder, K not a multiple of 4,
 * bias, activations, residual, padded strides, 1 and 2 threads), bit-exact where
 * no approximated activation is involved; the definition itself against the
 * fp32 product (quantization error bound); extreme values that would overflow
 * 16-bit intermediates; weight quantization and packing errors. */
#include "core/threadpool.h"
#include "runtime/cpu/gemm_int8.h"
#include "runtime/cpu/vecmath.h"
#include "runtime/cpu/vecmath_avx2.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float uniform(void) { return (float)(next_u32() % 2000001) / 1000000.0f - 1.0f; }
static size_t pick(size_t lo, size_t hi) { return lo + next_u32() % (hi - lo + 1); }

static float *rand_floats(size_t n, float scale, float offset) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = uniform() * scale + offset;
    return p;
}

/* weight range of the random cases: 127 (8-bit) or TD_GEMM_I8_NARROW (7-bit, the AVX2 kernel's paired path) */
static int g_qmax = 127;

static void *scratch_for(size_t M, size_t K) { return aligned_alloc(64, (td_gemm_i8_scratch_bytes(M, K) + 63) / 64 * 64); }

/* One case: fast (threads) vs reference. Returns the largest relative difference. */
static double run_case(td_threadpool *pool, size_t M, size_t N, size_t K, size_t lda, size_t ldc, td_gemm_act act,
                       bool bias, bool residual, float a_offset) {
    td_ctx *ctx = td_ctx_new();
    float *A = rand_floats(M * lda, 2.0f, a_offset), *W = rand_floats(K * N, 0.1f, 0.0f);
    float *bv = bias ? rand_floats(N, 1.0f, 0.0f) : NULL, *R = residual ? rand_floats(M * ldc, 1.0f, 0.0f) : NULL;
    int8_t *bq = malloc(K * N + 1);
    float *sc = malloc((N + 1) * sizeof(float));
    td_gemm_i8_quantize_weights(W, K, N, N, false, g_qmax, bq, sc);
    td_gemm_i8_packed *P = NULL;
    CHECK(td_gemm_i8_pack(ctx, bq, K, N, sc, N, &P) == TD_OK);
    CHECK(P && P->wmax <= g_qmax && (K * N < 64 || P->wmax == g_qmax));
    float *C = malloc((M * ldc + 1) * sizeof(float)), *Cr = malloc((M * ldc + 1) * sizeof(float));
    for (size_t i = 0; i < M * ldc; i++)
        C[i] = Cr[i] = -777.0f; /* padding columns must stay untouched */
    td_gemm_epilogue ep = {.bias = bv, .act = act, .residual = R, .ldr = ldc};
    void *scr = scratch_for(M, K);
    td_gemm_i8_run(pool, M, A, lda, P, C, ldc, &ep, scr);
    td_gemm_i8_ref(M, N, K, A, lda, bq, sc, Cr, ldc, &ep, td_gemm_i8_act_levels());
    double worst = 0.0;
    size_t pad_bad = 0;
    for (size_t i = 0; i < M; i++)
        for (size_t n = 0; n < ldc; n++) {
            float x = C[i * ldc + n], y = Cr[i * ldc + n];
            if (n >= N) {
                pad_bad += x != -777.0f;
                continue;
            }
            double d = fabs((double)x - (double)y) / (1.0 + fabs((double)y));
            if (!(d <= worst)) /* NaN counts as worst */
                worst = isnan(d) ? INFINITY : d;
        }
    CHECK_MSG(pad_bad == 0, "M=%zu N=%zu K=%zu: %zu padding columns written", M, N, K, pad_bad);
    td_gemm_i8_packed_free(P);
    free(A);
    free(W);
    free(bv);
    free(R);
    free(bq);
    free(sc);
    free(C);
    free(Cr);
    free(scr);
    td_ctx_free(ctx);
    return worst;
}

static void test_vs_reference(td_threadpool *pool2) {
    static const size_t Ms[] = {1, 2, 7, 8, 9, 16, 17, 130};
    static const size_t Ns[] = {1, 5, 16, 17, 33, 47, 48, 49, 96, 100, 200};
    static const size_t Ks[] = {1, 3, 4, 5, 31, 64, 77, 384};
    int exact_fail = 0, cases = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
                size_t M = Ms[mi], N = Ns[ni], K = Ks[ki];
                td_threadpool *pool = (cases & 1) ? pool2 : NULL;
                bool bias = cases % 3 != 0, res = cases % 4 == 1;
                float off = (cases % 5 == 0) ? 0.7f : 0.0f; /* shifted rows: zero point far from 128 */
                double d = run_case(pool, M, N, K, K, N, TD_GEMM_ACT_NONE, bias, res, off);
                cases++;
                if (d != 0.0) {
                    exact_fail++;
                    fprintf(stderr, "M=%zu N=%zu K=%zu bias=%d res=%d: max rel diff %g (want bit-exact)\n", M, N, K,
                            bias, res, d);
                }
            }
    CHECK_MSG(exact_fail == 0, "%d of %d shapes differ from the reference", exact_fail, cases);
    /* padded strides, activations (vector GELU vs libm: a few ulp), random shapes */
    for (int t = 0; t < 60; t++) {
        size_t M = pick(1, 70), N = pick(1, 150), K = pick(1, 300);
        size_t lda = K + pick(0, 9), ldc = N + pick(0, 5);
        td_gemm_act act = (td_gemm_act)(t % 4);
        double d = run_case(t & 1 ? pool2 : NULL, M, N, K, lda, ldc, act, t % 3 != 0, t % 2 == 0, 0.0f);
        /* the epilogue's vector GELU (AVX-512 or AVX2) is a few ulp from the reference's libm form */
        double tol = act == TD_GEMM_ACT_GELU_ERF || act == TD_GEMM_ACT_GELU_TANH ? 2e-6 : 0.0;
        CHECK_MSG(d <= tol, "random M=%zu N=%zu K=%zu lda=%zu ldc=%zu act=%d: diff %g > %g", M, N, K, lda, ldc,
                  (int)act, d, tol);
    }
}

/* The quantized product approximates the fp32 product: error within the bound
 * the two roundings allow (half a weight step per term, up to a whole
 * activation step where the zero point's rounding meets the 255 clamp). */
static void test_vs_float(td_threadpool *pool) {
    td_ctx *ctx = td_ctx_new();
    size_t M = 37, N = 129, K = 768;
    float *A = rand_floats(M * K, 3.0f, 0.5f), *W = rand_floats(K * N, 0.05f, 0.0f);
    int8_t *bq = malloc(K * N);
    float *sc = malloc(N * sizeof(float)), *C = malloc(M * N * sizeof(float));
    td_gemm_i8_quantize_weights(W, K, N, N, false, g_qmax, bq, sc);
    td_gemm_i8_packed *P = NULL;
    CHECK(td_gemm_i8_pack(ctx, bq, K, N, sc, N, &P) == TD_OK);
    void *scr = scratch_for(M, K);
    td_gemm_i8_run(pool, M, A, K, P, C, N, NULL, scr);
    int bad = 0;
    double err2 = 0.0, ref2 = 0.0;
    for (size_t i = 0; i < M; i++) {
        float lo = 0.0f, hi = 0.0f;
        for (size_t k = 0; k < K; k++) {
            lo = fminf(lo, A[i * K + k]);
            hi = fmaxf(hi, A[i * K + k]);
        }
        double sa = (hi - lo) / (double)td_gemm_i8_act_levels();
        for (size_t n = 0; n < N; n++) {
            double exact = 0.0, bound = 0.0;
            for (size_t k = 0; k < K; k++) {
                double a = A[i * K + k], w = W[k * N + n];
                exact += a * w;
                bound += sa * (fabs(w) + sc[n]) + 0.5 * sc[n] * fabs(a);
            }
            double d = fabs(C[i * N + n] - exact);
            bad += d > bound * 1.0001 + 1e-6;
            err2 += d * d;
            ref2 += exact * exact;
        }
    }
    CHECK_MSG(bad == 0, "%d of %zu outputs outside the quantization error bound", bad, M * N);
    CHECK_MSG(sqrt(err2 / ref2) < 0.02, "relative RMS error %g vs the fp32 product", sqrt(err2 / ref2));
    td_gemm_i8_packed_free(P);
    free(A);
    free(W);
    free(bq);
    free(sc);
    free(C);
    free(scr);
    td_ctx_free(ctx);
}

/* Saturated operands: every product 255 * wmag (or -wmag) over a long K must sum
 * exactly in int32 (a 16-bit intermediate as in vpmaddubsw would saturate).
 * wmag 63 is the largest the AVX2 kernel's paired int16 sums take (4 x 127 x 63
 * = 32004), 64 the smallest that must not take them. K = 4099: an odd number of
 * 4-byte groups, so the paired loop ends on a single group. */
static void test_extremes(td_threadpool *pool, int wmag) {
    td_ctx *ctx = td_ctx_new();
    size_t M = 9, N = 50, K = 4099;
    float *A = malloc(M * K * sizeof(float));
    for (size_t i = 0; i < M; i++)
        for (size_t k = 0; k < K; k++)
            A[i * K + k] = k == 0 ? -1.0f : 1000.0f; /* zero point 0, most of the row at 255 */
    int8_t *bq = malloc(K * N);
    for (size_t k = 0; k < K; k++)
        for (size_t n = 0; n < N; n++)
            bq[k * N + n] = (int8_t)(n % 2 ? wmag : -wmag);
    float one = 1.0f, *C = malloc(M * N * sizeof(float)), *Cr = malloc(M * N * sizeof(float));
    td_gemm_i8_packed *P = NULL;
    CHECK(td_gemm_i8_pack(ctx, bq, K, N, &one, 1, &P) == TD_OK);
    void *scr = scratch_for(M, K);
    td_gemm_i8_run(pool, M, A, K, P, C, N, NULL, scr);
    float *scv = malloc(N * sizeof(float));
    for (size_t n = 0; n < N; n++)
        scv[n] = 1.0f;
    td_gemm_i8_ref(M, N, K, A, K, bq, scv, Cr, N, NULL, td_gemm_i8_act_levels());
    CHECK(memcmp(C, Cr, M * N * sizeof(float)) == 0);
    /* L levels: row scale s = 1001/L, q = L for 1000, zp = round(1/s) = 0: value = s*wmag*L*(K-1) */
    double L = td_gemm_i8_act_levels(), s = (double)(1000.0f - -1.0f) / L;
    double want = s * wmag * L * (double)(K - 1);
    CHECK_MSG(fabs(C[1] - want) <= 1e-5 * want, "C[0,1] = %g, want %g", C[1], want);
    CHECK_MSG(fabs(C[0] + want) <= 1e-5 * want, "C[0,0] = %g, want %g", C[0], -want);
    td_gemm_i8_packed_free(P);
    free(A);
    free(bq);
    free(C);
    free(Cr);
    free(scv);
    free(scr);
    td_ctx_free(ctx);
}

static void test_quantize_and_pack_errors(void) {
    td_ctx *ctx = td_ctx_new();
    /* per-column symmetric scales: max |w| maps to +-127, zero column gets scale 1 */
    float W[3 * 2] = {0.5f, 0.0f, -1.0f, 0.0f, 0.25f, 0.0f}; /* (K=3, N=2) */
    int8_t q[6];
    float s[2];
    td_gemm_i8_quantize_weights(W, 3, 2, 2, false, 127, q, s);
    CHECK(s[0] == 1.0f / 127.0f && s[1] == 1.0f);
    CHECK(q[0] == 64 && q[2] == -127 && q[4] == 32 && q[1] == 0 && q[3] == 0 && q[5] == 0);
    /* the (N, K) form gives the same */
    float Wt[2 * 3] = {0.5f, -1.0f, 0.25f, 0.0f, 0.0f, 0.0f};
    int8_t q2[6];
    float s2[2];
    td_gemm_i8_quantize_weights(Wt, 3, 2, 3, true, 127, q2, s2);
    CHECK(memcmp(q, q2, sizeof q) == 0 && s2[0] == s[0] && s2[1] == s[1]);
    td_gemm_i8_packed *P = NULL;
    CHECK(td_gemm_i8_pack(ctx, q, 3, 2, s, 3, &P) == TD_ERR_SHAPE && P == NULL);
    CHECK(td_gemm_i8_pack(ctx, q, TD_GEMM_I8_MAX_K + 1, 2, s, 2, &P) == TD_ERR_UNSUPPORTED && P == NULL);
    CHECK(strstr(td_error_message(ctx), "exceeds") != NULL);
    td_ctx_free(ctx);
}

#if defined(__AVX2__) && defined(__FMA__)
/* The 8-lane GELUs against the double-precision scalar forms: relative error
 * (ulp-scale) over a dense sweep including the tails, signed zeros and NaN. */
static void test_v8_gelu(void) {
    double worst_erf = 0.0, worst_tanh = 0.0;
    int nan_bad = 0;
    for (int i = 0; i <= 2000000; i += 8) {
        float x[8], ye[8], yt[8];
        for (int l = 0; l < 8; l++)
            x[l] = -25.0f + 50.0f * (float)(i + l) / 2000000.0f;
        if (i == 0) {
            x[1] = 0.0f;
            x[2] = -0.0f;
            x[3] = NAN;
            x[4] = -INFINITY;
            x[5] = INFINITY;
            x[6] = 1e-30f;
        }
        _mm256_storeu_ps(ye, td_v8_gelu_erf(_mm256_loadu_ps(x)));
        _mm256_storeu_ps(yt, td_v8_gelu_tanh(_mm256_loadu_ps(x)));
        for (int l = 0; l < 8; l++) {
            if (isnan(x[l])) {
                nan_bad += !isnan(ye[l]) + !isnan(yt[l]);
                continue;
            }
            double re = td_s_gelu_erf(x[l]), rt = td_s_gelu_tanh(x[l]);
            double de = fabs(ye[l] - re) / fmax(fabs(re), 1e-30), dt = fabs(yt[l] - rt) / fmax(fabs(rt), 1e-30);
            if (re == 0.0 && ye[l] == 0.0)
                de = 0.0;
            if (rt == 0.0 && yt[l] == 0.0)
                dt = 0.0;
            if (isinf(re) && ye[l] == re)
                de = 0.0;
            if (isinf(rt) && yt[l] == rt)
                dt = 0.0;
            /* below ~1e-30 in magnitude results are subnormal: compare absolutely there */
            if (fabs(re) < 1e-30)
                de = fabs(ye[l] - re) / 1e-30;
            if (fabs(rt) < 1e-30)
                dt = fabs(yt[l] - rt) / 1e-30;
            worst_erf = fmax(worst_erf, isnan(de) ? INFINITY : de);
            worst_tanh = fmax(worst_tanh, isnan(dt) ? INFINITY : dt);
        }
    }
    printf("8-lane GELU max rel error: erf form %.3g, tanh form %.3g\n", worst_erf, worst_tanh);
    CHECK_MSG(worst_erf < 4e-6, "erf GELU rel error %g", worst_erf);
    /* the tanh form's negative tail: exp(-2z) with |2z| up to ~200 inherits z's fp32 rounding (~2|z| ulp) */
    CHECK_MSG(worst_tanh < 3e-5, "tanh GELU rel error %g", worst_tanh);
    CHECK(nan_bad == 0);
}
#else
static void test_v8_gelu(void) {}
#endif

int main(void) {
    printf("int8 GEMM: %d activation levels\n", td_gemm_i8_act_levels());
    td_ctx *ctx = td_ctx_new();
    td_threadpool *pool = NULL;
    if (td_threadpool_create(ctx, 2, &pool) != TD_OK)
        return 1;
    test_vs_reference(pool);
    test_vs_float(pool);
    test_vs_float(NULL);
    g_qmax = TD_GEMM_I8_NARROW; /* 7-bit weights: the paired path on AVX2 */
    test_vs_reference(pool);
    test_vs_float(pool);
    g_qmax = 127;
    test_extremes(pool, 127);
    test_extremes(pool, TD_GEMM_I8_NARROW);
    test_extremes(pool, TD_GEMM_I8_NARROW + 1);
    test_quantize_and_pack_errors();
    test_v8_gelu();
    td_threadpool_free(pool);
    td_ctx_free(ctx);
    return td_test_finish("test_gemm_int8");
}
