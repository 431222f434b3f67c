/* Broadcast binary ops, Where and reductions vs naive references that index the
 * inputs through explicitly computed numpy broadcast coordinates. */
#include "runtime/cpu/binary.h"
#include "runtime/cpu/reduce.h"
#include "test.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x1234567887654321ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* flat index into an input of shape dims (rank r) for output coordinate idx (rank R) */
static int64_t in_index(const int64_t *idx, int R, const int64_t *dims, int r) {
    int64_t off = 0;
    for (int ax = 0; ax < r; ax++) {
        int64_t c = dims[ax] == 1 ? 0 : idx[R - r + ax];
        off = off * dims[ax] + c;
    }
    return off;
}

static double ref_binop(td_binop op, double a, double b) {
    switch (op) {
    case TD_BINOP_ADD: return a + b;
    case TD_BINOP_SUB: return a - b;
    case TD_BINOP_MUL: return a * b;
    case TD_BINOP_DIV: return a / b;
    case TD_BINOP_POW: return pow(a, b);
    case TD_BINOP_EQUAL: return a == b;
    case TD_BINOP_LESS: return a < b;
    case TD_BINOP_GREATER: return a > b;
    }
    return 0;
}

static int64_t ref_int(td_binop op, int64_t a, int64_t b) {
    switch (op) {
    case TD_BINOP_ADD: return a + b;
    case TD_BINOP_SUB: return a - b;
    case TD_BINOP_MUL: return a * b;
    case TD_BINOP_DIV: return b == 0 ? 0 : a / b;
    case TD_BINOP_POW: {
        if (b < 0)
            return a == 1 ? 1 : a == -1 ? (b % 2 ? -1 : 1) : 0;
        int64_t r = 1;
        for (int64_t i = 0; i < b; i++)
            r *= a;
        return r;
    }
    case TD_BINOP_EQUAL: return a == b;
    case TD_BINOP_LESS: return a < b;
    case TD_BINOP_GREATER: return a > b;
    }
    return 0;
}

/* random pair of broadcast-compatible shapes */
static void random_shapes(int64_t *a, int *ra, int64_t *b, int *rb) {
    int R = 1 + (int)(next_u32() % 4);
    int64_t full[4];
    for (int i = 0; i < R; i++)
        full[i] = 1 + next_u32() % 5;
    *ra = R - (int)(next_u32() % (unsigned)R);
    *rb = R - (int)(next_u32() % (unsigned)R);
    if (next_u32() % 2)
        *ra = R;
    else
        *rb = R;
    for (int i = 0; i < *ra; i++)
        a[i] = next_u32() % 3 == 0 ? 1 : full[R - *ra + i];
    for (int i = 0; i < *rb; i++)
        b[i] = next_u32() % 3 == 0 ? 1 : full[R - *rb + i];
}

