/* The in-place KV cache (kv_inplace.h): rewrite of tdeploy's exported decoder graph for the generator. */
#include "generate/kv_inplace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_op(const td_node *n, const char *op) {
    return n && !n->dead && (!n->domain || !*n->domain || !strcmp(n->domain, "ai.onnx")) && !strcmp(n->op_type, op);
}

static bool is_present(const td_value *v) {
    return v && v->is_output && v->name && strncmp(v->name, "present.", 8) == 0;
}

/* The exporter's append: present.N = Concat(past_key_values.N, new, axis 2) (named through an Identity), past
 * read by nothing else. */
static td_node *append_of(const td_value *past) {
    if (past->n_consumers != 1)
        return NULL;
    td_node *n = past->consumers[0];
    if (!is_op(n, "Concat") || n->n_inputs != 2 || n->inputs[0] != past || !n->inputs[1] || n->n_outputs != 1)
        return NULL;
    int64_t axis = td_node_attr_int(n, "axis", 0);
    const td_value *out = n->outputs[0];
    if ((axis != 2 && axis != -2) || !out)
        return NULL;
    bool named = is_present(out);
    for (int c = 0; c < out->n_consumers && !named; c++) {
        const td_node *id = out->consumers[c];
        named = is_op(id, "Identity") && id->n_outputs == 1 && is_present(id->outputs[0]);
    }
    return named ? n : NULL;
}

/* The additive attention bias every layer's Add(scores, bias) -> Softmax shares; through the exporter's
 * grouped-query repetition (Concat of `groups` copies along the query axis) to the single-group bias. */
static td_value *shared_bias(const td_graph *g, int layers) {
    td_value *bias = NULL;
    int softmaxes = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const td_node *n = g->nodes[i];
        if (!is_op(n, "Softmax"))
            continue;
        softmaxes++;
        const td_node *add = n->n_inputs == 1 && n->inputs[0] ? n->inputs[0]->producer : NULL;
        if (!is_op(add, "Add") || add->n_inputs != 2)
            return NULL;
        if (!bias)
            bias = add->inputs[1]; /* the exporter's order: Add(scores, bias) */
        if (add->inputs[1] != bias)
            return NULL;
    }
    if (!bias || softmaxes != layers)
        return NULL;
    const td_node *rep = bias->producer;
    if (is_op(rep, "Concat") && rep->n_inputs > 1 && td_node_attr_int(rep, "axis", 0) == 2) {
        for (int k = 1; k < rep->n_inputs; k++)
            if (rep->inputs[k] != rep->inputs[0])
                return NULL;
        bias = rep->inputs[0];
    }
    /* (types may not be inferred yet: the generator rewrites the exporter's graph before optimizing it) */
    if ((bias->type.elem != TD_UNDEFINED && bias->type.elem != TD_F32) || (bias->type.rank >= 0 && bias->type.rank != 4) ||
        bias->is_input || bias->initializer)
        return NULL;
    return bias;
}

/* Remove nodes none of whose outputs is used (the mask subgraph that made the replaced bias). */
static void drop_unused(td_graph *g) {
    for (bool again = true; again;) {
        again = false;
        for (int i = g->n_nodes - 1; i >= 0; i--) {
            td_node *n = g->nodes[i];
            if (n->dead)
                continue;
            bool used = false;
            for (int k = 0; k < n->n_outputs; k++)
                used |= n->outputs[k] && (n->outputs[k]->n_consumers > 0 || n->outputs[k]->is_output);
            if (!used) {
                td_graph_remove_node(g, n);
                again = true;
            }
        }
    }
}

static td_status add_input(td_ctx *ctx, td_graph *g, const char *name, td_dtype elem, int rank, const int64_t *dims,
                           const char *const *params, td_value **out) {
    TD_TRY(td_graph_add_value(ctx, g, name, out));
    TD_TRY(td_value_set_tensor_type(ctx, *out, elem, rank, dims, params));
    return td_graph_add_input(ctx, g, *out);
}

static bool is_ms_op(const td_node *n, const char *op) {
    return n && !n->dead && n->domain && !strcmp(n->domain, "com.microsoft") && !strcmp(n->op_type, op);
}

/* A fused attention op's slots: past key/value inputs, attention bias input (GroupQueryAttention:
 * q, k, v, past_k, past_v, seqlens_k, total, cos, sin, pos, bias; MultiHeadAttention: q, k, v, bias, key_padding_mask,
 * attention_bias, past_k, past_v). */
