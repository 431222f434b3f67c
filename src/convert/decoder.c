/* The decoder branch of convert: validation and benchmark through the generation loop (convert/decoder.h). */
#define _GNU_SOURCE
#include "convert/decoder.h"

#include "convert/feeds.h"
#include "core/ctx.h"
#include "core/log.h"
#include "generate/generator.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_PROMPTS 4          /* fixed prompts: the first built-in validation texts */
#define MAX_PROMPT_TOKENS 32 /* cut so that prompt + new tokens fit small contexts */
#define VALIDATION_NEW_TOKENS 16
#define BENCH_NEW_TOKENS 32

static uint64_t next_rand(uint64_t *s) { /* splitmix64: reproducible random prompt ids */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The prompts as token ids: the built-in texts through the model's tokenizer, or
 * random ids of different lengths when the model has none. ids[i] (lens[i]) malloc'd. */
static td_status make_prompts(td_ctx *ctx, const td_generator *g, uint64_t seed, int64_t min_len, int64_t max_len,
                              int64_t *ids[N_PROMPTS], size_t lens[N_PROMPTS]) {
    const td_tokenizer *tok = td_generator_tokenizer(g);
    for (int i = 0; i < N_PROMPTS; i++) {
        td_encoding enc = {0};
        size_t n = 0;
        if (tok) {
            td_tok_options to = {.add_special_tokens = true};
            const char *t = td_builtin_texts[i % td_builtin_text_count];
            TD_TRY(td_tokenizer_encode(ctx, tok, t, strlen(t), NULL, 0, &to, &enc));
            n = enc.len;
        } else {
            n = (size_t)(3 + 2 * i);
        }
        if (n > (size_t)max_len)
            n = (size_t)max_len;
        if (n < (size_t)min_len) /* extended with random ids up to --seq-len MIN */
            n = (size_t)min_len;
        if (n == 0)
            n = 1;
        ids[i] = malloc(n * sizeof *ids[i]);
        if (!ids[i]) {
            td_encoding_free(&enc);
            return td_fail_oom(ctx, n * sizeof(int64_t), "prompt ids");
        }
        for (size_t k = 0; k < n; k++)
            ids[i][k] = tok && k < enc.len ? enc.ids[k] : (int64_t)(next_rand(&seed) % (uint64_t)td_generator_vocab(g));
        lens[i] = n;
        td_encoding_free(&enc);
    }
    return TD_OK;
}

/* on_logits of the reference run: keep the prefill logits (batch, seq, vocab). */
typedef struct logits_keep {
    float *data;
    size_t batch, seq, numel;
    int64_t vocab;
    bool oom;
} logits_keep;

static void keep_prefill(void *user, int64_t step, const float *logits, size_t batch, size_t seq, int64_t vocab) {
    logits_keep *k = user;
    if (step != 0)
        return;
    size_t numel = batch * seq * (size_t)vocab;
    float *p = realloc(k->data, numel * sizeof *p);
    if (!p) {
        k->oom = true;
        return;
    }
    memcpy(p, logits, numel * sizeof *p);
    k->data = p, k->batch = batch, k->seq = seq, k->vocab = vocab, k->numel = numel;
}

/* on_logits of the backend run: compare the prefill logits with the kept ones at the real positions. */
typedef struct logits_cmp {
    const logits_keep *ref;
    const size_t *lens; /* prompt length of each row: row i's real columns are seq - lens[i] .. seq - 1 */
    td_convert_decoder *d;
    bool shape_mismatch;
} logits_cmp;

static void compare_prefill(void *user, int64_t step, const float *logits, size_t batch, size_t seq, int64_t vocab) {
    logits_cmp *c = user;
    if (step != 0)
        return;
    const logits_keep *r = c->ref;
    if (!r->data || r->batch != batch || r->seq != seq || r->vocab != vocab) {
        c->shape_mismatch = true;
        return;
    }
    td_convert_decoder *d = c->d;
    for (size_t i = 0; i < batch; i++)
        for (size_t k = seq - c->lens[i]; k < seq; k++) {
            const float *a = r->data + (i * seq + k) * (size_t)vocab, *b = logits + (i * seq + k) * (size_t)vocab;
            int64_t top_ref = 0, top_got = 0; /* first maximum, as the greedy sampler */
            for (int64_t v = 1; v < vocab; v++) {
                top_ref = a[v] > a[top_ref] ? v : top_ref;
                top_got = b[v] > b[top_got] ? v : top_got;
            }
            d->n_positions++;
            d->n_top1_agree += top_ref == top_got;
            double mean = 0;
            for (int64_t v = 0; v < vocab; v++)
                mean += a[v];
            mean /= (double)vocab;
            double standout = (double)a[top_ref] - mean, gap = (double)a[top_ref] - (double)a[top_got];
            /* near-top: the backend's choice is, in the reference's own logits, within near_tol of the way the
             * reference's top stands out of its row (a garbage choice sits near the mean: gap ~ standout) */
            d->n_near_top += gap <= d->near_tol * standout;
            for (int64_t v = 0; v < vocab; v++) {
                d->non_finite |= !isfinite(b[v]);
                double ref = a[v], got = b[v], diff = fabs(got - ref);
                double rel = diff / fmax(fabs(ref), 1e-3);
                bool ok = diff <= d->atol + d->rtol * fabs(ref); /* NaN never passes */
                if (!(diff <= d->max_abs))
                    d->max_abs = isnan(diff) ? INFINITY : diff;
                if (rel > d->max_rel)
                    d->max_rel = rel;
                d->n_failed += !ok;
                d->n_compared++;
            }
        }
}

static td_status open_pair(td_ctx *ctx, td_convert_decoder *d, td_generator **ref, td_generator **got) {
    td_generator_options ro = {.threads = 1, .backend = "reference", .keep_graph = true};
    if (td_generator_open(ctx, d->ref_onnx, &ro, ref) != TD_OK)
        return td_wrap(ctx, "preparing the validation reference (reference kernels on %s)", d->ref_onnx);
    td_generator_options bo = {.threads = d->o->threads, .backend = d->backend, .precision = d->precision,
                               .all_logits = true};
    if (td_generator_open(ctx, d->opt_onnx, &bo, got) != TD_OK)
        return td_wrap(ctx, "preparing backend '%s'", d->backend);
    return TD_OK;
}

/* One validation case: prompts [first, first + n) as one (left-padded when n > 1) batch. */
static td_status validate_case(td_ctx *ctx, td_convert_decoder *d, td_generator *ref, td_generator *got,
                               int64_t *const *ids, const size_t *lens, size_t n, logits_keep *keep) {
    td_gen_options o;
    td_gen_options_defaults(ref, &o);
    o.max_new_tokens = d->new_tokens;
    o.interrupt = d->o->interrupted;
    o.on_logits = keep_prefill;
    o.user = keep;
    td_gen_result *rr = calloc(2 * n, sizeof *rr), *gr = rr + n;
    if (!rr)
        return td_fail_oom(ctx, 2 * n * sizeof *rr, "generation results");
    td_status s = td_generate(ctx, ref, (const int64_t *const *)ids, lens, n, &o, rr);
    if (s == TD_OK && keep->oom) {
        td_gen_results_free(rr, n);
        s = td_fail_oom(ctx, keep->numel * sizeof(float), "reference logits");
    }
    if (s != TD_OK) {
        free(rr);
        return s;
    }
    logits_cmp cmp = {.ref = keep, .lens = lens, .d = d};
    td_gen_options_defaults(got, &o);
    o.max_new_tokens = d->new_tokens;
    o.interrupt = d->o->interrupted;
    o.on_logits = compare_prefill;
    o.user = &cmp;
    s = td_generate(ctx, got, (const int64_t *const *)ids, lens, n, &o, gr);
    if (s != TD_OK) {
        td_gen_results_free(rr, n);
        free(rr);
        return td_wrap(ctx, "backend '%s' generating", d->backend);
    }
    if (cmp.shape_mismatch)
        s = td_fail(ctx, TD_ERR_VALIDATION, "backend '%s': prefill logits differ in shape from the reference",
                    d->backend);
    for (size_t i = 0; i < n && s == TD_OK; i++) {
        d->n_cases++;
        size_t at = 0;
        while (at < rr[i].n_ids && at < gr[i].n_ids && rr[i].ids[at] == gr[i].ids[at])
            at++;
        d->greedy_total += rr[i].n_ids;
        d->greedy_same += at;
        bool same = rr[i].n_ids == gr[i].n_ids && at == rr[i].n_ids;
        if (same)
            continue;
        d->greedy_first_diff_min = at < d->greedy_first_diff_min ? at : d->greedy_first_diff_min;
        if (d->n_token_mismatch++ == 0)
            snprintf(d->mismatch, sizeof d->mismatch,
                     "row %zu of a batch of %zu (prompt of %zu tokens): new token %zu is %lld for the reference, %lld "
                     "for the backend (%zu and %zu tokens made)",
                     i, n, lens[i], at, at < rr[i].n_ids ? (long long)rr[i].ids[at] : -1LL,
                     at < gr[i].n_ids ? (long long)gr[i].ids[at] : -1LL, rr[i].n_ids, gr[i].n_ids);
    }
    td_gen_results_free(rr, n);
    td_gen_results_free(gr, n);
    free(rr);
    return s;
}

static double top1_rate(const td_convert_decoder *d) {
    return d->n_positions ? (double)d->n_top1_agree / (double)d->n_positions : 0.0;
}

static double near_top_rate(const td_convert_decoder *d) {
    return d->n_positions ? (double)d->n_near_top / (double)d->n_positions : 0.0;
}

bool td_convert_decoder_logits_pass(const td_convert_decoder *d) {
    if (d->n_compared == 0 || d->non_finite)
        return false;
    if (d->elementwise && d->n_failed != 0)
        return false;
    return d->min_near_top <= 0 || near_top_rate(d) >= d->min_near_top;
}

bool td_convert_decoder_greedy_pass(const td_convert_decoder *d) {
    return d->n_cases > 0 && (d->min_near_top > 0 || d->n_token_mismatch == 0);
}

td_status td_convert_decoder_validate(td_ctx *ctx, td_convert_decoder *d) {
    td_generator *ref = NULL, *got = NULL;
    int64_t *ids[N_PROMPTS] = {0};
    size_t lens[N_PROMPTS] = {0};
    logits_keep keep = {0};
    td_status s = open_pair(ctx, d, &ref, &got);
    int64_t ctxlen = s == TD_OK ? td_generator_context(ref) : 0;
    int64_t min_prompt = d->seq_given ? d->seq_min : 1, max_prompt = d->seq_given ? d->seq_max : MAX_PROMPT_TOKENS;
    d->new_tokens = VALIDATION_NEW_TOKENS;
    if (ctxlen > 0 && max_prompt + d->new_tokens > ctxlen) {
        if (!d->seq_given) /* tiny contexts: half prompt, half new tokens */
            max_prompt = ctxlen / 2 > 0 ? ctxlen / 2 : 1;
        d->new_tokens = ctxlen - max_prompt;
    }
    if (s == TD_OK && d->new_tokens < 1)
        s = td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "prompts of %lld tokens leave no room to generate in the model's "
                    "context of %lld positions", (long long)max_prompt, (long long)ctxlen);
    if (s == TD_OK)
        s = make_prompts(ctx, ref, d->seed, min_prompt, max_prompt, ids, lens);
    /* every prompt alone, then one left-padded batch of them (rows cycle through the prompts) */
    for (int i = 0; i < N_PROMPTS && s == TD_OK; i++)
        s = validate_case(ctx, d, ref, got, &ids[i], &lens[i], 1, &keep);
    size_t rows = d->batch_given ? (size_t)d->batch[2] : N_PROMPTS;
    d->batch_rows = rows > 1 ? rows : 0;
    d->prompt_min = d->prompt_max = lens[0];
    for (int i = 1; i < N_PROMPTS; i++) {
        d->prompt_min = lens[i] < d->prompt_min ? lens[i] : d->prompt_min;
        d->prompt_max = lens[i] > d->prompt_max ? lens[i] : d->prompt_max;
    }
    int64_t **bids = s == TD_OK ? malloc(rows * sizeof *bids) : NULL;
    size_t *blens = s == TD_OK ? malloc(rows * sizeof *blens) : NULL;
    if (s == TD_OK && (!bids || !blens))
        s = td_fail_oom(ctx, rows * sizeof *bids, "the validation batch");
    for (size_t i = 0; s == TD_OK && i < rows; i++)
        bids[i] = ids[i % N_PROMPTS], blens[i] = lens[i % N_PROMPTS];
    if (s == TD_OK && rows > 1)
        s = validate_case(ctx, d, ref, got, bids, blens, rows, &keep);
    free(bids);
    free(blens);
    d->passed = s == TD_OK && td_convert_decoder_logits_pass(d) && td_convert_decoder_greedy_pass(d);
    if (s == TD_OK) {
        td_info("  %s/logits (prefill): %zu values over %d generations, max abs diff %.3g, max rel diff %.3g, %zu "
                "outside atol %.g + rtol %.g%s; top-1 agreement %zu of %zu positions (%.1f%%)",
                d->backend, d->n_compared, d->n_cases, d->max_abs, d->max_rel, d->n_failed, d->atol, d->rtol,
                d->elementwise ? "" : " (reported)", d->n_top1_agree, d->n_positions, 100.0 * top1_rate(d));
        if (d->min_near_top > 0)
            td_info("  %s/near-top agreement: %zu of %zu positions (%.1f%%, needs >= %.0f%%): the backend's top-1 "
                    "within %.2f of the reference top's standout (max - mean) of the reference's logits",
                    d->backend, d->n_near_top, d->n_positions, 100.0 * near_top_rate(d), 100.0 * d->min_near_top,
                    d->near_tol);
        td_info("  %s/greedy tokens: %d of %d generations of %lld new tokens identical, %zu of %zu leading tokens "
                "agree%s%s%s",
                d->backend, d->n_cases - d->n_token_mismatch, d->n_cases, (long long)d->new_tokens, d->greedy_same,
                d->greedy_total, d->n_token_mismatch ? "; " : "", d->mismatch,
                d->min_near_top > 0 ? " (reported: quantized continuations may diverge)" : "");
        td_info("  %s: validation %s", d->backend, d->passed ? "passed" : "FAILED");
    }
    free(keep.data);
    for (int i = 0; i < N_PROMPTS; i++)
        free(ids[i]);
    td_generator_free(ref);
    td_generator_free(got);
    return s;
}

