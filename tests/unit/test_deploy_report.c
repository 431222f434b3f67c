/* Latency statistics (hand-computed values), SHA-256 (FIPS 180-4 test vectors),
 * machine info and the report.json builder. */
#include "core/ctx.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "deploy/machine.h"
#include "deploy/report.h"
#include "deploy/stats.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * (1 + fabs(b)); }

static void test_stats(void) {
    td_ctx *ctx = td_ctx_new();
    const double x[] = {5, 1, 4, 2, 3};
    td_latency_stats s;
    CHECK(td_latency_stats_compute(ctx, x, 5, TD_PCT_LINEAR, &s) == TD_OK);
    CHECK(s.n == 5 && near(s.total, 15) && near(s.mean, 3) && near(s.min, 1) && near(s.max, 5));
    CHECK_MSG(near(s.sd, sqrt(2.5)), "sd %g", s.sd); /* sum of squares 10 over n-1 = 4 */
    CHECK(near(s.p50, 3));
    CHECK_MSG(near(s.p90, 4.6), "p90 %g", s.p90); /* h = 4 * 0.90 = 3.6 -> 4 + 0.6 */
    CHECK_MSG(near(s.p95, 4.8), "p95 %g", s.p95);
    CHECK_MSG(near(s.p99, 4.96), "p99 %g", s.p99);
    CHECK(near(td_latency_throughput(&s, 4), 4.0 * 5 / 15));
    CHECK(x[0] == 5); /* input untouched */

    CHECK(td_latency_stats_compute(ctx, x, 5, TD_PCT_NEAREST_RANK, &s) == TD_OK);
    CHECK(near(s.p50, 3) && near(s.p90, 5) && near(s.p95, 5) && near(s.p99, 5));
    const double sorted[] = {1, 2, 3, 4, 5};
    CHECK(near(td_percentile_sorted(sorted, 5, 20, TD_PCT_NEAREST_RANK), 1)); /* ceil(1.0) = 1 */
    CHECK(near(td_percentile_sorted(sorted, 5, 21, TD_PCT_NEAREST_RANK), 2)); /* ceil(1.05) = 2 */
    CHECK(near(td_percentile_sorted(sorted, 5, 0, TD_PCT_NEAREST_RANK), 1));
    CHECK(near(td_percentile_sorted(sorted, 5, 100, TD_PCT_LINEAR), 5));
    CHECK(near(td_percentile_sorted(sorted, 5, 25, TD_PCT_LINEAR), 2));

    const double one[] = {0.25};
    CHECK(td_latency_stats_compute(ctx, one, 1, TD_PCT_LINEAR, &s) == TD_OK);
    CHECK(s.sd == 0 && near(s.p99, 0.25) && near(s.p50, 0.25));

    const double bad[] = {1, NAN};
    CHECK(td_latency_stats_compute(ctx, bad, 2, TD_PCT_LINEAR, &s) == TD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(td_error_message(ctx), "sample 1") != NULL);
    const double neg[] = {-1};
    CHECK(td_latency_stats_compute(ctx, neg, 1, TD_PCT_LINEAR, &s) == TD_ERR_INVALID_ARGUMENT);
    CHECK(td_latency_stats_compute(ctx, x, 0, TD_PCT_LINEAR, &s) == TD_ERR_INVALID_ARGUMENT);
    td_ctx_free(ctx);
}

static void sha_hex_of(const void *data, size_t n, char hex[65]) {
    td_sha256 h;
    uint8_t d[32];
    td_sha256_init(&h);
    td_sha256_update(&h, data, n);
    td_sha256_final(&h, d);
    td_sha256_hex(d, hex);
}

