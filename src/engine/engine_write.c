/* Engine writer: the plan (ONNX bytes whose initializers of >= 256 bytes are
 * external data in the weights section, each 256-byte aligned), the weights,
 * the kernel table and the model's files, behind the header and tables of
 * engine_format.c; the SHA-256 covers every byte but its own 32. The file is
 * written atomically: on any failure nothing is left at the path. */
#define _GNU_SOURCE
#include "engine/engine.h"

#include "core/le_bytes.h"
#include "core/sha256.h"
#include "engine/timing_cache.h"
#include "deploy/tree.h"
#include "onnx/onnx_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Model files bundled into FILES (flat names; the sentence-transformers pooling config keeps its folder). */
static const char *const bundle_names[] = {
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
    "merges.txt", "sentencepiece.bpe.model", "modules.json", "sentence_bert_config.json",
    "config_sentence_transformers.json", "1_Pooling/config.json", NULL};

typedef struct blob {
    uint8_t *data;
    size_t len, cap;
} blob;

static bool blob_put(blob *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->data, cap);
        if (!q)
            return false;
        b->data = q;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

/* FILES: u32 count, then per file u32 name length, name, u64 size, bytes. */
static td_status bundle_files(td_ctx *ctx, const char *dir, blob *out) {
    uint8_t tmp[8];
    uint32_t count = 0;
    td_wr_le32(tmp, 0);
    if (!blob_put(out, tmp, 4))
        return td_fail_oom(ctx, 4, "engine files");
    for (int i = 0; bundle_names[i]; i++) {
        char *path = NULL, *data = NULL;
        size_t len = 0;
        if (td_path_join(ctx, dir, bundle_names[i], true, &path) != TD_OK)
            return td_wrap(ctx, "bundling model files");
        if (!td_is_file(path)) {
            free(path);
            continue;
        }
        td_status st = td_read_file(ctx, path, (size_t)1 << 30, &data, &len);
        free(path);
        if (st != TD_OK)
            return st;
        uint32_t nl = (uint32_t)strlen(bundle_names[i]);
        uint8_t h[4];
        td_wr_le32(h, nl);
        td_wr_le64(tmp, len);
        bool ok = blob_put(out, h, 4) && blob_put(out, bundle_names[i], nl) && blob_put(out, tmp, 8) &&
                  blob_put(out, data, len);
        free(data);
        if (!ok)
            return td_fail_oom(ctx, len, "engine files");
        count++;
    }
    td_wr_le32(out->data, count);
    return TD_OK;
}

static uint64_t align_up(uint64_t v) { return (v + TD_ENGINE_ALIGN - 1) / TD_ENGINE_ALIGN * TD_ENGINE_ALIGN; }

