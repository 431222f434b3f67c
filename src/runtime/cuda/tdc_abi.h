/* The C ABI between libtdeploy (plain C, no CUDA headers) and
 * libtdeploy_cuda.so (the CUDA kernels, cuBLASLt GEMMs and device memory).
 *
 * libtdeploy dlopen()s the CUDA library only when the CUDA backend is asked
 * for, looks up tdc_get_api and checks abi_version, so the binary runs on
 * machines without a GPU, driver or CUDA runtime. Every entry returns 0 on
 * success or non-zero with a message (naming the failing CUDA/cuBLASLt call)
 * readable with tdc_api.error(ctx). Nothing here aborts.
 *
 * Tensors are described by tdc_tensor: ONNX dtype numbers, row-major shape,
 * a device pointer. Op descriptors (tdc_op) carry one op's tensors, integer
 * and float attributes, and its device scratch. */
#ifndef TD_RUNTIME_CUDA_TDC_ABI_H
#define TD_RUNTIME_CUDA_TDC_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TDC_ABI_VERSION 3
#define TDC_MAX_RANK 8
#define TDC_MAX_IN 10
#define TDC_MAX_OUT 4

typedef struct tdc_tensor {
    int32_t dtype; /* ONNX TensorProto.DataType */
    int32_t rank;
    int64_t shape[TDC_MAX_RANK];
    void *data; /* device memory */
} tdc_tensor;

typedef enum tdc_op_kind {
    TDC_EW = 1,         /* elementwise with numpy broadcasting; iattr[0] = tdc_ew_op */
    TDC_COPY_STRIDED,   /* out[c] = in[sum c_d * iattr... ] see tdc_strided */
    TDC_GATHER,         /* in0 data, in1 indices; iattr[0] = axis (normalized) */
    TDC_GATHER_ELEMENTS,/* in0 data, in1 indices; iattr[0] = axis */
    TDC_CUMSUM,         /* in0 x; iattr[0] = axis, [1] exclusive, [2] reverse */
    TDC_LAYERNORM,      /* in0 x, in1 gamma, in2 beta|none; out0 y, out1 mean, out2 inv_std; iattr[0] = row size; fattr[0] eps */
    TDC_SKIP_LAYERNORM, /* in0 x, in1 skip, in2 gamma, in3 beta, in4 bias; out0 y, out1 mean, out2 inv_std, out3 sum; fattr[0] eps */
    TDC_EMBED_LAYERNORM,/* in 0..8 as com.microsoft EmbedLayerNormalization; out0 y, out1 mask_index, out2 sum; fattr[0] eps */
    TDC_ATTENTION,      /* com.microsoft Attention: in0 x, in1 w, in2 bias, in3 mask_index, in5 attention_bias; iattr[0] heads,
                           [1] unidirectional, [2..4] q/k/v hidden sizes; fattr[0] scale (0 = 1/sqrt(D)), [1] mask_filter */
    TDC_MATMUL,         /* in0 A (..., M, K), in1 B (K, N) or (N, K) with iattr[0] transB, in2 bias (N) | none; fattr[0] alpha;
                           iattr[1] epilogue (0 none, 1 bias) */
    TDC_SOFTMAX,        /* over the last axis */
    TDC_REDUCE_SUM,     /* in0 x; out0 y (kept axes in order, contiguous); iattr[0] bit d set = axis d reduced */
} tdc_op_kind;

typedef enum tdc_ew_op {
    TDC_EW_COPY = 0, TDC_EW_ADD, TDC_EW_SUB, TDC_EW_MUL, TDC_EW_DIV, TDC_EW_POW, TDC_EW_MOD,
    TDC_EW_EQUAL, TDC_EW_GREATER, TDC_EW_LESS, TDC_EW_GREATER_EQ, TDC_EW_LESS_EQ,
    TDC_EW_AND, TDC_EW_OR, TDC_EW_XOR, TDC_EW_NOT, TDC_EW_WHERE, TDC_EW_MIN, TDC_EW_MAX,
    TDC_EW_NEG, TDC_EW_ABS, TDC_EW_SQRT, TDC_EW_EXP, TDC_EW_LOG, TDC_EW_TANH, TDC_EW_RELU, TDC_EW_SIGMOID,
    TDC_EW_ERF, TDC_EW_RECIPROCAL,
    TDC_EW_GELU_ERF,  /* x (+ in1 broadcast bias): com.microsoft Gelu / BiasGelu */
    TDC_EW_GELU_TANH, /* FastGelu */
    TDC_EW_COUNT
} tdc_ew_op;

