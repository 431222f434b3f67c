/* The model `tdeploy triton-repo MODEL` writes a repository for, as one ONNX file
 * and the folder of its tokenizer and HF config files:
 *   - an .onnx file: itself, files beside it;
 *   - a convert output folder: its model-optimized.onnx, files in the folder;
 *   - a .gguf file (or a folder / cached hub id holding one): exported as a decoder
 *     into a temporary folder next to OUT, with its tokenizer written out as tokenizer.json;
 *   - a Hugging Face folder or cached hub id: exported as a decoder (task text-generation)
 *     and optimized as convert does, into a temporary folder next to OUT; files from the folder.
 * The temporary folder is removed by td_triton_repo_source_close. */
#ifndef TD_CLI_TRITON_REPO_SOURCE_H
#define TD_CLI_TRITON_REPO_SOURCE_H

#include "tdeploy/tdeploy.h"
#include <stdbool.h>

typedef struct td_triton_repo_source {
    char *onnx_path; /* the ONNX file to serve */
    char *files_dir; /* tokenizer.json, tokenizer_config.json, config.json, generation_config.json, ... */
    char *work_dir;  /* the temporary folder of an export; NULL when nothing was exported */
    bool exported;   /* a decoder exported from an HF folder or a GGUF (so: text generation) */
} td_triton_repo_source;

/* out_dir: the repository to write (the temporary folder goes next to it). */
td_status td_triton_repo_source_open(td_ctx *ctx, const char *model, const char *out_dir, td_triton_repo_source *src);
void td_triton_repo_source_close(td_triton_repo_source *src);
/* Whether td_triton_repo_source_open would export model (a GGUF, an HF folder or hub id: so a decoder), decided
 * from the path alone, so flag errors can be reported before any work. */
bool td_triton_repo_source_exports(const char *model);

#endif
