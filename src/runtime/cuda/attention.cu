/* com.microsoft Attention: the QKV projection is one cuBLASLt GEMM with the
 * bias in its epilogue (into the op's scratch, (B*S, Hq+Hk+Hv) in the input
 * dtype); then attention per (query row, head, batch item) with the additive
 * masks of the CPU runtime (mask_index (B) lengths / (2B) end+start / (B, T)
 * key padding / (B, S, T); attention_bias (B|1, N|1, S, T); unidirectional),
 * scores, softmax and the weighted sum in fp32: the simple reference kernel.
 * attention_flash.cu holds the tiled tensor-core kernel used for fp16/bf16. */
#include "runtime/cuda/tdc_internal.cuh"
#include "runtime/cuda/attention.cuh"

#define ATT_THREADS 128

/* grid (S, N, B); shared: q (D) + probabilities (T) + partial sums. */
__global__ void attention_ref_kernel(attn_params p) {
    extern __shared__ float sm[];
    __shared__ float red[32];
    int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    float *q = sm, *pr = sm + p.D;
    const int64_t W = p.ld;
    int64_t qrow = (b * p.S + i) * W;
    for (int64_t d = threadIdx.x; d < p.D; d += blockDim.x)
        q[d] = ld_f(p.qkv, p.dt, qrow + h * p.D + d);
    __syncthreads();
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < p.T; j += blockDim.x) {
        int64_t krow = (b * p.S + j) * W + p.Hq + h * p.D;
        float s = 0.0f;
        for (int64_t d = 0; d < p.D; d++)
            s += q[d] * ld_f(p.qkv, p.dt, krow + d);
        s = s * p.scale + attn_mask_add(p, b, h, i, j);
        pr[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, red);
    if (mx == -INFINITY)
        mx = 0.0f; /* every key masked by an -inf bias: all probabilities 0, output 0 (no NaN) */
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < p.T; j += blockDim.x) {
        float e = expf(pr[j] - mx);
        pr[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red); /* syncs: every pr[j] is written */
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int64_t d = threadIdx.x; d < p.Dv; d += blockDim.x) {
        float acc = 0.0f;
        for (int64_t j = 0; j < p.T; j++)
            acc += pr[j] * ld_f(p.qkv, p.dt, (b * p.S + j) * W + p.Hq + p.Hk + h * p.Dv + d);
        st_f(p.out, p.dt, (b * p.S + i) * (p.N * p.Dv) + h * p.Dv + d, acc * inv);
    }
}

int tdc_attention_core(tdc_ctx *c, const attn_params &p, const char *name) {
    if (!c->reference && tdc_attention_flash_fits(p))
        return tdc_attention_flash(c, p);
    size_t smem = (size_t)(p.D + p.T) * sizeof(float);
    if (smem > 48 * 1024)
        return tdc_fail(c, "%s: sequence %lld too long for the reference attention kernel", name, (long long)p.T);
    dim3 grid((unsigned)p.S, (unsigned)p.N, (unsigned)p.B);
    attention_ref_kernel<<<grid, ATT_THREADS, smem, c->stream>>>(p);
    TDC_LAUNCHED(c, "attention_ref_kernel");
    return 0;
}

int tdc_attention(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *x = &op->in[0], *w = &op->in[1];
    const tdc_tensor *bias = op->n_in > 2 && op->in[2].data ? &op->in[2] : NULL;
    const tdc_tensor *mask = op->n_in > 3 && op->in[3].data ? &op->in[3] : NULL;
    const tdc_tensor *ab = op->n_in > 5 && op->in[5].data ? &op->in[5] : NULL;
    if (op->n_in > 4 && op->in[4].data)
        return tdc_fail(c, "%s: Attention with past state has no CUDA kernel yet (encoder engines only)", op->name);
    int64_t B = x->shape[0], S = x->shape[1], Hin = x->shape[2], Wd = w->shape[1], N = op->iattr[0];
    int64_t Hq = op->iattr[2], Hk = op->iattr[3], Hv = op->iattr[4];
    if (!Hq)
        Hq = Hk = Hv = Wd / 3;
    /* the kernels read q | k | v rows of Wd elements: sizes from the (hostile) graph must tile them exactly */
    if (N < 1 || Hq < 1 || Hv < 1 || Hk != Hq || Hq % N || Hv % N || Hq + Hk + Hv != Wd || x->rank != 3 ||
        w->rank != 2 || w->shape[0] != Hin || (bias && tdc_numel(bias) != Wd))
        return tdc_fail(c, "%s: Attention with %lld heads, q/k/v sizes %lld/%lld/%lld does not match its weights "
                        "(%lld x %lld) and bias; rebuild the engine from the original model", op->name, (long long)N,
                        (long long)Hq, (long long)Hk, (long long)Hv, (long long)w->shape[0], (long long)Wd);
    if (B * S == 0)
        return 0;
    if (x->dtype != w->dtype || (bias && bias->dtype != x->dtype))
        return tdc_fail(c, "%s: Attention input, weights and bias must share one dtype on CUDA", op->name);
    size_t need = (size_t)(B * S * Wd) * tdc_dtype_size(x->dtype);
    if (op->scratch_bytes < need)
        return tdc_fail(c, "%s: scratch of %zu bytes is smaller than the QKV projection (%zu)", op->name,
                        op->scratch_bytes, need);
    if (tdc_gemm(c, x->dtype, B * S, Wd, Hin, 1.0f, x->data, Hin, w->data, 0, bias ? bias->data : NULL, op->scratch,
                 Wd))
        return 1;
    attn_params p;
    memset(&p, 0, sizeof p);
    p.dt = x->dtype;
    p.B = B, p.S = S, p.T = S, p.N = N, p.D = Hq / N, p.Dv = Hv / N, p.Hq = Hq, p.Hk = Hk, p.ld = Wd;
    p.qkv = op->scratch;
    p.out = op->out[0].data;
    p.scale = op->fattr[0] != 0.0f ? op->fattr[0] : 1.0f / sqrtf((float)p.D);
    p.mask_filter = op->fattr[1];
    p.unidirectional = (int)op->iattr[1];
    if (mask) {
        if (mask->dtype != DT_I32)
            return tdc_fail(c, "%s: mask_index must be int32", op->name);
        int64_t n = tdc_numel(mask);
        p.mask = (const int32_t *)mask->data;
        if (mask->rank == 1 && n == B)
            p.mask_kind = ATT_MASK_LEN;
        else if (mask->rank == 1 && n == 2 * B)
            p.mask_kind = ATT_MASK_END_START;
        else if (mask->rank == 2 && mask->shape[0] == B && mask->shape[1] == S)
            p.mask_kind = ATT_MASK_KEYS;
        else if (mask->rank == 3 && mask->shape[0] == B && mask->shape[1] == S && mask->shape[2] == S)
            p.mask_kind = ATT_MASK_3D;
        else
            return tdc_fail(c, "%s: mask_index shape not supported (supported: (B), (2B), (B, T), (B, S, T))", op->name);
    }
    if (ab) {
        if (ab->dtype != x->dtype || ab->rank != 4 || ab->shape[2] != S || ab->shape[3] != S)
            return tdc_fail(c, "%s: attention_bias must be (B|1, N|1, S, S) of the input dtype", op->name);
        p.bias = ab->data;
        p.bias_bstride = ab->shape[0] != 1 ? ab->shape[1] * S * S : 0;
        p.bias_hstride = ab->shape[1] != 1 ? S * S : 0;
    }
    /* attn_mask_add indexes bias as b * bias_bstride + h * bias_hstride + i * T + j */
    return tdc_attention_core(c, p, op->name);
}
