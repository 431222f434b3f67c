/* Overflow-checked size arithmetic. Every size computed from file data goes
 * through these before it is used for an allocation, an offset or a loop bound.
 * They return true on success and false on overflow (or negative input). */
#ifndef TD_CORE_CHECKED_H
#define TD_CORE_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool td_add_size(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool td_mul_size(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool td_add_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool td_mul_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool td_mul_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool td_add_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }

/* Product of n non-negative dims; false if any dim < 0 or the product overflows int64. */
bool td_shape_numel(const int64_t *dims, int n, int64_t *out);

#endif
