/* MatMulNBits AVX-512 kernels (see qnbits.h), compiled with target attributes and chosen at run time, so
 * one build runs on CPUs with and without AVX-512.
 *
 * A weight row n is a byte stream of row_bytes = kb * blob, processed in 64-byte chunks (masked at the
 * end). For 4 bits a chunk holds 128 weights: its low nibbles are the even elements, its high nibbles the
 * odd ones, so the activation row is stored per chunk as [even elements (64) | odd elements (64)] and the
 * nibbles never need interleaving. Each 32-bit lane of a chunk covers 4 bytes of one block (blocks are
 * >= 8 bytes), so per-block scales become per-lane scales with one permute.
 *
 * int8 path, per chunk and activation row: vpdpbusd(codes u8, activations s8) -> int32 per lane, then
 * acc += float(lane) * weight scale * activation scale (per lane); after the row, subtract
 * sum_blocks scale*zp * act_scale * act_sum (the zero-point term) and add the bias. Up to 4 activation rows
 * share each unpacked weight chunk (prefill). fp32 path: codes widened to fp32, w = code*s - s*zp, fma. */
#include "runtime/cpu/qnbits.h"

#include "core/threadpool.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TD_QNB_X86 1
#include <immintrin.h>
#define TD_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define TD_AVX2 __attribute__((target("avx2,fma")))

/* 128-bit lane v (0..3) of x: the extract instruction needs an immediate, so a loop
 * variable goes through a switch (clang refuses a non-constant even when unrolled). */
TD_AVX512 static inline __m128i lane128(__m512i x, int v) {
    switch (v) {
    case 0: return _mm512_extracti32x4_epi32(x, 0);
    case 1: return _mm512_extracti32x4_epi32(x, 1);
    case 2: return _mm512_extracti32x4_epi32(x, 2);
    default: return _mm512_extracti32x4_epi32(x, 3);
    }
}
#endif

#define ROWS_MAX 4 /* activation rows sharing one weight chunk */
#define N_TILE 16  /* weight rows (16 x row_bytes, a few KB) reused across all activation rows */

