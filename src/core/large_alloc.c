#include "core/large_alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define TD_HUGE_PAGE ((size_t)2 << 20)

void *td_large_alloc(size_t bytes) {
    if (bytes < TD_HUGE_PAGE)
        return aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
    if (bytes > SIZE_MAX - TD_HUGE_PAGE)
        return NULL;
    size_t rounded = (bytes + TD_HUGE_PAGE - 1) / TD_HUGE_PAGE * TD_HUGE_PAGE;
    void *data = aligned_alloc(TD_HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
    /* Only a hint: where huge pages are off or unavailable the buffer simply
     * stays in 4 KB pages. */
    if (data)
        (void)madvise(data, rounded, MADV_HUGEPAGE);
#endif
    return data;
}
