/* SiLU / Swish written as Mul(x, Sigmoid(x)) (operands in either order) ->
 * com.microsoft QuickGelu(x, alpha=1), i.e. x * Sigmoid(1 * x): the CPU
 * contrib op ONNX Runtime has for it. The gate product of a SiLU-gated MLP
 * (Mul(silu(gate), up)) stays a standard Mul: ONNX Runtime's SwiGLU op has no
 * CPU kernel, so a graph using it would not run there. */
#include "opt/opt_util.h"
#include "opt/pass.h"

td_status td_pass_fuse_silu(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *mul = g->nodes[i];
        if (!opt_is_op(mul, "Mul") || mul->n_inputs != 2 || !mul->outputs[0])
            continue;
        for (int s = 0; s < 2; s++) {
            td_node *sig = opt_producer(mul->inputs[s], "Sigmoid");
            td_value *x = mul->inputs[1 - s];
            if (!sig || sig->inputs[0] != x || !opt_single_use(mul->inputs[s]) || opt_const(x) ||
                (x->type.elem != TD_F32 && x->type.elem != TD_UNDEFINED))
                continue;
            td_node *q = NULL;
            TD_TRY(opt_replace_producer(ctx, g, mul->outputs[0], "QuickGelu", "com.microsoft", "SiLU", &x, 1, &q));
            TD_TRY(td_node_add_attr_float(ctx, q, "alpha", 1.0f));
            (*changes)++;
            break;
        }
    }
    return TD_OK;
}
