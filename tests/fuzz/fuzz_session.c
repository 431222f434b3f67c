/* libFuzzer harness: arbitrary bytes as an ONNX model through the CPU runtime.
 * Whatever loads is turned into a session (op init, dtype checks, prepacking);
 * sessions that build get every input bound with zeros (symbolic or unknown dims
 * set to 1..3 from the input bytes, capped in size) and run twice (plan, then
 * reuse). Any outcome but a crash, a sanitizer report or a hang is fine: errors
 * must come back as statuses. */
#include "onnx/onnx_io.h"
#include "tdeploy/session.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT_BYTES (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = NULL;
    td_session *s = NULL;
    void **bufs = NULL;
    int n_in = 0;
    if (!ctx)
        return 0;
    if (td_onnx_load_buffer(ctx, data, size, NULL, &m) != TD_OK)
        goto out;
    td_session_options opt;
    td_session_options_init(&opt);
    opt.threads = 1;
    if (td_session_create_model(ctx, m, &opt, &s) != TD_OK)
        goto out;
    n_in = td_session_input_count(s);
    bufs = calloc((size_t)n_in + 1, sizeof *bufs);
    if (!bufs)
        goto out;
    for (int i = 0; i < n_in; i++) {
        int32_t dt;
        int rank;
        const int64_t *dims;
        td_session_input_info(s, i, &dt, &rank, &dims, NULL);
        if (rank < 0)
            rank = 1;
        int64_t shape[8];
        uint64_t numel = 1;
        for (int d = 0; d < rank && d < 8; d++) {
            shape[d] = dims && dims[d] >= 0 ? dims[d] : 1 + (int64_t)(size ? data[(size_t)(i + d) % size] % 3 : 0);
            numel *= (uint64_t)shape[d];
            if (numel > MAX_INPUT_BYTES)
                goto out;
        }
        size_t es = dt == 1 || dt == 6 ? 4 : dt == 7 ? 8 : dt == 9 ? 1 : dt == 10 || dt == 16 ? 2 : 0;
        if (!es || numel * es > MAX_INPUT_BYTES)
            goto out;
        bufs[i] = calloc(numel ? numel : 1, es);
        if (!bufs[i] || td_session_set_input(ctx, s, td_session_input_name(s, i), dt, rank, shape, bufs[i],
                                             numel * es) != TD_OK)
            goto out;
    }
    for (int rep = 0; rep < 2; rep++)
        if (td_session_run(ctx, s) != TD_OK)
            break;
out:
    for (int i = 0; bufs && i < n_in; i++)
        free(bufs[i]);
    free(bufs);
    td_session_free(s);
    td_model_free(m);
    td_ctx_free(ctx);
    return 0;
}
