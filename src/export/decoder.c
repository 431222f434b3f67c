/* Decoder graphs with a KV cache (see decoder.h): GPT-2 and the Llama family
 * (Llama, Mistral, Qwen2, Phi-3) in standard ONNX ops, float32. */
#define _GNU_SOURCE
#include "export/decoder.h"
#include "export/decoder_gguf.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Values every layer reads. */
typedef struct dec_inputs {
    td_value *ids;       /* (batch, seq) int64 */
    td_value *pos;       /* (batch, seq) int64 */
    td_value *bias;      /* (batch, 1, groups * seq, total) float32: 0 or float32 min */
    td_value *cos, *sin; /* (batch, 1, seq, rotary_dim) float32; llama family only */
} dec_inputs;

static td_value *concat(td_eb *b, const char *hint, td_value *const *in, int n, int64_t axis) {
    td_node *nd = NULL;
    td_value *y = td_eb_op(b, "Concat", hint, in, n, &nd);
    td_eb_attr_int(b, nd, "axis", axis);
    return y;
}

/* x[..., start:end] */
static td_value *slice_last(td_eb *b, td_value *x, int64_t start, int64_t end, const char *hint) {
    static const int64_t last[1] = {-1};
    td_value *in[4] = {x, td_eb_vec_i64(b, "starts", 1, &start), td_eb_vec_i64(b, "ends", 1, &end),
                       td_eb_vec_i64(b, "axes", 1, last)};
    return td_eb_op(b, "Slice", hint, in, 4, NULL);
}

/* (batch, seq, n * head_dim) -> (batch, n, seq, head_dim) */
static td_value *split_heads(td_eb *b, td_value *x, int64_t n, int64_t head_dim, const char *hint) {
    static const int64_t bhsd[4] = {0, 2, 1, 3};
    const int64_t shape[4] = {0, 0, n, head_dim};
    char h[64];
    snprintf(h, sizeof h, "%s_split", hint);
    return td_eb_transpose(b, td_eb_reshape(b, x, h, 4, shape), hint, 4, bhsd);
}

/* ---------------- mask and positions ---------------- */

/* Additive attention bias (batch, 1, groups * seq, total): key column j is open to
 * query i (cache column past + i) when attention_mask[:, j] != 0, j <= past + i
 * and, with a sliding window W, past + i - j < W. Repeated `groups` times along
 * the query axis for grouped-query attention (queries of one kv head stacked). */
static td_value *attention_bias(td_eb *b, const td_decoder_spec *s, td_value *ids, td_value *mask, int64_t groups) {
    static const int64_t ax1[1] = {1}, ax01[2] = {0, 1}, ax12[2] = {1, 2};
    td_eb_scope(b, "mask");
    td_value *seq = td_eb_select(b, td_eb_op1(b, "Shape", "ids_shape", ids), "seq", 0, 1);       // ()
    td_value *total = td_eb_select(b, td_eb_op1(b, "Shape", "mask_shape", mask), "total", 0, 1); // ()
    td_value *past = td_eb_op2(b, "Sub", "past", total, seq);                                    // ()
    td_value *one = td_eb_scalar_i64(b, "one", 1);
    td_value *rq[3] = {past, total, one}, *rk[3] = {td_eb_scalar_i64(b, "zero", 0), total, one};
    td_value *qpos = td_eb_unsqueeze(b, td_eb_op(b, "Range", "q_cols", rq, 3, NULL), "q_col", 1, ax1); // (seq, 1)
    td_value *kpos = td_eb_op(b, "Range", "k_cols", rk, 3, NULL);                                       // (total)
    td_value *open = td_eb_op1(b, "Not", "causal", td_eb_op2(b, "Greater", "future", kpos, qpos));     // (seq, total)
    if (s->sliding_window > 0) {
        td_value *lo = td_eb_op2(b, "Sub", "window_lo", qpos, td_eb_scalar_i64(b, "window", s->sliding_window));
        open = td_eb_op2(b, "And", "windowed", open, td_eb_op2(b, "Greater", "in_window", kpos, lo));
    }
    td_value *open4 = td_eb_unsqueeze(b, open, "causal_4d", 2, ax01);                         // (1, 1, seq, total)
    td_value *keep = td_eb_unsqueeze(b, td_eb_cast(b, mask, TD_BOOL), "keys_4d", 2, ax12);    // (batch, 1, 1, total)
    td_value *both = td_eb_op2(b, "And", "allowed", open4, keep);                             // (batch, 1, seq, total)
    td_value *in[3] = {both, td_eb_scalar_f(b, "zero_f", TD_F32, 0.0f), td_eb_scalar_f(b, "f32_min", TD_F32, -FLT_MAX)};
    td_value *bias = td_eb_op(b, "Where", "bias", in, 3, NULL);                                // (batch, 1, seq, total)
    if (groups <= 1)
        return bias;
    td_value *rep[64];
    for (int64_t g = 0; g < groups; g++)
        rep[g] = bias;
    return concat(b, "bias_groups", rep, (int)groups, 2); // (batch, 1, groups * seq, total)
}

