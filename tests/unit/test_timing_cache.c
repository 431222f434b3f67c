/* GEMM tuning's timing cache without a GPU: the file round trip; damaged
 * files (every truncation length, flipped bytes, bad counts and fields) are
 * refused with a message, never a crash; and `tdeploy build` with a stand-in
 * measurement (the real one needs cuBLASLt on a GPU): the first build measures
 * every GEMM shape bucket and writes the cache, a rebuild measures nothing and
 * gives the same choices, a cache from another GPU or a damaged cache is a
 * warning and is re-measured and rewritten (never a failed build), and the
 * engine carries the choices in its GEMMS section. */
#define _GNU_SOURCE
#include "test.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "deploy/tree.h"
#include "engine/engine.h"
#include "engine/engine_build.h"
#include "engine/timing_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int measured;

/* Stand-in for cuBLASLt timing: a deterministic configuration per shape. */
static td_status fake_tune(td_ctx *ctx, void *user, tdc_gemm_choice *ch) {
    (void)ctx;
    (void)user;
    measured++;
    ch->algo_id = (int32_t)((ch->n + ch->k) % 31);
    ch->tile = (int32_t)(ch->m % 17);
    ch->stages = 3;
    ch->splitk = 1;
    ch->cluster = 2;
    ch->inner = 1;
    ch->us = (float)ch->m * 0.25f;
    return TD_OK;
}

static const tdc_device_info gpu = {.name = "Test GPU", .cc_major = 9, .cc_minor = 0, .runtime_version = 13000,
                                    .driver_version = 13000, .cublaslt_version = 130000};

static td_status build(td_ctx *ctx, const char *in, const char *out, const char *cache, const tdc_device_info *dev,
                       td_engine_build_report *r) {
    td_engine_build_options o = {.input = in, .output = out, .precision = TD_PRECISION_FP16, .n_profiles = 2,
                                 .target = dev, .timing_cache = cache, .tune = fake_tune};
    o.profiles[0] = (td_engine_profile){1, 1, 2, 8, 4, 16, 0, 0};
    o.profiles[1] = (td_engine_profile){8, 32, 8, 64, 16, 64, 0, 0};
    measured = 0;
    return td_engine_build(ctx, &o, r);
}

static void rehash(uint8_t *d, size_t len) {
    td_sha256 h;
    td_sha256_init(&h);
    td_sha256_update(&h, d, len - 32);
    td_sha256_final(&h, d + len - 32);
}

static void expect_bad(const uint8_t *d, size_t len, const char *want, const char *label) {
    td_ctx *x = td_ctx_new();
    td_tcache c;
    td_status st = td_tcache_parse(x, d, len, "cache", &c);
    CHECK_MSG(st == TD_ERR_FORMAT, "%s: accepted", label);
    if (st == TD_OK)
        td_tcache_clear(&c);
    else if (want)
        CHECK_MSG(strstr(td_error_message(x), want), "%s: %s", label, td_error_message(x));
    td_ctx_free(x);
}

