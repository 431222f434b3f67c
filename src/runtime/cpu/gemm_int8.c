/* Int8 GEMM driver and microkernels (definition in gemm_int8.h).
 *
 * Per call: (1) every row of A is quantized to uint8 with its own scale and
 * zero point (parallel over rows); (2) the (M blocks) x (panels) grid is split
 * into rectangles over the threads, as gemm.c does; each tile accumulates the
 * whole K in int32 registers (no K blocking: a 3072-row panel is 147 KB and
 * stays in L2, an 8-row strip of quantized A is 24 KB and stays in L1), then
 * dequantizes, adds the bias, applies the activation and the residual and
 * stores fp32. Three builds of the tile, picked at compile time (-march):
 *   AVX-512 VNNI: 8 x 48 tile in 24 zmm, vpdpbusd (u8 x s8, 4 products per
 *                 int32 lane, exact), 255 activation levels;
 *   AVX2:         6 x 16 sub-tiles in 12 ymm, vpmaddubsw (u8 x s8 pairs into
 *                 saturating int16) + vpmaddwd with ones (pairs into int32):
 *                 the same 4-byte groups as vpdpbusd, so one packing serves
 *                 both; 127 activation levels keep the int16 pairs exact;
 *                 GELU from vecmath_avx2.h;
 *   otherwise:    scalar loops, 255 levels. */
#include "runtime/cpu/gemm_int8.h"

#include "core/checked.h"
#include "core/large_alloc.h"
#include "runtime/cpu/vecmath.h"
#include "runtime/cpu/vecmath_avx2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define TD_I8_VNNI 1
#define LEVELS 255
#include <immintrin.h>
#elif defined(__AVX2__) && defined(__FMA__)
#define TD_I8_AVX2 1
#define LEVELS 127
#include <immintrin.h>
#else
#define LEVELS 255
#endif

int td_gemm_i8_act_levels(void) { return LEVELS; }

#define NR TD_GEMM_I8_NR
#if defined(TD_I8_AVX2)
#define MR 6   /* rows of the AVX2 tile (16 ymm registers; see sub_tile_r) */
#define MC 120 /* rows of quantized A per block (MC x K bytes stay in L2 while the panels stream) */
#else
#define MR TD_GEMM_I8_MR
#define MC 128
#endif

static size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }

void td_gemm_i8_quantize_weights(const float *B, size_t K, size_t N, size_t ldb, bool trans_b, int qmax, int8_t *bq,
                                 float *scale) {
    const float Q = (float)qmax;
    for (size_t n = 0; n < N; n++) {
        float amax = 0.0f;
        for (size_t k = 0; k < K; k++) {
            float v = fabsf(trans_b ? B[n * ldb + k] : B[k * ldb + n]);
            amax = v > amax ? v : amax;
        }
        float s = amax > 0.0f ? amax / Q : 1.0f;
        scale[n] = s;
        for (size_t k = 0; k < K; k++) {
            float q = nearbyintf((trans_b ? B[n * ldb + k] : B[k * ldb + n]) / s);
            bq[k * N + n] = (int8_t)(q > Q ? qmax : q < -Q ? -qmax : (int)q);
        }
    }
}

