/* The runtime's kernel interface (kern.h, optimized kernels + thread pool)
 * against the reference loops (ref_kern.h): packed GEMM with fp32/fp16/bf16
 * weights and bias, activation GEMM (plain and transposed B, alpha), softmax, log-softmax,
 * layernorm with its statistics, GELU. Odd sizes cover panel and vector tails. */
#include "core/threadpool.h"
#include "runtime/cpu/kern.h"
#include "runtime/cpu/ref_kern.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float frand(void) { return (float)rand() / (float)RAND_MAX * 2.0f - 1.0f; }
static float *rnd(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}
static float max_rel_err(const float *a, const float *b, size_t n) {
    float e = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]) / (1.0f + fabsf(b[i]));
        if (d > e || isnan(a[i]) != isnan(b[i]))
            e = isnan(d) ? INFINITY : (d > e ? d : e);
    }
    return e;
}

static void test_gemm(td_rt_env *env) {
    const int64_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {8, 48, 16}, {17, 97, 33}, {64, 50, 129}, {5, 0, 3}, {4, 6, 0}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int64_t M = sizes[t][0], N = sizes[t][1], K = sizes[t][2];
        float *A = rnd((size_t)(M * K)), *B = rnd((size_t)(K * N)), *bias = rnd((size_t)N);
        float *ref = calloc((size_t)(M * N) + 1, sizeof *ref), *got = calloc((size_t)(M * N) + 1, sizeof *got);
        td_ref_gemm(false, false, M, N, K, 1.0f, A, K, B, N, bias, ref, N);
        const td_dtype stores[3] = {TD_F32, TD_F16, TD_BF16};
        const float tol[3] = {1e-5f, 3e-3f, 3e-2f};
        for (int s = 0; s < 3; s++) {
            td_kern_packed *P = NULL;
            CHECK(td_kern_pack_b(NULL, B, TD_F32, K, N, false, stores[s], &P) == TD_OK);
            if (!P)
                continue;
            td_kern_gemm_packed(A, K, M, P, bias, got, N, env);
            float e = max_rel_err(got, ref, (size_t)(M * N));
            CHECK_MSG(e <= tol[s] * (1.0f + (float)K / 16.0f), "packed %s %lldx%lldx%lld err %g",
                      td_dtype_name(stores[s]), (long long)M, (long long)N, (long long)K, e);
            td_kern_packed_free(P);
        }
        /* transposed packing (a Linear weight stored (N, K)) */
        float *Bt = malloc((size_t)(K * N + 1) * sizeof *Bt);
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < N; j++)
                Bt[j * K + k] = B[k * N + j];
        td_kern_packed *P = NULL;
        CHECK(td_kern_pack_b(NULL, Bt, TD_F32, K, N, true, TD_F32, &P) == TD_OK);
        if (P) {
            td_kern_gemm_packed(A, K, M, P, bias, got, N, env);
            CHECK(max_rel_err(got, ref, (size_t)(M * N)) <= 1e-5f * (1.0f + (float)K / 16.0f));
            td_kern_packed_free(P);
        }
        /* activation GEMM with alpha, plain and transposed B, packing into scratch */
        void *scratch = aligned_alloc(64, (td_kern_gemm_scratch(K, N) + 63) / 64 * 64);
        td_ref_gemm(false, false, M, N, K, 0.5f, A, K, B, N, NULL, ref, N);
        td_kern_gemm(M, N, K, 0.5f, A, K, B, N, false, got, N, scratch, env);
        CHECK(max_rel_err(got, ref, (size_t)(M * N)) <= 1e-5f * (1.0f + (float)K / 16.0f));
        td_kern_gemm(M, N, K, 0.5f, A, K, Bt, K, true, got, N, scratch, env);
        CHECK(max_rel_err(got, ref, (size_t)(M * N)) <= 1e-5f * (1.0f + (float)K / 16.0f));
        free(scratch);
        free(A), free(B), free(Bt), free(bias), free(ref), free(got);
    }
}

