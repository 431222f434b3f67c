/* Shared by the CUDA sources of libtdeploy_cuda.so: the per-session context,
 * error reporting (every failing CUDA/cuBLASLt call becomes a message naming
 * it, never an abort) and dtype-generic element loads and stores (the
 * numerically sensitive math runs in fp32 whatever the storage dtype). */
#ifndef TD_RUNTIME_CUDA_TDC_INTERNAL_CUH
#define TD_RUNTIME_CUDA_TDC_INTERNAL_CUH

#include "runtime/cuda/tdc_abi.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdio.h>

struct tdc_ctx {
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace; /* cuBLASLt workspace */
    size_t workspace_bytes;
    int *dev_flag;   /* device-side error flag: set by kernels on a bad index */
    cudaEvent_t ev_start, ev_stop;
    cudaGraph_t capturing;
    int reference;   /* run the simple reference kernels */
    int poison;      /* TDEPLOY_CUDA_POISON=1: new device buffers start as 0xFF bytes (NaN in every float dtype) */
    tdc_gemm_choice *choices; /* measured GEMM algorithms (gemm_set_choices), n_choices of them */
    int n_choices;
    char err[512];
};

/* Record "what: call failed: reason" on c; returns 1 (the ABI's failure). */
int tdc_fail(tdc_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define TDC_CUDA(c, call)                                                                                           \
    do {                                                                                                            \
        cudaError_t e_ = (call);                                                                                    \
        if (e_ != cudaSuccess)                                                                                      \
            return tdc_fail((c), "%s failed: %s (%s)", #call, cudaGetErrorString(e_), cudaGetErrorName(e_));      \
    } while (0)
#define TDC_LT(c, call)                                                                                             \
    do {                                                                                                            \
        cublasStatus_t s_ = (call);                                                                                 \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                            \
            return tdc_fail((c), "%s failed: %s", #call, cublasLtGetStatusString(s_));                                \
    } while (0)
/* After a kernel launch: configuration errors show up here. */
#define TDC_LAUNCHED(c, what)                                                                                       \
    do {                                                                                                            \
        cudaError_t e_ = cudaGetLastError();                                                                        \
        if (e_ != cudaSuccess)                                                                                      \
            return tdc_fail((c), "launching %s failed: %s", what, cudaGetErrorString(e_));                          \
    } while (0)

enum { DT_F32 = 1, DT_U8 = 2, DT_I8 = 3, DT_I32 = 6, DT_I64 = 7, DT_BOOL = 9, DT_F16 = 10, DT_F64 = 11, DT_BF16 = 16 };

/* Device error flag codes (tdc_ctx.dev_flag). */
enum { TDC_FLAG_INDEX = 1 };

static inline size_t tdc_dtype_size(int dt) {
    switch (dt) {
    case DT_U8: case DT_I8: case DT_BOOL: return 1;
    case DT_F16: case DT_BF16: return 2;
    case DT_F32: case DT_I32: return 4;
    case DT_I64: case DT_F64: return 8;
    default: return 0;
    }
}
static inline int64_t tdc_numel(const tdc_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= t->shape[d];
    return n;
}
static inline bool tdc_is_float(int dt) { return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16 || dt == DT_F64; }

/* Element i of a dtype-tagged buffer as double (exact for every integer a
 * graph's index math produces, < 2^53) / as float (activations). */
__device__ __forceinline__ double ld_d(const void *p, int dt, int64_t i) {
    switch (dt) {
    case DT_F32: return ((const float *)p)[i];
    case DT_F16: return __half2float(((const __half *)p)[i]);
    case DT_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case DT_I32: return ((const int32_t *)p)[i];
    case DT_I64: return (double)((const int64_t *)p)[i];
    case DT_BOOL: case DT_U8: return ((const uint8_t *)p)[i];
    case DT_I8: return ((const int8_t *)p)[i];
    case DT_F64: return ((const double *)p)[i];
    default: return 0.0;
    }
}
__device__ __forceinline__ float ld_f(const void *p, int dt, int64_t i) {
    switch (dt) {
    case DT_F32: return ((const float *)p)[i];
    case DT_F16: return __half2float(((const __half *)p)[i]);
    case DT_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    default: return (float)ld_d(p, dt, i);
    }
}
__device__ __forceinline__ int64_t ld_i(const void *p, int dt, int64_t i) {
    switch (dt) {
    case DT_I32: return ((const int32_t *)p)[i];
    case DT_I64: return ((const int64_t *)p)[i];
    default: return (int64_t)ld_d(p, dt, i);
    }
}
/* Store v converted to dt: floats round to nearest even, integers truncate
 * toward zero (ONNX Cast), bool is v != 0. */
__device__ __forceinline__ void st_d(void *p, int dt, int64_t i, double v) {
    switch (dt) {
    case DT_F32: ((float *)p)[i] = (float)v; break;
    case DT_F16: ((__half *)p)[i] = __float2half_rn((float)v); break;
    case DT_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn((float)v); break;
    case DT_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case DT_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case DT_BOOL: ((uint8_t *)p)[i] = v != 0.0; break;
    case DT_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case DT_I8: ((int8_t *)p)[i] = (int8_t)v; break;
    case DT_F64: ((double *)p)[i] = v; break;
    default: break;
    }
}
__device__ __forceinline__ void st_f(void *p, int dt, int64_t i, float v) {
    switch (dt) {
    case DT_F32: ((float *)p)[i] = v; break;
    case DT_F16: ((__half *)p)[i] = __float2half_rn(v); break;
    case DT_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
    default: st_d(p, dt, i, v); break;
    }
}

/* Block-wide sum of one float per thread (blockDim.x a multiple of 32, <= 1024). */
__device__ __forceinline__ float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    __syncthreads();
    if (l == 0)
        red[w] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = l < nw ? red[l] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float block_max(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    __syncthreads();
    if (l == 0)
        red[w] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = l < nw ? red[l] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Kernel families (one file each). */
int tdc_ew(tdc_ctx *c, const tdc_op *op);
int tdc_copy_strided(tdc_ctx *c, const tdc_op *op);
int tdc_gather(tdc_ctx *c, const tdc_op *op);
int tdc_gather_elements(tdc_ctx *c, const tdc_op *op);
int tdc_cumsum(tdc_ctx *c, const tdc_op *op);
int tdc_layernorm(tdc_ctx *c, const tdc_op *op);
int tdc_skip_layernorm(tdc_ctx *c, const tdc_op *op);
int tdc_embed_layernorm(tdc_ctx *c, const tdc_op *op);
int tdc_softmax(tdc_ctx *c, const tdc_op *op);
int tdc_attention(tdc_ctx *c, const tdc_op *op);
int tdc_matmul(tdc_ctx *c, const tdc_op *op);
int tdc_reduce_sum(tdc_ctx *c, const tdc_op *op);
int tdc_gemm_tune(tdc_ctx *c, tdc_gemm_choice *ch, int top_k, int *tried);
int tdc_gemm_set_choices(tdc_ctx *c, const tdc_gemm_choice *choices, int n);
/* C (M, N) row-major = alpha * A (M, K) @ op(B) (+ bias (N)), all of dtype dt, fp32 accumulation. */
int tdc_gemm(tdc_ctx *c, int dt, int64_t M, int64_t N, int64_t K, float alpha, const void *A, int64_t lda,
             const void *B, int transB, const void *bias, void *C, int64_t ldc);

static inline unsigned tdc_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535 * 32 ? 65535 * 32 : (b < 1 ? 1 : b));
}

#endif
