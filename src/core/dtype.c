/* Element type table and fp16/bf16 <-> fp32 conversion. */
#include "core/dtype.h"

#include <string.h>

struct dtype_info {
    const char *name;
    const char *st_name; /* safetensors */
    size_t size;
    bool is_float, is_int;
};

static const struct dtype_info infos[TD_DTYPE_MAX] = {
    [TD_UNDEFINED] = {"undefined", NULL, 0, false, false},
    [TD_F32] = {"float", "F32", 4, true, false},
    [TD_U8] = {"uint8", "U8", 1, false, true},
    [TD_I8] = {"int8", "I8", 1, false, true},
    [TD_U16] = {"uint16", "U16", 2, false, true},
    [TD_I16] = {"int16", "I16", 2, false, true},
    [TD_I32] = {"int32", "I32", 4, false, true},
    [TD_I64] = {"int64", "I64", 8, false, true},
    [TD_STRING] = {"string", NULL, 0, false, false},
    [TD_BOOL] = {"bool", "BOOL", 1, false, false},
    [TD_F16] = {"float16", "F16", 2, true, false},
    [TD_F64] = {"double", "F64", 8, true, false},
    [TD_U32] = {"uint32", "U32", 4, false, true},
    [TD_U64] = {"uint64", "U64", 8, false, true},
    [TD_C64] = {"complex64", NULL, 8, false, false},
    [TD_C128] = {"complex128", NULL, 16, false, false},
    [TD_BF16] = {"bfloat16", "BF16", 2, true, false},
    [TD_F8E4M3FN] = {"float8e4m3fn", "F8_E4M3", 1, true, false},
    [TD_F8E4M3FNUZ] = {"float8e4m3fnuz", NULL, 1, true, false},
    [TD_F8E5M2] = {"float8e5m2", "F8_E5M2", 1, true, false},
    [TD_F8E5M2FNUZ] = {"float8e5m2fnuz", NULL, 1, true, false},
    [TD_U4] = {"uint4", NULL, 0, false, true},
    [TD_I4] = {"int4", NULL, 0, false, true},
};

static const struct dtype_info *info(td_dtype t) {
    if ((int)t < 0 || t >= TD_DTYPE_MAX)
        return NULL;
    return &infos[t];
}

size_t td_dtype_size(td_dtype t) { return info(t) ? info(t)->size : 0; }
const char *td_dtype_name(td_dtype t) { return info(t) ? info(t)->name : "?"; }
const char *td_dtype_safetensors_name(td_dtype t) { return info(t) ? info(t)->st_name : NULL; }
bool td_dtype_is_float(td_dtype t) { return info(t) && info(t)->is_float; }
bool td_dtype_is_integer(td_dtype t) { return info(t) && info(t)->is_int; }

td_dtype td_dtype_from_safetensors(const char *s) {
    if (!s)
        return TD_UNDEFINED;
    for (int t = 0; t < TD_DTYPE_MAX; t++)
        if (infos[t].st_name && strcmp(infos[t].st_name, s) == 0)
            return (td_dtype)t;
    return TD_UNDEFINED;
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float td_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t td_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan: keep nan quiet and non-zero */
        return sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0);
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return sign | 0x7c00;
    if (absx < 0x38800000u) { /* below smallest normal half: subnormal or zero */
        /* add the magic 0.5 so the FPU does round-to-nearest-even into the low bits */
        float v = bits_f32(absx) + 0.5f;
        return sign | (uint16_t)(f32_bits(v) - 0x3f000000u);
    }
    uint32_t mant_odd = (absx >> 13) & 1;
    absx += 0xc8000fffu + mant_odd; /* rebias exponent (-112<<23) and round half to even */
    return sign | (uint16_t)(absx >> 13);
}

float td_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t td_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

void td_f16_to_f32_array(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = td_f16_to_f32(src[i]);
}
void td_f32_to_f16_array(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = td_f32_to_f16(src[i]);
}
void td_bf16_to_f32_array(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = td_bf16_to_f32(src[i]);
}
void td_f32_to_bf16_array(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = td_f32_to_bf16(src[i]);
}
