/* The CUDA backend: the session does graph analysis, shape inference and
 * activation planning exactly as for the CPU (runtime/plan.c); this backend
 * mirrors the plan on the GPU. The device arena has the host arena's layout
 * (same offsets), constants are uploaded once (shared by every session of the
 * process that runs the same loaded model: "weights once"), shape-derived
 * (hoisted) values after each plan, inputs before each run; graph outputs are
 * copied back into the host arena, where td_session_get_output reads them.
 *
 * Every non-hoisted node must have a CUDA kernel: prepare names the first
 * one that has none (an engine never falls back to the CPU silently).
 * Runs after the first of a plan are captured once as a CUDA graph and
 * replayed (one launch for the whole forward pass). */
#include "engine/engine.h"
#include "engine/timing_cache.h"
#include "runtime/backend.h"
#include "runtime/cuda_loader.h"
#include "runtime/cpu/op_util.h"
#include "runtime/session_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- process-wide constant cache: one device copy per host weight buffer ---- */
typedef struct wentry {
    const void *host;
    size_t n;
    void *dev;
    int refs;
} wentry;
static pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;
static wentry *wcache;
static int wcache_n, wcache_cap;
static size_t wcache_bytes;

static td_status weight_get(td_ctx *ctx, const tdc_api *api, tdc_ctx *dc, const void *host, size_t n, void **dev,
                            bool *fresh) {
    pthread_mutex_lock(&wlock);
    for (int i = 0; i < wcache_n; i++)
        if (wcache[i].host == host && wcache[i].n == n) {
            wcache[i].refs++;
            *dev = wcache[i].dev;
            *fresh = false;
            pthread_mutex_unlock(&wlock);
            return TD_OK;
        }
    if (wcache_n == wcache_cap) {
        int cap = wcache_cap ? 2 * wcache_cap : 64;
        wentry *p = realloc(wcache, (size_t)cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&wlock);
            return td_fail_oom(ctx, (size_t)cap * sizeof *p, "the GPU weight table");
        }
        wcache = p;
        wcache_cap = cap;
    }
    void *d = NULL;
    if (api->alloc(dc, n, &d) || api->upload(dc, d, host, n) || api->sync(dc)) {
        if (d)
            api->free(dc, d);
        pthread_mutex_unlock(&wlock);
        return td_fail(ctx, TD_ERR_OUT_OF_MEMORY, "uploading %zu bytes of weights to the GPU: %s", n, api->error(dc));
    }
    wcache[wcache_n++] = (wentry){host, n, d, 1};
    wcache_bytes += n;
    *dev = d;
    *fresh = true;
    pthread_mutex_unlock(&wlock);
    return TD_OK;
}

static void weight_put(const tdc_api *api, tdc_ctx *dc, void *dev) {
    pthread_mutex_lock(&wlock);
    for (int i = 0; i < wcache_n; i++)
        if (wcache[i].dev == dev) {
            if (--wcache[i].refs == 0) {
                api->free(dc, dev);
                wcache_bytes -= wcache[i].n;
                wcache[i] = wcache[--wcache_n];
            }
            break;
        }
    pthread_mutex_unlock(&wlock);
}

typedef struct cuda_state {
    const tdc_api *api;
    tdc_ctx *dc;
    td_session *s;
    void **vdev;      /* per value index: device copy of a CONST / HOIST / INPUT root, or NULL */
    size_t *vdev_cap; /* bytes allocated for HOIST / INPUT copies (CONST: 0, owned by the cache) */
    bool *vconst;     /* vdev[v] comes from the weight cache */
    bool *needed;     /* root value read by some node that runs on the GPU */
    void *arena;
    size_t arena_cap;
    uint64_t plan_seen; /* s->n_plans when the device mirrored the plan */
    uint64_t plan_runs; /* runs on the current plan */
    void *graph;        /* CUDA graph of the current plan */
} cuda_state;

static const char *node_label(const td_rt_node *rn) { return rn->node->name && *rn->node->name ? rn->node->name : rn->node->op_type; }