/* runs + warmup generations of new_tokens from random prompts (batch, prompt) with eos off. */
static td_status bench_one(td_ctx *ctx, td_convert_decoder *d, td_generator *g, td_decoder_bench *b) {
    const int runs = d->o->nb_measures, warm = d->o->warmup;
    double *ttft = calloc((size_t)runs, sizeof *ttft), *step = calloc((size_t)runs, sizeof *step);
    int64_t *buf = malloc((size_t)(b->batch * b->prompt) * sizeof *buf);
    int64_t **rows = malloc((size_t)b->batch * sizeof *rows);
    size_t *lens = malloc((size_t)b->batch * sizeof *lens);
    td_gen_result *res = calloc((size_t)b->batch, sizeof *res);
    td_status s = TD_OK;
    if (!ttft || !step || !buf || !rows || !lens || !res) {
        s = td_fail_oom(ctx, 0, "benchmark buffers");
        goto out;
    }
    uint64_t rng = d->seed;
    for (int64_t i = 0; i < b->batch * b->prompt; i++)
        buf[i] = (int64_t)(next_rand(&rng) % (uint64_t)td_generator_vocab(g));
    for (int64_t i = 0; i < b->batch; i++)
        rows[i] = buf + i * b->prompt, lens[i] = (size_t)b->prompt;
    td_gen_options o;
    td_gen_options_defaults(g, &o);
    o.max_new_tokens = b->new_tokens;
    o.n_eos = 0; /* every run makes new_tokens tokens */
    o.interrupt = d->o->interrupted;
    for (int r = -warm; r < runs && s == TD_OK; r++) {
        s = td_generate(ctx, g, (const int64_t *const *)rows, lens, (size_t)b->batch, &o, res);
        if (s != TD_OK)
            break;
        if (r >= 0) {
            ttft[r] = res[0].prefill_s;
            step[r] = res[0].decode_s / (double)(b->new_tokens - 1);
        }
        td_gen_results_free(res, (size_t)b->batch);
    }
    if (s == TD_OK && (s = td_latency_stats_compute(ctx, ttft, (size_t)runs, TD_PCT_LINEAR, &b->ttft)) == TD_OK &&
        (s = td_latency_stats_compute(ctx, step, (size_t)runs, TD_PCT_LINEAR, &b->decode)) == TD_OK)
        b->prefill_tokens_per_s = b->ttft.p50 > 0 ? (double)(b->batch * b->prompt) / b->ttft.p50 : 0;
out:
    free(ttft);
    free(step);
    free(buf);
    free(rows);
    free(lens);
    free(res);
    return s;
}