bool td_qnbits_have_avx512(void) {
#ifdef TD_QNB_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

/* Per-row scratch sizes (bytes, 64-aligned). */
typedef struct qlayout {
    int64_t chunks;
    size_t act;  /* int8 activations, per row: chunks * 128 (4-bit) or * 64 (8-bit) */
    size_t dal;  /* per-lane activation scales, per row: chunks * 16 floats */
    size_t ca;   /* act_scale * act_sum per block, per row: kb floats */
    size_t af;   /* fp32 activations (reordered), per row: chunks * 128 or 64 floats */
    size_t row;  /* one row's total (max of the two paths) */
    size_t tmp;  /* per-thread quantization temporaries */
} qlayout;

static size_t al64(size_t x) { return (x + 63) / 64 * 64; }

static qlayout layout_of(const td_qnbits_w *w) {
    qlayout l;
    l.chunks = (w->row_bytes + 63) / 64;
    size_t per = w->bits == 4 ? 128 : 64;
    l.act = al64((size_t)l.chunks * per);
    l.dal = al64((size_t)l.chunks * 16 * sizeof(float));
    l.ca = al64((size_t)w->kb * sizeof(float));
    l.af = al64((size_t)l.chunks * per * sizeof(float));
    size_t i8 = l.act + l.dal + l.ca;
    l.row = i8 > l.af ? i8 : l.af;
    l.tmp = td_qnbits_i8_ref_scratch(w) + 64;
    return l;
}

size_t td_qnbits_scratch(const td_qnbits_w *w, int64_t M, int threads) {
    qlayout l = layout_of(w);
    return 64 + (size_t)M * l.row + (size_t)(threads > 1 ? threads : 1) * l.tmp; /* + per-thread temporaries */
}

#ifdef TD_QNB_X86
typedef struct job {
    const td_qnbits_w *w;
    const float *A;
    int64_t M;
    const float *bias;
    float *Y;
    bool int8;
    uint8_t *rows; /* M * l.row */
    uint8_t *tmp;  /* per-thread temporaries */
    qlayout l;
} job;

/* td_qnbits_quant_row in AVX2 for blocks of a multiple of 32 (the scalar code otherwise, and for a last partial
 * block): the same operations per element (|a| maximum, a * (1 / d) rounded to nearest even by cvtps like
 * nearbyintf, clamped to +-127), so the same bytes, scales and sums. A decode step quantizes one row per
 * matrix, ~200 times a token: the scalar loop was ~5% of a SmolLM2 decode step. */
TD_AVX2 static void quant_row_avx2(const float *a, int64_t K, int block_size, int8_t *a8, float *da, int32_t *asum) {
    int64_t kb = td_qnbits_kb(K, block_size);
    if (block_size % 32) {
        td_qnbits_quant_row(a, K, block_size, a8, da, asum);
        return;
    }
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), lim = _mm256_set1_epi32(127),
                  nlim = _mm256_set1_epi32(-127);
    for (int64_t blk = 0; blk < kb; blk++) {
        int64_t k0 = blk * block_size;
        if (k0 + block_size > K) { /* the partial last block: the scalar code on it alone */
            td_qnbits_quant_row(a + k0, K - k0, block_size, a8 + k0, da + blk, asum + blk);
            continue;
        }
        __m256 mx = _mm256_setzero_ps();
        for (int64_t k = k0; k < k0 + block_size; k += 8) /* new value first: a NaN is skipped, as fmaxf does */
            mx = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(a + k)), mx);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4), d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        __m256 iv = _mm256_set1_ps(id);
        __m256i sum = _mm256_setzero_si256();
        for (int64_t k = k0; k < k0 + block_size; k += 32) {
            __m256i q[4];
            for (int v = 0; v < 4; v++) {
                q[v] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(a + k + 8 * v), iv));
                q[v] = _mm256_max_epi32(_mm256_min_epi32(q[v], lim), nlim);
                sum = _mm256_add_epi32(sum, q[v]);
            }
            /* (32) int32 -> int8: the packs work per 128-bit lane, the permute restores element order */
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(a8 + k), _mm256_permutevar8x32_epi32(p, order));
        }
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        da[blk] = d;
        asum[blk] = _mm_cvtsi128_si32(s4);
    }
}

/* 4-bit activation chunks: 128 natural-order int8 -> [64 even elements | 64 odd elements] (see the header
 * comment), 32 bytes at a time: a byte shuffle splits each 16-byte lane into its 8 even and 8 odd bytes, a
 * 64-bit permute gathers the 16 evens and the 16 odds. */
TD_AVX2 static void split_even_odd_avx2(const int8_t *src, int8_t *dst) {
    const __m256i sh = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10,
                                        12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (int g = 0; g < 4; g++) {
        __m256i x = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(src + 32 * g)), sh);
        x = _mm256_permute4x64_epi64(x, 0xd8); /* (e0-7, e8-15, o0-7, o8-15) */
        _mm_storeu_si128((__m128i *)(dst + 16 * g), _mm256_castsi256_si128(x));
        _mm_storeu_si128((__m128i *)(dst + 64 + 16 * g), _mm256_extracti128_si256(x, 1));
    }
}

void td_qnbits_quant_row_fast(const float *a, int64_t K, int block_size, int8_t *a8, float *da, int32_t *asum) {
    if (td_qnbits_have_avx2())
        quant_row_avx2(a, K, block_size, a8, da, asum);
    else
        td_qnbits_quant_row(a, K, block_size, a8, da, asum);
}

