/* Self-attention -> com.microsoft Attention, matched from each Softmax by data
 * flow. Both forms PyTorch exports for BERT-family encoders are covered:
 *   eager: S = MatMul(Q, K^T) [* c | / c] [+ mask]; P = Softmax(S)
 *   sdpa:  S = MatMul(Q * c1, K^T * c2) + mask;     P = Where(IsNaN(Softmax(S)), 0, Softmax(S))
 * with Q = Transpose(Reshape(Add(MatMul(x, Wq), bq)), [0,2,1,3]),
 *      K^T = Transpose(Reshape(Add(MatMul(x, Wk), bk)), [0,2,3,1])   (or Transpose [0,1,3,2] of the K form),
 *      V = Transpose(Reshape(Add(MatMul(x, Wv), bv)), [0,2,1,3]),
 * out = Reshape(Transpose(MatMul(P, V), [0,2,1,3]), (batch, seq, hidden)).
 * The mask term (whatever computed it: float additive mask, bool mask through
 * Where) becomes the attention_bias input, which Attention adds to the scaled
 * scores exactly where the graph added it (expanded to (batch, 1, seq, seq) when
 * it broadcasts over query positions). The (1 - Cast(attention_mask)) * c form
 * becomes Attention's own 2-D mask_index with mask_filter_value c.
 * The fused node: Attention(x, [Wq|Wk|Wv], [bq|bk|bv], -, -, mask) with num_heads and scale. */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    td_value *x, *w, *b; /* projection input, weight (in, out), bias (out) */
    int64_t heads, head_size;
    double scale;        /* constant factor applied on this path (1 if none) */
} proj;

static bool perm_is(const td_node *t, const int64_t *p, int n) {
    size_t c = 0;
    const int64_t *q = td_node_attr_ints(t, "perm", &c);
    if (!q || (int)c != n)
        return false;
    for (int i = 0; i < n; i++)
        if (q[i] != p[i])
            return false;
    return true;
}

/* v = [Mul(.., c)] of Transpose(perm) of Reshape to (b, s, heads, head_size) of
 * Add(MatMul(x, W), bias). */
static bool match_proj(const td_value *v, const int64_t *perm, proj *p) {
    p->scale = 1.0;
    td_node *mul = opt_producer(v, "Mul");
    if (mul) {
        for (int ci = 0; ci < 2; ci++) {
            double c;
            if (opt_const_scalar(mul->inputs[ci], &c)) {
                p->scale = c;
                v = mul->inputs[1 - ci];
                break;
            }
        }
        if (v == mul->outputs[0] || !opt_single_use(mul->outputs[0]))
            return false;
    }
    td_node *tr = opt_producer(v, "Transpose");
    if (!tr || !opt_single_use(v))
        return false;
    td_value *r_out = tr->inputs[0];
    if (!perm_is(tr, perm, 4)) {
        /* K^T written as Transpose([0,1,3,2]) of the Q-style transpose */
        static const int64_t swap_last[4] = {0, 1, 3, 2}, qperm[4] = {0, 2, 1, 3};
        td_node *inner = opt_producer(r_out, "Transpose");
        if (!(perm[3] == 1 && perm_is(tr, swap_last, 4) && inner && perm_is(inner, qperm, 4) &&
              opt_single_use(r_out)))
            return false;
        r_out = inner->inputs[0];
    }
    td_node *rs = opt_producer(r_out, "Reshape");
    if (!rs || !opt_single_use(r_out) || r_out->type.rank != 4)
        return false;
    p->heads = r_out->type.dims[2].value;
    p->head_size = r_out->type.dims[3].value;
    if (p->heads <= 0 || p->head_size <= 0)
        return false;
    td_value *proj_out = rs->inputs[0];
    td_node *pre_mul = opt_producer(proj_out, "Mul"); /* scale applied before the head split */
    if (pre_mul && p->scale == 1.0 && opt_single_use(proj_out)) {
        for (int ci = 0; ci < 2; ci++) {
            double c;
            if (opt_const_scalar(pre_mul->inputs[ci], &c)) {
                p->scale = c;
                proj_out = pre_mul->inputs[1 - ci];
                break;
            }
        }
    }
    td_node *add = opt_producer(proj_out, "Add");
    if (!add || !opt_single_use(proj_out))
        return false;
    for (int bi = 0; bi < 2; bi++) {
        const td_tensor *b = opt_const(add->inputs[bi]);
        td_node *mm = opt_producer(add->inputs[1 - bi], "MatMul");
        if (!b || !mm || !opt_single_use(add->inputs[1 - bi]) || b->rank != 1 || b->dtype != TD_F32)
            continue;
        const td_tensor *w = opt_const(mm->inputs[1]);
        if (!w || w->rank != 2 || w->dtype != TD_F32 || w->dims[1] != b->dims[0] ||
            w->dims[1] != p->heads * p->head_size)
            continue;
        p->x = mm->inputs[0];
        p->w = mm->inputs[1];
        p->b = add->inputs[bi];
        return true;
    }
    return false;
}

