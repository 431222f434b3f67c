/* tdeploy build: compile an ONNX file or a HF model directory into a GPU
 * engine for the GPU this runs on (see src/engine/engine_build.h). */
#include "cli/cli.h"

#include "core/ctx.h"
#include "core/log.h"
#include "engine/engine_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: tdeploy build IN.onnx|MODEL_DIR -o MODEL.engine [--precision fp32|fp16|bf16] [--min BxS]\n"
               "                    [--opt BxS] [--max BxS] [--profile MINBxS:OPTBxS:MAXBxS]... [--timing-cache FILE]\n"
               "                    [--json] [-v|-q]\n\n"
               "Builds an engine for the GPU of this machine: optimizes the graph (unless IN is already the fused\n"
               "output of `tdeploy optimize`), converts the weights to the engine precision (default fp16),\n"
               "checks that every op has a CUDA kernel, plans activation memory for each shape profile and\n"
               "writes MODEL.engine. Shape profiles are batch x sequence ranges (default --min 1x1 --opt 8x128\n"
               "--max 32x512); --profile adds one more (up to 16). Inputs outside every profile are refused at\n"
               "run time. Each GEMM shape (per power-of-two row bucket of every profile) is tuned by measurement:\n"
               "cuBLASLt's best candidates are timed on the GPU and the fastest goes into the engine. Measurements\n"
               "are kept in a timing cache keyed by GPU, compute capability, driver, CUDA, cuBLASLt and tdeploy\n"
               "version, so a rebuild measures nothing: --timing-cache FILE (default\n"
               "$XDG_CACHE_HOME/tdeploy/timing-cache.bin, else ~/.cache/tdeploy/timing-cache.bin; --timing-cache ''\n"
               "keeps none). A damaged cache or one from another GPU or version is reported, re-measured and\n"
               "rewritten. The op check and memory planning run before the GPU is needed: an op without a CUDA\n"
               "kernel is named on any machine. Run it with `tdeploy run MODEL.engine --text ...` or `tdeploy infer\n"
               "MODEL.engine ...`; `tdeploy inspect MODEL.engine` shows it.\n");
}

static bool parse_bxs(const char *s, uint32_t *b, uint32_t *q) {
    char *x;
    long bb = strtol(s, &x, 10);
    if (x == s || (*x != 'x' && *x != 'X'))
        return false;
    char *end;
    long ss = strtol(x + 1, &end, 10);
    if (end == x + 1 || (*end && *end != ':'))
        return false;
    if (bb < 1 || ss < 1 || bb > (long)TD_ENGINE_MAX_DIM || ss > (long)TD_ENGINE_MAX_DIM)
        return false;
    *b = (uint32_t)bb, *q = (uint32_t)ss;
    return true;
}

static bool profile_ok(const td_engine_profile *p) {
    return p->min_b <= p->opt_b && p->opt_b <= p->max_b && p->min_s <= p->opt_s && p->opt_s <= p->max_s;
}

