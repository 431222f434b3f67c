/* Attention with a KV cache (the decoder exporter's form) -> com.microsoft
 * GroupQueryAttention (rotary models, or fewer kv heads than query heads) or
 * MultiHeadAttention (GPT-2):
 *   present_k = Concat(past_k, k4, axis 2)                     (B, KV, P+S, D), present_v alike
 *   scores    = MatMul(Mul(q4, scale) [-> Reshape (0, KV, -1, D)], Transpose(present_k, 0,1,3,2))
 *   probs     = Softmax(Add(scores, bias), axis -1)            bias (B, 1, S, T) [Concat'ed G times on axis 2]
 *   out       = Reshape(Transpose(MatMul(probs, present_v) [-> Reshape (0, N, -1, D)], 0,2,1,3), (0, 0, N*D))
 * -> GroupQueryAttention(q3, k3, v3, past_k, past_v, seqlens_k, total_len, -, -, -, bias)
 *        num_heads=N, kv_num_heads=KV, scale, causal=0  -> out, present_k, present_v
 *    MultiHeadAttention(q3, k3, v3, -, -, bias, past_k, past_v) num_heads=N, scale -> out, present_k, present_v
 * q3/k3/v3 (B, S, heads*D) are the tensors under the head split Transpose(Reshape(x3))
 * (a rotary embedding fused first leaves that form), else a Transpose + Reshape
 * is added. The mask stays the graph's additive bias (causal, sliding window
 * and left padding in one), so the fused op computes what the subgraph did:
 * GroupQueryAttention runs with causal=0 and every row's length set to the
 * whole cache (seqlens_k = total - 1, total = the attention_mask's width).
 * ONNX Runtime's CPU GroupQueryAttention wants head_size % 8 == 0; other head
 * sizes stay unfused (or take MultiHeadAttention when KV == N). */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <string.h>

static bool has_perm(const td_node *t, const int64_t *want) {
    size_t pc = 0;
    const int64_t *p = opt_is_op(t, "Transpose") ? td_node_attr_ints(t, "perm", &pc) : NULL;
    return p && pc == 4 && memcmp(p, want, 4 * sizeof *p) == 0;
}

/* Reshape with a constant 4-entry (or 3-entry) target: the target into s. */
static bool reshape_to(const td_node *r, int64_t *s, int want_n) {
    int ns = 0;
    return opt_is_op(r, "Reshape") && opt_const_ints(r->inputs[1], s, 4, &ns) && ns == want_n &&
           td_node_attr_int(r, "allowzero", 0) == 0;
}

/* present = Concat(past graph input (B, heads, P, D), new (B, heads, S, D), axis 2). */
static bool cache_concat(const td_value *present, td_value **past, td_value **fresh) {
    td_node *c = opt_producer(present, "Concat");
    int64_t axis = c ? td_node_attr_int(c, "axis", 0) : 0;
    if (!c || c->n_inputs != 2 || (axis != 2 && axis != -2) || !c->inputs[0]->is_input || opt_rank(c->inputs[0]) != 4)
        return false;
    *past = c->inputs[0];
    *fresh = c->inputs[1];
    return true;
}

/* x4 (B, heads, S, D) as (B, S, heads*D): the source of its head split, or new Transpose + Reshape nodes. */
static td_status merged_heads(td_ctx *ctx, td_graph *g, td_value *x4, int64_t heads, int64_t D, td_value **x3) {
    static const int64_t bsnd[4] = {0, 2, 1, 3};
    int64_t s[4];
    td_node *t = x4->producer;
    if (t && has_perm(t, bsnd)) {
        td_node *r = opt_producer(t->inputs[0], "Reshape");
        /* (0, 0|-1, heads, D) or (-1, 0, heads, D) keeps batch and sequence of the 3-D source */
        if (r && reshape_to(r, s, 4) && s[2] == heads && s[3] == D && opt_rank(r->inputs[0]) == 3 &&
            ((s[0] == 0 && (s[1] == 0 || s[1] == -1)) || (s[0] == -1 && s[1] == 0))) {
            *x3 = r->inputs[0];
            return TD_OK;
        }
    }
    td_value *xt = NULL, *shape = NULL;
    const int64_t merged[3] = {0, 0, heads * D}, three = 3;
    TD_TRY(opt_new_value(ctx, g, "attn_merge_t", &xt));
    TD_TRY(opt_new_value(ctx, g, "attn_merged", x3));
    TD_TRY(opt_new_const(ctx, g, "attn_merge_shape", TD_I64, 1, &three, merged, sizeof merged, &shape));
    td_node *tn = NULL, *rn = NULL;
    TD_TRY(opt_add_node(ctx, g, "Transpose", "", "attn_merge", &x4, 1, &xt, 1, &tn));
    TD_TRY(td_node_add_attr_ints(ctx, tn, "perm", bsnd, 4));
    td_value *rin[2] = {xt, shape};
    TD_TRY(opt_add_node(ctx, g, "Reshape", "", "attn_merge", rin, 2, x3, 1, &rn));
    return TD_OK;
}

