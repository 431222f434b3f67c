/* External tensor data: resolve a location safely inside the model directory
 * and map each data file once. */
#define _GNU_SOURCE
#include "onnx/load_internal.h"

#include "core/checked.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Strict decimal parse of an external_data offset/length. */
static bool parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || !td_mul_u64(v, 10, &v) || !td_add_u64(v, (uint64_t)(*p - '0'), &v))
            return false;
    }
    *out = v;
    return true;
}

static td_status map_cached(td_onnx_loader *L, const char *real, td_mapped_file **out) {
    for (int i = 0; i < L->n_ext; i++)
        if (strcmp(L->ext[i].real_path, real) == 0) {
            *out = td_mapped_file_ref(L->ext[i].map);
            return TD_OK;
        }
    td_ext_map *p = realloc(L->ext, sizeof *p * (size_t)(L->n_ext + 1));
    if (!p)
        return td_fail_oom(L->ctx, sizeof *p, "the external data file list");
    L->ext = p;
    td_mapped_file *m;
    TD_TRY(td_map_file(L->ctx, real, &m));
    char *copy = strdup(real);
    if (!copy) {
        td_mapped_file_unref(m);
        return td_fail_oom(L->ctx, strlen(real), "a path");
    }
    L->ext[L->n_ext].real_path = copy;
    L->ext[L->n_ext].map = m;
    L->n_ext++;
    *out = td_mapped_file_ref(m);
    return TD_OK;
}

td_status td_onnx_external_data(td_onnx_loader *L, const Onnx__TensorProto *tp, const char *name, size_t nbytes,
                                td_mapped_file **map_out, size_t *offset_out, char **location_out) {
    td_ctx *ctx = L->ctx;
    const char *location = NULL, *offset_s = NULL, *length_s = NULL;
    char *joined = NULL, *real = NULL;
    td_status s = TD_OK;
    *map_out = NULL;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *kv = tp->external_data[i];
        if (!kv->key)
            continue;
        if (strcmp(kv->key, "location") == 0)
            location = kv->value;
        else if (strcmp(kv->key, "offset") == 0)
            offset_s = kv->value;
        else if (strcmp(kv->key, "length") == 0)
            length_s = kv->value;
        /* "checksum" (and unknown keys) carry nothing the loader needs */
    }
    if (!location || !*location)
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' has external data without a 'location' key", name);
    if (L->blob && strcmp(location, L->blob_name) == 0) {
        uint64_t off = 0, len = nbytes, end;
        if ((offset_s && !parse_u64(offset_s, &off)) || (length_s && !parse_u64(length_s, &len)) || len != nbytes ||
            !td_add_u64(off, len, &end) || end > L->blob_len)
            return td_fail(ctx, TD_ERR_FORMAT,
                           "tensor '%s': its data (offset %s, length %s, %zu bytes by its shape) lies outside the %zu "
                           "bytes of '%s'", name, offset_s ? offset_s : "0", length_s ? length_s : "-", nbytes,
                           L->blob_len, location);
        if (!(*location_out = strdup(location)))
            return td_fail_oom(ctx, strlen(location), "a location");
        *map_out = td_mapped_file_ref(L->blob);
        *offset_out = L->blob_off + (size_t)off;
        return TD_OK;
    }
    if (!L->base_dir)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "tensor '%s' stores its data in external file '%s', but the model was loaded from memory "
                       "without a base directory", name, location);
    uint64_t offset = 0, length = nbytes;
    if (offset_s && !parse_u64(offset_s, &offset))
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': external data offset '%s' is not a non-negative integer", name,
                       offset_s);
    if (length_s && !parse_u64(length_s, &length))
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': external data length '%s' is not a non-negative integer", name,
                       length_s);
    if (length != nbytes)
        return td_fail(ctx, TD_ERR_FORMAT,
                       "tensor '%s': external data length %llu in '%s' does not match its dims x dtype (%zu bytes)",
                       name, (unsigned long long)length, location, nbytes);
    s = td_path_join(ctx, L->base_dir, location, true, &joined);
    if (s != TD_OK) {
        td_wrap(ctx, "tensor '%s' external data location", name);
        goto out;
    }
    if (!L->base_real && !(L->base_real = realpath(L->base_dir, NULL))) {
        s = td_fail(ctx, TD_ERR_IO, "cannot resolve model directory %s: %s", L->base_dir, strerror(errno));
        goto out;
    }
    real = realpath(joined, NULL);
    if (!real) {
        s = td_fail(ctx, errno == ENOENT ? TD_ERR_NOT_FOUND : TD_ERR_IO,
                    "tensor '%s': external data file '%s' (%s): %s", name, location, joined, strerror(errno));
        goto out;
    }
    size_t bl = strlen(L->base_real);
    bool inside = strncmp(real, L->base_real, bl) == 0 && (real[bl] == '/' || (bl == 1 && L->base_real[0] == '/'));
    if (!inside) {
        s = td_fail(ctx, TD_ERR_FORMAT,
                    "tensor '%s': external data location '%s' resolves to %s, outside the model directory %s "
                    "(symlink escape refused)", name, location, real, L->base_real);
        goto out;
    }
    struct stat st;
    if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
        s = td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': external data location '%s' is not a regular file", name,
                    location);
        goto out;
    }
    td_mapped_file *m = NULL;
    s = map_cached(L, real, &m);
    if (s != TD_OK)
        goto out;
    uint64_t end;
    if (!td_add_u64(offset, length, &end) || end > m->size) {
        td_mapped_file_unref(m);
        s = td_fail(ctx, TD_ERR_FORMAT,
                    "tensor '%s': external data offset %llu + length %llu lie past the end of '%s' (%zu bytes)", name,
                    (unsigned long long)offset, (unsigned long long)length, location, m->size);
        goto out;
    }
    *location_out = strdup(location);
    if (!*location_out) {
        td_mapped_file_unref(m);
        s = td_fail_oom(ctx, strlen(location), "a location");
        goto out;
    }
    *map_out = m;
    *offset_out = (size_t)offset;
out:
    free(joined);
    free(real);
    return s;
}

void td_onnx_loader_release(td_onnx_loader *L) {
    for (int i = 0; i < L->n_ext; i++) {
        free(L->ext[i].real_path);
        td_mapped_file_unref(L->ext[i].map);
    }
    free(L->ext);
    free(L->base_real);
    L->ext = NULL;
    L->n_ext = 0;
    L->base_real = NULL;
}
