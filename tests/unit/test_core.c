/* Core: status strings, error context, fp16/bf16 conversion, checked arithmetic,
 * atomic files and safe path joins. */
#include "core/large_alloc.h"
#include "core/checked.h"
#include "core/ctx.h"
#include "core/dtype.h"
#include "core/fs.h"
#include "core/tensor.h"
#include "test.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_status(void) {
    for (int s = 0; s < TD_STATUS_COUNT; s++)
        CHECK(strcmp(td_status_string((td_status)s), "unknown status") != 0);
    CHECK(strcmp(td_status_string((td_status)999), "unknown status") == 0);
    td_ctx *ctx = td_ctx_new();
    CHECK(td_fail(ctx, TD_ERR_FORMAT, "bad byte %d", 7) == TD_ERR_FORMAT);
    CHECK(strcmp(td_error_message(ctx), "bad byte 7") == 0);
    CHECK(td_wrap(ctx, "in %s", "x.onnx") == TD_ERR_FORMAT);
    CHECK(strcmp(td_error_message(ctx), "in x.onnx: bad byte 7") == 0);
    td_clear_error(ctx);
    CHECK(td_last_status(ctx) == TD_OK && td_error_message(ctx)[0] == 0);
    td_ctx_free(ctx);
    td_ctx_free(NULL);
}

static void test_half(void) {
    /* every finite half round-trips through float exactly, and the CPU's
     * F16C conversion agrees with ours for each of them */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = td_f16_to_f32((uint16_t)h);
        float ref = _cvtsh_ss((unsigned short)h); /* the CPU's F16C conversion is the reference */
        if (isnan(f)) {
            if (!isnan(ref) || !isnan(td_f16_to_f32(td_f32_to_f16(f))))
                bad++;
            continue;
        }
        if (f != ref || td_f32_to_f16(f) != h)
            bad++;
    }
    CHECK_MSG(bad == 0, "%d half values disagree", bad);
    /* rounding of arbitrary floats against F16C (round to nearest even) */
    uint32_t x = 12345;
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        x = x * 1664525u + 1013904223u;
        float f;
        memcpy(&f, &x, 4);
        if (isnan(f))
            continue;
        uint16_t rb = (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
        if (td_f32_to_f16(f) != rb)
            bad++;
    }
    CHECK_MSG(bad == 0, "%d float->half roundings disagree", bad);
    CHECK(td_bf16_to_f32(td_f32_to_bf16(1.0f)) == 1.0f);
    CHECK(td_f32_to_bf16(1.00390625f) == 0x3f80); /* tie rounds to even */
    CHECK(td_f32_to_bf16(1.01171875f) == 0x3f82);
    CHECK(isnan(td_bf16_to_f32(td_f32_to_bf16(NAN))));
}

static void test_checked(void) {
    size_t s;
    CHECK(!td_mul_size(SIZE_MAX / 2 + 1, 2, &s));
    CHECK(td_mul_size(3, 4, &s) && s == 12);
    int64_t n;
    int64_t dims[3] = {2, 3, 4};
    CHECK(td_shape_numel(dims, 3, &n) && n == 24);
    int64_t neg[2] = {2, -1};
    CHECK(!td_shape_numel(neg, 2, &n));
    int64_t huge[3] = {INT64_MAX / 2, 3, 1};
    CHECK(!td_shape_numel(huge, 3, &n));
    td_tensor_desc d;
    CHECK(td_tensor_desc_init(NULL, &d, TD_F32, 3, dims) == TD_OK);
    CHECK(d.strides[0] == 12 && d.strides[1] == 4 && d.strides[2] == 1 && td_tensor_desc_nbytes(&d) == 96);
    CHECK(td_tensor_desc_is_contiguous(&d));
    int64_t big[2] = {INT64_MAX / 2, 2}; /* fits int64 elements, not bytes */
    CHECK(td_tensor_desc_init(NULL, &d, TD_F32, 2, big) == TD_ERR_OVERFLOW);
}

