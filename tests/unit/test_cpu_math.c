/* Vectorized exp / tanh / erf / GELU / sigmoid against double-precision libm over
 * a dense sweep (every 1201st float bit pattern in the interesting range, plus
 * special values). Prints the max error in ulps of the fp32 result and fails
 * above the documented bounds. */
#include "runtime/cpu/activations.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* error in units of the last place of the correctly rounded result */
static double ulp_err(float got, double ref) {
    if (isnan(ref))
        return isnan(got) ? 0 : INFINITY;
    if (isinf(ref))
        return got == (float)ref ? 0 : INFINITY;
    float r = (float)ref;
    double ulp = fabs((double)nextafterf(fabsf(r), INFINITY) - fabs((double)r));
    if (r == 0.0f || fabsf(r) < 1.1754944e-38f)
        ulp = 1.401298464324817e-45; /* denormal spacing */
    return fabs((double)got - ref) / ulp;
}

static double ref_of(td_unary op, double x) {
    switch (op) {
    case TD_UNARY_EXP: return exp(x);
    case TD_UNARY_TANH: return tanh(x);
    case TD_UNARY_ERF: return erf(x);
    case TD_UNARY_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case TD_UNARY_RELU: return x > 0 ? x : 0;
    case TD_UNARY_GELU_ERF: return 0.5 * x * erfc(-x / sqrt(2.0));
    case TD_UNARY_GELU_TANH: {
        double z = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
        return x / (1.0 + exp(-2.0 * z));
    }
    }
    return 0;
}

static double allowed_ulp(td_unary op, double base, float x) {
    if (op != TD_UNARY_GELU_TANH || x >= 0)
        return base;
    double z = sqrt(2.0 / M_PI) * (x + 0.044715 * (double)x * x * x);
    return base + 3.0 * fabs(2.0 * z);
}

typedef struct {
    td_unary op;
    const char *name;
    float lo, hi;    /* sweep range */
    double max_ulp;  /* bound */
} math_case;

int main(void) {
    /* GELU tanh: z is formed in fp32 from x, and exp(-2z) amplifies z's rounding by
     * 2|z| in relative terms (the function's own conditioning), so its bound is
     * max_ulp + 3 * |2z| ulps at each point (see allowed_ulp). */
    static const math_case cases[] = {
        {TD_UNARY_EXP, "exp", -103.0f, 88.7f, 2},
        {TD_UNARY_TANH, "tanh", -12.0f, 12.0f, 3},
        {TD_UNARY_ERF, "erf", -6.0f, 6.0f, 3},
        {TD_UNARY_SIGMOID, "sigmoid", -80.0f, 80.0f, 3},
        {TD_UNARY_RELU, "relu", -10.0f, 10.0f, 0},
        {TD_UNARY_GELU_ERF, "gelu_erf", -13.0f, 13.0f, 6},
        {TD_UNARY_GELU_TANH, "gelu_tanh", -10.0f, 10.0f, 4},
    };
    /* floats of both signs from 4e-31 up to the range limits, stepping the bit pattern */
    size_t cap = 3u << 20;
    float *x = malloc(cap * sizeof(float)), *y = malloc(cap * sizeof(float));
    td_threadpool *pool = NULL;
    CHECK(td_threadpool_create(NULL, 2, &pool) == TD_OK);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const math_case *mc = &cases[c];
        size_t n = 0;
        for (uint32_t u = 0x0D000000u; u < 0x7F800000u && n + 2 < cap; u += 1201) {
            float f = from_bits(u);
            if (f <= mc->hi)
                x[n++] = f;
            if (-f >= mc->lo)
                x[n++] = -f;
        }
        static const float specials[] = {0.0f, -0.0f, 1e-38f, -1e-38f, 1e-45f, 0.5f, -0.5f, 1.0f, -1.0f, 2.5f,
                                         -2.5f, 0.70710677f, -0.70710677f, 1.4142135f, -1.4142135f};
        for (size_t i = 0; i < sizeof specials / sizeof *specials; i++)
            x[n++] = specials[i];
        td_cpu_unary(pool, mc->op, x, y, n);
        double worst = 0;
        float worst_x = 0;
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            double e = ulp_err(y[i], ref_of(mc->op, x[i]));
            if (e > worst) {
                worst = e;
                worst_x = x[i];
            }
            if (!(e <= allowed_ulp(mc->op, mc->max_ulp, x[i])) && bad++ < 3)
                CHECK_MSG(0, "%s(%.9g) = %.9g: %.2f ulp from %.9g", mc->name, x[i], y[i], e, ref_of(mc->op, x[i]));
        }
        printf("%-10s max error %.2f ulp (at x=%.9g) over %zu points in [%g, %g]\n", mc->name, worst, worst_x, n,
               mc->lo, mc->hi);
        CHECK_MSG(bad == 0, "%s: %zu points above the bound", mc->name, bad);
    }
    /* non-finite inputs */
    float sp[6] = {INFINITY, -INFINITY, NAN, 200.0f, -200.0f, 0.0f}, out[6];
    td_cpu_unary(NULL, TD_UNARY_EXP, sp, out, 6);
    CHECK(out[0] == INFINITY && out[1] == 0.0f && isnan(out[2]) && out[3] == INFINITY && out[4] == 0.0f &&
          out[5] == 1.0f);
    td_cpu_unary(NULL, TD_UNARY_TANH, sp, out, 6);
    CHECK(out[0] == 1.0f && out[1] == -1.0f && isnan(out[2]) && out[3] == 1.0f && out[4] == -1.0f && out[5] == 0);
    td_cpu_unary(NULL, TD_UNARY_ERF, sp, out, 6);
    CHECK(out[0] == 1.0f && out[1] == -1.0f && isnan(out[2]) && out[3] == 1.0f && out[4] == -1.0f && out[5] == 0);
    td_cpu_unary(NULL, TD_UNARY_GELU_ERF, sp, out, 6);
    CHECK(out[0] == INFINITY && out[1] == 0.0f && isnan(out[2]) && out[3] == 200.0f && out[4] == 0.0f &&
          out[5] == 0.0f);
    /* bias + activation over rows */
    float xb[6] = {1, 2, 3, -1, -2, -3}, bias[3] = {0.5f, -0.5f, 1}, yb[6];
    td_cpu_bias_unary(pool, TD_UNARY_GELU_ERF, xb, bias, yb, 2, 3);
    for (int i = 0; i < 6; i++)
        CHECK(ulp_err(yb[i], ref_of(TD_UNARY_GELU_ERF, (double)(xb[i] + bias[i % 3]))) <= 4);
    td_threadpool_free(pool);
    free(x);
    free(y);
    return td_test_finish("test_cpu_math");
}
