/* Bias folding into GELU: Gelu(Add(MatMul(..), b)) -> BiasGelu(MatMul(..), b) and
 * FastGelu(Add(MatMul(..), b)) -> FastGelu(MatMul(..), b), with b a 1-D constant
 * as wide as the last dim (the Add then reads exactly what BiasGelu adds). */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <string.h>

static bool is_contrib(const td_node *n, const char *op) {
    return n && !n->dead && strcmp(n->domain, "com.microsoft") == 0 && strcmp(n->op_type, op) == 0;
}

/* v = Add(MatMul-out, bias) with bias 1-D constant; returns the bias operand index. */
static int bias_add(const td_value *v, td_node **add) {
    td_node *a = opt_producer(v, "Add");
    if (!a || !opt_single_use(v))
        return -1;
    for (int bi = 0; bi < 2; bi++) {
        const td_tensor *b = opt_const(a->inputs[bi]);
        td_node *mm = opt_producer(a->inputs[1 - bi], "MatMul");
        if (!b || !mm || b->rank != 1 || !td_dtype_is_float(b->dtype))
            continue;
        const td_value *w = mm->inputs[1];
        int r = w->type.rank;
        if (r < 1 || w->type.dims[r - 1].value != b->dims[0])
            continue;
        *add = a;
        return bi;
    }
    return -1;
}

td_status td_pass_fuse_bias_gelu(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *n = g->nodes[i];
        bool gelu = is_contrib(n, "Gelu"), fast = is_contrib(n, "FastGelu") && n->n_inputs == 1;
        if (!gelu && !fast)
            continue;
        td_node *add = NULL;
        int bi = bias_add(n->inputs[0], &add);
        if (bi < 0)
            continue;
        td_value *ins[2] = {add->inputs[1 - bi], add->inputs[bi]};
        TD_TRY(opt_replace_producer(ctx, g, n->outputs[0], gelu ? "BiasGelu" : "FastGelu", "com.microsoft",
                                    gelu ? "BiasGelu" : "FastGelu", ins, 2, NULL));
        (*changes)++;
    }
    return TD_OK;
}
