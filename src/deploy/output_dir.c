/* Output folders tdeploy owns: marker, ownership check, swap in (output_dir.h). */
#define _GNU_SOURCE
#include "deploy/output_dir.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "deploy/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The first line of every config.pbtxt tdeploy writes starts with this (triton.c put_header). */
#define TRITON_HEADER "# written by tdeploy "

/* dir holds a marker written by command: its first line is "tdeploy VERSION COMMAND". A
 * triton-repo repository is not a convert output (replacing it whole would drop its models). */
static bool has_marker(const char *dir, const char *command) {
    char p[4096], line[256];
    if (snprintf(p, sizeof p, "%s/%s", dir, TD_OUTPUT_MARKER) >= (int)sizeof p)
        return false;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, line, sizeof line - 1);
    close(fd);
    if (n <= 0)
        return false;
    line[n] = '\0';
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = '\0';
    const char *last = strrchr(line, ' ');
    return strncmp(line, "tdeploy ", 8) == 0 && last && strcmp(last + 1, command) == 0;
}

/* 1: empty, 0: has entries, -1: cannot be read (errno set) */
static int dir_is_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int empty = 1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

td_status td_output_check_replaceable(td_ctx *ctx, const char *path, const char *command, bool force) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return TD_OK;
        return td_fail(ctx, TD_ERR_IO, "cannot inspect the output %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "the output %s exists and is not a directory%s; remove it or choose another output folder",
                       path, S_ISLNK(st.st_mode) ? " (a symlink)" : "");
    if (force || has_marker(path, command))
        return TD_OK;
    int empty = dir_is_empty(path);
    if (empty < 0)
        return td_fail(ctx, TD_ERR_IO, "cannot read the output folder %s: %s", path, strerror(errno));
    if (empty)
        return TD_OK;
    return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                   "the output folder %s has files tdeploy %s did not write (no %s marker of it); it was left "
                   "untouched: choose another output folder, or pass --force to replace it and everything in it",
                   path, command, TD_OUTPUT_MARKER);
}

td_status td_output_write_marker(td_ctx *ctx, const char *dir, const char *command) {
    char *p = NULL, *text = NULL;
    TD_TRY(td_path_join(ctx, dir, TD_OUTPUT_MARKER, false, &p));
    int n = asprintf(&text,
                     "tdeploy %s %s\n"
                     "This folder was written by tdeploy; the next tdeploy run with this output replaces it.\n",
                     td_version(), command);
    td_status s = n < 0 ? td_fail_oom(ctx, 256, "the marker file") : td_write_file_atomic(ctx, p, text, (size_t)n);
    if (n < 0)
        text = NULL;
    free(text);
    free(p);
    return s;
}

bool td_triton_model_is_tdeploys(const char *dir) {
    char p[4096], head[sizeof TRITON_HEADER];
    if (snprintf(p, sizeof p, "%s/config.pbtxt", dir) >= (int)sizeof p)
        return false;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, head, sizeof head - 1);
    close(fd);
    return n == (ssize_t)sizeof head - 1 && memcmp(head, TRITON_HEADER, sizeof head - 1) == 0;
}

/* Exchange stage and out (renameat2 RENAME_EXCHANGE; a move aside and back on
 * file systems without it). *old receives where the old tree now is. */
static td_status swap_in(td_ctx *ctx, const char *stage, const char *out, char **old) {
    *old = NULL;
    struct stat st;
    if (lstat(out, &st) != 0) {
        if (rename(stage, out) != 0)
            return td_fail(ctx, TD_ERR_IO, "cannot move %s to %s: %s", stage, out, strerror(errno));
        return TD_OK;
    }
    if (renameat2(AT_FDCWD, stage, AT_FDCWD, out, RENAME_EXCHANGE) == 0) {
        if (!(*old = strdup(stage)))
            return td_fail_oom(ctx, strlen(stage), "a path");
        return TD_OK;
    }
    char *aside = NULL;
    if (asprintf(&aside, "%s.old.%ld", out, (long)getpid()) < 0)
        return td_fail_oom(ctx, 256, "a path");
    if (rename(out, aside) != 0) {
        td_status s = td_fail(ctx, TD_ERR_IO, "cannot move the old %s aside: %s", out, strerror(errno));
        free(aside);
        return s;
    }
    if (rename(stage, out) != 0) {
        td_status s = td_fail(ctx, TD_ERR_IO, "cannot move %s to %s: %s", stage, out, strerror(errno));
        rename(aside, out); /* put the old one back */
        free(aside);
        return s;
    }
    *old = aside;
    return TD_OK;
}

/* Moves old/sub/X to new/sub/X for every X the new tree lacks. */
static td_status keep_entries(td_ctx *ctx, const char *old_root, const char *new_root, const char *sub) {
    char from_dir[4096], to_dir[4096];
    if (snprintf(from_dir, sizeof from_dir, "%s/%s", old_root, sub) >= (int)sizeof from_dir ||
        snprintf(to_dir, sizeof to_dir, "%s/%s", new_root, sub) >= (int)sizeof to_dir)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "the output path %s is too long", new_root);
    DIR *d = opendir(from_dir);
    if (!d)
        return errno == ENOENT || errno == ENOTDIR ? TD_OK
                                                   : td_fail(ctx, TD_ERR_IO, "cannot read %s: %s", from_dir,
                                                             strerror(errno));
    td_status s = TD_OK;
    for (struct dirent *e; s == TD_OK && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char from[4096], to[4096];
        struct stat st;
        if (snprintf(from, sizeof from, "%s/%s", from_dir, e->d_name) >= (int)sizeof from ||
            snprintf(to, sizeof to, "%s/%s", to_dir, e->d_name) >= (int)sizeof to) {
            s = td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "the path of %s/%s is too long", from_dir, e->d_name);
            break;
        }
        if (lstat(to, &st) == 0)
            continue; /* the new output has its own */
        if ((mkdir(to_dir, 0755) != 0 && errno != EEXIST) || rename(from, to) != 0)
            s = td_fail(ctx, TD_ERR_IO, "cannot keep %s in the new output (moving it to %s: %s)", from, to,
                        strerror(errno));
    }
    closedir(d);
    return s;
}

td_status td_output_replace(td_ctx *ctx, const char *stage, const char *out, const char *command, bool force,
                            const char *keep_subdir) {
    TD_TRY(td_output_check_replaceable(ctx, out, command, force));
    char *old = NULL;
    TD_TRY(swap_in(ctx, stage, out, &old));
    td_status s = TD_OK;
    if (old && keep_subdir && (s = keep_entries(ctx, old, out, keep_subdir)) != TD_OK) {
        td_wrap(ctx, "the previous output is kept in %s", old);
        free(old);
        return s;
    }
    if (old)
        s = td_remove_tree(ctx, old);
    free(old);
    char *parent = td_path_dirname(out);
    if (s == TD_OK && parent)
        s = td_fsync_dir(ctx, parent);
    free(parent);
    return s;
}

td_status td_output_remove_if_ours(td_ctx *ctx, const char *path, const char *command) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode) || !has_marker(path, command))
        return TD_OK;
    return td_remove_tree(ctx, path);
}