/* The fused output now has a full (B, S, N*D) type, but the values computed from
 * it kept what the shape pass made of the old chain (S lost in its -1 reshape),
 * and the shape pass only fills untyped values: forget those partial types (a
 * few levels down) so the next shape pass derives them again, for the
 * skip-normalization fusion that needs equal shapes on both residual inputs. */
static td_status forget_partial_types(td_ctx *ctx, const td_value *v, int depth) {
    for (int c = 0; c < v->n_consumers && depth < 4; c++) {
        td_node *n = v->consumers[c];
        for (int j = 0; n && !n->dead && j < n->n_outputs; j++) {
            td_value *o = n->outputs[j];
            if (!o || o->is_output || o->initializer || o->type.rank < 0)
                continue;
            bool partial = false;
            for (int d = 0; d < o->type.rank; d++)
                partial |= o->type.dims[d].value < 0 && !o->type.dims[d].param;
            if (!partial)
                continue;
            TD_TRY(td_value_set_tensor_type(ctx, o, o->type.elem, -1, NULL, NULL));
            TD_TRY(forget_partial_types(ctx, o, depth + 1));
        }
    }
    return TD_OK;
}

/* q4 is the head split of a RotaryEmbedding output (what fuse_rotary.c leaves). */
static bool from_rotary(const td_value *q4) {
    td_node *t = opt_producer(q4, "Transpose");
    td_node *r = t ? opt_producer(t->inputs[0], "Reshape") : NULL;
    td_node *rot = r ? r->inputs[0]->producer : NULL;
    return rot && !rot->dead && strcmp(rot->op_type, "RotaryEmbedding") == 0 && strcmp(rot->domain, "com.microsoft") == 0;
}

/* The shared int32 seqlens_k (B) = total - 1 and total_sequence_length () of
 * attention_mask (B, T): made once per graph. */
typedef struct lens {
    td_value *mask, *seqlens, *total;
} lens;

static td_status lengths(td_ctx *ctx, td_graph *g, lens *l) {
    if (l->seqlens)
        return TD_OK;
    td_value *mask = NULL;
    for (int i = 0; i < g->n_inputs; i++)
        if (strcmp(g->inputs[i]->name, "attention_mask") == 0 && opt_rank(g->inputs[i]) == 2)
            mask = g->inputs[i];
    if (!mask)
        return TD_OK;
    static const int64_t one_i = 1, zero_i = 0, axis0 = 0;
    const int32_t one32 = 1;
    td_value *shape, *batch, *width, *idx0, *idx1, *width32, *total, *minus, *bshape, *seqlens, *c1, *ax0;
    TD_TRY(opt_new_value(ctx, g, "attn_mask_shape", &shape));
    td_node *n = NULL;
    TD_TRY(opt_add_node(ctx, g, "Shape", "", "attn_lens", &mask, 1, &shape, 1, &n));
    TD_TRY(opt_new_const(ctx, g, "attn_idx0", TD_I64, 1, &one_i, &zero_i, sizeof zero_i, &idx0));
    TD_TRY(opt_new_const(ctx, g, "attn_idx1", TD_I64, 1, &one_i, &one_i, sizeof one_i, &idx1));
    TD_TRY(opt_new_value(ctx, g, "attn_batch", &batch));               /* (1) int64 */
    TD_TRY(opt_new_value(ctx, g, "attn_width", &width));               /* (1) int64 */
    td_value *gb[2] = {shape, idx0}, *gw[2] = {shape, idx1};
    TD_TRY(opt_add_node(ctx, g, "Gather", "", "attn_lens", gb, 2, &batch, 1, &n));
    TD_TRY(td_node_add_attr_int(ctx, n, "axis", axis0));
    TD_TRY(opt_add_node(ctx, g, "Gather", "", "attn_lens", gw, 2, &width, 1, &n));
    TD_TRY(td_node_add_attr_int(ctx, n, "axis", axis0));
    TD_TRY(opt_add_cast(ctx, g, "attn_width_i32", width, TD_I32, &width32, NULL)); /* (1) int32 */
    /* total_sequence_length: a scalar */
    TD_TRY(opt_new_value(ctx, g, "attn_total_len", &total));
    TD_TRY(opt_new_const(ctx, g, "attn_axes0", TD_I64, 1, &one_i, &zero_i, sizeof zero_i, &ax0));
    td_value *sq[2] = {width32, ax0};
    TD_TRY(opt_add_node(ctx, g, "Squeeze", "", "attn_lens", sq, 2, &total, 1, &n));
    /* seqlens_k = Expand(width - 1, batch): every row's keys are the whole cache (the bias masks padding) */
    TD_TRY(opt_new_const(ctx, g, "attn_one_i32", TD_I32, 1, &one_i, &one32, sizeof one32, &c1));
    TD_TRY(opt_new_value(ctx, g, "attn_last_key", &minus));
    td_value *sub[2] = {width32, c1};
    TD_TRY(opt_add_node(ctx, g, "Sub", "", "attn_lens", sub, 2, &minus, 1, &n));
    bshape = batch;
    TD_TRY(opt_new_value(ctx, g, "attn_seqlens_k", &seqlens));
    td_value *ex[2] = {minus, bshape};
    TD_TRY(opt_add_node(ctx, g, "Expand", "", "attn_lens", ex, 2, &seqlens, 1, &n));
    l->mask = mask;
    l->seqlens = seqlens;
    l->total = total;
    return TD_OK;
}

