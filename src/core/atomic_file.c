/* Atomic output files (see fs.h): temp file, staging buffers, O_DIRECT writer
 * thread, fsync, rename.
 *
 * Why this shape: exporting or optimizing a model writes hundreds of MB to GB
 * that the process never reads back. Through the page cache every output page
 * is allocated, copied into, dirtied, written back at fsync and then kept; that
 * kernel work was nearly all of `tdeploy export`'s time, and the writeback only
 * began at the final fsync. With O_DIRECT the staging buffer goes to the disk
 * as it is, one buffer while the next is filled, so the copy and the disk
 * overlap and the fsync finds only the tail and the metadata left. */
#define _GNU_SOURCE
#include "core/fs.h"

#include "core/ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_CHUNK ((size_t)4 << 20) /* one staging buffer, one write request */
#define IO_BUFS 4                  /* up to IO_BUFS - 1 buffers queued while one fills */
#define IO_ALIGN ((size_t)4096)    /* O_DIRECT alignment of memory, file offsets and lengths */

/* A registered source mapping: bytes in [begin, end) are pread from map's file. */
typedef struct io_source {
    const uint8_t *begin, *end;
    td_mapped_file *map; /* a reference is held */
} io_source;

struct td_atomic_io {
    int fd;                /* the temp file */
    uint8_t *buf[IO_BUFS]; /* IO_ALIGN-aligned staging buffers of IO_CHUNK bytes, allocated as needed */
    size_t fill;           /* bytes in the buffer being filled, buf[handed % IO_BUFS] */
    uint64_t handed;       /* full buffers handed over; buffer k lands at file offset k * IO_CHUNK */
    bool started;          /* the first full buffer went out: O_DIRECT and the thread were tried */
    bool direct;           /* O_DIRECT is on; changed only by whoever writes (writer, or main when idle) */
    bool threaded;         /* a writer thread is running */
    bool failed;           /* a write failed: the file must not be committed */
    bool cached;           /* td_atomic_keep_cached: never O_DIRECT */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t done; /* buffers the writer finished (under mu) */
    bool stop;     /* no more buffers will be handed over (under mu) */
    int err;       /* first errno of the writer, ECANCELED on abort (under mu) */
    io_source *src;
    size_t n_src, cap_src;
    const td_mapped_file *open_map; /* whose file src_fd is; src_fd -1 = read through the mapping */
    int src_fd;
};

/* ---------------- writing ---------------- */

static bool set_direct(struct td_atomic_io *io, bool on) {
    int fl = fcntl(io->fd, F_GETFL);
    if (fl < 0 || fcntl(io->fd, F_SETFL, on ? fl | O_DIRECT : fl & ~O_DIRECT) != 0)
        return false;
    io->direct = on;
    return true;
}

/* Write n bytes at off; 0 or an errno. An O_DIRECT write the file system or
 * device refuses (EINVAL: no O_DIRECT support, larger alignment needed, a short
 * write left the offset unaligned) is retried through the page cache, which is
 * then used for the rest of the file. */
