/* GEMMs through cuBLASLt (fp32 with TF32 off, fp16 and bf16 on tensor cores,
 * fp32 accumulation, bias fused in the epilogue), plus the simple reference
 * GEMM kernel the tests compare it against. Row-major C = A @ B is computed as
 * the column-major C^T = B^T A^T, so no operand is ever transposed in memory. */
#include "runtime/cuda/tdc_internal.cuh"

static cudaDataType_t lt_type(int dt) {
    return dt == DT_F16 ? CUDA_R_16F : dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* Reference: one thread per output element, fp32 accumulation. */
__global__ void gemm_ref_kernel(int dt, int64_t M, int64_t N, int64_t K, float alpha, const void *A, int64_t lda,
                                const void *B, int transB, const void *bias, void *C, int64_t ldc) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * N; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t m = i / N, n = i % N;
        float acc = 0.0f;
        for (int64_t k = 0; k < K; k++)
            acc += ld_f(A, dt, m * lda + k) * ld_f(B, dt, transB ? n * K + k : k * N + n);
        acc *= alpha;
        if (bias)
            acc += ld_f(bias, dt, n);
        st_f(C, dt, m * ldc + n, acc);
    }
}

int tdc_gemm(tdc_ctx *c, int dt, int64_t M, int64_t N, int64_t K, float alpha, const void *A, int64_t lda,
             const void *B, int transB, const void *bias, void *C, int64_t ldc) {
    if (M == 0 || N == 0)
        return 0;
    if (c->reference || K == 0) {
        gemm_ref_kernel<<<tdc_blocks(M * N, 128), 128, 0, c->stream>>>(dt, M, N, K, alpha, A, lda, B, transB, bias, C,
                                                                      ldc);
        TDC_LAUNCHED(c, "gemm_ref_kernel");
        return 0;
    }
    cudaDataType_t t = lt_type(dt);
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    int rc = 0;
    float beta = 0.0f;
    cublasOperation_t ta = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t s;
#define LT(call)                                                                                                   \
    if ((s = (call)) != CUBLAS_STATUS_SUCCESS) {                                                                   \
        rc = tdc_fail(c, "%s failed: %s (GEMM %lldx%lldx%lld)", #call, cublasLtGetStatusString(s), (long long)M,       \
                      (long long)N, (long long)K);                                                                 \
        goto out;                                                                                                  \
    }
    LT(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias)
        LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    /* column-major "A" = B^T: N x K; stored (K, N) row-major = N x K col-major ld N, or (N, K) = K x N ld K, transposed */
    LT(transB ? cublasLtMatrixLayoutCreate(&la, t, (uint64_t)K, (uint64_t)N, K)
              : cublasLtMatrixLayoutCreate(&la, t, (uint64_t)N, (uint64_t)K, N));
    LT(cublasLtMatrixLayoutCreate(&lb, t, (uint64_t)K, (uint64_t)M, lda));
    LT(cublasLtMatrixLayoutCreate(&lc, t, (uint64_t)N, (uint64_t)M, ldc));
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->workspace_bytes,
                                            sizeof c->workspace_bytes));
    LT(cublasLtMatmulAlgoGetHeuristic(c->lt, desc, la, lb, lc, lc, pref, 1, &res, &found));
    if (!found) {
        rc = tdc_fail(c, "cublasLtMatmulAlgoGetHeuristic found no algorithm for GEMM %lldx%lldx%lld", (long long)M,
                      (long long)N, (long long)K);
        goto out;
    }
    LT(cublasLtMatmul(c->lt, desc, &alpha, B, la, A, lb, &beta, C, lc, C, lc, &res.algo, c->workspace,
                      c->workspace_bytes, c->stream));
#undef LT
out:
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (lc)
        cublasLtMatrixLayoutDestroy(lc);
    if (lb)
        cublasLtMatrixLayoutDestroy(lb);
    if (la)
        cublasLtMatrixLayoutDestroy(la);
    if (desc)
        cublasLtMatmulDescDestroy(desc);
    return rc;
}

int tdc_matmul(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *a = &op->in[0], *b = &op->in[1], *o = &op->out[0];
    const tdc_tensor *bias = op->n_in > 2 && op->in[2].data ? &op->in[2] : NULL;
    int transB = (int)op->iattr[0];
    if (a->dtype != b->dtype || a->dtype != o->dtype || (bias && bias->dtype != a->dtype))
        return tdc_fail(c, "%s: MatMul/Gemm operands must share one dtype on CUDA (A %d, B %d, out %d)", op->name,
                        a->dtype, b->dtype, o->dtype);
    if (b->rank != 2 || a->rank < 1)
        return tdc_fail(c, "%s: the CUDA MatMul takes a 2-D right operand (got rank %d)", op->name, b->rank);
    int64_t K = a->shape[a->rank - 1], N = transB ? b->shape[0] : b->shape[1];
    if ((transB ? b->shape[1] : b->shape[0]) != K)
        return tdc_fail(c, "%s: inner dims differ", op->name);
    int64_t M = K ? tdc_numel(a) / K : 0;
    if (bias && tdc_numel(bias) != N)
        return tdc_fail(c, "%s: bias must have N = %lld elements", op->name, (long long)N);
    return tdc_gemm(c, a->dtype, M, N, K, op->fattr[0], a->data, K, b->data, transB, bias ? bias->data : NULL,
                    o->data, N);
}
