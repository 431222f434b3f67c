/* libtdeploy_cuda.so entry point: device queries, per-session contexts
 * (stream, cuBLASLt handle and workspace, device error flag), memory,
 * CUDA graphs, event timing and the op dispatcher. */
#include "runtime/cuda/tdc_internal.cuh"

#include <stdarg.h>
#include <string.h>

int tdc_fail(tdc_ctx *c, const char *fmt, ...) {
    if (c) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, sizeof c->err, fmt, ap);
        va_end(ap);
    }
    return 1;
}

static int fail_buf(char *err, size_t errn, const char *what, cudaError_t e) {
    if (err && errn)
        snprintf(err, errn, "%s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return 1;
}

static int device_info(tdc_device_info *out, char *err, size_t errn) {
    memset(out, 0, sizeof *out);
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        return fail_buf(err, errn, "cudaGetDeviceCount", e);
    if (n < 1) {
        snprintf(err, errn, "no CUDA device found (cudaGetDeviceCount returned 0)");
        return 1;
    }
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess)
        return fail_buf(err, errn, "cudaGetDeviceProperties", e);
    memcpy(out->name, p.name, sizeof out->name - 1); /* p.name is NUL-terminated within 256 */
    out->name[sizeof out->name - 1] = 0;
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    cudaRuntimeGetVersion(&out->runtime_version);
    cudaDriverGetVersion(&out->driver_version);
    if ((e = cudaMemGetInfo(&out->free_bytes, &out->total_bytes)) != cudaSuccess)
        return fail_buf(err, errn, "cudaMemGetInfo", e);
    out->cublaslt_version = (int)cublasLtGetVersion();
    return 0;
}

static void ctx_free(tdc_ctx *c) {
    if (!c)
        return;
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    if (c->capturing) {
        cudaGraph_t g;
        cudaStreamEndCapture(c->stream, &g);
        if (g)
            cudaGraphDestroy(g);
    }
    cudaFree(c->workspace);
    cudaFree(c->dev_flag);
    free(c->choices);
    if (c->ev_start)
        cudaEventDestroy(c->ev_start);
    if (c->ev_stop)
        cudaEventDestroy(c->ev_stop);
    if (c->lt)
        cublasLtDestroy(c->lt);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

static int ctx_create(tdc_ctx **out, char *err, size_t errn) {
    *out = NULL;
    tdc_ctx *c = (tdc_ctx *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errn, "out of host memory for a CUDA context");
        return 1;
    }
    cudaError_t e;
#define STEP(call)                                                                                                 \
    if ((e = (call)) != cudaSuccess) {                                                                             \
        fail_buf(err, errn, #call, e);                                                                             \
        ctx_free(c);                                                                                               \
        return 1;                                                                                                  \
    }
    STEP(cudaSetDevice(0));
    STEP(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    c->workspace_bytes = 32u << 20;
    STEP(cudaMalloc(&c->workspace, c->workspace_bytes));
    STEP(cudaMalloc((void **)&c->dev_flag, sizeof(int)));
    STEP(cudaMemset(c->dev_flag, 0, sizeof(int)));
    STEP(cudaEventCreate(&c->ev_start));
    STEP(cudaEventCreate(&c->ev_stop));
#undef STEP
    cublasStatus_t s = cublasLtCreate(&c->lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errn, "cublasLtCreate failed: %s", cublasLtGetStatusString(s));
        ctx_free(c);
        return 1;
    }
    /* TDEPLOY_CUDA_REFERENCE=1: every op on its simple reference kernel (plain GEMM instead of cuBLASLt, no
     * fast paths), for bisecting a numerical difference and for sanitizer runs that must see every store */
    const char *ref = getenv("TDEPLOY_CUDA_REFERENCE");
    c->reference = ref && *ref == '1';
    /* TDEPLOY_CUDA_POISON=1: every buffer allocated through this context (activation arena and scratch, input
     * and weight copies) starts as 0xFF bytes, NaN in fp32/fp16/bf16 and -1 as an integer, so a kernel that
     * reads an element nobody wrote turns the outputs non-finite or changes them (a check that does not rely
     * on compute-sanitizer seeing every store; tests/gpu compares poisoned and plain runs bit for bit) */
    const char *poison = getenv("TDEPLOY_CUDA_POISON");
    c->poison = poison && *poison == '1';
    *out = c;
    return 0;
}

static const char *ctx_error(const tdc_ctx *c) { return c ? c->err : "no CUDA context"; }

static int d_alloc(tdc_ctx *c, size_t n, void **out) {
    *out = NULL;
    TDC_CUDA(c, cudaMalloc(out, n ? n : 1));
    if (c->poison) {
        cudaError_t e = cudaMemsetAsync(*out, 0xff, n ? n : 1, c->stream);
        if (e != cudaSuccess) {
            cudaFree(*out);
            *out = NULL;
            return tdc_fail(c, "cudaMemsetAsync (TDEPLOY_CUDA_POISON) failed: %s", cudaGetErrorString(e));
        }
    }
    return 0;
}
static void d_free(tdc_ctx *c, void *p) {
    if (p)
        cudaFree(p);
}
static int d_upload(tdc_ctx *c, void *dst, const void *src, size_t n) {
    if (n)
        TDC_CUDA(c, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream));
    return 0;
}
static int d_download(tdc_ctx *c, void *dst, const void *src, size_t n) {
    if (n)
        TDC_CUDA(c, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream));
    return 0;
}
static int d_memset0(tdc_ctx *c, void *dst, size_t n) {
    if (n)
        TDC_CUDA(c, cudaMemsetAsync(dst, 0, n, c->stream));
    return 0;
}
static int d_sync(tdc_ctx *c) {
    TDC_CUDA(c, cudaStreamSynchronize(c->stream));
    int flag = 0;
    TDC_CUDA(c, cudaMemcpy(&flag, c->dev_flag, sizeof flag, cudaMemcpyDeviceToHost));
    if (flag) {
        cudaMemset(c->dev_flag, 0, sizeof(int));
        return tdc_fail(c, "an index read on the GPU (Gather / EmbedLayerNormalization ids) was outside its table; "
                           "check input_ids against the vocabulary size");
    }
    return 0;
}

