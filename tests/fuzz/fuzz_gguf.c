/* libFuzzer harness: arbitrary bytes as a GGUF file image. Every tensor a
 * successful open hands out is read end to end and dequantized when its type is
 * supported, every string and array is walked, so ASan catches any pointer or
 * size that escapes the buffer. A file with a tokenizer has it built too (the
 * tokenizer.ggml.* metadata -> tokenizer.json -> HF tokenizer), and used once. */
#include "gguf/gguf.h"
#include "gguf/gguf_tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_ctx ctx = {0};
    td_gguf *f = NULL;
    uint8_t *copy = malloc(size ? size : 1); /* exactly size bytes: reads past the end are detected */
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    if (td_gguf_open_buffer(&ctx, copy, size, "fuzz.gguf", &f) == TD_OK) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < f->n_kvs; i++) {
            const td_gguf_kv *kv = &f->kvs[i];
            if (td_gguf_find(f, kv->key) != kv)
                abort(); /* keys are unique */
            for (uint64_t k = 0; kv->strs && k < kv->count; k++)
                for (uint64_t b = 0; b < kv->strs[k].len; b++)
                    sink ^= (uint8_t)kv->strs[k].s[b];
            for (uint64_t k = 0; kv->type == TD_GGUF_ARRAY && !kv->strs && k < kv->count; k++)
                sink ^= (uint8_t)td_gguf_array_int(kv, k);
        }
        for (size_t i = 0; i < f->n_tensors; i++) {
            const td_gguf_tensor *t = &f->tensors[i];
            for (uint64_t b = 0; b < t->nbytes; b++)
                sink ^= t->data[b];
            if (td_ggml_dequant_supported(t->type) && t->numel <= (1u << 20)) {
                float *out = malloc(t->numel * sizeof *out);
                if (out && td_gguf_dequantize(&ctx, t, out) != TD_OK)
                    abort();
                free(out);
            }
        }
        (void)sink;
        const td_gguf_kv *toks = td_gguf_find(f, "tokenizer.ggml.tokens");
        td_tokenizer *tok = NULL;
        if (toks && toks->count <= 4096 && td_gguf_tokenizer_load(&ctx, f, &tok) == TD_OK) {
            td_encoding enc;
            if (td_tokenizer_encode(&ctx, tok, "Hello 123 w\xc3\xb6rld!\n", 17, NULL, 0, NULL, &enc) == TD_OK)
                td_encoding_free(&enc);
        } else if (toks && toks->count <= 4096 && ctx.message[0] == '\0') {
            abort(); /* a refused tokenizer must say why */
        }
        td_tokenizer_free(tok);
    } else if (ctx.message[0] == '\0') {
        abort(); /* every failure must carry a message */
    }
    td_gguf_free(f);
    free(copy);
    return 0;
}
