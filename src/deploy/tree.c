/* Tree removal and file placement. */
#define _GNU_SOURCE
#include "deploy/tree.h"

#include "core/ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

td_status td_link_or_copy_file(td_ctx *ctx, const char *src, const char *dst) {
    if (link(src, dst) == 0)
        return TD_OK;
    int in = -1, out = -1;
    td_status s = TD_OK;
    char buf[1 << 16];
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
        s = td_fail(ctx, TD_ERR_IO, "cannot open %s: %s", src, strerror(errno));
        goto out;
    }
    if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        s = td_fail(ctx, TD_ERR_IO, "cannot create %s: %s", dst, strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            s = td_fail(ctx, TD_ERR_IO, "reading %s failed: %s", src, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                s = td_fail(ctx, TD_ERR_IO, "writing %s failed: %s (disk full?)", dst, strerror(errno));
                goto out;
            }
            off += w;
        }
    }
    if (fsync(out) != 0)
        s = td_fail(ctx, TD_ERR_IO, "writing %s failed: %s", dst, strerror(errno));
out:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0 && s == TD_OK)
        s = td_fail(ctx, TD_ERR_IO, "closing %s failed: %s", dst, strerror(errno));
    return s;
}

td_status td_tree_move_into_place(td_ctx *ctx, const char *tmp, const char *out_dir) {
    struct stat st;
    if (lstat(out_dir, &st) != 0) {
        if (errno != ENOENT)
            return td_fail(ctx, TD_ERR_IO, "cannot inspect %s: %s", out_dir, strerror(errno));
        if (rename(tmp, out_dir) != 0)
            return td_fail(ctx, TD_ERR_IO, "cannot move %s to %s: %s", tmp, out_dir, strerror(errno));
        return TD_OK;
    }
    if (!S_ISDIR(st.st_mode))
        return td_fail(ctx, TD_ERR_IO, "%s exists and is not a directory; remove it or choose another output", out_dir);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out_dir, RENAME_EXCHANGE) != 0) {
        /* no RENAME_EXCHANGE (old kernel or file system): move the old one aside first */
        char *aside = NULL;
        if (asprintf(&aside, "%s.old.%ld", out_dir, (long)getpid()) < 0)
            return td_fail_oom(ctx, 256, "a path");
        td_status s = TD_OK;
        if (rename(out_dir, aside) != 0)
            s = td_fail(ctx, TD_ERR_IO, "cannot move the old %s aside: %s", out_dir, strerror(errno));
        else if (rename(tmp, out_dir) != 0) {
            s = td_fail(ctx, TD_ERR_IO, "cannot move %s to %s: %s", tmp, out_dir, strerror(errno));
            rename(aside, out_dir); /* put the old one back */
        } else
            s = td_remove_tree(ctx, aside);
        free(aside);
        return s;
    }
    return td_remove_tree(ctx, tmp); /* tmp now holds the old tree */
}