static int graph_begin(tdc_ctx *c) {
    TDC_CUDA(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->capturing = (cudaGraph_t)1; /* marker: capture open */
    return 0;
}
static int graph_end(tdc_ctx *c, void **exec_out) {
    cudaGraph_t g = NULL;
    *exec_out = NULL;
    c->capturing = NULL;
    TDC_CUDA(c, cudaStreamEndCapture(c->stream, &g));
    cudaGraphExec_t ex = NULL;
    cudaError_t e = cudaGraphInstantiate(&ex, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess)
        return tdc_fail(c, "cudaGraphInstantiate failed: %s", cudaGetErrorString(e));
    *exec_out = ex;
    return 0;
}
static int graph_launch(tdc_ctx *c, void *ex) {
    TDC_CUDA(c, cudaGraphLaunch((cudaGraphExec_t)ex, c->stream));
    return 0;
}
static void graph_free(void *ex) {
    if (ex)
        cudaGraphExecDestroy((cudaGraphExec_t)ex);
}
static int event_mark(tdc_ctx *c) {
    TDC_CUDA(c, cudaEventRecord(c->ev_start, c->stream));
    return 0;
}
static int event_elapsed(tdc_ctx *c, float *ms) {
    TDC_CUDA(c, cudaEventRecord(c->ev_stop, c->stream));
    TDC_CUDA(c, cudaEventSynchronize(c->ev_stop));
    TDC_CUDA(c, cudaEventElapsedTime(ms, c->ev_start, c->ev_stop));
    return 0;
}
static void set_reference(tdc_ctx *c, int on) { c->reference = on; }

static int run_op(tdc_ctx *c, const tdc_op *op) {
    switch (op->kind) {
    case TDC_EW: return tdc_ew(c, op);
    case TDC_COPY_STRIDED: return tdc_copy_strided(c, op);
    case TDC_GATHER: return tdc_gather(c, op);
    case TDC_GATHER_ELEMENTS: return tdc_gather_elements(c, op);
    case TDC_CUMSUM: return tdc_cumsum(c, op);
    case TDC_LAYERNORM: return tdc_layernorm(c, op);
    case TDC_SKIP_LAYERNORM: return tdc_skip_layernorm(c, op);
    case TDC_EMBED_LAYERNORM: return tdc_embed_layernorm(c, op);
    case TDC_SOFTMAX: return tdc_softmax(c, op);
    case TDC_ATTENTION: return tdc_attention(c, op);
    case TDC_MATMUL: return tdc_matmul(c, op);
    case TDC_REDUCE_SUM: return tdc_reduce_sum(c, op);
    default: return tdc_fail(c, "op kind %d has no CUDA kernel in this libtdeploy_cuda.so", op->kind);
    }
}

static const tdc_api api = {
    TDC_ABI_VERSION, device_info, ctx_create, ctx_free, ctx_error, d_alloc, d_free, d_upload, d_download, d_memset0,
    d_sync, run_op, graph_begin, graph_end, graph_launch, graph_free, event_mark, event_elapsed, set_reference,
    tdc_gemm_tune, tdc_gemm_set_choices,
};

extern "C" __attribute__((visibility("default"))) const tdc_api *tdc_get_api(int abi_version) {
    return abi_version == TDC_ABI_VERSION ? &api : NULL;
}