/* Prepare activation row m for the chosen path. */
static void prep_row(const job *j, int64_t m, int thread) {
    const td_qnbits_w *w = j->w;
    const qlayout *l = &j->l;
    const float *a = j->A + m * w->K;
    uint8_t *base = j->rows + (size_t)m * l->row;
    int64_t per = w->bits == 4 ? 128 : 64, kpad = w->kb * w->block_size;
    if (!j->int8) {
        float *af = (float *)base; /* (chunks, per) */
        for (int64_t c = 0; c < l->chunks; c++)
            for (int64_t p = 0; p < per; p++) {
                /* 4-bit: [even | odd] elements of the chunk's 128; 8-bit: natural order */
                int64_t k = w->bits == 4 ? c * 128 + (p < 64 ? 2 * p : 2 * (p - 64) + 1) : c * 64 + p;
                af[c * per + p] = k < w->K ? a[k] : 0.0f;
            }
        return;
    }
    int8_t *a8 = (int8_t *)(j->tmp + (size_t)thread * l->tmp); /* (kpad) natural order */
    float *da = (float *)(a8 + (kpad + 63) / 64 * 64);
    int32_t *asum = (int32_t *)(da + w->kb);
    bool avx2 = td_qnbits_have_avx2();
    if (avx2)
        quant_row_avx2(a, w->K, w->block_size, a8, da, asum);
    else
        td_qnbits_quant_row(a, w->K, w->block_size, a8, da, asum);
    int8_t *act = (int8_t *)base;
    float *dal = (float *)(base + l->act), *ca = (float *)(base + l->act + l->dal);
    int64_t c0 = 0;
    if (avx2 && w->bits == 4) /* whole 128-element chunks inside a8: vector split, the rest below */
        for (; (c0 + 1) * 128 <= kpad; c0++)
            split_even_odd_avx2(a8 + c0 * 128, act + c0 * 128);
    else if (w->bits == 8) { /* natural order: the codes as they are, zeros after kpad */
        memcpy(act, a8, (size_t)kpad);
        c0 = kpad / 64;
    }
    for (int64_t c = c0; c < l->chunks; c++)
        for (int64_t p = 0; p < per; p++) {
            int64_t k = w->bits == 4 ? c * 128 + (p < 64 ? 2 * p : 2 * (p - 64) + 1) : c * 64 + p;
            act[c * per + p] = k < kpad ? a8[k] : 0;
        }
    for (int64_t c = 0; c < l->chunks; c++)
        for (int lane = 0; lane < 16; lane++) {
            int64_t blk = (c * 64 + 4 * lane) / w->blob;
            dal[c * 16 + lane] = blk < w->kb ? da[blk] : 0.0f;
        }
    for (int64_t blk = 0; blk < w->kb; blk++)
        ca[blk] = da[blk] * (float)asum[blk];
}

static void prep_rows(void *arg, size_t begin, size_t end, int thread) {
    for (size_t m = begin; m < end; m++)
        prep_row(arg, (int64_t)m, thread);
}

/* Scales of chunk c's 16 lanes from a per-block array row (kb entries). */
TD_AVX512 static inline __m512 lane_scales(const float *blk_vals, int64_t kb, int64_t blob, int64_t c, __m512i idx) {
    int64_t b0 = c * 64 / blob;
    if (blob >= 64)
        return _mm512_set1_ps(blk_vals[b0]);
    int64_t cnt = kb - b0 < 16 ? kb - b0 : 16;
    __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << cnt) - 1), blk_vals + b0);
    return _mm512_permutexvar_ps(idx, v);
}

TD_AVX512 static inline float dot_f32(const float *x, const float *y, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc);
    if (i < n) {
        __mmask16 mk = (__mmask16)((1u << (n - i)) - 1);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, x + i), _mm512_maskz_loadu_ps(mk, y + i), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* int8 path: weight row n against R (1..4) prepared activation rows starting at m0. */
