/* Activation arena planner: given each buffer's size and lifetime (first and
 * last step, inclusive, in execution order) assign byte offsets in one arena so
 * that buffers whose lifetimes overlap never overlap in memory.
 *
 * Algorithm: buffers are placed largest first; each goes into the smallest gap
 * (best fit) between the already placed buffers that are alive at the same
 * time, or after the highest of them when no gap is big enough. Offsets and
 * sizes are rounded up to TD_ARENA_ALIGN bytes so every buffer is 64-byte
 * aligned for vector loads. This is the "greedy by size, best fit" heuristic;
 * its peak is never above the sum of the sizes and usually close to the peak of
 * simultaneously live bytes. */
#ifndef TD_RUNTIME_ARENA_H
#define TD_RUNTIME_ARENA_H

#include "tdeploy/tdeploy.h"

#include <stddef.h>

#define TD_ARENA_ALIGN 64

typedef struct td_arena_buf {
    size_t size;  /* bytes (0 = needs no space; gets offset 0) */
    int first;    /* step that writes it first */
    int last;     /* last step that reads it (>= first) */
    size_t offset; /* out: byte offset, a multiple of TD_ARENA_ALIGN */
} td_arena_buf;

/* Assign offsets to bufs[0..n); *total receives the arena size needed.
 * TD_ERR_OVERFLOW when sizes do not fit in size_t, TD_ERR_OUT_OF_MEMORY on OOM. */
td_status td_arena_plan(td_ctx *ctx, td_arena_buf *bufs, size_t n, size_t *total);

#endif