typedef struct tdc_op {
    int kind;
    int n_in, n_out;
    tdc_tensor in[TDC_MAX_IN];   /* data NULL = omitted optional input */
    tdc_tensor out[TDC_MAX_OUT]; /* data NULL = output not wanted */
    int64_t iattr[16];
    float fattr[4];
    /* TDC_COPY_STRIDED: copy shape = out[0] shape; source element offset =
     * iattr[0] + sum_d c_d * strides[d] (elements, may be 0 or negative);
     * destination offset sum_d c_d * contiguous stride, or with iattr[1] = 1
     * iattr[2] + sum_d c_d * dst_strides[d] (Concat writes each input into its slab) */
    int64_t strides[TDC_MAX_RANK];
    int64_t dst_strides[TDC_MAX_RANK];
    void *scratch; /* device memory, scratch_bytes long */
    size_t scratch_bytes;
    const char *name; /* node name, for messages */
} tdc_op;

typedef struct tdc_ctx tdc_ctx; /* one per session: stream, cuBLASLt handle, workspace, error flag */

typedef struct tdc_device_info {
    char name[128];
    int cc_major, cc_minor;
    int runtime_version, driver_version;
    size_t free_bytes, total_bytes;
    int cublaslt_version; /* cublasLtGetVersion(): tuned algorithms are only valid for the library that timed them */
} tdc_device_info;

/* One GEMM shape bucket and the cuBLASLt algorithm configuration measured fastest for it (`tdeploy build`'s
 * tuning; stored in engines and the timing cache, docs/formats.md). Row-major C (m, n) = A (m, k) @ op(B).
 * m is a bucket: the power of two a GEMM's row count rounds up to. */
typedef struct tdc_gemm_choice {
    int32_t dtype;    /* ONNX dtype of A, B, C and bias: 1 fp32, 10 fp16, 16 bf16 */
    int32_t trans_b;  /* B stored (n, k) */
    int32_t epilogue; /* 0 none, 1 bias (2 bias+GELU reserved, not emitted yet) */
    int64_t m, n, k;
    /* cublasLtMatmulAlgoConfigAttributes_t values: ID, TILE_ID, STAGES_ID, SPLITK_NUM, REDUCTION_SCHEME,
     * CTA_SWIZZLING, CUSTOM_OPTION, CLUSTER_SHAPE_ID, INNER_SHAPE_ID */
    int32_t algo_id, tile, stages, splitk, reduction, swizzle, custom, cluster, inner;
    float us;         /* its measured time, microseconds (median of the timed runs) */
} tdc_gemm_choice;

typedef struct tdc_api {
    int abi_version;
    /* Device 0's properties; fails when there is no usable GPU/driver. */
    int (*device_info)(tdc_device_info *out, char *err, size_t errn);
    int (*ctx_create)(tdc_ctx **out, char *err, size_t errn);
    void (*ctx_free)(tdc_ctx *c);
    const char *(*error)(const tdc_ctx *c);
    int (*alloc)(tdc_ctx *c, size_t n, void **out);
    void (*free)(tdc_ctx *c, void *p);
    int (*upload)(tdc_ctx *c, void *dst, const void *src, size_t n);   /* stream-ordered */
    int (*download)(tdc_ctx *c, void *dst, const void *src, size_t n); /* stream-ordered */
    int (*memset0)(tdc_ctx *c, void *dst, size_t n);
    int (*sync)(tdc_ctx *c); /* waits for the stream; reports a device-side error flag (bad index ...) */
    int (*run_op)(tdc_ctx *c, const tdc_op *op);
    /* CUDA graphs: record the ops enqueued between begin and end, replay with launch. */
    int (*graph_begin)(tdc_ctx *c);
    int (*graph_end)(tdc_ctx *c, void **graph_exec);
    int (*graph_launch)(tdc_ctx *c, void *graph_exec);
    void (*graph_free)(void *graph_exec);
    /* Timing with CUDA events on the context's stream: mark, then elapsed ms since the mark. */
    int (*event_mark)(tdc_ctx *c);
    int (*event_elapsed)(tdc_ctx *c, float *ms);
    /* Use the simple reference kernels instead of the optimized ones (tests compare both). */
    void (*set_reference)(tdc_ctx *c, int on);
    /* Tuning: time up to top_k cuBLASLt heuristic candidates for the shape in *ch (dtype, trans_b, epilogue,
     * m, n, k) on scratch buffers and fill *ch's algorithm fields and us with the fastest; *tried = candidates
     * that ran. Synchronous; never enqueued inside a CUDA graph. */
    int (*gemm_tune)(tdc_ctx *c, tdc_gemm_choice *ch, int top_k, int *tried);
    /* The measured choices the context's GEMMs use (copied); a GEMM with no matching bucket, or whose stored
     * algorithm cuBLASLt no longer accepts, takes the heuristic's first answer. */
    int (*gemm_set_choices)(tdc_ctx *c, const tdc_gemm_choice *choices, int n);
} tdc_api;

typedef const tdc_api *(*tdc_get_api_fn)(int abi_version);
const tdc_api *tdc_get_api(int abi_version);

#ifdef __cplusplus
}
#endif
#endif
