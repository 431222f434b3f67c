/* report.json builder (layout in report.h). */
#include "deploy/report.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "core/log.h"
#include "deploy/machine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct td_report {
    cJSON *root;
    double start_s; /* monotonic, for duration_s */
};

void td_report_utc_now(char out[32]) {
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "unknown");
}

/* cJSON returns NULL on allocation failure; these helpers fold that into one flag. */
static cJSON *add_obj(cJSON *parent, const char *key, bool *ok) {
    cJSON *o = *ok ? cJSON_AddObjectToObject(parent, key) : NULL;
    if (!o)
        *ok = false;
    return o;
}

static void add_str(cJSON *o, const char *key, const char *v, bool *ok) {
    if (*ok && !(v ? cJSON_AddStringToObject(o, key, v) : cJSON_AddNullToObject(o, key)))
        *ok = false;
}

static void add_num(cJSON *o, const char *key, double v, bool *ok) {
    if (*ok && !(isfinite(v) ? cJSON_AddNumberToObject(o, key, v) : cJSON_AddNullToObject(o, key)))
        *ok = false;
}

static void add_bool(cJSON *o, const char *key, bool v, bool *ok) {
    if (*ok && !cJSON_AddBoolToObject(o, key, v))
        *ok = false;
}

/* Replace key in o (a section set twice keeps the latest). */
static cJSON *fresh_obj(cJSON *o, const char *key, bool *ok) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    return add_obj(o, key, ok);
}

static td_status oom(td_ctx *ctx) { return td_fail_oom(ctx, 256, "the report"); }

td_status td_report_new(td_ctx *ctx, const char *command, td_report **out) {
    *out = NULL;
    td_report *r = calloc(1, sizeof *r);
    if (!r)
        return oom(ctx);
    bool ok = (r->root = cJSON_CreateObject()) != NULL;
    char now[32];
    td_report_utc_now(now);
    r->start_s = td_now_s();
    td_machine_info m;
    td_machine_info_read(&m);
    if (ok) {
        add_str(r->root, "schema", "tdeploy.report/1", &ok);
        cJSON *tool = add_obj(r->root, "tool", &ok);
        add_str(tool, "name", "tdeploy", &ok);
        add_str(tool, "version", td_version(), &ok);
        add_str(tool, "command", command, &ok);
        add_str(r->root, "started_at", now, &ok);
        cJSON *mj = add_obj(r->root, "machine", &ok);
        add_str(mj, "cpu_model", m.cpu_model, &ok);
        add_str(mj, "cpu_features", m.cpu_features, &ok);
        add_num(mj, "logical_cores", m.logical_cores, &ok);
        add_num(mj, "memory_bytes", (double)m.memory_bytes, &ok);
        add_str(mj, "os", m.os, &ok);
        add_str(mj, "arch", m.arch, &ok);
        add_str(mj, "hostname", m.hostname, &ok);
        add_str(mj, "compiler", m.compiler, &ok);
        if (ok && !(cJSON_AddArrayToObject(r->root, "validation") && cJSON_AddArrayToObject(r->root, "benchmarks") &&
                    cJSON_AddObjectToObject(r->root, "artifacts")))
            ok = false;
    }
    if (!ok) {
        td_report_free(r);
        return oom(ctx);
    }
    *out = r;
    return TD_OK;
}

void td_report_free(td_report *r) {
    if (!r)
        return;
    cJSON_Delete(r->root);
    free(r);
}

cJSON *td_report_json(td_report *r) { return r->root; }

td_status td_report_set_model(td_ctx *ctx, td_report *r, const char *id, const char *source, const char *task,
                              const char *revision) {
    bool ok = true;
    cJSON *m = fresh_obj(r->root, "model", &ok);
    add_str(m, "id", id, &ok);
    add_str(m, "source", source, &ok);
    add_str(m, "task", task, &ok);
    add_str(m, "revision", revision, &ok);
    return ok ? TD_OK : oom(ctx);
}

static bool add_triple(cJSON *o, const char *key, const int64_t v[3]) {
    cJSON *a = cJSON_AddArrayToObject(o, key);
    if (!a)
        return false;
    for (int i = 0; i < 3; i++) {
        cJSON *n = cJSON_CreateNumber((double)v[i]);
        if (!n || !cJSON_AddItemToArray(a, n)) {
            cJSON_Delete(n);
            return false;
        }
    }
    return true;
}

td_status td_report_set_shapes(td_ctx *ctx, td_report *r, const int64_t batch[3], const int64_t sequence[3]) {
    for (int i = 0; i < 3; i++)
        if (batch[i] < 1 || sequence[i] < 1 || (i && (batch[i] < batch[i - 1] || sequence[i] < sequence[i - 1])))
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "report shapes must be positive and min <= opt <= max (batch %lld/%lld/%lld, sequence "
                           "%lld/%lld/%lld)",
                           (long long)batch[0], (long long)batch[1], (long long)batch[2], (long long)sequence[0],
                           (long long)sequence[1], (long long)sequence[2]);
    bool ok = true;
    cJSON *s = fresh_obj(r->root, "shapes", &ok);
    if (ok && !(add_triple(s, "batch", batch) && add_triple(s, "sequence", sequence)))
        ok = false;
    return ok ? TD_OK : oom(ctx);
}

