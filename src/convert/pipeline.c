/* The convert pipeline: one function per step, run in order by td_convert.
 * Each step's failure is wrapped with the step's name so the message says where
 * it happened; the staging directory is removed on any failure or interrupt. */
#define _GNU_SOURCE
#include "convert/convert.h"
#include "engine/engine_build.h"

#include "convert/compare.h"
#include "convert/decoder.h"
#include "convert/feeds.h"
#include "core/ctx.h"
#include "core/fs.h"
#include "core/log.h"
#include "deploy/report.h"
#include "deploy/stats.h"
#include "deploy/output_dir.h"
#include "deploy/tree.h"
#include "deploy/triton.h"
#include "export/export.h"
#include "export/task.h"
#include "hf/config.h"
#include "hf/hub.h"
#include "hf/model_dir.h"
#include "onnx/ir.h"
#include "onnx/onnx_io.h"
#include "opt/optimize.h"
#include "runtime/backend.h"
#include "tdeploy/session.h"
#include "tdeploy/tokenizer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_IO 8

typedef struct backend_run {
    const char *name;
    td_session *session;
    td_compare_acc acc[MAX_IO];
    int n_acc;
    bool passed;
    td_latency_stats latency[3]; /* per benchmarked shape (conv.bench_shapes) */
} backend_run;

typedef struct io_desc {
    char name[64];
    td_dtype dtype;
    int rank;
    int64_t dims[8]; /* -1 for symbolic */
} io_desc;

typedef struct conv {
    const td_convert_options *o;
    td_convert_result *res;
    td_model_dir *md;
    td_tokenizer *tok;
    char *stage;          /* temporary sibling of outdir */
    char *outdir;         /* without trailing slash */
    char *onnx_path, *opt_path;
    td_export_summary xs;
    td_opt_report orep;
    td_report *report;
    const char *task;
    io_desc inputs[MAX_IO], outputs[MAX_IO];
    int n_inputs, n_outputs;
    td_session *ref;    /* CPU runtime on model.onnx: the benchmark's "reference" row */
    td_session *oracle; /* reference backend on model.onnx (ref_kern.h loops): what validation compares with */
    backend_run be[TD_CONVERT_MAX_BACKENDS];
    td_latency_stats ref_latency[3];
    int64_t bench_shapes[3][2]; /* (batch, seq) measured: opt, then min and max when distinct */
    int n_bench_shapes;         /* 0: not benchmarked (--no-bench) */
    double step_s[16];
    const char *step_names[16];
    int n_steps;
    double atol, rtol;
    bool elementwise; /* the |got - ref| <= atol + rtol |ref| test decides (off for int8 unless asked for) */
    double min_mean_cos; /* > 0: every output's mean row cosine must reach it (int8) */
    uint64_t rng;
    int64_t seq[3]; /* the options' --seq-len, or the model's default */
} conv;

void td_convert_options_init(td_convert_options *o) {
    memset(o, 0, sizeof *o);
    o->backends[0] = "cpu";
    o->n_backends = 1;
    o->seq[0] = 0; /* 0 = auto: 1, min(128, model max), min(128, model max) */
    o->batch[0] = 1, o->batch[1] = 1, o->batch[2] = 1;
    o->precision = "fp32";
    o->int8_weight_bits = 8;
    o->atol = -1;
    o->rtol = -1;
    o->outdir = "triton_models";
    o->nb_instances = 1;
    o->nb_measures = 100;
    o->warmup = 10;
    o->device = "cpu";
    o->triton_backend = "tdeploy";
    o->seed = 1234;
}

static bool interrupted(const conv *c) { return c->o->interrupted && *c->o->interrupted; }

static td_status check_interrupt(td_ctx *ctx, const conv *c, const char *step) {
    if (interrupted(c))
        return td_fail(ctx, TD_ERR_INTERRUPTED, "interrupted during step '%s'", step);
    return TD_OK;
}

/* ---------------- options ---------------- */

td_status td_convert_check_options(td_ctx *ctx, const td_convert_options *o) {
    const char *dims[2] = {"--batch-size", "--seq-len"};
    const int64_t *v[2] = {o->batch, o->seq};
    for (int k = 0; k < (o->seq[0] == 0 ? 1 : 2); k++) {
        if (v[k][0] < 1 || v[k][0] > v[k][1] || v[k][1] > v[k][2])
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "%s %lld %lld %lld: need 1 <= MIN <= OPT <= MAX", dims[k], (long long)v[k][0],
                           (long long)v[k][1], (long long)v[k][2]);
    }
    if (o->batch[2] > 4096 || o->seq[2] > 65536)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--batch-size max %lld / --seq-len max %lld are unreasonably large",
                       (long long)o->batch[2], (long long)o->seq[2]);
    if (strcmp(o->precision, "fp32") != 0 && strcmp(o->precision, "fp16") != 0 && strcmp(o->precision, "bf16") != 0 &&
        strcmp(o->precision, "int8") != 0 && strcmp(o->precision, "int4") != 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--precision %s: use fp32, fp16, bf16, int8 or int4", o->precision);
    if (o->int8_weight_bits != 8 && o->int8_weight_bits != 7)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--int8-weight-bits %d: use 8 or 7", o->int8_weight_bits);
    if (o->int8_weight_bits == 7 && strcmp(o->precision, "int8") != 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--int8-weight-bits 7 applies to --precision int8 only");
    if (o->n_backends < 1)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "no backend chosen (--backend cpu)");
    for (int i = 0; i < o->n_backends; i++) {
        if (!td_backend_find(o->backends[i]))
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--backend: unknown backend '%s' (available: cpu)",
                           o->backends[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(o->backends[i], o->backends[j]) == 0)
                return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "backend '%s' listed twice", o->backends[i]);
    }
    if (strcmp(o->device, "cpu") != 0 && strcmp(o->device, "cuda") != 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--device %s: use cpu or cuda", o->device);
    if (o->nb_measures < 1 || o->warmup < 0 || o->nb_instances < 1)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--nb-measures and --nb-instances must be >= 1, --warmup >= 0");
    /* the thread pool takes 1..1024 (0 = one per core); say so before the export, not at 'prepare backends' */
    if (o->threads < 0 || o->threads > 1024)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--threads %d: use 1..1024, or 0 for one per core", o->threads);
    if (o->nb_instances > 1024)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--nb-instances %d: use 1..1024 (as triton-repo)",
                       o->nb_instances);
    td_export_task task;
    if (o->task && td_task_from_name(ctx, o->task, &task) != TD_OK)
        return td_wrap(ctx, "--task");
    return TD_OK;
}

static td_status check_options(td_ctx *ctx, const td_convert_options *o, conv *c) {
    TD_TRY(td_convert_check_options(ctx, o));
    double atol = 1e-4, rtol = 1e-4; /* fp32 backends agree to rounding */
    if (strcmp(o->precision, "fp16") == 0)
        atol = 1e-2, rtol = 1e-2;
    else if (strcmp(o->precision, "bf16") == 0)
        atol = 5e-2, rtol = 5e-2;
    else if (strcmp(o->precision, "int8") == 0 || strcmp(o->precision, "int4") == 0)
        atol = 5e-2, rtol = 5e-2; /* reported; decides only when --atol/--rtol are given */
    c->atol = o->atol >= 0 ? o->atol : atol;
    c->rtol = o->rtol >= 0 ? o->rtol : rtol;
    /* int8 moves every element by quantization noise: what must hold is the
     * direction of each output row (embeddings, hidden states, logits) */
    bool int8 = strcmp(o->precision, "int8") == 0, int4 = strcmp(o->precision, "int4") == 0;
    c->elementwise = !(int8 || int4) || o->atol >= 0 || o->rtol >= 0;
    c->min_mean_cos = int8 ? 0.99 : 0.0;
    return TD_OK;
}

