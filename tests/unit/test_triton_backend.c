/* The Triton backend's pure parts (no server needed): BYTES tensor parsing on
 * hostile buffers, packing requests of different lengths into one batch and
 * cutting outputs back, the model-config parser's checks, and opening what a
 * KIND_CPU / KIND_GPU instance runs (the server refuses KIND_GPU itself where it sees
 * no GPU, so the backend's GPU path is driven here). The whole backend runs
 * against the real tritonserver in tests/triton/. */
#include "test.h"
#include "triton_backend/tb_bytes.h"
#include "triton_backend/tb_config.h"
#include "triton_backend/tb_open.h"
#include "core/ctx.h"
#include "core/fs.h"
#include "deploy/tree.h"
#include "triton_backend/tb_pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static size_t put(char *buf, size_t at, const char *s, uint32_t len) {
    buf[at] = (char)(len & 0xff), buf[at + 1] = (char)(len >> 8 & 0xff);
    buf[at + 2] = (char)(len >> 16 & 0xff), buf[at + 3] = (char)(len >> 24);
    memcpy(buf + at + 4, s, strlen(s));
    return at + 4 + strlen(s);
}

static void test_bytes(void) {
    char buf[64], err[128];
    size_t n = put(buf, 0, "hello", 5);
    n = put(buf, n, "", 0);
    n = put(buf, n, "\xff", 1);
    tb_strings s;
    CHECK(tb_strings_parse(buf, n, 3, &s, err, sizeof err));
    CHECK(s.n == 3 && s.len[0] == 5 && memcmp(s.ptr[0], "hello", 5) == 0 && s.len[1] == 0 && s.len[2] == 1);
    tb_strings_free(&s);
    CHECK(!tb_strings_parse(buf, n, 2, &s, err, sizeof err) && strstr(err, "after the last")); /* trailing bytes */
    CHECK(!tb_strings_parse(buf, n, 4, &s, err, sizeof err));                               /* too few */
    CHECK(!tb_strings_parse(buf, n - 1, 3, &s, err, sizeof err) && strstr(err, "element 2"));  /* cut short */
    size_t m = put(buf, 0, "ab", 0xfffffff0u); /* a length far past the end */
    CHECK(!tb_strings_parse(buf, m, 1, &s, err, sizeof err) && strstr(err, "claims"));
    CHECK(!tb_strings_parse(buf, 3, 1, &s, err, sizeof err)); /* not even a length prefix */
    CHECK(!tb_strings_parse(buf, 8, (size_t)1 << 62, &s, err, sizeof err)); /* absurd count */
    CHECK(tb_strings_parse(buf, 0, 0, &s, err, sizeof err) && s.n == 0);
    tb_strings_free(&s);
}

static void test_pack_scatter(void) {
    /* request 0: 2 rows of 3 tokens; request 1: bad (not used); request 2: 1 row of 5 tokens */
    tb_rows r[3];
    CHECK(tb_rows_alloc(&r[0], 2, 3, 9) && tb_rows_alloc(&r[1], 1, 1, 9) && tb_rows_alloc(&r[2], 1, 5, 9));
    for (int k = 0; k < 6; k++)
        r[0].ids[k] = 10 + k, r[0].mask[k] = 1, r[0].types[k] = k % 2;
    for (int k = 0; k < 5; k++)
        r[2].ids[k] = 20 + k, r[2].mask[k] = 1;
    bool use[3] = {true, false, true};
    size_t row0[3] = {0, 0, 0};
    tb_packed p;
    CHECK(tb_pack(r, use, 3, 9, &p, row0));
    CHECK(p.rows == 3 && p.seq == 5 && row0[0] == 0 && row0[2] == 2);
    /* row 1 = request 0's second row, right-padded with the pad id and mask 0 */
    const int64_t want_ids[5] = {13, 14, 15, 9, 9}, want_mask[5] = {1, 1, 1, 0, 0};
    CHECK(memcmp(p.ids + 5, want_ids, sizeof want_ids) == 0 && memcmp(p.mask + 5, want_mask, sizeof want_mask) == 0);
    CHECK(p.types[5] == 1 && p.types[8] == 0 && p.ids[10] == 20 && p.ids[14] == 24);
    /* per-token output (3, 5, 2): request 0 gets (2, 3, 2) */
    float out[30], got[12];
    for (int k = 0; k < 30; k++)
        out[k] = (float)k;
    tb_scatter_f32(out, 5, 2, true, row0[0], 2, 3, got);
    const float want_tok[12] = {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15};
    CHECK(memcmp(got, want_tok, sizeof want_tok) == 0);
    /* per-row output (3, 4): request 2 gets row 2 */
    tb_scatter_f32(out, 5, 4, false, row0[2], 1, 5, got);
    CHECK(got[0] == 8 && got[3] == 11);
    tb_packed_free(&p);
    for (int i = 0; i < 3; i++)
        tb_rows_free(&r[i]);
    tb_rows big;
    CHECK(!tb_rows_alloc(&big, (size_t)1 << 40, (size_t)1 << 40, 0)); /* overflow refused, nothing allocated */
}

