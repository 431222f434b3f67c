/* Engine loading: map, parse, verify, version check, and the in-memory model
 * whose external weights point into the mapping (no copy). */
#include "engine/engine.h"

#include "core/le_bytes.h"
#include "core/checked.h"
#include "onnx/onnx_io.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


void td_engine_free(td_engine *e) {
    if (!e)
        return;
    td_model_free(e->model);
    td_mapped_file_unref(e->map);
    free(e);
}

td_status td_engine_load(td_ctx *ctx, const char *path, td_engine **out) {
    td_mapped_file *map = NULL;
    *out = NULL;
    TD_TRY(td_map_file(ctx, path, &map));
    td_status st = td_engine_open_mapped(ctx, map, path, true, out);
    td_mapped_file_unref(map);
    return st;
}

td_status td_engine_open_mapped(td_ctx *ctx, td_mapped_file *map, const char *path, bool verify, td_engine **out) {
    *out = NULL;
    td_engine *e = calloc(1, sizeof *e);
    if (!e)
        return td_fail_oom(ctx, sizeof *e, "an engine");
    e->map = td_mapped_file_ref(map);
    td_status st = td_engine_parse(ctx, e->map->data, e->map->size, path, &e->info);
    if (st == TD_OK && verify)
        st = td_engine_verify(ctx, e->map->data, e->map->size, path, &e->info);
    if (st == TD_OK && strcmp(e->info.tool_version, td_version()) != 0)
        st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                     "%s was built by tdeploy %s; this is tdeploy %s, whose kernels and plan may differ: rebuild it "
                     "with `tdeploy build MODEL -o %s`", path, e->info.tool_version, td_version(), path);
    if (st == TD_OK) {
        const td_engine_section *plan = td_engine_find(&e->info, TD_ENGINE_SEC_PLAN);
        const td_engine_section *w = td_engine_find(&e->info, TD_ENGINE_SEC_WEIGHTS);
        td_onnx_blob b = {TD_ENGINE_WEIGHTS_NAME, e->map, (size_t)w->offset, (size_t)w->size};
        st = td_onnx_load_buffer_blob(ctx, e->map->data + plan->offset, (size_t)plan->size, NULL, &b, &e->model);
        if (st != TD_OK)
            td_wrap(ctx, "%s: the engine's plan is damaged (rebuild it with `tdeploy build MODEL -o ENGINE`)", path);
    }
    if (st != TD_OK) {
        td_engine_free(e);
        return st;
    }
    *out = e;
    return TD_OK;
}

/* A bundled name: letters, digits, '_', '-', '.', at most one '/' between two safe parts. */
static bool safe_name(const char *n, size_t len) {
    if (len == 0 || len > 255 || n[0] == '.' || n[0] == '/' || n[len - 1] == '/')
        return false;
    int slashes = 0;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (c == '/') {
            if (++slashes > 1 || n[i + 1] == '.')
                return false;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                     c == '-' || c == '.')) {
            return false;
        }
    }
    return true;
}

td_status td_engine_extract_files(td_ctx *ctx, const td_engine *e, const char *dir) {
    const td_engine_section *s = td_engine_find(&e->info, TD_ENGINE_SEC_FILES);
    if (!s)
        return td_fail(ctx, TD_ERR_NOT_FOUND, "the engine holds no model files (it was built from an ONNX file, not a "
                       "model directory): pass --tokenizer DIR");
    const uint8_t *p = e->map->data + s->offset, *end = p + s->size;
    if (s->size < 4)
        return td_fail(ctx, TD_ERR_FORMAT, "engine files section is truncated");
    uint32_t count = td_rd_le32(p);
    p += 4;
    if (dir && mkdir(dir, 0755) != 0 && errno != EEXIST)
        return td_fail(ctx, TD_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    for (uint32_t i = 0; i < count; i++) {
        if ((size_t)(end - p) < 4)
            return td_fail(ctx, TD_ERR_FORMAT, "engine files section: entry %u is truncated", i);
        uint32_t nl = td_rd_le32(p);
        p += 4;
        if ((size_t)(end - p) < (uint64_t)nl + 8 || !safe_name((const char *)p, nl))
            return td_fail(ctx, TD_ERR_FORMAT, "engine files section: entry %u has a bad name", i);
        char name[256];
        memcpy(name, p, nl);
        name[nl] = 0;
        p += nl;
        uint64_t size = td_rd_le64(p);
        p += 8;
        if ((uint64_t)(end - p) < size || size > SIZE_MAX)
            return td_fail(ctx, TD_ERR_FORMAT, "engine files section: '%s' runs past the section", name);
        if (!dir) { /* check only */
            p += size;
            continue;
        }
        char full[4096];
        char *slash = strchr(name, '/');
        if (slash) {
            *slash = 0;
            snprintf(full, sizeof full, "%s/%s", dir, name);
            if (mkdir(full, 0755) != 0 && errno != EEXIST)
                return td_fail(ctx, TD_ERR_IO, "cannot create %s: %s", full, strerror(errno));
            *slash = '/';
        }
        snprintf(full, sizeof full, "%s/%s", dir, name);
        TD_TRY(td_write_file_atomic(ctx, full, p, (size_t)size));
        p += size;
    }
    return TD_OK;
}
