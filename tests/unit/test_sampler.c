/* Sampling (src/generate/sampler.c) against direct computations of transformers'
 * processors on small logit vectors: repetition penalty, top-k (ties kept),
 * top-p, min-p; the draw's frequencies against the renormalized softmax; seeds.
 * Streaming boundaries (src/generate/stream.c): partial UTF-8, trailing U+FFFD,
 * stop-string prefixes held back. */
#include "generate/sampler.h"
#include "generate/stream.h"
#include "test.h"

#include <math.h>
#include <string.h>

#define V 8

static const float k_logits[V] = {2.0f, 1.0f, 0.5f, 0.5f, -1.0f, -2.0f, 3.0f, 0.0f};

/* Draw n times with p; counts[v] = how often v came. */
static void draw(const td_sampling *p, int n, int *counts) {
    td_sampler_scratch sc;
    CHECK(td_sampler_scratch_init(&sc, V));
    td_rng rng;
    td_rng_seed(&rng, p->seed);
    memset(counts, 0, V * sizeof *counts);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        float x[V];
        memcpy(x, k_logits, sizeof x);
        int64_t t = td_sample_next(x, V, NULL, 0, p, &rng, &sc);
        if (t >= 0 && t < V)
            counts[t]++;
        else
            bad++;
    }
    CHECK(bad == 0);
    td_sampler_scratch_free(&sc);
}

/* softmax(k_logits / temp) restricted to keep[] and renormalized */
static void expected(const bool *keep, float temp, double *p) {
    double s = 0;
    for (int i = 0; i < V; i++)
        s += p[i] = keep[i] ? exp(k_logits[i] / temp) : 0;
    for (int i = 0; i < V; i++)
        p[i] /= s;
}

/* every drawn token is kept, every kept token's frequency within 4 sigma of its probability */
static void check_distribution(const char *what, const td_sampling *p, const bool *keep, float temp) {
    enum { N = 20000 };
    int counts[V];
    double want[V];
    draw(p, N, counts);
    expected(keep, temp, want);
    for (int i = 0; i < V; i++) {
        double f = (double)counts[i] / N, sd = sqrt(want[i] * (1 - want[i]) / N) + 1e-9;
        CHECK_MSG(keep[i] || counts[i] == 0, "%s: token %d drawn %d times but filtered", what, i, counts[i]);
        CHECK_MSG(fabs(f - want[i]) <= 4 * sd + 1e-3, "%s: token %d frequency %.4f, probability %.4f", what, i, f,
                  want[i]);
    }
}

static void test_greedy_and_penalty(void) {
    td_sampling p;
    td_sampling_defaults(&p);
    td_sampler_scratch sc;
    CHECK(td_sampler_scratch_init(&sc, V));
    td_rng rng;
    td_rng_seed(&rng, 1);
    float x[V];
    memcpy(x, k_logits, sizeof x);
    CHECK(td_sample_next(x, V, NULL, 0, &p, &rng, &sc) == 6);
    /* penalty 2 on tokens 6 (3 -> 1.5), 0 (2 -> 1), 5 (-2 -> -4), token 6 listed twice: penalized once */
    p.repetition_penalty = 2.0f;
    const int64_t hist[] = {6, 0, 5, 6, 99 /* outside the vocabulary: ignored */};
    memcpy(x, k_logits, sizeof x);
    int64_t t = td_sample_next(x, V, hist, 5, &p, &rng, &sc);
    CHECK(t == 6 && x[6] == 1.5f && x[0] == 1.0f && x[5] == -4.0f && x[1] == 1.0f);
    /* with 6 pushed below token 1: greedy picks the next best */
    p.repetition_penalty = 4.0f;
    memcpy(x, k_logits, sizeof x);
    t = td_sample_next(x, V, hist, 4, &p, &rng, &sc);
    CHECK_MSG(t == 1, "penalty 4: got %lld (x6 %.3f, x0 %.3f, x1 %.3f)", (long long)t, x[6], x[0], x[1]);
    td_sampler_scratch_free(&sc);
}