/* cos and sin of position * inv_freq, duplicated over both halves as transformers'
 * rotary embedding: (batch, 1, seq, rotary_dim) each. */
static void rope_tables(td_eb *b, const td_decoder_spec *s, td_value *pos, td_value **cos, td_value **sin) {
    static const int64_t ax1[1] = {1}, ax2[1] = {2};
    td_eb_scope(b, "rope");
    int64_t half = s->rotary_dim / 2;
    td_value *inv = td_eb_vec_f32(b, "inv_freq", half, s->inv_freq);                              // (half)
    td_value *p = td_eb_unsqueeze(b, td_eb_cast(b, pos, TD_F32), "pos", 1, ax2);                  // (batch, seq, 1)
    td_value *ang = td_eb_op2(b, "Mul", "angles", p, inv);                                        // (batch, seq, half)
    td_value *two[2] = {ang, ang};
    td_value *emb = concat(b, "angles_full", two, 2, -1);                                         // (batch, seq, rot)
    *cos = td_eb_unsqueeze(b, td_eb_op1(b, "Cos", "cos_3d", emb), "cos", 1, ax1);                 // (batch, 1, seq, rot)
    *sin = td_eb_unsqueeze(b, td_eb_op1(b, "Sin", "sin_3d", emb), "sin", 1, ax1);
}

/* x * cos + rotate_half(x) * sin on the first rotary_dim features of x (batch, n, seq, head_dim). */
static td_value *apply_rope(td_eb *b, const td_decoder_spec *s, const dec_inputs *in, td_value *x, const char *hint) {
    int64_t rot = s->rotary_dim, d = s->head_dim;
    td_value *xr = rot == d ? x : slice_last(b, x, 0, rot, "rope_part");
    td_value *x1 = slice_last(b, xr, 0, rot / 2, "rope_x1");
    td_value *x2 = slice_last(b, xr, rot / 2, rot, "rope_x2");
    td_value *halves[2] = {td_eb_op1(b, "Neg", "rope_neg_x2", x2), x1};
    td_value *rh = concat(b, "rope_rotated", halves, 2, -1);
    td_value *y = td_eb_op2(b, "Add", rot == d ? hint : "rope_mixed", td_eb_op2(b, "Mul", "rope_cos", xr, in->cos),
                            td_eb_op2(b, "Mul", "rope_sin", rh, in->sin));
    if (rot == d)
        return y;
    td_value *parts[2] = {y, slice_last(b, x, rot, d, "rope_pass")};
    return concat(b, hint, parts, 2, -1);
}

/* ---------------- attention with the cache ---------------- */

