/* Graph IR: construction, lookup, rewiring, compaction and topological order. */
#define _GNU_SOURCE
#include "onnx/ir.h"

#include "core/checked.h"
#include "onnx/value_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Grow a pointer array to hold at least need entries. */
static bool grow_array(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap)
        return true;
    int ncap = *cap ? *cap : 8;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}
#define GROW(arr, cap, need) grow_array((void **)&(arr), &(cap), (need), sizeof *(arr))

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

/* ---------------- model ---------------- */

td_model *td_model_new(void) {
    td_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->ir_version = 8; /* opset 17 pairs with IR version 8 */
    m->graph = td_graph_new(NULL);
    if (!m->graph) {
        free(m);
        return NULL;
    }
    return m;
}

void td_model_free(td_model *m) {
    if (!m)
        return;
    for (int i = 0; i < m->n_opsets; i++)
        free(m->opsets[i].domain);
    free(m->opsets);
    for (int i = 0; i < m->n_metadata; i++) {
        free(m->metadata[i].key);
        free(m->metadata[i].value);
    }
    free(m->metadata);
    free(m->producer_name);
    free(m->producer_version);
    free(m->domain);
    free(m->doc_string);
    free(m->base_dir);
    td_graph_free(m->graph);
    free(m->pb_extra); /* load.c stores a single malloc'd block (or NULL) */
    free(m);
}

static bool is_default_domain(const char *d) { return !d || !*d || strcmp(d, "ai.onnx") == 0; }

static bool same_domain(const char *a, const char *b) {
    if (is_default_domain(a) || is_default_domain(b))
        return is_default_domain(a) && is_default_domain(b);
    return strcmp(a, b) == 0;
}

td_status td_model_set_opset(td_ctx *ctx, td_model *m, const char *domain, int64_t version) {
    for (int i = 0; i < m->n_opsets; i++)
        if (same_domain(m->opsets[i].domain, domain)) {
            m->opsets[i].version = version;
            return TD_OK;
        }
    td_opset *p = realloc(m->opsets, (size_t)(m->n_opsets + 1) * sizeof *p);
    if (!p)
        return td_fail_oom(ctx, sizeof *p, "an opset import");
    m->opsets = p;
    p[m->n_opsets].domain = dup_or_empty(domain);
    p[m->n_opsets].version = version;
    if (!p[m->n_opsets].domain)
        return td_fail_oom(ctx, 0, "an opset domain");
    m->n_opsets++;
    return TD_OK;
}

int64_t td_model_opset(const td_model *m, const char *domain) {
    for (int i = 0; i < m->n_opsets; i++)
        if (same_domain(m->opsets[i].domain, domain))
            return m->opsets[i].version;
    return 0;
}

td_status td_model_set_metadata(td_ctx *ctx, td_model *m, const char *key, const char *value) {
    for (int i = 0; i < m->n_metadata; i++)
        if (strcmp(m->metadata[i].key, key) == 0) {
            char *v = strdup(value);
            if (!v)
                return td_fail_oom(ctx, strlen(value), "metadata");
            free(m->metadata[i].value);
            m->metadata[i].value = v;
            return TD_OK;
        }
    td_kv *p = realloc(m->metadata, (size_t)(m->n_metadata + 1) * sizeof *p);
    if (!p)
        return td_fail_oom(ctx, sizeof *p, "metadata");
    m->metadata = p;
    p[m->n_metadata].key = strdup(key);
    p[m->n_metadata].value = strdup(value);
    if (!p[m->n_metadata].key || !p[m->n_metadata].value) {
        free(p[m->n_metadata].key);
        free(p[m->n_metadata].value);
        return td_fail_oom(ctx, strlen(value), "metadata");
    }
    m->n_metadata++;
    return TD_OK;
}

const char *td_model_metadata(const td_model *m, const char *key) {
    for (int i = 0; i < m->n_metadata; i++)
        if (strcmp(m->metadata[i].key, key) == 0)
            return m->metadata[i].value;
    return NULL;
}

