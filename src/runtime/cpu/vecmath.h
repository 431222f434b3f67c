/* Vectorized float math for the CPU kernels: exp, tanh, erf, erfc, GELU (erf and
 * tanh forms), sigmoid. With AVX-512 the td_v16_* inline functions work on 16
 * lanes; the polynomial coefficients were fitted for this file (weighted least
 * squares on Chebyshev nodes against double-precision libm, see
 * tests/unit/test_cpu_math.c for the measured ulp errors). With AVX2 + FMA but
 * no AVX-512, vecmath_avx2.h provides 8-lane td_v8_* ports of the same
 * functions (TD_VEC_AVX2). Otherwise only the scalar td_s_* functions exist
 * (libm based); array versions in activations.h pick whichever is compiled in. */
#ifndef TD_RUNTIME_CPU_VECMATH_H
#define TD_RUNTIME_CPU_VECMATH_H

#include <math.h>

/* ---- scalar reference forms (also the fallback when AVX-512 is absent) ---- */
/* Scalar forms evaluate in double (the fallback is for portability, not speed),
 * which makes them correctly rounded in practice and free of the fp32 argument
 * rounding that erfcf(-x/sqrt2) or tanhf(z) would amplify in the tails. */
static inline float td_s_gelu_erf(float x) {
    if (x < -20.0f) /* exact value underflows to -0; also keeps -inf * 0 from giving NaN */
        return -0.0f;
    return (float)(0.5 * (double)x * erfc(-(double)x * 0.70710678118654752));
}
static inline float td_s_gelu_tanh(float x) {
    if (x < -20.0f)
        return -0.0f;
    double z = 0.7978845608028654 * ((double)x + 0.044715 * (double)x * x * x);
    return (float)((double)x / (1.0 + exp(-2.0 * z)));
}
static inline float td_s_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

#ifdef __AVX512F__
#include <immintrin.h>

#define TD_V16_INLINE static inline __attribute__((always_inline))

/* exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, Taylor degree 7 for e^r,
 * scalef for 2^n (exact overflow to inf and gradual underflow). */
TD_V16_INLINE __m512 td_v16_exp(__m512 x) {
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512 y = _mm512_scalef_ps(p, n);
    return _mm512_mask_blend_ps(nan, y, x);
}

/* expm1 for 0 <= y: Taylor degree 8 below 0.5 (no cancellation), exp(y)-1 above. */
TD_V16_INLINE __m512 td_v16_expm1_pos(__m512 y) {
    __m512 p = _mm512_set1_ps(1.0f / 40320.0f);
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 5040.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f));
    __m512 small = _mm512_mul_ps(p, y);
    __m512 big = _mm512_sub_ps(td_v16_exp(y), _mm512_set1_ps(1.0f));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, _mm512_set1_ps(0.5f), _CMP_LT_OQ), big, small);
}

/* tanh(x) = sign(x) * e / (e + 2), e = expm1(2|x|); |x| >= 9.1 rounds to 1. */
TD_V16_INLINE __m512 td_v16_tanh(__m512 x) {
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
    __m512 a = _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(9.1f));
    __m512 e = td_v16_expm1_pos(_mm512_add_ps(a, a));
    __m512 t = _mm512_div_ps(e, _mm512_add_ps(e, _mm512_set1_ps(2.0f)));
    t = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), _mm512_castps_si512(sign)));
    return _mm512_mask_blend_ps(nan, t, x);
}

/* erf(x)/x on |x| < 1 as a degree-6 polynomial in x^2 (fit error 1.4e-9). */
TD_V16_INLINE __m512 td_v16_erf_small(__m512 a) {
    __m512 s = _mm512_mul_ps(a, a);
    __m512 p = _mm512_set1_ps(7.898209878476337e-05f);
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.0008024353883229196f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(0.00519005348905921f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.026854809373617172f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(0.11283612251281738f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.3761262893676758f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.128379225730896f));
    return _mm512_mul_ps(p, a);
}

/* erfc(u) for 0.6 <= u (u <= ~10.5; beyond, the result underflows to 0):
 * erfc(u) = exp(-u^2) * q(1/u) / u with q fitted on [0.6, 2.5] and [2.5, 10.5].
 * u^2 arrives split as hi + lo (hi = fl(u^2)) so exp(-u^2) does not inherit the
 * rounding error of u^2 (which is amplified by u^2 in relative terms). */
