/* Finds and loads libtdeploy_cuda.so on first use of the CUDA backend, so the
 * tdeploy binary and library run on machines without a GPU, driver or CUDA
 * runtime. Search order: $TDEPLOY_CUDA_LIB (a file), the directory of the
 * running executable and its ../lib, the directory of the library holding this code, then
 * the dynamic loader's own search (LD_LIBRARY_PATH, rpath). */
#define _GNU_SOURCE
#include "runtime/cuda_loader.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TD_CUDA_LIB_NAME "libtdeploy_cuda.so"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const tdc_api *loaded;
static char load_error[1024];

static void *try_dir(const char *file_in_dir, char *tried, size_t tn) {
    char dir[PATH_MAX], path[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s", file_in_dir);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return NULL;
    *slash = 0;
    snprintf(path, sizeof path, "%s/%s", dir, TD_CUDA_LIB_NAME);
    if (access(path, R_OK) != 0)
        return NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        snprintf(tried, tn, "%s", dlerror());
    return h;
}

static const tdc_api *load_locked(void) {
    char tried[512] = "";
    void *h = NULL;
    const char *env = getenv("TDEPLOY_CUDA_LIB");
    if (env && *env) {
        h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(load_error, sizeof load_error, "TDEPLOY_CUDA_LIB=%s cannot be loaded: %s", env, dlerror());
            return NULL;
        }
    }
    if (!h) {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = 0;
            h = try_dir(exe, tried, sizeof tried);
            char *slash = strrchr(exe, '/');
            if (!h && slash && (size_t)(slash - exe) + 16 < sizeof exe) {
                strcpy(slash, "/../lib/x"); /* an installed prefix: bin/tdeploy, lib/libtdeploy_cuda.so */
                h = try_dir(exe, tried, sizeof tried);
            }
        }
    }
    if (!h) {
        Dl_info info;
        if (dladdr((void *)load_locked, &info) && info.dli_fname)
            h = try_dir(info.dli_fname, tried, sizeof tried);
    }
    if (!h && !(h = dlopen(TD_CUDA_LIB_NAME, RTLD_NOW | RTLD_LOCAL))) {
        snprintf(load_error, sizeof load_error,
                 "the CUDA backend is not available: %s could not be loaded (%s). It is built next to tdeploy when "
                 "nvcc is found at build time, and needs the NVIDIA driver and CUDA 13 runtime libraries "
                 "(libcudart, libcublasLt) at run time; set TDEPLOY_CUDA_LIB to its path",
                 TD_CUDA_LIB_NAME, *tried ? tried : dlerror());
        return NULL;
    }
    tdc_get_api_fn get = (tdc_get_api_fn)(uintptr_t)dlsym(h, "tdc_get_api");
    const tdc_api *api = get ? get(TDC_ABI_VERSION) : NULL;
    if (!api) {
        snprintf(load_error, sizeof load_error,
                 "%s does not match this tdeploy (no tdc_get_api for ABI %d): rebuild tdeploy and its CUDA library "
                 "together", TD_CUDA_LIB_NAME, TDC_ABI_VERSION);
        dlclose(h);
        return NULL;
    }
    return api; /* stays loaded for the life of the process */
}

td_status td_cuda_api(td_ctx *ctx, const tdc_api **out) {
    pthread_mutex_lock(&lock);
    if (!loaded && !*load_error)
        loaded = load_locked();
    const tdc_api *api = loaded;
    pthread_mutex_unlock(&lock);
    *out = api;
    if (!api)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s", load_error);
    return TD_OK;
}

td_status td_cuda_device(td_ctx *ctx, tdc_device_info *info) {
    const tdc_api *api;
    TD_TRY(td_cuda_api(ctx, &api));
    char err[512] = "";
    if (api->device_info(info, err, sizeof err))
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "the CUDA backend found no usable GPU: %s (check nvidia-smi)", err);
    return TD_OK;
}
