/* Triton repository writer through its C API with hand-made model descriptions:
 * the config text (escaping, dims, batching), spec validation and the atomic
 * addition of models to an existing repository (other models stay). */
#include "core/ctx.h"
#include "core/fs.h"
#include "deploy/pbtxt.h"
#include "deploy/tree.h"
#include "deploy/triton.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_root[512];

static char *read_text(const char *dir, const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    char *t = NULL;
    size_t n = 0;
    td_ctx *ctx = td_ctx_new();
    if (td_read_file(ctx, path, 1 << 20, &t, &n) != TD_OK)
        t = NULL;
    td_ctx_free(ctx);
    return t;
}

static void test_quoting(void) {
    td_pbtxt b = {0};
    td_pbtxt_quoted(&b, "a\"b\\c\nd\te\x01\xc3\xa9");
    CHECK_MSG(b.data && strcmp(b.data, "\"a\\\"b\\\\c\\nd\\te\\001\\303\\251\"") == 0, "%s", b.data);
    td_pbtxt_free(&b);
    td_pbtxt_printf(&b, "%d-%s", 7, "x");
    CHECK(b.data && strcmp(b.data, "7-x") == 0 && !b.oom);
    td_pbtxt_free(&b);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_repository(void) {
    td_ctx *ctx = td_ctx_new();
    char onnx[600], out[600], tok[600];
    snprintf(onnx, sizeof onnx, "%s/m.onnx", tmp_root);
    snprintf(out, sizeof out, "%s/repo", tmp_root);
    snprintf(tok, sizeof tok, "%s/tok", tmp_root);
    write_file(onnx, "not really onnx: the writer only copies it");
    mkdir(tok, 0755);
    char tj[700];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", tok);
    write_file(tj, "{\"padding\": {\"pad_token\": \"<pad>\"}}");

    td_triton_tensor in[2] = {{.name = "input_ids", .dtype = TD_I32, .dims = {-1, -1}, .ndim = 2},
                              {.name = "attention_mask", .dtype = TD_I32, .dims = {-1, -1}, .ndim = 2}};
    td_triton_tensor outp[2] = {{.name = "emb \"x\"", .dtype = TD_F16, .dims = {-1, 384}, .ndim = 2},
                                {.name = "score", .dtype = TD_F32, .dims = {-1}, .ndim = 1}};
    td_triton_spec sp = {.name = "m", .onnx_path = onnx, .tokenizer_dir = tok, .task = "feature-extraction",
                         .inputs = in, .n_inputs = 2, .outputs = outp, .n_outputs = 2, .batch_min = 1,
                         .batch_opt = 4, .batch_max = 4, .max_queue_delay_us = 250, .nb_instances = 3,
                         .device = TD_TRITON_GPU, .max_length = 128};
    CHECK_MSG(td_triton_write_repository(ctx, &sp, out) == TD_OK, "%s", td_error_message(ctx));
    char *cfg = read_text(out, "m/config.pbtxt");
    CHECK(cfg && strstr(cfg, "max_batch_size: 4\n"));
    CHECK(cfg && strstr(cfg, "preferred_batch_size: [ 4 ]")); /* opt == max: listed once */
    CHECK(cfg && strstr(cfg, "max_queue_delay_microseconds: 250"));
    CHECK(cfg && strstr(cfg, "kind: KIND_GPU") && strstr(cfg, "count: 3"));
    CHECK(cfg && strstr(cfg, "name: \"emb \\\"x\\\"\"\n    data_type: TYPE_FP16\n    dims: [ 384 ]"));
    CHECK(cfg && strstr(cfg, "name: \"score\"\n    data_type: TYPE_FP32\n    dims: [ 1 ]")); /* per-row scalar */
    CHECK(cfg && strstr(cfg, "data_type: TYPE_INT32"));
    free(cfg);
    char *tcfg = read_text(out, "m_tokenize/config.pbtxt");
    CHECK(tcfg && strstr(tcfg, "kind: KIND_CPU")); /* the tokenizer runs on CPU even for a GPU model */
    CHECK(tcfg && strstr(tcfg, "string_value: \"<pad>\"") && strstr(tcfg, "string_value: \"128\""));
    free(tcfg);
    char *py = read_text(out, "m_tokenize/1/model.py");
    CHECK(py && strcmp(py, td_triton_tokenizer_model_py) == 0);
    free(py);
    char *ecfg = read_text(out, "m_inference/config.pbtxt");
    CHECK(ecfg && strstr(ecfg, "platform: \"ensemble\"") && strstr(ecfg, "model_name: \"m_tokenize\""));
    free(ecfg);

    /* another model into the same repository: m and its ensemble stay */
    sp.tokenizer_dir = NULL;
    sp.name = "n";
    CHECK(td_triton_write_repository(ctx, &sp, out) == TD_OK);
    char p[700];
    snprintf(p, sizeof p, "%s/m_inference", out);
    CHECK(td_is_dir(p));
    snprintf(p, sizeof p, "%s/n/1/model.onnx", out);
    CHECK(td_is_file(p));
    /* m again without a tokenizer: its stale tokenizer and ensemble (tdeploy's) go, n stays */
    sp.name = "m";
    CHECK(td_triton_write_repository(ctx, &sp, out) == TD_OK);
    snprintf(p, sizeof p, "%s/m_inference", out);
    CHECK(!td_is_dir(p));
    snprintf(p, sizeof p, "%s/m/1/model.onnx", out);
    CHECK(td_is_file(p));
    snprintf(p, sizeof p, "%s/n/1/model.onnx", out);
    CHECK(td_is_file(p));
    sp.name = "n";

    /* failures leave the repository as it was */
    td_triton_tensor fixed = in[0];
    fixed.dims[0] = 2; /* fixed batch 2 < max 4 */
    sp.inputs = &fixed;
    sp.n_inputs = 1;
    CHECK(td_triton_write_repository(ctx, &sp, out) == TD_ERR_SHAPE);
    CHECK(strstr(td_error_message(ctx), "fixed batch dimension") != NULL);
    sp.inputs = in;
    sp.n_inputs = 2;
    td_triton_tensor str = outp[1];
    str.dtype = TD_STRING;
    sp.outputs = &str;
    sp.n_outputs = 1;
    CHECK(td_triton_write_repository(ctx, &sp, out) == TD_ERR_UNSUPPORTED);
    sp.outputs = outp;
    sp.n_outputs = 2;
    td_triton_tensor pos = {.name = "position_ids", .dtype = TD_I64, .dims = {-1, -1}, .ndim = 2};
    td_triton_tensor with_pos[3] = {in[0], in[1], pos};
    sp.inputs = with_pos;
    sp.n_inputs = 3;
    sp.tokenizer_dir = tok;
    CHECK(td_triton_write_repository(ctx, &sp, out) == TD_ERR_UNSUPPORTED);
    CHECK(strstr(td_error_message(ctx), "position_ids") != NULL);
    sp.inputs = in;
    sp.n_inputs = 2;
    sp.name = "bad/name";
    CHECK(td_triton_write_repository(ctx, &sp, out) == TD_ERR_INVALID_ARGUMENT);
    sp.name = "n";
    sp.batch_opt = 8; /* opt > max */
    CHECK(td_triton_write_repository(ctx, &sp, out) == TD_ERR_INVALID_ARGUMENT);
    snprintf(p, sizeof p, "%s/n/1/model.onnx", out);
    CHECK(td_is_file(p)); /* still the earlier repository */

    /* the target path is a file: refused, file untouched */
    sp.batch_opt = 4;
    char file_target[700];
    snprintf(file_target, sizeof file_target, "%s/plain_file", tmp_root);
    write_file(file_target, "keep me");
    sp.tokenizer_dir = NULL;
    CHECK(td_triton_write_repository(ctx, &sp, file_target) == TD_ERR_INVALID_ARGUMENT);
    char *kept = read_text(tmp_root, "plain_file");
    CHECK(kept && strcmp(kept, "keep me") == 0);
    free(kept);
    td_ctx_free(ctx);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "%s/test_triton_%d", td_test_env("TD_TMP", "/tmp"), (int)getpid());
    td_ctx *ctx = td_ctx_new();
    td_remove_tree(ctx, tmp_root);
    mkdir(tmp_root, 0755);
    test_quoting();
    test_repository();
    td_remove_tree(ctx, tmp_root);
    td_ctx_free(ctx);
    return td_test_finish("test_triton");
}
