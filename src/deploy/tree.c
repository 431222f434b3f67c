/* Tree removal and file placement (copies, never hard links). */
#define _GNU_SOURCE
#include "deploy/tree.h"

#include "core/ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    return rc != 0 && errno != ENOENT ? -1 : 0;
}

td_status td_remove_tree(td_ctx *ctx, const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? TD_OK : td_fail(ctx, TD_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0)
            return td_fail(ctx, TD_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
        return TD_OK;
    }
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return td_fail(ctx, TD_ERR_IO, "cannot remove the directory %s: %s", path, strerror(errno));
    return TD_OK;
}

/* All of in -> out by copy_file_range (the kernel copies, and can share extents on
 * file systems that support it), falling back to read/write where the call is
 * refused (EXDEV before Linux 5.3, EINVAL/ENOSYS/EOPNOTSUPP on some file systems). */
static td_status copy_bytes(td_ctx *ctx, int in, int out, const char *src, const char *dst) {
    bool kernel_copy = true;
    char buf[1 << 16];
    for (;;) {
        ssize_t n;
        if (kernel_copy) {
            n = copy_file_range(in, NULL, out, NULL, (size_t)1 << 30, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
                          errno == EBADF)) {
                kernel_copy = false;
                continue;
            }
        } else {
            n = read(in, buf, sizeof buf);
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return td_fail(ctx, TD_ERR_IO, "copying %s to %s failed: %s (disk full?)", src, dst, strerror(errno));
        if (n == 0)
            return TD_OK;
        for (ssize_t off = 0; !kernel_copy && off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return td_fail(ctx, TD_ERR_IO, "writing %s failed: %s (disk full?)", dst, strerror(errno));
            off += w;
        }
    }
}

td_status td_copy_file(td_ctx *ctx, const char *src, const char *dst) {
    int in = -1, out = -1;
    td_status s = TD_OK;
    /* open() follows symlinks: an HF cache snapshot entry is a relative symlink into blobs/, and the copy
     * must hold the blob's bytes, not a link that dangles elsewhere */
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
        s = td_fail(ctx, TD_ERR_IO, "cannot open %s: %s", src, strerror(errno));
        goto out;
    }
    if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        s = td_fail(ctx, TD_ERR_IO, "cannot create %s: %s", dst, strerror(errno));
        goto out;
    }
    /* a reflink shares the blocks copy-on-write: instant, and a write to either file never reaches the
     * other; where the file system has none (EOPNOTSUPP, EXDEV, EINVAL) the bytes are copied */
    if (ioctl(out, FICLONE, in) != 0 && (s = copy_bytes(ctx, in, out, src, dst)) != TD_OK)
        goto out;
    if (fsync(out) != 0)
        s = td_fail(ctx, TD_ERR_IO, "writing %s failed: %s", dst, strerror(errno));
out:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0 && s == TD_OK)
        s = td_fail(ctx, TD_ERR_IO, "closing %s failed: %s", dst, strerror(errno));
    if (s != TD_OK && out >= 0)
        unlink(dst);
    return s;
}
