/* What machine a report was made on: CPU model and features, cores, memory,
 * OS, and the compiler that built tdeploy. Fields that cannot be read are "unknown"/0. */
#ifndef TD_DEPLOY_MACHINE_H
#define TD_DEPLOY_MACHINE_H

#include <stdint.h>

typedef struct td_machine_info {
    char cpu_model[256];    /* /proc/cpuinfo "model name" */
    char cpu_features[256]; /* the SIMD features that matter to tdeploy's kernels, space separated */
    int logical_cores;      /* online processors */
    uint64_t memory_bytes;  /* MemTotal */
    char os[256];           /* /etc/os-release PRETTY_NAME + kernel */
    char arch[64];          /* uname machine */
    char hostname[128];
    char compiler[128];     /* of this build */
} td_machine_info;

void td_machine_info_read(td_machine_info *m);

#endif