/* ---------------- steps ---------------- */

static bool looks_like_hub_id(const char *m) {
    const char *slash = strchr(m, '/');
    return slash && slash != m && !strchr(slash + 1, '/') && slash[1] && m[0] != '.' && !td_is_dir(m);
}

static td_status step_resolve(td_ctx *ctx, conv *c) {
    td_status s = td_model_dir_open(ctx, c->o->model, &c->md);
    if (s == TD_ERR_NOT_FOUND && looks_like_hub_id(c->o->model)) {
        /* not in the local cache: download it into the cache, then open it from there */
        char saved[TD_ERROR_MAX];
        snprintf(saved, sizeof saved, "%s", td_error_message(ctx));
        td_hub_options ho;
        td_hub_options_init(&ho);
        ho.progress = true;
        char *snap = NULL;
        s = td_hub_download(ctx, c->o->model, NULL, &ho, &snap);
        free(snap);
        if (s != TD_OK)
            return td_wrap(ctx, "%s is not a local directory or cached model, and downloading it failed", c->o->model);
        s = td_model_dir_open(ctx, c->o->model, &c->md);
    }
    if (s != TD_OK)
        return s;
    const int64_t model_max = c->md->max_seq_length;
    if (c->seq[0] == 0) {
        /* the default profile reaches the model's max length, the length the served model truncates to */
        int64_t d = model_max < 128 ? model_max : 128;
        c->seq[0] = 1, c->seq[1] = d, c->seq[2] = model_max;
    }
    if (c->seq[2] > c->md->max_seq_length) {
        c->res->option_misfit = true; /* a flag value the model cannot take: the CLI's usage error */
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "--seq-len max %lld exceeds what %s accepts (%lld tokens); lower it",
                       (long long)c->seq[2], c->o->model, (long long)c->md->max_seq_length);
    }
    if (c->seq[2] < model_max)
        td_warn("--seq-len max %lld is below the model's max length %lld (%s): the served model truncates texts at "
                "%lld tokens, but only lengths up to %lld are validated and benchmarked; pass --seq-len MIN OPT %lld "
                "to cover them",
                (long long)c->seq[2], (long long)model_max, c->md->max_seq_length_source, (long long)model_max,
                (long long)c->seq[2], (long long)model_max);
    if (c->md->tokenizer_json) {
        s = td_tokenizer_load(ctx, c->md->path, &c->tok);
        if (s != TD_OK)
            return td_wrap(ctx, "loading the tokenizer of %s", c->md->path);
    } else {
        td_warn("%s has no tokenizer.json: validation uses random ids only and no Triton tokenizer is written",
                c->md->path);
    }
    return TD_OK;
}

static void capture_io(conv *c, const td_graph *g) {
    c->n_inputs = g->n_inputs < MAX_IO ? g->n_inputs : MAX_IO;
    c->n_outputs = g->n_outputs < MAX_IO ? g->n_outputs : MAX_IO;
    for (int k = 0; k < 2; k++) {
        io_desc *d = k ? c->outputs : c->inputs;
        td_value *const *vals = k ? g->outputs : g->inputs;
        int n = k ? c->n_outputs : c->n_inputs;
        for (int i = 0; i < n; i++) {
            const td_value *v = vals[i];
            snprintf(d[i].name, sizeof d[i].name, "%s", v->name);
            d[i].dtype = v->type.elem;
            d[i].rank = v->type.rank < 0 ? 0 : (v->type.rank > 8 ? 8 : v->type.rank);
            for (int r = 0; r < d[i].rank; r++)
                d[i].dims[r] = v->type.dims[r].param ? -1 : v->type.dims[r].value;
        }
    }
}

static td_opt_precision precision_of(const char *name) {
    return strcmp(name, "fp16") == 0   ? TD_OPT_FP16
           : strcmp(name, "bf16") == 0 ? TD_OPT_BF16
           : strcmp(name, "int8") == 0 ? TD_OPT_INT8
           : strcmp(name, "int4") == 0 ? TD_OPT_INT4
                                       : TD_OPT_FP32;
}

static td_status step_export_optimize(td_ctx *ctx, conv *c) {
    td_export_options eo = {0};
    eo.model_dir = c->md->path;
    eo.task = TD_TASK_AUTO;
    if (c->o->task && td_task_from_name(ctx, c->o->task, &eo.task) != TD_OK)
        return td_wrap(ctx, "--task");
    eo.opset = TD_EXPORT_OPSET_DEFAULT;
    eo.dtype = TD_F32;
    td_model *m = NULL;
    double t0 = td_now_s();
    TD_TRY(td_export_build(ctx, &eo, &m, &c->xs));
    if (c->xs.task != TD_TASK_TEXT_GENERATION && strcmp(c->o->precision, "int4") == 0) {
        td_model_free(m);
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "--precision int4 (4-bit weight blocks, MatMulNBits) is for decoders (task text-generation); "
                       "task %s: use int8 for quantized encoders", td_export_task_name(c->xs.task));
    }
    if (c->xs.task == TD_TASK_TEXT_GENERATION && c->o->int8_weight_bits == 7) {
        td_model_free(m);
        c->res->option_misfit = true;
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "--int8-weight-bits 7 applies to int8 encoders; decoders' int8 is 8-bit blocks of 32 (Q8_0)");
    }
    c->task = td_export_task_name(c->xs.task);
    capture_io(c, m->graph);
    /* both files are opened again by the validation sessions: keep them in the
     * page cache instead of writing them O_DIRECT */
    const td_onnx_save_options reread = {.keep_cached = true, .align_raw_data = true};
    td_status s = td_onnx_save(ctx, m, c->onnx_path, &reread);
    if (s != TD_OK)
        goto out;
    c->step_names[c->n_steps] = "export";
    c->step_s[c->n_steps++] = td_now_s() - t0;
    td_info("  export: %s, task %s, %d nodes -> model.onnx (%.2f s)", c->xs.architecture, c->task, c->xs.n_nodes,
            td_now_s() - t0);
    if ((s = check_interrupt(ctx, c, "optimize")) != TD_OK)
        goto out;
    t0 = td_now_s();
    /* Optimize the exporter's graph in memory (model.onnx is already written). It
     * fuses exactly what optimizing the saved file does: initializers take their
     * shape from their data whatever type the value carried before
     * (td_graph_set_initializer), and the shape pass types shapeless constants, so
     * the matchers see the same shapes as after a save/load round trip
     * (tests/unit/test_opt_inmem.c checks the fusion counts per fixture). */
    td_opt_options oo;
    td_opt_options_default(&oo);
    oo.target = TD_OPT_TARGET_FUSED;
    /* --precision reaches the written files: model-optimized.onnx (and so the
     * Triton model, a copy of it) has fp16/bf16 weights and compute, with
     * float32 inputs/outputs, or int8 weight products (DynamicQuantizeMatMul);
     * model.onnx stays the fp32 reference */
    oo.precision = precision_of(c->o->precision);
    oo.int8_weight_bits = c->o->int8_weight_bits;
    oo.keep_io_types = true;
    if (c->xs.task == TD_TASK_TEXT_GENERATION)
        oo.fold_max_elements = TD_OPT_FOLD_ALL_DECODER;
    if ((s = td_optimize(ctx, m, &oo, &c->orep)) != TD_OK) {
        td_wrap(ctx, "optimizing the exported graph");
        goto out;
    }
    if ((s = td_onnx_save(ctx, m, c->opt_path, &reread)) != TD_OK)
        goto out;
    c->step_names[c->n_steps] = "optimize";
    c->step_s[c->n_steps++] = td_now_s() - t0;
    td_info("  optimize: %d -> %d nodes -> model-optimized.onnx (%.2f s)", c->orep.nodes_before, c->orep.nodes_after,
            td_now_s() - t0);
