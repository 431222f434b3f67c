/* Timing cache file and GEMM choice records (see timing_cache.h; layout in
 * docs/formats.md, "Timing cache"). Parsing treats the bytes as hostile. */
#define _GNU_SOURCE
#include "engine/timing_cache.h"
#include "engine/engine.h"

#include "core/le_bytes.h"
#include "core/fs.h"
#include "core/sha256.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


int64_t td_tcache_bucket(int64_t m) {
    int64_t b = 1;
    while (b < m && b < TD_TCACHE_MAX_DIM)
        b <<= 1;
    return b;
}

void td_tcache_key_of(const tdc_device_info *dev, td_tcache_key *key) {
    memset(key, 0, sizeof *key);
    snprintf(key->tool_version, sizeof key->tool_version, "%s", td_version());
    snprintf(key->gpu_name, sizeof key->gpu_name, "%s", dev->name);
    key->cc_major = (uint32_t)dev->cc_major;
    key->cc_minor = (uint32_t)dev->cc_minor;
    key->driver_version = (uint32_t)dev->driver_version;
    key->cuda_runtime = (uint32_t)dev->runtime_version;
    key->cublaslt_version = (uint32_t)dev->cublaslt_version;
}

bool td_tcache_key_equal(const td_tcache_key *a, const td_tcache_key *b) {
    return !strcmp(a->tool_version, b->tool_version) && !strcmp(a->gpu_name, b->gpu_name) &&
           a->cc_major == b->cc_major && a->cc_minor == b->cc_minor && a->driver_version == b->driver_version &&
           a->cuda_runtime == b->cuda_runtime && a->cublaslt_version == b->cublaslt_version;
}

void td_tcache_entry_encode(const tdc_gemm_choice *e, uint8_t *p) {
    memset(p, 0, TD_TCACHE_ENTRY);
    td_wr_le32(p, (uint32_t)e->dtype);
    td_wr_le32(p + 4, (uint32_t)e->trans_b);
    td_wr_le32(p + 8, (uint32_t)e->epilogue);
    td_wr_le64(p + 16, (uint64_t)e->m);
    td_wr_le64(p + 24, (uint64_t)e->n);
    td_wr_le64(p + 32, (uint64_t)e->k);
    const int32_t cfg[8] = {e->algo_id, e->tile, e->stages, e->splitk, e->reduction, e->swizzle, e->custom,
                            e->cluster};
    for (int i = 0; i < 8; i++)
        td_wr_le32(p + 40 + 4 * i, (uint32_t)cfg[i]);
    uint32_t us;
    memcpy(&us, &e->us, 4);
    td_wr_le32(p + 72, us);
    td_wr_le32(p + 76, (uint32_t)e->inner);
}

void td_tcache_entry_decode(const uint8_t *p, tdc_gemm_choice *e) {
    memset(e, 0, sizeof *e);
    e->dtype = (int32_t)td_rd_le32(p);
    e->trans_b = (int32_t)td_rd_le32(p + 4);
    e->epilogue = (int32_t)td_rd_le32(p + 8);
    e->m = (int64_t)td_rd_le64(p + 16);
    e->n = (int64_t)td_rd_le64(p + 24);
    e->k = (int64_t)td_rd_le64(p + 32);
    int32_t *cfg[8] = {&e->algo_id, &e->tile, &e->stages, &e->splitk, &e->reduction, &e->swizzle, &e->custom,
                       &e->cluster};
    for (int i = 0; i < 8; i++)
        *cfg[i] = (int32_t)td_rd_le32(p + 40 + 4 * i);
    uint32_t us = td_rd_le32(p + 72);
    memcpy(&e->us, &us, 4);
    e->inner = (int32_t)td_rd_le32(p + 76);
}

bool td_tcache_entry_ok(const tdc_gemm_choice *e, char *why, size_t n) {
    const char *bad = NULL;
    if (e->dtype != 1 && e->dtype != 10 && e->dtype != 16)
        bad = "dtype is not fp32, fp16 or bf16";
    else if (e->trans_b != 0 && e->trans_b != 1)
        bad = "transB is not 0 or 1";
    else if (e->epilogue != 0 && e->epilogue != 1)
        bad = "unknown epilogue";
    else if (e->m < 1 || e->n < 1 || e->k < 1 || e->m > TD_TCACHE_MAX_DIM || e->n > TD_TCACHE_MAX_DIM ||
             e->k > TD_TCACHE_MAX_DIM || (e->m & (e->m - 1)))
        bad = "m, n, k outside 1..2^31 or m not a power of two";
    else if (e->algo_id < 0 || e->tile < 0 || e->stages < 0 || e->splitk < 0 || e->reduction < 0 ||
             e->swizzle < 0 || e->custom < 0 || e->cluster < 0 || e->inner < 0 || e->cluster > 0xffff ||
             e->inner > 0xffff)
        bad = "negative algorithm field";
    else if (!isfinite(e->us) || e->us < 0.0f)
        bad = "time is not a finite non-negative number";
    if (bad)
        snprintf(why, n, "%s", bad);
    return !bad;
}

