/* libFuzzer harness: arbitrary bytes as an ONNX model, then the whole optimizer
 * (fused fp16 pipeline, which runs every pass). A model that loads must either
 * optimize into a graph that still passes the structural check or fail with a
 * message; never crash, hang or leak. */
#include "onnx/onnx_io.h"
#include "opt/optimize.h"

#include "core/ctx.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_ctx ctx = {0};
    td_model *m = NULL;
    if (td_onnx_load_buffer(&ctx, data, size, NULL, &m) != TD_OK)
        return 0;
    td_opt_options o;
    td_opt_options_default(&o);
    o.precision = TD_OPT_FP16;
    o.fold_max_elements = 4096; /* keep folded tensors small: the fuzzer is looking for crashes, not big outputs */
    ctx.message[0] = '\0';
    td_status s = td_optimize(&ctx, m, &o, NULL);
    if (s != TD_OK && ctx.message[0] == '\0')
        abort();
    if (s == TD_OK && td_onnx_check(&ctx, m) != TD_OK)
        abort(); /* the optimizer broke a valid graph */
    td_model_free(m);
    return 0;
}
