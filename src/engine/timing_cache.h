/* GEMM algorithm choices measured by `tdeploy build` (TensorRT's "tactics"),
 * and the timing cache file that keeps them between builds (docs/formats.md,
 * "Timing cache").
 *
 * A choice is the cuBLASLt algorithm configuration that ran fastest for one
 * GEMM shape bucket: (dtype, transB, epilogue, N, K, M bucket), where the M
 * bucket is the power of two the GEMM's row count rounds up to. The engine
 * stores the choices of its GEMMs (section 5); the cache stores every choice
 * measured on one GPU + driver + CUDA + cuBLASLt + tool version, so a rebuild
 * of the same model (or another of the same shapes) measures nothing.
 *
 * The file is hostile input like every other: the parser bounds-checks every
 * count and field and verifies a SHA-256; a damaged file or one for another
 * GPU or version is reported (TD_ERR_FORMAT / stale) and the caller re-tunes,
 * never fails the build. No GPU is needed for any of this. */
#ifndef TD_ENGINE_TIMING_CACHE_H
#define TD_ENGINE_TIMING_CACHE_H

#include "core/ctx.h"
#include "runtime/cuda/tdc_abi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_TCACHE_MAGIC "TDTCACHE"
#define TD_TCACHE_VERSION 1
#define TD_TCACHE_HEADER 128
#define TD_TCACHE_ENTRY 80
#define TD_TCACHE_MAX_ENTRIES 65536
#define TD_TCACHE_MAX_DIM (1ll << 31)

/* What a cache's measurements are valid for: all must match, else the file is stale. */
typedef struct td_tcache_key {
    char tool_version[16]; /* NUL-terminated */
    char gpu_name[64];     /* NUL-terminated */
    uint32_t cc_major, cc_minor, driver_version, cuda_runtime, cublaslt_version;
} td_tcache_key;

typedef struct td_tcache {
    td_tcache_key key;
    tdc_gemm_choice *entries;
    uint32_t n, cap;
} td_tcache;

/* Power of two a GEMM of m rows is tuned and looked up under (m >= 1). */
int64_t td_tcache_bucket(int64_t m);
/* Key of the GPU described by dev (tool version: this tdeploy's). */
void td_tcache_key_of(const tdc_device_info *dev, td_tcache_key *key);

/* Parse len bytes (what names them in messages) into c (entries allocated; free with td_tcache_clear).
 * TD_ERR_FORMAT for any damage. The key is read, not compared: see td_tcache_key_equal. */
td_status td_tcache_parse(td_ctx *ctx, const uint8_t *data, size_t len, const char *what, td_tcache *c);
bool td_tcache_key_equal(const td_tcache_key *a, const td_tcache_key *b);
/* Serialize to a malloc'ed buffer (header, entries, SHA-256). */
td_status td_tcache_serialize(td_ctx *ctx, const td_tcache *c, uint8_t **out, size_t *len);
void td_tcache_clear(td_tcache *c);

/* The entry for a shape (m already a bucket), or NULL. */
const tdc_gemm_choice *td_tcache_find(const td_tcache *c, int32_t dtype, int32_t trans_b, int32_t epilogue,
                                      int64_t m, int64_t n, int64_t k);
/* Add or replace an entry. */
td_status td_tcache_put(td_ctx *ctx, td_tcache *c, const tdc_gemm_choice *e);
/* Checks of one entry read from a file (cache or engine section); false with a reason in why. */
bool td_tcache_entry_ok(const tdc_gemm_choice *e, char *why, size_t n);
/* One entry to / from its 80 bytes (little-endian, docs/formats.md). */
void td_tcache_entry_encode(const tdc_gemm_choice *e, uint8_t *p);
void td_tcache_entry_decode(const uint8_t *p, tdc_gemm_choice *e);

/* The default cache file: $XDG_CACHE_HOME/tdeploy/timing-cache.bin, else ~/.cache/tdeploy/timing-cache.bin
 * (malloc'ed; NULL when neither variable gives a directory). */
char *td_tcache_default_path(void);

/* Load path into c for key: missing file -> empty cache, TD_OK; a damaged file or one for another key ->
 * empty cache, TD_OK, and a sentence in note saying why it is not used (the build re-tunes and rewrites it). */
td_status td_tcache_load(td_ctx *ctx, const char *path, const td_tcache_key *key, td_tcache *c, char *note,
                         size_t note_n);
/* Write c to path atomically, creating its directory and missing parents (nothing existing is changed). */
td_status td_tcache_save(td_ctx *ctx, const char *path, const td_tcache *c);

#endif
