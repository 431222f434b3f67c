/* Logits processors and the draw (see sampler.h). Semantics follow transformers'
 * RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
 * TopPLogitsWarper and MinPLogitsWarper (min_tokens_to_keep 1). */
#include "generate/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void td_sampling_defaults(td_sampling *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
}

/* splitmix64 to spread the seed, then xoshiro256** */
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void td_rng_seed(td_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

double td_rng_uniform(td_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(out >> 11) * 0x1.0p-53;
}

bool td_sampler_scratch_init(td_sampler_scratch *s, int64_t vocab) {
    memset(s, 0, sizeof *s);
    if (vocab < 1 || vocab > INT32_MAX)
        return false;
    s->vocab = vocab;
    s->order = malloc((size_t)vocab * sizeof *s->order);
    s->probs = malloc((size_t)vocab * sizeof *s->probs);
    s->seen = calloc((size_t)vocab, 1);
    if (!s->order || !s->probs || !s->seen) {
        td_sampler_scratch_free(s);
        return false;
    }
    return true;
}

void td_sampler_scratch_free(td_sampler_scratch *s) {
    free(s->order);
    free(s->probs);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static void repetition_penalty(float *logits, int64_t vocab, const int64_t *hist, size_t n, float p, uint8_t *seen) {
    for (size_t i = 0; i < n; i++) {
        int64_t t = hist[i];
        if (t < 0 || t >= vocab || seen[t])
            continue;
        seen[t] = 1; /* each distinct token once, as transformers' gather/scatter does */
        logits[t] = logits[t] < 0 ? logits[t] * p : logits[t] / p;
    }
    for (size_t i = 0; i < n; i++)
        if (hist[i] >= 0 && hist[i] < vocab)
            seen[hist[i]] = 0;
}

/* softmax of logits into probs (0 for -inf); returns the largest probability */
static float softmax(const float *logits, float *probs, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        probs[i] = logits[i] == -INFINITY ? 0.0f : expf(logits[i] - mx);
        sum += probs[i];
    }
    float best = 0;
    for (int64_t i = 0; i < n; i++) {
        probs[i] = (float)(probs[i] / sum);
        best = probs[i] > best ? probs[i] : best;
    }
    return best;
}

/* qsort has no context argument: the keys of the sort in progress on this thread */
static _Thread_local const float *t_sort_keys;

static int by_logit_desc(const void *a, const void *b) {
    float x = t_sort_keys[*(const int32_t *)a], y = t_sort_keys[*(const int32_t *)b];
    if (x != y)
        return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b; /* stable order for equal logits */
}

int64_t td_sample_next(float *logits, int64_t vocab, const int64_t *history, size_t n_history, const td_sampling *p,
                       td_rng *rng, td_sampler_scratch *sc) {
    if (p->repetition_penalty != 1.0f)
        repetition_penalty(logits, vocab, history, n_history, p->repetition_penalty, sc->seen);
    if (!p->do_sample)
        return argmax(logits, vocab);
    if (p->temperature != 1.0f)
        for (int64_t i = 0; i < vocab; i++)
            logits[i] /= p->temperature;
    for (int64_t i = 0; i < vocab; i++)
        sc->order[i] = (int32_t)i;
    t_sort_keys = logits;
    qsort(sc->order, (size_t)vocab, sizeof *sc->order, by_logit_desc);
    if (p->top_k > 0 && p->top_k < vocab) {
        float kth = logits[sc->order[p->top_k - 1]];
        for (int64_t i = p->top_k; i < vocab; i++)
            if (logits[sc->order[i]] < kth)
                logits[sc->order[i]] = -INFINITY;
    }
    if (p->top_p < 1.0f) {
        /* transformers sorts ascending and drops tokens whose cumulative probability is <= 1 - top_p;
         * from the top that keeps tokens until the mass before them reaches top_p (at least one) */
        softmax(logits, sc->probs, vocab);
        double below = 1.0; /* mass of this token and everything less likely */
        for (int64_t i = 0; i < vocab; i++) {
            int32_t t = sc->order[i];
            if (i > 0 && below <= 1.0 - (double)p->top_p)
                logits[t] = -INFINITY;
            below -= sc->probs[t];
        }
    }
    if (p->min_p > 0.0f) {
        float best = softmax(logits, sc->probs, vocab);
        for (int64_t i = 1; i < vocab; i++) /* order[0] is the best token: always kept */
            if (sc->probs[sc->order[i]] < p->min_p * best)
                logits[sc->order[i]] = -INFINITY;
    }
    softmax(logits, sc->probs, vocab);
    double u = td_rng_uniform(rng), acc = 0;
    for (int64_t i = 0; i < vocab; i++) {
        int32_t t = sc->order[i];
        acc += sc->probs[t];
        if (u < acc)
            return t;
    }
    return sc->order[0]; /* rounding left u above the total: the most likely token */
}
