/* Internal side of td_ctx: setting errors. Library code reports a failure with
 *     return td_fail(ctx, TD_ERR_FORMAT, "%s: header length %llu at byte 0 exceeds ...", path, n);
 * The message should say what is wrong, where (file, tensor, node, byte offset)
 * and, when there is something to do about it, what to do. */
#ifndef TD_CORE_CTX_H
#define TD_CORE_CTX_H

#include "tdeploy/tdeploy.h"
#include <stdarg.h>

#define TD_ERROR_MAX 2048

struct td_ctx {
    td_status status;
    char message[TD_ERROR_MAX];
};

/* Record status + formatted message on ctx (ctx may be NULL) and return status. */
td_status td_fail(td_ctx *ctx, td_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
td_status td_vfail(td_ctx *ctx, td_status status, const char *fmt, va_list ap);

/* Prepend context to the current message: "while exporting bert: <old message>".
 * Returns the current status so it can be used as `return td_wrap(ctx, "...")`. */
td_status td_wrap(td_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Out-of-memory helper: "out of memory allocating N bytes for WHAT". */
td_status td_fail_oom(td_ctx *ctx, size_t nbytes, const char *what);

#define TD_TRY(expr)                         \
    do {                                     \
        td_status td_try_s_ = (expr);        \
        if (td_try_s_ != TD_OK)              \
            return td_try_s_;                \
    } while (0)

#endif
