/* Constant folding: Constant nodes become initializers; Shape/Size of values
 * whose shape is fully static become constants; any other node whose inputs are
 * all constant is evaluated through the evaluator callback (the optimizer's own
 * kernels by default) and replaced by its result, unless a result would exceed
 * the folding limit. */
#define _GNU_SOURCE
#include "core/checked.h"
#include "opt/fold_kernels.h"
#include "opt/fold_runtime.h"
#include "opt/fold_transpose.h"
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_FOLD_IO 16

/* The tensor a Constant node defines, as a new tensor; NULL (no error) for
 * forms not folded here (sparse, strings). */
static td_status constant_value(td_ctx *ctx, const td_node *n, td_tensor **out) {
    *out = NULL;
    const char *name = n->outputs[0]->name;
    for (int i = 0; i < n->n_attrs; i++) {
        const td_attr *a = &n->attrs[i];
        int64_t dim;
        if (strcmp(a->name, "value") == 0 && a->type == TD_ATTR_TENSOR && a->t && a->t->dtype != TD_STRING &&
            (a->t->data || a->t->nbytes == 0)) {
            TD_TRY(td_tensor_clone(ctx, a->t, out));
            free((*out)->name);
            (*out)->name = strdup(name);
            if (!(*out)->name) {
                td_tensor_free(*out);
                *out = NULL;
                return td_fail_oom(ctx, 0, "a name");
            }
            return TD_OK;
        }
        if (strcmp(a->name, "value_float") == 0 && a->type == TD_ATTR_FLOAT)
            return td_tensor_new_copy(ctx, name, TD_F32, 0, NULL, &a->f, sizeof a->f, out);
        if (strcmp(a->name, "value_int") == 0 && a->type == TD_ATTR_INT)
            return td_tensor_new_copy(ctx, name, TD_I64, 0, NULL, &a->i, sizeof a->i, out);
        if (strcmp(a->name, "value_floats") == 0 && a->type == TD_ATTR_FLOATS) {
            dim = (int64_t)a->count;
            return td_tensor_new_copy(ctx, name, TD_F32, 1, &dim, a->floats, sizeof(float) * a->count, out);
        }
        if (strcmp(a->name, "value_ints") == 0 && a->type == TD_ATTR_INTS) {
            dim = (int64_t)a->count;
            return td_tensor_new_copy(ctx, name, TD_I64, 1, &dim, a->ints, sizeof(int64_t) * a->count, out);
        }
    }
    return TD_OK;
}

/* Shape or Size of a value whose dims are all known numbers. */
static td_status static_shape_value(td_ctx *ctx, const td_node *n, td_tensor **out) {
    *out = NULL;
    const td_value *x = n->inputs[0];
    if (!x || x->type.rank < 0)
        return TD_OK;
    int64_t r = x->type.rank, dims[16];
    if (r > 16)
        return TD_OK;
    for (int i = 0; i < r; i++) {
        if (x->type.dims[i].value < 0)
            return TD_OK;
        dims[i] = x->type.dims[i].value;
    }
    if (strcmp(n->op_type, "Size") == 0) {
        int64_t numel;
        if (!td_shape_numel(dims, (int)r, &numel))
            return TD_OK;
        return td_tensor_new_copy(ctx, n->outputs[0]->name, TD_I64, 0, NULL, &numel, sizeof numel, out);
    }
    int64_t start = td_node_attr_int(n, "start", 0), end = td_node_attr_int(n, "end", r);
    if (start < 0)
        start += r;
    if (end < 0)
        end += r;
    start = start < 0 ? 0 : (start > r ? r : start);
    end = end < start ? start : (end > r ? r : end);
    int64_t len = end - start;
    return td_tensor_new_copy(ctx, n->outputs[0]->name, TD_I64, 1, &len, dims + start,
                              sizeof(int64_t) * (size_t)len, out);
}

