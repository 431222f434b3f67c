/* Name -> value hash map used by td_graph (open addressing, FNV-1a). */
#ifndef TD_ONNX_VALUE_MAP_H
#define TD_ONNX_VALUE_MAP_H

#include <stdbool.h>
#include <stddef.h>

struct td_value;

typedef struct td_value_map {
    struct td_value **slots; /* NULL = empty, TOMBSTONE = deleted */
    size_t cap;              /* power of two */
    size_t used;             /* live + tombstones */
} td_value_map;

td_value_map *td_value_map_new(void);
void td_value_map_free(td_value_map *m);
struct td_value *td_value_map_get(const td_value_map *m, const char *name);
bool td_value_map_put(td_value_map *m, struct td_value *v); /* false on OOM */
void td_value_map_del(td_value_map *m, const char *name);

#endif
