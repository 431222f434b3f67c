/* td_optimize: choose the pipeline for the target, run it, finish the graph
 * (topological order, opset imports, stale value_info) and fill the report. */
#define _GNU_SOURCE
#include "opt/optimize.h"

#include "core/log.h"
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <stdlib.h>
#include <string.h>

static const char *const fusion_ops[TD_OPT_N_FUSION_KINDS] = {
    "Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "EmbedLayerNormalization",
    "BiasGelu",  "Gelu",               "FastGelu",               "SkipSimplifiedLayerNormalization",
    "SimplifiedLayerNormalization", "RotaryEmbedding", "GroupQueryAttention", "QuickGelu"};

static const char *const fused_pipeline[] = {"dce",       "eliminate", "fold",           "cse",       "shape",
                                             "layernorm", "rmsnorm", "gelu",      "attention", "silu", "rotary", "decoder_attention", "shape",     "skip_layernorm",
                                             "bias_gelu", "embed_layernorm", "matmul_bias", "quantize", "shape", "precision", "dce"};
static const char *const portable_pipeline[] = {"dce", "eliminate", "fold", "cse", "shape", "layernorm",
                                                "matmul_bias", "shape", "precision", "dce"};

void td_opt_options_default(td_opt_options *o) {
    memset(o, 0, sizeof *o);
    o->target = TD_OPT_TARGET_FUSED;
    o->precision = TD_OPT_FP32;
    o->keep_io_types = true;
    o->fold_max_elements = 1 << 20;
}

const char *td_opt_pass_names(void) {
    return "dce,eliminate,fold,cse,shape,layernorm,rmsnorm,gelu,attention,silu,rotary,decoder_attention,skip_layernorm,bias_gelu,embed_layernorm,matmul_bias,quantize,precision";
}

/* Resolve the pass list: the default pipeline or the user's comma-separated list. */
static td_status build_list(td_ctx *ctx, const td_opt_options *o, const td_pass **list, int *n, int cap) {
    *n = 0;
    if (!o->passes) {
        const char *const *names = o->target == TD_OPT_TARGET_PORTABLE ? portable_pipeline : fused_pipeline;
        int cnt = o->target == TD_OPT_TARGET_PORTABLE ? (int)(sizeof portable_pipeline / sizeof *portable_pipeline)
                                                      : (int)(sizeof fused_pipeline / sizeof *fused_pipeline);
        for (int i = 0; i < cnt && *n < cap; i++) {
            const td_pass *p = td_pass_find(names[i]);
            if (!p)
                return td_fail(ctx, TD_ERR_INTERNAL, "default pipeline names unknown pass '%s'", names[i]);
            list[(*n)++] = p;
        }
        return TD_OK;
    }
    const char *s = o->passes;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char name[64];
        if (len == 0 || len >= sizeof name)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "pass list '%s': empty or overlong pass name; known: %s",
                           o->passes, td_opt_pass_names());
        memcpy(name, s, len);
        name[len] = 0;
        const td_pass *p = td_pass_find(name);
        if (!p)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "unknown pass '%s'; known passes: %s", name,
                           td_opt_pass_names());
        if (p->contrib && o->target == TD_OPT_TARGET_PORTABLE)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "pass '%s' emits com.microsoft contrib ops, which --target portable excludes", name);
        if (*n >= cap)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "pass list '%s' has more than %d entries", o->passes, cap);
        list[(*n)++] = p;
        s += len;
        if (*s == ',')
            s++;
    }
    return TD_OK;
}

static bool uses_contrib(const td_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i]->dead && strcmp(g->nodes[i]->domain, "com.microsoft") == 0)
            return true;
    return false;
}

/* value_info entries of values the passes removed would describe nothing. */
static void drop_stale_value_info(td_graph *g) {
    for (int i = 0; i < g->n_values; i++) {
        td_value *v = g->values[i];
        if (v->has_value_info && !v->producer && !v->is_input && !v->initializer)
            v->has_value_info = false;
    }
}

static void count_fusions(const td_graph *g, td_opt_report *r) {
    for (int k = 0; k < TD_OPT_N_FUSION_KINDS; k++) {
        r->fusion_names[k] = fusion_ops[k];
        r->fusion_counts[k] = 0;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const td_node *n = g->nodes[i];
        if (n->dead)
            continue;
        for (int k = 0; k < TD_OPT_N_FUSION_KINDS; k++)
            if (strcmp(n->op_type, fusion_ops[k]) == 0)
                r->fusion_counts[k]++;
    }
}

td_status td_optimize(td_ctx *ctx, td_model *m, const td_opt_options *opts, td_opt_report *report) {
    td_opt_options dflt;
    if (!opts) {
        td_opt_options_default(&dflt);
        opts = &dflt;
    }
    td_opt_report local;
    if (!report)
        report = &local;
    memset(report, 0, sizeof *report);
    double t0 = td_now_s();
    td_graph *g = m->graph;
    if (opts->fold_max_elements < 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "fold_max_elements must not be negative");
    const td_pass *list[64];
    int n = 0;
    if (opts->precision == TD_OPT_INT4 && opts->target == TD_OPT_TARGET_PORTABLE)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "precision int4 writes com.microsoft MatMulNBits, which --target "
                       "portable excludes: use --target fused");
    if (opts->precision == TD_OPT_INT8 && opts->target == TD_OPT_TARGET_PORTABLE)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "precision int8 writes com.microsoft DynamicQuantizeMatMul, "
                       "which --target portable excludes: use --target fused");
    TD_TRY(build_list(ctx, opts, list, &n, 64));
    report->nodes_before = td_graph_live_nodes(g);
    report->initializers_before = g->n_initializers;
    /* passes walk nodes in order and rely on producers coming first */
    TD_TRY(td_graph_toposort(ctx, g));
    td_opt_state st = {.opts = opts, .model = m};
    TD_TRY(td_pass_manager_run(ctx, &st, list, n, report));
    drop_stale_value_info(g);
    TD_TRY(td_graph_toposort(ctx, g));
    if (uses_contrib(g) && td_model_opset(m, "com.microsoft") < 1)
        TD_TRY(td_model_set_opset(ctx, m, "com.microsoft", 1));
    report->nodes_after = td_graph_live_nodes(g);
    report->initializers_after = g->n_initializers;
    count_fusions(g, report);
    report->seconds = td_now_s() - t0;
    return TD_OK;
}
