/* Session creation (graph analysis, dtype checks, value classification),
 * input binding with shape validation, run and output access. Planning lives in
 * plan.c, op execution in the backend (cpu/backend_cpu.c). */
#include "runtime/session_impl.h"

#include "core/checked.h"
#include "core/threadpool.h"
#include "runtime/cpu/kern.h"
#include "runtime/plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TD_TRY_GOTO(e)      \
    do {                    \
        st = (e);           \
        if (st != TD_OK)    \
            goto out;       \
    } while (0)

static void free_in_dims(td_session *s);

void td_session_options_init(td_session_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->precision = TD_PRECISION_FP32;
}

td_status td_node_fail(td_ctx *ctx, const td_rt_node *rn, td_status st, const char *fmt, ...) {
    char msg[TD_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const td_node *n = rn->node;
    return td_fail(ctx, st, "node '%s' (%s%s%s, opset %lld): %s", n->name && *n->name ? n->name : "(unnamed)",
                   n->domain && *n->domain ? n->domain : "", n->domain && *n->domain ? "::" : "", n->op_type,
                   (long long)rn->opset, msg);
}

int64_t td_rt_numel(const td_rt_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

size_t td_rt_nbytes(const td_rt_tensor *t) { return (size_t)td_rt_numel(t) * td_dtype_size(t->dtype); }

/* ---- value index lookup: graph values sorted by address ---- */

typedef struct vidx {
    const td_value *v;
    int idx;
} vidx;

static int cmp_vidx(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const vidx *)a)->v, y = (uintptr_t)((const vidx *)b)->v;
    return x < y ? -1 : (x > y);
}

static int value_index(const vidx *tab, int n, const td_value *v) {
    vidx key = {v, 0};
    const vidx *hit = bsearch(&key, tab, (size_t)n, sizeof *tab, cmp_vidx);
    return hit ? hit->idx : -1;
}

static const char *vname(const td_value *v) { return v && v->name ? v->name : "(unnamed)"; }

static int64_t node_opset(const td_model *m, const char *domain) {
    if (!domain || !*domain || strcmp(domain, "ai.onnx") == 0) {
        int64_t v = td_model_opset(m, "");
        return v ? v : td_model_opset(m, "ai.onnx");
    }
    return td_model_opset(m, domain);
}

/* Kahn's algorithm over live nodes, keeping file order among ready nodes. */
static td_status topo_order(td_ctx *ctx, const td_graph *g, const td_node ***out, int *n_out) {
    td_status st = TD_OK;
    int n = g->n_nodes, cnt = 0;
    const td_node **order = calloc((size_t)n + 1, sizeof *order);
    int *indeg = calloc((size_t)n + 1, sizeof *indeg);
    int *queue = calloc((size_t)n + 1, sizeof *queue);
    if (!order || !indeg || !queue) {
        st = td_fail_oom(ctx, (size_t)n * 24, "node order");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        td_node *nd = g->nodes[i];
        nd->order = i;
    }
    for (int i = 0; i < n; i++) {
        td_node *nd = g->nodes[i];
        if (nd->dead)
            continue;
        for (int k = 0; k < nd->n_inputs; k++) {
            td_value *v = nd->inputs[k];
            if (v && v->producer && !v->producer->dead && v->producer->graph == g)
                indeg[i]++;
        }
    }
    /* Min-index ready set: a simple scan keeps file order (graphs are small enough). */
    int qh = 0, qt = 0;
    for (int i = 0; i < n; i++)
        if (!g->nodes[i]->dead && indeg[i] == 0)
            queue[qt++] = i;
    while (qh < qt) {
        int i = queue[qh++];
        const td_node *nd = g->nodes[i];
        order[cnt++] = nd;
        for (int k = 0; k < nd->n_outputs; k++) {
            td_value *v = nd->outputs[k];
            if (!v)
                continue;
            for (int c = 0; c < v->n_consumers; c++) {
                td_node *cn = v->consumers[c];
                if (cn->dead || cn->graph != g)
                    continue;
                if (--indeg[cn->order] == 0)
                    queue[qt++] = cn->order;
            }
        }
    }
    int live = 0;
    for (int i = 0; i < n; i++)
        live += !g->nodes[i]->dead;
    if (cnt != live) {
        const td_node *bad = NULL;
        for (int i = 0; i < n && !bad; i++)
            if (!g->nodes[i]->dead && indeg[i] > 0)
                bad = g->nodes[i];
        st = td_fail(ctx, TD_ERR_GRAPH, "graph has a cycle or an input produced by a missing node (at node '%s', %s)",
                     bad && bad->name ? bad->name : "?", bad ? bad->op_type : "?");
        goto out;
    }
    *out = order;
    *n_out = cnt;
    order = NULL;
out:
    free(order);
    free(indeg);
    free(queue);
    return st;
}

