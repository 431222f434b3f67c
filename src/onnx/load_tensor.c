/* TensorProto -> td_tensor: raw_data or the typed fields become little-endian
 * bytes, every length is checked against dims x dtype, raw_data that the
 * splitter left in the mapped file is used in place when aligned. */
#define _GNU_SOURCE
#include "onnx/load_internal.h"

#include "core/checked.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ONNX loader assumes a little-endian host (raw_data is little-endian)"
#endif

#define MAX_TENSOR_RANK 1024

/* Fields of TensorProto the IR models (everything else stays in pb_extra). */
static const uint32_t tensor_tags[] = {1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};

static bool dtype_supported(int32_t dt) {
    return dt > 0 && dt < TD_DTYPE_MAX && (dt == TD_STRING || td_dtype_size((td_dtype)dt) > 0);
}

/* Which typed field ONNX uses for a dtype, and how many values per element. */
static int typed_field_for(td_dtype dt, int *per_elem) {
    *per_elem = 1;
    switch (dt) {
    case TD_F32: return TD_PBX_DATA_FLOAT;
    case TD_C64: *per_elem = 2; return TD_PBX_DATA_FLOAT;
    case TD_I32: case TD_I16: case TD_I8: case TD_U16: case TD_U8: case TD_BOOL: case TD_F16: case TD_BF16:
    case TD_F8E4M3FN: case TD_F8E4M3FNUZ: case TD_F8E5M2: case TD_F8E5M2FNUZ:
        return TD_PBX_DATA_INT32;
    case TD_STRING: return TD_PBX_DATA_STRING;
    case TD_I64: return TD_PBX_DATA_INT64;
    case TD_F64: return TD_PBX_DATA_DOUBLE;
    case TD_C128: *per_elem = 2; return TD_PBX_DATA_DOUBLE;
    case TD_U32: case TD_U64: return TD_PBX_DATA_UINT64;
    default: return TD_PBX_DATA_NONE;
    }
}

static const char *field_name(int kind) {
    static const char *const names[] = {"(none)", "raw_data", "float_data", "int32_data", "string_data",
                                        "int64_data", "double_data", "uint64_data", "external data"};
    return kind >= 0 && kind <= TD_PBX_DATA_EXTERNAL ? names[kind] : "?";
}

/* memcpy into fresh memory, 512 KB at a time, each piece's pages faulted in by
 * one MADV_POPULATE_WRITE call first: a weight's 4 KB pages then cost one
 * system call per 128 pages instead of one page fault each, and each piece is
 * still in L2 (just zeroed by the kernel) when the copy writes it. Measured on
 * bert-large's 1.3 GB of misaligned weights: 0.51-0.56 s CPU against
 * 0.61-0.77 s for one memcpy. The advice is only that: without it (older
 * kernels) the copy faults the pages in as usual. */
static void copy_to_fresh(uint8_t *dst, const uint8_t *src, size_t n) {
#ifdef MADV_POPULATE_WRITE
    const size_t piece = 512u << 10;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (n >= 2 * piece && page > 0) {
        for (size_t off = 0; off < n; off += piece) {
            size_t len = n - off < piece ? n - off : piece;
            uintptr_t a = ((uintptr_t)(dst + off) + page - 1) & ~(page - 1);
            uintptr_t b = ((uintptr_t)(dst + off + len)) & ~(page - 1);
            if (b > a)
                madvise((void *)a, b - a, MADV_POPULATE_WRITE);
            memcpy(dst + off, src + off, len);
        }
        return;
    }
#endif
    memcpy(dst, src, n);
}

/* Copy n bytes into a 64-byte aligned buffer; then drop the source pages from
 * our resident set (the mapping is read-only, so they fault back in from the
 * page cache if anyone reads them again). */
static void *aligned_copy(const uint8_t *src, size_t n, bool src_is_mapped) {
    void *buf = NULL;
    if (posix_memalign(&buf, 64, n ? n : 1) != 0)
        return NULL;
    copy_to_fresh(buf, src, n);
    if (src_is_mapped && n >= 1 << 16) {
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t a = ((uintptr_t)src + page - 1) & ~(page - 1);
        uintptr_t b = ((uintptr_t)src + n) & ~(page - 1);
        if (b > a)
            madvise((void *)a, b - a, MADV_DONTNEED);
    }
    return buf;
}

