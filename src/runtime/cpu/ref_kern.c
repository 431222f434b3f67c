/* Reference kernels (see ref_kern.h). */
#include "runtime/cpu/ref_kern.h"

#include <math.h>

void td_ref_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        for (int64_t j = 0; j < N; j++)
            c[j] = 0.0f;
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
        if (bias)
            for (int64_t j = 0; j < N; j++)
                c[j] += bias[j];
    }
}

void td_ref_softmax_rows(float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        float *p = x + r * n;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++)
            if (p[j] > mx)
                mx = p[j];
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            p[j] = expf(p[j] - mx); /* all -inf: NaN, as the definition gives */
            sum += p[j];
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < n; j++)
            p[j] *= inv;
    }
}

void td_ref_layernorm_rows(const float *x, const float *gamma, const float *beta, float *y, int64_t rows, int64_t n,
                           float eps, float *mean, float *inv_std) {
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * n;
        float *q = y + r * n;
        double mu = 0.0, var = 0.0;
        for (int64_t j = 0; j < n; j++)
            mu += p[j];
        mu /= (double)(n ? n : 1);
        for (int64_t j = 0; j < n; j++)
            var += (p[j] - mu) * (p[j] - mu);
        var /= (double)(n ? n : 1);
        float is = (float)(1.0 / sqrt(var + eps)), m = (float)mu;
        for (int64_t j = 0; j < n; j++)
            q[j] = (p[j] - m) * is * gamma[j] + (beta ? beta[j] : 0.0f);
        if (mean)
            mean[r] = m;
        if (inv_std)
            inv_std[r] = is;
    }
}

void td_ref_rmsnorm_rows(const float *x, const float *gamma, float *y, int64_t rows, int64_t n, float eps,
                         float *inv_std) {
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * n;
        double ss = 0.0;
        for (int64_t j = 0; j < n; j++)
            ss += (double)p[j] * p[j];
        float is = (float)(1.0 / sqrt(ss / (double)(n ? n : 1) + eps));
        for (int64_t j = 0; j < n; j++)
            y[r * n + j] = p[j] * is * gamma[j];
        if (inv_std)
            inv_std[r] = is;
    }
}

void td_ref_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                      float *out, int64_t ldo, int64_t S, int64_t L, int64_t D, int64_t Dv, float scale,
                      const float *mask_add, int64_t mask_ld, float *scratch) {
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
    td_ref_softmax_rows(scratch, S, L);
    for (int64_t i = 0; i < S; i++) {
        float *oi = out + i * ldo;
        const float *sc = scratch + i * L;
        for (int64_t d = 0; d < Dv; d++)
            oi[d] = 0.0f;
        for (int64_t j = 0; j < L; j++) {
            const float *vj = v + j * ldv;
            for (int64_t d = 0; d < Dv; d++)
                oi[d] += sc[j] * vj[d];
        }
    }
}

void td_ref_gelu_erf(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void td_ref_gelu_tanh(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
}
