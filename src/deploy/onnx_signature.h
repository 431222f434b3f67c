/* The inputs and outputs of an ONNX file (names, element types, shapes with -1
 * for symbolic or unknown dimensions) and the external data files it names:
 * what a Triton config needs, read with td_onnx_load (so the model is validated). */
#ifndef TD_DEPLOY_ONNX_SIGNATURE_H
#define TD_DEPLOY_ONNX_SIGNATURE_H

#include "deploy/triton.h"

typedef struct td_onnx_signature {
    td_triton_tensor *inputs; /* graph inputs that are not initializers */
    size_t n_inputs;
    td_triton_tensor *outputs;
    size_t n_outputs;
    char **external_data; /* distinct "location" values, relative to the ONNX file's folder (checked: no "..") */
    size_t n_external_data;
} td_onnx_signature;

td_status td_onnx_signature_read(td_ctx *ctx, const char *path, td_onnx_signature *out);
void td_onnx_signature_free(td_onnx_signature *sig); /* zeroed struct harmless */

#endif