/* ---------------- tensors ---------------- */

static td_status tensor_alloc(td_ctx *ctx, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                              size_t nbytes, td_tensor **out) {
    *out = NULL;
    if (rank < 0)
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' has negative rank", name ? name : "");
    int64_t numel;
    if (!td_shape_numel(dims, rank, &numel))
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' has a negative dimension or too many elements",
                       name ? name : "");
    size_t esize = td_dtype_size(dtype);
    if (dtype != TD_STRING) {
        size_t want;
        if (esize == 0)
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "tensor '%s' has dtype %s (%d) whose size is not supported",
                           name ? name : "", td_dtype_name(dtype), (int)dtype);
        if ((uint64_t)numel > SIZE_MAX || !td_mul_size((size_t)numel, esize, &want) || want != nbytes)
            return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': %zu data bytes do not match %lld elements of %s",
                           name ? name : "", nbytes, (long long)numel, td_dtype_name(dtype));
    }
    td_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return td_fail_oom(ctx, sizeof *t, "a tensor");
    t->name = dup_or_empty(name);
    t->dims = malloc(sizeof(int64_t) * (size_t)(rank ? rank : 1));
    if (!t->name || !t->dims) {
        td_tensor_free(t);
        return td_fail_oom(ctx, sizeof(int64_t) * (size_t)rank, "tensor dims");
    }
    t->dtype = dtype;
    t->rank = rank;
    if (rank)
        memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
    t->nbytes = nbytes;
    *out = t;
    return TD_OK;
}

td_status td_tensor_new_copy(td_ctx *ctx, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                             const void *data, size_t nbytes, td_tensor **out) {
    TD_TRY(tensor_alloc(ctx, name, dtype, rank, dims, nbytes, out));
    if (nbytes) {
        void *buf = malloc(nbytes);
        if (!buf) {
            td_tensor_free(*out);
            *out = NULL;
            return td_fail_oom(ctx, nbytes, "tensor data");
        }
        memcpy(buf, data, nbytes);
        (*out)->owned = buf;
        (*out)->data = buf;
    }
    return TD_OK;
}

td_status td_tensor_new_mapped(td_ctx *ctx, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                               td_mapped_file *map, size_t offset, size_t nbytes, td_tensor **out) {
    size_t end;
    if (!td_add_size(offset, nbytes, &end) || end > map->size)
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': bytes %zu..%zu lie outside %s (%zu bytes)",
                       name ? name : "", offset, offset + nbytes, map->path, map->size);
    TD_TRY(tensor_alloc(ctx, name, dtype, rank, dims, nbytes, out));
    (*out)->map = td_mapped_file_ref(map);
    (*out)->data = nbytes ? map->data + offset : NULL;
    return TD_OK;
}

td_status td_tensor_new_owned(td_ctx *ctx, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                              void *buffer, size_t nbytes, td_tensor **out) {
    td_status s = tensor_alloc(ctx, name, dtype, rank, dims, nbytes, out);
    if (s != TD_OK) {
        free(buffer);
        return s;
    }
    (*out)->owned = buffer;
    (*out)->data = buffer;
    return TD_OK;
}

void td_tensor_free(td_tensor *t) {
    if (!t)
        return;
    if (t->strings) {
        int64_t n = td_tensor_numel(t);
        for (int64_t i = 0; i < n; i++)
            free(t->strings[i]);
    }
    free(t->strings);
    free(t->string_lens);
    free(t->owned);
    td_mapped_file_unref(t->map);
    free(t->name);
    free(t->dims);
    free(t->doc_string);
    free(t->external_location);
    free(t->pb_extra);
    free(t);
}

int64_t td_tensor_numel(const td_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dims[i];
    return n;
}