static void test_filters(void) {
    td_sampling p;
    td_sampling_defaults(&p);
    p.do_sample = true;
    p.seed = 42;
    bool all[V] = {1, 1, 1, 1, 1, 1, 1, 1};
    check_distribution("plain", &p, all, 1.0f);
    p.temperature = 0.5f;
    check_distribution("temperature 0.5", &p, all, 0.5f);
    p.temperature = 1.0f;
    /* top-k 3: 3.0, 2.0, 1.0 */
    p.top_k = 3;
    bool k3[V] = {1, 1, 0, 0, 0, 0, 1, 0};
    check_distribution("top-k 3", &p, k3, 1.0f);
    /* top-k 4 keeps both 0.5 logits (ties with the 4th) */
    p.top_k = 4;
    bool k4[V] = {1, 1, 1, 1, 0, 0, 1, 0};
    check_distribution("top-k 4 with a tie", &p, k4, 1.0f);
    p.top_k = 0;
    /* top-p: probabilities (desc) of 3,2,1,.5,.5,0,-1,-2: 0.563, 0.207, 0.076, 0.046, 0.046, 0.028, ...
     * top_p 0.7 keeps the first two (0.563 < 0.7, then 0.770 >= 0.7), as transformers' ascending cumsum <= 0.3 */
    p.top_p = 0.7f;
    bool p07[V] = {1, 0, 0, 0, 0, 0, 1, 0};
    check_distribution("top-p 0.7", &p, p07, 1.0f);
    p.top_p = 0.5f; /* the best token alone already exceeds it: only it */
    bool p05[V] = {0, 0, 0, 0, 0, 0, 1, 0};
    check_distribution("top-p 0.5", &p, p05, 1.0f);
    p.top_p = 1.0f;
    /* min-p 0.1: keep probabilities >= 0.0563: tokens 6, 0, 1 */
    p.min_p = 0.1f;
    bool m01[V] = {1, 1, 0, 0, 0, 0, 1, 0};
    check_distribution("min-p 0.1", &p, m01, 1.0f);
}

static void test_seed(void) {
    td_sampling p;
    td_sampling_defaults(&p);
    p.do_sample = true;
    int a[V], b[V], c[V];
    p.seed = 5;
    draw(&p, 200, a);
    draw(&p, 200, b);
    p.seed = 6;
    draw(&p, 200, c);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
}

static void test_stream(void) {
    const char *none[1] = {NULL};
    /* "é" = C3 A9: cut after C3 */
    CHECK(td_stream_safe_len("ab\xC3", 3, none, 0) == 2);
    CHECK(td_stream_safe_len("ab\xC3\xA9", 4, none, 0) == 4);
    /* 4-byte emoji cut after 3 bytes */
    CHECK(td_stream_safe_len("x\xF0\x9F\x98", 4, none, 0) == 1);
    CHECK(td_stream_safe_len("x\xF0\x9F\x98\x80", 5, none, 0) == 5);
    /* trailing U+FFFD held back */
    CHECK(td_stream_safe_len("ok\xEF\xBF\xBD", 5, none, 0) == 2);
    /* stop "END": a trailing "EN" is held back, "E" too; "ENX" is not a prefix */
    const char *stop[2] = {"END", "\n\n"};
    CHECK(td_stream_safe_len("hello EN", 8, stop, 2) == 6);
    CHECK(td_stream_safe_len("hello E", 7, stop, 2) == 6);
    CHECK(td_stream_safe_len("hello ENX", 9, stop, 2) == 9);
    CHECK(td_stream_safe_len("line\n", 5, stop, 2) == 4);
    size_t which = 9;
    CHECK(td_stream_find_stop("a\n\nb END", 8, stop, 2, &which) == 1 && which == 1);
    CHECK(td_stream_find_stop("abc", 3, stop, 2, &which) == 3);
}

int main(void) {
    test_greedy_and_penalty();
    test_filters();
    test_seed();
    test_stream();
    return td_test_finish("test_sampler");
}