static void free_nodes(td_session *s) {
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        free(rn->in);
        free(rn->out);
        free(rn->tin);
        free(rn->tout);
        free(rn->state);
        td_kern_packed_free(rn->packed);
    }
    free(s->nodes);
}

void td_session_free(td_session *s) {
    if (!s)
        return;
    td_plan_release(s);
    if (s->backend && s->backend->free)
        s->backend->free(s->backend_state);
    free_nodes(s);
    td_threadpool_free(s->env.pool);
    free(s->vals);
    free(s->input_vals);
    free(s->output_vals);
    free(s->in_dtype);
    free(s->in_rank);
    free_in_dims(s);
    free(s->in_dims);
    free(s->in_params);
    free(s->bound);
    free(s->key);
    free(s->key_data);
    td_model_free(s->owned_model);
    td_model_file_close(s->owned_file);
    free(s);
}

/* Inputs and outputs, with declared types. */
static td_status build_io(td_ctx *ctx, td_session *s, const vidx *tab) {
    const td_graph *g = s->g;
    s->n_inputs = 0;
    s->input_vals = calloc((size_t)g->n_inputs + 1, sizeof(int));
    s->in_dtype = calloc((size_t)g->n_inputs + 1, sizeof(int32_t));
    s->in_rank = calloc((size_t)g->n_inputs + 1, sizeof(int));
    s->in_dims = calloc((size_t)g->n_inputs + 1, sizeof(int64_t *));
    s->in_params = calloc((size_t)g->n_inputs + 1, sizeof(char **));
    s->bound = calloc((size_t)g->n_inputs + 1, sizeof(td_input_binding));
    s->key = calloc((size_t)g->n_inputs + 1, sizeof(td_input_binding));
    s->key_data = calloc((size_t)g->n_inputs + 1, sizeof(uint8_t *));
    s->output_vals = calloc((size_t)g->n_outputs + 1, sizeof(int));
    if (!s->input_vals || !s->in_dtype || !s->in_rank || !s->in_dims || !s->in_params || !s->bound || !s->key ||
        !s->key_data || !s->output_vals)
        return td_fail_oom(ctx, 0, "session inputs");
    for (int i = 0; i < g->n_inputs; i++) {
        td_value *v = g->inputs[i];
        if (v->initializer)
            continue; /* an input with a default value: treated as a constant */
        int k = s->n_inputs++;
        int vi = value_index(tab, s->nv, v);
        s->input_vals[k] = vi;
        if (v->type.elem == TD_UNDEFINED || v->type.raw)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "graph input '%s' is not a tensor with a known element type",
                           vname(v));
        if (v->type.rank > TD_MAX_RANK)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "graph input '%s' has rank %d (max %d)", vname(v), v->type.rank,
                           TD_MAX_RANK);
        s->in_dtype[k] = (int32_t)v->type.elem;
        s->in_rank[k] = v->type.rank;
        if (v->type.rank > 0) {
            /* dims and params as flat arrays inside one allocation per input */
            int64_t *dims = calloc((size_t)v->type.rank, sizeof *dims + sizeof(char *));
            if (!dims)
                return td_fail_oom(ctx, 0, "input dims");
            const char **params = (const char **)(dims + v->type.rank);
            for (int d = 0; d < v->type.rank; d++) {
                dims[d] = v->type.dims[d].value;
                params[d] = v->type.dims[d].param;
            }
            s->in_dims[k] = dims;
            s->in_params[k] = params;
        }
        s->vals[vi].kind = TD_V_INPUT;
    }
    s->n_outputs = g->n_outputs;
    for (int i = 0; i < g->n_outputs; i++) {
        int vi = value_index(tab, s->nv, g->outputs[i]);
        if (vi < 0)
            return td_fail(ctx, TD_ERR_GRAPH, "graph output '%s' is not a value of the graph", vname(g->outputs[i]));
        s->output_vals[i] = vi;
    }
    return TD_OK;
}