td_status td_tensor_clone(td_ctx *ctx, const td_tensor *t, td_tensor **out) {
    if (t->dtype == TD_STRING) {
        TD_TRY(tensor_alloc(ctx, t->name, TD_STRING, t->rank, t->dims, 0, out));
        int64_t n = td_tensor_numel(t);
        td_tensor *c = *out;
        c->strings = calloc((size_t)(n ? n : 1), sizeof(char *));
        c->string_lens = calloc((size_t)(n ? n : 1), sizeof(size_t));
        if (!c->strings || !c->string_lens)
            goto oom;
        for (int64_t i = 0; i < n; i++) {
            c->strings[i] = malloc(t->string_lens[i] + 1);
            if (!c->strings[i])
                goto oom;
            memcpy(c->strings[i], t->strings[i], t->string_lens[i]);
            c->strings[i][t->string_lens[i]] = 0;
            c->string_lens[i] = t->string_lens[i];
        }
        return TD_OK;
    oom:
        td_tensor_free(c);
        *out = NULL;
        return td_fail_oom(ctx, 0, "a string tensor");
    }
    if (t->map && !t->owned) { /* share the mapping instead of copying */
        size_t offset = t->data ? (size_t)((const uint8_t *)t->data - t->map->data) : 0;
        return td_tensor_new_mapped(ctx, t->name, t->dtype, t->rank, t->dims, t->map, offset, t->nbytes, out);
    }
    return td_tensor_new_copy(ctx, t->name, t->dtype, t->rank, t->dims, t->data, t->nbytes, out);
}

/* ---------------- attributes ---------------- */

void td_attr_clear(td_attr *a) {
    if (!a)
        return;
    free(a->name);
    free(a->s);
    td_tensor_free(a->t);
    td_graph_free(a->g);
    free(a->floats);
    free(a->ints);
    if (a->strings)
        for (size_t i = 0; i < a->count; i++)
            free(a->strings[i]);
    free(a->strings);
    free(a->string_lens);
    if (a->tensors)
        for (size_t i = 0; i < a->count; i++)
            td_tensor_free(a->tensors[i]);
    free(a->tensors);
    if (a->graphs)
        for (size_t i = 0; i < a->count; i++)
            td_graph_free(a->graphs[i]);
    free(a->graphs);
    free(a->ref_attr_name);
    free(a->doc_string);
    free(a->pb_extra);
    memset(a, 0, sizeof *a);
}

const td_attr *td_node_attr(const td_node *n, const char *name) {
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    return NULL;
}

int64_t td_node_attr_int(const td_node *n, const char *name, int64_t dflt) {
    const td_attr *a = td_node_attr(n, name);
    return a && a->type == TD_ATTR_INT ? a->i : dflt;
}

float td_node_attr_float(const td_node *n, const char *name, float dflt) {
    const td_attr *a = td_node_attr(n, name);
    return a && a->type == TD_ATTR_FLOAT ? a->f : dflt;
}

const char *td_node_attr_string(const td_node *n, const char *name, const char *dflt) {
    const td_attr *a = td_node_attr(n, name);
    return a && a->type == TD_ATTR_STRING ? a->s : dflt;
}

const int64_t *td_node_attr_ints(const td_node *n, const char *name, size_t *count) {
    const td_attr *a = td_node_attr(n, name);
    if (!a || a->type != TD_ATTR_INTS) {
        *count = 0;
        return NULL;
    }
    *count = a->count;
    return a->ints;
}

td_status td_node_new_attr(td_ctx *ctx, td_node *n, td_attr **out) {
    td_attr *p = realloc(n->attrs, (size_t)(n->n_attrs + 1) * sizeof *p);
    if (!p)
        return td_fail_oom(ctx, sizeof *p, "an attribute");
    n->attrs = p;
    memset(&p[n->n_attrs], 0, sizeof *p);
    *out = &p[n->n_attrs++];
    return TD_OK;
}