TD_AVX512 static inline void i8_row(const job *j, int64_t n, int64_t m0, int R, __m512i idx) {
    const td_qnbits_w *w = j->w;
    const qlayout *l = &j->l;
    const uint8_t *row = w->b + n * w->row_bytes;
    const float *sc = w->scale + n * w->kb;
    int64_t per = w->bits == 4 ? 128 : 64, tail = w->row_bytes % 64;
    const __m512i nib = _mm512_set1_epi8(0x0f);
    __m512 acc[ROWS_MAX];
    for (int r = 0; r < ROWS_MAX; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < l->chunks; c++) {
        __mmask64 mk = (c == l->chunks - 1 && tail) ? (((__mmask64)1 << tail) - 1) : ~(__mmask64)0;
        __m512i q = _mm512_maskz_loadu_epi8(mk, row + c * 64); /* 64 bytes of codes */
        __m512 sv = lane_scales(sc, w->kb, w->blob, c, idx);   /* (16) weight scale per lane */
        if (w->bits == 4) {
            __m512i lo = _mm512_and_si512(q, nib), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), nib);
            for (int r = 0; r < R; r++) {
                const uint8_t *base = j->rows + (size_t)(m0 + r) * l->row;
                const int8_t *act = (const int8_t *)base + c * per;
                __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(act));
                s = _mm512_dpbusd_epi32(s, hi, _mm512_loadu_si512(act + 64));
                __m512 dal = _mm512_loadu_ps((const float *)(base + l->act) + c * 16);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sv, dal), acc[r]);
            }
        } else {
            for (int r = 0; r < R; r++) {
                const uint8_t *base = j->rows + (size_t)(m0 + r) * l->row;
                const int8_t *act = (const int8_t *)base + c * per;
                __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, _mm512_loadu_si512(act));
                __m512 dal = _mm512_loadu_ps((const float *)(base + l->act) + c * 16);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sv, dal), acc[r]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        const float *ca = (const float *)(j->rows + (size_t)(m0 + r) * l->row + l->act + l->dal);
        float y = _mm512_reduce_add_ps(acc[r]) - dot_f32(w->scale_zp + n * w->kb, ca, w->kb);
        j->Y[(m0 + r) * w->N + n] = y + (j->bias ? j->bias[n] : 0.0f);
    }
}

/* fp32 path: weight row n against prepared fp32 activation row m. */
TD_AVX512 static inline void f32_row(const job *j, int64_t n, int64_t m) {
    const td_qnbits_w *w = j->w;
    const qlayout *l = &j->l;
    const uint8_t *row = w->b + n * w->row_bytes;
    const float *sc = w->scale + n * w->kb, *sz = w->scale_zp + n * w->kb;
    const float *af = (const float *)(j->rows + (size_t)m * l->row);
    int64_t per = w->bits == 4 ? 128 : 64, tail = w->row_bytes % 64;
    const __m512i nib = _mm512_set1_epi8(0x0f);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t c = 0; c < l->chunks; c++) {
        __mmask64 mk = (c == l->chunks - 1 && tail) ? (((__mmask64)1 << tail) - 1) : ~(__mmask64)0;
        __m512i q = _mm512_maskz_loadu_epi8(mk, row + c * 64);
        int halves = w->bits == 4 ? 2 : 1;
        for (int h = 0; h < halves; h++) {
            __m512i codes = w->bits == 4 ? (h ? _mm512_and_si512(_mm512_srli_epi16(q, 4), nib) : _mm512_and_si512(q, nib)) : q;
            for (int v = 0; v < 4; v++) {
                int64_t o = c * 64 + 16 * v; /* first byte of these 16 lanes */
                if (o >= w->row_bytes)
                    break;
                __m512 qf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lane128(codes, v)));
                __m512 s, z;
                int64_t b0 = o / w->blob;
                if (w->blob >= 16) {
                    s = _mm512_set1_ps(sc[b0]);
                    z = _mm512_set1_ps(sz[b0]);
                } else { /* 8-byte blocks (4-bit, block 16): lanes 0-7 and 8-15 are two blocks */
                    int64_t b1 = b0 + 1 < w->kb ? b0 + 1 : b0; /* the row may end after lane 7 */
                    s = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(sc[b0]), _mm512_set1_ps(sc[b1]));
                    z = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(sz[b0]), _mm512_set1_ps(sz[b1]));
                }
                __m512 wv = _mm512_fmsub_ps(qf, s, z); /* (16) dequantized weights */
                __m512 a = _mm512_loadu_ps(af + c * per + h * 64 + 16 * v);
                if (v & 1)
                    acc1 = _mm512_fmadd_ps(wv, a, acc1);
                else
                    acc0 = _mm512_fmadd_ps(wv, a, acc0);
            }
        }
    }
    j->Y[m * w->N + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + (j->bias ? j->bias[n] : 0.0f);
}

