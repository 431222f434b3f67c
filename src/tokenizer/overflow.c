/* Overflowing windows of a truncated row (HF Encoding::truncate with a stride):
 * the cut sequence is split into consecutive windows of the kept length that
 * overlap by `stride` tokens; the first window is the main encoding, every
 * later one is post-processed with the other (uncut) sequence of the pair into
 * an overflowing row. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* Window i of a sequence of n tokens cut to m (m < n, 0 < m, stride < m), in HF's
 * order: Right starts at 0 and steps forward by m - stride until a window
 * reaches the end; Left starts with the last m tokens and steps backward until
 * a window reaches the start. Returns the number of windows; fills start/stop
 * of window `want` when want is smaller than that. */
static size_t window(size_t n, size_t m, size_t stride, bool left, size_t want, size_t *start, size_t *stop) {
    size_t step = m - stride, count = 0;
    if (!left) {
        for (size_t s = 0; s < n; s += step) {
            size_t e = s + m < n ? s + m : n;
            if (count == want) {
                *start = s;
                *stop = e;
            }
            count++;
            if (e == n)
                break;
        }
        return count;
    }
    for (size_t back = 0; back < n; back += step) {
        size_t e = n - back, s = e < m ? 0 : e - m;
        if (count == want) {
            *start = s;
            *stop = e;
        }
        count++;
        if (s == 0)
            break;
    }
    return count;
}

static bool copy_range(td_tokvec *dst, const td_tokvec *src, size_t s, size_t e) {
    dst->n = 0;
    if (!TD_GROW(dst->v, dst->cap, e - s ? e - s : 1))
        return false;
    if (e > s)
        memcpy(dst->v, src->v + s, (e - s) * sizeof *src->v);
    dst->n = e - s;
    return true;
}

void td_overflow_free(td_tokvec *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++)
        free(rows[i].v);
    free(rows);
}

td_status td_overflow_rows(td_ctx *ctx, const td_postproc *post, const td_tokvec *full_a, size_t kept_a,
                           const td_tokvec *full_b, size_t kept_b, const td_tok_options *o, td_tokvec **rows_out,
                           size_t *n_out) {
    *rows_out = NULL;
    *n_out = 0;
    bool cut_a = kept_a < full_a->n, cut_b = full_b && kept_b < full_b->n;
    if (!cut_a && !cut_b)
        return TD_OK;
    if (cut_a && cut_b)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "overflowing tokens: truncation cut both texts of the pair (longest_first); HF nests the "
                       "overflow of such pairs and that is not supported - use only_first or only_second, or a "
                       "larger max_length");
    const td_tokvec *cut = cut_a ? full_a : full_b;
    size_t kept = cut_a ? kept_a : kept_b;
    if (kept == 0)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "overflowing tokens: max_length leaves no room for the %s text (only the special tokens fit); "
                       "returning its overflow this way is not supported - use a larger max_length",
                       cut_a ? "first" : "pair");
    size_t s = 0, e = 0;
    size_t nwin = window(cut->n, kept, o->stride, o->trunc_left, 0, &s, &e);
    td_status st = TD_OK;
    td_tokvec wa = {0}, wb = {0};
    td_tokvec *rows = calloc(nwin, sizeof *rows);
    if (!rows)
        return td_fail_oom(ctx, nwin, "overflowing rows");
    size_t n = 0;
    for (size_t w = 1; w < nwin; w++) {
        window(cut->n, kept, o->stride, o->trunc_left, w, &s, &e);
        /* fresh copies each time: post-processing trims offsets in place */
        bool ok = cut_a ? copy_range(&wa, full_a, s, e) : copy_range(&wa, full_a, 0, full_a->n);
        if (ok && full_b)
            ok = cut_b ? copy_range(&wb, full_b, s, e) : copy_range(&wb, full_b, 0, full_b->n);
        if (!ok) {
            st = td_fail_oom(ctx, e - s, "overflowing window");
            goto out;
        }
        if ((st = td_postproc_apply_ex(ctx, post, &wa, full_b ? &wb : NULL, o->add_special_tokens, cut_a ? 1u : 2u,
                                       &rows[n])))
            goto out;
        n++;
    }
out:
    free(wa.v);
    free(wb.v);
    if (st) {
        td_overflow_free(rows, nwin);
        return st;
    }
    *rows_out = rows;
    *n_out = n;
    return TD_OK;
}
