/* Reference for the int8 GEMM (gemm_int8.h): the definition written as plain
 * loops over unpacked weights, no vector code and no packing, so a packing or
 * tiling mistake in gemm_int8.c cannot hide in both. */
#include "runtime/cpu/gemm_int8.h"

#include "runtime/cpu/vecmath.h"

#include <math.h>
#include <stdlib.h>

static float act_ref(int act, float v) {
    switch (act) {
    case TD_GEMM_ACT_RELU:
        return v > 0.0f ? v : 0.0f;
    case TD_GEMM_ACT_GELU_ERF:
        return td_s_gelu_erf(v);
    case TD_GEMM_ACT_GELU_TANH:
        return td_s_gelu_tanh(v);
    default:
        return v;
    }
}

void td_gemm_i8_ref(size_t M, size_t N, size_t K, const float *A, size_t lda, const int8_t *bq, const float *scale,
                    float *C, size_t ldc, const td_gemm_epilogue *ep, int levels) {
    float Q = (float)levels;
    uint8_t *q = malloc(K ? K : 1);
    if (!q) { /* no memory: NaN everywhere, which no comparison accepts */
        for (size_t i = 0; i < M; i++)
            for (size_t n = 0; n < N; n++)
                C[i * ldc + n] = NAN;
        return;
    }
    for (size_t i = 0; i < M; i++) {
        const float *a = A + i * lda;
        /* the row's range, always including 0 */
        float lo = 0.0f, hi = 0.0f;
        for (size_t k = 0; k < K; k++) {
            if (a[k] < lo)
                lo = a[k];
            if (a[k] > hi)
                hi = a[k];
        }
        float s = (hi - lo) / Q;
        if (!(s > 0.0f))
            s = 1.0f;
        float zf = nearbyintf(-lo / s);
        int32_t zp = zf < 0.0f ? 0 : zf > Q ? levels : (int32_t)zf;
        for (size_t k = 0; k < K; k++) {
            float r = nearbyintf(a[k] / s) + (float)zp;
            q[k] = (uint8_t)(r < 0.0f ? 0 : r > Q ? levels : (int)r);
        }
        for (size_t n = 0; n < N; n++) {
            /* sum (q - zp) * b, exactly, as sum q*b - zp * sum b */
            int32_t acc = 0, colsum = 0;
            for (size_t k = 0; k < K; k++) {
                acc += (int32_t)q[k] * (int32_t)bq[k * N + n];
                colsum += bq[k * N + n];
            }
            acc -= zp * colsum;
            float bias = ep && ep->bias ? ep->bias[n] : 0.0f;
            float y = fmaf((float)acc, s * scale[n], bias);
            y = act_ref(ep ? (int)ep->act : 0, y);
            if (ep && ep->residual)
                y += ep->residual[i * ep->ldr + n];
            C[i * ldc + n] = y;
        }
    }
    free(q);
}
