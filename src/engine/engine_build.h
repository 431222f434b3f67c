/* `tdeploy build`: ONNX file or HF model directory -> fused graph at the
 * engine precision -> checks that every op the GPU runs has a CUDA kernel ->
 * activation memory planned per profile (at its max shape) -> engine file. */
#ifndef TD_ENGINE_ENGINE_BUILD_H
#define TD_ENGINE_ENGINE_BUILD_H

#include "engine/engine.h"
#include "runtime/cuda/tdc_abi.h"
#include "tdeploy/session.h"

typedef struct td_engine_build_options {
    const char *input;  /* .onnx (standard or already fused) or a model directory (config.json + safetensors) */
    const char *output; /* .engine path */
    td_precision precision;
    uint32_t n_profiles;
    td_engine_profile profiles[TD_ENGINE_MAX_PROFILES]; /* min/opt/max filled; arena fields are outputs */
    /* Target GPU: NULL = query device 0 (the normal case). Tests pass a description to build without a GPU. */
    const tdc_device_info *target;
    /* Timing cache file (timing_cache.h): NULL = the default ($XDG_CACHE_HOME/tdeploy/timing-cache.bin, else
     * ~/.cache/tdeploy/...), "" = none (measure everything, keep nothing). */
    const char *timing_cache;
    /* Measures one GEMM shape bucket (fills ch's algorithm fields and us). NULL: cuBLASLt on this machine's GPU,
     * or no tuning when target describes a GPU (the engine then has no GEMM choices and its GEMMs take
     * cuBLASLt's heuristic at run time). A caller with its own measurement (another device) passes one. */
    td_status (*tune)(td_ctx *ctx, void *user, tdc_gemm_choice *ch);
    void *tune_user;
} td_engine_build_options;

typedef struct td_engine_build_report {
    double seconds_export, seconds_optimize, seconds_check_plan, seconds_write, seconds_total;
    int nodes, gpu_nodes, hoisted_nodes;
    size_t weight_bytes;
    char gpu_name[64];
    int cc_major, cc_minor;
    td_engine_profile profiles[TD_ENGINE_MAX_PROFILES];
    uint32_t n_profiles;
    /* GEMM tuning: shape buckets in the engine, how many were measured now and how many came from the cache */
    int gemm_buckets, gemm_measured, gemm_cached;
    double seconds_tune;
    char timing_cache[1024]; /* the cache file used, "" = none */
    char cache_note[1024];   /* why the cache was not used (damaged, another GPU/version), "" = it was or none */
} td_engine_build_report;

td_status td_engine_build(td_ctx *ctx, const td_engine_build_options *o, td_engine_build_report *r);

/* The CUDA kernel that runs a node (backend_cuda.c), for the engine's kernel table and `inspect`. */
struct td_rt_node;
const char *td_cuda_kernel_name(const struct td_rt_node *rn, int precision);
bool td_cuda_has_kernel(const struct td_rt_node *rn);

#endif
