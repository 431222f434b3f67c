/* The direct Transpose fold (src/opt/fold_transpose.c) against an element-by-
 * element reference: every permutation of ranks 1..4, element sizes 1/2/4/8/16,
 * dims that do and do not fill the 8x8 blocks, size-1 axes (dropped by the
 * plan) and axes that stay neighbours (merged); plus the perm checks. */
#include "onnx/ir.h"
#include "opt/fold_transpose.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

/* out[i] = in at the index whose output coordinates are i's */
static void reference(uint8_t *out, const uint8_t *in, size_t es, int r, const int64_t *dims, const int *perm) {
    int64_t od[8], is[8], idx[8] = {0}, numel = 1, s = 1;
    for (int a = r - 1; a >= 0; a--) {
        is[a] = s;
        s *= dims[a];
    }
    for (int i = 0; i < r; i++) {
        od[i] = dims[perm[i]];
        numel *= od[i];
    }
    for (int64_t e = 0; e < numel; e++) {
        int64_t off = 0;
        for (int i = 0; i < r; i++)
            off += idx[i] * is[perm[i]];
        memcpy(out + (size_t)e * es, in + (size_t)off * es, es);
        for (int i = r - 1; i >= 0; i--) {
            if (++idx[i] < od[i])
                break;
            idx[i] = 0;
        }
    }
}

static bool next_perm(int *p, int n) { /* lexicographic */
    int i = n - 2;
    while (i >= 0 && p[i] > p[i + 1])
        i--;
    if (i < 0)
        return false;
    int j = n - 1;
    while (p[j] < p[i])
        j--;
    int t = p[i];
    p[i] = p[j];
    p[j] = t;
    for (int a = i + 1, b = n - 1; a < b; a++, b--) {
        t = p[a];
        p[a] = p[b];
        p[b] = t;
    }
    return true;
}

static int cases, mismatches;

static void check_shape(int r, const int64_t *dims) {
    static const size_t sizes[] = {1, 2, 4, 8, 16};
    int64_t numel = 1;
    for (int a = 0; a < r; a++)
        numel *= dims[a];
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t es = sizes[k], nb = (size_t)numel * es;
        uint8_t *in = malloc(nb + 1), *got = malloc(nb + 1), *want = malloc(nb + 1);
        for (size_t b = 0; b < nb; b++)
            in[b] = (uint8_t)(b * 131u + b / 7u);
        int perm[8];
        for (int i = 0; i < r; i++)
            perm[i] = i;
        do {
            memset(got, 0xEE, nb + 1);
            reference(want, in, es, r, dims, perm);
            td_fold_permute(got, in, es, r, dims, perm);
            cases++;
            if (memcmp(got, want, nb) != 0 || got[nb] != 0xEE) { /* and nothing written past the end */
                mismatches++;
                fprintf(stderr, "mismatch: rank %d dims %lld,%lld,%lld,%lld esize %zu perm %d%d%d%d\n", r,
                        (long long)dims[0], (long long)(r > 1 ? dims[1] : 0), (long long)(r > 2 ? dims[2] : 0),
                        (long long)(r > 3 ? dims[3] : 0), es, perm[0], r > 1 ? perm[1] : 0, r > 2 ? perm[2] : 0,
                        r > 3 ? perm[3] : 0);
            }
        } while (next_perm(perm, r));
        free(in);
        free(got);
        free(want);
    }
}

static void test_permutations(void) {
    static const int64_t shapes2[][2] = {{1, 1}, {1, 9}, {8, 8}, {16, 16}, {9, 17}, {24, 40}, {33, 7}, {3, 130}};
    for (size_t i = 0; i < sizeof shapes2 / sizeof *shapes2; i++)
        check_shape(2, shapes2[i]);
    static const int64_t shapes3[][3] = {{2, 3, 4}, {8, 1, 16}, {1, 17, 9}, {5, 8, 24}, {16, 9, 1}};
    for (size_t i = 0; i < sizeof shapes3 / sizeof *shapes3; i++)
        check_shape(3, shapes3[i]);
    static const int64_t shapes4[][4] = {{2, 3, 4, 5}, {1, 12, 1, 16}, {3, 8, 9, 2}};
    for (size_t i = 0; i < sizeof shapes4 / sizeof *shapes4; i++)
        check_shape(4, shapes4[i]);
    int64_t one[1] = {13};
    check_shape(1, one);
    CHECK_MSG(mismatches == 0, "%d of %d permutations differ from the reference", mismatches, cases);
    CHECK(cases > 500);
}

