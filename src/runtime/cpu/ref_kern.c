/* Reference kernels behind kern.h: plain loops that define the semantics the
 * optimized kernels must reproduce. fp32 accumulation everywhere. */
#include "runtime/cpu/kern.h"

#include "core/checked.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

td_status td_kern_pack_b(td_ctx *ctx, const void *b, td_dtype src_dtype, int64_t K, int64_t N, bool trans_b,
                         td_dtype dst_dtype, td_kern_packed **out) {
    *out = NULL;
    size_t n, nbytes;
    if (K < 0 || N < 0 || !td_mul_size((size_t)K, (size_t)N, &n) || !td_mul_size(n, td_dtype_size(dst_dtype), &nbytes))
        return td_fail(ctx, TD_ERR_OVERFLOW, "weight matrix %lld x %lld is too large", (long long)K, (long long)N);
    td_kern_packed *p = calloc(1, sizeof *p);
    if (!p)
        return td_fail_oom(ctx, sizeof *p, "packed weights");
    p->data = aligned_alloc(64, (nbytes + 63) / 64 * 64 + 64);
    if (!p->data) {
        free(p);
        return td_fail_oom(ctx, nbytes, "packed weights");
    }
    p->K = K;
    p->N = N;
    p->dtype = dst_dtype;
    p->nbytes = nbytes;
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) {
            int64_t src = trans_b ? j * K + k : k * N + j;
            float v;
            switch (src_dtype) {
            case TD_F16: v = td_f16_to_f32(((const uint16_t *)b)[src]); break;
            case TD_BF16: v = td_bf16_to_f32(((const uint16_t *)b)[src]); break;
            default: v = ((const float *)b)[src]; break;
            }
            int64_t dst = k * N + j;
            if (dst_dtype == TD_F16)
                ((uint16_t *)p->data)[dst] = td_f32_to_f16(v);
            else if (dst_dtype == TD_BF16)
                ((uint16_t *)p->data)[dst] = td_f32_to_bf16(v);
            else
                ((float *)p->data)[dst] = v;
        }
    *out = p;
    return TD_OK;
}

void td_kern_packed_free(void *pv) {
    td_kern_packed *p = pv;
    if (!p)
        return;
    free(p->data);
    free(p);
}

void td_kern_gemm_packed(const float *A, int64_t lda, int64_t M, const td_kern_packed *B, const float *bias,
                         float *C, int64_t ldc, bool accumulate, td_rt_env *env) {
    int64_t K = B->K, N = B->N;
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        for (int64_t j = 0; j < N; j++)
            c[j] = (accumulate ? c[j] : 0.0f) + (bias ? bias[j] : 0.0f);
        const float *a = A + i * lda;
        for (int64_t k = 0; k < K; k++) {
            float av = a[k];
            if (B->dtype == TD_F32) {
                const float *b = (const float *)B->data + k * N;
                for (int64_t j = 0; j < N; j++)
                    c[j] += av * b[j];
            } else if (B->dtype == TD_F16) {
                const uint16_t *h = (const uint16_t *)B->data + k * N;
                for (int64_t j = 0; j < N; j++)
                    c[j] += av * td_f16_to_f32(h[j]);
            } else {
                const uint16_t *h = (const uint16_t *)B->data + k * N;
                for (int64_t j = 0; j < N; j++)
                    c[j] += av * td_bf16_to_f32(h[j]);
            }
        }
    }
}

void td_kern_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, td_rt_env *env) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        for (int64_t j = 0; j < N; j++)
            c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int64_t k = 0; k < K; k++) {
            float a = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);
            if (!trans_b) {
                const float *b = B + k * ldb;
                for (int64_t j = 0; j < N; j++)
                    c[j] += a * b[j];
            } else {
                for (int64_t j = 0; j < N; j++)
                    c[j] += a * B[j * ldb + k];
            }
        }
    }
}

void td_kern_softmax_rows(float *x, int64_t rows, int64_t n, td_rt_env *env) {
    for (int64_t r = 0; r < rows; r++) {
        float *p = x + r * n;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++)
            if (p[j] > mx)
                mx = p[j];
        if (mx == -INFINITY) { /* every score masked: softmax is undefined; keep NaN like ONNX */
            for (int64_t j = 0; j < n; j++)
                p[j] = NAN;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            p[j] = expf(p[j] - mx);
            sum += p[j];
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < n; j++)
            p[j] *= inv;
    }
}

void td_kern_layernorm_rows(const float *x, const float *gamma, const float *beta, float *y, int64_t rows, int64_t n,
                            float eps, bool rms, float *mean, float *inv_std, td_rt_env *env) {
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * n;
        float *q = y + r * n;
        double mu = 0.0;
        if (!rms) {
            for (int64_t j = 0; j < n; j++)
                mu += p[j];
            mu /= (double)(n ? n : 1);
        }
        double var = 0.0;
        for (int64_t j = 0; j < n; j++) {
            double d = p[j] - mu;
            var += d * d;
        }
        var /= (double)(n ? n : 1);
        float is = (float)(1.0 / sqrt(var + eps));
        float m = (float)mu;
        for (int64_t j = 0; j < n; j++)
            q[j] = (p[j] - m) * is * (gamma ? gamma[j] : 1.0f) + (beta ? beta[j] : 0.0f);
        if (mean)
            mean[r] = m;
        if (inv_std)
            inv_std[r] = is;
    }
}

void td_kern_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                       float *out, int64_t ldo, int64_t S, int64_t L, int64_t D, int64_t Dv, float scale,
                       const float *mask_add, int64_t mask_ld, float *scratch, td_rt_env *env) {
    for (int64_t i = 0; i < S; i++) {
        float *sc = scratch + i * L;
        const float *qi = q + i * ldq;
        for (int64_t j = 0; j < L; j++) {
            const float *kj = k + j * ldk;
            float acc = 0.0f;
            for (int64_t d = 0; d < D; d++)
                acc += qi[d] * kj[d];
            sc[j] = acc * scale + (mask_add ? mask_add[i * mask_ld + j] : 0.0f);
        }
    }
    td_kern_softmax_rows(scratch, S, L, env);
    for (int64_t i = 0; i < S; i++) {
        float *oi = out + i * ldo;
        const float *sc = scratch + i * L;
        for (int64_t d = 0; d < Dv; d++)
            oi[d] = 0.0f;
        for (int64_t j = 0; j < L; j++) {
            const float *vj = v + j * ldv;
            float p = sc[j];
            for (int64_t d = 0; d < Dv; d++)
                oi[d] += p * vj[d];
        }
    }
}

void td_kern_binary_f32(char op, const float *a, int64_t sa, const float *b, int64_t sb, float *o, int64_t n) {
    switch (op) {
    case '+': for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] + b[i * sb]; break;
    case '-': for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] - b[i * sb]; break;
    case '*': for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] * b[i * sb]; break;
    case '/': for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] / b[i * sb]; break;
    default: break;
    }
}

void td_kern_gelu_erf(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void td_kern_gelu_tanh(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
}
