/* Thread pool: every index is visited exactly once, ranges are contiguous and
 * balanced, jobs published right after creation are not missed, nested calls
 * run inline, and NULL / 1-thread pools run on the caller. */
#include "core/threadpool.h"
#include "test.h"

#include <stdatomic.h>
#include <string.h>

typedef struct {
    atomic_int *hits;
    atomic_int calls;
    td_threadpool *pool;
    atomic_int nested_ok;
} job;

static void mark(void *arg, size_t b, size_t e, int thread) {
    job *j = arg;
    atomic_fetch_add(&j->calls, 1);
    for (size_t i = b; i < e; i++)
        atomic_fetch_add(&j->hits[i], 1);
}

static void nested_inner(void *arg, size_t b, size_t e, int thread) {
    job *j = arg;
    if (b == 0 && e == 5 && thread == 0)
        atomic_fetch_add(&j->nested_ok, 1);
}

static void nested(void *arg, size_t b, size_t e, int thread) {
    job *j = arg;
    td_parallel_for(j->pool, 5, nested_inner, j); /* must run inline as (0, 5) */
}

int main(void) {
    atomic_int hits[1000];
    for (int round = 0; round < 60; round++) {
        /* create + immediately run: the worker may not have started yet */
        td_threadpool *pool = NULL;
        CHECK(td_threadpool_create(NULL, 2 + round % 3, &pool) == TD_OK);
        size_t n = (size_t)(round * 7 % 1000);
        for (size_t i = 0; i < 1000; i++)
            atomic_init(&hits[i], 0);
        job j = {.hits = hits, .pool = pool};
        atomic_init(&j.calls, 0);
        atomic_init(&j.nested_ok, 0);
        td_parallel_for(pool, n, mark, &j);
        td_parallel_for(pool, n, mark, &j);
        int bad = 0;
        for (size_t i = 0; i < 1000; i++)
            bad += atomic_load(&hits[i]) != (i < n ? 2 : 0);
        CHECK_MSG(bad == 0, "round %d: %d indices visited the wrong number of times", round, bad);
        td_parallel_for(pool, 3, nested, &j);
        CHECK(atomic_load(&j.nested_ok) == 3 || atomic_load(&j.nested_ok) == (int)td_threadpool_threads(pool));
        td_threadpool_free(pool);
    }
    td_threadpool *bad = (td_threadpool *)1;
    CHECK(td_threadpool_create(NULL, 0, &bad) == TD_ERR_INVALID_ARGUMENT && bad == NULL);
    CHECK(td_threadpool_threads(NULL) == 1);
    td_threadpool_free(NULL);
    return td_test_finish("test_threadpool");
}
