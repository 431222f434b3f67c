/* td_tok_tool: the tokenizer's test and bench driver (not part of the product).
 *
 *   td_tok_tool jsonl MODEL FILE|-     each line {"text", "pair"?, "add_special_tokens"?, "options"?} ->
 *                                      one line of ids, offsets, masks, tokens, words, decodes (or
 *                                      {"error"}); tests/tokenizer compare it with HF tokenizers
 *   td_tok_tool bench MODEL FILE [--batch N] [--repeat N] [--no-special-tokens]
 *                                      encode every line in batches, --repeat times; prints the CPU time
 *                                      of each run (bench/tokenizer_bench.py)
 *
 * MODEL is a directory with tokenizer.json or the file itself. */
#define _GNU_SOURCE
#include "tdeploy/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int report(td_ctx *ctx, td_status st) {
    fprintf(stderr, "td_tok_tool: error: %s: %s\n", td_status_string(st), td_error_message(ctx));
    return 1;
}

/* CPU time of this process: the bench compares single-threaded work, and CPU time stays meaningful on a
 * machine busy with other jobs, where wall-clock time does not. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench(const char *model, const char *file, long batch, long repeat, bool add_special) {
    td_ctx *ctx = td_ctx_new();
    td_tokenizer *tok = NULL;
    int rc = 1;
    char *buf = NULL;
    char **lines = NULL;
    size_t nl = 0, total_tokens = 0;
    td_status st = td_tokenizer_load(ctx, model, &tok);
    if (st) {
        rc = report(ctx, st);
        goto out;
    }
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "td_tok_tool: cannot open %s\n", file);
        goto out;
    }
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = (cap + 65536) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                fclose(f);
                goto out;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[len] = 0;
    lines = malloc((len + 1) * sizeof *lines);
    if (!lines)
        goto out;
    for (char *p = buf, *e; *p; p = e + 1) {
        e = strchr(p, '\n');
        if (!e)
            e = p + strlen(p);
        bool last = *e == 0;
        *e = 0;
        lines[nl++] = p;
        if (last)
            break;
    }
    td_tok_options o;
    td_tokenizer_default_options(tok, &o);
    o.add_special_tokens = add_special;
    o.truncation = false;
    o.padding = TD_PAD_BATCH_LONGEST;
    double best = 1e30;
    for (long r = 0; r < repeat; r++) {
        double t0 = now_s();
        total_tokens = 0;
        for (size_t i = 0; i < nl; i += (size_t)batch) {
            size_t n = nl - i < (size_t)batch ? nl - i : (size_t)batch;
            td_batch b;
            st = td_tokenizer_encode_batch(ctx, tok, (const char *const *)lines + i, NULL, NULL, NULL, n, &o, &b);
            if (st) {
                rc = report(ctx, st);
                goto out;
            }
            for (size_t k = 0; k < b.batch * b.seq_len; k++)
                total_tokens += (size_t)b.attention_mask[k];
            td_batch_free(&b);
        }
        double dt = now_s() - t0;
        printf("run %ld: %.6f s\n", r, dt);
        if (dt < best)
            best = dt;
    }
    printf("lines %zu tokens %zu\n", nl, total_tokens);
    rc = 0;
out:
    free(lines);
    free(buf);
    td_tokenizer_free(tok);
    td_ctx_free(ctx);
    return rc;
}

/* jsonl mode: each input line is {"text": s, "pair": s?, "add_special_tokens": b?}; each output line
 * has ids, type_ids, offsets (bytes), special_tokens_mask, attention_mask, tokens and the decoded text
 * (skip_special_tokens true and false), or {"error": message}. */