static bool foldable_op(const td_node *n) {
    if (!opt_is_onnx_domain(n->domain))
        return false;
    static const char *const never[] = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                                        "Multinomial", "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct"};
    for (size_t i = 0; i < sizeof never / sizeof *never; i++)
        if (strcmp(n->op_type, never[i]) == 0)
            return false;
    for (int i = 0; i < n->n_attrs; i++)
        if (n->attrs[i].g || n->attrs[i].graphs)
            return false;
    return true;
}

/* Ops whose output has as many elements as their first input: folding them never
 * grows the model, so the size limit does not apply (exporters write Transpose(W)). */
static bool preserves_size(const td_node *n) {
    static const char *const ops[] = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Cast"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (strcmp(n->op_type, ops[i]) == 0)
            return true;
    return false;
}

/* A constant folded into a new tensor (a transposed weight) and now unread: when
 * its data lies in a file mapping, drop those pages from the resident set so a
 * large model is not held twice (the mapping stays valid; pages would be read
 * again from the file if anything touched them). */
static void release_mapped_pages(const td_value *v) {
    const td_tensor *t = v ? v->initializer : NULL;
    if (!t || !t->map || t->owned || !t->data || v->n_consumers > 0 || v->is_output || t->nbytes < (1u << 20))
        return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        return;
    uintptr_t page = (uintptr_t)pg;
    uintptr_t a = ((uintptr_t)t->data + page - 1) & ~(page - 1);
    uintptr_t b = ((uintptr_t)t->data + t->nbytes) & ~(page - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED); /* advisory: failure only means the pages stay */
}

/* Buffers of weights that a fold replaced (a weight by its transposed copy),
 * kept for the next fold of a size that fits instead of being freed: writing
 * into memory that is already resident costs no page faults and no kernel
 * zeroing, and a model's Linear weights come in a few sizes (bert: (h, h) and
 * (h, 4h)). Two slots bound what the pool holds on top of the model. */
#define SPARE_SLOTS 2
typedef struct spare_pool {
    void *buf[SPARE_SLOTS];
    size_t cap[SPARE_SLOTS];
} spare_pool;

/* A pooled buffer of exactly n bytes, removed from the pool; NULL if none. Not
 * a larger one: the rest of it would stay resident, unused, as long as the
 * tensor lives. */
static void *spare_take(spare_pool *p, size_t n) {
    for (int i = 0; i < SPARE_SLOTS; i++)
        if (p->buf[i] && p->cap[i] == n) {
            void *b = p->buf[i];
            p->buf[i] = NULL;
            return b;
        }
    return NULL;
}

/* Keep buf (cap bytes) in the pool: in place of a buffer of the same size, else
 * in a free slot, else in place of the smallest; the buffer replaced is freed. */
static void spare_give(spare_pool *p, void *buf, size_t cap) {
    int slot = -1;
    for (int i = 0; i < SPARE_SLOTS && slot < 0; i++)
        if (p->buf[i] && p->cap[i] == cap)
            slot = i;
    for (int i = 0; i < SPARE_SLOTS && slot < 0; i++)
        if (!p->buf[i])
            slot = i;
    if (slot < 0) {
        slot = 0;
        for (int i = 1; i < SPARE_SLOTS; i++)
            if (p->cap[i] < p->cap[slot])
                slot = i;
    }
    free(p->buf[slot]);
    p->buf[slot] = buf;
    p->cap[slot] = cap;
}

static void spare_free(spare_pool *p) {
    for (int i = 0; i < SPARE_SLOTS; i++)
        free(p->buf[i]);
}

/* Drop src's initializer, a weight nothing reads any more; its buffer goes to the pool when it owns one. */
static void release_initializer(td_graph *g, td_value *src, spare_pool *pool) {
    td_tensor *t = src->initializer;
    if (t->owned && t->owned == t->data && t->nbytes >= (1u << 16)) {
        spare_give(pool, t->owned, t->nbytes);
        t->owned = NULL;
        t->data = NULL;
    }
    td_graph_clear_initializer(g, src);
}

