/* The op registry: (domain, op_type) -> td_op_def over the per-file tables. */
#include "runtime/cpu/ops.h"

#include <string.h>

typedef struct table {
    const td_op_def *ops;
    const int *count;
} table;

static const table tables[] = {
    {td_ops_elementwise, &td_ops_elementwise_count},
    {td_ops_tensor, &td_ops_tensor_count},
    {td_ops_nn, &td_ops_nn_count},
    {td_ops_contrib, &td_ops_contrib_count},
    {td_ops_decoder, &td_ops_decoder_count},
    {td_ops_quant, &td_ops_quant_count},
    {td_ops_nbits, &td_ops_nbits_count},
    {td_ops_kvcache, &td_ops_kvcache_count},
    {td_ops_gather_bq, &td_ops_gather_bq_count},
};
#define N_TABLES (int)(sizeof tables / sizeof tables[0])

int td_op_count(void) {
    int n = 0;
    for (int t = 0; t < N_TABLES; t++)
        n += *tables[t].count;
    return n;
}

const td_op_def *td_op_at(int i) {
    for (int t = 0; t < N_TABLES; t++) {
        if (i < *tables[t].count)
            return &tables[t].ops[i];
        i -= *tables[t].count;
    }
    return NULL;
}

const td_op_def *td_op_find(const char *domain, const char *op_type) {
    if (!domain)
        domain = "";
    for (int t = 0; t < N_TABLES; t++)
        for (int i = 0; i < *tables[t].count; i++) {
            const td_op_def *d = &tables[t].ops[i];
            if (strcmp(d->op_type, op_type) == 0 && strcmp(d->domain, domain) == 0)
                return d;
        }
    return NULL;
}
