/* LayerNorm / SkipLayerNorm, softmax and fused attention vs naive double
 * references, with odd sizes, every mask kind, strided QKV and 1/2 threads. */
#include "runtime/cpu/attention.h"
#include "runtime/cpu/layernorm.h"
#include "runtime/cpu/softmax.h"
#include "test.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) % 2000001) / 1000000.0f - 1.0f;
}
static float *rand_floats(size_t n, float amp) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = amp * uniform();
    return p;
}

static void test_layernorm(td_threadpool *pools[3]) {
    static const size_t cols_list[] = {1, 3, 16, 17, 64, 384, 769};
    for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++)
        for (int variant = 0; variant < 4; variant++) {
            size_t rows = 37, cols = cols_list[ci];
            int threads = 1 + (variant & 1);
            bool skip = variant >= 2, bias = variant == 3, beta = variant != 1;
            /* an offset of 100 makes the naive one-pass variance lose digits; two passes must not */
            float *x = rand_floats(rows * cols, 1.0f);
            for (size_t i = 0; i < rows * cols; i++)
                x[i] += 100.0f;
            float *sk = rand_floats(rows * cols, 1.0f), *b = rand_floats(cols, 1.0f);
            float *g = rand_floats(cols, 1.0f), *be = rand_floats(cols, 1.0f);
            float *out = malloc(rows * cols * sizeof(float)), *sum = malloc(rows * cols * sizeof(float));
            float *mean = malloc(rows * sizeof(float)), *inv = malloc(rows * sizeof(float));
            size_t skip_rows = variant == 3 ? 1 : rows; /* variant 3: skip broadcast as a (cols) vector */
            td_layernorm_args a = {.rows = rows, .cols = cols, .x = x, .skip = skip ? sk : NULL,
                                   .skip_rows = skip_rows, .bias = bias ? b : NULL, .gamma = g,
                                   .beta = beta ? be : NULL, .eps = 1e-5f, .out = out, .sum_out = skip ? sum : NULL,
                                   .mean_out = mean, .inv_std_out = inv};
            td_cpu_layernorm(pools[threads], &a);
            double worst = 0;
            for (size_t r = 0; r < rows; r++) {
                double s[1024], m = 0, v = 0;
                for (size_t i = 0; i < cols; i++) {
                    s[i] = (double)x[r * cols + i] + (skip ? sk[(r % skip_rows) * cols + i] : 0) + (bias ? b[i] : 0);
                    m += s[i];
                }
                m /= (double)cols;
                for (size_t i = 0; i < cols; i++)
                    v += (s[i] - m) * (s[i] - m);
                v /= (double)cols;
                double is = 1.0 / sqrt(v + 1e-5);
                for (size_t i = 0; i < cols; i++) {
                    double ref = (s[i] - m) * is * g[i] + (beta ? be[i] : 0);
                    double e = fabs(out[r * cols + i] - ref);
                    worst = e > worst ? e : worst;
                    if (skip)
                        CHECK(fabs(sum[r * cols + i] - s[i]) <= 1e-5 * fabs(s[i]));
                }
                CHECK(fabs(mean[r] - m) <= 1e-5 * fabs(m) + 1e-6);
                CHECK(fabs(inv[r] - is) <= 1e-4 * is);
            }
            /* inputs ~100 with unit spread: fp32 spacing at 100 is 7.6e-6, so ~1e-4 after normalization */
            CHECK_MSG(worst < 3e-4, "layernorm cols=%zu variant=%d: max abs error %g", cols, variant, worst);
            free(x), free(sk), free(b), free(g), free(be), free(out), free(sum), free(mean), free(inv);
        }
    /* in place: out == x */
    float x[6] = {1, 2, 3, 4, 5, 9}, g[3] = {1, 1, 1};
    td_layernorm_args a = {.rows = 2, .cols = 3, .x = x, .gamma = g, .eps = 0.0f, .out = x};
    td_cpu_layernorm(NULL, &a);
    CHECK(fabsf(x[0] + 1.2247449f) < 1e-5f && fabsf(x[1]) < 1e-6f && fabsf(x[2] - 1.2247449f) < 1e-5f);
}

static void test_softmax(td_threadpool *pools[3]) {
    static const size_t cols_list[] = {1, 2, 15, 16, 17, 128, 500};
    for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++)
        for (int t = 1; t <= 2; t++) {
            size_t rows = 33, cols = cols_list[ci];
            float *x = rand_floats(rows * cols, 30.0f), *y = malloc(rows * cols * sizeof(float));
            x[0] = 80.0f; /* exp(80) overflows without the max shift */
            td_cpu_softmax(pools[t], x, y, rows, cols);
            double worst = 0;
            for (size_t r = 0; r < rows; r++) {
                double mx = -INFINITY, s = 0;
                for (size_t i = 0; i < cols; i++)
                    mx = fmax(mx, x[r * cols + i]);
                for (size_t i = 0; i < cols; i++)
                    s += exp((double)x[r * cols + i] - mx);
                for (size_t i = 0; i < cols; i++) {
                    double ref = exp((double)x[r * cols + i] - mx) / s;
                    double e = fabs(y[r * cols + i] - ref) / (ref + 1e-30);
                    if (ref > 1e-30)
                        worst = e > worst ? e : worst;
                }
            }
            CHECK_MSG(worst < 1e-5, "softmax cols=%zu: max relative error %g", cols, worst);
            free(x), free(y);
        }
    float a[3] = {-INFINITY, 0.0f, -INFINITY}, b[2] = {-INFINITY, -INFINITY}, c[2] = {NAN, 1.0f};
    td_cpu_softmax_row(a, a, 3);
    CHECK(a[0] == 0.0f && a[1] == 1.0f && a[2] == 0.0f);
    td_cpu_softmax_row(b, b, 2);
    CHECK(isnan(b[0]) && isnan(b[1]));
    td_cpu_softmax_row(c, c, 2);
    CHECK(isnan(c[0]) && isnan(c[1]));
}

