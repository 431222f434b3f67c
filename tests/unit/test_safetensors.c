/* safetensors reader and writer: the shared fixtures, a writer round trip, and one
 * hand-built bad file per rule of the format. */
#include "hf/safetensors.h"

#include "core/ctx.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static td_ctx *ctx;
static char fixtures[1024];
static char tmpdir[1024];

/* Expected facts per fixture, listed with the pip safetensors library
 * (safe_open(...).keys(), get_slice(k).get_shape()/get_dtype(), in its key order). */
struct fixture_fact {
    const char *file;
    size_t count;
    const char *first; /* first name in sorted order */
    int rank;
    int64_t dims[2];
    td_dtype dtype;
};

static const struct fixture_fact facts[] = {
    {"bert-base/model.safetensors", 39, "embeddings.LayerNorm.bias", 1, {32}, TD_F32},
    {"bert-qa/model.safetensors", 39, "bert.embeddings.LayerNorm.bias", 1, {32}, TD_F32},
    {"bert-seqcls/model.safetensors", 41, "bert.embeddings.LayerNorm.bias", 1, {32}, TD_F32},
    {"bert-tokcls/model.safetensors", 39, "bert.embeddings.LayerNorm.bias", 1, {32}, TD_F32},
    {"distilbert-seqcls/model.safetensors", 40, "classifier.bias", 1, {2}, TD_F32},
    {"electra-base/model.safetensors", 39, "embeddings.LayerNorm.bias", 1, {16}, TD_F32},
    {"gpt2-lm/model.safetensors", 28, "transformer.h.0.attn.c_attn.bias", 1, {96}, TD_F32},
    {"llama-lm/model.safetensors", 21, "lm_head.weight", 2, {1000, 64}, TD_F32},
    {"minilm-st/model.safetensors", 55, "embeddings.LayerNorm.bias", 1, {48}, TD_F32},
    {"roberta-seqcls/model.safetensors", 41, "classifier.dense.bias", 1, {32}, TD_F32},
    {"xlmr-base/model.safetensors", 37, "embeddings.LayerNorm.bias", 1, {32}, TD_F32},
    {"bert-base/golden.safetensors", 5, "input.attention_mask", 2, {3, 24}, TD_I64},
    {"gpt2-lm/golden.safetensors", 3, "input.attention_mask", 2, {2, 27}, TD_I64},
};

static void test_fixtures(void) {
    for (size_t f = 0; f < sizeof facts / sizeof facts[0]; f++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/hf/%s", fixtures, facts[f].file);
        td_safetensors *st = NULL;
        td_status s = td_st_open(ctx, path, &st);
        CHECK_MSG(s == TD_OK, "%s: %s", path, td_error_message(ctx));
        if (s != TD_OK)
            continue;
        CHECK_MSG(td_st_count(st) == facts[f].count, "%s: %zu tensors", path, td_st_count(st));
        const td_st_tensor *t = td_st_find(st, facts[f].first);
        CHECK_MSG(t != NULL, "%s: %s missing", path, facts[f].first);
        if (t) {
            CHECK(t->rank == facts[f].rank);
            for (int d = 0; d < t->rank && d < 2; d++)
                CHECK(t->dims[d] == facts[f].dims[d]);
            CHECK(t->dtype == facts[f].dtype);
            CHECK(t->nbytes == (size_t)t->numel * td_dtype_size(t->dtype));
        }
        /* File order: ascending, contiguous offsets; every tensor findable by name. */
        uint64_t sum = 0;
        for (size_t i = 0; i < td_st_count(st); i++) {
            const td_st_tensor *ti = td_st_tensor_at(st, i);
            CHECK(td_st_find(st, ti->name) == ti);
            if (i > 0) {
                const td_st_tensor *prev = td_st_tensor_at(st, i - 1);
                CHECK(ti->file_offset == prev->file_offset + prev->nbytes);
            }
            sum += ti->nbytes;
        }
        CHECK(sum == td_st_data_bytes(st));
        CHECK(td_st_find(st, "no.such.tensor") == NULL);
        if (strstr(facts[f].file, "model.safetensors"))
            CHECK(td_st_metadata_get(st, "format") && strcmp(td_st_metadata_get(st, "format"), "pt") == 0);
        td_st_close(st);
    }
    /* golden inputs: attention masks are 0/1 int64 with at least one padding zero. */
    char path[2048];
    snprintf(path, sizeof path, "%s/hf/bert-base/golden.safetensors", fixtures);
    td_safetensors *st = NULL;
    if (td_st_open(ctx, path, &st) == TD_OK) {
        const td_st_tensor *m = td_st_find(st, "input.attention_mask");
        int zeros = 0, bad = 0;
        for (int64_t i = 0; m && i < m->numel; i++) {
            int64_t v;
            memcpy(&v, (const uint8_t *)m->data + i * 8, 8);
            zeros += v == 0;
            bad += v != 0 && v != 1;
        }
        CHECK(m && zeros > 0 && bad == 0);
    }
    td_st_close(st);
}