static td_status new_named_attr(td_ctx *ctx, td_node *n, const char *name, td_attr_type type, td_attr **out) {
    TD_TRY(td_node_new_attr(ctx, n, out));
    (*out)->name = strdup(name);
    (*out)->type = type;
    if (!(*out)->name) {
        n->n_attrs--;
        return td_fail_oom(ctx, strlen(name), "an attribute name");
    }
    return TD_OK;
}

td_status td_node_add_attr_int(td_ctx *ctx, td_node *n, const char *name, int64_t v) {
    td_attr *a = NULL; /* set by new_named_attr on success */
    TD_TRY(new_named_attr(ctx, n, name, TD_ATTR_INT, &a));
    a->i = v;
    return TD_OK;
}

td_status td_node_add_attr_float(td_ctx *ctx, td_node *n, const char *name, float v) {
    td_attr *a = NULL; /* set by new_named_attr on success */
    TD_TRY(new_named_attr(ctx, n, name, TD_ATTR_FLOAT, &a));
    a->f = v;
    return TD_OK;
}

td_status td_node_add_attr_string(td_ctx *ctx, td_node *n, const char *name, const char *v) {
    td_attr *a = NULL; /* set by new_named_attr on success */
    TD_TRY(new_named_attr(ctx, n, name, TD_ATTR_STRING, &a));
    a->s = strdup(v);
    a->s_len = strlen(v);
    if (!a->s)
        return td_fail_oom(ctx, a->s_len, "an attribute string");
    return TD_OK;
}

td_status td_node_add_attr_ints(td_ctx *ctx, td_node *n, const char *name, const int64_t *v, size_t count) {
    td_attr *a = NULL; /* set by new_named_attr on success */
    TD_TRY(new_named_attr(ctx, n, name, TD_ATTR_INTS, &a));
    a->ints = malloc(sizeof(int64_t) * (count ? count : 1));
    if (!a->ints)
        return td_fail_oom(ctx, count * 8, "attribute ints");
    if (count)
        memcpy(a->ints, v, sizeof(int64_t) * count);
    a->count = count;
    return TD_OK;
}

td_status td_node_add_attr_floats(td_ctx *ctx, td_node *n, const char *name, const float *v, size_t count) {
    td_attr *a = NULL; /* set by new_named_attr on success */
    TD_TRY(new_named_attr(ctx, n, name, TD_ATTR_FLOATS, &a));
    a->floats = malloc(sizeof(float) * (count ? count : 1));
    if (!a->floats)
        return td_fail_oom(ctx, count * 4, "attribute floats");
    if (count)
        memcpy(a->floats, v, sizeof(float) * count);
    a->count = count;
    return TD_OK;
}

td_status td_node_add_attr_tensor(td_ctx *ctx, td_node *n, const char *name, td_tensor *t) {
    td_attr *a = NULL; /* set by new_named_attr on success */
    td_status s = new_named_attr(ctx, n, name, TD_ATTR_TENSOR, &a);
    if (s != TD_OK) {
        td_tensor_free(t);
        return s;
    }
    a->t = t;
    return TD_OK;
}

/* ---------------- graph ---------------- */

td_graph *td_graph_new(td_graph *parent) {
    td_graph *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->map = td_value_map_new();
    g->name = strdup("");
    if (!g->map || !g->name) {
        td_value_map_free(g->map);
        free(g->name);
        free(g);
        return NULL;
    }
    g->parent = parent;
    return g;
}

static void type_clear(td_type *t) {
    if (t->dims)
        for (int i = 0; i < t->rank; i++)
            free(t->dims[i].param);
    free(t->dims);
    free(t->raw);
    free(t->denotation);
    free(t->pb_extra);
    memset(t, 0, sizeof *t);
    t->rank = -1;
}

static void node_free(td_node *n) {
    if (!n)
        return;
    for (int i = 0; i < n->n_attrs; i++)
        td_attr_clear(&n->attrs[i]);
    free(n->attrs);
    free(n->inputs);
    free(n->outputs);
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->doc_string);
    free(n->pb_extra);
    free(n);
}

