/* Test driver for the chat template renderer (src/generate/chat_template.c, internal
 * to the library), run by tests/generate/test_chat_template.py. stdin: a JSON array of
 * cases {"template", "messages": [{"role", "content"}], "bos", "eos", "gen"}; stdout: a
 * JSON array of {"ok": true, "text": ...} or {"ok": false, "error": ...}. */
#include "generate/chat_template.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

int main(void) {
    size_t cap = 1 << 16, n = 0;
    char *in = malloc(cap);
    for (size_t k; in && (k = fread(in + n, 1, cap - n - 1, stdin)) > 0;) {
        n += k;
        if (n + 1 == cap && !(in = realloc(in, cap *= 2)))
            return 1;
    }
    if (!in)
        return 1;
    in[n] = 0;
    cJSON *cases = cJSON_Parse(in), *out = cJSON_CreateArray();
    free(in);
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(c, "messages");
        size_t m = (size_t)cJSON_GetArraySize(msgs);
        td_chat_message *mv = calloc(m ? m : 1, sizeof *mv);
        size_t i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, msgs) {
            mv[i++] = (td_chat_message){str(e, "role"), str(e, "content")};
        }
        td_chat_vars v = {str(c, "bos"), str(c, "eos"), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "gen"))};
        td_ctx *ctx = td_ctx_new();
        char *text = NULL;
        cJSON *r = cJSON_CreateObject();
        if (td_chat_render(ctx, str(c, "template"), mv, m, &v, &text) == TD_OK) {
            cJSON_AddBoolToObject(r, "ok", true);
            cJSON_AddStringToObject(r, "text", text);
        } else {
            cJSON_AddBoolToObject(r, "ok", false);
            cJSON_AddStringToObject(r, "error", td_error_message(ctx));
        }
        cJSON_AddItemToArray(out, r);
        free(text);
        free(mv);
        td_ctx_free(ctx);
    }
    char *s = cJSON_PrintUnformatted(out);
    printf("%s\n", s ? s : "[]");
    free(s);
    cJSON_Delete(out);
    cJSON_Delete(cases);
    return 0;
}
