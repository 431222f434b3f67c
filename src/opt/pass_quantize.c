/* --precision int8: dynamic quantization of the weight matrix products.
 *
 *   MatMul(A, W) [+ b]            -> com.microsoft DynamicQuantizeMatMul(A, Wq, w_scale, -, b)
 *   Attention(x, W, b, mask, -, bias) (self-attention, equal Q/K/V widths, no past)
 *                                 -> q, k, v = DynamicQuantizeMatMul(x, Wq_*, scale_*, -, b_*)
 *                                    MultiHeadAttention(q, k, v, -, mask, bias)
 * W is a constant float32 (K, N); Wq is int8 per output column, symmetric
 * (scale = max |w| / 127, zero point 0, the layout ONNX Runtime's
 * quantize_dynamic(per_channel=True, QInt8) writes). A (the activations) is
 * quantized at run time by the op itself, so attention scores, softmax,
 * LayerNorm and every elementwise op stay float32. The bias Add is folded in
 * when the MatMul's output is read only by it and the bias is a constant (N)
 * vector on the last axis. Gemm (the pooler / classifier heads, a few KFLOP)
 * stays float. Runs after the fusions, which read the MatMul + Add forms.
 *
 * --precision int4, and int8 on decoders (graphs with past_key_values inputs): llama.cpp's block layouts
 * (Q4_0, Q8_0) kept quantized in ONNX:
 *   MatMul(A, W)                  -> com.microsoft MatMulNBits(A, B, scales), bits 4 | 8, block_size 32,
 *                                    accuracy_level 4 (int8 activations, per block)
 * W (K, N) constant float32 becomes N rows of K / 32 blocks, symmetric per block (scale = max |w| / 7 or / 127,
 * code = round(w / scale) + 8 or 128, MatMulNBits' default zero point: quant/qblock.h); the bias Add stays an
 * Add. Gather tables (embeddings) stay float32. */
#include "opt/opt_util.h"
#include "opt/pass.h"
#include "quant/qblock.h"
#include "runtime/cpu/gemm_int8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Quantized weight and scale constants for the (K, N) float block of w made of
 * columns [c0, c0 + N) of a (K, ld) matrix. */
static td_status quantize_weight(td_ctx *ctx, td_graph *g, const td_tensor *w, int64_t K, int64_t ld, int64_t c0,
                                 int64_t N, const char *name, td_value **wq, td_value **ws) {
    size_t kn = (size_t)K * (size_t)N;
    int8_t *q = malloc(kn ? kn : 1);
    float *s = malloc((size_t)(N ? N : 1) * sizeof *s);
    if (!q || !s) {
        free(q);
        free(s);
        return td_fail_oom(ctx, kn, "quantized weights");
    }
    td_gemm_i8_quantize_weights((const float *)w->data + c0, (size_t)K, (size_t)N, (size_t)ld, false, q, s);
    char pre[300];
    int64_t dq[2] = {K, N}, ds[1] = {N};
    snprintf(pre, sizeof pre, "%s_quantized", name);
    td_status st = opt_new_const_owned(ctx, g, pre, TD_I8, 2, dq, q, kn, wq);
    if (st != TD_OK) {
        free(s);
        return st;
    }
    snprintf(pre, sizeof pre, "%s_scale", name);
    return opt_new_const_owned(ctx, g, pre, TD_F32, 1, ds, s, (size_t)N * sizeof *s, ws);
}

/* A float32 2-D constant. */
static const td_tensor *float_matrix(const td_value *v) {
    const td_tensor *t = v ? opt_const(v) : NULL;
    return t && t->dtype == TD_F32 && t->rank == 2 && t->dims[0] > 0 && t->dims[1] > 0 ? t : NULL;
}

/* The constant (N) float bias b of Add(y, b) when y is read only by that Add. */
static td_node *bias_add(td_value *y, int64_t N, td_value **bias) {
    if (!opt_single_use(y))
        return NULL;
    td_node *add = y->consumers[0];
    if (!opt_is_op(add, "Add") || add->n_inputs != 2 || add->n_outputs != 1 || !add->outputs[0])
        return NULL;
    int bi = opt_other_input(add, y);
    const td_tensor *b = bi >= 0 ? opt_const(add->inputs[bi]) : NULL;
    if (!b || b->dtype != TD_F32 || b->rank != 1 || b->dims[0] != N)
        return NULL;
    *bias = add->inputs[bi];
    return add;
}

