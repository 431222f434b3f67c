/* Reading and laying out the Hugging Face cache (see hub_cache.h and hub.h). */
#define _GNU_SOURCE
#include "hf/hub_cache.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "hf/hub.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_FILE_MAX (64u << 20) /* model.safetensors.index.json */
#define REF_FILE_MAX 4096
#define WEIGHTS_INDEX "model.safetensors.index.json"
#define WEIGHTS_SINGLE "model.safetensors"

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

char *td_hub_expand_home(const char *p) {
    char *out = NULL;
    if (p[0] != '~')
        return strdup(p);
    const char *rest = strchr(p, '/');
    size_t user_len = rest ? (size_t)(rest - p - 1) : strlen(p + 1);
    if (!rest)
        rest = "";
    const char *home = NULL;
    char buf[4096];
    struct passwd pw, *found = NULL;
    if (user_len == 0) {
        home = env_nonempty("HOME");
        if (!home && getpwuid_r(getuid(), &pw, buf, sizeof buf, &found) == 0 && found)
            home = found->pw_dir;
    } else {
        char *user = strndup(p + 1, user_len);
        if (!user)
            return NULL;
        if (getpwnam_r(user, &pw, buf, sizeof buf, &found) == 0 && found)
            home = found->pw_dir;
        free(user);
    }
    if (!home) /* no such user, or no home at all: huggingface_hub keeps the path as it is too */
        return strdup(p);
    if (asprintf(&out, "%s%s", home, rest) < 0)
        out = NULL;
    return out;
}

char *td_hub_home_dir(void) {
    const char *v;
    char *out = NULL, *base = NULL;
    if ((v = env_nonempty("HF_HOME")))
        return td_hub_expand_home(v);
    if ((v = env_nonempty("XDG_CACHE_HOME")))
        base = td_hub_expand_home(v);
    else
        base = td_hub_expand_home("~/.cache");
    if (base && base[0] == '~') { /* no home directory to put it in */
        free(base);
        return NULL;
    }
    if (base && asprintf(&out, "%s/huggingface", base) < 0)
        out = NULL;
    free(base);
    return out;
}

td_status td_hub_cache_dir(td_ctx *ctx, const td_hub_options *opts, char **out) {
    const char *v;
    char *dir = NULL;
    *out = NULL;
    if (opts && opts->cache_dir)
        dir = td_hub_expand_home(opts->cache_dir);
    else if ((v = env_nonempty("HF_HUB_CACHE")))
        dir = td_hub_expand_home(v);
    else {
        char *home = td_hub_home_dir();
        if (!home)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "cannot place the Hugging Face cache: none of HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, HOME "
                           "is set");
        if (asprintf(&dir, "%s/hub", home) < 0)
            dir = NULL;
        free(home);
    }
    if (!dir)
        return td_fail_oom(ctx, 256, "the cache path");
    /* "/x/hub/" and "/x/hub" are one cache: paths built on it and compared with it stay alike */
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
        dir[n - 1] = '\0';
    *out = dir;
    return TD_OK;
}

char *td_hub_repo_dir(const char *cache, const char *repo_id) {
    char *folder = NULL, *out = NULL;
    size_t n = strlen(repo_id);
    folder = malloc(2 * n + 1);
    if (!folder)
        return NULL;
    char *q = folder;
    for (const char *p = repo_id; *p; p++) {
        if (*p == '/') {
            *q++ = '-';
            *q++ = '-';
        } else
            *q++ = *p;
    }
    *q = '\0';
    if (asprintf(&out, "%s/models--%s", cache, folder) < 0)
        out = NULL;
    free(folder);
    return out;
}

bool td_hub_is_lower_hex(const char *s, size_t len) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!(isdigit((unsigned char)s[n]) || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == len;
}

/* A snapshot name: one printable path component, not "." or "..", no leading '.'. */
static bool safe_component(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 255 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '/' || s[i] == '\\')
            return false;
    return true;
}

/* The text of a small regular file, or NULL. O_NONBLOCK: opening a FIFO
 * planted in the cache returns at once (and is then refused) instead of
 * waiting forever for a writer. */
static char *read_small_regular(const char *path, size_t max, size_t *len_out) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > max)
        goto out;
    size_t n = (size_t)st.st_size, got = 0;
    if (!(buf = malloc(n + 1)))
        goto out;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *len_out = got;
out:
    close(fd);
    return buf;
}

char *td_hub_cached_commit(const char *repo_dir, const char *revision) {
    if (td_hub_is_lower_hex(revision, 40))
        return strdup(revision);
    char *ref = NULL, *buf = NULL;
    if (asprintf(&ref, "%s/refs/%s", repo_dir, revision) < 0)
        return NULL;
    size_t len = 0;
    buf = read_small_regular(ref, REF_FILE_MAX, &len);
    free(ref);
    if (!buf)
        return NULL;
    while (len && isspace((unsigned char)buf[len - 1]))
        buf[--len] = '\0';
    if (!safe_component(buf)) {
        free(buf);
        return NULL;
    }
    return buf;
}

