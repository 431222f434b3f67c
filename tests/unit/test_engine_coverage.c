/* CUDA op coverage of `tdeploy build`, checked without a GPU: every graph the
 * optimizer makes of the encoder fixtures (PyTorch .torchscript and
 * .torchscript-sdpa ONNX, tdeploy's own export of each model directory, at
 * fp32 and fp16) has a CUDA kernel for every node the GPU would run, so each
 * builds for a described target GPU. A graph with an op that has none fails
 * naming the node and op, and does so before the GPU is asked for: on this
 * machine (no GPU) a covered graph gets the "no GPU" message only after the
 * check, and no file is left behind. */
#define _GNU_SOURCE
#include "test.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "engine/engine_build.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const encoders[] = {"bert-base", "bert-qa", "bert-seqcls", "bert-tokcls", "distilbert-seqcls",
                                       "electra-base", "roberta-seqcls", "xlmr-base", NULL};
static const char *const model_dirs[] = {"bert-base", "bert-seqcls", "distilbert-seqcls", "minilm-st", "xlmr-base",
                                         NULL};

static td_status build(td_ctx *ctx, const char *input, const char *out, td_precision prec, bool described) {
    static const tdc_device_info target = {.name = "Test GPU", .cc_major = 9, .cc_minor = 0, .runtime_version = 13000};
    td_engine_build_options o = {.input = input, .output = out, .precision = prec, .n_profiles = 1,
                                 .target = described ? &target : NULL};
    o.profiles[0] = (td_engine_profile){1, 1, 2, 8, 2, 16, 0, 0};
    td_engine_build_report r;
    return td_engine_build(ctx, &o, &r);
}

int main(void) {
    const char *fx = td_test_env("TD_FIXTURES", "tests/fixtures");
    const char *tmp = td_test_env("TD_TMP", "/tmp");
    char in[1024], out[1024];
    snprintf(out, sizeof out, "%s/test_engine_coverage.engine", tmp);
    td_ctx *ctx = td_ctx_new();

    for (int i = 0; encoders[i]; i++)
        for (int v = 0; v < 2; v++) {
            snprintf(in, sizeof in, "%s/onnx/%s.%s.onnx", fx, encoders[i], v ? "torchscript-sdpa" : "torchscript");
            td_status st = build(ctx, in, out, TD_PRECISION_FP32, true);
            CHECK_MSG(st == TD_OK, "%s: %s", in, td_error_message(ctx));
        }
    for (int i = 0; model_dirs[i]; i++)
        for (int p = 0; p < 2; p++) {
            snprintf(in, sizeof in, "%s/hf/%s", fx, model_dirs[i]);
            td_status st = build(ctx, in, out, p ? TD_PRECISION_FP16 : TD_PRECISION_FP32, true);
            CHECK_MSG(st == TD_OK, "%s (%s): %s", in, p ? "fp16" : "fp32", td_error_message(ctx));
        }
    remove(out);

    /* an op without a CUDA kernel (the decoder's IsNaN): named, with or without a GPU to build for */
    snprintf(in, sizeof in, "%s/onnx/gpt2-lm.torchscript-sdpa.onnx", fx);
    for (int described = 0; described < 2; described++) {
        td_status st = build(ctx, in, out, TD_PRECISION_FP32, described);
        CHECK(st == TD_ERR_UNSUPPORTED);
        CHECK_MSG(strstr(td_error_message(ctx), "IsNaN") && strstr(td_error_message(ctx), "no CUDA kernel"), "%s",
                  td_error_message(ctx));
        CHECK(access(out, F_OK) != 0);
    }

    /* a covered graph and no target: without a GPU the error comes after the check and says so */
    snprintf(in, sizeof in, "%s/onnx/bert-seqcls.torchscript.onnx", fx);
    td_status st = build(ctx, in, out, TD_PRECISION_FP16, false);
    if (st != TD_OK) {
        CHECK_MSG(strstr(td_error_message(ctx), "every op of") && strstr(td_error_message(ctx), "has a CUDA kernel") &&
                  strstr(td_error_message(ctx), "on the machine with the GPU"), "%s", td_error_message(ctx));
        CHECK(access(out, F_OK) != 0);
    }
    remove(out);
    td_ctx_free(ctx);
    return td_test_finish("test_engine_coverage");
}
