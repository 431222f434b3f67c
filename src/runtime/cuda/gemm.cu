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

/* The cuBLASLt description of one GEMM (row-major C = alpha A op(B) + bias as column-major C^T = B^T A^T). */
struct lt_gemm {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulPreference_t pref;
};

static void lt_destroy(lt_gemm *g) {
    if (g->pref)
        cublasLtMatmulPreferenceDestroy(g->pref);
    if (g->lc)
        cublasLtMatrixLayoutDestroy(g->lc);
    if (g->lb)
        cublasLtMatrixLayoutDestroy(g->lb);
    if (g->la)
        cublasLtMatrixLayoutDestroy(g->la);
    if (g->desc)
        cublasLtMatmulDescDestroy(g->desc);
    memset(g, 0, sizeof *g);
}

static int lt_create(tdc_ctx *c, lt_gemm *g, int dt, int64_t M, int64_t N, int64_t K, int64_t lda, int transB,
                     const void *bias, int64_t ldc) {
    memset(g, 0, sizeof *g);
    cudaDataType_t t = lt_type(dt);
    cublasOperation_t ta = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cublasStatus_t s;
#define LT(call)                                                                                                   \
    if ((s = (call)) != CUBLAS_STATUS_SUCCESS) {                                                                   \
        lt_destroy(g);                                                                                             \
        return tdc_fail(c, "%s failed: %s (GEMM %lldx%lldx%lld)", #call, cublasLtGetStatusString(s), (long long)M, \
                        (long long)N, (long long)K);                                                               \
    }
    LT(cublasLtMatmulDescCreate(&g->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias)
        LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    /* column-major "A" = B^T: N x K; stored (K, N) row-major = N x K col-major ld N, or (N, K) = K x N ld K, transposed */
    LT(transB ? cublasLtMatrixLayoutCreate(&g->la, t, (uint64_t)K, (uint64_t)N, K)
              : cublasLtMatrixLayoutCreate(&g->la, t, (uint64_t)N, (uint64_t)K, N));
    LT(cublasLtMatrixLayoutCreate(&g->lb, t, (uint64_t)K, (uint64_t)M, lda));
    LT(cublasLtMatrixLayoutCreate(&g->lc, t, (uint64_t)N, (uint64_t)M, ldc));
    LT(cublasLtMatmulPreferenceCreate(&g->pref));
    LT(cublasLtMatmulPreferenceSetAttribute(g->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->workspace_bytes,
                                            sizeof c->workspace_bytes));
#undef LT
    return 0;
}

/* Operand alignment tuning assumes: the activation arena's (runtime/arena.h TD_ARENA_ALIGN). */
#define TUNE_ALIGN 64u

/* Largest power of two (<= 256) dividing the address: cuBLASLt's heuristic assumes 256-byte aligned operands
 * unless told otherwise, and activations (arena offsets, views) can be less aligned. */
static uint32_t align_of(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a)
        a >>= 1;
    return a;
}

/* Tell the heuristic the operands' real alignment (cuBLASLt's A is our B, its B our A, C = D our C). */
static int lt_set_alignment(tdc_ctx *c, lt_gemm *g, const void *A, const void *B, const void *C, const void *bias) {
    uint32_t a = align_of(B), b = align_of(A), cd = align_of(C);
    if (bias && align_of(bias) < cd)
        cd = align_of(bias);
    const struct {
        cublasLtMatmulPreferenceAttributes_t k;
        uint32_t v;
    } prefs[] = {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, a}, {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, b},
                 {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, cd}, {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, cd}};
    for (size_t i = 0; i < sizeof prefs / sizeof prefs[0]; i++) {
        cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(g->pref, prefs[i].k, &prefs[i].v, sizeof prefs[i].v);
        if (s != CUBLAS_STATUS_SUCCESS)
            return tdc_fail(c, "cublasLtMatmulPreferenceSetAttribute (alignment) failed: %s",
                            cublasLtGetStatusString(s));
    }
    return 0;
}

