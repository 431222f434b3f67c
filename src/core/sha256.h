/* SHA-256 (FIPS 180-4), streaming. Used to verify downloaded files whose
 * Hub ETag is the content's sha256 (Git LFS objects). */
#ifndef TD_CORE_SHA256_H
#define TD_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct td_sha256 {
    uint32_t state[8];
    uint64_t total_bytes;
    uint8_t block[64];
    size_t block_len;
} td_sha256;

void td_sha256_init(td_sha256 *h);
void td_sha256_update(td_sha256 *h, const void *data, size_t n);
/* Writes the 32-byte digest; h must be re-initialised before reuse. */
void td_sha256_final(td_sha256 *h, uint8_t digest[32]);
/* Digest as 64 lower-case hex characters + NUL. */
void td_sha256_hex(const uint8_t digest[32], char hex[65]);

#endif
