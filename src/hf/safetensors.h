/* safetensors files: a strict, zero-copy reader and an atomic writer.
 *
 * File layout (https://github.com/huggingface/safetensors, format section):
 *   [8 bytes: header length N, little-endian u64]
 *   [N bytes: UTF-8 JSON object  {"__metadata__": {str: str}?, "<name>": {"dtype", "shape", "data_offsets"}, ...}]
 *   [data section: every tensor's bytes, row-major little-endian, offsets relative to the section start]
 *
 * The reader maps the file read-only and checks every rule of the format before
 * it hands out a single tensor: N <= 100 MB and 8 + N <= file size; the header is
 * valid UTF-8 and a JSON object; each entry has a known dtype, a shape of
 * non-negative integers and two data offsets; shape x dtype size (overflow-
 * checked) equals end - begin; sorted by offset, the tensors start at 0, touch
 * without gap or overlap and end exactly at the end of the file; no name appears
 * twice; __metadata__ maps strings to strings. A file that breaks any rule is
 * rejected with TD_ERR_FORMAT (or TD_ERR_UNSUPPORTED for a dtype tdeploy does not
 * know, TD_ERR_OVERFLOW for sizes that do not fit) and a message naming the file,
 * the tensor and the byte offset.
 *
 * Tensor data is never copied: td_st_tensor.data points into the mapping, which
 * lives until the td_safetensors (and every extra reference taken on
 * td_st_tensor.map) is released.
 *
 * Most callers want the checkpoint API in hf/checkpoint.h, which hides whether a
 * model's weights are one file or several shards. */
#ifndef TD_HF_SAFETENSORS_H
#define TD_HF_SAFETENSORS_H

#include "core/dtype.h"
#include "core/fs.h"
#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits from the reference implementation. */
#define TD_ST_MAX_HEADER_BYTES 100000000ull

/* One tensor of an open file. Everything is owned by the td_safetensors it came from. */
typedef struct td_st_tensor {
    const char *name;
    td_dtype dtype;          /* TD_F32, TD_BF16, ... (ONNX numbering, see core/dtype.h) */
    int rank;                /* 0 for a scalar */
    const int64_t *dims;     /* rank entries (NULL when rank == 0) */
    int64_t numel;           /* product of dims (1 for a scalar) */
    const void *data;        /* first byte inside the mapping; NULL when nbytes == 0 */
    size_t nbytes;           /* numel * td_dtype_size(dtype) */
    uint64_t file_offset;    /* absolute byte offset of data in the file (for messages) */
    td_mapped_file *map;     /* the mapping data points into (NULL for from-memory files);
                              * take td_mapped_file_ref() to keep data alive past td_st_close */
    const char *path;        /* file the tensor lives in */
} td_st_tensor;

typedef struct td_safetensors td_safetensors;

/* Map and validate path. On success *out owns the map; free it with td_st_close. */
td_status td_st_open(td_ctx *ctx, const char *path, td_safetensors **out);

/* Validate a file image already in memory (fuzzing, tests). data must outlive the
 * handle; it is not copied. label names the buffer in error messages. */
td_status td_st_open_memory(td_ctx *ctx, const void *data, size_t size, const char *label, td_safetensors **out);

void td_st_close(td_safetensors *st); /* NULL is harmless */

const char *td_st_path(const td_safetensors *st);
size_t td_st_count(const td_safetensors *st);
/* i-th tensor in file order (ascending data offset), i < td_st_count. */
const td_st_tensor *td_st_tensor_at(const td_safetensors *st, size_t i);
/* Tensor by exact name (binary search), NULL if absent. */
const td_st_tensor *td_st_find(const td_safetensors *st, const char *name);
/* Size of the data section (sum of all tensors' nbytes). */
uint64_t td_st_data_bytes(const td_safetensors *st);

/* __metadata__: value for key or NULL; count and i-th pair in header order. */
const char *td_st_metadata_get(const td_safetensors *st, const char *key);
size_t td_st_metadata_count(const td_safetensors *st);
void td_st_metadata_at(const td_safetensors *st, size_t i, const char **key, const char **value);

/* ---- writer ---- */

/* One tensor to write. data holds numel * td_dtype_size(dtype) bytes, row-major
 * little-endian; it may be NULL only when that size is 0. */
typedef struct td_st_write_tensor {
    const char *name;
    td_dtype dtype;
    int rank;
    const int64_t *dims;
    const void *data;
} td_st_write_tensor;

/* Write tensors (in the given order) and optional metadata (n_meta key/value pairs,
 * meta_keys[i] -> meta_values[i]) to path atomically: a reader never sees a partial
 * file. The header is padded with spaces to a multiple of 8 bytes, as the reference
 * implementation does, so the data section starts 8-byte aligned. Names must be
 * unique, non-NULL and not "__metadata__"; dtypes must have a safetensors spelling. */
td_status td_st_write(td_ctx *ctx, const char *path, const td_st_write_tensor *tensors, size_t n,
                      const char *const *meta_keys, const char *const *meta_values, size_t n_meta);

/* ---- helpers shared with the other hf/ parsers ---- */

/* True when s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or code
 * points above U+10FFFF). On failure *bad_at is the offset of the first bad byte. */
bool td_utf8_valid(const uint8_t *s, size_t n, size_t *bad_at);

#endif
