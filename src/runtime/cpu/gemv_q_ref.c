/* Reference for the block-quantized GEMV (gemv_q.h): every weight dequantized
 * on its own from the block layout as the format defines it, double sums. */
#include "runtime/cpu/gemv_q.h"

#include "core/dtype.h"

#include <string.h>

static double weight(td_qblock_type t, const uint8_t *row, int64_t k) {
    const uint8_t *blk = row + (size_t)(k / TD_QBLOCK_SIZE) * td_qblock_bytes(t);
    int j = (int)(k % TD_QBLOCK_SIZE);
    uint16_t h;
    memcpy(&h, blk, 2);
    double d = td_f16_to_f32(h);
    if (t == TD_QBLOCK_Q8_0)
        return d * (int8_t)blk[2 + j];
    int nib = j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4;
    return d * (nib - 8);
}

void td_gemv_q_ref(td_qblock_type t, const void *W, int64_t N, int64_t K, const float *x, float *y) {
    size_t row_bytes = (size_t)(K / TD_QBLOCK_SIZE) * td_qblock_bytes(t);
    for (int64_t n = 0; n < N; n++) {
        const uint8_t *row = (const uint8_t *)W + (size_t)n * row_bytes;
        double acc = 0.0;
        for (int64_t k = 0; k < K; k++)
            acc += weight(t, row, k) * x[k];
        y[n] = (float)acc;
    }
}
