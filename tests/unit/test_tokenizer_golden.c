/* Golden test: every $TD_FIXTURES/hf/<model>/tokenizer_golden.json (written by
 * the HF tokenizers library) must be reproduced exactly: single-text ids,
 * pair ids, the truncated + padded batch with its attention mask, and the
 * decoded strings (skip_special_tokens). */
#include "tdeploy/tokenizer.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static bool same_ids(const cJSON *want, const int64_t *got, size_t n) {
    if (!cJSON_IsArray(want) || (size_t)cJSON_GetArraySize(want) != n)
        return false;
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, want) {
        if ((int64_t)it->valuedouble != got[i++])
            return false;
    }
    return true;
}

static void print_ids(const char *what, const int64_t *ids, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %lld", (long long)ids[i]);
    fprintf(stderr, "\n");
}

static int model_cases, model_fail;

static void check_model(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_golden.json", dir);
    size_t len = 0;
    char *txt = slurp(path, &len);
    if (!txt)
        return;
    cJSON *g = cJSON_ParseWithLength(txt, len);
    free(txt);
    CHECK_MSG(g != NULL, "%s: golden file does not parse", path);
    if (!g)
        return;
    td_ctx *ctx = td_ctx_new();
    td_tokenizer *tok = NULL;
    td_status st = td_tokenizer_load(ctx, dir, &tok);
    CHECK_MSG(st == TD_OK, "%s: load failed: %s", name, td_error_message(ctx));
    int pass = 0, fail = 0;
    if (st == TD_OK) {
        td_tok_options o;
        td_tokenizer_default_options(tok, &o);
        o.add_special_tokens = true;
        o.truncation = false;
        o.padding = TD_PAD_NONE;
        const cJSON *texts = cJSON_GetObjectItem(g, "texts"), *ids = cJSON_GetObjectItem(g, "ids");
        const cJSON *dec = cJSON_GetObjectItem(g, "decoded");
        for (int i = 0; i < cJSON_GetArraySize(texts); i++) {
            const char *t = cJSON_GetArrayItem(texts, i)->valuestring;
            td_encoding e;
            st = td_tokenizer_encode(ctx, tok, t, strlen(t), NULL, 0, &o, &e);
            bool ok = st == TD_OK && same_ids(cJSON_GetArrayItem(ids, i), e.ids, e.len);
            CHECK_MSG(ok, "%s: text %d '%s' ids differ (%s)", name, i, t, td_error_message(ctx));
            if (!ok && st == TD_OK)
                print_ids("got", e.ids, e.len);
            ok ? pass++ : fail++;
            if (st == TD_OK && dec) {
                char *d = NULL;
                td_status ds = td_tokenizer_decode(ctx, tok, e.ids, e.len, true, &d);
                const char *want = cJSON_GetArrayItem(dec, i)->valuestring;
                bool dok = ds == TD_OK && d && !strcmp(d, want);
                CHECK_MSG(dok, "%s: decode %d: got '%s' want '%s'", name, i, d ? d : "(error)", want);
                dok ? pass++ : fail++;
                free(d);
            }
            td_encoding_free(&e);
        }
        const cJSON *pairs = cJSON_GetObjectItem(g, "pairs"), *pids = cJSON_GetObjectItem(g, "pair_ids");
        for (int i = 0; i < cJSON_GetArraySize(pairs); i++) {
            const cJSON *p = cJSON_GetArrayItem(pairs, i);
            const char *a = cJSON_GetArrayItem(p, 0)->valuestring, *b = cJSON_GetArrayItem(p, 1)->valuestring;
            td_encoding e;
            st = td_tokenizer_encode(ctx, tok, a, strlen(a), b, strlen(b), &o, &e);
            bool ok = st == TD_OK && same_ids(cJSON_GetArrayItem(pids, i), e.ids, e.len);
            CHECK_MSG(ok, "%s: pair %d ids differ (%s)", name, i, td_error_message(ctx));
            if (!ok && st == TD_OK)
                print_ids("got", e.ids, e.len);
            ok ? pass++ : fail++;
            td_encoding_free(&e);
        }
        const cJSON *bt = cJSON_GetObjectItem(g, "batch_texts");
        int nb = cJSON_GetArraySize(bt);
        if (nb > 0) {
            const char **rows = calloc((size_t)nb, sizeof *rows);
            for (int i = 0; i < nb; i++)
                rows[i] = cJSON_GetArrayItem(bt, i)->valuestring;
            size_t ml = (size_t)cJSON_GetObjectItem(g, "batch_max_length")->valuedouble;
            o.truncation = true;
            o.max_length = ml;
            o.trunc_strategy = TD_TRUNC_LONGEST_FIRST;
            o.padding = TD_PAD_FIXED;
            o.pad_length = ml;
            o.pad_to_multiple_of = 0;
            td_batch b;
            st = td_tokenizer_encode_batch(ctx, tok, rows, NULL, NULL, NULL, (size_t)nb, &o, &b);
            CHECK_MSG(st == TD_OK, "%s: batch failed: %s", name, td_error_message(ctx));
            if (st == TD_OK) {
                const cJSON *bi = cJSON_GetObjectItem(g, "batch_input_ids"),
                            *bm = cJSON_GetObjectItem(g, "batch_attention_mask");
                for (int r = 0; r < nb; r++) {
                    bool ok = same_ids(cJSON_GetArrayItem(bi, r), b.input_ids + (size_t)r * b.seq_len, b.seq_len) &&
                              same_ids(cJSON_GetArrayItem(bm, r), b.attention_mask + (size_t)r * b.seq_len,
                                       b.seq_len);
                    CHECK_MSG(ok, "%s: batch row %d ids/mask differ", name, r);
                    if (!ok)
                        print_ids("got", b.input_ids + (size_t)r * b.seq_len, b.seq_len);
                    ok ? pass++ : fail++;
                }
                td_batch_free(&b);
            }
            free(rows);
        }
    }
    printf("%-20s %d passed, %d failed\n", name, pass, fail);
    model_cases++;
    if (fail)
        model_fail++;
    td_tokenizer_free(tok);
    td_ctx_free(ctx);
    cJSON_Delete(g);
}

int main(void) {
    const char *fx = td_test_env("TD_FIXTURES", "../tests/fixtures");
    char hf[4096];
    snprintf(hf, sizeof hf, "%s/hf", fx);
    DIR *d = opendir(hf);
    CHECK_MSG(d != NULL, "cannot open %s (set TD_FIXTURES)", hf);
    if (d) {
        struct dirent *e;
        char *names[256];
        int n = 0;
        while ((e = readdir(d)) && n < 256)
            if (e->d_name[0] != '.')
                names[n++] = strdup(e->d_name);
        closedir(d);
        for (int i = 0; i < n; i++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s", hf, names[i]);
            check_model(dir, names[i]);
            free(names[i]);
        }
    }
    CHECK_MSG(model_cases > 0, "no tokenizer_golden.json found under %s", hf);
    printf("%d tokenizers, %d with failures\n", model_cases, model_fail);
    return td_test_finish("test_tokenizer_golden");
}