static void value_free(td_value *v) {
    if (!v)
        return;
    type_clear(&v->type);
    td_tensor_free(v->initializer);
    free(v->consumers);
    free(v->name);
    free(v->doc_string);
    free(v->pb_extra);
    free(v);
}

void td_graph_free(td_graph *g) {
    if (!g)
        return;
    for (int i = 0; i < g->n_nodes; i++)
        node_free(g->nodes[i]);
    for (int i = 0; i < g->n_values; i++)
        value_free(g->values[i]);
    free(g->nodes);
    free(g->values);
    free(g->inputs);
    free(g->outputs);
    free(g->initializers);
    td_value_map_free(g->map);
    free(g->name);
    free(g->doc_string);
    free(g->pb_extra);
    free(g);
}

td_value *td_graph_find(const td_graph *g, const char *name) { return td_value_map_get(g->map, name); }

td_value *td_graph_lookup(const td_graph *g, const char *name) {
    for (; g; g = g->parent) {
        td_value *v = td_value_map_get(g->map, name);
        if (v)
            return v;
    }
    return NULL;
}

td_status td_graph_add_value(td_ctx *ctx, td_graph *g, const char *name, td_value **out) {
    *out = NULL;
    if (td_value_map_get(g->map, name))
        return td_fail(ctx, TD_ERR_GRAPH, "value name '%s' is defined twice (ONNX names must be unique)", name);
    if (!GROW(g->values, g->cap_values, g->n_values + 1))
        return td_fail_oom(ctx, 0, "graph values");
    td_value *v = calloc(1, sizeof *v);
    if (!v || !(v->name = strdup(name))) {
        free(v);
        return td_fail_oom(ctx, sizeof *v, "a value");
    }
    v->type.rank = -1;
    v->graph = g;
    v->producer_slot = -1;
    if (!td_value_map_put(g->map, v)) {
        value_free(v);
        return td_fail_oom(ctx, 0, "the value map");
    }
    g->values[g->n_values++] = v;
    *out = v;
    return TD_OK;
}

td_status td_graph_get_value(td_ctx *ctx, td_graph *g, const char *name, td_value **out) {
    *out = td_value_map_get(g->map, name);
    if (*out)
        return TD_OK;
    return td_graph_add_value(ctx, g, name, out);
}

char *td_graph_unique_name(td_graph *g, const char *prefix) {
    size_t n = strlen(prefix) + 24;
    char *buf = malloc(n);
    if (!buf)
        return NULL;
    snprintf(buf, n, "%s", prefix);
    for (long i = 1; td_graph_lookup(g, buf); i++)
        snprintf(buf, n, "%s_%ld", prefix, i);
    return buf;
}

td_status td_graph_add_input(td_ctx *ctx, td_graph *g, td_value *v) {
    if (!GROW(g->inputs, g->cap_inputs, g->n_inputs + 1))
        return td_fail_oom(ctx, 0, "graph inputs");
    g->inputs[g->n_inputs++] = v;
    v->is_input = true;
    return TD_OK;
}

td_status td_graph_add_output(td_ctx *ctx, td_graph *g, td_value *v) {
    if (!GROW(g->outputs, g->cap_outputs, g->n_outputs + 1))
        return td_fail_oom(ctx, 0, "graph outputs");
    g->outputs[g->n_outputs++] = v;
    v->is_output = true;
    return TD_OK;
}

/* An initializer's data fixes its dtype and shape, so a value that becomes one
 * gets that type whenever its own type lacks a shape, including a dtype-only
 * type (the exporter tracks dtypes without shapes, and constant folding turns
 * such values into initializers). Passes read shapes from value types, so an
 * initializer left shapeless blocked fusions that only the loader's types made
 * work. A graph input keeps the type it declares: a caller may feed another shape. */