static void free_in_dims(td_session *s) {
    if (s->in_dims)
        for (int i = 0; i < s->n_inputs; i++)
            free(s->in_dims[i]);
}

/* Resolve ops, check attributes and dtypes (op init), link value indices. */
static td_status build_nodes(td_ctx *ctx, td_session *s, const vidx *tab, const td_node **order) {
    for (int i = 0; i < s->nn; i++) {
        const td_node *n = order[i];
        td_rt_node *rn = &s->nodes[i];
        rn->node = n;
        rn->threads = s->env.threads;
        rn->opset = node_opset(s->model, n->domain);
        const char *domain = n->domain && strcmp(n->domain, "ai.onnx") != 0 ? n->domain : "";
        rn->def = td_op_find(domain, n->op_type);
        if (!rn->def)
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "operator %s%s%s is not implemented by the runtime",
                                *domain ? domain : "", *domain ? "::" : "", n->op_type);
        if (rn->opset == 0)
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "the model imports no opset for domain '%s'",
                                *domain ? domain : "ai.onnx");
        if (rn->opset < rn->def->min_opset || rn->opset > rn->def->max_opset)
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "opset %lld is outside the versions implemented (%d..%d)",
                                (long long)rn->opset, rn->def->min_opset, rn->def->max_opset);
        rn->n_in = n->n_inputs;
        rn->n_out = n->n_outputs;
        rn->in = malloc(((size_t)rn->n_in + 1) * sizeof(int));
        rn->out = malloc(((size_t)rn->n_out + 1) * sizeof(int));
        td_dtype *in_dt = calloc((size_t)rn->n_in + 1, sizeof *in_dt);
        td_dtype *out_dt = calloc((size_t)rn->n_out + 1, sizeof *out_dt);
        td_status st = TD_OK;
        if (!rn->in || !rn->out || !in_dt || !out_dt) {
            st = td_fail_oom(ctx, 0, "node table");
            goto node_out;
        }
        for (int k = 0; k < rn->n_in; k++) {
            rn->in[k] = n->inputs[k] ? value_index(tab, s->nv, n->inputs[k]) : -1;
            if (n->inputs[k] && rn->in[k] < 0) {
                st = td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "input '%s' comes from an enclosing graph",
                                  vname(n->inputs[k]));
                goto node_out;
            }
            if (rn->in[k] >= 0) {
                td_rt_value *iv = &s->vals[rn->in[k]];
                if (iv->kind == TD_V_UNUSED) {
                    st = td_node_fail(ctx, rn, TD_ERR_GRAPH,
                                      "input '%s' is neither a graph input, an initializer nor any node's output",
                                      vname(n->inputs[k]));
                    goto node_out;
                }
                in_dt[k] = iv->dtype;
            }
        }
        for (int k = 0; k < rn->n_out; k++)
            rn->out[k] = n->outputs[k] ? value_index(tab, s->nv, n->outputs[k]) : -1;
        rn->tin = calloc((size_t)rn->n_in + 1, sizeof *rn->tin);
        rn->tout = calloc((size_t)rn->n_out + 1, sizeof *rn->tout);
        if (!rn->tin || !rn->tout) {
            st = td_fail_oom(ctx, 0, "node table");
            goto node_out;
        }
        for (int k = 0; k < rn->n_in; k++)
            rn->tin[k] = rn->in[k] >= 0 ? &s->vals[rn->in[k]].t : NULL;
        for (int k = 0; k < rn->n_out; k++) {
            if (rn->out[k] >= 0 && s->vals[rn->out[k]].producer >= 0) {
                st = td_node_fail(ctx, rn, TD_ERR_GRAPH, "output '%s' is also produced by another node",
                                  vname(n->outputs[k]));
                goto node_out;
            }
            if (rn->out[k] >= 0 && s->vals[rn->out[k]].kind != TD_V_UNUSED) {
                st = td_node_fail(ctx, rn, TD_ERR_GRAPH, "output '%s' is also a graph input or initializer",
                                  vname(n->outputs[k]));
                goto node_out;
            }
            rn->tout[k] = rn->out[k] >= 0 ? &s->vals[rn->out[k]].t : NULL;
        }
        st = rn->def->init(ctx, rn, in_dt, out_dt);
        if (st == TD_OK && s->backend->supports_op)
            st = s->backend->supports_op(ctx, rn, in_dt);
        if (st != TD_OK)
            goto node_out;
        for (int k = 0; k < rn->n_out; k++) {
            if (rn->out[k] < 0)
                continue;
            td_rt_value *ov = &s->vals[rn->out[k]];
            ov->dtype = out_dt[k];
            ov->producer = i;
            ov->kind = TD_V_ARENA;
            ov->t.dtype = out_dt[k];
            if (k == 0 && rn->const_output) {
                ov->kind = TD_V_CONST;
                ov->t = rn->const_val;
            }
            const td_type *decl = &ov->v->type;
            if (ov->v->is_output && decl->elem != TD_UNDEFINED && decl->elem != out_dt[k]) {
                st = td_node_fail(ctx, rn, TD_ERR_DTYPE, "graph output '%s' is declared %s but the op produces %s",
                                  vname(ov->v), td_dtype_name(decl->elem), td_dtype_name(out_dt[k]));
                goto node_out;
            }
        }
    node_out:
        free(in_dt);
        free(out_dt);
        if (st != TD_OK)
            return st;
    }
    return TD_OK;
}

