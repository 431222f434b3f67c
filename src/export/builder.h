/* Graph-building helpers for the exporter: constants, initializers and the op
 * patterns transformer encoders are made of, written in standard ONNX ops for a
 * chosen opset (14..21).
 *
 * Error handling is "sticky": the first failure is recorded on the builder (and
 * its ctx) and every later call returns NULL without doing anything, and every
 * helper given a NULL input returns NULL. Graph code can therefore chain calls
 * without checking each one and look at td_eb_status() once at the end:
 *
 *     td_value *h = td_eb_linear(b, x, w, bias);       // (batch, seq, out)
 *     h = td_eb_activation(b, "gelu", h);
 *     ...
 *     TD_TRY(td_eb_status(b));
 *
 * Names: every value gets "<scope>/<hint>" (made unique), so a graph reads like
 * the module tree it came from ("encoder.layer.3/attn_scores").
 *
 * Precision: b->compute is the dtype of the activations between the sensitive
 * ops (TD_F32, or TD_F16 for --dtype fp16). LayerNormalization, Softmax and the
 * attention mask always run in float32; the helpers cast around them.
 *
 * Ownership: the builder borrows the model (the caller owns it). */
#ifndef TD_EXPORT_BUILDER_H
#define TD_EXPORT_BUILDER_H

#include "onnx/ir.h"

typedef struct td_eb {
    td_ctx *ctx;
    td_model *model;
    td_graph *g;
    int opset;          /* ai.onnx opset the graph is written for */
    td_dtype compute;   /* TD_F32 or TD_F16: dtype of activations and matmul weights */
    td_status status;   /* first failure, TD_OK while all is well */
    char scope[256];    /* prefix of value names */
} td_eb;

/* Set up a builder on model (whose graph must be empty). */
void td_eb_init(td_eb *b, td_ctx *ctx, td_model *model, int opset, td_dtype compute);
td_status td_eb_status(const td_eb *b);
/* Record a failure the builder did not produce itself (e.g. a missing weight). */
td_status td_eb_fail(td_eb *b, td_status s);
/* Set the name prefix for the values created next ("" for none). */
void td_eb_scope(td_eb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- graph interface ---- */
/* Graph input of dtype with symbolic dims ("batch", "sequence"); a NULL entry in
 * params with dims[i] >= 0 is a fixed dim. */
td_value *td_eb_input(td_eb *b, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                      const char *const *params);
/* Make v a graph output called name (adds an Identity when v already has another name). */
td_value *td_eb_output(td_eb *b, td_value *v, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                       const char *const *params);

/* ---- constants ---- */
/* Initializer holding t under t's name (the graph takes t, also on failure). */
td_value *td_eb_initializer(td_eb *b, td_tensor *t);
td_value *td_eb_const_i64(td_eb *b, const char *hint, int rank, const int64_t *dims, const int64_t *data);
td_value *td_eb_scalar_i64(td_eb *b, const char *hint, int64_t v); /* rank 0 */
td_value *td_eb_vec_i64(td_eb *b, const char *hint, int n, const int64_t *data); /* rank 1 */
/* float32 vector, rank 1. */
td_value *td_eb_vec_f32(td_eb *b, const char *hint, int64_t n, const float *data);
/* Float scalar in the given dtype (TD_F32 or TD_F16), rank 0. */
td_value *td_eb_scalar_f(td_eb *b, const char *hint, td_dtype dtype, float v);

/* ---- nodes ---- */
/* Node with one output; attributes can be added to *node_out (may be NULL). */
td_value *td_eb_op(td_eb *b, const char *op, const char *hint, td_value *const *in, int n_in, td_node **node_out);
/* td_eb_op in another operator domain ("com.microsoft" for contrib ops). */
td_value *td_eb_op_domain(td_eb *b, const char *domain, const char *op, const char *hint, td_value *const *in,
                          int n_in, td_node **node_out);
td_value *td_eb_op1(td_eb *b, const char *op, const char *hint, td_value *a);
td_value *td_eb_op2(td_eb *b, const char *op, const char *hint, td_value *a, td_value *c);
/* Attribute helpers that respect the sticky error. */
void td_eb_attr_int(td_eb *b, td_node *n, const char *name, int64_t v);
void td_eb_attr_float(td_eb *b, td_node *n, const char *name, float v);
void td_eb_attr_ints(td_eb *b, td_node *n, const char *name, const int64_t *v, size_t count);

/* ---- patterns ---- */
/* Cast to dtype; returns x itself when its known dtype already is dtype. */
td_value *td_eb_cast(td_eb *b, td_value *x, td_dtype dtype);
td_value *td_eb_transpose(td_eb *b, td_value *x, const char *hint, int rank, const int64_t *perm);
td_value *td_eb_reshape(td_eb *b, td_value *x, const char *hint, int rank, const int64_t *shape);
td_value *td_eb_unsqueeze(td_eb *b, td_value *x, const char *hint, int n_axes, const int64_t *axes);
/* ReduceSum/ReduceMean/ReduceMax/... over axes, in the form the opset wants
 * (axes attribute before opset 18 except ReduceSum, which takes an input since 13). */
td_value *td_eb_reduce(td_eb *b, const char *op, td_value *x, const char *hint, int n_axes, const int64_t *axes,
                       bool keepdims);
/* x[:, index] along axis (Gather with a scalar index, the axis disappears). */
td_value *td_eb_select(td_eb *b, td_value *x, const char *hint, int axis, int64_t index);

/* y = x @ W^T + bias for a Hugging Face nn.Linear weight W stored (out, in).
 * W stays in its HF layout (so it streams from the safetensors mapping without a
 * copy) and the graph transposes it: MatMul(x, Transpose(W)). The Transpose of a
 * constant is folded once at session creation by ONNX Runtime's and tdeploy's
 * optimizers, after which this is the MatMul+Add form PyTorch exports produce.
 * bias may be NULL. x: (..., in) -> (..., out). */
td_value *td_eb_linear(td_eb *b, td_value *x, td_value *weight, td_value *bias, const char *hint);

/* LayerNorm over the last axis in float32 (gamma/beta are float32 initializers);
 * result is cast back to x's dtype. Opset >= 17 uses LayerNormalization, older
 * opsets the ReduceMean/Sub/Pow/Sqrt/Div decomposition. */
td_value *td_eb_layer_norm(td_eb *b, td_value *x, td_value *gamma, td_value *beta, float eps, const char *hint);

/* True when name is an activation td_eb_activation can express. */
bool td_eb_activation_supported(const char *name);
/* Comma-separated list of the supported activation names (static string). */
const char *td_eb_activation_names(void);
/* transformers' ACT2FN[name](x) in elementwise standard ops. */
td_value *td_eb_activation(td_eb *b, const char *name, td_value *x);

/* Additive attention mask from a (batch, seq) 0/1 mask of any numeric dtype:
 * (1 - mask) * float32_min, shape (batch, 1, 1, seq), float32. With the dtype's
 * minimum (as transformers uses) a fully masked row gives equal scores and a
 * uniform softmax, never NaN: score + min stays finite for any finite score. */
td_value *td_eb_attention_bias(td_eb *b, td_value *mask);

/* Multi-head self-attention core: q, k, v (batch, seq, hidden) in compute dtype
 * -> context (batch, seq, hidden). Scores are scaled by 1/sqrt(head_dim) and
 * softmaxed in float32 with the additive mask. */
td_value *td_eb_attention(td_eb *b, td_value *q, td_value *k, td_value *v, td_value *mask_bias, int64_t heads,
                          int64_t head_dim);

#endif