td_status td_convert_decoder_benchmark(td_ctx *ctx, td_convert_decoder *d) {
    td_generator *g = NULL;
    td_generator_options bo = {.threads = d->o->threads, .backend = d->backend, .precision = d->precision};
    if (td_generator_open(ctx, d->opt_onnx, &bo, &g) != TD_OK)
        return td_wrap(ctx, "preparing backend '%s' for the benchmark", d->backend);
    int64_t ctxlen = td_generator_context(g), prompt = d->prompt_len, new_tokens = BENCH_NEW_TOKENS;
    if (ctxlen > 0 && prompt + new_tokens > ctxlen) {
        if (!d->seq_given) /* the default prompt: halve it for a small context; a given OPT stays */
            prompt = ctxlen / 2 < prompt ? ctxlen / 2 : prompt;
        new_tokens = ctxlen - prompt;
    }
    td_status s = TD_OK;
    if (prompt < 1 || new_tokens < 2)
        s = td_fail(ctx, TD_ERR_UNSUPPORTED, "the model's context (%lld positions) is too short to benchmark decoding",
                    (long long)ctxlen);
    int64_t batches[TD_DECODER_BENCH_BATCHES] = {1, 8};
    int n_batches = 2;
    if (d->batch_given) /* MIN, OPT, MAX without repeats */
        for (int k = n_batches = 0; k < 3; k++)
            if (n_batches == 0 || batches[n_batches - 1] != d->batch[k])
                batches[n_batches++] = d->batch[k];
    for (int k = 0; k < n_batches && s == TD_OK; k++) {
        td_decoder_bench *b = &d->bench[k];
        b->batch = batches[k], b->prompt = prompt, b->new_tokens = new_tokens;
        if ((s = bench_one(ctx, d, g, b)) != TD_OK)
            break;
        d->n_bench = k + 1;
        td_info("  %s batch %lld, prompt %lld, %lld new tokens: time to first token p50 %.3f ms, prefill %.0f "
                "tokens/s, decode p50 %.3f p95 %.3f ms/token",
                d->backend, (long long)b->batch, (long long)prompt, (long long)new_tokens, b->ttft.p50 * 1e3,
                b->prefill_tokens_per_s, b->decode.p50 * 1e3, b->decode.p95 * 1e3);
    }
    td_generator_free(g);
    return s;
}

