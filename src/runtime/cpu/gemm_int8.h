/* Dynamically quantized int8 GEMM for the CPU runtime.
 *
 *   C (M, N) = epilogue(dequant(quant_rows(A (M, K)) @ Bq (K, N)) + bias)
 *
 * Weights Bq are int8, symmetric per output column (w = bq * b_scale[n], no zero
 * point), packed once. Activations are quantized at run time per row of A:
 * uint8, asymmetric, with the formula of ONNX DynamicQuantizeLinear applied to
 * each row instead of the whole tensor, over Q levels:
 *   scale_i = (max(0, max_k A[i,k]) - min(0, min_k A[i,k])) / Q   (1 if that is 0)
 *   zp_i    = clamp(round_half_even(-min(0, min_k A[i,k]) / scale_i), 0, Q)
 *   aq[i,k] = clamp(round_half_even(A[i,k] / scale_i) + zp_i, 0, Q)
 * Q = td_gemm_i8_act_levels(): 255 where the CPU has AVX-512 VNNI (vpdpbusd: u8 x
 * s8, four products summed exactly per 32-bit lane) or no vector unit at all;
 * 127 on AVX2 without VNNI, whose vpmaddubsw sums two u8 x s8 products into a
 * saturating int16 (2 x 255 x 127 would saturate, 2 x 127 x 127 cannot).
 * Products accumulate exactly in int32, and the epilogue dequantizes on the
 * tile in registers:
 *   C[i,n] = fmaf((float)(acc[i,n] - zp_i * colsum[n]), scale_i * b_scale[n], bias[n])
 * then the activation and the residual as in gemm.h. colsum[n] = sum_k bq[k,n].
 * The int32 sums cannot overflow: |acc| <= K * 255 * 127 < 2^31 for K < 66000,
 * which td_gemm_i8_pack enforces.
 *
 * gemm_int8_ref.c computes the same definition with plain loops (the reference
 * the tests hold the VNNI kernel to). */
#ifndef TD_RUNTIME_CPU_GEMM_INT8_H
#define TD_RUNTIME_CPU_GEMM_INT8_H

#include "core/ctx.h"
#include "core/threadpool.h"
#include "runtime/cpu/gemm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Register tile of the int8 microkernel and the packing of B: NR columns per
 * panel, K in groups of 4 bytes (one vpdpbusd lane). MR is the rows of the
 * VNNI and portable tiles; the AVX2 tile has 6 (gemm_int8.c). */
#define TD_GEMM_I8_MR 8
#define TD_GEMM_I8_NR 48
#define TD_GEMM_I8_MAX_K 65536

typedef struct td_gemm_i8_packed {
    size_t K, N;
    size_t Kp;      /* K rounded up to a multiple of 4 (zero rows past K) */
    size_t panels;  /* ceil(N / NR) */
    int8_t *data;   /* panels x (Kp / 4) x NR x 4: byte t of column j of group g at (g * NR + j) * 4 + t */
    int32_t *colsum; /* (panels * NR) sum over k of bq[k, n], 0 past N */
    float *scale;    /* (panels * NR) b_scale[n], 0 past N */
    int wmax;        /* max |bq| over the matrix: <= TD_GEMM_I8_NARROW lets the AVX2 kernel pair products */
} td_gemm_i8_packed;

/* Weights within [-63, 63] ("7-bit", what `optimize --int8-weight-bits 7` writes)
 * let the AVX2 kernel add two vpmaddubsw results in int16 before widening:
 * |2 x 2 x 127 x 63| = 32004 < 32767, so the sums stay exact with one vpmaddwd
 * per 8 bytes of K instead of per 4 (1.5x fewer multiply-pipe instructions). */
#define TD_GEMM_I8_NARROW 63

/* Quantize fp32 weights B per output column (symmetric, [-qmax, qmax]:
 * scale = max_k |B[k,n]| / qmax, 1 for an all-zero column) into bq and scale.
 * qmax: 127 (8-bit) or TD_GEMM_I8_NARROW (7-bit). B is (K, N) with row stride
 * ldb, or (N, K) when trans_b. bq: K x N row-major, scale: N. */
void td_gemm_i8_quantize_weights(const float *B, size_t K, size_t N, size_t ldb, bool trans_b, int qmax, int8_t *bq,
                                 float *scale);

/* Pack int8 weights bq (K x N row-major) with per-column scales (n_scale == N)
 * or one scale for all columns (n_scale == 1). Fails for K > TD_GEMM_I8_MAX_K
 * or a size that overflows. */
td_status td_gemm_i8_pack(td_ctx *ctx, const int8_t *bq, size_t K, size_t N, const float *scale, size_t n_scale,
                          td_gemm_i8_packed **out);
void td_gemm_i8_packed_free(td_gemm_i8_packed *p);

/* Activation quantization levels of td_gemm_i8_run on this build (255 or 127). */
int td_gemm_i8_act_levels(void);

/* Scratch bytes td_gemm_i8_run needs for M rows (quantized A + row parameters). */
size_t td_gemm_i8_scratch_bytes(size_t M, size_t K);

/* C = epilogue(...) as above, multi-threaded with pool (NULL = 1 thread).
 * scratch: td_gemm_i8_scratch_bytes(M, K) bytes, 64-byte aligned. ep->scale is
 * ignored (must be 0 or 1). Cannot fail. */
void td_gemm_i8_run(td_threadpool *pool, size_t M, const float *A, size_t lda, const td_gemm_i8_packed *Bp,
                    float *C, size_t ldc, const td_gemm_epilogue *ep, void *scratch);

/* The reference (gemm_int8_ref.c): same definition with levels Q, plain loops,
 * unpacked bq (K x N row-major) and per-column scale (N). Single-threaded. */
void td_gemm_i8_ref(size_t M, size_t N, size_t K, const float *A, size_t lda, const int8_t *bq, const float *scale,
                    float *C, size_t ldc, const td_gemm_epilogue *ep, int levels);

#endif
