/* LayerNormalization from its decomposition, matched by data flow:
 *   mean = ReduceMean(x, last axis); d = Sub(x, mean)   (d may be computed twice)
 *   var  = ReduceMean(Pow(d, 2) | Mul(d, d), last axis)
 *   y    = Div(d, Sqrt(Add(var, eps)))
 *   out  = Add(Mul(y, gamma), beta)                      (Mul and Add optional)
 * -> LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps) (ai.onnx, opset >= 17). */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* d is Sub(x, mean) with mean = ReduceMean(x) over the last axis. */
static bool is_centered(const td_value *d, const td_value *x, const td_value *mean) {
    td_node *s = opt_producer(d, "Sub");
    return s && s->inputs[0] == x && s->inputs[1] == mean;
}

typedef struct {
    td_value *x, *gamma, *beta, *out;
    float eps;
} ln_match;

static bool match_from_mean(td_node *m1, ln_match *r) {
    td_value *x = m1->inputs[0], *mean = m1->outputs[0];
    if (!x || !opt_reduces_last_axis(m1, x) || mean->is_output)
        return false;
    /* find Div(d, sqrt) among the users of some d = Sub(x, mean) */
    for (int c = 0; c < mean->n_consumers; c++) {
        td_node *sub = mean->consumers[c];
        if (!opt_is_op(sub, "Sub") || sub->inputs[0] != x || sub->inputs[1] != mean)
            continue;
        td_value *d = sub->outputs[0];
        for (int k = 0; k < d->n_consumers; k++) {
            td_node *sq = d->consumers[k];
            double two;
            bool is_sq = (opt_is_op(sq, "Pow") && sq->inputs[0] == d && opt_const_scalar(sq->inputs[1], &two) &&
                          two == 2.0) ||
                         (opt_is_op(sq, "Mul") && sq->inputs[0] == d && sq->inputs[1] == d);
            if (!is_sq || !opt_single_use(sq->outputs[0]))
                continue;
            td_node *m2 = sq->outputs[0]->consumers[0];
            if (!opt_is_op(m2, "ReduceMean") || !opt_reduces_last_axis(m2, x) || !opt_single_use(m2->outputs[0]))
                continue;
            td_node *add = m2->outputs[0]->consumers[0];
            double eps;
            int oi = opt_is_op(add, "Add") ? opt_other_input(add, m2->outputs[0]) : -1;
            if (oi < 0 || !opt_const_scalar(add->inputs[oi], &eps) || !(eps > 0 && eps < 1) ||
                !opt_single_use(add->outputs[0]))
                continue;
            td_node *sqrt_n = add->outputs[0]->consumers[0];
            if (!opt_is_op(sqrt_n, "Sqrt") || !opt_single_use(sqrt_n->outputs[0]))
                continue;
            td_node *div = sqrt_n->outputs[0]->consumers[0];
            if (!opt_is_op(div, "Div") || div->inputs[1] != sqrt_n->outputs[0] || !is_centered(div->inputs[0], x, mean))
                continue;
            /* every Sub(x, mean) must feed only the square and the Div */
            for (int j = 0; j < mean->n_consumers; j++) {
                td_node *s2 = mean->consumers[j];
                if (!opt_is_op(s2, "Sub"))
                    return false;
                td_value *d2 = s2->outputs[0];
                if (d2->is_output)
                    return false;
                for (int u = 0; u < d2->n_consumers; u++)
                    if (d2->consumers[u] != sq && d2->consumers[u] != div)
                        return false;
            }
            r->x = x;
            r->eps = (float)eps;
            r->out = div->outputs[0];
            r->gamma = r->beta = NULL;
            /* optional affine tail */
            td_value *y = div->outputs[0];
            int64_t hidden = x->type.rank > 0 ? x->type.dims[x->type.rank - 1].value : -1;
            if (opt_single_use(y) && opt_is_op(y->consumers[0], "Mul")) {
                td_node *mul = y->consumers[0];
                int gi = opt_other_input(mul, y);
                const td_tensor *g = gi >= 0 ? opt_const(mul->inputs[gi]) : NULL;
                if (g && g->rank == 1 && td_dtype_is_float(g->dtype) && (g->dims[0] == hidden || (hidden < 0 && g->dims[0] > 1))) {
                    r->gamma = mul->inputs[gi];
                    r->out = mul->outputs[0];
                    if (opt_single_use(r->out) && opt_is_op(r->out->consumers[0], "Add")) {
                        td_node *ba = r->out->consumers[0];
                        int bi = opt_other_input(ba, r->out);
                        const td_tensor *b = bi >= 0 ? opt_const(ba->inputs[bi]) : NULL;
                        if (b && b->rank == 1 && b->dtype == g->dtype && b->dims[0] == g->dims[0]) {
                            r->beta = ba->inputs[bi];
                            r->out = ba->outputs[0];
                        }
                    }
                }
            }
            return true;
        }
    }
    return false;
}

static td_status ones_like_hidden(td_ctx *ctx, td_graph *g, int64_t hidden, float value, td_value **out) {
    float *buf = malloc(sizeof(float) * (size_t)hidden);
    if (!buf)
        return td_fail_oom(ctx, sizeof(float) * (size_t)hidden, "LayerNorm scale");
    for (int64_t i = 0; i < hidden; i++)
        buf[i] = value;
    td_status s = opt_new_const(ctx, g, value == 1.0f ? "ln_ones" : "ln_zeros", TD_F32, 1, &hidden, buf,
                                sizeof(float) * (size_t)hidden, out);
    free(buf);
    return s;
}

td_status td_pass_fuse_layernorm(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    if (td_model_opset(st->model, "") < 17)
        return TD_OK; /* LayerNormalization joined the standard domain in opset 17 */
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *m1 = g->nodes[i];
        ln_match r;
        if (!opt_is_op(m1, "ReduceMean") || !match_from_mean(m1, &r))
            continue;
        if (r.x->type.elem != TD_UNDEFINED && r.x->type.elem != TD_F32 && r.x->type.elem != TD_F16 &&
            r.x->type.elem != TD_BF16)
            continue;
        if (!r.gamma) {
            int64_t hidden = r.x->type.rank > 0 ? r.x->type.dims[r.x->type.rank - 1].value : -1;
            if (hidden <= 0 || (r.x->type.elem != TD_F32))
                continue; /* without a known width and dtype there is no scale to make */
            TD_TRY(ones_like_hidden(ctx, g, hidden, 1.0f, &r.gamma));
        }
        td_value *ins[3] = {r.x, r.gamma, r.beta};
        td_node *ln = NULL;
        TD_TRY(opt_replace_producer(ctx, g, r.out, "LayerNormalization", "", "LayerNorm", ins, r.beta ? 3 : 2, &ln));
        TD_TRY(td_node_add_attr_int(ctx, ln, "axis", -1));
        TD_TRY(td_node_add_attr_float(ctx, ln, "epsilon", r.eps));
        (*changes)++;
    }
    return TD_OK;
}
