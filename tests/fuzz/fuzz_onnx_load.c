/* libFuzzer harness: arbitrary bytes through td_onnx_load_buffer (which runs
 * td_onnx_check). Inputs that load are saved and loaded again: the second save
 * must reproduce the first byte for byte (load is lossless, save deterministic). */
#include "onnx/onnx_io.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = NULL, *m2 = NULL;
    uint8_t *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    if (!ctx)
        return 0;
    if (td_onnx_load_buffer(ctx, data, size, NULL, &m) != TD_OK)
        goto out;
    if (td_onnx_check(ctx, m) != TD_OK)
        abort(); /* load already checked: a second check must agree */
    if (td_onnx_save_buffer(ctx, m, &a, &alen) != TD_OK)
        goto out;
    if (td_onnx_load_buffer(ctx, a, alen, NULL, &m2) != TD_OK)
        abort(); /* what we wrote must load */
    if (td_onnx_save_buffer(ctx, m2, &b, &blen) != TD_OK || blen != alen || memcmp(a, b, alen) != 0)
        abort();
out:
    free(a);
    free(b);
    td_model_free(m);
    td_model_free(m2);
    td_ctx_free(ctx);
    return 0;
}
