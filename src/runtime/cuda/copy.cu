/* Data movement: strided copies (Transpose, Slice, Expand, Concat, Split),
 * Gather, GatherElements and CumSum. Indices read on the GPU are range
 * checked; a bad one sets the context's device flag (reported by sync) and
 * reads element 0 instead, so a hostile id never reads out of bounds. */
#include "runtime/cuda/tdc_internal.cuh"

struct strided_args {
    int rank;
    size_t esize;
    int64_t n;
    int64_t base;
    int64_t shape[TDC_MAX_RANK];
    int64_t src_str[TDC_MAX_RANK];
    int64_t dst_str[TDC_MAX_RANK];
    const char *src;
    char *dst;
};

__global__ void strided_kernel(strided_args a) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < a.n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i, so = a.base, d_off = 0;
        for (int d = a.rank - 1; d >= 0; d--) {
            int64_t cd = r % a.shape[d];
            r /= a.shape[d];
            so += cd * a.src_str[d];
            d_off += cd * a.dst_str[d];
        }
        const char *s = a.src + so * (int64_t)a.esize;
        char *t = a.dst + d_off * (int64_t)a.esize;
        switch (a.esize) {
        case 1: *t = *s; break;
        case 2: *(uint16_t *)t = *(const uint16_t *)s; break;
        case 4: *(uint32_t *)t = *(const uint32_t *)s; break;
        default: *(uint64_t *)t = *(const uint64_t *)s; break;
        }
    }
}

/* out (contiguous, shape of out[0]) [c] = in0 [iattr[0] + sum c_d * strides[d]]: Transpose, Slice, Expand;
 * Concat and Split are several such copies with out[0] pointing into the right place (see below).
 */
int tdc_copy_strided(tdc_ctx *c, const tdc_op *op) {
    strided_args a;
    memset(&a, 0, sizeof a);
    const tdc_tensor *o = &op->out[0];
    a.rank = o->rank;
    a.esize = tdc_dtype_size(o->dtype);
    if (!a.esize || a.esize != tdc_dtype_size(op->in[0].dtype))
        return tdc_fail(c, "%s: copy between dtypes %d and %d", op->name, op->in[0].dtype, o->dtype);
    a.n = tdc_numel(o);
    if (a.n == 0)
        return 0;
    a.base = op->iattr[0];
    int64_t st = 1;
    for (int d = o->rank - 1; d >= 0; d--) {
        a.shape[d] = o->shape[d];
        a.src_str[d] = op->strides[d];
        a.dst_str[d] = op->iattr[1] ? op->dst_strides[d] : st;
        st *= o->shape[d];
    }
    a.src = (const char *)op->in[0].data;
    a.dst = (char *)o->data + (op->iattr[1] ? op->iattr[2] * (int64_t)a.esize : 0);
    strided_kernel<<<tdc_blocks(a.n, 256), 256, 0, c->stream>>>(a);
    TDC_LAUNCHED(c, "strided_kernel");
    return 0;
}

/* Gather: data (outer, A, inner), indices (I) -> out (outer, I, inner). */
__global__ void gather_kernel(const char *data, int64_t A, int64_t inner, const void *idx, int idt, int64_t I,
                              char *out, int64_t n, size_t esize, int *flag) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t in_ = i % inner, r = i / inner, j = r % I, o = r / I;
        int64_t k = ld_i(idx, idt, j);
        if (k < 0)
            k += A;
        if (k < 0 || k >= A) {
            atomicExch(flag, TDC_FLAG_INDEX);
            k = 0;
        }
        const char *s = data + ((o * A + k) * inner + in_) * (int64_t)esize;
        char *t = out + i * (int64_t)esize;
        for (size_t b = 0; b < esize; b++)
            t[b] = s[b];
    }
}