static int64_t bucket_of(int64_t m) {
    int64_t b = 1;
    while (b < m)
        b <<= 1;
    return b;
}

/* The stored choice for this GEMM as a cuBLASLt algorithm that cuBLASLt accepts for it now, else false. */
static bool chosen_algo(tdc_ctx *c, const lt_gemm *g, int dt, int transB, bool bias, int64_t M, int64_t N, int64_t K,
                        cublasLtMatmulAlgo_t *algo) {
    int64_t mb = bucket_of(M);
    const tdc_gemm_choice *ch = NULL;
    for (int i = 0; i < c->n_choices && !ch; i++) {
        const tdc_gemm_choice *e = &c->choices[i];
        if (e->dtype == dt && e->trans_b == transB && e->epilogue == (bias ? 1 : 0) && e->m == mb && e->n == N &&
            e->k == K)
            ch = e;
    }
    if (!ch)
        return false;
    cudaDataType_t t = lt_type(dt);
    if (cublasLtMatmulAlgoInit(c->lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, t, t, t, t, ch->algo_id, algo) !=
        CUBLAS_STATUS_SUCCESS)
        return false;
    const struct {
        cublasLtMatmulAlgoConfigAttributes_t a;
        int32_t v;
        size_t bytes; /* the attribute's width (cublasLt.h) */
    } cfg[] = {{CUBLASLT_ALGO_CONFIG_TILE_ID, ch->tile, 4}, {CUBLASLT_ALGO_CONFIG_STAGES_ID, ch->stages, 4},
               {CUBLASLT_ALGO_CONFIG_SPLITK_NUM, ch->splitk, 4},
               {CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, ch->reduction, 4},
               {CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, ch->swizzle, 4}, {CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, ch->custom, 4},
               {CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, ch->inner, 2},
               {CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, ch->cluster, 2}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        uint32_t v32 = (uint32_t)cfg[i].v;
        uint16_t v16 = (uint16_t)cfg[i].v;
        if (cublasLtMatmulAlgoConfigSetAttribute(algo, cfg[i].a, cfg[i].bytes == 2 ? (const void *)&v16 : &v32,
                                                 cfg[i].bytes) != CUBLAS_STATUS_SUCCESS)
            return false;
    }
    cublasLtMatmulHeuristicResult_t res;
    if (cublasLtMatmulAlgoCheck(c->lt, g->desc, g->la, g->lb, g->lc, g->lc, algo, &res) != CUBLAS_STATUS_SUCCESS ||
        res.workspaceSize > c->workspace_bytes)
        return false;
    return true;
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
    lt_gemm g;
    if (lt_create(c, &g, dt, M, N, K, lda, transB, bias, ldc))
        return 1;
    int rc = 0;
    float beta = 0.0f;
    cublasLtMatmulAlgo_t algo;
    cublasStatus_t s;
    /* measured algorithms were timed (and chosen among candidates) for TUNE_ALIGN-aligned operands */
    bool aligned = align_of(A) >= TUNE_ALIGN && align_of(B) >= TUNE_ALIGN && align_of(C) >= TUNE_ALIGN &&
                   (!bias || align_of(bias) >= TUNE_ALIGN);
    if (lt_set_alignment(c, &g, A, B, C, bias)) {
        lt_destroy(&g);
        return 1;
    }
    if (!aligned || !chosen_algo(c, &g, dt, transB, bias != NULL, M, N, K, &algo)) {
        cublasLtMatmulHeuristicResult_t res;
        int found = 0;
        s = cublasLtMatmulAlgoGetHeuristic(c->lt, g.desc, g.la, g.lb, g.lc, g.lc, g.pref, 1, &res, &found);
        if (s != CUBLAS_STATUS_SUCCESS || !found) {
            rc = tdc_fail(c, "cublasLtMatmulAlgoGetHeuristic found no algorithm for GEMM %lldx%lldx%lld (%s)",
                          (long long)M, (long long)N, (long long)K, cublasLtGetStatusString(s));
            lt_destroy(&g);
            return rc;
        }
        algo = res.algo;
    }
    s = cublasLtMatmul(c->lt, g.desc, &alpha, B, g.la, A, g.lb, &beta, C, g.lc, C, g.lc, &algo, c->workspace,
                       c->workspace_bytes, c->stream);
    if (s != CUBLAS_STATUS_SUCCESS)
        rc = tdc_fail(c, "cublasLtMatmul failed: %s (GEMM %lldx%lldx%lld)", cublasLtGetStatusString(s), (long long)M,
                      (long long)N, (long long)K);
    lt_destroy(&g);
    return rc;
}

