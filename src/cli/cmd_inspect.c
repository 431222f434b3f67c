/* tdeploy inspect: placeholder-free minimal version, extended by the hf and onnx work. */
#include "cli/cli.h"

#include <stdio.h>

int td_cmd_inspect(int argc, char **argv) {
    if (argc >= 2 && td_cli_is_help(argv[1])) {
        printf("usage: tdeploy inspect PATH [--json]\n");
        return 0;
    }
    return td_cli_usage_error("inspect", "inspect is being built");
}
