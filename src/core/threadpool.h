/* Small persistent fork-join thread pool shared by every CPU kernel.
 *
 * td_parallel_for(pool, n, fn, arg) splits [0, n) into a few contiguous,
 * balanced ranges per thread (at most n) and runs fn(arg, begin, end, thread) on
 * each; threads, the caller included, claim ranges as they become free, so one
 * thread may run several ranges (thread picks per-thread scratch, never the
 * range). The call returns when every range is done.
 * Workers spin briefly after a job (kernels of one inference run back to back)
 * and then sleep on a condition variable, so an idle pool costs no CPU.
 *
 * A NULL pool, a 1-thread pool, or a call made from inside a running job (nested
 * parallelism) runs fn(arg, 0, n, 0) on the calling thread. The pool is not
 * re-entrant from several external threads at once: one caller at a time.
 * Ownership: td_threadpool_create gives the caller the pool; td_threadpool_free
 * joins the workers (NULL is harmless). */
#ifndef TD_CORE_THREADPOOL_H
#define TD_CORE_THREADPOOL_H

#include "tdeploy/tdeploy.h"
#include <stddef.h>

typedef struct td_threadpool td_threadpool;

/* fn handles indices [begin, end); thread is 0..threads-1 (0 = the caller), usable
 * to pick per-thread scratch memory. */
typedef void (*td_parallel_fn)(void *arg, size_t begin, size_t end, int thread);

/* threads >= 1 (the caller counts as one; threads-1 workers are started). */
td_status td_threadpool_create(td_ctx *ctx, int threads, td_threadpool **out);
void td_threadpool_free(td_threadpool *pool);
/* Number of threads a job may use (1 for NULL). */
int td_threadpool_threads(const td_threadpool *pool);
void td_parallel_for(td_threadpool *pool, size_t n, td_parallel_fn fn, void *arg);
/* Like td_parallel_for but uses at most max_threads ranges (for jobs too small to split well). */
void td_parallel_for_n(td_threadpool *pool, size_t n, int max_threads, td_parallel_fn fn, void *arg);

#endif
