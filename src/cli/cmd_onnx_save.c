/* tdeploy onnx-save: load an ONNX model (validating it) and write it back,
 * optionally with external data. Used to round-trip models and to move weights
 * into / out of a data file. */
#include "cli/cli.h"

#include "core/log.h"
#include "onnx/onnx_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy onnx-save IN.onnx -o OUT.onnx [options]\n\n"
            "Load IN.onnx (checking it) and write it to OUT.onnx. Fields tdeploy does not model are kept.\n\n"
            "options:\n"
            "  -o, --output PATH           output model (written atomically)\n"
            "  --external-data             put initializers of >= threshold bytes in one data file\n"
            "  --no-external-data          keep all data inline (fails above 2 GB)\n"
            "                              default: inline unless the file would exceed the external limit\n"
            "  --data-file NAME            data file name next to OUT (default: OUT's file name + .data)\n"
            "  --external-threshold BYTES  smallest tensor moved to the data file (default 1024)\n"
            "  --external-limit BYTES      default mode: size above which external data is used (default 2 GB)\n"
            "  --align BYTES               alignment of tensors in the data file (default 4096)\n"
            "  --json                      print timings and sizes as JSON on stdout\n");
}

static bool parse_size(const char *s, uint64_t *out) {
    char *end;
    if (!s || !*s || *s == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end)
        return false;
    *out = v;
    return true;
}

int td_cmd_onnx_save(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    td_onnx_save_options opts = {0};
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        uint64_t v;
        if (td_cli_is_help(a)) {
            usage(stdout);
            return TD_EXIT_OK;
        } else if (td_cli_common_flag(a)) {
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (++i >= argc)
                return td_cli_usage_error("onnx-save", "%s needs a path", a);
            out = argv[i];
        } else if (!strcmp(a, "--external-data")) {
            opts.external = TD_ONNX_EXTERNAL_ALWAYS;
        } else if (!strcmp(a, "--no-external-data")) {
            opts.external = TD_ONNX_EXTERNAL_NEVER;
        } else if (!strcmp(a, "--data-file")) {
            if (++i >= argc)
                return td_cli_usage_error("onnx-save", "--data-file needs a name");
            opts.data_file = argv[i];
        } else if (!strcmp(a, "--external-threshold") || !strcmp(a, "--external-limit") || !strcmp(a, "--align")) {
            if (++i >= argc || !parse_size(argv[i], &v) || v == 0)
                return td_cli_usage_error("onnx-save", "%s needs a positive byte count", a);
            if (!strcmp(a, "--external-threshold"))
                opts.size_threshold = (size_t)v;
            else if (!strcmp(a, "--external-limit"))
                opts.auto_limit = v;
            else
                opts.alignment = (size_t)v;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (a[0] == '-') {
            return td_cli_usage_error("onnx-save", "unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else {
            return td_cli_usage_error("onnx-save", "unexpected argument '%s'", a);
        }
    }
    if (!in || !out)
        return td_cli_usage_error("onnx-save", "need an input model and -o OUTPUT");
    td_ctx *ctx = td_ctx_new();
    td_model *m = NULL;
    int rc = TD_EXIT_OK;
    if (!ctx) {
        fprintf(stderr, "tdeploy onnx-save: out of memory\n");
        return TD_EXIT_FAIL;
    }
    double t0 = td_now_s();
    td_status s = td_onnx_load(ctx, in, &m);
    double t1 = td_now_s();
    if (s == TD_OK)
        s = td_onnx_save(ctx, m, out, &opts);
    double t2 = td_now_s();
    if (s != TD_OK) {
        rc = td_cli_report("onnx-save", ctx, s);
        goto out;
    }
    if (json)
        printf("{\"load_s\": %.6f, \"save_s\": %.6f, \"nodes\": %d, \"initializers\": %d}\n", t1 - t0, t2 - t1,
               m->graph->n_nodes, m->graph->n_initializers);
    else
        td_info("wrote %s (load %.3f s, save %.3f s)", out, t1 - t0, t2 - t1);
out:
    td_model_free(m);
    td_ctx_free(ctx);
    return rc;
}
