/* libFuzzer harness for the chat template renderer (src/generate/chat_template.c):
 * the input is a template (everything before the first 0xFF byte) and the
 * content of the messages (the rest, cut at further 0xFF bytes into up to four
 * messages of alternating roles). Templates come from model files, so any bytes
 * must give a rendered prompt or an error with a message: no crash, no hang, no
 * unbounded memory (the renderer's limits, chat_template.h). */
#include "generate/chat_template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    /* parts: template, then message contents; NUL-terminated in place */
    char *parts[5] = {buf, NULL, NULL, NULL, NULL};
    size_t n_parts = 1;
    for (size_t i = 0; i < size && n_parts < 5; i++)
        if ((uint8_t)buf[i] == 0xFF) {
            buf[i] = 0;
            parts[n_parts++] = buf + i + 1;
        }
    static const char *roles[] = {"system", "user", "assistant", "user"};
    td_chat_message msgs[4];
    size_t n = 0;
    for (size_t i = 1; i < n_parts; i++, n++)
        msgs[n] = (td_chat_message){roles[n], parts[i]};
    if (n == 0)
        msgs[n++] = (td_chat_message){"user", "What is the capital of France?"};
    td_chat_vars vars = {.bos_token = "<s>", .eos_token = "</s>", .add_generation_prompt = size % 2 == 0};
    td_ctx ctx = {0};
    char *out = NULL;
    if (td_chat_render(&ctx, buf, msgs, n, &vars, &out) == TD_OK) {
        if (!out)
            abort();
        free(out);
    } else if (ctx.message[0] == '\0') {
        abort(); /* every failure carries a message */
    }
    free(buf);
    return 0;
}