static void test_roundtrip(void) {
    char path[2048];
    snprintf(path, sizeof path, "%s/st_roundtrip.safetensors", tmpdir);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3c00, 0x4000, 0xc000};
    int64_t c = 42;
    int64_t da[2] = {2, 3}, db[1] = {3}, dz[2] = {0, 5};
    td_st_write_tensor ts[] = {
        {"w \"quoted\"\\name", TD_F32, 2, da, a},
        {"half", TD_F16, 1, db, b},
        {"scalar", TD_I64, 0, NULL, &c},
        {"empty", TD_BF16, 2, dz, NULL},
    };
    const char *keys[] = {"format", "note"}, *vals[] = {"pt", "line\nbreak \xc3\xa9"};
    td_status s = td_st_write(ctx, path, ts, 4, keys, vals, 2);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    td_safetensors *st = NULL;
    s = td_st_open(ctx, path, &st);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    if (s != TD_OK)
        return;
    CHECK(td_st_count(st) == 4);
    const td_st_tensor *t = td_st_find(st, "w \"quoted\"\\name");
    CHECK(t && t->dtype == TD_F32 && t->rank == 2 && t->dims[0] == 2 && t->dims[1] == 3 && t->nbytes == 24 &&
          memcmp(t->data, a, 24) == 0);
    t = td_st_find(st, "half");
    CHECK(t && t->dtype == TD_F16 && t->nbytes == 6 && memcmp(t->data, b, 6) == 0);
    t = td_st_find(st, "scalar");
    CHECK(t && t->rank == 0 && t->numel == 1 && t->nbytes == 8 && memcmp(t->data, &c, 8) == 0);
    t = td_st_find(st, "empty");
    CHECK(t && t->nbytes == 0 && t->numel == 0);
    CHECK(strcmp(td_st_tensor_at(st, 0)->name, "w \"quoted\"\\name") == 0); /* writer keeps caller order */
    CHECK(td_st_metadata_get(st, "note") && strcmp(td_st_metadata_get(st, "note"), vals[1]) == 0);
    CHECK(td_st_metadata_count(st) == 2);
    /* header padded to 8 bytes: first tensor's data starts 8-aligned */
    CHECK(td_st_tensor_at(st, 0)->file_offset % 8 == 0);
    td_st_close(st);

    /* writer refuses bad input and leaves no file */
    snprintf(path, sizeof path, "%s/st_bad_write.safetensors", tmpdir);
    td_st_write_tensor dup[] = {{"x", TD_F32, 1, db, a}, {"x", TD_F32, 1, db, a}};
    CHECK(td_st_write(ctx, path, dup, 2, NULL, NULL, 0) == TD_ERR_INVALID_ARGUMENT);
    td_st_write_tensor str[] = {{"x", TD_STRING, 1, db, a}};
    CHECK(td_st_write(ctx, path, str, 1, NULL, NULL, 0) == TD_ERR_UNSUPPORTED);
    int64_t neg[1] = {-1};
    td_st_write_tensor ng[] = {{"x", TD_F32, 1, neg, a}};
    CHECK(td_st_write(ctx, path, ng, 1, NULL, NULL, 0) == TD_ERR_INVALID_ARGUMENT);
    td_st_write_tensor meta[] = {{"__metadata__", TD_F32, 1, db, a}};
    CHECK(td_st_write(ctx, path, meta, 1, NULL, NULL, 0) == TD_ERR_INVALID_ARGUMENT);
    CHECK(!td_is_file(path));
}

/* Build a file image: 8-byte length + header + data_len bytes of data. */
static uint8_t *image(const char *header, size_t data_len, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_len;
    uint8_t *buf = calloc(1, *size);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    return buf;
}

