/* The in-place KV cache: com.tdeploy::KvCacheAppend on a hand-built graph (its output is the caller's cache buffer,
 * the new columns land at the position, nothing else changes, positions and shapes outside the cache are errors,
 * repeated steps of one shape plan once and allocate nothing) and td_gen_kv_bias (padding, causal, window). */
#include "generate/kv_inplace.h"
#include "onnx/ir.h"
#include "tdeploy/session.h"
#include "test.h"

#include <float.h>
#include <string.h>

enum { B = 1, H = 2, C = 5, D = 3 };

static td_value *input(td_graph *g, const char *name, td_dtype dt, int rank, const int64_t *dims) {
    td_value *v = NULL;
    CHECK(td_graph_add_value(NULL, g, name, &v) == TD_OK);
    CHECK(td_value_set_tensor_type(NULL, v, dt, rank, dims, NULL) == TD_OK);
    CHECK(td_graph_add_input(NULL, g, v) == TD_OK);
    return v;
}

/* cache (1, 2, 5, 3), new (1, 2, S, 3), position (1) -> KvCacheAppend -> present */
static td_model *build(void) {
    td_model *m = td_model_new();
    td_model_set_opset(NULL, m, "", 17);
    td_model_set_opset(NULL, m, "com.tdeploy", 1);
    td_graph *g = m->graph;
    const int64_t cd[4] = {B, H, C, D}, nd[4] = {B, H, -1, D}, one = 1;
    td_value *in[3] = {input(g, "cache", TD_F32, 4, cd), input(g, "new", TD_F32, 4, nd),
                       input(g, "position", TD_I64, 1, &one)};
    td_value *out = NULL;
    CHECK(td_graph_add_value(NULL, g, "present", &out) == TD_OK);
    CHECK(td_graph_add_node(NULL, g, "KvCacheAppend", "com.tdeploy", "append", in, 3, &out, 1, NULL) == TD_OK);
    CHECK(td_graph_add_output(NULL, g, out) == TD_OK);
    return m;
}

static td_status step(td_ctx *ctx, td_session *s, float *cache, const float *x, int64_t S, int64_t *pos) {
    const int64_t cs[4] = {B, H, C, D}, xs[4] = {B, H, S, D}, one = 1;
    TD_TRY(td_session_set_input(ctx, s, "cache", TD_DTYPE_FLOAT32, 4, cs, cache, sizeof(float) * B * H * C * D));
    TD_TRY(td_session_set_input(ctx, s, "new", TD_DTYPE_FLOAT32, 4, xs, x, sizeof(float) * (size_t)(B * H * S * D)));
    TD_TRY(td_session_set_input(ctx, s, "position", TD_DTYPE_INT64, 1, &one, pos, sizeof *pos));
    return td_session_run(ctx, s);
}

