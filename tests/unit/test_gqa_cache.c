/* GroupQueryAttention (runtime/cpu/op_decoder_attn.c) with the KV cache in the
 * layouts a generation loop binds: present written into a fresh buffer, and
 * present sharing the storage of past (a preallocated cache: past is a view of
 * the cache, present.N is the cache itself), and ONNX Runtime's shared buffer
 * (past and present one (B, KV, capacity, D) cache, seqlens_k giving the
 * length), on the optimized and the
 * reference kernels. Every run must give the same output and present as the
 * fresh-buffer run, and that run must match a double-precision reference of
 * grouped causal attention over past ++ new. The op definition is driven
 * directly (init / shape / exec), as a session's backend does. */
#include "core/ctx.h"
#include "onnx/ir.h"
#include "runtime/cpu/ops.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, S = 3, P = 5, T = P + S, N = 4, KV = 2, D = 8 };

static uint32_t rng = 777u;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

typedef struct run_io {
    float q[B * S * N * D], k[B * S * KV * D], v[B * S * KV * D]; /* (B, S, heads * D) */
    float pk[B * KV * P * D], pv[B * KV * P * D];                 /* (B, KV, P, D) */
} run_io;

/* Runs the op (domain's GroupQueryAttention) once, keys up to T in use. past_k/past_v: where past lives;
 * present_k/present_v: where present is written (may be the same storage). total: total_sequence_length;
 * bias: NULL or (B, 1, S, total). out: (B, S, N*D). */
static void run_gqa_as(td_ctx *ctx, const td_node *node, const char *domain, bool reference, const run_io *io,
                       int64_t past_rows, int32_t total, const float *bias, float *past_k, float *past_v,
                       float *present_k, float *present_v, float *out) {
    const td_op_def *def = td_op_find(domain, "GroupQueryAttention");
    CHECK(def != NULL);
    if (!def)
        return;
    int32_t seqlens[B] = {T - 1, T - 1};
    td_rt_tensor t_in[11] = {
        {TD_F32, 3, {B, S, N * D}, (void *)io->q}, {TD_F32, 3, {B, S, KV * D}, (void *)io->k},
        {TD_F32, 3, {B, S, KV * D}, (void *)io->v}, {TD_F32, 4, {B, KV, past_rows, D}, past_k},
        {TD_F32, 4, {B, KV, past_rows, D}, past_v}, {TD_I32, 1, {B}, seqlens},
        {TD_I32, 0, {0}, &total}, {0}, {0}, {0}, {TD_F32, 4, {B, 1, S, total}, (void *)bias}};
    td_rt_tensor t_out[3] = {{TD_F32, 0, {0}, out}, {TD_F32, 0, {0}, present_k}, {TD_F32, 0, {0}, present_v}};
    td_rt_tensor *tin[11], *tout[3];
    int in_idx[11], out_idx[3], n_in = bias ? 11 : 7;
    td_dtype in_dt[11], out_dt[3];
    for (int i = 0; i < 11; i++) {
        bool given = i < 7 || i == 10;
        tin[i] = given ? &t_in[i] : NULL;
        in_idx[i] = given ? i : -1;
        in_dt[i] = given ? t_in[i].dtype : TD_UNDEFINED;
    }
    for (int i = 0; i < 3; i++) {
        tout[i] = &t_out[i];
        out_idx[i] = 11 + i;
    }
    td_rt_node rn;
    memset(&rn, 0, sizeof rn);
    rn.node = node;
    rn.def = def;
    rn.opset = 1;
    rn.n_in = n_in;
    rn.n_out = 3;
    rn.in = in_idx;
    rn.out = out_idx;
    rn.tin = tin;
    rn.tout = tout;
    rn.threads = 1;
    td_rt_env env = {.threads = 1, .pool = NULL, .reference = reference};
    CHECK_MSG(def->init(ctx, &rn, in_dt, out_dt) == TD_OK, "%s", td_error_message(ctx));
    CHECK_MSG(def->shape(ctx, &rn, tin, tout) == TD_OK, "%s", td_error_message(ctx));
    CHECK(t_out[1].rank == 4 && t_out[1].shape[2] == (past_rows > total ? past_rows : total));
    for (int i = 0; i < 3; i++)
        tout[i]->data = i == 0 ? (void *)out : i == 1 ? (void *)present_k : (void *)present_v; /* shape() resets */
    rn.scratch = aligned_alloc(64, (rn.scratch_bytes + 63) / 64 * 64 + 64);
    CHECK(rn.scratch != NULL);
    CHECK_MSG(def->exec(ctx, &rn, tin, tout, &env) == TD_OK, "%s", td_error_message(ctx));
    free(rn.scratch);
    free(rn.state);
}

