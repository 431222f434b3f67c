/* Structural validation of a model: what ONNX requires of every graph before
 * anything else looks at it. Messages name the node and its op type. */
#include "onnx/onnx_io.h"

#include <stdlib.h>
#include <string.h>

#define MAX_IR_VERSION 20

static bool default_domain(const char *d) { return !d || !*d || strcmp(d, "ai.onnx") == 0; }

static const char *nm(const td_node *n) { return n->name && *n->name ? n->name : "(unnamed)"; }

static bool node_uses_subgraphs(const td_node *n) {
    for (int i = 0; i < n->n_attrs; i++)
        if (n->attrs[i].g || n->attrs[i].graphs)
            return true;
    return false;
}

/* A value is available in graph g when something defines it. */
static bool defined(const td_value *v) {
    return (v->producer && !v->producer->dead) || v->is_input || v->initializer;
}

static bool is_ancestor_or_self(const td_graph *anc, const td_graph *g) {
    for (; g; g = g->parent)
        if (g == anc)
            return true;
    return false;
}

static td_status check_graph(td_ctx *ctx, const td_model *m, td_graph *g, int depth) {
    const char *gname = g->name && *g->name ? g->name : "(unnamed graph)";
    td_graph_compact(g);
    for (int i = 0; i < g->n_nodes; i++) {
        td_node *n = g->nodes[i];
        if (!n->op_type || !*n->op_type)
            return td_fail(ctx, TD_ERR_GRAPH, "graph '%s': node '%s' has no op_type", gname, nm(n));
        if (td_model_opset(m, n->domain) <= 0)
            return td_fail(ctx, TD_ERR_GRAPH,
                           "node '%s' (%s) uses domain '%s' but the model has no opset import for it; add an "
                           "opset_import entry for that domain",
                           nm(n), n->op_type, default_domain(n->domain) ? "ai.onnx" : n->domain);
        for (int j = 0; j < n->n_inputs; j++) {
            td_value *v = n->inputs[j];
            if (!v)
                continue;
            if (!is_ancestor_or_self(v->graph, g))
                return td_fail(ctx, TD_ERR_INTERNAL, "node '%s' (%s) input '%s' belongs to an unrelated graph",
                               nm(n), n->op_type, v->name);
            if (!defined(v))
                return td_fail(ctx, TD_ERR_GRAPH,
                               "graph '%s': node '%s' (%s) input %d '%s' has no producer (not a node output, graph "
                               "input or initializer%s)",
                               gname, nm(n), n->op_type, j, v->name, g->parent ? ", nor an outer-scope value" : "");
        }
        for (int j = 0; j < n->n_outputs; j++) {
            td_value *v = n->outputs[j];
            if (!v)
                continue;
            if (v->is_input || v->initializer)
                return td_fail(ctx, TD_ERR_GRAPH,
                               "graph '%s': node '%s' (%s) output '%s' is also a graph %s; every name must be "
                               "assigned once (SSA)",
                               gname, nm(n), n->op_type, v->name, v->is_input ? "input" : "initializer");
            if (g->parent && td_graph_lookup(g->parent, v->name))
                return td_fail(ctx, TD_ERR_GRAPH,
                               "subgraph '%s': node '%s' (%s) output '%s' shadows a value of an enclosing graph; "
                               "names must be unique across scopes",
                               gname, nm(n), n->op_type, v->name);
        }
    }
    for (int i = 0; i < g->n_outputs; i++)
        if (!defined(g->outputs[i]) && !(g->parent && td_graph_lookup(g->parent, g->outputs[i]->name)))
            return td_fail(ctx, TD_ERR_GRAPH, "graph '%s': output '%s' is not produced by any node, input or "
                           "initializer", gname, g->outputs[i]->name);
    /* acyclic: sort a copy of the order, then put the file order back */
    td_node **saved = malloc(sizeof *saved * (size_t)(g->n_nodes ? g->n_nodes : 1));
    if (!saved)
        return td_fail_oom(ctx, 0, "a node list");
    if (g->n_nodes)
        memcpy(saved, g->nodes, sizeof *saved * (size_t)g->n_nodes);
    td_status s = td_graph_toposort(ctx, g);
    if (g->n_nodes)
        memcpy(g->nodes, saved, sizeof *saved * (size_t)g->n_nodes);
    free(saved);
    TD_TRY(s);
    for (int i = 0; i < g->n_nodes; i++) {
        td_node *n = g->nodes[i];
        if (!node_uses_subgraphs(n))
            continue;
        for (int k = 0; k < n->n_attrs; k++) {
            td_attr *a = &n->attrs[k];
            if (a->g) {
                s = check_graph(ctx, m, a->g, depth + 1);
                if (s != TD_OK)
                    return td_wrap(ctx, "in subgraph '%s' of node '%s' (%s)", a->name, nm(n), n->op_type);
            }
            for (size_t j = 0; a->graphs && j < a->count; j++) {
                s = check_graph(ctx, m, a->graphs[j], depth + 1);
                if (s != TD_OK)
                    return td_wrap(ctx, "in subgraph %zu of '%s' of node '%s' (%s)", j, a->name, nm(n), n->op_type);
            }
        }
    }
    return TD_OK;
}

td_status td_onnx_check(td_ctx *ctx, td_model *m) {
    if (m->ir_version < 1 || m->ir_version > MAX_IR_VERSION)
        return td_fail(ctx, TD_ERR_FORMAT, "ir_version %lld is not a known ONNX IR version (1..%d)",
                       (long long)m->ir_version, MAX_IR_VERSION);
    if (m->n_opsets == 0)
        return td_fail(ctx, TD_ERR_FORMAT, "the model has no opset_import; ONNX requires at least the default "
                       "domain's opset version");
    for (int i = 0; i < m->n_opsets; i++) {
        if (m->opsets[i].version < 1)
            return td_fail(ctx, TD_ERR_FORMAT, "opset import for domain '%s' has version %lld (must be >= 1)",
                           m->opsets[i].domain, (long long)m->opsets[i].version);
        for (int j = 0; j < i; j++)
            if ((default_domain(m->opsets[i].domain) && default_domain(m->opsets[j].domain)) ||
                strcmp(m->opsets[i].domain, m->opsets[j].domain) == 0)
                return td_fail(ctx, TD_ERR_FORMAT, "domain '%s' is imported twice in opset_import",
                               m->opsets[i].domain);
    }
    if (!m->graph)
        return td_fail(ctx, TD_ERR_FORMAT, "the model has no graph");
    return check_graph(ctx, m, m->graph, 0);
}
