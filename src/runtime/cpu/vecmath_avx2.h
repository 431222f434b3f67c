/* 8-lane (AVX2 + FMA) forms of vecmath.h's td_v16_* functions. Two users: the
 * fp32 kernels on hosts without AVX-512 (e.g. AMD Zen 3, Intel client cores;
 * vecmath.h includes this file and sets TD_VEC_AVX2 there), and the int8 GEMM
 * epilogue (gemm_int8.c, on any AVX2 host). Same algorithms and the same
 * fitted coefficients as the 16-lane versions (see vecmath.h); only the
 * AVX-512 instructions are replaced: masks become all-ones/all-zeros lane
 * vectors for blendv, and scalef (2^n with gradual underflow) becomes two
 * exponent-field multiplies (see td_v8_exp). Measured against double-precision
 * libm by tests/unit/test_cpu_math.c (through td_cpu_unary) and against the
 * scalar forms by tests/unit/test_gemm_int8.c. */
#ifndef TD_RUNTIME_CPU_VECMATH_AVX2_H
#define TD_RUNTIME_CPU_VECMATH_AVX2_H

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define TD_V8_INLINE static inline __attribute__((always_inline))

TD_V8_INLINE __m256 td_v8_abs(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
TD_V8_INLINE __m256 td_v8_signbit(__m256 x) { return _mm256_and_ps(_mm256_set1_ps(-0.0f), x); }
/* lanes that are NaN: all ones, else zero */
TD_V8_INLINE __m256 td_v8_isnan(__m256 x) { return _mm256_cmp_ps(x, x, _CMP_UNORD_Q); }
/* sel lanes all-ones take b, else a (the order of _mm512_mask_blend_ps(mask, a, b)) */
TD_V8_INLINE __m256 td_v8_blend(__m256 sel, __m256 a, __m256 b) { return _mm256_blendv_ps(a, b, sel); }

/* 2^n for integral n in [-75, 64] (always a normal float). */
TD_V8_INLINE __m256 td_v8_pow2i(__m256 n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}

/* exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, Taylor degree 7 for e^r.
 * n lies in [-150, 128] after the clamp; 2^n is applied as 2^(n/2 rounded down)
 * then 2^(rest), both normal, so the first multiply is exact and the second
 * rounds once: the same overflow to inf and gradual underflow as scalef. */
TD_V8_INLINE __m256 td_v8_exp(__m256 x) {
    __m256 nan = td_v8_isnan(x);
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
    __m256 n1 = _mm256_floor_ps(_mm256_mul_ps(n, _mm256_set1_ps(0.5f)));
    __m256 n2 = _mm256_sub_ps(n, n1);
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, td_v8_pow2i(n1)), td_v8_pow2i(n2));
    return td_v8_blend(nan, y, x);
}

/* expm1 for 0 <= y: Taylor degree 8 below 0.5 (no cancellation), exp(y)-1 above. */
TD_V8_INLINE __m256 td_v8_expm1_pos(__m256 y) {
    __m256 p = _mm256_set1_ps(1.0f / 40320.0f);
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f / 5040.0f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f));
    __m256 small = _mm256_mul_ps(p, y);
    __m256 big = _mm256_sub_ps(td_v8_exp(y), _mm256_set1_ps(1.0f));
    return td_v8_blend(_mm256_cmp_ps(y, _mm256_set1_ps(0.5f), _CMP_LT_OQ), big, small);
}

/* tanh(x) = sign(x) * e / (e + 2), e = expm1(2|x|); |x| >= 9.1 rounds to 1. */
TD_V8_INLINE __m256 td_v8_tanh(__m256 x) {
    __m256 nan = td_v8_isnan(x);
    __m256 sign = td_v8_signbit(x);
    __m256 a = _mm256_min_ps(td_v8_abs(x), _mm256_set1_ps(9.1f));
    __m256 e = td_v8_expm1_pos(_mm256_add_ps(a, a));
    __m256 t = _mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
    t = _mm256_or_ps(t, sign);
    return td_v8_blend(nan, t, x);
}

/* erf(x)/x on |x| < 1 as a degree-6 polynomial in x^2 (fit error 1.4e-9). */
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

/* erfc(u) for 0.6 <= u (u <= ~10.5): exp(-u^2) * q(1/u) / u, u^2 = hi + lo
 * (see td_v16_erfc_big). */
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
    __m256 q = td_v8_blend(_mm256_cmp_ps(u, _mm256_set1_ps(2.5f), _CMP_LT_OQ), q2, q1);
    return _mm256_mul_ps(_mm256_mul_ps(e, q), t);
}

