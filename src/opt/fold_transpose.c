/* Transpose of a constant (see fold_transpose.h). */
#include "opt/fold_transpose.h"

#include "core/checked.h"

#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#define MAX_AXES 16
#define TILE 8 /* scalar tiles: 8 source lines of 64 bytes stay in L1 while a tile is written */

bool td_fold_transpose_perm(const td_node *n, int r, int *perm) {
    size_t pc = 0;
    const int64_t *p = td_node_attr_ints(n, "perm", &pc);
    bool seen[MAX_AXES] = {false};
    if (r < 0 || r > MAX_AXES || (p && pc != (size_t)r))
        return false;
    for (int i = 0; i < r; i++) {
        int64_t a = p ? p[i] : r - 1 - i;
        if (a < 0 || a >= r || seen[a])
            return false;
        seen[a] = true;
        perm[i] = (int)a;
    }
    return true;
}

/* The copy reduced to m output axes: out_dims, and for each the stride of the
 * same axis in the source (elements). */
typedef struct permute_plan {
    int m;
    int64_t out_dims[MAX_AXES];
    int64_t src_strides[MAX_AXES];
} permute_plan;

static void make_plan(int rank, const int64_t *in_dims, const int *perm, permute_plan *p) {
    /* input axes of size 1 move nothing: drop them, numbering the rest 0..kept-1 */
    int compact[MAX_AXES], order[MAX_AXES], kept = 0, m = 0;
    int64_t cdims[MAX_AXES];
    for (int a = 0; a < rank; a++) {
        compact[a] = in_dims[a] == 1 ? -1 : kept;
        if (in_dims[a] != 1)
            cdims[kept++] = in_dims[a];
    }
    for (int i = 0; i < rank; i++)
        if (compact[perm[i]] >= 0)
            order[m++] = compact[perm[i]];
    /* output neighbours that are input neighbours in the same order are one axis:
     * group k covers input axes first[k] .. first[k] + len[k] - 1 */
    int first[MAX_AXES], len[MAX_AXES], groups = 0;
    for (int k = 0; k < m; k++) {
        if (groups > 0 && order[k] == first[groups - 1] + len[groups - 1])
            len[groups - 1]++;
        else {
            first[groups] = order[k];
            len[groups] = 1;
            groups++;
        }
    }
    /* input stride of input axis a (contiguous over the kept axes) */
    int64_t stride[MAX_AXES], s = 1;
    for (int a = kept - 1; a >= 0; a--) {
        stride[a] = s;
        s *= cdims[a];
    }
    p->m = groups;
    for (int g = 0; g < groups; g++) {
        int64_t d = 1;
        for (int a = first[g]; a < first[g] + len[g]; a++)
            d *= cdims[a];
        p->out_dims[g] = d;
        p->src_strides[g] = stride[first[g] + len[g] - 1];
    }
}

/* dst[i * dq + j] = src[j * sj + i] for i < ni, j < nj (elements of ES bytes),
 * in TILE x TILE tiles. memcpy of a constant size compiles to one move and
 * makes no alignment assumption (complex64 is only 4-byte aligned). */
#define DEFINE_TILED(NAME, ES)                                                                                       \
    static void NAME(uint8_t *dst, int64_t dq, const uint8_t *src, int64_t sj, int64_t ni, int64_t nj) {             \
        for (int64_t ib = 0; ib < ni; ib += TILE) {                                                                  \
            int64_t ie = ib + TILE < ni ? ib + TILE : ni;                                                            \
            for (int64_t jb = 0; jb < nj; jb += TILE) {                                                              \
                int64_t je = jb + TILE < nj ? jb + TILE : nj;                                                        \
                for (int64_t i = ib; i < ie; i++)                                                                    \
                    for (int64_t j = jb; j < je; j++)                                                                \
                        memcpy(dst + (size_t)(i * dq + j) * (ES), src + (size_t)(j * sj + i) * (ES), (ES));          \
            }                                                                                                        \
        }                                                                                                            \
    }
DEFINE_TILED(tiled_1, 1)
DEFINE_TILED(tiled_2, 2)
DEFINE_TILED(tiled_4, 4)
DEFINE_TILED(tiled_8, 8)

static void tiled_any(uint8_t *dst, int64_t dq, const uint8_t *src, int64_t sj, int64_t ni, int64_t nj, size_t es) {
    for (int64_t ib = 0; ib < ni; ib += TILE) {
        int64_t ie = ib + TILE < ni ? ib + TILE : ni;
        for (int64_t jb = 0; jb < nj; jb += TILE) {
            int64_t je = jb + TILE < nj ? jb + TILE : nj;
            for (int64_t i = ib; i < ie; i++)
                for (int64_t j = jb; j < je; j++)
                    memcpy(dst + (size_t)(i * dq + j) * es, src + (size_t)(j * sj + i) * es, es);
        }
    }
}

#ifdef __AVX2__
/* One 8x8 block of 4-byte elements: eight source rows (stride sj) become eight
 * destination rows (stride dq). Unaligned loads and stores. */
static inline void block8x8_4(float *dst, int64_t dq, const float *src, int64_t sj) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + sj), r2 = _mm256_loadu_ps(src + 2 * sj),
           r3 = _mm256_loadu_ps(src + 3 * sj), r4 = _mm256_loadu_ps(src + 4 * sj), r5 = _mm256_loadu_ps(src + 5 * sj),
           r6 = _mm256_loadu_ps(src + 6 * sj), r7 = _mm256_loadu_ps(src + 7 * sj);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
           t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + dq, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * dq, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * dq, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * dq, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * dq, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * dq, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * dq, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* 4-byte elements: 16x16 tiles of 8x8 blocks (the shuffles only move bits, so
 * any 4-byte type is copied exactly, NaN payloads included); the edges that do
 * not fill a block go through the scalar tiles. */
