/* Requests -> one padded batch -> per-request outputs: the pure part of the
 * backend's execute (no Triton calls, so it is the same code for every input mode).
 *
 * Each request contributes `rows` rows of its own length `seq` (its rows are
 * already padded to that length with mask 0). The batch is (sum rows, max seq),
 * every row right-padded with pad_id, type 0 and mask 0: the encoder masks
 * padded keys, so a real position's output does not depend on the padding. */
#ifndef TD_TRITON_BACKEND_PACK_H
#define TD_TRITON_BACKEND_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tb_rows {
    size_t rows, seq;
    int64_t *ids, *mask, *types; /* (rows, seq) each, malloc'd */
} tb_rows;

void tb_rows_free(tb_rows *r);
/* Allocate (rows, seq) arrays: ids = pad_id, mask = 0, types = 0. False when out of memory or too large. */
bool tb_rows_alloc(tb_rows *r, size_t rows, size_t seq, int64_t pad_id);

typedef struct tb_packed {
    size_t rows, seq;
    int64_t *ids, *mask, *types; /* (rows, seq) */
} tb_packed;

void tb_packed_free(tb_packed *p);
/* Pack the n requests whose use[i] is true; row0[i] receives the first batch row of request i. */
bool tb_pack(const tb_rows *req, const bool *use, size_t n, int64_t pad_id, tb_packed *out, size_t *row0);

/* Copy one request's part of an output of the packed run into dst.
 * src: (batch_rows, batch_seq, inner) when per_token, else (batch_rows, inner).
 * dst: (rows, seq, inner) when per_token, else (rows, inner). */
void tb_scatter_f32(const float *src, size_t batch_seq, size_t inner, bool per_token, size_t row0, size_t rows,
                    size_t seq, float *dst);

#endif
