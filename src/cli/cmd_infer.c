/* tdeploy infer: run an ONNX model on the CPU runtime with inputs from a
 * safetensors file and write its outputs as safetensors. */
#include "cli/cli.h"

#include "core/ctx.h"
#include "core/log.h"
#include "hf/safetensors.h"
#include "tdeploy/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: tdeploy infer MODEL.onnx|MODEL.engine --inputs IN.safetensors -o OUT.safetensors [--threads N]\n"
               "                    [--precision fp32|fp16|bf16] [--device cpu|cuda] [--backend cpu|reference|cuda]\n"
               "                    [--runs N] [--json] [-v|-q]\n\n"
               "Runs MODEL on the CPU runtime (--backend reference: the plain reference kernels, one thread, slow;\n"
               "the path convert validates against) or on the GPU (--backend cuda or --device cuda; the default for\n"
               ".engine files from `tdeploy build`). --runs N runs it N times; the last run is timed and its outputs\n"
               "written. Each graph input is read from the tensor of the same name in\n"
               "IN (or 'input.<name>', the fixtures' golden-file form; 'output.*' tensors are ignored there).\n"
               "Outputs are written to OUT under their graph names. --json prints a summary on stdout.\n"
               "--precision is the storage precision of the prepacked weights (default fp32).\n");
}

typedef struct infer_args {
    const char *model, *inputs, *output, *backend;
    td_precision precision;
    int threads, runs;
    bool json;
} infer_args;

static int parse(int argc, char **argv, infer_args *a) {
    memset(a, 0, sizeof *a);
    a->precision = TD_PRECISION_FP32;
    a->runs = 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (td_cli_is_help(s)) {
            usage(stdout);
            return -1;
        } else if (td_cli_common_flag(s)) {
            continue;
        } else if (strcmp(s, "--inputs") == 0 && i + 1 < argc) {
            a->inputs = argv[++i];
        } else if ((strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0) && i + 1 < argc) {
            a->output = argv[++i];
        } else if (strcmp(s, "--threads") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            /* 0 = one per core (the default), as convert, run and generate take it */
            if (end == argv[i] || *end || v < 0 || v > 1024)
                return td_cli_usage_error("infer", "--threads wants a number in 0..1024 (0: one per core), got '%s'",
                                          argv[i]);
            a->threads = (int)v;
        } else if (strcmp(s, "--precision") == 0 && i + 1 < argc) {
            int rc = td_cli_parse_precision("infer", argv[++i], &a->precision);
            if (rc >= 0)
                return rc;
        } else if (strcmp(s, "--device") == 0 && i + 1 < argc) {
            bool cuda;
            int rc = td_cli_parse_device("infer", argv[++i], &cuda);
            if (rc >= 0)
                return rc;
            if (cuda)
                a->backend = "cuda";
        } else if (strcmp(s, "--backend") == 0 && i + 1 < argc) {
            a->backend = argv[++i];
            if (strcmp(a->backend, "cpu") != 0 && strcmp(a->backend, "reference") != 0 && strcmp(a->backend, "cuda") != 0)
                return td_cli_usage_error("infer", "--backend wants cpu, reference or cuda, got '%s'", a->backend);
        } else if (strcmp(s, "--runs") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000000)
                return td_cli_usage_error("infer", "--runs wants a number in 1..1000000, got '%s'", argv[i]);
            a->runs = (int)v;
        } else if (strcmp(s, "--json") == 0) {
            a->json = true;
        } else if (s[0] == '-') {
            return td_cli_usage_error("infer", "unknown or incomplete flag '%s'", s);
        } else if (!a->model) {
            a->model = s;
        } else {
            return td_cli_usage_error("infer", "unexpected argument '%s'", s);
        }
    }
    if (!a->model || !a->inputs || !a->output)
        return td_cli_usage_error("infer", "MODEL, --inputs and -o are required");
    return 0;
}

/* Tensor for graph input `name`: exact name, or "input.<name>". */
static const td_st_tensor *find_input(const td_safetensors *st, const char *name) {
    const td_st_tensor *t = td_st_find(st, name);
    if (t)
        return t;
    char buf[1024];
    snprintf(buf, sizeof buf, "input.%s", name);
    return td_st_find(st, buf);
}

/* Every tensor of the file must be one of the model's inputs (output.* ignored). */
static td_status check_unknown(td_ctx *ctx, const td_safetensors *st, const td_session *s, const char *path) {
    for (size_t i = 0; i < td_st_count(st); i++) {
        const char *n = td_st_tensor_at(st, i)->name;
        if (strncmp(n, "output.", 7) == 0)
            continue;
        const char *base = strncmp(n, "input.", 6) == 0 ? n + 6 : n;
        if (td_session_input_index(s, base) < 0 && td_session_input_index(s, n) < 0) {
            char list[512] = "";
            size_t pos = 0;
            for (int k = 0; k < td_session_input_count(s) && pos < sizeof list; k++)
                pos += (size_t)snprintf(list + pos, sizeof list - pos, "%s%s", k ? ", " : "", td_session_input_name(s, k));
            return td_fail(ctx, TD_ERR_NOT_FOUND, "%s: tensor '%s' is not an input of the model (inputs: %s)", path, n,
                           list);
        }
    }
    return TD_OK;
}

