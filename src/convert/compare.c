/* Element-wise comparison with masks and argmax agreement. */
#include "convert/compare.h"

#include "core/ctx.h"
#include "core/dtype.h"
#include "core/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void td_outputs_free(td_output_copy *o, int n) {
    if (!o)
        return;
    for (int i = 0; i < n; i++)
        free(o[i].data);
    free(o);
}

td_status td_outputs_copy(td_ctx *ctx, const td_session *s, td_output_copy **out, int *n_out) {
    int n = td_session_output_count(s);
    td_output_copy *o = calloc((size_t)(n ? n : 1), sizeof *o);
    if (!o)
        return td_fail_oom(ctx, sizeof *o, "output copies");
    td_status st = TD_OK;
    for (int i = 0; i < n; i++) {
        td_session_output so;
        if ((st = td_session_get_output(ctx, s, i, &so)) != TD_OK)
            goto fail;
        if (so.rank > 8) {
            st = td_fail(ctx, TD_ERR_UNSUPPORTED, "output '%s' has rank %d (at most 8 supported)", so.name, so.rank);
            goto fail;
        }
        snprintf(o[i].name, sizeof o[i].name, "%s", so.name);
        o[i].rank = so.rank;
        size_t numel = 1;
        for (int d = 0; d < so.rank; d++) {
            o[i].shape[d] = so.shape[d];
            numel *= (size_t)so.shape[d];
        }
        o[i].numel = numel;
        o[i].data = malloc((numel ? numel : 1) * sizeof(float));
        if (!o[i].data) {
            st = td_fail_oom(ctx, numel * 4, "an output copy");
            goto fail;
        }
        if (so.dtype == TD_DTYPE_FLOAT32)
            memcpy(o[i].data, so.data, numel * sizeof(float));
        else if (so.dtype == TD_DTYPE_FLOAT16)
            td_f16_to_f32_array(so.data, o[i].data, numel);
        else if (so.dtype == TD_DTYPE_BFLOAT16)
            td_bf16_to_f32_array(so.data, o[i].data, numel);
        else {
            st = td_fail(ctx, TD_ERR_UNSUPPORTED, "output '%s' has dtype %s; only float outputs can be validated",
                         so.name, td_dtype_name((td_dtype)so.dtype));
            goto fail;
        }
    }
    *out = o;
    *n_out = n;
    return TD_OK;
fail:
    td_outputs_free(o, n);
    return st;
}

static bool per_token(const td_output_copy *o, const td_feed *f) {
    return o->rank >= 2 && o->shape[0] == f->batch && o->shape[1] == f->seq;
}

static size_t argmax(const float *x, size_t n, size_t stride, const int64_t *mask) {
    size_t best = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i])
            continue;
        if (best == (size_t)-1 || x[i * stride] > x[best * stride])
            best = i;
    }
    return best;
}

td_status td_compare_accumulate(td_ctx *ctx, td_compare_acc *acc, const td_output_copy *ref,
                                const td_output_copy *got, const td_feed *feed, double atol, double rtol) {
    if (ref->rank != got->rank || memcmp(ref->shape, got->shape, sizeof(int64_t) * (size_t)ref->rank) != 0) {
        char a[128], b[128];
        return td_fail(ctx, TD_ERR_SHAPE, "output '%s' has shape %s in the backend but %s in the reference (%s)",
                       ref->name, td_shape_str(got->shape, got->rank, b, sizeof b),
                       td_shape_str(ref->shape, ref->rank, a, sizeof a), feed->label);
    }
    bool tokens = per_token(ref, feed);
    size_t inner = 1; /* elements per (batch, seq) position, or per batch row */
    for (int d = tokens ? 2 : 1; d < ref->rank; d++)
        inner *= (size_t)ref->shape[d];
    for (size_t i = 0; i < ref->numel; i++) {
        if (tokens) {
            size_t pos = i / inner; /* b * seq + s */
            if (!feed->attention_mask[pos])
                continue;
        }
        double r = ref->data[i], g = got->data[i];
        double diff = fabs(g - r);
        bool ok = !isnan(diff) && diff <= atol + rtol * fabs(r);
        double rel = diff / (fabs(r) > 1e-3 ? fabs(r) : 1e-3);
        acc->n_compared++;
        acc->n_failed += !ok;
        if (isnan(diff)) {
            acc->max_abs = INFINITY;
            acc->max_rel = INFINITY;
            continue;
        }
        if (diff > acc->max_abs)
            acc->max_abs = diff;
        if (rel > acc->max_rel)
            acc->max_rel = rel;
    }
    /* per-row cosine (not for (batch, seq) span logits: their rows are sequences, partly padding) */
    if (ref->rank >= 2 && !(tokens && ref->rank == 2)) {
        size_t last = (size_t)ref->shape[ref->rank - 1];
        size_t rows = ref->numel / (last ? last : 1);
        for (size_t r = 0; r < rows && last > 1; r++) {
            if (tokens && !feed->attention_mask[r])
                continue;
            double dot = 0.0, nr = 0.0, ng = 0.0;
            for (size_t k = 0; k < last; k++) {
                double x = ref->data[r * last + k], y = got->data[r * last + k];
                dot += x * y;
                nr += x * x;
                ng += y * y;
            }
            /* two zero rows agree; one zero row against another does not */
            double cs = nr == 0.0 && ng == 0.0 ? 1.0 : nr == 0.0 || ng == 0.0 ? 0.0 : dot / sqrt(nr * ng);
            if (isnan(cs))
                cs = -1.0;
            acc->cos_min = acc->cos_rows == 0 || cs < acc->cos_min ? cs : acc->cos_min;
            acc->cos_sum += cs;
            acc->cos_rows++;
        }
    }
    /* argmax agreement */
    if (acc->argmax == TD_ARGMAX_LAST_AXIS && ref->rank >= 2) {
        size_t last = (size_t)ref->shape[ref->rank - 1];
        size_t rows = ref->numel / (last ? last : 1);
        for (size_t r = 0; r < rows; r++) {
            if (tokens && ref->rank >= 3 && !feed->attention_mask[r])
                continue;
            acc->argmax_rows++;
            acc->argmax_agree += argmax(ref->data + r * last, last, 1, NULL) == argmax(got->data + r * last, last, 1, NULL);
        }
    } else if (acc->argmax == TD_ARGMAX_SEQUENCE && tokens && ref->rank == 2) {
        size_t seq = (size_t)feed->seq;
        for (size_t b = 0; b < (size_t)feed->batch; b++) {
            const int64_t *mask = feed->attention_mask + b * seq;
            acc->argmax_rows++;
            acc->argmax_agree +=
                argmax(ref->data + b * seq, seq, 1, mask) == argmax(got->data + b * seq, seq, 1, mask);
        }
    }
    return TD_OK;
}