static td_value *past_input(td_eb *b, const td_decoder_spec *s, int64_t layer, const char *kind) {
    static const char *const params[4] = {"batch_size", NULL, "past_sequence_length", NULL};
    const int64_t dims[4] = {-1, s->kv_heads, -1, s->head_dim};
    char name[64];
    snprintf(name, sizeof name, "past_key_values.%lld.%s", (long long)layer, kind);
    return td_eb_input(b, name, TD_F32, 4, dims, params);
}

static void present_output(td_eb *b, const td_decoder_spec *s, int64_t layer, const char *kind, td_value *v) {
    static const char *const params[4] = {"batch_size", NULL, "past_sequence_length + sequence_length", NULL};
    const int64_t dims[4] = {-1, s->kv_heads, -1, s->head_dim};
    char name[64];
    snprintf(name, sizeof name, "present.%lld.%s", (long long)layer, kind);
    td_eb_output(b, v, name, TD_F32, 4, dims, params);
}

/* q (batch, heads, seq, d), k/v (batch, kv_heads, seq, d) -> context (batch, seq, heads * d).
 * The new keys/values are appended to the layer's past (the present outputs). With
 * grouped-query attention the queries of one kv head are stacked along the sequence
 * axis, so no repeated copy of K/V is made. */
static td_value *cached_attention(td_eb *b, const td_decoder_spec *s, const dec_inputs *in, int64_t layer,
                                  td_value *q, td_value *k, td_value *v, float scale) {
    static const int64_t bhds[4] = {0, 1, 3, 2}, bhsd[4] = {0, 2, 1, 3};
    int64_t groups = s->heads / s->kv_heads, d = s->head_dim;
    td_value *pk[2] = {past_input(b, s, layer, "key"), k};
    td_value *pv[2] = {past_input(b, s, layer, "value"), v};
    td_value *key = concat(b, "present_key", pk, 2, 2);     // (batch, kv_heads, total, d)
    td_value *value = concat(b, "present_value", pv, 2, 2); // (batch, kv_heads, total, d)
    present_output(b, s, layer, "key", key);
    present_output(b, s, layer, "value", value);
    td_value *qs = td_eb_op2(b, "Mul", "q_scaled", q, td_eb_scalar_f(b, "attn_scale", TD_F32, scale));
    if (groups > 1) {
        const int64_t stacked[4] = {0, s->kv_heads, -1, d};
        qs = td_eb_reshape(b, qs, "q_grouped", 4, stacked); // (batch, kv_heads, groups * seq, d)
    }
    td_value *kt = td_eb_transpose(b, key, "key_t", 4, bhds);                   // (batch, kv_heads, d, total)
    td_value *scores = td_eb_op2(b, "MatMul", "attn_scores", qs, kt);           // (batch, kv_heads, g * seq, total)
    td_value *masked = td_eb_op2(b, "Add", "attn_masked", scores, in->bias);
    td_node *n = NULL;
    td_value *probs = td_eb_op(b, "Softmax", "attn_probs", &masked, 1, &n);
    td_eb_attr_int(b, n, "axis", -1);
    td_value *ctxv = td_eb_op2(b, "MatMul", "attn_context", probs, value);      // (batch, kv_heads, g * seq, d)
    if (groups > 1) {
        const int64_t heads[4] = {0, s->heads, -1, d};
        ctxv = td_eb_reshape(b, ctxv, "context_heads", 4, heads);               // (batch, heads, seq, d)
    }
    td_value *merged = td_eb_transpose(b, ctxv, "context_t", 4, bhsd);         // (batch, seq, heads, d)
    const int64_t joined[3] = {0, 0, s->heads * d};
    return td_eb_reshape(b, merged, "context", 3, joined);                      // (batch, seq, heads * d)
}

/* ---------------- norms and projections ---------------- */

