/* The engine builder (see engine_build.h). */
#include "engine/engine_build.h"

#include "engine/timing_cache.h"

#include "core/log.h"
#include "export/export.h"
#include "onnx/onnx_io.h"
#include "opt/optimize.h"
#include "runtime/cuda_loader.h"
#include "runtime/cpu/op_util.h"
#include "runtime/plan.h"
#include "runtime/session_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An already fused graph (from `tdeploy optimize`) holds com.microsoft ops. */
static bool is_fused(const td_model *m) {
    for (int i = 0; i < m->graph->n_nodes; i++) {
        const td_node *n = m->graph->nodes[i];
        if (n && n->domain && strcmp(n->domain, "com.microsoft") == 0)
            return true;
    }
    return false;
}

/* Bind zero-filled inputs of batch x seq (symbolic axis 0 = batch, 1 = sequence) and plan. */
static td_status plan_profile(td_ctx *ctx, td_session *s, uint32_t B, uint32_t S, td_engine_profile *p) {
    void *bufs[16] = {0};
    td_status st = TD_OK;
    int n = td_session_input_count(s);
    if (n > 16)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "engines take at most 16 inputs (the model has %d)", n);
    for (int i = 0; i < n && st == TD_OK; i++) {
        int32_t dt;
        int rank;
        const int64_t *dims;
        const char *const *params;
        td_session_input_info(s, i, &dt, &rank, &dims, &params);
        int64_t shape[8], numel = 1;
        if (rank > 8) {
            st = td_fail(ctx, TD_ERR_UNSUPPORTED, "input %d has rank %d", i, rank);
            break;
        }
        for (int d = 0; d < rank; d++) {
            shape[d] = dims[d] >= 0 ? dims[d] : d == 0 ? B : d == 1 ? S : 1;
            numel *= shape[d];
        }
        size_t nb = (size_t)numel * td_dtype_size((td_dtype)dt);
        bufs[i] = calloc(1, nb ? nb : 1);
        if (!bufs[i]) {
            st = td_fail_oom(ctx, nb, "planning inputs");
            break;
        }
        st = td_session_set_input(ctx, s, td_session_input_name(s, i), dt, rank, shape, bufs[i], nb);
    }
    if (st == TD_OK)
        st = td_session_plan_only(ctx, s);
    if (st == TD_OK) {
        td_session_stats stats;
        td_session_get_stats(s, &stats);
        p->arena_bytes = stats.arena_bytes;
        p->naive_bytes = stats.arena_naive_bytes;
    }
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    if (st != TD_OK)
        td_wrap(ctx, "planning activation memory for %ux%u", B, S);
    return st;
}

/* ---- GEMM tuning ---- */

typedef struct gemm_list {
    tdc_gemm_choice *v; /* shapes (m = bucket); algorithm fields filled by tune_all */
    uint32_t n, cap;
} gemm_list;

static td_status gemm_add(td_ctx *ctx, gemm_list *l, int32_t dt, int32_t tb, int32_t epi, int64_t m, int64_t n,
                          int64_t k) {
    if (dt != TD_DTYPE_FLOAT32 && dt != TD_DTYPE_FLOAT16 && dt != TD_DTYPE_BFLOAT16)
        return TD_OK;
    for (uint32_t i = 0; i < l->n; i++) {
        const tdc_gemm_choice *e = &l->v[i];
        if (e->dtype == dt && e->trans_b == tb && e->epilogue == epi && e->m == m && e->n == n && e->k == k)
            return TD_OK;
    }
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? 2 * l->cap : 32;
        tdc_gemm_choice *p = realloc(l->v, cap * sizeof *p);
        if (!p)
            return td_fail_oom(ctx, cap * sizeof *p, "the GEMM list");
        l->v = p;
        l->cap = cap;
    }
    tdc_gemm_choice e = {.dtype = dt, .trans_b = tb, .epilogue = epi, .m = m, .n = n, .k = k};
    l->v[l->n++] = e;
    return TD_OK;
}

/* The GEMMs the CUDA backend runs for the current plan (the profile's max shape): MatMul with a 2-D constant
 * right operand, Gemm, and Attention's QKV projection. Every M bucket from the profile's smallest shape to its
 * largest is listed (M scales with batch x sequence; a pooler's M with batch only, which the range covers). */
