/* Block-quantized GEMV (runtime/cpu/gemv_q.h): Q8_0 and Q4_0 against the
 * plain-loop reference on odd row counts (every 4-row remainder), 1 and 2
 * threads; hand-built blocks with known values (nibble order, sign, fp16 d);
 * quantize -> product close to the fp32 product; size checks. */
#include "core/dtype.h"
#include "core/threadpool.h"
#include "runtime/cpu/gemv_q.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x13198A2E03707344ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float uniform(void) { return (float)(next_u32() % 2000001) / 1000000.0f - 1.0f; }

static const char *name(td_qblock_type t) { return t == TD_QBLOCK_Q8_0 ? "Q8_0" : "Q4_0"; }

/* Random blocks: random bytes for the quants, a random finite fp16 d. */
static void random_matrix(td_qblock_type t, uint8_t *W, int64_t N, int64_t K) {
    size_t bb = td_qblock_bytes(t), nb = (size_t)(N * K / 32);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *blk = W + b * bb;
        uint16_t h = td_f32_to_f16(uniform() * 0.01f);
        memcpy(blk, &h, 2);
        for (size_t i = 2; i < bb; i++)
            blk[i] = (uint8_t)next_u32();
    }
}

static void test_vs_reference(td_threadpool *pool) {
    static const int64_t Ns[] = {1, 2, 3, 4, 5, 7, 63, 64, 65, 130};
    static const int64_t Ks[] = {32, 64, 96, 576, 1536};
    for (int ti = 0; ti < 2; ti++) {
        td_qblock_type t = (td_qblock_type)ti;
        int bad = 0, cases = 0;
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
                int64_t N = Ns[ni], K = Ks[ki];
                size_t bytes = 0;
                CHECK(td_qmatrix_bytes(NULL, t, N, K, &bytes) == TD_OK);
                uint8_t *W = malloc(bytes);
                float *x = malloc((size_t)K * sizeof(float)), *y = malloc((size_t)N * sizeof(float)),
                      *yr = malloc((size_t)N * sizeof(float));
                random_matrix(t, W, N, K);
                for (int64_t k = 0; k < K; k++)
                    x[k] = uniform();
                td_gemv_q((cases & 1) ? pool : NULL, t, W, N, K, x, y);
                td_gemv_q_ref(t, W, N, K, x, yr);
                /* fp32 sums in another order: relative to the sum of |terms| */
                for (int64_t n = 0; n < N; n++) {
                    double scale = 0.0;
                    for (int64_t k = 0; k < K; k++)
                        scale += fabs((double)x[k]) * 0.01 * 128;
                    if (!(fabs((double)y[n] - yr[n]) <= 2e-6 * scale + 1e-7)) {
                        bad++;
                        if (bad < 5)
                            fprintf(stderr, "%s N=%lld K=%lld row %lld: %g vs %g\n", name(t), (long long)N,
                                    (long long)K, (long long)n, y[n], yr[n]);
                    }
                }
                cases++;
                free(W);
                free(x);
                free(y);
                free(yr);
            }
        CHECK_MSG(bad == 0, "%s: %d rows differ from the reference", name(t), bad);
    }
}

