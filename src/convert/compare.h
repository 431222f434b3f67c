/* Comparing a backend's outputs with the reference's, element by element.
 * An element passes when |got - ref| <= atol + rtol * |ref| (NaN never passes).
 * Positions that are padding in the feed's attention_mask are not compared for
 * per-token outputs (batch, seq, ...): their values are not defined by the model. */
#ifndef TD_CONVERT_COMPARE_H
#define TD_CONVERT_COMPARE_H

#include "convert/feeds.h"
#include "tdeploy/session.h"

#include <stdbool.h>
#include <stddef.h>

/* A session output copied out as float32 (sessions reuse their output memory). */
typedef struct td_output_copy {
    char name[64];
    int rank;
    int64_t shape[8];
    float *data; /* numel floats */
    size_t numel;
} td_output_copy;

td_status td_outputs_copy(td_ctx *ctx, const td_session *s, td_output_copy **out, int *n_out);
void td_outputs_free(td_output_copy *o, int n);

typedef enum td_argmax_mode {
    TD_ARGMAX_NONE = 0, /* not a classification output */
    TD_ARGMAX_LAST_AXIS, /* per row (classification) or per real token (token classification) */
    TD_ARGMAX_SEQUENCE,  /* (batch, seq) span logits: argmax over the real positions of each row (QA) */
} td_argmax_mode;

/* Running figures for one output of one backend over all feeds. */
typedef struct td_compare_acc {
    char output[64];
    size_t n_compared, n_failed;
    double max_abs, max_rel; /* rel = |got - ref| / max(|ref|, 1e-3) */
    size_t argmax_rows, argmax_agree;
    td_argmax_mode argmax;
    /* cosine similarity of each row (last-axis vector at a real position, or per
     * batch item), the measure for quantized backends whose elements legitimately
     * move: sum, count and minimum over the rows compared */
    double cos_sum, cos_min;
    size_t cos_rows;
} td_compare_acc;

/* Compare got with ref (same output) over the real positions of feed and add to acc.
 * A shape mismatch is an error naming the output and both shapes. */
td_status td_compare_accumulate(td_ctx *ctx, td_compare_acc *acc, const td_output_copy *ref,
                                const td_output_copy *got, const td_feed *feed, double atol, double rtol);

#endif
