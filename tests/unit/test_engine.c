/* Engine files without a GPU: build (with a described target GPU) from a
 * fixture, load, run the engine's graph on the CPU backend against the same
 * fused graph run directly, profile selection and its rejection message,
 * planned vs naive activation bytes, 256-byte aligned weights, and a corpus of
 * damaged files (truncations, flipped bytes, tampered fields with and without
 * a recomputed checksum, bad section tables, other tool/format versions):
 * each must fail to load with a clear message, never crash. */
#define _GNU_SOURCE
#include "test.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "engine/engine.h"
#include "engine/engine_build.h"
#include "onnx/onnx_io.h"
#include "opt/optimize.h"
#include "tdeploy/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char engine_path[1024], bad_path[1024];

static int64_t ids[2 * 12], mask[2 * 12], types[2 * 12];

static td_status run_logits(td_ctx *ctx, td_session *s, int64_t B, int64_t S, float *out, size_t n) {
    for (int64_t i = 0; i < B * S; i++) {
        ids[i] = 5 + (i * 37) % 900;
        mask[i] = i % S < S - (i / S) * 3 ? 1 : 0;
        types[i] = 0;
    }
    int64_t shape[2] = {B, S};
    size_t nb = (size_t)(B * S) * sizeof(int64_t);
    TD_TRY(td_session_set_input(ctx, s, "input_ids", 7, 2, shape, ids, nb));
    TD_TRY(td_session_set_input(ctx, s, "attention_mask", 7, 2, shape, mask, nb));
    TD_TRY(td_session_set_input(ctx, s, "token_type_ids", 7, 2, shape, types, nb));
    TD_TRY(td_session_run(ctx, s));
    td_session_output o;
    TD_TRY(td_session_get_output(ctx, s, 0, &o));
    if (o.nbytes != n * sizeof(float))
        return td_fail(ctx, TD_ERR_SHAPE, "output has %zu bytes", o.nbytes);
    memcpy(out, o.data, o.nbytes);
    return TD_OK;
}

static void rehash(uint8_t *d, size_t len) {
    td_sha256 h;
    td_sha256_init(&h);
    td_sha256_update(&h, d, 128);
    td_sha256_update(&h, d + 160, len - 160);
    td_sha256_final(&h, d + 128);
}