static cJSON *int_array(const int64_t *v, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

/* The "options" object of a jsonl line: {"max_length": n, "strategy": "longest_first|only_first|only_second", "trunc_left": b,
 * "stride": n, "pad": "longest|fixed", "pad_length": n, "pad_to_multiple_of": n, "pad_left": b,
 * "return_overflowing": b} */
static void apply_json_options(const cJSON *j, td_tok_options *o) {
    if (!cJSON_IsObject(j))
        return;
    const cJSON *v;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(j, "max_length")) && v->valuedouble >= 0) {
        o->truncation = true;
        o->max_length = (size_t)v->valuedouble;
    }
    if (cJSON_IsString(v = cJSON_GetObjectItem(j, "strategy")))
        o->trunc_strategy = !strcmp(v->valuestring, "only_first")    ? TD_TRUNC_ONLY_FIRST
                            : !strcmp(v->valuestring, "only_second") ? TD_TRUNC_ONLY_SECOND
                                                                     : TD_TRUNC_LONGEST_FIRST;
    if (cJSON_IsBool(v = cJSON_GetObjectItem(j, "trunc_left")))
        o->trunc_left = cJSON_IsTrue(v);
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(j, "stride")) && v->valuedouble >= 0)
        o->stride = (size_t)v->valuedouble;
    if (cJSON_IsString(v = cJSON_GetObjectItem(j, "pad")))
        o->padding = !strcmp(v->valuestring, "fixed") ? TD_PAD_FIXED : TD_PAD_BATCH_LONGEST;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(j, "pad_length")) && v->valuedouble >= 0)
        o->pad_length = (size_t)v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(j, "pad_to_multiple_of")) && v->valuedouble >= 0)
        o->pad_to_multiple_of = (size_t)v->valuedouble;
    if (cJSON_IsBool(v = cJSON_GetObjectItem(j, "pad_left")))
        o->pad_left = cJSON_IsTrue(v);
    if (cJSON_IsBool(v = cJSON_GetObjectItem(j, "return_overflowing")))
        o->return_overflowing = cJSON_IsTrue(v);
}

