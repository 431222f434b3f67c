/* 8-lane AVX2 forms of vecmath.h's exp and GELU (erf and tanh forms), for the
 * int8 GEMM epilogue on CPUs without AVX-512 (where the scalar td_s_gelu_* are
 * the only other choice and cost more than the int8 products around them).
 * Same algorithms and coefficients as the td_v16_* functions in vecmath.h; only
 * 2^n differs: AVX2 has no scalef, so 2^n is built in the exponent field in
 * two halves (each within the normal range) to keep gradual underflow and
 * overflow to inf. tests/unit/test_gemm_int8.c measures them against the
 * double-precision scalar forms. */
#ifndef TD_RUNTIME_CPU_VECMATH_AVX2_H
#define TD_RUNTIME_CPU_VECMATH_AVX2_H

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define TD_V8_INLINE static inline __attribute__((always_inline))

/* 2^n for integer-valued n in [-150, 129], as two exponent-field factors. */
TD_V8_INLINE __m256 td_v8_pow2i(__m256 p, __m256 n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h1 = _mm256_srai_epi32(ni, 1), h2 = _mm256_sub_epi32(ni, h1);
    __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h1, _mm256_set1_epi32(127)), 23));
    __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
}

TD_V8_INLINE __m256 td_v8_exp(__m256 x) {
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(89.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723212e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    return _mm256_blendv_ps(td_v8_pow2i(p, n), x, nan);
}

/* erf(a)/a * a on |a| < 1 (vecmath.h's td_v16_erf_small). */
TD_V8_INLINE __m256 td_v8_erf_small(__m256 a) {
    __m256 s = _mm256_mul_ps(a, a);
    __m256 p = _mm256_set1_ps(7.898209878476337e-05f);
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-0.0008024353883229196f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(0.00519005348905921f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-0.026854809373617172f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(0.11283612251281738f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-0.3761262893676758f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(1.128379225730896f));
    return _mm256_mul_ps(p, a);
}

/* erfc(u) for 0.6 <= u with u^2 = hi + lo (vecmath.h's td_v16_erfc_big). */
TD_V8_INLINE __m256 td_v8_erfc_big(__m256 u, __m256 u2hi, __m256 u2lo) {
    __m256 e = td_v8_exp(_mm256_sub_ps(_mm256_setzero_ps(), u2hi));
    e = _mm256_fnmadd_ps(e, u2lo, e);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), u);
    __m256 s1 = _mm256_sub_ps(t, _mm256_set1_ps(1.0f));
    __m256 q1 = _mm256_set1_ps(-0.001979060936719179f);
    q1 = _mm256_fmadd_ps(q1, s1, _mm256_set1_ps(0.0007509402348659933f));
    q1 = _mm256_fmadd_ps(q1, s1, _mm256_set1_ps(0.005223661195486784f));
    q1 = _mm256_fmadd_ps(q1, s1, _mm256_set1_ps(-0.010878725908696651f));
    q1 = _mm256_fmadd_ps(q1, s1, _mm256_set1_ps(0.015816036611795425f));
    q1 = _mm256_fmadd_ps(q1, s1, _mm256_set1_ps(-0.01825178973376751f));
    q1 = _mm256_fmadd_ps(q1, s1, _mm256_set1_ps(0.008162736892700195f));
    q1 = _mm256_fmadd_ps(q1, s1, _mm256_set1_ps(0.035525061190128326f));
    q1 = _mm256_fmadd_ps(q1, s1, _mm256_set1_ps(-0.1543714702129364f));
    q1 = _mm256_fmadd_ps(q1, s1, _mm256_set1_ps(0.42758363485336304f));
    __m256 s2 = _mm256_sub_ps(t, _mm256_set1_ps(0.25f));
    __m256 q2 = _mm256_set1_ps(0.00940549187362194f);
    q2 = _mm256_fmadd_ps(q2, s2, _mm256_set1_ps(0.37717971205711365f));
    q2 = _mm256_fmadd_ps(q2, s2, _mm256_set1_ps(-0.27531349658966064f));
    q2 = _mm256_fmadd_ps(q2, s2, _mm256_set1_ps(-0.027590835466980934f));
    q2 = _mm256_fmadd_ps(q2, s2, _mm256_set1_ps(0.21953508257865906f));
    q2 = _mm256_fmadd_ps(q2, s2, _mm256_set1_ps(-0.16778849065303802f));
    q2 = _mm256_fmadd_ps(q2, s2, _mm256_set1_ps(-0.11944698542356491f));
    q2 = _mm256_fmadd_ps(q2, s2, _mm256_set1_ps(0.5479978322982788f));
    __m256 q = _mm256_blendv_ps(q2, q1, _mm256_cmp_ps(u, _mm256_set1_ps(2.5f), _CMP_LT_OQ));
    return _mm256_mul_ps(_mm256_mul_ps(e, q), t);
}

/* GELU, erf form (vecmath.h's td_v16_gelu_erf). */
TD_V8_INLINE __m256 td_v8_gelu_erf(__m256 x) {
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    __m256 a = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(20.0f));
    __m256 u = _mm256_mul_ps(a, _mm256_set1_ps(0.70710678118654752f));
    __m256 erf_u_small = td_v8_erf_small(u);
    __m256 hi = _mm256_mul_ps(a, a);
    __m256 lo = _mm256_fmsub_ps(a, a, hi);
    __m256 erfc_big = td_v8_erfc_big(_mm256_max_ps(u, _mm256_set1_ps(0.6f)), _mm256_mul_ps(hi, half),
                                     _mm256_mul_ps(lo, half));
    __m256 erfc_u = _mm256_blendv_ps(erfc_big, _mm256_sub_ps(one, erf_u_small),
                                     _mm256_cmp_ps(u, _mm256_set1_ps(0.6f), _CMP_LT_OQ));
    __m256 erf_u = _mm256_blendv_ps(_mm256_sub_ps(one, erfc_big), erf_u_small, _mm256_cmp_ps(u, one, _CMP_LT_OQ));
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 factor = _mm256_blendv_ps(_mm256_add_ps(one, erf_u), erfc_u, neg);
    __m256 r = _mm256_mul_ps(_mm256_mul_ps(half, x), factor);
    r = _mm256_blendv_ps(r, _mm256_set1_ps(-0.0f), _mm256_cmp_ps(x, _mm256_set1_ps(-20.0f), _CMP_LT_OQ));
    return _mm256_blendv_ps(r, x, nan);
}

/* GELU, tanh form: x / (1 + exp(-2z)), z = sqrt(2/pi) (x + 0.044715 x^3). */
TD_V8_INLINE __m256 td_v8_gelu_tanh(__m256 x) {
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 z = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
    __m256 e = td_v8_exp(_mm256_mul_ps(_mm256_set1_ps(-2.0f), z));
    __m256 r = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    /* below -20 the exact value underflows to -0 (x / inf) as the scalar form gives */
    return _mm256_blendv_ps(r, _mm256_set1_ps(-0.0f), _mm256_cmp_ps(x, _mm256_set1_ps(-20.0f), _CMP_LT_OQ));
}

#endif
#endif
