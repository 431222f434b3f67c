/* Element types. The numbering is ONNX's TensorProto.DataType so that values
 * pass between the IR, ONNX files and the runtimes without translation tables. */
#ifndef TD_CORE_DTYPE_H
#define TD_CORE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum td_dtype {
    TD_UNDEFINED = 0,
    TD_F32 = 1,
    TD_U8 = 2,
    TD_I8 = 3,
    TD_U16 = 4,
    TD_I16 = 5,
    TD_I32 = 6,
    TD_I64 = 7,
    TD_STRING = 8,
    TD_BOOL = 9,
    TD_F16 = 10,
    TD_F64 = 11,
    TD_U32 = 12,
    TD_U64 = 13,
    TD_C64 = 14,
    TD_C128 = 15,
    TD_BF16 = 16,
    TD_F8E4M3FN = 17,
    TD_F8E4M3FNUZ = 18,
    TD_F8E5M2 = 19,
    TD_F8E5M2FNUZ = 20,
    TD_U4 = 21,
    TD_I4 = 22,
    TD_DTYPE_MAX = 23
} td_dtype;

/* Bytes per element; 0 for UNDEFINED, STRING, 4-bit types and unknown values. */
size_t td_dtype_size(td_dtype t);
/* Lower-case name as ONNX spells it ("float", "int64", "bfloat16"), "?" if unknown. */
const char *td_dtype_name(td_dtype t);
/* safetensors spelling ("F32", "BF16", "F8_E4M3"), NULL if it has none. */
const char *td_dtype_safetensors_name(td_dtype t);
/* Parse a safetensors dtype string; TD_UNDEFINED if unknown. */
td_dtype td_dtype_from_safetensors(const char *s);
bool td_dtype_is_float(td_dtype t);
bool td_dtype_is_integer(td_dtype t);

/* IEEE half and bfloat16 conversions (round to nearest even, NaN kept NaN). */
float td_f16_to_f32(uint16_t h);
uint16_t td_f32_to_f16(float f);
float td_bf16_to_f32(uint16_t b);
uint16_t td_f32_to_bf16(float f);
void td_f16_to_f32_array(const uint16_t *src, float *dst, size_t n);
void td_f32_to_f16_array(const float *src, uint16_t *dst, size_t n);
void td_bf16_to_f32_array(const uint16_t *src, float *dst, size_t n);
void td_f32_to_bf16_array(const float *src, uint16_t *dst, size_t n);

#endif