td_status td_gemm_i8_pack(td_ctx *ctx, const int8_t *bq, size_t K, size_t N, const float *scale, size_t n_scale,
                          td_gemm_i8_packed **out) {
    *out = NULL;
    if (K > TD_GEMM_I8_MAX_K)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "int8 GEMM: inner dimension %zu exceeds %d (int32 sums could "
                       "overflow)", K, TD_GEMM_I8_MAX_K);
    if (n_scale != 1 && n_scale != N)
        return td_fail(ctx, TD_ERR_SHAPE, "int8 GEMM: %zu weight scales for %zu columns (need 1 or %zu)", n_scale, N,
                       N);
    size_t panels = div_up(N, NR), Kp = (K + 3) / 4 * 4, cols = panels * NR, bytes;
    if (!td_mul_size(cols, Kp, &bytes) || !td_add_size(bytes, 63, &bytes))
        return td_fail(ctx, TD_ERR_OVERFLOW, "int8 GEMM: K=%zu x N=%zu overflows the address space", K, N);
    bytes = bytes / 64 * 64;
    td_gemm_i8_packed *p = calloc(1, sizeof *p);
    int8_t *data = td_large_alloc(bytes ? bytes : 64); /* streamed by every GEMM: huge pages */
    int32_t *colsum = calloc(cols ? cols : 1, sizeof *colsum);
    float *sc = calloc(cols ? cols : 1, sizeof *sc);
    if (!p || !data || !colsum || !sc) {
        free(p);
        free(data);
        free(colsum);
        free(sc);
        return td_fail_oom(ctx, bytes, "packed int8 weights");
    }
    memset(data, 0, bytes);
    int wmax = 0;
    for (size_t pi = 0; pi < panels; pi++)
        for (size_t j = 0; j < NR; j++) {
            size_t n = pi * NR + j;
            if (n >= N)
                continue;
            int32_t sum = 0;
            for (size_t k = 0; k < K; k++) {
                int8_t v = bq[k * N + n];
                wmax = abs(v) > wmax ? abs(v) : wmax;
                data[pi * Kp * NR + ((k / 4) * NR + j) * 4 + k % 4] = v;
                sum += v;
            }
            colsum[n] = sum;
            sc[n] = n_scale == 1 ? scale[0] : scale[n];
        }
    p->K = K;
    p->N = N;
    p->Kp = Kp;
    p->panels = panels;
    p->data = data;
    p->colsum = colsum;
    p->scale = sc;
    p->wmax = wmax;
    *out = p;
    return TD_OK;
}

void td_gemm_i8_packed_free(td_gemm_i8_packed *p) {
    if (!p)
        return;
    free(p->data);
    free(p->colsum);
    free(p->scale);
    free(p);
}

/* Scratch layout: quantized rows (M x Kp bytes, row stride Kp) then scales (M
 * floats) then zero points (M int32). */
static size_t qa_stride(size_t K) { return (K + 3) / 4 * 4; }

size_t td_gemm_i8_scratch_bytes(size_t M, size_t K) {
    size_t a, r;
    if (!td_mul_size(M, qa_stride(K), &a) || !td_mul_size(M, sizeof(float) + sizeof(int32_t), &r) ||
        !td_add_size(a, r + 128, &a))
        return SIZE_MAX;
    return a;
}

typedef struct {
    size_t M, N, K, Kp;
    const float *A;
    size_t lda;
    const td_gemm_i8_packed *B;
    uint8_t *qa; /* M x Kp */
    float *row_scale;
    int32_t *row_zp;
    float *C;
    size_t ldc;
    td_gemm_epilogue ep;
} i8_job;

/* ---- step 1: per-row activation quantization ---- */
static void quantize_row(const float *a, size_t K, size_t Kp, uint8_t *q, float *scale_out, int32_t *zp_out) {
    float mn = 0.0f, mx = 0.0f; /* the range always includes 0 (exact zero stays exact) */
    size_t k = 0;
#if defined(TD_I8_VNNI)
    __m512 vmn = _mm512_setzero_ps(), vmx = _mm512_setzero_ps();
    for (; k + 16 <= K; k += 16) {
        __m512 v = _mm512_loadu_ps(a + k);
        vmn = _mm512_min_ps(vmn, v);
        vmx = _mm512_max_ps(vmx, v);
    }
    mn = _mm512_reduce_min_ps(vmn);
    mx = _mm512_reduce_max_ps(vmx);
#elif defined(TD_I8_AVX2)
    __m256 vmn = _mm256_setzero_ps(), vmx = _mm256_setzero_ps();
    for (; k + 8 <= K; k += 8) {
        __m256 v = _mm256_loadu_ps(a + k);
        vmn = _mm256_min_ps(vmn, v);
        vmx = _mm256_max_ps(vmx, v);
    }
    float t0[8], t1[8];
    _mm256_storeu_ps(t0, vmn);
    _mm256_storeu_ps(t1, vmx);
    for (int i = 0; i < 8; i++) {
        mn = t0[i] < mn ? t0[i] : mn;
        mx = t1[i] > mx ? t1[i] : mx;
    }
#endif
    for (; k < K; k++) {
        mn = a[k] < mn ? a[k] : mn;
        mx = a[k] > mx ? a[k] : mx;
    }
    float s = (mx - mn) / (float)LEVELS;
    if (!(s > 0.0f))
        s = 1.0f;
    float zf = nearbyintf(-mn / s);
    int32_t zp = zf < 0.0f ? 0 : zf > (float)LEVELS ? LEVELS : (int32_t)zf;
    *scale_out = s;
    *zp_out = zp;
    k = 0;
    /* division and round-half-even conversion: bit-identical to the reference */
#if defined(TD_I8_VNNI)
    __m512 vs = _mm512_set1_ps(s);
    __m512i vz = _mm512_set1_epi32(zp), lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(LEVELS);
    for (; k + 16 <= K; k += 16) {
        __m512i qi = _mm512_cvtps_epi32(_mm512_div_ps(_mm512_loadu_ps(a + k), vs));
        qi = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(qi, vz), lo), hi);
        _mm_storeu_si128((__m128i *)(q + k), _mm512_cvtepi32_epi8(qi));
    }