/* ---- op table: what has a CUDA kernel ---- */
typedef struct ew_map {
    const char *op;
    int ew;
} ew_map;
static const ew_map ew_ops[] = {
    {"Add", TDC_EW_ADD}, {"Sub", TDC_EW_SUB}, {"Mul", TDC_EW_MUL}, {"Div", TDC_EW_DIV}, {"Pow", TDC_EW_POW},
    {"Mod", TDC_EW_MOD}, {"Equal", TDC_EW_EQUAL}, {"Greater", TDC_EW_GREATER}, {"Less", TDC_EW_LESS},
    {"GreaterOrEqual", TDC_EW_GREATER_EQ}, {"LessOrEqual", TDC_EW_LESS_EQ}, {"And", TDC_EW_AND}, {"Or", TDC_EW_OR},
    {"Xor", TDC_EW_XOR}, {"Not", TDC_EW_NOT}, {"Where", TDC_EW_WHERE}, {"Min", TDC_EW_MIN}, {"Max", TDC_EW_MAX},
    {"Neg", TDC_EW_NEG}, {"Abs", TDC_EW_ABS}, {"Sqrt", TDC_EW_SQRT}, {"Exp", TDC_EW_EXP}, {"Log", TDC_EW_LOG},
    {"Tanh", TDC_EW_TANH}, {"Relu", TDC_EW_RELU}, {"Sigmoid", TDC_EW_SIGMOID}, {"Erf", TDC_EW_ERF},
    {"Reciprocal", TDC_EW_RECIPROCAL}, {"Cast", TDC_EW_COPY}, {"Expand", TDC_EW_COPY},
};
static const char *const other_ops[] = {"Gather", "GatherElements", "CumSum", "Transpose", "Concat", "Split",
                                        "Slice", "Softmax", "LayerNormalization", "MatMul", "Gemm", "ReduceSum",
                                        NULL};
static const char *const ms_ops[] = {"SkipLayerNormalization", "EmbedLayerNormalization", "Attention", "BiasGelu",
                                     "Gelu", "FastGelu", NULL};

static bool is_ms(const td_rt_node *rn) { return rn->node->domain && strcmp(rn->node->domain, "com.microsoft") == 0; }
static bool is_onnx(const td_rt_node *rn) { return !rn->node->domain || !*rn->node->domain || strcmp(rn->node->domain, "ai.onnx") == 0; }

static int ew_code(const td_rt_node *rn) {
    if (!is_onnx(rn))
        return -1;
    for (size_t i = 0; i < sizeof ew_ops / sizeof ew_ops[0]; i++)
        if (strcmp(rn->node->op_type, ew_ops[i].op) == 0)
            return ew_ops[i].ew;
    return -1;
}

bool td_cuda_has_kernel(const td_rt_node *rn);
bool td_cuda_has_kernel(const td_rt_node *rn) {
    if (rn->def->flags & TD_OP_VIEW)
        return true; /* Reshape, Flatten, Squeeze, Unsqueeze, Identity: aliases or a device copy */
    if (ew_code(rn) >= 0)
        return true;
    const char *const *list = is_ms(rn) ? ms_ops : is_onnx(rn) ? other_ops : NULL;
    for (int i = 0; list && list[i]; i++)
        if (strcmp(rn->node->op_type, list[i]) == 0)
            return true;
    return false;
}

