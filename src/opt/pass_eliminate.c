/* Removal of nodes that compute their input unchanged: Identity, Dropout in
 * inference mode, Cast to the type the input already has, Reshape to the shape
 * the input already has; and Reshape of a single-use Reshape collapsed. */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <string.h>

/* Bypass n: uses of its output 0 read in instead. A graph output keeps its name,
 * so a node producing one is left alone. */
static td_status bypass(td_ctx *ctx, td_graph *g, td_node *n, td_value *in, int *changes) {
    td_value *out = n->outputs[0];
    if (!in || !out || out->is_output)
        return TD_OK;
    TD_TRY(td_value_replace_uses(ctx, out, in));
    td_graph_remove_node(g, n);
    (*changes)++;
    return TD_OK;
}

static bool dropout_is_noop(const td_node *n) {
    if (n->n_outputs > 1 && n->outputs[1] && (n->outputs[1]->n_consumers || n->outputs[1]->is_output))
        return false; /* the mask is used */
    if (n->n_inputs >= 3 && n->inputs[2]) {
        double training;
        if (!opt_const_scalar(n->inputs[2], &training) || training != 0)
            return false;
    }
    return true;
}

/* The shape constant describes exactly the input's (possibly symbolic) shape. */
static bool reshape_is_noop(const td_node *n) {
    const td_value *x = n->inputs[0];
    if (n->n_inputs < 2 || !x || x->type.rank < 0)
        return false;
    int64_t shape[16];
    int cnt = 0;
    if (!opt_const_ints(n->inputs[1], shape, 16, &cnt) || cnt != x->type.rank)
        return false;
    bool allowzero = td_node_attr_int(n, "allowzero", 0) != 0;
    int free_dims = 0;
    for (int i = 0; i < cnt; i++) {
        const td_dim *d = &x->type.dims[i];
        if (shape[i] == 0 && !allowzero)
            continue;
        if (shape[i] == -1) {
            free_dims++;
            continue;
        }
        if (d->value < 0 || d->value != shape[i])
            return false;
    }
    return free_dims <= 1; /* one -1 among otherwise matching dims must be that dim */
}

static td_status collapse_reshape_chain(td_ctx *ctx, td_node *n, int *changes) {
    td_node *inner = opt_producer(n->inputs[0], "Reshape");
    if (!inner || !opt_single_use(inner->outputs[0]) || n->n_inputs < 2)
        return TD_OK;
    /* a 0 in the outer shape copies a dim of the inner result: only safe when absent */
    int64_t shape[16];
    int cnt = 0;
    if (!opt_const_ints(n->inputs[1], shape, 16, &cnt))
        return TD_OK;
    for (int i = 0; i < cnt; i++)
        if (shape[i] == 0)
            return TD_OK;
    TD_TRY(td_node_set_input(ctx, n, 0, inner->inputs[0]));
    (*changes)++;
    return TD_OK;
}

td_status td_pass_eliminate(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    for (int i = 0; i < g->n_nodes; i++) {
        td_node *n = g->nodes[i];
        if (n->dead || !opt_is_onnx_domain(n->domain) || n->n_inputs < 1)
            continue;
        td_value *in = n->inputs[0];
        if (strcmp(n->op_type, "Identity") == 0) {
            TD_TRY(bypass(ctx, g, n, in, changes));
        } else if (strcmp(n->op_type, "Dropout") == 0) {
            if (dropout_is_noop(n))
                TD_TRY(bypass(ctx, g, n, in, changes));
        } else if (strcmp(n->op_type, "Cast") == 0) {
            int64_t to = td_node_attr_int(n, "to", -1);
            if (in && in->type.elem != TD_UNDEFINED && in->type.elem == to)
                TD_TRY(bypass(ctx, g, n, in, changes));
        } else if (strcmp(n->op_type, "Reshape") == 0) {
            if (reshape_is_noop(n))
                TD_TRY(bypass(ctx, g, n, in, changes));
            else
                TD_TRY(collapse_reshape_chain(ctx, n, changes));
        }
    }
    td_graph_compact(g);
    return TD_OK;
}
