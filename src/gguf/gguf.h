/* GGUF reader (llama.cpp's model file format, versions 2 and 3, little-endian).
 *
 *     td_gguf *f;
 *     TD_TRY(td_gguf_open(ctx, "model.gguf", &f));
 *     const td_gguf_kv *arch = td_gguf_find(f, "general.architecture");   // STRING
 *     const td_gguf_tensor *t = td_gguf_tensor_find(f, "blk.0.attn_q.weight");
 *     float *w = malloc(t->numel * sizeof *w);
 *     TD_TRY(td_gguf_dequantize(ctx, t, w));                              // row-major, dims[0] fastest
 *     td_gguf_free(f);
 *
 * The file is mmapped; tensors and strings point into the mapping. The parser is
 * written for hostile input: every count, length, offset and size is bounds- and
 * overflow-checked before use, counts are bounded by the bytes left (so a header
 * cannot make it allocate more than the file could describe), names and keys
 * must be unique and NUL-free, tensor data must lie inside the file, aligned,
 * without overlaps, and its row length must be a whole number of quantization
 * blocks. Errors are TD_ERR_FORMAT naming the file, the byte offset and the item.
 *
 * Layout (all little-endian): magic "GGUF", u32 version, u64 tensor count, u64
 * key/value count, the key/values (string key, u32 value type, value), the tensor
 * infos (string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset),
 * padding to general.alignment (default 32), then the tensor data. Strings are a
 * u64 length and bytes. dims[0] is the fastest-varying axis: a torch tensor of
 * shape (rows, cols) is stored with dims {cols, rows}. */
#ifndef TD_GGUF_GGUF_H
#define TD_GGUF_GGUF_H

#include "core/ctx.h"
#include "core/fs.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum td_gguf_vtype {
    TD_GGUF_U8 = 0, TD_GGUF_I8 = 1, TD_GGUF_U16 = 2, TD_GGUF_I16 = 3, TD_GGUF_U32 = 4, TD_GGUF_I32 = 5,
    TD_GGUF_F32 = 6, TD_GGUF_BOOL = 7, TD_GGUF_STRING = 8, TD_GGUF_ARRAY = 9, TD_GGUF_U64 = 10, TD_GGUF_I64 = 11,
    TD_GGUF_F64 = 12,
} td_gguf_vtype;

/* ggml tensor types (ggml.h numbering) this reader knows the block layout of. */
enum {
    TD_GGML_F32 = 0, TD_GGML_F16 = 1, TD_GGML_Q4_0 = 2, TD_GGML_Q4_1 = 3, TD_GGML_Q5_0 = 6, TD_GGML_Q5_1 = 7,
    TD_GGML_Q8_0 = 8, TD_GGML_Q8_1 = 9, TD_GGML_Q2_K = 10, TD_GGML_Q3_K = 11, TD_GGML_Q4_K = 12,
    TD_GGML_Q5_K = 13, TD_GGML_Q6_K = 14, TD_GGML_Q8_K = 15, TD_GGML_BF16 = 30,
};

typedef struct td_gguf_str {
    const char *s; /* into the mapping, NOT NUL-terminated */
    uint64_t len;
} td_gguf_str;

typedef struct td_gguf_kv {
    char *key;                /* NUL-terminated copy */
    td_gguf_vtype type;
    /* scalars */
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
    } v;
    td_gguf_str str;          /* TD_GGUF_STRING */
    /* TD_GGUF_ARRAY of a fixed-size type: count elements at data (little-endian, unaligned);
     * of strings: strs[count] */
    td_gguf_vtype elem;
    uint64_t count;
    const uint8_t *data;
    td_gguf_str *strs;        /* malloc'd, string arrays only */
} td_gguf_kv;

#define TD_GGUF_MAX_DIMS 4

typedef struct td_gguf_tensor {
    char *name;               /* NUL-terminated copy */
    uint32_t type;            /* TD_GGML_* */
    int n_dims;
    int64_t dims[TD_GGUF_MAX_DIMS]; /* dims[0] fastest; unused entries 1 */
    uint64_t numel;
    uint64_t offset;          /* absolute byte offset in the file */
    uint64_t nbytes;
    const uint8_t *data;      /* into the mapping */
} td_gguf_tensor;

typedef struct td_gguf {
    char *path;
    td_mapped_file *map;      /* NULL for td_gguf_open_buffer */
    const uint8_t *base;
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    td_gguf_kv *kvs;
    size_t n_kvs;
    td_gguf_tensor *tensors;
    size_t n_tensors;
    size_t *kv_order, *tensor_order; /* indices in name order: td_gguf_find / td_gguf_tensor_find bisect them */
} td_gguf;

td_status td_gguf_open(td_ctx *ctx, const char *path, td_gguf **out);
/* Parse bytes already in memory (borrowed: they must outlive the result); label names them in messages. */
td_status td_gguf_open_buffer(td_ctx *ctx, const void *data, size_t len, const char *label, td_gguf **out);
void td_gguf_free(td_gguf *f); /* NULL is harmless */

const td_gguf_kv *td_gguf_find(const td_gguf *f, const char *key);
const td_gguf_tensor *td_gguf_tensor_find(const td_gguf *f, const char *name);

/* Typed getters: missing key -> TD_ERR_NOT_FOUND, other type -> TD_ERR_FORMAT (named). Any integer
 * type converts to int64 when in range; F32/F64 to double. *out is a malloc'd NUL-terminated copy
 * (NUL bytes inside are an error). */
td_status td_gguf_get_int(td_ctx *ctx, const td_gguf *f, const char *key, int64_t *out);
td_status td_gguf_get_float(td_ctx *ctx, const td_gguf *f, const char *key, double *out);
td_status td_gguf_get_string(td_ctx *ctx, const td_gguf *f, const char *key, char **out);
/* Element i of an integer or float array as int64 / double (0 when i is out of range, the kv is no such array,
 * or a float does not fit in int64). */
int64_t td_gguf_array_int(const td_gguf_kv *kv, uint64_t i);
double td_gguf_array_float(const td_gguf_kv *kv, uint64_t i);

/* "Q4_K", ... ("?" when unknown). */
const char *td_ggml_type_name(uint32_t type);
/* Elements and bytes of one block of type; false for a type this reader does not know. */
bool td_ggml_block(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes);
/* True for the types td_gguf_dequantize handles: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K. */
bool td_ggml_dequant_supported(uint32_t type);

/* All of t as float32 (t->numel values, dims[0] fastest). An unsupported type is TD_ERR_UNSUPPORTED naming it. */
td_status td_gguf_dequantize(td_ctx *ctx, const td_gguf_tensor *t, float *out);
/* n elements (a whole number of blocks) of type at src -> dst. The plain reference loops (gguf_dequant.c). */
void td_ggml_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

#endif