#elif defined(TD_I8_AVX2)
    __m256 vs = _mm256_set1_ps(s);
    __m256i vz = _mm256_set1_epi32(zp), lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(LEVELS);
    for (; k + 16 <= K; k += 16) {
        __m256i q0 = _mm256_cvtps_epi32(_mm256_div_ps(_mm256_loadu_ps(a + k), vs));
        __m256i q1 = _mm256_cvtps_epi32(_mm256_div_ps(_mm256_loadu_ps(a + k + 8), vs));
        q0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(q0, vz), lo), hi);
        q1 = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(q1, vz), lo), hi);
        /* 0..127 fits every narrowing step unsaturated; packs interleave 128-bit lanes, the permute undoes it */
        __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
        __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        _mm_storeu_si128((__m128i *)(q + k), b);
    }
#endif
    for (; k < K; k++) {
        float r = nearbyintf(a[k] / s) + (float)zp;
        q[k] = (uint8_t)(r < 0.0f ? 0 : r > (float)LEVELS ? LEVELS : (int)r);
    }
    for (; k < Kp; k++)
        q[k] = 0; /* B is zero there; any value would do */
}

static void quantize_worker(void *arg, size_t begin, size_t end, int thread) {
    const i8_job *j = arg;
    (void)thread;
    for (size_t i = begin; i < end; i++)
        quantize_row(j->A + i * j->lda, j->K, j->Kp, j->qa + i * j->Kp, &j->row_scale[i], &j->row_zp[i]);
}

/* ---- step 2: tiles ---- */
/* used by the portable tile only; unused (clang warns) when a vector path is compiled */
__attribute__((unused)) static inline float apply_act_s(int act, float v) {
    switch (act) {
    case TD_GEMM_ACT_RELU:
        return v > 0.0f ? v : 0.0f;
    case TD_GEMM_ACT_GELU_ERF:
        return td_s_gelu_erf(v);
    case TD_GEMM_ACT_GELU_TANH:
        return td_s_gelu_tanh(v);
    default:
        return v;
    }
}

#if defined(TD_I8_VNNI)
#define KINLINE static inline __attribute__((always_inline))

KINLINE __m512 apply_act_v(int act, __m512 v) {
    switch (act) {
    case TD_GEMM_ACT_RELU:
        return _mm512_max_ps(v, _mm512_setzero_ps());
    case TD_GEMM_ACT_GELU_ERF:
        return td_v16_gelu_erf(v);
    case TD_GEMM_ACT_GELU_TANH:
        return td_v16_gelu_tanh(v);
    default:
        return v;
    }
}

/* mr (<= MR) rows from row i0, nr (<= NR) columns of panel p. Rows past mr
 * read row i0 again (their results are not stored), so the loop body is the
 * same for every tile. */
