/* report.json: what a tdeploy run made, on which machine, and how well and how
 * fast each backend did. A report is a cJSON tree that the steps of a command
 * fill in as they go; td_report_write writes it atomically.
 *
 * Layout (every key is always present once its section was added):
 *   { "schema": "tdeploy.report/1",
 *     "tool": {"name": "tdeploy", "version", "command"},
 *     "started_at", "finished_at" (UTC ISO 8601), "duration_s",
 *     "machine": {"cpu_model", "cpu_features", "logical_cores", "memory_bytes", "os", "arch", "hostname",
 *                 "compiler"},
 *     "model": {"id", "source", "task", "revision"},
 *     "shapes": {"batch": [min, opt, max], "sequence": [min, opt, max]},
 *     "validation": [{"backend", "output", "n_compared", "max_abs_diff", "max_rel_diff", "atol", "rtol",
 *                     "argmax_agreement" (fraction, or null when not a classification output), "passed"}],
 *     "benchmarks": [{"backend", "batch", "sequence", "warmup", "latency_s": {"n", "mean", "sd", "min", "max",
 *                     "p50", "p90", "p95", "p99", "percentile_method"}, "throughput": {"sequences_per_s",
 *                     "tokens_per_s"}}],
 *     "artifacts": {"<kind>": "<path>"} }
 * Non-finite numbers are written as null. */
#ifndef TD_DEPLOY_REPORT_H
#define TD_DEPLOY_REPORT_H

#include "deploy/stats.h"
#include "tdeploy/tdeploy.h"
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct td_report td_report;

/* New report for `command` ("convert"), stamped with the start time, the tool
 * version and the machine. Caller frees with td_report_free. */
td_status td_report_new(td_ctx *ctx, const char *command, td_report **out);
void td_report_free(td_report *r); /* NULL is harmless */

/* The JSON tree, for sections this API does not cover. Owned by the report. */
cJSON *td_report_json(td_report *r);

/* model: id (org/name or directory), source (the directory it was read from),
 * task ("feature-extraction"), revision (may be NULL). */
td_status td_report_set_model(td_ctx *ctx, td_report *r, const char *id, const char *source, const char *task,
                              const char *revision);
/* shapes: min/opt/max of the batch and sequence dimensions. */
td_status td_report_set_shapes(td_ctx *ctx, td_report *r, const int64_t batch[3], const int64_t sequence[3]);

typedef struct td_validation_result {
    const char *backend; /* "cpu", "cpu-fp16", "onnxruntime", ... */
    const char *output;  /* output name */
    size_t n_compared;   /* elements compared */
    double max_abs_diff, max_rel_diff;
    double atol, rtol;
    double argmax_agreement; /* fraction of rows whose argmax agrees; < 0 when not applicable */
    double mean_cosine, min_cosine; /* per-row cosine similarity to the reference; NaN when not applicable */
    bool elementwise_decides;       /* atol/rtol decided (else only reported: int8) */
    double min_mean_cosine;         /* > 0: the mean cosine had to reach it */
    bool passed;
} td_validation_result;
td_status td_report_add_validation(td_ctx *ctx, td_report *r, const td_validation_result *v);

typedef struct td_benchmark_result {
    const char *backend;
    int64_t batch, sequence;
    size_t warmup;              /* runs not counted */
    td_latency_stats latency;   /* seconds per run (one run = one batch) */
} td_benchmark_result;
/* Throughput is derived: sequences/s = batch * n / total, tokens/s = batch * sequence * n / total. */
td_status td_report_add_benchmark(td_ctx *ctx, td_report *r, const td_benchmark_result *b);

/* artifacts.<kind> = path ("onnx", "optimized_onnx", "engine_cpu", "triton_repository"). */
td_status td_report_add_artifact(td_ctx *ctx, td_report *r, const char *kind, const char *path);

/* Stamp finished_at/duration_s and write the report (pretty JSON) atomically. */
td_status td_report_write(td_ctx *ctx, td_report *r, const char *path);

/* UTC ISO 8601 ("2026-11-25T12:34:56Z") of the wall clock now. */
void td_report_utc_now(char out[32]);

#endif
