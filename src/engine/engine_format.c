/* Engine file header, profile table and section table: encoding and the
 * hostile-input parser (layout in docs/formats.md). */
#include "engine/engine.h"

#include "core/le_bytes.h"
#include "core/checked.h"
#include "core/sha256.h"
#include "engine/timing_cache.h"

#include <stdio.h>
#include <string.h>


bool td_engine_sniff(const void *data, size_t len) {
    return len >= 8 && memcmp(data, TD_ENGINE_MAGIC, 8) == 0;
}

bool td_engine_str_field(const uint8_t *p, size_t n, char *out) {
    size_t l = strnlen((const char *)p, n);
    if (l >= n)
        return false;
    for (size_t i = l; i < n; i++)
        if (p[i])
            return false;
    memcpy(out, p, l + 1);
    return true;
}

#define REBUILD "rebuild it with `tdeploy build MODEL -o ENGINE`"

td_status td_engine_parse(td_ctx *ctx, const uint8_t *d, size_t len, const char *what, td_engine_info *out) {
    memset(out, 0, sizeof *out);
    if (len < TD_ENGINE_HEADER_FIXED || memcmp(d, TD_ENGINE_MAGIC, 8) != 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s is not a tdeploy engine file (%s)", what,
                       len < 8 || memcmp(d, TD_ENGINE_MAGIC, 8) != 0 ? "no TDENGINE magic" : "shorter than its 256-byte header");
    out->format_version = td_rd_le32(d + 8);
    if (out->format_version != TD_ENGINE_FORMAT_VERSION)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s has engine format version %u; this tdeploy (%s) reads version %d: " REBUILD, what,
                       out->format_version, td_version(), TD_ENGINE_FORMAT_VERSION);
    uint32_t header_bytes = td_rd_le32(d + 12);
    if (!td_engine_str_field(d + 16, 16, out->tool_version) || !td_engine_str_field(d + 32, 64, out->gpu_name))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: corrupted header (tool version or GPU name is not a NUL-terminated "
                       "string): " REBUILD, what);
    out->cc_major = td_rd_le32(d + 96);
    out->cc_minor = td_rd_le32(d + 100);
    out->cuda_runtime = td_rd_le32(d + 104);
    out->precision = td_rd_le32(d + 108);
    out->n_profiles = td_rd_le32(d + 112);
    out->n_sections = td_rd_le32(d + 116);
    out->file_size = td_rd_le64(d + 120);
    memcpy(out->sha256, d + 128, 32);
    for (int i = 160; i < TD_ENGINE_HEADER_FIXED; i++)
        if (d[i])
            return td_fail(ctx, TD_ERR_FORMAT, "%s: corrupted header (reserved byte %d is not zero): " REBUILD, what, i);
    if (out->file_size != len)
        return td_fail(ctx, TD_ERR_FORMAT, "%s is %s: its header says %llu bytes but the file has %zu: " REBUILD, what,
                       out->file_size > len ? "truncated" : "longer than written", (unsigned long long)out->file_size,
                       len);
    if (out->precision > 2)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: unknown precision code %u: " REBUILD, what, out->precision);
    if (out->n_profiles < 1 || out->n_profiles > TD_ENGINE_MAX_PROFILES || out->n_sections < 1 ||
        out->n_sections > TD_ENGINE_MAX_SECTIONS)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: %u profiles and %u sections (allowed 1..%d each): " REBUILD, what,
                       out->n_profiles, out->n_sections, TD_ENGINE_MAX_PROFILES);
    uint64_t want = TD_ENGINE_HEADER_FIXED + (uint64_t)out->n_profiles * TD_ENGINE_PROFILE_BYTES +
                    (uint64_t)out->n_sections * TD_ENGINE_SECTION_BYTES;
    if (header_bytes != want || want > len)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: header size %u does not match %u profiles and %u sections: " REBUILD,
                       what, header_bytes, out->n_profiles, out->n_sections);
    const uint8_t *p = d + TD_ENGINE_HEADER_FIXED;
    for (uint32_t i = 0; i < out->n_profiles; i++, p += TD_ENGINE_PROFILE_BYTES) {
        td_engine_profile *pr = &out->profiles[i];
        pr->min_b = td_rd_le32(p), pr->min_s = td_rd_le32(p + 4), pr->opt_b = td_rd_le32(p + 8), pr->opt_s = td_rd_le32(p + 12);
        pr->max_b = td_rd_le32(p + 16), pr->max_s = td_rd_le32(p + 20);
        pr->arena_bytes = td_rd_le64(p + 24), pr->naive_bytes = td_rd_le64(p + 32);
        if (td_rd_le64(p + 40) || pr->min_b < 1 || pr->min_s < 1 || pr->min_b > pr->opt_b || pr->opt_b > pr->max_b ||
            pr->min_s > pr->opt_s || pr->opt_s > pr->max_s || pr->max_b > TD_ENGINE_MAX_DIM ||
            pr->max_s > TD_ENGINE_MAX_DIM)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: profile %u is invalid (min %ux%u opt %ux%u max %ux%u): " REBUILD,
                           what, i, pr->min_b, pr->min_s, pr->opt_b, pr->opt_s, pr->max_b, pr->max_s);
    }
    for (uint32_t i = 0; i < out->n_sections; i++, p += TD_ENGINE_SECTION_BYTES) {
        td_engine_section *s = &out->sections[i];
        s->kind = td_rd_le32(p);
        s->offset = td_rd_le64(p + 8);
        s->size = td_rd_le64(p + 16);
        uint64_t end;
        if (td_rd_le32(p + 4) || td_rd_le64(p + 24))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: section %u has non-zero reserved fields: " REBUILD, what, i);
        if (s->kind < 1 || s->kind > TD_ENGINE_SEC_MAX)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: section %u has unknown kind %u: " REBUILD, what, i, s->kind);
        if (s->offset % TD_ENGINE_ALIGN || s->offset < header_bytes || !td_add_u64(s->offset, s->size, &end) ||
            end > len)
            return td_fail(ctx, TD_ERR_FORMAT,
                           "%s: section %u (kind %u) at offset %llu, %llu bytes, lies outside the file's %zu bytes or "
                           "is misaligned: " REBUILD, what, i, s->kind, (unsigned long long)s->offset,
                           (unsigned long long)s->size, len);
        for (uint32_t j = 0; j < i; j++) {
            const td_engine_section *o = &out->sections[j];
            if (o->kind == s->kind)
                return td_fail(ctx, TD_ERR_FORMAT, "%s: section kind %u appears twice: " REBUILD, what, s->kind);
            if (s->size && o->size && s->offset < o->offset + o->size && o->offset < end)
                return td_fail(ctx, TD_ERR_FORMAT, "%s: sections %u and %u overlap: " REBUILD, what, j, i);
        }
    }
    if (!td_engine_find(out, TD_ENGINE_SEC_PLAN) || !td_engine_find(out, TD_ENGINE_SEC_WEIGHTS))
        return td_fail(ctx, TD_ERR_FORMAT, "%s has no plan or no weights section: " REBUILD, what);
    const td_engine_section *g = td_engine_find(out, TD_ENGINE_SEC_GEMMS);
    if (g) { /* u32 count, u32 zero, count records of TD_TCACHE_ENTRY bytes */
        const uint8_t *q = d + g->offset;
        uint32_t n = g->size >= 8 ? td_rd_le32(q) : 0;
        if (g->size < 8 || td_rd_le32(q + 4) || n > TD_TCACHE_MAX_ENTRIES || g->size != 8 + (uint64_t)n * TD_TCACHE_ENTRY)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: the GEMM choices section (%llu bytes) is damaged: " REBUILD, what,
                           (unsigned long long)g->size);
        for (uint32_t i = 0; i < n; i++) {
            tdc_gemm_choice e;
            char why[96];
            td_tcache_entry_decode(q + 8 + (size_t)i * TD_TCACHE_ENTRY, &e);
            if (td_rd_le32(q + 8 + (size_t)i * TD_TCACHE_ENTRY + 12) || !td_tcache_entry_ok(&e, why, sizeof why))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: GEMM choice %u is invalid (%s): " REBUILD, what, i,
                               td_rd_le32(q + 8 + (size_t)i * TD_TCACHE_ENTRY + 12) ? "reserved field is not zero" : why);
        }
        out->gemms = q + 8;
        out->n_gemms = n;
    }
    return TD_OK;
}