static void run_gqa(td_ctx *ctx, const td_node *node, bool reference, const run_io *io, int64_t past_rows,
                    float *past_k, float *past_v, float *present_k, float *present_v, float *out) {
    run_gqa_as(ctx, node, "com.microsoft", reference, io, past_rows, T, NULL, past_k, past_v, present_k, present_v,
               out);
}

/* Double-precision grouped causal attention over past ++ new: out (B, S, N*D), present (B, KV, T, D). */
static void reference(const run_io *io, double *out, double *pres_k, double *pres_v) {
    for (int b = 0; b < B; b++)
        for (int g = 0; g < KV; g++)
            for (int t = 0; t < T; t++)
                for (int d = 0; d < D; d++) {
                    int o = ((b * KV + g) * T + t) * D + d;
                    pres_k[o] = t < P ? io->pk[((b * KV + g) * P + t) * D + d] : io->k[(b * S + t - P) * KV * D + g * D + d];
                    pres_v[o] = t < P ? io->pv[((b * KV + g) * P + t) * D + d] : io->v[(b * S + t - P) * KV * D + g * D + d];
                }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < N; h++)
            for (int i = 0; i < S; i++) {
                int g = h / (N / KV), last = P + i;
                double sc[T], mx = -1e300, sum = 0;
                for (int t = 0; t <= last; t++) {
                    double a = 0;
                    for (int d = 0; d < D; d++)
                        a += (double)io->q[(b * S + i) * N * D + h * D + d] * pres_k[((b * KV + g) * T + t) * D + d];
                    sc[t] = a / sqrt((double)D);
                    mx = sc[t] > mx ? sc[t] : mx;
                }
                for (int t = 0; t <= last; t++)
                    sum += (sc[t] = exp(sc[t] - mx));
                for (int d = 0; d < D; d++) {
                    double a = 0;
                    for (int t = 0; t <= last; t++)
                        a += sc[t] / sum * pres_v[((b * KV + g) * T + t) * D + d];
                    out[(b * S + i) * N * D + h * D + d] = a;
                }
            }
}

