/* Task heads on the last hidden state, as transformers defines them per
 * architecture, and the sentence-transformers pooling + Normalize pipeline.
 * Every graph output is float32 (fp16 exports cast at the end) with dynamic
 * axes "batch" and "sequence". */
#define _GNU_SOURCE
#include "export/encoder.h"

#include <stdio.h>
#include <string.h>

static const char *const k_bs[2] = {"batch", "sequence"};
static const char *const k_bsh[3] = {"batch", "sequence", NULL};
static const char *const k_bh[2] = {"batch", NULL};

static void add_output(td_eb *b, td_export_summary *sum, td_value *v, const char *name, int rank, const int64_t *dims,
                       const char *const *params) {
    td_value *o = td_eb_output(b, td_eb_cast(b, v, TD_F32), name, TD_F32, rank, dims, params);
    if (o && sum->n_outputs < TD_EXPORT_MAX_IO)
        snprintf(sum->outputs[sum->n_outputs++], sizeof sum->outputs[0], "%s", name);
}

static td_value *linear_w(td_eb *b, td_xw *w, td_value *x, const char *mod, int64_t out, int64_t in,
                          const char *hint) {
    td_value *W = td_xw_mat(w, b->compute, out, in, "%s.weight", mod);
    td_value *B = td_xw_vec(w, b->compute, out, "%s.bias", mod);
    return td_eb_linear(b, x, W, B, hint);
}

/* BertPooler / RobertaPooler: tanh(dense(h[:, 0])). */
static td_value *pooler(td_eb *b, td_xw *w, const td_encoder_spec *s, td_value *h) {
    char mod[64];
    snprintf(mod, sizeof mod, "%spooler.dense", s->prefix);
    td_eb_scope(b, "%spooler", s->prefix);
    td_value *first = td_eb_select(b, h, "first_token", 1, 0);                      // (batch, hidden)
    return td_eb_op1(b, "Tanh", "pooled", linear_w(b, w, first, mod, s->hidden, s->hidden, "dense"));
}

/* Sequence classification logits (batch, num_labels) for each family's head. */
static td_value *seqcls(td_eb *b, td_xw *w, const td_encoder_spec *s, td_value *h) {
    int64_t H = s->hidden, L = s->num_labels;
    switch (s->family) {
    case TD_FAM_BERT: {
        td_value *p = pooler(b, w, s, h); /* BertForSequenceClassification: classifier(pooler_output) */
        td_eb_scope(b, "classifier");
        return linear_w(b, w, p, "classifier", L, H, "logits");
    }
    case TD_FAM_ROBERTA: {
        /* RobertaClassificationHead: out_proj(tanh(dense(h[:, 0]))) */
        td_eb_scope(b, "classifier");
        td_value *x = td_eb_select(b, h, "first_token", 1, 0);
        x = td_eb_op1(b, "Tanh", "dense_tanh", linear_w(b, w, x, "classifier.dense", H, H, "dense"));
        return linear_w(b, w, x, "classifier.out_proj", L, H, "logits");
    }
    case TD_FAM_DISTILBERT: {
        /* DistilBertForSequenceClassification: classifier(relu(pre_classifier(h[:, 0]))) */
        td_eb_scope(b, "classifier");
        td_value *x = td_eb_select(b, h, "first_token", 1, 0);
        x = td_eb_op1(b, "Relu", "pre_relu", linear_w(b, w, x, "pre_classifier", H, H, "pre_classifier"));
        return linear_w(b, w, x, "classifier", L, H, "logits");
    }
    case TD_FAM_ELECTRA: {
        /* ElectraClassificationHead: out_proj(gelu(dense(h[:, 0]))), gelu fixed by the module, not the config */
        td_eb_scope(b, "classifier");
        td_value *x = td_eb_select(b, h, "first_token", 1, 0);
        x = td_eb_activation(b, "gelu", linear_w(b, w, x, "classifier.dense", H, H, "dense"));
        return linear_w(b, w, x, "classifier.out_proj", L, H, "logits");
    }
    }
    return NULL;
}