/* One hand-made block per format: the layout, not the code, fixes the answer. */
static void test_known_blocks(void) {
    uint8_t q8[34], q4[18];
    uint16_t h = td_f32_to_f16(0.5f);
    memcpy(q8, &h, 2);
    memcpy(q4, &h, 2);
    for (int j = 0; j < 32; j++)
        q8[2 + j] = (uint8_t)(int8_t)(j - 16); /* w[j] = 0.5 * (j - 16) */
    for (int j = 0; j < 16; j++)
        q4[2 + j] = (uint8_t)(j | ((15 - j) << 4)); /* w[j] = 0.5 (j - 8), w[j+16] = 0.5 (7 - j) */
    float x[32], y8, y4, r8, r4;
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j + 1);
    double want8 = 0, want4 = 0;
    for (int j = 0; j < 32; j++) {
        want8 += 0.5 * (j - 16) * (j + 1);
        want4 += (j < 16 ? 0.5 * (j - 8) : 0.5 * (7 - (j - 16))) * (j + 1);
    }
    td_gemv_q(NULL, TD_QBLOCK_Q8_0, q8, 1, 32, x, &y8);
    td_gemv_q(NULL, TD_QBLOCK_Q4_0, q4, 1, 32, x, &y4);
    td_gemv_q_ref(TD_QBLOCK_Q8_0, q8, 1, 32, x, &r8);
    td_gemv_q_ref(TD_QBLOCK_Q4_0, q4, 1, 32, x, &r4);
    CHECK_MSG(y8 == (float)want8 && r8 == (float)want8, "Q8_0: %g / %g, want %g", y8, r8, want8);
    CHECK_MSG(y4 == (float)want4 && r4 == (float)want4, "Q4_0: %g / %g, want %g", y4, r4, want4);
}

/* Quantizing real-valued rows keeps the product within the format's error. */
static void test_quantize(td_threadpool *pool) {
    int64_t N = 67, K = 576;
    float *Wf = malloc((size_t)(N * K) * sizeof(float)), *x = malloc((size_t)K * sizeof(float));
    float *y = malloc((size_t)N * sizeof(float));
    for (int64_t i = 0; i < N * K; i++)
        Wf[i] = uniform() * 0.1f;
    for (int64_t k = 0; k < K; k++)
        x[k] = uniform();
    for (int ti = 0; ti < 2; ti++) {
        td_qblock_type t = (td_qblock_type)ti;
        size_t bytes = 0;
        CHECK(td_qmatrix_bytes(NULL, t, N, K, &bytes) == TD_OK);
        CHECK(bytes == (size_t)(N * K / 32) * (t == TD_QBLOCK_Q8_0 ? 34 : 18));
        uint8_t *W = malloc(bytes);
        for (int64_t n = 0; n < N; n++)
            td_qblock_quantize_row(t, Wf + n * K, K, W + (size_t)n * bytes / (size_t)N);
        td_gemv_q(pool, t, W, N, K, x, y);
        double e2 = 0, r2 = 0;
        for (int64_t n = 0; n < N; n++) {
            double exact = 0;
            for (int64_t k = 0; k < K; k++)
                exact += (double)Wf[n * K + k] * x[k];
            e2 += (y[n] - exact) * (y[n] - exact);
            r2 += exact * exact;
        }
        double rel = sqrt(e2 / r2), lim = t == TD_QBLOCK_Q8_0 ? 0.01 : 0.15;
        printf("%s: relative RMS error vs fp32 %.4f\n", name(t), rel);
        CHECK_MSG(rel < lim, "%s: relative RMS error %g >= %g", name(t), rel, lim);
        free(W);
    }
    free(Wf);
    free(x);
    free(y);
}

static void test_sizes(void) {
    td_ctx *ctx = td_ctx_new();
    size_t b = 0;
    CHECK(td_qmatrix_bytes(ctx, TD_QBLOCK_Q4_0, 3, 48, &b) == TD_ERR_SHAPE);
    CHECK(strstr(td_error_message(ctx), "multiple of 32") != NULL);
    CHECK(td_qmatrix_bytes(ctx, TD_QBLOCK_Q8_0, 3, 0, &b) == TD_ERR_SHAPE);
    CHECK(td_qmatrix_bytes(ctx, TD_QBLOCK_Q8_0, INT64_MAX / 2, 1 << 20, &b) == TD_ERR_OVERFLOW);
    td_ctx_free(ctx);
}

int main(void) {
    td_ctx *ctx = td_ctx_new();
    td_threadpool *pool = NULL;
    if (td_threadpool_create(ctx, 2, &pool) != TD_OK)
        return 1;
    test_vs_reference(pool);
    test_known_blocks();
    test_quantize(pool);
    test_sizes();
    td_threadpool_free(pool);
    td_ctx_free(ctx);
    return td_test_finish("test_gemv_q");
}