static void test_binary(td_threadpool *pools[3]) {
    static const td_dtype types[] = {TD_F32, TD_I64, TD_I32};
    int failures = 0;
    for (int iter = 0; iter < 600; iter++) {
        int64_t ad[4], bd[4];
        int ra, rb;
        random_shapes(ad, &ra, bd, &rb);
        if (iter == 0) { /* a big contiguous case so the work is split over threads */
            ra = rb = 2;
            ad[0] = bd[0] = 300;
            ad[1] = 200;
            bd[1] = 1;
        }
        td_dtype dt = types[iter % 3];
        td_binop op = (td_binop)(next_u32() % 8);
        const int64_t *dims[2] = {ad, bd};
        int ranks[2] = {ra, rb};
        td_bcast_plan plan;
        CHECK(td_bcast_plan_make(NULL, 2, dims, ranks, &plan) == TD_OK);
        int64_t na = 1, nb = 1;
        for (int i = 0; i < ra; i++)
            na *= ad[i];
        for (int i = 0; i < rb; i++)
            nb *= bd[i];
        size_t es = td_dtype_size(dt);
        void *a = malloc((size_t)na * es), *b = malloc((size_t)nb * es);
        void *out = malloc((size_t)plan.numel * 8 + 8);
        for (int64_t i = 0; i < na; i++) {
            int32_t v = (int32_t)(next_u32() % 13) - 6;
            if (dt == TD_F32) ((float *)a)[i] = op == TD_BINOP_POW ? fabsf((float)v) / 3 + 0.1f : (float)v / 2;
            if (dt == TD_I64) ((int64_t *)a)[i] = v;
            if (dt == TD_I32) ((int32_t *)a)[i] = v;
        }
        for (int64_t i = 0; i < nb; i++) {
            int32_t v = (int32_t)(next_u32() % 9) - 4;
            if (dt == TD_F32) ((float *)b)[i] = (float)v / 2;
            if (dt == TD_I64) ((int64_t *)b)[i] = v;
            if (dt == TD_I32) ((int32_t *)b)[i] = v;
        }
        CHECK(td_cpu_binary(NULL, pools[1 + iter % 2], op, dt, &plan, a, b, out) == TD_OK);
        int64_t idx[4] = {0};
        for (int64_t o = 0; o < plan.numel; o++) {
            int64_t r = o;
            for (int ax = plan.out_rank - 1; ax >= 0; ax--) {
                idx[ax] = r % plan.out_dims[ax];
                r /= plan.out_dims[ax];
            }
            int64_t ia = in_index(idx, plan.out_rank, ad, ra), ib = in_index(idx, plan.out_rank, bd, rb);
            bool ok;
            bool cmp = op >= TD_BINOP_EQUAL;
            if (dt == TD_F32) {
                double ref = ref_binop(op, ((float *)a)[ia], ((float *)b)[ib]);
                double got = cmp ? ((uint8_t *)out)[o] : ((float *)out)[o];
                ok = (isnan(ref) && isnan(got)) || got == (float)ref || fabs(got - ref) <= 1e-6 * fabs(ref);
            } else {
                int64_t x = dt == TD_I64 ? ((int64_t *)a)[ia] : ((int32_t *)a)[ia];
                int64_t y = dt == TD_I64 ? ((int64_t *)b)[ib] : ((int32_t *)b)[ib];
                int64_t ref = ref_int(op, x, y);
                int64_t got = cmp ? ((uint8_t *)out)[o] : dt == TD_I64 ? ((int64_t *)out)[o] : ((int32_t *)out)[o];
                ok = got == ref;
            }
            if (!ok && failures++ < 5)
                CHECK_MSG(0, "binary op %d dtype %s element %lld", op, td_dtype_name(dt), (long long)o);
        }
        free(a), free(b), free(out);
    }
    CHECK(failures == 0);
    /* incompatible shapes and edge cases */
    int64_t s1[2] = {3, 4}, s2[1] = {5}, s0[2] = {0, 4}, s4[1] = {4};
    const int64_t *d1[2] = {s1, s2};
    int r1[2] = {2, 1};
    td_bcast_plan plan;
    td_ctx *ctx = td_ctx_new();
    CHECK(ctx != NULL);
    CHECK(td_bcast_plan_make(ctx, 2, d1, r1, &plan) == TD_ERR_SHAPE);
    CHECK(strstr(td_error_message(ctx), "neither equal nor 1") != NULL);
    const int64_t *d2[2] = {s0, s4};
    CHECK(td_bcast_plan_make(ctx, 2, d2, r1, &plan) == TD_OK && plan.numel == 0);
    int64_t ia = 7, ib = 0, io = -1, imin = INT64_MIN, ineg = -1;
    const int64_t *sc[2] = {NULL, NULL};
    int r0[2] = {0, 0};
    CHECK(td_bcast_plan_make(ctx, 2, sc, r0, &plan) == TD_OK && plan.numel == 1 && plan.out_rank == 0);
    CHECK(td_cpu_binary(ctx, NULL, TD_BINOP_DIV, TD_I64, &plan, &ia, &ib, &io) == TD_OK && io == 0);
    CHECK(td_cpu_binary(ctx, NULL, TD_BINOP_DIV, TD_I64, &plan, &imin, &ineg, &io) == TD_OK && io == INT64_MIN);
    CHECK(td_cpu_binary(ctx, NULL, TD_BINOP_ADD, TD_F16, &plan, &ia, &ib, &io) == TD_ERR_UNSUPPORTED);
    td_ctx_free(ctx);
}

static void test_where(td_threadpool *pools[3]) {
    /* cond (3, 1), x (1, 4) float, y scalar */
    int64_t cd[2] = {3, 1}, xd[2] = {1, 4};
    const int64_t *dims[3] = {cd, xd, NULL};
    int ranks[3] = {2, 2, 0};
    td_bcast_plan plan;
    CHECK(td_bcast_plan_make(NULL, 3, dims, ranks, &plan) == TD_OK);
    CHECK(plan.out_rank == 2 && plan.out_dims[0] == 3 && plan.out_dims[1] == 4);
    uint8_t c[3] = {1, 0, 1};
    float x[4] = {1, 2, 3, 4}, y = -1, out[12];
    CHECK(td_cpu_where(NULL, pools[2], TD_F32, &plan, c, x, &y, out) == TD_OK);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            CHECK(out[i * 4 + j] == (c[i] ? x[j] : -1.0f));
    int64_t xi[4] = {10, 20, 30, 40}, yi = 5, oi[12];
    CHECK(td_cpu_where(NULL, pools[1], TD_I64, &plan, c, xi, &yi, oi) == TD_OK);
    CHECK(oi[0] == 10 && oi[4] == 5 && oi[11] == 40);
}