/* For the engine's kernel table and `inspect`: which kernel runs rn. */
const char *td_cuda_kernel_name(const td_rt_node *rn, int precision);
const char *td_cuda_kernel_name(const td_rt_node *rn, int precision) {
    const char *t = rn->node->op_type;
    const char *gemm = precision == 1 ? "cublasLt fp16 tensor-core GEMM, fp32 accumulate"
                       : precision == 2 ? "cublasLt bf16 tensor-core GEMM, fp32 accumulate"
                                        : "cublasLt fp32 GEMM (TF32 off)";
    if (rn->def->flags & TD_OP_VIEW)
        return "view (alias, or a device copy)";
    if (strcmp(t, "MatMul") == 0)
        return gemm;
    if (strcmp(t, "Gemm") == 0)
        return precision == 0 ? "cublasLt fp32 GEMM (TF32 off) + bias epilogue" : "cublasLt tensor-core GEMM + bias epilogue";
    if (strcmp(t, "Attention") == 0)
        return "cublasLt QKV GEMM + bias epilogue; attention_ref_kernel (fp32 softmax)";
    if (strcmp(t, "SkipLayerNormalization") == 0 || strcmp(t, "LayerNormalization") == 0)
        return "layernorm_kernel (fp32 statistics)";
    if (strcmp(t, "EmbedLayerNormalization") == 0)
        return "embed_ln_kernel (gather + sum + LayerNorm, fp32 statistics)";
    if (strcmp(t, "Softmax") == 0)
        return "softmax_kernel (fp32)";
    if (strcmp(t, "Gather") == 0)
        return "gather_kernel";
    if (strcmp(t, "GatherElements") == 0)
        return "gather_elements_kernel";
    if (strcmp(t, "CumSum") == 0)
        return "cumsum_kernel";
    if (strcmp(t, "Transpose") == 0 || strcmp(t, "Concat") == 0 || strcmp(t, "Split") == 0 ||
        strcmp(t, "Slice") == 0)
        return "strided_kernel";
    if (strcmp(t, "ReduceSum") == 0)
        return "reduce_kernel (a warp per output, fp32 accumulation)";
    if (strcmp(t, "Cast") == 0)
        return "cast kernel (ew_kernel / cast_f32_to_f16 / cast_f16_to_f32)";
    return "ew_kernel (elementwise, broadcasting; Gelu/erf/tanh in fp32)";
}

/* Root value, device pointer of value v (NULL if it has no device copy). */
static void *dev_ptr(cuda_state *cs, int v) {
    td_session *s = cs->s;
    const td_rt_value *rv = &s->vals[v], *root = &s->vals[rv->root];
    if (root->kind == TD_V_ARENA)
        return (char *)cs->arena + ((const uint8_t *)rv->t.data - s->arena);
    void *base = cs->vdev[rv->root];
    if (!base)
        return NULL;
    return (char *)base + ((const char *)rv->t.data - (const char *)root->t.data);
}

static void to_tdc(tdc_tensor *d, const td_rt_tensor *t, void *dev) {
    memset(d, 0, sizeof *d);
    d->dtype = t->dtype;
    d->rank = t->rank;
    for (int i = 0; i < t->rank; i++)
        d->shape[i] = t->shape[i];
    d->data = dev;
}

static bool host_readable(const td_session *s, int v) {
    td_vkind k = s->vals[s->vals[v].root].kind;
    return k == TD_V_CONST || k == TD_V_HOIST;
}

static int norm_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

static td_status fail_dev(td_ctx *ctx, cuda_state *cs, const td_rt_node *rn) {
    return td_node_fail(ctx, rn, TD_ERR_DEVICE, "CUDA: %s", cs->api->error(cs->dc));
}