void td_hub_free_list(char **list, size_t n) {
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

bool td_hub_safe_repo_path(const char *p) {
    size_t n = strlen(p);
    if (n == 0 || n > 1024 || p[0] == '/' || p[n - 1] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f || c == '\\' || (c == '/' && p[i + 1] == '/'))
            return false;
    }
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        s += len + (e ? 1 : 0);
    }
    return true;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

td_status td_hub_index_shards(td_ctx *ctx, const char *index_path, char ***shards_out, size_t *n_out) {
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    const char **names = NULL; /* [entries] borrowed from the JSON tree */
    char **shards = NULL;
    size_t n = 0, entries = 0;
    td_status s = td_read_file(ctx, index_path, INDEX_FILE_MAX, &text, &len);
    if (s != TD_OK)
        goto out;
    root = cJSON_ParseWithLength(text, len);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: not JSON with a \"weight_map\" object", index_path);
        goto out;
    }
    size_t cap = (size_t)cJSON_GetArraySize(map);
    names = calloc(cap + 1, sizeof *names);
    shards = calloc(cap + 1, sizeof *shards);
    if (!names || !shards) {
        s = td_fail_oom(ctx, (cap + 1) * sizeof *shards, "the shard list");
        goto out;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || !td_hub_safe_repo_path(e->valuestring)) {
            s = td_fail(ctx, TD_ERR_FORMAT, "%s: weight_map entry \"%s\" is not a relative file name", index_path,
                        e->string ? e->string : "?");
            goto out;
        }
        if (entries < cap)
            names[entries++] = e->valuestring;
    }
    /* Every tensor names its shard, so most names repeat: sort, then keep each once. */
    qsort(names, entries, sizeof *names, cmp_str_ptr);
    for (size_t i = 0; i < entries; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
            continue;
        if (!(shards[n] = strdup(names[i]))) {
            s = td_fail_oom(ctx, strlen(names[i]), "a shard name");
            goto out;
        }
        n++;
    }
    if (n == 0)
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: weight_map is empty", index_path);
out:
    if (s != TD_OK && shards) {
        td_hub_free_list(shards, n);
        shards = NULL;
        n = 0;
    }
    *shards_out = shards;
    *n_out = n;
    free(names);
    cJSON_Delete(root);
    free(text);
    return s;
}

bool td_hub_snapshot_usable(const char *dir, char *why, size_t why_len) {
    char *p = NULL;
    bool ok = false;
    td_ctx quiet = {0};
    if (!td_is_dir(dir)) {
        snprintf(why, why_len, "%s does not exist", dir);
        return false;
    }
    if (asprintf(&p, "%s/config.json", dir) < 0)
        return false;
    if (!td_is_file(p)) {
        snprintf(why, why_len, "%s is missing", p);
        goto out;
    }
    free(p);
    if (asprintf(&p, "%s/" WEIGHTS_INDEX, dir) < 0) {
        p = NULL;
        goto out;
    }
    if (td_is_file(p)) {
        char **shards = NULL;
        size_t n = 0;
        if (td_hub_index_shards(&quiet, p, &shards, &n) != TD_OK) {
            snprintf(why, why_len, "%s", quiet.message);
            goto out;
        }
        ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            char *sp = NULL;
            if (asprintf(&sp, "%s/%s", dir, shards[i]) < 0)
                ok = false;
            else if (!td_is_file(sp)) {
                snprintf(why, why_len, "%s (named in %s) is missing", sp, WEIGHTS_INDEX);
                ok = false;
            }
            free(sp);
        }
        td_hub_free_list(shards, n);
        goto out;
    }
    free(p);
    if (asprintf(&p, "%s/" WEIGHTS_SINGLE, dir) < 0) {
        p = NULL;
        goto out;
    }
    ok = td_is_file(p);
    if (!ok)
        snprintf(why, why_len, "%s is missing", p);
out:
    free(p);
    return ok;
}