out:
    td_model_free(m);
    return s;
}

static td_status step_prepare(td_ctx *ctx, conv *c) {
    td_session_options so;
    td_session_options_init(&so);
    so.threads = c->o->threads;
    so.precision = TD_PRECISION_FP32;
    TD_TRY(td_session_create_file(ctx, c->onnx_path, &so, &c->ref));
    /* The validation reference shares no kernel with the backends under test: the same graph ops on the
     * plain reference loops, one thread, no packing or fusion (runtime/cpu/backend_ref.c). */
    so.backend = "reference";
    if (td_session_create_file(ctx, c->onnx_path, &so, &c->oracle) != TD_OK)
        return td_wrap(ctx, "preparing the validation reference (reference kernels on %s)", c->onnx_path);
    td_precision p = strcmp(c->o->precision, "fp16") == 0   ? TD_PRECISION_FP16
                     : strcmp(c->o->precision, "bf16") == 0 ? TD_PRECISION_BF16
                                                            : TD_PRECISION_FP32;
    for (int i = 0; i < c->o->n_backends; i++) {
        backend_run *b = &c->be[i];
        b->name = c->o->backends[i];
        so.backend = b->name;
        so.precision = p;
        td_status s;
        if (strcmp(b->name, "cuda") == 0) {
            /* the CUDA backend runs an engine: built here from the standard ONNX at the precision, with the
             * --batch-size / --seq-len ranges as its profile, then validated and benchmarked like any backend */
            char *engine = NULL;
            if ((s = td_path_join(ctx, c->stage, "model.engine", false, &engine)) != TD_OK)
                return s;
            td_engine_build_options eo = {.input = c->onnx_path, .output = engine, .precision = p, .n_profiles = 1,
                                          .timing_cache = c->o->timing_cache};
            eo.profiles[0] = (td_engine_profile){(uint32_t)c->o->batch[0], (uint32_t)c->seq[0], (uint32_t)c->o->batch[1],
                                                 (uint32_t)c->seq[1], (uint32_t)c->o->batch[2], (uint32_t)c->seq[2], 0, 0};
            td_engine_build_report er;
            s = td_engine_build(ctx, &eo, &er);
            if (s == TD_OK) {
                td_info("  backend cuda: engine for %s built in %.2f s (%d GPU nodes)", er.gpu_name, er.seconds_total,
                        er.gpu_nodes);
                so.precision = TD_PRECISION_FP32; /* the engine's weights already have the precision */
                s = td_session_create_file(ctx, engine, &so, &b->session);
            }
            free(engine);
        } else {
            s = td_session_create_file(ctx, c->opt_path, &so, &b->session);
        }
        if (s != TD_OK)
            return td_wrap(ctx, "preparing backend '%s'", b->name);
        td_info("  backend %s: ready (%s weights)", b->name, c->o->precision);
    }
    return TD_OK;
}

static td_argmax_mode argmax_mode_for(const conv *c) {
    switch (c->xs.task) {
    case TD_TASK_CLASSIFICATION:
    case TD_TASK_TOKEN_CLASSIFICATION:
        return TD_ARGMAX_LAST_AXIS;
    case TD_TASK_QUESTION_ANSWERING:
        return TD_ARGMAX_SEQUENCE;
    default:
        return TD_ARGMAX_NONE;
    }
}

static td_status read_texts_file(td_ctx *ctx, const char *path, char **buf, char ***texts, char ***pairs, int *n) {
    size_t len;
    TD_TRY(td_read_file(ctx, path, 64u << 20, buf, &len));
    int cap = 16, cnt = 0;
    bool any_pair = false;
    char **t = malloc(sizeof(char *) * (size_t)cap), **p = malloc(sizeof(char *) * (size_t)cap);
    if (!t || !p) {
        free(t);
        free(p);
        return td_fail_oom(ctx, 0, "texts");
    }
    for (char *line = strtok(*buf, "\n"); line; line = strtok(NULL, "\n")) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[--l] = 0;
        if (!l)
            continue;
        if (cnt == cap) {
            cap *= 2;
            char **nt = realloc(t, sizeof(char *) * (size_t)cap), **np = nt ? realloc(p, sizeof(char *) * (size_t)cap) : NULL;
            if (nt)
                t = nt;
            if (!nt || !np) {
                free(t);
                free(np ? np : p);
                return td_fail_oom(ctx, 0, "texts");
            }
            p = np;
        }
        char *tab = strchr(line, '\t');
        if (tab) {
            *tab = 0;
            any_pair = true;
        }
        t[cnt] = line;
        p[cnt] = tab ? tab + 1 : "";
        cnt++;
    }
    if (cnt == 0) {
        free(t);
        free(p);
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "%s has no texts (one per line, a tab before the pair text)", path);
    }
    *texts = t;
    *n = cnt;
    if (any_pair)
        *pairs = p;
    else
        free(p);
    return TD_OK;
}

static td_status build_feeds(td_ctx *ctx, conv *c, td_feed **feeds, int *n_feeds) {
    td_feed *text_feeds = NULL;
    int n_text = 0;
    td_status s = TD_OK;
    char *buf = NULL;
    char **ftexts = NULL, **fpairs = NULL;
    if (c->tok) {
        const char *const *texts = td_builtin_texts;
        const char *const *pairs = NULL;
        const char *qa_q[32], *qa_c[32];
        int n = td_builtin_text_count;
        if (c->o->texts_file) {
            if ((s = read_texts_file(ctx, c->o->texts_file, &buf, &ftexts, &fpairs, &n)) != TD_OK)
                goto out;
            texts = (const char *const *)ftexts;
            pairs = (const char *const *)fpairs;
        } else if (c->xs.task == TD_TASK_QUESTION_ANSWERING) {
            for (int i = 0; i < td_builtin_pair_count; i++)
                qa_q[i] = td_builtin_pairs[i][0], qa_c[i] = td_builtin_pairs[i][1];
            texts = qa_q;
            pairs = qa_c;
            n = td_builtin_pair_count;
        }
        s = td_feeds_from_texts(ctx, c->tok, texts, pairs, n, c->o->batch[1], c->seq[2], &text_feeds, &n_text);
        if (s != TD_OK)
            goto out;
    }
    int n_total = n_text + 3;
    td_feed *all = calloc((size_t)n_total, sizeof *all);
    if (!all) {
        s = td_fail_oom(ctx, sizeof *all * (size_t)n_total, "feeds");
        goto out;
    }
    if (n_text)
        memcpy(all, text_feeds, sizeof *all * (size_t)n_text);
    free(text_feeds);
    text_feeds = NULL;
    int64_t vocab = c->md->config->vocab_size, pad = c->md->config->pad_token_id;
    if (c->tok && (int64_t)td_tokenizer_vocab_size(c->tok) < vocab)
        vocab = (int64_t)td_tokenizer_vocab_size(c->tok);
    const char *corner[3] = {"min", "opt", "max"};
    int made = n_text;
    for (int k = 0; k < 3; k++) {
        char label[96];
        snprintf(label, sizeof label, "random %lldx%lld (%s)", (long long)c->o->batch[k], (long long)c->seq[k],
                 corner[k]);
        if ((s = td_feed_random(ctx, &all[made], c->o->batch[k], c->seq[k], vocab, pad, &c->rng, label)) != TD_OK)
            break;
        made++;
    }
    *feeds = all;
    *n_feeds = made;
out:
    free(buf);
    free(ftexts);
    free(fpairs);
    free(text_feeds);
    return s;
}

