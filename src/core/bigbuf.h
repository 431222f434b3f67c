/* Buffers for whole weights (megabytes to gigabytes), which a model load or a
 * weight-rewriting optimizer pass fills once from start to end. Above 2 MB the
 * buffer is 2 MB aligned and advised for transparent huge pages, so filling it
 * takes one page fault per 2 MB instead of per 4 KB (on Linux with THP in
 * "madvise" or "always" mode; elsewhere the advice is ignored). The kernel
 * still zeroes every page it hands out; nothing here avoids that.
 *
 * Ownership: the result is the caller's, released with free(); NULL on failure
 * (no error is set: the caller names what it was allocating). */
#ifndef TD_CORE_BIGBUF_H
#define TD_CORE_BIGBUF_H

#include <stddef.h>

void *td_bigbuf_alloc(size_t nbytes);

#endif