td_status td_pass_fuse_decoder_attention(td_ctx *ctx, td_opt_state *st, int *changes) {
    static const int64_t kt_perm[4] = {0, 1, 3, 2}, bsnd[4] = {0, 2, 1, 3};
    td_graph *g = st->model->graph;
    lens l = {0};
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *sm = g->nodes[i];
        if (!opt_is_op(sm, "Softmax") || !opt_single_use(sm->outputs[0]))
            continue;
        int64_t axis = td_node_attr_int(sm, "axis", -1);
        td_node *add = opt_producer(sm->inputs[0], "Add");
        if ((axis != -1 && axis != 3) || !add || !opt_single_use(sm->inputs[0]))
            continue;
        /* scores + bias, either order */
        td_node *qk = NULL;
        td_value *bias = NULL;
        for (int o = 0; o < 2 && !qk; o++) {
            td_node *m = opt_producer(add->inputs[o], "MatMul");
            if (m && opt_single_use(add->inputs[o]) && opt_rank(add->inputs[1 - o]) == 4 && !opt_const(add->inputs[1 - o])) {
                qk = m;
                bias = add->inputs[1 - o];
            }
        }
        td_node *kt = qk ? qk->inputs[1]->producer : NULL;
        td_node *pv_mm = sm->outputs[0]->consumers[0];
        if (!kt || !has_perm(kt, kt_perm) || !opt_single_use(qk->inputs[1]) || !opt_is_op(pv_mm, "MatMul") ||
            pv_mm->inputs[0] != sm->outputs[0])
            continue;
        td_value *present_k = kt->inputs[0], *present_v = pv_mm->inputs[1];
        td_value *past_k, *past_v, *k4, *v4;
        if (!cache_concat(present_k, &past_k, &k4) || !cache_concat(present_v, &past_v, &v4))
            continue;
        int64_t KV = past_k->type.dims[1].value, D = past_k->type.dims[3].value;
        if (KV <= 0 || D <= 0 || past_v->type.dims[1].value != KV || past_v->type.dims[3].value != D)
            continue;
        /* the query: Mul(q4, scale) [-> Reshape (0, KV, -1, D)] */
        td_value *qs = qk->inputs[0];
        int64_t s4[4];
        bool grouped_q = false;
        td_node *qr = qs->producer;
        if (qr && reshape_to(qr, s4, 4) && s4[1] == KV && s4[3] == D && opt_single_use(qs)) {
            grouped_q = true;
            qs = qr->inputs[0];
        }
        td_node *qm = opt_producer(qs, "Mul");
        double scale = 0;
        int qi = -1;
        for (int o = 0; qm && o < 2; o++)
            if (opt_const_scalar(qm->inputs[1 - o], &scale))
                qi = o;
        if (qi < 0 || !opt_single_use(qs) || !(scale > 0))
            continue;
        td_value *q4 = qm->inputs[qi];
        /* the context: MatMul(probs, V) [-> Reshape (0, N, -1, D)] -> Transpose 0,2,1,3 -> Reshape (0, 0, N*D) */
        td_value *c = pv_mm->outputs[0];
        if (!opt_single_use(c))
            continue;
        td_node *cr = c->consumers[0];
        if (grouped_q) {
            if (!reshape_to(cr, s4, 4) || s4[3] != D || s4[1] <= 0 || !opt_single_use(cr->outputs[0]))
                continue;
            c = cr->outputs[0];
            cr = c->consumers[0];
        }
        if (!has_perm(cr, bsnd) || !opt_single_use(cr->outputs[0]))
            continue;
        td_node *fin = cr->outputs[0]->consumers[0];
        int64_t s3[4];
        if (!reshape_to(fin, s3, 3) || s3[2] <= 0 || s3[2] % D || (s3[0] != 0 && s3[0] != -1) || s3[1] != 0)
            continue;
        int64_t N = s3[2] / D;
        if (N % KV || (grouped_q ? (s4[1] != N) : (N != KV)))
            continue;
        /* bias: (B, 1, S, T), or G copies of it stacked on the query axis for grouped heads */
        if (grouped_q) {
            td_node *bc = opt_producer(bias, "Concat");
            if (!bc || bc->n_inputs != N / KV || td_node_attr_int(bc, "axis", 0) != 2)
                continue;
            bool same = true;
            for (int j = 1; j < bc->n_inputs; j++)
                same &= bc->inputs[j] == bc->inputs[0];
            if (!same)
                continue;
            bias = bc->inputs[0];
        }
        /* the fused ops take a full (B|1, 1, S, T) bias, not one that broadcasts over queries or keys */
        if (opt_rank(bias) != 4 || bias->type.dims[1].value != 1 || bias->type.dims[2].value == 1 ||
            bias->type.dims[3].value == 1 || bias->type.elem != TD_F32)
            continue;
        bool rotary = from_rotary(q4);
        bool gqa = rotary || N != KV;
        if (gqa && D % 8) { /* ORT's CPU kernel refuses such heads */
            if (N != KV)
                continue;
            gqa = false;
        }
        if (gqa) {
            TD_TRY(lengths(ctx, g, &l));
            if (!l.seqlens)
                continue;
        }
        td_value *q3, *k3, *v3;
        TD_TRY(merged_heads(ctx, g, q4, N, D, &q3));
        TD_TRY(merged_heads(ctx, g, k4, KV, D, &k3));
        TD_TRY(merged_heads(ctx, g, v4, KV, D, &v3));
        td_value *out = fin->outputs[0];
        if (opt_rank(q3) == 3) /* (B, S, N*D) like the query: the old chain's -1 reshapes left S unknown */
            TD_TRY(opt_copy_type(ctx, out, q3));
        td_graph_remove_node(g, fin);
        td_graph_remove_node(g, present_k->producer);
        td_graph_remove_node(g, present_v->producer);
        td_value *outs[3] = {out, present_k, present_v};
        td_node *an = NULL;
        if (gqa) {
            td_value *ins[11] = {q3, k3, v3, past_k, past_v, l.seqlens, l.total, NULL, NULL, NULL, bias};
            TD_TRY(opt_add_node(ctx, g, "GroupQueryAttention", "com.microsoft", "GroupQueryAttention", ins, 11, outs,
                                3, &an));
            TD_TRY(td_node_add_attr_int(ctx, an, "kv_num_heads", KV));
            TD_TRY(td_node_add_attr_int(ctx, an, "causal", 0));
        } else {
            td_value *ins[8] = {q3, k3, v3, NULL, NULL, bias, past_k, past_v};
            TD_TRY(opt_add_node(ctx, g, "MultiHeadAttention", "com.microsoft", "MultiHeadAttention", ins, 8, outs, 3,
                                &an));
        }
        TD_TRY(forget_partial_types(ctx, out, 0));
        TD_TRY(td_node_add_attr_int(ctx, an, "num_heads", N));
        TD_TRY(td_node_add_attr_float(ctx, an, "scale", (float)scale));
        (*changes)++;
    }
    return TD_OK;
}