/* A (1024, 64) float weight through td_fold_transpose: shape, name, bytes, and
 * the offered buffer taken. */
static td_node *transpose_node(td_ctx *ctx, td_graph *g, const char *out, const int64_t *perm, size_t count) {
    td_value *x = NULL, *y = NULL;
    CHECK(td_graph_get_value(ctx, g, "w", &x) == TD_OK);
    CHECK(td_graph_get_value(ctx, g, out, &y) == TD_OK);
    td_node *n = NULL;
    CHECK(td_graph_add_node(ctx, g, "Transpose", "", out, &x, 1, &y, 1, &n) == TD_OK);
    if (perm)
        CHECK(td_node_add_attr_ints(ctx, n, "perm", perm, count) == TD_OK);
    return n;
}

static void test_fold_node(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = td_model_new();
    CHECK(ctx && m);
    td_graph *g = m->graph;
    td_node *n = transpose_node(ctx, g, "w_t", NULL, 0);
    int64_t dims[2] = {1024, 64};
    float *data = malloc(sizeof(float) * 1024 * 64);
    for (int i = 0; i < 1024 * 64; i++)
        data[i] = (float)i * 0.5f - 7.0f;
    td_tensor *w = NULL;
    CHECK(td_tensor_new_owned(ctx, "w", TD_F32, 2, dims, data, sizeof(float) * 1024 * 64, &w) == TD_OK);
    td_tensor *out = NULL;
    bool taken = true;
    void *buf = malloc(w->nbytes);
    CHECK(td_fold_transpose(ctx, n, w, 1 << 20, buf, &taken, &out) == TD_OK);
    CHECK(out && taken && out->data == buf);
    if (out) {
        CHECK(out->rank == 2 && out->dims[0] == 64 && out->dims[1] == 1024 && out->dtype == TD_F32);
        CHECK(strcmp(out->name, "w_t") == 0);
        const float *o = out->data;
        int bad = 0;
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 1024; j++)
                bad += o[i * 1024 + j] != data[j * 64 + i];
        CHECK(bad == 0);
    }
    td_tensor_free(out);
    /* above the element limit: left to the general path (no tensor, no error) */
    out = NULL;
    CHECK(td_fold_transpose(ctx, n, w, 1000, NULL, &taken, &out) == TD_OK && !out && !taken);
    /* a perm that is not a permutation: left alone too */
    int64_t bad_perm[2] = {0, 0}, short_perm[1] = {0}, neg_perm[2] = {-1, 0}, good_perm[2] = {1, 0};
    int p[2];
    n = transpose_node(ctx, g, "w_bad", bad_perm, 2);
    CHECK(!td_fold_transpose_perm(n, 2, p));
    CHECK(td_fold_transpose(ctx, n, w, 1 << 20, NULL, &taken, &out) == TD_OK && !out);
    CHECK(!td_fold_transpose_perm(transpose_node(ctx, g, "w_short", short_perm, 1), 2, p));
    CHECK(!td_fold_transpose_perm(transpose_node(ctx, g, "w_neg", neg_perm, 2), 2, p));
    CHECK(td_fold_transpose_perm(transpose_node(ctx, g, "w_good", good_perm, 2), 2, p) && p[0] == 1 && p[1] == 0);
    td_tensor_free(w);
    td_model_free(m);
    td_ctx_free(ctx);
}

int main(void) {
    test_permutations();
    test_fold_node();
    return td_test_finish("test_fold_transpose");
}
