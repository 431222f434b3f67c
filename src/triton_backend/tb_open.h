/* What a model instance runs, opened without Triton (the unit test drives it):
 * KIND_CPU instances the version folder's model_file (model-optimized.onnx) on the
 * CPU runtime, KIND_GPU instances its engine_file (model.engine, `tdeploy build`)
 * through the same session API on backend "cuda"; a text-generation model a
 * td_generator on the CPU. Every refusal names the file, the instance kind and what
 * to do: a GPU instance of a generation model, a missing engine, a machine whose
 * CUDA runtime cannot start (the session's message: no GPU, no driver). */
#ifndef TD_TRITON_BACKEND_OPEN_H
#define TD_TRITON_BACKEND_OPEN_H

#include "generate/generator.h"
#include "tdeploy/session.h"
#include "triton_backend/tb_config.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct tb_opened {
    td_session *s;     /* encoder models */
    td_generator *gen; /* text generation */
    char path[4400];   /* the file opened (or refused) */
    const char *backend; /* "cpu" | "cuda" */
} tb_opened;

/* TD_OK with *out filled, else the status (TD_ERR_UNSUPPORTED: the kind cannot run this model; TD_ERR_NOT_FOUND:
 * the file is missing; others: the file or the device failed) and the message in err. ctx is the instance's. */
td_status tb_instance_open(td_ctx *ctx, const tb_config *c, const char *version_dir, bool gpu, tb_opened *out,
                           char *err, size_t n);

#endif