TD_AVX512 static void run_cols(void *arg, size_t begin, size_t end, int thread) {
    const job *j = arg;
    int32_t lanes[16];
    for (int i = 0; i < 16; i++)
        lanes[i] = j->w->blob >= 64 ? 0 : (int32_t)(4 * i / j->w->blob);
    __m512i idx = _mm512_loadu_si512(lanes);
    for (size_t n0 = begin; n0 < end; n0 += N_TILE) {
        size_t n1 = n0 + N_TILE < end ? n0 + N_TILE : end;
        if (j->int8) {
            for (int64_t m0 = 0; m0 < j->M; m0 += ROWS_MAX) {
                int R = j->M - m0 < ROWS_MAX ? (int)(j->M - m0) : ROWS_MAX;
                for (size_t n = n0; n < n1; n++) {
                    switch (R) { /* constant row counts let the compiler keep acc[] in registers */
                    case 1: i8_row(j, (int64_t)n, m0, 1, idx); break;
                    case 2: i8_row(j, (int64_t)n, m0, 2, idx); break;
                    case 3: i8_row(j, (int64_t)n, m0, 3, idx); break;
                    default: i8_row(j, (int64_t)n, m0, 4, idx); break;
                    }
                }
            }
        } else {
            for (int64_t m = 0; m < j->M; m++)
                for (size_t n = n0; n < n1; n++)
                    f32_row(j, (int64_t)n, m);
        }
    }
}

/* ---- AVX2 + FMA: the int8 path (4-bit codes <= 15 keep vpmaddubsw's int16 sums exact; 8-bit codes are
 * recentred to int8 and multiplied through the sign trick) ---- */

bool td_qnbits_have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* The weight row is read in 32-byte units (64 4-bit or 32 8-bit codes); lane i (4 bytes) of unit u lies in
 * block (32 u + 4 i) / blob. Per-block weight scales of unit u's 8 lanes: one broadcast when a unit is inside
 * one block, else 8 floats from the unit's first block permuted by idx (td_qnbits_prepare pads the scales with
 * 8 floats, so the load never leaves the array). */
TD_AVX2 static inline __m256 unit_scales(const float *sc, int64_t blob, int blob_log2, int64_t u, __m256i idx) {
    int64_t b0 = (u * 32) >> blob_log2; /* blob is a power of two: no division (an idiv per unit cost more than
                                         * the unit's arithmetic) */
    if (blob >= 32)
        return _mm256_broadcast_ss(sc + b0);
    return _mm256_permutevar8x32_ps(_mm256_loadu_ps(sc + b0), idx);
}

TD_AVX2 static inline float hsum8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

/* sum_{b < n} x[b] y[b]; tail masks the last n % 8 lanes. */
TD_AVX2 static inline float dot8(const float *x, const float *y, int64_t n, __m256i tail) {
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= n; b += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + b), _mm256_loadu_ps(y + b), acc);
    if (b < n)
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(x + b, tail), _mm256_maskload_ps(y + b, tail), acc);
    return hsum8(acc);
}

