/* Engine files (docs/formats.md, "Engine file"): the fused graph of
 * `tdeploy optimize` at the engine's precision, its weights 256-byte aligned,
 * shape profiles with their planned activation memory, the kernel chosen for
 * each node, the target GPU and tool versions, the model's tokenizer/config
 * files, and a SHA-256 of everything.
 *
 * Parsing (td_engine_parse, td_engine_verify) needs no GPU and treats the
 * bytes as hostile: every count, offset and size is checked before use.
 * Loading (td_engine_load) maps the file, verifies it and builds the in-memory
 * model whose initializers point straight into the mapping (no copy), ready
 * to be uploaded by the CUDA backend. */
#ifndef TD_ENGINE_ENGINE_H
#define TD_ENGINE_ENGINE_H

#include "core/ctx.h"
#include "core/fs.h"
#include "onnx/ir.h"
#include "runtime/cuda/tdc_abi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_ENGINE_MAGIC "TDENGINE"
#define TD_ENGINE_FORMAT_VERSION 1
#define TD_ENGINE_HEADER_FIXED 256
#define TD_ENGINE_PROFILE_BYTES 48
#define TD_ENGINE_SECTION_BYTES 32
#define TD_ENGINE_MAX_PROFILES 16
#define TD_ENGINE_MAX_SECTIONS 16
#define TD_ENGINE_ALIGN 256
#define TD_ENGINE_MAX_DIM (1u << 20)
#define TD_ENGINE_WEIGHTS_NAME "engine-weights.bin" /* external-data location the plan uses for the weights section */

typedef enum td_engine_section_kind {
    TD_ENGINE_SEC_PLAN = 1,    /* ONNX ModelProto of the fused graph; large initializers external in WEIGHTS */
    TD_ENGINE_SEC_WEIGHTS = 2, /* raw tensor bytes, each 256-byte aligned in the file */
    TD_ENGINE_SEC_KERNELS = 3, /* UTF-8 text: one "node<TAB>op<TAB>kernel" line per node run on the GPU */
    TD_ENGINE_SEC_FILES = 4,   /* model directory files (config.json, tokenizer ...): see docs/formats.md */
    TD_ENGINE_SEC_GEMMS = 5,   /* measured cuBLASLt algorithm per GEMM shape bucket (timing_cache.h records) */
    TD_ENGINE_SEC_MAX = 5
} td_engine_section_kind;

typedef struct td_engine_profile {
    uint32_t min_b, min_s, opt_b, opt_s, max_b, max_s;
    uint64_t arena_bytes; /* activation arena planned for max_b x max_s */
    uint64_t naive_bytes; /* sum of the activations' sizes at max_b x max_s */
} td_engine_profile;

typedef struct td_engine_section {
    uint32_t kind;
    uint64_t offset, size;
} td_engine_section;

typedef struct td_engine_info {
    uint32_t format_version;
    char tool_version[16]; /* NUL-terminated */
    char gpu_name[64];     /* NUL-terminated */
    uint32_t cc_major, cc_minor, cuda_runtime, precision; /* precision: td_precision */
    uint32_t n_profiles, n_sections;
    td_engine_profile profiles[TD_ENGINE_MAX_PROFILES];
    td_engine_section sections[TD_ENGINE_MAX_SECTIONS];
    uint64_t file_size;
    uint8_t sha256[32];
    const uint8_t *gemms; /* GEMMS section's records (80 bytes each, checked), inside the parsed bytes; or NULL */
    uint32_t n_gemms;
} td_engine_info;

/* True when data starts with the engine magic (a cheap sniff for "is this an engine file"). */
/* A fixed-size string field of an engine or timing-cache header: it must end in NUL and hold nothing after it;
 * copies the n-byte field p into out (n bytes). */
bool td_engine_str_field(const uint8_t *p, size_t n, char *out);
bool td_engine_sniff(const void *data, size_t len);
/* Parse and check the header, profiles and section table of len bytes (what
 * names the file in messages). Does not hash the payload. */
td_status td_engine_parse(td_ctx *ctx, const uint8_t *data, size_t len, const char *what, td_engine_info *out);
/* Recompute the SHA-256 and compare it with the header's. */
td_status td_engine_verify(td_ctx *ctx, const uint8_t *data, size_t len, const char *what, const td_engine_info *info);
/* The section of a kind, or NULL. */
const td_engine_section *td_engine_find(const td_engine_info *info, uint32_t kind);
/* Index of the first profile holding batch x seq, or -1. */
int td_engine_profile_for(const td_engine_info *info, int64_t batch, int64_t seq);
/* "min 1x16 opt 8x128 max 32x512; ..." for messages. */
void td_engine_profiles_str(const td_engine_info *info, char *buf, size_t n);

/* What the builder writes. */
typedef struct td_engine_meta {
    char gpu_name[64];
    uint32_t cc_major, cc_minor, cuda_runtime, precision;
    uint32_t n_profiles;
    td_engine_profile profiles[TD_ENGINE_MAX_PROFILES];
    const char *kernels;   /* KERNELS text, or NULL */
    const tdc_gemm_choice *gemms; /* measured GEMM algorithms (GEMMS section), n_gemms of them; NULL = none */
    uint32_t n_gemms;
    const char *model_dir; /* directory whose config/tokenizer files go into FILES, or NULL */
} td_engine_meta;

/* Write model (the fused graph at the engine precision) as an engine file,
 * atomically (a failure leaves no file behind). */
td_status td_engine_write(td_ctx *ctx, const char *path, const td_model *model, const td_engine_meta *meta);

/* A loaded engine: the mapping, its parsed header and the model over it. */
typedef struct td_engine {
    td_mapped_file *map;
    td_engine_info info;
    td_model *model;
} td_engine;

/* Map, parse, verify (SHA-256), check the tool version and build the model. */
td_status td_engine_load(td_ctx *ctx, const char *path, td_engine **out);
/* The same over an existing mapping (takes its own reference); verify = false
 * skips only the SHA-256 (the fuzz harness, which cannot forge checksums). */
td_status td_engine_open_mapped(td_ctx *ctx, td_mapped_file *map, const char *what, bool verify, td_engine **out);
void td_engine_free(td_engine *e);
/* Extract the FILES section into dir (created if missing; only the bundled
 * file names, no paths): config.json, tokenizer files. dir NULL = only check
 * the section's structure. */
td_status td_engine_extract_files(td_ctx *ctx, const td_engine *e, const char *dir);

/* Library-internal access to a td_model_file (tdeploy/session.h) opened from
 * an engine or an ONNX file: its model, its engine header (NULL for ONNX), and
 * the engine's bundled model files extracted into dir (TD_ERR_NOT_FOUND when
 * the engine was built from an ONNX file and holds none). */
struct td_model_file;
const td_model *td_model_file_model(const struct td_model_file *f);
const td_engine_info *td_model_file_engine(const struct td_model_file *f);
td_status td_model_file_extract_files(td_ctx *ctx, const struct td_model_file *f, const char *dir);

#endif
