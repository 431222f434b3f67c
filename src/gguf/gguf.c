/* GGUF parser (see gguf.h). Every read goes through the cursor, which checks the
 * bytes are there; counts are bounded by the bytes left before any allocation. */
#define _GNU_SOURCE
#include "gguf/gguf.h"

#include "core/checked.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define DEFAULT_ALIGNMENT 32
#define MAX_ALIGNMENT (1u << 20)
#define MAX_NAME 4096 /* longest key or tensor name accepted */

typedef struct cursor {
    td_ctx *ctx;
    const char *label;
    const uint8_t *base;
    size_t size, pos;
} cursor;

static td_status bad(cursor *c, const char *what) {
    return td_fail(c->ctx, TD_ERR_FORMAT, "%s: %s at byte %zu (file size %zu); the file is truncated or not a valid "
                   "GGUF file", c->label, what, c->pos, c->size);
}

static size_t left(const cursor *c) { return c->size - c->pos; }

static td_status take(cursor *c, size_t n, const char *what, const uint8_t **out) {
    if (n > left(c))
        return bad(c, what);
    *out = c->base + c->pos;
    c->pos += n;
    return TD_OK;
}

static td_status rd_u32(cursor *c, const char *what, uint32_t *v) {
    const uint8_t *p = NULL;
    TD_TRY(take(c, 4, what, &p));
    *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return TD_OK;
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static td_status rd_u64(cursor *c, const char *what, uint64_t *v) {
    const uint8_t *p = NULL;
    TD_TRY(take(c, 8, what, &p));
    *v = le64(p);
    return TD_OK;
}

static td_status rd_str(cursor *c, const char *what, td_gguf_str *s) {
    uint64_t len;
    TD_TRY(rd_u64(c, what, &len));
    if (len > left(c))
        return bad(c, what);
    const uint8_t *p = NULL;
    TD_TRY(take(c, (size_t)len, what, &p));
    s->s = (const char *)p;
    s->len = len;
    return TD_OK;
}

/* A key or tensor name as a C string: no NUL inside, at most MAX_NAME bytes. */
static td_status name_copy(cursor *c, const td_gguf_str *s, const char *what, char **out) {
    if (s->len == 0 || s->len > MAX_NAME || memchr(s->s, 0, (size_t)s->len))
        return td_fail(c->ctx, TD_ERR_FORMAT, "%s: %s before byte %zu is empty, longer than %d bytes or contains a NUL "
                       "byte", c->label, what, c->pos, MAX_NAME);
    *out = strndup(s->s, (size_t)s->len);
    return *out ? TD_OK : td_fail_oom(c->ctx, (size_t)s->len, "a GGUF name");
}

static size_t scalar_size(td_gguf_vtype t) {
    switch (t) {
    case TD_GGUF_U8:
    case TD_GGUF_I8:
    case TD_GGUF_BOOL: return 1;
    case TD_GGUF_U16:
    case TD_GGUF_I16: return 2;
    case TD_GGUF_U32:
    case TD_GGUF_I32:
    case TD_GGUF_F32: return 4;
    case TD_GGUF_U64:
    case TD_GGUF_I64:
    case TD_GGUF_F64: return 8;
    default: return 0;
    }
}

/* Little-endian scalar of type t at p into kv->v. */
static void scalar_value(td_gguf_vtype t, const uint8_t *p, td_gguf_kv *kv) {
    uint64_t raw = 0;
    size_t n = scalar_size(t);
    for (size_t i = n; i-- > 0;)
        raw = raw << 8 | p[i];
    switch (t) {
    case TD_GGUF_U8:
    case TD_GGUF_U16:
    case TD_GGUF_U32:
    case TD_GGUF_U64: kv->v.u = raw; break;
    case TD_GGUF_I8: kv->v.i = (int8_t)raw; break;
    case TD_GGUF_I16: kv->v.i = (int16_t)raw; break;
    case TD_GGUF_I32: kv->v.i = (int32_t)raw; break;
    case TD_GGUF_I64: kv->v.i = (int64_t)raw; break;
    case TD_GGUF_BOOL: kv->v.b = raw != 0; break;
    case TD_GGUF_F32: {
        uint32_t b = (uint32_t)raw;
        float f;
        memcpy(&f, &b, 4);
        kv->v.f = f;
        break;
    }
    case TD_GGUF_F64: memcpy(&kv->v.f, &raw, 8); break;
    default: break;
    }
}

static td_status read_value(cursor *c, td_gguf_kv *kv) {
    uint32_t t;
    TD_TRY(rd_u32(c, "value type", &t));
    kv->type = (td_gguf_vtype)t;
    if (t == TD_GGUF_STRING)
        return rd_str(c, "string value", &kv->str);
    if (t != TD_GGUF_ARRAY) {
        size_t n = scalar_size(kv->type);
        if (n == 0)
            return td_fail(c->ctx, TD_ERR_FORMAT, "%s: key '%s' has unknown value type %u at byte %zu", c->label,
                           kv->key, t, c->pos - 4);
        const uint8_t *p = NULL;
        TD_TRY(take(c, n, "scalar value", &p));
        scalar_value(kv->type, p, kv);
        return TD_OK;
    }
    uint32_t et;
    TD_TRY(rd_u32(c, "array element type", &et));
    TD_TRY(rd_u64(c, "array length", &kv->count));
    kv->elem = (td_gguf_vtype)et;
    if (et == TD_GGUF_ARRAY)
        return td_fail(c->ctx, TD_ERR_UNSUPPORTED, "%s: key '%s' is an array of arrays, which no llama-family model "
                       "uses; not supported", c->label, kv->key);
    if (et == TD_GGUF_STRING) {
        /* each string takes at least its 8-byte length */
        if (kv->count > left(c) / 8)
            return bad(c, "string array longer than the file");
        kv->strs = malloc((size_t)(kv->count ? kv->count : 1) * sizeof *kv->strs);
        if (!kv->strs)
            return td_fail_oom(c->ctx, (size_t)kv->count * sizeof *kv->strs, "a GGUF string array");
        kv->data = c->base + c->pos;
        for (uint64_t i = 0; i < kv->count; i++)
            TD_TRY(rd_str(c, "string array element", &kv->strs[i]));
        return TD_OK;
    }
    size_t es = scalar_size(kv->elem);
    if (es == 0)
        return td_fail(c->ctx, TD_ERR_FORMAT, "%s: key '%s' is an array of unknown type %u", c->label, kv->key, et);
    uint64_t bytes;
    if (!td_mul_u64(kv->count, es, &bytes) || bytes > left(c))
        return bad(c, "array longer than the file");
    return take(c, (size_t)bytes, "array", &kv->data);
}

/* ---------------- ggml types ---------------- */

static const struct {
    uint32_t type;
    const char *name;
    uint32_t elems, bytes;
} k_types[] = {
    {TD_GGML_F32, "F32", 1, 4},       {TD_GGML_F16, "F16", 1, 2},       {TD_GGML_BF16, "BF16", 1, 2},
    {TD_GGML_Q4_0, "Q4_0", 32, 18},   {TD_GGML_Q4_1, "Q4_1", 32, 20},   {TD_GGML_Q5_0, "Q5_0", 32, 22},
    {TD_GGML_Q5_1, "Q5_1", 32, 24},   {TD_GGML_Q8_0, "Q8_0", 32, 34},   {TD_GGML_Q8_1, "Q8_1", 32, 36},
    {TD_GGML_Q2_K, "Q2_K", 256, 84},  {TD_GGML_Q3_K, "Q3_K", 256, 110}, {TD_GGML_Q4_K, "Q4_K", 256, 144},
    {TD_GGML_Q5_K, "Q5_K", 256, 176}, {TD_GGML_Q6_K, "Q6_K", 256, 210}, {TD_GGML_Q8_K, "Q8_K", 256, 292},
};

const char *td_ggml_type_name(uint32_t type) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (k_types[i].type == type)
            return k_types[i].name;
    return "?";
}