static size_t natural_align(td_dtype dt) {
    size_t e = td_dtype_size(dt);
    if (dt == TD_C64)
        e = 4;
    if (dt == TD_C128)
        e = 8;
    return e ? e : 1;
}

/* Tensor of an unsupported or sub-byte dtype: keep the whole TensorProto. */
static td_status opaque_tensor(td_onnx_loader *L, Onnx__TensorProto *tp, const td_raw_slice *raw, int rank,
                               td_tensor **out) {
    td_ctx *ctx = L->ctx;
    bool put_raw = raw && raw->data;
    int had = tp->has_raw_data;
    ProtobufCBinaryData saved = tp->raw_data;
    if (put_raw) {
        tp->has_raw_data = 1;
        tp->raw_data.data = (uint8_t *)raw->data;
        tp->raw_data.len = raw->len;
    }
    size_t len = protobuf_c_message_get_packed_size(&tp->base);
    td_pb_extra *x = malloc(sizeof *x + len);
    td_tensor *t = calloc(1, sizeof *t);
    td_status s = TD_OK;
    if (!x || !t || !(t->name = strdup(tp->name ? tp->name : "")) ||
        !(t->dims = malloc(sizeof(int64_t) * (size_t)(rank ? rank : 1)))) {
        s = td_fail_oom(ctx, len, "a tensor kept verbatim");
        goto out;
    }
    x->flags = TD_PBX_OPAQUE;
    x->aux = 0;
    x->len = protobuf_c_message_pack(&tp->base, x->bytes);
    t->dtype = (td_dtype)tp->data_type;
    t->rank = rank;
    if (rank)
        memcpy(t->dims, tp->dims, sizeof(int64_t) * (size_t)rank);
    t->pb_extra = x;
    x = NULL;
    *out = t;
    t = NULL;
out:
    if (put_raw) {
        tp->has_raw_data = had;
        tp->raw_data = saved;
    }
    free(x);
    td_tensor_free(t);
    return s;
}

/* Narrow int32_data values to 8- or 16-bit elements. */
static void *narrow_int32(const int32_t *v, size_t n, size_t esize) {
    void *buf = NULL;
    if (posix_memalign(&buf, 64, n ? n * esize : 1) != 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (esize == 1)
            ((uint8_t *)buf)[i] = (uint8_t)v[i];
        else
            ((uint16_t *)buf)[i] = (uint16_t)v[i];
    }
    return buf;
}

static void *narrow_uint64(const uint64_t *v, size_t n) {
    uint32_t *buf = malloc(n ? n * 4 : 1);
    if (buf)
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint32_t)v[i];
    return buf;
}

static td_status string_tensor(td_ctx *ctx, Onnx__TensorProto *tp, const char *name, int rank, size_t numel,
                               td_tensor **out) {
    TD_TRY(td_tensor_new_owned(ctx, name, TD_STRING, rank, tp->dims, NULL, 0, out));
    td_tensor *t = *out;
    t->strings = calloc(numel ? numel : 1, sizeof(char *));
    t->string_lens = calloc(numel ? numel : 1, sizeof(size_t));
    if (!t->strings || !t->string_lens)
        goto oom;
    for (size_t i = 0; i < numel; i++) {
        const ProtobufCBinaryData *b = &tp->string_data[i];
        t->strings[i] = malloc(b->len + 1);
        if (!t->strings[i])
            goto oom;
        if (b->len)
            memcpy(t->strings[i], b->data, b->len);
        t->strings[i][b->len] = 0;
        t->string_lens[i] = b->len;
    }
    return TD_OK;
oom:
    td_tensor_free(t);
    *out = NULL;
    return td_fail_oom(ctx, numel * sizeof(char *), "string tensor data");
}