static td_status quantize_matmul(td_ctx *ctx, td_graph *g, td_node *mm, int *changes) {
    td_value *a = mm->inputs[0], *w = mm->inputs[1];
    const td_tensor *wt = float_matrix(w);
    if (!wt || !a || a->type.elem != TD_F32 || mm->n_outputs != 1 || !mm->outputs[0] || opt_rank(a) == 0)
        return TD_OK;
    if (wt->dims[0] > TD_GEMM_I8_MAX_K)
        return TD_OK;
    int64_t K = wt->dims[0], N = wt->dims[1];
    td_value *bias = NULL, *out = mm->outputs[0];
    td_node *add = bias_add(out, N, &bias);
    if (add)
        out = add->outputs[0];
    td_value *wq = NULL, *ws = NULL;
    TD_TRY(quantize_weight(ctx, g, wt, K, N, 0, N, w->name, &wq, &ws));
    td_value *ins[5] = {a, wq, ws, NULL, bias};
    TD_TRY(opt_replace_producer(ctx, g, out, "DynamicQuantizeMatMul", "com.microsoft", "DynamicQuantizeMatMul", ins,
                                bias ? 5 : 3, NULL));
    (*changes)++;
    return TD_OK;
}

/* Attention without the features MultiHeadAttention would need spelled differently. */
static bool plain_self_attention(const td_node *at) {
    size_t n = 0;
    if (td_node_attr_ints(at, "qkv_hidden_sizes", &n) && n)
        return false;
    if (td_node_attr_int(at, "unidirectional", 0) || td_node_attr_int(at, "do_rotary", 0) ||
        td_node_attr_int(at, "past_present_share_buffer", 0))
        return false;
    if (at->n_outputs != 1 || !at->outputs[0] || at->n_inputs < 3 || at->n_inputs > 6)
        return false;
    if (at->n_inputs > 4 && at->inputs[4]) /* past */
        return false;
    const td_value *m = at->n_inputs > 3 ? at->inputs[3] : NULL;
    /* the raw (batch, seq) 0/1 mask is MultiHeadAttention's key_padding_mask; other mask_index forms differ */
    return !m || (opt_rank(m) == 2 && m->type.elem == TD_I32);
}

static td_status quantize_attention(td_ctx *ctx, td_graph *g, td_node *at, int *changes) {
    if (!plain_self_attention(at))
        return TD_OK;
    td_value *x = at->inputs[0], *w = at->inputs[1], *b = at->inputs[2];
    const td_tensor *wt = float_matrix(w), *bt = b ? opt_const(b) : NULL;
    if (!wt || !x || x->type.elem != TD_F32 || wt->dims[1] % 3 || wt->dims[0] > TD_GEMM_I8_MAX_K)
        return TD_OK;
    int64_t K = wt->dims[0], H = wt->dims[1] / 3;
    if (!bt || bt->dtype != TD_F32 || bt->rank != 1 || bt->dims[0] != 3 * H)
        return TD_OK;
    td_value *qkv[3];
    static const char *const part[3] = {"q", "k", "v"};
    for (int p = 0; p < 3; p++) {
        char name[300];
        snprintf(name, sizeof name, "%s_%s", w->name, part[p]);
        td_value *wq = NULL, *ws = NULL, *bp = NULL;
        TD_TRY(quantize_weight(ctx, g, wt, K, 3 * H, p * H, H, name, &wq, &ws));
        snprintf(name, sizeof name, "%s_%s", b->name, part[p]);
        int64_t dh[1] = {H};
        TD_TRY(opt_new_const(ctx, g, name, TD_F32, 1, dh, (const float *)bt->data + p * H,
                             (size_t)H * sizeof(float), &bp));
        snprintf(name, sizeof name, "%s_%s", at->outputs[0]->name, part[p]);
        TD_TRY(opt_new_value(ctx, g, name, &qkv[p]));
        TD_TRY(opt_copy_type(ctx, qkv[p], at->outputs[0])); /* (batch, seq, H): the attention output's shape */
        td_value *ins[5] = {x, wq, ws, NULL, bp};
        TD_TRY(opt_add_node(ctx, g, "DynamicQuantizeMatMul", "com.microsoft", "DynamicQuantizeMatMul", ins, 5,
                            &qkv[p], 1, NULL));
    }
    td_value *mask = at->n_inputs > 3 ? at->inputs[3] : NULL, *abias = at->n_inputs > 5 ? at->inputs[5] : NULL;
    td_value *ins[6] = {qkv[0], qkv[1], qkv[2], NULL, mask, abias};
    int64_t heads = td_node_attr_int(at, "num_heads", 0);
    const td_attr *sc = td_node_attr(at, "scale"), *mf = td_node_attr(at, "mask_filter_value");
    float scale = sc ? td_node_attr_float(at, "scale", 0.0f) : 0.0f;
    float filter = mf ? td_node_attr_float(at, "mask_filter_value", 0.0f) : 0.0f;
    td_node *mha = NULL;
    TD_TRY(opt_replace_producer(ctx, g, at->outputs[0], "MultiHeadAttention", "com.microsoft", "MultiHeadAttention",
                                ins, abias ? 6 : mask ? 5 : 3, &mha));
    TD_TRY(td_node_add_attr_int(ctx, mha, "num_heads", heads));
    if (sc)
        TD_TRY(td_node_add_attr_float(ctx, mha, "scale", scale));
    if (mf)
        TD_TRY(td_node_add_attr_float(ctx, mha, "mask_filter_value", filter));
    (*changes)++;
    return TD_OK;
}