/* Enqueue one node's kernels. */
static td_status run_node(td_ctx *ctx, cuda_state *cs, td_rt_node *rn) {
    const tdc_api *api = cs->api;
    td_session *s = cs->s;
    tdc_op op;
    memset(&op, 0, sizeof op);
    op.name = node_label(rn);
    if (rn->n_in > TDC_MAX_IN || rn->n_out > TDC_MAX_OUT)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "too many inputs/outputs for the CUDA backend");
    op.n_in = rn->n_in;
    op.n_out = rn->n_out;
    for (int k = 0; k < rn->n_in; k++)
        if (rn->in[k] >= 0)
            to_tdc(&op.in[k], rn->tin[k], dev_ptr(cs, rn->in[k]));
    for (int k = 0; k < rn->n_out; k++)
        if (rn->out[k] >= 0)
            to_tdc(&op.out[k], rn->tout[k], dev_ptr(cs, rn->out[k]));
    if (rn->scratch)
        op.scratch = (char *)cs->arena + ((uint8_t *)rn->scratch - s->arena);
    op.scratch_bytes = rn->scratch_bytes;
    const td_node *n = rn->node;
    const char *t = n->op_type;
    int ew = ew_code(rn);
    int rank0 = rn->n_in > 0 && rn->tin[0] ? rn->tin[0]->rank : 0;

    if (rn->def->flags & TD_OP_VIEW) {
        /* a view that the planner could not alias: copy the bytes */
        op.kind = TDC_EW;
        op.n_in = 1;
        op.iattr[0] = TDC_EW_COPY;
        op.in[0] = op.out[0];
        op.in[0].data = dev_ptr(cs, rn->in[0]);
        op.n_out = 1;
    } else if (ew >= 0) {
        op.kind = TDC_EW;
        op.iattr[0] = ew;
        if (strcmp(t, "Expand") == 0 || strcmp(t, "Cast") == 0)
            op.n_in = 1;
        if ((ew == TDC_EW_MIN || ew == TDC_EW_MAX) && op.n_in != 2)
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "the CUDA Min/Max take exactly two inputs");
    } else if (is_ms(rn) && (strcmp(t, "BiasGelu") == 0 || strcmp(t, "Gelu") == 0 || strcmp(t, "FastGelu") == 0)) {
        op.kind = TDC_EW;
        op.iattr[0] = strcmp(t, "FastGelu") == 0 ? TDC_EW_GELU_TANH : TDC_EW_GELU_ERF;
        op.n_in = rn->n_in > 1 && rn->in[1] >= 0 ? 2 : 1;
    } else if (strcmp(t, "Gather") == 0) {
        op.kind = TDC_GATHER;
        op.iattr[0] = norm_axis(td_node_attr_int(n, "axis", 0), rank0);
    } else if (strcmp(t, "GatherElements") == 0) {
        op.kind = TDC_GATHER_ELEMENTS;
        op.iattr[0] = norm_axis(td_node_attr_int(n, "axis", 0), rank0);
    } else if (strcmp(t, "CumSum") == 0) {
        if (!host_readable(s, rn->in[1]))
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "CumSum axis must be a constant on CUDA");
        op.kind = TDC_CUMSUM;
        op.iattr[0] = norm_axis(td_ldi(rn->tin[1]->data, rn->tin[1]->dtype, 0), rank0);
        op.iattr[1] = td_node_attr_int(n, "exclusive", 0);
        op.iattr[2] = td_node_attr_int(n, "reverse", 0);
        op.n_in = 1;
    } else if (strcmp(t, "Transpose") == 0) {
        size_t np = 0;
        const int64_t *perm = td_node_attr_ints(n, "perm", &np);
        int64_t instr[TDC_MAX_RANK], st = 1;
        for (int d = rank0 - 1; d >= 0; d--) {
            instr[d] = st;
            st *= rn->tin[0]->shape[d];
        }
        op.kind = TDC_COPY_STRIDED;
        for (int d = 0; d < rank0; d++)
            op.strides[d] = instr[perm && np == (size_t)rank0 ? perm[d] : rank0 - 1 - d];
    } else if (strcmp(t, "Concat") == 0 || strcmp(t, "Split") == 0) {
        bool concat = t[0] == 'C';
        const td_rt_tensor *whole = concat ? rn->tout[0] : rn->tin[0];
        int axis = norm_axis(td_node_attr_int(n, "axis", 0), whole->rank);
        int64_t wstr[TDC_MAX_RANK], st = 1, at = 0;
        for (int d = whole->rank - 1; d >= 0; d--) {
            wstr[d] = st;
            st *= whole->shape[d];
        }
        int parts = concat ? rn->n_in : rn->n_out;
        for (int k = 0; k < parts; k++) {
            int v = concat ? rn->in[k] : rn->out[k];
            if (v < 0)
                continue;
            const td_rt_tensor *part = concat ? rn->tin[k] : rn->tout[k];
            tdc_op cp;
            memset(&cp, 0, sizeof cp);
            cp.kind = TDC_COPY_STRIDED;
            cp.name = op.name;
            cp.n_in = cp.n_out = 1;
            if (concat) { /* part -> slab of the output */
                to_tdc(&cp.in[0], part, dev_ptr(cs, v));
                to_tdc(&cp.out[0], part, dev_ptr(cs, rn->out[0]));
                int64_t pst = 1;
                for (int d = part->rank - 1; d >= 0; d--) {
                    cp.strides[d] = pst;
                    pst *= part->shape[d];
                }
                cp.iattr[1] = 1;
                cp.iattr[2] = at * wstr[axis];
                memcpy(cp.dst_strides, wstr, sizeof wstr);
            } else { /* slab of the input -> part */
                to_tdc(&cp.in[0], whole, dev_ptr(cs, rn->in[0]));
                to_tdc(&cp.out[0], part, dev_ptr(cs, v));
                cp.iattr[0] = at * wstr[axis];
                memcpy(cp.strides, wstr, sizeof wstr);
            }
            if (td_rt_numel(part) && api->run_op(cs->dc, &cp))
                return fail_dev(ctx, cs, rn);
            at += part->rank > axis ? part->shape[axis] : 0;
        }
        return TD_OK;
    } else if (strcmp(t, "Slice") == 0) {
        /* starts/ends/axes/steps are constants or shape-derived (hoisted): the host plans the copy */
        for (int k = 1; k < rn->n_in; k++)
            if (rn->in[k] >= 0 && !host_readable(s, rn->in[k]))
                return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED,
                                    "the CUDA Slice takes starts/ends/axes/steps known when planning (constants or "
                                    "shape-derived values)");
        int64_t start[TD_MAX_RANK], step[TD_MAX_RANK], shape[TD_MAX_RANK], st = 1;
        TD_TRY(td_slice_plan(ctx, rn, rn->tin, start, step, shape));
        op.kind = TDC_COPY_STRIDED;
        op.n_in = 1;
        for (int d = rank0 - 1; d >= 0; d--) { /* source element = sum (start_d + c_d * step_d) * stride_d */
            op.iattr[0] += start[d] * st;
            op.strides[d] = shape[d] > 1 ? step[d] * st : 0;
            st *= rn->tin[0]->shape[d];
        }
    } else if (strcmp(t, "ReduceSum") == 0) {
        int64_t axes[TD_MAX_RANK];
        int na = 0;
        if (rn->n_in > 1 && rn->in[1] >= 0) {
            if (!host_readable(s, rn->in[1]))
                return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "the CUDA ReduceSum takes axes known when planning");
            TD_TRY(td_read_int_list(ctx, rn, rn->tin[1], "axes", axes, TD_MAX_RANK, &na));
        } else if (rn->opset < 13) {
            size_t cnt = 0;
            const int64_t *ax = td_node_attr_ints(n, "axes", &cnt);
            if (cnt > TD_MAX_RANK)
                return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "too many axes (%zu)", cnt);
            for (size_t i = 0; i < cnt; i++)
                axes[i] = ax[i];
            na = (int)cnt;
        }
        op.kind = TDC_REDUCE_SUM;
        op.n_in = 1;
        if (na == 0 && td_node_attr_int(n, "noop_with_empty_axes", 0)) {
            op.kind = TDC_EW; /* no axes and noop: the input unchanged */
            op.iattr[0] = TDC_EW_COPY;
        } else if (na == 0) {
            op.iattr[0] = (1 << rank0) - 1;
        }
        for (int i = 0; i < na; i++) {
            int a;
            if (!td_norm_axis(axes[i], rank0, &a))
                return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside rank %d", (long long)axes[i], rank0);
            op.iattr[0] |= (int64_t)1 << a;
        }
    } else if (strcmp(t, "Softmax") == 0) {
        int64_t dflt = rn->opset >= 13 ? -1 : 1;
        if (norm_axis(td_node_attr_int(n, "axis", dflt), rank0) != rank0 - 1)
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "the CUDA Softmax runs over the last axis only");
        op.kind = TDC_SOFTMAX;
    } else if (strcmp(t, "LayerNormalization") == 0) {
        int axis = norm_axis(td_node_attr_int(n, "axis", -1), rank0);
        int64_t h = 1;
        for (int d = axis; d < rank0; d++)
            h *= rn->tin[0]->shape[d];
        op.kind = TDC_LAYERNORM;
        op.iattr[0] = h;
        op.fattr[0] = td_node_attr_float(n, "epsilon", 1e-5f);
    } else if (strcmp(t, "SkipLayerNormalization") == 0) {
        op.kind = TDC_SKIP_LAYERNORM;
        op.fattr[0] = td_node_attr_float(n, "epsilon", 1e-12f);
    } else if (strcmp(t, "EmbedLayerNormalization") == 0) {
        op.kind = TDC_EMBED_LAYERNORM;
        op.fattr[0] = td_node_attr_float(n, "epsilon", 1e-12f);
    } else if (strcmp(t, "Attention") == 0) {
        op.kind = TDC_ATTENTION;
        op.iattr[0] = td_node_attr_int(n, "num_heads", 0);
        op.iattr[1] = td_node_attr_int(n, "unidirectional", 0);
        size_t cnt = 0;
        const int64_t *q = td_node_attr_ints(n, "qkv_hidden_sizes", &cnt);
        for (size_t i = 0; i < cnt && i < 3; i++)
            op.iattr[2 + i] = q[i];
        op.fattr[0] = td_node_attr_float(n, "scale", 0.0f);
        op.fattr[1] = td_node_attr_float(n, "mask_filter_value", -10000.0f);
        if (rn->n_out > 1 && rn->out[1] >= 0)
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "Attention's present output has no CUDA kernel yet");
    } else if (strcmp(t, "MatMul") == 0) {
        op.kind = TDC_MATMUL;
        op.fattr[0] = 1.0f;
        op.n_in = 2;
    } else if (strcmp(t, "Gemm") == 0) {
        if (td_node_attr_int(n, "transA", 0))
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "Gemm with transA = 1 has no CUDA kernel");
        op.kind = TDC_MATMUL;
        op.iattr[0] = td_node_attr_int(n, "transB", 0);
        op.fattr[0] = td_node_attr_float(n, "alpha", 1.0f);
        if (rn->n_in > 2 && rn->in[2] >= 0) {
            const td_rt_tensor *cb = rn->tin[2];
            int64_t N = rn->tout[0]->shape[1];
            if (td_node_attr_float(n, "beta", 1.0f) != 1.0f || td_rt_numel(cb) != N ||
                (cb->rank == 2 && cb->shape[0] != 1))
                return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED,
                                    "the CUDA Gemm takes C as a bias of N elements with beta = 1");
        }
    } else {
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "no CUDA kernel for this op");
    }
    if (api->run_op(cs->dc, &op))
        return fail_dev(ctx, cs, rn);
    return TD_OK;
}