bool td_ggml_block(uint32_t type, uint32_t *elems, uint32_t *bytes) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (k_types[i].type == type) {
            *elems = k_types[i].elems;
            *bytes = k_types[i].bytes;
            return true;
        }
    return false;
}

bool td_ggml_dequant_supported(uint32_t t) {
    return t == TD_GGML_F32 || t == TD_GGML_F16 || t == TD_GGML_BF16 || t == TD_GGML_Q8_0 || t == TD_GGML_Q4_0 ||
           t == TD_GGML_Q4_1 || t == TD_GGML_Q4_K || t == TD_GGML_Q6_K;
}

/* ---------------- tensors ---------------- */

static td_status read_tensor_info(cursor *c, td_gguf_tensor *t) {
    td_gguf_str name;
    TD_TRY(rd_str(c, "tensor name", &name));
    TD_TRY(name_copy(c, &name, "a tensor name", &t->name));
    uint32_t nd;
    TD_TRY(rd_u32(c, "tensor dimension count", &nd));
    if (nd < 1 || nd > TD_GGUF_MAX_DIMS)
        return td_fail(c->ctx, TD_ERR_FORMAT, "%s: tensor '%s' has %u dimensions (1..%d allowed)", c->label, t->name,
                       nd, TD_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t numel = 1;
    for (int i = 0; i < TD_GGUF_MAX_DIMS; i++)
        t->dims[i] = 1;
    for (uint32_t i = 0; i < nd; i++) {
        uint64_t d;
        TD_TRY(rd_u64(c, "tensor dimension", &d));
        if (d < 1 || d > (uint64_t)INT64_MAX || !td_mul_u64(numel, d, &numel) || numel > (uint64_t)INT64_MAX)
            return td_fail(c->ctx, TD_ERR_FORMAT, "%s: tensor '%s' dimension %u is %llu; dimensions must be >= 1 "
                           "and their product must fit in 63 bits", c->label, t->name, i, (unsigned long long)d);
        t->dims[i] = (int64_t)d;
    }
    t->numel = numel;
    TD_TRY(rd_u32(c, "tensor type", &t->type));
    uint32_t be, bb;
    if (!td_ggml_block(t->type, &be, &bb))
        return td_fail(c->ctx, TD_ERR_UNSUPPORTED, "%s: tensor '%s' has ggml type %u, which tdeploy does not know "
                       "(known: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K..Q8_K)",
                       c->label, t->name, t->type);
    if ((uint64_t)t->dims[0] % be != 0)
        return td_fail(c->ctx, TD_ERR_FORMAT, "%s: tensor '%s' (%s) has rows of %lld elements, not a multiple of its "
                       "block size %u", c->label, t->name, td_ggml_type_name(t->type), (long long)t->dims[0], be);
    if (!td_mul_u64(numel / be, bb, &t->nbytes))
        return td_fail(c->ctx, TD_ERR_FORMAT, "%s: tensor '%s' size overflows", c->label, t->name);
    return rd_u64(c, "tensor offset", &t->offset);
}

static int by_offset(const void *a, const void *b) {
    const td_gguf_tensor *x = *(td_gguf_tensor *const *)a, *y = *(td_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Data inside the file, aligned, without overlaps; names unique. */
static td_status place_tensors(cursor *c, td_gguf *f) {
    td_gguf_tensor **order = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *order);
    if (!order)
        return td_fail_oom(c->ctx, f->n_tensors * sizeof *order, "tensor order");
    td_status st = TD_OK;
    for (size_t i = 0; i < f->n_tensors && st == TD_OK; i++) {
        td_gguf_tensor *t = &f->tensors[i];
        uint64_t start, end;
        if (t->offset % f->alignment != 0)
            st = td_fail(c->ctx, TD_ERR_FORMAT, "%s: tensor '%s' offset %llu is not a multiple of the alignment %llu",
                         c->label, t->name, (unsigned long long)t->offset, (unsigned long long)f->alignment);
        else if (!td_add_u64(f->data_offset, t->offset, &start) || !td_add_u64(start, t->nbytes, &end) ||
                 end > f->size)
            st = td_fail(c->ctx, TD_ERR_FORMAT, "%s: tensor '%s' (%llu bytes at data offset %llu) lies outside the "
                         "file (%zu bytes); the file is truncated", c->label, t->name,
                         (unsigned long long)t->nbytes, (unsigned long long)t->offset, f->size);
        else {
            t->offset = start;
            t->data = f->base + start;
        }
        order[i] = t;
    }
    if (st == TD_OK && f->n_tensors > 1) {
        qsort(order, f->n_tensors, sizeof *order, by_offset);
        for (size_t i = 1; i < f->n_tensors && st == TD_OK; i++) {
            if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset)
                st = td_fail(c->ctx, TD_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", c->label, order[i - 1]->name,
                             order[i]->name);
        }
    }
    free(order);
    return st;
}

static int by_name(const void *a, const void *b, void *names) {
    char *const *n = names;
    return strcmp(n[*(const size_t *)a], n[*(const size_t *)b]);
}

/* The indices of names[n] in name order, kept for binary-search lookups, which also shows any name used twice
 * (a hostile file may hold a million of them: no pairwise comparison, no linear lookup per query). */
static td_status sort_unique(cursor *c, char **names, size_t n, const char *what, size_t **out) {
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        return td_fail_oom(c->ctx, n * sizeof *order, "name table");
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof *order, by_name, names);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[order[i - 1]], names[order[i]])) {
            td_status st = td_fail(c->ctx, TD_ERR_FORMAT, "%s: %s '%s' appears twice", c->label, what,
                                   names[order[i]]);
            free(order);
            return st;
        }
    *out = order;
    return TD_OK;
}

