/* Block quantization into com.microsoft MatMulNBits layout (see runtime/cpu/qnbits.h for the layout).
 *
 * From fp32 weights: W (N, K) row-major (row n = output n, i.e. the transpose of a MatMul's (K, N) B),
 * per block of block_size along K:
 *   symmetric:  scale = max|w| / (2^(bits-1) - 1), code = round(w / scale) + 2^(bits-1), no zero points
 *               (MatMulNBits' default zero point 2^(bits-1));
 *   asymmetric: lo = min(min w, 0), hi = max(max w, 0), scale = (hi - lo) / (2^bits - 1),
 *               zp = round(-lo / scale) (uint8, packed like the codes), code = clamp(round(w / scale) + zp).
 *
 * From GGUF blocks (lossless re-packing: the codes are moved, never re-rounded):
 *   Q4_0 (32: f16 d, 16 B)        -> bits 4, block 32, scale d, default zero point 8 (x = d (q - 8));
 *   Q8_0 (32: f16 d, 32 x i8)     -> bits 8, block 32, scale d, code q + 128, default zero point 128;
 *   Q4_1 (32: f16 d, f16 m, 16 B) -> bits 4, block 32, scale d, float zero point -m / d (x = d q + m);
 *   Q4_K (256: 8 sub-blocks of 32, 6-bit sc, m) -> bits 4, block 32, scale d sc, float zero point
 *                                   dmin m / (d sc) (x = d sc q - dmin m);
 *   Q6_K (256: 16 sub-blocks of 16, i8 scale, 6-bit q) -> bits 8, block 16, scale d scale, code q6 - 32 + 128
 *                                   (6-bit codes stored in 8 bits: exact, 10 bits/weight instead of 6.56).
 * GGUF nibble order (low nibbles = elements 0..15, high = 16..31) is rewritten to MatMulNBits' (element 2i
 * low, 2i+1 high). Exactness: Q4_0, Q8_0, Q6_K give bit-identical weights; Q4_1 and Q4_K compute
 * (q - zp) * scale with zp = -m/d rounded to fp32, so weights match d q + m to within a few fp32 ulps. */
#ifndef TD_QUANT_QBLOCK_H
#define TD_QUANT_QBLOCK_H

#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A MatMulNBits weight owned by the caller (free each array with free()). */
typedef struct td_qblock {
    int64_t N, K;
    int bits, block_size;
    uint8_t *b;        /* (N, kb, block_size * bits / 8) */
    float *scales;     /* (N, kb) */
    uint8_t *zp_u8;    /* (N, ceil(kb * bits / 8)) or NULL */
    float *zp_f32;     /* (N, kb) or NULL */
} td_qblock;

void td_qblock_free(td_qblock *q); /* frees the arrays, not q */

/* W (N, K) fp32 -> blocks. bits 4 or 8, block_size a power of two 16..256. */
td_status td_qblock_quantize(td_ctx *ctx, const float *w, int64_t N, int64_t K, int bits, int block_size,
                             bool symmetric, td_qblock *out);

/* GGUF tensor types the re-packing handles (ggml type ids). */
enum { TD_QB_GGML_Q4_0 = 2, TD_QB_GGML_Q4_1 = 3, TD_QB_GGML_Q8_0 = 8, TD_QB_GGML_Q4_K = 12, TD_QB_GGML_Q6_K = 14 };
/* N rows of K elements of GGUF blocks (data_len bytes, checked) -> MatMulNBits layout. */
td_status td_qblock_from_gguf(td_ctx *ctx, int ggml_type, const uint8_t *data, size_t data_len, int64_t N, int64_t K,
                              td_qblock *out);

#endif