/* transformers' RMSNorm: x * rsqrt(mean(x^2) + eps) * weight, as Pow/ReduceMean/Add/Sqrt, Div(1, .), Mul(x, .),
 * Mul(., weight): the form PyTorch exports write, which tdeploy's and ONNX Runtime's optimizers fuse into
 * SimplifiedLayerNormalization (and, after a residual Add, SkipSimplifiedLayerNormalization). */
static td_value *rms_norm(td_eb *b, td_value *x, td_value *w, float eps, const char *hint) {
    static const int64_t last[1] = {-1};
    td_value *sq = td_eb_op2(b, "Pow", "rms_sq", x, td_eb_scalar_f(b, "two", TD_F32, 2.0f));
    td_value *ms = td_eb_reduce(b, "ReduceMean", sq, "rms_mean", 1, last, true);
    td_value *sd = td_eb_op1(b, "Sqrt", "rms_std", td_eb_op2(b, "Add", "rms_eps", ms,
                                                                td_eb_scalar_f(b, "eps", TD_F32, eps)));
    td_value *inv = td_eb_op2(b, "Div", "rms_inv", td_eb_scalar_f(b, "one", TD_F32, 1.0f), sd);
    return td_eb_op2(b, "Mul", hint, td_eb_op2(b, "Mul", "rms_normed", x, inv), w);
}

/* GPT-2's Conv1D: x @ W + bias with W stored (in, out). */
static td_value *conv1d(td_eb *b, td_xw *w, td_value *x, int64_t in, int64_t out, const char *name, const char *hint) {
    td_value *wt = td_xw_mat(w, TD_F32, in, out, "%s.weight", name);
    td_value *bias = td_xw_vec(w, TD_F32, out, "%s.bias", name);
    char h[96];
    snprintf(h, sizeof h, "%s_matmul", hint);
    return td_eb_op2(b, "Add", hint, td_eb_op2(b, "MatMul", h, x, wt), bias);
}

/* nn.Linear (out, in) with an optional bias. */
static td_value *linear(td_eb *b, td_xw *w, td_value *x, int64_t in, int64_t out, bool bias, const char *name,
                        const char *hint) {
    if (w->gguf && w->gguf_quantized) { /* the file's blocks, kept quantized (MatMulNBits) */
        char wn[200];
        snprintf(wn, sizeof wn, "%s.weight", name);
        td_value *y = td_xw_gguf_qlinear(w, x, in, out, wn, hint);
        if (y && bias)
            return td_eb_op2(b, "Add", hint, y, td_xw_vec(w, TD_F32, out, "%s.bias", name));
        if (y || td_eb_status(b) != TD_OK)
            return y;
    }
    td_value *wt = td_xw_mat(w, TD_F32, out, in, "%s.weight", name);
    td_value *bv = bias ? td_xw_vec(w, TD_F32, out, "%s.bias", name) : NULL;
    return td_eb_linear(b, x, wt, bv, hint);
}

/* ---------------- layers ---------------- */