int main(void) {
    const char *fx = td_test_env("TD_FIXTURES", "tests/fixtures");
    const char *tmp = td_test_env("TD_TMP", "/tmp");
    char in[1024], eng[1024], cache[1024];
    snprintf(in, sizeof in, "%s/onnx/bert-seqcls.torchscript.onnx", fx);
    snprintf(eng, sizeof eng, "%s/test_timing_cache.engine", tmp);
    snprintf(cache, sizeof cache, "%s/test_timing_cache.bin", tmp);
    remove(cache);
    td_ctx *ctx = td_ctx_new();

    CHECK(td_tcache_bucket(1) == 1 && td_tcache_bucket(2) == 2 && td_tcache_bucket(3) == 4 &&
          td_tcache_bucket(16384) == 16384 && td_tcache_bucket(16385) == 32768);

    /* round trip */
    td_tcache c;
    memset(&c, 0, sizeof c);
    td_tcache_key_of(&gpu, &c.key);
    for (int i = 0; i < 5; i++) {
        tdc_gemm_choice e = {.dtype = i % 2 ? 10 : 16, .trans_b = i % 2, .epilogue = 1, .m = 1 << i, .n = 96 + i,
                             .k = 32, .algo_id = 20 + i, .tile = 5, .stages = 7, .splitk = 1, .reduction = 0,
                             .swizzle = 1, .custom = 0, .cluster = 3, .inner = 2, .us = 1.5f * (float)i};
        CHECK(td_tcache_put(ctx, &c, &e) == TD_OK);
    }
    uint8_t *d = NULL;
    size_t len = 0;
    CHECK(td_tcache_serialize(ctx, &c, &d, &len) == TD_OK && len == TD_TCACHE_HEADER + 5 * TD_TCACHE_ENTRY + 32);
    td_tcache back;
    CHECK_MSG(d && td_tcache_parse(ctx, d, len, "cache", &back) == TD_OK, "%s", td_error_message(ctx));
    if (d && back.n == 5) {
        CHECK(td_tcache_key_equal(&back.key, &c.key));
        for (int i = 0; i < 5; i++) {
            const tdc_gemm_choice *x = &back.entries[i], *y = &c.entries[i];
            CHECK(x->dtype == y->dtype && x->trans_b == y->trans_b && x->epilogue == y->epilogue && x->m == y->m &&
                  x->n == y->n && x->k == y->k && x->algo_id == y->algo_id && x->tile == y->tile &&
                  x->stages == y->stages && x->splitk == y->splitk && x->reduction == y->reduction &&
                  x->swizzle == y->swizzle && x->custom == y->custom && x->cluster == y->cluster &&
                  x->inner == y->inner && x->us == y->us);
        }
        const tdc_gemm_choice *f = td_tcache_find(&back, 16, 0, 1, 4, 98, 32);
        CHECK(f && f->algo_id == 22 && f->inner == 2 && f->us == 3.0f);
        td_tcache_clear(&back);
    }

    /* damaged files: never a crash, always TD_ERR_FORMAT with a reason */
    if (d) {
        for (size_t cut = 0; cut < len; cut += 7)
            expect_bad(d, cut, NULL, "truncated");
        uint8_t *b = malloc(len);
        for (size_t i = 0; b && i < len; i++) { /* any flipped byte: the checksum (or a field) catches it */
            memcpy(b, d, len);
            b[i] ^= 0x20;
            expect_bad(b, len, NULL, "flipped byte");
        }
        if (b) {
            memcpy(b, d, len);
            b[12] = 6; /* count 6 for 5 records */
            rehash(b, len);
            expect_bad(b, len, "entries do not fit", "wrong count");
            memcpy(b, d, len);
            b[TD_TCACHE_HEADER + 16] = 3; /* entry 0's m = 3, not a power of two */
            rehash(b, len);
            expect_bad(b, len, "power of two", "bad bucket");
            memcpy(b, d, len);
            b[TD_TCACHE_HEADER] = 7; /* dtype 7 (int64) */
            rehash(b, len);
            expect_bad(b, len, "dtype", "bad dtype");
            memcpy(b, d, len);
            memcpy(b + TD_TCACHE_HEADER + TD_TCACHE_ENTRY, b + TD_TCACHE_HEADER, TD_TCACHE_ENTRY);
            rehash(b, len);
            expect_bad(b, len, "repeats", "duplicate shape");
            memcpy(b, d, len);
            memset(b + 32, 'G', 64); /* GPU name without NUL */
            rehash(b, len);
            expect_bad(b, len, "NUL-terminated", "unterminated name");
            memcpy(b, d, len);
            b[8] = 2;
            rehash(b, len);
            expect_bad(b, len, "version 2", "other version");
        }
        free(b);
    }
    free(d);
    td_tcache_clear(&c);

    /* builds with a stand-in measurement */
    td_engine_build_report r;
    td_status st = build(ctx, in, eng, cache, &gpu, &r);
    CHECK_MSG(st == TD_OK, "first build: %s", td_error_message(ctx));
    int buckets = r.gemm_buckets;
    CHECK_MSG(buckets > 4 && r.gemm_measured == buckets && r.gemm_cached == 0 && measured == buckets,
              "first build: %d buckets, %d measured, %d cached", buckets, r.gemm_measured, r.gemm_cached);
    CHECK(td_is_file(cache) && !r.cache_note[0]);
    td_engine *e = NULL;
    CHECK_MSG(td_engine_load(ctx, eng, &e) == TD_OK, "%s", td_error_message(ctx));
    if (e) {
        CHECK_MSG(e->info.n_gemms == (uint32_t)buckets, "engine holds %u GEMM choices", e->info.n_gemms);
        /* bert-seqcls (hidden 32): the QKV projection 32 -> 96 with its bias at M buckets 1..64 (profile 0:
         * 1x1 .. 4x16) and 256..1024 (profile 1: 8x32 .. 16x64) */
        int qkv = 0;
        for (uint32_t i = 0; i < e->info.n_gemms; i++) {
            tdc_gemm_choice g;
            td_tcache_entry_decode(e->info.gemms + (size_t)i * TD_TCACHE_ENTRY, &g);
            qkv += g.n == 96 && g.k == 32 && g.epilogue == 1 && g.dtype == 10;
            CHECK(g.algo_id == (int32_t)((g.n + g.k) % 31) && g.us == (float)g.m * 0.25f);
        }
        CHECK_MSG(qkv == 10, "QKV buckets 1..64 and 256..1024: %d", qkv);
        td_engine_free(e);
    }
    /* rebuild: everything from the cache */
    st = build(ctx, in, eng, cache, &gpu, &r);
    CHECK_MSG(st == TD_OK && r.gemm_buckets == buckets && r.gemm_cached == buckets && r.gemm_measured == 0 &&
              measured == 0, "rebuild: %d measured, %d cached: %s", r.gemm_measured, r.gemm_cached,
              st == TD_OK ? "" : td_error_message(ctx));
    /* another GPU: the cache is stale, re-measured and rewritten for the new key */
    tdc_device_info other = gpu;
    snprintf(other.name, sizeof other.name, "Other GPU");
    other.driver_version = 13010;
    st = build(ctx, in, eng, cache, &other, &r);
    CHECK_MSG(st == TD_OK && r.gemm_measured == buckets && strstr(r.cache_note, "Test GPU"),
              "other GPU: %d measured, note '%s'", r.gemm_measured, r.cache_note);
    char *data = NULL;
    CHECK(td_read_file(ctx, cache, 1 << 24, &data, &len) == TD_OK);
    if (data) {
        td_tcache f;
        CHECK(td_tcache_parse(ctx, (uint8_t *)data, len, cache, &f) == TD_OK);
        CHECK(!strcmp(f.key.gpu_name, "Other GPU") && f.key.driver_version == 13010 && f.n == (uint32_t)buckets);
        td_tcache_clear(&f);
        /* damaged cache: a warning, re-measured, the build succeeds and the file is valid again */
        data[len - 40] ^= 1;
        CHECK(td_write_file_atomic(ctx, cache, data, len) == TD_OK);
        free(data);
        data = NULL;
        st = build(ctx, in, eng, cache, &other, &r);
        CHECK_MSG(st == TD_OK && r.gemm_measured == buckets && strstr(r.cache_note, "SHA-256"),
                  "damaged cache: %d measured, note '%s'", r.gemm_measured, r.cache_note);
        CHECK(td_read_file(ctx, cache, 1 << 24, &data, &len) == TD_OK);
        CHECK(data && td_tcache_parse(ctx, (uint8_t *)data, len, cache, &f) == TD_OK);
        if (data)
            td_tcache_clear(&f);
    }
    free(data);
    /* no cache ("" = none): everything measured, nothing written */
    remove(cache);
    st = build(ctx, in, eng, "", &gpu, &r);
    CHECK(st == TD_OK && r.gemm_measured == buckets && !td_is_file(cache));
    /* missing folders are made (as for ~/.cache/tdeploy on a fresh machine) */
    char deep[1200], deep_root[1100];
    snprintf(deep_root, sizeof deep_root, "%s/test_timing_cache_dirs", tmp);
    snprintf(deep, sizeof deep, "%s/a/b/cache.bin", deep_root);
    td_remove_tree(ctx, deep_root);
    st = build(ctx, in, eng, deep, &gpu, &r);
    CHECK_MSG(st == TD_OK && td_is_file(deep), "cache in new folders: %s", td_error_message(ctx));
    td_remove_tree(ctx, deep_root);
    /* a cache path whose folder cannot be made (a file is in the way): a warning, the engine is still built */
    char badpath[1200];
    snprintf(badpath, sizeof badpath, "%s/cache.bin", eng); /* eng is a file */
    st = build(ctx, in, eng, badpath, &gpu, &r);
    CHECK_MSG(st == TD_OK && r.gemm_measured == buckets, "unwritable cache: %s", td_error_message(ctx));
    /* the default location follows XDG_CACHE_HOME */
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    char *p = td_tcache_default_path();
    CHECK(p && !strcmp(p, "/x/cache/tdeploy/timing-cache.bin"));
    free(p);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    p = td_tcache_default_path();
    CHECK(p && !strcmp(p, "/home/u/.cache/tdeploy/timing-cache.bin"));
    free(p);

    remove(eng);
    remove(cache);
    td_ctx_free(ctx);
    return td_test_finish("test_timing_cache");
}
