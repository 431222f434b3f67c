/* fp16/bf16 conversion. Nodes whose op is safe in low precision (matrix
 * products, elementwise arithmetic, GELU, data movement, fused Attention) take
 * and produce fp16/bf16; everything else (LayerNorm and its statistics,
 * Softmax, reductions, Pow, Sqrt, the attention-mask Add that feeds Softmax,
 * casts and shape arithmetic) stays float32. Initializers read only by
 * low-precision nodes are stored converted (values clamped to the finite
 * range); Cast nodes are inserted wherever a value crosses between the two
 * worlds. With keep_io_types the graph inputs and outputs stay float32. */
#include "opt/narrow_floats.h"
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const low_ops[] = {"MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "Tanh", "Erf",
                                      "Sigmoid", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten",
                                      "Concat", "Slice", "Gather", "Expand", "Where", "Neg", "Split", NULL};
static const char *const low_contrib_ops[] = {"Gelu", "FastGelu", "BiasGelu", "Attention", NULL};

static bool in_list(const char *op, const char *const *l) {
    for (; *l; l++)
        if (strcmp(op, *l) == 0)
            return true;
    return false;
}

static bool feeds_softmax(const td_node *n) {
    for (int j = 0; j < n->n_outputs; j++) {
        const td_value *v = n->outputs[j];
        for (int c = 0; v && c < v->n_consumers; c++)
            if (opt_is_op(v->consumers[c], "Softmax"))
                return true;
    }
    return false;
}

static bool eligible(const td_node *n, bool keep_io) {
    bool onnx = opt_is_onnx_domain(n->domain), ms = strcmp(n->domain, "com.microsoft") == 0;
    if (!(onnx && in_list(n->op_type, low_ops)) && !(ms && in_list(n->op_type, low_contrib_ops)))
        return false;
    if (onnx && strcmp(n->op_type, "Add") == 0 && feeds_softmax(n))
        return false; /* the attention mask add stays float32 */
    bool any_float = false;
    for (int j = 0; j < n->n_outputs; j++) {
        const td_value *v = n->outputs[j];
        if (!v)
            continue;
        if (v->type.elem == TD_UNDEFINED || (keep_io && v->is_output))
            return false;
        any_float |= v->type.elem == TD_F32;
    }
    for (int j = 0; j < n->n_inputs; j++)
        if (n->inputs[j] && n->inputs[j]->type.elem == TD_UNDEFINED)
            return false;
    return any_float;
}

static bool is_low_value(const td_value *v, bool keep_io) {
    if (v->producer)
        return v->producer->order == 1;
    return v->is_input && !keep_io && v->type.elem == TD_F32 && !v->initializer;
}

/* v's float32 initializer stored as low. A buffer the tensor owns is converted
 * in place and shrunk (no new pages to fault in and zero); data in a file
 * mapping goes to a new buffer. */
static td_status convert_initializer(td_ctx *ctx, td_value *v, td_dtype low) {
    td_tensor *t = v->initializer;
    int64_t n = td_tensor_numel(t);
    size_t nb = sizeof(uint16_t) * (size_t)n;
    td_tensor *nt = NULL;
    /* the tensor first, without data: nothing can fail after t's buffer is rewritten */
    TD_TRY(td_tensor_new_owned(ctx, t->name, low, t->rank, t->dims, NULL, nb, &nt));
    void *buf;
    if (t->owned && t->owned == t->data && n > 0) {
        buf = t->owned;
        td_opt_narrow_floats(buf, buf, (size_t)n, low);
        t->owned = NULL; /* nt owns it now; t (freed below) must not */
        t->data = NULL;
        void *shrunk = realloc(buf, nb);
        if (shrunk) /* else the larger block simply stays */
            buf = shrunk;
    } else if (n > 0) {
        if (!(buf = malloc(nb))) {
            td_tensor_free(nt);
            return td_fail_oom(ctx, nb, "a converted initializer");
        }
        td_opt_narrow_floats(t->data, buf, (size_t)n, low);
    } else {
        buf = NULL;
    }
    nt->owned = buf;
    nt->data = buf;
    TD_TRY(td_graph_set_initializer(ctx, v->graph, v, nt)); /* frees the float32 tensor */
    v->type.elem = low;
    return TD_OK;
}

/* A Cast of v to dtype, made once per value and reused by all readers. */
typedef struct {
    td_value *from, *to;
} cast_entry;

