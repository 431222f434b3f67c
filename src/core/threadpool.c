/* Fork-join pool: a job is published by bumping `generation`; workers spin on it
 * for a while, then sleep on `wake`. [0, n) is cut into a few contiguous chunks
 * per participating thread, claimed from the atomic `next` by the caller and the
 * workers alike (so a thread the OS deschedules on a busy machine does not hold
 * the whole job up: the others take its chunks); each worker then decrements
 * `pending`, and the caller waits for pending == 0. */
#include "core/threadpool.h"

#include "core/ctx.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TD_CPU_RELAX() _mm_pause()
#else
#define TD_CPU_RELAX() ((void)0)
#endif

/* ~50-100 us of spinning: long enough to bridge the gap between two kernels of
 * one inference, short enough not to burn a core when the pool goes idle. */
#define TD_SPIN_ITERS 20000

struct td_threadpool {
    int threads;
    pthread_t *workers; /* threads-1 of them */
    int started;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_uint generation;
    atomic_int pending;
    atomic_bool stop;
    /* current job, written by the caller before generation is bumped */
    td_parallel_fn fn;
    void *arg;
    size_t n;
    int parts;           /* threads that take part (the others only acknowledge the job) */
    size_t chunks;       /* [0, n) split into this many contiguous, balanced chunks */
    atomic_size_t next;  /* next unclaimed chunk */
};

/* Chunks per participating thread: enough to rebalance when one thread stalls,
 * few enough that claiming costs nothing next to a chunk of work. */
#define TD_CHUNKS_PER_THREAD 4

static _Thread_local bool tl_in_job;

static void range_of(size_t n, size_t parts, size_t idx, size_t *b, size_t *e) {
    size_t q = n / parts, r = n % parts, i = idx;
    *b = i * q + (i < r ? i : r);
    *e = *b + q + (i < r ? 1 : 0);
}

/* Claim and run chunks of the current job until none is left. */
static void run_chunks(td_threadpool *pool, int thread) {
    for (;;) {
        size_t c = atomic_fetch_add_explicit(&pool->next, 1, memory_order_relaxed);
        if (c >= pool->chunks)
            break;
        size_t b, e;
        range_of(pool->n, pool->chunks, c, &b, &e);
        if (b < e)
            pool->fn(pool->arg, b, e, thread);
    }
}

typedef struct {
    td_threadpool *pool;
    int index;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    td_threadpool *pool = wa.pool;
    /* generation is 0 until the first job, which may be published before this
     * thread gets to run: start from 0, never from a fresh load */
    unsigned seen = 0;
    tl_in_job = true; /* anything a worker calls runs serially */
    for (;;) {
        unsigned g = seen;
        for (int i = 0; i < TD_SPIN_ITERS; i++) {
            g = atomic_load_explicit(&pool->generation, memory_order_acquire);
            if (g != seen || atomic_load_explicit(&pool->stop, memory_order_relaxed))
                break;
            TD_CPU_RELAX();
        }
        if (g == seen && !atomic_load(&pool->stop)) {
            pthread_mutex_lock(&pool->mutex);
            while ((g = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop))
            break;
        seen = g;
        if (wa.index < pool->parts)
            run_chunks(pool, wa.index);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

td_status td_threadpool_create(td_ctx *ctx, int threads, td_threadpool **out) {
    *out = NULL;
    if (threads < 1 || threads > 1024)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "thread pool: %d threads requested; use 1..1024", threads);
    td_threadpool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return td_fail_oom(ctx, sizeof *pool, "thread pool");
    pool->threads = threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->next, 0);
    atomic_init(&pool->stop, false);
    td_status st = TD_OK;
    if (threads > 1) {
        pool->workers = calloc((size_t)threads - 1, sizeof(pthread_t));
        if (!pool->workers) {
            st = td_fail_oom(ctx, sizeof(pthread_t) * ((size_t)threads - 1), "thread pool workers");
            goto out;
        }
        for (int i = 1; i < threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) {
                st = td_fail_oom(ctx, sizeof *wa, "thread pool worker");
                goto out;
            }
            wa->pool = pool;
            wa->index = i;
            if (pthread_create(&pool->workers[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                st = td_fail(ctx, TD_ERR_INTERNAL, "thread pool: could not start worker thread %d of %d", i,
                             threads - 1);
                goto out;
            }
            pool->started++;
        }
    }
out:
    if (st != TD_OK) {
        td_threadpool_free(pool);
        return st;
    }
    *out = pool;
    return TD_OK;
}

void td_threadpool_free(td_threadpool *pool) {
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 0; i < pool->started; i++)
        pthread_join(pool->workers[i], NULL);
    free(pool->workers);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
}

int td_threadpool_threads(const td_threadpool *pool) { return pool ? pool->threads : 1; }

void td_parallel_for_n(td_threadpool *pool, size_t n, int max_threads, td_parallel_fn fn, void *arg) {
    if (n == 0)
        return;
    int parts = pool ? pool->threads : 1;
    if (max_threads < parts)
        parts = max_threads < 1 ? 1 : max_threads;
    if ((size_t)parts > n)
        parts = (int)n;
    if (parts <= 1 || tl_in_job) {
        fn(arg, 0, n, 0);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->parts = parts;
    pool->chunks = (size_t)parts * TD_CHUNKS_PER_THREAD < n ? (size_t)parts * TD_CHUNKS_PER_THREAD : n;
    atomic_store_explicit(&pool->next, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->pending, pool->threads - 1, memory_order_relaxed);
    /* Bump under the mutex so a worker between its check and its wait cannot miss it. */
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);

    tl_in_job = true;
    run_chunks(pool, 0);
    tl_in_job = false;
    /* Workers with index >= parts also decrement pending, so every worker has
     * seen the job (and stopped reading pool->fn/arg) before we return. */
    unsigned spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0) {
        if (++spins < 1u << 14)
            TD_CPU_RELAX();
        else
            sched_yield();
    }
}

void td_parallel_for(td_threadpool *pool, size_t n, td_parallel_fn fn, void *arg) {
    td_parallel_for_n(pool, n, pool ? pool->threads : 1, fn, arg);
}
