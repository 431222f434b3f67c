/* Task post-processing (see postprocess.h): the arithmetic of transformers'
 * text-classification, token-classification ("simple") and question-answering
 * pipelines, written from their documented behaviour. */
#include "pipeline/postprocess.h"

#include "core/ctx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void td_pp_softmax(const float *x, size_t n, double *out) {
    double mx = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = exp((double)x[i] - mx);
        sum += out[i];
    }
    for (size_t i = 0; i < n; i++)
        out[i] /= sum;
}

size_t td_pp_classify(const float *logits, size_t n_labels, bool multi_label, size_t top_k, double *scores,
                      td_pp_label *out) {
    if (n_labels == 0 || top_k == 0)
        return 0;
    if (top_k > n_labels)
        top_k = n_labels;
    size_t n = 0;
    if (multi_label || n_labels == 1)
        for (size_t i = 0; i < n_labels; i++)
            scores[i] = 1.0 / (1.0 + exp(-(double)logits[i]));
    else
        td_pp_softmax(logits, n_labels, scores);
    /* insertion into a top_k list; strict > keeps the lower id first on ties */
    for (size_t i = 0; i < n_labels; i++) {
        size_t pos = n;
        while (pos > 0 && scores[i] > out[pos - 1].score)
            pos--;
        if (pos >= top_k)
            continue;
        size_t last = n < top_k ? n : top_k - 1;
        memmove(out + pos + 1, out + pos, (last - pos) * sizeof *out);
        out[pos] = (td_pp_label){(int64_t)i, scores[i]};
        if (n < top_k)
            n++;
    }
    return n;
}

/* HF get_tag: "B-X" -> (B, X), "I-X" -> (I, X), anything else -> (I, whole label). */
static const char *tag_of(const char *label, bool *is_b) {
    *is_b = label[0] == 'B' && label[1] == '-';
    if ((label[0] == 'B' || label[0] == 'I') && label[1] == '-')
        return label + 2;
    return label;
}

/* HF group_sub_entities names a group by the first label's text after its first '-'. */
static const char *group_name(const char *label) {
    const char *dash = strchr(label, '-');
    return dash ? dash + 1 : label;
}

typedef struct open_group {
    bool open;
    const char *first_label, *last_tag;
    double score_sum;
    size_t count, first, last;
} open_group;

static bool close_group(open_group *g, td_pp_entity **out, size_t *n, size_t *cap) {
    if (!g->open)
        return true;
    g->open = false;
    const char *name = group_name(g->first_label);
    if (strcmp(name, "O") == 0)
        return true;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        td_pp_entity *ne = realloc(*out, nc * sizeof *ne);
        if (!ne)
            return false;
        *out = ne;
        *cap = nc;
    }
    (*out)[(*n)++] = (td_pp_entity){name, g->score_sum / (double)g->count, g->first, g->last};
    return true;
}

td_status td_pp_aggregate_simple(td_ctx *ctx, const float *logits, size_t seq, size_t n_labels,
                                 const char *const *labels, const uint8_t *skip, td_pp_entity **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (n_labels == 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "token classification: the model has no labels");
    double *p = malloc(n_labels * sizeof *p);
    if (!p)
        return td_fail_oom(ctx, n_labels * sizeof *p, "token scores");
    td_status st = TD_OK;
    size_t n = 0, cap = 0;
    open_group g = {0};
    for (size_t t = 0; t < seq; t++) {
        if (skip[t])
            continue;
        td_pp_softmax(logits + t * n_labels, n_labels, p);
        size_t best = 0;
        for (size_t k = 1; k < n_labels; k++)
            if (p[k] > p[best])
                best = k;
        const char *label = labels[best];
        bool is_b;
        const char *tag = tag_of(label, &is_b);
        if (g.open && !is_b && strcmp(tag, g.last_tag) == 0) {
            g.score_sum += p[best];
            g.count++;
            g.last = t;
            g.last_tag = tag;
            continue;
        }
        if (!close_group(&g, out, &n, &cap)) {
            st = td_fail_oom(ctx, 0, "entities");
            goto out;
        }
        g = (open_group){true, label, tag, p[best], 1, t, t};
    }
    if (!close_group(&g, out, &n, &cap))
        st = td_fail_oom(ctx, 0, "entities");
out:
    free(p);
    if (st != TD_OK) {
        free(*out);
        *out = NULL;
        n = 0;
    }
    *n_out = n;
    return st;
}

/* Softmax over a row where the positions outside keep[] carry -10000 instead
 * of their logit, as the pipeline masks them. */
static void masked_softmax(const float *x, size_t n, const uint8_t *keep, double *out) {
    double mx = -10000.0;
    for (size_t i = 0; i < n; i++)
        if (keep[i] && x[i] > mx)
            mx = x[i];
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = exp((keep[i] ? (double)x[i] : -10000.0) - mx);
        sum += out[i];
    }
    for (size_t i = 0; i < n; i++)
        out[i] /= sum;
}

td_status td_pp_qa_best_span(td_ctx *ctx, const float *start_logits, const float *end_logits, size_t seq,
                             const uint8_t *context, const uint8_t *cls, size_t max_answer_len, td_pp_span *out) {
    memset(out, 0, sizeof *out);
    if (max_answer_len == 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "question answering: max answer length must be at least 1");
    size_t n_context = 0;
    for (size_t i = 0; i < seq; i++)
        n_context += context[i] != 0;
    if (n_context == 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "question answering: the context has no tokens (empty context, or truncated away: raise "
                       "--max-length or shorten the question)");
    td_status st = TD_OK;
    uint8_t *keep = malloc(seq);
    double *ps = malloc(seq * sizeof *ps), *pe = malloc(seq * sizeof *pe);
    if (!keep || !ps || !pe) {
        st = td_fail_oom(ctx, seq * (2 * sizeof(double) + 1), "answer scores");
        goto out;
    }
    for (size_t i = 0; i < seq; i++)
        keep[i] = context[i] || cls[i];
    masked_softmax(start_logits, seq, keep, ps);
    masked_softmax(end_logits, seq, keep, pe);
    for (size_t i = 0; i < seq; i++)
        if (cls[i])
            ps[i] = pe[i] = 0.0;
    bool found = false;
    for (size_t s = 0; s < seq; s++) {
        if (!context[s])
            continue;
        for (size_t e = s; e < seq && e - s < max_answer_len; e++) {
            if (!context[e])
                continue;
            double score = ps[s] * pe[e];
            if (!found || score > out->score) {
                *out = (td_pp_span){s, e, score, ps[s], pe[e]};
                found = true;
            }
        }
    }
out:
    free(keep);
    free(ps);
    free(pe);
    return st;
}

int64_t td_pp_char_offset(const char *text, size_t text_len, size_t byte_off) {
    if (byte_off > text_len)
        byte_off = text_len;
    int64_t n = 0;
    for (size_t i = 0; i < byte_off; i++)
        n += ((unsigned char)text[i] & 0xC0) != 0x80;
    return n;
}
