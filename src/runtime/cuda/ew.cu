/* Elementwise ops with numpy broadcasting (Add, Mul, Equal, Where, Cast,
 * Expand, Tanh, Gelu ...): one generic kernel over the output's elements.
 * Values travel as double (exact for the int64 index math of mask and
 * position graphs); transcendental float ops (Gelu, erf, tanh, exp) use fp32
 * math like the CPU runtime. Inputs laid out exactly like the output skip the
 * index decomposition. */
#include "runtime/cuda/tdc_internal.cuh"

struct ew_args {
    int op, nin, rank, odt;
    int idt[3];
    bool contig[3];
    const void *in[3];
    void *out;
    int64_t n;
    int64_t oshape[TDC_MAX_RANK];
    int64_t istr[3][TDC_MAX_RANK];
};

__device__ __forceinline__ float gelu_erf(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_tanh(float v) {
    return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
}

__device__ double ew_apply(int op, double a, double b, double c, bool int_out) {
    switch (op) {
    case TDC_EW_COPY: return a;
    case TDC_EW_ADD: return a + b;
    case TDC_EW_SUB: return a - b;
    case TDC_EW_MUL: return a * b;
    case TDC_EW_DIV: return int_out ? (b == 0.0 ? 0.0 : trunc(a / b)) : a / b;
    case TDC_EW_POW: return pow(a, b);
    case TDC_EW_MOD: return int_out ? (b == 0.0 ? 0.0 : a - floor(a / b) * b) : fmod(a, b);
    case TDC_EW_EQUAL: return a == b;
    case TDC_EW_GREATER: return a > b;
    case TDC_EW_LESS: return a < b;
    case TDC_EW_GREATER_EQ: return a >= b;
    case TDC_EW_LESS_EQ: return a <= b;
    case TDC_EW_AND: return (a != 0.0) && (b != 0.0);
    case TDC_EW_OR: return (a != 0.0) || (b != 0.0);
    case TDC_EW_XOR: return (a != 0.0) != (b != 0.0);
    case TDC_EW_NOT: return a == 0.0;
    case TDC_EW_WHERE: return a != 0.0 ? b : c;
    case TDC_EW_MIN: return fmin(a, b);
    case TDC_EW_MAX: return fmax(a, b);
    case TDC_EW_NEG: return -a;
    case TDC_EW_ABS: return fabs(a);
    case TDC_EW_SQRT: return sqrtf((float)a);
    case TDC_EW_EXP: return expf((float)a);
    case TDC_EW_LOG: return logf((float)a);
    case TDC_EW_TANH: return tanhf((float)a);
    case TDC_EW_RELU: return a > 0.0 ? a : 0.0;
    case TDC_EW_SIGMOID: return 1.0f / (1.0f + expf(-(float)a));
    case TDC_EW_ERF: return erff((float)a);
    case TDC_EW_RECIPROCAL: return 1.0 / a;
    case TDC_EW_GELU_ERF: return gelu_erf((float)a + (float)b);
    case TDC_EW_GELU_TANH: return gelu_tanh((float)a + (float)b);
    default: return 0.0;
    }
}

__global__ void ew_kernel(ew_args a) {
    bool int_out = !(a.odt == DT_F32 || a.odt == DT_F16 || a.odt == DT_BF16 || a.odt == DT_F64);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < a.n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t off[3] = {0, 0, 0};
        bool all = true;
        for (int k = 0; k < a.nin; k++)
            all = all && a.contig[k];
        if (all) {
            off[0] = off[1] = off[2] = i;
        } else {
            int64_t r = i;
            for (int d = a.rank - 1; d >= 0; d--) {
                int64_t cd = r % a.oshape[d];
                r /= a.oshape[d];
                for (int k = 0; k < a.nin; k++)
                    off[k] += cd * a.istr[k][d];
            }
            for (int k = 0; k < a.nin; k++)
                if (a.contig[k])
                    off[k] = i;
        }
        double x = ld_d(a.in[0], a.idt[0], off[0]);
        double y = a.nin > 1 ? ld_d(a.in[1], a.idt[1], off[1]) : 0.0;
        double z = a.nin > 2 ? ld_d(a.in[2], a.idt[2], off[2]) : 0.0;
        st_d(a.out, a.odt, i, ew_apply(a.op, x, y, z, int_out));
    }
}

/* Same-dtype fp16/bf16 <-> fp32 casts between fused ops: a plain vector loop. */
__global__ void cast_f32_to_f16(const float *x, __half *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}
__global__ void cast_f16_to_f32(const __half *x, float *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __half2float(x[i]);
}

int tdc_ew(tdc_ctx *c, const tdc_op *op) {
    ew_args a;
    memset(&a, 0, sizeof a);
    a.op = (int)op->iattr[0];
    a.nin = op->n_in;
    if (a.nin < 1 || a.nin > 3)
        return tdc_fail(c, "%s: elementwise op with %d inputs", op->name, a.nin);
    const tdc_tensor *o = &op->out[0];
    a.rank = o->rank;
    a.odt = o->dtype;
    a.out = o->data;
    a.n = tdc_numel(o);
    if (a.n == 0)
        return 0;
    for (int d = 0; d < o->rank; d++)
        a.oshape[d] = o->shape[d];
    for (int k = 0; k < a.nin; k++) {
        const tdc_tensor *t = &op->in[k];
        a.in[k] = t->data;
        a.idt[k] = t->dtype;
        if (t->rank > o->rank)
            return tdc_fail(c, "%s: input %d has rank %d above the output's %d", op->name, k, t->rank, o->rank);
        int64_t st = 1;
        bool same = t->rank == o->rank;
        for (int d = o->rank - 1; d >= 0; d--) {
            int td = d - (o->rank - t->rank);
            int64_t dim = td >= 0 ? t->shape[td] : 1;
            if (dim != 1 && dim != o->shape[d])
                return tdc_fail(c, "%s: input %d does not broadcast to the output", op->name, k);
            a.istr[k][d] = dim == 1 && o->shape[d] != 1 ? 0 : st;
            same = same && dim == o->shape[d];
            st *= dim;
        }
        a.contig[k] = same;
    }
    if (a.op == TDC_EW_COPY && a.contig[0]) {
        const tdc_tensor *x = &op->in[0];
        if (x->dtype == o->dtype) {
            TDC_CUDA(c, cudaMemcpyAsync(o->data, x->data, (size_t)a.n * tdc_dtype_size(o->dtype),
                                        cudaMemcpyDeviceToDevice, c->stream));
            return 0;
        }
        if (!c->reference && x->dtype == DT_F32 && o->dtype == DT_F16) {
            cast_f32_to_f16<<<tdc_blocks(a.n, 256), 256, 0, c->stream>>>((const float *)x->data, (__half *)o->data, a.n);
            TDC_LAUNCHED(c, "cast_f32_to_f16");
            return 0;
        }
        if (!c->reference && x->dtype == DT_F16 && o->dtype == DT_F32) {
            cast_f16_to_f32<<<tdc_blocks(a.n, 256), 256, 0, c->stream>>>((const __half *)x->data, (float *)o->data, a.n);
            TDC_LAUNCHED(c, "cast_f16_to_f32");
            return 0;
        }
    }
    ew_kernel<<<tdc_blocks(a.n, 256), 256, 0, c->stream>>>(a);
    TDC_LAUNCHED(c, "ew_kernel");
    return 0;
}
