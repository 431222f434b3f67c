/* Matching and construction helpers shared by the optimizer passes. */
#define _GNU_SOURCE
#include "opt/opt_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool opt_is_onnx_domain(const char *domain) { return !domain || !*domain || strcmp(domain, "ai.onnx") == 0; }

bool opt_is_op(const td_node *n, const char *op) {
    return n && !n->dead && opt_is_onnx_domain(n->domain) && strcmp(n->op_type, op) == 0;
}

td_node *opt_producer(const td_value *v, const char *op) {
    if (!v || !v->producer)
        return NULL;
    return opt_is_op(v->producer, op) ? v->producer : NULL;
}

const td_tensor *opt_const(const td_value *v) {
    if (!v || !v->initializer || v->is_input)
        return NULL;
    return v->initializer;
}

double opt_tensor_get(const td_tensor *t, int64_t i) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case TD_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case TD_F64: { double d; memcpy(&d, p + 8 * i, 8); return d; }
    case TD_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return td_f16_to_f32(h); }
    case TD_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return td_bf16_to_f32(h); }
    case TD_I64: { int64_t x; memcpy(&x, p + 8 * i, 8); return (double)x; }
    case TD_I32: { int32_t x; memcpy(&x, p + 4 * i, 4); return x; }
    case TD_I8: return ((const int8_t *)p)[i];
    case TD_U8: case TD_BOOL: return p[i];
    default: return 0;
    }
}

static bool numeric_readable(const td_tensor *t) {
    switch (t->dtype) {
    case TD_F32: case TD_F64: case TD_F16: case TD_BF16: case TD_I64: case TD_I32: case TD_I8: case TD_U8:
    case TD_BOOL:
        return t->data != NULL || t->nbytes == 0;
    default:
        return false;
    }
}

bool opt_const_scalar(const td_value *v, double *out) {
    const td_tensor *t = opt_const(v);
    if (!t || !numeric_readable(t) || td_tensor_numel(t) != 1)
        return false;
    *out = opt_tensor_get(t, 0);
    return true;
}

bool opt_const_all_near(const td_value *v, double x, double tol) {
    const td_tensor *t = opt_const(v);
    if (!t || !numeric_readable(t) || !td_dtype_is_float(t->dtype))
        return false;
    int64_t n = td_tensor_numel(t);
    if (n < 1)
        return false;
    for (int64_t i = 0; i < n; i++) {
        double y = opt_tensor_get(t, i);
        if (!(fabs(y - x) <= tol * fmax(1.0, fabs(x))))
            return false;
    }
    return true;
}

bool opt_const_ints(const td_value *v, int64_t *out, int max, int *n) {
    const td_tensor *t = opt_const(v);
    if (!t || (t->dtype != TD_I64 && t->dtype != TD_I32) || t->rank > 1)
        return false;
    int64_t cnt = td_tensor_numel(t);
    if (cnt > max)
        return false;
    for (int64_t i = 0; i < cnt; i++) {
        if (t->dtype == TD_I64)
            memcpy(&out[i], (const uint8_t *)t->data + 8 * i, 8);
        else {
            int32_t x;
            memcpy(&x, (const uint8_t *)t->data + 4 * i, 4);
            out[i] = x;
        }
    }
    *n = (int)cnt;
    return true;
}

bool opt_single_use(const td_value *v) { return v && v->n_consumers == 1 && !v->is_output; }

int opt_other_input(const td_node *n, const td_value *v) {
    if (n->n_inputs != 2)
        return -1;
    if (n->inputs[0] == v)
        return 1;
    if (n->inputs[1] == v)
        return 0;
    return -1;
}

bool opt_reduces_last_axis(const td_node *n, const td_value *x) {
    int64_t axes[4];
    int cnt = 0;
    size_t acount = 0;
    const int64_t *a = td_node_attr_ints(n, "axes", &acount);
    if (a) {
        if (acount != 1)
            return false;
        axes[0] = a[0];
        cnt = 1;
    } else if (n->n_inputs >= 2 && n->inputs[1]) {
        if (!opt_const_ints(n->inputs[1], axes, 4, &cnt) || cnt != 1)
            return false;
    } else {
        return false; /* reduce over all axes */
    }
    if (td_node_attr_int(n, "keepdims", 1) != 1)
        return false;
    if (axes[0] == -1)
        return true;
    return x && x->type.rank > 0 && axes[0] == x->type.rank - 1;
}

bool opt_is_vector_const(const td_value *v, int64_t len) {
    const td_tensor *t = opt_const(v);
    return t && td_dtype_is_float(t->dtype) && t->rank == 1 && t->dims[0] == len;
}

td_status opt_new_value(td_ctx *ctx, td_graph *g, const char *prefix, td_value **out) {
    char *name = td_graph_unique_name(g, prefix);
    if (!name)
        return td_fail_oom(ctx, 0, "a value name");
    td_status s = td_graph_add_value(ctx, g, name, out);
    free(name);
    return s;
}

