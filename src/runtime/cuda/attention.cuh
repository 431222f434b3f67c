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

int tdc_attention_core(tdc_ctx *c, const attn_params &p, const char *name);

#endif
