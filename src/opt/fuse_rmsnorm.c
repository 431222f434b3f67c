/* RMSNorm (Llama, T5) -> SimplifiedLayerNormalization, the op ONNX Runtime
 * registers for it (in the default domain, as its own contrib kernel):
 *   r = 1 / Sqrt(ReduceMean(Pow(x, 2), last axis) + eps)     (Div(1, s) or Reciprocal(s))
 *   y = Mul(w, Mul(x, r))                                    (operands in either order)
 * -> SimplifiedLayerNormalization(x, w, axis=-1, epsilon=eps). */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <string.h>

static td_node *single_consumer(const td_value *v, const char *op) {
    return opt_single_use(v) && opt_is_op(v->consumers[0], op) ? v->consumers[0] : NULL;
}

td_status td_pass_fuse_rmsnorm(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *pw = g->nodes[i];
        double two, eps, one;
        if (!opt_is_op(pw, "Pow") || !opt_const_scalar(pw->inputs[1], &two) || two != 2.0)
            continue;
        td_value *x = pw->inputs[0];
        td_node *mean = single_consumer(pw->outputs[0], "ReduceMean");
        if (!mean || !opt_reduces_last_axis(mean, x))
            continue;
        td_node *add = single_consumer(mean->outputs[0], "Add");
        int ei = add ? opt_other_input(add, mean->outputs[0]) : -1;
        if (ei < 0 || !opt_const_scalar(add->inputs[ei], &eps) || !(eps > 0 && eps < 1))
            continue;
        td_node *sq = single_consumer(add->outputs[0], "Sqrt");
        if (!sq || !opt_single_use(sq->outputs[0]))
            continue;
        td_node *inv = sq->outputs[0]->consumers[0];
        bool recip = opt_is_op(inv, "Reciprocal");
        bool div = opt_is_op(inv, "Div") && inv->inputs[1] == sq->outputs[0] && opt_const_scalar(inv->inputs[0], &one) &&
                   one == 1.0;
        if ((!recip && !div) || !opt_single_use(inv->outputs[0]))
            continue;
        td_node *mx = inv->outputs[0]->consumers[0];
        if (!opt_is_op(mx, "Mul") || opt_other_input(mx, inv->outputs[0]) < 0 ||
            mx->inputs[opt_other_input(mx, inv->outputs[0])] != x)
            continue;
        td_node *mw = single_consumer(mx->outputs[0], "Mul");
        int wi = mw ? opt_other_input(mw, mx->outputs[0]) : -1;
        int64_t hidden = x->type.rank > 0 ? x->type.dims[x->type.rank - 1].value : -1;
        if (wi < 0 || hidden <= 0 || !opt_is_vector_const(mw->inputs[wi], hidden))
            continue;
        td_value *ins[2] = {x, mw->inputs[wi]};
        td_node *n = NULL;
        TD_TRY(opt_replace_producer(ctx, g, mw->outputs[0], "SimplifiedLayerNormalization", "", "RMSNorm", ins, 2, &n));
        TD_TRY(td_node_add_attr_int(ctx, n, "axis", -1));
        TD_TRY(td_node_add_attr_float(ctx, n, "epsilon", (float)eps));
        (*changes)++;
    }
    return TD_OK;
}
