/* Single-precision GEMM for the CPU runtime.
 *
 *   C (M, N) = epilogue(scale * A (M, K) @ B (K, N) + bias)
 *   epilogue: optional activation (ReLU, GELU erf, GELU tanh), then + residual.
 *
 * Weights are packed once (td_gemm_pack_b) into NR-column panels, optionally
 * stored as fp16/bf16 (converted back to fp32 inside the microkernel: fp32
 * products and accumulation, half the weight bytes). Activation x activation
 * products (attention) use td_gemm / td_gemm_batched, which pack B on the fly.
 * Row-major everywhere; lda/ldb/ldc/ldr are row strides in elements.
 *
 * Preconditions (internal API, checked by the callers that read shapes from
 * files): A, B, bias, residual must not overlap C; lda >= K, ldc >= N, ldr >= N,
 * ldb >= N (or >= K when B is transposed). M, N or K may be 0: K == 0 gives
 * C = epilogue(bias). */
#ifndef TD_RUNTIME_CPU_GEMM_H
#define TD_RUNTIME_CPU_GEMM_H

#include "core/ctx.h"
#include "core/dtype.h"
#include "core/threadpool.h"

#include <stdbool.h>
#include <stddef.h>

/* Register tile of the microkernel: MR rows of A x NR columns of B. AVX-512 and
 * the portable kernel: 8 x 48 (24 zmm accumulators). AVX2 + FMA without
 * AVX-512 (16 ymm registers): 6 x 16, 12 accumulators + 2 B vectors + 1
 * broadcast; TD_GEMM_MC (rows per A block) is then a multiple of 6.
 * Packed weights are laid out for the tile compiled in (they live in memory
 * only, never in files). */
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TD_GEMM_AVX2 1
#define TD_GEMM_MR 6
#define TD_GEMM_NR 16
#define TD_GEMM_MC 120
#else
#define TD_GEMM_MR 8
#define TD_GEMM_NR 48
#endif

typedef enum td_gemm_act {
    TD_GEMM_ACT_NONE = 0,
    TD_GEMM_ACT_RELU,
    TD_GEMM_ACT_GELU_ERF,  /* 0.5 x (1 + erf(x / sqrt 2)) */
    TD_GEMM_ACT_GELU_TANH, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
} td_gemm_act;

/* A zero-initialized epilogue is the plain product C = A @ B. */
typedef struct td_gemm_epilogue {
    float scale;           /* multiplies A @ B; 0 is taken as 1 so {0} means "no scaling" */
    const float *bias;     /* (N) added after scaling, or NULL */
    td_gemm_act act;       /* applied after the bias */
    const float *residual; /* (M, N) with row stride ldr, added last, or NULL */
    size_t ldr;
} td_gemm_epilogue;

/* Packed weights. Owned by whoever called td_gemm_pack_b; free with td_gemm_packed_free. */
typedef struct td_gemm_packed {
    size_t K, N;
    size_t panels;  /* ceil(N / NR) */
    td_dtype store; /* TD_F32, TD_F16 or TD_BF16 */
    void *data;     /* panels x K x NR elements, panel-major, zero padded past N */
} td_gemm_packed;

/* Pack B for repeated use. B is (K, N) with row stride ldb, or when trans_b it is
 * stored as (N, K) with row stride ldb (a PyTorch Linear weight (out, in)).
 * store: TD_F32, TD_F16 or TD_BF16 (round to nearest even). */
td_status td_gemm_pack_b(td_ctx *ctx, const float *B, size_t K, size_t N, size_t ldb, bool trans_b, td_dtype store,
                         td_gemm_packed **out);
void td_gemm_packed_free(td_gemm_packed *p);

/* C = epilogue(A @ Bp). Multi-threaded over M and N blocks with pool (NULL = 1 thread).
 * Cannot fail. */
void td_gemm_run(td_threadpool *pool, size_t M, const float *A, size_t lda, const td_gemm_packed *Bp, float *C,
                 size_t ldc, const td_gemm_epilogue *ep);

/* One-off product with an unpacked fp32 B (packed into a temporary buffer). */
td_status td_gemm(td_ctx *ctx, td_threadpool *pool, size_t M, size_t N, size_t K, const float *A, size_t lda,
                  const float *B, size_t ldb, bool trans_b, float *C, size_t ldc, const td_gemm_epilogue *ep);

/* batch independent products: A + i*stride_a, B + i*stride_b, C + i*stride_c (and
 * residual + i*stride_c when the epilogue has one). Used for attention
 * Q @ K^T (trans_b) and P @ V. Parallel over the batch, each thread packing its
 * own B. */
td_status td_gemm_batched(td_ctx *ctx, td_threadpool *pool, size_t batch, size_t M, size_t N, size_t K,
                          const float *A, size_t lda, size_t stride_a, const float *B, size_t ldb, size_t stride_b,
                          bool trans_b, float *C, size_t ldc, size_t stride_c, const td_gemm_epilogue *ep);

/* Building blocks for kernels that run many small products inside their own
 * parallel loop (fused attention): bytes needed to pack a (K, N) B in fp32,
 * packing into caller memory (64-byte aligned), and a single-threaded run. */
size_t td_gemm_pack_bytes(size_t K, size_t N);
void td_gemm_pack_b_into(float *dst, const float *B, size_t K, size_t N, size_t ldb, bool trans_b);
void td_gemm_run_serial(size_t M, const float *A, size_t lda, const float *Bpacked, size_t K, size_t N, float *C,
                        size_t ldc, const td_gemm_epilogue *ep);

#endif