static void expect_bad(const char *what, const char *header, size_t data_len, td_status want, const char *needle) {
    size_t size;
    uint8_t *buf = image(header, data_len, &size);
    td_safetensors *st = NULL;
    td_clear_error(ctx);
    td_status s = td_st_open_memory(ctx, buf, size, "bad.safetensors", &st);
    CHECK_MSG(s == want, "%s: got %s (%s)", what, td_status_string(s), td_error_message(ctx));
    CHECK_MSG(st == NULL, "%s: handle returned", what);
    CHECK_MSG(strstr(td_error_message(ctx), "bad.safetensors") != NULL, "%s: message lacks file: %s", what,
              td_error_message(ctx));
    if (needle)
        CHECK_MSG(strstr(td_error_message(ctx), needle) != NULL, "%s: message lacks '%s': %s", what, needle,
                  td_error_message(ctx));
    td_st_close(st);
    free(buf);
}

static void expect_good(const char *what, const char *header, size_t data_len, size_t count) {
    size_t size;
    uint8_t *buf = image(header, data_len, &size);
    td_safetensors *st = NULL;
    td_status s = td_st_open_memory(ctx, buf, size, "good.safetensors", &st);
    CHECK_MSG(s == TD_OK, "%s: %s", what, td_error_message(ctx));
    if (st)
        CHECK_MSG(td_st_count(st) == count, "%s: count %zu", what, td_st_count(st));
    td_st_close(st);
    free(buf);
}