static td_status check_names(cursor *c, td_gguf *f) {
    size_t n = f->n_kvs > f->n_tensors ? f->n_kvs : f->n_tensors;
    char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return td_fail_oom(c->ctx, n * sizeof *names, "name table");
    for (size_t i = 0; i < f->n_kvs; i++)
        names[i] = f->kvs[i].key;
    td_status st = sort_unique(c, names, f->n_kvs, "key", &f->kv_order);
    for (size_t i = 0; i < f->n_tensors; i++)
        names[i] = f->tensors[i].name;
    if (st == TD_OK)
        st = sort_unique(c, names, f->n_tensors, "tensor", &f->tensor_order);
    free(names);
    return st;
}

/* ---------------- file ---------------- */

static td_status parse(cursor *c, td_gguf *f) {
    uint32_t magic;
    TD_TRY(rd_u32(c, "magic", &magic));
    if (magic != GGUF_MAGIC)
        return td_fail(c->ctx, TD_ERR_FORMAT, "%s is not a GGUF file (its first bytes are not \"GGUF\")", c->label);
    TD_TRY(rd_u32(c, "version", &f->version));
    if (f->version == 0x03000000u || f->version == 0x02000000u)
        return td_fail(c->ctx, TD_ERR_UNSUPPORTED, "%s is a big-endian GGUF file; only little-endian files are "
                       "supported", c->label);
    if (f->version != 2 && f->version != 3)
        return td_fail(c->ctx, TD_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (versions 2 and 3 are)",
                       c->label, f->version);
    uint64_t n_tensors, n_kvs;
    TD_TRY(rd_u64(c, "tensor count", &n_tensors));
    TD_TRY(rd_u64(c, "key/value count", &n_kvs));
    /* a key/value takes >= 8 + 1 + 4 + 1 bytes, a tensor info >= 8 + 1 + 4 + 8 + 4 + 8 */
    if (n_kvs > left(c) / 14 || n_tensors > left(c) / 33)
        return td_fail(c->ctx, TD_ERR_FORMAT, "%s: header declares %llu tensors and %llu key/values, more than the "
                       "%zu bytes that follow can hold", c->label, (unsigned long long)n_tensors,
                       (unsigned long long)n_kvs, left(c));
    f->kvs = calloc(n_kvs ? (size_t)n_kvs : 1, sizeof *f->kvs);
    f->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *f->tensors);
    if (!f->kvs || !f->tensors)
        return td_fail_oom(c->ctx, (size_t)n_tensors * sizeof *f->tensors, "GGUF tables");
    f->alignment = DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kvs; i++) {
        td_gguf_kv *kv = &f->kvs[f->n_kvs++];
        td_gguf_str key;
        TD_TRY(rd_str(c, "key", &key));
        TD_TRY(name_copy(c, &key, "a key", &kv->key));
        TD_TRY(read_value(c, kv));
        if (!strcmp(kv->key, "general.alignment")) {
            if (kv->type != TD_GGUF_U32 || kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) || kv->v.u > MAX_ALIGNMENT)
                return td_fail(c->ctx, TD_ERR_FORMAT, "%s: general.alignment must be a u32 power of two up to %u",
                               c->label, MAX_ALIGNMENT);
            f->alignment = kv->v.u;
        }
    }
    for (uint64_t i = 0; i < n_tensors; i++)
        TD_TRY(read_tensor_info(c, &f->tensors[f->n_tensors++]));
    uint64_t pad = (f->alignment - c->pos % f->alignment) % f->alignment;
    if (!td_add_u64(c->pos, pad, &f->data_offset) || (f->n_tensors > 0 && f->data_offset > f->size))
        return bad(c, "tensor data section");
    TD_TRY(check_names(c, f));
    return place_tensors(c, f);
}

