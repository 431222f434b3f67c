/* td_export_to_file: build the graph and save it atomically. */
#define _GNU_SOURCE
#include "export/export.h"

#include "core/log.h"
#include "onnx/onnx_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* ONNX's protobuf limit is 2 GB; the saver's AUTO mode switches to external data
 * below it. Used only to tell the user which layout was written. */
#define INLINE_LIMIT ((2ull << 30) - (1ull << 20))

static uint64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

td_status td_export_to_file(td_ctx *ctx, const td_export_options *opt, td_export_summary *sum) {
    if (!opt->output || !*opt->output)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "export: no output path given");
    double t0 = td_now_s();
    td_model *m = NULL;
    TD_TRY(td_export_build(ctx, opt, &m, sum));
    /* AUTO: external data above 2 GB; large raw_data at aligned offsets so a load maps them in place */
    const td_onnx_save_options so = {.align_raw_data = true, .keep_cached = opt->cache_output};
    td_status st = td_onnx_save(ctx, m, opt->output, &so);
    td_model_free(m);
    if (st != TD_OK)
        return td_wrap(ctx, "saving %s", opt->output);
    sum->external_data = sum->weight_bytes >= INLINE_LIMIT;
    sum->file_bytes = file_size(opt->output);
    if (sum->external_data) {
        char data[4096];
        snprintf(data, sizeof data, "%s.data", opt->output);
        sum->file_bytes += file_size(data);
    }
    sum->seconds = td_now_s() - t0;
    return TD_OK;
}
