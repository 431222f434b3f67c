/* Triton's BYTES (TYPE_STRING) tensor layout: each element is a 4-byte
 * little-endian length followed by that many bytes, elements back to back. */
#ifndef TD_TRITON_BACKEND_BYTES_H
#define TD_TRITON_BACKEND_BYTES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tb_strings {
    size_t n;
    const char **ptr; /* (n) into the parsed buffer: not NUL-terminated */
    size_t *len;      /* (n) */
} tb_strings;

/* Split data (size bytes) into exactly `count` elements. Every length is checked against the bytes left; bytes
 * after the last element are an error. On failure err says which element and why. */
bool tb_strings_parse(const char *data, size_t size, size_t count, tb_strings *out, char *err, size_t n);
void tb_strings_free(tb_strings *s);

#endif
