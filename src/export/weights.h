/* Initializers from the checkpoint: an HF tensor by name, checked against the
 * shape the config implies, in the dtype the graph wants. When the stored dtype
 * already is the wanted one the initializer points into the safetensors mapping
 * (td_tensor_new_mapped: no copy, the saver streams it); otherwise it is
 * converted once into an owned buffer (fp32 -> fp16 for --dtype fp16, bf16/fp16
 * checkpoints -> fp32). A name asked for twice (tied weights) yields the same
 * initializer, so it is stored once. */
#ifndef TD_EXPORT_WEIGHTS_H
#define TD_EXPORT_WEIGHTS_H

#include "export/builder.h"
#include "hf/checkpoint.h"

struct td_xw_gguf; /* export/decoder_gguf.c: HF tensor names served from a GGUF file */

typedef struct td_xw {
    td_eb *b;
    const td_checkpoint *ck;         /* NULL when gguf is set */
    const struct td_xw_gguf *gguf;   /* weights from a GGUF file instead of ck */
    bool gguf_quantized; /* keep the GGUF file's block-quantized matrices quantized (decoder_gguf.h) */
    bool gguf_int8_act;  /* their MatMulNBits with int8 activations (accuracy_level 4), else fp32 (0) */
    const char *why; /* what the tensors are for, in messages ("bert encoder") */
    uint64_t bytes;  /* bytes of the initializers created */
} td_xw;

/* The initializer for tensor `name` (printf format) with shape dims[rank] in dtype.
 * Errors (sticky on the builder): missing tensor (named), wrong shape (expected
 * and actual), a stored dtype that is not a float type. */
td_value *td_xw_param(td_xw *w, td_dtype dtype, int rank, const int64_t *dims, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The GGUF side of td_xw_param (decoder_gguf.c): name is the HF name. */
td_value *td_xw_gguf_param(td_xw *w, td_dtype dtype, int rank, const int64_t *dims, const char *name);
/* 1-D and 2-D shorthands. */
td_value *td_xw_vec(td_xw *w, td_dtype dtype, int64_t n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
td_value *td_xw_mat(td_xw *w, td_dtype dtype, int64_t rows, int64_t cols, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* True when the checkpoint has the tensor (printf format). */
bool td_xw_has(const td_xw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
