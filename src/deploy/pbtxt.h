/* A growing text buffer for protobuf text format (Triton's config.pbtxt), with
 * string quoting that escapes everything the text format parser would misread. */
#ifndef TD_DEPLOY_PBTXT_H
#define TD_DEPLOY_PBTXT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct td_pbtxt {
    char *data; /* NUL-terminated; NULL until something is written */
    size_t len, cap;
    bool oom;   /* an append failed: the text is incomplete and must not be used */
} td_pbtxt;

void td_pbtxt_printf(td_pbtxt *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a double-quoted string: \" \\ \n \r \t escaped, other bytes below
 * 0x20, 0x7f and every byte >= 0x80 as three-digit octal escapes. */
void td_pbtxt_quoted(td_pbtxt *b, const char *s);
void td_pbtxt_free(td_pbtxt *b);

#endif
