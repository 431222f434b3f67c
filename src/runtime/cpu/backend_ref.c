/* The reference backend: the same op implementations as the CPU backend (attribute
 * parsing, layouts, broadcasting) with every heavy loop on the reference kernels
 * of ref_kern.h. The session sets env.reference and runs one thread
 * (reference_kernels below); prepare packs no weights and fuses no epilogues, so
 * MatMul/Gemm/Attention take their unpacked paths, which kern.c sends to
 * td_ref_gemm, and elementwise arithmetic takes the ops' plain loops instead of
 * the vector broadcast kernel. It is slow by design: it exists so that an
 * optimized backend is checked against code that shares none of its kernels
 * (`convert` validates against it; tests/unit/test_ref_backend.c checks that no
 * optimized kernel runs here). */
#include "runtime/backend.h"
#include "runtime/session_impl.h"

static td_status ref_supports_op(td_ctx *ctx, const td_rt_node *rn, const td_dtype *in_dtypes) {
    return TD_OK; /* op init already rejected what the CPU ops do not implement */
}

static td_status ref_prepare(td_ctx *ctx, td_session *s, void **state) {
    *state = NULL;
    s->weight_bytes = 0;
    s->n_fused = 0;
    return TD_OK;
}

static td_status ref_run(td_ctx *ctx, td_session *s, void *state) {
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        if (rn->hoisted)
            continue; /* computed while planning (on the reference kernels too) */
        if ((rn->def->flags & TD_OP_VIEW) && rn->tout[0] && rn->tin[0] && rn->tout[0]->data == rn->tin[0]->data)
            continue; /* planned as an alias: nothing to do */
        TD_TRY(rn->def->exec(ctx, rn, rn->tin, rn->tout, &s->env));
    }
    return TD_OK;
}

static void ref_free(void *state) { (void)state; }

const td_backend td_backend_ref = {"reference", ref_supports_op, ref_prepare, ref_run, ref_free, true};
