/* Shared CLI plumbing: the command table entry type, exit codes and helpers
 * every subcommand uses to report errors the same way. */
#ifndef TD_CLI_H
#define TD_CLI_H

#include "export/export.h"
#include "tdeploy/session.h"
#include "tdeploy/tdeploy.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes of every command: 2 for a usage error (unknown flag, bad flag value, unknown or unsupported
 * task, missing argument; reported before any work starts), 1 for an input or runtime error, 3 when a
 * backend failed validation, 130 on an interrupt. */
enum { TD_EXIT_OK = 0, TD_EXIT_FAIL = 1, TD_EXIT_USAGE = 2, TD_EXIT_VALIDATION = 3, TD_EXIT_INTERRUPTED = 130 };

typedef struct td_cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} td_cli_command;

/* Print "tdeploy CMD: error: <status>: <message>" to stderr and return TD_EXIT_FAIL. */
int td_cli_report(const char *cmd, td_ctx *ctx, td_status status);
/* Print a usage error and return TD_EXIT_USAGE. */
int td_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse a whole decimal integer in [lo, hi]; false on junk, overflow or out of range. */
bool td_cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* True when arg is -h or --help. */
bool td_cli_is_help(const char *arg);
/* True when `out` already exists and is the same file as `in` (same device and inode, so
 * links and other spellings of the path count): writing it would replace the input. */
bool td_cli_same_file(const char *in, const char *out);
/* Common flags: -v/--verbose, -q/--quiet. Returns true if arg was consumed. */
bool td_cli_common_flag(const char *arg);
/* The shared flag values, parsed the same way in every command. Each returns -1 when the value is good
 * (result in *out), else prints the usage error and returns TD_EXIT_USAGE. */
int td_cli_parse_task(const char *cmd, const char *value, td_export_task *out); /* --task: names and aliases */
int td_cli_parse_precision(const char *cmd, const char *value, td_precision *out); /* --precision fp32|fp16|bf16 */
/* --device cpu|cuda ("gpu" is an alias of cuda); *is_cuda says which. */
int td_cli_parse_device(const char *cmd, const char *value, bool *is_cuda);
/* Print a cJSON document on stdout the one way every command does (indented; `run` alone prints one
 * compact object per line, JSON Lines). Frees j. Returns TD_EXIT_OK, or TD_EXIT_FAIL when out of memory. */
int td_cli_print_json(const char *cmd, cJSON *j);

/* Subcommands (one file each). */
int td_cmd_convert(int argc, char **argv);
int td_cmd_inspect(int argc, char **argv);
int td_cmd_export(int argc, char **argv);
int td_cmd_download(int argc, char **argv);
int td_cmd_triton_repo(int argc, char **argv);
int td_cmd_onnx_save(int argc, char **argv);

/* ONNX part of inspect (src/cli/inspect_onnx.c): prints a model summary; returns an exit code. */
int td_inspect_onnx(const char *path, bool json);
/* GGUF part of inspect (src/cli/inspect_gguf.c): metadata, tensor types, tensors; returns an exit code. */
int td_inspect_gguf(const char *path, bool json, bool verbose);
int td_cmd_tokenize(int argc, char **argv);
int td_cmd_infer(int argc, char **argv);
int td_cmd_build(int argc, char **argv);
/* Engine part of inspect (src/cli/inspect_engine.c). */
int td_inspect_engine(const char *path, bool json);
int td_cmd_optimize(int argc, char **argv);
int td_cmd_run(int argc, char **argv);
int td_cmd_generate(int argc, char **argv);
/* run on a decoder (src/cli/run_decoder.c): true when MODEL's config.json (or --task) says text-generation */
bool td_run_is_decoder(const char *model, const char *tokenizer, td_export_task task);
int td_run_decoder(const char *model, const char *tokenizer, const char *const *texts, size_t n, int64_t threads,
                   bool json, const char *texts_file);

#endif
