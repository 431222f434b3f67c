/* Small helpers the passes share: matching producers by op type, reading
 * constant inputs, single-use checks, and adding values/constants/nodes with
 * names that cannot collide. */
#ifndef TD_OPT_UTIL_H
#define TD_OPT_UTIL_H

#include "onnx/ir.h"

/* True for the default ONNX domain ("" or "ai.onnx"). */
bool opt_is_onnx_domain(const char *domain);
/* n is live, in the default domain and has op_type op. */
bool opt_is_op(const td_node *n, const char *op);
/* The live producer of v when it has op_type op (default domain), else NULL. */
td_node *opt_producer(const td_value *v, const char *op);
/* v is a constant: an initializer that is not also a graph input (those can be overridden). */
const td_tensor *opt_const(const td_value *v);
/* Constant with exactly one element, read as double (float and integer types). */
bool opt_const_scalar(const td_value *v, double *out);
/* Every element of a float constant equals x within rel tolerance tol (shape may be anything). */
bool opt_const_all_near(const td_value *v, double x, double tol);
/* Integer constant (int64/int32) with at most max elements into out; *n = count. */
bool opt_const_ints(const td_value *v, int64_t *out, int max, int *n);
/* Element i of a numeric tensor as double (0 for unsupported dtypes). */
double opt_tensor_get(const td_tensor *t, int64_t i);
/* v is used by exactly one node input and is not a graph output. */
bool opt_single_use(const td_value *v);
/* Index of the input of binary node n that is not v (0 or 1), -1 if v is not an input. */
int opt_other_input(const td_node *n, const td_value *v);
/* Reduction axes of n (attribute or, from opset 18, the second input): true when
 * they are exactly the last axis (-1 or rank-1 with rank known from x). */
bool opt_reduces_last_axis(const td_node *n, const td_value *x);
/* The graph input/initializer/value is a 1-D constant of length len, float type. */
bool opt_is_vector_const(const td_value *v, int64_t len);

/* New value named after prefix (made unique). */
td_status opt_new_value(td_ctx *ctx, td_graph *g, const char *prefix, td_value **out);
/* New initializer value holding a copy of data. */
td_status opt_new_const(td_ctx *ctx, td_graph *g, const char *prefix, td_dtype dtype, int rank,
                        const int64_t *dims, const void *data, size_t nbytes, td_value **out);
/* New initializer value that takes over buffer (malloc'd, nbytes of data; freed here on failure). */
td_status opt_new_const_owned(td_ctx *ctx, td_graph *g, const char *prefix, td_dtype dtype, int rank,
                              const int64_t *dims, void *buffer, size_t nbytes, td_value **out);
/* New value (named after prefix, v's shape, dtype to) = Cast(v, to); *node_out
 * (may be NULL) receives the Cast node. */
td_status opt_add_cast(td_ctx *ctx, td_graph *g, const char *prefix, td_value *v, td_dtype to, td_value **out,
                       td_node **node_out);
/* New node with a unique name derived from prefix. */
td_status opt_add_node(td_ctx *ctx, td_graph *g, const char *op_type, const char *domain, const char *prefix,
                       td_value *const *inputs, int n_inputs, td_value *const *outputs, int n_outputs,
                       td_node **out);
/* Replace the producer of out (the last node of a matched pattern) by a new
 * node computing out from inputs: out keeps its name, type and consumers; the
 * rest of the pattern loses its users and is removed by dead-node removal. */
td_status opt_replace_producer(td_ctx *ctx, td_graph *g, td_value *out, const char *op_type, const char *domain,
                               const char *prefix, td_value *const *inputs, int n_inputs, td_node **node);
/* Copy the tensor type of src onto dst (no-op when src has none). */
td_status opt_copy_type(td_ctx *ctx, td_value *dst, const td_value *src);
/* Number of dims of v's type, -1 when unknown. */
static inline int opt_rank(const td_value *v) { return v ? v->type.rank : -1; }
/* Same dimension: equal known values or equal symbolic names. */
bool opt_dim_equal(const td_dim *a, const td_dim *b);
/* Some node carries a subgraph attribute (If/Loop/Scan bodies may read outer values by name). */
bool opt_graph_has_subgraphs(const td_graph *g);

#endif
