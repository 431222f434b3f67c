/* libFuzzer harness: arbitrary bytes as config.json. Parsing must either
 * succeed with a consistent struct or fail with a message; never crash. */
#include "hf/config.h"

#include "core/ctx.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_ctx ctx = {0};
    td_hf_config *cfg = NULL;
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    if (td_hf_config_parse(&ctx, copy, size, "fuzz/config.json", &cfg) == TD_OK) {
        if (cfg->hidden_size <= 0 || cfg->num_attention_heads <= 0 || cfg->head_dim <= 0 || cfg->num_labels < 0 ||
            cfg->vocab_size <= 0 || cfg->num_hidden_layers <= 0 || !cfg->hidden_act || !cfg->model_type)
            abort();
        for (int64_t i = 0; i < cfg->num_labels; i++)
            if (!cfg->id2label[i].label || td_hf_config_label(cfg, cfg->id2label[i].id) == NULL)
                abort();
    } else if (ctx.message[0] == '\0') {
        abort();
    }
    td_hf_config_free(cfg);
    free(copy);
    return 0;
}