static double max_diff_f(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

int main(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = td_model_new();
    td_graph *g = m->graph;
    const char *names[10] = {"q", "k", "v", "pk", "pv", "sk", "tot", "o", "prk", "prv"};
    td_value *vals[10];
    for (int i = 0; i < 10; i++)
        CHECK(td_graph_get_value(ctx, g, names[i], &vals[i]) == TD_OK);
    td_node *node = NULL;
    CHECK(td_graph_add_node(ctx, g, "GroupQueryAttention", "com.microsoft", "gqa", vals, 7, vals + 7, 3, &node) ==
          TD_OK);
    CHECK(td_node_add_attr_int(ctx, node, "num_heads", N) == TD_OK);
    CHECK(td_node_add_attr_int(ctx, node, "kv_num_heads", KV) == TD_OK);

    static run_io io;
    float *fields[5] = {io.q, io.k, io.v, io.pk, io.pv};
    size_t sizes[5] = {B * S * N * D, B * S * KV * D, B * S * KV * D, B * KV * P * D, B * KV * P * D};
    for (int f = 0; f < 5; f++)
        for (size_t i = 0; i < sizes[f]; i++)
            fields[f][i] = frand();
    static double ref_out[B * S * N * D], ref_k[B * KV * T * D], ref_v[B * KV * T * D];
    reference(&io, ref_out, ref_k, ref_v);

    const size_t n_out = B * S * N * D, n_cache = B * KV * T * D;
    for (int r = 0; r < 2; r++) {
        bool refk = r == 1;
        /* 1. fresh present buffers, past in its own */
        static float pk[B * KV * P * D], pv[B * KV * P * D], fk[B * KV * T * D], fv[B * KV * T * D], fo[B * S * N * D];
        memcpy(pk, io.pk, sizeof pk);
        memcpy(pv, io.pv, sizeof pv);
        run_gqa(ctx, node, refk, &io, P, pk, pv, fk, fv, fo);
        double eo = 0, ek = 0, ev = 0;
        for (size_t i = 0; i < n_out; i++)
            eo = fmax(eo, fabs(fo[i] - ref_out[i]));
        for (size_t i = 0; i < n_cache; i++) {
            ek = fmax(ek, fabs(fk[i] - ref_k[i]));
            ev = fmax(ev, fabs(fv[i] - ref_v[i]));
        }
        CHECK_MSG(eo < 1e-5 && ek == 0 && ev == 0, "%s kernels, fresh present: out err %.2e, present k %.2e v %.2e",
                  refk ? "reference" : "optimized", eo, ek, ev);
        CHECK(memcmp(pk, io.pk, sizeof pk) == 0 && memcmp(pv, io.pv, sizeof pv) == 0); /* past untouched */

        /* 2. present shares past's storage: one cache buffer holds past (B, KV, P, D) at its start and
         * receives present (B, KV, T, D); the op must move the past rows without losing any */
        float *ck = calloc(n_cache, sizeof(float)), *cv = calloc(n_cache, sizeof(float));
        float *so = calloc(n_out, sizeof(float));
        memcpy(ck, io.pk, sizeof io.pk);
        memcpy(cv, io.pv, sizeof io.pv);
        run_gqa(ctx, node, refk, &io, P, ck, cv, ck, cv, so);
        CHECK_MSG(max_diff_f(so, fo, n_out) == 0 && max_diff_f(ck, fk, n_cache) == 0 && max_diff_f(cv, fv, n_cache) == 0,
                  "%s kernels, present aliasing past: out %.2e, k %.2e, v %.2e from the fresh-buffer run",
                  refk ? "reference" : "optimized", max_diff_f(so, fo, n_out), max_diff_f(ck, fk, n_cache),
                  max_diff_f(cv, fv, n_cache));


        /* 3. ORT's shared buffer: past and present are one (B, KV, CAP, D) cache holding P tokens per block;
         * seqlens_k says how many, the new rows land at [P, T) in place and nothing else moves */
        enum { CAP = T + 3 };
        float *sk = malloc(sizeof(float) * B * KV * CAP * D), *sv = malloc(sizeof(float) * B * KV * CAP * D);
        for (int i = 0; i < B * KV * CAP * D; i++)
            sk[i] = sv[i] = 12345.0f; /* rows past T must stay untouched */
        for (int bh = 0; bh < B * KV; bh++) {
            memcpy(sk + bh * CAP * D, io.pk + bh * P * D, sizeof(float) * P * D);
            memcpy(sv + bh * CAP * D, io.pv + bh * P * D, sizeof(float) * P * D);
        }
        run_gqa(ctx, node, refk, &io, CAP, sk, sv, sk, sv, so);
        double ek2 = 0, ev2 = 0;
        bool tail_kept = true;
        for (int bh = 0; bh < B * KV; bh++) {
            ek2 = fmax(ek2, max_diff_f(sk + bh * CAP * D, fk + bh * T * D, T * D));
            ev2 = fmax(ev2, max_diff_f(sv + bh * CAP * D, fv + bh * T * D, T * D));
            for (int i = T * D; i < CAP * D; i++)
                tail_kept &= sk[bh * CAP * D + i] == 12345.0f && sv[bh * CAP * D + i] == 12345.0f;
        }
        CHECK_MSG(max_diff_f(so, fo, n_out) == 0 && ek2 == 0 && ev2 == 0 && tail_kept,
                  "%s kernels, shared (B, KV, %d, D) buffer: out %.2e, k %.2e, v %.2e, spare rows kept %d",
                  refk ? "reference" : "optimized", CAP, max_diff_f(so, fo, n_out), ek2, ev2, tail_kept);

        /* 4. the generator's binding (com.tdeploy::GroupQueryAttention: present is past's bytes): the same cache,
         * total_sequence_length = the capacity, keys in use T (seqlens_k), and an additive bias (B, 1, S, CAP)
         * that is 0 on the columns in use and closed past them: the attention spans the T columns in use and
         * gives the fresh-buffer run's output; and the same with a bias that closes key 0 of batch row 1, against
         * com.microsoft's op given that bias over T columns */
        static float bias_cap[B * S * CAP], bias_t[B * S * T];
        for (int b = 0; b < B; b++)
            for (int i = 0; i < S; i++)
                for (int j = 0; j < CAP; j++)
                    bias_cap[(b * S + i) * CAP + j] = j < T ? 0.0f : -3.0e38f;
        for (int bh = 0; bh < B * KV; bh++) {
            memcpy(sk + bh * CAP * D, io.pk + bh * P * D, sizeof(float) * P * D);
            memcpy(sv + bh * CAP * D, io.pv + bh * P * D, sizeof(float) * P * D);
        }
        run_gqa_as(ctx, node, "com.tdeploy", refk, &io, CAP, CAP, bias_cap, sk, sv, sk, sv, so);
        ek2 = ev2 = 0;
        for (int bh = 0; bh < B * KV; bh++) {
            ek2 = fmax(ek2, max_diff_f(sk + bh * CAP * D, fk + bh * T * D, T * D));
            ev2 = fmax(ev2, max_diff_f(sv + bh * CAP * D, fv + bh * T * D, T * D));
        }
        CHECK_MSG(max_diff_f(so, fo, n_out) == 0 && ek2 == 0 && ev2 == 0,
                  "%s kernels, com.tdeploy op on a (B, KV, %d, D) cache, total %d, %d keys in use: out %.2e, k %.2e, "
                  "v %.2e", refk ? "reference" : "optimized", CAP, CAP, T, max_diff_f(so, fo, n_out), ek2, ev2);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < S; i++)
                for (int j = 0; j < CAP; j++) {
                    float x = b == 1 && j == 0 ? -3.0e38f : j < T ? 0.25f * (float)(j % 3) : -3.0e38f;
                    bias_cap[(b * S + i) * CAP + j] = x;
                    if (j < T)
                        bias_t[(b * S + i) * T + j] = x;
                }
        float *bo = calloc(n_out, sizeof(float));
        memcpy(pk, io.pk, sizeof pk);
        memcpy(pv, io.pv, sizeof pv);
        run_gqa_as(ctx, node, "com.microsoft", refk, &io, P, T, bias_t, pk, pv, fk, fv, bo);
        for (int bh = 0; bh < B * KV; bh++) {
            memcpy(sk + bh * CAP * D, io.pk + bh * P * D, sizeof(float) * P * D);
            memcpy(sv + bh * CAP * D, io.pv + bh * P * D, sizeof(float) * P * D);
        }
        run_gqa_as(ctx, node, "com.tdeploy", refk, &io, CAP, CAP, bias_cap, sk, sv, sk, sv, so);
        CHECK_MSG(max_diff_f(so, bo, n_out) == 0 && max_diff_f(so, fo, n_out) > 1e-3,
                  "%s kernels, com.tdeploy op with a bias over the capacity: out %.2e from com.microsoft's over T "
                  "columns (and the bias changed it: %.2e)", refk ? "reference" : "optimized", max_diff_f(so, bo, n_out),
                  max_diff_f(so, fo, n_out));
        free(bo);
        free(sk);
        free(sv);
        free(ck);
        free(cv);
        free(so);
    }
    td_model_free(m);
    td_ctx_free(ctx);
    return td_test_finish("test_gqa_cache");
}
