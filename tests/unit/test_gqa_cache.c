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

/* Runs the op once. past_k/past_v: where past lives; present_k/present_v: where present is written
 * (may be the same storage). out: (B, S, N*D). */
static void run_gqa(td_ctx *ctx, const td_node *node, bool reference, const run_io *io, int64_t past_rows,
                    float *past_k, float *past_v, float *present_k, float *present_v, float *out) {
    const td_op_def *def = td_op_find("com.microsoft", "GroupQueryAttention");
    CHECK(def != NULL);
    if (!def)
        return;
    int32_t seqlens[B] = {T - 1, T - 1}, total = T;
    td_rt_tensor t_in[7] = {
        {TD_F32, 3, {B, S, N * D}, (void *)io->q}, {TD_F32, 3, {B, S, KV * D}, (void *)io->k},
        {TD_F32, 3, {B, S, KV * D}, (void *)io->v}, {TD_F32, 4, {B, KV, past_rows, D}, past_k},
        {TD_F32, 4, {B, KV, past_rows, D}, past_v}, {TD_I32, 1, {B}, seqlens},
        {TD_I32, 0, {0}, &total}};
    td_rt_tensor t_out[3] = {{TD_F32, 0, {0}, out}, {TD_F32, 0, {0}, present_k}, {TD_F32, 0, {0}, present_v}};
    td_rt_tensor *tin[7], *tout[3];
    int in_idx[7], out_idx[3];
    td_dtype in_dt[7], out_dt[3];
    for (int i = 0; i < 7; i++) {
        tin[i] = &t_in[i];
        in_idx[i] = i;
        in_dt[i] = t_in[i].dtype;
    }
    for (int i = 0; i < 3; i++) {
        tout[i] = &t_out[i];
        out_idx[i] = 7 + i;
    }
    td_rt_node rn;
    memset(&rn, 0, sizeof rn);
    rn.node = node;
    rn.def = def;
    rn.opset = 1;
    rn.n_in = 7;
    rn.n_out = 3;
    rn.in = in_idx;
    rn.out = out_idx;
    rn.tin = tin;
    rn.tout = tout;
    rn.threads = 1;
    td_rt_env env = {.threads = 1, .pool = NULL, .reference = reference};
    CHECK_MSG(def->init(ctx, &rn, in_dt, out_dt) == TD_OK, "%s", td_error_message(ctx));
    CHECK_MSG(def->shape(ctx, &rn, tin, tout) == TD_OK, "%s", td_error_message(ctx));
    CHECK(t_out[1].rank == 4 && t_out[1].shape[2] == (past_rows > T ? past_rows : T));
    for (int i = 0; i < 3; i++)
        tout[i]->data = i == 0 ? (void *)out : i == 1 ? (void *)present_k : (void *)present_v; /* shape() resets */
    rn.scratch = aligned_alloc(64, (rn.scratch_bytes + 63) / 64 * 64 + 64);
    CHECK(rn.scratch != NULL);
    CHECK_MSG(def->exec(ctx, &rn, tin, tout, &env) == TD_OK, "%s", td_error_message(ctx));
    free(rn.scratch);
    free(rn.state);
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