void td_tcache_clear(td_tcache *c) {
    free(c->entries);
    c->entries = NULL;
    c->n = c->cap = 0;
}

td_status td_tcache_parse(td_ctx *ctx, const uint8_t *d, size_t len, const char *what, td_tcache *c) {
    memset(c, 0, sizeof *c);
    if (len < TD_TCACHE_HEADER + 32 || memcmp(d, TD_TCACHE_MAGIC, 8) != 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s is not a tdeploy timing cache (%s)", what,
                       len < 8 || memcmp(d, TD_TCACHE_MAGIC, 8) ? "no TDTCACHE magic" : "shorter than its header");
    uint32_t version = td_rd_le32(d + 8), count = td_rd_le32(d + 12);
    if (version != TD_TCACHE_VERSION)
        return td_fail(ctx, TD_ERR_FORMAT, "%s has timing cache version %u (this tdeploy reads %d)", what, version,
                       TD_TCACHE_VERSION);
    if (count > TD_TCACHE_MAX_ENTRIES || len != TD_TCACHE_HEADER + (size_t)count * TD_TCACHE_ENTRY + 32)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: %u entries do not fit its %zu bytes (truncated or damaged)", what,
                       count, len);
    uint8_t dig[32];
    td_sha256 h;
    td_sha256_init(&h);
    td_sha256_update(&h, d, len - 32);
    td_sha256_final(&h, dig);
    if (memcmp(dig, d + len - 32, 32) != 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s is damaged: its SHA-256 does not match", what);
    if (!td_engine_str_field(d + 16, 16, c->key.tool_version) || !td_engine_str_field(d + 32, 64, c->key.gpu_name))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: tool version or GPU name is not a NUL-terminated string", what);
    c->key.cc_major = td_rd_le32(d + 96);
    c->key.cc_minor = td_rd_le32(d + 100);
    c->key.driver_version = td_rd_le32(d + 104);
    c->key.cuda_runtime = td_rd_le32(d + 108);
    c->key.cublaslt_version = td_rd_le32(d + 112);
    for (int i = 116; i < TD_TCACHE_HEADER; i++)
        if (d[i])
            return td_fail(ctx, TD_ERR_FORMAT, "%s: reserved header byte %d is not zero", what, i);
    if (count && !(c->entries = calloc(count, sizeof *c->entries)))
        return td_fail_oom(ctx, (size_t)count * sizeof *c->entries, "the timing cache");
    c->cap = count;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *p = d + TD_TCACHE_HEADER + (size_t)i * TD_TCACHE_ENTRY;
        tdc_gemm_choice e;
        td_tcache_entry_decode(p, &e);
        char why[96];
        if (td_rd_le32(p + 12) || !td_tcache_entry_ok(&e, why, sizeof why)) {
            if (td_rd_le32(p + 12))
                snprintf(why, sizeof why, "reserved field is not zero");
            td_tcache_clear(c);
            return td_fail(ctx, TD_ERR_FORMAT, "%s: entry %u: %s", what, i, why);
        }
        if (td_tcache_find(c, e.dtype, e.trans_b, e.epilogue, e.m, e.n, e.k)) {
            td_tcache_clear(c);
            return td_fail(ctx, TD_ERR_FORMAT, "%s: entry %u repeats a shape", what, i);
        }
        c->entries[c->n++] = e;
    }
    return TD_OK;
}

td_status td_tcache_serialize(td_ctx *ctx, const td_tcache *c, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (c->n > TD_TCACHE_MAX_ENTRIES)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "timing cache of %u entries (at most %d)", c->n,
                       TD_TCACHE_MAX_ENTRIES);
    size_t n = TD_TCACHE_HEADER + (size_t)c->n * TD_TCACHE_ENTRY + 32;
    uint8_t *d = calloc(1, n);
    if (!d)
        return td_fail_oom(ctx, n, "the timing cache");
    memcpy(d, TD_TCACHE_MAGIC, 8);
    td_wr_le32(d + 8, TD_TCACHE_VERSION);
    td_wr_le32(d + 12, c->n);
    snprintf((char *)d + 16, 16, "%s", c->key.tool_version);
    snprintf((char *)d + 32, 64, "%s", c->key.gpu_name);
    td_wr_le32(d + 96, c->key.cc_major);
    td_wr_le32(d + 100, c->key.cc_minor);
    td_wr_le32(d + 104, c->key.driver_version);
    td_wr_le32(d + 108, c->key.cuda_runtime);
    td_wr_le32(d + 112, c->key.cublaslt_version);
    for (uint32_t i = 0; i < c->n; i++)
        td_tcache_entry_encode(&c->entries[i], d + TD_TCACHE_HEADER + (size_t)i * TD_TCACHE_ENTRY);
    td_sha256 h;
    td_sha256_init(&h);
    td_sha256_update(&h, d, n - 32);
    td_sha256_final(&h, d + n - 32);
    *out = d;
    *len = n;
    return TD_OK;
}

