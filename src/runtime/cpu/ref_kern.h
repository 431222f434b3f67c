/* Reference kernels: plain loops defining the semantics of kern.h. No packing,
 * no threading, no vector intrinsics, no fusion, fp64 accumulation for every
 * sum (dot products, softmax denominators, normalization statistics). They
 * share no code with the optimized kernels (gemm*.c, softmax.c, layernorm.c,
 * activations.c, binary.c, vecmath.h) and call only libm, so they are an
 * independent check of them: tests/unit/test_kern_ref.c compares the two per
 * kernel, and the "reference" backend (backend_ref.c) runs whole models on
 * them, which is what `convert` validates every optimized backend against. */
#ifndef TD_RUNTIME_CPU_REF_KERN_H
#define TD_RUNTIME_CPU_REF_KERN_H

#include "runtime/cpu/activations.h"
#include "runtime/cpu/kern.h"

#include <stdbool.h>
#include <stdint.h>

/* C (M x N) = alpha * op(A) @ op(B) (+ bias (N) when not NULL). */
void td_ref_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc);
/* nb products C_i = A_i @ B_i as td_kern_gemm_batched describes them. */
void td_ref_gemm_batched(int64_t nb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const int64_t *a_off, const float *B, int64_t ldb, const int64_t *b_off, float *C,
                         int64_t ldc, int64_t c_stride);
/* Softmax over the last dim of rows x n, in place; a row that is all -inf gives NaN. */
void td_ref_softmax_rows(float *x, int64_t rows, int64_t n);
/* log(softmax) over the last dim, in place, as x - max - log(sum(exp(x - max))): finite wherever the
 * answer is (exp of a large negative difference underflows, its log would be -inf). */
void td_ref_log_softmax_rows(float *x, int64_t rows, int64_t n);
void td_ref_layernorm_rows(const float *x, const float *gamma, const float *beta, float *y, int64_t rows, int64_t n,
                           float eps, float *mean, float *inv_std);
/* As td_kern_skip_layernorm_rows: s = (x + skip[row % skip_rows]) + bias, y = layernorm(s). */
void td_ref_skip_layernorm_rows(const float *x, const float *skip, int64_t skip_rows, const float *bias,
                                const float *gamma, const float *beta, float *y, float *sum, int64_t rows, int64_t n,
                                float eps, float *mean, float *inv_std);
void td_ref_rmsnorm_rows(const float *x, const float *gamma, float *y, int64_t rows, int64_t n, float eps,
                         float *inv_std);
void td_ref_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                      float *out, int64_t ldo, int64_t S, int64_t L, int64_t D, int64_t Dv, float scale,
                      const float *mask_add, int64_t mask_ld, float *scratch);
/* td_kern_mha_run's semantics, one (batch, head) pair after another; scratch holds S x T floats. */
void td_ref_mha(const td_kern_mha *a, float *scratch);
void td_ref_gelu_erf(const float *x, float *y, int64_t n);
void td_ref_gelu_tanh(const float *x, float *y, int64_t n);
/* y = f(x) with libm (y may equal x); y = f(x + bias[i % cols]) over rows x cols (bias may be NULL). */
void td_ref_unary(td_unary op, const float *x, float *y, int64_t n);
void td_ref_bias_unary(td_unary op, const float *x, const float *bias, float *y, int64_t rows, int64_t cols);

#endif
