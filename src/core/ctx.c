/* Status strings and the error message kept on td_ctx. */
#include "core/ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_strings[TD_STATUS_COUNT] = {
    [TD_OK] = "ok",
    [TD_ERR_INVALID_ARGUMENT] = "invalid argument",
    [TD_ERR_IO] = "I/O error",
    [TD_ERR_FORMAT] = "format error",
    [TD_ERR_UNSUPPORTED] = "unsupported",
    [TD_ERR_OUT_OF_MEMORY] = "out of memory",
    [TD_ERR_OVERFLOW] = "size overflow",
    [TD_ERR_NOT_FOUND] = "not found",
    [TD_ERR_SHAPE] = "shape mismatch",
    [TD_ERR_DTYPE] = "dtype mismatch",
    [TD_ERR_GRAPH] = "invalid graph",
    [TD_ERR_VALIDATION] = "validation failed",
    [TD_ERR_INTERRUPTED] = "interrupted",
    [TD_ERR_INTERNAL] = "internal error",
    [TD_ERR_DEVICE] = "GPU error",
};

const char *td_status_string(td_status status) {
    if ((int)status < 0 || status >= TD_STATUS_COUNT || !status_strings[status])
        return "unknown status";
    return status_strings[status];
}

td_ctx *td_ctx_new(void) { return calloc(1, sizeof(td_ctx)); }

void td_ctx_free(td_ctx *ctx) { free(ctx); }

const char *td_error_message(const td_ctx *ctx) { return ctx ? ctx->message : ""; }

td_status td_last_status(const td_ctx *ctx) { return ctx ? ctx->status : TD_OK; }

void td_clear_error(td_ctx *ctx) {
    if (!ctx)
        return;
    ctx->status = TD_OK;
    ctx->message[0] = '\0';
}

const char *td_version(void) { return TD_VERSION_STRING; }

td_status td_vfail(td_ctx *ctx, td_status status, const char *fmt, va_list ap) {
    if (ctx) {
        ctx->status = status;
        vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
    }
    return status;
}

td_status td_fail(td_ctx *ctx, td_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    td_vfail(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

td_status td_wrap(td_ctx *ctx, const char *fmt, ...) {
    if (!ctx)
        return TD_ERR_INTERNAL;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[TD_ERROR_MAX];
    memcpy(old, ctx->message, sizeof old);
    snprintf(ctx->message, sizeof ctx->message, "%s: %s", prefix, old);
    return ctx->status == TD_OK ? TD_ERR_INTERNAL : ctx->status;
}

td_status td_fail_oom(td_ctx *ctx, size_t nbytes, const char *what) {
    return td_fail(ctx, TD_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes for %s", nbytes,
                   what ? what : "data");
}