static td_status step_validate(td_ctx *ctx, conv *c) {
    td_feed *feeds = NULL;
    int n_feeds = 0;
    TD_TRY(build_feeds(ctx, c, &feeds, &n_feeds));
    td_status s = TD_OK;
    td_output_copy *ref = NULL, *got = NULL;
    int n_ref = 0, n_got = 0;
    for (int b = 0; b < c->o->n_backends; b++) {
        backend_run *be = &c->be[b];
        be->n_acc = td_session_output_count(c->oracle) < MAX_IO ? td_session_output_count(c->oracle) : MAX_IO;
        for (int i = 0; i < be->n_acc; i++) {
            snprintf(be->acc[i].output, sizeof be->acc[i].output, "%s", td_session_output_name(c->oracle, i));
            be->acc[i].argmax = argmax_mode_for(c);
        }
    }
    td_progress pr;
    td_progress_begin(&pr, "validate", (uint64_t)n_feeds);
    for (int f = 0; f < n_feeds && s == TD_OK; f++) {
        if ((s = check_interrupt(ctx, c, "validate")) != TD_OK)
            break;
        if ((s = td_feed_bind(ctx, c->oracle, &feeds[f])) != TD_OK || (s = td_session_run(ctx, c->oracle)) != TD_OK ||
            (s = td_outputs_copy(ctx, c->oracle, &ref, &n_ref)) != TD_OK) {
            td_wrap(ctx, "reference run on %s", feeds[f].label);
            break;
        }
        for (int b = 0; b < c->o->n_backends && s == TD_OK; b++) {
            backend_run *be = &c->be[b];
            if ((s = td_feed_bind(ctx, be->session, &feeds[f])) != TD_OK ||
                (s = td_session_run(ctx, be->session)) != TD_OK ||
                (s = td_outputs_copy(ctx, be->session, &got, &n_got)) != TD_OK) {
                td_wrap(ctx, "backend '%s' on %s", be->name, feeds[f].label);
                break;
            }
            for (int i = 0; i < be->n_acc && s == TD_OK; i++) {
                int j = 0;
                while (j < n_got && strcmp(got[j].name, ref[i].name) != 0)
                    j++;
                if (j == n_got)
                    s = td_fail(ctx, TD_ERR_VALIDATION, "backend '%s' has no output '%s'", be->name, ref[i].name);
                else
                    s = td_compare_accumulate(ctx, &be->acc[i], &ref[i], &got[j], &feeds[f], c->atol, c->rtol);
            }
            td_outputs_free(got, n_got);
            got = NULL;
        }
        td_outputs_free(ref, n_ref);
        ref = NULL;
        td_progress_update(&pr, (uint64_t)f + 1);
    }
    td_progress_end(&pr);
    for (int b = 0; b < c->o->n_backends && s == TD_OK; b++) {
        backend_run *be = &c->be[b];
        be->passed = true;
        for (int i = 0; i < be->n_acc; i++) {
            td_compare_acc *a = &be->acc[i];
            double mean_cos = a->cos_rows ? a->cos_sum / (double)a->cos_rows : NAN;
            bool ok = a->n_compared > 0 && (!c->elementwise || a->n_failed == 0) &&
                      (c->min_mean_cos <= 0 || !a->cos_rows || mean_cos >= c->min_mean_cos);
            be->passed &= ok;
            td_validation_result v = {
                .backend = be->name, .output = a->output, .n_compared = a->n_compared, .max_abs_diff = a->max_abs,
                .max_rel_diff = a->max_rel, .atol = c->atol, .rtol = c->rtol,
                .argmax_agreement = a->argmax_rows ? (double)a->argmax_agree / (double)a->argmax_rows : -1,
                .mean_cosine = mean_cos, .min_cosine = a->cos_rows ? a->cos_min : NAN,
                .elementwise_decides = c->elementwise, .min_mean_cosine = c->min_mean_cos, .passed = ok};
            if ((s = td_report_add_validation(ctx, c->report, &v)) != TD_OK)
                break;
            td_info("  %s/%s: %zu values over %d input sets, max abs diff %.3g, max rel diff %.3g, %zu outside "
                    "atol %.g + rtol %.g%s; row cosine mean %.5f min %.5f%s: %s",
                    be->name, a->output, a->n_compared, n_feeds, a->max_abs, a->max_rel, a->n_failed, c->atol, c->rtol,
                    c->elementwise ? "" : " (not decisive)", mean_cos, a->cos_rows ? a->cos_min : NAN,
                    c->min_mean_cos > 0 ? " (mean must be >= 0.99)" : "", ok ? "passed" : "FAILED");
            if (a->argmax_rows)
                td_info("  %s/%s: argmax agrees on %zu of %zu rows", be->name, a->output, a->argmax_agree,
                        a->argmax_rows);
        }
        if (!be->passed && c->res->n_failed_backends < TD_CONVERT_MAX_BACKENDS)
            snprintf(c->res->failed[c->res->n_failed_backends++], sizeof c->res->failed[0], "%s", be->name);
    }
    for (int f = 0; f < n_feeds; f++)
        td_feed_free(&feeds[f]);
    free(feeds);
    return s;
}

/* Measures sess at (batch, seq); pr counts every run as batch * seq tokens of
 * work, so the ETA of the whole benchmark weighs large shapes by their cost. */
static td_status bench_one(td_ctx *ctx, conv *c, td_session *sess, const char *name, int64_t batch, int64_t seq,
                           td_progress *pr, td_latency_stats *out) {
    td_feed f = {0};
    double *samples = malloc(sizeof(double) * (size_t)c->o->nb_measures);
    td_status s = TD_OK;
    if (!samples)
        return td_fail_oom(ctx, 8 * (size_t)c->o->nb_measures, "latency samples");
    char label[96];
    snprintf(label, sizeof label, "benchmark %lldx%lld", (long long)batch, (long long)seq);
    if (c->tok)
        s = td_feed_realistic(ctx, &f, c->tok, batch, seq, label);
    else
        s = td_feed_random(ctx, &f, batch, seq, c->md->config->vocab_size, c->md->config->pad_token_id, &c->rng,
                           label);
    if (s != TD_OK || (s = td_feed_bind(ctx, sess, &f)) != TD_OK)
        goto out;
    for (int i = 0; i < c->o->warmup + c->o->nb_measures; i++) {
        if ((s = check_interrupt(ctx, c, "benchmark")) != TD_OK)
            break;
        double t0 = td_now_s();
        if ((s = td_session_run(ctx, sess)) != TD_OK)
            break;
        if (i >= c->o->warmup)
            samples[i - c->o->warmup] = td_now_s() - t0;
        td_progress_update(pr, pr->done + (uint64_t)(batch * seq));
    }
    if (s == TD_OK)
        s = td_latency_stats_compute(ctx, samples, (size_t)c->o->nb_measures, TD_PCT_LINEAR, out);
    if (s == TD_OK) {
        td_benchmark_result br = {.backend = name, .batch = batch, .sequence = seq, .warmup = (size_t)c->o->warmup,
                                  .latency = *out};
        s = td_report_add_benchmark(ctx, c->report, &br);
    }
out:
    free(samples);
    td_feed_free(&f);
    return s;
}

/* The opt shape, then with --bench-corners the min and max shapes, each shape
 * once: the default profile's opt and max are often the same shape. */
static void plan_bench_shapes(conv *c) {
    const int order[3] = {1, 0, 2};
    int n_corners = c->o->bench_corners ? 3 : 1;
    c->n_bench_shapes = 0;
    for (int k = 0; k < n_corners; k++) {
        int64_t b = c->o->batch[order[k]], q = c->seq[order[k]];
        bool seen = false;
        for (int j = 0; j < c->n_bench_shapes; j++)
            seen |= c->bench_shapes[j][0] == b && c->bench_shapes[j][1] == q;
        if (!seen) {
            c->bench_shapes[c->n_bench_shapes][0] = b;
            c->bench_shapes[c->n_bench_shapes][1] = q;
            c->n_bench_shapes++;
        }
    }
}