td_status td_report_add_validation(td_ctx *ctx, td_report *r, const td_validation_result *v) {
    if (!v->backend || !v->output)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "a validation result needs a backend and an output name");
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(r->root, "validation");
    cJSON *o = cJSON_CreateObject();
    bool ok = arr && o;
    add_str(o, "backend", v->backend, &ok);
    add_str(o, "output", v->output, &ok);
    add_num(o, "n_compared", (double)v->n_compared, &ok);
    add_num(o, "max_abs_diff", v->max_abs_diff, &ok);
    add_num(o, "max_rel_diff", v->max_rel_diff, &ok);
    add_num(o, "atol", v->atol, &ok);
    add_num(o, "rtol", v->rtol, &ok);
    add_num(o, "argmax_agreement", v->argmax_agreement >= 0 ? v->argmax_agreement : NAN, &ok);
    if (v->min_mean_cosine > 0) { /* cosine-validated (int8) results say so and give the figures */
        add_num(o, "mean_cosine", v->mean_cosine, &ok);
        add_num(o, "min_cosine", v->min_cosine, &ok);
        add_num(o, "min_mean_cosine", v->min_mean_cosine, &ok);
        add_bool(o, "elementwise_decides", v->elementwise_decides, &ok);
    }
    add_bool(o, "passed", v->passed, &ok);
    if (ok && !cJSON_AddItemToArray(arr, o))
        ok = false;
    if (!ok) {
        cJSON_Delete(o);
        return oom(ctx);
    }
    return TD_OK;
}

td_status td_report_add_benchmark(td_ctx *ctx, td_report *r, const td_benchmark_result *b) {
    const td_latency_stats *l = &b->latency;
    if (!b->backend || b->batch < 1 || b->sequence < 1 || l->n == 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "a benchmark result needs a backend, batch >= 1, sequence >= 1 and at least one sample");
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(r->root, "benchmarks");
    cJSON *o = cJSON_CreateObject();
    bool ok = arr && o;
    add_str(o, "backend", b->backend, &ok);
    add_num(o, "batch", (double)b->batch, &ok);
    add_num(o, "sequence", (double)b->sequence, &ok);
    add_num(o, "warmup", (double)b->warmup, &ok);
    cJSON *lat = add_obj(o, "latency_s", &ok);
    add_num(lat, "n", (double)l->n, &ok);
    add_num(lat, "mean", l->mean, &ok);
    add_num(lat, "sd", l->sd, &ok);
    add_num(lat, "min", l->min, &ok);
    add_num(lat, "max", l->max, &ok);
    add_num(lat, "p50", l->p50, &ok);
    add_num(lat, "p90", l->p90, &ok);
    add_num(lat, "p95", l->p95, &ok);
    add_num(lat, "p99", l->p99, &ok);
    add_str(lat, "percentile_method", l->method == TD_PCT_NEAREST_RANK ? "nearest-rank" : "linear", &ok);
    cJSON *tp = add_obj(o, "throughput", &ok);
    add_num(tp, "sequences_per_s", td_latency_throughput(l, (double)b->batch), &ok);
    add_num(tp, "tokens_per_s", td_latency_throughput(l, (double)b->batch * (double)b->sequence), &ok);
    if (ok && !cJSON_AddItemToArray(arr, o))
        ok = false;
    if (!ok) {
        cJSON_Delete(o);
        return oom(ctx);
    }
    return TD_OK;
}

td_status td_report_add_artifact(td_ctx *ctx, td_report *r, const char *kind, const char *path) {
    cJSON *a = cJSON_GetObjectItemCaseSensitive(r->root, "artifacts");
    bool ok = a != NULL;
    if (ok)
        cJSON_DeleteItemFromObjectCaseSensitive(a, kind);
    add_str(a, kind, path, &ok);
    return ok ? TD_OK : oom(ctx);
}

td_status td_report_write(td_ctx *ctx, td_report *r, const char *path) {
    char now[32];
    td_report_utc_now(now);
    cJSON_DeleteItemFromObjectCaseSensitive(r->root, "finished_at");
    cJSON_DeleteItemFromObjectCaseSensitive(r->root, "duration_s");
    bool ok = true;
    add_str(r->root, "finished_at", now, &ok);
    add_num(r->root, "duration_s", td_now_s() - r->start_s, &ok);
    char *text = ok ? cJSON_Print(r->root) : NULL;
    if (!text)
        return oom(ctx);
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the NUL: the file ends with a newline */
    td_status s = td_write_file_atomic(ctx, path, text, n + 1);
    free(text);
    if (s != TD_OK)
        return td_wrap(ctx, "writing the report");
    return TD_OK;
}