/* The input slot whose bytes output k of a viewing or in-place op is (TD_OP_VIEW / TD_OP_IN_PLACE: output 0 is
 * input 0; TD_OP_IN_PLACE_KV: outputs 1, 2 are inputs 3, 4), or -1; the slot may be omitted (rn->in[i] < 0). */
static int alias_slot(const td_rt_node *rn, int k) {
    if (k < 0 || k >= rn->n_out || rn->out[k] < 0)
        return -1;
    if (k == 0 && (rn->def->flags & (TD_OP_VIEW | TD_OP_IN_PLACE)))
        return 0;
    if ((k == 1 || k == 2) && (rn->def->flags & TD_OP_IN_PLACE_KV))
        return k + 2;
    return -1;
}

static int alias_input(const td_rt_node *rn, int k) {
    int i = alias_slot(rn, k);
    return i >= 0 && i < rn->n_in && rn->in[i] >= 0 ? i : -1;
}

/* need_data (backwards), then hoisting and aliases (forwards). */
static void classify(td_session *s) {
    for (int i = s->nn - 1; i >= 0; i--) {
        td_rt_node *rn = &s->nodes[i];
        bool out_needed = false;
        for (int k = 0; k < rn->n_out; k++)
            if (rn->out[k] >= 0 && s->vals[rn->out[k]].need_data)
                out_needed = true;
        for (int k = 0; k < rn->n_in; k++) {
            if (rn->in[k] < 0)
                continue;
            bool shape_reads = k < 32 && (rn->def->data_inputs >> k) & 1u;
            bool producer_needs = out_needed && !(rn->def->flags & TD_OP_SHAPE_ONLY);
            if (shape_reads || producer_needs)
                s->vals[rn->in[k]].need_data = true;
        }
    }
    for (int v = 0; v < s->nv; v++) {
        td_rt_value *rv = &s->vals[v];
        rv->root = v;
        rv->is_static = rv->kind == TD_V_CONST || (rv->kind == TD_V_INPUT && rv->need_data);
    }
    s->n_hoisted = 0;
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        bool all_static = true, out_needed = false;
        if (!(rn->def->flags & TD_OP_SHAPE_ONLY))
            for (int k = 0; k < rn->n_in; k++)
                if (rn->in[k] >= 0 && !s->vals[rn->in[k]].is_static)
                    all_static = false;
        for (int k = 0; k < rn->n_out; k++)
            if (rn->out[k] >= 0 && s->vals[rn->out[k]].need_data)
                out_needed = true;
        rn->hoisted = all_static || out_needed || rn->const_output;
        s->n_hoisted += rn->hoisted;
        for (int k = 0; k < rn->n_out; k++) {
            if (rn->out[k] < 0)
                continue;
            td_rt_value *ov = &s->vals[rn->out[k]];
            if (ov->kind == TD_V_CONST) {
                ov->is_static = true;
            } else if (rn->hoisted) {
                ov->kind = TD_V_HOIST;
                ov->is_static = true;
            } else if (alias_input(rn, k) >= 0) {
                ov->kind = TD_V_ALIAS;
                ov->root = s->vals[rn->in[alias_input(rn, k)]].root;
            }
        }
    }
}

