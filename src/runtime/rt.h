/* Runtime internals shared by the session, the planner and the backends.
 *
 * A session holds one td_rt_value per graph value and one td_rt_node per node
 * (topological order). Values are classified when the session is created:
 *   - CONST:  initializers (data owned by the model) and graph inputs' data;
 *   - HOIST:  outputs of nodes that depend only on input shapes (Shape ->
 *             Gather -> Concat -> Reshape's shape argument, masks built from
 *             Range ...) or whose data a shape function needs; they are
 *             computed while planning and kept in plan memory;
 *   - ARENA:  activations, given an offset in the activation arena;
 *   - ALIAS:  outputs of view ops (Reshape, Squeeze, Identity ...) that share
 *             their input's buffer.
 * Ops are described by td_op_def (init: attributes + dtypes, once; shape: output
 * shapes for the current input shapes, once per plan; exec: compute, every run). */
#ifndef TD_RUNTIME_RT_H
#define TD_RUNTIME_RT_H

#include "core/ctx.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "onnx/ir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A contiguous row-major tensor as ops see it. */
typedef struct td_rt_tensor {
    td_dtype dtype;
    int rank;
    int64_t shape[TD_MAX_RANK];
    void *data;
} td_rt_tensor;

int64_t td_rt_numel(const td_rt_tensor *t);
size_t td_rt_nbytes(const td_rt_tensor *t);

typedef struct td_rt_node td_rt_node;
typedef struct td_rt_env td_rt_env;

enum {
    TD_OP_VIEW = 1u << 0,       /* output 0 is input 0 reinterpreted (same bytes) */
    TD_OP_SHAPE_ONLY = 1u << 1, /* reads only the shapes of its inputs, never their data */
    TD_OP_IN_PLACE = 1u << 2,   /* output 0 is input 0's bytes, which exec updates in place (runs every time,
                                 * unlike a VIEW): the KV cache append writes into the caller's cache buffer */
    TD_OP_IN_PLACE_KV = 1u << 3, /* outputs 1 and 2 are inputs 3 and 4's bytes, updated in place (attention that
                                  * reads and writes the caller's past/present key and value caches as one buffer) */
};

typedef struct td_op_def {
    const char *domain;  /* "" = ai.onnx, "com.microsoft" */
    const char *op_type;
    int min_opset, max_opset; /* opset versions of the domain this implementation follows */
    /* Once per session: parse and check attributes, check input dtypes and set
     * output dtypes. in_dtypes[i] is TD_UNDEFINED for an omitted optional input.
     * May store parsed attributes in rn->state (freed with free()). */
    td_status (*init)(td_ctx *ctx, td_rt_node *rn, const td_dtype *in_dtypes, td_dtype *out_dtypes);
    /* Once per plan: output ranks and shapes from input shapes. Inputs in
     * data_inputs have data; others only shapes. May set rn->scratch_bytes. */
    td_status (*shape)(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out);
    /* Every run: compute outputs (buffers already sized by shape()). */
    td_status (*exec)(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                      td_rt_env *env);
    uint32_t data_inputs; /* bit i: shape() reads input i's data */
    unsigned flags;
    /* Weight prepacking (optional): called once at session creation with the
     * constant inputs known; may build packed copies in rn->packed. */
    td_status (*prepack)(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *const_in, int precision);
} td_op_def;

struct td_rt_node {
    const td_node *node;
    const td_op_def *def;
    int64_t opset;
    int n_in, n_out;
    int *in, *out; /* value indices, -1 for omitted optional slots */
    td_rt_tensor **tin, **tout; /* the values' tensors (NULL for omitted slots), stable for the session */
    void *state;   /* parsed attributes (malloc'd, freed with free) */
    void *packed;  /* prepacked weights (see runtime/cpu/kern.h), freed with td_kern_packed_free */
    size_t scratch_bytes; /* set by shape(): temporary bytes the op needs during exec */
    void *scratch;        /* set by the planner: arena memory live only during this node */
    bool hoisted;         /* computed while planning */
    bool const_output;    /* output 0 is const_val, known at init (Constant): no buffer, no planning */
    td_rt_tensor const_val;
    int threads;          /* worker threads of the session (for per-thread scratch sizing) */
    /* Epilogue fusion, decided once by the backend (backend_cpu.c): a MatMul
     * whose only consumer is a bias + activation node computes that node's
     * output in its GEMM epilogue, while each output tile is still in
     * registers; the consumer is then fused_away (not run) and its output is
     * an alias of the MatMul's. epi_act is a td_gemm_act (0 = none), epi_bias
     * a constant fp32 (N) or NULL. */
    int epi_act;
    const td_rt_tensor *epi_bias;
    bool fused_away;
    /* MatMul -> SkipLayerNormalization: the MatMul adds the SLN's other
     * operand (epi_residual) in its epilogue and the SLN then skips that add
     * (residual_fused = 1 + the SLN input slot, 0 or 1, holding the MatMul
     * output; 0 = not fused). Both sides decide per run with
     * td_rt_residual_fusable, so a plan where the operand is broadcast (not the
     * full (M, N)) runs unfused. */
    const td_rt_tensor *epi_residual;
    int residual_fused;
};

/* Same element count: the residual add can move into the producer's epilogue. */
static inline bool td_rt_residual_fusable(const td_rt_tensor *out, const td_rt_tensor *residual) {
    return out->rank == residual->rank && td_rt_numel(out) == td_rt_numel(residual);
}

struct td_rt_env {
    int threads;
    struct td_threadpool *pool; /* owned by the session; NULL = single-threaded */
    /* Set by the reference backend (backend_ref.c): kern.h calls go to the
     * reference loops of ref_kern.h and ops take their plain paths (no
     * packing, no threads, no vector kernels, no fusion). */
    bool reference;
};

/* "node 'name' (Op, opset 17): <message>" */
td_status td_node_fail(td_ctx *ctx, const td_rt_node *rn, td_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Registry (src/runtime/cpu/ops_registry.c). */
const td_op_def *td_op_find(const char *domain, const char *op_type);
/* Every registered op (for the conformance runner): count and i-th. */
int td_op_count(void);
const td_op_def *td_op_at(int i);

#endif
