/* Constant folding of Transpose without going through an op kernel: exporters
 * write every Linear weight as Transpose(W), so folding a large model moves
 * most of its bytes through here. The permutation is reduced to its fewest
 * axes (size-1 axes dropped, axes that stay neighbours merged); the copy is
 * then plain row copies or a tiled 2-D transpose, which reads and writes whole
 * cache lines instead of one element per line. Pure data movement: the result
 * is the same bytes any Transpose implementation produces. */
#ifndef TD_OPT_FOLD_TRANSPOSE_H
#define TD_OPT_FOLD_TRANSPOSE_H

#include "onnx/ir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The permutation of n's "perm" attribute for an input of rank r (the reversed
 * axes when absent) into perm[0..r); false when the attribute is not a
 * permutation of 0..r-1 (the caller leaves such nodes to the general path). */
bool td_fold_transpose_perm(const td_node *n, int r, int *perm);

/* dst = src transposed: output axis i is input axis perm[i]. src holds the
 * row-major (in_dims[0], ..., in_dims[rank-1]) elements of esize bytes; dst has
 * room for as many, and must not overlap src. */
void td_fold_permute(void *dst, const void *src, size_t esize, int rank, const int64_t *in_dims, const int *perm);

/* Fold Transpose node n on constant x into *out (a new tensor named after n's
 * output). buffer, when not NULL, is a malloc'd buffer of at least x->nbytes
 * bytes that the result takes over (*buffer_taken says whether it did);
 * otherwise a new one is allocated. Sets *out to NULL without an error for
 * what is left to the general path: strings, sub-byte or empty tensors, a perm
 * that is not a permutation, a result above max elements. */
td_status td_fold_transpose(td_ctx *ctx, const td_node *n, const td_tensor *x, int64_t max, void *buffer,
                            bool *buffer_taken, td_tensor **out);

#endif