static void transpose_4(uint8_t *dst, int64_t dq, const uint8_t *src, int64_t sj, int64_t ni, int64_t nj) {
    int64_t ni8 = ni & ~(int64_t)7, nj8 = nj & ~(int64_t)7;
    float *d = (float *)(void *)dst;
    const float *s = (const float *)(const void *)src;
    for (int64_t ib = 0; ib < ni8; ib += 16)
        for (int64_t jb = 0; jb < nj8; jb += 16)
            for (int64_t i = ib; i < ib + 16 && i < ni8; i += 8)
                for (int64_t j = jb; j < jb + 16 && j < nj8; j += 8)
                    block8x8_4(d + i * dq + j, dq, s + j * sj + i, sj);
    if (nj8 < nj) /* right edge: columns nj8.. of every row */
        tiled_4(dst + (size_t)nj8 * 4, dq, src + (size_t)(nj8 * sj) * 4, sj, ni, nj - nj8);
    if (ni8 < ni) /* bottom edge: rows ni8.. of the columns done in blocks */
        tiled_4(dst + (size_t)(ni8 * dq) * 4, dq, src + (size_t)ni8 * 4, sj, ni - ni8, nj8);
}
#else
static void transpose_4(uint8_t *dst, int64_t dq, const uint8_t *src, int64_t sj, int64_t ni, int64_t nj) {
    tiled_4(dst, dq, src, sj, ni, nj);
}
#endif

static void transpose_2d(uint8_t *dst, int64_t dq, const uint8_t *src, int64_t sj, int64_t ni, int64_t nj,
                         size_t es) {
    switch (es) {
    case 1: tiled_1(dst, dq, src, sj, ni, nj); break;
    case 2: tiled_2(dst, dq, src, sj, ni, nj); break;
    case 4: transpose_4(dst, dq, src, sj, ni, nj); break;
    case 8: tiled_8(dst, dq, src, sj, ni, nj); break;
    default: tiled_any(dst, dq, src, sj, ni, nj, es); break;
    }
}

void td_fold_permute(void *dst, const void *src, size_t esize, int rank, const int64_t *in_dims, const int *perm) {
    int64_t numel = 1;
    for (int a = 0; a < rank; a++)
        numel *= in_dims[a];
    if (numel == 0)
        return;
    permute_plan p;
    make_plan(rank, in_dims, perm, &p);
    int m = p.m;
    if (m == 0 || (m == 1 && p.src_strides[0] == 1)) { /* the same order: one copy */
        memcpy(dst, src, (size_t)numel * esize);
        return;
    }
    int64_t dst_strides[MAX_AXES], s = 1;
    for (int k = m - 1; k >= 0; k--) {
        dst_strides[k] = s;
        s *= p.out_dims[k];
    }
    /* inner work per outer index: whole rows when the last output axis is the
     * source's contiguous one, else a 2-D transpose of axes (q, m-1) */
    int q = -1;
    bool rows = p.src_strides[m - 1] == 1;
    if (!rows)
        for (int k = 0; k < m - 1; k++)
            if (p.src_strides[k] == 1)
                q = k;
    int outer[MAX_AXES], n_outer = 0;
    for (int k = 0; k < m - 1; k++)
        if (k != q)
            outer[n_outer++] = k;
    int64_t idx[MAX_AXES] = {0}, src_off = 0, dst_off = 0;
    uint8_t *d8 = dst;
    const uint8_t *s8 = src;
    int64_t nj = p.out_dims[m - 1];
    for (;;) {
        if (rows)
            memcpy(d8 + (size_t)dst_off * esize, s8 + (size_t)src_off * esize, (size_t)nj * esize);
        else
            transpose_2d(d8 + (size_t)dst_off * esize, dst_strides[q], s8 + (size_t)src_off * esize,
                         p.src_strides[m - 1], p.out_dims[q], nj, esize);
        int o = n_outer - 1;
        for (; o >= 0; o--) {
            int k = outer[o];
            idx[k]++;
            src_off += p.src_strides[k];
            dst_off += dst_strides[k];
            if (idx[k] < p.out_dims[k])
                break;
            src_off -= p.src_strides[k] * p.out_dims[k];
            dst_off -= dst_strides[k] * p.out_dims[k];
            idx[k] = 0;
        }
        if (o < 0)
            break;
    }
}

td_status td_fold_transpose(td_ctx *ctx, const td_node *n, const td_tensor *x, int64_t max, void *buffer,
                            bool *buffer_taken, td_tensor **out) {
    *out = NULL;
    *buffer_taken = false;
    int r = x->rank, perm[MAX_AXES];
    size_t es = td_dtype_size(x->dtype);
    int64_t numel = td_tensor_numel(x), dims[MAX_AXES];
    if (x->dtype == TD_STRING || es == 0 || !x->data || numel <= 0 || numel > max || n->n_outputs != 1 ||
        !n->outputs[0] || !td_fold_transpose_perm(n, r, perm) || x->nbytes != (size_t)numel * es)
        return TD_OK;
    for (int i = 0; i < r; i++)
        dims[i] = x->dims[perm[i]];
    void *buf = buffer;
    if (!buf && !(buf = malloc(x->nbytes)))
        return td_fail_oom(ctx, x->nbytes, "a transposed constant");
    td_fold_permute(buf, x->data, es, r, x->dims, perm);
    *buffer_taken = buffer != NULL;
    /* td_tensor_new_owned frees buf on failure */
    return td_tensor_new_owned(ctx, n->outputs[0]->name, x->dtype, r, dims, buf, x->nbytes, out);
}