td_status td_onnx_load_tensor(td_onnx_loader *L, Onnx__TensorProto *tp, const td_raw_slice *raw, td_tensor **out) {
    td_ctx *ctx = L->ctx;
    const char *name = tp->name ? tp->name : "";
    td_tensor *t = NULL;
    td_status s = TD_OK;
    *out = NULL;
    if (tp->n_dims > MAX_TENSOR_RANK)
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' has rank %zu (more than %d dims)", name, tp->n_dims,
                       MAX_TENSOR_RANK);
    int rank = (int)tp->n_dims;
    for (int i = 0; i < rank; i++)
        if (tp->dims[i] < 0)
            return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' has negative dimension %d (%lld)", name, i,
                           (long long)tp->dims[i]);
    int64_t numel64;
    if (!td_shape_numel(tp->dims, rank, &numel64) || (uint64_t)numel64 > SIZE_MAX)
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': the product of its dims overflows", name);
    size_t numel = (size_t)numel64;
    int32_t dt32 = tp->has_data_type ? tp->data_type : 0;
    if (!dtype_supported(dt32))
        return opaque_tensor(L, tp, raw, rank, out);
    td_dtype dt = (td_dtype)dt32;

    /* Exactly one data source. */
    bool raw_in_src = raw && raw->data;
    bool is_external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    int kind = TD_PBX_DATA_NONE, n_sources = 0;
    struct { bool present; int kind; } src[] = {
        {raw_in_src || tp->has_raw_data, TD_PBX_DATA_RAW},  {tp->n_float_data > 0, TD_PBX_DATA_FLOAT},
        {tp->n_int32_data > 0, TD_PBX_DATA_INT32},           {tp->n_string_data > 0, TD_PBX_DATA_STRING},
        {tp->n_int64_data > 0, TD_PBX_DATA_INT64},           {tp->n_double_data > 0, TD_PBX_DATA_DOUBLE},
        {tp->n_uint64_data > 0, TD_PBX_DATA_UINT64},         {is_external, TD_PBX_DATA_EXTERNAL},
    };
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++)
        if (src[i].present) {
            if (n_sources++)
                return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' has data in both %s and %s; use exactly one", name,
                               field_name(kind), field_name(src[i].kind));
            kind = src[i].kind;
        }

    size_t esize = td_dtype_size(dt), nbytes = 0;
    if (dt != TD_STRING && !td_mul_size(numel, esize, &nbytes))
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': %zu elements of %s overflow the address space", name, numel,
                       td_dtype_name(dt));
    if (dt == TD_STRING && kind != TD_PBX_DATA_STRING && kind != TD_PBX_DATA_NONE)
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' of type string stores its data in %s; strings must use "
                       "string_data", name, field_name(kind));
    int per_elem;
    int want_typed = typed_field_for(dt, &per_elem);
    if (kind >= TD_PBX_DATA_FLOAT && kind <= TD_PBX_DATA_UINT64 && kind != want_typed)
        return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' of type %s stores its data in %s; ONNX requires %s", name,
                       td_dtype_name(dt), field_name(kind), field_name(want_typed));
    size_t want_count = numel * (size_t)per_elem; /* cannot overflow: numel*esize did not */

    switch (kind) {
    case TD_PBX_DATA_NONE:
        if (numel != 0 && dt != TD_STRING)
            return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' has no data but its dims need %zu bytes", name, nbytes);
        if (dt == TD_STRING) {
            if (numel != 0)
                return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s' has no strings but its dims need %zu", name, numel);
            s = string_tensor(ctx, tp, name, rank, 0, &t);
        } else {
            s = td_tensor_new_owned(ctx, name, dt, rank, tp->dims, NULL, 0, &t);
        }
        break;
    case TD_PBX_DATA_RAW: {
        const uint8_t *p = raw_in_src ? raw->data : tp->raw_data.data;
        size_t len = raw_in_src ? raw->len : tp->raw_data.len;
        if (len != nbytes)
            return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': raw_data has %zu bytes but dims x %s need %zu", name, len,
                           td_dtype_name(dt), nbytes);
        if (nbytes == 0) {
            s = td_tensor_new_owned(ctx, name, dt, rank, tp->dims, NULL, 0, &t);
        } else if (raw_in_src && (uintptr_t)p % natural_align(dt) == 0) {
            s = td_tensor_new_mapped(ctx, name, dt, rank, tp->dims, L->src, (size_t)(p - L->src->data), nbytes, &t);
        } else if (!raw_in_src && (uintptr_t)p % natural_align(dt) == 0) {
            tp->raw_data.data = NULL; /* steal protobuf-c's malloc'd copy */
            tp->raw_data.len = 0;
            s = td_tensor_new_owned(ctx, name, dt, rank, tp->dims, (void *)p, nbytes, &t);
        } else {
            void *buf = aligned_copy(p, nbytes, raw_in_src);
            if (!buf)
                return td_fail_oom(ctx, nbytes, "tensor data");
            s = td_tensor_new_owned(ctx, name, dt, rank, tp->dims, buf, nbytes, &t);
        }
        break;
    }
    case TD_PBX_DATA_STRING:
        if (tp->n_string_data != numel)
            return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': string_data has %zu strings but its dims need %zu", name,
                           tp->n_string_data, numel);
        s = string_tensor(ctx, tp, name, rank, numel, &t);
        break;
    case TD_PBX_DATA_EXTERNAL: {
        td_mapped_file *m = NULL;
        size_t off = 0;
        char *loc = NULL;
        TD_TRY(td_onnx_external_data(L, tp, name, nbytes, &m, &off, &loc));
        const uint8_t *p = nbytes ? m->data + off : NULL;
        if (!p || (uintptr_t)p % natural_align(dt) == 0) {
            s = td_tensor_new_mapped(ctx, name, dt, rank, tp->dims, m, off, nbytes, &t);
        } else {
            void *buf = aligned_copy(p, nbytes, true);
            s = buf ? td_tensor_new_owned(ctx, name, dt, rank, tp->dims, buf, nbytes, &t)
                    : td_fail_oom(ctx, nbytes, "tensor data");
        }
        td_mapped_file_unref(m);
        if (s == TD_OK)
            t->external_location = loc;
        else
            free(loc);
        break;
    }
    default: { /* typed numeric fields */
        size_t count = kind == TD_PBX_DATA_FLOAT ? tp->n_float_data
                     : kind == TD_PBX_DATA_INT32 ? tp->n_int32_data
                     : kind == TD_PBX_DATA_INT64 ? tp->n_int64_data
                     : kind == TD_PBX_DATA_DOUBLE ? tp->n_double_data : tp->n_uint64_data;
        if (count != want_count)
            return td_fail(ctx, TD_ERR_FORMAT, "tensor '%s': %s has %zu values but dims x %s need %zu", name,
                           field_name(kind), count, td_dtype_name(dt), want_count);
        void *buf = NULL;
        if (kind == TD_PBX_DATA_FLOAT) {
            buf = tp->float_data, tp->float_data = NULL, tp->n_float_data = 0;
        } else if (kind == TD_PBX_DATA_INT64) {
            buf = tp->int64_data, tp->int64_data = NULL, tp->n_int64_data = 0;
        } else if (kind == TD_PBX_DATA_DOUBLE) {
            buf = tp->double_data, tp->double_data = NULL, tp->n_double_data = 0;
        } else if (kind == TD_PBX_DATA_UINT64 && dt == TD_U64) {
            buf = tp->uint64_data, tp->uint64_data = NULL, tp->n_uint64_data = 0;
        } else if (kind == TD_PBX_DATA_UINT64) {
            buf = narrow_uint64(tp->uint64_data, count);
        } else if (dt == TD_I32) {
            buf = tp->int32_data, tp->int32_data = NULL, tp->n_int32_data = 0;
        } else {
            buf = narrow_int32(tp->int32_data, count, esize);
        }
        if (!buf && nbytes)
            return td_fail_oom(ctx, nbytes, "tensor data");
        s = td_tensor_new_owned(ctx, name, dt, rank, tp->dims, buf, nbytes, &t);
        break;
    }
    }
    if (s != TD_OK)
        return s;

    uint32_t flags = (uint32_t)kind << TD_PBX_DATA_SHIFT;
    if (tp->name)
        flags |= TD_PBX_NAME_SET;
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT)
        flags |= TD_PBX_LOCATION_SET;
    if (tp->doc_string && !(t->doc_string = strdup(tp->doc_string))) {
        td_tensor_free(t);
        return td_fail_oom(ctx, strlen(tp->doc_string), "a doc string");
    }
    td_pb_extra *x;
    s = td_pbx_residual(ctx, &tp->base, tensor_tags, sizeof tensor_tags / sizeof tensor_tags[0], flags, 0, &x);
    if (s != TD_OK) {
        td_tensor_free(t);
        return s;
    }
    t->pb_extra = x;
    *out = t;
    return TD_OK;
}
