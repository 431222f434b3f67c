/* LayerNormalization, com.microsoft SkipLayerNormalization and
 * EmbedLayerNormalization, Softmax: one thread block per row; the row is
 * staged in shared memory as fp32 and the statistics (mean, variance, max,
 * sum) are fp32 block reductions whatever the storage dtype. */
#include "runtime/cuda/tdc_internal.cuh"

#define NORM_THREADS 256

/* y = (v - mean) * inv_std * gamma + beta over a staged fp32 row v (H). */
__device__ void normalize_row(float *v, int64_t H, float eps, const void *gamma, const void *beta, int pdt, void *y,
                              int ydt, int64_t row, float *mean_out, float *istd_out, float *red) {
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x)
        s += v[j];
    float mean = block_sum(s, red) / (float)H;
    float q = 0.0f;
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        float d = v[j] - mean;
        q += d * d;
    }
    float var = block_sum(q, red) / (float)H;
    float istd = rsqrtf(var + eps);
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        float g = ld_f(gamma, pdt, j), b = beta ? ld_f(beta, pdt, j) : 0.0f;
        st_f(y, ydt, row * H + j, (v[j] - mean) * istd * g + b);
    }
    if (threadIdx.x == 0) {
        if (mean_out)
            mean_out[row] = mean;
        if (istd_out)
            istd_out[row] = istd;
    }
}

__global__ void layernorm_kernel(const void *x, int xdt, const void *skip, int sdt, int64_t skip_rows, const void *bias,
                                 const void *gamma, const void *beta, int pdt, void *y, int ydt, void *sum_out,
                                 int sum_dt, float *mean, float *istd, int64_t H, float eps) {
    extern __shared__ float row_buf[];
    __shared__ float red[32];
    int64_t r = blockIdx.x;
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        float v = ld_f(x, xdt, r * H + j);
        if (skip)
            v += ld_f(skip, sdt, (r % skip_rows) * H + j);
        if (bias)
            v += ld_f(bias, pdt, j);
        row_buf[j] = v;
        if (sum_out)
            st_f(sum_out, sum_dt, r * H + j, v);
    }
    __syncthreads();
    normalize_row(row_buf, H, eps, gamma, beta, pdt, y, ydt, r, mean, istd, red);
}

static int launch_ln(tdc_ctx *c, const tdc_op *op, const tdc_tensor *x, const tdc_tensor *skip, const tdc_tensor *bias,
                     const tdc_tensor *gamma, const tdc_tensor *beta, int64_t H, const tdc_tensor *sum_out) {
    int64_t n = tdc_numel(x);
    if (H <= 0 || n % H)
        return tdc_fail(c, "%s: row size %lld does not divide the input", op->name, (long long)H);
    int64_t rows = n / H;
    if (rows == 0)
        return 0;
    if (rows > 0x7fffffff)
        return tdc_fail(c, "%s: %lld rows exceed one kernel launch", op->name, (long long)rows);
    size_t smem = (size_t)H * sizeof(float);
    if (smem > 48 * 1024)
        return tdc_fail(c, "%s: rows of %lld elements exceed the kernel's shared-memory row (12288)", op->name,
                        (long long)H);
    int64_t skip_rows = skip && skip->data ? tdc_numel(skip) / H : 1;
    const tdc_tensor *m = op->n_out > 1 ? &op->out[1] : NULL, *is = op->n_out > 2 ? &op->out[2] : NULL;
    layernorm_kernel<<<(unsigned)rows, NORM_THREADS, smem, c->stream>>>(
        x->data, x->dtype, skip ? skip->data : NULL, skip ? skip->dtype : 0, skip_rows ? skip_rows : 1,
        bias ? bias->data : NULL, gamma->data, beta ? beta->data : NULL, gamma->dtype, op->out[0].data,
        op->out[0].dtype, sum_out ? sum_out->data : NULL, sum_out ? sum_out->dtype : 0,
        m && m->data ? (float *)m->data : NULL, is && is->data ? (float *)is->data : NULL, H, op->fattr[0]);
    TDC_LAUNCHED(c, "layernorm_kernel");
    return 0;
}

int tdc_layernorm(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *beta = op->n_in > 2 && op->in[2].data ? &op->in[2] : NULL;
    return launch_ln(c, op, &op->in[0], NULL, NULL, &op->in[1], beta, op->iattr[0], NULL);
}

int tdc_skip_layernorm(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *x = &op->in[0];
    const tdc_tensor *beta = op->n_in > 3 && op->in[3].data ? &op->in[3] : NULL;
    const tdc_tensor *bias = op->n_in > 4 && op->in[4].data ? &op->in[4] : NULL;
    const tdc_tensor *sum = op->n_out > 3 && op->out[3].data ? &op->out[3] : NULL;
    return launch_ln(c, op, x, &op->in[1], bias, &op->in[2], beta, x->shape[x->rank - 1], sum);
}

