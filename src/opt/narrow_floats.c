/* float32 -> float16/bfloat16 with clamping (see narrow_floats.h). */
#include "opt/narrow_floats.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#endif

/* One value, the reference the vector path must match. */
static uint16_t narrow_one(float x, td_dtype low) {
    if (low == TD_F16 && isfinite(x))
        x = x > 65504.0f ? 65504.0f : (x < -65504.0f ? -65504.0f : x);
    else if (low == TD_BF16 && isinf(x))
        x = x > 0 ? 3.38e38f : -3.38e38f;
    else if (low == TD_BF16 && fabsf(x) > TD_BF16_MAX_FINITE)
        x = x > 0 ? TD_BF16_MAX_FINITE : -TD_BF16_MAX_FINITE; /* -FLT_MAX (the masks' -inf) would round to -inf */
    return low == TD_F16 ? td_f32_to_f16(x) : td_f32_to_bf16(x);
}

/* Values [from, to) one at a time; byte pointers and memcpy because in place
 * the same bytes are read as float and written as uint16_t. */
static void narrow_scalar(const uint8_t *src, uint8_t *dst, size_t from, size_t to, td_dtype low) {
    for (size_t i = from; i < to; i++) {
        float x;
        memcpy(&x, src + 4 * i, sizeof x);
        uint16_t h = narrow_one(x, low);
        memcpy(dst + 2 * i, &h, sizeof h);
    }
}

void td_opt_narrow_floats(const void *src, void *dst, size_t n, td_dtype low) {
    const uint8_t *s = src;
    uint8_t *d = dst;
    size_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    if (low == TD_F16) {
        const __m256 lim = _mm256_set1_ps(65504.0f), nlim = _mm256_set1_ps(-65504.0f);
        const __m256 inf = _mm256_set1_ps(INFINITY), absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        for (; i + 8 <= n; i += 8) {
            __m256 x = _mm256_loadu_ps((const float *)(const void *)(s + 4 * i));
            /* NaN: the hardware keeps payload bits, td_f32_to_f16 does not; those blocks go the scalar way */
            if (_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q))) {
                narrow_scalar(s, d, i, i + 8, low);
                continue;
            }
            __m256 finite = _mm256_cmp_ps(_mm256_and_ps(x, absmask), inf, _CMP_LT_OQ);
            __m256 clamped = _mm256_max_ps(_mm256_min_ps(x, lim), nlim);
            x = _mm256_blendv_ps(x, clamped, finite); /* infinities stay infinite */
            __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm_storeu_si128((__m128i *)(void *)(d + 2 * i), h);
        }
    }
#endif
    narrow_scalar(s, d, i, n, low);
}
