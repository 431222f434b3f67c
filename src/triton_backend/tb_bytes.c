/* BYTES tensor parsing (tb_bytes.h). */
#include "triton_backend/tb_bytes.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tb_strings_free(tb_strings *s) {
    free(s->ptr);
    free(s->len);
    memset(s, 0, sizeof *s);
}

bool tb_strings_parse(const char *data, size_t size, size_t count, tb_strings *out, char *err, size_t n) {
    memset(out, 0, sizeof *out);
    if (count > size / 4) { /* every element needs at least its length prefix */
        snprintf(err, n, "%zu bytes cannot hold %zu strings", size, count);
        return false;
    }
    out->ptr = malloc((count ? count : 1) * sizeof *out->ptr);
    out->len = malloc((count ? count : 1) * sizeof *out->len);
    if (!out->ptr || !out->len) {
        tb_strings_free(out);
        snprintf(err, n, "out of memory for %zu strings", count);
        return false;
    }
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        if (size - at < 4) {
            snprintf(err, n, "element %zu: its length prefix is cut off at byte %zu", i, at);
            tb_strings_free(out);
            return false;
        }
        const unsigned char *p = (const unsigned char *)data + at;
        uint32_t len = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        at += 4;
        if (len > size - at) {
            snprintf(err, n, "element %zu claims %u bytes but only %zu remain", i, len, size - at);
            tb_strings_free(out);
            return false;
        }
        out->ptr[i] = data + at;
        out->len[i] = len;
        at += len;
    }
    if (at != size) {
        snprintf(err, n, "%zu bytes after the last of %zu strings", size - at, count);
        tb_strings_free(out);
        return false;
    }
    out->n = count;
    return true;
}