/* sentence-transformers Pooling (+ Normalize), computed in float32. */
static td_value *sentence_embedding(td_eb *b, const td_encoder_spec *s, td_value *h, td_value *mask,
                                    int64_t *dim_out) {
    static const int64_t ax1[1] = {1}, ax2[1] = {2}, last[1] = {-1};
    td_eb_scope(b, "pooling");
    td_value *h32 = td_eb_cast(b, h, TD_F32);                                                 // (batch, seq, hidden)
    td_value *m = td_eb_unsqueeze(b, td_eb_cast(b, mask, TD_F32), "mask_expanded", 1, ax2);  // (batch, seq, 1)
    td_value *parts[4];
    int n = 0;
    if (s->pooling & TD_POOL_CLS)
        parts[n++] = td_eb_select(b, h32, "cls", 1, 0);                                       // (batch, hidden)
    if (s->pooling & TD_POOL_MAX) {
        /* padded tokens are replaced by -1e9 before the max, as sentence-transformers does */
        td_value *mb = td_eb_unsqueeze(b, td_eb_cast(b, mask, TD_BOOL), "mask_bool", 1, ax2);
        td_value *wi[3] = {mb, h32, td_eb_scalar_f(b, "neg_1e9", TD_F32, -1e9f)};
        td_value *masked = td_eb_op(b, "Where", "masked_tokens", wi, 3, NULL);
        parts[n++] = td_eb_reduce(b, "ReduceMax", masked, "max", 1, ax1, false);
    }
    if (s->pooling & (TD_POOL_MEAN | TD_POOL_MEAN_SQRT_LEN)) {
        td_value *sum = td_eb_reduce(b, "ReduceSum", td_eb_op2(b, "Mul", "masked", h32, m), "sum", 1, ax1, false);
        td_value *cnt = td_eb_reduce(b, "ReduceSum", m, "count", 1, ax1, false);              // (batch, 1)
        cnt = td_eb_op2(b, "Max", "count_clamped", cnt, td_eb_scalar_f(b, "min_count", TD_F32, 1e-9f));
        if (s->pooling & TD_POOL_MEAN)
            parts[n++] = td_eb_op2(b, "Div", "mean", sum, cnt);
        if (s->pooling & TD_POOL_MEAN_SQRT_LEN)
            parts[n++] = td_eb_op2(b, "Div", "mean_sqrt_len", sum, td_eb_op1(b, "Sqrt", "sqrt_count", cnt));
    }
    td_value *e = parts[0];
    if (n > 1) {
        td_node *cn = NULL;
        e = td_eb_op(b, "Concat", "pooled", parts, n, &cn);
        td_eb_attr_int(b, cn, "axis", 1);
    }
    *dim_out = s->hidden * n;
    if (s->normalize) {
        /* F.normalize: x / max(||x||_2, 1e-12) */
        td_eb_scope(b, "normalize");
        td_value *sq = td_eb_reduce(b, "ReduceSum", td_eb_op2(b, "Mul", "sq", e, e), "sum_sq", 1, last, true);
        td_value *norm = td_eb_op2(b, "Max", "norm_clamped", td_eb_op1(b, "Sqrt", "norm", sq),
                                   td_eb_scalar_f(b, "eps", TD_F32, 1e-12f));
        e = td_eb_op2(b, "Div", "normalized", e, norm);
    }
    return e;
}

td_status td_enc_heads(td_eb *b, td_xw *w, const td_encoder_spec *s, td_export_task task, td_value *h,
                       const td_enc_inputs *in, td_export_summary *sum) {
    int64_t H = s->hidden, L = s->num_labels;
    const int64_t d_bsh[3] = {-1, -1, H}, d_bs[2] = {-1, -1};
    switch (task) {
    case TD_TASK_FEATURES:
        add_output(b, sum, h, "last_hidden_state", 3, d_bsh, k_bsh);
        /* BertModel/RobertaModel carry a pooler; export it when its weights are there */
        if ((s->family == TD_FAM_BERT || s->family == TD_FAM_ROBERTA) &&
            td_xw_has(w, "%spooler.dense.weight", s->prefix)) {
            const int64_t d[2] = {-1, H};
            add_output(b, sum, pooler(b, w, s, h), "pooler_output", 2, d, k_bh);
        }
        break;
    case TD_TASK_EMBEDDING: {
        int64_t dim = 0;
        td_value *e = sentence_embedding(b, s, h, in->mask, &dim);
        const int64_t d[2] = {-1, dim};
        add_output(b, sum, e, "sentence_embedding", 2, d, k_bh);
        break;
    }
    case TD_TASK_CLASSIFICATION: {
        const int64_t d[2] = {-1, L};
        add_output(b, sum, seqcls(b, w, s, h), "logits", 2, d, k_bh);
        sum->num_labels = L;
        break;
    }
    case TD_TASK_TOKEN_CLASSIFICATION:
        if (s->head == TD_HEAD_ELECTRA_DISCRIM) {
            /* ElectraDiscriminatorPredictions: dense_prediction(act(dense(h))).squeeze(-1) */
            td_eb_scope(b, "discriminator_predictions");
            td_value *x = linear_w(b, w, h, "discriminator_predictions.dense", H, H, "dense");
            x = td_eb_activation(b, s->hidden_act, x);
            x = linear_w(b, w, x, "discriminator_predictions.dense_prediction", 1, H, "dense_prediction");
            add_output(b, sum, td_eb_select(b, x, "squeezed", 2, 0), "logits", 2, d_bs, k_bs);
            sum->num_labels = 1;
        } else {
            const int64_t d[3] = {-1, -1, L};
            td_eb_scope(b, "classifier");
            add_output(b, sum, linear_w(b, w, h, "classifier", L, H, "logits"), "logits", 3, d, k_bsh);
            sum->num_labels = L;
        }
        break;
    case TD_TASK_QUESTION_ANSWERING: {
        td_eb_scope(b, "qa_outputs");
        td_value *x = linear_w(b, w, h, "qa_outputs", 2, H, "logits");                      // (batch, seq, 2)
        add_output(b, sum, td_eb_select(b, x, "start", 2, 0), "start_logits", 2, d_bs, k_bs);
        add_output(b, sum, td_eb_select(b, x, "end", 2, 1), "end_logits", 2, d_bs, k_bs);
        break;
    }
    case TD_TASK_AUTO:
    case TD_TASK_TEXT_GENERATION: /* decoders are built by decoder.c; an encoder never resolves to it */
        return td_eb_fail(b, td_fail(b->ctx, TD_ERR_INTERNAL, "export: task %s is not an encoder head",
                                     td_export_task_name(task)));
    }
    return td_eb_status(b);
}