static td_status create_common(td_ctx *ctx, td_session *s) {
    td_status st = TD_OK;
    const td_node **order = NULL;
    vidx *tab = NULL;
    const td_graph *g = s->g;
    s->backend = td_backend_find(s->opt.backend ? s->opt.backend : "cpu");
    if (!s->backend)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "unknown backend '%s' (available: cpu, reference, cuda)", s->opt.backend);
    s->env.reference = s->backend->reference_kernels;
    s->env.threads = s->opt.threads > 0 ? s->opt.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (s->env.threads < 1 || s->env.reference)
        s->env.threads = 1;
    if (s->env.threads > 1 && td_threadpool_create(ctx, s->env.threads, &s->env.pool) != TD_OK)
        return td_wrap(ctx, "starting %d worker threads", s->env.threads);
    if (s->opt.precision != TD_PRECISION_FP32 && s->opt.precision != TD_PRECISION_FP16 &&
        s->opt.precision != TD_PRECISION_BF16)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "session precision %d: use fp32, fp16 or bf16 (int8 is a graph "
                       "property: optimize with --precision int8 and run that model)", (int)s->opt.precision);
    s->nv = g->n_values;
    s->vals = calloc((size_t)s->nv + 1, sizeof *s->vals);
    tab = malloc(((size_t)s->nv + 1) * sizeof *tab);
    if (!s->vals || !tab) {
        st = td_fail_oom(ctx, (size_t)s->nv * sizeof *s->vals, "session values");
        goto out;
    }
    for (int i = 0; i < s->nv; i++) {
        tab[i] = (vidx){g->values[i], i};
        td_rt_value *rv = &s->vals[i];
        rv->v = g->values[i];
        rv->producer = -1;
        rv->root = i;
        rv->dtype = rv->v->type.elem;
        rv->t.dtype = rv->dtype;
        if (rv->v->initializer) {
            const td_tensor *t = rv->v->initializer;
            rv->kind = TD_V_CONST;
            rv->dtype = t->dtype;
            if (t->rank > TD_MAX_RANK) {
                st = td_fail(ctx, TD_ERR_UNSUPPORTED, "initializer '%s' has rank %d (max %d)", vname(rv->v), t->rank,
                             TD_MAX_RANK);
                goto out;
            }
            if (t->dtype == TD_STRING || td_dtype_size(t->dtype) == 0) {
                st = td_fail(ctx, TD_ERR_UNSUPPORTED, "initializer '%s' has dtype %s, which the runtime does not support",
                             vname(rv->v), td_dtype_name(t->dtype));
                goto out;
            }
            int64_t numel;
            if (!td_shape_numel(t->dims, t->rank, &numel) || (uint64_t)numel * td_dtype_size(t->dtype) != t->nbytes) {
                st = td_fail(ctx, TD_ERR_FORMAT, "initializer '%s': %zu data bytes do not match its shape and dtype",
                             vname(rv->v), t->nbytes);
                goto out;
            }
            rv->t.dtype = t->dtype;
            rv->t.rank = t->rank;
            for (int d = 0; d < t->rank; d++)
                rv->t.shape[d] = t->dims[d];
            rv->t.data = (void *)t->data;
        }
    }
    qsort(tab, (size_t)s->nv, sizeof *tab, cmp_vidx);
    TD_TRY_GOTO(build_io(ctx, s, tab));
    TD_TRY_GOTO(topo_order(ctx, g, &order, &s->nn));
    s->nodes = calloc((size_t)s->nn + 1, sizeof *s->nodes);
    if (!s->nodes) {
        st = td_fail_oom(ctx, (size_t)s->nn * sizeof *s->nodes, "session nodes");
        goto out;
    }
    TD_TRY_GOTO(build_nodes(ctx, s, tab, order));
    for (int i = 0; i < s->n_outputs; i++) {
        const td_rt_value *ov = &s->vals[s->output_vals[i]];
        if (ov->kind == TD_V_UNUSED) {
            st = td_fail(ctx, TD_ERR_GRAPH, "graph output '%s' is not produced by any node", vname(ov->v));
            goto out;
        }
    }
    classify(s);
    for (int i = 0; i < s->nn; i++) { /* an in-place op writes into its input: only a buffer the caller binds */
        const td_rt_node *rn = &s->nodes[i];
        for (int k = 0; k < 3; k++) {
            int in = (rn->def->flags & (TD_OP_IN_PLACE | TD_OP_IN_PLACE_KV)) ? alias_slot(rn, k) : -1;
            if (in >= 0 && (in >= rn->n_in || rn->in[in] < 0 || s->vals[rn->in[in]].kind != TD_V_INPUT || rn->hoisted)) {
                st = td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "input %d is updated in place, so it must be a graph "
                                  "input (a buffer the caller binds), not '%s'", in,
                                  in < rn->n_in && rn->in[in] >= 0 ? vname(s->vals[rn->in[in]].v) : "(omitted)");
                goto out;
            }
        }
    }
    TD_TRY_GOTO(s->backend->prepare(ctx, s, &s->backend_state));
