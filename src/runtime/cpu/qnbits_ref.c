/* MatMulNBits: weight preparation and the scalar reference kernels (see qnbits.h). */
#include "runtime/cpu/qnbits.h"

#include "core/checked.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float td_qnbits_zp(const td_qnbits_raw *w, int64_t n, int64_t blk) {
    int64_t kb = td_qnbits_kb(w->K, w->block_size);
    if (w->zp_f32)
        return w->zp_f32[n * kb + blk];
    if (!w->zp_u8)
        return (float)(1 << (w->bits - 1));
    int64_t row = (kb * w->bits + 7) / 8; /* zero points are packed per row of B, rows padded to bytes */
    if (w->bits == 8)
        return (float)w->zp_u8[n * row + blk];
    uint8_t byte = w->zp_u8[n * row + blk / 2];
    return (float)((blk & 1) ? byte >> 4 : byte & 15);
}

static inline int code_at(const uint8_t *row, int bits, int64_t k) {
    if (bits == 8)
        return row[k];
    uint8_t byte = row[k / 2];
    return (k & 1) ? byte >> 4 : byte & 15;
}

td_status td_qnbits_prepare(td_ctx *ctx, const td_qnbits_raw *raw, td_qnbits_w **out) {
    *out = NULL;
    int64_t kb = td_qnbits_kb(raw->K, raw->block_size), nkb;
    size_t bytes;
    /* scale and scale_zp, each followed by 8 zero floats: vector kernels load 8 scales from a row's block */
    if (!td_mul_i64(raw->N, kb, &nkb) || !td_mul_size((size_t)nkb + 8, 2 * sizeof(float), &bytes) ||
        !td_add_size(bytes, sizeof(td_qnbits_w) + 64, &bytes))
        return td_fail(ctx, TD_ERR_OVERFLOW, "MatMulNBits weight of N=%lld, K=%lld is too large", (long long)raw->N,
                       (long long)raw->K);
    td_qnbits_w *w = malloc(bytes);
    if (!w)
        return td_fail_oom(ctx, bytes, "MatMulNBits scales");
    w->K = raw->K;
    w->N = raw->N;
    w->kb = kb;
    w->bits = raw->bits;
    w->block_size = raw->block_size;
    w->blob = (int64_t)raw->block_size * raw->bits / 8;
    w->row_bytes = kb * w->blob;
    w->b = raw->b;
    w->scale = (float *)(((uintptr_t)(w + 1) + 63) & ~(uintptr_t)63);
    w->scale_zp = w->scale + nkb + 8;
    memset(w->scale + nkb, 0, 8 * sizeof(float));
    memset(w->scale_zp + nkb, 0, 8 * sizeof(float));
    for (int64_t n = 0; n < raw->N; n++)
        for (int64_t blk = 0; blk < kb; blk++) {
            float s = raw->scales[n * kb + blk];
            w->scale[n * kb + blk] = s;
            w->scale_zp[n * kb + blk] = s * td_qnbits_zp(raw, n, blk);
        }
    *out = w;
    return TD_OK;
}

void td_qnbits_ref(const td_qnbits_raw *w, const float *A, int64_t M, const float *bias, float *Y) {
    int64_t kb = td_qnbits_kb(w->K, w->block_size), blob = (int64_t)w->block_size * w->bits / 8;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < w->N; n++) {
            const uint8_t *row = w->b + n * kb * blob;
            float acc = 0.0f;
            for (int64_t k = 0; k < w->K; k++) {
                int64_t blk = k / w->block_size;
                float wk = ((float)code_at(row, w->bits, k) - td_qnbits_zp(w, n, blk)) * w->scales[n * kb + blk];
                acc += A[m * w->K + k] * wk;
            }
            Y[m * w->N + n] = acc + (bias ? bias[n] : 0.0f);
        }
}

void td_qnbits_quant_row(const float *a, int64_t K, int block_size, int8_t *a8, float *da, int32_t *asum) {
    int64_t kb = td_qnbits_kb(K, block_size);
    for (int64_t blk = 0; blk < kb; blk++) {
        int64_t k0 = blk * block_size, k1 = k0 + block_size < K ? k0 + block_size : K;
        float amax = 0.0f;
        for (int64_t k = k0; k < k1; k++)
            amax = fmaxf(amax, fabsf(a[k]));
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int64_t k = k0; k < k0 + block_size; k++) {
            int q = k < k1 ? (int)nearbyintf(a[k] * id) : 0;
            q = q > 127 ? 127 : (q < -127 ? -127 : q);
            a8[k] = (int8_t)q;
            sum += q;
        }
        da[blk] = d;
        asum[blk] = sum;
    }
}

void td_qnbits_i8_ref(const td_qnbits_w *w, const float *A, int64_t M, const float *bias, float *Y, void *scratch) {
    int8_t *a8 = scratch;                                           /* (kb * block_size) */
    float *da = (float *)(a8 + (w->kb * w->block_size + 63) / 64 * 64); /* (kb) */
    int32_t *asum = (int32_t *)(da + w->kb);                        /* (kb) */
    for (int64_t m = 0; m < M; m++) {
        td_qnbits_quant_row(A + m * w->K, w->K, w->block_size, a8, da, asum);
        for (int64_t n = 0; n < w->N; n++) {
            const uint8_t *row = w->b + n * w->row_bytes;
            float acc = 0.0f;
            for (int64_t blk = 0; blk < w->kb; blk++) {
                int32_t dot = 0;
                for (int64_t k = blk * w->block_size; k < (blk + 1) * w->block_size; k++)
                    dot += code_at(row, w->bits, k) * a8[k];
                /* sum_k (q - z) s a ~= da (s dot - s z asum) */
                acc += da[blk] * ((float)dot * w->scale[n * w->kb + blk] -
                                  w->scale_zp[n * w->kb + blk] * (float)asum[blk]);
            }
            Y[m * w->N + n] = acc + (bias ? bias[n] : 0.0f);
        }
    }
}

size_t td_qnbits_i8_ref_scratch(const td_qnbits_w *w) {
    return (size_t)(w->kb * w->block_size + 63) / 64 * 64 + (size_t)w->kb * 8 + 64;
}