/* The probabilities P: Softmax output, or sdpa's Where(IsNaN(P), 0, P). */
static td_value *probs_of(td_node *sm) {
    td_value *p = sm->outputs[0];
    if (opt_single_use(p))
        return p;
    if (p->n_consumers != 2 || p->is_output)
        return NULL;
    td_node *isnan = NULL, *where = NULL;
    for (int i = 0; i < 2; i++) {
        td_node *c = p->consumers[i];
        if (opt_is_op(c, "IsNaN"))
            isnan = c;
        else if (opt_is_op(c, "Where"))
            where = c;
    }
    if (!isnan || !where || !opt_single_use(isnan->outputs[0]) || where->inputs[0] != isnan->outputs[0] ||
        where->inputs[2] != p || !opt_const_all_near(where->inputs[1], 0.0, 0.0))
        return NULL;
    return opt_single_use(where->outputs[0]) ? where->outputs[0] : NULL;
}

static td_status concat_consts(td_ctx *ctx, td_graph *g, const proj *q, const proj *k, const proj *v,
                               td_value **w_out, td_value **b_out) {
    const td_tensor *wq = q->w->initializer, *wk = k->w->initializer, *wv = v->w->initializer;
    int64_t in = wq->dims[0], h = wq->dims[1];
    int64_t wd[2] = {in, 3 * h}, bd[1] = {3 * h};
    size_t wn = (size_t)(in * 3 * h), row = (size_t)h * sizeof(float);
    /* (in, 3h): written once here and handed to the initializer, not copied again */
    float *w = malloc(wn * sizeof(float)), *b = malloc((size_t)(3 * h) * sizeof(float));
    if (!w || !b) {
        free(w);
        free(b);
        return td_fail_oom(ctx, wn * sizeof(float), "the merged QKV weight");
    }
    const td_tensor *ws[3] = {wq, wk, wv};
    const td_tensor *bs[3] = {q->b->initializer, k->b->initializer, v->b->initializer};
    for (int64_t r = 0; r < in; r++)
        for (int j = 0; j < 3; j++)
            memcpy(w + (size_t)r * 3 * (size_t)h + (size_t)j * (size_t)h, (const uint8_t *)ws[j]->data + (size_t)r * row,
                   row);
    for (int j = 0; j < 3; j++)
        memcpy(b + (size_t)j * (size_t)h, bs[j]->data, row);
    td_status s = opt_new_const_owned(ctx, g, "attn_qkv_weight", TD_F32, 2, wd, w, wn * sizeof(float), w_out);
    if (s == TD_OK)
        return opt_new_const_owned(ctx, g, "attn_qkv_bias", TD_F32, 1, bd, b, (size_t)(3 * h) * sizeof(float), b_out);
    free(b);
    return s;
}

/* The additive mask (1 - Cast(Unsqueeze(attention_mask))) * c that older exporters
 * write: returns the 2-D attention_mask graph input and c, the filter value. */