/* EmbedLayerNormalization: one block per token. */
__global__ void embed_ln_kernel(const int32_t *ids, const int32_t *seg, const void *we, const void *pe, const void *se,
                                int edt, const void *gamma, const void *beta, const int32_t *pos, int64_t pos_n,
                                void *y, int ydt, void *sum_out, int64_t S, int64_t H, int64_t V, int64_t P, int64_t NS,
                                float eps, int *flag) {
    extern __shared__ float row_buf[];
    __shared__ float red[32];
    int64_t t = blockIdx.x, s = t % S;
    int64_t w = ids[t], p = pos ? pos[pos_n == S ? s : t] : s, g = seg ? seg[t] : 0;
    if (w < 0 || w >= V || p < 0 || p >= P || (se && (g < 0 || g >= NS))) {
        if (threadIdx.x == 0)
            atomicExch(flag, TDC_FLAG_INDEX);
        w = w < 0 || w >= V ? 0 : w;
        p = p < 0 || p >= P ? 0 : p;
        g = g < 0 || g >= NS ? 0 : g;
    }
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        float v = ld_f(we, edt, w * H + j) + ld_f(pe, edt, p * H + j);
        if (se)
            v += ld_f(se, edt, g * H + j);
        row_buf[j] = v;
        if (sum_out)
            st_f(sum_out, ydt, t * H + j, v);
    }
    __syncthreads();
    normalize_row(row_buf, H, eps, gamma, beta, edt, y, ydt, t, NULL, NULL, red);
}

__global__ void mask_count_kernel(const int32_t *mask, int32_t *out, int64_t B, int64_t S) {
    for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < B; b += (int64_t)gridDim.x * blockDim.x) {
        int32_t n = 0;
        for (int64_t s = 0; mask && s < S; s++)
            n += mask[b * S + s];
        out[b] = n;
    }
}

int tdc_embed_layernorm(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *ids = &op->in[0], *seg = &op->in[1], *we = &op->in[2], *pe = &op->in[3], *se = &op->in[4];
    const tdc_tensor *mask = op->n_in > 7 ? &op->in[7] : NULL, *pos = op->n_in > 8 ? &op->in[8] : NULL;
    int64_t B = ids->shape[0], S = ids->shape[1], H = we->shape[1];
    if (B * S == 0)
        return 0;
    if ((size_t)H * sizeof(float) > 48 * 1024)
        return tdc_fail(c, "%s: hidden size %lld exceeds the kernel's shared-memory row", op->name, (long long)H);
    int64_t pos_n = pos && pos->data ? tdc_numel(pos) : 0;
    if (pos && pos->data && pos_n != S && pos_n != B * S)
        return tdc_fail(c, "%s: position_ids must be (B, S) or (1, S)", op->name);
    const tdc_tensor *sum = op->n_out > 2 && op->out[2].data ? &op->out[2] : NULL;
    embed_ln_kernel<<<(unsigned)(B * S), NORM_THREADS, (size_t)H * sizeof(float), c->stream>>>(
        (const int32_t *)ids->data, seg->data ? (const int32_t *)seg->data : NULL, we->data, pe->data,
        se->data ? se->data : NULL, we->dtype, op->in[5].data, op->in[6].data,
        pos && pos->data ? (const int32_t *)pos->data : NULL, pos_n, op->out[0].data, op->out[0].dtype,
        sum ? sum->data : NULL, S, H, we->shape[0], pe->shape[0], se->data ? se->shape[0] : 0, op->fattr[0],
        c->dev_flag);
    TDC_LAUNCHED(c, "embed_ln_kernel");
    if (op->n_out > 1 && op->out[1].data) {
        mask_count_kernel<<<tdc_blocks(B, 128), 128, 0, c->stream>>>(
            mask && mask->data ? (const int32_t *)mask->data : NULL, (int32_t *)op->out[1].data, B, S);
        TDC_LAUNCHED(c, "mask_count_kernel");
    }
    return 0;
}

__global__ void softmax_kernel(const void *x, void *y, int dt, int64_t H) {
    __shared__ float red[32];
    int64_t r = blockIdx.x;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x)
        m = fmaxf(m, ld_f(x, dt, r * H + j));
    m = block_max(m, red);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x)
        s += expf(ld_f(x, dt, r * H + j) - m);
    s = block_sum(s, red);
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x)
        st_f(y, dt, r * H + j, expf(ld_f(x, dt, r * H + j) - m) / s);
}

int tdc_softmax(tdc_ctx *c, const tdc_op *op) {
    const tdc_tensor *x = &op->in[0];
    int64_t H = x->rank ? x->shape[x->rank - 1] : 1, n = tdc_numel(x);
    if (n == 0 || H == 0)
        return 0;
    softmax_kernel<<<(unsigned)(n / H), NORM_THREADS, 0, c->stream>>>(x->data, op->out[0].data, x->dtype, H);
    TDC_LAUNCHED(c, "softmax_kernel");
    return 0;
}