typedef struct fused_slots {
    int past_k, bias;
} fused_slots;

static bool fused_op(const td_node *n, fused_slots *sl) {
    if (is_ms_op(n, "GroupQueryAttention")) {
        *sl = (fused_slots){3, 10};
        return n->n_inputs >= 7 && n->n_outputs == 3;
    }
    if (is_ms_op(n, "MultiHeadAttention")) { /* no projection bias or key padding mask, 3-D key and value */
        *sl = (fused_slots){6, 5};
        return n->n_inputs >= 8 && n->n_outputs == 3 && !n->inputs[3] && !n->inputs[4] && n->inputs[1] &&
               n->inputs[1]->type.rank == 3 && n->inputs[2] && n->inputs[2]->type.rank == 3 &&
               td_node_attr_int(n, "unidirectional", 0) == 0;
    }
    return false;
}

static bool names_present(const td_value *out) {
    bool named = is_present(out);
    for (int c = 0; out && c < out->n_consumers && !named; c++) {
        const td_node *id = out->consumers[c];
        named = is_op(id, "Identity") && id->n_outputs == 1 && is_present(id->outputs[0]);
    }
    return named;
}

/* The fused attention op (optimizer's decoder_attention, or ORT's) that reads past as its past key or value and
 * makes the matching present.N output, past read by nothing else. */
static td_node *fused_of(const td_value *past) {
    fused_slots sl;
    if (past->n_consumers != 1 || !fused_op(past->consumers[0], &sl))
        return NULL;
    td_node *n = past->consumers[0];
    int which = n->inputs[sl.past_k] == past ? 0 : n->inputs[sl.past_k + 1] == past ? 1 : -1;
    return which >= 0 && names_present(n->outputs[1 + which]) ? n : NULL;
}

/* Every fused attention op -> com.tdeploy::GroupQueryAttention (op_decoder_attn.c: present is the past buffer)
 * with seqlens_k, total_sequence_length and the attention bias from the generator's inputs. The replaced bias
 * must be one shared by all layers and not per head (the mask's padding / causal / window bias, which the
 * generator's bias computes over cache columns). */
static td_status rewrite_fused(td_ctx *ctx, td_model *m, bool *done) {
    td_graph *g = m->graph;
    *done = false;
    td_value *old_bias = NULL;
    int ops = 0;
    bool first = true;
    for (int i = 0; i < g->n_inputs; i++) /* every layer's cache, or none (a partly fused graph stays as it is) */
        if (strncmp(g->inputs[i]->name, "past_key_values.", 16) == 0 && !fused_of(g->inputs[i]))
            return TD_OK;
    for (int i = 0; i < g->n_nodes; i++) {
        td_node *n = g->nodes[i];
        fused_slots sl;
        if (n->dead || !fused_op(n, &sl))
            continue;
        if (fused_of(n->inputs[sl.past_k]) != n || fused_of(n->inputs[sl.past_k + 1]) != n)
            return TD_OK;
        td_value *b = sl.bias < n->n_inputs ? n->inputs[sl.bias] : NULL;
        if ((!first && b != old_bias) || (b && b->type.rank == 4 && b->type.dims[1].value != 1))
            return TD_OK;
        old_bias = b;
        first = false;
        ops++;
    }
    if (ops == 0)
        return TD_OK;
    static const char *const bias_params[4] = {"batch_size", NULL, "sequence_length", "total_sequence_length"};
    const int64_t bias_dims[4] = {-1, 1, -1, -1}, one = 1, batch = -1;
    static const char *const batch_param[1] = {"batch_size"};
    td_value *bias_in = NULL, *lens_in = NULL, *total_in = NULL;
    TD_TRY(add_input(ctx, g, TD_GEN_BIAS_INPUT, TD_F32, 4, bias_dims, bias_params, &bias_in));
    TD_TRY(add_input(ctx, g, TD_GEN_SEQLENS_INPUT, TD_I32, 1, &batch, batch_param, &lens_in));
    TD_TRY(add_input(ctx, g, TD_GEN_TOTAL_INPUT, TD_I32, 1, &one, NULL, &total_in));
    for (int i = 0, end = g->n_nodes; i < end; i++) {
        td_node *n = g->nodes[i];
        fused_slots sl;
        if (n->dead || !fused_op(n, &sl))
            continue;
        bool gqa = sl.bias == 10;
        int64_t heads = td_node_attr_int(n, "num_heads", 0);
        int64_t kv_heads = gqa ? td_node_attr_int(n, "kv_num_heads", 0) : heads;
        float scale = td_node_attr_float(n, "scale", 0.0f);
        int64_t causal = gqa ? td_node_attr_int(n, "causal", 1) : 0;
        int64_t window = gqa ? td_node_attr_int(n, "local_window_size", -1) : -1;
        td_value *in[11] = {n->inputs[0], n->inputs[1], n->inputs[2], n->inputs[sl.past_k], n->inputs[sl.past_k + 1],
                            lens_in, total_in, NULL, NULL, NULL, bias_in};
        if (gqa)
            for (int k = 7; k < 10 && k < n->n_inputs; k++)
                in[k] = n->inputs[k];
        td_value *out[3] = {n->outputs[0], n->outputs[1], n->outputs[2]};
        char name[300];
        snprintf(name, sizeof name, "kv_attention/%s", n->name ? n->name : "");
        td_graph_remove_node(g, n);
        td_node *an = NULL;
        TD_TRY(td_graph_add_node(ctx, g, "GroupQueryAttention", "com.tdeploy", name, in, 11, out, 3, &an));
        TD_TRY(td_node_add_attr_int(ctx, an, "num_heads", heads));
        TD_TRY(td_node_add_attr_int(ctx, an, "kv_num_heads", kv_heads));
        TD_TRY(td_node_add_attr_int(ctx, an, "causal", causal));
        TD_TRY(td_node_add_attr_int(ctx, an, "local_window_size", window));
        if (scale != 0.0f)
            TD_TRY(td_node_add_attr_float(ctx, an, "scale", scale));
    }
    *done = true;
    return TD_OK;
}

