/* td_session_create_file: load an ONNX file and build a session owning it. */
#include "onnx/onnx_io.h"
#include "runtime/plan.h"
#include "tdeploy/session.h"

td_status td_session_create_file(td_ctx *ctx, const char *onnx_path, const td_session_options *opt,
                                 td_session **out) {
    td_model *m = NULL;
    *out = NULL;
    td_status st = td_onnx_load(ctx, onnx_path, &m);
    if (st != TD_OK)
        return st;
    st = td_session_create_model(ctx, m, opt, out);
    if (st != TD_OK) {
        td_model_free(m);
        return td_wrap(ctx, "%s", onnx_path);
    }
    td_session_adopt_model(*out, m);
    return TD_OK;
}
