/* Embeddings and transformer layers of BERT, RoBERTa/XLM-R, DistilBERT and ELECTRA,
 * following the module structure (and tensor names) of transformers' models. */
#define _GNU_SOURCE
#include "export/encoder.h"

#include <stdio.h>
#include <string.h>

/* (seq,) positions 0..seq-1 as rows of the position table: Slice(table, 0, seq). */
static td_value *absolute_positions(td_eb *b, td_value *table, td_value *ids) {
    static const int64_t one[1] = {1}, zero[1] = {0};
    td_value *shape = td_eb_op1(b, "Shape", "ids_shape", ids);                            // (2,) = [batch, seq]
    td_node *n = NULL;
    td_value *gi[2] = {shape, td_eb_vec_i64(b, "seq_axis", 1, one)};
    td_value *seq = td_eb_op(b, "Gather", "seq_len", gi, 2, &n);                           // (1,) = [seq]
    td_eb_attr_int(b, n, "axis", 0);
    td_value *si[4] = {table, td_eb_vec_i64(b, "zero", 1, zero), seq, td_eb_vec_i64(b, "axis0", 1, zero)};
    return td_eb_op(b, "Slice", "position_embeds", si, 4, NULL);                          // (seq, emb)
}

/* RoBERTa: position = cumsum(ids != pad) * (ids != pad) + pad, so padding tokens
 * get the padding index and real tokens count from pad + 1 (transformers'
 * create_position_ids_from_input_ids). */
static td_value *roberta_positions(td_eb *b, td_value *table, td_value *ids, int64_t pad) {
    td_value *pad_v = td_eb_scalar_i64(b, "pad_id", pad);
    td_value *is_pad = td_eb_op2(b, "Equal", "is_pad", ids, pad_v);
    td_value *real = td_eb_cast(b, td_eb_op1(b, "Not", "is_real", is_pad), TD_I64);       // (batch, seq) 0/1
    td_value *cs = td_eb_op2(b, "CumSum", "real_cumsum", real, td_eb_scalar_i64(b, "axis1", 1));
    td_value *pos = td_eb_op2(b, "Add", "position_ids", td_eb_op2(b, "Mul", "real_count", cs, real), pad_v);
    td_node *n = NULL;
    td_value *gi[2] = {table, pos};
    td_value *y = td_eb_op(b, "Gather", "position_embeds", gi, 2, &n);                   // (batch, seq, emb)
    td_eb_attr_int(b, n, "axis", 0);
    return y;
}

static td_value *gather_rows(td_eb *b, td_value *table, td_value *idx, const char *hint) {
    td_node *n = NULL;
    td_value *gi[2] = {table, idx};
    td_value *y = td_eb_op(b, "Gather", hint, gi, 2, &n);
    td_eb_attr_int(b, n, "axis", 0);
    return y;
}

td_value *td_enc_embeddings(td_eb *b, td_xw *w, const td_encoder_spec *s, const td_enc_inputs *in) {
    const char *P = s->prefix;
    td_dtype ct = b->compute;
    int64_t E = s->embedding_size;
    td_eb_scope(b, "%sembeddings", P);
    td_value *word = td_xw_mat(w, ct, s->vocab, E, "%sembeddings.word_embeddings.weight", P);
    td_value *pos_t = td_xw_mat(w, ct, s->max_positions, E, "%sembeddings.position_embeddings.weight", P);
    td_value *x = gather_rows(b, word, in->ids, "word_embeds");                           // (batch, seq, emb)
    if (s->has_token_types) {
        td_value *tt = td_xw_mat(w, ct, s->type_vocab, E, "%sembeddings.token_type_embeddings.weight", P);
        td_value *te = in->token_types ? gather_rows(b, tt, in->token_types, "token_type_embeds")
                                       : gather_rows(b, tt, td_eb_scalar_i64(b, "type0", 0), "token_type0"); // (emb,)
        x = td_eb_op2(b, "Add", "word_plus_type", x, te);
    }
    td_value *pe = s->family == TD_FAM_ROBERTA ? roberta_positions(b, pos_t, in->ids, s->pad_token_id)
                                                : absolute_positions(b, pos_t, in->ids);
    x = td_eb_op2(b, "Add", "embeds_sum", x, pe);
    td_value *g = td_xw_vec(w, TD_F32, E, "%sembeddings.LayerNorm.weight", P);
    td_value *beta = td_xw_vec(w, TD_F32, E, "%sembeddings.LayerNorm.bias", P);
    x = td_eb_layer_norm(b, x, g, beta, s->layer_norm_eps, "embeddings");                 // (batch, seq, emb)
    if (s->family == TD_FAM_ELECTRA && E != s->hidden) {
        /* ElectraModel projects embeddings to the hidden size when they differ */
        td_eb_scope(b, "%sembeddings_project", P);
        td_value *pw = td_xw_mat(w, ct, s->hidden, E, "%sembeddings_project.weight", P);
        td_value *pb = td_xw_vec(w, ct, s->hidden, "%sembeddings_project.bias", P);
        x = td_eb_linear(b, x, pw, pb, "projected");                                      // (batch, seq, hidden)
    }
    return x;
}