int tdc_gather(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *x = &op->in[0], *ix = &op->in[1], *o = &op->out[0];
    int axis = (int)op->iattr[0];
    int64_t inner = 1; /* the kernel derives the outer index from the output position */
    for (int d = axis + 1; d < x->rank; d++)
        inner *= x->shape[d];
    int64_t n = tdc_numel(o), I = tdc_numel(ix);
    if (n == 0)
        return 0;
    gather_kernel<<<tdc_blocks(n, 256), 256, 0, c->stream>>>((const char *)x->data, x->shape[axis], inner, ix->data,
                                                             ix->dtype, I, (char *)o->data, n,
                                                             tdc_dtype_size(x->dtype), c->dev_flag);
    TDC_LAUNCHED(c, "gather_kernel");
    return 0;
}

struct ge_args {
    int rank, axis, idt;
    size_t esize;
    int64_t n;
    int64_t ishape[TDC_MAX_RANK];   /* indices/output shape */
    int64_t dstr[TDC_MAX_RANK];     /* data strides */
    int64_t daxis;                  /* data extent along axis */
    const char *data;
    const void *idx;
    char *out;
    int *flag;
};

__global__ void gather_elements_kernel(ge_args a) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < a.n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i, off = 0;
        int64_t k = ld_i(a.idx, a.idt, i);
        if (k < 0)
            k += a.daxis;
        if (k < 0 || k >= a.daxis) {
            atomicExch(a.flag, TDC_FLAG_INDEX);
            k = 0;
        }
        for (int d = a.rank - 1; d >= 0; d--) {
            int64_t cd = r % a.ishape[d];
            r /= a.ishape[d];
            off += (d == a.axis ? k : cd) * a.dstr[d];
        }
        const char *s = a.data + off * (int64_t)a.esize;
        char *t = a.out + i * (int64_t)a.esize;
        for (size_t b = 0; b < a.esize; b++)
            t[b] = s[b];
    }
}

int tdc_gather_elements(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *x = &op->in[0], *ix = &op->in[1], *o = &op->out[0];
    ge_args a;
    memset(&a, 0, sizeof a);
    a.rank = ix->rank;
    a.axis = (int)op->iattr[0];
    a.idt = ix->dtype;
    a.esize = tdc_dtype_size(x->dtype);
    a.n = tdc_numel(o);
    if (a.n == 0)
        return 0;
    int64_t st = 1;
    for (int d = x->rank - 1; d >= 0; d--) {
        a.dstr[d] = st;
        st *= x->shape[d];
    }
    for (int d = 0; d < ix->rank; d++)
        a.ishape[d] = ix->shape[d];
    a.daxis = x->shape[a.axis];
    a.data = (const char *)x->data;
    a.idx = ix->data;
    a.out = (char *)o->data;
    a.flag = c->dev_flag;
    gather_elements_kernel<<<tdc_blocks(a.n, 256), 256, 0, c->stream>>>(a);
    TDC_LAUNCHED(c, "gather_elements_kernel");
    return 0;
}

/* CumSum: one thread per line along the axis (the lines are short: sequence positions). */
__global__ void cumsum_kernel(const void *x, int dt, void *y, int64_t outer, int64_t len, int64_t inner, int exclusive,
                              int reverse) {
    int64_t lines = outer * inner;
    for (int64_t l = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; l < lines; l += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = l / inner, in_ = l % inner;
        double acc = 0.0;
        for (int64_t s = 0; s < len; s++) {
            int64_t j = reverse ? len - 1 - s : s;
            int64_t e = (o * len + j) * inner + in_;
            double v = ld_d(x, dt, e);
            if (exclusive) {
                st_d(y, dt, e, acc);
                acc += v;
            } else {
                acc += v;
                st_d(y, dt, e, acc);
            }
        }
    }
}

int tdc_cumsum(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *x = &op->in[0];
    int axis = (int)op->iattr[0];
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++)
        outer *= x->shape[d];
    for (int d = axis + 1; d < x->rank; d++)
        inner *= x->shape[d];
    int64_t lines = outer * inner;
    if (lines == 0 || x->shape[axis] == 0)
        return 0;
    cumsum_kernel<<<tdc_blocks(lines, 128), 128, 0, c->stream>>>(x->data, x->dtype, op->out[0].data, outer,
                                                                 x->shape[axis], inner, (int)op->iattr[1],
                                                                 (int)op->iattr[2]);
    TDC_LAUNCHED(c, "cumsum_kernel");
    return 0;
}