out:
    free(order);
    free(tab);
    return st;
}

td_status td_session_create_model(td_ctx *ctx, const td_model *model, const td_session_options *opt,
                                  td_session **out) {
    *out = NULL;
    if (!model || !model->graph)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_session_create_model: no model");
    td_session *s = calloc(1, sizeof *s);
    if (!s)
        return td_fail_oom(ctx, sizeof *s, "session");
    s->model = model;
    s->g = model->graph;
    if (opt)
        s->opt = *opt;
    else
        td_session_options_init(&s->opt);
    td_status st = create_common(ctx, s);
    if (st != TD_OK) {
        td_session_free(s);
        return st;
    }
    *out = s;
    return TD_OK;
}

td_status td_session_adopt_model(td_session *s, td_model *model) {
    s->owned_model = model;
    return TD_OK;
}

/* ---- inputs and outputs ---- */

int td_session_input_count(const td_session *s) { return s->n_inputs; }
int td_session_output_count(const td_session *s) { return s->n_outputs; }
const char *td_session_input_name(const td_session *s, int i) {
    return i >= 0 && i < s->n_inputs ? s->vals[s->input_vals[i]].v->name : NULL;
}
const char *td_session_output_name(const td_session *s, int i) {
    return i >= 0 && i < s->n_outputs ? s->vals[s->output_vals[i]].v->name : NULL;
}
int td_session_input_index(const td_session *s, const char *name) {
    for (int i = 0; i < s->n_inputs; i++)
        if (strcmp(td_session_input_name(s, i), name) == 0)
            return i;
    return -1;
}
int td_session_output_index(const td_session *s, const char *name) {
    for (int i = 0; i < s->n_outputs; i++)
        if (strcmp(td_session_output_name(s, i), name) == 0)
            return i;
    return -1;
}

