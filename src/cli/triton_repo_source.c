/* What `tdeploy triton-repo MODEL` serves: MODEL resolved to one ONNX file plus the
 * folder of its tokenizer and HF config files (triton_repo_source.h). */
#define _GNU_SOURCE
#include "cli/triton_repo_source.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/str.h"
#include "deploy/tree.h"
#include "export/export.h"
#include "generate/generator.h"
#include "gguf/gguf.h"
#include "gguf/gguf_tokenizer.h"
#include "hf/model_dir.h"
#include "onnx/ir.h"
#include "onnx/onnx_io.h"
#include "opt/optimize.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A folder next to out_dir (same file system as the repository's temporary folder), for the exported decoder. */
static td_status make_work_dir(td_ctx *ctx, const char *out_dir, char **work) {
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/')
        n--;
    if (asprintf(work, "%.*s.export.XXXXXX", (int)n, out_dir) < 0) {
        *work = NULL;
        return td_fail_oom(ctx, n + 16, "a path");
    }
    if (!mkdtemp(*work)) {
        td_status s = td_fail(ctx, TD_ERR_IO,
                              "cannot create a temporary directory next to %.*s: %s (does its parent exist and is "
                              "it writable?)",
                              (int)n, out_dir, strerror(errno));
        free(*work);
        *work = NULL;
        return s;
    }
    return TD_OK;
}

/* Export (HF directory or GGUF file) -> optimize as convert does for decoders -> work/model-optimized.onnx. */
static td_status export_decoder(td_ctx *ctx, const char *model, const char *work, char **onnx_path) {
    td_export_options eo = {.model_dir = model, .task = TD_TASK_TEXT_GENERATION, .opset = TD_EXPORT_OPSET_DEFAULT,
                            .dtype = TD_F32};
    td_export_summary sum;
    td_model *m = NULL;
    double t0 = td_now_s();
    if (td_export_build(ctx, &eo, &m, &sum) != TD_OK)
        return td_wrap(ctx, "exporting %s as a decoder (triton-repo exports decoders only; an encoder is written by "
                            "`tdeploy convert`, or by triton-repo from its ONNX file or convert output folder)",
                       model);
    td_info("triton-repo: exported %s (%s, %d nodes) in %.2f s", model, sum.architecture, sum.n_nodes,
            td_now_s() - t0);
    /* the graph convert writes as model-optimized.onnx for a decoder (fp32 weights: --precision is the served
     * session's, a parameter of the model) */
    td_opt_options oo;
    td_opt_options_default(&oo);
    oo.target = TD_OPT_TARGET_FUSED;
    oo.keep_io_types = true;
    oo.fold_max_elements = TD_OPT_FOLD_ALL_DECODER;
    td_opt_report rep;
    td_status s = td_optimize(ctx, m, &oo, &rep);
    if (s != TD_OK)
        td_wrap(ctx, "optimizing the exported decoder");
    if (s == TD_OK)
        s = td_path_join(ctx, work, "model-optimized.onnx", false, onnx_path);
    if (s == TD_OK)
        s = td_onnx_save(ctx, m, *onnx_path, NULL);
    td_model_free(m);
    return s;
}

/* A GGUF carries its tokenizer in its metadata: written out as the equivalent tokenizer.json for the backend. */
static td_status write_gguf_tokenizer(td_ctx *ctx, const char *gguf, const char *work) {
    td_gguf *f = NULL;
    char *json = NULL, *path = NULL;
    td_status s = td_gguf_open(ctx, gguf, &f);
    if (s == TD_OK)
        s = td_gguf_tokenizer_json(ctx, f, &json);
    if (s == TD_OK)
        s = td_path_join(ctx, work, "tokenizer.json", false, &path);
    if (s == TD_OK)
        s = td_write_file_atomic(ctx, path, json, strlen(json));
    if (s != TD_OK)
        td_wrap(ctx, "the tokenizer of %s", gguf);
    free(path);
    free(json);
    td_gguf_free(f);
    return s;
}