static bool unsqueeze_axes(const td_node *u, int64_t *axes, int *cnt) {
    size_t ac = 0;
    const int64_t *a = td_node_attr_ints(u, "axes", &ac);
    if (a && ac <= 2) {
        memcpy(axes, a, ac * sizeof *a);
        *cnt = (int)ac;
        return true;
    }
    return u->n_inputs > 1 && opt_const_ints(u->inputs[1], axes, 2, cnt);
}

/* Walk *v up through at most two Unsqueezes that insert axes 1 and/or 2 (until
 * *inserted reaches 2), counting the inserted axes; false for any other Unsqueeze. */
static bool strip_unsqueezes(const td_value **v, int *inserted) {
    for (int k = 0; k < 2 && *inserted < 2; k++) {
        td_node *u = opt_producer(*v, "Unsqueeze");
        if (!u)
            break;
        int64_t axes[2];
        int cnt = 0;
        if (!unsqueeze_axes(u, axes, &cnt))
            return false;
        for (int j = 0; j < cnt; j++)
            if (axes[j] != 1 && axes[j] != 2)
                return false;
        *inserted += cnt;
        *v = u->inputs[0];
    }
    return true;
}

static td_value *raw_mask_of(const td_value *mask, double *filter) {
    /* the Unsqueezes to (batch, 1, 1, seq) may come before the Cast or after the Mul */
    int inserted = 0;
    if (!strip_unsqueezes(&mask, &inserted))
        return NULL;
    td_node *mul = opt_producer(mask, "Mul");
    if (!mul)
        return NULL;
    int si = opt_producer(mul->inputs[0], "Sub") ? 0 : 1;
    td_node *sub = opt_producer(mul->inputs[si], "Sub");
    double one;
    if (!sub || !opt_const_scalar(mul->inputs[1 - si], filter) || !(*filter < 0) ||
        !opt_const_scalar(sub->inputs[0], &one) || one != 1.0)
        return NULL;
    td_node *cast = opt_producer(sub->inputs[1], "Cast");
    const td_value *v = cast ? cast->inputs[0] : sub->inputs[1];
    /* one or two Unsqueezes inserting axes 1 and 2, unless they came after the Mul */
    if (!strip_unsqueezes(&v, &inserted))
        return NULL;
    if (inserted != 2 || !v->is_input || v->type.rank != 2 || td_dtype_is_float(v->type.elem))
        return NULL;
    return (td_value *)v;
}

/* Attention's attention_bias must be (batch or 1, heads or 1, seq, seq): a mask
 * broadcast over query positions, or of unproven shape, is expanded to
 * (batch, 1, seq, seq) with the batch and sequence of the attention input x. */