KINLINE void tile_v(const int NV, const i8_job *j, size_t i0, size_t mr, size_t p, size_t nr) {
    const size_t Kp = j->Kp, n0 = p * NR;
    const uint8_t *a[MR];
    for (int i = 0; i < MR; i++)
        a[i] = j->qa + (i0 + ((size_t)i < mr ? (size_t)i : 0)) * Kp;
    const int8_t *b = j->B->data + p * Kp * NR;
    __m512i c[MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            c[i][v] = _mm512_setzero_si512();
    for (size_t k = 0; k < Kp; k += 4, b += NR * 4) {
        __m512i b0 = _mm512_loadu_si512((const void *)b);
        __m512i b1 = NV > 1 ? _mm512_loadu_si512((const void *)(b + 64)) : b0;
        __m512i b2 = NV > 2 ? _mm512_loadu_si512((const void *)(b + 128)) : b0;
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            int32_t four;
            memcpy(&four, a[i] + k, 4);
            __m512i av = _mm512_set1_epi32(four);
            c[i][0] = _mm512_dpbusd_epi32(c[i][0], av, b0);
            if (NV > 1)
                c[i][1] = _mm512_dpbusd_epi32(c[i][1], av, b1);
            if (NV > 2)
                c[i][2] = _mm512_dpbusd_epi32(c[i][2], av, b2);
        }
    }
    __mmask16 m[3];
    __m512i colsum[3];
    __m512 bscale[3], bias[3];
    for (int v = 0; v < NV; v++) {
        m[v] = td_v16_mask(nr > (size_t)v * 16 ? nr - (size_t)v * 16 : 0);
        colsum[v] = _mm512_loadu_si512((const void *)(j->B->colsum + n0 + 16 * v));
        bscale[v] = _mm512_loadu_ps(j->B->scale + n0 + 16 * v);
        bias[v] = j->ep.bias ? _mm512_maskz_loadu_ps(m[v], j->ep.bias + n0 + 16 * v) : _mm512_setzero_ps();
    }
    for (int i = 0; i < MR && (size_t)i < mr; i++) {
        size_t row = i0 + (size_t)i;
        __m512i zp = _mm512_set1_epi32(j->row_zp[row]);
        __m512 rs = _mm512_set1_ps(j->row_scale[row]);
        float *crow = j->C + row * j->ldc + n0;
        const float *res = j->ep.residual ? j->ep.residual + row * j->ep.ldr + n0 : NULL;
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            __m512i acc = _mm512_sub_epi32(c[i][v], _mm512_mullo_epi32(zp, colsum[v]));
            __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(rs, bscale[v]), bias[v]);
            y = apply_act_v(j->ep.act, y);
            if (res)
                y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m[v], res + 16 * v));
            _mm512_mask_storeu_ps(crow + 16 * v, m[v], y);
        }
    }
}

static void tile(const i8_job *j, size_t i0, size_t mr, size_t p, size_t nr) {
    switch ((nr + 15) / 16) {
    case 1: tile_v(1, j, i0, mr, p, nr); break;
    case 2: tile_v(2, j, i0, mr, p, nr); break;
    default: tile_v(3, j, i0, mr, p, nr); break;
    }
}
#elif defined(TD_I8_AVX2)
#define KINLINE static inline __attribute__((always_inline))

/* Dequantize + bias (+ activation + residual) of the ROWS x 16 accumulators of
 * a sub-tile, cnt (<= 16) valid columns from n. The per-column vectors (column
 * sums, weight scales, bias) are loaded once for all rows; whole 8-column
 * groups use plain loads and stores (masked moves are slow on AMD: microcoded). */