static td_status step_benchmark(td_ctx *ctx, conv *c) {
    plan_bench_shapes(c);
    uint64_t work = 0; /* tokens run in all, for the progress bar and its ETA */
    for (int k = 0; k < c->n_bench_shapes; k++)
        work += (uint64_t)(1 + c->o->n_backends) * (uint64_t)(c->o->warmup + c->o->nb_measures) *
                (uint64_t)(c->bench_shapes[k][0] * c->bench_shapes[k][1]);
    td_progress pr;
    td_progress_begin(&pr, "benchmark", work);
    td_status s = TD_OK;
    for (int k = 0; k < c->n_bench_shapes && s == TD_OK; k++) {
        int64_t batch = c->bench_shapes[k][0], seq = c->bench_shapes[k][1];
        s = bench_one(ctx, c, c->ref, "reference", batch, seq, &pr, &c->ref_latency[k]);
        for (int b = 0; b < c->o->n_backends && s == TD_OK; b++)
            s = bench_one(ctx, c, c->be[b].session, c->be[b].name, batch, seq, &pr, &c->be[b].latency[k]);
    }
    td_progress_end(&pr);
    if (s != TD_OK)
        c->n_bench_shapes = 0;
    return s;
}

static void sanitize_name(const char *src, char *dst, size_t n) {
    const char *base = strrchr(src, '/');
    base = base && base[1] ? base + 1 : src;
    size_t j = 0;
    for (size_t i = 0; base[i] && j + 1 < n; i++) {
        char ch = base[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                  ch == '-' || ch == '.';
        dst[j++] = ok ? ch : '_';
    }
    dst[j] = 0;
    if (j == 0 || dst[0] == '.' || dst[0] == '-')
        snprintf(dst, n, "model");
}

static td_status step_triton(td_ctx *ctx, conv *c) {
    char name[128];
    sanitize_name(c->o->name ? c->o->name : c->o->model, name, sizeof name);
    td_triton_tensor ins[MAX_IO], outs[MAX_IO];
    memset(ins, 0, sizeof ins);
    memset(outs, 0, sizeof outs);
    for (int k = 0; k < 2; k++) {
        io_desc *d = k ? c->outputs : c->inputs;
        td_triton_tensor *t = k ? outs : ins;
        int n = k ? c->n_outputs : c->n_inputs;
        for (int i = 0; i < n; i++) {
            t[i].name = d[i].name;
            t[i].dtype = d[i].dtype;
            t[i].ndim = (size_t)d[i].rank;
            for (int r = 0; r < d[i].rank; r++)
                t[i].dims[r] = d[i].dims[r];
        }
    }
    char *triton_dir = NULL;
    TD_TRY(td_path_join(ctx, c->stage, "triton", false, &triton_dir));
    td_status s = TD_OK;
    bool any = false;
    for (int b = 0; b < c->o->n_backends && s == TD_OK; b++) {
        if (!c->be[b].passed) {
            td_warn("backend %s failed validation: no Triton model is written for it", c->be[b].name);
            continue;
        }
        /* The Triton model of a tdeploy backend is the optimized ONNX on Triton's
         * ONNX Runtime backend (fused contrib ops are ONNX Runtime's own). */
        td_triton_spec sp = {0};
        char model_name[160];
        snprintf(model_name, sizeof model_name, "%s%s%s", name, b ? "_" : "", b ? c->be[b].name : "");
        sp.name = model_name;
        sp.onnx_path = c->opt_path;
        char ext[1200];
        snprintf(ext, sizeof ext, "%s.data", c->opt_path);
        const char *ext_list[1] = {"model-optimized.onnx.data"};
        if (td_is_file(ext)) {
            sp.external_data = ext_list;
            sp.n_external_data = 1;
        }
        sp.task = c->task;
        sp.tokenizer_dir = c->tok ? c->md->path : NULL;
        sp.inputs = ins;
        sp.n_inputs = (size_t)c->n_inputs;
        sp.outputs = outs;
        sp.n_outputs = (size_t)c->n_outputs;
        sp.batch_min = c->o->batch[0], sp.batch_opt = c->o->batch[1], sp.batch_max = c->o->batch[2];
        sp.max_queue_delay_us = TD_TRITON_DEFAULT_QUEUE_DELAY_US;
        sp.nb_instances = c->o->nb_instances;
        sp.device = strcmp(c->o->device, "cuda") == 0 ? TD_TRITON_GPU : TD_TRITON_CPU;
        sp.max_length = c->md->max_seq_length; /* the same cut as `tdeploy run`, not the profile's max */
        sp.threads = c->o->threads;
        /* int8 lives in the graph (DynamicQuantizeMatMul); the served session then packs weights as stored */
        sp.precision = strcmp(c->o->precision, "int8") == 0 ? "fp32" : c->o->precision;
        if (!td_triton_serving_parse(c->o->triton_backend, &sp.serving)) {
            s = td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "Triton backend '%s': use tdeploy, onnxruntime or both",
                        c->o->triton_backend ? c->o->triton_backend : "(null)");
            break;
        }
        /* the writer makes a whole repository; every backend's models are then
         * moved into the one triton/ folder */
        char *tmp_repo = NULL;
        if (asprintf(&tmp_repo, "%s/.%s", c->stage, model_name) < 0) {
            s = td_fail_oom(ctx, 0, "a path");
            break;
        }
        s = td_triton_write_repository(ctx, &sp, tmp_repo);
        if (s == TD_OK) {
            mkdir(triton_dir, 0755);
            /* move each model folder of the written repository into triton/ (the writer makes only
             * NAME and NAME_*: the tdeploy model, the ONNX Runtime model and their helpers) */
            DIR *d = opendir(tmp_repo);
            struct dirent *de;
            while (s == TD_OK && d && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                    continue;
                char from[1400], to[1400];
                snprintf(from, sizeof from, "%s/%s", tmp_repo, de->d_name);
                snprintf(to, sizeof to, "%s/%s", triton_dir, de->d_name);
                if (rename(from, to) != 0)
                    s = td_fail(ctx, TD_ERR_IO, "cannot move %s to %s: %s", from, to, strerror(errno));
            }
            if (!d)
                s = td_fail(ctx, TD_ERR_IO, "cannot list %s: %s", tmp_repo, strerror(errno));
            else
                closedir(d);
            td_ctx quiet = {0};
            td_remove_tree(&quiet, tmp_repo);
            any = true;
        }
        free(tmp_repo);
    }
    free(triton_dir);
    if (s == TD_OK && !any)
        td_warn("no backend passed validation: the Triton repository is empty");
    return s;
}

static td_status copy_model_files(td_ctx *ctx, conv *c) {
    const char *files[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "modules.json", "sentence_bert_config.json", "generation_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[1400], dst[1400];
        snprintf(src, sizeof src, "%s/%s", c->md->path, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", c->stage, files[i]);
        if (!td_is_file(src))
            continue;
        TD_TRY(td_copy_file(ctx, src, dst));
    }
    return TD_OK;
}

/* ---------------- summary ---------------- */

static void append(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t n, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, n - len, fmt, ap);
    va_end(ap);
}

