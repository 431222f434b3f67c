/* `tdeploy convert`: the whole pipeline as one library call.
 *
 *   resolve model -> export model.onnx (standard ops) -> optimize model-optimized.onnx (fused)
 *   -> prepare each backend -> validate against the fp32 reference -> benchmark
 *   -> Triton model repository + report.json
 *
 * Everything is written into a temporary sibling of the output directory and
 * moved into place at the end, so OUTDIR never holds a half-finished result.
 * OUTDIR is replaced only when every backend passed validation, and only when
 * tdeploy created it (marker file, deploy/output_dir.h) or opt->force; other
 * models in OUTDIR/triton are kept. A run with a failed backend leaves OUTDIR as
 * it was and writes OUTDIR.failed instead (report.json says why).
 *
 * The reference is the fp32 CPU run of model.onnx (the exporter's output, itself
 * tested against transformers). A backend is a small vtable (convert_backend.h);
 * "cpu" is tdeploy's CPU runtime on model-optimized.onnx. */
#ifndef TD_CONVERT_CONVERT_H
#define TD_CONVERT_CONVERT_H

#include "tdeploy/tdeploy.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#define TD_CONVERT_MAX_BACKENDS 4

typedef struct td_convert_options {
    const char *model;        /* HF directory or org/name (local cache, else downloaded) */
    const char *task;         /* NULL = derived from the model */
    const char *backends[TD_CONVERT_MAX_BACKENDS]; /* "cpu" */
    int n_backends;
    int64_t seq[3];           /* min, opt, max sequence length */
    int64_t batch[3];         /* min, opt, max batch size */
    bool batch_given;         /* --batch-size was given (text-generation's default batches are 1 and 8) */
    const char *precision;    /* "fp32" | "fp16" | "bf16": weights of the backends */
    int int8_weight_bits;     /* int8: 8 (default) or 7, as `optimize --int8-weight-bits` */
    double atol, rtol;        /* < 0: defaults for the precision */
    const char *outdir;
    const char *name;         /* Triton model name; NULL = from the model */
    int nb_instances;         /* Triton instance_group count */
    int nb_measures;          /* benchmark runs per shape */
    bool bench_corners;       /* also benchmark at (min, min) and (max, max) */
    int warmup;               /* runs before measuring */
    int threads;              /* 0 = one per core */
    const char *device;       /* Triton device: "cpu" | "cuda" */
    const char *timing_cache; /* --backend cuda: the engine build's GEMM timing cache; NULL = its default */
    const char *triton_backend; /* Triton models: "tdeploy" | "onnxruntime" | "both" */
    const char *texts_file;   /* validation texts, one per line (tab: pair); NULL = built-in set */
    uint64_t seed;            /* random validation inputs */
    bool force;               /* replace an OUTDIR tdeploy did not create (deploy/output_dir.h) */
    bool no_bench;            /* skip the benchmark step */
    volatile sig_atomic_t *interrupted; /* set by the caller's SIGINT handler; polled between steps */
} td_convert_options;

void td_convert_options_init(td_convert_options *o);

/* Outcome beyond the status: which backends failed validation. */
typedef struct td_convert_result {
    int n_failed_backends;
    bool option_misfit; /* the failure was an option the model cannot take (--seq-len above its maximum) */
    char failed[TD_CONVERT_MAX_BACKENDS][16];
    char written_dir[1024];  /* OUTDIR, or OUTDIR.failed when a backend failed validation */
    char report_path[1024];
    char summary[8192]; /* the human summary table */
} td_convert_result;

/* The checks of the options alone (shapes, precision, tolerances, backends,
 * device, task name), without touching the model: TD_ERR_INVALID_ARGUMENT or
 * TD_ERR_UNSUPPORTED with a message naming the flag. td_convert runs them too;
 * the CLI runs them first to report usage errors before any work. */
td_status td_convert_check_options(td_ctx *ctx, const td_convert_options *o);

/* Run the pipeline. TD_OK when every step ran; a backend failing validation is
 * TD_OK with result->n_failed_backends > 0 (the report, in result->written_dir,
 * says which output and by how much). Any other failure names the step, the cause and what to do. */
td_status td_convert(td_ctx *ctx, const td_convert_options *opt, td_convert_result *result);

#endif
