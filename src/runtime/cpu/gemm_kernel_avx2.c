/* GEMM microkernels for AVX2 + FMA hosts without AVX-512 (gemm.h sets the
 * tile to 6 x 16 there: TD_GEMM_AVX2). The 6 x 16 tile lives in 12 ymm
 * accumulators; per k step two B vectors are loaded (converted from fp16/bf16
 * when the weights are stored that way) and each of the 6 A values is
 * broadcast into two FMAs, leaving 2 of the 16 registers spare. The epilogue
 * (scale, bias, activation, residual) runs on the registers of the last K
 * block. Column tails (nr < 16) use masked loads/stores of C, bias and
 * residual; B panels are zero padded, so B is always read whole. The portable
 * scalar tile in gemm_kernel.c is the reference these are tested against
 * (tests/unit/test_gemm*.c compare with a naive triple loop). */
#include "runtime/cpu/gemm.h"

#ifdef TD_GEMM_AVX2
#include "runtime/cpu/gemm_kernel.h"
#include "runtime/cpu/vecmath.h"

#include <immintrin.h>

#define KINLINE static inline __attribute__((always_inline))

enum { B_F32, B_F16, B_BF16 };

KINLINE __m256 load_b(const int bt, const void *B, size_t idx) {
    if (bt == B_F32)
        return _mm256_loadu_ps((const float *)B + idx);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)B + idx));
    if (bt == B_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

KINLINE __m256 apply_act(int act, __m256 v) {
    switch (act) {
    case TD_GEMM_ACT_RELU:
        return _mm256_max_ps(v, _mm256_setzero_ps());
    case TD_GEMM_ACT_GELU_ERF:
        return td_v8_gelu_erf(v);
    case TD_GEMM_ACT_GELU_TANH:
        return td_v8_gelu_tanh(v);
    default:
        return v;
    }
}

/* Masked (column tail) or plain load/store of 8 floats. */
KINLINE __m256 load8(const bool masked, const float *p, __m256i m) {
    return masked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
}
KINLINE void store8(const bool masked, float *p, __m256i m, __m256 v) {
    if (masked)
        _mm256_maskstore_ps(p, m, v);
    else
        _mm256_storeu_ps(p, v);
}

/* MR rows (1..6) x NV 8-float vectors (1..2) of columns; masked: nr < 8 NV. */
KINLINE void tile(const int MR, const int NV, const bool masked, const int bt, size_t nr, size_t kc, const float *A,
                  size_t lda, const void *B, float *C, size_t ldc, bool first, bool last,
                  const td_gemm_tile_epilogue *ep) {
    __m256 c[TD_GEMM_MR][2];
    __m256i m[2];
    for (int j = 0; j < NV; j++)
        m[j] = td_v8_mask(nr > (size_t)j * 8 ? nr - (size_t)j * 8 : 0);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 2
        for (int j = 0; j < NV; j++)
            c[i][j] = first ? _mm256_setzero_ps() : load8(masked, C + (size_t)i * ldc + 8 * j, m[j]);
    const float *a = A;
    size_t b = 0;
    for (size_t k = 0; k < kc; k++, a++, b += TD_GEMM_NR) {
        __m256 b0 = load_b(bt, B, b);
        __m256 b1 = NV > 1 ? load_b(bt, B, b + 8) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m256 av = _mm256_broadcast_ss(a + (size_t)i * lda);
            c[i][0] = _mm256_fmadd_ps(av, b0, c[i][0]);
            if (NV > 1)
                c[i][1] = _mm256_fmadd_ps(av, b1, c[i][1]);
        }
    }
    if (last) {
        __m256 scale = _mm256_set1_ps(ep->scale);
        __m256 bias[2];
        for (int j = 0; j < NV; j++)
            bias[j] = ep->bias ? load8(masked, ep->bias + 8 * j, m[j]) : _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 2
            for (int j = 0; j < NV; j++) {
                __m256 v = _mm256_fmadd_ps(c[i][j], scale, bias[j]);
                v = apply_act(ep->act, v);
                if (ep->residual)
                    v = _mm256_add_ps(v, load8(masked, ep->residual + (size_t)i * ep->ldr + 8 * j, m[j]));
                c[i][j] = v;
            }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 2
        for (int j = 0; j < NV; j++)
            store8(masked, C + (size_t)i * ldc + 8 * j, m[j], c[i][j]);
}

/* Full tiles (6 x 16) are the hot case and get an unmasked instantiation; every
 * other shape goes through the masked one with the vector count nr needs. */
#define TILE_COLS(MRC, bt)                                                                       \
    if (nr == TD_GEMM_NR)                                                                        \
        tile(MRC, 2, false, bt, nr, kc, A, lda, B, C, ldc, first, last, ep);                     \
    else if (nr > 8)                                                                             \
        tile(MRC, 2, true, bt, nr, kc, A, lda, B, C, ldc, first, last, ep);                      \
    else                                                                                         \
        tile(MRC, 1, true, bt, nr, kc, A, lda, B, C, ldc, first, last, ep);

#define DEFINE_KERNEL(name, bt)                                                                                 \
    void name(size_t mr, size_t nr, size_t kc, const float *A, size_t lda, const void *B, float *C, size_t ldc, \
              bool first, bool last, const td_gemm_tile_epilogue *ep) {                                         \
        if (nr == 0)                                                                                            \
            return;                                                                                             \
        switch (mr) {                                                                                           \
        case 6: TILE_COLS(6, bt) break;                                                                         \
        case 5: TILE_COLS(5, bt) break;                                                                         \
        case 4: TILE_COLS(4, bt) break;                                                                         \
        case 3: TILE_COLS(3, bt) break;                                                                         \
        case 2: TILE_COLS(2, bt) break;                                                                         \
        case 1: TILE_COLS(1, bt) break;                                                                         \
        default: break;                                                                                         \
        }                                                                                                       \
    }

DEFINE_KERNEL(td_gemm_kernel_f32, B_F32)
DEFINE_KERNEL(td_gemm_kernel_f16, B_F16)
DEFINE_KERNEL(td_gemm_kernel_bf16, B_BF16)

#else
/* ISO C forbids an empty translation unit */
typedef int td_gemm_kernel_avx2_unused;
#endif
