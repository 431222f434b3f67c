/* Task names and what tdeploy refuses: the one table of the task names users
 * bring (transformers pipelines, Optimum, transformer-deploy) and the one place
 * that says "not supported (yet)" for tasks and models tdeploy cannot run, so
 * no command answers a generation model as if it were an encoder.
 *
 * Adding a task: give it a td_export_task, move its names from k_not_yet to
 * k_aliases in task.c. text-generation was added that way (issue 15): the
 * exporter routes the decoder families it builds (export/decoder_spec.h) before
 * the encoder spec, so td_task_refuse_generation_model is left for the families
 * it does not build and for the encoder-only paths (run's pipeline, convert). */
#ifndef TD_EXPORT_TASK_H
#define TD_EXPORT_TASK_H

#include "export/export.h"
#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>

/* A --task value: TD_OK with *out set for a known name or alias;
 * TD_ERR_UNSUPPORTED ("... is not supported (yet)") for a task users know but
 * tdeploy cannot run; TD_ERR_INVALID_ARGUMENT for an unknown name. Both error
 * messages list the accepted names. Callers treat both errors as usage errors. */
td_status td_task_from_name(td_ctx *ctx, const char *name, td_export_task *out);

/* The accepted task names for help texts and messages:
 * "feature-extraction, embedding, classification, token-classification, question-answering, text-generation". */
const char *td_task_names(void);

/* Does a config.json describe a text-generation model (decoder or
 * encoder-decoder): a model_type of the generation families, or an
 * architecture named *ForCausalLM, *LMHeadModel, *ForConditionalGeneration? */
bool td_task_is_generation_model(const char *model_type, const char *const *architectures, size_t n_architectures);

/* The refusal of a generation model where an encoder is needed: TD_ERR_UNSUPPORTED,
 * "WHAT is a text-generation model (WHY) that this command does not run: ..."
 * pointing to tdeploy generate. */
td_status td_task_refuse_generation_model(td_ctx *ctx, const char *what, const char *why);

#endif