static void test_reduce(td_threadpool *pools[3]) {
    int failures = 0;
    for (int iter = 0; iter < 300; iter++) {
        int rank = 1 + (int)(next_u32() % 4);
        int64_t dims[4], n = 1;
        for (int i = 0; i < rank; i++) {
            dims[i] = 1 + next_u32() % 6;
            n *= dims[i];
        }
        if (iter == 0) { /* big enough for the parallel path */
            rank = 2;
            dims[0] = 128;
            dims[1] = 384;
            n = 128 * 384;
        }
        int64_t axes[4];
        int n_axes = 0;
        for (int i = 0; i < rank; i++)
            if (next_u32() % 2)
                axes[n_axes++] = next_u32() % 2 ? i : i - rank;
        bool keep = next_u32() % 2;
        td_reduce_op op = (td_reduce_op)(next_u32() % 3);
        float *x = malloc((size_t)n * sizeof(float)), *out = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)((int)(next_u32() % 2001) - 1000) / 100.0f;
        int64_t od[4];
        int orank;
        CHECK(td_reduce_shape(NULL, dims, rank, axes, n_axes, keep, od, &orank) == TD_OK);
        CHECK(td_cpu_reduce(NULL, pools[1 + iter % 2], op, x, dims, rank, axes, n_axes, out) == TD_OK);
        bool red[4];
        for (int i = 0; i < rank; i++)
            red[i] = n_axes == 0;
        for (int i = 0; i < n_axes; i++)
            red[axes[i] < 0 ? axes[i] + rank : axes[i]] = true;
        int64_t n_out = 1, count = 1;
        for (int i = 0; i < rank; i++) {
            if (red[i])
                count *= dims[i];
            else
                n_out *= dims[i];
        }
        int64_t shape_out = 1;
        for (int i = 0; i < orank; i++)
            shape_out *= od[i];
        CHECK(shape_out == n_out && orank == (keep ? rank : rank - (n_axes ? n_axes : rank)));
        double *acc = calloc((size_t)n_out, sizeof(double));
        double *mx = malloc((size_t)n_out * sizeof(double));
        for (int64_t o = 0; o < n_out; o++)
            mx[o] = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            int64_t r = i, o = 0, mul = 1;
            int64_t idx[4];
            for (int ax = rank - 1; ax >= 0; ax--) {
                idx[ax] = r % dims[ax];
                r /= dims[ax];
            }
            for (int ax = rank - 1; ax >= 0; ax--)
                if (!red[ax]) {
                    o += idx[ax] * mul;
                    mul *= dims[ax];
                }
            acc[o] += x[i];
            mx[o] = fmax(mx[o], x[i]);
        }
        for (int64_t o = 0; o < n_out; o++) {
            double ref = op == TD_REDUCE_SUM ? acc[o] : op == TD_REDUCE_MEAN ? acc[o] / (double)count : mx[o];
            if (!(fabs(out[o] - ref) <= 1e-6 * fabs(ref) + 1e-6) && failures++ < 5)
                CHECK_MSG(0, "reduce op %d rank %d: out[%lld]=%g want %g", op, rank, (long long)o, out[o], ref);
        }
        free(x), free(out), free(acc), free(mx);
    }
    CHECK(failures == 0);
    int64_t dims[2] = {2, 3}, dup[2] = {1, -1}, oob[1] = {2}, od[2];
    int orank;
    float x[6] = {0}, out[6];
    CHECK(td_reduce_shape(NULL, dims, 2, dup, 2, true, od, &orank) == TD_ERR_SHAPE);
    CHECK(td_cpu_reduce(NULL, NULL, TD_REDUCE_SUM, x, dims, 2, oob, 1, out) == TD_ERR_SHAPE);
    int64_t empty[2] = {2, 0}, ax1[1] = {1};
    CHECK(td_cpu_reduce(NULL, NULL, TD_REDUCE_MAX, x, empty, 2, ax1, 1, out) == TD_OK);
    CHECK(out[0] == -INFINITY && out[1] == -INFINITY);
}

int main(void) {
    td_threadpool *pools[3] = {NULL, NULL, NULL};
    CHECK(td_threadpool_create(NULL, 1, &pools[1]) == TD_OK);
    CHECK(td_threadpool_create(NULL, 2, &pools[2]) == TD_OK);
    test_binary(pools);
    test_where(pools);
    test_reduce(pools);
    td_threadpool_free(pools[1]);
    td_threadpool_free(pools[2]);
    return td_test_finish("test_cpu_elementwise");
}
