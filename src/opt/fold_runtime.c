/* Folding one node through the runtime's op table (see fold_runtime.h). */
#include "opt/fold_runtime.h"

#include "core/checked.h"
#include "core/log.h"
#include "opt/fold_kernels.h"
#include "opt/opt_util.h"
#include "runtime/cpu/kern.h"
#include "runtime/rt.h"

#include <stdlib.h>
#include <string.h>

#define MAX_IO 16

/* Run n on the runtime; TD_ERR_UNSUPPORTED (message cleared by the caller) when
 * the runtime cannot, so the caller falls back. */
static td_status run_runtime(const td_model *m, td_ctx *ctx, const td_node *n, const td_tensor *const *inputs,
                             int n_in, td_tensor **outs, int n_out, int64_t max) {
    const td_op_def *def = td_op_find(opt_is_onnx_domain(n->domain) ? "" : n->domain, n->op_type);
    if (!def || n_in > MAX_IO || n_out > MAX_IO)
        return TD_ERR_UNSUPPORTED;
    td_rt_tensor tin_store[MAX_IO], tout_store[MAX_IO];
    td_rt_tensor *tin[MAX_IO + 1] = {0}, *tout[MAX_IO + 1] = {0};
    int in_idx[MAX_IO + 1], out_idx[MAX_IO + 1];
    td_dtype in_dt[MAX_IO + 1], out_dt[MAX_IO + 1];
    void *bufs[MAX_IO] = {0};
    td_status s = TD_OK;
    td_rt_node rn;
    memset(&rn, 0, sizeof rn);
    rn.node = n;
    rn.def = def;
    rn.opset = m ? td_model_opset(m, n->domain) : 0;
    rn.n_in = n_in;
    rn.n_out = n_out;
    rn.in = in_idx;
    rn.out = out_idx;
    rn.tin = tin;
    rn.tout = tout;
    for (int i = 0; i < n_in; i++) {
        const td_tensor *t = inputs[i];
        in_idx[i] = t ? i : -1;
        in_dt[i] = t ? t->dtype : TD_UNDEFINED;
        if (!t)
            continue;
        if (t->rank > TD_MAX_RANK || t->dtype == TD_STRING || (t->nbytes && !t->data))
            return TD_ERR_UNSUPPORTED;
        tin_store[i] = (td_rt_tensor){.dtype = t->dtype, .rank = t->rank, .data = (void *)t->data};
        memcpy(tin_store[i].shape, t->dims, sizeof(int64_t) * (size_t)t->rank);
        tin[i] = &tin_store[i];
    }
    for (int i = 0; i < n_out; i++) {
        out_idx[i] = n->outputs[i] ? i : -1;
        memset(&tout_store[i], 0, sizeof tout_store[i]);
        tout[i] = n->outputs[i] ? &tout_store[i] : NULL;
        out_dt[i] = TD_UNDEFINED;
    }
    void *scratch = NULL;
    td_rt_env env = {.threads = 1};
    if ((s = def->init(ctx, &rn, in_dt, out_dt)) != TD_OK)
        goto out;
    for (int i = 0; i < n_out; i++)
        if (tout[i])
            tout[i]->dtype = out_dt[i];
    if ((s = def->shape(ctx, &rn, tin, tout)) != TD_OK)
        goto out;
    for (int i = 0; i < n_out; i++) {
        if (!tout[i])
            continue;
        int64_t numel;
        size_t nb;
        if (tout[i]->rank < 0 || tout[i]->rank > TD_MAX_RANK || !td_shape_numel(tout[i]->shape, tout[i]->rank, &numel) ||
            numel > max || td_dtype_size(tout[i]->dtype) == 0 ||
            !td_mul_size((size_t)numel, td_dtype_size(tout[i]->dtype), &nb)) {
            s = TD_ERR_UNSUPPORTED; /* too large to fold, or nothing the IR can hold */
            goto out;
        }
        bufs[i] = calloc(nb ? nb : 1, 1);
        if (!bufs[i]) {
            s = td_fail_oom(ctx, nb, "a folded tensor");
            goto out;
        }
        tout[i]->data = bufs[i];
    }
    if (rn.scratch_bytes) {
        scratch = calloc(rn.scratch_bytes, 1);
        if (!scratch) {
            s = td_fail_oom(ctx, rn.scratch_bytes, "op scratch");
            goto out;
        }
        rn.scratch = scratch;
    }
    if ((s = def->exec(ctx, &rn, tin, tout, &env)) != TD_OK)
        goto out;
    for (int i = 0; i < n_out && s == TD_OK; i++) {
        if (!tout[i])
            continue;
        size_t nb = td_rt_nbytes(tout[i]);
        s = td_tensor_new_owned(ctx, n->outputs[i]->name, tout[i]->dtype, tout[i]->rank, tout[i]->shape, bufs[i], nb,
                                &outs[i]);
        bufs[i] = NULL; /* owned by the tensor now (or freed by td_tensor_new_owned on failure) */
    }
out:
    free(scratch);
    free(rn.state);
    td_kern_packed_free(rn.packed);
    for (int i = 0; i < n_out; i++)
        free(bufs[i]);
    if (s != TD_OK)
        for (int i = 0; i < n_out; i++) {
            td_tensor_free(outs[i]);
            outs[i] = NULL;
        }
    return s;
}

td_status td_fold_eval_runtime(void *user, td_ctx *ctx, const td_node *n, const td_tensor *const *inputs, int n_in,
                               td_tensor **outs, int n_out, int64_t max) {
    td_status s = run_runtime(user, ctx, n, inputs, n_in, outs, n_out, max);
    if (s == TD_OK || s == TD_ERR_OUT_OF_MEMORY)
        return s;
    /* the runtime lacks this op or dtype (or refused the node): the reference kernels decide */
    td_debug("fold: %s node '%s' through the reference kernels (runtime: %s)", n->op_type, n->name,
             s == TD_ERR_UNSUPPORTED && !td_error_message(ctx)[0] ? "no such op or too large" : td_error_message(ctx));
    td_clear_error(ctx);
    return td_fold_eval(NULL, ctx, n, inputs, n_in, outs, n_out, max);
}