static td_status type_from_data(td_ctx *ctx, td_value *v, const td_tensor *t) {
    bool shapeless = v->type.rank < 0 && !v->type.raw;
    bool declared_input = v->is_input && v->type.elem != TD_UNDEFINED;
    if (!shapeless || declared_input)
        return TD_OK;
    return td_value_set_tensor_type(ctx, v, t->dtype, t->rank, t->dims, NULL);
}

td_status td_graph_set_initializer(td_ctx *ctx, td_graph *g, td_value *v, td_tensor *t) {
    if (v->initializer) {
        td_tensor_free(v->initializer);
        v->initializer = t;
        return type_from_data(ctx, v, t);
    }
    if (!GROW(g->initializers, g->cap_initializers, g->n_initializers + 1)) {
        td_tensor_free(t);
        return td_fail_oom(ctx, 0, "graph initializers");
    }
    g->initializers[g->n_initializers++] = v;
    v->initializer = t;
    return type_from_data(ctx, v, t);
}

void td_graph_clear_initializer(td_graph *g, td_value *v) {
    if (!v->initializer)
        return;
    for (int i = 0; i < g->n_initializers; i++)
        if (g->initializers[i] == v) {
            memmove(&g->initializers[i], &g->initializers[i + 1],
                    sizeof(td_value *) * (size_t)(g->n_initializers - i - 1));
            g->n_initializers--;
            break;
        }
    td_tensor_free(v->initializer);
    v->initializer = NULL;
}

static td_status add_consumer(td_ctx *ctx, td_value *v, td_node *n) {
    if (!GROW(v->consumers, v->cap_consumers, v->n_consumers + 1))
        return td_fail_oom(ctx, 0, "a consumer list");
    v->consumers[v->n_consumers++] = n;
    return TD_OK;
}

static void remove_consumer(td_value *v, td_node *n) {
    for (int i = 0; i < v->n_consumers; i++)
        if (v->consumers[i] == n) { /* remove one use only */
            memmove(&v->consumers[i], &v->consumers[i + 1], sizeof(td_node *) * (size_t)(v->n_consumers - i - 1));
            v->n_consumers--;
            return;
        }
}

td_status td_graph_add_node(td_ctx *ctx, td_graph *g, const char *op_type, const char *domain, const char *name,
                            td_value *const *inputs, int n_inputs, td_value *const *outputs, int n_outputs,
                            td_node **out) {
    if (out)
        *out = NULL;
    for (int i = 0; i < n_outputs; i++)
        if (outputs[i] && outputs[i]->producer)
            return td_fail(ctx, TD_ERR_GRAPH, "value '%s' is produced twice: by node '%s' and node '%s'",
                           outputs[i]->name, outputs[i]->producer->name, name ? name : op_type);
    if (!GROW(g->nodes, g->cap_nodes, g->n_nodes + 1))
        return td_fail_oom(ctx, 0, "graph nodes");
    td_node *n = calloc(1, sizeof *n);
    if (!n)
        return td_fail_oom(ctx, sizeof *n, "a node");
    n->graph = g;
    n->op_type = strdup(op_type);
    n->domain = dup_or_empty(domain);
    n->name = dup_or_empty(name);
    n->inputs = calloc((size_t)(n_inputs ? n_inputs : 1), sizeof(td_value *));
    n->outputs = calloc((size_t)(n_outputs ? n_outputs : 1), sizeof(td_value *));
    if (!n->op_type || !n->domain || !n->name || !n->inputs || !n->outputs) {
        node_free(n);
        return td_fail_oom(ctx, 0, "a node");
    }
    n->n_inputs = n_inputs;
    n->n_outputs = n_outputs;
    for (int i = 0; i < n_inputs; i++) {
        n->inputs[i] = inputs[i];
        if (inputs[i] && add_consumer(ctx, inputs[i], n) != TD_OK) {
            for (int j = 0; j < i; j++)
                if (inputs[j])
                    remove_consumer(inputs[j], n);
            node_free(n);
            return TD_ERR_OUT_OF_MEMORY;
        }
    }
    for (int i = 0; i < n_outputs; i++) {
        n->outputs[i] = outputs[i];
        if (outputs[i]) {
            outputs[i]->producer = n;
            outputs[i]->producer_slot = i;
        }
    }
    g->nodes[g->n_nodes++] = n;
    if (out)
        *out = n;
    return TD_OK;
}