static void test_fs(void) {
    td_ctx *ctx = td_ctx_new();
    const char *tmp = td_test_env("TD_TMP", "/tmp");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/core_fs_%d", tmp, (int)getpid());
    mkdir(dir, 0755);
    char *p = NULL;
    CHECK(td_path_join(ctx, dir, "a.bin", true, &p) == TD_OK);
    CHECK(td_write_file_atomic(ctx, p, "hello", 5) == TD_OK);
    char *buf = NULL;
    size_t n = 0;
    CHECK(td_read_file(ctx, p, 100, &buf, &n) == TD_OK && n == 5 && memcmp(buf, "hello", 5) == 0);
    free(buf);
    CHECK(td_read_file(ctx, p, 2, &buf, &n) == TD_ERR_FORMAT);
    /* a FIFO (planted where a config or ref file is expected) is refused at once instead of
     * blocking until a writer appears; alarm() turns a hang into a failing test */
    char *fifo = NULL;
    CHECK(td_path_join(ctx, dir, "fifo", true, &fifo) == TD_OK);
    CHECK(mkfifo(fifo, 0600) == 0);
    alarm(20);
    CHECK(td_read_file(ctx, fifo, 100, &buf, &n) == TD_ERR_IO);
    alarm(0);
    CHECK(strstr(td_error_message(ctx), "not a regular file") != NULL);
    unlink(fifo);
    free(fifo);
    /* aborted atomic file leaves nothing behind */
    td_atomic_file af;
    char *q = NULL;
    CHECK(td_path_join(ctx, dir, "b.bin", true, &q) == TD_OK);
    CHECK(td_atomic_open(ctx, &af, q) == TD_OK);
    CHECK(td_atomic_write(ctx, &af, "x", 1) == TD_OK);
    td_atomic_abort(&af);
    CHECK(access(q, F_OK) != 0);
    td_mapped_file *m = NULL;
    CHECK(td_map_file(ctx, p, &m) == TD_OK && m->size == 5 && memcmp(m->data, "hello", 5) == 0);
    td_mapped_file_unref(m);
    CHECK(td_map_file(ctx, q, &m) == TD_ERR_NOT_FOUND);
    char *r = NULL;
    CHECK(td_path_join(ctx, dir, "../etc/passwd", true, &r) == TD_ERR_FORMAT);
    CHECK(td_path_join(ctx, dir, "/etc/passwd", true, &r) == TD_ERR_FORMAT);
    CHECK(td_path_join(ctx, dir, "a/../../b", true, &r) == TD_ERR_FORMAT);
    CHECK(td_path_join(ctx, dir, "a..b/c", true, &r) == TD_OK);
    free(r);
    CHECK(td_write_file_atomic(ctx, "/nonexistent-dir/x", "x", 1) == TD_ERR_IO);
    unlink(p);
    rmdir(dir);
    free(p);
    free(q);
    td_ctx_free(ctx);
}

/* Large buffers: alignment promised by the header, whole size writable (ASan
 * checks the bounds), sizes that would overflow the rounding refused. */
static void test_large_alloc(void) {
    size_t sizes[] = {0, 1, 63, 4096, ((size_t)2 << 20) - 1, (size_t)2 << 20, ((size_t)5 << 20) + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = td_large_alloc(sizes[i]);
        CHECK_MSG(p != NULL, "size %zu", sizes[i]);
        if (!p)
            continue;
        size_t want = sizes[i] >= ((size_t)2 << 20) ? ((size_t)2 << 20) : 64;
        CHECK_MSG((uintptr_t)p % want == 0, "size %zu aligned to %zu", sizes[i], want);
        memset(p, 0xab, sizes[i]);
        CHECK(sizes[i] == 0 || (p[0] == 0xab && p[sizes[i] - 1] == 0xab));
        free(p);
    }
    CHECK(td_large_alloc(SIZE_MAX - 5) == NULL);
}

int main(void) {
    test_status();
    test_large_alloc();
    test_half();
    test_checked();
    test_fs();
    return td_test_finish("test_core");
}