static td_status enqueue_all(td_ctx *ctx, cuda_state *cs) {
    td_session *s = cs->s;
    for (int i = 0; i < s->nn; i++) {
        td_rt_node *rn = &s->nodes[i];
        if (rn->hoisted || rn->fused_away)
            continue;
        if ((rn->def->flags & TD_OP_VIEW) && rn->tout[0] && rn->tin[0] && rn->tout[0]->data == rn->tin[0]->data)
            continue; /* aliased */
        TD_TRY(run_node(ctx, cs, rn));
    }
    return TD_OK;
}

static void cuda_free(void *state) {
    cuda_state *cs = state;
    if (!cs)
        return;
    if (cs->dc) {
        cs->api->sync(cs->dc);
        cs->api->graph_free(cs->graph);
        for (int v = 0; cs->vdev && v < cs->s->nv; v++) {
            if (!cs->vdev[v])
                continue;
            if (cs->vconst[v])
                weight_put(cs->api, cs->dc, cs->vdev[v]);
            else
                cs->api->free(cs->dc, cs->vdev[v]);
        }
        cs->api->free(cs->dc, cs->arena);
        cs->api->ctx_free(cs->dc);
    }
    free(cs->vdev);
    free(cs->vdev_cap);
    free(cs->vconst);
    free(cs->needed);
    free(cs);
}