TD_V16_INLINE __m512 td_v16_erfc_big(__m512 u, __m512 u2hi, __m512 u2lo) {
    __m512 e = td_v16_exp(_mm512_sub_ps(_mm512_setzero_ps(), u2hi));
    e = _mm512_fnmadd_ps(e, u2lo, e); /* * exp(-lo) ~ (1 - lo), |lo| <= ulp(hi)/2 */
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), u);
    __m512 s1 = _mm512_sub_ps(t, _mm512_set1_ps(1.0f));
    __m512 q1 = _mm512_set1_ps(-0.001979060936719179f);
    q1 = _mm512_fmadd_ps(q1, s1, _mm512_set1_ps(0.0007509402348659933f));
    q1 = _mm512_fmadd_ps(q1, s1, _mm512_set1_ps(0.005223661195486784f));
    q1 = _mm512_fmadd_ps(q1, s1, _mm512_set1_ps(-0.010878725908696651f));
    q1 = _mm512_fmadd_ps(q1, s1, _mm512_set1_ps(0.015816036611795425f));
    q1 = _mm512_fmadd_ps(q1, s1, _mm512_set1_ps(-0.01825178973376751f));
    q1 = _mm512_fmadd_ps(q1, s1, _mm512_set1_ps(0.008162736892700195f));
    q1 = _mm512_fmadd_ps(q1, s1, _mm512_set1_ps(0.035525061190128326f));
    q1 = _mm512_fmadd_ps(q1, s1, _mm512_set1_ps(-0.1543714702129364f));
    q1 = _mm512_fmadd_ps(q1, s1, _mm512_set1_ps(0.42758363485336304f));
    __m512 s2 = _mm512_sub_ps(t, _mm512_set1_ps(0.25f));
    __m512 q2 = _mm512_set1_ps(0.00940549187362194f);
    q2 = _mm512_fmadd_ps(q2, s2, _mm512_set1_ps(0.37717971205711365f));
    q2 = _mm512_fmadd_ps(q2, s2, _mm512_set1_ps(-0.27531349658966064f));
    q2 = _mm512_fmadd_ps(q2, s2, _mm512_set1_ps(-0.027590835466980934f));
    q2 = _mm512_fmadd_ps(q2, s2, _mm512_set1_ps(0.21953508257865906f));
    q2 = _mm512_fmadd_ps(q2, s2, _mm512_set1_ps(-0.16778849065303802f));
    q2 = _mm512_fmadd_ps(q2, s2, _mm512_set1_ps(-0.11944698542356491f));
    q2 = _mm512_fmadd_ps(q2, s2, _mm512_set1_ps(0.5479978322982788f));
    __m512 q = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(u, _mm512_set1_ps(2.5f), _CMP_LT_OQ), q2, q1);
    return _mm512_mul_ps(_mm512_mul_ps(e, q), t);
}

TD_V16_INLINE __m512 td_v16_erf(__m512 x) {
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
    __m512 a = _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(10.5f));
    __m512 small = td_v16_erf_small(a);
    __m512 hi = _mm512_mul_ps(a, a);
    __m512 lo = _mm512_fmsub_ps(a, a, hi);
    __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.0f), td_v16_erfc_big(_mm512_max_ps(a, _mm512_set1_ps(1.0f)), hi, lo));
    __m512 r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(1.0f), _CMP_LT_OQ), big, small);
    r = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), _mm512_castps_si512(sign)));
    return _mm512_mask_blend_ps(nan, r, x);
}

/* GELU, erf form: x >= 0: 0.5 x (1 + erf(x/sqrt2)); x < 0: 0.5 x erfc(|x|/sqrt2),
 * with (|x|/sqrt2)^2 = x^2/2 taken exactly from x so the tail keeps full
 * relative accuracy. */
TD_V16_INLINE __m512 td_v16_gelu_erf(__m512 x) {
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 half = _mm512_set1_ps(0.5f);
    __m512 a = _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(20.0f));
    __m512 u = _mm512_mul_ps(a, _mm512_set1_ps(0.70710678118654752f));
    __m512 erf_u_small = td_v16_erf_small(u);
    __m512 hi = _mm512_mul_ps(a, a);
    __m512 lo = _mm512_fmsub_ps(a, a, hi);
    __m512 erfc_big = td_v16_erfc_big(_mm512_max_ps(u, _mm512_set1_ps(0.6f)), _mm512_mul_ps(hi, half),
                                      _mm512_mul_ps(lo, half));
    __m512 one = _mm512_set1_ps(1.0f);
    /* erfc from 1 - erf only while erf(u) < erf(0.6) = 0.6 (little cancellation) */
    __m512 erfc_u = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(u, _mm512_set1_ps(0.6f), _CMP_LT_OQ), erfc_big,
                                         _mm512_sub_ps(one, erf_u_small));
    __m512 erf_u = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(u, one, _CMP_LT_OQ), _mm512_sub_ps(one, erfc_big),
                                        erf_u_small);
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 factor = _mm512_mask_blend_ps(neg, _mm512_add_ps(one, erf_u), erfc_u);
    __m512 r = _mm512_mul_ps(_mm512_mul_ps(half, x), factor);
    /* below -20 the exact value underflows to -0 (and -inf * 0 must not become NaN) */
    r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-20.0f), _CMP_LT_OQ), r, _mm512_set1_ps(-0.0f));
    return _mm512_mask_blend_ps(nan, r, x);
}

/* GELU, tanh form: x / (1 + exp(-2z)), z = sqrt(2/pi) (x + 0.044715 x^3).
 * Below -20 the exact value underflows to -0, as in td_s_gelu_tanh and
 * td_v8_gelu_tanh (without this, x = -inf would give -inf / inf = NaN). */
TD_V16_INLINE __m512 td_v16_gelu_tanh(__m512 x) {
    __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    __m512 z = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
    __m512 e = td_v16_exp(_mm512_mul_ps(_mm512_set1_ps(-2.0f), z));
    __m512 r = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-20.0f), _CMP_LT_OQ), r, _mm512_set1_ps(-0.0f));
}

TD_V16_INLINE __m512 td_v16_sigmoid(__m512 x) {
    __m512 e = td_v16_exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* Horizontal reductions. */
TD_V16_INLINE float td_v16_hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
TD_V16_INLINE float td_v16_hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

/* Mask selecting the first n (0..16) lanes. */
TD_V16_INLINE __mmask16 td_v16_mask(size_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

#endif /* __AVX512F__ */

/* AVX2 + FMA without AVX-512: the 8-lane td_v8_* forms. */
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define TD_VEC_AVX2 1
#include "runtime/cpu/vecmath_avx2.h"
#endif
#endif
