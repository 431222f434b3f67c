/* tdeploy optimize: load an ONNX model, run the graph optimizer (cleanup,
 * folding, shape inference, fusions into ONNX Runtime contrib ops or standard
 * ops only, fp16/bf16 conversion) and write the result. */
#include "cli/cli.h"

#include "core/log.h"
#include "onnx/onnx_io.h"
#include "opt/optimize.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy optimize IN.onnx -o OUT.onnx [options]\n\n"
            "Optimize an ONNX graph: dead code, Identity/Dropout/no-op Cast/Reshape removal, constant folding,\n"
            "common subexpressions, shape inference, then fusions (Attention, SkipLayerNormalization,\n"
            "LayerNormalization, Gelu/BiasGelu/FastGelu), 2-D MatMul + bias -> Gemm and optional fp16/bf16\n"
            "conversion.\n\n"
            "options:\n"
            "  -o, --output PATH          optimized model (written atomically; weights of >= 4 KiB at 8-byte\n"
            "                             aligned offsets, standard protobuf, so loads map them in place)\n"
            "  --target fused|portable    fused (default): ONNX Runtime com.microsoft contrib ops;\n"
            "                             portable: standard ONNX ops only (TensorRT and other runtimes)\n"
            "  --precision fp32|fp16|bf16|int8|int4\n"
            "                             weights and compute precision (default fp32); LayerNorm statistics,\n"
            "                             Softmax, reductions, Pow and the attention mask add stay fp32;\n"
            "                             int8: MatMul/Attention weights int8 per output channel, activations\n"
            "                             quantized at run time (com.microsoft DynamicQuantizeMatMul);\n"
            "                             decoders (a KV cache): int8 / int4 put MatMul weights in 8- / 4-bit\n"
            "                             blocks of 32 (llama.cpp's Q8_0 / Q4_0 layouts) as com.microsoft\n"
            "                             MatMulNBits, int8 activations\n"
            "  --keep-io-types            graph inputs/outputs stay float32 (default)\n"
            "  --no-keep-io-types         float inputs/outputs take the chosen precision\n"
            "  --passes LIST              comma-separated passes instead of the default pipeline; known:\n"
            "                             %s\n"
            "  --fold-limit N             largest tensor constant folding creates (default 1048576 elements)\n"
            "  --cache-output             leave OUT.onnx in the page cache (for a program that reads it right\n"
            "                             after); default: large outputs go to disk with O_DIRECT\n"
            "  --force                    allow -o to be the input file itself (replaces the original)\n"
            "  --json                     print counts and per-pass timings as JSON on stdout\n"
            "  -v, --verbose              log what each pass changed\n"
            "  -q, --quiet                no summary or warnings on stderr\n",
            td_opt_pass_names());
}

static cJSON *report_json(const char *in, const char *out, const td_opt_options *o, const td_opt_report *r,
                          double load_s, double save_s) {
    static const char *const targets[] = {"fused", "portable"}, *const precs[] = {"fp32", "fp16", "bf16", "int8", "int4"};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "input", in);
    cJSON_AddStringToObject(j, "output", out);
    cJSON_AddStringToObject(j, "target", targets[o->target]);
    cJSON_AddStringToObject(j, "precision", precs[o->precision]);
    cJSON_AddNumberToObject(j, "nodes_before", r->nodes_before);
    cJSON_AddNumberToObject(j, "nodes_after", r->nodes_after);
    cJSON_AddNumberToObject(j, "initializers_before", r->initializers_before);
    cJSON_AddNumberToObject(j, "initializers_after", r->initializers_after);
    cJSON *f = cJSON_AddObjectToObject(j, "fusions");
    for (int k = 0; k < TD_OPT_N_FUSION_KINDS; k++)
        cJSON_AddNumberToObject(f, r->fusion_names[k], r->fusion_counts[k]);
    cJSON *ps = cJSON_AddArrayToObject(j, "passes");
    for (int i = 0; i < r->n_passes; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", r->passes[i].name);
        cJSON_AddNumberToObject(p, "runs", r->passes[i].runs);
        cJSON_AddNumberToObject(p, "changes", r->passes[i].changes);
        cJSON_AddNumberToObject(p, "seconds", r->passes[i].seconds);
        cJSON_AddItemToArray(ps, p);
    }
    cJSON_AddNumberToObject(j, "load_seconds", load_s);
    cJSON_AddNumberToObject(j, "optimize_seconds", r->seconds);
    cJSON_AddNumberToObject(j, "save_seconds", save_s);
    return j;
}

