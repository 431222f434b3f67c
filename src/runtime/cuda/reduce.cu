/* ReduceSum over any set of axes (the sentence-embedding head's mean pooling
 * and L2 norm: token counts, masked sums over the sequence, sums of squares).
 * The output is contiguous in the order of the kept axes, so keepdims changes
 * nothing here. Floats accumulate in fp32 whatever the storage dtype (the
 * reference in double), integers in double (exact below 2^53).
 * reduce_ref_kernel: one thread per output, a plain loop. reduce_kernel: one
 * warp per output, lanes stride over the reduced elements, shuffle sum. */
#include "runtime/cuda/tdc_internal.cuh"

struct reduce_args {
    int dt_in, dt_out;
    int is_float;                     /* fp32 accumulation (else double) */
    int nk, nr;                       /* kept / reduced axes */
    int64_t kshape[TDC_MAX_RANK], kstr[TDC_MAX_RANK]; /* kept axes: sizes, input strides (elements) */
    int64_t rshape[TDC_MAX_RANK], rstr[TDC_MAX_RANK]; /* reduced axes */
    int64_t n_out, n_red;
    const void *x;
    void *y;
};

/* Input offset of output o's first element, and of reduced element r relative to it. */
__device__ __forceinline__ int64_t kept_offset(const reduce_args &a, int64_t o) {
    int64_t off = 0;
    for (int d = a.nk - 1; d >= 0; d--) {
        off += (o % a.kshape[d]) * a.kstr[d];
        o /= a.kshape[d];
    }
    return off;
}
__device__ __forceinline__ int64_t red_offset(const reduce_args &a, int64_t r) {
    int64_t off = 0;
    for (int d = a.nr - 1; d >= 0; d--) {
        off += (r % a.rshape[d]) * a.rstr[d];
        r /= a.rshape[d];
    }
    return off;
}

__global__ void reduce_ref_kernel(reduce_args a) {
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < a.n_out; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = kept_offset(a, o);
        double acc = 0.0;
        for (int64_t r = 0; r < a.n_red; r++)
            acc += ld_d(a.x, a.dt_in, base + red_offset(a, r));
        st_d(a.y, a.dt_out, o, acc);
    }
}

__global__ void reduce_kernel(reduce_args a) {
    int lane = threadIdx.x & 31;
    int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t o = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); o < a.n_out; o += warps) {
        int64_t base = kept_offset(a, o);
        float facc = 0.0f;
        double dacc = 0.0;
        for (int64_t r = lane; r < a.n_red; r += 32) {
            if (a.is_float)
                facc += ld_f(a.x, a.dt_in, base + red_offset(a, r));
            else
                dacc += ld_d(a.x, a.dt_in, base + red_offset(a, r));
        }
        for (int s = 16; s > 0; s >>= 1) {
            facc += __shfl_xor_sync(0xffffffffu, facc, s);
            dacc += __shfl_xor_sync(0xffffffffu, dacc, s);
        }
        if (lane == 0)
            st_d(a.y, a.dt_out, o, a.is_float ? (double)facc : dacc);
    }
}

/* in0 x; out0 y (contiguous: the kept axes in order); iattr[0] = bit d set when axis d of x is reduced. */
int tdc_reduce_sum(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *x = &op->in[0], *y = &op->out[0];
    reduce_args a;
    memset(&a, 0, sizeof a);
    a.dt_in = x->dtype;
    a.dt_out = y->dtype;
    a.is_float = tdc_is_float(x->dtype);
    if (x->dtype != y->dtype || !tdc_dtype_size(x->dtype))
        return tdc_fail(c, "%s: ReduceSum from dtype %d to %d", op->name, x->dtype, y->dtype);
    int64_t st[TDC_MAX_RANK], s = 1;
    for (int d = x->rank - 1; d >= 0; d--) {
        st[d] = s;
        s *= x->shape[d];
    }
    a.n_out = 1;
    a.n_red = 1;
    for (int d = 0; d < x->rank; d++) {
        if (op->iattr[0] >> d & 1) {
            a.rshape[a.nr] = x->shape[d];
            a.rstr[a.nr++] = st[d];
            a.n_red *= x->shape[d];
        } else {
            a.kshape[a.nk] = x->shape[d];
            a.kstr[a.nk++] = st[d];
            a.n_out *= x->shape[d];
        }
    }
    if (a.n_out != tdc_numel(y))
        return tdc_fail(c, "%s: ReduceSum output has %lld elements, the kept axes give %lld", op->name,
                        (long long)tdc_numel(y), (long long)a.n_out);
    if (a.n_out == 0)
        return 0;
    a.x = x->data;
    a.y = y->data;
    if (a.n_red == 0) { /* sum over nothing: zeros */
        TDC_CUDA(c, cudaMemsetAsync(y->data, 0, (size_t)a.n_out * tdc_dtype_size(y->dtype), c->stream));
        return 0;
    }
    if (c->reference) {
        reduce_ref_kernel<<<tdc_blocks(a.n_out, 128), 128, 0, c->stream>>>(a);
        TDC_LAUNCHED(c, "reduce_ref_kernel");
    } else {
        reduce_kernel<<<tdc_blocks(a.n_out, 4), 128, 0, c->stream>>>(a); /* 4 warps a block, a warp per output */
        TDC_LAUNCHED(c, "reduce_kernel");
    }
    return 0;
}
