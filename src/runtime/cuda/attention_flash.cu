/* Tiled attention on tensor cores for fp16/bf16 (flash-attention style):
 * one block per (64 query rows, head, batch item), 4 warps of 16 rows; K and
 * V stream through shared memory in tiles of 64 keys; scores Q K^T and the
 * product P V are WMMA 16x16x16 tensor-core ops with fp32 accumulation; the
 * softmax is online (running max and sum per row, in fp32) with the same
 * additive masks as the reference kernel (attention.cu), which the tests
 * compare it against. The (S x T) score matrix never goes to global memory. */
#include "runtime/cuda/attention.cuh"

#include <mma.h>

using namespace nvcuda;

#define FA_BQ 64 /* query rows per block */
#define FA_BK 64 /* keys per tile */
#define FA_WARPS 4

template <int D> struct fa_layout {
    static constexpr int W = D > FA_BK ? D : FA_BK; /* per-warp float scratch row width */
    static constexpr size_t q = 0, k = q + FA_BQ * D * 2, v = k + FA_BK * D * 2, warp0 = v + FA_BK * D * 2;
    static constexpr size_t s_bytes = 16 * W * 4, p_bytes = 16 * FA_BK * 2, o_bytes = 16 * D * 4, ml_bytes = 3 * 16 * 4;
    static constexpr size_t warp_bytes = s_bytes + p_bytes + o_bytes + ml_bytes;
    static constexpr size_t total = warp0 + FA_WARPS * warp_bytes;
};

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

/* rows x D elements starting at row r0 of the qkv buffer (column col0), zero past T, into smem (16-byte vectors). */
template <typename T, int D>
__device__ __forceinline__ void load_tile(T *dst, const T *qkv, int64_t ld, int64_t row_base, int64_t r0, int64_t nrows,
                                          int64_t col0) {
    constexpr int VEC = 8; /* 8 x 2 bytes = 16 bytes */
    for (int idx = threadIdx.x; idx < FA_BK * D / VEC; idx += blockDim.x) {
        int r = idx / (D / VEC), c = (idx % (D / VEC)) * VEC;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (r0 + r < nrows)
            val = *(const uint4 *)(qkv + (row_base + r0 + r) * ld + col0 + c);
        *(uint4 *)(dst + r * D + c) = val;
    }
}

