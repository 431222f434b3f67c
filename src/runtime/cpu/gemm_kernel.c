/* GEMM microkernels. AVX-512: an 8 x 48 tile held in 24 zmm accumulators; per k
 * step three B vectors are loaded (converted from fp16/bf16 when the weights are
 * stored that way) and each of the 8 A values is broadcast into three FMAs.
 * Without AVX-512 a portable scalar tile computes the same thing. With AVX2 +
 * FMA but no AVX-512, gemm_kernel_avx2.c provides these functions instead. */
#include "runtime/cpu/gemm_kernel.h"

#include "core/dtype.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/vecmath.h"

#ifndef TD_GEMM_AVX2

enum { B_F32, B_F16, B_BF16 };

#ifdef __AVX512F__
#include <immintrin.h>

#define KINLINE static inline __attribute__((always_inline))

KINLINE __m512 load_b(const int bt, const void *B, size_t idx) {
    if (bt == B_F32)
        return _mm512_loadu_ps((const float *)B + idx);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)B + idx));
    if (bt == B_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

KINLINE __m512 apply_act(int act, __m512 v) {
    switch (act) {
    case TD_GEMM_ACT_RELU:
        return _mm512_max_ps(v, _mm512_setzero_ps());
    case TD_GEMM_ACT_GELU_ERF:
        return td_v16_gelu_erf(v);
    case TD_GEMM_ACT_GELU_TANH:
        return td_v16_gelu_tanh(v);
    default:
        return v;
    }
}

KINLINE void tile(const int MR, const int NV, const int bt, size_t nr, size_t kc, const float *A, size_t lda, const void *B,
                  float *C, size_t ldc, bool first, bool last, const td_gemm_tile_epilogue *ep) {
    /* NV: 16-float vectors of the tile that hold columns (nr <= 16 NV): the
     * others are never loaded, multiplied or stored */
    __m512 c[TD_GEMM_MR][3];
    __mmask16 m[3];
    for (int j = 0; j < NV; j++)
        m[j] = td_v16_mask(nr > (size_t)j * 16 ? nr - (size_t)j * 16 : 0);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
        for (int j = 0; j < NV; j++)
            c[i][j] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m[j], C + (size_t)i * ldc + 16 * j);
    const float *a = A;
    size_t b = 0;
    for (size_t k = 0; k < kc; k++, a++, b += TD_GEMM_NR) {
        __m512 b0 = load_b(bt, B, b);
        __m512 b1 = NV > 1 ? load_b(bt, B, b + 16) : b0;
        __m512 b2 = NV > 2 ? load_b(bt, B, b + 32) : b0;
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(a[(size_t)i * lda]);
            c[i][0] = _mm512_fmadd_ps(av, b0, c[i][0]);
            if (NV > 1)
                c[i][1] = _mm512_fmadd_ps(av, b1, c[i][1]);
            if (NV > 2)
                c[i][2] = _mm512_fmadd_ps(av, b2, c[i][2]);
        }
    }
    if (last) {
        __m512 scale = _mm512_set1_ps(ep->scale);
        __m512 bias[3];
        for (int j = 0; j < NV; j++)
            bias[j] = ep->bias ? _mm512_maskz_loadu_ps(m[j], ep->bias + 16 * j) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
            for (int j = 0; j < NV; j++) {
                __m512 v = _mm512_fmadd_ps(c[i][j], scale, bias[j]);
                v = apply_act(ep->act, v);
                if (ep->residual)
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[j], ep->residual + (size_t)i * ep->ldr + 16 * j));
                c[i][j] = v;
            }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
        for (int j = 0; j < NV; j++)
            _mm512_mask_storeu_ps(C + (size_t)i * ldc + 16 * j, m[j], c[i][j]);
}

/* Full-height tiles get the vector count nr needs (1..3) as a compile-time constant;
 * the rare short tiles (M tails) always use 3 (keeps the instantiations, and the
 * compile time, down). */
#define TILE_NV(MRC, bt)                                                                      \
    switch ((nr + 15) / 16) {                                                                 \
    case 1: tile(MRC, 1, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;              \
    case 2: tile(MRC, 2, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;              \
    default: tile(MRC, 3, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;             \
    }

#define DEFINE_KERNEL(name, bt)                                                                                 \
    void name(size_t mr, size_t nr, size_t kc, const float *A, size_t lda, const void *B, float *C, size_t ldc, \
              bool first, bool last, const td_gemm_tile_epilogue *ep) {                                         \
        if (nr == 0)                                                                                            \
            return;                                                                                             \
        switch (mr) {                                                                                           \
        case 8: TILE_NV(8, bt) break;                                                                           \
        case 7: tile(7, 3, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;                              \
        case 6: tile(6, 3, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;                              \
        case 5: tile(5, 3, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;                              \
        case 4: tile(4, 3, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;                              \
        case 3: tile(3, 3, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;                              \
        case 2: tile(2, 3, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;                              \
        case 1: tile(1, 3, bt, nr, kc, A, lda, B, C, ldc, first, last, ep); break;                              \
        default: break;                                                                                         \
        }                                                                                                       \
    }

#else /* portable fallback */

static float load_b(int bt, const void *B, size_t idx) {
    if (bt == B_F32)
        return ((const float *)B)[idx];
    uint16_t h = ((const uint16_t *)B)[idx];
    return bt == B_F16 ? td_f16_to_f32(h) : td_bf16_to_f32(h);
}

static float apply_act(int act, float v) {
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

static void tile(int bt, size_t mr, size_t nr, size_t kc, const float *A, size_t lda, const void *B, float *C,
                 size_t ldc, bool first, bool last, const td_gemm_tile_epilogue *ep) {
    for (size_t i = 0; i < mr; i++) {
        float acc[TD_GEMM_NR];
        for (size_t j = 0; j < TD_GEMM_NR; j++)
            acc[j] = first || j >= nr ? 0.0f : C[i * ldc + j];
        for (size_t k = 0; k < kc; k++) {
            float a = A[i * lda + k];
            for (size_t j = 0; j < TD_GEMM_NR; j++)
                acc[j] += a * load_b(bt, B, k * TD_GEMM_NR + j);
        }
        for (size_t j = 0; j < nr; j++) {
            float v = acc[j];
            if (last) {
                v = v * ep->scale + (ep->bias ? ep->bias[j] : 0.0f);
                v = apply_act(ep->act, v);
                if (ep->residual)
                    v += ep->residual[i * ep->ldr + j];
            }
            C[i * ldc + j] = v;
        }
    }
}

#define DEFINE_KERNEL(name, bt)                                                                                 \
    void name(size_t mr, size_t nr, size_t kc, const float *A, size_t lda, const void *B, float *C, size_t ldc, \
              bool first, bool last, const td_gemm_tile_epilogue *ep) {                                         \
        tile(bt, mr, nr, kc, A, lda, B, C, ldc, first, last, ep);                                               \
    }
#endif

DEFINE_KERNEL(td_gemm_kernel_f32, B_F32)
DEFINE_KERNEL(td_gemm_kernel_f16, B_F16)
DEFINE_KERNEL(td_gemm_kernel_bf16, B_BF16)
#endif /* !TD_GEMM_AVX2 */
