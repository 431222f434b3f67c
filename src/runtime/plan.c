/* Planning for one input-shape profile (see plan.h). */
#include "runtime/plan.h"

#include "core/checked.h"
#include "core/large_alloc.h"
#include "runtime/arena.h"

#include <stdlib.h>
#include <string.h>

static const char *vname(const td_rt_value *v) { return v->v && v->v->name ? v->v->name : "(unnamed)"; }

void td_plan_release(td_session *s) {
    for (int i = 0; i < s->nv; i++) {
        free(s->vals[i].hoist_buf);
        s->vals[i].hoist_buf = NULL;
    }
    if (s->key_data)
        for (int i = 0; i < s->n_inputs; i++) {
            free(s->key_data[i]);
            s->key_data[i] = NULL;
        }
    free(s->arena);
    s->arena = NULL;
    s->arena_cap = 0;
    s->planned = false;
}

bool td_plan_key_changed(const td_session *s) {
    for (int i = 0; i < s->n_inputs; i++) {
        const td_input_binding *b = &s->bound[i], *k = &s->key[i];
        if (b->rank != k->rank || memcmp(b->shape, k->shape, (size_t)b->rank * sizeof b->shape[0]) != 0)
            return true;
        if (s->vals[s->input_vals[i]].need_data && b->nbytes && memcmp(b->data, s->key_data[i], b->nbytes) != 0)
            return true;
    }
    return false;
}

void td_plan_bind_inputs(td_session *s) {
    for (int i = 0; i < s->n_inputs; i++)
        s->vals[s->input_vals[i]].t.data = (void *)s->bound[i].data;
    for (int v = 0; v < s->nv; v++)
        if (s->vals[v].kind == TD_V_ALIAS)
            s->vals[v].t.data = s->vals[s->vals[v].root].t.data;
}

/* Output shapes of one node; checks what the op returned. */
static td_status infer_node(td_ctx *ctx, td_session *s, td_rt_node *rn) {
    for (int k = 0; k < rn->n_out; k++)
        if (rn->tout[k]) {
            rn->tout[k]->rank = 0;
            rn->tout[k]->data = NULL;
        }
    rn->scratch_bytes = 0;
    rn->scratch = NULL;
    TD_TRY(rn->def->shape(ctx, rn, rn->tin, rn->tout));
    for (int k = 0; k < rn->n_out; k++) {
        td_rt_tensor *t = rn->tout[k];
        if (!t)
            continue;
        int64_t numel;
        size_t nbytes;
        if (t->rank < 0 || t->rank > TD_MAX_RANK)
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "output %d would have rank %d (max %d)", k, t->rank,
                                TD_MAX_RANK);
        if (!td_shape_numel(t->shape, t->rank, &numel) || (uint64_t)numel > SIZE_MAX ||
            !td_mul_size((size_t)numel, td_dtype_size(t->dtype), &nbytes))
            return td_node_fail(ctx, rn, TD_ERR_OVERFLOW, "output '%s' has an invalid or too large shape",
                                vname(&s->vals[rn->out[k]]));
    }
    return TD_OK;
}

/* Compute a hoisted node now, into plan-owned buffers. */
static td_status eval_hoisted(td_ctx *ctx, td_session *s, td_rt_node *rn) {
    td_status st = TD_OK;
    void *scratch = NULL;
    for (int k = 0; k < rn->n_out; k++) {
        if (rn->out[k] < 0)
            continue;
        td_rt_value *ov = &s->vals[rn->out[k]];
        size_t nb = td_rt_nbytes(&ov->t);
        ov->hoist_buf = aligned_alloc(TD_ARENA_ALIGN, (nb + TD_ARENA_ALIGN - 1) / TD_ARENA_ALIGN * TD_ARENA_ALIGN + TD_ARENA_ALIGN);
        if (!ov->hoist_buf)
            return td_fail_oom(ctx, nb, "a shape-derived value");
        s->n_allocs++;
        ov->t.data = ov->hoist_buf;
        s->hoisted_bytes += nb;
    }
    if (rn->scratch_bytes) {
        scratch = aligned_alloc(TD_ARENA_ALIGN, (rn->scratch_bytes + TD_ARENA_ALIGN - 1) / TD_ARENA_ALIGN * TD_ARENA_ALIGN);
        if (!scratch)
            return td_fail_oom(ctx, rn->scratch_bytes, "op scratch");
        s->n_allocs++;
        rn->scratch = scratch;
    }
    st = rn->def->exec(ctx, rn, rn->tin, rn->tout, &s->env);
    rn->scratch = NULL;
    free(scratch);
    return st;
}

