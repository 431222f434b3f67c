/* Packing requests into one batch and cutting the outputs back (tb_pack.h). */
#include "triton_backend/tb_pack.h"

#include <stdlib.h>
#include <string.h>

void tb_rows_free(tb_rows *r) {
    free(r->ids);
    free(r->mask);
    free(r->types);
    memset(r, 0, sizeof *r);
}

static bool cells_of(size_t rows, size_t seq, size_t *cells) {
    /* (rows, seq) int64 arrays, three of them: keep every byte count far from overflow */
    return !__builtin_mul_overflow(rows, seq, cells) && *cells <= ((size_t)1 << 40) / sizeof(int64_t);
}

bool tb_rows_alloc(tb_rows *r, size_t rows, size_t seq, int64_t pad_id) {
    size_t cells;
    memset(r, 0, sizeof *r);
    if (!cells_of(rows, seq, &cells))
        return false;
    r->rows = rows, r->seq = seq;
    r->ids = malloc((cells ? cells : 1) * sizeof(int64_t));
    r->mask = calloc(cells ? cells : 1, sizeof(int64_t));
    r->types = calloc(cells ? cells : 1, sizeof(int64_t));
    if (!r->ids || !r->mask || !r->types) {
        tb_rows_free(r);
        return false;
    }
    for (size_t k = 0; k < cells; k++)
        r->ids[k] = pad_id;
    return true;
}

void tb_packed_free(tb_packed *p) {
    free(p->ids);
    free(p->mask);
    free(p->types);
    memset(p, 0, sizeof *p);
}

bool tb_pack(const tb_rows *req, const bool *use, size_t n, int64_t pad_id, tb_packed *out, size_t *row0) {
    size_t rows = 0, seq = 0;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        if (!use[i])
            continue;
        row0[i] = rows;
        if (__builtin_add_overflow(rows, req[i].rows, &rows))
            return false;
        if (req[i].seq > seq)
            seq = req[i].seq;
    }
    tb_rows all;
    if (!tb_rows_alloc(&all, rows, seq, pad_id))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!use[i])
            continue;
        const tb_rows *r = &req[i];
        for (size_t b = 0; b < r->rows; b++) {
            size_t dst = (row0[i] + b) * seq, src = b * r->seq;
            memcpy(all.ids + dst, r->ids + src, r->seq * sizeof(int64_t));
            memcpy(all.mask + dst, r->mask + src, r->seq * sizeof(int64_t));
            memcpy(all.types + dst, r->types + src, r->seq * sizeof(int64_t));
        }
    }
    out->rows = rows, out->seq = seq;
    out->ids = all.ids, out->mask = all.mask, out->types = all.types;
    return true;
}

void tb_scatter_f32(const float *src, size_t batch_seq, size_t inner, bool per_token, size_t row0, size_t rows,
                    size_t seq, float *dst) {
    if (!per_token) {
        memcpy(dst, src + row0 * inner, rows * inner * sizeof(float));
        return;
    }
    for (size_t b = 0; b < rows; b++)
        memcpy(dst + b * seq * inner, src + (row0 + b) * batch_seq * inner, seq * inner * sizeof(float));
}