static td_status cast_of(td_ctx *ctx, td_graph *g, td_value *v, td_dtype to, cast_entry **cache, int *n, int *cap,
                         td_value **out) {
    for (int i = 0; i < *n; i++)
        if ((*cache)[i].from == v && (*cache)[i].to->type.elem == to) {
            *out = (*cache)[i].to;
            return TD_OK;
        }
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s_%s", v->name, to == TD_F32 ? "fp32" : td_dtype_name(to));
    td_value *c = NULL;
    td_node *cn = NULL;
    TD_TRY(opt_add_cast(ctx, g, prefix, v, to, &c, &cn));
    cn->order = 0;
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        cast_entry *p = realloc(*cache, sizeof *p * (size_t)nc);
        if (!p)
            return td_fail_oom(ctx, sizeof *p * (size_t)nc, "the cast cache");
        *cache = p;
        *cap = nc;
    }
    (*cache)[(*n)++] = (cast_entry){v, c};
    *out = c;
    return TD_OK;
}

/* Graph output v is made in float32: its producer now writes a new value and a
 * Cast to low writes v. */
static td_status retype_output(td_ctx *ctx, td_graph *g, td_value *v, td_dtype low) {
    td_node *p = v->producer;
    int slot = v->producer_slot;
    td_value *v32 = NULL;
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s_fp32", v->name);
    TD_TRY(opt_new_value(ctx, g, prefix, &v32));
    TD_TRY(opt_copy_type(ctx, v32, v));
    while (v->n_consumers > 0) {
        td_node *c = v->consumers[0];
        for (int j = 0; j < c->n_inputs; j++)
            if (c->inputs[j] == v) {
                TD_TRY(td_node_set_input(ctx, c, j, v32));
                break;
            }
    }
    p->outputs[slot] = v32;
    v32->producer = p;
    v32->producer_slot = slot;
    v->producer = NULL;
    v->producer_slot = -1;
    v->type.elem = low;
    td_node *cn = NULL;
    TD_TRY(opt_add_node(ctx, g, "Cast", "", "Cast", &v32, 1, &v, 1, &cn));
    return td_node_add_attr_int(ctx, cn, "to", low);
}

td_status td_pass_precision(td_ctx *ctx, td_opt_state *st, int *changes) {
    const td_opt_options *o = st->opts;
    if (o->precision != TD_OPT_FP16 && o->precision != TD_OPT_BF16)
        return TD_OK; /* fp32, or int8 (pass_quantize.c) */
    td_dtype low = o->precision == TD_OPT_FP16 ? TD_F16 : TD_BF16;
    bool keep_io = o->keep_io_types;
    td_graph *g = st->model->graph;
    TD_TRY(td_graph_toposort(ctx, g));
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++)
        g->nodes[i]->order = eligible(g->nodes[i], keep_io) ? 1 : 0;
    /* initializers: converted when every reader is low precision */
    for (int i = 0; i < g->n_initializers; i++) {
        td_value *v = g->initializers[i];
        if (v->is_input || v->type.elem != TD_F32 || v->initializer->dtype != TD_F32 || v->n_consumers == 0)
            continue;
        bool all_low = !v->is_output;
        for (int c = 0; c < v->n_consumers && all_low; c++)
            all_low = v->consumers[c]->order == 1;
        if (all_low) {
            TD_TRY(convert_initializer(ctx, v, low));
            (*changes)++;
        }
    }
    /* graph inputs without keep_io_types become low precision */
    if (!keep_io)
        for (int i = 0; i < g->n_inputs; i++)
            if (g->inputs[i]->type.elem == TD_F32 && !g->inputs[i]->initializer)
                g->inputs[i]->type.elem = low;
    cast_entry *cache = NULL;
    int nc = 0, cap = 0;
    td_status s = TD_OK;
    for (int i = 0; i < n_nodes && s == TD_OK; i++) {
        td_node *n = g->nodes[i];
        bool want_low = n->order == 1;
        for (int j = 0; j < n->n_inputs && s == TD_OK; j++) {
            td_value *v = n->inputs[j];
            if (!v)
                continue;
            bool v_low = is_low_value(v, keep_io) || v->type.elem == low;
            bool v_float = v->type.elem == TD_F32 || is_low_value(v, keep_io) || v->type.elem == low;
            if (!v_float || v_low == want_low)
                continue;
            td_value *c = NULL;
            s = cast_of(ctx, g, v, want_low ? low : TD_F32, &cache, &nc, &cap, &c);
            if (s == TD_OK)
                s = td_node_set_input(ctx, n, j, c);
            (*changes)++;
        }
    }
    /* retype the outputs of low-precision nodes */
    for (int i = 0; i < n_nodes && s == TD_OK; i++) {
        td_node *n = g->nodes[i];
        if (n->order != 1)
            continue;
        for (int j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] && n->outputs[j]->type.elem == TD_F32)
                n->outputs[j]->type.elem = low;
    }
    /* graph outputs without keep_io_types: float32 results get a final Cast, the
     * output keeps its name */
    if (!keep_io)
        for (int i = 0; i < g->n_outputs && s == TD_OK; i++) {
            td_value *v = g->outputs[i];
            if (v->type.elem == TD_F32 && v->producer && !v->initializer)
                s = retype_output(ctx, g, v, low);
        }
    free(cache);
    return s;
}
