/* A model's weights, whether one safetensors file or several shards listed by a
 * model.safetensors.index.json. This is the API the exporter uses to get a
 * tensor by its Hugging Face name:
 *
 *     td_checkpoint *ck;
 *     TD_TRY(td_checkpoint_open(ctx, "/path/to/model_dir", &ck));
 *     const td_st_tensor *w;
 *     if (td_checkpoint_get(ctx, ck, "embeddings.word_embeddings.weight", &w) == TD_OK)
 *         use(w->data, w->dtype, w->rank, w->dims);   // (vocab, hidden), zero-copy into the mmap
 *     td_checkpoint_close(ck);
 *
 * Every shard is opened (and fully validated, see hf/safetensors.h) exactly once.
 * Sharded checkpoints must be consistent: every weight_map entry must exist in the
 * file it names, no tensor may appear in two shards, and every listed file must
 * exist. Tensors a shard holds that weight_map does not list are still served
 * (transformers loads whole shard files too). */
#ifndef TD_HF_CHECKPOINT_H
#define TD_HF_CHECKPOINT_H

#include "hf/safetensors.h"

typedef struct td_checkpoint td_checkpoint;

/* path: a .safetensors file, a *.safetensors.index.json, or a directory holding
 * model.safetensors (preferred, as transformers does) or model.safetensors.index.json.
 * Errors: TD_ERR_NOT_FOUND when there is nothing to open (message names what was
 * looked for), TD_ERR_FORMAT for an inconsistent index or a bad shard. */
td_status td_checkpoint_open(td_ctx *ctx, const char *path, td_checkpoint **out);
void td_checkpoint_close(td_checkpoint *ck); /* NULL is harmless; invalidates every td_st_tensor it gave out
                                              * unless the caller took td_mapped_file_ref(t->map) */

/* Tensor by HF name, NULL when absent. */
const td_st_tensor *td_checkpoint_find(const td_checkpoint *ck, const char *name);
/* Same, but a missing name is TD_ERR_NOT_FOUND with a message naming the checkpoint. */
td_status td_checkpoint_get(td_ctx *ctx, const td_checkpoint *ck, const char *name, const td_st_tensor **out);

/* All tensors: shard order, then file order inside each shard. */
size_t td_checkpoint_count(const td_checkpoint *ck);
const td_st_tensor *td_checkpoint_tensor_at(const td_checkpoint *ck, size_t i);

/* Sum of every tensor's nbytes. */
uint64_t td_checkpoint_total_bytes(const td_checkpoint *ck);
/* The file opened: the .safetensors file or the index json. */
const char *td_checkpoint_path(const td_checkpoint *ck);
bool td_checkpoint_is_sharded(const td_checkpoint *ck);
size_t td_checkpoint_shard_count(const td_checkpoint *ck);
const td_safetensors *td_checkpoint_shard(const td_checkpoint *ck, size_t i);

#endif
