/* tdeploy onnx-save: load an ONNX model (validating it) and write it back,
 * optionally with external data. Used to round-trip models and to move weights
 * into / out of a data file. */
#define _GNU_SOURCE
#include "cli/cli.h"

#include "core/log.h"
#include "onnx/onnx_io.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy onnx-save IN.onnx -o OUT.onnx [options]\n"
            "       tdeploy onnx-save --batch LIST [options]\n\n"
            "Load IN.onnx (checking it) and write it to OUT.onnx. Fields tdeploy does not model are kept.\n\n"
            "options:\n"
            "  -o, --output PATH           output model (written atomically)\n"
            "  --batch LIST                convert many models: LIST has one 'IN<TAB>OUT' pair per line\n"
            "                              ('-' = stdin); failures are reported per line, exit 1 if any\n"
            "  --external-data             put initializers of >= threshold bytes in one data file\n"
            "  --no-external-data          keep all data inline (fails above 2 GB)\n"
            "                              default: inline unless the file would exceed the external limit\n"
            "  --data-file NAME            data file name next to OUT (default: OUT's file name + .data)\n"
            "  --external-threshold BYTES  smallest tensor moved to the data file (default 1024)\n"
            "  --external-limit BYTES      default mode: size above which external data is used (default 2 GB)\n"
            "  --align BYTES               alignment of tensors in the data file (default 4096)\n"
            "  --json                      print timings and sizes as JSON on stdout\n"
            "  -q, --quiet | -v, --verbose no summary line / more detail on stderr\n");
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

/* Load in, save out; prints the error and returns false on failure. */
static bool convert(const char *in, const char *out, const td_onnx_save_options *opts, bool json) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = NULL;
    bool ok = true;
    if (!ctx) {
        fprintf(stderr, "tdeploy onnx-save: out of memory\n");
        return false;
    }
    double t0 = td_now_s();
    td_status s = td_onnx_load(ctx, in, &m);
    double t1 = td_now_s();
    if (s == TD_OK)
        s = td_onnx_save(ctx, m, out, opts);
    double t2 = td_now_s();
    if (s != TD_OK) {
        td_cli_report("onnx-save", ctx, s);
        ok = false;
    } else if (json) {
        /* one compact object per model: --batch prints JSON Lines */
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "input", in);
        cJSON_AddStringToObject(j, "output", out);
        cJSON_AddNumberToObject(j, "load_s", t1 - t0);
        cJSON_AddNumberToObject(j, "save_s", t2 - t1);
        cJSON_AddNumberToObject(j, "nodes", m->graph->n_nodes);
        cJSON_AddNumberToObject(j, "initializers", m->graph->n_initializers);
        char *text = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (text)
            printf("%s\n", text);
        else
            ok = false;
        free(text);
    } else {
        td_info("wrote %s (load %.3f s, save %.3f s)", out, t1 - t0, t2 - t1);
        td_debug("onnx-save: %d nodes, %d initializers, %d graph inputs, %d outputs", m->graph->n_nodes,
                 m->graph->n_initializers, m->graph->n_inputs, m->graph->n_outputs);
    }
    td_model_free(m);
    td_ctx_free(ctx);
    return ok;
}

static int run_batch(const char *list, const td_onnx_save_options *opts, bool json) {
    FILE *f = strcmp(list, "-") == 0 ? stdin : fopen(list, "r");
    if (!f) {
        fprintf(stderr, "tdeploy onnx-save: error: cannot open batch list %s\n", list);
        return TD_EXIT_FAIL;
    }
    char *line = NULL;
    size_t cap = 0;
    long n = 0, failed = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0)
            continue;
        char *tab = strchr(line, '\t');
        n++;
        if (!tab) {
            fprintf(stderr, "tdeploy onnx-save: error: batch line %ld has no TAB between input and output\n", n);
            failed++;
            continue;
        }
        *tab = 0;
        failed += !convert(line, tab + 1, opts, json);
    }
    free(line);
    if (f != stdin)
        fclose(f);
    td_info("batch: %ld converted, %ld failed", n - failed, failed);
    return failed ? TD_EXIT_FAIL : TD_EXIT_OK;
}

int td_cmd_onnx_save(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *batch = NULL;
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
        } else if (!strcmp(a, "--batch")) {
            if (++i >= argc)
                return td_cli_usage_error("onnx-save", "--batch needs a list file");
            batch = argv[i];
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
    if (batch)
        return in || out ? td_cli_usage_error("onnx-save", "--batch takes no IN/-o") : run_batch(batch, &opts, json);
    if (!in || !out)
        return td_cli_usage_error("onnx-save", "need an input model and -o OUTPUT");
    return convert(in, out, &opts, json) ? TD_EXIT_OK : TD_EXIT_FAIL;
}