TD_V8_INLINE __m256 td_v8_erf(__m256 x) {
    __m256 nan = td_v8_isnan(x);
    __m256 sign = td_v8_signbit(x);
    __m256 a = _mm256_min_ps(td_v8_abs(x), _mm256_set1_ps(10.5f));
    __m256 small = td_v8_erf_small(a);
    __m256 hi = _mm256_mul_ps(a, a);
    __m256 lo = _mm256_fmsub_ps(a, a, hi);
    __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f), td_v8_erfc_big(_mm256_max_ps(a, _mm256_set1_ps(1.0f)), hi, lo));
    __m256 r = td_v8_blend(_mm256_cmp_ps(a, _mm256_set1_ps(1.0f), _CMP_LT_OQ), big, small);
    r = _mm256_or_ps(r, sign);
    return td_v8_blend(nan, r, x);
}

/* GELU, erf form (see td_v16_gelu_erf for the tail handling). */
TD_V8_INLINE __m256 td_v8_gelu_erf(__m256 x) {
    __m256 nan = td_v8_isnan(x);
    __m256 half = _mm256_set1_ps(0.5f);
    __m256 a = _mm256_min_ps(td_v8_abs(x), _mm256_set1_ps(20.0f));
    __m256 u = _mm256_mul_ps(a, _mm256_set1_ps(0.70710678118654752f));
    __m256 erf_u_small = td_v8_erf_small(u);
    __m256 hi = _mm256_mul_ps(a, a);
    __m256 lo = _mm256_fmsub_ps(a, a, hi);
    __m256 erfc_big = td_v8_erfc_big(_mm256_max_ps(u, _mm256_set1_ps(0.6f)), _mm256_mul_ps(hi, half),
                                     _mm256_mul_ps(lo, half));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 erfc_u = td_v8_blend(_mm256_cmp_ps(u, _mm256_set1_ps(0.6f), _CMP_LT_OQ), erfc_big,
                                _mm256_sub_ps(one, erf_u_small));
    __m256 erf_u = td_v8_blend(_mm256_cmp_ps(u, one, _CMP_LT_OQ), _mm256_sub_ps(one, erfc_big), erf_u_small);
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 factor = td_v8_blend(neg, _mm256_add_ps(one, erf_u), erfc_u);
    __m256 r = _mm256_mul_ps(_mm256_mul_ps(half, x), factor);
    r = td_v8_blend(_mm256_cmp_ps(x, _mm256_set1_ps(-20.0f), _CMP_LT_OQ), r, _mm256_set1_ps(-0.0f));
    return td_v8_blend(nan, r, x);
}

/* GELU, tanh form: x / (1 + exp(-2z)), z = sqrt(2/pi) (x + 0.044715 x^3).
 * Below -20 the exact value underflows to -0, as in td_s_gelu_tanh (without
 * this, x = -inf would give -inf / inf = NaN). */
TD_V8_INLINE __m256 td_v8_gelu_tanh(__m256 x) {
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 z = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
    __m256 e = td_v8_exp(_mm256_mul_ps(_mm256_set1_ps(-2.0f), z));
    __m256 r = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    return td_v8_blend(_mm256_cmp_ps(x, _mm256_set1_ps(-20.0f), _CMP_LT_OQ), r, _mm256_set1_ps(-0.0f));
}

TD_V8_INLINE __m256 td_v8_sigmoid(__m256 x) {
    __m256 e = td_v8_exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* Horizontal reductions. */
TD_V8_INLINE float td_v8_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
TD_V8_INLINE float td_v8_hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lane mask (for maskload/maskstore) selecting the first n (0..8) lanes. */
TD_V8_INLINE __m256i td_v8_mask(size_t n) {
    static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - (n < 8 ? n : 8)));
}

/* The first n floats at p (all 8 when n >= 8; masked-off lanes read as 0),
 * and the matching store: plain loads/stores except on a row's tail. */
TD_V8_INLINE __m256 td_v8_load_n(const float *p, size_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, td_v8_mask(n));
}
TD_V8_INLINE void td_v8_store_n(float *p, size_t n, __m256 v) {
    if (n >= 8)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, td_v8_mask(n), v);
}
/* v with the lanes from n on replaced by fill */
TD_V8_INLINE __m256 td_v8_keep_n(__m256 v, size_t n, __m256 fill) {
    return n >= 8 ? v : _mm256_blendv_ps(fill, v, _mm256_castsi256_ps(td_v8_mask(n)));
}

#endif /* __AVX2__ && __FMA__ */
#endif