static void test_config(void) {
    char err[512];
    tb_config c;
    const char *good =
        "{\"max_batch_size\": 8, \"input\": [{\"name\": \"input_ids\"}, {\"name\": \"attention_mask\"},"
        " {\"name\": \"TEXT\"}], \"output\": [{\"name\": \"last_hidden_state\", \"data_type\": \"TYPE_FP32\","
        " \"dims\": [\"-1\", \"32\"]}, {\"name\": \"sentence_embedding\", \"data_type\": \"TYPE_FP32\", \"dims\": [48]}],"
        " \"parameters\": {\"threads\": {\"string_value\": \"2\"}, \"precision\": {\"string_value\": \"bf16\"},"
        " \"max_length\": {\"string_value\": \"128\"}, \"truncation\": {\"string_value\": \"reject\"}}}";
    CHECK_MSG(tb_config_parse(good, strlen(good), &c, err, sizeof err), "%s", err);
    CHECK(c.max_batch_size == 8 && c.threads == 2 && c.precision == TD_PRECISION_BF16 && c.max_length == 128 &&
          c.reject_too_long && c.has_ids && c.has_mask && c.has_text && !c.has_types);
    CHECK(c.n_outputs == 2 && c.outputs[0].per_token && !c.outputs[1].per_token);
    CHECK(strcmp(c.model_file, "model-optimized.onnx") == 0 && strcmp(c.engine_file, "model.engine") == 0);
    struct {
        const char *json, *want;
    } bad[] = {
        {"[1]", "not a JSON object"},
        {"{\"max_batch_size\": 0, \"input\": [{\"name\": \"input_ids\"}], \"output\": [{\"name\": \"o\", "
         "\"data_type\": \"TYPE_FP32\"}]}", "max_batch_size is 0"},
        {"{\"max_batch_size\": 4, \"input\": [{\"name\": \"pixels\"}]}", "\"pixels\""},
        {"{\"max_batch_size\": 4, \"input\": [{\"name\": \"TEXT_PAIR\"}]}", "neither"},
        {"{\"max_batch_size\": 4, \"input\": [{\"name\": \"input_ids\"}], \"output\": [{\"name\": \"o\", "
         "\"data_type\": \"TYPE_FP16\"}]}", "TYPE_FP32"},
        {"{\"max_batch_size\": 4, \"input\": [{\"name\": \"input_ids\"}], \"output\": [{\"name\": \"o\", "
         "\"data_type\": \"TYPE_FP32\"}], \"parameters\": {\"threads\": {\"string_value\": \"-3\"}}}", "threads"},
        {"{\"max_batch_size\": 4, \"input\": [{\"name\": \"input_ids\"}], \"output\": [{\"name\": \"o\", "
         "\"data_type\": \"TYPE_FP32\"}], \"parameters\": {\"model_file\": {\"string_value\": \"../x.onnx\"}}}",
         "model_file"},
        {"{\"max_batch_size\": 4, \"input\": [{\"name\": \"input_ids\"}], \"output\": []}", "no outputs"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        bool ok = tb_config_parse(bad[i].json, strlen(bad[i].json), &c, err, sizeof err);
        CHECK_MSG(!ok && strstr(err, bad[i].want), "case %zu: %s", i, err);
    }
}

/* task text-generation: decoupled, unbatched, TEXT in, TEXT_OUTPUT (+ FINISH_REASON) out */
static void test_generation_config(void) {
    char err[512];
    tb_config c;
#define GEN_TASK "\"parameters\": {\"task\": {\"string_value\": \"text-generation\"}"
#define GEN_OUT "\"output\": [{\"name\": \"TEXT_OUTPUT\", \"data_type\": \"TYPE_STRING\"}]"
    const char *good = "{\"max_batch_size\": 0, \"model_transaction_policy\": {\"decoupled\": true}, \"input\": "
                       "[{\"name\": \"TEXT\"}, {\"name\": \"seed\"}], \"output\": [{\"name\": \"TEXT_OUTPUT\", "
                       "\"data_type\": \"TYPE_STRING\"}, {\"name\": \"FINISH_REASON\", "
                       "\"data_type\": \"TYPE_STRING\"}], "
                       GEN_TASK ", \"max_new_tokens\": {\"string_value\": \"12\"}}}";
    CHECK_MSG(tb_config_parse(good, strlen(good), &c, err, sizeof err), "%s", err);
    CHECK(c.generate && c.has_text && c.max_new_tokens == 12 && c.n_outputs == 2);
    struct {
        const char *json, *want;
    } bad[] = {
        {"{\"max_batch_size\": 0, \"input\": [{\"name\": \"TEXT\"}], " GEN_OUT ", " GEN_TASK "}}", "decoupled"},
        {"{\"max_batch_size\": 4, \"model_transaction_policy\": {\"decoupled\": true}, \"input\": [{\"name\": "
         "\"TEXT\"}], " GEN_OUT ", " GEN_TASK "}}", "max_batch_size: 0"},
        {"{\"model_transaction_policy\": {\"decoupled\": true}, \"input\": [{\"name\": \"input_ids\"}], " GEN_OUT
         ", " GEN_TASK "}}", "\"input_ids\""},
        {"{\"model_transaction_policy\": {\"decoupled\": true}, \"input\": [{\"name\": \"seed\"}], " GEN_OUT
         ", " GEN_TASK "}}", "needs a TEXT input"},
        {"{\"model_transaction_policy\": {\"decoupled\": true}, \"input\": [{\"name\": \"TEXT\"}], \"output\": "
         "[{\"name\": \"logits\", \"data_type\": \"TYPE_FP32\"}], " GEN_TASK "}}", "\"logits\""},
        {"{\"model_transaction_policy\": {\"decoupled\": true}, \"input\": [{\"name\": \"TEXT\"}], \"output\": "
         "[{\"name\": \"TEXT_OUTPUT\", \"data_type\": \"TYPE_FP32\"}], " GEN_TASK "}}", "TYPE_STRING"},
        {"{\"model_transaction_policy\": {\"decoupled\": true}, \"input\": [{\"name\": \"TEXT\"}], " GEN_OUT ", "
         GEN_TASK ", \"max_new_tokens\": {\"string_value\": \"0\"}}}", "max_new_tokens"},
    };
#undef GEN_TASK
#undef GEN_OUT
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        bool ok = tb_config_parse(bad[i].json, strlen(bad[i].json), &c, err, sizeof err);
        CHECK_MSG(!ok && strstr(err, bad[i].want), "generation case %zu: %s", i, err);
    }
}