/* Weight row n against R prepared activation rows from m0 (BITS and R compile-time constants at each call). */
TD_AVX2 static inline __attribute__((always_inline)) void i8_row_avx2(const job *j, int64_t n, int64_t m0, int R,
                                                                      int BITS, __m256i idx, __m256i tail) {
    const td_qnbits_w *w = j->w;
    const qlayout *l = &j->l;
    const uint8_t *row = w->b + n * w->row_bytes;
    const float *sc = w->scale + n * w->kb;
    const __m256i nib = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    const int8_t *act[ROWS_MAX];
    const float *dal[ROWS_MAX];
    __m256 acc[ROWS_MAX];
    for (int r = 0; r < R; r++) {
        const uint8_t *base = j->rows + (size_t)(m0 + r) * l->row;
        act[r] = (const int8_t *)base;
        dal[r] = (const float *)(base + l->act);
        acc[r] = _mm256_setzero_ps();
    }
    int64_t full = w->row_bytes / 32, units = (w->row_bytes + 31) / 32;
    int blob_log2 = __builtin_ctzll((unsigned long long)w->blob);
    uint8_t last[32];
    for (int64_t u = 0; u < units; u++) {
        const uint8_t *src = row + 32 * u;
        if (u == full) { /* the row's last, partial unit: zero padded copy */
            memset(last, 0, sizeof last);
            memcpy(last, src, (size_t)(w->row_bytes - 32 * u));
            src = last;
        }
        __m256i q = _mm256_loadu_si256((const __m256i *)src); /* (32) bytes of codes */
        __m256 sv = unit_scales(sc, w->blob, blob_log2, u, idx); /* (8) weight scale per lane */
        if (BITS == 8) {
            /* codes - 128 as int8; vpmaddubsw wants an unsigned operand: |q| times a with q's sign, whose pair
             * sums (<= 2 * 128 * 127) fit int16 */
            __m256i qs = _mm256_xor_si256(q, flip), qa = _mm256_sign_epi8(qs, qs);
            for (int r = 0; r < R; r++) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(act[r] + 32 * u));
                __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(a, qs)), ones);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(sv, _mm256_loadu_ps(dal[r] + 8 * u)),
                                         acc[r]);
            }
        } else {
            /* low nibbles are the even elements, high the odd: the activation chunk is [even 64 | odd 64] */
            __m256i lo = _mm256_and_si256(q, nib), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), nib);
            int64_t off = (u >> 1) * 128 + 32 * (u & 1);
            for (int r = 0; r < R; r++) {
                __m256i p = _mm256_add_epi16(
                    _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(act[r] + off))),
                    _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(act[r] + off + 64))));
                __m256i s = _mm256_madd_epi16(p, ones); /* (8) int32 per 4 bytes */
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(sv, _mm256_loadu_ps(dal[r] + 8 * u)),
                                         acc[r]);
            }
        }
    }
    const float *szp = w->scale_zp + n * w->kb;
    for (int r = 0; r < R; r++) {
        const float *ca = (const float *)(j->rows + (size_t)(m0 + r) * l->row + l->act + l->dal);
        /* zero-point term; 8-bit codes were taken as code - 128 above, so 128 * scale less */
        float corr = dot8(szp, ca, w->kb, tail) - (BITS == 8 ? 128.0f * dot8(sc, ca, w->kb, tail) : 0.0f);
        j->Y[(m0 + r) * w->N + n] = hsum8(acc[r]) - corr + (j->bias ? j->bias[n] : 0.0f);
    }
}

TD_AVX2 static void run_cols_avx2(void *arg, size_t begin, size_t end, int thread) {
    (void)thread;
    const job *j = arg;
    int64_t blob = j->w->blob;
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    idx = blob >= 32 ? _mm256_setzero_si256() : _mm256_srli_epi32(idx, blob == 8 ? 1 : 2); /* 4 * lane / blob */
    __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(j->w->kb % 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    bool b8 = j->w->bits == 8;
    for (size_t n0 = begin; n0 < end; n0 += N_TILE) {
        size_t n1 = n0 + N_TILE < end ? n0 + N_TILE : end;
        for (int64_t m0 = 0; m0 < j->M; m0 += ROWS_MAX) {
            int R = j->M - m0 < ROWS_MAX ? (int)(j->M - m0) : ROWS_MAX;
            for (size_t n = n0; n < n1; n++) {
                switch (R + (b8 ? 4 : 0)) { /* constant row counts and widths keep acc[] in registers */
                case 1: i8_row_avx2(j, (int64_t)n, m0, 1, 4, idx, tail); break;
                case 2: i8_row_avx2(j, (int64_t)n, m0, 2, 4, idx, tail); break;
                case 3: i8_row_avx2(j, (int64_t)n, m0, 3, 4, idx, tail); break;
                case 4: i8_row_avx2(j, (int64_t)n, m0, 4, 4, idx, tail); break;
                case 5: i8_row_avx2(j, (int64_t)n, m0, 1, 8, idx, tail); break;
                case 6: i8_row_avx2(j, (int64_t)n, m0, 2, 8, idx, tail); break;
                case 7: i8_row_avx2(j, (int64_t)n, m0, 3, 8, idx, tail); break;
                default: i8_row_avx2(j, (int64_t)n, m0, 4, 8, idx, tail); break;
                }
            }
        }
    }
}
/* ---- AVX2 + FMA: the fp32 path (accuracy_level < 4), from the same prepared activation rows as the AVX-512
 * fp32 path (4-bit: per 64-byte chunk [even 64 | odd 64] floats; 8-bit: natural order). Each group of 8 code
 * bytes lies in one block (blob >= 8), so its weights are code * s - s * zp with two broadcast scalars; up to
 * ROWS_MAX activation rows share each dequantized group (prefill). ---- */

/* (8) dequantized weights of code bytes x[0..7] (u8) in a block of scale s, scale * zero point z */
TD_AVX2 static inline __m256 deq8(__m128i x, __m256 s, __m256 z) {
    return _mm256_fmsub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x)), s, z);
}