static td_value *gpt2_layer(td_eb *b, td_xw *w, const td_decoder_spec *s, const dec_inputs *in, int64_t i,
                            td_value *h) {
    const char *p = s->prefix;
    int64_t e = s->hidden, d = s->head_dim;
    char name[160];
    td_eb_scope(b, "h.%lld", (long long)i);
    snprintf(name, sizeof name, "%sh.%lld", p, (long long)i);
    char nm[200];
#define N(suffix) (snprintf(nm, sizeof nm, "%s.%s", name, suffix), nm)
    td_value *x = td_eb_layer_norm(b, h, td_xw_vec(w, TD_F32, e, "%s.weight", N("ln_1")),
                                   td_xw_vec(w, TD_F32, e, "%s.bias", N("ln_1")), s->norm_eps, "ln_1");
    td_value *qkv = conv1d(b, w, x, e, 3 * e, N("attn.c_attn"), "c_attn");                 // (batch, seq, 3e)
    td_value *q = split_heads(b, slice_last(b, qkv, 0, e, "q"), s->heads, d, "q_heads");   // (batch, heads, seq, d)
    td_value *k = split_heads(b, slice_last(b, qkv, e, 2 * e, "k"), s->heads, d, "k_heads");
    td_value *v = split_heads(b, slice_last(b, qkv, 2 * e, 3 * e, "v"), s->heads, d, "v_heads");
    float scale = s->scale_attn_weights ? (float)(1.0 / sqrt((double)d)) : 1.0f;
    if (s->scale_attn_by_inverse_layer_idx)
        scale /= (float)(i + 1);
    td_value *a = cached_attention(b, s, in, i, q, k, v, scale);                           // (batch, seq, e)
    h = td_eb_op2(b, "Add", "attn_residual", h, conv1d(b, w, a, e, e, N("attn.c_proj"), "attn_out"));
    x = td_eb_layer_norm(b, h, td_xw_vec(w, TD_F32, e, "%s.weight", N("ln_2")),
                         td_xw_vec(w, TD_F32, e, "%s.bias", N("ln_2")), s->norm_eps, "ln_2");
    td_value *f = td_eb_activation(b, s->hidden_act, conv1d(b, w, x, e, s->intermediate, N("mlp.c_fc"), "fc"));
    td_value *m = conv1d(b, w, f, s->intermediate, e, N("mlp.c_proj"), "mlp_out");
#undef N
    return td_eb_op2(b, "Add", "mlp_residual", h, m);
}

static td_value *llama_layer(td_eb *b, td_xw *w, const td_decoder_spec *s, const dec_inputs *in, int64_t i,
                             td_value *h) {
    int64_t e = s->hidden, d = s->head_dim, qd = s->heads * d, kvd = s->kv_heads * d, f = s->intermediate;
    char name[160], nm[200];
    td_eb_scope(b, "layers.%lld", (long long)i);
    snprintf(name, sizeof name, "%slayers.%lld", s->prefix, (long long)i);
#define N(suffix) (snprintf(nm, sizeof nm, "%s.%s", name, suffix), nm)
    td_value *x = rms_norm(b, h, td_xw_vec(w, TD_F32, e, "%s.weight", N("input_layernorm")), s->norm_eps,
                           "input_norm");                                                  // (batch, seq, e)
    td_value *q, *k, *v;
    if (s->fused_qkv) {
        td_value *qkv = linear(b, w, x, e, qd + 2 * kvd, false, N("self_attn.qkv_proj"), "qkv");
        q = slice_last(b, qkv, 0, qd, "q");
        k = slice_last(b, qkv, qd, qd + kvd, "k");
        v = slice_last(b, qkv, qd + kvd, qd + 2 * kvd, "v");
    } else {
        q = linear(b, w, x, e, qd, s->qkv_bias, N("self_attn.q_proj"), "q");               // (batch, seq, heads * d)
        k = linear(b, w, x, e, kvd, s->qkv_bias, N("self_attn.k_proj"), "k");              // (batch, seq, kv * d)
        v = linear(b, w, x, e, kvd, s->qkv_bias, N("self_attn.v_proj"), "v");
    }
    q = apply_rope(b, s, in, split_heads(b, q, s->heads, d, "q_heads"), "q_rope");          // (batch, heads, seq, d)
    k = apply_rope(b, s, in, split_heads(b, k, s->kv_heads, d, "k_heads"), "k_rope");       // (batch, kv, seq, d)
    v = split_heads(b, v, s->kv_heads, d, "v_heads");
    td_value *a = cached_attention(b, s, in, i, q, k, v, (float)(1.0 / sqrt((double)d)));  // (batch, seq, qd)
    h = td_eb_op2(b, "Add", "attn_residual", h, linear(b, w, a, qd, e, s->o_bias, N("self_attn.o_proj"), "o"));
    x = rms_norm(b, h, td_xw_vec(w, TD_F32, e, "%s.weight", N("post_attention_layernorm")), s->norm_eps,
                 "post_attention_norm");
    td_value *gate, *up;
    if (s->fused_gate_up) {
        td_value *gu = linear(b, w, x, e, 2 * f, false, N("mlp.gate_up_proj"), "gate_up");  // (batch, seq, 2f)
        gate = slice_last(b, gu, 0, f, "gate");
        up = slice_last(b, gu, f, 2 * f, "up");
    } else {
        gate = linear(b, w, x, e, f, s->mlp_bias, N("mlp.gate_proj"), "gate");              // (batch, seq, f)
        up = linear(b, w, x, e, f, s->mlp_bias, N("mlp.up_proj"), "up");
    }
    td_value *act = td_eb_op2(b, "Mul", "gated", td_eb_activation(b, s->hidden_act, gate), up);
    td_value *m = linear(b, w, act, f, e, s->mlp_bias, N("mlp.down_proj"), "down");        // (batch, seq, e)
#undef N
    return td_eb_op2(b, "Add", "mlp_residual", h, m);
}