static td_status dup_into(td_ctx *ctx, const char *s, char **out) {
    if (!(*out = strdup(s)))
        return td_fail_oom(ctx, strlen(s), "a path");
    return TD_OK;
}

td_status td_triton_repo_source_open(td_ctx *ctx, const char *model, const char *out_dir, td_triton_repo_source *src) {
    memset(src, 0, sizeof *src);
    td_status s = TD_OK;
    char *gguf = NULL, *opt = NULL;
    if (td_is_file(model) && td_str_ends_with(model, ".gguf")) {
        if ((s = dup_into(ctx, model, &gguf)) != TD_OK)
            goto fail;
    } else if (td_is_file(model)) {
        /* an ONNX file: served as it is; tokenizer and config files beside it */
        if ((s = dup_into(ctx, model, &src->onnx_path)) != TD_OK)
            goto fail;
        src->files_dir = td_path_dirname(model);
        if (!src->files_dir)
            s = td_fail_oom(ctx, strlen(model), "a path");
        goto done;
    } else if (td_is_dir(model)) {
        /* a convert output folder: its model-optimized.onnx, with the tokenizer and config files convert put
         * beside it */
        if ((s = td_path_join(ctx, model, "model-optimized.onnx", false, &opt)) != TD_OK)
            goto fail;
        if (td_is_file(opt)) {
            src->onnx_path = opt;
            opt = NULL;
            s = dup_into(ctx, model, &src->files_dir);
            goto done;
        }
    }
    if (!gguf)
        gguf = td_generator_find_gguf(model); /* a folder (or cached hub id) holding one .gguf */
    if (!gguf) {
        /* an HF directory or cached hub id: a decoder, exported here */
        td_model_dir *md = NULL;
        if ((s = td_model_dir_open(ctx, model, &md)) != TD_OK) {
            td_wrap(ctx, "%s is not an ONNX or GGUF file, a convert output folder (model-optimized.onnx) or a Hugging "
                         "Face model folder",
                    model);
            goto fail;
        }
        s = dup_into(ctx, md->path, &src->files_dir);
        td_model_dir_free(md);
        if (s != TD_OK)
            goto fail;
    }
    src->exported = true;
    if ((s = make_work_dir(ctx, out_dir, &src->work_dir)) != TD_OK ||
        (s = export_decoder(ctx, gguf ? gguf : src->files_dir, src->work_dir, &src->onnx_path)) != TD_OK)
        goto fail;
    if (gguf) {
        if ((s = write_gguf_tokenizer(ctx, gguf, src->work_dir)) != TD_OK)
            goto fail;
        free(src->files_dir);
        if ((s = dup_into(ctx, src->work_dir, &src->files_dir)) != TD_OK)
            goto fail;
    }
done:
    free(gguf);
    free(opt);
    if (s != TD_OK)
        td_triton_repo_source_close(src);
    return s;
fail:
    free(gguf);
    free(opt);
    td_triton_repo_source_close(src);
    return s;
}

bool td_triton_repo_source_exports(const char *model) {
    if (td_is_file(model))
        return td_str_ends_with(model, ".gguf");
    if (!td_is_dir(model))
        return !td_str_ends_with(model, ".onnx"); /* a cached hub id; a missing .onnx file is reported as missing */
    char p[4096];
    return !(snprintf(p, sizeof p, "%s/model-optimized.onnx", model) < (int)sizeof p && td_is_file(p));
}

void td_triton_repo_source_close(td_triton_repo_source *src) {
    if (src->work_dir) { /* tdeploy made it (mkdtemp) and nothing else refers to it */
        td_ctx quiet = {0};
        td_remove_tree(&quiet, src->work_dir);
    }
    free(src->work_dir);
    free(src->onnx_path);
    free(src->files_dir);
    memset(src, 0, sizeof *src);
}
