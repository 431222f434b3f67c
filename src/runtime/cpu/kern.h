/* The thin interface between CPU op implementations (op_*.c) and the compute
 * kernels. Ops handle attributes, dtypes and layouts; every heavy loop goes
 * through one of these functions. The reference implementations (ref_kern.c:
 * straightforward loops) define the semantics; optimized kernels (threadpool +
 * AVX-512 GEMM, vectorized layernorm/softmax/attention) replace the bodies
 * behind the same signatures and are checked against the reference.
 *
 * All kernels compute in fp32 on contiguous row-major data. */
#ifndef TD_RUNTIME_CPU_KERN_H
#define TD_RUNTIME_CPU_KERN_H

#include "runtime/rt.h"

/* A constant right-hand matrix B (K x N) packed once at session creation.
 * Stored as fp32, fp16 or bf16 (precision option). */
typedef struct td_kern_packed {
    int64_t K, N;
    td_dtype dtype; /* TD_F32, TD_F16 or TD_BF16 */
    void *data;     /* K x N row-major, 64-byte aligned */
    size_t nbytes;
} td_kern_packed;

/* Pack B (K x N, or N x K when trans_b) of dtype src_dtype into dst_dtype. */
td_status td_kern_pack_b(td_ctx *ctx, const void *b, td_dtype src_dtype, int64_t K, int64_t N, bool trans_b,
                         td_dtype dst_dtype, td_kern_packed **out);
void td_kern_packed_free(void *p); /* NULL harmless */

/* C (M x N, ldc) = A (M x K, lda) * packed B [+ bias (N)] [+ C if accumulate]. */
void td_kern_gemm_packed(const float *A, int64_t lda, int64_t M, const td_kern_packed *B, const float *bias,
                         float *C, int64_t ldc, bool accumulate, td_rt_env *env);

/* C = alpha * op(A) * op(B) + beta * C, general strides (row-major). */
void td_kern_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, td_rt_env *env);

/* Softmax over the last dim of rows x n, in place. */
void td_kern_softmax_rows(float *x, int64_t rows, int64_t n, td_rt_env *env);

/* y = (x - mean) / sqrt(var + eps) * gamma + beta per row of n (beta may be
 * NULL). rms: no mean subtraction (RMSNorm / SimplifiedLayerNormalization).
 * mean/inv_std (rows entries each) may be NULL. */
void td_kern_layernorm_rows(const float *x, const float *gamma, const float *beta, float *y, int64_t rows, int64_t n,
                            float eps, bool rms, float *mean, float *inv_std, td_rt_env *env);

/* Attention for one (batch, head): out (S x Dv, ldo) = softmax(scale * q k^T + mask_add) v
 * with q (S x D, ldq), k (L x D, ldk), v (L x Dv, ldv); mask_add (S x L, ld mask_ld) is
 * an additive mask/bias or NULL. scratch holds S * L floats. */
void td_kern_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                       float *out, int64_t ldo, int64_t S, int64_t L, int64_t D, int64_t Dv, float scale,
                       const float *mask_add, int64_t mask_ld, float *scratch, td_rt_env *env);

/* Elementwise helpers for hot binary ops on fp32 (same length, or b broadcast
 * with stride 0). op: '+', '-', '*', '/'. */
void td_kern_binary_f32(char op, const float *a, int64_t sa, const float *b, int64_t sb, float *o, int64_t n);

/* GELU variants on fp32 arrays. */
void td_kern_gelu_erf(const float *x, float *y, int64_t n);
void td_kern_gelu_tanh(const float *x, float *y, int64_t n);

#endif