static void write_summary(conv *c) {
    char *b = c->res->summary;
    size_t n = sizeof c->res->summary;
    b[0] = 0;
    append(b, n, "model     %s (%s, %s), task %s\n", c->o->model, c->xs.model_type, c->xs.architecture, c->task);
    append(b, n, "shapes    batch %lld/%lld/%lld, sequence %lld/%lld/%lld (min/opt/max)\n", (long long)c->o->batch[0],
           (long long)c->o->batch[1], (long long)c->o->batch[2], (long long)c->seq[0], (long long)c->seq[1],
           (long long)c->seq[2]);
    append(b, n, "max len   %lld tokens (%s): the served model truncates there\n", (long long)c->md->max_seq_length,
           c->md->max_seq_length_source);
    /* step_triton writes no Triton model for a backend that failed validation */
    if (c->res->n_failed_backends >= c->o->n_backends)
        append(b, n, "written   model.onnx fp32 (reference) and model-optimized.onnx; no Triton model (validation "
                     "failed)\n");
    else
        append(b, n, "written   model.onnx fp32 (reference), model-optimized.onnx and the Triton model %s%s%s\n",
               c->o->precision, strcmp(c->o->precision, "fp32") ? " (float32 inputs and outputs)" : "",
               c->res->n_failed_backends ? " of the backends that passed" : "");
    append(b, n, "steps    ");
    for (int i = 0; i < c->n_steps; i++)
        append(b, n, " %s %.2fs", c->step_names[i], c->step_s[i]);
    append(b, n, "\nfusions  ");
    for (int i = 0; i < TD_OPT_N_FUSION_KINDS; i++)
        if (c->orep.fusion_names[i] && c->orep.fusion_counts[i])
            append(b, n, " %s x%d", c->orep.fusion_names[i], c->orep.fusion_counts[i]);
    append(b, n, "\n\n%-10s %-9s %-10s %-11s %-9s %9s %9s %9s %10s %11s\n", "backend", "precision", "validation",
           "max abs", "shape", "p50 ms", "p95 ms", "p99 ms", "seq/s", "tokens/s");
    /* one row per backend and benchmarked shape (opt first, then the corners) */
    for (int i = -1; i < c->o->n_backends; i++) {
        const backend_run *be = i >= 0 ? &c->be[i] : NULL;
        char worst_s[32] = "-";
        if (be) {
            double worst = 0;
            for (int k = 0; k < be->n_acc; k++)
                worst = be->acc[k].max_abs > worst ? be->acc[k].max_abs : worst;
            snprintf(worst_s, sizeof worst_s, "%.3g", worst);
        }
        const char *name = be ? be->name : "reference", *prec = be ? c->o->precision : "fp32";
        const char *val = be ? (be->passed ? "passed" : "FAILED") : "-";
        if (c->n_bench_shapes == 0)
            append(b, n, "%-10s %-9s %-10s %-11s %-9s %9s %9s %9s %10s %11s\n", name, prec, val, worst_s, "-", "-",
                   "-", "-", "-", "-");
        for (int k = 0; k < c->n_bench_shapes; k++) {
            const td_latency_stats *l = be ? &be->latency[k] : &c->ref_latency[k];
            int64_t bt = c->bench_shapes[k][0], sq = c->bench_shapes[k][1];
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)bt, (long long)sq);
            double per_s = l->total > 0 ? (double)l->n / l->total : 0;
            append(b, n, "%-10s %-9s %-10s %-11s %-9s %9.3f %9.3f %9.3f %10.1f %11.0f\n", k ? "" : name, k ? "" : prec,
                   k ? "" : val, k ? "" : worst_s, shape, l->p50 * 1e3, l->p95 * 1e3, l->p99 * 1e3,
                   per_s * (double)bt, per_s * (double)(bt * sq));
        }
    }
    append(b, n, "\n(validation compares every backend with model.onnx run on the reference kernels: plain loops, fp64 "
                 "sums, no intrinsics, packing, fusion or threads)");
    if (c->n_bench_shapes == 0)
        append(b, n, "\n(reference = tdeploy CPU runtime on model.onnx in fp32 before optimization; not benchmarked: "
                     "--no-bench)\n");
    else
        append(b, n, "\n(reference = tdeploy CPU runtime on model.onnx in fp32 before optimization; shape = batch x "
                     "sequence, opt shape first; %d runs per shape after %d warm-up)\n",
               c->o->nb_measures, c->o->warmup);
}

/* Step timings, optimizer figures and the options that shaped the run. */
static td_status add_report_details(td_ctx *ctx, conv *c) {
    cJSON *root = td_report_json(c->report);
    cJSON *steps = cJSON_AddObjectToObject(root, "steps_s");
    cJSON *optj = cJSON_AddObjectToObject(root, "optimizer");
    cJSON *fus = optj ? cJSON_AddObjectToObject(optj, "fusions") : NULL;
    cJSON *conf = cJSON_AddObjectToObject(root, "options");
    cJSON *bes = conf ? cJSON_AddArrayToObject(conf, "backends") : NULL;
    if (!steps || !fus || !bes)
        return td_fail_oom(ctx, 0, "the report");
    for (int i = 0; i < c->n_steps; i++)
        cJSON_AddNumberToObject(steps, c->step_names[i], c->step_s[i]);
    cJSON_AddNumberToObject(optj, "nodes_before", c->orep.nodes_before);
    cJSON_AddNumberToObject(optj, "nodes_after", c->orep.nodes_after);
    for (int i = 0; i < TD_OPT_N_FUSION_KINDS; i++)
        if (c->orep.fusion_names[i])
            cJSON_AddNumberToObject(fus, c->orep.fusion_names[i], c->orep.fusion_counts[i]);
    cJSON_AddStringToObject(conf, "precision", c->o->precision);
    if (strcmp(c->o->precision, "int8") == 0)
        cJSON_AddNumberToObject(conf, "int8_weight_bits", c->o->int8_weight_bits);
    /* what the served model (the Triton tokenizer) truncates a text to, and why */
    cJSON *ml = cJSON_AddObjectToObject(root, "max_length");
    if (!ml)
        return td_fail_oom(ctx, 0, "the report");
    cJSON_AddNumberToObject(ml, "tokens", (double)c->md->max_seq_length);
    cJSON_AddStringToObject(ml, "source", c->md->max_seq_length_source);
    cJSON_AddNumberToObject(ml, "profile_max", (double)c->seq[2]);
    /* what the files hold, so nobody has to trust the option: model.onnx is the fp32 reference */
    cJSON *wp = cJSON_AddObjectToObject(root, "written_precision");
    if (!wp)
        return td_fail_oom(ctx, 0, "the report");
    cJSON_AddStringToObject(wp, "model.onnx", "fp32");
    cJSON_AddStringToObject(wp, "model-optimized.onnx", c->o->precision);
    cJSON_AddStringToObject(wp, "triton", c->o->precision);
    cJSON_AddNumberToObject(conf, "atol", c->atol);
    cJSON_AddNumberToObject(conf, "rtol", c->rtol);
    cJSON_AddNumberToObject(conf, "threads", c->o->threads);
    cJSON_AddStringToObject(conf, "device", c->o->device);
    cJSON_AddNumberToObject(conf, "seed", (double)c->o->seed);
    for (int i = 0; i < c->o->n_backends; i++) {
        cJSON *b = cJSON_CreateObject();
        if (!b)
            return td_fail_oom(ctx, 0, "the report");
        cJSON_AddStringToObject(b, "name", c->be[i].name);
        cJSON_AddBoolToObject(b, "validation_passed", c->be[i].passed);
        cJSON_AddItemToArray(bes, b);
    }
    return TD_OK;
}

/* ---------------- decoders (task text-generation) ---------------- */

static td_status decoder_step(td_ctx *ctx, conv *c, int idx, const char *name,
                              td_status (*fn)(td_ctx *, td_convert_decoder *), td_convert_decoder *d) {
    TD_TRY(check_interrupt(ctx, c, name));
    td_info("[%d/8] %s", idx, name); /* the encoders' numbering: steps 3 (prepare), 6 (Triton) do not apply */
    double t0 = td_now_s();
    td_status s = fn(ctx, d);
    if (s != TD_OK)
        return s == TD_ERR_INTERRUPTED ? s : td_wrap(ctx, "step '%s' failed", name);
    if (c->n_steps < 16) {
        c->step_names[c->n_steps] = name;
        c->step_s[c->n_steps++] = td_now_s() - t0;
    }
    return TD_OK;
}

