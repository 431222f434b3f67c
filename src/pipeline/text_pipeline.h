/* Text in, answers out: tokenizer -> model -> task post-processing, for the
 * tasks the exporter knows (embedding, feature-extraction, classification,
 * token-classification, question-answering).
 *
 *   td_pipeline_options o;
 *   td_pipeline_options_init(&o);
 *   o.model = "sentence-transformers/all-MiniLM-L6-v2";
 *   td_pipeline *p;
 *   TD_TRY(td_pipeline_open(ctx, &o, &p));
 *   td_pipe_result r[2];
 *   TD_TRY(td_pipeline_run(ctx, p, (const char *[]){"a", "b"}, NULL, 2, 0, r));   // one batch
 *   ... r[i].vector ...
 *   td_pipe_results_free(r, 2);
 *   td_pipeline_free(p);
 *
 * o.model may be
 *   - a Hugging Face model directory or a hub id in the local cache: the ONNX
 *     graph is built in memory (td_export_build) and run on the CPU runtime;
 *   - an .onnx file: run as it is; tokenizer.json / config.json are taken from
 *     its directory (or o.tokenizer_dir); task, labels and maximum length from
 *     the metadata tdeploy's exporter writes, else config.json, else the graph
 *     outputs;
 *   - an engine file (`tdeploy build`): run on the CUDA backend unless
 *     o.backend says otherwise; tokenizer and config from o.tokenizer_dir, else
 *     beside the engine, else the files bundled in the engine (built from a
 *     model directory); rows are cut to the engine's longest profile sequence;
 *   - a directory with model-optimized.onnx (what `tdeploy convert` writes) or
 *     model.onnx: that file, with the tokenizer files beside it; with
 *     o.backend "cuda", its model.engine when there is one.
 * A batch is padded to its longest row. Texts longer than the maximum length
 * (o.max_length, else the model's) are cut for embedding, feature-extraction
 * and classification (result.truncated says so); question answering and token
 * classification instead run the text in overlapping windows of the maximum
 * length (o.stride tokens of overlap, as HF pipelines' doc_stride / stride) and
 * merge the answers as the HF pipelines do: the best-scoring answer over all
 * windows; the entities of every window, overlapping ones resolved to the
 * longer (then higher-scoring) entity. */
#ifndef TD_PIPELINE_TEXT_PIPELINE_H
#define TD_PIPELINE_TEXT_PIPELINE_H

#include "export/export.h"
#include "tdeploy/session.h"
#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct td_pipeline_options {
    const char *model;         /* see above; required */
    const char *tokenizer_dir; /* directory with tokenizer.json (+ config.json); NULL = beside the model */
    td_export_task task;       /* TD_TASK_AUTO = from the model */
    int threads;               /* CPU runtime workers; 0 = one per core */
    int64_t max_length;        /* tokens per row incl. specials; 0 = the model's maximum; above it is an error */
    size_t stride;             /* QA / token classification: overlap of consecutive windows in tokens;
                                * 0 = min(128, max length / 2), lowered to fit a window when needed */
    td_precision precision;    /* storage precision of the weights on the CPU runtime (default fp32) */
    const char *backend;       /* session backend: NULL = "cuda" for engines, "cpu" otherwise; "reference" */
    size_t top_k;              /* classification: labels reported per text; 0 = 1 */
    size_t max_answer_len;     /* question answering: longest answer in tokens; 0 = 15 */
    bool keep_hidden;          /* feature-extraction: also return the per-token hidden states */
} td_pipeline_options;

void td_pipeline_options_init(td_pipeline_options *o);

typedef struct td_pipeline td_pipeline;

td_status td_pipeline_open(td_ctx *ctx, const td_pipeline_options *o, td_pipeline **out);
void td_pipeline_free(td_pipeline *p); /* NULL is harmless */

td_export_task td_pipeline_task(const td_pipeline *p);
/* The longest row the model takes (tokens incl. specials; 0 = unknown), and the
 * length rows are cut to now. */
int64_t td_pipeline_model_max_length(const td_pipeline *p);
int64_t td_pipeline_max_length(const td_pipeline *p);
/* Change the length rows are cut to: TD_ERR_INVALID_ARGUMENT when n < 1 or
 * above the model's limit (the message names both numbers). */
td_status td_pipeline_set_max_length(td_ctx *ctx, td_pipeline *p, int64_t n);
/* What runs, for messages: "model.onnx (ONNX file)", "dir (HF model, exported in memory)". Owned by p. */
const char *td_pipeline_description(const td_pipeline *p);
/* Does the task take text pairs (classification: optional; QA: required)? */
bool td_pipeline_accepts_pairs(const td_pipeline *p);
bool td_pipeline_needs_pairs(const td_pipeline *p);

typedef struct td_pipe_label {
    int64_t id;
    const char *label; /* owned by the pipeline */
    double score;
} td_pipe_label;

typedef struct td_pipe_entity {
    const char *group; /* "PER"; owned by the pipeline */
    double score;
    char *word;        /* decoded tokens of the span */
    int64_t start, end; /* character offsets [start, end) into the text */
    size_t first_token, last_token;
} td_pipe_entity;

/* The answers for one input text. Arrays are malloc'd; td_pipe_result_free. */
typedef struct td_pipe_result {
    td_export_task task;
    size_t n_tokens;      /* tokens the model saw for this text, over all its windows (padding excluded) */
    int64_t *input_ids;   /* (n_tokens) what the model saw: the windows one after the other */
    size_t n_windows;     /* rows the text was run as: 1, or the overlapping windows of a long text */
    bool truncated;       /* the text had more tokens than the maximum length and was cut (never for the
                           * windowed tasks) */
    /* embedding: sentence_embedding; feature-extraction: mean of the token states over the mask */
    float *vector;        /* (dim) */
    size_t dim;
    float *hidden;        /* feature-extraction with keep_hidden: (n_tokens, dim) */
    /* classification: (n_labels); token classification: (n_tokens, n_labels). Token positions
     * (first_token, answer_first_token, ...) index the n_tokens of all windows. */
    float *logits;
    size_t n_labels;
    td_pipe_label *labels; /* classification: the top_k best, best first */
    size_t n_top;
    td_pipe_entity *entities; /* token classification */
    size_t n_entities;
    /* question answering */
    float *start_logits, *end_logits; /* (n_tokens) */
    char *answer;
    double score;
    int64_t answer_start, answer_end;  /* character offsets into the context (pair text), widened to whole
                                        * words as the HF pipeline's align_to_words does */
    size_t answer_first_token, answer_last_token;
} td_pipe_result;

/* Run one batch of n texts (pairs NULL or n pair texts, NUL-terminated UTF-8).
 * results: n entries, filled on success (zeroed and freed on failure). The
 * model runs at most n rows at a time: one run for the batch, plus more when
 * long texts of a windowed task add windows (callers split long input lists
 * into batches). Error messages call texts[i] "input first_index + i" (the
 * caller's numbering). */
td_status td_pipeline_run(td_ctx *ctx, td_pipeline *p, const char *const *texts, const char *const *pairs, size_t n,
                          size_t first_index, td_pipe_result *results);

void td_pipe_result_free(td_pipe_result *r); /* frees the arrays; a zeroed struct is harmless */
void td_pipe_results_free(td_pipe_result *r, size_t n);

#endif