td_status td_gen_kv_inplace(td_ctx *ctx, td_model *m, td_gen_kv_plan *plan) {
    memset(plan, 0, sizeof *plan);
    plan->how = "copied per step: not tdeploy's text-generation export (an Optimum or other exporter's graph, whose "
                "attention-mask subgraph the generator does not rewrite; tdeploy export --task text-generation gives "
                "a graph that runs in place)";
    td_graph *g = m->graph;
    const char *task = td_model_metadata(m, "task");
    if (!task || strcmp(task, "text-generation") != 0 || !td_model_metadata(m, "num_key_value_heads"))
        return TD_OK; /* not tdeploy's export (Optimum's graphs): the generator copies the cache */
    plan->how = "copied per step: the graph's cache appends and attention mask are not in the exporter's pattern";
    if (td_graph_find(g, TD_GEN_BIAS_INPUT) || td_graph_find(g, TD_GEN_POSITION_INPUT) ||
        td_graph_find(g, TD_GEN_SEQLENS_INPUT) || td_graph_find(g, TD_GEN_TOTAL_INPUT))
        return TD_OK;
    const char *w = td_model_metadata(m, "sliding_window");
    bool fused = false;
    TD_TRY(rewrite_fused(ctx, m, &fused));
    if (fused) {
        TD_TRY(td_model_set_opset(ctx, m, "com.tdeploy", 1));
        drop_unused(g);
        td_graph_compact(g);
        TD_TRY(td_graph_toposort(ctx, g));
        plan->window = w ? strtoll(w, NULL, 10) : 0;
        plan->in_place = plan->fused = true;
        plan->how = "in place: fused attention (com.tdeploy::GroupQueryAttention) on the request's cache";
        return TD_OK;
    }
    /* check everything before changing anything */
    int pasts = 0;
    for (int i = 0; i < g->n_inputs; i++) {
        const td_value *v = g->inputs[i];
        if (strncmp(v->name, "past_key_values.", 16) != 0)
            continue;
        if (!append_of(v))
            return TD_OK;
        pasts++;
    }
    if (pasts == 0 || pasts % 2)
        return TD_OK;
    td_value *bias = shared_bias(g, pasts / 2);
    if (!bias)
        return TD_OK;

    static const char *const bias_params[4] = {"batch_size", NULL, "sequence_length",
                                               "past_sequence_length + sequence_length"};
    const int64_t bias_dims[4] = {-1, 1, -1, -1}, one = 1;
    td_value *bias_in = NULL, *pos_in = NULL;
    TD_TRY(add_input(ctx, g, TD_GEN_BIAS_INPUT, TD_F32, 4, bias_dims, bias_params, &bias_in));
    TD_TRY(add_input(ctx, g, TD_GEN_POSITION_INPUT, TD_I64, 1, &one, NULL, &pos_in));
    TD_TRY(td_value_replace_uses(ctx, bias, bias_in));
    for (int i = 0; i < g->n_inputs; i++) {
        td_value *past = g->inputs[i];
        if (strncmp(past->name, "past_key_values.", 16) != 0)
            continue;
        td_node *cat = append_of(past);
        td_value *in[3] = {past, cat->inputs[1], pos_in}, *present = cat->outputs[0];
        char name[300];
        snprintf(name, sizeof name, "kv_append/%s", present->name);
        td_graph_remove_node(g, cat);
        TD_TRY(td_graph_add_node(ctx, g, "KvCacheAppend", "com.tdeploy", name, in, 3, &present, 1, NULL));
    }
    TD_TRY(td_model_set_opset(ctx, m, "com.tdeploy", 1));
    drop_unused(g);
    td_graph_compact(g);
    TD_TRY(td_graph_toposort(ctx, g));
    plan->window = w ? strtoll(w, NULL, 10) : 0;
    plan->in_place = true;
    plan->how = "in place: standard attention, cache appends (com.tdeploy::KvCacheAppend) into the request's cache";
    return TD_OK;
}

