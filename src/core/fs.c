/* Whole-file writes and reads, path joining and file mapping (the atomic file
 * itself is in atomic_file.c). */
#define _GNU_SOURCE
#include "core/fs.h"

#include "core/ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

td_status td_write_file_atomic(td_ctx *ctx, const char *path, const void *data, size_t n) {
    td_atomic_file af;
    TD_TRY(td_atomic_open(ctx, &af, path));
    td_status s = td_atomic_write(ctx, &af, data, n);
    if (s != TD_OK) {
        td_atomic_abort(&af);
        return s;
    }
    return td_atomic_commit(ctx, &af);
}

td_status td_read_file(td_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *out_len) {
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; the
     * fstat below refuses anything that is not a regular file (reads of one never block). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return td_fail(ctx, errno == ENOENT ? TD_ERR_NOT_FOUND : TD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    td_status s = TD_OK;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        s = td_fail(ctx, TD_ERR_IO, "%s is not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s is %lld bytes, more than the %zu allowed for this kind of file", path,
                    (long long)st.st_size, max_bytes);
        goto out;
    }
    size_t n = (size_t)st.st_size;
    buf = malloc(n + 1);
    if (!buf) {
        s = td_fail_oom(ctx, n + 1, path);
        goto out;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            s = td_fail(ctx, TD_ERR_IO, "reading %s failed after %zu bytes", path, got);
            goto out;
        }
        got += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    if (out_len)
        *out_len = n;
out:
    free(buf);
    close(fd);
    return s;
}

static bool has_dotdot_component(const char *p) {
    const char *s = p;
    while (*s) {
        const char *e = s;
        while (*e && *e != '/' && *e != '\\')
            e++;
        if (e - s == 2 && s[0] == '.' && s[1] == '.')
            return true;
        s = *e ? e + 1 : e;
    }
    return false;
}

td_status td_path_join(td_ctx *ctx, const char *dir, const char *rel, bool safe, char **out) {
    *out = NULL;
    if (safe) {
        if (rel[0] == '/' || rel[0] == '\\' || (rel[0] && rel[1] == ':'))
            return td_fail(ctx, TD_ERR_FORMAT, "path '%s' is absolute; only paths relative to %s are allowed", rel, dir);
        if (has_dotdot_component(rel))
            return td_fail(ctx, TD_ERR_FORMAT, "path '%s' contains '..'; it must stay inside %s", rel, dir);
        if (rel[0] == '\0')
            return td_fail(ctx, TD_ERR_FORMAT, "empty path relative to %s", dir);
    }
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);
    if (!p)
        return td_fail_oom(ctx, n, "a path");
    if (dir[0] == '\0' || rel[0] == '/')
        snprintf(p, n, "%s", rel);
    else
        snprintf(p, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", rel);
    *out = p;
    return TD_OK;
}

char *td_path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

bool td_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool td_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

td_status td_fsync_dir(td_ctx *ctx, const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return td_fail(ctx, TD_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    int r = fsync(fd);
    close(fd);
    if (r != 0 && errno != EINVAL) /* some file systems do not sync directories */
        return td_fail(ctx, TD_ERR_IO, "fsync of directory %s failed: %s", dir, strerror(errno));
    return TD_OK;
}

td_status td_map_file(td_ctx *ctx, const char *path, td_mapped_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return td_fail(ctx, errno == ENOENT ? TD_ERR_NOT_FOUND : TD_ERR_IO, "cannot open %s: %s", path,
                       strerror(errno));
    struct stat st;
    td_status s = TD_OK;
    td_mapped_file *m = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        s = td_fail(ctx, TD_ERR_IO, "%s is not a regular file", path);
        goto out;
    }
    m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        s = td_fail_oom(ctx, sizeof *m, "a file mapping");
        goto out;
    }
    m->size = (size_t)st.st_size;
    m->refcount = 1;
    m->dev = (uint64_t)st.st_dev;
    m->ino = (uint64_t)st.st_ino;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            s = td_fail(ctx, TD_ERR_IO, "cannot mmap %s: %s", path, strerror(errno));
            goto out;
        }
        m->data = p;
    }
    *out = m;
    m = NULL;
out:
    if (m) {
        free(m->path);
        free(m);
    }
    close(fd);
    return s;
}

td_mapped_file *td_mapped_file_ref(td_mapped_file *m) {
    if (m)
        m->refcount++;
    return m;
}

void td_mapped_file_unref(td_mapped_file *m) {
    if (!m || --m->refcount > 0)
        return;
    if (m->data)
        munmap((void *)m->data, m->size);
    free(m->path);
    free(m);
}