/* int8 / int4 live in the graph (MatMulNBits blocks): sessions on it keep the weights as stored (fp32 storage) */
static bool quantized_precision(const char *p) { return strcmp(p, "int8") == 0 || strcmp(p, "int4") == 0; }

/* triton/NAME: the decoder served in Triton's decoupled (streaming) mode by the tdeploy backend (deploy/triton.h);
 * the tokenizer and HF config files come from the stage, where copy_model_files put them. */
static td_status write_generation_repo(td_ctx *ctx, conv *c) {
    char name[128];
    sanitize_name(c->o->name ? c->o->name : c->o->model, name, sizeof name);
    char ext[1200];
    snprintf(ext, sizeof ext, "%s.data", c->opt_path);
    const char *ext_list[1] = {"model-optimized.onnx.data"};
    td_triton_gen_spec sp = {.name = name, .onnx_path = c->opt_path, .model_dir = c->stage,
                             .nb_instances = c->o->nb_instances, .threads = c->o->threads,
                             /* int8 lives in the graph; the served session packs weights as stored */
                             .precision = quantized_precision(c->o->precision) ? "fp32" : c->o->precision,
                             .max_new_tokens = 64};
    if (td_is_file(ext)) {
        sp.external_data = ext_list;
        sp.n_external_data = 1;
    }
    char *triton_dir = NULL;
    TD_TRY(td_path_join(ctx, c->stage, "triton", false, &triton_dir));
    td_status s = mkdir(triton_dir, 0755) == 0 || errno == EEXIST
                      ? td_triton_write_generation_model(ctx, &sp, triton_dir)
                      : td_fail(ctx, TD_ERR_IO, "cannot create %s: %s", triton_dir, strerror(errno));
    free(triton_dir);
    return s;
}

/* After export + optimize: validate and benchmark through the generation loop
 * (convert/decoder.h), then the same report and move into place as encoders,
 * with a Triton repository whose model streams generation on the tdeploy backend. */
static td_status convert_decoder(td_ctx *ctx, conv *c) {
    /* config, tokenizer and generation config beside the ONNX files: the generators read them there */
    TD_TRY(copy_model_files(ctx, c));
    td_convert_decoder d = {.o = c->o, .ref_onnx = c->onnx_path, .opt_onnx = c->opt_path, .atol = c->atol,
                            .rtol = c->rtol, .prompt_len = c->seq[1], .seed = c->o->seed,
                            .seq_given = c->o->seq[0] != 0, .seq_min = c->seq[0], .seq_max = c->seq[2],
                            .batch_given = c->o->batch_given};
    memcpy(d.batch, c->o->batch, sizeof d.batch);
    /* prompt lengths the model's positions cannot take with new tokens after them: a usage error, before any work */
    int64_t room = c->md->max_seq_length;
    if (d.seq_given && (c->seq[2] + 1 > room || (!c->o->no_bench && c->seq[1] + 2 > room))) {
        c->res->option_misfit = true;
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "--seq-len %lld %lld %lld: a decoder generates after the prompt, so MAX must be at most %lld and "
                       "OPT (the benchmark's prompt, 2 new tokens at least) at most %lld in %s's %lld positions",
                       (long long)c->seq[0], (long long)c->seq[1], (long long)c->seq[2], (long long)(room - 1),
                       (long long)(room - 2), c->o->model, (long long)room);
    }
    d.precision = strcmp(c->o->precision, "fp16") == 0   ? TD_PRECISION_FP16
                  : strcmp(c->o->precision, "bf16") == 0 ? TD_PRECISION_BF16
                                                         : TD_PRECISION_FP32;
    /* int8 / int4 (convert/decoder.h): near-top agreement decides, the elements only with --atol/--rtol */
    d.elementwise = c->elementwise;
    bool int8 = strcmp(c->o->precision, "int8") == 0, int4 = strcmp(c->o->precision, "int4") == 0;
    d.min_near_top = int8 || int4 ? 0.95 : 0.0;
    d.near_tol = int8 ? 0.1 : int4 ? 0.5 : 0.0;
    for (int i = 0; i < c->o->n_backends; i++) {
        d.backend = c->o->backends[i];
        memset(&d.bench, 0, sizeof d.bench);
        d.n_bench = 0, d.n_compared = d.n_failed = 0, d.max_abs = d.max_rel = 0, d.n_cases = d.n_token_mismatch = 0;
        d.mismatch[0] = 0;
        d.n_positions = d.n_top1_agree = d.n_near_top = d.greedy_total = d.greedy_same = 0, d.non_finite = false;
        d.greedy_first_diff_min = SIZE_MAX;
        TD_TRY(decoder_step(ctx, c, 4, "validate", td_convert_decoder_validate, &d));
        if (!c->o->no_bench)
            TD_TRY(decoder_step(ctx, c, 5, "benchmark", td_convert_decoder_benchmark, &d));
        TD_TRY(td_convert_decoder_report(ctx, &d, c->report));
        c->be[i].name = d.backend;
        c->be[i].passed = d.passed;
        if (!d.passed && c->res->n_failed_backends < TD_CONVERT_MAX_BACKENDS)
            snprintf(c->res->failed[c->res->n_failed_backends++], sizeof c->res->failed[0], "%s", d.backend);
        if (i == 0) {
            char *b = c->res->summary;
            size_t n = sizeof c->res->summary;
            b[0] = 0;
            append(b, n, "model     %s (%s, %s), task %s\n", c->o->model, c->xs.model_type, c->xs.architecture,
                   c->task);
            append(b, n, "written   model.onnx fp32 (reference), model-optimized.onnx %s\n", c->o->precision);
            append(b, n, "fusions  ");
            for (int k = 0; k < TD_OPT_N_FUSION_KINDS; k++)
                if (c->orep.fusion_names[k] && c->orep.fusion_counts[k])
                    append(b, n, " %s x%d", c->orep.fusion_names[k], c->orep.fusion_counts[k]);
            append(b, n, "\n");
        }
        td_convert_decoder_summary(&d, c->res->summary, sizeof c->res->summary);
    }
    TD_TRY(check_interrupt(ctx, c, "triton repository"));
    bool triton = c->o->n_backends > 0 && c->be[0].passed;
    if (triton) {
        td_info("[6/8] triton repository: decoupled text generation on the tdeploy backend");
        TD_TRY(write_generation_repo(ctx, c));
    } else {
        td_info("[6/8] triton repository: not written (validation failed)");
    }
    td_info("[8/8] report and move into place");
    /* a failed validation never replaces OUTDIR: the run goes to OUTDIR.failed */
    char dest[1200];
    snprintf(dest, sizeof dest, "%s%s", c->outdir, c->res->n_failed_backends ? ".failed" : "");
    const char *kinds[4] = {"onnx", "optimized_onnx", "report", "triton_repository"};
    const char *files[4] = {"model.onnx", "model-optimized.onnx", "report.json", "triton"};
    for (int i = 0; i < (triton ? 4 : 3); i++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dest, files[i]);
        TD_TRY(td_report_add_artifact(ctx, c->report, kinds[i], p));
    }
    TD_TRY(add_report_details(ctx, c));
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(td_report_json(c->report), "written_precision"), "triton",
                              cJSON_CreateString(triton ? c->o->precision : "not written (validation failed)"));
    char rp[1400];
    snprintf(rp, sizeof rp, "%s/report.json", c->stage);
    TD_TRY(td_report_write(ctx, c->report, rp));
    TD_TRY(td_output_write_marker(ctx, c->stage, "convert"));
    TD_TRY(td_output_replace(ctx, c->stage, dest, "convert", c->o->force, NULL));
    if (!c->res->n_failed_backends) {
        char failed[1300];
        snprintf(failed, sizeof failed, "%s.failed", c->outdir);
        td_ctx quiet = {0};
        td_output_remove_if_ours(&quiet, failed, "convert");
    }
    free(c->stage);
    c->stage = NULL; /* moved: nothing to clean up */
    snprintf(c->res->written_dir, sizeof c->res->written_dir, "%s", dest);
    snprintf(c->res->report_path, sizeof c->res->report_path, "%s/report.json", dest);
    return TD_OK;
}