KINLINE void epilogue_tile(const int ROWS, const i8_job *j, size_t r0, size_t n, size_t cnt, __m256i acc[6][2]) {
    const int groups = cnt > 8 ? 2 : 1;
    __m256i cs[2], keep[2];
    __m256 bs[2], bias[2];
    bool full[2];
    for (int g = 0; g < groups; g++) {
        size_t c = g ? cnt - 8 : (cnt < 8 ? cnt : 8), at = n + 8 * (size_t)g;
        full[g] = c == 8;
        keep[g] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        cs[g] = _mm256_loadu_si256((const __m256i *)(j->B->colsum + at)); /* padded to whole panels */
        bs[g] = _mm256_loadu_ps(j->B->scale + at);
        bias[g] = !j->ep.bias ? _mm256_setzero_ps()
                  : full[g]   ? _mm256_loadu_ps(j->ep.bias + at)
                              : _mm256_maskload_ps(j->ep.bias + at, keep[g]);
    }
    for (int r = 0; r < ROWS; r++) {
        size_t row = r0 + (size_t)r;
        __m256i zp = _mm256_set1_epi32(j->row_zp[row]);
        __m256 rs = _mm256_set1_ps(j->row_scale[row]);
        for (int g = 0; g < groups; g++) {
            __m256i a = _mm256_sub_epi32(acc[r][g], _mm256_mullo_epi32(zp, cs[g]));
            __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(rs, bs[g]), bias[g]);
            switch (j->ep.act) {
            case TD_GEMM_ACT_RELU: y = _mm256_max_ps(y, _mm256_setzero_ps()); break;
            case TD_GEMM_ACT_GELU_ERF: y = td_v8_gelu_erf(y); break;
            case TD_GEMM_ACT_GELU_TANH: y = td_v8_gelu_tanh(y); break;
            default: break;
            }
            float *c = j->C + row * j->ldc + n + 8 * (size_t)g;
            if (j->ep.residual) {
                const float *res = j->ep.residual + row * j->ep.ldr + n + 8 * (size_t)g;
                y = _mm256_add_ps(y, full[g] ? _mm256_loadu_ps(res) : _mm256_maskload_ps(res, keep[g]));
            }
            if (full[g])
                _mm256_storeu_ps(c, y);
            else
                _mm256_maskstore_ps(c, keep[g], y);
        }
    }
}

/* ROWS (<= MR = 6) rows from r0 x 16 columns from col (cnt valid) of panel p:
 * 12 accumulators + the ones vector + a broadcast and a product temporary =
 * 15 of the 16 ymm registers, B read as memory operands of vpmaddubsw. Per
 * 4-byte group of K: 2 x ROWS vpmaddubsw + 2 x ROWS vpmaddwd, which share the
 * two integer multiply pipes of Zen 3 (the bound: 32 u8 x s8 products a cycle),
 * ROWS broadcasts and 2 x ROWS adds on the other pipes. 6 rows instead of 4
 * amortize the loop and pointer updates over 1.5x the products. */
KINLINE void sub_tile_r(const int ROWS, const bool PAIRED, const i8_job *j, size_t r0, size_t p, size_t col,
                        size_t cnt) {
    const size_t Kp = j->Kp;
    /* rows past ROWS are never computed (their branches fold away); naming them keeps each accumulator in a
       register, where an array of them ends up on the stack */
    const uint8_t *a0 = j->qa + r0 * Kp, *a1 = a0 + Kp, *a2 = a1 + Kp, *a3 = a2 + Kp, *a4 = a3 + Kp, *a5 = a4 + Kp;
    const int8_t *b = j->B->data + p * Kp * NR + col * 4;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
            c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define I8_STEP(cx0, cx1, ap)                                                                 \
    do {                                                                                      \
        int32_t four;                                                                         \
        memcpy(&four, (ap) + k, 4);                                                           \
        __m256i av = _mm256_set1_epi32(four);                                                 \
        cx0 = _mm256_add_epi32(cx0, _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));   \
        cx1 = _mm256_add_epi32(cx1, _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));   \
    } while (0)
    /* narrow weights: two 4-byte groups per step, their int16 pair sums added before widening (exact, see
       TD_GEMM_I8_NARROW) */
