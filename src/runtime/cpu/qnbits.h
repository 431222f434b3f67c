/* Kernels of com.microsoft MatMulNBits (block-quantized weights kept quantized).
 *
 * Weight layout, exactly ONNX Runtime's:
 *   B      uint8 (N, kb, blob)  kb = ceil(K / block_size), blob = block_size * bits / 8;
 *                                codes packed low bits first along K (4-bit: element 2i in the low
 *                                nibble of byte i, element 2i+1 in the high nibble);
 *   scales fp32  (N, kb);
 *   zero points: absent (2^(bits-1)), uint8 (N, ceil(kb * bits / 8)) packed like B per row,
 *                or fp32 (N, kb);
 *   bias   fp32  (N) or absent.
 * W[n, k] = (code(n, k) - zp(n, k / block_size)) * scale(n, k / block_size); Y (M, N) = A (M, K) @ W^T + bias.
 *
 * Two compute paths (ONNX Runtime's accuracy_level picks one):
 *   fp32: each weight dequantized on the fly and multiplied with the fp32 activation (accuracy_level < 4);
 *   int8: each activation row quantized per block to int8 (symmetric, scale max|a| / 127, like llama.cpp's
 *         Q8 activations) and the block dot products done in integers (AVX-512 VNNI vpdpbusd), scaled per
 *         block; the zero-point term uses the per-block sum of the int8 activations (accuracy_level 4).
 * Each path has a scalar reference (qnbits_ref.c), an AVX-512 kernel (qnbits_avx512.c) selected at run
 * time when the CPU has AVX-512 BW + VNNI, and an AVX2 + FMA kernel (same file) where it has only those. */
#ifndef TD_RUNTIME_CPU_QNBITS_H
#define TD_RUNTIME_CPU_QNBITS_H

#include "runtime/rt.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A MatMulNBits weight as the op's inputs give it (pointers into the model's tensors). */
typedef struct td_qnbits_raw {
    int64_t K, N;
    int bits;          /* 4 or 8 */
    int block_size;    /* power of two, 16..256 */
    const uint8_t *b;  /* (N, kb, blob) */
    const float *scales;  /* (N, kb) */
    const uint8_t *zp_u8; /* (N, ceil(kb * bits / 8)) or NULL */
    const float *zp_f32;  /* (N, kb) or NULL (only one of zp_u8 / zp_f32) */
} td_qnbits_raw;

static inline int64_t td_qnbits_kb(int64_t K, int block_size) { return (K + block_size - 1) / block_size; }

/* Zero point of block (n, blk) per ONNX Runtime's rules. */
float td_qnbits_zp(const td_qnbits_raw *w, int64_t n, int64_t blk);

/* The prepared form the kernels read: codes in place, per-block fp32 scale and scale * zero_point. */
typedef struct td_qnbits_w {
    int64_t K, N, kb, blob, row_bytes; /* row_bytes = kb * blob */
    int bits, block_size;
    int accuracy_level; /* the op's attribute (4 = int8 activations); not used by the kernels */
    const uint8_t *b;   /* (N, kb, blob), not owned; NULL until prepared */
    float *scale;       /* (N, kb) */
    float *scale_zp;    /* (N, kb): scale * zero_point */
} td_qnbits_w;

/* Prepared weight in one malloc block (free with free()). */
td_status td_qnbits_prepare(td_ctx *ctx, const td_qnbits_raw *raw, td_qnbits_w **out);

/* ---- reference kernels (scalar) ---- */
/* Y (M, N) = A (M, K) @ dequant(W)^T + bias, straight from ONNX Runtime's formula, fp32 accumulation. */
void td_qnbits_ref(const td_qnbits_raw *w, const float *A, int64_t M, const float *bias, float *Y);
/* The int8-activation algorithm in scalar code (what the VNNI kernel computes, up to fp32 summation order). */
void td_qnbits_i8_ref(const td_qnbits_w *w, const float *A, int64_t M, const float *bias, float *Y, void *scratch);
size_t td_qnbits_i8_ref_scratch(const td_qnbits_w *w); /* bytes of scratch td_qnbits_i8_ref needs */

/* Quantize one activation row per block: a8 (kb * block_size, zero padded), da (kb) scales, asum (kb) sums of a8. */
void td_qnbits_quant_row(const float *a, int64_t K, int block_size, int8_t *a8, float *da, int32_t *asum);
/* The same with AVX2 where the CPU has it (blocks of a multiple of 32): identical a8, da and asum. */
void td_qnbits_quant_row_fast(const float *a, int64_t K, int block_size, int8_t *a8, float *da, int32_t *asum);

/* ---- optimized kernels (AVX-512; fall back to the references where the CPU lacks it) ---- */
bool td_qnbits_have_avx512(void);
/* AVX2 + FMA: both paths of 4- and 8-bit weights (used where AVX-512 is missing). */
bool td_qnbits_have_avx2(void);
/* Scratch bytes td_qnbits_gemm needs for M rows (either path) on a pool of `threads`. */
size_t td_qnbits_scratch(const td_qnbits_w *w, int64_t M, int threads);
/* Y (M, N) = A (M, K) @ W^T + bias; int8 = the int8-activation path. Parallel over N on env's pool. */
void td_qnbits_gemm(const td_qnbits_w *w, const float *A, int64_t M, const float *bias, float *Y, bool int8,
                    void *scratch, td_rt_env *env);

#endif