void td_gguf_free(td_gguf *f) {
    if (!f)
        return;
    for (size_t i = 0; i < f->n_kvs; i++) {
        free(f->kvs[i].key);
        free(f->kvs[i].strs);
    }
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->kvs);
    free(f->tensors);
    free(f->kv_order);
    free(f->tensor_order);
    td_mapped_file_unref(f->map);
    free(f->path);
    free(f);
}

td_status td_gguf_open_buffer(td_ctx *ctx, const void *data, size_t len, const char *label, td_gguf **out) {
    *out = NULL;
    td_gguf *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(label ? label : "GGUF buffer"))) {
        free(f);
        return td_fail_oom(ctx, sizeof *f, "a GGUF file");
    }
    f->base = data;
    f->size = len;
    cursor c = {.ctx = ctx, .label = f->path, .base = data, .size = len};
    td_status st = parse(&c, f);
    if (st != TD_OK) {
        td_gguf_free(f);
        return st;
    }
    *out = f;
    return TD_OK;
}

td_status td_gguf_open(td_ctx *ctx, const char *path, td_gguf **out) {
    *out = NULL;
    td_mapped_file *m = NULL;
    TD_TRY(td_map_file(ctx, path, &m));
    td_status st = td_gguf_open_buffer(ctx, m->data, m->size, path, out);
    if (st != TD_OK) {
        td_mapped_file_unref(m);
        return st;
    }
    (*out)->map = m;
    return TD_OK;
}