/* KIND_CPU opens model-optimized.onnx; KIND_GPU opens model.engine on backend "cuda" and every way it cannot is a
 * clear refusal: the engine missing (names `tdeploy build` and KIND_CPU), a generation model (KIND_CPU only), and a
 * machine whose CUDA runtime cannot start (the session's reason + KIND_CPU), never a crash. */
static void test_instance_open(void) {
    char dir[4096], src[4096], dst[4200], err[2048];
    snprintf(dir, sizeof dir, "%s/test_triton_backend_open", td_test_env("TD_TMP", "/tmp"));
    snprintf(src, sizeof src, "%s/onnx/bert-base.torchscript.onnx", td_test_env("TD_FIXTURES", "tests/fixtures"));
    snprintf(dst, sizeof dst, "%s/model-optimized.onnx", dir);
    td_ctx *ctx = td_ctx_new();
    td_remove_tree(ctx, dir);
    CHECK(mkdir(dir, 0755) == 0 && td_copy_file(ctx, src, dst) == TD_OK);
    tb_config c;
    const char *enc = "{\"max_batch_size\": 8, \"input\": [{\"name\": \"input_ids\"}], \"output\": [{\"name\": "
                      "\"last_hidden_state\", \"data_type\": \"TYPE_FP32\", \"dims\": [\"-1\", \"32\"]}], "
                      "\"parameters\": {\"threads\": {\"string_value\": \"1\"}}}";
    CHECK_MSG(tb_config_parse(enc, strlen(enc), &c, err, sizeof err), "%s", err);
    tb_opened op;
    td_status s = tb_instance_open(ctx, &c, dir, false, &op, err, sizeof err);
    CHECK_MSG(s == TD_OK && op.s && !op.gen && strcmp(op.backend, "cpu") == 0, "KIND_CPU: %s", err);
    td_session_free(op.s);

    s = tb_instance_open(ctx, &c, dir, true, &op, err, sizeof err); /* no model.engine */
    CHECK_MSG(s == TD_ERR_NOT_FOUND && !op.s && strstr(err, "model.engine") && strstr(err, "tdeploy build") &&
                  strstr(err, "KIND_CPU"),
              "KIND_GPU without an engine: %s", err);

    /* the GPU path itself: here the session is asked for backend "cuda" (engine_file pointed at the ONNX file, which
     * the cuda backend also runs); without a usable CUDA runtime it refuses with the reason, else it runs */
    snprintf(c.engine_file, sizeof c.engine_file, "model-optimized.onnx");
    s = tb_instance_open(ctx, &c, dir, true, &op, err, sizeof err);
    CHECK_MSG(s == TD_OK ? op.s != NULL && strcmp(op.backend, "cuda") == 0
                         : !op.s && strstr(err, "KIND_GPU") && strstr(err, "CUDA") && strstr(err, "KIND_CPU"),
              "KIND_GPU on backend cuda: status %d: %s", (int)s, err);
    if (s == TD_OK)
        fprintf(stderr, "note: the CUDA backend started here, so the no-GPU refusal was not exercised\n");
    else
        fprintf(stderr, "note: KIND_GPU without a usable GPU: %s\n", err);
    td_session_free(op.s);

    const char *gen = "{\"max_batch_size\": 0, \"model_transaction_policy\": {\"decoupled\": true}, \"input\": "
                      "[{\"name\": \"TEXT\"}], \"output\": [{\"name\": \"TEXT_OUTPUT\", \"data_type\": "
                      "\"TYPE_STRING\"}], \"parameters\": {\"task\": {\"string_value\": \"text-generation\"}}}";
    CHECK_MSG(tb_config_parse(gen, strlen(gen), &c, err, sizeof err), "%s", err);
    s = tb_instance_open(ctx, &c, dir, true, &op, err, sizeof err);
    CHECK_MSG(s == TD_ERR_UNSUPPORTED && !op.gen && strstr(err, "KIND_CPU"), "generation on KIND_GPU: %s", err);
    td_remove_tree(ctx, dir);
    td_ctx_free(ctx);
}

int main(void) {
    test_bytes();
    test_instance_open();
    test_generation_config();
    test_pack_scatter();
    test_config();
    return td_test_finish("test_triton_backend");
}
