/* Protobuf text format output buffer. */
#include "deploy/pbtxt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(td_pbtxt *b, size_t extra) {
    if (b->oom)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void td_pbtxt_printf(td_pbtxt *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n)) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void td_pbtxt_quoted(td_pbtxt *b, const char *s) {
    if (!reserve(b, 4 * strlen(s) + 2))
        return;
    char *p = b->data + b->len;
    *p++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"': *p++ = '\\'; *p++ = '"'; break;
        case '\\': *p++ = '\\'; *p++ = '\\'; break;
        case '\n': *p++ = '\\'; *p++ = 'n'; break;
        case '\r': *p++ = '\\'; *p++ = 'r'; break;
        case '\t': *p++ = '\\'; *p++ = 't'; break;
        default:
            if (*c < 0x20 || *c >= 0x7f) {
                *p++ = '\\';
                *p++ = (char)('0' + (*c >> 6));
                *p++ = (char)('0' + ((*c >> 3) & 7));
                *p++ = (char)('0' + (*c & 7));
            } else
                *p++ = (char)*c;
        }
    }
    *p++ = '"';
    *p = '\0';
    b->len = (size_t)(p - b->data);
}

void td_pbtxt_free(td_pbtxt *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}