/* naive attention in double; mask semantics as documented in attention.h */
static void ref_attention(const td_attention_args *a, double *out /* (batch, q_seq, heads*D) */) {
    size_t D = a->head_dim, H = a->heads, S = a->kv_seq;
    double *s = malloc(S * sizeof(double));
    for (size_t b = 0; b < a->batch; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < a->q_seq; i++) {
                const float *q = a->q + (b * a->q_seq + i) * a->ld_q + h * D;
                double mx = -INFINITY;
                size_t live = 0;
                for (size_t j = 0; j < S; j++) {
                    const float *k = a->k + (b * S + j) * a->ld_k + h * D;
                    double dot = 0;
                    for (size_t d = 0; d < D; d++)
                        dot += (double)q[d] * k[d];
                    dot *= a->scale;
                    bool masked = false;
                    if (a->mask_kind == TD_ATTN_MASK_KEY_LENS)
                        masked = (int64_t)j >= a->key_lens[b];
                    else if (a->mask_kind == TD_ATTN_MASK_KEY_PADDING)
                        masked = a->key_padding[b * S + j] == 0;
                    else if (a->mask_kind == TD_ATTN_MASK_ADDITIVE)
                        dot += a->additive[b * a->mask_batch_stride + (a->mask_rows == 1 ? 0 : i * S) + j];
                    s[j] = masked ? -INFINITY : dot;
                    live += !masked;
                    mx = fmax(mx, s[j]);
                }
                double sum = 0;
                for (size_t j = 0; j < S; j++) {
                    s[j] = live ? exp(s[j] - mx) : 1.0; /* all masked: uniform */
                    sum += s[j];
                }
                for (size_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (size_t j = 0; j < S; j++)
                        acc += s[j] / sum * a->v[(b * S + j) * a->ld_v + h * D + d];
                    out[(b * a->q_seq + i) * H * D + h * D + d] = acc;
                }
            }
    free(s);
}

static void test_attention(td_threadpool *pools[3]) {
    struct {
        size_t batch, heads, seq, D;
    } shapes[] = {{1, 1, 1, 1}, {2, 3, 5, 8}, {3, 2, 17, 16}, {2, 4, 70, 64}, {1, 12, 130, 64}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int kind = 0; kind < 5; kind++) { /* 4 = additive mask broadcast over queries */
            size_t B = shapes[si].batch, H = shapes[si].heads, S = shapes[si].seq, D = shapes[si].D;
            size_t hid = H * D, ld = 3 * hid; /* packed QKV layout */
            float *qkv = rand_floats(B * S * ld, 1.0f);
            float *out = malloc(B * S * (hid + 3) * sizeof(float));
            double *ref = malloc(B * S * hid * sizeof(double));
            int32_t *lens = malloc(B * sizeof(int32_t)), *pad = malloc(B * S * sizeof(int32_t));
            float *add = rand_floats(B * S * S, 3.0f);
            for (size_t b = 0; b < B; b++) {
                lens[b] = b == 1 ? 0 : (int32_t)(S - b * S / 3); /* batch 1: everything masked */
                for (size_t j = 0; j < S; j++)
                    pad[b * S + j] = b == 1 ? 0 : (j % 3 != 1 || j == 0);
            }
            td_attention_args a = {.batch = B, .heads = H, .q_seq = S, .kv_seq = S, .head_dim = D, .q = qkv,
                                   .k = qkv + hid, .v = qkv + 2 * hid, .ld_q = ld, .ld_k = ld, .ld_v = ld,
                                   .out = out, .ld_out = hid + 3, .scale = 1.0f / sqrtf((float)D)};
            a.mask_kind = kind == 4 ? TD_ATTN_MASK_ADDITIVE : (td_attn_mask_kind)kind;
            a.key_lens = lens;
            a.key_padding = pad;
            a.additive = add;
            a.mask_batch_stride = kind == 4 ? S : S * S;
            a.mask_rows = kind == 4 ? 1 : S;
            int threads = 1 + (int)((si + (size_t)kind) & 1);
            CHECK(td_cpu_attention(NULL, pools[threads], &a) == TD_OK);
            ref_attention(&a, ref);
            double worst = 0;
            for (size_t r = 0; r < B * S; r++)
                for (size_t c = 0; c < hid; c++) {
                    double e = fabs(out[r * (hid + 3) + c] - ref[r * hid + c]);
                    worst = e > worst ? e : worst;
                }
            CHECK_MSG(worst < 2e-5, "attention B=%zu H=%zu S=%zu D=%zu mask=%d: max abs error %g", B, H, S, D, kind,
                      worst);
            free(qkv), free(out), free(ref), free(lens), free(pad), free(add);
        }
    td_attention_args bad = {.batch = 1, .heads = 1, .q_seq = 4, .kv_seq = 4, .head_dim = 2,
                             .mask_kind = TD_ATTN_MASK_ADDITIVE, .mask_rows = 3};
    CHECK(td_cpu_attention(NULL, NULL, &bad) == TD_ERR_SHAPE);
}

int main(void) {
    td_threadpool *pools[3] = {NULL, NULL, NULL};
    CHECK(td_threadpool_create(NULL, 1, &pools[1]) == TD_OK);
    CHECK(td_threadpool_create(NULL, 2, &pools[2]) == TD_OK);
    test_layernorm(pools);
    test_softmax(pools);
    test_attention(pools);
    td_threadpool_free(pools[1]);
    td_threadpool_free(pools[2]);
    return td_test_finish("test_cpu_transformer");
}