/* The overflowing rows of e (byte offsets) and, when ce is given, of the same encode with character offsets. */
static cJSON *overflow_array(const td_encoding *e, const td_encoding *ce) {
    cJSON *arr = cJSON_CreateArray();
    for (size_t k = 0; arr && k < e->n_overflowing; k++) {
        const td_encoding *r = &e->overflowing[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "ids", int_array(r->ids, r->len));
        cJSON_AddItemToObject(o, "type_ids", int_array(r->type_ids, r->len));
        cJSON_AddItemToObject(o, "offsets", int_array(r->offsets, 2 * r->len));
        if (ce && k < ce->n_overflowing && ce->overflowing[k].len == r->len)
            cJSON_AddItemToObject(o, "char_offsets", int_array(ce->overflowing[k].offsets, 2 * r->len));
        cJSON_AddItemToObject(o, "attention_mask", int_array(r->attention_mask, r->len));
        cJSON_AddItemToObject(o, "special_tokens_mask", int_array(r->special_tokens_mask, r->len));
        cJSON *seqs = cJSON_AddArrayToObject(o, "sequence_ids");
        for (size_t i = 0; i < r->len; i++)
            cJSON_AddItemToArray(seqs, cJSON_CreateNumber((double)r->sequence_ids[i]));
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static int jsonl(const char *model, const char *file) {
    td_ctx *ctx = td_ctx_new();
    td_tokenizer *tok = NULL;
    td_status st = td_tokenizer_load(ctx, model, &tok);
    if (st) {
        int rc = report(ctx, st);
        td_ctx_free(ctx);
        return rc;
    }
    FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "td_tok_tool: cannot open %s\n", file);
        td_tokenizer_free(tok);
        td_ctx_free(ctx);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        cJSON *in = cJSON_ParseWithLength(line, (size_t)n);
        cJSON *res = cJSON_CreateObject();
        const cJSON *t = in ? cJSON_GetObjectItem(in, "text") : NULL;
        const cJSON *p = in ? cJSON_GetObjectItem(in, "pair") : NULL;
        const cJSON *as = in ? cJSON_GetObjectItem(in, "add_special_tokens") : NULL;
        if (!cJSON_IsString(t)) {
            cJSON_AddStringToObject(res, "error", "input line is not {\"text\": ...}");
        } else {
            td_tok_options o;
            td_tokenizer_default_options(tok, &o);
            o.add_special_tokens = !cJSON_IsFalse(as);
            o.truncation = false;
            o.padding = TD_PAD_NONE;
            apply_json_options(cJSON_GetObjectItem(in, "options"), &o);
            td_encoding e;
            const char *ps = cJSON_IsString(p) ? p->valuestring : NULL;
            st = td_tokenizer_encode(ctx, tok, t->valuestring, strlen(t->valuestring), ps, ps ? strlen(ps) : 0, &o,
                                     &e);
            if (st) {
                cJSON_AddStringToObject(res, "error", td_error_message(ctx));
            } else {
                cJSON_AddItemToObject(res, "ids", int_array(e.ids, e.len));
                cJSON_AddItemToObject(res, "type_ids", int_array(e.type_ids, e.len));
                cJSON_AddItemToObject(res, "offsets", int_array(e.offsets, 2 * e.len));
                td_encoding ce;
                o.char_offsets = true;
                if (td_tokenizer_encode(ctx, tok, t->valuestring, strlen(t->valuestring), ps, ps ? strlen(ps) : 0, &o,
                                        &ce) == TD_OK) {
                    cJSON_AddItemToObject(res, "char_offsets", int_array(ce.offsets, 2 * ce.len));
                    if (o.return_overflowing)
                        cJSON_AddItemToObject(res, "overflowing", overflow_array(&e, &ce));
                    td_encoding_free(&ce);
                }
                cJSON_AddItemToObject(res, "special_tokens_mask", int_array(e.special_tokens_mask, e.len));
                cJSON *words = cJSON_AddArrayToObject(res, "word_ids");
                for (size_t i = 0; i < e.len; i++)
                    cJSON_AddItemToArray(words, cJSON_CreateNumber((double)e.word_ids[i]));
                cJSON_AddItemToObject(res, "attention_mask", int_array(e.attention_mask, e.len));
                cJSON *toks = cJSON_AddArrayToObject(res, "tokens");
                for (size_t i = 0; i < e.len; i++)
                    cJSON_AddItemToArray(toks, cJSON_CreateString(e.tokens[i]));
                for (int skip = 0; skip < 2; skip++) {
                    char *d = NULL;
                    st = td_tokenizer_decode(ctx, tok, e.ids, e.len, skip, &d);
                    cJSON_AddStringToObject(res, skip ? "decoded_skip" : "decoded", st ? "<decode error>" : d);
                    free(d);
                }
                td_encoding_free(&e);
            }
        }
        char *s = cJSON_PrintUnformatted(res);
        printf("%s\n", s ? s : "{\"error\": \"out of memory\"}");
        free(s);
        cJSON_Delete(res);
        cJSON_Delete(in);
    }
    free(line);
    if (f != stdin)
        fclose(f);
    td_tokenizer_free(tok);
    td_ctx_free(ctx);
    return 0;
}


static int usage(void) {
    fprintf(stderr, "usage: td_tok_tool jsonl MODEL FILE|-\n"
                    "       td_tok_tool bench MODEL FILE [--batch N] [--repeat N] [--no-special-tokens]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "jsonl") && argc == 4)
        return jsonl(argv[2], argv[3]);
    if (argc < 4 || strcmp(argv[1], "bench"))
        return usage();
    long batch = 32, repeat = 5;
    bool add_special = true;
    for (int i = 4; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--no-special-tokens")) {
            add_special = false;
        } else if ((!strcmp(argv[i], "--batch") || !strcmp(argv[i], "--repeat")) && i + 1 < argc) {
            long v = strtol(argv[i + 1], &end, 10);
            if (v <= 0 || *end)
                return usage();
            *(argv[i][2] == 'b' ? &batch : &repeat) = v;
            i++;
        } else {
            return usage();
        }
    }
    return bench(argv[2], argv[3], batch, repeat, add_special);
}
