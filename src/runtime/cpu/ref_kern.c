/* Reference kernels (see ref_kern.h): plain loops, libm, fp64 sums. */
#include "runtime/cpu/ref_kern.h"

#include <math.h>

/* Columns accumulated at once in fp64 for a non-transposed B (rows of B are read contiguously). */
#define REF_GEMM_COLS 256

void td_ref_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (trans_b) { /* B is (N, K): each C element is a dot product of two contiguous rows */
            for (int64_t j = 0; j < N; j++) {
                double acc = 0.0;
                for (int64_t k = 0; k < K; k++)
                    acc += (double)(trans_a ? A[k * lda + i] : A[i * lda + k]) * (double)B[j * ldb + k];
                c[j] = (float)(alpha * acc + (bias ? bias[j] : 0.0));
            }
            continue;
        }
        for (int64_t j0 = 0; j0 < N; j0 += REF_GEMM_COLS) {
            int64_t nj = N - j0 < REF_GEMM_COLS ? N - j0 : REF_GEMM_COLS;
            double acc[REF_GEMM_COLS] = {0.0};
            for (int64_t k = 0; k < K; k++) {
                double a = trans_a ? A[k * lda + i] : A[i * lda + k];
                const float *b = B + k * ldb + j0;
                for (int64_t j = 0; j < nj; j++)
                    acc[j] += a * (double)b[j];
            }
            for (int64_t j = 0; j < nj; j++)
                c[j0 + j] = (float)(alpha * acc[j] + (bias ? bias[j0 + j] : 0.0));
        }
    }
}

void td_ref_gemm_batched(int64_t nb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const int64_t *a_off, const float *B, int64_t ldb, const int64_t *b_off, float *C,
                         int64_t ldc, int64_t c_stride) {
    for (int64_t i = 0; i < nb; i++)
        td_ref_gemm(false, false, M, N, K, 1.0f, A + a_off[i], lda, B + b_off[i], ldb, NULL, C + i * c_stride, ldc);
}

static float row_max(const float *p, int64_t n) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        if (p[j] > mx || isnan(p[j]))
            mx = isnan(mx) ? mx : p[j];
    return mx;
}

void td_ref_softmax_rows(float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        float *p = x + r * n;
        double mx = row_max(p, n), sum = 0.0;
        for (int64_t j = 0; j < n; j++)
            sum += exp((double)p[j] - mx); /* all -inf: -inf - -inf is NaN, as the definition gives */
        for (int64_t j = 0; j < n; j++)
            p[j] = (float)(exp((double)p[j] - mx) / sum);
    }
}

void td_ref_log_softmax_rows(float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        float *p = x + r * n;
        double mx = row_max(p, n), sum = 0.0;
        for (int64_t j = 0; j < n; j++)
            sum += exp((double)p[j] - mx);
        double lse = log(sum);
        for (int64_t j = 0; j < n; j++)
            p[j] = (float)(((double)p[j] - mx) - lse);
    }
}

/* mean and 1/sqrt(var + eps) of one row, both in fp64 (two passes: no cancellation). */
static void row_stats(const float *p, int64_t n, float eps, double *mu, double *is) {
    double m = 0.0, var = 0.0;
    for (int64_t j = 0; j < n; j++)
        m += p[j];
    m /= (double)(n ? n : 1);
    for (int64_t j = 0; j < n; j++)
        var += ((double)p[j] - m) * ((double)p[j] - m);
    var /= (double)(n ? n : 1);
    *mu = m;
    *is = 1.0 / sqrt(var + (double)eps);
}

void td_ref_layernorm_rows(const float *x, const float *gamma, const float *beta, float *y, int64_t rows, int64_t n,
                           float eps, float *mean, float *inv_std) {
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * n;
        float *q = y + r * n;
        double mu, is;
        row_stats(p, n, eps, &mu, &is);
        for (int64_t j = 0; j < n; j++)
            q[j] = (float)(((double)p[j] - mu) * is * gamma[j] + (beta ? beta[j] : 0.0));
        if (mean)
            mean[r] = (float)mu;
        if (inv_std)
            inv_std[r] = (float)is;
    }
}

void td_ref_skip_layernorm_rows(const float *x, const float *skip, int64_t skip_rows, const float *bias,
                                const float *gamma, const float *beta, float *y, float *sum, int64_t rows, int64_t n,
                                float eps, float *mean, float *inv_std) {
    for (int64_t r = 0; r < rows; r++) {
        /* the input sum is rounded to fp32 as the ops define it (it may be an output); y holds it meanwhile */
        float *s = sum ? sum + r * n : y + r * n;
        const float *sk = skip ? skip + (r % (skip_rows > 0 ? skip_rows : 1)) * n : NULL;
        for (int64_t j = 0; j < n; j++) {
            float v = x[r * n + j];
            if (sk)
                v += sk[j];
            if (bias)
                v += bias[j];
            s[j] = v;
        }
        td_ref_layernorm_rows(s, gamma, beta, y + r * n, 1, n, eps, mean ? mean + r : NULL,
                              inv_std ? inv_std + r : NULL);
    }
}