td_status td_engine_write(td_ctx *ctx, const char *path, const td_model *model, const td_engine_meta *meta) {
    td_status st = TD_OK;
    char *dir = td_path_dirname(path), *tmpdir = NULL, *plan_path = NULL, *w_path = NULL;
    td_mapped_file *plan = NULL, *weights = NULL;
    blob files = {0}, gemms = {0};
    uint8_t *header = NULL;
    td_atomic_file af = {0};
    if (!dir)
        return td_fail_oom(ctx, 0, "a path");
    if (meta->n_profiles < 1 || meta->n_profiles > TD_ENGINE_MAX_PROFILES) {
        st = td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "an engine needs 1..%d shape profiles (got %u)",
                     TD_ENGINE_MAX_PROFILES, meta->n_profiles);
        goto out;
    }
    if (asprintf(&tmpdir, "%s/.tdeploy-engine-XXXXXX", dir) < 0 || !mkdtemp(tmpdir)) {
        st = td_fail(ctx, TD_ERR_IO, "cannot create a temporary folder next to %s", path);
        free(tmpdir);
        tmpdir = NULL;
        goto out;
    }
    if (asprintf(&plan_path, "%s/plan.onnx", tmpdir) < 0 || asprintf(&w_path, "%s/%s", tmpdir, TD_ENGINE_WEIGHTS_NAME) < 0) {
        st = td_fail_oom(ctx, 0, "a path");
        goto out;
    }
    td_onnx_save_options so = {.external = TD_ONNX_EXTERNAL_ALWAYS, .data_file = TD_ENGINE_WEIGHTS_NAME,
                               .size_threshold = TD_ENGINE_ALIGN, .alignment = TD_ENGINE_ALIGN, .keep_cached = true};
    if ((st = td_onnx_save(ctx, model, plan_path, &so)) != TD_OK)
        goto out;
    if ((st = td_map_file(ctx, plan_path, &plan)) != TD_OK)
        goto out;
    if (td_is_file(w_path) && (st = td_map_file(ctx, w_path, &weights)) != TD_OK)
        goto out;
    if (meta->model_dir && (st = bundle_files(ctx, meta->model_dir, &files)) != TD_OK)
        goto out;
    if (meta->n_gemms) { /* GEMMS: u32 count, u32 zero, the records */
        uint8_t h8[8] = {0}, rec[TD_TCACHE_ENTRY];
        td_wr_le32(h8, meta->n_gemms);
        if (!blob_put(&gemms, h8, 8)) {
            st = td_fail_oom(ctx, 8, "engine GEMM choices");
            goto out;
        }
        for (uint32_t i = 0; i < meta->n_gemms; i++) {
            td_tcache_entry_encode(&meta->gemms[i], rec);
            if (!blob_put(&gemms, rec, sizeof rec)) {
                st = td_fail_oom(ctx, sizeof rec, "engine GEMM choices");
                goto out;
            }
        }
    }

    /* layout */
    struct {
        uint32_t kind;
        const void *data;
        uint64_t size, offset;
    } sec[5];
    uint32_t ns = 0;
    sec[ns++] = (typeof(sec[0])){TD_ENGINE_SEC_PLAN, plan->data, plan->size, 0};
    sec[ns++] = (typeof(sec[0])){TD_ENGINE_SEC_WEIGHTS, weights ? weights->data : NULL, weights ? weights->size : 0, 0};
    if (meta->kernels)
        sec[ns++] = (typeof(sec[0])){TD_ENGINE_SEC_KERNELS, meta->kernels, strlen(meta->kernels), 0};
    if (files.len)
        sec[ns++] = (typeof(sec[0])){TD_ENGINE_SEC_FILES, files.data, files.len, 0};
    if (gemms.len)
        sec[ns++] = (typeof(sec[0])){TD_ENGINE_SEC_GEMMS, gemms.data, gemms.len, 0};
    uint64_t hb = TD_ENGINE_HEADER_FIXED + (uint64_t)meta->n_profiles * TD_ENGINE_PROFILE_BYTES +
                  (uint64_t)ns * TD_ENGINE_SECTION_BYTES;
    uint64_t pos = align_up(hb);
    for (uint32_t i = 0; i < ns; i++) {
        sec[i].offset = pos;
        pos = align_up(pos + sec[i].size);
    }
    uint64_t file_size = sec[ns - 1].offset + sec[ns - 1].size;

    header = calloc(1, align_up(hb));
    if (!header) {
        st = td_fail_oom(ctx, hb, "the engine header");
        goto out;
    }
    memcpy(header, TD_ENGINE_MAGIC, 8);
    td_wr_le32(header + 8, TD_ENGINE_FORMAT_VERSION);
    td_wr_le32(header + 12, (uint32_t)hb);
    snprintf((char *)header + 16, 16, "%s", td_version());
    snprintf((char *)header + 32, 64, "%s", meta->gpu_name);
    td_wr_le32(header + 96, meta->cc_major);
    td_wr_le32(header + 100, meta->cc_minor);
    td_wr_le32(header + 104, meta->cuda_runtime);
    td_wr_le32(header + 108, meta->precision);
    td_wr_le32(header + 112, meta->n_profiles);
    td_wr_le32(header + 116, ns);
    td_wr_le64(header + 120, file_size);
    uint8_t *p = header + TD_ENGINE_HEADER_FIXED;
    for (uint32_t i = 0; i < meta->n_profiles; i++, p += TD_ENGINE_PROFILE_BYTES) {
        const td_engine_profile *pr = &meta->profiles[i];
        td_wr_le32(p, pr->min_b), td_wr_le32(p + 4, pr->min_s), td_wr_le32(p + 8, pr->opt_b), td_wr_le32(p + 12, pr->opt_s);
        td_wr_le32(p + 16, pr->max_b), td_wr_le32(p + 20, pr->max_s);
        td_wr_le64(p + 24, pr->arena_bytes), td_wr_le64(p + 32, pr->naive_bytes);
    }
    for (uint32_t i = 0; i < ns; i++, p += TD_ENGINE_SECTION_BYTES) {
        td_wr_le32(p, sec[i].kind);
        td_wr_le64(p + 8, sec[i].offset);
        td_wr_le64(p + 16, sec[i].size);
    }
    /* SHA-256 of bytes [0, 128) and [160, end): header, tables, padding, sections */
    static const uint8_t zeros[TD_ENGINE_ALIGN];
    td_sha256 h;
    td_sha256_init(&h);
    td_sha256_update(&h, header, 128);
    td_sha256_update(&h, header + 160, align_up(hb) - 160);
    for (uint32_t i = 0; i < ns; i++) {
        td_sha256_update(&h, sec[i].data, sec[i].size);
        if (i + 1 < ns)
            td_sha256_update(&h, zeros, sec[i + 1].offset - (sec[i].offset + sec[i].size));
    }
    td_sha256_final(&h, header + 128);

    if ((st = td_atomic_open(ctx, &af, path)) != TD_OK)
        goto out;
    if ((st = td_atomic_write(ctx, &af, header, align_up(hb))) != TD_OK)
        goto out;
    for (uint32_t i = 0; i < ns; i++) {
        if ((st = td_atomic_write(ctx, &af, sec[i].data, sec[i].size)) != TD_OK)
            goto out;
        if (i + 1 < ns && (st = td_atomic_write(ctx, &af, zeros, sec[i + 1].offset - (sec[i].offset + sec[i].size))) != TD_OK)
            goto out;
    }
    st = td_atomic_commit(ctx, &af);
out:
    if (st != TD_OK)
        td_atomic_abort(&af);
    td_mapped_file_unref(plan);
    td_mapped_file_unref(weights);
    if (tmpdir) {
        td_ctx *quiet = td_ctx_new(); /* cleanup failures must not replace the real error */
        td_remove_tree(quiet ? quiet : ctx, tmpdir);
        td_ctx_free(quiet);
    }
    free(files.data);
    free(gemms.data);
    free(header);
    free(tmpdir);
    free(plan_path);
    free(w_path);
    free(dir);
    return st;
}
