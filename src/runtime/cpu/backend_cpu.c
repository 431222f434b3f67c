/* The CPU backend: every registered op runs here; constant weights are packed
 * once in prepare; run walks the non-hoisted nodes of the current plan. */
#include "runtime/backend.h"
#include "runtime/cpu/kern.h"
#include "runtime/session_impl.h"

#include <string.h>

static td_status cpu_supports_op(td_ctx *ctx, const td_rt_node *rn, const td_dtype *in_dtypes) {
    return TD_OK; /* op init already rejected what the CPU kernels do not implement */
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
    return TD_OK;
}

static td_status cpu_run(td_ctx *ctx, td_session *s, void *state) {
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        if (rn->hoisted)
            continue;
        if ((rn->def->flags & TD_OP_VIEW) && rn->tout[0] && rn->tin[0] && rn->tout[0]->data == rn->tin[0]->data)
            continue; /* planned as an alias: nothing to do */
        TD_TRY(rn->def->exec(ctx, rn, rn->tin, rn->tout, &s->env));
    }
    return TD_OK;
}

static void cpu_free(void *state) { (void)state; }

const td_backend td_backend_cpu = {"cpu", cpu_supports_op, cpu_prepare, cpu_run, cpu_free};

const td_backend *td_backend_find(const char *name) {
    if (!name || strcmp(name, "cpu") == 0)
        return &td_backend_cpu;
    return NULL;
}
