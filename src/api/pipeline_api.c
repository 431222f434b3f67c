/* The public pipeline API (include/tdeploy/pipeline.h): thin translations of the
 * public request structs into the internal options of export, optimize and convert,
 * so the library offers what the commands do without exposing internal headers. */
#include "tdeploy/pipeline.h"

#include "convert/convert.h"
#include "core/ctx.h"
#include "export/export.h"
#include "export/task.h"
#include "onnx/onnx_io.h"
#include "opt/optimize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static td_status require(td_ctx *ctx, const void *p, const char *call, const char *field) {
    if (!p)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "%s: %s is required (set it after %s_init)", call, field,
                       strncmp(call, "td_export", 9) == 0    ? "td_export_request"
                       : strncmp(call, "td_optimize", 11) == 0 ? "td_optimize_request"
                                                               : "td_convert_request");
    return TD_OK;
}

void td_export_request_init(td_export_request *req) {
    memset(req, 0, sizeof *req);
    req->precision = TD_PRECISION_FP32;
}

td_status td_export_model(td_ctx *ctx, const td_export_request *req, td_export_info *info) {
    if (!req)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_export_model: request is NULL");
    td_status s;
    if ((s = require(ctx, req->model_dir, "td_export_model", "model_dir")) != TD_OK ||
        (s = require(ctx, req->output, "td_export_model", "output")) != TD_OK)
        return s;
    td_export_options o = {.model_dir = req->model_dir, .output = req->output, .opset = req->opset,
                           .int32_inputs = req->int32_inputs};
    if (req->task && td_task_from_name(ctx, req->task, &o.task) != TD_OK)
        return td_wrap(ctx, "td_export_model");
    if (req->opset && (req->opset < TD_EXPORT_OPSET_MIN || req->opset > TD_EXPORT_OPSET_MAX))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_export_model: opset %d is not supported (supported: %d..%d)",
                       req->opset, TD_EXPORT_OPSET_MIN, TD_EXPORT_OPSET_MAX);
    if (req->precision == TD_PRECISION_FP32)
        o.dtype = TD_F32;
    else if (req->precision == TD_PRECISION_FP16)
        o.dtype = TD_F16;
    else
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "td_export_model: precision %d is not supported by export (fp32 or fp16; use "
                       "td_optimize_model for bf16)",
                       (int)req->precision);
    td_export_summary sum;
    s = td_export_to_file(ctx, &o, &sum);
    if (s == TD_OK && info) {
        memset(info, 0, sizeof *info);
        snprintf(info->model_type, sizeof info->model_type, "%s", sum.model_type);
        snprintf(info->task, sizeof info->task, "%s", td_export_task_name(sum.task));
        info->opset = sum.opset;
        info->layers = sum.layers, info->hidden = sum.hidden, info->heads = sum.heads, info->vocab = sum.vocab;
        info->num_labels = sum.num_labels;
        info->file_bytes = sum.file_bytes;
    }
    return s;
}

void td_optimize_request_init(td_optimize_request *req) {
    memset(req, 0, sizeof *req);
    req->precision = TD_PRECISION_FP32;
    req->keep_io_types = true;
}

td_status td_optimize_model(td_ctx *ctx, const td_optimize_request *req, td_optimize_info *info) {
    if (!req)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_optimize_model: request is NULL");
    td_status s;
    if ((s = require(ctx, req->input, "td_optimize_model", "input")) != TD_OK ||
        (s = require(ctx, req->output, "td_optimize_model", "output")) != TD_OK)
        return s;
    td_opt_options o;
    td_opt_options_default(&o);
    o.target = req->portable ? TD_OPT_TARGET_PORTABLE : TD_OPT_TARGET_FUSED;
    o.keep_io_types = req->keep_io_types;
    switch (req->precision) {
    case TD_PRECISION_FP32: o.precision = TD_OPT_FP32; break;
    case TD_PRECISION_FP16: o.precision = TD_OPT_FP16; break;
    case TD_PRECISION_BF16: o.precision = TD_OPT_BF16; break;
    case TD_PRECISION_INT8: o.precision = TD_OPT_INT8; break;
    default:
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_optimize_model: unknown precision %d", (int)req->precision);
    }
    td_model *m = NULL;
    td_opt_report r;
    s = td_onnx_load(ctx, req->input, &m);
    if (s == TD_OK) {
        s = td_optimize(ctx, m, &o, &r);
        if (s != TD_OK)
            td_wrap(ctx, "optimizing %s", req->input);
    }
    if (s == TD_OK)
        s = td_onnx_save(ctx, m, req->output, &(td_onnx_save_options){.align_raw_data = true});
    td_model_free(m);
    if (s == TD_OK && info) {
        info->nodes_before = r.nodes_before;
        info->nodes_after = r.nodes_after;
        info->seconds = r.seconds;
    }
    return s;
}

void td_convert_request_init(td_convert_request *req) {
    memset(req, 0, sizeof *req);
    req->atol = -1;
    req->rtol = -1;
}

td_status td_convert_model(td_ctx *ctx, const td_convert_request *req, td_convert_info *info) {
    if (!req)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_convert_model: request is NULL");
    td_status s;
    if ((s = require(ctx, req->model, "td_convert_model", "model")) != TD_OK ||
        (s = require(ctx, req->output_dir, "td_convert_model", "output_dir")) != TD_OK)
        return s;
    td_convert_options o;
    td_convert_options_init(&o);
    o.model = req->model;
    o.outdir = req->output_dir;
    o.task = req->task;
    if (req->precision)
        o.precision = req->precision;
    if (req->seq_len[0] || req->seq_len[1] || req->seq_len[2])
        memcpy(o.seq, req->seq_len, sizeof o.seq);
    if (req->batch_size[0] || req->batch_size[1] || req->batch_size[2])
        memcpy(o.batch, req->batch_size, sizeof o.batch);
    o.atol = req->atol;
    o.rtol = req->rtol;
    if (req->nb_measures > 0)
        o.nb_measures = req->nb_measures;
    if (req->threads > 0)
        o.threads = req->threads;
    o.force = req->force;
    o.no_bench = req->no_bench;
    char *list = NULL;
    if (req->backends) {
        list = strdup(req->backends);
        if (!list)
            return td_fail(ctx, TD_ERR_OUT_OF_MEMORY, "td_convert_model: out of memory");
        o.n_backends = 0;
        char *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (o.n_backends == TD_CONVERT_MAX_BACKENDS) {
                free(list);
                return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_convert_model: at most %d backends",
                               TD_CONVERT_MAX_BACKENDS);
            }
            o.backends[o.n_backends++] = t;
        }
        if (o.n_backends == 0) {
            free(list);
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_convert_model: backends '%s' names no backend",
                           req->backends);
        }
    }
    td_convert_result *res = calloc(1, sizeof *res);
    if (!res) {
        free(list);
        return td_fail(ctx, TD_ERR_OUT_OF_MEMORY, "td_convert_model: out of memory");
    }
    s = td_convert(ctx, &o, res);
    if (s == TD_OK && info) {
        info->n_failed_backends = res->n_failed_backends;
        snprintf(info->report_path, sizeof info->report_path, "%s", res->report_path);
    }
    free(res);
    free(list);
    return s;
}
