/* The CPU backend: every registered op runs here; constant weights are packed
 * once in prepare, which also fuses epilogues (below); run walks the
 * non-hoisted, non-fused nodes of the current plan. */
#include "runtime/backend.h"
#include "runtime/cpu/kern.h"
#include "runtime/session_impl.h"

#include <stdlib.h>
#include <string.h>

static td_status cpu_supports_op(td_ctx *ctx, const td_rt_node *rn, const td_dtype *in_dtypes) {
    return TD_OK; /* op init already rejected what the CPU kernels do not implement */
}

/* GEMM epilogue fusion. MatMul (packed constant fp32/fp16/bf16 B, fp32
 * activations) -> com.microsoft BiasGelu / Gelu / FastGelu becomes one GEMM
 * whose epilogue adds the bias and applies the activation on each output tile
 * while it is in registers, instead of a second pass over an (M, N) tensor.
 * The math is the same: the epilogue computes act(acc + bias) with the same
 * vector functions the standalone ops use (td_v16_gelu_erf / _tanh).
 * Conditions: the MatMul's output has no other reader (not a graph output, one
 * consumer, read once, no shape function needs its data), neither node is
 * hoisted, the bias (if any) is a constant fp32 vector; its length is checked
 * against N by the Gelu node's shape function on every plan, which still runs.
 * The Gelu output becomes an alias of the MatMul output (the planner keeps
 * the buffer alive for both), and the Gelu node is skipped at run time. */
static bool is_gelu_op(const td_rt_node *rn, int *act) {
    const char *op = rn->node->op_type, *dom = rn->node->domain;
    if (!dom || strcmp(dom, "com.microsoft") != 0)
        return false;
    if (strcmp(op, "BiasGelu") == 0 || strcmp(op, "Gelu") == 0)
        *act = TD_GEMM_ACT_GELU_ERF;
    else if (strcmp(op, "FastGelu") == 0)
        *act = TD_GEMM_ACT_GELU_TANH;
    else
        return false;
    return true;
}

/* MatMul -> SkipLayerNormalization (fp32): the MatMul's epilogue adds the
 * SLN's other operand (the residual), the SLN then adds only its bias, in the
 * same order as unfused ((x + skip) + bias). The other operand must be computed
 * before the MatMul runs (an earlier node, a constant or a graph input); its
 * shape is checked per run on both sides (td_rt_residual_fusable). */
static bool fuse_skip_layernorm(td_session *s, td_rt_node *mm, td_rt_node *sln, int v) {
    const char *dom = sln->node->domain;
    if (sln->hoisted || sln->residual_fused || !dom || strcmp(dom, "com.microsoft") != 0 ||
        strcmp(sln->node->op_type, "SkipLayerNormalization") != 0 || sln->n_in < 2)
        return false;
    int slot = sln->in[0] == v ? 0 : sln->in[1] == v ? 1 : -1;
    if (slot < 0 || sln->in[1 - slot] < 0)
        return false;
    const td_rt_value *other = &s->vals[sln->in[1 - slot]];
    int mm_step = (int)(mm - s->nodes);
    if (other->dtype != TD_F32 || (other->producer >= 0 && other->producer >= mm_step))
        return false;
    /* all of the SLN's data must be fp32 for its fused fp32 path (the one that honors residual_fused) */
    for (int k = 0; k < sln->n_in; k++)
        if (sln->in[k] >= 0 && s->vals[sln->in[k]].dtype != TD_F32)
            return false;
    for (int k = 0; k < sln->n_out; k++)
        if (sln->out[k] >= 0 && s->vals[sln->out[k]].dtype != TD_F32)
            return false;
    mm->epi_residual = &other->t;
    sln->residual_fused = 1 + slot;
    s->n_fused++;
    return true;
}

/* GEMMs whose epilogue can take a consumer: MatMul with packed fp32/fp16/bf16
 * weights, and com.microsoft DynamicQuantizeMatMul (int8 weights, same
 * epilogue after dequantization; op_quant.c). */
static bool is_packed_gemm(const td_rt_node *rn, bool *quant) {
    *quant = strcmp(rn->def->domain, "com.microsoft") == 0 && strcmp(rn->def->op_type, "DynamicQuantizeMatMul") == 0;
    return rn->packed && (*quant || (strcmp(rn->def->op_type, "MatMul") == 0 && !*rn->def->domain));
}

