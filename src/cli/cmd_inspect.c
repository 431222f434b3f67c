/* tdeploy inspect: placeholder-free minimal version, extended by the hf and onnx work. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int td_cmd_inspect(int argc, char **argv) {
    if (argc >= 2 && td_cli_is_help(argv[1])) {
        printf("usage: tdeploy inspect PATH [--json]\n");
        return 0;
    }
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (!path)
            path = argv[i];
    }
    if (path && ends_with(path, ".onnx"))
        return td_inspect_onnx(path, json);
    return td_cli_usage_error("inspect", "inspect is being built");
}
