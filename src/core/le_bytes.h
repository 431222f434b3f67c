/* Little-endian integers in byte buffers (the engine and timing-cache file formats, docs/formats.md): byte by
 * byte, so they need no alignment and give the same bytes on any host. */
#ifndef TD_CORE_LE_BYTES_H
#define TD_CORE_LE_BYTES_H

#include <stdint.h>

static inline uint32_t td_rd_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t td_rd_le64(const uint8_t *p) { return (uint64_t)td_rd_le32(p) | (uint64_t)td_rd_le32(p + 4) << 32; }
static inline void td_wr_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void td_wr_le64(uint8_t *p, uint64_t v) {
    td_wr_le32(p, (uint32_t)v);
    td_wr_le32(p + 4, (uint32_t)(v >> 32));
}

#endif