/* batched activation GEMM (attention's Q K^T and P V) against the reference: M <= 4 takes the unpacked small-M
 * path (decode attention), larger M the packed one; B rows wider than N (ldb > N), batches sharing A */
static void test_gemm_batched(td_rt_env *env) {
    const int64_t sizes[][3] = {{1, 256, 64}, {3, 64, 256}, {4, 13, 9}, {5, 40, 17}, {2, 0, 5}, {3, 7, 0}};
    enum { NB = 3 };
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int64_t M = sizes[t][0], N = sizes[t][1], K = sizes[t][2], ldb = N + 3;
        float *A = rnd((size_t)(2 * M * K) + 1), *B = rnd((size_t)(NB * K * ldb) + 1);
        float *ref = calloc((size_t)(NB * M * N) + 1, sizeof *ref), *got = calloc((size_t)(NB * M * N) + 1, sizeof *got);
        int64_t a_off[NB] = {0, M * K, 0}, b_off[NB] = {0, K * ldb, 2 * K * ldb};
        void *scratch = aligned_alloc(64, (td_kern_gemm_batched_scratch(K, N, env->threads) + 63) / 64 * 64);
        td_ref_gemm_batched(NB, M, N, K, A, K, a_off, B, ldb, b_off, ref, N, M * N);
        td_kern_gemm_batched(NB, M, N, K, A, K, a_off, B, ldb, b_off, got, N, M * N, scratch, env);
        float e = max_rel_err(got, ref, (size_t)(NB * M * N));
        CHECK_MSG(e <= 1e-5f * (1.0f + (float)K / 16.0f), "batched %lldx%lldx%lld err %g", (long long)M, (long long)N,
                  (long long)K, e);
        free(scratch);
        free(A), free(B), free(ref), free(got);
    }
}

static void test_rows(td_rt_env *env) {
    const int64_t shapes[][2] = {{1, 1}, {3, 17}, {7, 64}, {5, 1000}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int64_t R = shapes[t][0], N = shapes[t][1];
        size_t n = (size_t)(R * N);
        float *x = rnd(n), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        for (size_t i = 0; i < n; i++)
            x[i] *= 8.0f;
        memcpy(a, x, n * sizeof *a);
        memcpy(b, x, n * sizeof *b);
        td_kern_softmax_rows(a, R, N, env);
        td_ref_softmax_rows(b, R, N);
        CHECK_MSG(max_rel_err(a, b, n) < 1e-5f, "softmax %lldx%lld", (long long)R, (long long)N);
        /* log-softmax, with row 0 spread to +-120 so exp underflows where the answer is finite */
        for (int64_t j = 0; j < N; j++)
            x[j] *= 15.0f;
        memcpy(a, x, n * sizeof *a);
        memcpy(b, x, n * sizeof *b);
        td_kern_log_softmax_rows(a, R, N, env);
        td_ref_log_softmax_rows(b, R, N);
        CHECK_MSG(max_rel_err(a, b, n) < 1e-5f, "log-softmax %lldx%lld", (long long)R, (long long)N);
        size_t nonfinite = 0;
        for (size_t i = 0; i < n; i++)
            nonfinite += !isfinite(a[i]);
        CHECK_MSG(nonfinite == 0, "log-softmax %lldx%lld: %zu non-finite values", (long long)R, (long long)N, nonfinite);
        for (int64_t j = 0; j < N; j++)
            x[j] /= 15.0f;
        float *g = rnd((size_t)N), *be = rnd((size_t)N);
        float m1[8], m2[8], s1[8], s2[8];
        td_kern_layernorm_rows(x, g, be, a, R, N, 1e-5f, m1, s1, env);
        td_ref_layernorm_rows(x, g, be, b, R, N, 1e-5f, m2, s2);
        CHECK_MSG(max_rel_err(a, b, n) < 1e-4f, "layernorm %lldx%lld", (long long)R, (long long)N);
        CHECK(max_rel_err(m1, m2, (size_t)R) < 1e-5f && max_rel_err(s1, s2, (size_t)R) < 1e-4f);
        td_kern_unary_f32(TD_UNARY_GELU_ERF, x, a, (int64_t)n, env);
        td_ref_gelu_erf(x, b, (int64_t)n);
        CHECK(max_rel_err(a, b, n) < 1e-5f);
        td_kern_unary_f32(TD_UNARY_GELU_TANH, x, a, (int64_t)n, env);
        td_ref_gelu_tanh(x, b, (int64_t)n);
        CHECK(max_rel_err(a, b, n) < 1e-5f);
        free(x), free(a), free(b), free(g), free(be);
    }
}