template <typename T, int D> __global__ void __launch_bounds__(FA_WARPS * 32) attention_flash_kernel(attn_params p) {
    using L = fa_layout<D>;
    extern __shared__ __align__(128) unsigned char smem[];
    T *Qs = (T *)(smem + L::q), *Ks = (T *)(smem + L::k), *Vs = (T *)(smem + L::v);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    unsigned char *wb = smem + L::warp0 + warp * L::warp_bytes;
    float *Sb = (float *)wb;
    T *Pb = (T *)(wb + L::s_bytes);
    float *Ob = (float *)(wb + L::s_bytes + L::p_bytes);
    float *mrow = (float *)(wb + L::s_bytes + L::p_bytes + L::o_bytes), *lrow = mrow + 16, *arow = lrow + 16;
    const int64_t b = blockIdx.z, h = blockIdx.y, q0 = (int64_t)blockIdx.x * FA_BQ;
    const T *qkv = (const T *)p.qkv;
    const int64_t row_base = b * p.S;

    load_tile<T, D>(Qs, qkv, p.ld, row_base, q0, p.S, h * D);
    for (int idx = lane; idx < 16 * D; idx += 32)
        Ob[idx] = 0.0f;
    if (lane < 16) {
        mrow[lane] = -INFINITY;
        lrow[lane] = 0.0f;
    }
    const int r = lane >> 1, half_ = lane & 1; /* softmax: two lanes per row, 32 columns each */
    const int64_t qi = q0 + warp * 16 + r;
    for (int64_t k0 = 0; k0 < p.T; k0 += FA_BK) {
        __syncthreads(); /* the previous tile is consumed */
        load_tile<T, D>(Ks, qkv, p.ld, row_base, k0, p.T, p.Hq + h * D);
        load_tile<T, D>(Vs, qkv, p.ld, row_base, k0, p.T, p.Hq + p.Hk + h * D);
        __syncthreads();
        /* scores (16 x 64) = Q_warp (16 x D) K_tile^T */
        for (int nt = 0; nt < FA_BK / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bf;
                wmma::load_matrix_sync(a, Qs + warp * 16 * D + kk * 16, D);
                wmma::load_matrix_sync(bf, Ks + nt * 16 * D + kk * 16, D);
                wmma::mma_sync(acc, a, bf, acc);
            }
            wmma::store_matrix_sync(Sb + nt * 16, acc, L::W, wmma::mem_row_major);
        }
        __syncwarp();
        /* online softmax over this tile's 64 columns */
        float s[32], tmax = -INFINITY;
        for (int c = 0; c < 32; c++) {
            int64_t j = k0 + half_ * 32 + c;
            float v = -INFINITY;
            if (j < p.T && qi < p.S)
                v = Sb[r * L::W + half_ * 32 + c] * p.scale + attn_mask_add(p, b, h, qi, j);
            s[c] = v;
            tmax = fmaxf(tmax, v);
        }
        tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
        float m_old = mrow[r], m_new = fmaxf(m_old, tmax);
        float m_use = m_new == -INFINITY ? 0.0f : m_new;
        float sum = 0.0f;
        for (int c = 0; c < 32; c++) {
            float e = s[c] == -INFINITY ? 0.0f : expf(s[c] - m_use);
            sum += e;
            Pb[r * FA_BK + half_ * 32 + c] = from_f<T>(e);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_use);
        __syncwarp();
        if (half_ == 0) {
            lrow[r] = lrow[r] * alpha + sum;
            mrow[r] = m_new;
            arow[r] = alpha;
        }
        __syncwarp();
        /* PV (16 x D) = P (16 x 64) V_tile (64 x D), then O = O * alpha + PV */
        for (int dt = 0; dt < D / 16; dt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < FA_BK / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bf;
                wmma::load_matrix_sync(a, Pb + kk * 16, FA_BK);
                wmma::load_matrix_sync(bf, Vs + kk * 16 * D + dt * 16, D);
                wmma::mma_sync(acc, a, bf, acc);
            }
            wmma::store_matrix_sync(Sb + dt * 16, acc, L::W, wmma::mem_row_major);
        }
        __syncwarp();
        for (int idx = lane; idx < 16 * D; idx += 32) {
            int rr = idx / D, d = idx % D;
            Ob[idx] = Ob[idx] * arow[rr] + Sb[rr * L::W + d];
        }
        __syncwarp();
    }
    T *out = (T *)p.out;
    for (int idx = lane; idx < 16 * D; idx += 32) {
        int rr = idx / D, d = idx % D;
        int64_t i = q0 + warp * 16 + rr;
        if (i < p.S) {
            float l = lrow[rr];
            out[(b * p.S + i) * (p.N * D) + h * D + d] = from_f<T>(l > 0.0f ? Ob[idx] / l : 0.0f);
        }
    }
}

bool tdc_attention_flash_fits(const attn_params &p) {
    return (p.dt == DT_F16 || p.dt == DT_BF16) && p.D == p.Dv && p.D % 16 == 0 && p.D >= 16 && p.D <= 128 &&
           p.ld % 8 == 0 && p.Hq % 8 == 0 && p.Hk % 8 == 0 && ((uintptr_t)p.qkv % 16) == 0 && p.T == p.S;
}

template <typename T, int D> static int launch(tdc_ctx *c, const attn_params &p) {
    size_t smem = fa_layout<D>::total;
    static bool smem_set; /* once per instantiation, on the first (eager) run, never inside a graph capture */
    if (!smem_set) {
        TDC_CUDA(c, cudaFuncSetAttribute(attention_flash_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem));
        smem_set = true;
    }
    dim3 grid((unsigned)((p.S + FA_BQ - 1) / FA_BQ), (unsigned)p.N, (unsigned)p.B);
    attention_flash_kernel<T, D><<<grid, FA_WARPS * 32, smem, c->stream>>>(p);
    TDC_LAUNCHED(c, "attention_flash_kernel");
    return 0;
}

template <typename T> static int dispatch(tdc_ctx *c, const attn_params &p) {
    switch (p.D) {
    case 16: return launch<T, 16>(c, p);
    case 32: return launch<T, 32>(c, p);
    case 48: return launch<T, 48>(c, p);
    case 64: return launch<T, 64>(c, p);
    case 80: return launch<T, 80>(c, p);
    case 96: return launch<T, 96>(c, p);
    case 112: return launch<T, 112>(c, p);
    default: return launch<T, 128>(c, p);
    }
}

int tdc_attention_flash(tdc_ctx *c, const attn_params &p) {
    return p.dt == DT_F16 ? dispatch<__half>(c, p) : dispatch<__nv_bfloat16>(c, p);
}