td_status td_convert_decoder_report(td_ctx *ctx, const td_convert_decoder *d, td_report *r) {
    td_validation_result v = {.backend = d->backend, .output = "logits", .n_compared = d->n_compared,
                              .max_abs_diff = d->max_abs, .max_rel_diff = d->max_rel, .atol = d->atol,
                              .rtol = d->rtol, .argmax_agreement = d->n_positions ? top1_rate(d) : -1,
                              .mean_cosine = NAN, .min_cosine = NAN, .elementwise_decides = d->elementwise,
                              .passed = td_convert_decoder_logits_pass(d)};
    TD_TRY(td_report_add_validation(ctx, r, &v));
    cJSON *root = td_report_json(r);
    cJSON *vals = cJSON_GetObjectItem(root, "validation");
    cJSON *last = vals ? cJSON_GetArrayItem(vals, cJSON_GetArraySize(vals) - 1) : NULL;
    if (last) { /* what argmax_agreement counts for a decoder, and the rule it met */
        cJSON_AddNumberToObject(last, "top1_positions", (double)d->n_positions);
        cJSON_AddNumberToObject(last, "top1_agree", (double)d->n_top1_agree);
        if (d->min_near_top > 0) { /* the quantized rule (convert/decoder.h) */
            cJSON_AddNumberToObject(last, "near_top_agreement", near_top_rate(d));
            cJSON_AddNumberToObject(last, "near_top_tolerance", d->near_tol);
            cJSON_AddNumberToObject(last, "min_near_top_agreement", d->min_near_top);
        }
        cJSON_AddBoolToObject(last, "finite", !d->non_finite);
        if (!cJSON_GetObjectItem(last, "elementwise_decides"))
            cJSON_AddBoolToObject(last, "elementwise_decides", d->elementwise);
    }
    cJSON *gt = cJSON_AddObjectToObject(root, "greedy_tokens");
    cJSON *gb = cJSON_AddArrayToObject(root, "generation_benchmark");
    if (!gt || !gb)
        return td_fail_oom(ctx, 0, "the report");
    cJSON_AddStringToObject(gt, "backend", d->backend);
    cJSON_AddNumberToObject(gt, "generations", d->n_cases);
    cJSON_AddNumberToObject(gt, "identical", d->n_cases - d->n_token_mismatch);
    cJSON_AddNumberToObject(gt, "new_tokens", (double)d->new_tokens);
    cJSON_AddNumberToObject(gt, "prompt_tokens_min", (double)d->prompt_min);
    cJSON_AddNumberToObject(gt, "prompt_tokens_max", (double)d->prompt_max);
    cJSON_AddNumberToObject(gt, "batch_rows", (double)d->batch_rows);
    cJSON_AddNumberToObject(gt, "tokens", (double)d->greedy_total);
    cJSON_AddNumberToObject(gt, "leading_tokens_identical", (double)d->greedy_same);
    cJSON_AddNumberToObject(gt, "agreement", d->greedy_total ? (double)d->greedy_same / (double)d->greedy_total : 0);
    if (d->n_token_mismatch)
        cJSON_AddNumberToObject(gt, "first_difference_min", (double)d->greedy_first_diff_min);
    cJSON_AddBoolToObject(gt, "decides", d->min_near_top <= 0); /* quantized: reported only */
    cJSON_AddBoolToObject(gt, "passed", td_convert_decoder_greedy_pass(d));
    if (d->n_token_mismatch)
        cJSON_AddStringToObject(gt, "first_mismatch", d->mismatch);
    cJSON_AddStringToObject(root, "triton_repository",
                            d->passed ? "triton/: decoupled (streaming) text generation on the tdeploy backend"
                                      : "not written: validation failed");
    for (int k = 0; k < d->n_bench; k++) {
        const td_decoder_bench *b = &d->bench[k];
        cJSON *e = cJSON_CreateObject();
        if (!e)
            return td_fail_oom(ctx, 0, "the report");
        cJSON_AddItemToArray(gb, e);
        cJSON_AddStringToObject(e, "backend", d->backend);
        cJSON_AddNumberToObject(e, "batch", (double)b->batch);
        cJSON_AddNumberToObject(e, "prompt_tokens", (double)b->prompt);
        cJSON_AddNumberToObject(e, "new_tokens", (double)b->new_tokens);
        cJSON_AddNumberToObject(e, "runs", (double)b->ttft.n);
        cJSON_AddNumberToObject(e, "warmup", d->o->warmup);
        cJSON_AddNumberToObject(e, "ttft_ms_p50", b->ttft.p50 * 1e3);
        cJSON_AddNumberToObject(e, "ttft_ms_p95", b->ttft.p95 * 1e3);
        cJSON_AddNumberToObject(e, "prefill_tokens_per_s", b->prefill_tokens_per_s);
        cJSON_AddNumberToObject(e, "decode_ms_per_token_p50", b->decode.p50 * 1e3);
        cJSON_AddNumberToObject(e, "decode_ms_per_token_p95", b->decode.p95 * 1e3);
    }
    return TD_OK;
}

