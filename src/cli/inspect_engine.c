/* tdeploy inspect MODEL.engine: header (tool, GPU, CUDA, precision), shape
 * profiles with planned activation memory, sections, and the kernel of each
 * node. Parses and verifies the file; needs no GPU. */
#include "cli/cli.h"

#include "core/ctx.h"
#include "engine/engine.h"
#include "engine/timing_cache.h"

#include <stdio.h>
#include <string.h>

static const char *sec_name(uint32_t k) {
    switch (k) {
    case TD_ENGINE_SEC_PLAN: return "plan";
    case TD_ENGINE_SEC_WEIGHTS: return "weights";
    case TD_ENGINE_SEC_KERNELS: return "kernels";
    case TD_ENGINE_SEC_FILES: return "files";
    case TD_ENGINE_SEC_GEMMS: return "gemms";
    default: return "?";
    }
}

static void json_str(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

int td_inspect_engine(const char *path, bool json) {
    td_ctx *ctx = td_ctx_new();
    if (!ctx)
        return TD_EXIT_FAIL;
    td_engine *e = NULL;
    td_status st = td_engine_load(ctx, path, &e);
    if (st != TD_OK) {
        int rc = td_cli_report("inspect", ctx, st);
        td_ctx_free(ctx);
        return rc;
    }
    const td_engine_info *in = &e->info;
    static const char *const prec[] = {"fp32", "fp16", "bf16"};
    const td_engine_section *ks = td_engine_find(in, TD_ENGINE_SEC_KERNELS);
    const char *kt = ks ? (const char *)e->map->data + ks->offset : NULL;
    size_t kn = ks ? (size_t)ks->size : 0;
    if (json) {
        printf("{\"format\": \"tdeploy-engine\", \"format_version\": %u, \"tool_version\": ", in->format_version);
        json_str(in->tool_version, sizeof in->tool_version);
        printf(", \"gpu\": ");
        json_str(in->gpu_name, sizeof in->gpu_name);
        printf(", \"compute_capability\": \"%u.%u\", \"cuda_runtime\": %u, \"precision\": \"%s\", \"bytes\": %llu, "
               "\"profiles\": [", in->cc_major, in->cc_minor, in->cuda_runtime, prec[in->precision],
               (unsigned long long)in->file_size);
        for (uint32_t i = 0; i < in->n_profiles; i++) {
            const td_engine_profile *p = &in->profiles[i];
            printf("%s{\"min\": [%u, %u], \"opt\": [%u, %u], \"max\": [%u, %u], \"arena_bytes\": %llu, "
                   "\"naive_bytes\": %llu}", i ? ", " : "", p->min_b, p->min_s, p->opt_b, p->opt_s, p->max_b, p->max_s,
                   (unsigned long long)p->arena_bytes, (unsigned long long)p->naive_bytes);
        }
        printf("], \"sections\": [");
        for (uint32_t i = 0; i < in->n_sections; i++)
            printf("%s{\"kind\": \"%s\", \"offset\": %llu, \"bytes\": %llu}", i ? ", " : "",
                   sec_name(in->sections[i].kind), (unsigned long long)in->sections[i].offset,
                   (unsigned long long)in->sections[i].size);
        printf("], \"kernels\": ");
        json_str(kt ? kt : "", kn);
        printf(", \"gemm_choices\": [");
        for (uint32_t i = 0; i < in->n_gemms; i++) {
            tdc_gemm_choice g;
            td_tcache_entry_decode(in->gemms + (size_t)i * TD_TCACHE_ENTRY, &g);
            printf("%s{\"dtype\": %d, \"trans_b\": %d, \"epilogue\": %d, \"m_bucket\": %lld, \"n\": %lld, \"k\": %lld, "
                   "\"algo\": %d, \"tile\": %d, \"stages\": %d, \"splitk\": %d, \"us\": %.3f}", i ? ", " : "",
                   g.dtype, g.trans_b, g.epilogue, (long long)g.m, (long long)g.n, (long long)g.k, g.algo_id, g.tile,
                   g.stages, g.splitk, (double)g.us);
        }
        printf("]}\n");
    } else {
        printf("%s: tdeploy engine (format %u), built by tdeploy %s\n", path, in->format_version, in->tool_version);
        printf("  GPU: %s (compute capability %u.%u), CUDA runtime %u.%u\n", in->gpu_name, in->cc_major,
               in->cc_minor, in->cuda_runtime / 1000, in->cuda_runtime % 1000 / 10);
        printf("  precision: %s, %llu bytes\n", prec[in->precision], (unsigned long long)in->file_size);
        for (uint32_t i = 0; i < in->n_profiles; i++) {
            const td_engine_profile *p = &in->profiles[i];
            printf("  profile %u: min %ux%u opt %ux%u max %ux%u, activations %.2f MB planned (naive %.2f MB)\n", i,
                   p->min_b, p->min_s, p->opt_b, p->opt_s, p->max_b, p->max_s, p->arena_bytes / 1e6,
                   p->naive_bytes / 1e6);
        }
        for (uint32_t i = 0; i < in->n_sections; i++)
            printf("  section %-8s offset %10llu  %12llu bytes\n", sec_name(in->sections[i].kind),
                   (unsigned long long)in->sections[i].offset, (unsigned long long)in->sections[i].size);
        if (kt) {
            printf("  kernels (node, op, kernel):\n");
            const char *p = kt, *end = kt + kn;
            while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
                printf("    %.*s\n", (int)l, p);
                p += l + 1;
            }
        }
        if (in->n_gemms) {
            printf("  GEMM algorithms measured at build (dtype, M bucket x N x K, epilogue: cuBLASLt algo/tile/stages/"
                   "split-K, median us):\n");
            for (uint32_t i = 0; i < in->n_gemms; i++) {
                tdc_gemm_choice g;
                td_tcache_entry_decode(in->gemms + (size_t)i * TD_TCACHE_ENTRY, &g);
                printf("    %s %lldx%lldx%lld%s%s: %d/%d/%d/%d, %.1f us\n",
                       g.dtype == 1 ? "fp32" : g.dtype == 10 ? "fp16" : "bf16", (long long)g.m, (long long)g.n,
                       (long long)g.k, g.trans_b ? " (B^T)" : "", g.epilogue ? " + bias" : "", g.algo_id, g.tile,
                       g.stages, g.splitk, (double)g.us);
            }
        } else {
            printf("  GEMM algorithms: not measured (built without a GPU to tune on): cuBLASLt's heuristic at run "
                   "time\n");
        }
    }
    td_engine_free(e);
    td_ctx_free(ctx);
    return TD_EXIT_OK;
}
