/* Error reporting and common flags shared by all subcommands. */
#include "cli/cli.h"

#include "core/log.h"
#include "export/task.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

int td_cli_parse_task(const char *cmd, const char *value, td_export_task *out) {
    td_ctx *ctx = td_ctx_new();
    if (!ctx) {
        fprintf(stderr, "tdeploy %s: out of memory\n", cmd);
        return TD_EXIT_FAIL;
    }
    td_status st = td_task_from_name(ctx, value, out);
    int rc = st == TD_OK ? -1 : td_cli_usage_error(cmd, "--task: %s", td_error_message(ctx));
    td_ctx_free(ctx);
    return rc;
}

int td_cli_parse_precision(const char *cmd, const char *value, td_precision *out) {
    static const struct {
        const char *name;
        td_precision p;
    } k[] = {{"fp32", TD_PRECISION_FP32}, {"fp16", TD_PRECISION_FP16}, {"bf16", TD_PRECISION_BF16}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strcmp(value, k[i].name) == 0) {
            *out = k[i].p;
            return -1;
        }
    return td_cli_usage_error(cmd, "--precision '%s': use fp32, fp16 or bf16", value);
}

int td_cli_parse_device(const char *cmd, const char *value, bool *is_cuda) {
    if (strcmp(value, "cpu") == 0 || strcmp(value, "cuda") == 0 || strcmp(value, "gpu") == 0) {
        *is_cuda = strcmp(value, "cpu") != 0;
        return -1;
    }
    return td_cli_usage_error(cmd, "--device '%s': use cpu or cuda", value);
}

int td_cli_print_json(const char *cmd, cJSON *j) {
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) {
        fprintf(stderr, "tdeploy %s: out of memory printing JSON\n", cmd);
        return TD_EXIT_FAIL;
    }
    printf("%s\n", text);
    free(text);
    return TD_EXIT_OK;
}

bool td_cli_same_file(const char *in, const char *out) {
    struct stat a, b;
    return stat(in, &a) == 0 && stat(out, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}
