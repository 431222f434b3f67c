/* libFuzzer harness: arbitrary bytes as an engine file. The header, profile
 * and section tables, the plan (ONNX with its weights resolved inside the
 * weights section) and the files section go through the same parser as
 * td_engine_load; only the SHA-256 check is skipped, since a fuzzer cannot
 * forge checksums and would otherwise never get past it. Nothing may crash,
 * hang or read out of bounds; a loaded engine's profile lookup must agree with
 * its table. */
#include "engine/engine.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_ctx *ctx = td_ctx_new();
    if (!ctx || size == 0) {
        td_ctx_free(ctx);
        return 0;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    td_mapped_file *m = calloc(1, sizeof *m);
    if (p == MAP_FAILED || !m || !(m->path = strdup("<fuzz>"))) {
        if (p != MAP_FAILED)
            munmap(p, size);
        free(m);
        td_ctx_free(ctx);
        return 0;
    }
    memcpy(p, data, size);
    m->data = p;
    m->size = size;
    m->refcount = 1;
    td_engine *e = NULL;
    if (td_engine_open_mapped(ctx, m, "<fuzz>", false, &e) == TD_OK) {
        for (uint32_t i = 0; i < e->info.n_profiles; i++) {
            const td_engine_profile *pr = &e->info.profiles[i];
            if (td_engine_profile_for(&e->info, pr->max_b, pr->max_s) < 0)
                abort(); /* a profile's own max shape must be accepted */
        }
        td_engine_extract_files(ctx, e, NULL);
        td_engine_free(e);
    }
    td_mapped_file_unref(m);
    td_ctx_free(ctx);
    return 0;
}
