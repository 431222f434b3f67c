/* Allocation for large buffers that are streamed in full on every inference
 * (packed GEMM weights, the activation arena). Returns 64-byte aligned memory,
 * and for buffers of 2 MB or more 2 MB-aligned memory that asks the kernel for
 * transparent huge pages (MADV_HUGEPAGE): on this project's 2-core Zen 4 host
 * that took bert-base 1x128 from ~114 ms to ~109 ms (bench/cpu/session_bench),
 * because a 4 KB-paged inference walks ~83,000 page-table entries for its
 * 340 MB of packed weights. Release with free(); NULL when out of memory. */
#ifndef TD_CORE_LARGE_ALLOC_H
#define TD_CORE_LARGE_ALLOC_H

#include <stddef.h>

void *td_large_alloc(size_t bytes);

#endif
