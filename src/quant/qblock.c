/* Block quantization into MatMulNBits layout: from fp32 and from GGUF blocks (see qblock.h). */
#include "quant/qblock.h"

#include "core/checked.h"
#include "core/ctx.h"
#include "core/dtype.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void td_qblock_free(td_qblock *q) {
    if (!q)
        return;
    free(q->b), free(q->scales), free(q->zp_u8), free(q->zp_f32);
    memset(q, 0, sizeof *q);
}

static int64_t kb_of(int64_t K, int bs) { return (K + bs - 1) / bs; }

/* Allocates b (zeroed), scales and, as asked, zero points for (N, K, bits, bs). */
static td_status alloc_q(td_ctx *ctx, int64_t N, int64_t K, int bits, int bs, int zp_kind, td_qblock *q) {
    memset(q, 0, sizeof *q);
    int64_t kb = kb_of(K, bs), nkb, nb;
    size_t sb;
    if (N <= 0 || K <= 0 || !td_mul_i64(N, kb, &nkb) || !td_mul_i64(nkb, (int64_t)bs * bits / 8, &nb) ||
        !td_mul_size((size_t)nkb, sizeof(float), &sb))
        return td_fail(ctx, TD_ERR_OVERFLOW, "block-quantized weight of %lld x %lld is empty or too large",
                       (long long)N, (long long)K);
    q->N = N, q->K = K, q->bits = bits, q->block_size = bs;
    q->b = calloc((size_t)nb, 1);
    q->scales = malloc(sb);
    if (zp_kind == 1)
        q->zp_u8 = calloc((size_t)(N * ((kb * bits + 7) / 8)), 1);
    if (zp_kind == 2)
        q->zp_f32 = malloc(sb);
    if (!q->b || !q->scales || (zp_kind == 1 && !q->zp_u8) || (zp_kind == 2 && !q->zp_f32)) {
        td_qblock_free(q);
        return td_fail_oom(ctx, (size_t)nb + 2 * sb, "block-quantized weight");
    }
    return TD_OK;
}

static void put_code(uint8_t *blk, int bits, int64_t k, int code) {
    if (bits == 8)
        blk[k] = (uint8_t)code;
    else
        blk[k / 2] |= (uint8_t)((code & 15) << ((k & 1) * 4));
}

td_status td_qblock_quantize(td_ctx *ctx, const float *w, int64_t N, int64_t K, int bits, int block_size,
                             bool symmetric, td_qblock *out) {
    if ((bits != 4 && bits != 8) || block_size < 16 || block_size > 256 || (block_size & (block_size - 1)))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "block quantization needs bits 4 or 8 and a power-of-two block "
                       "size 16..256 (got bits %d, block %d)", bits, block_size);
    TD_TRY(alloc_q(ctx, N, K, bits, block_size, symmetric ? 0 : 1, out));
    int64_t kb = kb_of(K, block_size), blob = (int64_t)block_size * bits / 8, zrow = (kb * bits + 7) / 8;
    int qmax = (1 << bits) - 1, mid = 1 << (bits - 1);
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < kb; b++) {
            const float *x = w + n * K + b * block_size;
            int64_t len = K - b * block_size < block_size ? K - b * block_size : block_size;
            uint8_t *dst = out->b + (n * kb + b) * blob;
            float lo = 0.0f, hi = 0.0f;
            for (int64_t k = 0; k < len; k++)
                lo = fminf(lo, x[k]), hi = fmaxf(hi, x[k]);
            float scale, inv;
            int zp;
            if (symmetric) {
                scale = fmaxf(-lo, hi) / (float)(mid - 1);
                zp = mid;
            } else {
                scale = (hi - lo) / (float)qmax;
                zp = scale > 0.0f ? (int)nearbyintf(-lo / scale) : mid;
                zp = zp < 0 ? 0 : (zp > qmax ? qmax : zp);
                if (bits == 8)
                    out->zp_u8[n * zrow + b] = (uint8_t)zp;
                else
                    out->zp_u8[n * zrow + b / 2] |= (uint8_t)(zp << ((b & 1) * 4));
            }
            inv = scale > 0.0f ? 1.0f / scale : 0.0f;
            out->scales[n * kb + b] = scale;
            for (int64_t k = 0; k < block_size; k++) { /* padding past K gets the zero point: weight 0 */
                int code = k < len ? (int)nearbyintf(x[k] * inv) + zp : zp;
                put_code(dst, bits, k, code < 0 ? 0 : (code > qmax ? qmax : code));
            }
        }
    return TD_OK;
}