static void test_bad_files(void) {
    const char *T = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_good("baseline", T, 8, 1);
    expect_good("empty object", "{}", 0, 0);
    expect_good("trailing spaces", "{}      ", 0, 0);
    expect_good("unknown field ignored",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", 8, 1);
    expect_good("zero-size tensors share an offset",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"c\":{\"dtype\":\"I8\",\"shape\":[0,3],\"data_offsets\":[4,4]}}",
                4, 3);
    expect_good("offsets out of name order",
                "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                8, 2);
    expect_good("all dtypes",
                "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]},"
                "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
                "\"d\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[20,24]},"
                "\"e\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[24,26]},"
                "\"f\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[26,28]},"
                "\"g\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[28,30]},"
                "\"h\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[30,31]},"
                "\"i\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[31,32]},"
                "\"j\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[32,33]},"
                "\"k\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[33,34]},"
                "\"l\":{\"dtype\":\"F8_E5M2\",\"shape\":[1],\"data_offsets\":[34,35]}}",
                35, 12);

    /* size and header length */
    {
        uint8_t small[5] = {0};
        td_safetensors *st = NULL;
        CHECK(td_st_open_memory(ctx, small, sizeof small, "bad.safetensors", &st) == TD_ERR_FORMAT && !st);
        uint8_t big[16] = {0};
        big[3] = 0x10; /* 268 MB header length */
        CHECK(td_st_open_memory(ctx, big, sizeof big, "bad.safetensors", &st) == TD_ERR_FORMAT && !st);
        CHECK(strstr(td_error_message(ctx), "100 MB") != NULL);
        memset(big, 0, sizeof big);
        big[0] = 9; /* 9 > 16 - 8 */
        CHECK(td_st_open_memory(ctx, big, sizeof big, "bad.safetensors", &st) == TD_ERR_FORMAT && !st);
        CHECK(strstr(td_error_message(ctx), "past the end") != NULL);
        memset(big, 0xff, sizeof big); /* 2^64 - 1 */
        CHECK(td_st_open_memory(ctx, big, sizeof big, "bad.safetensors", &st) == TD_ERR_FORMAT && !st);
    }
    expect_bad("empty header", "", 0, TD_ERR_FORMAT, "'{'");
    expect_bad("invalid UTF-8", "{\"a\xff\":{}}", 0, TD_ERR_FORMAT, "UTF-8");
    expect_bad("overlong UTF-8", "{\"a\xc0\xaf\":{}}", 0, TD_ERR_FORMAT, "UTF-8");
    expect_bad("surrogate UTF-8", "{\"a\xed\xa0\x80\":{}}", 0, TD_ERR_FORMAT, "UTF-8");
    expect_bad("truncated UTF-8", "{\"a\":{}}\xe2\x82", 0, TD_ERR_FORMAT, "UTF-8");
    expect_bad("not JSON", "{\"a\":", 0, TD_ERR_FORMAT, "JSON");
    expect_bad("array header", "[]", 0, TD_ERR_FORMAT, "'{'");
    expect_bad("garbage after JSON", "{} x", 0, TD_ERR_FORMAT, "after the header");
    expect_bad("escaped NUL in name", "{\"a\\u0000b\":{}}", 0, TD_ERR_FORMAT, "u0000");
    expect_bad("entry not object", "{\"a\":3}", 0, TD_ERR_FORMAT, "'a'");
    expect_bad("missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TD_ERR_FORMAT, "dtype");
    expect_bad("missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, TD_ERR_FORMAT, "shape");
    expect_bad("missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, TD_ERR_FORMAT, "data_offsets");
    expect_bad("duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, TD_ERR_FORMAT, "twice");
    expect_bad("dtype number", "{\"a\":{\"dtype\":1,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TD_ERR_FORMAT,
               "dtype");
    expect_bad("unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               TD_ERR_UNSUPPORTED, "F33");
    expect_bad("negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, TD_ERR_FORMAT,
               "shape[0]");
    expect_bad("fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
               TD_ERR_FORMAT, "shape[0]");
    expect_bad("string dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
               TD_ERR_FORMAT, "shape[0]");
    expect_bad("huge dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, TD_ERR_FORMAT,
               "shape[0]");
    expect_bad("shape not list", "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, TD_ERR_FORMAT,
               "shape");
    expect_bad("numel overflow",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
               TD_ERR_OVERFLOW, "overflow");
    expect_bad("bytes overflow",
               "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,8]}}", 8,
               TD_ERR_OVERFLOW, "overflow");
    expect_bad("size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, TD_ERR_FORMAT,
               "need 12 bytes");
    expect_bad("offsets count", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8,
               TD_ERR_FORMAT, "data_offsets");
    expect_bad("offsets negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-1,-1]}}", 0,
               TD_ERR_FORMAT, "data_offsets");
    expect_bad("end before begin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
               TD_ERR_FORMAT, "end before");
    expect_bad("not starting at 0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
               TD_ERR_FORMAT, "gap");
    expect_bad("gap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12, TD_ERR_FORMAT, "'b'");
    expect_bad("overlap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, TD_ERR_FORMAT, "overlap");
    expect_bad("same range twice",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               8, TD_ERR_FORMAT, "overlap");
    expect_bad("past end of file", T, 4, TD_ERR_FORMAT, "past the");
    expect_bad("trailing bytes", T, 12, TD_ERR_FORMAT, "trailing");
    expect_bad("duplicate name",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, TD_ERR_FORMAT, "twice");
    expect_bad("metadata not object", "{\"__metadata__\":[1]}", 0, TD_ERR_FORMAT, "__metadata__");
    expect_bad("metadata number value", "{\"__metadata__\":{\"k\":1}}", 0, TD_ERR_FORMAT, "\"k\"");
    expect_bad("metadata nested", "{\"__metadata__\":{\"k\":{}}}", 0, TD_ERR_FORMAT, "\"k\"");
    expect_bad("metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, TD_ERR_FORMAT, "twice");
    expect_bad("metadata key twice", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, TD_ERR_FORMAT, "twice");

    /* deep nesting must fail cleanly */
    size_t depth = 100000;
    char *deep = malloc(depth + 8);
    memcpy(deep, "{\"a\":", 5);
    memset(deep + 5, '[', depth);
    deep[depth + 5] = '\0';
    expect_bad("deep nesting", deep, 0, TD_ERR_FORMAT, "JSON");
    free(deep);

    /* a file on disk: error from the path-based API names the path */
    char path[2048];
    snprintf(path, sizeof path, "%s/st_trunc.safetensors", tmpdir);
    size_t size;
    uint8_t *buf = image(T, 8, &size);
    td_write_file_atomic(ctx, path, buf, size - 3);
    free(buf);
    td_safetensors *st = NULL;
    CHECK(td_st_open(ctx, path, &st) == TD_ERR_FORMAT && !st);
    CHECK(strstr(td_error_message(ctx), path) != NULL);
    snprintf(path, sizeof path, "%s/does-not-exist.safetensors", tmpdir);
    CHECK(td_st_open(ctx, path, &st) == TD_ERR_NOT_FOUND && !st);
}

int main(void) {
    ctx = td_ctx_new();
    snprintf(fixtures, sizeof fixtures, "%s", td_test_env("TD_FIXTURES", "../tests/fixtures"));
    snprintf(tmpdir, sizeof tmpdir, "%s", td_test_env("TD_TMP", "/tmp"));
    test_fixtures();
    test_roundtrip();
    test_bad_files();
    td_ctx_free(ctx);
    return td_test_finish("test_safetensors");
}
