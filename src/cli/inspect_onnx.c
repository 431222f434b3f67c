/* tdeploy inspect for .onnx files: IR version, producer, opsets, inputs and
 * outputs with dtypes and shapes, initializer statistics, op histogram and
 * metadata, as text or JSON. */
#define _GNU_SOURCE
#include "cli/cli.h"

#include "onnx/onnx_io.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct op_count {
    char *key; /* "domain:op" */
    long count;
} op_count;

typedef struct stats {
    op_count *ops;
    int n_ops, cap_ops;
    long n_nodes, n_subgraphs;
    long n_init;
    unsigned long long init_bytes;
    long dtype_count[TD_DTYPE_MAX + 1];
    long n_external;
    long n_mapped; /* data points into a file mapping (not copied at load) */
} stats;

/* Op keys are collected in a list and counted after sorting (O(n log n) even
 * for a hostile file with a million distinct op types). */
static bool count_op(stats *st, const td_node *n) {
    char *key;
    if (asprintf(&key, "%s:%s", n->domain && *n->domain ? n->domain : "ai.onnx", n->op_type) < 0)
        return false;
    if (st->n_ops == st->cap_ops) {
        int cap = st->cap_ops ? st->cap_ops * 2 : 256;
        op_count *p = realloc(st->ops, sizeof *p * (size_t)cap);
        if (!p) {
            free(key);
            return false;
        }
        st->ops = p;
        st->cap_ops = cap;
    }
    st->ops[st->n_ops++] = (op_count){key, 1};
    return true;
}

static int by_key(const void *a, const void *b) { return strcmp(((const op_count *)a)->key, ((const op_count *)b)->key); }

/* Merge equal keys of the sorted list into counts. */
static void merge_ops(stats *st) {
    int w = 0;
    for (int i = 0; i < st->n_ops; i++) {
        if (w > 0 && !strcmp(st->ops[w - 1].key, st->ops[i].key)) {
            st->ops[w - 1].count++;
            free(st->ops[i].key);
        } else {
            st->ops[w++] = st->ops[i];
        }
    }
    st->n_ops = w;
}

static bool collect(stats *st, const td_graph *g) {
    for (int i = 0; i < g->n_initializers; i++) {
        const td_tensor *t = g->initializers[i]->initializer;
        st->n_init++;
        st->init_bytes += t->nbytes;
        st->dtype_count[(unsigned)t->dtype <= TD_DTYPE_MAX ? t->dtype : TD_DTYPE_MAX]++;
        st->n_external += t->external_location != NULL;
        st->n_mapped += t->map != NULL && t->data != NULL;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const td_node *n = g->nodes[i];
        if (n->dead)
            continue;
        st->n_nodes++;
        if (!count_op(st, n))
            return false;
        for (int k = 0; k < n->n_attrs; k++) {
            const td_attr *a = &n->attrs[k];
            if (a->g && (st->n_subgraphs++, !collect(st, a->g)))
                return false;
            for (size_t j = 0; a->graphs && j < a->count; j++)
                if (st->n_subgraphs++, !collect(st, a->graphs[j]))
                    return false;
        }
    }
    return true;
}

static int by_count(const void *a, const void *b) {
    const op_count *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->key, y->key);
}

/* "float32 [batch, 128]" style text of a value type. */
static void type_text(const td_type *t, char *buf, size_t n) {
    size_t w = 0;
    if (t->raw) {
        snprintf(buf, n, "(non-tensor type)");
        return;
    }
    w += (size_t)snprintf(buf + w, n - w, "%s", t->elem ? td_dtype_name(t->elem) : "?");
    if (t->rank < 0) {
        snprintf(buf + w, n > w ? n - w : 0, " [rank unknown]");
        return;
    }
    w += (size_t)snprintf(buf + w, n > w ? n - w : 0, " [");
    for (int i = 0; i < t->rank && w < n; i++) {
        if (t->dims[i].param)
            w += (size_t)snprintf(buf + w, n - w, "%s%s", i ? ", " : "", t->dims[i].param);
        else if (t->dims[i].value >= 0)
            w += (size_t)snprintf(buf + w, n - w, "%s%lld", i ? ", " : "", (long long)t->dims[i].value);
        else
            w += (size_t)snprintf(buf + w, n - w, "%s?", i ? ", " : "");
    }
    if (w < n)
        snprintf(buf + w, n - w, "]");
}

static cJSON *type_json(const td_type *t) {
    cJSON *o = cJSON_CreateObject();
    if (t->raw) {
        cJSON_AddStringToObject(o, "kind", "non-tensor");
        return o;
    }
    cJSON_AddStringToObject(o, "dtype", t->elem ? td_dtype_name(t->elem) : "unknown");
    if (t->rank < 0) {
        cJSON_AddNullToObject(o, "shape");
        return o;
    }
    cJSON *sh = cJSON_AddArrayToObject(o, "shape");
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i].param)
            cJSON_AddItemToArray(sh, cJSON_CreateString(t->dims[i].param));
        else if (t->dims[i].value >= 0)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->dims[i].value));
        else
            cJSON_AddItemToArray(sh, cJSON_CreateNull());
    }
    return o;
}