td_status td_hub_cached_snapshot(td_ctx *ctx, const char *repo_id, const char *revision, const td_hub_options *opts,
                                 char **snapshot_dir_out) {
    char *cache = NULL, *repo_dir = NULL, *commit = NULL, *snap = NULL;
    char why[1024] = "";
    *snapshot_dir_out = NULL;
    if (!revision)
        revision = "main";
    td_status s = td_hub_check_repo_id(ctx, repo_id);
    if (s == TD_OK)
        s = td_hub_check_revision(ctx, revision);
    if (s == TD_OK)
        s = td_hub_cache_dir(ctx, opts, &cache);
    if (s != TD_OK)
        goto out;
    if (!(repo_dir = td_hub_repo_dir(cache, repo_id))) {
        s = td_fail_oom(ctx, 256, "a path");
        goto out;
    }
    commit = td_hub_cached_commit(repo_dir, revision);
    if (!commit) {
        s = td_fail(ctx, TD_ERR_NOT_FOUND,
                    "%s (revision %s) is not in the Hugging Face cache: no usable %s/refs/%s (a regular file naming "
                    "a snapshot)",
                    repo_id, revision, repo_dir, revision);
        goto out;
    }
    if (asprintf(&snap, "%s/snapshots/%s", repo_dir, commit) < 0) {
        snap = NULL;
        s = td_fail_oom(ctx, 256, "a path");
        goto out;
    }
    if (!td_hub_snapshot_usable(snap, why, sizeof why)) {
        s = td_fail(ctx, TD_ERR_NOT_FOUND, "%s (revision %s) is not complete in the Hugging Face cache: %s", repo_id,
                    revision, why);
        goto out;
    }
    *snapshot_dir_out = snap;
    snap = NULL;
out:
    free(cache);
    free(repo_dir);
    free(commit);
    free(snap);
    return s;
}

/* mkdir -p for the root and what is above it, where symlinks are the user's business. */
static td_status make_root(td_ctx *ctx, const char *root) {
    char *p = strdup(root);
    if (!p)
        return td_fail_oom(ctx, strlen(root), "a path");
    td_status s = TD_OK;
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            s = td_fail(ctx, TD_ERR_IO, "cannot create directory %s: %s", p, strerror(errno));
            break;
        }
        *c = saved;
        if (!saved)
            break;
    }
    free(p);
    if (s == TD_OK && !td_is_dir(root))
        s = td_fail(ctx, TD_ERR_IO, "%s exists but is not a directory", root);
    return s;
}

/* Open (creating it when missing) the directory `name` inside parent_fd,
 * never through a symlink: O_NOFOLLOW on a descriptor walk leaves no moment in
 * which a link swapped in could redirect the writes that follow. */
static td_status open_inner_dir(td_ctx *ctx, int parent_fd, const char *name, const char *shown, int *fd_out) {
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (mkdirat(parent_fd, name, 0755) != 0 && errno != EEXIST)
            return td_fail(ctx, TD_ERR_IO, "cannot create directory %s: %s", shown, strerror(errno));
        fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        struct stat st;
        int err = errno;
        if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            return td_fail(ctx, TD_ERR_IO,
                           "refusing to write through %s: it is a symbolic link inside the Hugging Face cache, and "
                           "downloads must stay inside the cache; remove the link and rerun",
                           shown);
        if (err == ENOTDIR || err == ELOOP)
            return td_fail(ctx, TD_ERR_IO, "%s exists but is not a directory; remove it and rerun", shown);
        return td_fail(ctx, TD_ERR_IO, "cannot open directory %s: %s", shown, strerror(err));
    }
    *fd_out = fd;
    return TD_OK;
}

td_status td_hub_open_dir(td_ctx *ctx, const char *root, const char *path, int *fd_out) {
    *fd_out = -1;
    size_t root_len = strlen(root);
    if (strncmp(path, root, root_len) != 0 || (path[root_len] != '/' && path[root_len] != '\0'))
        return td_fail(ctx, TD_ERR_INTERNAL, "%s is not inside the cache %s", path, root);
    td_status s = make_root(ctx, root);
    if (s != TD_OK)
        return s;
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return td_fail(ctx, TD_ERR_IO, "cannot open directory %s: %s", root, strerror(errno));
    char *shown = strdup(path); /* the path up to the component being opened, for messages */
    if (!shown) {
        close(fd);
        return td_fail_oom(ctx, strlen(path), "a path");
    }
    for (size_t i = root_len; s == TD_OK && path[i];) {
        while (path[i] == '/')
            i++;
        size_t len = strcspn(path + i, "/");
        if (len == 0)
            break;
        char name[256];
        if (len >= sizeof name || (len == 1 && path[i] == '.') || (len == 2 && path[i] == '.' && path[i + 1] == '.')) {
            s = td_fail(ctx, TD_ERR_INTERNAL, "%s: unusable path component inside the cache", path);
            break;
        }
        memcpy(name, path + i, len);
        name[len] = '\0';
        memcpy(shown, path, i + len);
        shown[i + len] = '\0';
        int next = -1;
        if ((s = open_inner_dir(ctx, fd, name, shown, &next)) == TD_OK) {
            close(fd);
            fd = next;
        }
        i += len;
    }
    free(shown);
    if (s != TD_OK) {
        close(fd);
        return s;
    }
    *fd_out = fd;
    return TD_OK;
}

td_status td_hub_make_dirs(td_ctx *ctx, const char *root, const char *path) {
    int fd = -1;
    td_status s = td_hub_open_dir(ctx, root, path, &fd);
    if (fd >= 0)
        close(fd);
    return s;
}
