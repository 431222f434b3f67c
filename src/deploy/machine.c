/* Machine description for reports, from /proc and uname. */
#define _GNU_SOURCE
#include "deploy/machine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

/* Value of the first "key<spaces>: value" line of a /proc-style file. */
static int read_keyed_line(const char *path, const char *key, char *out, size_t out_len) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    size_t klen = strlen(key);
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) != 0)
            continue;
        char *p = line + klen;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ':' && *p != '=')
            continue;
        p++;
        while (*p == ' ' || *p == '\t' || *p == '"')
            p++;
        size_t n = strcspn(p, "\"\n");
        if (n >= out_len)
            n = out_len - 1;
        memcpy(out, p, n);
        out[n] = '\0';
        found = 1;
    }
    fclose(f);
    return found;
}

static int has_flag(const char *flags, const char *name) {
    size_t n = strlen(name);
    for (const char *p = flags; (p = strstr(p, name)); p += n)
        if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0' || p[n] == '\n'))
            return 1;
    return 0;
}

void td_machine_info_read(td_machine_info *m) {
    memset(m, 0, sizeof *m);
    if (!read_keyed_line("/proc/cpuinfo", "model name", m->cpu_model, sizeof m->cpu_model))
        snprintf(m->cpu_model, sizeof m->cpu_model, "unknown");
    static char flags[8192];
    if (read_keyed_line("/proc/cpuinfo", "flags", flags, sizeof flags)) {
        static const char *interesting[] = {"sse4_2",      "avx",        "avx2",       "fma",      "f16c",
                                            "avx512f",     "avx512bw",   "avx512vl",   "avx512_vnni", "avx512_bf16",
                                            "avx512_fp16", "amx_tile",   "amx_bf16",   "amx_int8"};
        for (size_t i = 0; i < sizeof interesting / sizeof *interesting; i++)
            if (has_flag(flags, interesting[i])) {
                size_t used = strlen(m->cpu_features);
                snprintf(m->cpu_features + used, sizeof m->cpu_features - used, "%s%s", used ? " " : "",
                         interesting[i]);
            }
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    m->logical_cores = cores > 0 ? (int)cores : 0;
    char mem[64];
    if (read_keyed_line("/proc/meminfo", "MemTotal", mem, sizeof mem))
        m->memory_bytes = strtoull(mem, NULL, 10) * 1024ull; /* the value is in kB */
    char pretty[160] = "";
    read_keyed_line("/etc/os-release", "PRETTY_NAME", pretty, sizeof pretty);
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(m->os, sizeof m->os, "%s%s%s %s", pretty, *pretty ? ", " : "", u.sysname, u.release);
        snprintf(m->arch, sizeof m->arch, "%s", u.machine);
    } else {
        snprintf(m->os, sizeof m->os, "%s", *pretty ? pretty : "unknown");
        snprintf(m->arch, sizeof m->arch, "unknown");
    }
    if (gethostname(m->hostname, sizeof m->hostname - 1) != 0)
        snprintf(m->hostname, sizeof m->hostname, "unknown");
#if defined(__clang__)
    snprintf(m->compiler, sizeof m->compiler, "clang %d.%d.%d", __clang_major__, __clang_minor__,
             __clang_patchlevel__);
#elif defined(__GNUC__)
    snprintf(m->compiler, sizeof m->compiler, "gcc %d.%d.%d", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#else
    snprintf(m->compiler, sizeof m->compiler, "unknown");
#endif
}