void td_ref_rmsnorm_rows(const float *x, const float *gamma, float *y, int64_t rows, int64_t n, float eps,
                         float *inv_std) {
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * n;
        double ss = 0.0;
        for (int64_t j = 0; j < n; j++)
            ss += (double)p[j] * p[j];
        double is = 1.0 / sqrt(ss / (double)(n ? n : 1) + eps);
        for (int64_t j = 0; j < n; j++)
            y[r * n + j] = (float)((double)p[j] * is * gamma[j]);
        if (inv_std)
            inv_std[r] = (float)is;
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
            double acc = 0.0;
            for (int64_t d = 0; d < D; d++)
                acc += (double)qi[d] * kj[d];
            sc[j] = (float)(acc * scale) + (mask_add ? mask_add[i * mask_ld + j] : 0.0f);
        }
    }
    td_ref_softmax_rows(scratch, S, L);
    for (int64_t i = 0; i < S; i++) {
        const float *sc = scratch + i * L;
        for (int64_t d = 0; d < Dv; d++) {
            double acc = 0.0;
            for (int64_t j = 0; j < L; j++)
                acc += (double)sc[j] * v[j * ldv + d];
            out[i * ldo + d] = (float)acc;
        }
    }
}

void td_ref_mha(const td_kern_mha *a, float *scratch) {
    int64_t S = a->S, T = a->T, D = a->D, Dv = a->Dv;
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->N; h++) {
            const float *q = a->q + b * a->q_bstride + h * D;
            int64_t kvh = a->kv_heads > 0 ? a->kv_heads : a->N, g = h / (a->N / kvh); /* K/V head of query head h */
            int64_t rows = a->kv_rows > 0 ? a->kv_rows : T;
            const float *k = a->k + (b * kvh + g) * rows * D, *v = a->v + (b * kvh + g) * rows * Dv;
            int64_t ldk = D, ldv = Dv;
            if (a->kv_ld > 0) {
                k = a->k + b * T * a->kv_ld + g * D;
                v = a->v + b * T * a->kv_ld + g * Dv;
                ldk = ldv = a->kv_ld;
            }
            const float *m = a->mask ? a->mask + b * a->mask_bstride : NULL;
            const float *bi = a->bias ? a->bias + b * a->bias_bstride + h * a->bias_hstride : NULL;
            for (int64_t i = 0; i < S; i++) {
                float *row = scratch + i * T;
                for (int64_t t = 0; t < T; t++) {
                    double acc = 0.0;
                    for (int64_t d = 0; d < D; d++)
                        acc += (double)q[i * a->ldq + d] * k[t * ldk + d];
                    float s = (float)(acc * a->scale);
                    if (m)
                        s += (a->mask_one_row ? m : m + i * T)[t];
                    if (bi)
                        s += bi[i * T + t];
                    row[t] = s;
                }
            }
            td_ref_softmax_rows(scratch, S, T);
            float *o = a->out + b * a->o_bstride + h * Dv;
            for (int64_t i = 0; i < S; i++)
                for (int64_t d = 0; d < Dv; d++) {
                    double acc = 0.0;
                    for (int64_t t = 0; t < T; t++)
                        acc += (double)scratch[i * T + t] * v[t * ldv + d];
                    o[i * a->ldo + d] = (float)acc;
                }
        }
}

static float ref_unary1(td_unary op, float xf) {
    double x = xf;
    if ((op == TD_UNARY_GELU_ERF || op == TD_UNARY_GELU_TANH) && xf == -INFINITY)
        return -0.0f; /* the limit; the formula's -inf * 0 would be NaN */
    switch (op) {
    case TD_UNARY_EXP: return (float)exp(x);
    case TD_UNARY_TANH: return (float)tanh(x);
    case TD_UNARY_ERF: return (float)erf(x);
    case TD_UNARY_SIGMOID: return (float)(x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)));
    case TD_UNARY_RELU: return xf > 0.0f ? xf : 0.0f;
    case TD_UNARY_GELU_ERF: return (float)(0.5 * x * (1.0 + erf(x * 0.70710678118654752440)));
    case TD_UNARY_GELU_TANH: return (float)(0.5 * x * (1.0 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x))));
    }
    return xf;
}

void td_ref_unary(td_unary op, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] = ref_unary1(op, x[i]);
}

void td_ref_bias_unary(td_unary op, const float *x, const float *bias, float *y, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            y[r * cols + j] = ref_unary1(op, x[r * cols + j] + (bias ? bias[j] : 0.0f));
}

void td_ref_gelu_erf(const float *x, float *y, int64_t n) { td_ref_unary(TD_UNARY_GELU_ERF, x, y, n); }

void td_ref_gelu_tanh(const float *x, float *y, int64_t n) { td_ref_unary(TD_UNARY_GELU_TANH, x, y, n); }
