/* Block quantizers into MatMulNBits layout. fp32 -> blocks: every weight within half a step of the
 * original (symmetric and asymmetric, 4 and 8 bits, partial last blocks). GGUF -> blocks: random Q4_0,
 * Q4_1, Q8_0, Q4_K, Q6_K tensors dequantized here from the GGUF block formulas, against the MatMulNBits
 * reference's weights (read back through one-hot activations): identical for Q4_0, Q8_0, Q6_K, within
 * fp32 rounding for Q4_1, Q4_K. Bad sizes are refused. */
#include "core/dtype.h"
#include "quant/qblock.h"
#include "runtime/cpu/qnbits.h"
#include "test.h"

#include <math.h>
#include <string.h>

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 13);
}

/* W' (N, K) as MatMulNBits computes it: one-hot rows of A. */
static float *weights_of(const td_qblock *q) {
    int64_t N = q->N, K = q->K;
    float *a = calloc((size_t)(K * K), 4), *y = malloc((size_t)(K * N) * 4), *w = malloc((size_t)(N * K) * 4);
    for (int64_t k = 0; k < K; k++)
        a[k * K + k] = 1.0f;
    td_qnbits_raw raw = {K, N, q->bits, q->block_size, q->b, q->scales, q->zp_u8, q->zp_f32};
    td_qnbits_ref(&raw, a, K, NULL, y);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++)
            w[n * K + k] = y[k * N + n];
    free(a), free(y);
    return w;
}

static void fp32_cases(void) {
    for (int it = 0; it < 24; it++) {
        int bits = it % 2 ? 8 : 4, bs = 16 << (it % 5);
        bool sym = (it / 2) % 2;
        int64_t N = 1 + rnd() % 9, K = 1 + rnd() % 300;
        float *w = malloc((size_t)(N * K) * 4);
        for (int64_t i = 0; i < N * K; i++)
            w[i] = ((float)(rnd() % 20001) / 10000.0f - 1.0f) + (sym ? 0.0f : 0.7f);
        td_qblock q;
        CHECK(td_qblock_quantize(NULL, w, N, K, bits, bs, sym, &q) == TD_OK);
        CHECK((q.zp_u8 != NULL) == !sym);
        float *got = weights_of(&q);
        double worst = 0;
        int64_t kb = (K + bs - 1) / bs;
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++) {
                double step = q.scales[n * kb + k / bs];
                worst = fmax(worst, fabs(got[n * K + k] - w[n * K + k]) / (step > 0 ? step : 1));
            }
        CHECK_MSG(worst <= 0.5 + 1e-3, "bits %d block %d %s: error %.4f steps", bits, bs, sym ? "sym" : "asym", worst);
        td_qblock_free(&q), free(got), free(w);
    }
    td_qblock q;
    CHECK(td_qblock_quantize(NULL, (float[16]){0}, 1, 16, 3, 16, true, &q) != TD_OK);
    CHECK(td_qblock_quantize(NULL, (float[16]){0}, 1, 16, 4, 24, true, &q) != TD_OK);
}