/* ---------------- driver ---------------- */

static td_status make_stage(td_ctx *ctx, conv *c) {
    size_t n = strlen(c->o->outdir);
    while (n > 1 && c->o->outdir[n - 1] == '/')
        n--;
    c->outdir = strndup(c->o->outdir, n);
    if (!c->outdir || asprintf(&c->stage, "%s.tmp.XXXXXX", c->outdir) < 0) {
        c->stage = NULL;
        return td_fail_oom(ctx, n, "a path");
    }
    /* refuse a folder that is not ours before any work, not after minutes of it */
    TD_TRY(td_output_check_replaceable(ctx, c->outdir, "convert", c->o->force));
    /* create missing parents of OUTDIR (mkdir -p); a failure shows up in mkdtemp below */
    for (char *p = c->outdir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(c->outdir, 0755);
            *p = '/';
        }
    if (!mkdtemp(c->stage)) {
        td_status s = td_fail(ctx, TD_ERR_IO,
                              "cannot create a working directory next to %s: %s (does the parent exist, is it "
                              "writable?)",
                              c->outdir, strerror(errno));
        free(c->stage);
        c->stage = NULL;
        return s;
    }
    chmod(c->stage, 0755);
    if (asprintf(&c->onnx_path, "%s/model.onnx", c->stage) < 0 ||
        asprintf(&c->opt_path, "%s/model-optimized.onnx", c->stage) < 0)
        return td_fail_oom(ctx, 0, "a path");
    return TD_OK;
}

typedef td_status (*step_fn)(td_ctx *, conv *);

static td_status run_step(td_ctx *ctx, conv *c, int idx, int total, const char *name, step_fn fn, bool timed) {
    TD_TRY(check_interrupt(ctx, c, name));
    td_info("[%d/%d] %s", idx, total, name);
    double t0 = td_now_s();
    td_status s = fn(ctx, c);
    if (s != TD_OK)
        return s == TD_ERR_INTERRUPTED ? s : td_wrap(ctx, "step '%s' failed", name);
    if (timed && c->n_steps < 16) {
        c->step_names[c->n_steps] = name;
        c->step_s[c->n_steps++] = td_now_s() - t0;
    }
    return TD_OK;
}

td_status td_convert(td_ctx *ctx, const td_convert_options *o, td_convert_result *res) {
    conv c;
    memset(&c, 0, sizeof c);
    memset(res, 0, sizeof *res);
    c.o = o;
    c.res = res;
    c.rng = o->seed;
    memcpy(c.seq, o->seq, sizeof c.seq);
    td_status s = check_options(ctx, o, &c);
    if (s != TD_OK)
        goto out;
    if ((s = td_report_new(ctx, "convert", &c.report)) != TD_OK || (s = make_stage(ctx, &c)) != TD_OK)
        goto out;
    const int total = 8;
    if ((s = run_step(ctx, &c, 1, total, "resolve model", step_resolve, true)) != TD_OK)
        goto out;
    if ((s = run_step(ctx, &c, 2, total, "export + optimize", step_export_optimize, false)) != TD_OK)
        goto out;
    if ((s = td_report_set_model(ctx, c.report, o->model, c.md->path, c.task, c.md->revision)) != TD_OK ||
        (s = td_report_set_shapes(ctx, c.report, o->batch, c.seq)) != TD_OK)
        goto out;
    if (c.xs.task == TD_TASK_TEXT_GENERATION) {
        s = convert_decoder(ctx, &c);
        goto out;
    }
    if ((s = run_step(ctx, &c, 3, total, "prepare backends", step_prepare, true)) != TD_OK ||
        (s = run_step(ctx, &c, 4, total, "validate", step_validate, true)) != TD_OK ||
        (!o->no_bench && (s = run_step(ctx, &c, 5, total, "benchmark", step_benchmark, true)) != TD_OK) ||
        (s = run_step(ctx, &c, 6, total, "triton repository", step_triton, true)) != TD_OK ||
        (s = run_step(ctx, &c, 7, total, "copy tokenizer and config", copy_model_files, false)) != TD_OK)
        goto out;
    if ((s = check_interrupt(ctx, &c, "write report")) != TD_OK)
        goto out;
    td_info("[8/8] report and move into place");
    {
        /* a failed validation never replaces OUTDIR: the run goes to OUTDIR.failed */
        char dest[1200];
        snprintf(dest, sizeof dest, "%s%s", c.outdir, res->n_failed_backends ? ".failed" : "");
        const char *kinds[4] = {"onnx", "optimized_onnx", "triton_repository", "report"};
        const char *files[4] = {"model.onnx", "model-optimized.onnx", "triton", "report.json"};
        /* every backend failed: step_triton wrote no triton/ folder to point at */
        const bool no_triton = res->n_failed_backends >= c.o->n_backends;
        for (int i = 0; i < 4 && s == TD_OK; i++) {
            if (no_triton && !strcmp(kinds[i], "triton_repository"))
                continue;
            char p[1400];
            snprintf(p, sizeof p, "%s/%s", dest, files[i]);
            s = td_report_add_artifact(ctx, c.report, kinds[i], p);
        }
        if (s == TD_OK)
            s = add_report_details(ctx, &c);
        char rp[1400];
        snprintf(rp, sizeof rp, "%s/report.json", c.stage);
        if (s == TD_OK)
            s = td_report_write(ctx, c.report, rp);
        if (s == TD_OK)
            s = td_output_write_marker(ctx, c.stage, "convert");
        if (s == TD_OK)
            s = td_output_replace(ctx, c.stage, dest, "convert", c.o->force, res->n_failed_backends ? NULL : "triton");
        if (s == TD_OK && !res->n_failed_backends) {
            /* an OUTDIR.failed of an earlier run no longer describes OUTDIR */
            char failed[1300];
            snprintf(failed, sizeof failed, "%s.failed", c.outdir);
            td_ctx quiet = {0};
            td_output_remove_if_ours(&quiet, failed, "convert");
        }
        if (s == TD_OK) {
            free(c.stage);
            c.stage = NULL; /* moved: nothing to clean up */
            snprintf(res->written_dir, sizeof res->written_dir, "%s", dest);
            snprintf(res->report_path, sizeof res->report_path, "%s/report.json", dest);
            write_summary(&c);
        }
    }
out:
    if (s == TD_ERR_INTERRUPTED && c.outdir)
        td_wrap(ctx, "nothing was written to %s", c.outdir);
    if (c.stage) {
        td_ctx quiet = {0};
        td_remove_tree(&quiet, c.stage);
        free(c.stage);
    }
    for (int i = 0; i < TD_CONVERT_MAX_BACKENDS; i++) {
        td_session_free(c.be[i].session);
    }
    td_session_free(c.ref);
    td_session_free(c.oracle);
    td_report_free(c.report);
    td_tokenizer_free(c.tok);
    td_model_dir_free(c.md);
    free(c.onnx_path);
    free(c.opt_path);
    free(c.outdir);
    return s;
}