int td_cmd_optimize(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    bool json = false, cache_output = false, force = false;
    td_opt_options o;
    td_opt_options_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (td_cli_is_help(a)) {
            usage(stdout);
            return TD_EXIT_OK;
        } else if (td_cli_common_flag(a)) {
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (++i >= argc)
                return td_cli_usage_error("optimize", "%s needs a path", a);
            out = argv[i];
        } else if (!strcmp(a, "--target")) {
            if (++i >= argc)
                return td_cli_usage_error("optimize", "--target needs fused or portable");
            if (!strcmp(argv[i], "fused"))
                o.target = TD_OPT_TARGET_FUSED;
            else if (!strcmp(argv[i], "portable"))
                o.target = TD_OPT_TARGET_PORTABLE;
            else
                return td_cli_usage_error("optimize", "--target '%s': expected fused or portable", argv[i]);
        } else if (!strcmp(a, "--precision")) {
            if (++i >= argc)
                return td_cli_usage_error("optimize", "--precision needs fp32, fp16, bf16, int8 or int4");
            if (!strcmp(argv[i], "fp32"))
                o.precision = TD_OPT_FP32;
            else if (!strcmp(argv[i], "fp16"))
                o.precision = TD_OPT_FP16;
            else if (!strcmp(argv[i], "bf16"))
                o.precision = TD_OPT_BF16;
            else if (!strcmp(argv[i], "int8"))
                o.precision = TD_OPT_INT8;
            else if (!strcmp(argv[i], "int4"))
                o.precision = TD_OPT_INT4;
            else
                return td_cli_usage_error("optimize", "--precision '%s': expected fp32, fp16, bf16, int8 or int4",
                                          argv[i]);
        } else if (!strcmp(a, "--keep-io-types")) {
            o.keep_io_types = true;
        } else if (!strcmp(a, "--no-keep-io-types")) {
            o.keep_io_types = false;
        } else if (!strcmp(a, "--passes")) {
            if (++i >= argc)
                return td_cli_usage_error("optimize", "--passes needs a comma-separated list (%s)",
                                          td_opt_pass_names());
            o.passes = argv[i];
        } else if (!strcmp(a, "--fold-limit")) {
            char *end = NULL;
            if (++i >= argc)
                return td_cli_usage_error("optimize", "--fold-limit needs an element count");
            long long v = strtoll(argv[i], &end, 10);
            if (!*argv[i] || *end || v <= 0)
                return td_cli_usage_error("optimize", "--fold-limit '%s': expected a positive element count",
                                          argv[i]);
            o.fold_max_elements = v;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--cache-output")) {
            cache_output = true;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (a[0] == '-') {
            return td_cli_usage_error("optimize", "unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else {
            return td_cli_usage_error("optimize", "unexpected argument '%s'", a);
        }
    }
    if (!in || !out)
        return td_cli_usage_error("optimize", "need an input model and -o OUTPUT");
    if (!force && td_cli_same_file(in, out))
        return td_cli_usage_error("optimize",
                                  "-o %s is the input model itself: writing it would replace your original graph; "
                                  "choose another output path (or pass --force to replace it)",
                                  out);
    if (o.precision == TD_OPT_INT4 && o.target == TD_OPT_TARGET_PORTABLE)
        return td_cli_usage_error("optimize", "--precision int4 writes com.microsoft MatMulNBits, which --target "
                                  "portable excludes: use --target fused");
    if (o.precision == TD_OPT_INT8 && o.target == TD_OPT_TARGET_PORTABLE)
        return td_cli_usage_error("optimize", "--precision int8 writes com.microsoft DynamicQuantizeMatMul, which "
                                  "--target portable excludes: use --target fused");
    o.verbose = td_log_get_level() >= TD_LOG_DEBUG;
    td_ctx *ctx = td_ctx_new();
    if (!ctx) {
        fprintf(stderr, "tdeploy optimize: out of memory\n");
        return TD_EXIT_FAIL;
    }
    td_model *m = NULL;
    td_opt_report r;
    int rc = TD_EXIT_OK;
    double t0 = td_now_s();
    td_status s = td_onnx_load(ctx, in, &m);
    double t1 = td_now_s();
    if (s == TD_OK)
        s = td_optimize(ctx, m, &o, &r);
    if (s != TD_OK && m)
        td_wrap(ctx, "optimizing %s", in);
    double t2 = td_now_s();
    if (s == TD_OK)
        s = td_onnx_save(ctx, m, out, &(td_onnx_save_options){.align_raw_data = true, .keep_cached = cache_output});
    double t3 = td_now_s();
    if (s != TD_OK) {
        rc = td_cli_report("optimize", ctx, s);
        goto out;
    }
    if (json) {
        cJSON *j = report_json(in, out, &o, &r, t1 - t0, t3 - t2);
        char *txt = j ? cJSON_Print(j) : NULL;
        if (!txt) {
            fprintf(stderr, "tdeploy optimize: out of memory printing the report\n");
            rc = TD_EXIT_FAIL;
        } else {
            printf("%s\n", txt);
        }
        free(txt);
        cJSON_Delete(j);
    } else {
        td_info("%s: %d -> %d nodes in %.3f s (load %.3f s, save %.3f s)", out, r.nodes_before, r.nodes_after,
                r.seconds, t1 - t0, t3 - t2);
        for (int k = 0; k < TD_OPT_N_FUSION_KINDS; k++)
            if (r.fusion_counts[k])
                td_info("  %-34s %d", r.fusion_names[k], r.fusion_counts[k]);
    }
out:
    td_model_free(m);
    td_ctx_free(ctx);
    return rc;
}
