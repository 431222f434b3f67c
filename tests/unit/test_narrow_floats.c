/* td_opt_narrow_floats (the precision pass's weight conversion) against the
 * scalar td_f32_to_f16 / td_f32_to_bf16 with the pass's clamping: special
 * values (zeros, subnormals, the float16 overflow and rounding edges,
 * infinities, NaNs with payloads), random bit patterns, lengths that do and do
 * not fill the 8-wide vector blocks, in place and into another buffer. */
#include "opt/narrow_floats.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint16_t expect(uint32_t bits, td_dtype low) {
    float x;
    memcpy(&x, &bits, sizeof x);
    if (low == TD_F16 && isfinite(x))
        x = x > 65504.0f ? 65504.0f : (x < -65504.0f ? -65504.0f : x);
    else if (low == TD_BF16 && isinf(x))
        x = x > 0 ? 3.38e38f : -3.38e38f;
    else if (low == TD_BF16 && fabsf(x) > 3.38953139e38f)
        x = x > 0 ? 3.38953139e38f : -3.38953139e38f;
    return low == TD_F16 ? td_f32_to_f16(x) : td_f32_to_bf16(x);
}

int main(void) {
    static const uint32_t special[] = {
        0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x33000000, 0x33000001, 0x387fe000, 0x38800000,
        0x3f800000, 0x3f801000, 0x3f803000, 0x477fe000, 0x477fefff, 0x477ff000, 0x47800000, 0xc7800000,
        0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffc12345, 0x7fbfffff};
    enum { N = 4099 }; /* not a multiple of 8: the tail goes the scalar way */
    static uint32_t in[N], work[N];
    static uint16_t out[N];
    uint64_t state = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < N; i++) {
        state = state * 6364136223846793005u + 1442695040888963407u;
        in[i] = (uint32_t)(state >> 32);
    }
    /* specials spread so that some vector blocks hold a NaN and others do not */
    for (size_t k = 0; k < sizeof special / sizeof *special; k++) {
        in[k] = special[k];
        in[100 + 9 * k] = special[k];
    }
    /* -FLT_MAX, the exporters' masked-out bias, must stay finite in bfloat16 (it rounded to -inf, and a fully
     * masked softmax row became NaN: the bf16 decoder bug) */
    const float fmax[2] = {-3.40282347e38f, 3.40282347e38f};
    uint16_t bf[2];
    td_opt_narrow_floats(fmax, bf, 2, TD_BF16);
    CHECK_MSG(bf[0] == 0xff7f && bf[1] == 0x7f7f, "bf16 of -+FLT_MAX: 0x%04x 0x%04x, want 0xff7f 0x7f7f", bf[0], bf[1]);
    static const td_dtype lows[] = {TD_F16, TD_BF16};
    static const size_t lens[] = {0, 1, 7, 8, 9, 17, 64, N};
    for (int l = 0; l < 2; l++)
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            size_t n = lens[li];
            int bad = 0, bad_in_place = 0;
            memset(out, 0xAB, sizeof out);
            td_opt_narrow_floats(in, out, n, lows[l]);
            memcpy(work, in, sizeof in);
            td_opt_narrow_floats(work, work, n, lows[l]);
            const uint8_t *wp = (const uint8_t *)work;
            for (size_t i = 0; i < n; i++) {
                uint16_t want = expect(in[i], lows[l]), got_in_place;
                memcpy(&got_in_place, wp + 2 * i, sizeof got_in_place);
                bad += out[i] != want;
                bad_in_place += got_in_place != want;
            }
            CHECK_MSG(bad == 0, "%s n=%zu: %d values differ", lows[l] == TD_F16 ? "fp16" : "bf16", n, bad);
            CHECK_MSG(bad_in_place == 0, "%s n=%zu in place: %d values differ", lows[l] == TD_F16 ? "fp16" : "bf16",
                      n, bad_in_place);
            CHECK(n == N || out[n] == 0xABAB); /* nothing written past n */
        }
    return td_test_finish("test_narrow_floats");
}
