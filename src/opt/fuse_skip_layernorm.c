/* Residual Add + LayerNormalization -> com.microsoft SkipLayerNormalization
 * (and Add + SimplifiedLayerNormalization -> SkipSimplifiedLayerNormalization).
 *   s = Add(a, b); y = LayerNormalization(s, gamma, beta, axis=-1)
 * a and b must be activations of the same 3-D shape (proven by shape inference).
 * When one of them is Add(MatMul(..), bias) with a 1-D constant bias, the bias
 * moves into SkipLayerNormalization's bias input. When s has other users (pre-LN
 * residual streams) they read SkipLayerNormalization's input_skip_bias_sum output.
 * An Add of embedding lookups only (word + position [+ type]) is not a residual
 * and is left for the embedding LayerNorm. */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <string.h>

static bool same_3d_shape(const td_value *a, const td_value *b) {
    if (a->type.rank != 3 || b->type.rank != 3)
        return false;
    for (int i = 0; i < 3; i++)
        if (!opt_dim_equal(&a->type.dims[i], &b->type.dims[i]))
            return false;
    return true;
}

/* Gathers from constant tables and sums of them: the embedding stage. */
static bool is_embedding_sum(const td_value *v, int depth) {
    if (depth > 4)
        return false;
    td_node *gth = opt_producer(v, "Gather");
    if ((gth && opt_const(gth->inputs[0])) || opt_const(v)) /* a lookup, or a folded one (constant token type) */
        return true;
    td_node *sl = opt_producer(v, "Slice"); /* position table sliced to the sequence length */
    if (sl && opt_const(sl->inputs[0]))
        return true;
    td_node *add = opt_producer(v, "Add");
    return add && !(opt_const(add->inputs[0]) && opt_const(add->inputs[1])) &&
           is_embedding_sum(add->inputs[0], depth + 1) && is_embedding_sum(add->inputs[1], depth + 1);
}

/* a = Add(m, bias) with m a MatMul output and bias a 1-D constant of width hidden. */
static bool split_bias(const td_value *a, int64_t hidden, td_value **m, td_value **bias) {
    td_node *add = opt_producer(a, "Add");
    if (!add || !opt_single_use(a))
        return false;
    for (int bi = 0; bi < 2; bi++) {
        const td_tensor *t = opt_const(add->inputs[bi]);
        if (t && t->rank == 1 && t->dims[0] == hidden && opt_producer(add->inputs[1 - bi], "MatMul") &&
            same_3d_shape(add->inputs[1 - bi], a)) {
            *m = add->inputs[1 - bi];
            *bias = add->inputs[bi];
            return true;
        }
    }
    return false;
}

td_status td_pass_fuse_skip_layernorm(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *ln = g->nodes[i];
        bool simplified = opt_is_op(ln, "SimplifiedLayerNormalization");
        if ((!opt_is_op(ln, "LayerNormalization") && !simplified) || ln->n_inputs < 2 || ln->n_outputs < 1)
            continue;
        if (simplified && ln->n_inputs > 2)
            continue;
        bool extra_outputs = false;
        for (int j = 1; j < ln->n_outputs; j++)
            extra_outputs |= ln->outputs[j] && (ln->outputs[j]->n_consumers || ln->outputs[j]->is_output);
        int64_t axis = td_node_attr_int(ln, "axis", -1);
        td_value *s = ln->inputs[0];
        if (extra_outputs || (axis != -1 && axis != 2) || s->type.rank != 3)
            continue;
        int64_t hidden = s->type.dims[2].value;
        const td_tensor *gamma = opt_const(ln->inputs[1]);
        const td_tensor *beta = ln->n_inputs > 2 ? opt_const(ln->inputs[2]) : NULL;
        if (hidden <= 0 || !gamma || gamma->rank != 1 || gamma->dims[0] != hidden ||
            (ln->n_inputs > 2 && ln->inputs[2] && (!beta || beta->rank != 1 || beta->dims[0] != hidden)))
            continue;
        td_node *add = opt_producer(s, "Add");
        if (!add || add->n_inputs != 2 || s->is_output)
            continue;
        td_value *a = add->inputs[0], *b = add->inputs[1];
        if (!a || !b || opt_const(a) || opt_const(b) || !same_3d_shape(a, b) || !same_3d_shape(a, s))
            continue;
        if (is_embedding_sum(s, 0))
            continue;
        td_value *input = a, *skip = b, *bias = NULL, *m = NULL;
        if (split_bias(a, hidden, &m, &bias)) {
            input = m;
        } else if (split_bias(b, hidden, &m, &bias)) {
            input = m;
            skip = a;
        }
        td_value *ins[5] = {input, skip, ln->inputs[1], ln->n_inputs > 2 ? ln->inputs[2] : NULL, bias};
        int n_ins = bias ? 5 : (ins[3] ? 4 : 3);
        if (simplified) { /* (input, skip, gamma, bias): no beta */
            ins[3] = bias;
            n_ins = bias ? 4 : 3;
        }
        td_value *y = ln->outputs[0];
        bool sum_used = s->n_consumers > 1;
        float eps = td_node_attr_float(ln, "epsilon", 1e-5f);
        td_graph_remove_node(g, ln);
        td_value *outs[4] = {y, NULL, NULL, NULL};
        if (sum_used) { /* s keeps its users, now fed by output 3 */
            td_graph_remove_node(g, add);
            outs[3] = s;
        }
        td_node *sln = NULL;
        TD_TRY(opt_add_node(ctx, g, simplified ? "SkipSimplifiedLayerNormalization" : "SkipLayerNormalization",
                            "com.microsoft", "SkipLayerNorm", ins, n_ins, outs, sum_used ? 4 : 1, &sln));
        TD_TRY(td_node_add_attr_float(ctx, sln, "epsilon", eps));
        (*changes)++;
    }
    return TD_OK;
}
