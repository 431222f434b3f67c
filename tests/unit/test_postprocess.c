/* Task post-processing (src/pipeline/postprocess.c) on hand-made logits whose
 * answers are worked out in the comments. */
#include "pipeline/postprocess.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void softmax_and_classify(void) {
    const float x[3] = {1.0f, 2.0f, 3.0f};
    double p[3];
    td_pp_softmax(x, 3, p);
    double z = exp(1.0) + exp(2.0) + exp(3.0);
    CHECK(fabs(p[0] - exp(1.0) / z) < 1e-12 && fabs(p[2] - exp(3.0) / z) < 1e-12);
    /* large logits must not overflow */
    const float big[2] = {1000.0f, 1000.0f};
    td_pp_softmax(big, 2, p);
    CHECK(fabs(p[0] - 0.5) < 1e-12 && fabs(p[1] - 0.5) < 1e-12);

    td_pp_label top[3];
    double sc[3];
    CHECK(td_pp_classify(x, 3, false, 2, sc, top) == 2);
    CHECK(top[0].id == 2 && top[1].id == 1 && top[0].score > top[1].score);
    /* ties keep the lower id first; top_k larger than the label count is capped */
    const float tie[3] = {0.5f, 0.5f, 0.5f};
    CHECK(td_pp_classify(tie, 3, false, 10, sc, top) == 3);
    CHECK(top[0].id == 0 && top[1].id == 1 && top[2].id == 2);
    /* one logit: sigmoid */
    const float one[1] = {0.0f};
    CHECK(td_pp_classify(one, 1, false, 1, sc, top) == 1 && fabs(top[0].score - 0.5) < 1e-12);
    /* multi-label: independent sigmoids */
    const float ml[2] = {0.0f, 100.0f};
    CHECK(td_pp_classify(ml, 2, true, 2, sc, top) == 2 && top[0].id == 1 && fabs(top[1].score - 0.5) < 1e-12);
}

/* one-hot-ish logits: label k gets 10, the others 0 */
static void row(float *l, size_t n, size_t k) {
    for (size_t i = 0; i < n; i++)
        l[i] = i == k ? 10.0f : 0.0f;
}

static void aggregation(void) {
    td_ctx *ctx = td_ctx_new();
    const char *labels[5] = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"};
    /* tokens: [CLS] B-PER I-PER I-PER O B-LOC B-LOC I-PER [SEP]
     * -> PER(1..3), LOC(5), LOC(6), PER(7): a B- starts a new group, a tag change too */
    const size_t seq = 9, lab[9] = {0, 1, 2, 2, 0, 3, 3, 2, 0};
    float logits[9 * 5];
    for (size_t t = 0; t < seq; t++)
        row(logits + t * 5, 5, lab[t]);
    logits[2 * 5 + 2] = 5.0f; /* token 2 less sure: its score is lower than the others' */
    uint8_t skip[9] = {1, 0, 0, 0, 0, 0, 0, 0, 1};
    td_pp_entity *e = NULL;
    size_t n = 0;
    CHECK(td_pp_aggregate_simple(ctx, logits, seq, 5, labels, skip, &e, &n) == TD_OK);
    CHECK_MSG(n == 4, "%zu entities", n);
    if (n == 4) {
        CHECK(!strcmp(e[0].group, "PER") && e[0].first == 1 && e[0].last == 3);
        CHECK(!strcmp(e[1].group, "LOC") && e[1].first == 5 && e[1].last == 5);
        CHECK(!strcmp(e[2].group, "LOC") && e[2].first == 6 && e[2].last == 6);
        CHECK(!strcmp(e[3].group, "PER") && e[3].first == 7 && e[3].last == 7);
        double hi = exp(10.0) / (exp(10.0) + 4.0), lo = exp(5.0) / (exp(5.0) + 4.0);
        CHECK(fabs(e[0].score - (2 * hi + lo) / 3) < 1e-12);
        CHECK(fabs(e[1].score - hi) < 1e-12);
    }
    free(e);

    /* labels without B-/I- prefixes group by equality; "O" everywhere gives nothing */
    const char *plain[2] = {"O", "MISC"};
    const size_t pl[4] = {1, 1, 0, 1};
    float l2[4 * 2];
    for (size_t t = 0; t < 4; t++)
        row(l2 + t * 2, 2, pl[t]);
    uint8_t none[4] = {0};
    CHECK(td_pp_aggregate_simple(ctx, l2, 4, 2, plain, none, &e, &n) == TD_OK);
    CHECK(n == 2 && e[0].first == 0 && e[0].last == 1 && e[1].first == 3 && !strcmp(e[1].group, "MISC"));
    free(e);
    for (size_t t = 0; t < 4; t++)
        row(l2 + t * 2, 2, 0);
    CHECK(td_pp_aggregate_simple(ctx, l2, 4, 2, plain, none, &e, &n) == TD_OK && n == 0 && e == NULL);
    CHECK(td_pp_aggregate_simple(ctx, l2, 4, 0, plain, none, &e, &n) == TD_ERR_INVALID_ARGUMENT);
    td_ctx_free(ctx);
}

static void question_answering(void) {
    td_ctx *ctx = td_ctx_new();
    /* [CLS] q q [SEP] c c c c [SEP]: the best start is 4, the best end 6 */
    const float st[9] = {9, 9, 9, 9, 5, 1, 1, 1, 9};
    const float en[9] = {9, 9, 9, 9, 0, 1, 5, 1, 9};
    const uint8_t context[9] = {0, 0, 0, 0, 1, 1, 1, 1, 0};
    const uint8_t cls[9] = {1, 0, 0, 0, 0, 0, 0, 0, 0};
    td_pp_span sp;
    CHECK(td_pp_qa_best_span(ctx, st, en, 9, context, cls, 15, &sp) == TD_OK);
    CHECK(sp.start == 4 && sp.end == 6);
    /* CLS (logit 9) stays in the normalisation: p_start(4) = e^5 / (e^9 + e^5 + 3e) */
    double zs = exp(9.0) + exp(5.0) + 3 * exp(1.0);
    CHECK(fabs(sp.p_start - exp(5.0) / zs) < 1e-12 && fabs(sp.score - sp.p_start * sp.p_end) < 1e-15);
    /* max_answer_len 2: 4..6 is too long; 4..5 and 5..6 both score e^5 * e^1, and the tie goes to the
     * smaller start (HF's argmax over the flattened start x end matrix) */
    CHECK(td_pp_qa_best_span(ctx, st, en, 9, context, cls, 2, &sp) == TD_OK);
    CHECK(sp.start == 4 && sp.end == 5);
    const uint8_t nothing[9] = {0};
    CHECK(td_pp_qa_best_span(ctx, st, en, 9, nothing, cls, 15, &sp) == TD_ERR_INVALID_ARGUMENT);
    CHECK(td_pp_qa_best_span(ctx, st, en, 9, context, cls, 0, &sp) == TD_ERR_INVALID_ARGUMENT);
    td_ctx_free(ctx);
}

static void char_offsets(void) {
    const char *s = "caf\xc3\xa9 \xf0\x9f\x99\x82!"; /* "café 🙂!" */
    size_t n = strlen(s);
    CHECK(td_pp_char_offset(s, n, 0) == 0);
    CHECK(td_pp_char_offset(s, n, 5) == 4);  /* after é */
    CHECK(td_pp_char_offset(s, n, 10) == 6); /* after the emoji */
    CHECK(td_pp_char_offset(s, n, 99) == 7); /* clamped */
}

int main(void) {
    softmax_and_classify();
    aggregation();
    question_answering();
    char_offsets();
    return td_test_finish("postprocess");
}
