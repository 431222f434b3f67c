/* Sessions over files: ONNX models and engines (`tdeploy build`). An engine
 * brings its fused graph with weights already at the engine precision, the
 * GPU it was built for and its shape profiles; its sessions default to the
 * CUDA backend, refuse a GPU of another architecture and inputs outside every
 * profile, each with a message saying what to do. */
#include "engine/engine.h"
#include "onnx/onnx_io.h"
#include "runtime/cuda_loader.h"
#include "runtime/plan.h"
#include "tdeploy/session.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct td_model_file {
    char *path;
    td_model *model;
    td_engine *eng;         /* the loaded engine (mapping, header; its model moved to .model); NULL for ONNX */
    td_engine_info *engine; /* &eng->info, or NULL for ONNX files */
};

void td_model_file_close(td_model_file *f) {
    if (!f)
        return;
    td_model_free(f->model);
    td_engine_free(f->eng);
    free(f->path);
    free(f);
}

const td_model *td_model_file_model(const td_model_file *f) { return f->model; }
const td_engine_info *td_model_file_engine(const td_model_file *f) { return f->engine; }

td_status td_model_file_extract_files(td_ctx *ctx, const td_model_file *f, const char *dir) {
    if (!f->eng)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "%s is not an engine", f->path);
    return td_engine_extract_files(ctx, f->eng, dir);
}

bool td_model_file_is_engine(const td_model_file *f) { return f && f->engine; }

static bool is_engine_file(const char *path) {
    char magic[8];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool yes = read(fd, magic, sizeof magic) == (ssize_t)sizeof magic && td_engine_sniff(magic, sizeof magic);
    close(fd);
    return yes;
}

td_status td_model_file_open(td_ctx *ctx, const char *path, td_model_file **out) {
    *out = NULL;
    td_model_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return td_fail_oom(ctx, 0, "a model file");
    }
    td_status st;
    if (is_engine_file(path)) {
        td_engine *e = NULL;
        st = td_engine_load(ctx, path, &e);
        if (st == TD_OK) {
            f->eng = e;
            f->engine = &e->info;
            f->model = e->model; /* its weights point into e's mapping */
            e->model = NULL;
        }
    } else {
        st = td_onnx_load(ctx, path, &f->model);
    }
    if (st != TD_OK) {
        td_model_file_close(f);
        return st;
    }
    *out = f;
    return TD_OK;
}

/* An engine runs only on the GPU architecture it was built for. */
static td_status check_gpu(td_ctx *ctx, const td_model_file *f) {
    tdc_device_info dev;
    td_status st = td_cuda_device(ctx, &dev);
    if (st != TD_OK) {
        char why[TD_ERROR_MAX];
        snprintf(why, sizeof why, "%s", td_error_message(ctx));
        return td_fail(ctx, st, "%s; to run %s on the CPU instead, pass --backend cpu", why, f->path);
    }
    const td_engine_info *e = f->engine;
    if ((uint32_t)dev.cc_major != e->cc_major || (uint32_t)dev.cc_minor != e->cc_minor)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s was built for %s (compute capability %u.%u), but this GPU is %s (compute capability "
                       "%d.%d): rebuild it on this machine with `tdeploy build MODEL -o %s`", f->path, e->gpu_name,
                       e->cc_major, e->cc_minor, dev.name, dev.cc_major, dev.cc_minor, f->path);
    return TD_OK;
}

td_status td_session_create_shared(td_ctx *ctx, td_model_file *f, const td_session_options *opt, td_session **out) {
    *out = NULL;
    td_session_options o;
    if (opt)
        o = *opt;
    else
        td_session_options_init(&o);
    if (f->engine) {
        if (!o.backend)
            o.backend = "cuda";
        if (strcmp(o.backend, "cuda") == 0)
            TD_TRY(check_gpu(ctx, f));
        o.precision = TD_PRECISION_FP32; /* the weights already have the engine's precision */
    }
    td_status st = td_session_create_model(ctx, f->model, &o, out);
    if (st != TD_OK)
        return td_wrap(ctx, "%s", f->path);
    (*out)->engine = f->engine;
    return TD_OK;
}

td_status td_session_create_file(td_ctx *ctx, const char *path, const td_session_options *opt, td_session **out) {
    td_model_file *f = NULL;
    *out = NULL;
    TD_TRY(td_model_file_open(ctx, path, &f));
    td_status st = td_session_create_shared(ctx, f, opt, out);
    if (st != TD_OK) {
        td_model_file_close(f);
        return st;
    }
    (*out)->owned_file = f;
    return TD_OK;
}

td_status td_session_check_profile(td_ctx *ctx, const td_session *s) {
    /* (batch, sequence) from the first rank-2 input: every encoder input is (batch, sequence) */
    for (int i = 0; i < s->n_inputs; i++) {
        const td_input_binding *b = &s->bound[i];
        if (b->rank != 2)
            continue;
        if (td_engine_profile_for(s->engine, b->shape[0], b->shape[1]) >= 0)
            return TD_OK;
        char buf[1024];
        td_engine_profiles_str(s->engine, buf, sizeof buf);
        return td_fail(ctx, TD_ERR_SHAPE,
                       "input '%s' is %lldx%lld (batch x sequence), outside every shape profile of this engine (%s): "
                       "use a shape inside one, or rebuild with `tdeploy build ... --max BxS`", td_session_input_name(s, i),
                       (long long)b->shape[0], (long long)b->shape[1], buf);
    }
    return TD_OK;
}
