/* safetensors reader: map, validate every rule of the format, index by name. */
#define _GNU_SOURCE
#include "hf/safetensors.h"

#include "core/checked.h"
#include "core/ctx.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* Dims and offsets arrive as JSON numbers, which cJSON holds as doubles: above
 * 2^53 they are no longer exact, and no real file comes near that. */
#define MAX_EXACT_JSON_INT 9007199254740992.0

#define FIX_HINT "the file is corrupt or was not written by a safetensors writer; re-download it or re-save it with safetensors"

struct td_safetensors {
    char *label;            /* path or caller's label */
    td_mapped_file *map;    /* NULL for from-memory files */
    td_st_tensor *tensors;  /* file order (ascending offset) */
    size_t n_tensors;
    size_t *by_name;        /* indices into tensors, sorted by name */
    char **meta_keys, **meta_values;
    size_t n_meta;
    uint64_t data_bytes;
};

/* ---------- UTF-8 ---------- */

bool td_utf8_valid(const uint8_t *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            goto bad;
        }
        if (n - i < len)
            goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto bad;
        i += len;
    }
    return true;
bad:
    if (bad_at)
        *bad_at = i;
    return false;
}

/* ---------- small helpers ---------- */

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Byte offset in the file of the first occurrence of "name" (quoted) in the
 * header, for messages; 0 when not found (names with escapes). */
static uint64_t locate_key(const char *header, size_t header_len, const char *name) {
    size_t nl = strlen(name);
    char *pat = malloc(nl + 3);
    if (!pat)
        return 0;
    pat[0] = '"';
    memcpy(pat + 1, name, nl);
    pat[nl + 1] = '"';
    pat[nl + 2] = '\0';
    const char *hit = memmem(header, header_len, pat, nl + 2);
    free(pat);
    return hit ? 8 + (uint64_t)(hit - header) : 0;
}

/* A JSON number that must be an exact non-negative integer. */
static bool json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d > MAX_EXACT_JSON_INT || d != (double)(uint64_t)d)
        return false;
    *out = (uint64_t)d;
    return true;
}

/* cJSON decodes "\u0000" into a NUL that silently truncates the string; a name
 * cut short could collide with another or hide a duplicate, so refuse it. */
static bool has_escaped_nul(const char *s, size_t n, size_t *at) {
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) {
            if (s[i] == '"')
                in_str = true;
            continue;
        }
        if (s[i] == '"') {
            in_str = false;
        } else if (s[i] == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) {
                *at = i;
                return true;
            }
            i++; /* skip the escaped character */
        }
    }
    return false;
}

static bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void td_st_close(td_safetensors *st) {
    if (!st)
        return;
    for (size_t i = 0; i < st->n_tensors; i++) {
        free((char *)st->tensors[i].name);
        free((int64_t *)st->tensors[i].dims);
    }
    free(st->tensors);
    free(st->by_name);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    td_mapped_file_unref(st->map);
    free(st->label);
    free(st);
}

/* ---------- header parsing ---------- */

static td_status parse_metadata(td_ctx *ctx, td_safetensors *st, const cJSON *meta, uint64_t at) {
    if (cJSON_IsNull(meta))
        return TD_OK;
    if (!cJSON_IsObject(meta))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"__metadata__\" (near byte %llu) must be an object of strings; %s",
                       st->label, (unsigned long long)at, FIX_HINT);
    size_t n = (size_t)cJSON_GetArraySize(meta);
    if (n == 0)
        return TD_OK;
    st->meta_keys = calloc(n, sizeof *st->meta_keys);
    st->meta_values = calloc(n, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values)
        return td_fail_oom(ctx, n * sizeof(char *), "safetensors metadata");
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return td_fail(ctx, TD_ERR_FORMAT,
                           "%s: __metadata__ value of \"%s\" (near byte %llu) is not a string; safetensors metadata "
                           "maps strings to strings; %s",
                           st->label, kv->string, (unsigned long long)at, FIX_HINT);
        for (size_t k = 0; k < st->n_meta; k++)
            if (strcmp(st->meta_keys[k], kv->string) == 0)
                return td_fail(ctx, TD_ERR_FORMAT, "%s: __metadata__ key \"%s\" appears twice (near byte %llu); %s",
                               st->label, kv->string, (unsigned long long)at, FIX_HINT);
        st->meta_keys[st->n_meta] = strdup(kv->string);
        st->meta_values[st->n_meta] = strdup(kv->valuestring);
        st->n_meta++;
        if (!st->meta_keys[st->n_meta - 1] || !st->meta_values[st->n_meta - 1])
            return td_fail_oom(ctx, strlen(kv->valuestring) + 1, "safetensors metadata");
    }
    return TD_OK;
}

