/* libFuzzer harness: arbitrary bytes as a safetensors file image. Every tensor a
 * successful open hands out is read end to end, so ASan catches any data pointer
 * or size that escapes the buffer. */
#include "hf/safetensors.h"

#include "core/ctx.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_ctx ctx = {0};
    td_safetensors *st = NULL;
    /* a heap copy of exactly size bytes, so reads past the end are detected */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    if (td_st_open_memory(&ctx, copy, size, "fuzz.safetensors", &st) == TD_OK) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < td_st_count(st); i++) {
            const td_st_tensor *t = td_st_tensor_at(st, i);
            const uint8_t *p = t->data;
            for (size_t b = 0; b < t->nbytes; b++)
                sink ^= p[b];
            if (td_st_find(st, t->name) != t)
                abort(); /* lookup must agree with iteration */
        }
        for (size_t i = 0; i < td_st_metadata_count(st); i++) {
            const char *k, *v;
            td_st_metadata_at(st, i, &k, &v);
            if (td_st_metadata_get(st, k) != v)
                abort();
        }
        (void)sink;
    } else if (ctx.message[0] == '\0') {
        abort(); /* every failure must carry a message */
    }
    td_st_close(st);
    free(copy);
    return 0;
}
