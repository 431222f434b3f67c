/* UTF-8 and stop-string boundaries for streaming (see stream.h). */
#define _GNU_SOURCE
#include "generate/stream.h"

#include <stdint.h>
#include <string.h>

/* Bytes a UTF-8 sequence has, from its lead byte (0 for a continuation or invalid byte). */
static size_t seq_len(unsigned char c) {
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        return 2;
    if ((c & 0xF0) == 0xE0)
        return 3;
    if ((c & 0xF8) == 0xF0)
        return 4;
    return 0;
}

size_t td_stream_safe_len(const char *text, size_t len, const char *const *stop, size_t n_stop) {
    const unsigned char *u = (const unsigned char *)text;
    size_t end = len;
    /* an incomplete last character: step back to its lead byte */
    size_t back = 0;
    while (back < 4 && back < end && (u[end - 1 - back] & 0xC0) == 0x80)
        back++;
    if (back < end) {
        size_t lead = end - 1 - back;
        size_t need = seq_len(u[lead]);
        if (need > 0 && lead + need > end)
            end = lead;
    }
    /* a trailing replacement character may be the decoder's view of a partial byte sequence */
    while (end >= 3 && u[end - 3] == 0xEF && u[end - 2] == 0xBF && u[end - 1] == 0xBD)
        end -= 3;
    /* a suffix that a later token could complete into a stop string */
    size_t hold = 0;
    for (size_t s = 0; s < n_stop; s++) {
        size_t sl = strlen(stop[s]);
        for (size_t k = sl > 0 ? sl - 1 : 0; k > hold; k--)
            if (k <= end && memcmp(text + end - k, stop[s], k) == 0) {
                hold = k;
                break;
            }
    }
    return end - hold;
}

size_t td_stream_find_stop(const char *text, size_t len, const char *const *stop, size_t n_stop, size_t *which) {
    size_t best = len;
    for (size_t s = 0; s < n_stop; s++) {
        size_t sl = strlen(stop[s]);
        if (sl == 0 || sl > len)
            continue;
        const char *p = memmem(text, len, stop[s], sl);
        if (p && (size_t)(p - text) < best) {
            best = (size_t)(p - text);
            if (which)
                *which = s;
        }
    }
    return best;
}
