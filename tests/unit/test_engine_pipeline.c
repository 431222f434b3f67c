/* `tdeploy run` on engines without a GPU: an engine built (for a described
 * target GPU) from a model directory bundles its tokenizer and config, so the
 * text pipeline opens it as a file or as a `tdeploy convert` folder holding
 * model.engine; on the CPU backend its classification logits match the same
 * model exported in memory (fp32), rows are cut to the engine's longest
 * profile, and without a GPU the default CUDA backend fails with a clear
 * message, never a crash. */
#define _GNU_SOURCE
#include "test.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "deploy/tree.h"
#include "engine/engine_build.h"
#include "pipeline/text_pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const texts[] = {"a short text", "a somewhat longer text with a few more words in it, and more"};
#define N_TEXTS 2

/* Open model with backend, run the texts; logits (N_TEXTS x labels) into out. Returns the label count or -1. */
static int run_texts(td_ctx *ctx, const char *model, const char *backend, float *out, char *desc, size_t dn,
                     int64_t *max_len) {
    td_pipeline_options o;
    td_pipeline_options_init(&o);
    o.model = model;
    o.backend = backend;
    o.threads = 1;
    td_pipeline *p = NULL;
    if (td_pipeline_open(ctx, &o, &p) != TD_OK)
        return -1;
    if (desc)
        snprintf(desc, dn, "%s", td_pipeline_description(p));
    if (max_len)
        *max_len = td_pipeline_max_length(p);
    td_pipe_result r[N_TEXTS];
    int n = -1;
    if (td_pipeline_run(ctx, p, texts, NULL, N_TEXTS, 0, r) == TD_OK) {
        n = (int)r[0].n_labels;
        for (int i = 0; i < N_TEXTS; i++)
            memcpy(out + i * n, r[i].logits, (size_t)n * sizeof(float));
        td_pipe_results_free(r, N_TEXTS);
    }
    td_pipeline_free(p);
    return n;
}

