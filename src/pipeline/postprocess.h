/* Task post-processing of one text's model outputs, as transformers' pipelines
 * do it: pure functions over logits, no model or tokenizer involved.
 *
 *   classification        softmax (or sigmoid for a single logit) over the labels, ranked
 *   token classification  per-token softmax + argmax, then HF's aggregation_strategy="simple"
 *   question answering    QuestionAnsweringPipeline's span search over context tokens (the caller
 *                         widens the span to whole words)
 *
 * Callers own every array they pass; outputs are written into caller memory
 * except where a function says it allocates. */
#ifndef TD_PIPELINE_POSTPROCESS_H
#define TD_PIPELINE_POSTPROCESS_H

#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* out[i] = exp(x[i] - max) / sum, in double. n >= 1. */
void td_pp_softmax(const float *x, size_t n, double *out);

typedef struct td_pp_label {
    int64_t id;   /* class index */
    double score; /* probability */
} td_pp_label;

/* Scores of one row of n_labels logits into scores (n_labels): softmax, or the
 * sigmoid of each logit when there is one label (HF's function_to_apply for
 * num_labels == 1) or multi_label is set. Writes the min(top_k, n_labels) best
 * into out, best first (ties: lower id first). Returns how many were written. */
size_t td_pp_classify(const float *logits, size_t n_labels, bool multi_label, size_t top_k, double *scores,
                      td_pp_label *out);

/* One group of tokens the "simple" aggregation produced. */
typedef struct td_pp_entity {
    const char *group;    /* label without its "B-"/"I-" style prefix; points into labels[] */
    double score;         /* mean of the member tokens' top probabilities */
    size_t first, last;   /* token positions in the row, inclusive */
} td_pp_entity;

/* HF TokenClassificationPipeline with aggregation_strategy="simple":
 * every token whose skip[i] is 0 gets label argmax(softmax(logits[i])) and
 * score max(softmax); consecutive tokens join a group when their tags (label
 * minus a "B-"/"I-" prefix) match and the newer token is not a "B-" token;
 * the group is named by its first label after the first '-' and scored by the
 * mean of its token scores. Groups named "O" are dropped. logits: (seq,
 * n_labels); labels: n_labels strings. *out is malloc'd (free it), *n_out its
 * length (0 with *out NULL when nothing is left). */
td_status td_pp_aggregate_simple(td_ctx *ctx, const float *logits, size_t seq, size_t n_labels,
                                 const char *const *labels, const uint8_t *skip, td_pp_entity **out, size_t *n_out);

typedef struct td_pp_span {
    size_t start, end; /* token positions, inclusive */
    double score;      /* p_start * p_end */
    double p_start, p_end;
} td_pp_span;

/* QuestionAnsweringPipeline's answer search over one row of seq positions:
 * logits outside context[] (and not cls[]) are replaced by -10000 before the
 * two softmaxes (so the CLS token stays in the normalisation, as in HF), the
 * CLS probabilities are then set to 0, and the best span start <= end <
 * start + max_answer_len over context tokens by p_start * p_end is returned
 * (ties: the smallest start, then the smallest end). TD_ERR_INVALID_ARGUMENT
 * when no context token exists. */
td_status td_pp_qa_best_span(td_ctx *ctx, const float *start_logits, const float *end_logits, size_t seq,
                             const uint8_t *context, const uint8_t *cls, size_t max_answer_len, td_pp_span *out);

/* Number of Unicode code points in the first byte_off bytes of UTF-8 text
 * (HF reports character offsets; the tokenizer gives byte offsets). */
int64_t td_pp_char_offset(const char *text, size_t text_len, size_t byte_off);

#endif
