/* ggml block formats -> float32: plain reference loops, one block at a time,
 * following the layouts of ggml's quantization (ggml-common.h / ggml-quants.c).
 * Every block starts with its fp16 scale(s) except Q6_K, which ends with it.
 *
 *   Q8_0 (32 values, 34 bytes):  f16 d, i8 q[32]                  x = d * q
 *   Q4_0 (32 values, 18 bytes):  f16 d, u8 qs[16]                 x = d * (nibble - 8)
 *   Q4_1 (32 values, 20 bytes):  f16 d, f16 m, u8 qs[16]          x = d * nibble + m
 *        values 0..15 are the low nibbles of qs[0..15], 16..31 the high nibbles
 *   Q4_K (256 values, 144 bytes): f16 d, f16 dmin, u8 scales[12], u8 qs[128]
 *        8 sub-blocks of 32 with 6-bit scale sc and min m: x = d*sc * nibble - dmin*m
 *   Q6_K (256 values, 210 bytes): u8 ql[128], u8 qh[64], i8 scales[16], f16 d
 *        16 sub-blocks of 16 with an 8-bit scale: x = d * scale * (q6 - 32) */
#include "core/dtype.h"
#include "gguf/gguf.h"

#include <string.h>

static float f16(const uint8_t *p) { return td_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void q8_0(const uint8_t *b, float *y) {
    float d = f16(b);
    for (int i = 0; i < 32; i++)
        y[i] = d * (float)(int8_t)b[2 + i];
}

static void q4_0(const uint8_t *b, float *y) {
    float d = f16(b);
    const uint8_t *qs = b + 2;
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)((qs[i] & 0x0F) - 8);
        y[i + 16] = d * (float)((qs[i] >> 4) - 8);
    }
}

static void q4_1(const uint8_t *b, float *y) {
    float d = f16(b), m = f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)(qs[i] & 0x0F) + m;
        y[i + 16] = d * (float)(qs[i] >> 4) + m;
    }
}

/* 6-bit scale and min of sub-block j packed in 12 bytes (ggml's get_scale_min_k4) */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void q4_k(const uint8_t *b, float *y) {
    float d = f16(b), dmin = f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0; j < 256; j += 64) {
        int is = j / 32;
        uint8_t sc, m;
        scale_min_k4(is, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            y[j + l] = d1 * (float)(q[l] & 0x0F) - m1;
            y[j + 32 + l] = d2 * (float)(q[l] >> 4) - m2;
        }
        q += 32;
    }
}

static void q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16(b + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[n + l] = d * (float)sc[is + 0] * (float)q1;
            y[n + l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[n + l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[n + l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

void td_ggml_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    switch (type) {
    case TD_GGML_F32: memcpy(dst, s, (size_t)n * sizeof(float)); return;
    case TD_GGML_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = f16(s + 2 * i);
        return;
    case TD_GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)(s[2 * i] | s[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return;
    case TD_GGML_Q8_0:
        for (int64_t i = 0; i < n / 32; i++)
            q8_0(s + 34 * i, dst + 32 * i);
        return;
    case TD_GGML_Q4_0:
        for (int64_t i = 0; i < n / 32; i++)
            q4_0(s + 18 * i, dst + 32 * i);
        return;
    case TD_GGML_Q4_1:
        for (int64_t i = 0; i < n / 32; i++)
            q4_1(s + 20 * i, dst + 32 * i);
        return;
    case TD_GGML_Q4_K:
        for (int64_t i = 0; i < n / 256; i++)
            q4_k(s + 144 * i, dst + 256 * i);
        return;
    case TD_GGML_Q6_K:
        for (int64_t i = 0; i < n / 256; i++)
            q6_k(s + 210 * i, dst + 256 * i);
        return;
    default: return;
    }
}