static float f16_at(const uint8_t *p) { return td_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* 6-bit scale and min of Q4_K sub-block j from its 12 packed bytes (GGUF's K-quant layout). */
static void k4_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

td_status td_qblock_from_gguf(td_ctx *ctx, int type, const uint8_t *data, size_t data_len, int64_t N, int64_t K,
                              td_qblock *out) {
    int per, bytes, bits, bs, zp_kind;
    switch (type) {
    case TD_QB_GGML_Q4_0: per = 32, bytes = 18, bits = 4, bs = 32, zp_kind = 0; break;
    case TD_QB_GGML_Q4_1: per = 32, bytes = 20, bits = 4, bs = 32, zp_kind = 2; break;
    case TD_QB_GGML_Q8_0: per = 32, bytes = 34, bits = 8, bs = 32, zp_kind = 0; break;
    case TD_QB_GGML_Q4_K: per = 256, bytes = 144, bits = 4, bs = 32, zp_kind = 2; break;
    case TD_QB_GGML_Q6_K: per = 256, bytes = 210, bits = 8, bs = 16, zp_kind = 0; break;
    default:
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "GGUF tensor type %d has no MatMulNBits re-packing (Q4_0, Q4_1, "
                       "Q8_0, Q4_K, Q6_K do); dequantize it instead", type);
    }
    int64_t nblk;
    size_t need;
    if (N <= 0 || K <= 0 || K % per || !td_mul_i64(N, K / per, &nblk) || !td_mul_size((size_t)nblk, (size_t)bytes, &need))
        return td_fail(ctx, TD_ERR_FORMAT, "GGUF block tensor of %lld x %lld: rows must be whole blocks of %d",
                       (long long)N, (long long)K, per);
    if (data_len < need)
        return td_fail(ctx, TD_ERR_FORMAT, "GGUF block tensor of %lld x %lld needs %zu bytes, has %zu", (long long)N,
                       (long long)K, need, data_len);
    TD_TRY(alloc_q(ctx, N, K, bits, bs, zp_kind, out));
    int64_t kb = K / bs, blob = (int64_t)bs * bits / 8;
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < K / per; g++) {
            const uint8_t *src = data + (size_t)(n * (K / per) + g) * (size_t)bytes;
            int64_t b0 = g * per / bs; /* first MatMulNBits block of this GGUF block */
            uint8_t *dst = out->b + (n * kb + b0) * blob;
            float *sc = out->scales + n * kb + b0, *zf = out->zp_f32 ? out->zp_f32 + n * kb + b0 : NULL;
            if (type == TD_QB_GGML_Q4_0 || type == TD_QB_GGML_Q4_1) {
                const uint8_t *qs = src + (type == TD_QB_GGML_Q4_0 ? 2 : 4);
                float d = f16_at(src);
                sc[0] = d;
                if (type == TD_QB_GGML_Q4_1) {
                    float m = f16_at(src + 2);
                    if (d == 0.0f) { /* every weight is m: code 1, scale m, zero point 0 */
                        sc[0] = m, zf[0] = 0.0f;
                        for (int k = 0; k < 32; k++)
                            put_code(dst, 4, k, 1);
                        continue;
                    }
                    zf[0] = -m / d;
                }
                for (int i = 0; i < 16; i++) {
                    put_code(dst, 4, i, qs[i] & 15);
                    put_code(dst, 4, i + 16, qs[i] >> 4);
                }
            } else if (type == TD_QB_GGML_Q8_0) {
                sc[0] = f16_at(src);
                for (int k = 0; k < 32; k++)
                    dst[k] = (uint8_t)((int)(int8_t)src[2 + k] + 128);
            } else if (type == TD_QB_GGML_Q4_K) {
                float d = f16_at(src), dmin = f16_at(src + 2);
                const uint8_t *scales = src + 4, *q = src + 16;
                for (int c = 0; c < 4; c++) { /* 64 values: low nibbles of 32 bytes, then their high nibbles */
                    for (int h = 0; h < 2; h++) {
                        int j = 2 * c + h, s6, m6;
                        k4_scale_min(j, scales, &s6, &m6);
                        float s = d * (float)s6, off = dmin * (float)m6; /* x = s q - off */
                        uint8_t *blk = dst + j * blob;
                        for (int l = 0; l < 32; l++)
                            put_code(blk, 4, l, h ? q[32 * c + l] >> 4 : q[32 * c + l] & 15);
                        if (s == 0.0f) { /* every weight is -off */
                            memset(blk, 0, (size_t)blob);
                            for (int l = 0; l < 32; l++)
                                put_code(blk, 4, l, 1);
                            sc[j] = -off, zf[j] = 0.0f;
                        } else
                            sc[j] = s, zf[j] = off / s;
                    }
                }
            } else { /* Q6_K: ql[128], qh[64], int8 scales[16], f16 d */
                const uint8_t *ql = src, *qh = src + 128;
                const int8_t *scales = (const int8_t *)(src + 192);
                float d = f16_at(src + 208);
                for (int half = 0; half < 2; half++) { /* 128 values each */
                    const uint8_t *l0 = ql + 64 * half, *h0 = qh + 32 * half;
                    for (int l = 0; l < 32; l++) {
                        int q[4] = {(l0[l] & 15) | ((h0[l] & 3) << 4), (l0[l + 32] & 15) | (((h0[l] >> 2) & 3) << 4),
                                    (l0[l] >> 4) | (((h0[l] >> 4) & 3) << 4), (l0[l + 32] >> 4) | (((h0[l] >> 6) & 3) << 4)};
                        for (int r = 0; r < 4; r++) {
                            int64_t e = 128 * half + 32 * r + l; /* element within the 256 */
                            dst[e] = (uint8_t)(q[r] - 32 + 128);
                        }
                    }
                }
                for (int j = 0; j < 16; j++)
                    sc[j] = d * (float)scales[j];
            }
        }
    return TD_OK;
}