/* Module names of one layer: BERT-style and DistilBERT differ only in naming. */
typedef struct layer_names {
    const char *fmt_layer; /* "%sencoder.layer.%d." */
    const char *q, *k, *v, *attn_out, *attn_ln, *ffn_in, *ffn_out, *out_ln;
} layer_names;

static const layer_names k_bert_names = {"%sencoder.layer.%d.", "attention.self.query", "attention.self.key",
                                         "attention.self.value", "attention.output.dense",
                                         "attention.output.LayerNorm", "intermediate.dense", "output.dense",
                                         "output.LayerNorm"};
static const layer_names k_distil_names = {"%stransformer.layer.%d.", "attention.q_lin", "attention.k_lin",
                                           "attention.v_lin", "attention.out_lin", "sa_layer_norm", "ffn.lin1",
                                           "ffn.lin2", "output_layer_norm"};

static td_value *linear_named(td_eb *b, td_xw *w, td_value *x, const char *base, const char *mod, int64_t out,
                              int64_t in, const char *hint) {
    td_value *W = td_xw_mat(w, b->compute, out, in, "%s%s.weight", base, mod);
    td_value *B = td_xw_vec(w, b->compute, out, "%s%s.bias", base, mod);
    return td_eb_linear(b, x, W, B, hint);
}

static td_value *ln_named(td_eb *b, td_xw *w, td_value *x, const char *base, const char *mod, int64_t n, float eps,
                          const char *hint) {
    td_value *g = td_xw_vec(w, TD_F32, n, "%s%s.weight", base, mod);
    td_value *beta = td_xw_vec(w, TD_F32, n, "%s%s.bias", base, mod);
    return td_eb_layer_norm(b, x, g, beta, eps, hint);
}

td_value *td_enc_layers(td_eb *b, td_xw *w, const td_encoder_spec *s, td_value *h, td_value *mask_bias) {
    const layer_names *nm = s->family == TD_FAM_DISTILBERT ? &k_distil_names : &k_bert_names;
    int64_t H = s->hidden, I = s->intermediate, heads = s->heads;
    for (int64_t i = 0; i < s->layers && td_eb_status(b) == TD_OK; i++) {
        char base[128];
        snprintf(base, sizeof base, nm->fmt_layer, s->prefix, (int)i);
        td_eb_scope(b, "%.*s", (int)strlen(base) - 1, base); /* "bert.encoder.layer.3" */
        td_value *q = linear_named(b, w, h, base, nm->q, H, H, "q");                    // (batch, seq, hidden)
        td_value *k = linear_named(b, w, h, base, nm->k, H, H, "k");
        td_value *v = linear_named(b, w, h, base, nm->v, H, H, "v");
        td_value *ctxv = td_eb_attention(b, q, k, v, mask_bias, heads, H / heads);     // (batch, seq, hidden)
        td_value *ao = linear_named(b, w, ctxv, base, nm->attn_out, H, H, "attn_out");
        td_value *h1 = ln_named(b, w, td_eb_op2(b, "Add", "attn_residual", ao, h), base, nm->attn_ln, H,
                                s->layer_norm_eps, "attn_norm");
        td_value *f = linear_named(b, w, h1, base, nm->ffn_in, I, H, "ffn_in");         // (batch, seq, inter)
        f = td_eb_activation(b, s->hidden_act, f);
        td_value *fo = linear_named(b, w, f, base, nm->ffn_out, H, I, "ffn_out");       // (batch, seq, hidden)
        h = ln_named(b, w, td_eb_op2(b, "Add", "ffn_residual", fo, h1), base, nm->out_ln, H, s->layer_norm_eps,
                     "output");
    }
    return h;
}