const tdc_gemm_choice *td_tcache_find(const td_tcache *c, int32_t dtype, int32_t trans_b, int32_t epilogue,
                                      int64_t m, int64_t n, int64_t k) {
    for (uint32_t i = 0; i < c->n; i++) {
        const tdc_gemm_choice *e = &c->entries[i];
        if (e->dtype == dtype && e->trans_b == trans_b && e->epilogue == epilogue && e->m == m && e->n == n &&
            e->k == k)
            return e;
    }
    return NULL;
}

td_status td_tcache_put(td_ctx *ctx, td_tcache *c, const tdc_gemm_choice *e) {
    tdc_gemm_choice *old = (tdc_gemm_choice *)td_tcache_find(c, e->dtype, e->trans_b, e->epilogue, e->m, e->n, e->k);
    if (old) {
        *old = *e;
        return TD_OK;
    }
    if (c->n >= TD_TCACHE_MAX_ENTRIES)
        return TD_OK; /* full: the measurement is used for this build but not kept */
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? 2 * c->cap : 64;
        tdc_gemm_choice *p = realloc(c->entries, (size_t)cap * sizeof *p);
        if (!p)
            return td_fail_oom(ctx, (size_t)cap * sizeof *p, "the timing cache");
        c->entries = p;
        c->cap = cap;
    }
    c->entries[c->n++] = *e;
    return TD_OK;
}

char *td_tcache_default_path(void) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *p = NULL;
    int r = -1;
    if (xdg && *xdg == '/')
        r = asprintf(&p, "%s/tdeploy/timing-cache.bin", xdg);
    else if (home && *home)
        r = asprintf(&p, "%s/.cache/tdeploy/timing-cache.bin", home);
    return r < 0 ? NULL : p;
}

td_status td_tcache_load(td_ctx *ctx, const char *path, const td_tcache_key *key, td_tcache *c, char *note,
                         size_t note_n) {
    memset(c, 0, sizeof *c);
    c->key = *key;
    note[0] = 0;
    if (!td_is_file(path))
        return TD_OK; /* first build on this machine */
    char *data = NULL;
    size_t len = 0;
    td_ctx *x = td_ctx_new(); /* a bad cache is a note, not the build's error */
    if (!x)
        return td_fail_oom(ctx, 64, "a context");
    td_status st = td_read_file(x, path, (size_t)TD_TCACHE_HEADER + (size_t)TD_TCACHE_MAX_ENTRIES * TD_TCACHE_ENTRY + 32,
                                &data, &len);
    td_tcache f;
    memset(&f, 0, sizeof f);
    if (st == TD_OK)
        st = td_tcache_parse(x, (const uint8_t *)data, len, path, &f);
    free(data);
    if (st != TD_OK) {
        snprintf(note, note_n, "timing cache not used, GEMMs are re-tuned and the file rewritten: %s",
                 td_error_message(x));
    } else if (!td_tcache_key_equal(&f.key, key)) {
        snprintf(note, note_n,
                 "timing cache %s was measured on %s (compute capability %u.%u, driver %u, CUDA %u, cuBLASLt %u, "
                 "tdeploy %s), not this GPU and software: GEMMs are re-tuned and the file rewritten",
                 path, f.key.gpu_name, f.key.cc_major, f.key.cc_minor, f.key.driver_version, f.key.cuda_runtime,
                 f.key.cublaslt_version, f.key.tool_version);
        td_tcache_clear(&f);
    } else {
        c->entries = f.entries;
        c->n = f.n;
        c->cap = f.cap;
    }
    td_ctx_free(x);
    return TD_OK;
}

/* Create dir and its missing parents (like mkdir -p; nothing existing is touched). */
static td_status make_dirs(td_ctx *ctx, char *dir) {
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int r = td_is_dir(dir) ? 0 : mkdir(dir, 0755);
        int err = errno;
        *p = '/';
        if (r != 0 && err != EEXIST)
            return td_fail(ctx, TD_ERR_IO, "cannot create %.*s for the timing cache: %s", (int)(p - dir), dir,
                           strerror(err));
    }
    if (!td_is_dir(dir) && mkdir(dir, 0755) != 0 && errno != EEXIST)
        return td_fail(ctx, TD_ERR_IO, "cannot create %s for the timing cache: %s", dir, strerror(errno));
    return TD_OK;
}

td_status td_tcache_save(td_ctx *ctx, const char *path, const td_tcache *c) {
    char *dir = td_path_dirname(path);
    if (!dir)
        return td_fail_oom(ctx, 0, "a path");
    td_status dst = *dir ? make_dirs(ctx, dir) : TD_OK;
    free(dir);
    if (dst != TD_OK)
        return dst;
    uint8_t *d = NULL;
    size_t n = 0;
    TD_TRY(td_tcache_serialize(ctx, c, &d, &n));
    td_status st = td_write_file_atomic(ctx, path, d, n);
    free(d);
    return st;
}
