/* Dead-node and unused-initializer removal. */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <string.h>

/* A name used as a node input anywhere inside subgraph g (If/Loop/Scan bodies
 * may read outer values by name without a consumer link in this graph). */
static bool used_in_subgraph(const td_graph *g, const char *name) {
    for (int i = 0; i < g->n_nodes; i++) {
        const td_node *n = g->nodes[i];
        for (int j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] && strcmp(n->inputs[j]->name, name) == 0)
                return true;
        for (int a = 0; a < n->n_attrs; a++) {
            const td_attr *at = &n->attrs[a];
            if (at->g && used_in_subgraph(at->g, name))
                return true;
            for (size_t k = 0; at->graphs && k < at->count; k++)
                if (used_in_subgraph(at->graphs[k], name))
                    return true;
        }
    }
    return false;
}

static bool value_used_by_subgraphs(const td_graph *g, const td_value *v) {
    for (int i = 0; i < g->n_nodes; i++) {
        const td_node *n = g->nodes[i];
        if (n->dead)
            continue;
        for (int a = 0; a < n->n_attrs; a++) {
            const td_attr *at = &n->attrs[a];
            if (at->g && used_in_subgraph(at->g, v->name))
                return true;
            for (size_t k = 0; at->graphs && k < at->count; k++)
                if (used_in_subgraph(at->graphs[k], v->name))
                    return true;
        }
    }
    return false;
}

static bool value_needed(const td_graph *g, const td_value *v, bool subgraphs) {
    return v->n_consumers > 0 || v->is_output || (subgraphs && value_used_by_subgraphs(g, v));
}

td_status td_pass_dce(td_ctx *ctx, td_opt_state *st, int *changes) {
    (void)ctx;
    td_graph *g = st->model->graph;
    bool subgraphs = opt_graph_has_subgraphs(g);
    /* reverse order: removing a node can make its producers dead in the same sweep */
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        td_node *n = g->nodes[i];
        if (n->dead)
            continue;
        bool needed = false;
        for (int j = 0; j < n->n_outputs && !needed; j++)
            needed = n->outputs[j] && value_needed(g, n->outputs[j], subgraphs);
        if (!needed) {
            td_graph_remove_node(g, n);
            (*changes)++;
        }
    }
    for (int i = g->n_initializers - 1; i >= 0; i--) {
        td_value *v = g->initializers[i];
        if (!v->is_input && !value_needed(g, v, subgraphs)) {
            td_graph_clear_initializer(g, v);
            (*changes)++;
        }
    }
    td_graph_compact(g);
    return TD_OK;
}