/* Weight row n against R prepared fp32 activation rows from m0 (BITS and R compile-time constants). */
TD_AVX2 static inline __attribute__((always_inline)) void f32_row_avx2(const job *j, int64_t n, int64_t m0, int R,
                                                                       int BITS) {
    const td_qnbits_w *w = j->w;
    const qlayout *l = &j->l;
    const uint8_t *row = w->b + n * w->row_bytes;
    const float *sc = w->scale + n * w->kb, *sz = w->scale_zp + n * w->kb;
    const __m256i nib = _mm256_set1_epi8(0x0f);
    const float *af[ROWS_MAX];
    __m256 acc[ROWS_MAX];
    for (int r = 0; r < R; r++) {
        af[r] = (const float *)(j->rows + (size_t)(m0 + r) * l->row);
        acc[r] = _mm256_setzero_ps();
    }
    int64_t full = w->row_bytes / 32, units = (w->row_bytes + 31) / 32;
    int blob_log2 = __builtin_ctzll((unsigned long long)w->blob);
    uint8_t last[32];
    for (int64_t u = 0; u < units; u++) {
        const uint8_t *src = row + 32 * u;
        int groups = 4; /* 8-byte groups of this unit inside the row */
        if (u == full) { /* the row's last, partial unit: zero padded copy */
            memset(last, 0, sizeof last);
            memcpy(last, src, (size_t)(w->row_bytes - 32 * u));
            src = last;
            groups = (int)((w->row_bytes - 32 * u + 7) / 8);
        }
        __m256i q = _mm256_loadu_si256((const __m256i *)src); /* (32) bytes of codes */
        __m128i c[2][2]; /* [nibble or byte half][128-bit half] */
        if (BITS == 8) {
            c[0][0] = _mm256_castsi256_si128(q);
            c[0][1] = _mm256_extracti128_si256(q, 1);
        } else {
            __m256i lo = _mm256_and_si256(q, nib), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), nib);
            c[0][0] = _mm256_castsi256_si128(lo);
            c[0][1] = _mm256_extracti128_si256(lo, 1);
            c[1][0] = _mm256_castsi256_si128(hi);
            c[1][1] = _mm256_extracti128_si256(hi, 1);
        }
        /* activation offset of this unit's byte 0: 8-bit natural; 4-bit low nibbles at off, high at off + 64 */
        int64_t off = BITS == 8 ? 32 * u : (u >> 1) * 128 + 32 * (u & 1);
        for (int g = 0; g < groups; g++) {
            int64_t blk = (32 * u + 8 * g) >> blob_log2;
            __m256 s = _mm256_broadcast_ss(sc + blk), z = _mm256_broadcast_ss(sz + blk);
            __m128i bytes = g & 1 ? _mm_srli_si128(c[0][g >> 1], 8) : c[0][g >> 1];
            __m256 wv = deq8(bytes, s, z); /* (8) */
            for (int r = 0; r < R; r++)
                acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(af[r] + off + 8 * g), acc[r]);
            if (BITS == 4) {
                bytes = g & 1 ? _mm_srli_si128(c[1][g >> 1], 8) : c[1][g >> 1];
                wv = deq8(bytes, s, z);
                for (int r = 0; r < R; r++)
                    acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(af[r] + off + 64 + 8 * g), acc[r]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        j->Y[(m0 + r) * w->N + n] = hsum8(acc[r]) + (j->bias ? j->bias[n] : 0.0f);
}

