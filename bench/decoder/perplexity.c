/* Perplexity of a decoder on a text file: the text is tokenized (no special tokens), cut into non-overlapping
 * windows of W tokens, each window is one prefill through `tdeploy generate`'s generator (td_generator_open, so
 * a .gguf runs exactly as `generate` runs it), and the next-token log-probabilities of every position but the
 * window's last are summed in double:
 *     perplexity = exp(-(1/T) sum_windows sum_{i < len-1} log softmax(logits[i])[ids[i + 1]])
 * Usage: td_perplexity MODEL TEXT_FILE [--window W (512)] [--max-tokens N (all)] [--precision auto|fp32|int8]
 *                      [--threads N (2)]
 * Prints one JSON line: {"tokens": T, "windows": n, "nll": mean, "perplexity": p, "seconds": s}.
 * Exit 2 on usage errors, 1 on model/input errors. */
#include "generate/generator.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct acc {
    const int64_t *ids; /* the window's tokens */
    size_t len;
    double nll;         /* sum of -log p(next token) */
    size_t scored;
} acc;

static void on_logits(void *user, int64_t step, const float *logits, size_t batch, size_t seq, int64_t vocab) {
    acc *a = user;
    if (step != 0 || batch != 1 || seq != a->len)
        return;
    for (size_t i = 0; i + 1 < seq; i++) {
        const float *l = logits + i * (size_t)vocab; /* (vocab) */
        double mx = l[0], sum = 0;
        for (int64_t v = 1; v < vocab; v++)
            mx = l[v] > mx ? l[v] : mx;
        for (int64_t v = 0; v < vocab; v++)
            sum += exp((double)l[v] - mx);
        a->nll += -(((double)l[a->ids[i + 1]] - mx) - log(sum));
        a->scored++;
    }
}

static int usage(void) {
    fprintf(stderr, "usage: td_perplexity MODEL TEXT_FILE [--window W] [--max-tokens N] [--precision auto|fp32|int8] "
                    "[--threads N]\n");
    return 2;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return usage();
    const char *model = argv[1], *path = argv[2];
    long window = 512, max_tokens = 0;
    td_generator_options gopt = {.threads = 2, .all_logits = true}; /* every position's logits, not the last only */
    for (int i = 3; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        const char *k = argv[i], *v = argv[++i];
        char *end = NULL;
        if (!strcmp(k, "--window") && (window = strtol(v, &end, 10)) >= 2 && !*end)
            continue;
        if (!strcmp(k, "--max-tokens") && (max_tokens = strtol(v, &end, 10)) >= 0 && !*end)
            continue;
        if (!strcmp(k, "--threads") && (gopt.threads = (int)strtol(v, &end, 10)) >= 0 && !*end)
            continue;
        if (!strcmp(k, "--precision") && (!strcmp(v, "auto") || !strcmp(v, "fp32") || !strcmp(v, "int8"))) {
            gopt.gguf_dequantize = !strcmp(v, "fp32");
            gopt.gguf_int8_activations = !strcmp(v, "int8");
            continue;
        }
        return usage();
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "td_perplexity: cannot open %s\n", path);
        return 1;
    }
    char *text = NULL;
    size_t n = 0, cap = 0, k;
    char buf[65536];
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
        if (n + k + 1 > cap) {
            cap = (n + k + 1) * 2;
            char *t = realloc(text, cap);
            if (!t) {
                fclose(f);
                free(text);
                return 1;
            }
            text = t;
        }
        memcpy(text + n, buf, k);
        n += k;
    }
    fclose(f);
    td_ctx *ctx = td_ctx_new();
    td_generator *g = NULL;
    td_encoding enc = {0};
    int rc = 1;
    double t0 = now_s();
    if (td_generator_open(ctx, model, &gopt, &g) != TD_OK)
        goto out;
    const td_tokenizer *tok = td_generator_tokenizer(g);
    if (!tok) {
        fprintf(stderr, "td_perplexity: %s has no tokenizer\n", model);
        goto done;
    }
    td_tok_options to;
    td_tokenizer_default_options(tok, &to);
    to.add_special_tokens = false;
    if (td_tokenizer_encode(ctx, tok, text ? text : "", n, NULL, 0, &to, &enc) != TD_OK)
        goto out;
    size_t total = max_tokens > 0 && (size_t)max_tokens < enc.len ? (size_t)max_tokens : enc.len;
    double nll = 0;
    size_t scored = 0, windows = 0;
    for (size_t s = 0; s + 1 < total; s += (size_t)window) {
        size_t len = total - s < (size_t)window ? total - s : (size_t)window;
        if (len < 2)
            break;
        acc a = {enc.ids + s, len, 0, 0};
        td_gen_options o;
        td_gen_options_defaults(g, &o);
        o.max_new_tokens = 1;
        o.n_eos = 0;
        o.on_logits = on_logits;
        o.user = &a;
        const int64_t *ids[1] = {enc.ids + s};
        size_t lens[1] = {len};
        td_gen_result r[1];
        if (td_generate(ctx, g, ids, lens, 1, &o, r) != TD_OK)
            goto out;
        td_gen_results_free(r, 1);
        nll += a.nll;
        scored += a.scored;
        windows++;
    }
    if (!scored) {
        fprintf(stderr, "td_perplexity: %s holds fewer than 2 tokens\n", path);
        goto done;
    }
    printf("{\"tokens\": %zu, \"windows\": %zu, \"nll\": %.9f, \"perplexity\": %.6f, \"seconds\": %.2f}\n", scored,
           windows, nll / (double)scored, exp(nll / (double)scored), now_s() - t0);
    rc = 0;
    goto done;
out:
    fprintf(stderr, "td_perplexity: %s\n", td_error_message(ctx));
done:
    td_encoding_free(&enc);
    td_generator_free(g);
    td_ctx_free(ctx);
    free(text);
    return rc;
}
