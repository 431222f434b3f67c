/* MatMul bias folding: Add(MatMul(A, W), b) -> Gemm(A, W, b) when
 *   - A and W have rank 2 (Gemm is a 2-D op; the (batch, seq, hidden) MatMuls of
 *     a transformer keep their Add, which the Attention, SkipLayerNormalization
 *     and BiasGelu fusions fold where the bias is read),
 *   - b is a constant of shape (N) or (1, N), N being W's last dim: a bias on the
 *     last axis, which Gemm's unidirectional broadcast of C reads the same way,
 *   - the MatMul output is read by this Add only (and is not a graph output),
 *   - A, W and b have one float type (bfloat16 Gemm needs opset 13),
 *   - the model imports the default domain at opset 11 or later.
 * Gemm (alpha = beta = 1, no transposes) is a standard op, so the pass is the
 * same for the fused and the portable target. The output keeps its name, type
 * and consumers. Runs after the fusions, which look for the MatMul + Add form. */
#include "opt/opt_util.h"
#include "opt/pass.h"

static bool gemm_dtype(td_dtype t, int64_t opset) {
    return t == TD_F32 || t == TD_F16 || t == TD_F64 || (t == TD_BF16 && opset >= 13);
}

/* b is a bias on the last axis of an (M, N) product. */
static bool last_axis_bias(const td_tensor *b, int64_t n) {
    return (b->rank == 1 && b->dims[0] == n) || (b->rank == 2 && b->dims[0] == 1 && b->dims[1] == n);
}

/* The MatMul and the bias operand index of Add node add when it matches; NULL otherwise. */
static td_node *matmul_with_bias(const td_node *add, int64_t opset, int *bias_index) {
    if (add->n_inputs != 2 || add->n_outputs != 1 || !add->outputs[0])
        return NULL;
    for (int bi = 0; bi < 2; bi++) {
        const td_value *y = add->inputs[1 - bi];
        const td_tensor *b = add->inputs[bi] ? opt_const(add->inputs[bi]) : NULL;
        td_node *mm = y ? opt_producer(y, "MatMul") : NULL;
        if (!b || !mm || mm->n_inputs != 2 || mm->n_outputs != 1 || !opt_single_use(y))
            continue;
        const td_value *a = mm->inputs[0], *w = mm->inputs[1];
        if (!a || !w || opt_rank(a) != 2 || opt_rank(w) != 2 || w->type.dims[1].value < 0)
            continue;
        td_dtype t = b->dtype;
        if (!gemm_dtype(t, opset) || a->type.elem != t || w->type.elem != t ||
            !last_axis_bias(b, w->type.dims[1].value))
            continue;
        *bias_index = bi;
        return mm;
    }
    return NULL;
}

td_status td_pass_matmul_bias(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    int64_t opset = td_model_opset(st->model, "");
    if (opset < 11)
        return TD_OK;
    int n_nodes = g->n_nodes; /* the Gemms appended below are not revisited */
    for (int i = 0; i < n_nodes; i++) {
        td_node *add = g->nodes[i];
        int bi = -1;
        if (!opt_is_op(add, "Add"))
            continue;
        td_node *mm = matmul_with_bias(add, opset, &bi);
        if (!mm)
            continue;
        td_value *ins[3] = {mm->inputs[0], mm->inputs[1], add->inputs[bi]};
        TD_TRY(opt_replace_producer(ctx, g, add->outputs[0], "Gemm", "", "Gemm", ins, 3, NULL));
        (*changes)++;
    }
    return TD_OK;
}
