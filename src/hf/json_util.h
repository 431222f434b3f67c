/* Reading the small JSON files of a model directory (config.json, modules.json,
 * tokenizer_config.json, ...) with typed getters that fail with a message naming
 * the file and the key. Internal to src/hf. */
#ifndef TD_HF_JSON_UTIL_H
#define TD_HF_JSON_UTIL_H

#include "tdeploy/tdeploy.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

/* Largest JSON config file read (tokenizer.json is not read through this). */
#define TD_HF_JSON_MAX_BYTES (16u << 20)

/* Parse text (UTF-8 checked; nesting limited by cJSON, so deep input is an error,
 * not a crash). The top level must be an object whose keys are unique (Python's
 * json keeps the last duplicate, cJSON the first: refusing them avoids reading a
 * different value than transformers). *out owned by the caller (cJSON_Delete). */
td_status td_hf_json_parse(td_ctx *ctx, const char *text, size_t len, const char *label, cJSON **out);
/* Same checks, any JSON value at the top level (modules.json is a list). */
td_status td_hf_json_parse_value(td_ctx *ctx, const char *text, size_t len, const char *label, cJSON **out);
/* Read and parse a file; TD_ERR_NOT_FOUND when it does not exist. */
td_status td_hf_json_load(td_ctx *ctx, const char *path, cJSON **out);
td_status td_hf_json_load_value(td_ctx *ctx, const char *path, cJSON **out);

/* Typed getters on object obj. Absent key -> *out = dflt. JSON null -> dflt when
 * null_ok, else an error. Wrong type or value outside [lo, hi] -> TD_ERR_FORMAT
 * "LABEL: "KEY" must be ...". */
td_status td_hf_json_int(td_ctx *ctx, const cJSON *obj, const char *label, const char *key, int64_t dflt,
                         bool null_ok, int64_t lo, int64_t hi, int64_t *out);
td_status td_hf_json_double(td_ctx *ctx, const cJSON *obj, const char *label, const char *key, double dflt,
                            bool null_ok, double lo, double hi, double *out);
td_status td_hf_json_bool(td_ctx *ctx, const cJSON *obj, const char *label, const char *key, bool dflt, bool null_ok,
                          bool *out);
/* *out is a malloc'd copy (or of dflt; NULL when dflt is NULL). */
td_status td_hf_json_string(td_ctx *ctx, const cJSON *obj, const char *label, const char *key, const char *dflt,
                            bool null_ok, char **out);

/* Short name of a JSON value's type for messages ("a string", "null", ...). */
const char *td_hf_json_type_name(const cJSON *v);

#endif
