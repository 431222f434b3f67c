/* Error reporting and common flags shared by all subcommands. */
#include "cli/cli.h"

#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int td_cli_report(const char *cmd, td_ctx *ctx, td_status status) {
    const char *msg = td_error_message(ctx);
    fprintf(stderr, "tdeploy %s: error: %s%s%s\n", cmd, td_status_string(status), msg && *msg ? ": " : "",
            msg ? msg : "");
    return TD_EXIT_FAIL;
}

int td_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tdeploy %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'tdeploy %s --help')\n", cmd);
    va_end(ap);
    return TD_EXIT_USAGE;
}

bool td_cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

bool td_cli_common_flag(const char *arg) {
    if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
        td_log_set_level(TD_LOG_DEBUG);
        return true;
    }
    if (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0) {
        td_log_set_level(TD_LOG_QUIET);
        return true;
    }
    return false;
}

bool td_cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}