static cJSON *values_json(td_value *const *vals, int n) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = type_json(&vals[i]->type);
        cJSON_AddStringToObject(o, "name", vals[i]->name);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static void print_json(const char *path, const td_model *m, const stats *st) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "format", "onnx");
    cJSON_AddNumberToObject(o, "ir_version", (double)m->ir_version);
    cJSON_AddStringToObject(o, "producer_name", m->producer_name ? m->producer_name : "");
    cJSON_AddStringToObject(o, "producer_version", m->producer_version ? m->producer_version : "");
    cJSON_AddNumberToObject(o, "model_version", (double)m->model_version);
    cJSON *ops = cJSON_AddObjectToObject(o, "opsets");
    for (int i = 0; i < m->n_opsets; i++)
        cJSON_AddNumberToObject(ops, *m->opsets[i].domain ? m->opsets[i].domain : "ai.onnx",
                                (double)m->opsets[i].version);
    cJSON_AddItemToObject(o, "inputs", values_json(m->graph->inputs, m->graph->n_inputs));
    cJSON_AddItemToObject(o, "outputs", values_json(m->graph->outputs, m->graph->n_outputs));
    cJSON *init = cJSON_AddObjectToObject(o, "initializers");
    cJSON_AddNumberToObject(init, "count", (double)st->n_init);
    cJSON_AddNumberToObject(init, "bytes", (double)st->init_bytes);
    cJSON_AddNumberToObject(init, "external", (double)st->n_external);
    cJSON_AddNumberToObject(init, "mapped", (double)st->n_mapped);
    cJSON *dts = cJSON_AddObjectToObject(init, "dtypes");
    for (int d = 0; d <= TD_DTYPE_MAX; d++)
        if (st->dtype_count[d])
            cJSON_AddNumberToObject(dts, d < TD_DTYPE_MAX ? td_dtype_name((td_dtype)d) : "other",
                                    (double)st->dtype_count[d]);
    cJSON_AddNumberToObject(o, "nodes", (double)st->n_nodes);
    cJSON_AddNumberToObject(o, "subgraphs", (double)st->n_subgraphs);
    cJSON *hist = cJSON_AddObjectToObject(o, "ops");
    for (int i = 0; i < st->n_ops; i++)
        cJSON_AddNumberToObject(hist, st->ops[i].key, (double)st->ops[i].count);
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    for (int i = 0; i < m->n_metadata; i++)
        cJSON_AddStringToObject(md, m->metadata[i].key, m->metadata[i].value);
    char *text = cJSON_Print(o);
    if (text)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
}

static void print_text(const char *path, const td_model *m, const stats *st) {
    char buf[1024];
    printf("%s: ONNX model\n", path);
    printf("  ir_version:  %lld\n", (long long)m->ir_version);
    printf("  producer:    %s %s\n", m->producer_name ? m->producer_name : "(none)",
           m->producer_version ? m->producer_version : "");
    printf("  opsets:     ");
    for (int i = 0; i < m->n_opsets; i++)
        printf(" %s %lld%s", *m->opsets[i].domain ? m->opsets[i].domain : "ai.onnx", (long long)m->opsets[i].version,
               i + 1 < m->n_opsets ? "," : "");
    printf("\n  inputs:\n");
    for (int i = 0; i < m->graph->n_inputs; i++) {
        type_text(&m->graph->inputs[i]->type, buf, sizeof buf);
        printf("    %s: %s%s\n", m->graph->inputs[i]->name, buf, m->graph->inputs[i]->initializer ? " (initializer)" : "");
    }
    printf("  outputs:\n");
    for (int i = 0; i < m->graph->n_outputs; i++) {
        type_text(&m->graph->outputs[i]->type, buf, sizeof buf);
        printf("    %s: %s\n", m->graph->outputs[i]->name, buf);
    }
    printf("  initializers: %ld tensors, %llu bytes%s", st->n_init, st->init_bytes, st->n_init ? " (" : "");
    bool first = true;
    for (int d = 0; d <= TD_DTYPE_MAX; d++)
        if (st->dtype_count[d]) {
            printf("%s%s: %ld", first ? "" : ", ", d < TD_DTYPE_MAX ? td_dtype_name((td_dtype)d) : "other",
                   st->dtype_count[d]);
            first = false;
        }
    printf("%s\n", st->n_init ? ")" : "");
    if (st->n_external)
        printf("  external data: %ld tensors\n", st->n_external);
    printf("  zero-copy:    %ld of %ld initializers point into the mapped file(s)\n", st->n_mapped, st->n_init);
    printf("  nodes: %ld (%ld subgraphs)\n", st->n_nodes, st->n_subgraphs);
    for (int i = 0; i < st->n_ops; i++)
        printf("    %-40s %ld\n", st->ops[i].key, st->ops[i].count);
    if (m->n_metadata) {
        printf("  metadata:\n");
        for (int i = 0; i < m->n_metadata; i++)
            printf("    %s = %s\n", m->metadata[i].key, m->metadata[i].value);
    }
}

int td_inspect_onnx(const char *path, bool json) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = NULL;
    stats st = {0};
    int rc = TD_EXIT_OK;
    if (!ctx) {
        fprintf(stderr, "tdeploy inspect: out of memory\n");
        return TD_EXIT_FAIL;
    }
    td_status s = td_onnx_load(ctx, path, &m);
    if (s != TD_OK) {
        rc = td_cli_report("inspect", ctx, s);
        goto out;
    }
    if (!collect(&st, m->graph)) {
        fprintf(stderr, "tdeploy inspect: error: out of memory counting ops\n");
        rc = TD_EXIT_FAIL;
        goto out;
    }
    qsort(st.ops, (size_t)st.n_ops, sizeof *st.ops, by_key);
    merge_ops(&st);
    qsort(st.ops, (size_t)st.n_ops, sizeof *st.ops, by_count);
    if (json)
        print_json(path, m, &st);
    else
        print_text(path, m, &st);
out:
    for (int i = 0; i < st.n_ops; i++)
        free(st.ops[i].key);
    free(st.ops);
    td_model_free(m);
    td_ctx_free(ctx);
    return rc;
}