void td_graph_remove_node(td_graph *g, td_node *n) {
    if (n->dead)
        return;
    for (int i = 0; i < n->n_inputs; i++)
        if (n->inputs[i])
            remove_consumer(n->inputs[i], n);
    for (int i = 0; i < n->n_outputs; i++)
        if (n->outputs[i] && n->outputs[i]->producer == n) {
            n->outputs[i]->producer = NULL;
            n->outputs[i]->producer_slot = -1;
        }
    n->dead = true;
}

td_status td_node_set_input(td_ctx *ctx, td_node *n, int slot, td_value *v) {
    if (slot < 0)
        return td_fail(ctx, TD_ERR_INTERNAL, "negative input slot for node '%s'", n->name);
    if (slot >= n->n_inputs) {
        td_value **p = realloc(n->inputs, sizeof(td_value *) * (size_t)(slot + 1));
        if (!p)
            return td_fail_oom(ctx, 0, "node inputs");
        for (int i = n->n_inputs; i <= slot; i++)
            p[i] = NULL;
        n->inputs = p;
        n->n_inputs = slot + 1;
    }
    if (v)
        TD_TRY(add_consumer(ctx, v, n));
    if (n->inputs[slot])
        remove_consumer(n->inputs[slot], n);
    n->inputs[slot] = v;
    return TD_OK;
}

td_status td_value_replace_uses(td_ctx *ctx, td_value *old, td_value *new_v) {
    if (old == new_v)
        return TD_OK;
    while (old->n_consumers > 0) {
        td_node *n = old->consumers[0];
        int slot = -1;
        for (int i = 0; i < n->n_inputs; i++)
            if (n->inputs[i] == old) {
                slot = i;
                break;
            }
        if (slot < 0) { /* consumer list out of sync: a bug, not bad input */
            return td_fail(ctx, TD_ERR_INTERNAL, "consumer list of '%s' names node '%s' that does not use it",
                           old->name, n->name);
        }
        TD_TRY(td_node_set_input(ctx, n, slot, new_v));
    }
    td_graph *g = old->graph;
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == old) {
            g->outputs[i] = new_v;
            new_v->is_output = true;
            old->is_output = false;
        }
    return TD_OK;
}

int td_graph_live_nodes(const td_graph *g) {
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        c += !g->nodes[i]->dead;
    return c;
}

void td_graph_compact(td_graph *g) {
    int w = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i]->dead)
            node_free(g->nodes[i]);
        else
            g->nodes[w++] = g->nodes[i];
    }
    g->n_nodes = w;
    w = 0;
    for (int i = 0; i < g->n_values; i++) {
        td_value *v = g->values[i];
        bool orphan = !v->producer && v->n_consumers == 0 && !v->is_input && !v->is_output && !v->initializer &&
                      !v->has_value_info;
        if (orphan) {
            td_value_map_del(g->map, v->name);
            value_free(v);
        } else {
            g->values[w++] = v;
        }
    }
    g->n_values = w;
}

