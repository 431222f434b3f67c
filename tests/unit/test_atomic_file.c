/* Atomic output files (src/core/atomic_file.c): multi-buffer writes come back
 * byte for byte, bytes from a registered source mapping are read from its file,
 * a source truncated after mapping is a clean error (not SIGBUS), a write error
 * in the writer thread reaches the caller, and no failure leaves a file behind. */
#define _GNU_SOURCE
#include "core/ctx.h"
#include "core/fs.h"
#include "test.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)

static char g_dir[512];

static void path_in_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

/* Files in g_dir whose name holds ".tmp." (left-over temp files). */
static int temp_files(void) {
    DIR *d = opendir(g_dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

static uint8_t *pattern(size_t n, uint32_t seed) {
    uint8_t *p = malloc(n);
    for (size_t i = 0; p && i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
    return p;
}

static bool file_equals(const char *path, const uint8_t *want, size_t n) {
    td_ctx *ctx = td_ctx_new();
    char *got = NULL;
    size_t len = 0;
    bool ok = td_read_file(ctx, path, n + 1, &got, &len) == TD_OK && len == n && memcmp(got, want, n) == 0;
    free(got);
    td_ctx_free(ctx);
    return ok;
}

static bool write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(p, 1, n, f) == n;
    return f && fclose(f) == 0 && ok;
}

/* Uneven pieces across several staging buffers (one byte, odd sizes, a piece
 * larger than a buffer) and an unaligned tail. */
static void test_large_write(void) {
    td_ctx *ctx = td_ctx_new();
    size_t n = 9 * MIB + 12345;
    uint8_t *data = pattern(n, 1);
    char path[600];
    path_in_dir(path, sizeof path, "large.bin");
    td_atomic_file af;
    CHECK(td_atomic_open(ctx, &af, path) == TD_OK);
    size_t pieces[] = {1, 7, 1000003, 5 * MIB, 4096, 13};
    size_t pos = 0;
    for (int i = 0; pos < n; i = (i + 1) % 6) {
        size_t k = pieces[i] < n - pos ? pieces[i] : n - pos;
        CHECK(td_atomic_write(ctx, &af, data + pos, k) == TD_OK);
        pos += k;
    }
    CHECK(access(path, F_OK) != 0); /* nothing at the final path before commit */
    CHECK_MSG(td_atomic_commit(ctx, &af) == TD_OK, "%s", td_error_message(ctx));
    CHECK(file_equals(path, data, n));
    CHECK(temp_files() == 0);
    /* exactly one buffer, and an empty file */
    CHECK(td_write_file_atomic(ctx, path, data, 4 * MIB) == TD_OK && file_equals(path, data, 4 * MIB));
    CHECK(td_write_file_atomic(ctx, path, data, 0) == TD_OK && file_equals(path, data, 0));
    unlink(path);
    free(data);
    td_ctx_free(ctx);
}

/* Fraction of path's pages in the page cache. */
static double resident_fraction(const char *path) {
    td_ctx *ctx = td_ctx_new();
    td_mapped_file *m = NULL;
    double f = -1;
    if (td_map_file(ctx, path, &m) == TD_OK && m->size) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = (m->size + page - 1) / page, in = 0;
        unsigned char *vec = malloc(pages);
        if (vec && mincore((void *)m->data, m->size, vec) == 0) {
            for (size_t i = 0; i < pages; i++)
                in += vec[i] & 1;
            f = (double)in / (double)pages;
        }
        free(vec);
    }
    td_mapped_file_unref(m);
    td_ctx_free(ctx);
    return f;
}

/* keep_cached: same bytes, and the pages stay in the page cache for a reader
 * (O_DIRECT would leave them on disk only; not asserted, as file systems
 * without O_DIRECT cache them anyway). */
static void test_keep_cached(void) {
    td_ctx *ctx = td_ctx_new();
    size_t n = 9 * MIB + 77;
    uint8_t *data = pattern(n, 5);
    char path[600];
    path_in_dir(path, sizeof path, "cached.bin");
    td_atomic_file af;
    CHECK(td_atomic_open(ctx, &af, path) == TD_OK);
    td_atomic_keep_cached(&af);
    CHECK(td_atomic_write(ctx, &af, data, n) == TD_OK);
    CHECK(td_atomic_commit(ctx, &af) == TD_OK);
    double f = resident_fraction(path); /* before reading it back, which would cache it */
    CHECK_MSG(f > 0.99, "%.3f of the pages are cached", f);
    CHECK(file_equals(path, data, n));
    unlink(path);
    free(data);
    td_ctx_free(ctx);
}

/* Header bytes from memory, then slices of a mapped source, then more memory. */
static void test_source(void) {
    td_ctx *ctx = td_ctx_new();
    size_t n = 10 * MIB + 333;
    uint8_t *src = pattern(n, 2);
    char spath[600], path[600];
    path_in_dir(spath, sizeof spath, "source.bin");
    path_in_dir(path, sizeof path, "from_source.bin");
    CHECK(write_file(spath, src, n));
    td_mapped_file *m = NULL;
    CHECK(td_map_file(ctx, spath, &m) == TD_OK && m->size == n);
    size_t out_n = 5 + (n - 100) + 3 + 1000;
    uint8_t *want = malloc(out_n);
    memcpy(want, "head:", 5);
    memcpy(want + 5, src + 100, n - 100);
    memcpy(want + 5 + n - 100, "mid", 3);
    memcpy(want + 8 + n - 100, src + 17, 1000);
    td_atomic_file af;
    CHECK(td_atomic_open(ctx, &af, path) == TD_OK);
    CHECK(td_atomic_add_source(ctx, &af, m) == TD_OK);
    CHECK(td_atomic_add_source(ctx, &af, m) == TD_OK); /* twice is harmless */
    CHECK(td_atomic_write(ctx, &af, "head:", 5) == TD_OK);
    CHECK(td_atomic_write(ctx, &af, m->data + 100, n - 100) == TD_OK);
    CHECK(td_atomic_write(ctx, &af, "mid", 3) == TD_OK);
    CHECK(td_atomic_write(ctx, &af, m->data + 17, 1000) == TD_OK);
    CHECK_MSG(td_atomic_commit(ctx, &af) == TD_OK, "%s", td_error_message(ctx));
    CHECK(file_equals(path, want, out_n));

    /* the source path now names another file: the bytes come from the mapping */
    uint8_t *other = pattern(n, 3);
    char opath[600];
    path_in_dir(opath, sizeof opath, "other.bin");
    CHECK(write_file(opath, other, n) && rename(opath, spath) == 0);
    CHECK(td_atomic_open(ctx, &af, path) == TD_OK);
    CHECK(td_atomic_add_source(ctx, &af, m) == TD_OK);
    CHECK(td_atomic_write(ctx, &af, m->data, n) == TD_OK);
    CHECK(td_atomic_commit(ctx, &af) == TD_OK);
    CHECK(file_equals(path, src, n));
    td_mapped_file_unref(m);

    /* the source shrinks after it was mapped: an error naming it, no output, no
     * temp file, and the mapping's missing pages are never touched (SIGBUS) */
    CHECK(td_map_file(ctx, spath, &m) == TD_OK);
    CHECK(truncate(spath, (off_t)(6 * MIB)) == 0);
    unlink(path);
    CHECK(td_atomic_open(ctx, &af, path) == TD_OK);
    CHECK(td_atomic_add_source(ctx, &af, m) == TD_OK);
    td_status s = td_atomic_write(ctx, &af, m->data, n);
    CHECK(s == TD_ERR_IO);
    CHECK_MSG(strstr(td_error_message(ctx), spath) && strstr(td_error_message(ctx), "truncated"), "%s",
              td_error_message(ctx));
    CHECK(td_atomic_write(ctx, &af, "x", 1) == TD_ERR_IO); /* sticky */
    CHECK(td_atomic_commit(ctx, &af) == TD_ERR_IO);        /* refuses, cleans up */
    CHECK(access(path, F_OK) != 0);
    CHECK(temp_files() == 0);
    td_mapped_file_unref(m);

    /* anonymous memory posing as a mapping is ignored (no file to read) */
    td_mapped_file anon = {.path = "<memory>", .data = src, .size = n, .refcount = 1};
    CHECK(td_atomic_open(ctx, &af, path) == TD_OK);
    CHECK(td_atomic_add_source(ctx, &af, &anon) == TD_OK);
    CHECK(td_atomic_write(ctx, &af, src, n) == TD_OK);
    CHECK(td_atomic_commit(ctx, &af) == TD_OK && anon.refcount == 1);
    CHECK(file_equals(path, src, n));

    unlink(path);
    unlink(spath);
    free(src);
    free(other);
    free(want);
    td_ctx_free(ctx);
}

/* A write error in the writer thread (file size limit: EFBIG) reaches the
 * caller; abort in the middle of a multi-buffer file leaves nothing. */
static void test_errors(void) {
    td_ctx *ctx = td_ctx_new();
    size_t n = 24 * MIB;
    uint8_t *data = pattern(n, 4);
    char path[600];
    path_in_dir(path, sizeof path, "limited.bin");
    struct rlimit old;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    struct rlimit lim = {.rlim_cur = 6 * MIB, .rlim_max = old.rlim_max};
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    td_atomic_file af;
    CHECK(td_atomic_open(ctx, &af, path) == TD_OK);
    td_status s = TD_OK;
    for (size_t pos = 0; pos < n && s == TD_OK; pos += MIB)
        s = td_atomic_write(ctx, &af, data + pos, MIB);
    if (s == TD_OK)
        s = td_atomic_commit(ctx, &af);
    else
        td_atomic_abort(&af);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, old_handler);
    CHECK_MSG(s == TD_ERR_IO && strstr(td_error_message(ctx), path), "%d %s", (int)s, td_error_message(ctx));
    CHECK(access(path, F_OK) != 0);
    CHECK(temp_files() == 0);

    CHECK(td_atomic_open(ctx, &af, path) == TD_OK);
    CHECK(td_atomic_write(ctx, &af, data, 13 * MIB) == TD_OK);
    td_atomic_abort(&af);
    td_atomic_abort(&af); /* twice is harmless */
    CHECK(access(path, F_OK) != 0);
    CHECK(temp_files() == 0);
    free(data);
    td_ctx_free(ctx);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s/atomic_file_%d", td_test_env("TD_TMP", "/tmp"), (int)getpid());
    mkdir(g_dir, 0755);
    test_large_write();
    test_keep_cached();
    test_source();
    test_errors();
    rmdir(g_dir);
    return td_test_finish("atomic_file");
}
