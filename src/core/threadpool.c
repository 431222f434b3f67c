/* Fork-join pool. A job is one 64-bit word `work` = (generation, parts, chunks,
 * next chunk): [0, n) is cut into a few contiguous chunks per participating
 * thread, and the caller and the workers claim chunks by compare-and-swap on
 * `work`, so a thread the OS deschedules on a busy machine holds up at most the
 * one chunk it has claimed (the others take the rest), and the caller waits only
 * for `done` == chunks, never for an idle worker to wake up. A claim succeeds
 * only while the word still names the job, and the job's fields stay unchanged
 * until all its chunks are done, so a late worker never reads a half-written job.
 * Workers spin on `work` for a while after a job, then sleep on `wake`. */
#include "core/threadpool.h"

#include "core/ctx.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
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
    _Atomic uint64_t work; /* packed job word, see job_word */
    atomic_size_t done;    /* chunks of the current job finished */
    atomic_bool stop;
    unsigned gen;          /* caller only: generation of the last job */
    /* current job, written by the caller before `work` names it; constant until done == chunks */
    td_parallel_fn fn;
    void *arg;
    size_t n;
};

/* Chunks per participating thread: enough to rebalance when one thread stalls,
 * few enough that claiming costs nothing next to a chunk of work. */
#define TD_CHUNKS_PER_THREAD 4

/* work word: generation (bits 40..63), parts (27..39: threads 0..parts-1 may
 * claim), chunks (13..26), next chunk (0..12). threads <= 1024 keeps chunks
 * <= 4096 < 8192 and parts <= 1024 < 8192. */
#define W_GEN(w) ((unsigned)((w) >> 40))
#define W_PARTS(w) ((int)(((w) >> 27) & 0x1fff))
#define W_CHUNKS(w) ((size_t)(((w) >> 13) & 0x3fff))
#define W_NEXT(w) ((size_t)((w) & 0x1fff))

static uint64_t job_word(unsigned gen, int parts, size_t chunks) {
    return ((uint64_t)(gen & 0xffffffu) << 40) | ((uint64_t)parts << 27) | ((uint64_t)chunks << 13);
}

static _Thread_local bool tl_in_job;

static void range_of(size_t n, size_t parts, size_t idx, size_t *b, size_t *e) {
    size_t q = n / parts, r = n % parts, i = idx;
    *b = i * q + (i < r ? i : r);
    *e = *b + q + (i < r ? 1 : 0);
}

/* Claim and run chunks of job generation gen until none is left (or the word has
 * moved on to a later job). */
static void run_chunks(td_threadpool *pool, unsigned gen, int thread) {
    uint64_t w = atomic_load_explicit(&pool->work, memory_order_acquire);
    for (;;) {
        if (W_GEN(w) != gen || thread >= W_PARTS(w) || W_NEXT(w) >= W_CHUNKS(w))
            return;
        if (!atomic_compare_exchange_weak_explicit(&pool->work, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* w reloaded */
        size_t b, e;
        range_of(pool->n, W_CHUNKS(w), W_NEXT(w), &b, &e);
        if (b < e)
            pool->fn(pool->arg, b, e, thread);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
        w = atomic_load_explicit(&pool->work, memory_order_acquire);
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
    /* the word's generation is 0 until the first job, which may be published
     * before this thread gets to run: start from 0, never from a fresh load */
    unsigned seen = 0;
    tl_in_job = true; /* anything a worker calls runs serially */
    for (;;) {
        unsigned g = seen;
        for (int i = 0; i < TD_SPIN_ITERS; i++) {
            g = W_GEN(atomic_load_explicit(&pool->work, memory_order_acquire));
            if (g != seen || atomic_load_explicit(&pool->stop, memory_order_relaxed))
                break;
            TD_CPU_RELAX();
        }
        if (g == seen && !atomic_load(&pool->stop)) {
            pthread_mutex_lock(&pool->mutex);
            while ((g = W_GEN(atomic_load(&pool->work))) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop))
            break;
        seen = g;
        run_chunks(pool, g, wa.index);
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
    atomic_init(&pool->work, 0);
    atomic_init(&pool->done, 0);
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
    size_t chunks = (size_t)parts * TD_CHUNKS_PER_THREAD < n ? (size_t)parts * TD_CHUNKS_PER_THREAD : n;
    /* The previous job is fully done (we waited for it), so nobody reads these now. */
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    pool->gen = (pool->gen + 1) & 0xffffffu;
    if (pool->gen == 0) /* 0 is "no job yet" for a worker that has not started */
        pool->gen = 1;
    /* Publish under the mutex so a worker between its check and its wait cannot miss it. */
    pthread_mutex_lock(&pool->mutex);
    atomic_store_explicit(&pool->work, job_word(pool->gen, parts, chunks), memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);

    tl_in_job = true;
    run_chunks(pool, pool->gen, 0);
    tl_in_job = false;
    /* Every chunk is claimed; wait for the ones still running on workers. */
    unsigned spins = 0;
    while (atomic_load_explicit(&pool->done, memory_order_acquire) != chunks) {
        if (++spins < 1u << 14)
            TD_CPU_RELAX();
        else
            sched_yield();
    }
}

void td_parallel_for(td_threadpool *pool, size_t n, td_parallel_fn fn, void *arg) {
    td_parallel_for_n(pool, n, pool ? pool->threads : 1, fn, arg);
}