#define I8_PAIR(cx0, cx1, ap)                                                                                   \
    do {                                                                                                        \
        int32_t f0, f1;                                                                                         \
        memcpy(&f0, (ap) + k, 4);                                                                               \
        memcpy(&f1, (ap) + k + 4, 4);                                                                           \
        __m256i av = _mm256_set1_epi32(f0), aw = _mm256_set1_epi32(f1);                                         \
        cx0 = _mm256_add_epi32(                                                                                 \
            cx0, _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(av, b0), _mm256_maddubs_epi16(aw, b2)), \
                                   ones));                                                                      \
        cx1 = _mm256_add_epi32(                                                                                 \
            cx1, _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(av, b1), _mm256_maddubs_epi16(aw, b3)), \
                                   ones));                                                                      \
    } while (0)
    size_t k = 0;
    if (PAIRED)
        for (; k + 8 <= Kp; k += 8, b += NR * 8) {
            __m256i b0 = _mm256_loadu_si256((const __m256i *)b), b1 = _mm256_loadu_si256((const __m256i *)(b + 32));
            __m256i b2 = _mm256_loadu_si256((const __m256i *)(b + NR * 4));
            __m256i b3 = _mm256_loadu_si256((const __m256i *)(b + NR * 4 + 32));
            I8_PAIR(c00, c01, a0);
            if (ROWS > 1)
                I8_PAIR(c10, c11, a1);
            if (ROWS > 2)
                I8_PAIR(c20, c21, a2);
            if (ROWS > 3)
                I8_PAIR(c30, c31, a3);
            if (ROWS > 4)
                I8_PAIR(c40, c41, a4);
            if (ROWS > 5)
                I8_PAIR(c50, c51, a5);
        }
#undef I8_PAIR
    for (; k < Kp; k += 4, b += NR * 4) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)b), b1 = _mm256_loadu_si256((const __m256i *)(b + 32));
        I8_STEP(c00, c01, a0);
        if (ROWS > 1)
            I8_STEP(c10, c11, a1);
        if (ROWS > 2)
            I8_STEP(c20, c21, a2);
        if (ROWS > 3)
            I8_STEP(c30, c31, a3);
        if (ROWS > 4)
            I8_STEP(c40, c41, a4);
        if (ROWS > 5)
            I8_STEP(c50, c51, a5);
    }
#undef I8_STEP
    __m256i acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    epilogue_tile(ROWS, j, r0, p * NR + col, cnt, acc);
}

static void tile(const i8_job *j, size_t i0, size_t mr, size_t p, size_t nr) {
    for (size_t col = 0; col < nr; col += 16) {
        size_t cnt = nr - col < 16 ? nr - col : 16;
        if (j->B->wmax <= TD_GEMM_I8_NARROW)
            switch (mr) {
            case 6: sub_tile_r(6, true, j, i0, p, col, cnt); break;
            case 5: sub_tile_r(5, true, j, i0, p, col, cnt); break;
            case 4: sub_tile_r(4, true, j, i0, p, col, cnt); break;
            case 3: sub_tile_r(3, true, j, i0, p, col, cnt); break;
            case 2: sub_tile_r(2, true, j, i0, p, col, cnt); break;
            default: sub_tile_r(1, true, j, i0, p, col, cnt); break;
            }
        else
            switch (mr) {
            case 6: sub_tile_r(6, false, j, i0, p, col, cnt); break;
            case 5: sub_tile_r(5, false, j, i0, p, col, cnt); break;
            case 4: sub_tile_r(4, false, j, i0, p, col, cnt); break;
            case 3: sub_tile_r(3, false, j, i0, p, col, cnt); break;
            case 2: sub_tile_r(2, false, j, i0, p, col, cnt); break;
            default: sub_tile_r(1, false, j, i0, p, col, cnt); break;
            }
    }
}
#else
static void tile(const i8_job *j, size_t i0, size_t mr, size_t p, size_t nr) {
    const size_t Kp = j->Kp, n0 = p * NR;
    const int8_t *b = j->B->data + p * Kp * NR;
    for (size_t i = 0; i < mr; i++) {
        size_t row = i0 + i;
        const uint8_t *a = j->qa + row * Kp;
        for (size_t c = 0; c < nr; c++) {
            int32_t acc = 0;
            for (size_t k = 0; k < Kp; k++)
                acc += (int32_t)a[k] * (int32_t)b[((k / 4) * NR + c) * 4 + k % 4];
            size_t n = n0 + c;
            acc -= j->row_zp[row] * j->B->colsum[n];
            float y = fmaf((float)acc, j->row_scale[row] * j->B->scale[n], j->ep.bias ? j->ep.bias[n] : 0.0f);
            y = apply_act_s(j->ep.act, y);
            if (j->ep.residual)
                y += j->ep.residual[row * j->ep.ldr + n];
            j->C[row * j->ldc + n] = y;
        }
    }
}
#endif