static td_status collect_gemms(td_ctx *ctx, td_session *s, const td_engine_profile *p, gemm_list *l) {
    double shrink = (double)p->min_b * p->min_s / ((double)p->max_b * p->max_s);
    for (int i = 0; i < s->nn; i++) {
        const td_rt_node *rn = &s->nodes[i];
        if (rn->hoisted || rn->fused_away || rn->n_in < 2 || !rn->tin[0] || !rn->tin[1])
            continue;
        const char *t = rn->node->op_type;
        const td_rt_tensor *a = rn->tin[0], *b = rn->tin[1];
        int64_t m, n, k;
        int32_t tb = 0, epi = 0;
        if (strcmp(t, "MatMul") == 0 && b->rank == 2 && a->rank >= 1) {
            k = a->shape[a->rank - 1];
            n = b->shape[1];
            m = k ? td_rt_numel(a) / k : 0;
        } else if (strcmp(t, "Gemm") == 0 && a->rank == 2 && b->rank == 2) {
            tb = (int32_t)td_node_attr_int(rn->node, "transB", 0);
            k = a->shape[1];
            n = tb ? b->shape[0] : b->shape[1];
            m = a->shape[0];
            epi = rn->n_in > 2 && rn->in[2] >= 0;
        } else if (strcmp(t, "Attention") == 0 && a->rank == 3 && b->rank == 2) {
            k = a->shape[2];
            n = b->shape[1];
            m = a->shape[0] * a->shape[1];
            epi = rn->n_in > 2 && rn->in[2] >= 0;
        } else {
            continue;
        }
        if (m < 1 || n < 1 || k < 1 || a->dtype != b->dtype)
            continue;
        int64_t lo = (int64_t)((double)m * shrink);
        for (int64_t mb = td_tcache_bucket(lo < 1 ? 1 : lo); mb <= td_tcache_bucket(m); mb <<= 1)
            TD_TRY(gemm_add(ctx, l, (int32_t)a->dtype, tb, epi, mb, n, k));
    }
    return TD_OK;
}

typedef struct gpu_tuner {
    const tdc_api *api;
    tdc_ctx *dc;
} gpu_tuner;

static td_status gpu_tune(td_ctx *ctx, void *user, tdc_gemm_choice *ch) {
    gpu_tuner *g = user;
    if (!g->dc) {
        char err[512] = "";
        if (g->api->ctx_create(&g->dc, err, sizeof err))
            return td_fail(ctx, TD_ERR_DEVICE, "starting the GPU for GEMM tuning: %s", err);
    }
    int tried = 0;
    if (g->api->gemm_tune(g->dc, ch, 8, &tried))
        return td_fail(ctx, TD_ERR_DEVICE, "tuning GEMM %lldx%lldx%lld: %s", (long long)ch->m, (long long)ch->n,
                       (long long)ch->k, g->api->error(g->dc));
    return TD_OK;
}

/* Each listed shape from the cache, else measured (and added to the cache, which is saved when it grew). A
 * cache that cannot be read or written is a warning, never a failed build. */