/* td_kern_mha_run vs td_ref_attention per (batch, head), with a per-batch mask and per-head bias;
 * K and V either contiguous per head or read in place from (B, T, ld) rows (kv_ld). */
static void test_mha(td_rt_env *env) {
    const int64_t B = 2, N = 3, S = 5, T = 7, D = 4, Dv = 6;
    float *q = rnd((size_t)(B * S * N * D)), *k = rnd((size_t)(B * N * T * D)), *v = rnd((size_t)(B * N * T * Dv));
    float *mask = rnd((size_t)(B * S * T)), *bias = rnd((size_t)(N * S * T));
    float *got = calloc((size_t)(B * S * N * Dv), sizeof *got), *ref = calloc((size_t)(B * S * N * Dv), sizeof *ref);
    float *madd = malloc((size_t)(S * T) * sizeof *madd), *sc = malloc((size_t)(S * T) * sizeof *sc);
    const int64_t ld = N * D + N * Dv + 3; /* K columns, then V columns, then padding */
    float *kv = calloc((size_t)(B * T * ld), sizeof *kv);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < N; h++)
            for (int64_t t = 0; t < T; t++) {
                memcpy(kv + (b * T + t) * ld + h * D, k + ((b * N + h) * T + t) * D, (size_t)D * sizeof(float));
                memcpy(kv + (b * T + t) * ld + N * D + h * Dv, v + ((b * N + h) * T + t) * Dv,
                       (size_t)Dv * sizeof(float));
            }
    for (int variant = 0; variant < 8; variant++) {
        int with_bias = variant & 1, strided = (variant >> 1) & 1, one_row = variant >> 2;
        memset(got, 0, (size_t)(B * S * N * Dv) * sizeof *got);
        td_kern_mha a = {.B = B, .N = N, .S = S, .T = T, .D = D, .Dv = Dv, .q = q, .q_bstride = S * N * D,
                         .ldq = N * D, .k = strided ? kv : k, .v = strided ? kv + N * D : v,
                         .kv_ld = strided ? ld : 0, .out = got, .o_bstride = S * N * Dv, .ldo = N * Dv,
                         .scale = 0.5f, .mask = mask, .mask_bstride = one_row ? T : S * T, .mask_one_row = one_row,
                         .bias = with_bias ? bias : NULL,
                         .bias_bstride = 0, .bias_hstride = S * T};
        void *scratch = aligned_alloc(64, (td_kern_mha_scratch(S, T, D, Dv, env->threads) + 63) / 64 * 64);
        td_kern_mha_run(&a, scratch, env);
        free(scratch);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < N; h++) {
                for (int64_t i = 0; i < S * T; i++)
                    madd[i] = (one_row ? mask[b * T + i % T] : mask[b * S * T + i]) +
                              (with_bias ? bias[h * S * T + i] : 0.0f);
                td_ref_attention(q + b * S * N * D + h * D, N * D, k + (b * N + h) * T * D, D, v + (b * N + h) * T * Dv,
                                 Dv, ref + b * S * N * Dv + h * Dv, N * Dv, S, T, D, Dv, 0.5f, madd, T, sc);
            }
        CHECK_MSG(max_rel_err(got, ref, (size_t)(B * S * N * Dv)) < 1e-5f, "mha bias=%d strided=%d one_row=%d",
                  with_bias, strided, one_row);
    }
    free(kv);
    free(q), free(k), free(v), free(mask), free(bias), free(got), free(ref), free(madd), free(sc);
}