TD_AVX2 static void run_cols_f32_avx2(void *arg, size_t begin, size_t end, int thread) {
    (void)thread;
    const job *j = arg;
    bool b8 = j->w->bits == 8;
    for (size_t n0 = begin; n0 < end; n0 += N_TILE) {
        size_t n1 = n0 + N_TILE < end ? n0 + N_TILE : end;
        for (int64_t m0 = 0; m0 < j->M; m0 += ROWS_MAX) {
            int R = j->M - m0 < ROWS_MAX ? (int)(j->M - m0) : ROWS_MAX;
            for (size_t n = n0; n < n1; n++) {
                switch (R + (b8 ? 4 : 0)) { /* constant row counts and widths keep acc[] in registers */
                case 1: f32_row_avx2(j, (int64_t)n, m0, 1, 4); break;
                case 2: f32_row_avx2(j, (int64_t)n, m0, 2, 4); break;
                case 3: f32_row_avx2(j, (int64_t)n, m0, 3, 4); break;
                case 4: f32_row_avx2(j, (int64_t)n, m0, 4, 4); break;
                case 5: f32_row_avx2(j, (int64_t)n, m0, 1, 8); break;
                case 6: f32_row_avx2(j, (int64_t)n, m0, 2, 8); break;
                case 7: f32_row_avx2(j, (int64_t)n, m0, 3, 8); break;
                default: f32_row_avx2(j, (int64_t)n, m0, 4, 8); break;
                }
            }
        }
    }
}

#else
bool td_qnbits_have_avx2(void) { return false; }
void td_qnbits_quant_row_fast(const float *a, int64_t K, int block_size, int8_t *a8, float *da, int32_t *asum) {
    td_qnbits_quant_row(a, K, block_size, a8, da, asum);
}
#endif

#ifdef TD_QNB_X86
/* Activation rows: a decode step's single row is prepared on the calling thread (a pool dispatch costs more than
 * quantizing K floats, twice per matrix per token); prefill rows in parallel. */
static void prep_all(td_threadpool *pool, job *j) {
    if (j->M <= 2)
        prep_rows(j, 0, (size_t)j->M, 0);
    else
        td_parallel_for(pool, (size_t)j->M, prep_rows, j);
}
#endif

void td_qnbits_gemm(const td_qnbits_w *w, const float *A, int64_t M, const float *bias, float *Y, bool int8,
                    void *scratch, td_rt_env *env) {
    td_threadpool *pool = env ? env->pool : NULL;
#ifdef TD_QNB_X86
    if (td_qnbits_have_avx512()) {
        qlayout l = layout_of(w);
        uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
        job j = {w, A, M, bias, Y, int8, base, base + (size_t)M * l.row, l};
        prep_all(pool, &j);
        td_parallel_for(pool, (size_t)w->N, run_cols, &j);
        return;
    }
    if (td_qnbits_have_avx2()) {
        qlayout l = layout_of(w);
        uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
        job j = {w, A, M, bias, Y, int8, base, base + (size_t)M * l.row, l};
        prep_all(pool, &j);
        td_parallel_for(pool, (size_t)w->N, int8 ? run_cols_avx2 : run_cols_f32_avx2, &j);
        return;
    }
#endif
    /* Neither AVX-512 nor AVX2: the scalar algorithms, same results up to summation order. */
    if (int8) {
        td_qnbits_i8_ref(w, A, M, bias, Y, scratch);
        return;
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < w->N; n++) {
            const uint8_t *row = w->b + n * w->row_bytes;
            float acc = 0.0f;
            for (int64_t k = 0; k < w->K; k++) {
                int code = w->bits == 8 ? row[k] : ((k & 1) ? row[k / 2] >> 4 : row[k / 2] & 15);
                int64_t blk = k / w->block_size;
                acc += A[m * w->K + k] * ((float)code * w->scale[n * w->kb + blk] - w->scale_zp[n * w->kb + blk]);
            }
            Y[m * w->N + n] = acc + (bias ? bias[n] : 0.0f);
        }
}
