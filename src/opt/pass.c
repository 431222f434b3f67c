/* Pass table and pass manager. */
#include "opt/pass.h"

#include "core/log.h"

#include <string.h>

static const td_pass passes[] = {
    {"dce", "remove nodes whose outputs nobody uses, and unused initializers", td_pass_dce, true, false},
    {"eliminate", "remove Identity, inference Dropout, no-op Cast and no-op Reshape", td_pass_eliminate, true, false},
    {"fold", "constant folding (Constant nodes, shape arithmetic, ops on constant inputs)", td_pass_fold, true, false},
    {"cse", "common-subexpression elimination (equal nodes on equal inputs, equal small constants)", td_pass_cse, true,
     false},
    {"shape", "shape and type inference with symbolic dims", td_pass_shape, false, false},
    {"layernorm", "ReduceMean/Sub/Pow/Sqrt/Div decompositions -> LayerNormalization", td_pass_fuse_layernorm, false,
     false},
    {"rmsnorm", "RMSNorm decompositions -> SimplifiedLayerNormalization (ONNX Runtime op)", td_pass_fuse_rmsnorm, false,
     true},
    {"gelu", "erf and tanh GELU decompositions -> Gelu / FastGelu", td_pass_fuse_gelu, false, true},
    {"attention", "self-attention subgraphs (eager and sdpa forms) -> Attention", td_pass_fuse_attention, false, true},
    {"silu", "Mul(x, Sigmoid(x)) -> QuickGelu(alpha=1) (ONNX Runtime op)", td_pass_fuse_silu, false, true},
    {"rotary", "rotate_half rotary embedding -> RotaryEmbedding with cos/sin caches (ONNX Runtime op)",
     td_pass_fuse_rotary, false, true},
    {"decoder_attention",
     "attention over a past/present KV cache -> GroupQueryAttention (rotary or grouped heads) / MultiHeadAttention",
     td_pass_fuse_decoder_attention, false, true},
    {"skip_layernorm",
     "residual Add (+ MatMul bias) + LayerNormalization / SimplifiedLayerNormalization -> Skip(Simplified)LayerNormalization",
     td_pass_fuse_skip_layernorm, false, true},
    {"bias_gelu", "MatMul bias Add + Gelu/FastGelu -> BiasGelu / FastGelu with bias", td_pass_fuse_bias_gelu, false,
     true},
    {"embed_layernorm", "word/position/segment embedding sum + LayerNormalization -> EmbedLayerNormalization",
     td_pass_fuse_embed_layernorm, false, true},
    {"matmul_bias", "2-D MatMul + last-axis bias Add -> Gemm (standard op; after the fusions, which read the Add)",
     td_pass_matmul_bias, false, false},
    {"quantize", "int8: MatMul / Attention weights -> DynamicQuantizeMatMul (+ MultiHeadAttention)", td_pass_quantize,
     false, true},
    {"precision", "fp16/bf16 weights and compute, sensitive ops kept in fp32", td_pass_precision, false, false},
};
#define N_PASSES ((int)(sizeof passes / sizeof passes[0]))

const td_pass *td_pass_table(int *count) {
    *count = N_PASSES;
    return passes;
}

const td_pass *td_pass_find(const char *name) {
    for (int i = 0; i < N_PASSES; i++)
        if (strcmp(passes[i].name, name) == 0)
            return &passes[i];
    return NULL;
}

static td_opt_pass_stat *stat_for(td_opt_report *r, const char *name) {
    if (!r)
        return NULL;
    for (int i = 0; i < r->n_passes; i++)
        if (strcmp(r->passes[i].name, name) == 0)
            return &r->passes[i];
    if (r->n_passes >= TD_OPT_MAX_PASS_STATS)
        return NULL;
    td_opt_pass_stat *s = &r->passes[r->n_passes++];
    memset(s, 0, sizeof *s);
    strncpy(s->name, name, sizeof s->name - 1);
    return s;
}

static td_status run_one(td_ctx *ctx, td_opt_state *st, const td_pass *p, td_opt_report *report, int *changes) {
    int before = td_graph_live_nodes(st->model->graph);
    double t0 = td_now_s();
    *changes = 0;
    td_status s = p->run(ctx, st, changes);
    double dt = td_now_s() - t0;
    td_opt_pass_stat *stat = stat_for(report, p->name);
    if (stat) {
        stat->runs++;
        stat->changes += *changes;
        stat->seconds += dt;
    }
    if (s != TD_OK)
        return td_wrap(ctx, "optimizer pass '%s'", p->name);
    if (st->opts->verbose && *changes)
        td_info("pass %-15s %4d change(s), nodes %d -> %d, %.1f ms", p->name, *changes, before,
                td_graph_live_nodes(st->model->graph), dt * 1e3);
    return TD_OK;
}

/* The cleanup passes of the list (only those the caller asked for) until a fixpoint; the bound only guards against two cleanups undoing
 * each other forever, which would be a bug. */
static td_status run_cleanups(td_ctx *ctx, td_opt_state *st, const td_pass *const *list, int n,
                               td_opt_report *report) {
    for (int round = 0; round < 16; round++) {
        int total = 0;
        for (int i = 0; i < n; i++) {
            if (!list[i]->cleanup)
                continue;
            int c = 0;
            TD_TRY(run_one(ctx, st, list[i], report, &c));
            total += c;
        }
        if (total == 0)
            return TD_OK;
    }
    return TD_OK;
}

td_status td_pass_manager_run(td_ctx *ctx, td_opt_state *st, const td_pass *const *list, int n,
                              td_opt_report *report) {
    for (int i = 0; i < n; i++) {
        int c = 0;
        TD_TRY(run_one(ctx, st, list[i], report, &c));
        if (c > 0)
            TD_TRY(run_cleanups(ctx, st, list, n, report));
    }
    return TD_OK;
}