/* int64 vector initializer named after hint. */
static td_status i64_const(td_ctx *ctx, td_graph *g, const char *hint, int64_t v, td_value **out) {
    char *name = td_graph_unique_name(g, hint);
    if (!name)
        return td_fail_oom(ctx, strlen(hint), "a value name");
    const int64_t one = 1;
    td_tensor *t = NULL;
    td_status st = td_graph_add_value(ctx, g, name, out);
    if (st == TD_OK)
        st = td_tensor_new_copy(ctx, name, TD_I64, 1, &one, &v, sizeof v, &t);
    free(name);
    if (st == TD_OK)
        st = td_graph_set_initializer(ctx, g, *out, t);
    else
        td_tensor_free(t);
    return st;
}

td_status td_gen_last_logits(td_ctx *ctx, td_model *m, bool *applied) {
    *applied = false;
    td_graph *g = m->graph;
    td_value *logits = td_graph_find(g, "logits");
    if (!logits || !logits->is_output || logits->type.rank != 3)
        return TD_OK;
    td_node *mm = logits->producer;
    if (is_op(mm, "Identity") && mm->inputs[0] && mm->inputs[0]->n_consumers == 1)
        mm = mm->inputs[0]->producer;
    td_value *h = is_op(mm, "MatMul") && mm->n_inputs == 2 ? mm->inputs[0] : NULL;
    if (!h || !mm->inputs[1]->initializer || mm->inputs[1]->initializer->rank != 2 || h->type.rank != 3)
        return TD_OK;
    td_value *in[4] = {h, NULL, NULL, NULL}, *last = NULL;
    char *name = td_graph_unique_name(g, "head/last_position");
    if (!name)
        return td_fail_oom(ctx, 32, "a value name");
    td_status st = td_graph_add_value(ctx, g, name, &last);
    free(name);
    TD_TRY(st);
    TD_TRY(i64_const(ctx, g, "head/last_start", -1, &in[1]));
    TD_TRY(i64_const(ctx, g, "head/last_end", INT64_MAX, &in[2]));
    TD_TRY(i64_const(ctx, g, "head/last_axis", 1, &in[3]));
    TD_TRY(td_graph_add_node(ctx, g, "Slice", "", "head/last_position", in, 4, &last, 1, NULL)); // (batch, 1, hidden)
    TD_TRY(td_node_set_input(ctx, mm, 0, last));
    TD_TRY(td_graph_toposort(ctx, g));
    *applied = true;
    return TD_OK;
}

void td_gen_kv_bias(float *bias, const int64_t *mask, size_t batch, size_t seq, size_t cols, size_t first,
                    int64_t window) {
    for (size_t b = 0; b < batch; b++)
        for (size_t i = 0; i < seq; i++) {
            size_t q = first + i; /* the query's cache column */
            float *row = bias + (b * seq + i) * cols;
            for (size_t j = 0; j < cols; j++) {
                bool open = mask[b * cols + j] != 0 && j <= q && (window <= 0 || q - j < (size_t)window);
                row[j] = open ? 0.0f : -FLT_MAX;
            }
        }
}