static void test_sha256(void) {
    char hex[65];
    sha_hex_of("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    sha_hex_of("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: padding spills */
    sha_hex_of(two, strlen(two), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    /* one million 'a', fed in uneven pieces to exercise the block buffer */
    static char a[1000000];
    memset(a, 'a', sizeof a);
    td_sha256 h;
    uint8_t d[32];
    td_sha256_init(&h);
    size_t off = 0, step = 1;
    while (off < sizeof a) {
        size_t take = step < sizeof a - off ? step : sizeof a - off;
        td_sha256_update(&h, a + off, take);
        off += take;
        step = step * 3 % 1021 + 1;
    }
    td_sha256_final(&h, d);
    td_sha256_hex(d, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

static void test_machine(void) {
    td_machine_info m;
    td_machine_info_read(&m);
    CHECK(m.logical_cores >= 1);
    CHECK(m.memory_bytes > (64ull << 20));
    CHECK(strlen(m.cpu_model) > 0 && strlen(m.os) > 0 && strlen(m.compiler) > 0);
}

static void test_report(void) {
    td_ctx *ctx = td_ctx_new();
    td_report *r = NULL;
    CHECK(td_report_new(ctx, "convert", &r) == TD_OK);
    if (!r) {
        td_ctx_free(ctx);
        return;
    }
    CHECK(td_report_set_model(ctx, r, "org/name", "/models/x", "feature-extraction", NULL) == TD_OK);
    const int64_t b[3] = {1, 8, 32}, sq[3] = {16, 128, 256}, bad[3] = {4, 2, 8};
    CHECK(td_report_set_shapes(ctx, r, b, sq) == TD_OK);
    CHECK(td_report_set_shapes(ctx, r, bad, sq) == TD_ERR_INVALID_ARGUMENT);
    td_validation_result v = {.backend = "cpu", .output = "last_hidden_state", .n_compared = 100,
                              .max_abs_diff = 1e-6, .max_rel_diff = 2e-5, .atol = 1e-4, .rtol = 1e-3,
                              .argmax_agreement = -1, .passed = true};
    CHECK(td_report_add_validation(ctx, r, &v) == TD_OK);
    v.backend = "cpu-fp16";
    v.argmax_agreement = 0.75;
    v.passed = false;
    v.max_abs_diff = INFINITY;
    CHECK(td_report_add_validation(ctx, r, &v) == TD_OK);
    const double lat[] = {0.010, 0.012, 0.011, 0.013};
    td_benchmark_result bm = {.backend = "cpu", .batch = 8, .sequence = 128, .warmup = 3};
    CHECK(td_latency_stats_compute(ctx, lat, 4, TD_PCT_LINEAR, &bm.latency) == TD_OK);
    CHECK(td_report_add_benchmark(ctx, r, &bm) == TD_OK);
    CHECK(td_report_add_artifact(ctx, r, "onnx", "out/model.onnx") == TD_OK);
    const char *tmp = td_test_env("TD_TMP", "/tmp");
    char path[1024];
    snprintf(path, sizeof path, "%s/test_report_%d.json", tmp, (int)getpid());
    CHECK(td_report_write(ctx, r, path) == TD_OK);
    td_report_free(r);

    char *text = NULL;
    size_t len = 0;
    CHECK(td_read_file(ctx, path, 1 << 20, &text, &len) == TD_OK);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    CHECK(j != NULL);
    if (j) {
        CHECK(strcmp(cJSON_GetObjectItem(j, "schema")->valuestring, "tdeploy.report/1") == 0);
        cJSON *tool = cJSON_GetObjectItem(j, "tool");
        CHECK(strcmp(cJSON_GetObjectItem(tool, "version")->valuestring, td_version()) == 0);
        CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "finished_at")));
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "machine"), "logical_cores")->valuedouble >= 1);
        cJSON *model = cJSON_GetObjectItem(j, "model");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(model, "revision")));
        cJSON *val = cJSON_GetObjectItem(j, "validation");
        CHECK(cJSON_GetArraySize(val) == 2);
        cJSON *v0 = cJSON_GetArrayItem(val, 0), *v1 = cJSON_GetArrayItem(val, 1);
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(v0, "argmax_agreement")));
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(v0, "passed")) && cJSON_IsFalse(cJSON_GetObjectItem(v1, "passed")));
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(v1, "max_abs_diff"))); /* infinity -> null */
        CHECK(near(cJSON_GetObjectItem(v1, "argmax_agreement")->valuedouble, 0.75));
        cJSON *bj = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "benchmarks"), 0);
        cJSON *tp = cJSON_GetObjectItem(bj, "throughput");
        /* 4 runs of 8 sequences in 0.046 s */
        CHECK(fabs(cJSON_GetObjectItem(tp, "sequences_per_s")->valuedouble - 32 / 0.046) < 1e-6);
        CHECK(fabs(cJSON_GetObjectItem(tp, "tokens_per_s")->valuedouble - 32 * 128 / 0.046) < 1e-3);
        cJSON *lj = cJSON_GetObjectItem(bj, "latency_s");
        CHECK(fabs(cJSON_GetObjectItem(lj, "p50")->valuedouble - 0.0115) < 1e-12);
        cJSON *shapes = cJSON_GetObjectItem(j, "shapes");
        CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(shapes, "sequence"), 2)->valuedouble == 256);
        cJSON_Delete(j);
    }
    free(text);
    unlink(path);
    /* writing into a missing directory fails cleanly */
    CHECK(td_report_new(ctx, "convert", &r) == TD_OK);
    CHECK(td_report_write(ctx, r, "/nonexistent-dir-td/report.json") == TD_ERR_IO);
    td_report_free(r);
    td_report_free(NULL);
    td_ctx_free(ctx);
}

int main(void) {
    test_stats();
    test_sha256();
    test_machine();
    test_report();
    return td_test_finish("test_deploy_report");
}
