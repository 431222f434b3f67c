/* tdeploy CLI entry: dispatch to one subcommand per file. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const td_cli_command commands[] = {
    {"export", "build standard ONNX from a Hugging Face encoder or decoder (config.json + safetensors, or GGUF)",
     td_cmd_export},
    {"convert", "export, optimize, validate, benchmark and write a Triton repository in one step", td_cmd_convert},
    {"inspect", "show what a safetensors file, HF model directory or ONNX file contains", td_cmd_inspect},
    {"download", "fetch a model from the Hugging Face Hub into the HF cache; print its snapshot dir", td_cmd_download},
    {"triton-repo", "write a Triton model repository (ONNX model, tokenizer, ensemble) for an ONNX file", td_cmd_triton_repo},
    {"onnx-save", "load an ONNX model (validating it) and write it back, optionally with external data",
     td_cmd_onnx_save},
    {"infer", "run an ONNX model or engine (CPU or CUDA): safetensors inputs in, safetensors outputs out", td_cmd_infer},
    {"build", "compile an ONNX model or HF model directory into a GPU engine (.engine) for this GPU", td_cmd_build},
    {"optimize", "optimize an ONNX graph: cleanup, folding, fusions into ONNX Runtime ops, fp16/bf16/int8",
     td_cmd_optimize},
    {"run", "text in, answers out: embeddings, labels, entities or answers from a model, .onnx or engine",
     td_cmd_run},
    {"tokenize", "encode text with a model's tokenizer.json: ids, tokens, offsets, mask", td_cmd_tokenize},
    {"generate", "generate text with a decoder (GPT-2, Llama, Mistral, Qwen2, Phi-3) through its KV cache",
     td_cmd_generate},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
            "tdeploy %s: turn Hugging Face transformer models into validated inference artifacts\n\n"
            "usage: tdeploy [--version] [--help] COMMAND [ARGS]\n"
            "usage: tdeploy help COMMAND\n\ncommands:\n",
            td_version());
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'tdeploy help COMMAND' (or 'tdeploy COMMAND --help') describes a command's flags.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0 && argc > 2 && strcmp(argv[2], "help") && strcmp(argv[2], "--help") &&
        strcmp(argv[2], "-h")) {
        /* `tdeploy help CMD` is `tdeploy CMD --help` */
        char help_flag[] = "--help";
        for (size_t i = 0; i < N_COMMANDS; i++)
            if (strcmp(argv[2], commands[i].name) == 0)
                return commands[i].run(2, (char *[]){argv[2], help_flag, NULL});
        fprintf(stderr, "tdeploy help: unknown command '%s'\n\n", argv[2]);
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("tdeploy %s\n", td_version());
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tdeploy: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
