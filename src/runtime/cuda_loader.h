/* Access to libtdeploy_cuda.so from the plain-C library (see cuda_loader.c). */
#ifndef TD_RUNTIME_CUDA_LOADER_H
#define TD_RUNTIME_CUDA_LOADER_H

#include "core/ctx.h"
#include "runtime/cuda/tdc_abi.h"

/* The loaded API (loaded once per process); TD_ERR_UNSUPPORTED with a message
 * saying what is missing and what to do when the library or driver is absent.
 * Callers add their own way out (a session: --backend cpu; build: where to run). */
td_status td_cuda_api(td_ctx *ctx, const tdc_api **out);
/* Device 0's name, compute capability, CUDA runtime/driver versions and memory. */
td_status td_cuda_device(td_ctx *ctx, tdc_device_info *info);

#endif