static td_status cuda_supports_op(td_ctx *ctx, const td_rt_node *rn, const td_dtype *in_dtypes) {
    return TD_OK; /* decided in prepare, once hoisting is known: hoisted nodes run on the host while planning */
}

static td_status cuda_prepare(td_ctx *ctx, td_session *s, void **state) {
    *state = NULL;
    const tdc_api *api;
    if (td_cuda_api(ctx, &api) != TD_OK)
        return td_wrap(ctx, "--backend cuda (use --backend cpu without a GPU)");
    for (int i = 0; i < s->nn; i++) {
        const td_rt_node *rn = &s->nodes[i];
        if (!rn->hoisted && !td_cuda_has_kernel(rn))
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED,
                                "no CUDA kernel for this op; the CUDA backend never falls back to the CPU (run "
                                "`tdeploy optimize` first, or use --backend cpu)");
    }
    cuda_state *cs = calloc(1, sizeof *cs);
    if (!cs)
        return td_fail_oom(ctx, sizeof *cs, "CUDA backend state");
    cs->api = api;
    cs->s = s;
    size_t nv = (size_t)s->nv + 1;
    cs->vdev = calloc(nv, sizeof *cs->vdev);
    cs->vdev_cap = calloc(nv, sizeof *cs->vdev_cap);
    cs->vconst = calloc(nv, sizeof *cs->vconst);
    cs->needed = calloc(nv, sizeof *cs->needed);
    if (!cs->vdev || !cs->vdev_cap || !cs->vconst || !cs->needed) {
        cuda_free(cs);
        return td_fail_oom(ctx, nv * 32, "CUDA backend state");
    }
    char err[512] = "";
    if (api->ctx_create(&cs->dc, err, sizeof err)) {
        cuda_free(cs);
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "the CUDA backend cannot start: %s (is there a GPU and driver? try "
                       "nvidia-smi, or use --backend cpu)", err);
    }
    if (s->engine && s->engine->n_gemms) { /* the GEMM algorithms `tdeploy build` measured on this GPU */
        tdc_gemm_choice *ch = malloc((size_t)s->engine->n_gemms * sizeof *ch);
        if (!ch) {
            cuda_free(cs);
            return td_fail_oom(ctx, (size_t)s->engine->n_gemms * sizeof *ch, "GEMM choices");
        }
        for (uint32_t i = 0; i < s->engine->n_gemms; i++)
            td_tcache_entry_decode(s->engine->gemms + (size_t)i * TD_TCACHE_ENTRY, &ch[i]);
        int rc = api->gemm_set_choices(cs->dc, ch, (int)s->engine->n_gemms);
        free(ch);
        if (rc) {
            td_status st = td_fail(ctx, TD_ERR_DEVICE, "CUDA: %s", api->error(cs->dc));
            cuda_free(cs);
            return st;
        }
    }
    for (int i = 0; i < s->nn; i++) {
        const td_rt_node *rn = &s->nodes[i];
        if (rn->hoisted)
            continue;
        for (int k = 0; k < rn->n_in; k++)
            if (rn->in[k] >= 0)
                cs->needed[s->vals[rn->in[k]].root] = true;
    }
    s->weight_bytes = 0;
    for (int v = 0; v < s->nv; v++) {
        td_rt_value *rv = &s->vals[v];
        if (!cs->needed[v] || rv->kind != TD_V_CONST || rv->root != v)
            continue;
        size_t nb = td_rt_nbytes(&rv->t);
        bool fresh = false;
        td_status st = weight_get(ctx, api, cs->dc, rv->t.data, nb ? nb : 1, &cs->vdev[v], &fresh);
        if (st != TD_OK) {
            cuda_free(cs);
            return st;
        }
        cs->vconst[v] = true;
        s->weight_bytes += nb;
    }
    *state = cs;
    return TD_OK;
}

