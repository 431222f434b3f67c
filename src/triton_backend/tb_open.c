/* Opening what a model instance runs (tb_open.h). */
#define _GNU_SOURCE
#include "triton_backend/tb_open.h"

#include "core/ctx.h"
#include "core/fs.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static td_status fail(td_status s, char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return s;
}

td_status tb_instance_open(td_ctx *ctx, const tb_config *c, const char *version_dir, bool gpu, tb_opened *out,
                           char *err, size_t n) {
    memset(out, 0, sizeof *out);
    out->backend = gpu ? "cuda" : "cpu";
    const char *file = gpu ? c->engine_file : c->model_file;
    if (snprintf(out->path, sizeof out->path, "%s/%s", version_dir, file) >= (int)sizeof out->path)
        return fail(TD_ERR_INVALID_ARGUMENT, err, n, "the model path %s/%s is too long", version_dir, file);
    if (gpu && c->generate) /* the generation loop (generate/generator.h) binds its KV cache on the CPU runtime */
        return fail(TD_ERR_UNSUPPORTED, err, n,
                    "text generation runs on KIND_CPU instances only (no CUDA generation loop yet): set the "
                    "instance_group kind to KIND_CPU");
    if (!td_is_file(out->path))
        return gpu ? fail(TD_ERR_NOT_FOUND, err, n,
                          "a KIND_GPU instance runs the CUDA engine %s, which is not there: build it on the GPU "
                          "machine with `tdeploy build %s/%s -o %s` (or set parameter engine_file), or run "
                          "%s on KIND_CPU instances",
                          out->path, version_dir, c->model_file, out->path, c->model_file)
                   : fail(TD_ERR_NOT_FOUND, err, n, "%s not found (parameter model_file, default model-optimized.onnx)",
                          out->path);
    if (c->generate) {
        /* the generation API opens the decoder (tokenizer, config and generation_config.json beside it) */
        td_generator_options gopt = {.tokenizer_dir = version_dir, .threads = c->threads, .backend = "cpu",
                                     .precision = c->precision};
        td_status s = td_generator_open(ctx, out->path, &gopt, &out->gen);
        if (s != TD_OK)
            return fail(s, err, n, "cannot load %s: %s", out->path, td_error_message(ctx));
        if (!td_generator_tokenizer(out->gen)) {
            td_generator_free(out->gen);
            out->gen = NULL;
            return fail(TD_ERR_NOT_FOUND, err, n, "text generation needs the model's tokenizer.json in %s",
                        version_dir);
        }
        return TD_OK;
    }
    td_session_options opt;
    td_session_options_init(&opt);
    opt.threads = c->threads;
    opt.precision = c->precision;
    opt.backend = out->backend;
    td_status s = td_session_create_file(ctx, out->path, &opt, &out->s);
    if (s != TD_OK)
        return gpu ? fail(s, err, n, "cannot run %s on the GPU (KIND_GPU instance): %s; on a machine without a usable "
                                     "GPU run %s on KIND_CPU instances",
                          out->path, td_error_message(ctx), c->model_file)
                   : fail(s, err, n, "cannot load %s: %s", out->path, td_error_message(ctx));
    return TD_OK;
}
