/* tdeploy convert: the whole pipeline in one command (src/convert/). */
#include "cli/cli.h"
#include "deploy/triton.h"

#include "convert/convert.h"
#include "core/fs.h"
#include "core/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C stops at once */
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy convert -m MODEL [options]\n\n"
            "Export MODEL to ONNX, optimize it, validate every backend against the fp32 reference, benchmark,\n"
            "and write a Triton model repository and report.json into OUTDIR.\n\n"
            "  -m, --model MODEL          HF model directory or org/name (local cache, else downloaded)\n"
            "  --task T                   feature-extraction | embedding | classification | token-classification |\n"
            "                             question-answering | text-generation (default: from the model's\n"
            "                             config); text-generation validates prefill logits and greedy tokens,\n"
            "                             benchmarks TTFT, prefill tokens/s and decode ms/token at batch 1 and 8,\n"
            "                             and writes a decoupled (streaming) Triton model whose stream\n"
            "                             ends with FINISH_REASON eos, length or context; also:\n"
            "                             text-classification, sentiment-analysis, sentence-similarity, ner, qa\n"
            "  --backend LIST             tdeploy runtimes to validate and benchmark (default: cpu)\n"
            "  --timing-cache FILE        with --backend cuda: the engine build's GEMM timing cache (as tdeploy build;\n"
            "                             default $XDG_CACHE_HOME/tdeploy/timing-cache.bin, '' for none)\n"
            "  --seq-len MIN OPT MAX      sequence lengths of the profile (default 1 min(128, M) M, M = the model's\n"
            "                             max length, where the served model truncates; a MAX below M is a warning)\n"
            "  --batch-size MIN OPT MAX   batch sizes of the profile (default 1 1 1)\n"
            "                             text-generation: --seq-len sets the prompt lengths (validation prompts\n"
            "                             of MIN..MAX tokens, benchmark prompt OPT; MAX must leave room to\n"
            "                             generate), --batch-size the batches (a validated left-padded batch of\n"
            "                             MAX rows, benchmark at MIN, OPT, MAX); default: prompts of at most 32\n"
            "                             tokens, a batch of 4, benchmark at batch 1 and 8 with prompt min(128, M)\n"
            "  --precision P              fp32 | fp16 | bf16 weights of the backends (default fp32); int8:\n"
            "                             model-optimized.onnx gets int8 weights (DynamicQuantizeMatMul) and\n"
            "                             validation requires a mean row cosine >= 0.99 per output (elements\n"
            "                             are checked against --atol/--rtol only when those are given);\n"
            "                             decoders: int8 | int4 put MatMul weights in 8- / 4-bit blocks of 32\n"
            "                             (MatMulNBits, as optimize --precision); validation requires finite\n"
            "                             logits and, at >= 95%% of the prompt positions, the backend's top-1\n"
            "                             token within 0.1 (int8) / 0.5 (int4) of the reference top's lead over\n"
            "                             its row's mean; top-1 and greedy-token agreement are reported\n"
            "                             (quantized continuations may legitimately diverge); int4 is for\n"
            "                             decoders only\n"
            "  --int8-weight-bits 8|7     int8 weight range (default 8: [-127, 127]); 7: [-63, 63], coarser\n"
            "                             weights that CPUs without AVX-512 VNNI multiply 1.2x faster, exactly\n"
            "  --atol A --rtol R          validation tolerance: |got - ref| <= A + R*|ref| per element\n"
            "                             (default 1e-4/1e-4 fp32, 1e-2/1e-2 fp16, 5e-2/5e-2 bf16)\n"
            "  -o, --output OUTDIR        output directory (default triton_models); replaced atomically, only\n"
            "                             when every backend passed validation (else OUTDIR.failed is written)\n"
            "                             and only a folder tdeploy created (or an empty one); other models in\n"
            "                             OUTDIR/triton are kept\n"
            "  --force                    replace OUTDIR even when tdeploy did not create it\n"
            "  --name NAME                Triton model name (default: from MODEL)\n"
            "  --nb-instances N           Triton instance_group count (default 1)\n"
            "  --device cpu|cuda          where Triton runs the model (default cpu; gpu = cuda)\n"
            "  --triton-backend B         tdeploy | onnxruntime | both: which Triton backend serves the model\n"
            "                             (default tdeploy: one model, token tensors or TEXT in, no Python)\n"
            "  --nb-measures N            benchmark runs per shape (default 100 at the opt shape; given\n"
            "                             explicitly, the min and max shapes are measured too)\n"
            "  --warmup N                 runs before measuring (default 10)\n"
            "  --bench-corners            also benchmark the min and max shapes with the default count\n"
            "  --no-bench                 validate and write everything, but do not benchmark\n"
            "  --threads N                CPU threads (default: one per core)\n"
            "  --texts FILE               validation texts, one per line (TAB before a pair text)\n"
            "  --seed N                   seed of the random validation inputs (default 1234)\n"

            "  --json                     print report.json on stdout instead of the summary table\n"
            "  -v, --verbose | -q, --quiet\n\n"
            "Exit status: 0 done, 1 error, 2 usage, 3 a backend failed validation, 130 interrupted.\n"
            "OUTDIR holds model.onnx, model-optimized.onnx, triton/, report.json and the tokenizer and config\n"
            "files (tdeploy run OUTDIR uses them).\n");
}

