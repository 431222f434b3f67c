/* GELU decompositions -> com.microsoft Gelu (erf form) or FastGelu (tanh form).
 * erf:  0.5 * x * (1 + erf(x / sqrt(2)))          (x / 1.41421 or x * 0.70711)
 * tanh: 0.5 * x * (1 + tanh(0.79788 * (x + 0.044715 * x^3)))
 * The three products may be grouped in any order: (x*a)*0.5, (x*0.5)*a, x*(a*0.5). */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <math.h>
#include <string.h>

static bool near(const td_value *v, double x) { return opt_const_all_near(v, x, 1e-4); }

/* The node computing 0.5*x*a from a = 1 + f(x); returns the value it produces. */
static td_value *match_half_x_times(const td_value *a, const td_value *x) {
    if (!opt_single_use(a))
        return NULL;
    td_node *m = a->consumers[0];
    if (!opt_is_op(m, "Mul"))
        return NULL;
    int oi = opt_other_input(m, a);
    if (oi < 0)
        return NULL;
    td_value *other = m->inputs[oi];
    if (other == x) { /* (x*a)*0.5 */
        td_value *p = m->outputs[0];
        if (!opt_single_use(p) || !opt_is_op(p->consumers[0], "Mul"))
            return NULL;
        td_node *h = p->consumers[0];
        int hi = opt_other_input(h, p);
        return hi >= 0 && near(h->inputs[hi], 0.5) ? h->outputs[0] : NULL;
    }
    if (near(other, 0.5)) { /* x*(a*0.5) */
        td_value *p = m->outputs[0];
        if (!opt_single_use(p) || !opt_is_op(p->consumers[0], "Mul"))
            return NULL;
        td_node *h = p->consumers[0];
        return opt_other_input(h, p) >= 0 && h->inputs[opt_other_input(h, p)] == x ? h->outputs[0] : NULL;
    }
    td_node *hx = opt_producer(other, "Mul"); /* (x*0.5)*a */
    if (hx && opt_single_use(other)) {
        int xi = opt_other_input(hx, x);
        if (xi >= 0 && near(hx->inputs[xi], 0.5))
            return m->outputs[0];
    }
    return NULL;
}

/* 1 + f: the Add consuming f's output with constant 1. */
static td_value *one_plus(const td_value *f) {
    if (!opt_single_use(f) || !opt_is_op(f->consumers[0], "Add"))
        return NULL;
    td_node *a = f->consumers[0];
    int oi = opt_other_input(a, f);
    return oi >= 0 && near(a->inputs[oi], 1.0) ? a->outputs[0] : NULL;
}

static bool match_erf(td_node *e, td_value **x, td_value **out) {
    td_value *in = e->inputs[0];
    td_node *d = opt_producer(in, "Div");
    td_node *m = opt_producer(in, "Mul");
    if (!opt_single_use(in))
        return false;
    if (d && near(d->inputs[1], sqrt(2.0)))
        *x = d->inputs[0];
    else if (m && opt_other_input(m, m->inputs[0]) >= 0 && near(m->inputs[1], sqrt(0.5)))
        *x = m->inputs[0];
    else if (m && near(m->inputs[0], sqrt(0.5)))
        *x = m->inputs[1];
    else
        return false;
    td_value *a = one_plus(e->outputs[0]);
    return a && (*out = match_half_x_times(a, *x)) != NULL;
}

/* x + 0.044715 * x^3 (x^3 as Pow(x, 3) or x*x*x). */
static bool match_cubic(const td_value *v, td_value **x) {
    td_node *add = opt_producer(v, "Add");
    if (!add || !opt_single_use(v))
        return false;
    for (int side = 0; side < 2; side++) {
        td_value *cand = add->inputs[side], *other = add->inputs[1 - side];
        td_node *mul = opt_producer(other, "Mul");
        if (!mul || !opt_single_use(other))
            continue;
        int ci = near(mul->inputs[0], 0.044715) ? 0 : near(mul->inputs[1], 0.044715) ? 1 : -1;
        if (ci < 0)
            continue;
        td_value *cube = mul->inputs[1 - ci];
        td_node *pw = opt_producer(cube, "Pow");
        double three;
        if (pw && pw->inputs[0] == cand && opt_const_scalar(pw->inputs[1], &three) && three == 3.0 &&
            opt_single_use(cube)) {
            *x = cand;
            return true;
        }
        /* Mul(Mul(x, x), x), either operand order (the decoder exporter's GPT-2 gelu_new) */
        td_node *m3 = opt_producer(cube, "Mul");
        int xi = m3 ? opt_other_input(m3, cand) : -1;
        td_node *m2 = xi >= 0 ? opt_producer(m3->inputs[xi], "Mul") : NULL;
        if (m2 && opt_single_use(cube) && opt_single_use(m3->inputs[xi]) && m2->inputs[0] == cand &&
            m2->inputs[1] == cand) {
            *x = cand;
            return true;
        }
    }
    return false;
}

static bool match_tanh(td_node *t, td_value **x, td_value **out) {
    td_value *in = t->inputs[0];
    td_node *m = opt_producer(in, "Mul");
    if (!m || !opt_single_use(in))
        return false;
    int ci = near(m->inputs[0], sqrt(2.0 / M_PI)) ? 0 : near(m->inputs[1], sqrt(2.0 / M_PI)) ? 1 : -1;
    if (ci < 0 || !match_cubic(m->inputs[1 - ci], x))
        return false;
    td_value *a = one_plus(t->outputs[0]);
    return a && (*out = match_half_x_times(a, *x)) != NULL;
}

td_status td_pass_fuse_gelu(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *n = g->nodes[i];
        td_value *x = NULL, *out = NULL;
        const char *op = NULL;
        if (opt_is_op(n, "Erf") && match_erf(n, &x, &out))
            op = "Gelu";
        else if (opt_is_op(n, "Tanh") && match_tanh(n, &x, &out))
            op = "FastGelu";
        if (!op || (x->type.elem != TD_UNDEFINED && !td_dtype_is_float(x->type.elem)))
            continue;
        TD_TRY(opt_replace_producer(ctx, g, out, op, "com.microsoft", op, &x, 1, NULL));
        (*changes)++;
    }
    return TD_OK;
}