void td_session_input_info(const td_session *s, int i, int32_t *dtype, int *rank, const int64_t **dims,
                           const char *const **params) {
    if (dtype)
        *dtype = s->in_dtype[i];
    if (rank)
        *rank = s->in_rank[i];
    if (dims)
        *dims = s->in_dims[i];
    if (params)
        *params = s->in_params[i];
}

td_status td_session_set_input(td_ctx *ctx, td_session *s, const char *name, int32_t dtype, int rank,
                               const int64_t *shape, const void *data, size_t nbytes) {
    int i = name ? td_session_input_index(s, name) : -1;
    if (i < 0) {
        char list[512] = "";
        size_t pos = 0;
        for (int k = 0; k < s->n_inputs && pos < sizeof list; k++)
            pos += (size_t)snprintf(list + pos, sizeof list - pos, "%s%s", k ? ", " : "", td_session_input_name(s, k));
        return td_fail(ctx, TD_ERR_NOT_FOUND, "the model has no input named '%s' (inputs: %s)", name ? name : "(null)",
                       list);
    }
    if (dtype != s->in_dtype[i])
        return td_fail(ctx, TD_ERR_DTYPE, "input '%s': got %s data, the model expects %s", name,
                       td_dtype_name((td_dtype)dtype), td_dtype_name((td_dtype)s->in_dtype[i]));
    if (rank < 0 || rank > TD_MAX_RANK)
        return td_fail(ctx, TD_ERR_SHAPE, "input '%s': rank %d is outside 0..%d", name, rank, TD_MAX_RANK);
    if (s->in_rank[i] >= 0 && rank != s->in_rank[i]) {
        char buf[160];
        return td_fail(ctx, TD_ERR_SHAPE, "input '%s': got rank %d (shape %s), the model expects rank %d", name, rank,
                       td_shape_str(shape, rank, buf, sizeof buf), s->in_rank[i]);
    }
    int64_t numel;
    if (!td_shape_numel(shape, rank, &numel))
        return td_fail(ctx, TD_ERR_SHAPE, "input '%s': shape has a negative dim or overflows", name);
    size_t want;
    if ((uint64_t)numel > SIZE_MAX || !td_mul_size((size_t)numel, td_dtype_size((td_dtype)dtype), &want))
        return td_fail(ctx, TD_ERR_OVERFLOW, "input '%s': byte size overflows", name);
    if (nbytes != want)
        return td_fail(ctx, TD_ERR_SHAPE, "input '%s': %zu bytes given, shape and dtype need %zu", name, nbytes, want);
    if (want && !data)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "input '%s': no data", name);
    for (int d = 0; d < rank && s->in_rank[i] >= 0; d++) {
        int64_t decl = s->in_dims[i][d];
        if (decl >= 0 && !s->in_params[i][d] && shape[d] != decl)
            return td_fail(ctx, TD_ERR_SHAPE, "input '%s': axis %d is %lld, the model fixes it to %lld", name, d,
                           (long long)shape[d], (long long)decl);
    }
    td_input_binding *b = &s->bound[i];
    b->set = true;
    b->rank = rank;
    for (int d = 0; d < rank; d++)
        b->shape[d] = shape[d];
    b->data = data;
    b->nbytes = nbytes;
    return TD_OK;
}

