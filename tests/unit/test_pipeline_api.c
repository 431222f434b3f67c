/* The public pipeline API (include/tdeploy/pipeline.h) on the fixtures: export,
 * optimize and convert through the library, their errors for missing or bad
 * request fields, and that the files they write are what the CLI would write
 * (loadable ONNX, fused ops after optimize, a report after convert). */
#include "test.h"

#include "tdeploy/pipeline.h"
#include "tdeploy/session.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int file_nonempty(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

static int count_substr(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    static char buf[1 << 22];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int c = 0;
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(buf + i, needle, k))
            c++;
    return c;
}

int main(void) {
    const char *fx = td_test_env("TD_FIXTURES", "../tests/fixtures");
    const char *tmp = td_test_env("TD_TMP", "/tmp");
    char model[4096], onnx[4096], opt[4096], outdir[4096], report[4200];
    snprintf(model, sizeof model, "%s/hf/bert-seqcls", fx);
    snprintf(onnx, sizeof onnx, "%s/api_seqcls.onnx", tmp);
    snprintf(opt, sizeof opt, "%s/api_seqcls-opt.onnx", tmp);
    snprintf(outdir, sizeof outdir, "%s/api_convert_out_%d", tmp, (int)getpid());
    unlink(onnx);
    unlink(opt);
    td_ctx *ctx = td_ctx_new();

    /* export: missing fields and bad values are clear errors */
    td_export_request ex;
    td_export_request_init(&ex);
    CHECK(td_export_model(ctx, &ex, NULL) == TD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(td_error_message(ctx), "model_dir") != NULL);
    ex.model_dir = model;
    ex.output = onnx;
    ex.task = "no-such-task";
    CHECK(td_export_model(ctx, &ex, NULL) == TD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(td_error_message(ctx), "no-such-task") != NULL);
    ex.task = NULL;
    ex.opset = 3;
    CHECK(td_export_model(ctx, &ex, NULL) == TD_ERR_INVALID_ARGUMENT);
    CHECK(!file_nonempty(onnx));
    ex.opset = 0;
    td_export_info info;
    td_status s = td_export_model(ctx, &ex, &info);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    CHECK(file_nonempty(onnx));
    CHECK(!strcmp(info.model_type, "bert"));
    CHECK(info.num_labels > 1 && info.layers > 0 && info.hidden > 0);

    /* optimize: fused ops appear; the result runs */
    td_optimize_request op;
    td_optimize_request_init(&op);
    CHECK(op.keep_io_types && op.precision == TD_PRECISION_FP32);
    CHECK(td_optimize_model(ctx, &op, NULL) == TD_ERR_INVALID_ARGUMENT);
    op.input = onnx;
    op.output = opt;
    td_optimize_info oi;
    s = td_optimize_model(ctx, &op, &oi);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    CHECK(oi.nodes_after > 0 && oi.nodes_after < oi.nodes_before);
    CHECK(count_substr(opt, "SkipLayerNormalization") > 0);
    td_session *sess = NULL;
    s = td_session_create_file(ctx, opt, NULL, &sess);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    td_session_free(sess);
    /* int8: quantized weight products in the graph; a session asked for "int8" is told why not */
    op.precision = TD_PRECISION_INT8;
    s = td_optimize_model(ctx, &op, &oi);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    CHECK(count_substr(opt, "DynamicQuantizeMatMul") > 0);
    sess = NULL;
    s = td_session_create_file(ctx, opt, NULL, &sess);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    td_session_free(sess);
    td_session_options so8;
    td_session_options_init(&so8);
    so8.precision = TD_PRECISION_INT8;
    sess = NULL;
    CHECK(td_session_create_file(ctx, opt, &so8, &sess) == TD_ERR_INVALID_ARGUMENT && !sess);
    CHECK(strstr(td_error_message(ctx), "graph property") != NULL);
    op.precision = TD_PRECISION_FP32;
    /* a missing input file is an error, and no output is written */
    op.input = "/nonexistent/model.onnx";
    op.output = onnx; /* must stay as it was */
    struct stat before, after;
    stat(onnx, &before);
    CHECK(td_optimize_model(ctx, &op, NULL) != TD_OK);
    stat(onnx, &after);
    CHECK(before.st_size == after.st_size && before.st_mtime == after.st_mtime);

    /* convert: the whole pipeline through the library */
    td_convert_request cv;
    td_convert_request_init(&cv);
    CHECK(cv.atol < 0 && cv.rtol < 0);
    CHECK(td_convert_model(ctx, &cv, NULL) == TD_ERR_INVALID_ARGUMENT);
    cv.model = model;
    cv.output_dir = outdir;
    cv.backends = ",";
    CHECK(td_convert_model(ctx, &cv, NULL) == TD_ERR_INVALID_ARGUMENT);
    cv.backends = "cpu";
    cv.nb_measures = 3;
    cv.threads = 1;
    cv.seq_len[0] = 1, cv.seq_len[1] = 8, cv.seq_len[2] = 16;
    td_convert_info ci;
    s = td_convert_model(ctx, &cv, &ci);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    CHECK(ci.n_failed_backends == 0);
    snprintf(report, sizeof report, "%s/report.json", outdir);
    CHECK(file_nonempty(report));
    CHECK(strstr(ci.report_path, "report.json") != NULL);
    /* a folder tdeploy did not create is refused unless force is set */
    char userdir[4096], userfile[4200];
    snprintf(userdir, sizeof userdir, "%s/api_user_folder_%d", tmp, (int)getpid()); /* fresh per run */
    snprintf(userfile, sizeof userfile, "%s/mine.txt", userdir);
    mkdir(userdir, 0755);
    FILE *uf = fopen(userfile, "w");
    if (uf) {
        fputs("user data", uf);
        fclose(uf);
    }
    cv.output_dir = userdir;
    cv.no_bench = true;
    CHECK(td_convert_model(ctx, &cv, NULL) != TD_OK);
    CHECK(file_nonempty(userfile));
    cv.force = true;
    s = td_convert_model(ctx, &cv, &ci);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    CHECK(!file_nonempty(userfile));

    td_ctx_free(ctx);
    return td_test_finish("test_pipeline_api");
}