void td_convert_decoder_summary(const td_convert_decoder *d, char *buf, size_t n) {
    size_t len = strlen(buf);
#define APPEND(...)                                                                                                    \
    do {                                                                                                               \
        if (len + 1 < n) {                                                                                             \
            int w = snprintf(buf + len, n - len, __VA_ARGS__);                                                         \
            len = w > 0 ? (len + (size_t)w < n ? len + (size_t)w : n - 1) : len;                                       \
        }                                                                                                              \
    } while (0)
    char need[96] = "";
    if (d->min_near_top > 0)
        snprintf(need, sizeof need, "; near-top agreement %.1f%% (needs >= %.0f%%, tolerance %.2f)",
                 100.0 * near_top_rate(d), 100.0 * d->min_near_top, d->near_tol);
    APPEND("\nvalidation %s: prefill logits max abs %.3g, max rel %.3g, %zu of %zu outside atol %.g + rtol %.g%s; "
           "top-1 agreement %zu of %zu positions (%.1f%%)%s; greedy tokens identical in %d of %d generations (%lld "
           "new tokens), %zu of %zu leading tokens agree%s: %s\n",
           d->backend, d->max_abs, d->max_rel, d->n_failed, d->n_compared, d->atol, d->rtol,
           d->elementwise ? "" : " (reported)", d->n_top1_agree, d->n_positions, 100.0 * top1_rate(d), need,
           d->n_cases - d->n_token_mismatch, d->n_cases, (long long)d->new_tokens, d->greedy_same, d->greedy_total,
           d->min_near_top > 0 ? " (reported)" : "", d->passed ? "passed" : "FAILED");
    if (d->n_bench == 0) {
        APPEND("benchmark  not run (--no-bench)\n");
    } else {
        APPEND("\n%-8s %5s %6s %5s %9s %9s %14s %10s %10s\n", "backend", "batch", "prompt", "new", "TTFT p50",
               "TTFT p95", "prefill tok/s", "ms/tok p50", "ms/tok p95");
        for (int k = 0; k < d->n_bench; k++) {
            const td_decoder_bench *b = &d->bench[k];
            APPEND("%-8s %5lld %6lld %5lld %9.3f %9.3f %14.0f %10.3f %10.3f\n", d->backend, (long long)b->batch,
                   (long long)b->prompt, (long long)b->new_tokens, b->ttft.p50 * 1e3, b->ttft.p95 * 1e3,
                   b->prefill_tokens_per_s, b->decode.p50 * 1e3, b->decode.p95 * 1e3);
        }
        APPEND("(TTFT = prefill of the batch in ms; ms/tok = one decode step of the whole batch; %d runs after %d "
               "warm-up, eos off)\n",
               d->o->nb_measures, d->o->warmup);
    }
    APPEND(d->passed ? "(triton/: the model streams generation in Triton's decoupled mode on the tdeploy backend, "
                       "libtriton_tdeploy.so)\n"
                     : "(no Triton repository: validation failed)\n");
#undef APPEND
}
