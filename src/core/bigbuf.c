/* Large weight buffers (see bigbuf.h). */
#define _GNU_SOURCE
#include "core/bigbuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *td_bigbuf_alloc(size_t nbytes) {
    void *p = NULL;
    if (nbytes < HUGE_PAGE) /* small: 64 bytes is what vector loads want */
        return posix_memalign(&p, 64, nbytes ? nbytes : 1) == 0 ? p : NULL;
    if (posix_memalign(&p, HUGE_PAGE, nbytes) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    /* advisory: without it (or without THP) the buffer is simply made of small pages */
    size_t whole = nbytes & ~(HUGE_PAGE - 1);
    madvise(p, whole, MADV_HUGEPAGE);
#endif
    return p;
}
