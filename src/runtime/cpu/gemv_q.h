/* Matrix-vector products on GGUF block-quantized weights, kept quantized in
 * memory (the decode step of a decoder reads each weight once: bytes per
 * weight set its speed).
 *
 *   y (N) = W (N, K) @ x (K)      W row-major, each row K / 32 blocks
 *
 * Block formats (ggml's, 32 weights per block, little-endian):
 *   Q8_0: fp16 d, int8 q[32]                 w[j] = d * q[j]                      34 bytes (8.5 bits/weight)
 *   Q4_0: fp16 d, uint8 qs[16]               w[j] = d * ((qs[j] & 15) - 8),
 *                                            w[j + 16] = d * ((qs[j] >> 4) - 8)   18 bytes (4.5 bits/weight)
 * Activations stay fp32 (llama.cpp quantizes them to 8 bits; here each block's
 * weights are widened to fp32 in registers and multiplied with the fp32 x), so
 * the result is the dequantized product up to fp32 summation order.
 * gemv_q_ref.c computes the same with plain loops (dequantize a row, sum in double). */
#ifndef TD_RUNTIME_CPU_GEMV_Q_H
#define TD_RUNTIME_CPU_GEMV_Q_H

#include "core/ctx.h"
#include "core/threadpool.h"

#include <stddef.h>
#include <stdint.h>

typedef enum td_qblock_type { TD_QBLOCK_Q8_0 = 0, TD_QBLOCK_Q4_0 = 1 } td_qblock_type;

#define TD_QBLOCK_SIZE 32

/* Bytes of one block of type t (34 or 18). */
size_t td_qblock_bytes(td_qblock_type t);

/* Bytes of an (N, K) matrix of type t; fails (TD_ERR_SHAPE) unless K is a
 * positive multiple of 32, TD_ERR_OVERFLOW when the size does not fit. */
td_status td_qmatrix_bytes(td_ctx *ctx, td_qblock_type t, int64_t N, int64_t K, size_t *bytes);

/* y = W x over N rows, parallel over rows with pool (NULL = 1 thread). W holds
 * td_qmatrix_bytes(t, N, K) bytes (checked by the caller); K % 32 == 0. */
void td_gemv_q(td_threadpool *pool, td_qblock_type t, const void *W, int64_t N, int64_t K, const float *x, float *y);

/* The reference (gemv_q_ref.c): same product, plain loops, double sums. */
void td_gemv_q_ref(td_qblock_type t, const void *W, int64_t N, int64_t K, const float *x, float *y);

/* Quantize one row of K floats (K % 32 == 0) into blocks of type t, as ggml
 * does (d = max|w| / 127 for Q8_0; d = w_maxabs / -8 with q = clamp(round(w/d) + 8,
 * 0, 15) for Q4_0): for tests and the safetensors -> GGUF-block path. */
void td_qblock_quantize_row(td_qblock_type t, const float *w, int64_t K, void *out);

#endif