/* ---------------- graph ---------------- */

static void add_io_name(td_export_summary *sum, bool input, const char *name) {
    if (input && sum->n_inputs < TD_EXPORT_MAX_IO)
        snprintf(sum->inputs[sum->n_inputs++], sizeof sum->inputs[0], "%s", name);
    else if (!input && sum->n_outputs < TD_EXPORT_MAX_IO)
        snprintf(sum->outputs[sum->n_outputs++], sizeof sum->outputs[0], "%s", name);
}

td_status td_decoder_build(td_eb *b, td_xw *w, const td_decoder_spec *s, bool int32_inputs, td_export_summary *sum) {
    static const char *const ids_params[2] = {"batch_size", "sequence_length"};
    static const char *const mask_params[2] = {"batch_size", "past_sequence_length + sequence_length"};
    static const char *const logit_params[3] = {"batch_size", "sequence_length", NULL};
    const int64_t dyn2[2] = {-1, -1};
    int64_t groups = s->heads / s->kv_heads;
    if (groups > 64)
        return td_eb_fail(b, td_fail(b->ctx, TD_ERR_UNSUPPORTED,
                                     "%lld query heads per key/value head is more than the 64 supported",
                                     (long long)groups));
    td_dtype it = int32_inputs ? TD_I32 : TD_I64;
    td_eb_scope(b, "inputs");
    td_value *ids = td_eb_input(b, "input_ids", it, 2, dyn2, ids_params);
    td_value *mask = td_eb_input(b, "attention_mask", it, 2, dyn2, mask_params);
    td_value *pos = td_eb_input(b, "position_ids", it, 2, dyn2, ids_params);
    add_io_name(sum, true, "input_ids");
    add_io_name(sum, true, "attention_mask");
    add_io_name(sum, true, "position_ids");
    add_io_name(sum, true, "past_key_values.*");
    dec_inputs in = {.ids = td_eb_cast(b, ids, TD_I64), .pos = td_eb_cast(b, pos, TD_I64)};
    in.bias = attention_bias(b, s, ids, mask, groups);
    if (s->layout == TD_DEC_LLAMA)
        rope_tables(b, s, in.pos, &in.cos, &in.sin);

    const char *p = s->prefix;
    bool gpt2 = s->layout == TD_DEC_GPT2;
    td_eb_scope(b, "embed");
    char wte_name[128];
    snprintf(wte_name, sizeof wte_name, gpt2 ? "%swte.weight" : "%sembed_tokens.weight", p);
    bool keep_q = w->gguf && w->gguf_quantized;
    td_value *wte = NULL, *h = keep_q ? td_xw_gguf_qembed(w, in.ids, s->vocab, s->hidden, wte_name) : NULL;
    if (!h && td_eb_status(b) == TD_OK) {
        wte = td_xw_mat(w, TD_F32, s->vocab, s->hidden, "%s", wte_name);
        td_value *in2[2] = {wte, in.ids};
        h = td_eb_op(b, "Gather", "tokens", in2, 2, NULL);                                    // (batch, seq, hidden)
    }
    if (gpt2) {
        td_value *wpe = td_xw_mat(w, TD_F32, s->max_positions, s->hidden, "%swpe.weight", p);
        td_value *pin[2] = {wpe, in.pos};
        h = td_eb_op2(b, "Add", "embeddings", h, td_eb_op(b, "Gather", "positions", pin, 2, NULL));
    }
    for (int64_t i = 0; i < s->layers && td_eb_status(b) == TD_OK; i++)
        h = gpt2 ? gpt2_layer(b, w, s, &in, i, h) : llama_layer(b, w, s, &in, i, h);

    td_eb_scope(b, "head");
    if (gpt2)
        h = td_eb_layer_norm(b, h, td_xw_vec(w, TD_F32, s->hidden, "%sln_f.weight", p),
                             td_xw_vec(w, TD_F32, s->hidden, "%sln_f.bias", p), s->norm_eps, "ln_f");
    else
        h = rms_norm(b, h, td_xw_vec(w, TD_F32, s->hidden, "%snorm.weight", p), s->norm_eps, "norm");
    const char *head_name = s->lm_head_tied ? wte_name : "lm_head.weight";
    td_value *logits = keep_q ? td_xw_gguf_qlinear(w, h, s->hidden, s->vocab, head_name, "lm_head") : NULL;
    if (!logits && td_eb_status(b) == TD_OK) {
        td_value *head = s->lm_head_tied && wte ? wte : td_xw_mat(w, TD_F32, s->vocab, s->hidden, "%s", head_name);
        logits = td_eb_linear(b, h, head, NULL, "lm_head");                                   // (batch, seq, vocab)
    }
    const int64_t ldims[3] = {-1, -1, s->vocab};
    td_eb_output(b, logits, "logits", TD_F32, 3, ldims, logit_params);
    add_io_name(sum, false, "logits");
    add_io_name(sum, false, "present.*");
    return td_eb_status(b);
}

