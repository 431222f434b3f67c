/* Inference sessions: load an ONNX model (or take an in-memory IR graph), bind
 * input tensors, run, read outputs.
 *
 *   td_session_options opt;
 *   td_session_options_init(&opt);
 *   opt.threads = 4;
 *   td_session *s;
 *   if (td_session_create_file(ctx, "model.onnx", &opt, &s) != TD_OK) ... td_error_message(ctx)
 *   td_session_set_input(ctx, s, "input_ids", TD_DTYPE_INT64, 2, (int64_t[]){1, 8}, ids, sizeof ids);
 *   td_session_run(ctx, s);
 *   td_session_output out;
 *   td_session_get_output(ctx, s, 0, &out);   // out.data valid until the next run
 *   td_session_free(s);
 *
 * Every op, attribute value and dtype of the model is checked when the session
 * is created; anything the runtime does not implement is an error there (naming
 * the node, op, opset and dtype), never a silent skip at run time.
 *
 * Inputs may have any shape the graph's declared dims allow: fixed dims must
 * match, symbolic dims ("batch", "sequence") may take any value but inputs that
 * share a symbol must agree. Memory for activations is planned once per set of
 * input shapes; running again with the same shapes reuses the plan and does not
 * allocate.
 *
 * Threading: a session is not thread-safe; use one per thread (they may share
 * nothing but the model file). */
#ifndef TDEPLOY_SESSION_H
#define TDEPLOY_SESSION_H

#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types use ONNX TensorProto.DataType numbers. */
enum {
    TD_DTYPE_FLOAT32 = 1,
    TD_DTYPE_INT32 = 6,
    TD_DTYPE_INT64 = 7,
    TD_DTYPE_BOOL = 9,
    TD_DTYPE_FLOAT16 = 10,
    TD_DTYPE_BFLOAT16 = 16,
};

typedef enum td_precision {
    TD_PRECISION_FP32 = 0, /* weights stored as in the model */
    TD_PRECISION_FP16 = 1, /* MatMul/Gemm constant weights stored as float16, fp32 accumulation */
    TD_PRECISION_BF16 = 2, /* ... as bfloat16, fp32 accumulation */
    TD_PRECISION_INT8 = 3, /* td_optimize_model only: weight products quantized into the graph
                              (DynamicQuantizeMatMul); sessions take no int8 option, the graph carries it */
} td_precision;

typedef struct td_session_options {
    int threads;            /* worker threads for ops; 0 = one per online core */
    td_precision precision; /* storage precision of prepacked weights */
    const char *backend;    /* "cpu" (default when NULL); "reference": plain reference kernels, one thread */
} td_session_options;

TD_API void td_session_options_init(td_session_options *opt);

typedef struct td_session td_session;
struct td_model; /* src/onnx/ir.h */

/* Load an ONNX file or an engine and build a session that owns the loaded model. */
TD_API td_status td_session_create_file(td_ctx *ctx, const char *onnx_path, const td_session_options *opt,
                                 td_session **out);
/* Build a session over an in-memory model. The model is borrowed: it must
 * outlive the session and not be modified while the session exists. */
TD_API td_status td_session_create_model(td_ctx *ctx, const struct td_model *model, const td_session_options *opt,
                                  td_session **out);
TD_API void td_session_free(td_session *s); /* NULL is harmless */

/* A model file loaded once for several sessions (one per host thread): an
 * ONNX file or an engine (.engine, written by `tdeploy build`). Each session
 * has its own stream and activation memory; the weights are read once and, on
 * the CUDA backend, uploaded to the GPU once. Engine sessions default to the
 * CUDA backend; their inputs must fit one of the engine's shape profiles.
 * Close the file after every session created from it is freed. */
typedef struct td_model_file td_model_file;
TD_API td_status td_model_file_open(td_ctx *ctx, const char *path, td_model_file **out);
TD_API td_status td_session_create_shared(td_ctx *ctx, td_model_file *file, const td_session_options *opt,
                                   td_session **out);
TD_API void td_model_file_close(td_model_file *f); /* NULL is harmless */
/* True when the file was an engine. */
TD_API bool td_model_file_is_engine(const td_model_file *f);

/* Graph inputs / outputs. Names are owned by the session. */
TD_API int td_session_input_count(const td_session *s);
TD_API int td_session_output_count(const td_session *s);
TD_API const char *td_session_input_name(const td_session *s, int i);
TD_API const char *td_session_output_name(const td_session *s, int i);
TD_API int td_session_input_index(const td_session *s, const char *name);  /* -1 if absent */
TD_API int td_session_output_index(const td_session *s, const char *name); /* -1 if absent */
/* Declared type of input i: dtype, rank and dims (-1 where the dim is symbolic
 * or unknown; params[d] is the symbol or NULL). Arrays are owned by the session. */
TD_API void td_session_input_info(const td_session *s, int i, int32_t *dtype, int *rank, const int64_t **dims,
                           const char *const **params);

/* Bind input `name`. data (nbytes = numel * element size) is borrowed, not
 * copied: it must stay valid and unchanged until td_session_run returns.
 * Fails with a message naming the input, axis and values when dtype or shape
 * contradict the graph's declaration. */
TD_API td_status td_session_set_input(td_ctx *ctx, td_session *s, const char *name, int32_t dtype, int rank,
                               const int64_t *shape, const void *data, size_t nbytes);
/* Run with the bound inputs (every graph input must be bound). */
TD_API td_status td_session_run(td_ctx *ctx, td_session *s);

/* An output of the last (successful) run. data points into session memory that
 * stays valid until the next td_session_run or td_session_free. */
typedef struct td_session_output {
    const char *name;
    int32_t dtype;
    int rank;
    const int64_t *shape; /* rank entries */
    const void *data;
    size_t nbytes;
} td_session_output;

TD_API td_status td_session_get_output(td_ctx *ctx, const td_session *s, int i, td_session_output *out);

/* Statistics of the current plan (for tests and `infer --json`). */
typedef struct td_session_stats {
    size_t arena_bytes;    /* activation arena of the current plan */
    size_t arena_naive_bytes; /* sum of the planned activations' sizes */
    size_t hoisted_bytes;  /* shape-only values computed once per plan */
    size_t weight_bytes;   /* prepacked weights owned by the session */
    uint64_t plans;        /* how many times a plan was built */
    uint64_t runs;
    uint64_t allocs;       /* heap allocations the session made while planning and running (a run with the
                              planned shapes makes none): tests prove per-step work allocation-free with it */
    int nodes, hoisted_nodes;
    int fused_nodes; /* consumers folded into a producer's GEMM epilogue (Gelu: not run; SkipLayerNorm: runs
                        without its residual add) */
    double device_ms; /* CUDA backend: GPU time of the last run's forward pass (CUDA events), else 0 */
} td_session_stats;

TD_API void td_session_get_stats(const td_session *s, td_session_stats *out);

#ifdef __cplusplus
}
#endif
#endif
