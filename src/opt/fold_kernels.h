/* The optimizer's own reference kernels for constant folding: the shape
 * arithmetic and small elementwise ops exporters leave on constants (Shape,
 * Gather, Unsqueeze, Concat, Cast, Reshape, Slice, arithmetic, comparisons,
 * Where, Transpose, ConstantOfShape, Range, Expand ...). Plain loops: folded
 * tensors are small (bounded by max_elements). Signature of td_opt_eval_fn. */
#ifndef TD_OPT_FOLD_KERNELS_H
#define TD_OPT_FOLD_KERNELS_H

#include "opt/optimize.h"

td_status td_fold_eval(void *user, td_ctx *ctx, const td_node *node, const td_tensor *const *inputs, int n_inputs,
                       td_tensor **outputs, int n_outputs, int64_t max_elements);

#endif
