/* The pipeline steps as library calls: export, optimize, convert. Each is what the
 * command of the same name does, with the same defaults, and follows the API's
 * conventions (tdeploy.h): a td_status, and on failure a message on the td_ctx that
 * says what failed, where, and what to do. Outputs are written atomically (a
 * temporary file or folder renamed into place), so a failure never leaves a
 * half-written file behind.
 *
 *   td_export_request ex;
 *   td_export_request_init(&ex);
 *   ex.model_dir = "path/to/hf-model";        // config.json + *.safetensors
 *   ex.output = "model.onnx";
 *   if (td_export_model(ctx, &ex) != TD_OK) ... td_error_message(ctx)
 *
 *   td_optimize_request op;
 *   td_optimize_request_init(&op);
 *   op.input = "model.onnx";
 *   op.output = "model-optimized.onnx";
 *   op.precision = TD_PRECISION_FP16;
 *   td_optimize_model(ctx, &op);
 *
 * Every request struct must be set up with its _init function first: fields added
 * in later versions then get their defaults. */
#ifndef TDEPLOY_PIPELINE_H
#define TDEPLOY_PIPELINE_H

#include "tdeploy/session.h"
#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- export: HF model directory -> standard ONNX ---- */
typedef struct td_export_request {
    const char *model_dir;  /* HF model directory (config.json + *.safetensors); required */
    const char *output;     /* .onnx path; required */
    const char *task;       /* NULL = derived from the model; else a task name as `tdeploy export --task` takes */
    int opset;              /* 0 = the default opset (17) */
    td_precision precision; /* TD_PRECISION_FP32 (default) or TD_PRECISION_FP16 weights */
    bool int32_inputs;      /* int32 graph inputs, cast to int64 inside the graph */
} td_export_request;

/* What the export wrote. */
typedef struct td_export_info {
    char model_type[32];  /* config.json's model_type ("bert", ...) */
    char task[32];        /* the task that was exported ("feature-extraction", ...) */
    int opset;
    int64_t layers, hidden, heads, vocab;
    int64_t num_labels;   /* 0 when the task has no labels */
    uint64_t file_bytes;  /* size of the written .onnx (+ external data) */
} td_export_info;

TD_API void td_export_request_init(td_export_request *req);
/* info may be NULL. */
TD_API td_status td_export_model(td_ctx *ctx, const td_export_request *req, td_export_info *info);

/* ---- optimize: ONNX -> fused (or portable) ONNX, optionally fp16/bf16 ---- */
typedef struct td_optimize_request {
    const char *input;      /* .onnx path; required */
    const char *output;     /* .onnx path; required (may equal input: the file is replaced atomically) */
    bool portable;          /* true: standard ONNX ops only; false (default): com.microsoft fused ops */
    td_precision precision; /* TD_PRECISION_FP32 (default), FP16, BF16 (sensitive parts stay fp32) or INT8
                               (weight products -> DynamicQuantizeMatMul; not with portable) */
    bool keep_io_types;     /* fp16/bf16: graph inputs/outputs stay float32 (default true) */
} td_optimize_request;

typedef struct td_optimize_info {
    int nodes_before, nodes_after;
    double seconds; /* optimization passes only (not load/save) */
} td_optimize_info;

TD_API void td_optimize_request_init(td_optimize_request *req);
/* info may be NULL. */
TD_API td_status td_optimize_model(td_ctx *ctx, const td_optimize_request *req, td_optimize_info *info);

/* ---- convert: the whole pipeline into an output folder ---- */
typedef struct td_convert_request {
    const char *model;      /* HF directory or org/name (local HF cache, else downloaded); required */
    const char *output_dir; /* required */
    const char *task;       /* NULL = derived from the model */
    const char *backends;   /* comma-separated, e.g. "cpu"; NULL = "cpu" */
    const char *precision;  /* "fp32" (default when NULL), "fp16", "bf16", "int8" */
    int64_t seq_len[3];     /* min, opt, max sequence length; zeros = the command's defaults */
    int64_t batch_size[3];  /* min, opt, max batch size; zeros = the command's defaults */
    double atol, rtol;      /* < 0 (default): the precision's defaults */
    int nb_measures;        /* benchmark runs per shape; 0 = the command's default */
    int threads;            /* 0 = one per core */
    bool force;             /* replace an output_dir that tdeploy did not create (default: refuse) */
    bool no_bench;          /* skip the benchmark step */
} td_convert_request;

typedef struct td_convert_info {
    int n_failed_backends; /* backends that failed validation (TD_OK is still returned; see report.json) */
    char report_path[1024];
} td_convert_info;

TD_API void td_convert_request_init(td_convert_request *req);
/* TD_OK when every step ran; a backend that fails validation gives TD_OK with
 * info->n_failed_backends > 0 (the CLI exits 3 then). info may be NULL. */
TD_API td_status td_convert_model(td_ctx *ctx, const td_convert_request *req, td_convert_info *info);

#ifdef __cplusplus
}
#endif
#endif