static td_status set_int(td_ctx *ctx, td_model *m, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return td_model_set_metadata(ctx, m, key, buf);
}

td_status td_decoder_set_metadata(td_ctx *ctx, td_model *m, const td_decoder_spec *s) {
    TD_TRY(td_model_set_metadata(ctx, m, "task", td_export_task_name(TD_TASK_TEXT_GENERATION)));
    TD_TRY(td_model_set_metadata(ctx, m, "model_type", s->model_type));
    if (s->architecture[0])
        TD_TRY(td_model_set_metadata(ctx, m, "architecture", s->architecture));
    TD_TRY(set_int(ctx, m, "num_hidden_layers", s->layers));
    TD_TRY(set_int(ctx, m, "num_key_value_heads", s->kv_heads));
    TD_TRY(set_int(ctx, m, "head_dim", s->head_dim));
    TD_TRY(set_int(ctx, m, "max_position_embeddings", s->max_positions));
    if (s->sliding_window > 0)
        TD_TRY(set_int(ctx, m, "sliding_window", s->sliding_window));
    if (s->bos_token_id >= 0)
        TD_TRY(set_int(ctx, m, "bos_token_id", s->bos_token_id));
    if (s->pad_token_id >= 0)
        TD_TRY(set_int(ctx, m, "pad_token_id", s->pad_token_id));
    if (s->n_eos_token_ids > 0) {
        char buf[TD_HF_MAX_EOS * 24 + 4] = "[";
        for (size_t i = 0; i < s->n_eos_token_ids; i++) {
            size_t used = strlen(buf);
            snprintf(buf + used, sizeof buf - used, "%s%lld", i ? ", " : "", (long long)s->eos_token_ids[i]);
        }
        strcat(buf, "]");
        TD_TRY(td_model_set_metadata(ctx, m, "eos_token_id", buf));
    }
    return TD_OK;
}