static td_status full_bias(td_ctx *ctx, td_graph *g, td_value *mask, td_value *x, td_value **out) {
    if (mask->type.rank == 4 && x->type.rank == 3 && opt_dim_equal(&mask->type.dims[2], &x->type.dims[1]) &&
        opt_dim_equal(&mask->type.dims[3], &x->type.dims[1])) {
        *out = mask;
        return TD_OK;
    }
    int64_t idx0 = 0, idx1 = 1, one = 1, one_d = 1, axes0 = 0;
    td_value *shape = NULL, *c0 = NULL, *c1 = NULL, *b = NULL, *s = NULL, *ax = NULL, *ub = NULL, *us = NULL;
    td_value *c_one = NULL, *cat = NULL;
    TD_TRY(opt_new_value(ctx, g, "attn_x_shape", &shape));
    TD_TRY(opt_add_node(ctx, g, "Shape", "", "Shape", &x, 1, &shape, 1, NULL));
    TD_TRY(opt_new_const(ctx, g, "attn_idx0", TD_I64, 0, NULL, &idx0, sizeof idx0, &c0));
    TD_TRY(opt_new_const(ctx, g, "attn_idx1", TD_I64, 0, NULL, &idx1, sizeof idx1, &c1));
    TD_TRY(opt_new_const(ctx, g, "attn_axes0", TD_I64, 1, &one_d, &axes0, sizeof axes0, &ax));
    TD_TRY(opt_new_const(ctx, g, "attn_one", TD_I64, 1, &one_d, &one, sizeof one, &c_one));
    td_value *gb[2] = {shape, c0}, *gs[2] = {shape, c1};
    TD_TRY(opt_new_value(ctx, g, "attn_batch", &b));
    TD_TRY(opt_add_node(ctx, g, "Gather", "", "Gather", gb, 2, &b, 1, NULL));
    TD_TRY(opt_new_value(ctx, g, "attn_seq", &s));
    TD_TRY(opt_add_node(ctx, g, "Gather", "", "Gather", gs, 2, &s, 1, NULL));
    td_value *ubi[2] = {b, ax}, *usi[2] = {s, ax};
    TD_TRY(opt_new_value(ctx, g, "attn_batch_1d", &ub));
    TD_TRY(opt_add_node(ctx, g, "Unsqueeze", "", "Unsqueeze", ubi, 2, &ub, 1, NULL));
    TD_TRY(opt_new_value(ctx, g, "attn_seq_1d", &us));
    TD_TRY(opt_add_node(ctx, g, "Unsqueeze", "", "Unsqueeze", usi, 2, &us, 1, NULL));
    td_value *ci[4] = {ub, c_one, us, us};
    td_node *cn = NULL;
    TD_TRY(opt_new_value(ctx, g, "attn_bias_shape", &cat));
    TD_TRY(opt_add_node(ctx, g, "Concat", "", "Concat", ci, 4, &cat, 1, &cn));
    TD_TRY(td_node_add_attr_int(ctx, cn, "axis", 0));
    td_value *ei[2] = {mask, cat};
    TD_TRY(opt_new_value(ctx, g, "attn_bias", out));
    return opt_add_node(ctx, g, "Expand", "", "Expand", ei, 2, out, 1, NULL);
}

