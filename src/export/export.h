/* HF encoder -> standard ONNX exporter. Builds the graph directly from a model
 * directory's config.json + safetensors (no tracing): initializers keep the HF
 * tensor names and point into the safetensors mapping, so the saver streams them
 * to the output file without an intermediate copy.
 *
 * Supported: BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA (model_type in
 * config.json), tasks below, opsets 14..21, fp32 or fp16 weights; decoders
 * (GPT-2, Llama, Mistral, Qwen2, Phi-3) for text-generation in fp32 (decoder.h). */
#ifndef TD_EXPORT_EXPORT_H
#define TD_EXPORT_EXPORT_H

#include "core/dtype.h"
#include "onnx/ir.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum td_export_task {
    TD_TASK_AUTO = 0,          /* from config.architectures / modules.json */
    TD_TASK_FEATURES,          /* last_hidden_state (+ pooler_output when the checkpoint has a pooler) */
    TD_TASK_EMBEDDING,         /* sentence-transformers: pooling (+ Normalize) -> sentence_embedding */
    TD_TASK_CLASSIFICATION,    /* logits (batch, num_labels) */
    TD_TASK_TOKEN_CLASSIFICATION, /* logits (batch, sequence, num_labels) */
    TD_TASK_QUESTION_ANSWERING,   /* start_logits, end_logits (batch, sequence) */
    TD_TASK_TEXT_GENERATION,      /* decoders: logits + present.N.key/value, KV cache in the Optimum layout */
} td_export_task;

/* "feature-extraction", "embedding", ... ; "auto" for TD_TASK_AUTO. */
const char *td_export_task_name(td_export_task t);
/* Parse a task name (also accepts the aliases "features", "sequence-classification",
 * "text-classification", "qa", "sentence-embedding", "text-generation-with-past",
 * "causal-lm"); false if unknown. */
bool td_export_task_parse(const char *s, td_export_task *out);

#define TD_EXPORT_OPSET_MIN 14
#define TD_EXPORT_OPSET_MAX 21
#define TD_EXPORT_OPSET_DEFAULT 17

typedef struct td_export_options {
    const char *model_dir;  /* HF model directory (config.json + *.safetensors) */
    const char *output;     /* .onnx path; required by td_export_to_file */
    td_export_task task;    /* TD_TASK_AUTO to derive it */
    int opset;              /* 0 = TD_EXPORT_OPSET_DEFAULT */
    td_dtype dtype;         /* TD_F32 (default when TD_UNDEFINED) or TD_F16 */
    bool int32_inputs;      /* int32 graph inputs, cast to int64 inside */
    bool cache_output;      /* write through the page cache (see td_onnx_save_options.keep_cached) */
    bool gguf_dequantize;   /* GGUF input: float32 weights instead of the file's blocks kept quantized
                             * (com.microsoft MatMulNBits / GatherBlockQuantized, the default) */
    bool gguf_int8_activations; /* GGUF input, blocks kept: MatMulNBits accuracy_level 4 (activations quantized
                                 * to int8 per block, llama.cpp's arithmetic: faster, answers differ) instead of
                                 * 0 (fp32 activations: the dequantized model's results, the default) */
} td_export_options;

#define TD_EXPORT_MAX_IO 4

typedef struct td_export_summary {
    char model_type[32];
    char architecture[96];
    td_export_task task;
    int opset;
    td_dtype dtype;
    int64_t layers, hidden, heads, vocab;
    int n_inputs, n_outputs;
    char inputs[TD_EXPORT_MAX_IO][32];
    char outputs[TD_EXPORT_MAX_IO][32];
    int64_t num_labels;      /* 0 when the task has no labels */
    int n_initializers;
    int n_nodes;
    uint64_t weight_bytes;   /* sum of initializer bytes */
    uint64_t file_bytes;     /* size of the written .onnx (+ external data) */
    bool external_data;
    double seconds;
} td_export_summary;

/* Build the ONNX model in memory. *out is owned by the caller (td_model_free).
 * The initializers reference the safetensors mapping (kept alive by them). */
td_status td_export_build(td_ctx *ctx, const td_export_options *opt, td_model **out, td_export_summary *summary);

/* Build and save to opt->output atomically (no partial file on any failure);
 * external data is used automatically when the model exceeds 2 GB. */
td_status td_export_to_file(td_ctx *ctx, const td_export_options *opt, td_export_summary *summary);

#endif
