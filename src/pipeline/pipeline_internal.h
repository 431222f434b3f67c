/* The pipeline object shared by pipeline_open.c (finding the model, tokenizer,
 * task, labels, maximum length) and pipeline_run.c (one batch through it). */
#ifndef TD_PIPELINE_INTERNAL_H
#define TD_PIPELINE_INTERNAL_H

#include "onnx/ir.h"
#include "pipeline/text_pipeline.h"
#include "tdeploy/session.h"
#include "tdeploy/tokenizer.h"

struct td_pipeline {
    td_model *model;      /* owned: exported in memory or loaded from the .onnx file; NULL for an engine */
    td_model_file *file;  /* owned: the engine file (its model and profiles); NULL otherwise */
    td_session *session;  /* borrows model or file */
    td_tokenizer *tok;
    td_export_task task;
    char **labels;        /* n_labels names, by class id; NULL until known */
    size_t n_labels;
    bool multi_label;     /* config problem_type multi_label_classification: sigmoid scores */
    int64_t max_length;   /* rows are cut to this (or windowed); 0 = no truncation */
    int64_t model_max_length; /* what the model takes; 0 = unknown */
    size_t stride;        /* window overlap asked for; 0 = default */
    int64_t cls_id;       /* -1 when the tokenizer has no CLS-like token */
    int64_t unk_id;       /* -1 when the tokenizer has no unknown token */
    size_t top_k, max_answer_len;
    bool keep_hidden;
    int32_t ids_dtype;    /* TD_DTYPE_INT64 or TD_DTYPE_INT32, as the graph declares */
    bool has_token_types, has_mask;
    char *description;
};

/* Give the pipeline LABEL_0 .. LABEL_{n-1} when no id2label was found, or
 * check that a known label list has n entries. */
td_status td_pipeline_ensure_labels(td_ctx *ctx, td_pipeline *p, size_t n);

#endif