/* Replace n by constants: outputs[i] become initializers of n's output values. */
static td_status install(td_ctx *ctx, td_graph *g, td_node *n, td_tensor **outs) {
    td_value *vals[MAX_FOLD_IO];
    int cnt = n->n_outputs;
    for (int i = 0; i < cnt; i++)
        vals[i] = n->outputs[i];
    td_graph_remove_node(g, n);
    td_status s = TD_OK;
    for (int i = 0; i < cnt; i++) {
        if (!vals[i]) {
            td_tensor_free(outs[i]);
            continue;
        }
        if (s == TD_OK)
            s = td_graph_set_initializer(ctx, g, vals[i], outs[i]); /* takes outs[i] */
        else
            td_tensor_free(outs[i]);
        outs[i] = NULL;
    }
    return s;
}

/* What every node fold needs besides the node. */
typedef struct fold_env {
    td_graph *g;
    td_opt_eval_fn eval;
    void *eval_user;
    bool default_eval; /* the runtime's kernels: Transpose may take the direct path */
    int64_t max;       /* fold size limit */
    bool subgraphs;    /* some node has a subgraph (which may read values by name) */
    spare_pool pool;
} fold_env;

/* Evaluate n on its constant inputs into outs. Transpose, which exporters put on
 * every weight, takes the direct path (fold_transpose.h), writing into a pooled
 * buffer when one fits; everything else goes through the evaluator. */
static td_status evaluate(td_ctx *ctx, fold_env *e, td_node *n, const td_tensor *const *ins, int64_t node_max,
                          td_tensor **outs) {
    if (e->default_eval && strcmp(n->op_type, "Transpose") == 0 && n->n_inputs == 1 && n->n_outputs == 1 && ins[0]) {
        void *buf = spare_take(&e->pool, ins[0]->nbytes);
        bool taken = false;
        td_status s = td_fold_transpose(ctx, n, ins[0], node_max, buf, &taken, &outs[0]);
        if (!taken && buf)
            spare_give(&e->pool, buf, ins[0]->nbytes);
        if (s != TD_OK || outs[0])
            return s;
    }
    return e->eval(e->eval_user, ctx, n, ins, n->n_inputs, outs, n->n_outputs, node_max);
}