int td_cmd_build(int argc, char **argv) {
    const char *in = NULL, *outp = NULL, *prec = "fp16";
    bool json = false, have_min = false, have_opt = false, have_max = false;
    td_engine_build_options o;
    memset(&o, 0, sizeof o);
    td_engine_profile base = {1, 1, 8, 128, 32, 512, 0, 0};
    td_engine_profile extra[TD_ENGINE_MAX_PROFILES];
    uint32_t n_extra = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        bool has1 = i + 1 < argc;
        if (td_cli_is_help(s)) {
            usage(stdout);
            return TD_EXIT_OK;
        } else if (td_cli_common_flag(s)) {
            continue;
        } else if ((!strcmp(s, "-o") || !strcmp(s, "--output")) && has1) {
            outp = argv[++i];
        } else if (!strcmp(s, "--precision") && has1) {
            prec = argv[++i];
        } else if ((!strcmp(s, "--min") || !strcmp(s, "--opt") || !strcmp(s, "--max")) && has1) {
            uint32_t b, q;
            if (!parse_bxs(argv[++i], &b, &q) || strchr(argv[i], ':'))
                return td_cli_usage_error("build", "%s wants BATCHxSEQUENCE like 8x128, got '%s'", s, argv[i]);
            if (s[3] == 'i')
                base.min_b = b, base.min_s = q, have_min = true;
            else if (s[3] == 'p')
                base.opt_b = b, base.opt_s = q, have_opt = true;
            else
                base.max_b = b, base.max_s = q, have_max = true;
        } else if (!strcmp(s, "--profile") && has1) {
            const char *v = argv[++i];
            td_engine_profile p = {0};
            const char *c1 = strchr(v, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c1 || !c2 || !parse_bxs(v, &p.min_b, &p.min_s) || !parse_bxs(c1 + 1, &p.opt_b, &p.opt_s) ||
                !parse_bxs(c2 + 1, &p.max_b, &p.max_s) || !profile_ok(&p))
                return td_cli_usage_error("build", "--profile wants MIN:OPT:MAX like 1x16:8x128:32x512 with "
                                          "min <= opt <= max, got '%s'", v);
            if (n_extra + 1 >= TD_ENGINE_MAX_PROFILES)
                return td_cli_usage_error("build", "at most %d profiles", TD_ENGINE_MAX_PROFILES);
            extra[n_extra++] = p;
        } else if (!strcmp(s, "--timing-cache") && has1) {
            o.timing_cache = argv[++i];
        } else if (!strcmp(s, "--json")) {
            json = true;
        } else if (s[0] == '-') {
            return td_cli_usage_error("build", "unknown or incomplete flag '%s'", s);
        } else if (!in) {
            in = s;
        } else {
            return td_cli_usage_error("build", "unexpected argument '%s'", s);
        }
    }
    if (!in || !outp)
        return td_cli_usage_error("build", "IN and -o MODEL.engine are required");
    if (!strcmp(prec, "fp32"))
        o.precision = TD_PRECISION_FP32;
    else if (!strcmp(prec, "fp16"))
        o.precision = TD_PRECISION_FP16;
    else if (!strcmp(prec, "bf16"))
        o.precision = TD_PRECISION_BF16;
    else
        return td_cli_usage_error("build", "--precision wants fp32, fp16 or bf16, got '%s'", prec);
    /* --min/--opt/--max make the first profile; with only --profile flags, those are the profiles */
    if (n_extra == 0 || have_min || have_opt || have_max) {
        if (!profile_ok(&base))
            return td_cli_usage_error("build", "--min %ux%u --opt %ux%u --max %ux%u: each must be <= the next",
                                      base.min_b, base.min_s, base.opt_b, base.opt_s, base.max_b, base.max_s);
        o.profiles[o.n_profiles++] = base;
    }
    for (uint32_t k = 0; k < n_extra; k++)
        o.profiles[o.n_profiles++] = extra[k];
    o.input = in;
    o.output = outp;
    td_ctx *ctx = td_ctx_new();
    if (!ctx) {
        fprintf(stderr, "tdeploy build: out of memory\n");
        return TD_EXIT_FAIL;
    }
    td_info("build: %s -> %s (%s, %u profile%s)", in, outp, prec, o.n_profiles, o.n_profiles > 1 ? "s" : "");
    td_engine_build_report r;
    td_status st = td_engine_build(ctx, &o, &r);
    if (st != TD_OK) {
        int rc = td_cli_report("build", ctx, st);
        td_ctx_free(ctx);
        return rc;
    }
    if (json) {
        /* through cJSON: paths and GPU names are arbitrary text that must be escaped */
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "engine", outp);
        cJSON_AddStringToObject(j, "precision", prec);
        cJSON_AddStringToObject(j, "gpu", r.gpu_name);
        char cc[32];
        snprintf(cc, sizeof cc, "%d.%d", r.cc_major, r.cc_minor);
        cJSON_AddStringToObject(j, "compute_capability", cc);
        cJSON_AddNumberToObject(j, "nodes", r.nodes);
        cJSON_AddNumberToObject(j, "gpu_nodes", r.gpu_nodes);
        cJSON_AddNumberToObject(j, "hoisted_nodes", r.hoisted_nodes);
        cJSON_AddNumberToObject(j, "weight_bytes", (double)r.weight_bytes);
        cJSON *profiles = cJSON_AddArrayToObject(j, "profiles");
        for (uint32_t i = 0; i < r.n_profiles; i++) {
            const td_engine_profile *p = &r.profiles[i];
            cJSON *o = cJSON_CreateObject();
            int min[2] = {(int)p->min_b, (int)p->min_s}, opt[2] = {(int)p->opt_b, (int)p->opt_s},
                max[2] = {(int)p->max_b, (int)p->max_s};
            cJSON_AddItemToObject(o, "min", cJSON_CreateIntArray(min, 2));
            cJSON_AddItemToObject(o, "opt", cJSON_CreateIntArray(opt, 2));
            cJSON_AddItemToObject(o, "max", cJSON_CreateIntArray(max, 2));
            cJSON_AddNumberToObject(o, "arena_bytes", (double)p->arena_bytes);
            cJSON_AddNumberToObject(o, "naive_bytes", (double)p->naive_bytes);
            if (!cJSON_AddItemToArray(profiles, o))
                cJSON_Delete(o);
        }
        cJSON *tune = cJSON_AddObjectToObject(j, "gemm_tuning");
        cJSON_AddNumberToObject(tune, "buckets", r.gemm_buckets);
        cJSON_AddNumberToObject(tune, "measured", r.gemm_measured);
        cJSON_AddNumberToObject(tune, "from_cache", r.gemm_cached);
        cJSON_AddStringToObject(tune, "timing_cache", r.timing_cache);
        cJSON_AddStringToObject(tune, "cache_note", r.cache_note[0] ? "not used (see the warning)" : "");
        cJSON *sec = cJSON_AddObjectToObject(j, "seconds");
        cJSON_AddNumberToObject(sec, "export", r.seconds_export);
        cJSON_AddNumberToObject(sec, "optimize", r.seconds_optimize);
        cJSON_AddNumberToObject(sec, "check_and_plan", r.seconds_check_plan);
        cJSON_AddNumberToObject(sec, "tune", r.seconds_tune);
        cJSON_AddNumberToObject(sec, "write", r.seconds_write);
        cJSON_AddNumberToObject(sec, "total", r.seconds_total);
        td_ctx_free(ctx);
        return td_cli_print_json("build", j);
    } else {
        td_info("build: %d of %d nodes on the GPU (%d shape-only nodes run while planning), %.1f MB of weights, "
                "for %s (compute capability %d.%d)", r.gpu_nodes, r.nodes, r.hoisted_nodes, r.weight_bytes / 1e6,
                r.gpu_name, r.cc_major, r.cc_minor);
        for (uint32_t i = 0; i < r.n_profiles; i++) {
            const td_engine_profile *p = &r.profiles[i];
            td_info("build: profile %u min %ux%u opt %ux%u max %ux%u: activation arena %.1f MB planned (naive %.1f MB)",
                    i, p->min_b, p->min_s, p->opt_b, p->opt_s, p->max_b, p->max_s, p->arena_bytes / 1e6,
                    p->naive_bytes / 1e6);
        }
        td_info("build: GEMMs: %d shape buckets, %d measured, %d from the timing cache %s", r.gemm_buckets,
                r.gemm_measured, r.gemm_cached, r.timing_cache[0] ? r.timing_cache : "(none)");
        td_info("build: %.2f s (load/export %.2f, optimize %.2f, check + plan %.2f, tune %.2f, write %.2f)",
                r.seconds_total, r.seconds_export, r.seconds_optimize, r.seconds_check_plan, r.seconds_tune,
                r.seconds_write);
    }
    td_ctx_free(ctx);
    return TD_EXIT_OK;
}
