/* The parts of a Triton model configuration (config.pbtxt, handed to the backend
 * as JSON by TRITONBACKEND_ModelConfig) that the tdeploy backend acts on.
 *
 *   parameters { key: "threads"    value { string_value: "0" } }       session threads (0 = one per core)
 *   parameters { key: "precision"  value { string_value: "fp32" } }    fp32 | fp16 | bf16 prepacked weights
 *   parameters { key: "max_length" value { string_value: "128" } }     tokens per row, special tokens included
 *                                    (0 = no limit; absent: the model's own, from the version folder's HF files)
 *   parameters { key: "truncation" value { string_value: "truncate" } } truncate | reject (longer rows)
 *   parameters { key: "model_file" value { string_value: "..." } }     CPU instances (default model-optimized.onnx)
 *   parameters { key: "engine_file" value { string_value: "..." } }    GPU instances (default model.engine)
 *
 * Inputs: token tensors (input_ids, attention_mask, token_type_ids) and/or TEXT (+ TEXT_PAIR), all optional in the
 * config; a request carries either input_ids or TEXT. Outputs: whatever graph outputs the config names; an output
 * whose first non-batch dim is -1 has a sequence axis and is cut to each request's own length.
 *
 * Text generation (parameter task "text-generation"; tb_generate.c): a decoupled model
 * (model_transaction_policy { decoupled: true }, max_batch_size 0) over a decoder with a KV cache:
 *   inputs  TEXT (TYPE_STRING [1]); optional max_new_tokens (INT32/INT64 [1]), temperature (FP32 [1]),
 *           top_k (INT32/INT64 [1]), top_p (FP32 [1]), repetition_penalty (FP32 [1]), seed (UINT64/INT64 [1]):
 *           as `tdeploy generate`, temperature > 0, top_k > 0 or top_p < 1 sample; temperature 0 is greedy; none
 *           of them keeps generation_config.json's choice
 *   outputs TEXT_OUTPUT (TYPE_STRING [1]): one response per piece of new text; FINISH_REASON (TYPE_STRING [1]):
 *           on the last response (flag FINAL), "eos", "length" or "context" (tb_generate.c; a cancelled request
 *           ends with a CANCELLED error response instead)
 *   parameters max_new_tokens (default when the request has none), threads, precision, model_file */
#ifndef TD_TRITON_BACKEND_CONFIG_H
#define TD_TRITON_BACKEND_CONFIG_H

#include "tdeploy/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TB_MAX_OUTPUTS 16
#define TB_NAME_MAX 128
#define TB_TEXT_INPUT "TEXT"
#define TB_PAIR_INPUT "TEXT_PAIR"
#define TB_GEN_TASK "text-generation"
#define TB_GEN_OUTPUT "TEXT_OUTPUT"
#define TB_GEN_FINISH "FINISH_REASON"

typedef struct tb_output_config {
    char name[TB_NAME_MAX];
    bool per_token; /* dims[0] (after batch) is -1: (batch, sequence, ...) cut to the request's sequence length */
} tb_output_config;

typedef struct tb_config {
    int64_t max_batch_size;
    int threads;
    td_precision precision;
    int64_t max_length;    /* 0: no limit */
    bool max_length_given; /* the config has the parameter (else the backend derives it) */
    bool reject_too_long;  /* truncation "reject": a row over max_length is that request's error */
    char model_file[256];  /* CPU instances */
    char engine_file[256]; /* GPU instances */
    bool has_text, has_pair, has_ids, has_mask, has_types;
    tb_output_config outputs[TB_MAX_OUTPUTS];
    int n_outputs;
    bool generate;              /* task text-generation: decoupled streaming generation (tb_generate.c) */
    int64_t max_new_tokens;     /* generation: default new tokens per request */
} tb_config;

/* Parse config JSON. Errors (message in err, n bytes) name the field and what is expected. */
bool tb_config_parse(const char *json, size_t len, tb_config *out, char *err, size_t n);

#endif