/* Fold n if it can be: *changed says whether it was replaced. */
static td_status fold_node(td_ctx *ctx, fold_env *e, td_node *n, bool *changed) {
    td_graph *g = e->g;
    *changed = false;
    if (n->dead || n->n_outputs < 1 || n->n_outputs > MAX_FOLD_IO || n->n_inputs > MAX_FOLD_IO || !foldable_op(n))
        return TD_OK;
    for (int j = 0; j < n->n_outputs; j++)
        if (n->outputs[j] && n->outputs[j]->is_output) /* keep the graph's outputs produced by nodes */
            return TD_OK;
    td_tensor *outs[MAX_FOLD_IO] = {0};
    if (strcmp(n->op_type, "Constant") == 0 || strcmp(n->op_type, "Shape") == 0 ||
        strcmp(n->op_type, "Size") == 0) {
        bool is_const = strcmp(n->op_type, "Constant") == 0;
        if (n->n_outputs != 1 || !n->outputs[0])
            return TD_OK;
        if (is_const)
            TD_TRY(constant_value(ctx, n, &outs[0]));
        else if (n->n_inputs >= 1 && !opt_const(n->inputs[0]))
            TD_TRY(static_shape_value(ctx, n, &outs[0]));
        if (is_const || outs[0]) {
            if (!outs[0])
                return TD_OK;
            TD_TRY(install(ctx, g, n, outs));
            *changed = true;
            return TD_OK;
        }
    }
    const td_tensor *ins[MAX_FOLD_IO];
    bool all_const = n->n_inputs > 0;
    for (int j = 0; j < n->n_inputs && all_const; j++) {
        ins[j] = n->inputs[j] ? opt_const(n->inputs[j]) : NULL;
        all_const = !n->inputs[j] || ins[j];
    }
    if (!all_const)
        return TD_OK;
    int64_t node_max = e->max;
    bool same_size = preserves_size(n);
    if (same_size) /* a transposed/reshaped/cast weight is no bigger than the weight itself */
        for (int j = 0; j < n->n_inputs; j++)
            if (ins[j] && td_tensor_numel(ins[j]) > node_max)
                node_max = td_tensor_numel(ins[j]);
    td_status s = evaluate(ctx, e, n, ins, node_max, outs);
    if (s == TD_ERR_UNSUPPORTED) {
        td_clear_error(ctx);
        for (int j = 0; j < n->n_outputs; j++)
            td_tensor_free(outs[j]);
        return TD_OK;
    }
    if (s != TD_OK) {
        for (int j = 0; j < n->n_outputs; j++)
            td_tensor_free(outs[j]);
        return td_wrap(ctx, "constant folding of %s node '%s'", n->op_type, n->name);
    }
    bool complete = true;
    for (int j = 0; j < n->n_outputs; j++)
        complete &= !n->outputs[j] || outs[j];
    if (!complete) {
        for (int j = 0; j < n->n_outputs; j++)
            td_tensor_free(outs[j]);
        return td_fail(ctx, TD_ERR_INTERNAL, "evaluator returned no tensor for an output of %s node '%s'",
                       n->op_type, n->name);
    }
    for (int j = 0; j < n->n_outputs; j++)
        if (outs[j] && n->outputs[j] && strcmp(outs[j]->name ? outs[j]->name : "", n->outputs[j]->name) != 0) {
            free(outs[j]->name);
            outs[j]->name = strdup(n->outputs[j]->name);
            if (!outs[j]->name) {
                for (int k = 0; k < n->n_outputs; k++)
                    td_tensor_free(outs[k]);
                return td_fail_oom(ctx, 0, "a name");
            }
        }
    td_value *srcs[MAX_FOLD_IO];
    int n_srcs = n->n_inputs;
    for (int j = 0; j < n_srcs; j++)
        srcs[j] = n->inputs[j];
    TD_TRY(install(ctx, g, n, outs));
    if (same_size)
        for (int j = 0; j < n_srcs; j++) {
            td_value *src = srcs[j];
            release_mapped_pages(src);
            /* a weight replaced by its transposed copy: free it now rather than at the next dce,
             * so the model is not held twice (subgraphs may read values by name: left to dce) */
            if (src && src->initializer && !src->n_consumers && !src->is_output && !src->is_input && !e->subgraphs)
                release_initializer(g, src, &e->pool);
        }
    *changed = true;
    return TD_OK;
}

td_status td_pass_fold(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    const td_opt_options *o = st->opts;
    fold_env e = {
        .g = g,
        /* default: the CPU runtime's kernels, with the reference kernels behind them */
        .eval = o->eval ? o->eval : td_fold_eval_runtime,
        .eval_user = o->eval ? o->eval_user : st->model,
        .default_eval = !o->eval,
        .max = o->fold_max_elements > 0 ? o->fold_max_elements : (1 << 20),
    };
    for (int i = 0; i < g->n_nodes && !e.subgraphs; i++)
        for (int a = 0; a < g->nodes[i]->n_attrs; a++)
            e.subgraphs |= g->nodes[i]->attrs[a].g || g->nodes[i]->attrs[a].graphs;
    td_status s = TD_OK;
    for (int i = 0; i < g->n_nodes && s == TD_OK; i++) {
        bool changed = false;
        s = fold_node(ctx, &e, g->nodes[i], &changed);
        *changes += changed;
    }
    spare_free(&e.pool);
    td_graph_compact(g);
    return s;
}