int tdc_gemm_set_choices(tdc_ctx *c, const tdc_gemm_choice *choices, int n) {
    free(c->choices);
    c->choices = NULL;
    c->n_choices = 0;
    if (n <= 0)
        return 0;
    c->choices = (tdc_gemm_choice *)malloc((size_t)n * sizeof *choices);
    if (!c->choices)
        return tdc_fail(c, "out of host memory for %d GEMM choices", n);
    memcpy(c->choices, choices, (size_t)n * sizeof *choices);
    c->n_choices = n;
    return 0;
}

/* Deterministic small values (|v| < 1) so tuning times real arithmetic, not zeros. */
__global__ void tune_fill_kernel(int dt, void *p, int64_t n, uint32_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        st_f(p, dt, i, ((float)(h & 0xffff) / 65536.0f - 0.5f));
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int tdc_gemm_tune(tdc_ctx *c, tdc_gemm_choice *ch, int top_k, int *tried) {
    enum { MAX_K = 16, WARM = 2, REPS = 11 };
    *tried = 0;
    int dt = ch->dtype;
    int64_t M = ch->m, N = ch->n, K = ch->k;
    size_t es = tdc_dtype_size(dt);
    if ((dt != DT_F32 && dt != DT_F16 && dt != DT_BF16) || M < 1 || N < 1 || K < 1 || top_k < 1)
        return tdc_fail(c, "gemm_tune: bad shape %lldx%lldx%lld or dtype %d", (long long)M, (long long)N,
                        (long long)K, dt);
    if (top_k > MAX_K)
        top_k = MAX_K;
    void *A = NULL, *B = NULL, *C = NULL, *bias = NULL;
    char *a_ = NULL, *b_ = NULL, *c_ = NULL, *bias_ = NULL;
    lt_gemm g;
    memset(&g, 0, sizeof g);
    cudaEvent_t e0 = NULL, e1 = NULL;
    int rc = 0;
    cublasLtMatmulHeuristicResult_t res[MAX_K];
    int found = 0, best = -1;
    float best_us = 0.0f, alpha = 1.0f, beta = 0.0f;
#define CU(call)                                                                                                   \
    do {                                                                                                           \
        cudaError_t e_ = (call);                                                                                   \
        if (e_ != cudaSuccess) {                                                                                   \
            rc = tdc_fail(c, "%s failed: %s (tuning GEMM %lldx%lldx%lld)", #call, cudaGetErrorString(e_),           \
                          (long long)M, (long long)N, (long long)K);                                               \
            goto out;                                                                                              \
        }                                                                                                          \
    } while (0)
    /* operands exactly TUNE_ALIGN-aligned (allocation + TUNE_ALIGN), as activations in the arena can be, so the
     * candidates are ones that run on such pointers */
    CU(cudaMalloc(&A, (size_t)(M * K) * es + TUNE_ALIGN));
    CU(cudaMalloc(&B, (size_t)(K * N) * es + TUNE_ALIGN));
    CU(cudaMalloc(&C, (size_t)(M * N) * es + TUNE_ALIGN));
    CU(cudaMalloc(&bias, (size_t)N * es + TUNE_ALIGN));
    a_ = (char *)A + TUNE_ALIGN, b_ = (char *)B + TUNE_ALIGN, c_ = (char *)C + TUNE_ALIGN, bias_ = (char *)bias + TUNE_ALIGN;
    tune_fill_kernel<<<tdc_blocks(M * K, 256), 256, 0, c->stream>>>(dt, a_, M * K, 1u);
    tune_fill_kernel<<<tdc_blocks(K * N, 256), 256, 0, c->stream>>>(dt, b_, K * N, 2u);
    tune_fill_kernel<<<tdc_blocks(N, 256), 256, 0, c->stream>>>(dt, bias_, N, 3u);
    CU(cudaGetLastError());
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    if (lt_create(c, &g, dt, M, N, K, K, ch->trans_b, ch->epilogue ? bias_ : NULL, N) ||
        lt_set_alignment(c, &g, a_, b_, c_, ch->epilogue ? bias_ : NULL)) {
        rc = 1;
        goto out;
    }
    if (cublasLtMatmulAlgoGetHeuristic(c->lt, g.desc, g.la, g.lb, g.lc, g.lc, g.pref, top_k, res, &found) !=
            CUBLAS_STATUS_SUCCESS || found < 1) {
        rc = tdc_fail(c, "cublasLtMatmulAlgoGetHeuristic found no algorithm for GEMM %lldx%lldx%lld", (long long)M,
                      (long long)N, (long long)K);
        goto out;
    }
    for (int a = 0; a < found; a++) {
        if (res[a].state != CUBLAS_STATUS_SUCCESS || res[a].workspaceSize > c->workspace_bytes)
            continue;
        float times[REPS];
        bool ok = true;
        for (int r = 0; r < WARM + REPS && ok; r++) {
            CU(cudaEventRecord(e0, c->stream));
            ok = cublasLtMatmul(c->lt, g.desc, &alpha, b_, g.la, a_, g.lb, &beta, c_, g.lc, c_, g.lc, &res[a].algo,
                                c->workspace, c->workspace_bytes, c->stream) == CUBLAS_STATUS_SUCCESS;
            CU(cudaEventRecord(e1, c->stream));
            CU(cudaEventSynchronize(e1));
            float ms = 0.0f;
            CU(cudaEventElapsedTime(&ms, e0, e1));
            if (r >= WARM)
                times[r - WARM] = ms * 1000.0f;
        }
        if (!ok)
            continue; /* a candidate that fails to run is skipped, not an error */
        (*tried)++;
        qsort(times, REPS, sizeof times[0], cmp_float);
        if (best < 0 || times[REPS / 2] < best_us) {
            best = a;
            best_us = times[REPS / 2];
        }
    }
    if (best < 0) {
        rc = tdc_fail(c, "no cuBLASLt candidate ran for GEMM %lldx%lldx%lld", (long long)M, (long long)N, (long long)K);
        goto out;
    }
    {
        const cublasLtMatmulAlgo_t *al = &res[best].algo;
        const struct {
            cublasLtMatmulAlgoConfigAttributes_t a;
            int32_t *v;
            size_t bytes; /* the attribute's width (cublasLt.h) */
        } cfg[] = {{CUBLASLT_ALGO_CONFIG_ID, &ch->algo_id, 4}, {CUBLASLT_ALGO_CONFIG_TILE_ID, &ch->tile, 4},
                   {CUBLASLT_ALGO_CONFIG_STAGES_ID, &ch->stages, 4}, {CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &ch->splitk, 4},
                   {CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &ch->reduction, 4},
                   {CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &ch->swizzle, 4},
                   {CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &ch->custom, 4},
                   {CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, &ch->inner, 2},
                   {CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &ch->cluster, 2}};
        for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
            uint32_t v32 = 0;
            uint16_t v16 = 0;
            size_t written = 0;
            if (cublasLtMatmulAlgoConfigGetAttribute(al, cfg[i].a, cfg[i].bytes == 2 ? (void *)&v16 : (void *)&v32,
                                                     cfg[i].bytes, &written) != CUBLAS_STATUS_SUCCESS)
                v32 = v16 = 0;
            *cfg[i].v = cfg[i].bytes == 2 ? (int32_t)v16 : (int32_t)(v32 & 0x7fffffff);
        }
        ch->us = best_us;
    }
out:
#undef CU
    lt_destroy(&g);
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    cudaStreamSynchronize(c->stream);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    cudaFree(bias);
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
