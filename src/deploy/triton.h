/* Triton Inference Server model repository for an ONNX model, with an optional
 * text front end (the layout transformer-deploy produces):
 *
 *   OUT/NAME/config.pbtxt             platform "onnxruntime_onnx", dynamic batching, instance group
 *   OUT/NAME/1/model.onnx             copy (reflink where possible) of the ONNX file (+ its external data)
 *   OUT/NAME_tokenize/config.pbtxt    backend "python": TEXT (TYPE_STRING) -> the model's id inputs
 *   OUT/NAME_tokenize/1/model.py      HF `tokenizers` on the copied tokenizer.json
 *   OUT/NAME_tokenize/1/tokenizer.json (+ tokenizer_config.json, special_tokens_map.json when present)
 *   OUT/NAME_inference/config.pbtxt   platform "ensemble": TEXT -> NAME_tokenize -> NAME -> outputs
 *   OUT/NAME_inference/1/             (empty: Triton wants a version directory)
 *
 * With batch_max > 0 every model has max_batch_size = batch_max and the batch
 * dimension is left out of dims (TEXT is dims [1]: one string per batch row);
 * with batch_max == 0 nothing is batched by Triton and dims are the full shapes
 * (TEXT is dims [-1]: a list of strings per request).
 *
 * With serving TD_TRITON_SERVE_TDEPLOY the repository holds one model for the
 * tdeploy backend (src/triton_backend/), with no Python and no ensemble:
 *
 *   OUT/NAME/config.pbtxt             backend "tdeploy": the model's token inputs (optional, ragged batching),
 *                                     TEXT / TEXT_PAIR (TYPE_STRING [1], optional) when there is a tokenizer,
 *                                     the graph's outputs; parameters threads, precision, max_length, truncation
 *   OUT/NAME/1/model-optimized.onnx   copy of the ONNX file, reflinked where possible (+ external data)
 *   OUT/NAME/1/tokenizer.json (+ tokenizer_config.json, special_tokens_map.json)
 *
 * The repository is written into a temporary sibling directory of OUT and moved
 * into place only when complete (with the output marker, output_dir.h). An
 * existing OUT is a repository other models may share: only this model's folders
 * are replaced, each swapped in whole (renameat2 RENAME_EXCHANGE), and only when
 * tdeploy wrote them (config.pbtxt header) or with force; other models and files
 * are left alone, and a failure changes nothing there. */
#ifndef TD_DEPLOY_TRITON_H
#define TD_DEPLOY_TRITON_H

#include "core/dtype.h"
#include "tdeploy/tdeploy.h"
#include <stdbool.h>
#include <stdint.h>

#define TD_TRITON_MAX_DIMS 8

/* dynamic_batching max_queue_delay_microseconds that convert and triton-repo write (Triton's own default too). With
 * a delay the batcher holds a lone request (concurrency 1) that long hoping for a second one; under load the
 * instance is busy and requests queue anyway, so batches form without it. bench/triton/c1_overhead.py measured
 * 0 against 100 on all-MiniLM-L6-v2 (docs/benchmarks.md): less queue time at concurrency 1, the same throughput
 * under 16 clients within the host's noise. */
#define TD_TRITON_DEFAULT_QUEUE_DELAY_US 0

typedef struct td_triton_tensor {
    const char *name; /* not owned (td_onnx_signature owns the names it fills in) */
    td_dtype dtype;                   /* I64, I32, F32, F16, BF16, F64, I8, U8, BOOL */
    int64_t dims[TD_TRITON_MAX_DIMS]; /* full shape, batch first; -1 = dynamic */
    size_t ndim;
} td_triton_tensor;

typedef enum td_triton_device { TD_TRITON_CPU = 0, TD_TRITON_GPU = 1 } td_triton_device;

/* Which Triton backend serves the model (`--triton-backend`). */
typedef enum td_triton_serving {
    TD_TRITON_SERVE_ONNXRUNTIME = 0, /* the layout above */
    TD_TRITON_SERVE_TDEPLOY,         /* OUT/NAME only: backend "tdeploy" (libtriton_tdeploy.so), below */
    TD_TRITON_SERVE_BOTH,            /* OUT/NAME on tdeploy + OUT/NAME_onnxruntime{,_tokenize,_inference} */
} td_triton_serving;