/* Symbolic dims that share a name must agree across all inputs. */
static td_status check_symbols(td_ctx *ctx, const td_session *s) {
    for (int i = 0; i < s->n_inputs; i++) {
        for (int d = 0; d < s->in_rank[i]; d++) {
            const char *p = s->in_params[i][d];
            if (!p || !*p)
                continue;
            for (int j = 0; j <= i; j++) {
                for (int e = 0; e < s->in_rank[j] && (j < i || e < d); e++) {
                    const char *q = s->in_params[j][e];
                    if (q && strcmp(p, q) == 0 && s->bound[i].shape[d] != s->bound[j].shape[e])
                        return td_fail(ctx, TD_ERR_SHAPE,
                                       "dim '%s' disagrees between inputs: '%s' axis %d is %lld but '%s' axis %d is %lld",
                                       p, td_session_input_name(s, j), e, (long long)s->bound[j].shape[e],
                                       td_session_input_name(s, i), d, (long long)s->bound[i].shape[d]);
                }
            }
        }
    }
    return TD_OK;
}

td_status td_session_run(td_ctx *ctx, td_session *s) {
    s->outputs_valid = false;
    for (int i = 0; i < s->n_inputs; i++)
        if (!s->bound[i].set)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "input '%s' was not set (td_session_set_input)",
                           td_session_input_name(s, i));
    TD_TRY(check_symbols(ctx, s));
    if (s->engine)
        TD_TRY(td_session_check_profile(ctx, s));
    if (!s->planned || td_plan_key_changed(s)) {
        td_status st = td_plan_build(ctx, s);
        if (st != TD_OK)
            return st;
    }
    td_plan_bind_inputs(s);
    TD_TRY(s->backend->run(ctx, s, s->backend_state));
    s->n_runs++;
    s->outputs_valid = true;
    return TD_OK;
}

td_status td_session_plan_only(td_ctx *ctx, td_session *s) {
    for (int i = 0; i < s->n_inputs; i++)
        if (!s->bound[i].set)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "input '%s' was not set", td_session_input_name(s, i));
    TD_TRY(check_symbols(ctx, s));
    return td_plan_build(ctx, s);
}

td_status td_session_get_output(td_ctx *ctx, const td_session *s, int i, td_session_output *out) {
    if (i < 0 || i >= s->n_outputs)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "output index %d is outside 0..%d", i, s->n_outputs - 1);
    if (!s->outputs_valid)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "no outputs: the last td_session_run did not succeed (or none ran)");
    const td_rt_value *v = &s->vals[s->output_vals[i]];
    const td_rt_tensor *t = &v->t;
    out->name = v->v->name;
    out->dtype = (int32_t)t->dtype;
    out->rank = t->rank;
    out->shape = t->shape;
    out->data = t->data;
    out->nbytes = td_rt_nbytes(t);
    return TD_OK;
}

void td_session_get_stats(const td_session *s, td_session_stats *out) {
    memset(out, 0, sizeof *out);
    out->arena_bytes = s->arena_size;
    out->arena_naive_bytes = s->arena_naive;
    out->hoisted_bytes = s->hoisted_bytes;
    out->weight_bytes = s->weight_bytes;
    out->plans = s->n_plans;
    out->runs = s->n_runs;
    out->allocs = s->n_allocs;
    out->nodes = s->nn;
    out->hoisted_nodes = s->n_hoisted;
    out->fused_nodes = s->n_fused;
    out->device_ms = s->device_ms;
}
