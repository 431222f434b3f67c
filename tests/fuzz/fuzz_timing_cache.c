/* libFuzzer harness: arbitrary bytes as a timing cache file (`tdeploy build
 * --timing-cache`). The parser must refuse or accept without crashing, hanging
 * or reading out of bounds; an accepted file must survive a serialize + parse
 * round trip with the same entries, and each entry must be findable. The
 * SHA-256 is checked by the parser, so inputs whose last 32 bytes are not the
 * checksum of the rest are fixed up first (a fuzzer cannot forge one). */
#include "core/sha256.h"
#include "engine/timing_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_ctx *ctx = td_ctx_new();
    uint8_t *d = size ? malloc(size) : NULL;
    if (!ctx || !d) {
        td_ctx_free(ctx);
        free(d);
        return 0;
    }
    memcpy(d, data, size);
    if (size >= 32) {
        td_sha256 h;
        td_sha256_init(&h);
        td_sha256_update(&h, d, size - 32);
        td_sha256_final(&h, d + size - 32);
    }
    td_tcache c;
    if (td_tcache_parse(ctx, d, size, "<fuzz>", &c) == TD_OK) {
        uint8_t *s = NULL;
        size_t n = 0;
        if (td_tcache_serialize(ctx, &c, &s, &n) != TD_OK || n != size || memcmp(s, d, n) != 0)
            abort(); /* an accepted file is exactly what the writer writes */
        for (uint32_t i = 0; i < c.n; i++) {
            const tdc_gemm_choice *e = &c.entries[i];
            if (td_tcache_find(&c, e->dtype, e->trans_b, e->epilogue, e->m, e->n, e->k) != e)
                abort();
        }
        free(s);
        td_tcache_clear(&c);
    }
    free(d);
    td_ctx_free(ctx);
    return 0;
}