typedef struct td_triton_spec {
    const char *name;      /* model name: [A-Za-z0-9_.-], not starting with '.' or '-' */
    const char *onnx_path; /* the model file */
    const char *const *external_data; /* files the ONNX file references (relative to its folder); may be NULL */
    size_t n_external_data;
    const char *task;          /* recorded in the ensemble's parameters; may be NULL */
    const char *tokenizer_dir; /* folder with tokenizer.json; NULL: no tokenizer and no ensemble */
    const td_triton_tensor *inputs;
    size_t n_inputs;
    const td_triton_tensor *outputs;
    size_t n_outputs;
    int64_t batch_min, batch_opt, batch_max; /* batch_max 0: no Triton batching */
    int64_t max_queue_delay_us;              /* dynamic batching delay */
    int nb_instances;                        /* instance_group count (>= 1) */
    td_triton_device device;                 /* where the ONNX model runs; the tokenizer runs on CPU */
    int64_t max_length; /* tokenizer truncation; 0: from the model's sequence dimension, else none */
    bool force;         /* replace folders of this model's names that tdeploy did not write */
    td_triton_serving serving;
    int threads;           /* tdeploy backend: session threads (0 = one per core) */
    const char *precision; /* tdeploy backend: fp32 | fp16 | bf16 (NULL: fp32) */
    /* A decoder (`triton-repo --task text-generation`): OUT/NAME is the decoupled generation model below instead,
     * with the tokenizer and HF config files from tokenizer_dir (tokenizer.json required); inputs, outputs,
     * batch sizes and max_length are not used. Only serving TD_TRITON_SERVE_TDEPLOY on TD_TRITON_CPU. */
    bool generation;
    int64_t max_new_tokens; /* generation: default of a request without max_new_tokens (>= 1) */
} td_triton_spec;

/* A text-generation model for the tdeploy backend, served in Triton's decoupled (streaming) mode
 * (src/triton_backend/tb_generate.c; `tdeploy convert --task text-generation` writes it):
 *
 *   ROOT/NAME/config.pbtxt     backend "tdeploy", max_batch_size 0, model_transaction_policy { decoupled: true },
 *                              TEXT (+ optional max_new_tokens, temperature, top_k, top_p, repetition_penalty,
 *                              seed) in, TEXT_OUTPUT pieces + FINISH_REASON ("eos", "length" or "context") out;
 *                              parameters task, max_new_tokens,
 *                              threads, precision
 *   ROOT/NAME/1/model-optimized.onnx (+ external data), tokenizer.json, tokenizer_config.json,
 *              special_tokens_map.json, config.json, generation_config.json (those present in model_dir)
 *
 * ROOT is a folder the caller owns (convert's staging folder): NAME is written into it directly.
 * td_triton_write_repository writes the same model into a repository with its safety rules (td_triton_spec's
 * generation). */
typedef struct td_triton_gen_spec {
    const char *name;      /* model name, as td_triton_spec */
    const char *onnx_path; /* the decoder with a KV cache (export/decoder.h layout) */
    const char *const *external_data; /* relative to the ONNX file's folder; may be NULL */
    size_t n_external_data;
    const char *model_dir;  /* the tokenizer and HF config files (tokenizer.json required) */
    int nb_instances;       /* >= 1 */
    int threads;            /* session threads per instance (0 = one per core) */
    const char *precision;  /* fp32 | fp16 | bf16 (NULL: fp32) */
    int64_t max_new_tokens; /* default of a request without max_new_tokens (>= 1) */
} td_triton_gen_spec;

td_status td_triton_write_generation_model(td_ctx *ctx, const td_triton_gen_spec *sp, const char *root);

/* "tdeploy" | "onnxruntime" | "both" -> *out; false for anything else. */
bool td_triton_serving_parse(const char *s, td_triton_serving *out);

/* Write the repository described above to out_dir. */
td_status td_triton_write_repository(td_ctx *ctx, const td_triton_spec *spec, const char *out_dir);

/* Triton's data_type name ("TYPE_INT64"), NULL when Triton has none for t. */
const char *td_triton_type_name(td_dtype t);

/* The model.py of the tokenizer model (exposed for tests). */
extern const char td_triton_tokenizer_model_py[];

#endif
