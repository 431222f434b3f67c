/* The thin interface between CPU op implementations (op_*.c) and the compute
 * kernels. Ops handle attributes, dtypes and layouts; every heavy loop goes
 * through one of these functions. kern.c implements them with the optimized
 * kernels (gemm.h: packed AVX-512 GEMM; softmax.h, layernorm.h, activations.h;
 * the thread pool of the session); ref_kern.c holds straightforward reference
 * loops with the same semantics, used by tests/unit/test_kern_ref.c to check
 * the fast paths and by the rare layouts the fast kernels do not take.
 * When env->reference is set (the "reference" backend, backend_ref.c) every
 * function here runs the ref_kern.h loop instead, single-threaded; weights are
 * never packed there, so the packed-B functions are not reached.
 *
 * All kernels compute in fp32 on row-major data. */
#ifndef TD_RUNTIME_CPU_KERN_H
#define TD_RUNTIME_CPU_KERN_H

#include "runtime/cpu/activations.h"
#include "runtime/cpu/gemm.h"
#include "runtime/rt.h"

/* A constant right-hand matrix B (K x N) packed once at session creation into
 * the GEMM's panel layout, stored as fp32, fp16 or bf16 (precision option). */
typedef struct td_kern_packed {
    int64_t K, N;
    size_t nbytes;
    td_gemm_packed *g;
    struct td_gemm_i8_packed *q; /* int8 weights (op_quant.c) instead of g */
} td_kern_packed;

/* Pack B (K x N, or N x K when trans_b) of dtype src_dtype (f32/f16/bf16) into dst_dtype. */
td_status td_kern_pack_b(td_ctx *ctx, const void *b, td_dtype src_dtype, int64_t K, int64_t N, bool trans_b,
                         td_dtype dst_dtype, td_kern_packed **out);
void td_kern_packed_free(void *p); /* NULL harmless */

/* C (M x N, ldc) = A (M x K, lda) @ packed B [+ bias (N)]. */
void td_kern_gemm_packed(const float *A, int64_t lda, int64_t M, const td_kern_packed *B, const float *bias,
                         float *C, int64_t ldc, td_rt_env *env);
/* C = act(A @ packed B [+ bias]) [+ residual (M x N, row stride ldc)], act a td_gemm_act; all applied
 * in the GEMM epilogue. */
void td_kern_gemm_packed_ep(const float *A, int64_t lda, int64_t M, const td_kern_packed *B, const float *bias,
                            int act, const float *residual, float *C, int64_t ldc, td_rt_env *env);

/* Bytes of scratch td_kern_gemm needs to pack a K x N right-hand side. */
size_t td_kern_gemm_scratch(int64_t K, int64_t N);
/* C (M x N) = alpha * A (M x K) @ op(B), B (K x N) or, with trans_b, (N x K).
 * pack_scratch: td_kern_gemm_scratch(K, N) bytes, 64-byte aligned. */
void td_kern_gemm(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                  int64_t ldb, bool trans_b, float *C, int64_t ldc, void *pack_scratch, td_rt_env *env);

/* nb independent products C_i (M x N, at C + i*c_stride) = A_i (M x K at A + a_off[i]) @ B_i
 * (K x N at B + b_off[i]), parallel over i (each thread packs into its own slice of
 * pack_scratch: td_kern_gemm_batched_scratch(K, N, threads) bytes). */
size_t td_kern_gemm_batched_scratch(int64_t K, int64_t N, int threads);
void td_kern_gemm_batched(int64_t nb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const int64_t *a_off, const float *B, int64_t ldb, const int64_t *b_off, float *C,
                          int64_t ldc, int64_t c_stride, void *pack_scratch, td_rt_env *env);

/* Softmax over the last dim of rows x n, in place. */
void td_kern_softmax_rows(float *x, int64_t rows, int64_t n, td_rt_env *env);
/* log(softmax) over the last dim of rows x n, in place (x - max - log(sum(exp(x - max)))). */
void td_kern_log_softmax_rows(float *x, int64_t rows, int64_t n, td_rt_env *env);

