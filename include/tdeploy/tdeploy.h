/* tdeploy public API: status codes, the context that carries error messages and
 * logging settings, and version information. Every library function returns a
 * td_status; on failure the detailed message (what, where, what to do) is kept
 * on the td_ctx passed in. The library never exits or aborts on bad input. */
#ifndef TDEPLOY_TDEPLOY_H
#define TDEPLOY_TDEPLOY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* TD_API marks the public API: the only symbols libtdeploy.so exports (the library
 * is compiled with -fvisibility=hidden, so everything else stays internal). */
#if defined(__GNUC__) || defined(__clang__)
#define TD_API __attribute__((visibility("default")))
#else
#define TD_API
#endif

#define TD_VERSION_MAJOR 0
#define TD_VERSION_MINOR 1
#define TD_VERSION_PATCH 0
#define TD_VERSION_STRING "0.1.0"

typedef enum td_status {
    TD_OK = 0,
    TD_ERR_INVALID_ARGUMENT, /* caller passed something wrong (API misuse, bad CLI flag) */
    TD_ERR_IO,               /* open/read/write/rename/mmap failed */
    TD_ERR_FORMAT,           /* file contents violate their format (safetensors, ONNX, JSON) */
    TD_ERR_UNSUPPORTED,      /* valid input that tdeploy does not handle (op, dtype, model type) */
    TD_ERR_OUT_OF_MEMORY,
    TD_ERR_OVERFLOW,         /* a size computed from input data overflows */
    TD_ERR_NOT_FOUND,        /* missing file, tensor, value, model */
    TD_ERR_SHAPE,            /* shapes do not agree */
    TD_ERR_DTYPE,            /* dtypes do not agree */
    TD_ERR_GRAPH,            /* graph structure invalid (cycle, missing producer, duplicate name) */
    TD_ERR_VALIDATION,       /* numeric validation of a backend failed */
    TD_ERR_INTERRUPTED,      /* user interrupt (SIGINT) */
    TD_ERR_INTERNAL,         /* a bug in tdeploy: please report it */
    TD_ERR_DEVICE,           /* a GPU call failed at run time (CUDA / cuBLASLt error, device memory) */
    TD_STATUS_COUNT
} td_status;

/* Short, fixed description of a status code ("format error"). Never NULL. */
TD_API const char *td_status_string(td_status status);

/* Context: error message slot + log verbosity. Not thread-safe: one per thread. */
typedef struct td_ctx td_ctx;

TD_API td_ctx *td_ctx_new(void);
TD_API void td_ctx_free(td_ctx *ctx); /* td_ctx_free(NULL) is harmless */

/* The message of the last failure on ctx, "" if none. Owned by ctx. */
TD_API const char *td_error_message(const td_ctx *ctx);
TD_API td_status td_last_status(const td_ctx *ctx);
TD_API void td_clear_error(td_ctx *ctx);

TD_API const char *td_version(void);

#ifdef __cplusplus
}
#endif
#endif
