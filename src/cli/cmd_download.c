/* tdeploy download: fetch a model repository from the Hugging Face Hub into the
 * HF cache (or find it there) and print its snapshot directory. */
#include "cli/cli.h"

#include "core/ctx.h"
#include "hf/hub.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy download ORG/NAME [--revision REV] [--refresh] [--offline] [--json] [-q|-v]\n\n"
            "Downloads the files tdeploy uses (config, safetensors weights, tokenizer, sentence-transformers\n"
            "modules) into the Hugging Face cache, in huggingface_hub's layout, and prints the snapshot\n"
            "directory. A complete cached copy is used without any request unless --refresh is given.\n"
            "An interrupted download resumes when run again.\n\n"
            "  --revision REV  branch, tag or commit (default: main)\n"
            "  --refresh       ask the Hub what REV points to now, even when a copy is cached\n"
            "  --offline       never touch the network (same as HF_HUB_OFFLINE=1)\n"
            "  --json          print {\"repo_id\", \"revision\", \"commit\", \"snapshot_dir\"} as JSON\n\n"
            "environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (else the token file of\n"
            "huggingface-cli login: HF_TOKEN_PATH or HF_HOME/token), HF_HUB_CACHE, HF_HOME, HF_HUB_OFFLINE,\n"
            "TDEPLOY_HUB_DEADLINE (most seconds one request may take; default 600 + file size at 32 KiB/s)\n");
}

int td_cmd_download(int argc, char **argv) {
    const char *repo = NULL, *revision = "main";
    bool json = false;
    td_hub_options opts;
    td_hub_options_init(&opts);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (td_cli_is_help(a)) {
            usage(stdout);
            return TD_EXIT_OK;
        } else if (td_cli_common_flag(a)) {
        } else if (strcmp(a, "--revision") == 0) {
            if (++i >= argc)
                return td_cli_usage_error("download", "--revision needs a value");
            revision = argv[i];
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--refresh") == 0) {
            opts.refresh = true;
        } else if (strcmp(a, "--offline") == 0) {
            opts.offline = 1;
        } else if (a[0] == '-') {
            return td_cli_usage_error("download", "unknown flag '%s'", a);
        } else if (!repo) {
            repo = a;
        } else {
            return td_cli_usage_error("download", "unexpected argument '%s' (one repository at a time)", a);
        }
    }
    if (!repo)
        return td_cli_usage_error("download", "which repository? e.g. tdeploy download sentence-transformers/all-MiniLM-L6-v2");

    td_ctx *ctx = td_ctx_new();
    if (!ctx) {
        fprintf(stderr, "tdeploy download: out of memory\n");
        return TD_EXIT_FAIL;
    }
    char *snapshot = NULL;
    int rc = TD_EXIT_OK;
    /* a malformed id or revision is a bad argument value: exit 2 before any work, like every command */
    if (td_hub_check_repo_id(ctx, repo) != TD_OK || td_hub_check_revision(ctx, revision) != TD_OK) {
        rc = td_cli_usage_error("download", "%s", ctx->message);
        goto out;
    }
    td_status s = td_hub_download(ctx, repo, revision, &opts, &snapshot);
    if (s != TD_OK) {
        rc = td_cli_report("download", ctx, s);
        goto out;
    }
    if (json) {
        const char *commit = strrchr(snapshot, '/');
        cJSON *o = cJSON_CreateObject();
        char *text = NULL;
        if (o && cJSON_AddStringToObject(o, "repo_id", repo) && cJSON_AddStringToObject(o, "revision", revision) &&
            cJSON_AddStringToObject(o, "commit", commit ? commit + 1 : "") &&
            cJSON_AddStringToObject(o, "snapshot_dir", snapshot))
            text = cJSON_Print(o);
        cJSON_Delete(o);
        if (!text) {
            rc = td_cli_report("download", ctx, td_fail_oom(ctx, 256, "the JSON answer"));
            goto out;
        }
        printf("%s\n", text);
        free(text);
    } else {
        printf("%s\n", snapshot);
    }
out:
    free(snapshot);
    td_ctx_free(ctx);
    return rc;
}
