/* Constant folding through the CPU runtime's own op implementations
 * (src/runtime/cpu, td_op_find): one node is run on constant tensors with the
 * op's init/shape/exec, so folded values are computed by the same code that
 * would compute them at inference time. Ops or dtypes the runtime does not
 * implement (or refuses) fall back to the optimizer's reference kernels
 * (fold_kernels.h). Signature of td_opt_eval_fn; user is the td_model (for the
 * opset of the node's domain) or NULL. */
#ifndef TD_OPT_FOLD_RUNTIME_H
#define TD_OPT_FOLD_RUNTIME_H

#include "opt/optimize.h"

td_status td_fold_eval_runtime(void *user, td_ctx *ctx, const td_node *node, const td_tensor *const *inputs,
                               int n_inputs, td_tensor **outputs, int n_outputs, int64_t max_elements);

#endif