static void put_f16(uint8_t *p, float v) {
    uint16_t h = td_f32_to_f16(v);
    p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
}
static float get_f16(const uint8_t *p) { return td_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Straight from the GGUF block definitions: block bytes -> values. */
static void gguf_dequant(int type, const uint8_t *b, float *y) {
    if (type == TD_QB_GGML_Q4_0 || type == TD_QB_GGML_Q4_1) {
        float d = get_f16(b), m = type == TD_QB_GGML_Q4_1 ? get_f16(b + 2) : 0.0f;
        const uint8_t *qs = b + (type == TD_QB_GGML_Q4_1 ? 4 : 2);
        for (int i = 0; i < 16; i++) {
            int lo = qs[i] & 15, hi = qs[i] >> 4;
            y[i] = type == TD_QB_GGML_Q4_1 ? d * lo + m : d * (lo - 8);
            y[i + 16] = type == TD_QB_GGML_Q4_1 ? d * hi + m : d * (hi - 8);
        }
    } else if (type == TD_QB_GGML_Q8_0) {
        for (int i = 0; i < 32; i++)
            y[i] = get_f16(b) * (float)(int8_t)b[2 + i];
    } else if (type == TD_QB_GGML_Q4_K) {
        float d = get_f16(b), dmin = get_f16(b + 2);
        const uint8_t *s = b + 4, *q = b + 16;
        for (int j = 0; j < 8; j++) {
            int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
            int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            for (int l = 0; l < 32; l++) {
                int nib = j % 2 ? q[32 * (j / 2) + l] >> 4 : q[32 * (j / 2) + l] & 15;
                y[32 * j + l] = d * sc * nib - dmin * m;
            }
        }
    } else { /* Q6_K */
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = get_f16(b + 208);
        for (int e = 0; e < 256; e++) {
            int half = e / 128, r = (e % 128) / 32, l = e % 32;
            int low = ql[64 * half + l + 32 * (r % 2)];
            low = r < 2 ? low & 15 : low >> 4;
            int high = (qh[32 * half + l] >> (2 * r)) & 3;
            y[e] = d * sc[e / 16] * (float)((low | high << 4) - 32);
        }
    }
}

static void gguf_cases(void) {
    const int types[5] = {TD_QB_GGML_Q4_0, TD_QB_GGML_Q4_1, TD_QB_GGML_Q8_0, TD_QB_GGML_Q4_K, TD_QB_GGML_Q6_K};
    const int per[5] = {32, 32, 32, 256, 256}, bytes[5] = {18, 20, 34, 144, 210};
    for (int t = 0; t < 5; t++) {
        int64_t N = 3, K = per[t] * 2, nblk = N * K / per[t];
        uint8_t *data = malloc((size_t)(nblk * bytes[t]));
        for (int64_t i = 0; i < nblk * bytes[t]; i++)
            data[i] = (uint8_t)rnd();
        for (int64_t i = 0; i < nblk; i++) { /* finite fp16 scales; one zero scale to cover that case */
            uint8_t *blk = data + i * bytes[t];
            int at = types[t] == TD_QB_GGML_Q6_K ? 208 : 0;
            put_f16(blk + at, i == 1 ? 0.0f : (float)((int)(rnd() % 2001) - 1000) * 1e-4f);
            if (types[t] == TD_QB_GGML_Q4_1 || types[t] == TD_QB_GGML_Q4_K)
                put_f16(blk + 2, (float)((int)(rnd() % 2001) - 1000) * 1e-4f);
        }
        td_qblock q;
        CHECK(td_qblock_from_gguf(NULL, types[t], data, (size_t)(nblk * bytes[t]), N, K, &q) == TD_OK);
        float *got = weights_of(&q), *want = malloc((size_t)(N * K) * 4);
        for (int64_t i = 0; i < nblk; i++)
            gguf_dequant(types[t], data + i * bytes[t], want + i * per[t]);
        bool exact = types[t] != TD_QB_GGML_Q4_1 && types[t] != TD_QB_GGML_Q4_K;
        double worst = 0;
        for (int64_t i = 0; i < N * K; i++)
            worst = fmax(worst, fabs(got[i] - want[i]) / fmax(fabs(want[i]), 1e-3));
        CHECK_MSG(exact ? worst == 0 : worst < 1e-5, "GGUF type %d: relative error %g", types[t], worst);
        CHECK(td_qblock_from_gguf(NULL, types[t], data, (size_t)(nblk * bytes[t]) - 1, N, K, &q) != TD_OK);
        CHECK(td_qblock_from_gguf(NULL, types[t], data, (size_t)(nblk * bytes[t]), N, K + 1, &q) != TD_OK);
        td_qblock_free(&q), free(got), free(want), free(data);
    }
    td_qblock q;
    CHECK(td_qblock_from_gguf(NULL, 13 /* Q5_K */, (uint8_t[176]){0}, 176, 1, 256, &q) != TD_OK);
}

int main(void) {
    fp32_cases();
    gguf_cases();
    return td_test_finish("test_qblock");
}