static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Write len bytes of d as the bad file and expect td_engine_load to fail with a message holding want. */
static void expect_bad(const uint8_t *d, size_t len, const char *want, const char *label) {
    FILE *f = fopen(bad_path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    if (len)
        fwrite(d, 1, len, f);
    fclose(f);
    td_ctx *ctx = td_ctx_new();
    td_engine *e = NULL;
    td_status st = td_engine_load(ctx, bad_path, &e);
    CHECK_MSG(st != TD_OK, "%s: a damaged engine loaded", label);
    const char *msg = td_error_message(ctx);
    CHECK_MSG(!want || strstr(msg, want), "%s: message '%s' lacks '%s'", label, msg, want);
    CHECK_MSG(st == TD_OK || strstr(msg, "rebuild") || strstr(msg, "not a tdeploy engine") || strstr(msg, "empty"),
              "%s: message '%s' does not say what to do", label, msg);
    td_engine_free(e);
    td_ctx_free(ctx);
}

int main(void) {
    const char *fx = td_test_env("TD_FIXTURES", "tests/fixtures");
    const char *tmp = td_test_env("TD_TMP", "/tmp");
    char onnx[1024];
    snprintf(onnx, sizeof onnx, "%s/onnx/bert-seqcls.torchscript.onnx", fx);
    snprintf(engine_path, sizeof engine_path, "%s/test_engine.engine", tmp);
    snprintf(bad_path, sizeof bad_path, "%s/test_engine_bad.engine", tmp);
    td_ctx *ctx = td_ctx_new();

    /* build for a described GPU (no GPU needed) with two profiles */
    tdc_device_info target = {.name = "Test GPU", .cc_major = 9, .cc_minor = 0, .runtime_version = 13000};
    td_engine_build_options o = {.input = onnx, .output = engine_path, .precision = TD_PRECISION_FP16,
                                 .n_profiles = 2, .target = &target};
    o.profiles[0] = (td_engine_profile){1, 1, 1, 8, 2, 12, 0, 0};
    o.profiles[1] = (td_engine_profile){4, 16, 4, 32, 8, 64, 0, 0};
    td_engine_build_report r;
    td_status st = td_engine_build(ctx, &o, &r);
    CHECK_MSG(st == TD_OK, "build: %s", td_error_message(ctx));
    CHECK(r.gpu_nodes > 0 && r.hoisted_nodes > 0 && r.gpu_nodes + r.hoisted_nodes <= r.nodes);
    for (int i = 0; i < 2; i++)
        CHECK_MSG(r.profiles[i].arena_bytes > 0 && r.profiles[i].arena_bytes < r.profiles[i].naive_bytes,
                  "profile %d: planned %llu vs naive %llu", i, (unsigned long long)r.profiles[i].arena_bytes,
                  (unsigned long long)r.profiles[i].naive_bytes);
    CHECK(r.profiles[1].arena_bytes > r.profiles[0].arena_bytes);

    /* load: header fields, kernel table, 256-byte aligned weights */
    td_engine *e = NULL;
    CHECK_MSG(td_engine_load(ctx, engine_path, &e) == TD_OK, "load: %s", td_error_message(ctx));
    if (e) {
        CHECK(strcmp(e->info.gpu_name, "Test GPU") == 0 && e->info.cc_major == 9 && e->info.precision == 1);
        CHECK(e->info.n_profiles == 2 && e->info.profiles[1].max_s == 64);
        const td_engine_section *k = td_engine_find(&e->info, TD_ENGINE_SEC_KERNELS);
        CHECK(k && memmem(e->map->data + k->offset, k->size, "Attention\tcublasLt", 18));
        const td_engine_section *w = td_engine_find(&e->info, TD_ENGINE_SEC_WEIGHTS);
        int big = 0, aligned = 0;
        for (int i = 0; i < e->model->graph->n_values; i++) {
            const td_tensor *t = e->model->graph->values[i]->initializer;
            if (!t || t->nbytes < 256)
                continue;
            big++;
            size_t off = (size_t)((const uint8_t *)t->data - e->map->data);
            aligned += off % 256 == 0 && off >= w->offset && off + t->nbytes <= w->offset + w->size;
        }
        CHECK_MSG(big > 0 && aligned == big, "%d of %d weights 256-byte aligned inside the weights section", aligned, big);
        CHECK(td_engine_profile_for(&e->info, 1, 12) == 0 && td_engine_profile_for(&e->info, 8, 64) == 1);
        CHECK(td_engine_profile_for(&e->info, 3, 12) == -1 && td_engine_profile_for(&e->info, 8, 65) == -1);
        td_engine_free(e);
    }

    /* the engine's graph on the CPU backend == the same fused fp16 graph run directly */
    td_model *m = NULL;
    CHECK(td_onnx_load(ctx, onnx, &m) == TD_OK);
    td_opt_options oo;
    td_opt_options_default(&oo);
    oo.precision = TD_OPT_FP16;
    CHECK(m && td_optimize(ctx, m, &oo, NULL) == TD_OK);
    td_session_options so;
    td_session_options_init(&so);
    so.threads = 1;
    so.backend = "cpu";
    td_session *direct = NULL, *eng = NULL;
    CHECK(td_session_create_model(ctx, m, &so, &direct) == TD_OK);
    td_model_file *mf = NULL;
    CHECK(td_model_file_open(ctx, engine_path, &mf) == TD_OK && td_model_file_is_engine(mf));
    CHECK_MSG(mf && td_session_create_shared(ctx, mf, &so, &eng) == TD_OK, "%s", td_error_message(ctx));
    float a[2 * 3], b[2 * 3];
    if (direct && eng) {
        CHECK_MSG(run_logits(ctx, direct, 2, 12, a, 6) == TD_OK, "%s", td_error_message(ctx));
        CHECK_MSG(run_logits(ctx, eng, 2, 12, b, 6) == TD_OK, "%s", td_error_message(ctx));
        CHECK(memcmp(a, b, sizeof a) == 0);
        /* 3x12 lies in no profile: refused, naming the profiles and what to do */
        st = run_logits(ctx, eng, 3, 8, b, 9);
        CHECK(st == TD_ERR_SHAPE);
        CHECK_MSG(strstr(td_error_message(ctx), "profile 0: min 1x1 opt 1x8 max 2x12") &&
                  strstr(td_error_message(ctx), "tdeploy build"), "%s", td_error_message(ctx));
    }
    td_session_free(eng);
    td_session_free(direct);
    /* the CUDA backend: a GPU with another compute capability, or none, is a clear error, never a crash */
    so.backend = NULL; /* engines default to cuda */
    eng = NULL;
    st = mf ? td_session_create_shared(ctx, mf, &so, &eng) : TD_ERR_INTERNAL;
    if (st != TD_OK)
        CHECK_MSG(strstr(td_error_message(ctx), "CUDA") || strstr(td_error_message(ctx), "GPU") ||
                  strstr(td_error_message(ctx), "rebuild"), "%s", td_error_message(ctx));
    td_session_free(eng);
    td_model_file_close(mf);
    td_model_free(m);

    /* damaged files */
    char *data = NULL;
    size_t len = 0;
    CHECK(td_read_file(ctx, engine_path, (size_t)1 << 30, &data, &len) == TD_OK);
    uint8_t *d = (uint8_t *)data, *c = malloc(len);
    if (d && c) {
        expect_bad(d, 0, NULL, "empty file");
        size_t cuts[] = {4, 100, 255, 256, 300, len / 2, len - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            char label[64];
            snprintf(label, sizeof label, "truncated at %zu", cuts[i]);
            expect_bad(d, cuts[i], NULL, label);
        }
        memcpy(c, d, len);
        c[0] = 'X';
        expect_bad(c, len, "not a tdeploy engine", "bad magic");
        memcpy(c, d, len);
        c[len - 100] ^= 0x40; /* a byte inside the last section */
        expect_bad(c, len, "SHA-256", "flipped payload byte");
        memcpy(c, d, len);
        c[140] ^= 1; /* the checksum itself */
        expect_bad(c, len, "SHA-256", "tampered checksum");
        memcpy(c, d, len);
        wr32(c + 8, 2);
        rehash(c, len);
        expect_bad(c, len, "format version 2", "newer format version");
        memcpy(c, d, len);
        memcpy(c + 16, "9.9.9", 6);
        rehash(c, len);
        expect_bad(c, len, "built by tdeploy 9.9.9", "other tool version");
        memcpy(c, d, len);
        memset(c + 32, 'A', 64); /* GPU name without its NUL */
        rehash(c, len);
        expect_bad(c, len, "NUL-terminated", "unterminated GPU name");
        memcpy(c, d, len);
        wr32(c + 112, 0x7fffffff); /* profile count */
        rehash(c, len);
        expect_bad(c, len, "profiles", "huge profile count");
        memcpy(c, d, len);
        wr32(c + 256 + 16, 0); /* profile 0 max_b = 0 < opt */
        rehash(c, len);
        expect_bad(c, len, "profile 0", "inverted profile");
        /* section table: first section's offset past the end, misaligned, overlapping, unknown kind */
        uint32_t np = 2, sec0 = 256 + np * 48;
        memcpy(c, d, len);
        wr32(c + sec0 + 8, 0xfffffff0u);
        wr32(c + sec0 + 12, 0xffffffffu);
        rehash(c, len);
        expect_bad(c, len, "section 0", "section offset overflow");
        memcpy(c, d, len);
        wr32(c + sec0 + 8, (uint32_t)(d[sec0 + 8] | d[sec0 + 9] << 8 | d[sec0 + 10] << 16) + 8);
        rehash(c, len);
        expect_bad(c, len, "misaligned", "misaligned section");
        memcpy(c, d, len);
        memcpy(c + sec0 + 32 + 8, c + sec0 + 8, 8); /* section 1 at section 0's offset */
        rehash(c, len);
        expect_bad(c, len, "overlap", "overlapping sections");
        memcpy(c, d, len);
        wr32(c + sec0, 77);
        rehash(c, len);
        expect_bad(c, len, "unknown kind", "unknown section kind");
        /* plan bytes damaged but checksummed: the ONNX parser must refuse them */
        memcpy(c, d, len);
        uint64_t plan_off = (uint64_t)c[sec0 + 8] | (uint64_t)c[sec0 + 9] << 8 | (uint64_t)c[sec0 + 10] << 16;
        memset(c + plan_off, 0xff, 64);
        rehash(c, len);
        expect_bad(c, len, "plan", "garbage plan");
        /* weights section shrunk (checksummed): external data now lies outside it */
        memcpy(c, d, len);
        wr32(c + sec0 + 32 + 16, 16);
        wr32(c + sec0 + 32 + 20, 0);
        rehash(c, len);
        expect_bad(c, len, "outside", "weights section too small");
        /* single-byte flips across the header and tables, checksum recomputed: fail cleanly or load */
        for (size_t i = 8; i < sec0 + 4 * 32; i += 3) {
            if (i >= 128 && i < 160)
                continue;
            memcpy(c, d, len);
            c[i] ^= 0x5a;
            rehash(c, len);
            FILE *f = fopen(bad_path, "wb");
            if (!f)
                break;
            fwrite(c, 1, len, f);
            fclose(f);
            td_ctx *x = td_ctx_new();
            td_engine *be = NULL;
            if (td_engine_load(x, bad_path, &be) != TD_OK)
                CHECK_MSG(strstr(td_error_message(x), "rebuild") || strstr(td_error_message(x), "plan"),
                          "byte %zu: %s", i, td_error_message(x));
            td_engine_free(be);
            td_ctx_free(x);
        }
    }
    free(c);
    free(data);
    remove(bad_path);
    td_ctx_free(ctx);
    return td_test_finish("test_engine");
}