/* begin/end data offsets of one entry, kept aside for sorting. */
struct span {
    uint64_t begin, end;
    size_t idx;
};

static int cmp_span(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static td_status parse_entry(td_ctx *ctx, const td_safetensors *st, const cJSON *e, const char *header,
                             size_t header_len, td_st_tensor *t, struct span *sp) {
    const char *name = e->string;
    uint64_t at = locate_key(header, header_len, name);
    if (!cJSON_IsObject(e))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: tensor '%s' (near byte %llu): entry must be an object with dtype, "
                       "shape and data_offsets; %s", st->label, name, (unsigned long long)at, FIX_HINT);
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *f = e->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &dtype
                             : strcmp(f->string, "shape") == 0        ? &shape
                             : strcmp(f->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot)
            continue; /* unknown fields are ignored, as the reference reader does */
        if (*slot)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: tensor '%s' (near byte %llu): field \"%s\" appears twice; %s",
                           st->label, name, (unsigned long long)at, f->string, FIX_HINT);
        *slot = f;
    }
    if (!dtype || !shape || !offs)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: tensor '%s' (near byte %llu): missing \"%s\"; %s", st->label, name,
                       (unsigned long long)at, !dtype ? "dtype" : !shape ? "shape" : "data_offsets", FIX_HINT);
    if (!cJSON_IsString(dtype))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: tensor '%s' (near byte %llu): dtype must be a string such as \"F32\"; %s",
                       st->label, name, (unsigned long long)at, FIX_HINT);
    t->dtype = td_dtype_from_safetensors(dtype->valuestring);
    if (t->dtype == TD_UNDEFINED || td_dtype_size(t->dtype) == 0)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s: tensor '%s' (near byte %llu) has dtype \"%.40s\", which tdeploy does not support (known: "
                       "F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL F8_E4M3 F8_E5M2); convert the checkpoint "
                       "to F32/F16/BF16",
                       st->label, name, (unsigned long long)at, dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: tensor '%s' (near byte %llu): shape must be a list of integers; %s",
                       st->label, name, (unsigned long long)at, FIX_HINT);
    int rank = cJSON_GetArraySize(shape);
    int64_t *dims = rank ? calloc((size_t)rank, sizeof *dims) : NULL;
    if (rank && !dims)
        return td_fail_oom(ctx, (size_t)rank * sizeof *dims, "tensor dims");
    t->dims = dims;
    t->rank = rank;
    int k = 0;
    for (const cJSON *d = shape->child; d; d = d->next, k++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return td_fail(ctx, TD_ERR_FORMAT,
                           "%s: tensor '%s' (near byte %llu): shape[%d] is not a non-negative integer; %s", st->label,
                           name, (unsigned long long)at, k, FIX_HINT);
        dims[k] = (int64_t)v;
    }
    int64_t numel;
    size_t nbytes;
    if (!td_shape_numel(dims, rank, &numel) || !td_mul_size((size_t)numel, td_dtype_size(t->dtype), &nbytes))
        return td_fail(ctx, TD_ERR_OVERFLOW, "%s: tensor '%s' (near byte %llu): shape x dtype size overflows; %s",
                       st->label, name, (unsigned long long)at, FIX_HINT);
    t->numel = numel;
    t->nbytes = nbytes;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &sp->begin) ||
        !json_uint(offs->child->next, &sp->end))
        return td_fail(ctx, TD_ERR_FORMAT,
                       "%s: tensor '%s' (near byte %llu): data_offsets must be [begin, end], two non-negative "
                       "integers; %s",
                       st->label, name, (unsigned long long)at, FIX_HINT);
    if (sp->end < sp->begin)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: tensor '%s' (near byte %llu): data_offsets [%llu, %llu] end before "
                       "they begin; %s", st->label, name, (unsigned long long)at, (unsigned long long)sp->begin,
                       (unsigned long long)sp->end, FIX_HINT);
    if (sp->end - sp->begin != (uint64_t)nbytes)
        return td_fail(ctx, TD_ERR_FORMAT,
                       "%s: tensor '%s' (near byte %llu): shape and dtype %s need %zu bytes but data_offsets "
                       "[%llu, %llu] hold %llu; %s",
                       st->label, name, (unsigned long long)at, dtype->valuestring, nbytes,
                       (unsigned long long)sp->begin, (unsigned long long)sp->end,
                       (unsigned long long)(sp->end - sp->begin), FIX_HINT);
    if (!(t->name = strdup(name)))
        return td_fail_oom(ctx, strlen(name) + 1, "a tensor name");
    return TD_OK;
}