static int write_all(struct td_atomic_io *io, const uint8_t *p, size_t n, uint64_t off) {
    while (n) {
        ssize_t w = pwrite(io->fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EINVAL && io->direct) {
            if (!set_direct(io, false))
                return errno ? errno : EIO;
            continue;
        }
        if (w < 0)
            return errno;
        if (w == 0)
            return EIO;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* One full staging buffer. Through the page cache, writeback of it starts now
 * (a hint: errors come back from the final fsync) so it overlaps the copying. */
static int write_chunk(struct td_atomic_io *io, uint64_t k) {
    uint64_t off = k * IO_CHUNK;
    int e = write_all(io, io->buf[k % IO_BUFS], IO_CHUNK, off);
    if (!e && !io->direct)
        sync_file_range(io->fd, (off_t)off, (off_t)IO_CHUNK, SYNC_FILE_RANGE_WRITE);
    return e;
}

static void *writer_main(void *arg) {
    struct td_atomic_io *io = arg;
    pthread_mutex_lock(&io->mu);
    for (;;) {
        while (io->done == io->handed && !io->stop)
            pthread_cond_wait(&io->cv, &io->mu);
        if (io->done == io->handed)
            break; /* stopped and drained */
        uint64_t k = io->done;
        bool skip = io->err != 0;
        pthread_mutex_unlock(&io->mu);
        int e = skip ? 0 : write_chunk(io, k);
        pthread_mutex_lock(&io->mu);
        if (e && !io->err)
            io->err = e;
        io->done++;
        pthread_cond_broadcast(&io->cv);
    }
    pthread_mutex_unlock(&io->mu);
    return NULL;
}

/* Stop the writer after the queued buffers (skipped when cancel); its errno or 0. */
static int stop_writer(struct td_atomic_io *io, bool cancel) {
    if (!io->threaded)
        return 0;
    pthread_mutex_lock(&io->mu);
    io->stop = true;
    if (cancel && !io->err)
        io->err = ECANCELED;
    pthread_cond_broadcast(&io->cv);
    pthread_mutex_unlock(&io->mu);
    pthread_join(io->thread, NULL);
    io->threaded = false;
    return io->err;
}

static td_status write_failed(td_ctx *ctx, td_atomic_file *af, int e) {
    af->io->failed = true;
    return td_fail(ctx, TD_ERR_IO, "writing %s failed: %s (disk full?)", af->final_path, strerror(e));
}

static td_status ensure_buffer(td_ctx *ctx, struct td_atomic_io *io) {
    uint8_t **b = &io->buf[io->handed % IO_BUFS];
    if (!*b && !(*b = aligned_alloc(IO_ALIGN, IO_CHUNK))) {
        io->failed = true;
        return td_fail_oom(ctx, IO_CHUNK, "a file write buffer");
    }
    return TD_OK;
}

/* The buffer being filled is full: queue it (or write it when there is no
 * writer thread) and make the next one ready. */
static td_status hand_over(td_ctx *ctx, td_atomic_file *af) {
    struct td_atomic_io *io = af->io;
    if (!io->started) {
        io->started = true;
        if (!io->cached)
            set_direct(io, true); /* stays off where the file system has no O_DIRECT */
        /* signals stay with the caller's threads (handlers such as convert's SIGINT flag, EINTR) */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        io->threaded = pthread_create(&io->thread, NULL, writer_main, io) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    int e = 0;
    if (io->threaded) {
        pthread_mutex_lock(&io->mu);
        io->handed++;
        pthread_cond_broadcast(&io->cv);
        while (io->handed - io->done >= IO_BUFS && !io->err)
            pthread_cond_wait(&io->cv, &io->mu);
        e = io->err;
        pthread_mutex_unlock(&io->mu);
    } else {
        e = write_chunk(io, io->handed);
        io->handed++;
        io->done = io->handed;
    }
    io->fill = 0;
    if (e)
        return write_failed(ctx, af, e);
    return ensure_buffer(ctx, io);
}

static td_status copy_in(td_ctx *ctx, td_atomic_file *af, const uint8_t *p, size_t n) {
    struct td_atomic_io *io = af->io;
    while (n) {
        size_t k = IO_CHUNK - io->fill < n ? IO_CHUNK - io->fill : n;
        memcpy(io->buf[io->handed % IO_BUFS] + io->fill, p, k);
        io->fill += k;
        p += k;
        n -= k;
        if (io->fill == IO_CHUNK)
            TD_TRY(hand_over(ctx, af));
    }
    return TD_OK;
}

/* ---------------- sources ---------------- */

/* The source whose range holds [p, p + n), or NULL. Sources are sorted by begin
 * and do not overlap (distinct mappings). */
static const io_source *find_source(const struct td_atomic_io *io, const uint8_t *p, size_t n) {
    size_t lo = 0, hi = io->n_src;
    while (lo < hi) { /* first source with begin > p */
        size_t mid = lo + (hi - lo) / 2;
        if (io->src[mid].begin <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const io_source *s = &io->src[lo - 1];
    return p < s->end && n <= (size_t)(s->end - p) ? s : NULL;
}

/* src_fd for map, opened on first use. -1 when the path cannot be opened or no
 * longer names the mapped file: then the mapping is read instead. */
static int source_fd(struct td_atomic_io *io, const td_mapped_file *map) {
    if (io->open_map == map)
        return io->src_fd;
    if (io->src_fd >= 0)
        close(io->src_fd);
    io->open_map = map;
    io->src_fd = open(map->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (io->src_fd >= 0 &&
        (fstat(io->src_fd, &st) != 0 || (uint64_t)st.st_dev != map->dev || (uint64_t)st.st_ino != map->ino)) {
        close(io->src_fd);
        io->src_fd = -1;
    }
    return io->src_fd;
}

static td_status read_in(td_ctx *ctx, td_atomic_file *af, const io_source *src, const uint8_t *p, size_t n) {
    struct td_atomic_io *io = af->io;
    const td_mapped_file *map = src->map;
    int fd = source_fd(io, map);
    if (fd < 0)
        return copy_in(ctx, af, p, n);
    uint64_t off = (uint64_t)(p - map->data);
    while (n) {
        size_t k = IO_CHUNK - io->fill < n ? IO_CHUNK - io->fill : n;
        ssize_t r = pread(fd, io->buf[io->handed % IO_BUFS] + io->fill, k, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            io->failed = true;
            if (r == 0)
                return td_fail(ctx, TD_ERR_IO,
                               "%s ends at byte %llu but was %zu bytes when it was opened: it was truncated or "
                               "rewritten while tdeploy read it; run again once nothing else writes it",
                               map->path, (unsigned long long)off, map->size);
            return td_fail(ctx, TD_ERR_IO, "reading %s at byte %llu failed: %s", map->path, (unsigned long long)off,
                           strerror(errno));
        }
        io->fill += (size_t)r;
        off += (uint64_t)r;
        n -= (size_t)r;
        if (io->fill == IO_CHUNK)
            TD_TRY(hand_over(ctx, af));
    }
    return TD_OK;
}

td_status td_atomic_add_source(td_ctx *ctx, td_atomic_file *af, td_mapped_file *m) {
    struct td_atomic_io *io = af->io;
    if (!m || !m->data || !m->size || !m->path || (m->dev == 0 && m->ino == 0))
        return TD_OK; /* anonymous memory: nothing to read from */
    size_t at = 0;
    while (at < io->n_src && io->src[at].begin < m->data)
        at++;
    if (at < io->n_src && io->src[at].map == m)
        return TD_OK;
    if (io->n_src == io->cap_src) {
        size_t cap = io->cap_src ? io->cap_src * 2 : 8;
        io_source *p = realloc(io->src, cap * sizeof *p);
        if (!p)
            return td_fail_oom(ctx, cap * sizeof *p, "the list of source files");
        io->src = p;
        io->cap_src = cap;
    }
    memmove(&io->src[at + 1], &io->src[at], (io->n_src - at) * sizeof *io->src);
    io->src[at] = (io_source){m->data, m->data + m->size, td_mapped_file_ref(m)};
    io->n_src++;
    return TD_OK;
}

/* ---------------- the atomic file ---------------- */

td_status td_atomic_open(td_ctx *ctx, td_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->final_path = strdup(path);
    af->tmp_path = malloc(n);
    struct td_atomic_io *io = af->io = calloc(1, sizeof *io);
    if (io) {
        io->fd = io->src_fd = -1;
        pthread_mutex_init(&io->mu, NULL);
        pthread_cond_init(&io->cv, NULL);
    }
    if (!af->final_path || !af->tmp_path || !io || ensure_buffer(ctx, io) != TD_OK) {
        td_atomic_abort(af);
        return td_fail_oom(ctx, IO_CHUNK, "an output file");
    }
    snprintf(af->tmp_path, n, "%s.tmp.XXXXXX", path);
    io->fd = mkostemp(af->tmp_path, O_CLOEXEC);
    if (io->fd < 0) {
        td_status s = td_fail(ctx, TD_ERR_IO, "cannot create a temporary file next to %s: %s (is the directory writable?)",
                              path, strerror(errno));
        free(af->tmp_path);
        af->tmp_path = NULL; /* nothing to remove */
        td_atomic_abort(af);
        return s;
    }
    fchmod(io->fd, 0644);
    return TD_OK;
}

void td_atomic_keep_cached(td_atomic_file *af) {
    if (af->io)
        af->io->cached = true;
}

td_status td_atomic_write(td_ctx *ctx, td_atomic_file *af, const void *data, size_t n) {
    struct td_atomic_io *io = af->io;
    if (io->failed)
        return td_fail(ctx, TD_ERR_IO, "writing %s failed earlier", af->final_path);
    if (n == 0)
        return TD_OK;
    const io_source *src = find_source(io, data, n);
    return src ? read_in(ctx, af, src, data, n) : copy_in(ctx, af, data, n);
}

/* What is left in the last buffer: its aligned part still with O_DIRECT, the
 * rest through the page cache. */
static int write_tail(struct td_atomic_io *io) {
    uint64_t off = io->handed * IO_CHUNK;
    const uint8_t *p = io->buf[io->handed % IO_BUFS];
    size_t aligned = io->direct ? io->fill & ~(IO_ALIGN - 1) : 0;
    int e = aligned ? write_all(io, p, aligned, off) : 0;
    if (!e && io->direct && !set_direct(io, false))
        e = errno ? errno : EIO;
    if (!e)
        e = write_all(io, p + aligned, io->fill - aligned, off + aligned);
    return e;
}

td_status td_atomic_commit(td_ctx *ctx, td_atomic_file *af) {
    struct td_atomic_io *io = af->io;
    td_status s = TD_OK;
    if (io->failed) {
        s = td_fail(ctx, TD_ERR_IO, "writing %s failed earlier; not committing it", af->final_path);
        goto out;
    }
    int e = stop_writer(io, false);
    if (!e)
        e = write_tail(io);
    if (!e && fsync(io->fd) != 0)
        e = errno;
    if (e) {
        s = write_failed(ctx, af, e);
        goto out;
    }
    int fd = io->fd;
    io->fd = -1;
    if (close(fd) != 0) {
        s = td_fail(ctx, TD_ERR_IO, "closing %s failed: %s", af->final_path, strerror(errno));
        goto out;
    }
    if (rename(af->tmp_path, af->final_path) != 0) {
        s = td_fail(ctx, TD_ERR_IO, "cannot rename %s to %s: %s", af->tmp_path, af->final_path, strerror(errno));
        goto out;
    }
    free(af->tmp_path);
    af->tmp_path = NULL; /* now owned by the final name: nothing to remove */
    char *dir = td_path_dirname(af->final_path);
    if (dir) {
        s = td_fsync_dir(ctx, dir);
        free(dir);
    }
out:
    td_atomic_abort(af);
    return s;
}

void td_atomic_abort(td_atomic_file *af) {
    struct td_atomic_io *io = af->io;
    if (io) {
        stop_writer(io, true);
        if (io->fd >= 0)
            close(io->fd);
        if (io->src_fd >= 0)
            close(io->src_fd);
        for (int i = 0; i < IO_BUFS; i++)
            free(io->buf[i]);
        for (size_t i = 0; i < io->n_src; i++)
            td_mapped_file_unref(io->src[i].map);
        free(io->src);
        pthread_cond_destroy(&io->cv);
        pthread_mutex_destroy(&io->mu);
        free(io);
    }
    if (af->tmp_path)
        unlink(af->tmp_path);
    free(af->tmp_path);
    free(af->final_path);
    memset(af, 0, sizeof *af);
}