/* int4 / int8 on decoders: MatMul with a constant float32 (K, N) weight -> MatMulNBits of `bits`. */
static td_status quantize_matmul_nbits(td_ctx *ctx, td_graph *g, td_node *mm, int bits, int *changes) {
    td_value *a = mm->inputs[0], *w = mm->inputs[1];
    const td_tensor *wt = float_matrix(w);
    if (!wt || !a || a->type.elem != TD_F32 || mm->n_outputs != 1 || !mm->outputs[0] || opt_rank(a) == 0)
        return TD_OK;
    int64_t K = wt->dims[0], N = wt->dims[1], kb = (K + 31) / 32;
    float *rows = malloc((size_t)K * (size_t)N * sizeof *rows); /* W^T (N, K): MatMulNBits rows are outputs */
    if (!rows)
        return td_fail_oom(ctx, (size_t)K * (size_t)N * sizeof *rows, "int4 quantization");
    const float *src = wt->data;
    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++)
            rows[n * K + k] = src[k * N + n];
    td_qblock q = {0};
    td_status s = td_qblock_quantize(ctx, rows, N, K, bits, 32, true, &q);
    free(rows);
    TD_TRY(s);
    free(q.zp_u8); /* symmetric: the default zero point */
    free(q.zp_f32);
    char name[300];
    td_value *b = NULL, *sc = NULL;
    int64_t blob = 32 * bits / 8, db[3] = {N, kb, blob}, ds[2] = {N, kb};
    snprintf(name, sizeof name, "%s_q%d", w->name, bits);
    if ((s = opt_new_const_owned(ctx, g, name, TD_U8, 3, db, q.b, (size_t)(N * kb * blob), &b)) != TD_OK) {
        free(q.scales);
        return s;
    }
    snprintf(name, sizeof name, "%s_q%d_scales", w->name, bits);
    TD_TRY(opt_new_const_owned(ctx, g, name, TD_F32, 2, ds, q.scales, (size_t)(N * kb) * sizeof(float), &sc));
    td_value *ins[3] = {a, b, sc};
    td_node *nb = NULL;
    TD_TRY(opt_replace_producer(ctx, g, mm->outputs[0], "MatMulNBits", "com.microsoft", "MatMulNBits", ins, 3, &nb));
    TD_TRY(td_node_add_attr_int(ctx, nb, "K", K));
    TD_TRY(td_node_add_attr_int(ctx, nb, "N", N));
    TD_TRY(td_node_add_attr_int(ctx, nb, "bits", bits));
    TD_TRY(td_node_add_attr_int(ctx, nb, "block_size", 32));
    TD_TRY(td_node_add_attr_int(ctx, nb, "accuracy_level", 4));
    (*changes)++;
    return TD_OK;
}

/* A decoder with a KV cache (export/decoder.h's or Optimum's inputs). */
static bool is_decoder(const td_graph *g) {
    for (int i = 0; i < g->n_inputs; i++)
        if (strncmp(g->inputs[i]->name, "past_key_values.", 16) == 0)
            return true;
    return false;
}

td_status td_pass_quantize(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g0 = st->model->graph;
    if (st->opts->precision == TD_OPT_INT4 || (st->opts->precision == TD_OPT_INT8 && is_decoder(g0))) {
        /* decoders: llama.cpp's block formats (Q4_0 / Q8_0 layouts) kept quantized, MatMulNBits */
        int bits = st->opts->precision == TD_OPT_INT4 ? 4 : 8, n_nodes = g0->n_nodes;
        for (int i = 0; i < n_nodes; i++)
            if (opt_is_op(g0->nodes[i], "MatMul") && g0->nodes[i]->n_inputs == 2)
                TD_TRY(quantize_matmul_nbits(ctx, g0, g0->nodes[i], bits, changes));
        return TD_OK;
    }
    if (st->opts->precision != TD_OPT_INT8)
        return TD_OK;
    td_graph *g = st->model->graph;
    int n_nodes = g->n_nodes; /* nodes appended below are not revisited */
    for (int i = 0; i < n_nodes; i++) {
        td_node *n = g->nodes[i];
        if (opt_is_op(n, "MatMul") && n->n_inputs == 2)
            TD_TRY(quantize_matmul(ctx, g, n, changes));
        else if (!n->dead && n->domain && strcmp(n->domain, "com.microsoft") == 0 &&
                 strcmp(n->op_type, "Attention") == 0)
            TD_TRY(quantize_attention(ctx, g, n, changes));
    }
    return TD_OK;
}
