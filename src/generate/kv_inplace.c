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

td_status td_gen_kv_inplace(td_ctx *ctx, td_model *m, td_gen_kv_plan *plan) {
    memset(plan, 0, sizeof *plan);
    td_graph *g = m->graph;
    const char *task = td_model_metadata(m, "task");
    if (!task || strcmp(task, "text-generation") != 0 || !td_model_metadata(m, "num_key_value_heads"))
        return TD_OK; /* not tdeploy's export (Optimum's graphs): the generator copies the cache */
    if (td_graph_find(g, TD_GEN_BIAS_INPUT) || td_graph_find(g, TD_GEN_POSITION_INPUT))
        return TD_OK;
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
    const char *w = td_model_metadata(m, "sliding_window");
    plan->window = w ? strtoll(w, NULL, 10) : 0;
    plan->in_place = true;
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
