/* Microkernels behind gemm.c: one MR x NR register tile, kc steps of the K loop.
 * C tile (mr <= MR rows, nr <= NR columns) at C with stride ldc. B points at kc
 * rows of one packed panel (NR elements per row, storage dtype per function).
 * first: start from zero instead of loading C (partial sums of earlier K blocks
 * live in C). last: apply the epilogue before the final store. bias and
 * residual are already offset to this tile's first column / first element. */
#ifndef TD_RUNTIME_CPU_GEMM_KERNEL_H
#define TD_RUNTIME_CPU_GEMM_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct td_gemm_tile_epilogue {
    float scale;
    const float *bias;
    int act;
    const float *residual;
    size_t ldr;
} td_gemm_tile_epilogue;

typedef void (*td_gemm_kernel_fn)(size_t mr, size_t nr, size_t kc, const float *A, size_t lda, const void *B,
                                  float *C, size_t ldc, bool first, bool last, const td_gemm_tile_epilogue *ep);

void td_gemm_kernel_f32(size_t mr, size_t nr, size_t kc, const float *A, size_t lda, const void *B, float *C,
                        size_t ldc, bool first, bool last, const td_gemm_tile_epilogue *ep);
void td_gemm_kernel_f16(size_t mr, size_t nr, size_t kc, const float *A, size_t lda, const void *B, float *C,
                        size_t ldc, bool first, bool last, const td_gemm_tile_epilogue *ep);
void td_gemm_kernel_bf16(size_t mr, size_t nr, size_t kc, const float *A, size_t lda, const void *B, float *C,
                         size_t ldc, bool first, bool last, const td_gemm_tile_epilogue *ep);

#endif
