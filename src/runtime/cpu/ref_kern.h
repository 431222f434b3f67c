/* Reference kernels: plain loops defining the semantics of kern.h. Used by
 * tests to check the optimized kernels and by layouts the fast kernels do not
 * take (Gemm with transA). fp32 accumulation. */
#ifndef TD_RUNTIME_CPU_REF_KERN_H
#define TD_RUNTIME_CPU_REF_KERN_H

#include <stdbool.h>
#include <stdint.h>

/* C (M x N) = alpha * op(A) @ op(B) (+ bias (N) when not NULL). */
void td_ref_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc);
void td_ref_softmax_rows(float *x, int64_t rows, int64_t n);
void td_ref_layernorm_rows(const float *x, const float *gamma, const float *beta, float *y, int64_t rows, int64_t n,
                           float eps, float *mean, float *inv_std);
void td_ref_rmsnorm_rows(const float *x, const float *gamma, float *y, int64_t rows, int64_t n, float eps,
                         float *inv_std);
void td_ref_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                      float *out, int64_t ldo, int64_t S, int64_t L, int64_t D, int64_t Dv, float scale,
                      const float *mask_add, int64_t mask_ld, float *scratch);
void td_ref_gelu_erf(const float *x, float *y, int64_t n);
void td_ref_gelu_tanh(const float *x, float *y, int64_t n);

#endif