static float max_diff(const float *a, const float *b, int n) {
    float m = 0.0f;
    for (int i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

int main(void) {
    const char *fx = td_test_env("TD_FIXTURES", "tests/fixtures");
    const char *tmp = td_test_env("TD_TMP", "/tmp");
    char model_dir[1024], folder[1024], engine[1200];
    snprintf(model_dir, sizeof model_dir, "%s/hf/bert-seqcls", fx);
    snprintf(folder, sizeof folder, "%s/test_engine_pipeline", tmp);
    snprintf(engine, sizeof engine, "%s/model.engine", folder);
    td_ctx *ctx = td_ctx_new();
    if (td_is_dir(folder))
        td_remove_tree(ctx, folder); /* this test's own folder from an earlier run */
    CHECK(mkdir(folder, 0755) == 0);

    /* an fp32 engine from the model directory (tokenizer and config bundled), one profile up to 4x16 */
    tdc_device_info target = {.name = "Test GPU", .cc_major = 9, .cc_minor = 0, .runtime_version = 13000};
    td_engine_build_options bo = {.input = model_dir, .output = engine, .precision = TD_PRECISION_FP32,
                                  .n_profiles = 1, .target = &target};
    bo.profiles[0] = (td_engine_profile){1, 1, 2, 8, 4, 16, 0, 0};
    td_engine_build_report br;
    CHECK_MSG(td_engine_build(ctx, &bo, &br) == TD_OK, "build: %s", td_error_message(ctx));

    /* reference: the same model exported in memory, fp32, CPU */
    float ref[64], got[64];
    int nl = run_texts(ctx, model_dir, "cpu", ref, NULL, 0, NULL);
    CHECK_MSG(nl == 3, "reference: %d labels: %s", nl, td_error_message(ctx));

    /* the engine file, tokenizer from the engine's bundled files (none beside it), CPU backend */
    char desc[2048] = "";
    int64_t max_len = 0;
    int n = run_texts(ctx, engine, "cpu", got, desc, sizeof desc, &max_len);
    CHECK_MSG(n == nl, "engine file: %d labels: %s", n, td_error_message(ctx));
    if (n == nl && nl > 0) {
        float d = max_diff(ref, got, N_TEXTS * nl);
        CHECK_MSG(d <= 1e-4f, "engine file vs in-memory export: max |diff| %g", (double)d);
    }
    CHECK_MSG(strstr(desc, "engine") && strstr(desc, "bundled"), "description: %s", desc);
    CHECK_MSG(max_len == 16, "rows cut to the profile's 16 tokens, got %lld", (long long)max_len);

    /* the folder (as `tdeploy convert` writes it, here holding only model.engine) */
    memset(got, 0, sizeof got);
    n = run_texts(ctx, folder, "cpu", got, desc, sizeof desc, NULL);
    CHECK_MSG(n == nl, "engine folder: %d labels: %s", n, td_error_message(ctx));
    if (n == nl && nl > 0)
        CHECK(max_diff(ref, got, N_TEXTS * nl) <= 1e-4f);
    CHECK_MSG(strstr(desc, "model.engine"), "description: %s", desc);

    /* the bundled tokenizer was extracted into a temporary folder and removed again: nothing left beside it */
    char beside[1300];
    snprintf(beside, sizeof beside, "%s/tokenizer.json", folder);
    CHECK(!td_is_file(beside));

    /* the default backend of an engine is CUDA: here (no GPU, or another one) a clear error, or it runs */
    td_ctx *x = td_ctx_new();
    n = run_texts(x, engine, NULL, got, NULL, 0, NULL);
    if (n < 0)
        CHECK_MSG(strstr(td_error_message(x), "CUDA") || strstr(td_error_message(x), "GPU"), "%s",
                  td_error_message(x));
    td_ctx_free(x);

    /* a convert folder holding both model.onnx and model.engine (and the tokenizer beside them): the ONNX file
     * by default (CPU), the engine with --device cuda (here: refused without a GPU, naming the engine) */
    static const char *const beside_files[] = {"tokenizer.json", "config.json", "tokenizer_config.json"};
    for (int i = 0; i < 3; i++) {
        char src[1300], dst[1300], *buf = NULL;
        size_t blen = 0;
        snprintf(src, sizeof src, "%s/%s", model_dir, beside_files[i]);
        snprintf(dst, sizeof dst, "%s/%s", folder, beside_files[i]);
        CHECK(td_read_file(ctx, src, 1 << 24, &buf, &blen) == TD_OK && td_write_file_atomic(ctx, dst, buf, blen) == TD_OK);
        free(buf);
    }
    {
        char src[1300], dst[1300], *buf = NULL;
        size_t blen = 0;
        snprintf(src, sizeof src, "%s/onnx/bert-seqcls.torchscript.onnx", fx);
        snprintf(dst, sizeof dst, "%s/model.onnx", folder);
        CHECK(td_read_file(ctx, src, 1 << 26, &buf, &blen) == TD_OK && td_write_file_atomic(ctx, dst, buf, blen) == TD_OK);
        free(buf);
    }
    n = run_texts(ctx, folder, NULL, got, desc, sizeof desc, NULL);
    CHECK_MSG(n == nl && strstr(desc, "model.onnx") && strstr(desc, "ONNX file"), "folder, default: %s / %s", desc,
              n < 0 ? td_error_message(ctx) : "");
    x = td_ctx_new();
    desc[0] = 0;
    n = run_texts(x, folder, "cuda", got, desc, sizeof desc, NULL);
    if (n < 0)
        CHECK_MSG(strstr(td_error_message(x), "model.engine") &&
                  (strstr(td_error_message(x), "CUDA") || strstr(td_error_message(x), "GPU")), "%s",
                  td_error_message(x));
    else
        CHECK_MSG(strstr(desc, "model.engine"), "folder, cuda: %s", desc);
    td_ctx_free(x);

    /* a file that is neither ONNX nor an engine: refused, naming what it takes */
    char junk[1300];
    snprintf(junk, sizeof junk, "%s/notes.txt", folder);
    FILE *f = fopen(junk, "w");
    if (f) {
        fputs("not a model\n", f);
        fclose(f);
    }
    x = td_ctx_new();
    CHECK(run_texts(x, junk, "cpu", got, NULL, 0, NULL) < 0);
    CHECK_MSG(strstr(td_error_message(x), ".engine file"), "%s", td_error_message(x));
    td_ctx_free(x);

    td_remove_tree(ctx, folder);
    td_ctx_free(ctx);
    return td_test_finish("test_engine_pipeline");
}