/* (Re)size a device copy of a host value and upload it. */
static td_status upload_value(td_ctx *ctx, cuda_state *cs, int v, const void *host, size_t nb) {
    const tdc_api *api = cs->api;
    if (cs->vdev_cap[v] < nb || !cs->vdev[v]) {
        api->free(cs->dc, cs->vdev[v]);
        cs->vdev[v] = NULL;
        cs->vdev_cap[v] = 0;
        size_t cap = nb < 256 ? 256 : nb;
        if (api->alloc(cs->dc, cap, &cs->vdev[v]))
            return td_fail(ctx, TD_ERR_OUT_OF_MEMORY, "GPU memory for value '%s': %s", cs->s->vals[v].v->name,
                           api->error(cs->dc));
        cs->vdev_cap[v] = cap;
    }
    if (nb && api->upload(cs->dc, cs->vdev[v], host, nb))
        return td_fail(ctx, TD_ERR_DEVICE, "uploading '%s': %s", cs->s->vals[v].v->name, api->error(cs->dc));
    return TD_OK;
}

/* A new plan: device arena of the host arena's size, hoisted values uploaded, the old graph dropped. */
static td_status mirror_plan(td_ctx *ctx, cuda_state *cs) {
    td_session *s = cs->s;
    const tdc_api *api = cs->api;
    api->graph_free(cs->graph);
    cs->graph = NULL;
    cs->plan_runs = 0;
    if (s->arena_size > cs->arena_cap || !cs->arena) {
        api->sync(cs->dc);
        api->free(cs->dc, cs->arena);
        cs->arena = NULL;
        cs->arena_cap = 0;
        size_t cap = s->arena_cap > s->arena_size ? s->arena_cap : s->arena_size;
        if (s->engine) /* planned at build time for the largest profile: allocate it once */
            for (uint32_t p = 0; p < s->engine->n_profiles; p++)
                if (s->engine->profiles[p].arena_bytes + 64 > cap)
                    cap = (size_t)s->engine->profiles[p].arena_bytes + 64;
        if (api->alloc(cs->dc, cap ? cap : 256, &cs->arena))
            return td_fail(ctx, TD_ERR_OUT_OF_MEMORY, "GPU activation arena of %zu bytes: %s", cap,
                           api->error(cs->dc));
        cs->arena_cap = cap;
    }
    for (int v = 0; v < s->nv; v++) {
        td_rt_value *rv = &s->vals[v];
        if (cs->needed[v] && rv->kind == TD_V_HOIST && rv->root == v)
            TD_TRY(upload_value(ctx, cs, v, rv->t.data, td_rt_nbytes(&rv->t)));
    }
    cs->plan_seen = s->n_plans;
    return TD_OK;
}