static bool parse_f64(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end)
        return false;
    *out = v;
    return true;
}

int td_cmd_convert(int argc, char **argv) {
    td_convert_options o;
    td_convert_options_init(&o);
    bool json = false;
    char *backend_list = NULL;
    int rc = TD_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has1 = i + 1 < argc, has3 = i + 3 < argc;
        int64_t iv;
        if (td_cli_is_help(a)) {
            usage(stdout);
            goto done;
        } else if (td_cli_common_flag(a)) {
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has1) {
            o.model = argv[++i];
        } else if (!strcmp(a, "--task") && has1) {
            td_export_task task;
            if ((rc = td_cli_parse_task("convert", argv[++i], &task)) >= 0)
                goto done;
            rc = TD_EXIT_OK;
            o.task = argv[i];
        } else if (!strcmp(a, "--backend") && has1) {
            free(backend_list);
            backend_list = strdup(argv[++i]);
            o.n_backends = 0;
            for (char *t = strtok(backend_list, ","); t; t = strtok(NULL, ",")) {
                if (o.n_backends == TD_CONVERT_MAX_BACKENDS) {
                    rc = td_cli_usage_error("convert", "--backend: at most %d backends", TD_CONVERT_MAX_BACKENDS);
                    goto done;
                }
                o.backends[o.n_backends++] = t;
            }
        } else if (!strcmp(a, "--timing-cache") && has1) {
            o.timing_cache = argv[++i];
        } else if ((!strcmp(a, "--seq-len") || !strcmp(a, "--batch-size")) && has3) {
            int64_t *dst = !strcmp(a, "--seq-len") ? o.seq : o.batch;
            o.batch_given |= dst == o.batch;
            for (int k = 0; k < 3; k++)
                if (!td_cli_parse_i64(argv[i + 1 + k], INT64_MIN, INT64_MAX, &dst[k])) {
                    rc = td_cli_usage_error("convert", "%s needs three integers MIN OPT MAX, got '%s'", a,
                                            argv[i + 1 + k]);
                    goto done;
                }
            i += 3;
        } else if (!strcmp(a, "--precision") && has1) {
            /* int8 is a property of the optimized graph, not a session storage precision (what
             * td_cli_parse_precision knows), so convert names its four itself */
            const char *v = argv[++i];
            if (strcmp(v, "fp32") && strcmp(v, "fp16") && strcmp(v, "bf16") && strcmp(v, "int8") && strcmp(v, "int4")) {
                rc = td_cli_usage_error("convert", "--precision '%s': use fp32, fp16, bf16, int8 or int4", v);
                goto done;
            }
            rc = TD_EXIT_OK;
            o.precision = argv[i];
        } else if (!strcmp(a, "--int8-weight-bits") && has1) {
            const char *v = argv[++i];
            if (strcmp(v, "8") && strcmp(v, "7")) {
                rc = td_cli_usage_error("convert", "--int8-weight-bits '%s': use 8 or 7", v);
                goto done;
            }
            rc = TD_EXIT_OK;
            o.int8_weight_bits = atoi(v);
        } else if ((!strcmp(a, "--atol") || !strcmp(a, "--rtol")) && has1) {
            double *dst = !strcmp(a, "--atol") ? &o.atol : &o.rtol;
            if (!parse_f64(argv[++i], dst) || *dst < 0) {
                rc = td_cli_usage_error("convert", "%s needs a non-negative number", a);
                goto done;
            }
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has1) {
            o.outdir = argv[++i];
        } else if (!strcmp(a, "--name") && has1) {
            o.name = argv[++i];
        } else if (!strcmp(a, "--device") && has1) {
            bool cuda;
            if ((rc = td_cli_parse_device("convert", argv[++i], &cuda)) >= 0)
                goto done;
            rc = TD_EXIT_OK;
            o.device = cuda ? "cuda" : "cpu";
        } else if (!strcmp(a, "--triton-backend") && has1) {
            td_triton_serving serving;
            o.triton_backend = argv[++i];
            if (!td_triton_serving_parse(o.triton_backend, &serving)) {
                rc = td_cli_usage_error("convert", "--triton-backend takes tdeploy, onnxruntime or both, not '%s'",
                                        o.triton_backend);
                goto done;
            }
        } else if (!strcmp(a, "--texts") && has1) {
            o.texts_file = argv[++i];
        } else if (!strcmp(a, "--bench-corners")) {
            o.bench_corners = true;
        } else if (!strcmp(a, "--no-bench")) {
            o.no_bench = true;
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if ((!strcmp(a, "--nb-instances") || !strcmp(a, "--nb-measures") || !strcmp(a, "--warmup") ||
                    !strcmp(a, "--threads") || !strcmp(a, "--seed")) &&
                   has1) {
            if (!td_cli_parse_i64(argv[++i], 0, 1000000000, &iv)) {
                rc = td_cli_usage_error("convert", "%s needs a non-negative integer, got '%s'", a, argv[i]);
                goto done;
            }
            if (!strcmp(a, "--nb-instances"))
                o.nb_instances = (int)iv;
            else if (!strcmp(a, "--nb-measures")) {
                o.nb_measures = (int)iv;
                o.bench_corners = true; /* an explicit measure count asks for every profile corner */
            }
            else if (!strcmp(a, "--warmup"))
                o.warmup = (int)iv;
            else if (!strcmp(a, "--threads"))
                o.threads = (int)iv;
            else
                o.seed = (uint64_t)iv;
        } else {
            rc = td_cli_usage_error("convert", "unknown or incomplete option '%s'", a);
            goto done;
        }
    }
    if (!o.model) {
        rc = td_cli_usage_error("convert", "-m MODEL is required");
        goto done;
    }
    td_ctx *check_ctx = td_ctx_new();
    if (!check_ctx || td_convert_check_options(check_ctx, &o) != TD_OK) {
        rc = check_ctx ? td_cli_usage_error("convert", "%s", td_error_message(check_ctx)) : TD_EXIT_FAIL;
        td_ctx_free(check_ctx);
        goto done;
    }
    td_ctx_free(check_ctx);
    if (json && td_log_get_level() > TD_LOG_WARN)
        td_log_set_level(TD_LOG_WARN); /* stdout is for the JSON; keep stderr to warnings */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    o.interrupted = &g_interrupted;
    td_ctx *ctx = td_ctx_new();
    td_convert_result *res = calloc(1, sizeof *res);
    if (!ctx || !res) {
        fprintf(stderr, "tdeploy convert: out of memory\n");
        rc = TD_EXIT_FAIL;
    } else {
        td_status s = td_convert(ctx, &o, res);
        if (s == TD_ERR_INTERRUPTED) {
            fprintf(stderr, "tdeploy convert: %s\n", td_error_message(ctx));
            rc = TD_EXIT_INTERRUPTED;
        } else if (s != TD_OK && res->option_misfit) {
            rc = td_cli_usage_error("convert", "%s", td_error_message(ctx));
        } else if (s != TD_OK) {
            rc = td_cli_report("convert", ctx, s);
        } else {
            if (json) {
                char *text = NULL;
                size_t len = 0;
                if (td_read_file(ctx, res->report_path, 256u << 20, &text, &len) == TD_OK)
                    fwrite(text, 1, len, stdout);
                free(text);
            } else {
                fputs(res->summary, stdout);
                printf("written: %s\n", res->written_dir);
            }
            if (res->n_failed_backends > 0) {
                fprintf(stderr, "tdeploy convert: validation failed for backend(s):");
                for (int i = 0; i < res->n_failed_backends; i++)
                    fprintf(stderr, " %s", res->failed[i]);
                fprintf(stderr, " (see %s; no Triton model was written for them, and %s was left as it was)\n",
                        res->report_path, o.outdir);
                rc = TD_EXIT_VALIDATION;
            }
        }
    }
    free(res);
    td_ctx_free(ctx);
done:
    free(backend_list);
    return rc;
}