td_status td_graph_toposort(td_ctx *ctx, td_graph *g) {
    /* Kahn's algorithm over live nodes. Ready nodes are taken in their current
     * order so an already sorted graph keeps its order exactly. */
    td_graph_compact(g);
    int n = g->n_nodes;
    td_status s = TD_OK;
    int *indeg = calloc((size_t)(n ? n : 1), sizeof *indeg);
    td_node **sorted = malloc(sizeof(td_node *) * (size_t)(n ? n : 1));
    int *heap = malloc(sizeof(int) * (size_t)(n ? n : 1)); /* min-heap of original indices */
    int hn = 0, out = 0;
    if (!indeg || !sorted || !heap) {
        s = td_fail_oom(ctx, sizeof(int) * (size_t)n, "topological sort");
        goto done;
    }
    for (int i = 0; i < n; i++)
        g->nodes[i]->order = i;
    for (int i = 0; i < n; i++) {
        td_node *nd = g->nodes[i];
        for (int j = 0; j < nd->n_inputs; j++) {
            td_value *v = nd->inputs[j];
            if (v && v->producer && v->producer->graph == g && !v->producer->dead)
                indeg[i]++;
        }
    }
#define HEAP_PUSH(x)                                         \
    do {                                                     \
        int k_ = hn++;                                       \
        heap[k_] = (x);                                      \
        while (k_ > 0 && heap[(k_ - 1) / 2] > heap[k_]) {    \
            int t_ = heap[k_];                               \
            heap[k_] = heap[(k_ - 1) / 2];                   \
            heap[(k_ - 1) / 2] = t_;                         \
            k_ = (k_ - 1) / 2;                               \
        }                                                    \
    } while (0)
    for (int i = 0; i < n; i++)
        if (indeg[i] == 0)
            HEAP_PUSH(i);
    while (hn > 0) {
        int top = heap[0];
        heap[0] = heap[--hn];
        for (int k = 0;;) { /* sift down */
            int l = 2 * k + 1, r = l + 1, m = k;
            if (l < hn && heap[l] < heap[m])
                m = l;
            if (r < hn && heap[r] < heap[m])
                m = r;
            if (m == k)
                break;
            int t = heap[k];
            heap[k] = heap[m];
            heap[m] = t;
            k = m;
        }
        td_node *nd = g->nodes[top];
        sorted[out++] = nd;
        for (int j = 0; j < nd->n_outputs; j++) {
            td_value *v = nd->outputs[j];
            if (!v)
                continue;
            for (int c = 0; c < v->n_consumers; c++) {
                td_node *cn = v->consumers[c];
                if (cn->graph == g && !cn->dead && --indeg[cn->order] == 0)
                    HEAP_PUSH(cn->order);
            }
        }
    }
#undef HEAP_PUSH
    if (out != n) {
        for (int i = 0; i < n; i++)
            if (indeg[i] > 0) {
                td_node *nd = g->nodes[i];
                s = td_fail(ctx, TD_ERR_GRAPH,
                            "graph '%s' has a cycle: node '%s' (%s) depends on its own output through %d other "
                            "node(s); ONNX graphs must be acyclic",
                            g->name, nd->name, nd->op_type, n - out - 1);
                break;
            }
        goto done;
    }
    if (n) /* g->nodes is NULL in an empty graph */
        memcpy(g->nodes, sorted, sizeof(td_node *) * (size_t)n);
done:
    free(indeg);
    free(sorted);
    free(heap);
    return s;
}

td_status td_value_set_tensor_type(td_ctx *ctx, td_value *v, td_dtype elem, int rank, const int64_t *dims,
                                   const char *const *params) {
    td_dim *nd = NULL;
    if (rank > 0) {
        nd = calloc((size_t)rank, sizeof *nd);
        if (!nd)
            return td_fail_oom(ctx, sizeof *nd * (size_t)rank, "value dims");
        for (int i = 0; i < rank; i++) {
            nd[i].value = dims ? dims[i] : -1;
            if (params && params[i]) {
                nd[i].param = strdup(params[i]);
                nd[i].value = -1;
                if (!nd[i].param) {
                    for (int j = 0; j < i; j++)
                        free(nd[j].param);
                    free(nd);
                    return td_fail_oom(ctx, 0, "a dim name");
                }
            }
        }
    }
    type_clear(&v->type);
    v->type.elem = elem;
    v->type.rank = rank;
    v->type.dims = nd;
    return TD_OK;
}