static td_status cuda_run(td_ctx *ctx, td_session *s, void *state) {
    cuda_state *cs = state;
    const tdc_api *api = cs->api;
    if (cs->plan_seen != s->n_plans || !cs->arena)
        TD_TRY(mirror_plan(ctx, cs));
    for (int i = 0; i < s->n_inputs; i++) {
        int v = s->input_vals[i];
        if (cs->needed[v] && s->vals[v].kind == TD_V_INPUT) {
            size_t cap = cs->vdev_cap[v];
            TD_TRY(upload_value(ctx, cs, v, s->bound[i].data, s->bound[i].nbytes));
            if (cs->vdev_cap[v] != cap && cs->graph) { /* the graph recorded the old buffer */
                api->graph_free(cs->graph);
                cs->graph = NULL;
            }
        }
    }
    if (api->event_mark(cs->dc))
        return td_fail(ctx, TD_ERR_DEVICE, "CUDA event: %s", api->error(cs->dc));
    if (cs->graph) {
        if (api->graph_launch(cs->dc, cs->graph))
            return td_fail(ctx, TD_ERR_DEVICE, "CUDA graph replay: %s", api->error(cs->dc));
    } else if (cs->plan_runs >= 1) {
        /* second run of this plan: record the forward pass once, replay it from now on */
        if (api->graph_begin(cs->dc))
            return td_fail(ctx, TD_ERR_DEVICE, "CUDA graph capture: %s", api->error(cs->dc));
        td_status st = enqueue_all(ctx, cs);
        void *g = NULL;
        int rc = api->graph_end(cs->dc, &g);
        if (st != TD_OK) {
            api->graph_free(g);
            return st;
        }
        if (rc)
            return td_fail(ctx, TD_ERR_DEVICE, "CUDA graph capture: %s", api->error(cs->dc));
        cs->graph = g;
        if (api->graph_launch(cs->dc, cs->graph))
            return td_fail(ctx, TD_ERR_DEVICE, "CUDA graph replay: %s", api->error(cs->dc));
    } else {
        TD_TRY(enqueue_all(ctx, cs));
    }
    float ms = 0.0f;
    if (api->event_elapsed(cs->dc, &ms))
        return td_fail(ctx, TD_ERR_DEVICE, "CUDA event: %s", api->error(cs->dc));
    s->device_ms = ms;
    for (int o = 0; o < s->n_outputs; o++) {
        int v = s->output_vals[o];
        td_rt_value *rv = &s->vals[v];
        if (s->vals[rv->root].kind != TD_V_ARENA)
            continue; /* input, constant or hoisted: already on the host */
        if (api->download(cs->dc, rv->t.data, dev_ptr(cs, v), td_rt_nbytes(&rv->t)))
            return td_fail(ctx, TD_ERR_DEVICE, "copying output '%s' from the GPU: %s", rv->v->name,
                           api->error(cs->dc));
    }
    if (api->sync(cs->dc))
        return td_fail(ctx, TD_ERR_DEVICE, "CUDA: %s", api->error(cs->dc));
    cs->plan_runs++;
    return TD_OK;
}

const td_backend td_backend_cuda = {"cuda", cuda_supports_op, cuda_prepare, cuda_run, cuda_free, false};
