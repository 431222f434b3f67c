/* A small program built against the installed tdeploy library: export an HF encoder
 * directory to ONNX, optimize it, tokenize a sentence, run the optimized model and
 * print the first values of its first output.
 *
 *   cc embed.c $(pkg-config --cflags --libs tdeploy) -o embed
 *   ./embed path/to/hf-model-dir "A sentence to embed." [workdir]
 *
 * It uses only the public headers (include/tdeploy/). */
#include <tdeploy/pipeline.h>
#include <tdeploy/session.h>
#include <tdeploy/tokenizer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(td_ctx *ctx, const char *step) {
    fprintf(stderr, "embed: %s failed: %s\n", step, td_error_message(ctx));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR TEXT [WORKDIR]\n", argv[0]);
        return 2;
    }
    const char *model_dir = argv[1], *text = argv[2], *work = argc > 3 ? argv[3] : ".";
    char onnx_path[4096], opt_path[4096];
    snprintf(onnx_path, sizeof onnx_path, "%s/model.onnx", work);
    snprintf(opt_path, sizeof opt_path, "%s/model-optimized.onnx", work);

    td_ctx *ctx = td_ctx_new();
    if (!ctx)
        return 1;
    int rc = 1;
    td_tokenizer *tok = NULL;
    td_session *s = NULL;
    td_encoding enc = {0};

    td_export_request ex;
    td_export_request_init(&ex);
    ex.model_dir = model_dir;
    ex.output = onnx_path;
    td_export_info info;
    if (td_export_model(ctx, &ex, &info) != TD_OK) {
        rc = fail(ctx, "export");
        goto out;
    }
    printf("exported %s (%s, %lld layers, hidden %lld) to %s\n", info.model_type, info.task, (long long)info.layers,
           (long long)info.hidden, onnx_path);

    td_optimize_request op;
    td_optimize_request_init(&op);
    op.input = onnx_path;
    op.output = opt_path;
    td_optimize_info oinfo;
    if (td_optimize_model(ctx, &op, &oinfo) != TD_OK) {
        rc = fail(ctx, "optimize");
        goto out;
    }
    printf("optimized: %d -> %d nodes\n", oinfo.nodes_before, oinfo.nodes_after);

    if (td_tokenizer_load(ctx, model_dir, &tok) != TD_OK) {
        rc = fail(ctx, "tokenizer load");
        goto out;
    }
    td_tok_options topt;
    td_tokenizer_default_options(tok, &topt);
    if (td_tokenizer_encode(ctx, tok, text, strlen(text), NULL, 0, &topt, &enc) != TD_OK) {
        rc = fail(ctx, "tokenize");
        goto out;
    }

    td_session_options so;
    td_session_options_init(&so);
    so.threads = 1;
    if (td_session_create_file(ctx, opt_path, &so, &s) != TD_OK) {
        rc = fail(ctx, "session");
        goto out;
    }
    int64_t shape[2] = {1, (int64_t)enc.len}; /* [batch 1, sequence] */
    for (int i = 0; i < td_session_input_count(s); i++) {
        const char *name = td_session_input_name(s, i);
        const int64_t *data = !strcmp(name, "input_ids")        ? enc.ids
                              : !strcmp(name, "attention_mask") ? enc.attention_mask
                              : !strcmp(name, "token_type_ids") ? enc.type_ids
                                                                : NULL;
        if (!data) {
            fprintf(stderr, "embed: the model has an input '%s' this example does not fill\n", name);
            goto out;
        }
        if (td_session_set_input(ctx, s, name, TD_DTYPE_INT64, 2, shape, data, enc.len * sizeof(int64_t)) != TD_OK) {
            rc = fail(ctx, "set input");
            goto out;
        }
    }
    if (td_session_run(ctx, s) != TD_OK) {
        rc = fail(ctx, "run");
        goto out;
    }
    td_session_output o;
    if (td_session_get_output(ctx, s, 0, &o) != TD_OK || o.dtype != TD_DTYPE_FLOAT32) {
        rc = fail(ctx, "output");
        goto out;
    }
    printf("%s shape [", o.name);
    for (int d = 0; d < o.rank; d++)
        printf("%s%lld", d ? ", " : "", (long long)o.shape[d]);
    printf("]:");
    const float *v = o.data;
    size_t n = o.nbytes / sizeof(float);
    for (size_t i = 0; i < n && i < 4; i++)
        printf(" %.6f", v[i]);
    printf("\n");
    rc = 0;
out:
    td_encoding_free(&enc);
    td_session_free(s);
    td_tokenizer_free(tok);
    td_ctx_free(ctx);
    return rc;
}