static td_status fuse_epilogues(td_ctx *ctx, td_session *s) {
    /* readers[v]: how many input slots of live nodes read value v */
    int *readers = calloc((size_t)s->nv + 1, sizeof *readers);
    int *consumer = calloc((size_t)s->nv + 1, sizeof *consumer);
    if (!readers || !consumer) {
        free(readers);
        free(consumer);
        return td_fail_oom(ctx, (size_t)s->nv * 2 * sizeof(int), "fusion analysis");
    }
    for (int i = 0; i < s->nn; i++)
        for (int k = 0; k < s->nodes[i].n_in; k++)
            if (s->nodes[i].in[k] >= 0) {
                readers[s->nodes[i].in[k]]++;
                consumer[s->nodes[i].in[k]] = i;
            }
    for (int o = 0; o < s->n_outputs; o++)
        readers[s->output_vals[o]]++;
    s->n_fused = 0;
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *mm = &s->nodes[i];
        bool quant = false;
        if (mm->hoisted || !is_packed_gemm(mm, &quant) || mm->n_out != 1 || mm->out[0] < 0)
            continue;
        int v = mm->out[0], act = 0;
        const td_rt_value *mv = &s->vals[v];
        if (mv->kind != TD_V_ARENA || mv->dtype != TD_F32 || mv->need_data || readers[v] != 1)
            continue;
        td_rt_node *g = &s->nodes[consumer[v]];
        if (fuse_skip_layernorm(s, mm, g, v))
            continue;
        if (g->hoisted || g->fused_away || !is_gelu_op(g, &act) || g->n_out != 1 || g->out[0] < 0 || g->in[0] != v)
            continue;
        td_rt_value *gv = &s->vals[g->out[0]];
        const td_rt_value *bv = g->n_in > 1 && g->in[1] >= 0 ? &s->vals[g->in[1]] : NULL;
        if (gv->kind != TD_V_ARENA || gv->dtype != TD_F32 || gv->need_data)
            continue;
        if (bv && (bv->kind != TD_V_CONST || bv->t.dtype != TD_F32 || bv->t.rank != 1))
            continue;
        if (bv && quant && mm->n_in > 4 && mm->in[4] >= 0)
            continue; /* the epilogue adds one bias: the DynamicQuantizeMatMul's own */
        mm->epi_act = act;
        mm->epi_bias = bv ? &bv->t : NULL;
        g->fused_away = true;
        gv->kind = TD_V_ALIAS;
        gv->root = mv->root;
        s->n_fused++;
    }
    free(readers);
    free(consumer);
    return TD_OK;
}

static td_status cpu_prepare(td_ctx *ctx, td_session *s, void **state) {
    *state = NULL;
    s->weight_bytes = 0;
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        if (!rn->def->prepack || rn->hoisted)
            continue;
        td_rt_tensor *consts[64] = {NULL};
        if (rn->n_in > 64)
            continue;
        for (int k = 0; k < rn->n_in; k++)
            if (rn->in[k] >= 0 && s->vals[rn->in[k]].kind == TD_V_CONST)
                consts[k] = &s->vals[rn->in[k]].t;
        td_status st = rn->def->prepack(ctx, rn, consts, (int)s->opt.precision);
        if (st != TD_OK)
            return td_wrap(ctx, "packing weights of node '%s'", rn->node->name ? rn->node->name : "");
        if (rn->packed)
            s->weight_bytes += ((td_kern_packed *)rn->packed)->nbytes;
    }
    return fuse_epilogues(ctx, s);
}

static td_status cpu_run(td_ctx *ctx, td_session *s, void *state) {
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        if (rn->hoisted || rn->fused_away)
            continue; /* computed while planning / by its producer's GEMM epilogue */
        if ((rn->def->flags & TD_OP_VIEW) && rn->tout[0] && rn->tin[0] && rn->tout[0]->data == rn->tin[0]->data)
            continue; /* planned as an alias: nothing to do */
        TD_TRY(rn->def->exec(ctx, rn, rn->tin, rn->tout, &s->env));
    }
    return TD_OK;
}

static void cpu_free(void *state) { (void)state; }

const td_backend td_backend_cpu = {"cpu", cpu_supports_op, cpu_prepare, cpu_run, cpu_free, false};

const td_backend *td_backend_find(const char *name) {
    if (!name || strcmp(name, "cpu") == 0)
        return &td_backend_cpu;
    if (strcmp(name, "reference") == 0)
        return &td_backend_ref;
    if (strcmp(name, "cuda") == 0)
        return &td_backend_cuda;
    return NULL;
}