/* y = (x - mean) / sqrt(var + eps) * gamma + beta per row of n (beta may be
 * NULL); mean/inv_std (rows entries each) may be NULL. */
void td_kern_layernorm_rows(const float *x, const float *gamma, const float *beta, float *y, int64_t rows, int64_t n,
                            float eps, float *mean, float *inv_std, td_rt_env *env);

/* SkipLayerNormalization: s = x + skip[row % skip_rows] + bias, y = layernorm(s) * gamma + beta.
 * skip (skip_rows, n) with rows % skip_rows == 0; bias, beta, sum (rows, n: s), mean,
 * inv_std may be NULL. Parallel over rows. */
void td_kern_skip_layernorm_rows(const float *x, const float *skip, int64_t skip_rows, const float *bias,
                                 const float *gamma, const float *beta, float *y, float *sum, int64_t rows,
                                 int64_t n, float eps, float *mean, float *inv_std, td_rt_env *env);

/* RMS normalization: y = x / sqrt(mean(x^2) + eps) * gamma per row of n;
 * inv_std (rows entries) may be NULL. */
void td_kern_rmsnorm_rows(const float *x, const float *gamma, float *y, int64_t rows, int64_t n, float eps,
                          float *inv_std, td_rt_env *env);

/* Multi-head attention over all (batch, head) pairs, parallel over pairs:
 *   out[b, :, h] = softmax(scale * Q_bh K_bg^T + mask[b] + bias[b, h]) V_bg
 * with g = h / (N / kv_heads) the key/value head that query head h reads
 * (grouped-query attention; kv_heads 0 means kv_heads = N, g = h).
 * Q_bh = q + b*q_bstride + h*D (S rows, row stride ldq); K_bg (T x D) and V_bg
 * (T x Dv) are contiguous blocks at k + (b*kv_heads + g)*R*D and v + (b*kv_heads + g)*R*Dv (R = kv_rows or T),
 * or, when kv_ld > 0, rows kv_ld floats apart at k + b*T*kv_ld + g*D and
 * v + b*T*kv_ld + g*Dv (K and V read in place from a packed QKV projection);
 * out_bh = out + b*o_bstride + h*Dv (row stride ldo). mask: S x T (or 1 x T with
 * mask_one_row) additive per batch (mask_bstride floats apart, 0 = shared) or NULL; bias: S x T additive
 * per (b, h) (bias_bstride / bias_hstride, 0 = broadcast) or NULL. */
typedef struct td_kern_mha {
    int64_t B, N, S, T, D, Dv;
    const float *q;
    int64_t q_bstride, ldq;
    const float *k, *v;
    int64_t kv_ld; /* 0: contiguous (B, N, T, D) blocks; else the row stride of K and V */
    float *out;
    int64_t o_bstride, ldo;
    float scale;
    const float *mask;
    int64_t mask_bstride;
    bool mask_one_row; /* mask is one T row per batch item, the same for every query (key padding) */
    const float *bias;
    int64_t bias_bstride, bias_hstride;
    int64_t kv_heads; /* 0 = N; else a divisor of N: query heads h*N/kv_heads.. share K/V head h */
    int64_t kv_rows;  /* 0 = T; else rows per (b, kv head) block of K and V (>= T: a cache with room to spare) */
} td_kern_mha;
/* Scratch bytes for td_kern_mha with `threads` workers (64-byte aligned slices); with kv_heads
 * pass S * N / kv_heads for S (a decode step runs each group's query heads as one block of rows). */
size_t td_kern_mha_scratch(int64_t S, int64_t T, int64_t D, int64_t Dv, int threads);
void td_kern_mha_run(const td_kern_mha *a, void *scratch, td_rt_env *env);

/* y = f(x) on n contiguous floats (y may equal x). */
void td_kern_unary_f32(td_unary op, const float *x, float *y, int64_t n, td_rt_env *env);
/* y = f(x + bias[i % cols]) over rows x cols (bias may be NULL), parallel over rows. */
void td_kern_bias_unary_f32(td_unary op, const float *x, const float *bias, float *y, int64_t rows, int64_t cols,
                            td_rt_env *env);

#endif
