/* Test driver for the GGUF reader (src/gguf/, internal to the library), run by
 * tests/gguf/test_gguf_reader.py:
 *   gguf_driver open FILE...        one line per file: "ok N_TENSORS" or "error: MESSAGE"
 *   gguf_driver dump FILE OUTDIR    each tensor dequantized to OUTDIR/NAME.f32 (raw float32), one line per
 *                                   tensor: "NAME TYPE DIM0 DIM1 ... ok" or "NAME ... error: MESSAGE"
 *   gguf_driver get FILE KEY int|float|string   the value, or "error: MESSAGE"
 *   gguf_driver tokenize FILE       stdin: a JSON array of {"text", "pair" (optional), "special": bool}; stdout:
 *                                   one line per item, the JSON array of ids of the file's tokenizer
 *                                   (gguf_tokenizer.c) or "error: MESSAGE"; run by tests/gguf/test_gguf_tokenizer.py */
#define _GNU_SOURCE
#include "gguf/gguf.h"
#include "gguf/gguf_tokenizer.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_open(int n, char **files) {
    for (int i = 0; i < n; i++) {
        td_ctx *ctx = td_ctx_new();
        td_gguf *f = NULL;
        if (td_gguf_open(ctx, files[i], &f) == TD_OK) {
            /* a successful open must hand out tensors inside the file; read each one end to end */
            volatile uint8_t sink = 0;
            for (size_t t = 0; t < f->n_tensors; t++)
                for (uint64_t b = 0; b < f->tensors[t].nbytes; b++)
                    sink ^= f->tensors[t].data[b];
            (void)sink;
            printf("ok %zu\n", f->n_tensors);
        } else {
            const char *m = td_error_message(ctx);
            printf("error: %s\n", m && *m ? m : "(no message)");
        }
        td_gguf_free(f);
        td_ctx_free(ctx);
    }
    return 0;
}

static int cmd_dump(const char *file, const char *dir) {
    td_ctx *ctx = td_ctx_new();
    td_gguf *f = NULL;
    if (td_gguf_open(ctx, file, &f) != TD_OK) {
        printf("error: %s\n", td_error_message(ctx));
        td_ctx_free(ctx);
        return 1;
    }
    for (size_t i = 0; i < f->n_tensors; i++) {
        const td_gguf_tensor *t = &f->tensors[i];
        printf("%s %s", t->name, td_ggml_type_name(t->type));
        for (int d = 0; d < t->n_dims; d++)
            printf(" %lld", (long long)t->dims[d]);
        float *out = malloc(t->numel * sizeof *out);
        if (out && td_gguf_dequantize(ctx, t, out) == TD_OK) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s.f32", dir, t->name);
            FILE *o = fopen(path, "wb");
            if (o && fwrite(out, sizeof *out, t->numel, o) == t->numel)
                printf(" ok\n");
            else
                printf(" error: cannot write %s\n", path);
            if (o)
                fclose(o);
        } else {
            printf(" error: %s\n", out ? td_error_message(ctx) : "out of memory");
        }
        free(out);
    }
    td_gguf_free(f);
    td_ctx_free(ctx);
    return 0;
}

static int cmd_get(const char *file, const char *key, const char *kind) {
    td_ctx *ctx = td_ctx_new();
    td_gguf *f = NULL;
    td_status st = td_gguf_open(ctx, file, &f);
    if (st == TD_OK && !strcmp(kind, "int")) {
        int64_t v;
        if ((st = td_gguf_get_int(ctx, f, key, &v)) == TD_OK)
            printf("%lld\n", (long long)v);
    } else if (st == TD_OK && !strcmp(kind, "float")) {
        double v;
        if ((st = td_gguf_get_float(ctx, f, key, &v)) == TD_OK)
            printf("%.17g\n", v);
    } else if (st == TD_OK) {
        char *v = NULL;
        if ((st = td_gguf_get_string(ctx, f, key, &v)) == TD_OK)
            printf("%s\n", v);
        free(v);
    }
    if (st != TD_OK)
        printf("error: %s\n", td_error_message(ctx));
    td_gguf_free(f);
    td_ctx_free(ctx);
    return 0;
}

static int cmd_tokenize(const char *file) {
    size_t cap = 1 << 16, n = 0;
    char *in = malloc(cap);
    for (size_t k; in && (k = fread(in + n, 1, cap - n - 1, stdin)) > 0;) {
        n += k;
        if (n + 1 == cap && !(in = realloc(in, cap *= 2)))
            break;
    }
    cJSON *items = in ? cJSON_ParseWithLength(in, n) : NULL;
    free(in);
    td_ctx *ctx = td_ctx_new();
    td_gguf *f = NULL;
    td_tokenizer *tok = NULL;
    if (!cJSON_IsArray(items)) {
        fprintf(stderr, "tokenize: stdin must be a JSON array\n");
        return 2;
    }
    if (td_gguf_open(ctx, file, &f) != TD_OK || td_gguf_tokenizer_load(ctx, f, &tok) != TD_OK) {
        printf("error: %s\n", td_error_message(ctx));
    } else {
        const cJSON *it;
        cJSON_ArrayForEach(it, items) {
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(it, "text");
            const cJSON *pair = cJSON_GetObjectItemCaseSensitive(it, "pair");
            td_tok_options o;
            td_tokenizer_default_options(tok, &o);
            o.add_special_tokens = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special"));
            const char *p = cJSON_IsString(pair) ? pair->valuestring : NULL;
            td_encoding enc;
            if (!cJSON_IsString(text) ||
                td_tokenizer_encode(ctx, tok, text->valuestring, strlen(text->valuestring), p, p ? strlen(p) : 0,
                                    &o, &enc) != TD_OK) {
                printf("error: %s\n", td_error_message(ctx));
                continue;
            }
            printf("[");
            for (size_t i = 0; i < enc.len; i++)
                printf("%s%lld", i ? ", " : "", (long long)enc.ids[i]);
            printf("]\n");
            td_encoding_free(&enc);
        }
    }
    td_tokenizer_free(tok);
    td_gguf_free(f);
    td_ctx_free(ctx);
    cJSON_Delete(items);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "open"))
        return cmd_open(argc - 2, argv + 2);
    if (argc == 4 && !strcmp(argv[1], "dump"))
        return cmd_dump(argv[2], argv[3]);
    if (argc == 5 && !strcmp(argv[1], "get"))
        return cmd_get(argv[2], argv[3], argv[4]);
    if (argc == 3 && !strcmp(argv[1], "tokenize"))
        return cmd_tokenize(argv[2]);
    fprintf(stderr, "usage: gguf_driver open FILE... | dump FILE OUTDIR | get FILE KEY int|float|string | "
            "tokenize FILE\n");
    return 2;
}