static const td_safetensors *sort_ctx; /* qsort has no user pointer in C11 */

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(sort_ctx->tensors[*(const size_t *)a].name, sort_ctx->tensors[*(const size_t *)b].name);
}

static td_status parse_image(td_ctx *ctx, td_safetensors *st, const uint8_t *data, size_t size) {
    td_status s = TD_OK;
    cJSON *root = NULL;
    struct span *spans = NULL;
    td_st_tensor *unsorted = NULL;

    if (size < 8) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s is %zu bytes, too short for a safetensors file (it starts with an 8-byte "
                    "header length); %s", st->label, size, FIX_HINT);
        goto out;
    }
    uint64_t n = read_le64(data);
    if (n > TD_ST_MAX_HEADER_BYTES) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: header length %llu at byte 0 exceeds the 100 MB limit of the format; %s",
                    st->label, (unsigned long long)n, FIX_HINT);
        goto out;
    }
    if (n > size - 8) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: header length %llu at byte 0 runs past the end of the %zu-byte file "
                    "(truncated download?); %s", st->label, (unsigned long long)n, size, FIX_HINT);
        goto out;
    }
    const char *header = (const char *)data + 8;
    size_t hlen = (size_t)n;
    size_t bad;
    if (!td_utf8_valid((const uint8_t *)header, hlen, &bad)) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: header is not valid UTF-8 (byte %zu); %s", st->label, 8 + bad, FIX_HINT);
        goto out;
    }
    const char *nul = memchr(header, '\0', hlen);
    if (nul) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: header contains a NUL byte at byte %zu; %s", st->label,
                    8 + (size_t)(nul - header), FIX_HINT);
        goto out;
    }
    if (hlen == 0 || header[0] != '{') {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: header at byte 8 does not start with '{' (a JSON object); %s", st->label,
                    FIX_HINT);
        goto out;
    }
    if (has_escaped_nul(header, hlen, &bad)) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: header string at byte %zu contains \\u0000; %s", st->label, 8 + bad,
                    FIX_HINT);
        goto out;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(header, hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= header && end <= header + hlen ? (size_t)(end - header) : 0;
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu, or nested too deeply); %s",
                    st->label, 8 + at, FIX_HINT);
        goto out;
    }
    for (const char *p = end; p < header + hlen; p++)
        if (!is_json_space(*p)) {
            s = td_fail(ctx, TD_ERR_FORMAT, "%s: unexpected data after the header JSON at byte %zu; %s", st->label,
                        8 + (size_t)(p - header), FIX_HINT);
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: header is not a JSON object; %s", st->label, FIX_HINT);
        goto out;
    }

    size_t count = 0;
    bool seen_meta = false;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta) {
                s = td_fail(ctx, TD_ERR_FORMAT, "%s: \"__metadata__\" appears twice in the header; %s", st->label,
                            FIX_HINT);
                goto out;
            }
            seen_meta = true;
            s = parse_metadata(ctx, st, e, locate_key(header, hlen, "__metadata__"));
            if (s != TD_OK)
                goto out;
        } else {
            count++;
        }
    }
    unsorted = calloc(count ? count : 1, sizeof *unsorted);
    spans = calloc(count ? count : 1, sizeof *spans);
    st->tensors = calloc(count ? count : 1, sizeof *st->tensors);
    st->by_name = calloc(count ? count : 1, sizeof *st->by_name);
    if (!unsorted || !spans || !st->tensors || !st->by_name) {
        s = td_fail_oom(ctx, count * sizeof *unsorted, "the tensor table");
        goto out;
    }
    size_t i = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0)
            continue;
        spans[i].idx = i;
        s = parse_entry(ctx, st, e, header, hlen, &unsorted[i], &spans[i]);
        i++;
        if (s != TD_OK)
            goto out;
    }

    /* Offsets: sorted they must tile [0, data size) exactly. */
    qsort(spans, count, sizeof *spans, cmp_span);
    uint64_t data_size = (uint64_t)size - 8 - n;
    uint64_t expect = 0;
    for (i = 0; i < count; i++) {
        const td_st_tensor *t = &unsorted[spans[i].idx];
        if (spans[i].begin != expect) {
            s = td_fail(ctx, TD_ERR_FORMAT,
                        "%s: tensor '%s' data_offsets [%llu, %llu] (file byte %llu) %s: tensors must cover the data "
                        "section contiguously from 0, without gaps or overlaps; %s",
                        st->label, t->name, (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end,
                        (unsigned long long)(8 + n + spans[i].begin),
                        spans[i].begin > expect ? "leave a gap after the previous tensor"
                                                : "overlap the previous tensor",
                        FIX_HINT);
            goto out;
        }
        if (spans[i].end > data_size) {
            s = td_fail(ctx, TD_ERR_FORMAT,
                        "%s: tensor '%s' data_offsets [%llu, %llu] end past the %llu-byte data section (file byte "
                        "%llu, file size %zu; truncated?); %s",
                        st->label, t->name, (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end,
                        (unsigned long long)data_size, (unsigned long long)(8 + n + spans[i].end), size, FIX_HINT);
            goto out;
        }
        expect = spans[i].end;
    }
    if (expect != data_size) {
        s = td_fail(ctx, TD_ERR_FORMAT,
                    "%s: tensors cover %llu bytes of the data section but it holds %llu (%llu trailing bytes from "
                    "file byte %llu); %s",
                    st->label, (unsigned long long)expect, (unsigned long long)data_size,
                    (unsigned long long)(data_size - expect), (unsigned long long)(8 + n + expect), FIX_HINT);
        goto out;
    }

    /* Move into file order; data pointers into the image. */
    const uint8_t *section = data + 8 + n;
    for (i = 0; i < count; i++) {
        td_st_tensor *t = &st->tensors[i];
        *t = unsorted[spans[i].idx];
        memset(&unsorted[spans[i].idx], 0, sizeof *t);
        t->data = t->nbytes ? section + spans[i].begin : NULL;
        t->file_offset = 8 + n + spans[i].begin;
        t->map = st->map;
        t->path = st->label;
        st->by_name[i] = i;
    }
    st->n_tensors = count;
    st->data_bytes = data_size;

    sort_ctx = st;
    qsort(st->by_name, count, sizeof *st->by_name, cmp_by_name);
    sort_ctx = NULL;
    for (i = 1; i < count; i++) {
        const td_st_tensor *t = &st->tensors[st->by_name[i]];
        if (strcmp(st->tensors[st->by_name[i - 1]].name, t->name) == 0) {
            s = td_fail(ctx, TD_ERR_FORMAT, "%s: tensor name '%s' appears twice in the header (near byte %llu); %s",
                        st->label, t->name, (unsigned long long)locate_key(header, hlen, t->name), FIX_HINT);
            goto out;
        }
    }
out:
    if (unsorted) {
        for (i = 0; i < count; i++) {
            free((char *)unsorted[i].name);
            free((int64_t *)unsorted[i].dims);
        }
    }
    free(unsorted);
    free(spans);
    cJSON_Delete(root);
    return s;
}

static td_status open_image(td_ctx *ctx, const char *label, td_mapped_file *map, const uint8_t *data, size_t size,
                            td_safetensors **out) {
    *out = NULL;
    td_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->label = strdup(label ? label : "<memory>"))) {
        free(st);
        td_mapped_file_unref(map);
        return td_fail_oom(ctx, sizeof *st, "a safetensors handle");
    }
    st->map = map;
    td_status s = parse_image(ctx, st, data, size);
    if (s != TD_OK) {
        td_st_close(st);
        return s;
    }
    *out = st;
    return TD_OK;
}