td_status opt_new_const(td_ctx *ctx, td_graph *g, const char *prefix, td_dtype dtype, int rank,
                        const int64_t *dims, const void *data, size_t nbytes, td_value **out) {
    TD_TRY(opt_new_value(ctx, g, prefix, out));
    td_tensor *t = NULL;
    TD_TRY(td_tensor_new_copy(ctx, (*out)->name, dtype, rank, dims, data, nbytes, &t));
    return td_graph_set_initializer(ctx, g, *out, t);
}

td_status opt_new_const_owned(td_ctx *ctx, td_graph *g, const char *prefix, td_dtype dtype, int rank,
                              const int64_t *dims, void *buffer, size_t nbytes, td_value **out) {
    td_status s = opt_new_value(ctx, g, prefix, out);
    if (s != TD_OK) {
        free(buffer);
        return s;
    }
    td_tensor *t = NULL;
    TD_TRY(td_tensor_new_owned(ctx, (*out)->name, dtype, rank, dims, buffer, nbytes, &t)); /* frees buffer on failure */
    return td_graph_set_initializer(ctx, g, *out, t);
}

td_status opt_add_node(td_ctx *ctx, td_graph *g, const char *op_type, const char *domain, const char *prefix,
                       td_value *const *inputs, int n_inputs, td_value *const *outputs, int n_outputs,
                       td_node **out) {
    /* node names only need to be unique among nodes; a counter keeps them short */
    static unsigned long counter; /* atomically bumped: callers may run on several threads */
    char name[256];
    snprintf(name, sizeof name, "%s_td%lu", prefix, __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
    return td_graph_add_node(ctx, g, op_type, domain, name, inputs, n_inputs, outputs, n_outputs, out);
}

td_status opt_copy_type(td_ctx *ctx, td_value *dst, const td_value *src) {
    if (src->type.elem == TD_UNDEFINED && src->type.rank < 0)
        return TD_OK;
    int r = src->type.rank;
    int64_t dims[16];
    const char *params[16];
    if (r > 16)
        return TD_OK;
    for (int i = 0; i < r; i++) {
        dims[i] = src->type.dims[i].value;
        params[i] = src->type.dims[i].param;
    }
    return td_value_set_tensor_type(ctx, dst, src->type.elem, r, dims, params);
}

td_status opt_add_cast(td_ctx *ctx, td_graph *g, const char *prefix, td_value *v, td_dtype to, td_value **out,
                       td_node **node_out) {
    TD_TRY(opt_new_value(ctx, g, prefix, out));
    TD_TRY(opt_copy_type(ctx, *out, v));
    (*out)->type.elem = to;
    td_node *c = NULL;
    TD_TRY(opt_add_node(ctx, g, "Cast", "", "Cast", &v, 1, out, 1, &c));
    if (node_out)
        *node_out = c;
    return td_node_add_attr_int(ctx, c, "to", to);
}

bool opt_dim_equal(const td_dim *a, const td_dim *b) {
    if (a->value >= 0 && b->value >= 0)
        return a->value == b->value;
    if (a->param && b->param)
        return strcmp(a->param, b->param) == 0;
    return false;
}

bool opt_graph_has_subgraphs(const td_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        for (int a = 0; a < g->nodes[i]->n_attrs; a++)
            if (g->nodes[i]->attrs[a].g || g->nodes[i]->attrs[a].graphs)
                return true;
    return false;
}

/* v lost its last reader: remove its producer (and, recursively, whatever only it
 * read) and free it if it is a constant, so a fusion that copies weights (merged
 * Q/K/V) does not hold both copies until dead-node removal runs. */
static void sweep_unused(td_graph *g, td_value *v, int depth) {
    if (!v || v->n_consumers > 0 || v->is_output || v->is_input || depth > 64)
        return;
    if (v->initializer) {
        td_graph_clear_initializer(g, v);
        return;
    }
    td_node *p = v->producer;
    if (!p || p->dead)
        return;
    for (int j = 0; j < p->n_outputs; j++)
        if (p->outputs[j] && (p->outputs[j]->n_consumers > 0 || p->outputs[j]->is_output))
            return;
    td_value *ins[16];
    int n = p->n_inputs < 16 ? p->n_inputs : 16;
    for (int j = 0; j < n; j++)
        ins[j] = p->inputs[j];
    td_graph_remove_node(g, p);
    for (int j = 0; j < n; j++)
        sweep_unused(g, ins[j], depth + 1);
}

td_status opt_replace_producer(td_ctx *ctx, td_graph *g, td_value *out, const char *op_type, const char *domain,
                               const char *prefix, td_value *const *inputs, int n_inputs, td_node **node) {
    td_node *old = out->producer;
    td_value *old_ins[16];
    int n_old = 0;
    if (old) {
        n_old = old->n_inputs < 16 ? old->n_inputs : 16;
        for (int j = 0; j < n_old; j++)
            old_ins[j] = old->inputs[j];
        td_graph_remove_node(g, old);
    }
    TD_TRY(opt_add_node(ctx, g, op_type, domain, prefix, inputs, n_inputs, &out, 1, node));
    if (n_old && !opt_graph_has_subgraphs(g)) /* subgraphs may read values by name: leave those to dce */
        for (int j = 0; j < n_old; j++)
            sweep_unused(g, old_ins[j], 0);
    return TD_OK;
}
