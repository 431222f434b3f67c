/* Small string helpers shared across the tool. */
#ifndef TD_CORE_STR_H
#define TD_CORE_STR_H

#include <stdbool.h>
#include <string.h>

/* s ends with suffix ("" ends every string). */
static inline bool td_str_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

#endif