static td_status tune_all(td_ctx *ctx, const td_engine_build_options *o, const tdc_device_info *dev, gemm_list *l,
                          td_engine_build_report *r) {
    td_status (*tune)(td_ctx *, void *, tdc_gemm_choice *) = o->tune;
    void *user = o->tune_user;
    gpu_tuner g = {0};
    if (!tune) {
        if (o->target)
            return TD_OK; /* a described GPU: nothing to measure on */
        TD_TRY(td_cuda_api(ctx, &g.api));
        tune = gpu_tune;
        user = &g;
    }
    double t0 = td_now_s();
    td_tcache_key key;
    td_tcache_key_of(dev, &key);
    td_tcache cache;
    memset(&cache, 0, sizeof cache);
    cache.key = key;
    char *def = NULL;
    const char *path = o->timing_cache;
    if (!path)
        path = def = td_tcache_default_path();
    if (path && *path) {
        snprintf(r->timing_cache, sizeof r->timing_cache, "%s", path);
        TD_TRY(td_tcache_load(ctx, path, &key, &cache, r->cache_note, sizeof r->cache_note));
        if (r->cache_note[0])
            td_warn("build: %s", r->cache_note);
    }
    td_status st = TD_OK;
    int grew = 0;
    for (uint32_t i = 0; i < l->n && st == TD_OK; i++) {
        tdc_gemm_choice *e = &l->v[i];
        const tdc_gemm_choice *c = td_tcache_find(&cache, e->dtype, e->trans_b, e->epilogue, e->m, e->n, e->k);
        if (c) {
            *e = *c;
            r->gemm_cached++;
            continue;
        }
        if ((st = tune(ctx, user, e)) != TD_OK)
            break;
        char why[96];
        if (!td_tcache_entry_ok(e, why, sizeof why)) {
            st = td_fail(ctx, TD_ERR_INTERNAL, "GEMM tuning returned an invalid choice (%s)", why);
            break;
        }
        r->gemm_measured++;
        st = td_tcache_put(ctx, &cache, e);
        grew++;
        if ((i + 1) % 16 == 0)
            td_info("build: tuning GEMMs: %u of %u shape buckets", i + 1, l->n);
    }
    if (st == TD_OK && grew && path && *path) {
        td_ctx *x = td_ctx_new();
        if (x && td_tcache_save(x, path, &cache) != TD_OK)
            td_warn("build: the timing cache was not saved (the engine is fine): %s", td_error_message(x));
        td_ctx_free(x);
    }
    if (g.dc)
        g.api->ctx_free(g.dc);
    td_tcache_clear(&cache);
    free(def);
    r->gemm_buckets = (int)l->n;
    r->seconds_tune = td_now_s() - t0;
    return st;
}

/* KERNELS text, one line per node the GPU runs; and the check that each has a kernel. */
static td_status kernel_table(td_ctx *ctx, td_session *s, int precision, char **out, td_engine_build_report *r) {
    size_t cap = 4096, len = 0;
    char *t = malloc(cap);
    if (!t)
        return td_fail_oom(ctx, cap, "the kernel table");
    t[0] = 0;
    r->nodes = s->nn;
    for (int i = 0; i < s->nn; i++) {
        const td_rt_node *rn = &s->nodes[i];
        if (rn->hoisted) {
            r->hoisted_nodes++;
            continue;
        }
        if (!td_cuda_has_kernel(rn)) {
            free(t);
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED,
                                "no CUDA kernel for this op, so it cannot go into an engine (engines never fall back "
                                "to the CPU)");
        }
        r->gpu_nodes++;
        const char *name = rn->node->name ? rn->node->name : "";
        const char *k = td_cuda_kernel_name(rn, precision);
        size_t need = strlen(name) + strlen(rn->node->op_type) + strlen(k) + 4;
        if (len + need >= cap) {
            while (len + need >= cap)
                cap *= 2;
            char *q = realloc(t, cap);
            if (!q) {
                free(t);
                return td_fail_oom(ctx, cap, "the kernel table");
            }
            t = q;
        }
        len += (size_t)snprintf(t + len, cap - len, "%s\t%s\t%s\n", name, rn->node->op_type, k);
    }
    *out = t;
    return TD_OK;
}