/* ---------------- lookups ---------------- */

const td_gguf_kv *td_gguf_find(const td_gguf *f, const char *key) {
    size_t lo = 0, hi = f->kv_order ? f->n_kvs : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const td_gguf_kv *kv = &f->kvs[f->kv_order[mid]];
        int c = strcmp(kv->key, key);
        if (c == 0)
            return kv;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const td_gguf_tensor *td_gguf_tensor_find(const td_gguf *f, const char *name) {
    size_t lo = 0, hi = f->tensor_order ? f->n_tensors : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const td_gguf_tensor *t = &f->tensors[f->tensor_order[mid]];
        int c = strcmp(t->name, name);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static td_status need(td_ctx *ctx, const td_gguf *f, const char *key, const td_gguf_kv **out) {
    if (!(*out = td_gguf_find(f, key)))
        return td_fail(ctx, TD_ERR_NOT_FOUND, "%s: key '%s' is missing", f->path, key);
    return TD_OK;
}

td_status td_gguf_get_int(td_ctx *ctx, const td_gguf *f, const char *key, int64_t *out) {
    const td_gguf_kv *kv;
    TD_TRY(need(ctx, f, key, &kv));
    switch (kv->type) {
    case TD_GGUF_U8:
    case TD_GGUF_U16:
    case TD_GGUF_U32:
    case TD_GGUF_U64:
        if (kv->v.u > (uint64_t)INT64_MAX)
            break;
        *out = (int64_t)kv->v.u;
        return TD_OK;
    case TD_GGUF_I8:
    case TD_GGUF_I16:
    case TD_GGUF_I32:
    case TD_GGUF_I64: *out = kv->v.i; return TD_OK;
    default: break;
    }
    return td_fail(ctx, TD_ERR_FORMAT, "%s: key '%s' must be an integer", f->path, key);
}

td_status td_gguf_get_float(td_ctx *ctx, const td_gguf *f, const char *key, double *out) {
    const td_gguf_kv *kv;
    TD_TRY(need(ctx, f, key, &kv));
    if (kv->type == TD_GGUF_F32 || kv->type == TD_GGUF_F64) {
        *out = kv->v.f;
        return TD_OK;
    }
    int64_t i;
    if (td_gguf_get_int(ctx, f, key, &i) == TD_OK) {
        *out = (double)i;
        return TD_OK;
    }
    return td_fail(ctx, TD_ERR_FORMAT, "%s: key '%s' must be a number", f->path, key);
}

td_status td_gguf_get_string(td_ctx *ctx, const td_gguf *f, const char *key, char **out) {
    const td_gguf_kv *kv;
    TD_TRY(need(ctx, f, key, &kv));
    if (kv->type != TD_GGUF_STRING || memchr(kv->str.s, 0, (size_t)kv->str.len))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: key '%s' must be a string without NUL bytes", f->path, key);
    *out = strndup(kv->str.s, (size_t)kv->str.len);
    return *out ? TD_OK : td_fail_oom(ctx, (size_t)kv->str.len, "a GGUF string");
}

int64_t td_gguf_array_int(const td_gguf_kv *kv, uint64_t i) {
    td_gguf_kv e = {0};
    size_t es = scalar_size(kv->elem);
    if (kv->type != TD_GGUF_ARRAY || es == 0 || i >= kv->count)
        return 0;
    scalar_value(kv->elem, kv->data + i * es, &e);
    switch (kv->elem) {
    case TD_GGUF_U8:
    case TD_GGUF_U16:
    case TD_GGUF_U32:
    case TD_GGUF_U64: return (int64_t)e.v.u;
    case TD_GGUF_F32:
    case TD_GGUF_F64: /* a float outside int64 (or NaN) would be undefined behaviour to convert: 0 */
        return e.v.f >= -9.2e18 && e.v.f <= 9.2e18 ? (int64_t)e.v.f : 0;
    case TD_GGUF_BOOL: return e.v.b;
    default: return e.v.i;
    }
}

double td_gguf_array_float(const td_gguf_kv *kv, uint64_t i) {
    td_gguf_kv e = {0};
    size_t es = scalar_size(kv->elem);
    if (kv->type != TD_GGUF_ARRAY || es == 0 || i >= kv->count)
        return 0;
    scalar_value(kv->elem, kv->data + i * es, &e);
    if (kv->elem == TD_GGUF_F32 || kv->elem == TD_GGUF_F64)
        return e.v.f;
    return (double)td_gguf_array_int(kv, i);
}

td_status td_gguf_dequantize(td_ctx *ctx, const td_gguf_tensor *t, float *out) {
    if (!td_ggml_dequant_supported(t->type))
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "tensor '%s' is %s; tdeploy dequantizes F32, F16, BF16, Q8_0, Q4_0, "
                       "Q4_1, Q4_K and Q6_K", t->name, td_ggml_type_name(t->type));
    td_ggml_dequantize_row(t->type, t->data, out, (int64_t)t->numel);
    return TD_OK;
}