static int print_json(const td_session *s, double load_s, double run_s, const char *out_path) {
    td_session_stats stats;
    td_session_get_stats(s, &stats);
    cJSON *j = cJSON_CreateObject();
    cJSON *outs = cJSON_AddArrayToObject(j, "outputs");
    for (int i = 0; i < td_session_output_count(s); i++) {
        td_session_output o;
        if (td_session_get_output(NULL, s, i, &o) != TD_OK)
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", o.name);
        cJSON_AddStringToObject(e, "dtype", td_dtype_name((td_dtype)o.dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < o.rank; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)o.shape[d]));
        cJSON_AddItemToArray(outs, e);
    }
    cJSON_AddStringToObject(j, "output_file", out_path);
    cJSON_AddNumberToObject(j, "load_seconds", load_s);
    cJSON_AddNumberToObject(j, "run_seconds", run_s);
    cJSON_AddNumberToObject(j, "arena_bytes", (double)stats.arena_bytes);
    cJSON_AddNumberToObject(j, "arena_naive_bytes", (double)stats.arena_naive_bytes);
    cJSON_AddNumberToObject(j, "hoisted_bytes", (double)stats.hoisted_bytes);
    cJSON_AddNumberToObject(j, "weight_bytes", (double)stats.weight_bytes);
    cJSON_AddNumberToObject(j, "nodes", stats.nodes);
    cJSON_AddNumberToObject(j, "hoisted_nodes", stats.hoisted_nodes);
    cJSON_AddNumberToObject(j, "fused_nodes", stats.fused_nodes);
    return td_cli_print_json("infer", j);
}

int td_cmd_infer(int argc, char **argv) {
    infer_args a;
    int rc = parse(argc, argv, &a);
    if (rc != 0)
        return rc < 0 ? TD_EXIT_OK : rc;
    td_ctx *ctx = td_ctx_new();
    td_session *s = NULL;
    td_safetensors *st = NULL;
    td_st_write_tensor *outs = NULL;
    td_status status = TD_OK;
    int json_rc = TD_EXIT_OK;
    if (!ctx) {
        fprintf(stderr, "tdeploy infer: out of memory\n");
        return TD_EXIT_FAIL;
    }
    td_session_options opt;
    td_session_options_init(&opt);
    opt.threads = a.threads;
    opt.backend = a.backend;
    opt.precision = a.precision;
    double t0 = td_now_s();
    if ((status = td_session_create_file(ctx, a.model, &opt, &s)) != TD_OK)
        goto out;
    double t1 = td_now_s();
    if ((status = td_st_open(ctx, a.inputs, &st)) != TD_OK)
        goto out;
    if ((status = check_unknown(ctx, st, s, a.inputs)) != TD_OK)
        goto out;
    for (int i = 0; i < td_session_input_count(s); i++) {
        const char *name = td_session_input_name(s, i);
        const td_st_tensor *t = find_input(st, name);
        if (!t) {
            status = td_fail(ctx, TD_ERR_NOT_FOUND, "%s has no tensor '%s' (or 'input.%s') for the model input '%s'",
                             a.inputs, name, name, name);
            goto out;
        }
        if ((status = td_session_set_input(ctx, s, name, (int32_t)t->dtype, t->rank, t->dims, t->data, t->nbytes)) !=
            TD_OK) {
            td_wrap(ctx, "%s", a.inputs);
            goto out;
        }
    }
    double t2 = td_now_s();
    for (int r = 1; r < a.runs && status == TD_OK; r++) /* --runs N: N - 1 warm-up runs (plan, CUDA graph capture), then the timed one */
        status = td_session_run(ctx, s);
    if (status != TD_OK)
        goto out;
    if (a.runs > 1)
        t2 = td_now_s();
    if ((status = td_session_run(ctx, s)) != TD_OK)
        goto out;
    double t3 = td_now_s();
    int n_out = td_session_output_count(s);
    outs = calloc((size_t)n_out + 1, sizeof *outs);
    if (!outs) {
        status = td_fail_oom(ctx, 0, "outputs");
        goto out;
    }
    for (int i = 0; i < n_out; i++) {
        td_session_output o;
        if ((status = td_session_get_output(ctx, s, i, &o)) != TD_OK)
            goto out;
        outs[i] = (td_st_write_tensor){o.name, (td_dtype)o.dtype, o.rank, o.shape, o.data};
    }
    if ((status = td_st_write(ctx, a.output, outs, (size_t)n_out, NULL, NULL, 0)) != TD_OK)
        goto out;
    if (a.json)
        json_rc = print_json(s, t1 - t0, t3 - t2, a.output);
    else
        td_info("infer: %d outputs written to %s (run %.3f s)", n_out, a.output, t3 - t2);
    for (int i = 0; i < n_out; i++) { /* -v: each output's shape, and what the session holds */
        char shape[160] = "";
        for (int d = 0, pos = 0; d < outs[i].rank && pos < (int)sizeof shape; d++)
            pos += snprintf(shape + pos, sizeof shape - (size_t)pos, "%s%lld", d ? ", " : "",
                            (long long)outs[i].dims[d]);
        td_debug("infer: output %s %s (%s)", outs[i].name, td_dtype_name(outs[i].dtype), shape);
    }
    td_session_stats stats;
    td_session_get_stats(s, &stats);
    td_debug("infer: load %.3f s, %d nodes (%d fused, %d hoisted), arena %zu bytes, weights %zu bytes", t1 - t0,
             stats.nodes, stats.fused_nodes, stats.hoisted_nodes, stats.arena_bytes, stats.weight_bytes);
out:
    rc = status == TD_OK ? json_rc : td_cli_report("infer", ctx, status);
    free(outs);
    td_st_close(st);
    td_session_free(s);
    td_ctx_free(ctx);
    return rc;
}
