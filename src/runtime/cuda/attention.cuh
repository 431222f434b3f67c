/* Parameters shared by the reference and the flash attention kernels. */
#ifndef TD_RUNTIME_CUDA_ATTENTION_CUH
#define TD_RUNTIME_CUDA_ATTENTION_CUH

#include "runtime/cuda/tdc_internal.cuh"

enum { ATT_MASK_NONE = 0, ATT_MASK_LEN, ATT_MASK_END_START, ATT_MASK_KEYS, ATT_MASK_3D };

struct attn_params {
    int dt;
    int64_t B, S, T, N, D, Dv, Hq, Hk, ld; /* qkv rows (B*S) of ld elements: q | k | v */
    const void *qkv;
    void *out;                             /* (B, S, N*Dv) */
    float scale, mask_filter;
    int unidirectional, mask_kind;
    const int32_t *mask;
    const void *bias;                      /* attention_bias, dtype dt */
    int64_t bias_bstride, bias_hstride;
};

/* Additive mask of key j for query i of head h, batch b (the CPU runtime's semantics). */
__device__ __forceinline__ float attn_mask_add(const attn_params &p, int64_t b, int64_t h, int64_t i, int64_t j) {
    float add = 0.0f;
    if (p.mask) {
        if (p.mask_kind == ATT_MASK_LEN) {
            int64_t len = p.mask[b];
            if (j >= (len < 0 ? 0 : len))
                add += p.mask_filter;
        } else if (p.mask_kind == ATT_MASK_END_START) {
            if (j >= p.mask[b] || j < p.mask[p.B + b])
                add += p.mask_filter;
        } else if (p.mask_kind == ATT_MASK_KEYS) {
            if (p.mask[b * p.T + j] == 0)
                add += p.mask_filter;
        } else if (p.mask_kind == ATT_MASK_3D) {
            if (p.mask[(b * p.S + i) * p.T + j] == 0)
                add += p.mask_filter;
        }
    }
    if (p.unidirectional && j > i + (p.T - p.S))
        add += p.mask_filter;
    if (p.bias)
        add += ld_f(p.bias, p.dt, ((b * p.bias_bstride + h * p.bias_hstride) + i * p.T + j));
    return add;
}

int tdc_attention_core(tdc_ctx *c, const attn_params &p, const char *name);
/* The tiled tensor-core kernel (attention_flash.cu): fp16/bf16, head sizes 16..128 in steps of 16. */
bool tdc_attention_flash_fits(const attn_params &p);
int tdc_attention_flash(tdc_ctx *c, const attn_params &p);

#endif