td_status td_engine_build(td_ctx *ctx, const td_engine_build_options *o, td_engine_build_report *r) {
    memset(r, 0, sizeof *r);
    double t0 = td_now_s(), t;
    td_model *m = NULL;
    td_session *s = NULL;
    char *kernels = NULL;
    gemm_list gemms = {0};
    td_status st = TD_OK;
    const char *model_dir = NULL;
    tdc_device_info dev;
    if (td_is_dir(o->input)) {
        td_export_options eo = {.model_dir = o->input};
        td_export_summary es;
        if ((st = td_export_build(ctx, &eo, &m, &es)) != TD_OK)
            goto out;
        model_dir = o->input;
    } else if ((st = td_onnx_load(ctx, o->input, &m)) != TD_OK) {
        goto out;
    }
    t = td_now_s();
    r->seconds_export = t - t0;
    if (!is_fused(m)) {
        td_opt_options oo;
        td_opt_options_default(&oo);
        oo.precision = o->precision == TD_PRECISION_FP16 ? TD_OPT_FP16 : o->precision == TD_PRECISION_BF16 ? TD_OPT_BF16 : TD_OPT_FP32;
        if ((st = td_optimize(ctx, m, &oo, NULL)) != TD_OK)
            goto out;
    } else if (o->precision != TD_PRECISION_FP32) {
        st = td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                     "%s is already optimized: build from the standard ONNX or the model directory so the precision "
                     "pass runs once (or build this file with --precision fp32 if it was optimized at its precision)",
                     o->input);
        goto out;
    }
    r->seconds_optimize = td_now_s() - t;
    t = td_now_s();
    td_session_options so;
    td_session_options_init(&so);
    so.threads = 1;
    so.backend = "cpu"; /* graph analysis and planning only: the same planner the CUDA backend mirrors */
    if ((st = td_session_create_model(ctx, m, &so, &s)) != TD_OK)
        goto out;
    /* op coverage and memory planning need no GPU: an op without a CUDA kernel is reported on any machine */
    if ((st = kernel_table(ctx, s, (int)o->precision, &kernels, r)) != TD_OK)
        goto out;
    td_engine_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.precision = (uint32_t)o->precision;
    meta.n_profiles = o->n_profiles;
    for (uint32_t i = 0; i < o->n_profiles; i++) {
        meta.profiles[i] = o->profiles[i];
        if ((st = plan_profile(ctx, s, o->profiles[i].max_b, o->profiles[i].max_s, &meta.profiles[i])) != TD_OK)
            goto out;
        if ((st = collect_gemms(ctx, s, &o->profiles[i], &gemms)) != TD_OK)
            goto out;
    }
    meta.kernels = kernels;
    meta.model_dir = model_dir;
    r->seconds_check_plan = td_now_s() - t;
    if (o->target) {
        dev = *o->target;
    } else if ((st = td_cuda_device(ctx, &dev)) != TD_OK) {
        char why[TD_ERROR_MAX];
        snprintf(why, sizeof why, "%s", td_error_message(ctx));
        st = td_fail(ctx, st,
                     "every op of %s has a CUDA kernel (%d nodes run on the GPU) and activation memory is planned, "
                     "but no engine was written: an engine is compiled for the GPU that builds it, and %s. Run "
                     "`tdeploy build` on the machine with the GPU the engine will run on (`tdeploy optimize` and "
                     "`tdeploy convert --backend cpu` need no GPU)",
                     o->input, r->gpu_nodes, why);
        goto out;
    }
    snprintf(meta.gpu_name, sizeof meta.gpu_name, "%s", dev.name);
    meta.cc_major = (uint32_t)dev.cc_major;
    meta.cc_minor = (uint32_t)dev.cc_minor;
    meta.cuda_runtime = (uint32_t)dev.runtime_version;
    /* GEMM algorithms by measurement (the slow step; the timing cache makes a rebuild measure nothing) */
    if ((st = tune_all(ctx, o, &dev, &gemms, r)) == TD_ERR_DEVICE) {
        /* the GPU would not time a candidate: the engine still works, its GEMMs take the heuristic's choice */
        td_warn("build: GEMM tuning failed, the engine uses cuBLASLt's heuristic instead: %s", td_error_message(ctx));
        st = TD_OK;
        gemms.n = 0;
        r->gemm_measured = r->gemm_cached = 0;
    }
    if (st != TD_OK)
        goto out;
    if (o->tune || !o->target) {
        meta.gemms = gemms.v;
        meta.n_gemms = gemms.n;
    }
    t = td_now_s();
    if ((st = td_engine_write(ctx, o->output, m, &meta)) != TD_OK)
        goto out;
    r->seconds_write = td_now_s() - t;
    for (int i = 0; i < m->graph->n_values; i++) {
        const td_value *v = m->graph->values[i];
        if (v && v->initializer)
            r->weight_bytes += v->initializer->nbytes;
    }
    memcpy(r->profiles, meta.profiles, sizeof r->profiles);
    r->n_profiles = meta.n_profiles;
    snprintf(r->gpu_name, sizeof r->gpu_name, "%s", dev.name);
    r->cc_major = dev.cc_major;
    r->cc_minor = dev.cc_minor;
out:
    r->seconds_total = td_now_s() - t0;
    free(kernels);
    free(gemms.v);
    td_session_free(s);
    td_model_free(m);
    return st;
}
