/* Common-subexpression elimination: two live nodes with the same op, domain,
 * attributes and the very same input values compute the same outputs, so the
 * later one's outputs are redirected to the earlier one's. Small constants with
 * equal type, shape and bytes are merged first so that nodes reading copies of
 * the same constant (exporters emit one Constant per use) become equal too. */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <stdlib.h>
#include <string.h>

#define MERGE_CONST_MAX_BYTES 4096

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}
static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s, strlen(s) + 1); }

static bool nondeterministic(const td_node *n) {
    static const char *const ops[] = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                                      "Multinomial", "Bernoulli"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (strcmp(n->op_type, ops[i]) == 0)
            return true;
    return false;
}

static bool tensor_equal(const td_tensor *a, const td_tensor *b) {
    if (!a || !b || a->dtype != b->dtype || a->rank != b->rank || a->nbytes != b->nbytes || a->dtype == TD_STRING)
        return false;
    if (a->rank && memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) != 0)
        return false;
    return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

static bool attr_equal(const td_attr *a, const td_attr *b) {
    if (strcmp(a->name, b->name) != 0 || a->type != b->type || a->pb_extra || b->pb_extra || a->ref_attr_name ||
        b->ref_attr_name)
        return false;
    switch (a->type) {
    case TD_ATTR_FLOAT: return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case TD_ATTR_INT: return a->i == b->i;
    case TD_ATTR_STRING: return a->s_len == b->s_len && memcmp(a->s, b->s, a->s_len) == 0;
    case TD_ATTR_TENSOR: return tensor_equal(a->t, b->t);
    case TD_ATTR_FLOATS: return a->count == b->count && !memcmp(a->floats, b->floats, sizeof(float) * a->count);
    case TD_ATTR_INTS: return a->count == b->count && !memcmp(a->ints, b->ints, sizeof(int64_t) * a->count);
    case TD_ATTR_STRINGS:
        if (a->count != b->count)
            return false;
        for (size_t i = 0; i < a->count; i++)
            if (a->string_lens[i] != b->string_lens[i] || memcmp(a->strings[i], b->strings[i], a->string_lens[i]))
                return false;
        return true;
    default: return false; /* graphs, sparse tensors, type protos: never merged */
    }
}

static bool node_equal(const td_node *a, const td_node *b) {
    if (strcmp(a->op_type, b->op_type) != 0 || strcmp(a->domain, b->domain) != 0 || a->n_inputs != b->n_inputs ||
        a->n_outputs != b->n_outputs || a->n_attrs != b->n_attrs)
        return false;
    for (int i = 0; i < a->n_inputs; i++)
        if (a->inputs[i] != b->inputs[i])
            return false;
    for (int i = 0; i < a->n_outputs; i++)
        if ((a->outputs[i] == NULL) != (b->outputs[i] == NULL))
            return false;
    /* attributes in any order */
    for (int i = 0; i < a->n_attrs; i++) {
        bool found = false;
        for (int j = 0; j < b->n_attrs && !found; j++)
            found = attr_equal(&a->attrs[i], &b->attrs[j]);
        if (!found)
            return false;
    }
    return true;
}

static uint64_t node_hash(const td_node *n) {
    uint64_t h = fnv_str(1469598103934665603ull, n->op_type);
    h = fnv_str(h, n->domain);
    for (int i = 0; i < n->n_inputs; i++)
        h = fnv(h, &n->inputs[i], sizeof n->inputs[i]);
    return h;
}

static uint64_t tensor_hash(const td_tensor *t) {
    uint64_t h = fnv(1469598103934665603ull, &t->dtype, sizeof t->dtype);
    h = fnv(h, t->dims, sizeof(int64_t) * (size_t)t->rank);
    return t->nbytes ? fnv(h, t->data, t->nbytes) : h;
}

static bool mergeable_const(const td_value *v) {
    const td_tensor *t = opt_const(v);
    return t && !v->is_output && t->dtype != TD_STRING && t->nbytes <= MERGE_CONST_MAX_BYTES &&
           (t->data || t->nbytes == 0);
}

/* Open-addressing table of pointers keyed by a precomputed hash. */
typedef struct {
    void **slots;
    uint64_t *hashes;
    size_t cap;
} ptr_table;

static td_status table_init(td_ctx *ctx, ptr_table *t, size_t n) {
    t->cap = 16;
    while (t->cap < 2 * n + 1)
        t->cap *= 2;
    t->slots = calloc(t->cap, sizeof *t->slots);
    t->hashes = calloc(t->cap, sizeof *t->hashes);
    if (!t->slots || !t->hashes)
        return td_fail_oom(ctx, t->cap * 16, "the CSE table");
    return TD_OK;
}
static void table_free(ptr_table *t) {
    free(t->slots);
    free(t->hashes);
}

static td_status merge_constants(td_ctx *ctx, td_graph *g, int *changes) {
    ptr_table t = {0};
    td_status s = table_init(ctx, &t, (size_t)g->n_initializers);
    if (s != TD_OK)
        goto out;
    for (int i = 0; i < g->n_initializers; i++) {
        td_value *v = g->initializers[i];
        if (!mergeable_const(v))
            continue;
        uint64_t h = tensor_hash(v->initializer);
        size_t k = h & (t.cap - 1);
        for (; t.slots[k]; k = (k + 1) & (t.cap - 1)) {
            td_value *o = t.slots[k];
            if (t.hashes[k] == h && tensor_equal(o->initializer, v->initializer))
                break;
        }
        if (!t.slots[k]) {
            t.slots[k] = v;
            t.hashes[k] = h;
        } else if (v->n_consumers > 0) {
            s = td_value_replace_uses(ctx, v, t.slots[k]);
            if (s != TD_OK)
                goto out;
            (*changes)++;
        }
    }
out:
    table_free(&t);
    return s;
}

td_status td_pass_cse(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    TD_TRY(td_graph_toposort(ctx, g));
    TD_TRY(merge_constants(ctx, g, changes));
    ptr_table t = {0};
    td_status s = table_init(ctx, &t, (size_t)g->n_nodes);
    if (s != TD_OK)
        goto out;
    for (int i = 0; i < g->n_nodes; i++) {
        td_node *n = g->nodes[i];
        if (n->dead || nondeterministic(n) || n->n_outputs == 0)
            continue;
        bool graph_out = false;
        for (int j = 0; j < n->n_outputs; j++)
            graph_out |= n->outputs[j] && n->outputs[j]->is_output;
        uint64_t h = node_hash(n);
        size_t k = h & (t.cap - 1);
        for (; t.slots[k]; k = (k + 1) & (t.cap - 1))
            if (t.hashes[k] == h && node_equal(t.slots[k], n))
                break;
        if (!t.slots[k]) {
            t.slots[k] = n;
            t.hashes[k] = h;
            continue;
        }
        if (graph_out) /* its outputs' names are the graph's interface */
            continue;
        td_node *keep = t.slots[k];
        for (int j = 0; j < n->n_outputs; j++)
            if (n->outputs[j]) {
                s = td_value_replace_uses(ctx, n->outputs[j], keep->outputs[j]);
                if (s != TD_OK)
                    goto out;
            }
        td_graph_remove_node(g, n);
        (*changes)++;
    }
    td_graph_compact(g);
out:
    table_free(&t);
    return s;
}