td_status td_engine_verify(td_ctx *ctx, const uint8_t *d, size_t len, const char *what, const td_engine_info *info) {
    td_sha256 h;
    uint8_t dig[32];
    td_sha256_init(&h);
    td_sha256_update(&h, d, 128);
    td_sha256_update(&h, d + 160, len - 160);
    td_sha256_final(&h, dig);
    if (memcmp(dig, info->sha256, 32) != 0)
        return td_fail(ctx, TD_ERR_FORMAT, "%s is corrupted: its SHA-256 does not match the one in its header (the file "
                       "was modified or damaged after it was built): " REBUILD, what);
    return TD_OK;
}

const td_engine_section *td_engine_find(const td_engine_info *info, uint32_t kind) {
    for (uint32_t i = 0; i < info->n_sections; i++)
        if (info->sections[i].kind == kind)
            return &info->sections[i];
    return NULL;
}

int td_engine_profile_for(const td_engine_info *info, int64_t b, int64_t s) {
    for (uint32_t i = 0; i < info->n_profiles; i++) {
        const td_engine_profile *p = &info->profiles[i];
        if (b >= p->min_b && b <= p->max_b && s >= p->min_s && s <= p->max_s)
            return (int)i;
    }
    return -1;
}

void td_engine_profiles_str(const td_engine_info *info, char *buf, size_t n) {
    size_t pos = 0;
    buf[0] = 0;
    for (uint32_t i = 0; i < info->n_profiles && pos < n; i++) {
        const td_engine_profile *p = &info->profiles[i];
        int w = snprintf(buf + pos, n - pos, "%sprofile %u: min %ux%u opt %ux%u max %ux%u", i ? "; " : "", i, p->min_b,
                         p->min_s, p->opt_b, p->opt_s, p->max_b, p->max_s);
        if (w < 0)
            break;
        pos += (size_t)w;
    }
}