td_status td_st_open(td_ctx *ctx, const char *path, td_safetensors **out) {
    *out = NULL;
    td_mapped_file *map = NULL;
    TD_TRY(td_map_file(ctx, path, &map));
    return open_image(ctx, path, map, map->data, map->size, out);
}

td_status td_st_open_memory(td_ctx *ctx, const void *data, size_t size, const char *label, td_safetensors **out) {
    return open_image(ctx, label, NULL, data, size, out);
}

const char *td_st_path(const td_safetensors *st) { return st->label; }
size_t td_st_count(const td_safetensors *st) { return st->n_tensors; }
uint64_t td_st_data_bytes(const td_safetensors *st) { return st->data_bytes; }

const td_st_tensor *td_st_tensor_at(const td_safetensors *st, size_t i) {
    return i < st->n_tensors ? &st->tensors[i] : NULL;
}

const td_st_tensor *td_st_find(const td_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const td_st_tensor *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *td_st_metadata_get(const td_safetensors *st, const char *key) {
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_values[i];
    return NULL;
}

size_t td_st_metadata_count(const td_safetensors *st) { return st->n_meta; }

void td_st_metadata_at(const td_safetensors *st, size_t i, const char **key, const char **value) {
    *key = i < st->n_meta ? st->meta_keys[i] : NULL;
    *value = i < st->n_meta ? st->meta_values[i] : NULL;
}