td_status td_pass_fuse_attention(td_ctx *ctx, td_opt_state *st, int *changes) {
    static const int64_t qperm[4] = {0, 2, 1, 3}, kperm[4] = {0, 2, 3, 1};
    td_graph *g = st->model->graph;
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *sm = g->nodes[i];
        if (!opt_is_op(sm, "Softmax"))
            continue;
        int64_t axis = td_node_attr_int(sm, "axis", -1);
        if (axis != -1 && axis != 3)
            continue;
        /* scores [+ mask] */
        td_value *s = sm->inputs[0], *mask = NULL;
        if (!opt_single_use(s))
            continue;
        td_node *madd = opt_producer(s, "Add");
        td_node *mm = NULL;
        double scale = 1.0;
        if (madd) {
            for (int side = 0; side < 2 && !mm; side++) {
                td_value *cand = madd->inputs[side];
                td_node *sc_mul = opt_producer(cand, "Mul"), *sc_div = opt_producer(cand, "Div");
                td_node *m0 = opt_producer(cand, "MatMul");
                if (!opt_single_use(cand))
                    continue;
                if (m0)
                    mm = m0;
                else if (sc_mul || sc_div) {
                    td_node *sn = sc_mul ? sc_mul : sc_div;
                    double c;
                    int mi = sc_div ? 0 : (opt_producer(sn->inputs[0], "MatMul") ? 0 : 1);
                    if (!opt_const_scalar(sn->inputs[1 - mi], &c) || c == 0 || !opt_single_use(sn->inputs[mi]))
                        continue;
                    mm = opt_producer(sn->inputs[mi], "MatMul");
                    scale = sc_div ? 1.0 / c : c;
                }
                if (mm)
                    mask = madd->inputs[1 - side];
            }
        } else {
            td_node *sn = opt_producer(s, "Mul") ? opt_producer(s, "Mul") : opt_producer(s, "Div");
            if (sn) {
                double c;
                int mi = opt_producer(sn->inputs[0], "MatMul") ? 0 : 1;
                if (strcmp(sn->op_type, "Div") == 0)
                    mi = 0;
                if (opt_const_scalar(sn->inputs[1 - mi], &c) && c != 0 && opt_single_use(sn->inputs[mi])) {
                    mm = opt_producer(sn->inputs[mi], "MatMul");
                    scale = strcmp(sn->op_type, "Div") == 0 ? 1.0 / c : c;
                }
            } else {
                mm = opt_producer(s, "MatMul");
            }
        }
        if (!mm)
            continue;
        if (mask && (opt_const(mask) || (mask->type.elem != TD_UNDEFINED && mask->type.elem != TD_F32) ||
                     (mask->type.rank >= 0 && mask->type.rank != 4)))
            continue;
        proj q, k, v;
        if (!match_proj(mm->inputs[0], qperm, &q) || !match_proj(mm->inputs[1], kperm, &k))
            continue;
        td_value *p = probs_of(sm);
        if (!p || !opt_is_op(p->consumers[0], "MatMul") || p->consumers[0]->inputs[0] != p)
            continue;
        td_node *pv = p->consumers[0];
        if (!match_proj(pv->inputs[1], qperm, &v) || v.scale != 1.0)
            continue;
        if (q.x != k.x || q.x != v.x || q.heads != k.heads || q.heads != v.heads || q.head_size != k.head_size ||
            q.head_size != v.head_size || q.w->initializer->dims[0] != k.w->initializer->dims[0] ||
            q.w->initializer->dims[0] != v.w->initializer->dims[0])
            continue;
        if (mask && mask->type.rank == 4 && mask->type.dims[1].value >= 0 && mask->type.dims[1].value != 1 &&
            mask->type.dims[1].value != q.heads)
            continue;
        /* context: Transpose(MatMul(P, V), [0,2,1,3]) -> Reshape to (batch, seq, hidden) */
        td_value *c = pv->outputs[0];
        td_node *ct = opt_single_use(c) ? opt_producer(c, "MatMul") : NULL;
        ct = ct && opt_is_op(c->consumers[0], "Transpose") && perm_is(c->consumers[0], qperm, 4) ? c->consumers[0]
                                                                                                   : NULL;
        td_node *cr = ct && opt_single_use(ct->outputs[0]) && opt_is_op(ct->outputs[0]->consumers[0], "Reshape")
                          ? ct->outputs[0]->consumers[0]
                          : NULL;
        if (!cr)
            continue;
        td_value *out = cr->outputs[0];
        int64_t hidden = q.heads * q.head_size;
        if (out->type.rank != 3 || out->type.dims[2].value != hidden || q.x->type.rank != 3)
            continue;
        scale *= q.scale * k.scale;
        td_value *w = NULL, *b = NULL, *mask_index = NULL, *bias = NULL;
        double filter = 0;
        td_value *am = mask ? raw_mask_of(mask, &filter) : NULL;
        TD_TRY(concat_consts(ctx, g, &q, &k, &v, &w, &b));
        if (am) /* (1 - mask) * filter: Attention's own 2-D mask with that filter value */
            TD_TRY(opt_add_cast(ctx, g, "attn_mask_index", am, TD_I32, &mask_index, NULL));
        else if (mask)
            TD_TRY(full_bias(ctx, g, mask, q.x, &bias));
        td_value *ins[6] = {q.x, w, b, mask_index, NULL, bias};
        td_node *att = NULL;
        TD_TRY(opt_replace_producer(ctx, g, out, "Attention", "com.microsoft", "Attention", ins, bias ? 6 : (am ? 4 : 3),
                                    &att));
        TD_TRY(td_node_add_attr_int(ctx, att, "num_heads", q.heads));
        TD_TRY(td_node_add_attr_float(ctx, att, "scale", (float)scale));
        if (am)
            TD_TRY(td_node_add_attr_float(ctx, att, "mask_filter_value", (float)filter));
        (*changes)++;
    }
    return TD_OK;
}
