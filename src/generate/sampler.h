/* Next-token choice from one row of logits, with the logits processors of
 * transformers' generate() in its order: repetition penalty, then (when sampling)
 * temperature, top-k, top-p, min-p, and a draw from the softmax. Greedy is the
 * argmax after the repetition penalty. The random generator is seeded
 * explicitly, so a seed gives the same tokens on every run and machine. */
#ifndef TD_GENERATE_SAMPLER_H
#define TD_GENERATE_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct td_sampling {
    bool do_sample;           /* false: greedy */
    float temperature;        /* > 0; 1 leaves the logits alone */
    int64_t top_k;            /* keep the k best (ties with the k-th kept); 0 = off */
    float top_p;              /* keep the smallest set whose probability reaches top_p; 1 = off */
    float min_p;              /* drop tokens below min_p x the best probability; 0 = off */
    float repetition_penalty; /* > 0; seen tokens: logit / p when positive, logit * p when negative; 1 = off */
    uint64_t seed;
} td_sampling;

/* transformers' defaults: greedy, temperature 1, top_k 0 (off here), top_p 1, min_p 0, penalty 1. */
void td_sampling_defaults(td_sampling *p);

typedef struct td_rng {
    uint64_t s[4];
} td_rng;

void td_rng_seed(td_rng *r, uint64_t seed);
/* Uniform in [0, 1). */
double td_rng_uniform(td_rng *r);

/* Work memory for one vocabulary size, allocated once per request. */
typedef struct td_sampler_scratch {
    int64_t vocab;
    int32_t *order; /* (vocab) token ids sorted by logit */
    float *probs;   /* (vocab) */
    uint8_t *seen;  /* (vocab) repetition-penalty marks */
} td_sampler_scratch;

bool td_sampler_scratch_init(td_sampler_scratch *s, int64_t vocab); /* false when out of memory */
void td_sampler_scratch_free(td_sampler_scratch *s);

/* The next token for logits[vocab] (modified in place: penalty, temperature and
 * filtered tokens set to -inf). history[n_history] are the ids seen so far
 * (prompt and generated), each penalized once. Ids in history outside the
 * vocabulary are ignored. */
int64_t td_sample_next(float *logits, int64_t vocab, const int64_t *history, size_t n_history, const td_sampling *p,
                       td_rng *rng, td_sampler_scratch *scratch);

#endif