/* Grouped-query heads (kv_heads < N: query head h reads kv head h / (N / kv_heads)) over a cache with
 * spare rows (kv_rows > T), one decode token (S = 1: the per-group path) and several, with a per-batch mask
 * and a bias per batch or per head; vs td_ref_attention per (batch, query head). */
static void test_mha_grouped(td_rt_env *env) {
    const int64_t B = 2, N = 6, KV = 2, T = 9, ROWS = 12, D = 8;
    for (int variant = 0; variant < 6; variant++) {
        int64_t S = variant & 1 ? 1 : 3;
        int bias_mode = variant >> 1; /* 0 none, 1 per batch, 2 per head */
        float *q = rnd((size_t)(B * S * N * D)), *k = rnd((size_t)(B * KV * ROWS * D)),
              *v = rnd((size_t)(B * KV * ROWS * D));
        float *mask = rnd((size_t)(B * S * T)), *bias = rnd((size_t)(B * N * S * T));
        float *got = calloc((size_t)(B * S * N * D), sizeof *got), *ref = calloc((size_t)(B * S * N * D), sizeof *ref);
        float *madd = malloc((size_t)(S * T) * sizeof *madd), *sc = malloc((size_t)(S * T) * sizeof *sc);
        td_kern_mha a = {.B = B, .N = N, .S = S, .T = T, .D = D, .Dv = D, .kv_heads = KV, .kv_rows = ROWS,
                         .q = q, .q_bstride = S * N * D, .ldq = N * D, .k = k, .v = v, .out = got,
                         .o_bstride = S * N * D, .ldo = N * D, .scale = 0.35f, .mask = mask, .mask_bstride = S * T,
                         .bias = bias_mode ? bias : NULL, .bias_bstride = bias_mode == 2 ? N * S * T : S * T,
                         .bias_hstride = bias_mode == 2 ? S * T : 0};
        void *scratch = aligned_alloc(64, (td_kern_mha_scratch(S * (N / KV), T, D, D, env->threads) + 63) / 64 * 64);
        td_kern_mha_run(&a, scratch, env);
        free(scratch);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < N; h++) {
                int64_t g = h / (N / KV);
                for (int64_t i = 0; i < S * T; i++)
                    madd[i] = mask[b * S * T + i] + (bias_mode == 1   ? bias[b * S * T + i]
                                                     : bias_mode == 2 ? bias[(b * N + h) * S * T + i]
                                                                      : 0.0f);
                td_ref_attention(q + b * S * N * D + h * D, N * D, k + (b * KV + g) * ROWS * D, D,
                                 v + (b * KV + g) * ROWS * D, D, ref + b * S * N * D + h * D, N * D, S, T, D, D, 0.35f,
                                 madd, T, sc);
            }
        CHECK_MSG(max_rel_err(got, ref, (size_t)(B * S * N * D)) < 1e-5f, "grouped mha S=%lld bias=%d threads=%d",
                  (long long)S, bias_mode, env->threads);
        free(q), free(k), free(v), free(mask), free(bias), free(got), free(ref), free(madd), free(sc);
    }
}

int main(void) {
    srand(42);
    td_rt_env single = {1, NULL, false};
    test_gemm(&single);
    test_gemm_batched(&single);
    test_rows(&single);
    test_mha(&single);
    test_mha_grouped(&single);
    td_threadpool *pool = NULL;
    CHECK(td_threadpool_create(NULL, 2, &pool) == TD_OK);
    td_rt_env multi = {2, pool, false};
    test_gemm(&multi);
    test_gemm_batched(&multi);
    test_rows(&multi);
    test_mha(&multi);
    test_mha_grouped(&multi);
    td_threadpool_free(pool);
    return td_test_finish("test_kern_ref");
}