static void run_block(const i8_job *j, size_t m0, size_t m1, size_t p0, size_t p1) {
    for (size_t mb = m0; mb < m1; mb += MC) {
        size_t me = m1 - mb < MC ? m1 : mb + MC;
        for (size_t p = p0; p < p1; p++) {
            size_t nr = j->N - p * NR < NR ? j->N - p * NR : NR;
            for (size_t i = mb; i < me; i += MR)
                tile(j, i, me - i < MR ? me - i : MR, p, nr);
        }
    }
}

typedef struct {
    const i8_job *job;
    size_t tn, tm, mblocks, panels;
} split_job;

static void slice(size_t n, size_t parts, size_t idx, size_t *b, size_t *e) {
    size_t q = n / parts, r = n % parts;
    *b = idx * q + (idx < r ? idx : r);
    *e = *b + q + (idx < r ? 1 : 0);
}

static void split_worker(void *arg, size_t begin, size_t end, int thread) {
    const split_job *s = arg;
    (void)thread;
    for (size_t t = begin; t < end; t++) {
        size_t pb, pe, mb, me;
        slice(s->panels, s->tn, t % s->tn, &pb, &pe);
        slice(s->mblocks, s->tm, t / s->tn, &mb, &me);
        size_t m0 = mb * MR, m1 = me * MR < s->job->M ? me * MR : s->job->M;
        if (m0 < m1 && pb < pe)
            run_block(s->job, m0, m1, pb, pe);
    }
}

void td_gemm_i8_run(td_threadpool *pool, size_t M, const float *A, size_t lda, const td_gemm_i8_packed *Bp,
                    float *C, size_t ldc, const td_gemm_epilogue *ep, void *scratch) {
    if (M == 0 || Bp->N == 0)
        return;
    size_t Kp = qa_stride(Bp->K);
    uint8_t *qa = scratch;
    float *row_scale = (float *)(qa + (M * Kp + 63) / 64 * 64);
    int32_t *row_zp = (int32_t *)(row_scale + M);
    i8_job j = {.M = M, .N = Bp->N, .K = Bp->K, .Kp = Kp, .A = A, .lda = lda, .B = Bp, .qa = qa,
                .row_scale = row_scale, .row_zp = row_zp, .C = C, .ldc = ldc};
    if (ep)
        j.ep = *ep;
    size_t threads = (size_t)td_threadpool_threads(pool);
    if ((double)M * (double)Bp->N * (double)(Bp->K + 1) < 65536.0)
        threads = 1; /* tiny products are not worth waking a thread for */
    if (threads > 1 && M > 1)
        td_parallel_for_n(pool, M, (int)threads, quantize_worker, &j);
    else
        quantize_worker(&j, 0, M, 0);
    /* split the (M blocks) x (panels) grid: the rectangle shape with the least
     * work in its largest piece, panels preferred on ties (each thread then
     * streams only its share of B), then cut up to 4x finer so a busy thread's
     * share can go to the others */
    size_t panels = Bp->panels, mblocks = div_up(M, MR), best_tn = 1, best_tm = 1;
    double best = -1.0;
    for (size_t tn = 1; tn <= threads; tn++) {
        if (threads % tn)
            continue;
        size_t tm = threads / tn;
        double w = (double)div_up(panels, tn) * NR * (double)div_up(mblocks, tm) * MR;
        if (best < 0 || w < best) {
            best = w;
            best_tn = tn;
            best_tm = tm;
        }
    }
    if (threads > 1)
        for (int g = 0; g < 2; g++) {
            bool can_n = panels >= best_tn * 4, can_m = mblocks >= best_tm * 8;
            if (can_m && (M > Bp->N || !can_n))
                best_tm *= 2;
            else if (can_n)
                best_tn *= 2;
        }
    split_job s = {.job = &j, .tn = best_tn, .tm = best_tm, .mblocks = mblocks, .panels = panels};
    if (threads > 1)
        td_parallel_for_n(pool, best_tn * best_tm, (int)threads, split_worker, &s);
    else
        split_worker(&s, 0, best_tn * best_tm, 0);
}
