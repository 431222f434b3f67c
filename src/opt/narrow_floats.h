/* float32 -> float16/bfloat16 for weights the precision pass converts: values
 * clamped to the target's finite range first (float16: finite values to
 * +-65504; bfloat16: infinities to +-3.38e38 and finite values above the largest
 * finite bfloat16, which would round to infinity, to it: the attention masks'
 * -FLT_MAX stays finite, so a fully masked row is uniform, not NaN), then rounded to nearest even
 * exactly as td_f32_to_f16 / td_f32_to_bf16 do (NaN becomes that function's
 * quiet NaN). The float16 path converts eight values per instruction where the
 * CPU has F16C; the results are the same bits as the scalar path. */
#ifndef TD_OPT_NARROW_FLOATS_H
#define TD_OPT_NARROW_FLOATS_H

#include "core/dtype.h"

#include <stddef.h>

#define TD_BF16_MAX_FINITE 3.38953139e38f /* 0x7f7f: the largest finite bfloat16 */

/* n float32 values at src -> n 16-bit values of dtype low (TD_F16 or TD_BF16) at
 * dst. dst may be src itself (the conversion then happens in place, front to
 * back: value i is written at byte 2i after bytes 4i..4i+3 were read); it must
 * not overlap src otherwise. */
void td_opt_narrow_floats(const void *src, void *dst, size_t n, td_dtype low);

#endif