static void test_append(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = build();
    td_session *s = NULL;
    CHECK(td_session_create_model(ctx, m, NULL, &s) == TD_OK);
    float cache[B * H * C * D], want[B * H * C * D], x[B * H * 2 * D];
    for (int i = 0; i < B * H * C * D; i++)
        cache[i] = want[i] = -1.0f - (float)i;
    for (int i = 0; i < B * H * 2 * D; i++)
        x[i] = 100.0f + (float)i;
    /* two columns at position 1, then one column at each of 3 and 4 (a prefill, then decode steps) */
    int64_t pos = 1;
    CHECK(step(ctx, s, cache, x, 2, &pos) == TD_OK);
    for (int h = 0; h < H; h++)
        for (int t = 0; t < 2; t++)
            for (int d = 0; d < D; d++)
                want[(h * C + 1 + t) * D + d] = x[(h * 2 + t) * D + d];
    td_session_stats st0, st1;
    td_session_get_stats(s, &st0);
    for (pos = 3; pos < C; pos++) {
        float col[B * H * D];
        for (int i = 0; i < B * H * D; i++)
            col[i] = 1000.0f * (float)pos + (float)i;
        CHECK(step(ctx, s, cache, col, 1, &pos) == TD_OK);
        for (int h = 0; h < H; h++)
            for (int d = 0; d < D; d++)
                want[(h * C + pos) * D + d] = col[h * D + d];
        td_session_output o;
        CHECK(td_session_get_output(ctx, s, 0, &o) == TD_OK);
        CHECK_MSG(o.data == (const void *)cache && o.nbytes == sizeof cache && o.shape[2] == C,
                  "the output is the cache buffer itself (%p vs %p)", o.data, (void *)cache);
    }
    CHECK_MSG(memcmp(cache, want, sizeof cache) == 0, "new columns at their positions, the rest untouched");
    td_session_get_stats(s, &st1);
    CHECK_MSG(st1.plans == st0.plans + 1 && st1.allocs - st0.allocs <= 3,
              "decode steps of one shape: one plan (%llu), allocations only for it (%llu)",
              (unsigned long long)(st1.plans - st0.plans), (unsigned long long)(st1.allocs - st0.allocs));
    /* hostile positions and shapes: errors, the cache unchanged */
    float before[B * H * C * D];
    memcpy(before, cache, sizeof cache);
    int64_t bad[3] = {-1, C, INT64_MAX};
    for (int k = 0; k < 3; k++)
        CHECK_MSG(step(ctx, s, cache, x, 1, &bad[k]) == TD_ERR_INVALID_ARGUMENT &&
                      strstr(td_error_message(ctx), "outside the cache"),
                  "position %lld refused: %s", (long long)bad[k], td_error_message(ctx));
    pos = 4;
    CHECK_MSG(step(ctx, s, cache, x, 2, &pos) == TD_ERR_INVALID_ARGUMENT, "2 columns at 4 of 5 refused");
    float big[B * H * (C + 1) * D] = {0};
    pos = 0;
    CHECK_MSG(step(ctx, s, cache, big, C + 1, &pos) == TD_ERR_SHAPE, "more new columns than the cache refused: %s",
              td_error_message(ctx));
    CHECK(memcmp(cache, before, sizeof cache) == 0);
    td_session_free(s);
    td_model_free(m);
    td_ctx_free(ctx);
}

/* the cache as an initializer (model data, maybe a read-only mapping): refused when the session is made */
static void test_const_cache_refused(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = build();
    td_graph *g = m->graph;
    td_value *cache = td_graph_find(g, "cache");
    static const float zeros[B * H * C * D];
    const int64_t cd[4] = {B, H, C, D};
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(NULL, "cache", TD_F32, 4, cd, zeros, sizeof zeros, &t) == TD_OK);
    CHECK(td_graph_set_initializer(NULL, g, cache, t) == TD_OK);
    td_session *s = NULL;
    CHECK_MSG(td_session_create_model(ctx, m, NULL, &s) == TD_ERR_UNSUPPORTED &&
                  strstr(td_error_message(ctx), "updated in place"),
              "a constant cache is refused: %s", td_error_message(ctx));
    td_session_free(s);
    td_model_free(m);
    td_ctx_free(ctx);
}

static void test_bias(void) {
    /* 2 rows of 6 cache columns: row 1 left-padded by 2; queries at columns 3 and 4; window 3 */
    const int64_t mask[12] = {1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0};
    float bias[2 * 2 * 6];
    td_gen_kv_bias(bias, mask, 2, 2, 6, 3, 0);
    const int open_nowin[2][2][6] = {{{1, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 0}}, {{0, 0, 1, 1, 0, 0}, {0, 0, 1, 1, 1, 0}}};
    bool ok = true;
    for (int i = 0; i < 24; i++)
        ok &= bias[i] == (open_nowin[i / 12][(i / 6) % 2][i % 6] ? 0.0f : -FLT_MAX);
    CHECK_MSG(ok, "padding + causal bias");
    td_gen_kv_bias(bias, mask, 2, 2, 6, 3, 3);
    const int open_win[2][2][6] = {{{0, 1, 1, 1, 0, 0}, {0, 0, 1, 1, 1, 0}}, {{0, 0, 1, 1, 0, 0}, {0, 0, 1, 1, 1, 0}}};
    ok = true;
    for (int i = 0; i < 24; i++)
        ok &= bias[i] == (open_win[i / 12][(i / 6) % 2][i % 6] ? 0.0f : -FLT_MAX);
    CHECK_MSG(ok, "sliding window of 3: query column q sees q-2..q");
}

int main(void) {
    test_append();
    test_const_cache_refused();
    test_bias();
    return td_test_finish("test_kv_cache");
}