static td_status set_key(td_ctx *ctx, td_session *s) {
    for (int i = 0; i < s->n_inputs; i++) {
        td_rt_value *iv = &s->vals[s->input_vals[i]];
        s->key[i] = s->bound[i];
        iv->t.dtype = iv->dtype;
        iv->t.rank = s->bound[i].rank;
        memcpy(iv->t.shape, s->bound[i].shape, sizeof iv->t.shape);
        iv->t.data = (void *)s->bound[i].data;
        if (iv->need_data) {
            /* The plan depends on this input's values: keep a copy to compare. */
            size_t nb = s->bound[i].nbytes;
            s->key_data[i] = malloc(nb ? nb : 1);
            if (!s->key_data[i])
                return td_fail_oom(ctx, nb, "plan key");
            s->n_allocs++;
            if (nb)
                memcpy(s->key_data[i], s->bound[i].data, nb);
            iv->t.data = s->key_data[i];
        }
    }
    return TD_OK;
}

td_status td_plan_build(td_ctx *ctx, td_session *s) {
    td_status st = TD_OK;
    td_arena_buf *bufs = NULL;
    int *buf_val = NULL; /* arena buffer -> value index, or -(node+1) for node scratch */
    size_t nb = 0;

    /* Drop the old plan's hoisted values but keep the arena for reuse. */
    uint8_t *arena = s->arena;
    size_t arena_cap = s->arena_cap;
    s->arena = NULL;
    td_plan_release(s);
    s->arena = arena;
    s->arena_cap = arena_cap;
    s->hoisted_bytes = 0;

    if ((st = set_key(ctx, s)) != TD_OK)
        goto out;
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        if (rn->const_output)
            continue; /* its value is a constant of the session */
        if ((st = infer_node(ctx, s, rn)) != TD_OK)
            goto out;
        if (rn->hoisted && (st = eval_hoisted(ctx, s, rn)) != TD_OK)
            goto out;
    }

    /* Lifetimes of arena roots; views extend their root's lifetime. */
    for (int v = 0; v < s->nv; v++) {
        td_rt_value *rv = &s->vals[v];
        rv->first = rv->last = rv->producer;
    }
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        for (int k = 0; k < rn->n_in; k++) {
            if (rn->in[k] < 0)
                continue;
            td_rt_value *r = &s->vals[s->vals[rn->in[k]].root];
            if (r->kind == TD_V_ARENA && r->last < i)
                r->last = i;
        }
    }
    for (int o = 0; o < s->n_outputs; o++) {
        td_rt_value *r = &s->vals[s->vals[s->output_vals[o]].root];
        if (r->kind == TD_V_ARENA)
            r->last = s->nn;
    }
    bufs = calloc((size_t)s->nv + (size_t)s->nn + 1, sizeof *bufs);
    buf_val = calloc((size_t)s->nv + (size_t)s->nn + 1, sizeof *buf_val);
    if (!bufs || !buf_val) {
        st = td_fail_oom(ctx, 0, "arena plan");
        goto out;
    }
    s->n_allocs += 2;
    s->arena_naive = 0;
    for (int v = 0; v < s->nv; v++) {
        td_rt_value *rv = &s->vals[v];
        if (rv->kind != TD_V_ARENA)
            continue;
        bufs[nb] = (td_arena_buf){td_rt_nbytes(&rv->t), rv->first, rv->last, 0};
        s->arena_naive += bufs[nb].size;
        buf_val[nb++] = v;
    }
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        if (rn->hoisted || !rn->scratch_bytes)
            continue;
        bufs[nb] = (td_arena_buf){rn->scratch_bytes, i, i, 0};
        s->arena_naive += rn->scratch_bytes;
        buf_val[nb++] = -(i + 1);
    }
    size_t total;
    if ((st = td_arena_plan(ctx, bufs, nb, &total)) != TD_OK)
        goto out;
    if (total + TD_ARENA_ALIGN > s->arena_cap) {
        free(s->arena);
        s->arena_cap = 0;
        size_t cap = total + TD_ARENA_ALIGN;
        s->arena = td_large_alloc(cap); /* rounds up to its own alignment */
        if (!s->arena) {
            st = td_fail_oom(ctx, cap, "activation arena");
            goto out;
        }
        s->arena_cap = cap;
        s->n_allocs++;
    }
    s->arena_size = total;
    for (size_t b = 0; b < nb; b++) {
        if (buf_val[b] >= 0)
            s->vals[buf_val[b]].t.data = s->arena + bufs[b].offset;
        else
            s->nodes[-buf_val[b] - 1].scratch = s->arena + bufs[b].offset;
    }
    s->planned = true;
    s->n_plans++;
out:
    free(bufs);
    free(buf_val);
    if (st != TD_OK) {
        /* Leave no half plan behind: the next run plans again. */
        uint8_t *a = s->arena;
        size_t c = s->arena_cap;
        s->arena = NULL;
        td_plan_release(s);
        s->arena = a;
        s->arena_cap = c;
    }
    return st;
}
