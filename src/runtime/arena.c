/* Greedy best-fit arena offset assignment (see arena.h). */
#include "runtime/arena.h"

#include "core/checked.h"
#include "core/ctx.h"

#include <stdlib.h>

typedef struct placed {
    size_t offset, end; /* [offset, end) */
} placed;

typedef struct order_key {
    size_t size;
    int first;
    size_t idx;
} order_key;

static int cmp_by_size_desc(const void *a, const void *b) {
    const order_key *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    if (x->first != y->first) /* earlier first: deterministic */
        return x->first < y->first ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static int cmp_placed(const void *a, const void *b) {
    const placed *pa = a, *pb = b;
    return pa->offset < pb->offset ? -1 : (pa->offset > pb->offset);
}

td_status td_arena_plan(td_ctx *ctx, td_arena_buf *bufs, size_t n, size_t *total) {
    td_status st = TD_OK;
    order_key *order = NULL;
    size_t *done = NULL;
    placed *live = NULL;
    size_t n_done = 0, peak = 0;
    *total = 0;
    if (n == 0)
        return TD_OK;
    order = malloc(n * sizeof *order);
    done = malloc(n * sizeof *done);
    live = malloc(n * sizeof *live);
    if (!order || !done || !live) {
        st = td_fail_oom(ctx, n * (2 * sizeof(size_t) + sizeof(placed)), "arena plan");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        size_t rounded;
        if (!td_add_size(bufs[i].size, TD_ARENA_ALIGN - 1, &rounded)) {
            st = td_fail(ctx, TD_ERR_OVERFLOW, "activation of %zu bytes is too large for the arena", bufs[i].size);
            goto out;
        }
        order[i] = (order_key){bufs[i].size, bufs[i].first, i};
    }
    qsort(order, n, sizeof *order, cmp_by_size_desc);
    for (size_t k = 0; k < n; k++) {
        td_arena_buf *b = &bufs[order[k].idx];
        size_t need = (b->size + TD_ARENA_ALIGN - 1) / TD_ARENA_ALIGN * TD_ARENA_ALIGN;
        if (need == 0) {
            b->offset = 0;
            continue;
        }
        /* Buffers already placed whose lifetime overlaps b's, sorted by offset. */
        size_t n_live = 0;
        for (size_t j = 0; j < n_done; j++) {
            const td_arena_buf *o = &bufs[done[j]];
            if (o->first <= b->last && b->first <= o->last)
                live[n_live++] = (placed){o->offset, o->offset + ((o->size + TD_ARENA_ALIGN - 1) / TD_ARENA_ALIGN * TD_ARENA_ALIGN)};
        }
        qsort(live, n_live, sizeof *live, cmp_placed);
        size_t best = SIZE_MAX, best_gap = SIZE_MAX, cursor = 0;
        for (size_t j = 0; j < n_live; j++) {
            if (live[j].offset > cursor) {
                size_t gap = live[j].offset - cursor;
                if (gap >= need && gap < best_gap) {
                    best_gap = gap;
                    best = cursor;
                }
            }
            if (live[j].end > cursor)
                cursor = live[j].end;
        }
        if (best == SIZE_MAX)
            best = cursor; /* after every live buffer */
        size_t end;
        if (!td_add_size(best, need, &end)) {
            st = td_fail(ctx, TD_ERR_OVERFLOW, "activation arena size overflows");
            goto out;
        }
        b->offset = best;
        if (end > peak)
            peak = end;
        done[n_done++] = order[k].idx;
    }
    *total = peak;
out:
    free(order);
    free(done);
    free(live);
    return st;
}
