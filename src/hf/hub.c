/* Hub downloads into the huggingface_hub cache layout (see hub.h). */
#define _GNU_SOURCE
#include "hf/hub.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/sha256.h"
#include "hf/hub_cache.h"
#include "hf/hub_http.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define API_ANSWER_MAX (32u << 20)  /* the revision JSON of a repo with many files */
#define WEIGHTS_INDEX "model.safetensors.index.json"
#define WEIGHTS_SINGLE "model.safetensors"
/* No file on the Hub comes near this; a larger announced size is a broken or hostile server. */
#define FILE_SIZE_MAX (1ull << 40)
/* Kept free besides a download, so that filling the disk is not what completes it. */
#define DISK_HEADROOM (64ull << 20)

/* Files tdeploy reads from a model repository (besides weights). */
static const char *const wanted_small_files[] = {
    "config.json",           "generation_config.json",    "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json",   "modules.json",
    "sentence_bert_config.json", "config_sentence_transformers.json",
};

/* Pickle-based weight files that we refuse to load. */
static const char *const pickle_weight_files[] = {
    "pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt", "tf_model.h5",
    "flax_model.msgpack",
};

void td_hub_options_init(td_hub_options *opts) {
    memset(opts, 0, sizeof *opts);
    opts->offline = -1;
    opts->progress = true;
}

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* huggingface_hub's reading of a boolean variable. */
static bool env_truthy(const char *name) {
    const char *v = env_nonempty(name);
    return v && (strcasecmp(v, "1") == 0 || strcasecmp(v, "on") == 0 || strcasecmp(v, "yes") == 0 ||
                 strcasecmp(v, "true") == 0);
}

static bool repo_part_ok(const char *s, size_t n) {
    if (n == 0 || s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '_' || c == '-' || c == '.'))
            return false;
        if (i + 1 < n && ((c == '-' && s[i + 1] == '-') || (c == '.' && s[i + 1] == '.')))
            return false;
    }
    return true;
}

td_status td_hub_check_repo_id(td_ctx *ctx, const char *repo_id) {
    size_t n = repo_id ? strlen(repo_id) : 0;
    const char *slash = n ? strchr(repo_id, '/') : NULL;
    bool ok = n > 0 && n <= 96;
    if (ok && slash)
        ok = strchr(slash + 1, '/') == NULL && repo_part_ok(repo_id, (size_t)(slash - repo_id)) &&
             repo_part_ok(slash + 1, strlen(slash + 1));
    else if (ok)
        ok = repo_part_ok(repo_id, n);
    if (ok && n >= 4 && strcmp(repo_id + n - 4, ".git") == 0)
        ok = false;
    if (!ok)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "'%s' is not a Hub repository id: expected 'name' or 'org/name' made of letters, digits, "
                       "'_', '-' and '.', without '--' or '..', at most 96 characters",
                       repo_id ? repo_id : "(null)");
    return TD_OK;
}

/* A revision becomes a path under refs/, so it is checked like a relative path. */
td_status td_hub_check_revision(td_ctx *ctx, const char *rev) {
    size_t n = strlen(rev);
    bool ok = n > 0 && n <= 255 && rev[0] != '/' && rev[n - 1] != '/';
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)rev[i];
        ok = isalnum(c) || c == '_' || c == '-' || c == '.' || c == '/';
        if (ok && c == '/' && rev[i + 1] == '/')
            ok = false;
    }
    /* no "." or ".." component */
    for (const char *p = rev; ok && *p;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            ok = false;
        p += len + (e ? 1 : 0);
    }
    if (!ok)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "'%s' is not a usable revision: use a branch, tag or commit made of letters, digits, '_', "
                       "'-', '.' and '/'",
                       rev);
    return TD_OK;
}


/* "NUMBER_Name/config.json" or "NUMBER_Name/model.safetensors": a sentence-transformers module. */
static bool is_module_file(const char *p) {
    const char *s = p;
    if (!isdigit((unsigned char)*s))
        return false;
    while (isdigit((unsigned char)*s))
        s++;
    if (*s++ != '_' || !isalnum((unsigned char)*s))
        return false;
    while (isalnum((unsigned char)*s) || *s == '_')
        s++;
    return strcmp(s, "/config.json") == 0 || strcmp(s, "/model.safetensors") == 0;
}

static bool is_wanted_small(const char *p) {
    for (size_t i = 0; i < sizeof wanted_small_files / sizeof *wanted_small_files; i++)
        if (strcmp(p, wanted_small_files[i]) == 0)
            return true;
    return is_module_file(p);
}

/* The token huggingface_hub's `login` stores: $HF_TOKEN_PATH, else $HF_HOME/token,
 * else $XDG_CACHE_HOME/huggingface/token, else ~/.cache/huggingface/token. NULL if none. */
static char *stored_token(void) {
    char *path = NULL, *text = NULL;
    const char *v;
    if ((v = env_nonempty("HF_TOKEN_PATH")))
        path = td_hub_expand_home(v);
    else {
        char *home = td_hub_home_dir();
        if (home && asprintf(&path, "%s/token", home) < 0)
            path = NULL;
        free(home);
    }
    size_t len = 0;
    td_ctx quiet = {0};
    if (path && td_is_file(path) && td_read_file(&quiet, path, 4096, &text, &len) == TD_OK) {
        while (len && isspace((unsigned char)text[len - 1]))
            text[--len] = '\0';
        if (!len || strpbrk(text, "\r\n")) { /* empty, or not a single-line token */
            free(text);
            text = NULL;
        }
    }
    free(path);
    return text;
}

/* State of one download run. */
typedef struct hub_run {
    td_ctx *ctx;
    const char *repo_id;
    const char *revision;
    char *endpoint;  /* without trailing '/' */
    bool has_token;
    bool progress;
    char *cache;     /* CACHE */
    char *repo_dir;  /* CACHE/models--ORG--NAME */
    char *lock_dir;  /* CACHE/.locks/models--ORG--NAME */
    char *commit;
    char *snap_dir;  /* repo_dir/snapshots/commit */
    td_http *http;
    td_http_response resp;
} hub_run;

/* Turn a non-success HTTP answer into a message that says what to do. The
 * status is named with its reason phrase ("HTTP 404 Not Found"), whatever the body. */
static td_status http_failure(hub_run *r, const char *what, const char *url) {
    const td_http_response *a = &r->resp;
    const char *reason = a->reason && *a->reason ? a->reason : "";
    const char *sp = *reason ? " " : "";
    const char *code = a->error_code ? a->error_code : "";
    const char *hub_msg = a->error_message ? a->error_message : "";
    if (a->status == 401 || a->status == 403) {
        if (strcmp(code, "GatedRepo") == 0)
            return td_fail(r->ctx, TD_ERR_IO,
                           "%s is gated (HTTP %ld for %s): accept its conditions on %s/%s and set HF_TOKEN to a "
                           "token of that account%s",
                           r->repo_id, a->status, what, r->endpoint, r->repo_id,
                           r->has_token ? " (the HF_TOKEN given was not accepted)" : "");
        if (r->has_token)
            return td_fail(r->ctx, TD_ERR_IO,
                           "access to %s denied (HTTP %ld for %s) with the HF_TOKEN given: check that the token is "
                           "valid and may read this repository%s%s",
                           r->repo_id, a->status, what, *hub_msg ? "; the Hub says: " : "", hub_msg);
        return td_fail(r->ctx, TD_ERR_IO,
                       "access to %s denied (HTTP %ld for %s): the repository is private or gated, or does not "
                       "exist (the Hub answers 401 for repositories it does not show); set HF_TOKEN to a token with "
                       "read access",
                       r->repo_id, a->status, what);
    }
    if (a->status == 404) {
        if (strcmp(code, "RevisionNotFound") == 0)
            return td_fail(r->ctx, TD_ERR_NOT_FOUND, "revision '%s' of %s not found on %s", r->revision, r->repo_id,
                           r->endpoint);
        if (strcmp(code, "EntryNotFound") == 0)
            return td_fail(r->ctx, TD_ERR_NOT_FOUND, "%s not found in %s at %s", what, r->repo_id,
                           r->commit ? r->commit : r->revision);
        return td_fail(r->ctx, TD_ERR_NOT_FOUND,
                       "%s not found (HTTP 404%s%s for %s at %s): check the name and revision", r->repo_id, sp,
                       reason, what, url);
    }
    return td_fail(r->ctx, TD_ERR_IO, "HTTP %ld%s%s for %s from %s%s%s", a->status, sp, reason, what, url,
                   *hub_msg ? ": " : "", hub_msg);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Ask the Hub which commit the revision is at and which files it has. */
static td_status resolve_revision(hub_run *r, char ***files_out, size_t *n_out) {
    char *rev_esc = td_url_escape(r->revision, 0), *url = NULL;
    cJSON *root = NULL;
    char **files = NULL;
    size_t n = 0;
    td_status s = TD_OK;
    if (!rev_esc || asprintf(&url, "%s/api/models/%s/revision/%s", r->endpoint, r->repo_id, rev_esc) < 0) {
        url = NULL;
        s = td_fail_oom(r->ctx, 256, "a URL");
        goto out;
    }
    if ((s = td_http_get(r->ctx, r->http, url, API_ANSWER_MAX, &r->resp)) != TD_OK) {
        td_wrap(r->ctx, "cannot reach the Hub to resolve %s (revision %s) (is the network up? HF_ENDPOINT=%s; set "
                        "HF_HUB_OFFLINE=1 to use only the cache)",
                r->repo_id, r->revision, r->endpoint);
        goto out;
    }
    if (r->resp.status != 200) {
        s = http_failure(r, "the repository information", url);
        goto out;
    }
    root = cJSON_ParseWithLength(r->resp.body ? r->resp.body : "", r->resp.body_len);
    const cJSON *sha = root ? cJSON_GetObjectItemCaseSensitive(root, "sha") : NULL;
    const cJSON *sib = root ? cJSON_GetObjectItemCaseSensitive(root, "siblings") : NULL;
    if (!cJSON_IsString(sha) || !td_hub_is_lower_hex(sha->valuestring, 40) || !cJSON_IsArray(sib)) {
        s = td_fail(r->ctx, TD_ERR_FORMAT,
                    "the answer of %s is not the Hub's repository information (no 40-hex \"sha\" or no "
                    "\"siblings\" list): is HF_ENDPOINT a Hugging Face Hub?",
                    url);
        goto out;
    }
    if (!(r->commit = strdup(sha->valuestring))) {
        s = td_fail_oom(r->ctx, 41, "a commit id");
        goto out;
    }
    size_t cap = (size_t)cJSON_GetArraySize(sib);
    if (!(files = calloc(cap + 1, sizeof *files))) {
        s = td_fail_oom(r->ctx, (cap + 1) * sizeof *files, "the file list");
        goto out;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, sib) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "rfilename");
        if (!cJSON_IsString(name))
            continue;
        if (!(files[n] = strdup(name->valuestring))) {
            s = td_fail_oom(r->ctx, strlen(name->valuestring), "a file name");
            goto out;
        }
        n++;
    }
    qsort(files, n, sizeof *files, cmp_str_ptr);
out:
    if (s != TD_OK) {
        td_hub_free_list(files, n);
        files = NULL;
        n = 0;
    }
    *files_out = files;
    *n_out = n;
    cJSON_Delete(root);
    free(url);
    free(rev_esc);
    return s;
}

/* list is sorted (resolve_revision sorts the file list): log n per lookup, so an
 * index naming many shards costs n log n, not n * files. */
static bool list_has(char **list, size_t n, const char *name) {
    return n && bsearch(&name, list, n, sizeof *list, cmp_str_ptr) != NULL;
}

/* "W/\"abc\"" -> "abc"; NULL when what is left is not a safe file name. */
static char *normalize_etag(const char *raw) {
    if (!raw)
        return NULL;
    if (strncmp(raw, "W/", 2) == 0)
        raw += 2;
    size_t n = strlen(raw);
    if (n >= 2 && raw[0] == '"' && raw[n - 1] == '"') {
        raw++;
        n -= 2;
    }
    if (n == 0 || n > 128 || raw[0] == '.')
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)raw[i]) || raw[i] == '-' || raw[i] == '_' || raw[i] == '.'))
            return NULL;
    return strndup(raw, n);
}

static bool parse_u64(const char *s, uint64_t *out) {
    if (!s || !isdigit((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* HEAD the file: its blob name (etag) and size. Relative redirects (a renamed
 * repository) are followed; an absolute one (LFS storage) carries the
 * X-Linked-* headers itself. */
static td_status file_metadata(hub_run *r, const char *file, const char *url0, char **etag_out, uint64_t *size_out) {
    char *url = strdup(url0);
    td_status s = TD_OK;
    *etag_out = NULL;
    if (!url)
        return td_fail_oom(r->ctx, strlen(url0), "a URL");
    for (int hop = 0;; hop++) {
        if ((s = td_http_head(r->ctx, r->http, url, &r->resp)) != TD_OK) {
            td_wrap(r->ctx, "cannot get the metadata of %s from the Hub (a rerun resumes)", file);
            goto out;
        }
        long st = r->resp.status;
        if (st >= 300 && st < 400 && r->resp.location && r->resp.location[0] == '/' && hop < 5) {
            char *next = NULL;
            if (asprintf(&next, "%s%s", r->endpoint, r->resp.location) < 0) {
                s = td_fail_oom(r->ctx, 256, "a URL");
                goto out;
            }
            free(url);
            url = next;
            continue;
        }
        if (st < 200 || st >= 400) {
            s = http_failure(r, file, url);
            goto out;
        }
        break;
    }
    const char *raw_etag = r->resp.linked_etag ? r->resp.linked_etag : r->resp.etag;
    const char *raw_size = r->resp.linked_size ? r->resp.linked_size : r->resp.content_length;
    char *etag = normalize_etag(raw_etag);
    if (!etag) {
        s = td_fail(r->ctx, TD_ERR_FORMAT,
                    "%s: the server gave %s ETag for %s (%s); a Hub names every file by its ETag: is HF_ENDPOINT a "
                    "Hugging Face Hub?",
                    r->repo_id, raw_etag ? "an unusable" : "no", file, raw_etag ? raw_etag : "missing");
        goto out;
    }
    if (!parse_u64(raw_size, size_out)) {
        free(etag);
        s = td_fail(r->ctx, TD_ERR_FORMAT, "%s: the server gave no usable size for %s (X-Linked-Size/Content-Length: %s)",
                    r->repo_id, file, raw_size ? raw_size : "missing");
        goto out;
    }
    if (*size_out > FILE_SIZE_MAX) {
        free(etag);
        s = td_fail(r->ctx, TD_ERR_FORMAT,
                    "%s: the server announced %llu bytes for %s, more than any file the Hub stores (%llu); nothing "
                    "was downloaded (is HF_ENDPOINT a Hugging Face Hub?)",
                    r->repo_id, (unsigned long long)*size_out, file, (unsigned long long)FILE_SIZE_MAX);
        goto out;
    }
    *etag_out = etag;
out:
    free(url);
    return s;
}

static td_status sha256_file(td_ctx *ctx, FILE *fp, const char *path, char hex[65]) {
    td_sha256 h;
    uint8_t buf[1 << 16], digest[32];
    td_sha256_init(&h);
    if (fseeko(fp, 0, SEEK_SET) != 0)
        return td_fail(ctx, TD_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, fp)) > 0)
        td_sha256_update(&h, buf, got);
    if (ferror(fp))
        return td_fail(ctx, TD_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    td_sha256_final(&h, digest);
    td_sha256_hex(digest, hex);
    return TD_OK;
}

/* Open the file `name` of a cache directory (dir_fd, from td_hub_open_dir) for
 * writing without following a symlink planted in its place (O_NOFOLLOW) and
 * only when it is a regular file (a FIFO or device there is refused). path is
 * for messages. */
static td_status open_cache_file(td_ctx *ctx, int dir_fd, const char *name, const char *path, const char *what,
                                 int *fd_out) {
    *fd_out = -1;
    int fd = openat(dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0644);
    if (fd < 0 && errno == ELOOP)
        return td_fail(ctx, TD_ERR_IO,
                       "refusing to write %s through %s: it is a symbolic link inside the Hugging Face cache, and "
                       "downloads must stay inside the cache; remove it and rerun",
                       what, path);
    if (fd < 0)
        return td_fail(ctx, TD_ERR_IO, "cannot open %s for writing: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return td_fail(ctx, TD_ERR_IO, "refusing to write %s into %s: it is not a regular file; remove it and rerun",
                       what, path);
    }
    int fl = fcntl(fd, F_GETFL); /* O_NONBLOCK was only for the open */
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    return TD_OK;
}

/* Fail before the transfer when the file system cannot hold `need` more bytes. */
static td_status check_free_space(hub_run *r, int fd, const char *file, const char *path, uint64_t need) {
    struct statvfs vfs;
    if (fstatvfs(fd, &vfs) != 0)
        return TD_OK; /* unknown: the write itself reports a full disk */
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (avail >= need && avail - need >= DISK_HEADROOM)
        return TD_OK;
    return td_fail(r->ctx, TD_ERR_IO,
                   "not enough disk space for %s of %s: it needs %.1f MiB more, and the file system of %s has %.1f "
                   "MiB free (%.0f MiB are kept free); free some space or point HF_HUB_CACHE / HF_HOME at a larger "
                   "disk",
                   file, r->repo_id, (double)need / 1048576.0, path, (double)avail / 1048576.0,
                   (double)DISK_HEADROOM / 1048576.0);
}

/* Download (or resume) blobs/<etag> of the expected size, under the blob's lock. */
static td_status fetch_blob(hub_run *r, const char *file, const char *url, const char *etag, uint64_t size) {
    char *blob = NULL, *incomplete = NULL, *lock_path = NULL, *blobs_dir = NULL;
    char inc_name[160], lock_name[160]; /* etag: at most 128 safe characters (normalize_etag) */
    int lock_fd = -1, blobs_fd = -1, locks_fd = -1;
    FILE *fp = NULL;
    td_progress progress;
    bool progress_on = false;
    td_status s = TD_OK;
    if (asprintf(&blob, "%s/blobs/%s", r->repo_dir, etag) < 0 ||
        asprintf(&incomplete, "%s/blobs/%s.incomplete", r->repo_dir, etag) < 0 ||
        asprintf(&lock_path, "%s/%s.lock", r->lock_dir, etag) < 0 ||
        asprintf(&blobs_dir, "%s/blobs", r->repo_dir) < 0) {
        s = td_fail_oom(r->ctx, 256, "a path");
        goto out;
    }
    snprintf(inc_name, sizeof inc_name, "%s.incomplete", etag);
    snprintf(lock_name, sizeof lock_name, "%s.lock", etag);
    /* Every write below goes through these descriptors: no path is looked up again. */
    if ((s = td_hub_open_dir(r->ctx, r->cache, blobs_dir, &blobs_fd)) != TD_OK ||
        (s = td_hub_open_dir(r->ctx, r->cache, r->lock_dir, &locks_fd)) != TD_OK)
        goto out;
    /* Another process may be downloading the same blob: wait for it. */
    if ((s = open_cache_file(r->ctx, locks_fd, lock_name, lock_path, "a lock", &lock_fd)) != TD_OK)
        goto out;
    if (flock(lock_fd, LOCK_EX) != 0) {
        s = td_fail(r->ctx, TD_ERR_IO, "cannot lock %s: %s", lock_path, strerror(errno));
        goto out;
    }
    struct stat blob_st;
    if (fstatat(blobs_fd, etag, &blob_st, 0) == 0 && S_ISREG(blob_st.st_mode) && (uint64_t)blob_st.st_size == size)
        goto out; /* already there (shared with another revision, or a concurrent run got it) */
    int fd = -1;
    if ((s = open_cache_file(r->ctx, blobs_fd, inc_name, incomplete, file, &fd)) != TD_OK)
        goto out;
    if (!(fp = fdopen(fd, "r+b"))) {
        close(fd);
        s = td_fail(r->ctx, TD_ERR_IO, "cannot open %s for writing: %s", incomplete, strerror(errno));
        goto out;
    }
    struct stat inc_st;
    uint64_t have = fstat(fd, &inc_st) == 0 ? (uint64_t)inc_st.st_size : 0;
    if (have > size) { /* not ours to resume: start over */
        if (ftruncate(fileno(fp), 0) != 0) {
            s = td_fail(r->ctx, TD_ERR_IO, "cannot truncate %s: %s", incomplete, strerror(errno));
            goto out;
        }
        have = 0;
    }
    if (have < size && (s = check_free_space(r, fd, file, r->repo_dir, size - have)) != TD_OK)
        goto out;
    if (have < size) {
        if (r->progress) {
            td_progress_begin(&progress, file, size);
            td_progress_update(&progress, have);
            progress_on = true;
        }
        if (have)
            td_info("resuming %s of %s from byte %llu", file, r->repo_id, (unsigned long long)have);
        for (int attempt = 0;; attempt++) {
            uint64_t now = have;
            s = td_http_download(r->ctx, r->http, url, fp, have, size, progress_on ? &progress : NULL, &r->resp,
                                 &now);
            if (s == TD_ERR_FORMAT) { /* more bytes than announced: nothing in the file is to be trusted */
                unlinkat(blobs_fd, inc_name, 0);
                td_wrap(r->ctx, "downloading %s of %s stopped; the partial file was removed (is HF_ENDPOINT a Hugging "
                                "Face Hub?)",
                        file, r->repo_id);
                goto out;
            }
            if (s != TD_OK) {
                td_wrap(r->ctx,
                        "downloading %s of %s failed after %llu of %llu bytes; they are kept in %s and a rerun "
                        "resumes from there",
                        file, r->repo_id, (unsigned long long)now, (unsigned long long)size, incomplete);
                goto out;
            }
            if (r->resp.status == 416 && have > 0 && attempt == 0) { /* range refused: from the start */
                if (ftruncate(fileno(fp), 0) != 0) {
                    s = td_fail(r->ctx, TD_ERR_IO, "cannot truncate %s: %s", incomplete, strerror(errno));
                    goto out;
                }
                have = 0;
                continue;
            }
            if (r->resp.status != 200 && r->resp.status != 206) {
                s = http_failure(r, file, url);
                goto out;
            }
            have = now;
            break;
        }
    }
    if (have != size) {
        s = td_fail(r->ctx, TD_ERR_IO,
                    "%s of %s: received %llu bytes but the Hub announced %llu; %s is kept and a rerun resumes it",
                    file, r->repo_id, (unsigned long long)have, (unsigned long long)size, incomplete);
        goto out;
    }
    if (td_hub_is_lower_hex(etag, 64)) { /* LFS file: its ETag is the content's sha256 */
        char hex[65];
        if ((s = sha256_file(r->ctx, fp, incomplete, hex)) != TD_OK)
            goto out;
        if (strcmp(hex, etag) != 0) {
            unlinkat(blobs_fd, inc_name, 0);
            s = td_fail(r->ctx, TD_ERR_IO,
                        "%s of %s is corrupt: its sha256 is %s but the Hub says %s; the partial file was removed, "
                        "rerun to download it again",
                        file, r->repo_id, hex, etag);
            goto out;
        }
    }
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        s = td_fail(r->ctx, TD_ERR_IO, "writing %s failed: %s", incomplete, strerror(errno));
        goto out;
    }
    fclose(fp);
    fp = NULL;
    if (renameat(blobs_fd, inc_name, blobs_fd, etag) != 0) {
        s = td_fail(r->ctx, TD_ERR_IO, "cannot rename %s to %s: %s", incomplete, blob, strerror(errno));
        goto out;
    }
out:
    if (progress_on)
        td_progress_end(&progress);
    if (fp)
        fclose(fp);
    if (lock_fd >= 0)
        close(lock_fd); /* releases the flock */
    if (blobs_fd >= 0)
        close(blobs_fd);
    if (locks_fd >= 0)
        close(locks_fd);
    free(blob);
    free(incomplete);
    free(lock_path);
    free(blobs_dir);
    return s;
}

/* snapshots/<commit>/<file> -> ../../blobs/<etag> (one more ../ per directory in file). */
static td_status link_snapshot_file(hub_run *r, const char *file, const char *etag) {
    char *link_path = NULL, *tmp = NULL, *dir = NULL, *target = NULL;
    int dir_fd = -1;
    td_status s = TD_OK;
    size_t depth = 2;
    for (const char *p = file; *p; p++)
        depth += *p == '/';
    size_t tlen = 3 * depth + strlen("blobs/") + strlen(etag) + 1;
    if (!(target = malloc(tlen)) || asprintf(&link_path, "%s/%s", r->snap_dir, file) < 0) {
        link_path = NULL;
        s = td_fail_oom(r->ctx, tlen, "a link target");
        goto out;
    }
    target[0] = '\0';
    for (size_t i = 0; i < depth; i++)
        strcat(target, "../");
    strcat(target, "blobs/");
    strcat(target, etag);
    const char *base = strrchr(link_path, '/') + 1;
    if (!(dir = td_path_dirname(link_path)) || asprintf(&tmp, "%s.tmp.%ld", base, (long)getpid()) < 0) {
        tmp = NULL;
        s = td_fail_oom(r->ctx, 256, "a path");
        goto out;
    }
    if ((s = td_hub_open_dir(r->ctx, r->cache, dir, &dir_fd)) != TD_OK)
        goto out;
    unlinkat(dir_fd, tmp, 0);
    /* symlinkat + renameat replace whatever is at the name (a planted link included) without following it */
    if (symlinkat(target, dir_fd, tmp) != 0 || renameat(dir_fd, tmp, dir_fd, base) != 0) {
        s = td_fail(r->ctx, TD_ERR_IO, "cannot create the link %s -> %s: %s (does the file system support symlinks?)",
                    link_path, target, strerror(errno));
        unlinkat(dir_fd, tmp, 0);
        goto out;
    }
out:
    if (dir_fd >= 0)
        close(dir_fd);
    free(link_path);
    free(tmp);
    free(dir);
    free(target);
    return s;
}

/* Make snapshots/<commit>/<file> present: skip when it is, else HEAD + blob + link. */
static td_status fetch_file(hub_run *r, const char *file) {
    char *link_path = NULL, *file_esc = NULL, *url = NULL, *etag = NULL;
    uint64_t size = 0;
    td_status s = TD_OK;
    if (!td_hub_safe_repo_path(file)) {
        s = td_fail(r->ctx, TD_ERR_FORMAT, "%s: refusing the file name \"%s\" (not a plain relative path)", r->repo_id,
                    file);
        goto out;
    }
    if (asprintf(&link_path, "%s/%s", r->snap_dir, file) < 0) {
        link_path = NULL;
        s = td_fail_oom(r->ctx, 256, "a path");
        goto out;
    }
    if (td_is_file(link_path)) /* a commit's files never change */
        goto out;
    if (!(file_esc = td_url_escape(file, 1)) ||
        asprintf(&url, "%s/%s/resolve/%s/%s", r->endpoint, r->repo_id, r->commit, file_esc) < 0) {
        url = NULL;
        s = td_fail_oom(r->ctx, 256, "a URL");
        goto out;
    }
    if ((s = file_metadata(r, file, url, &etag, &size)) != TD_OK)
        goto out;
    if ((s = fetch_blob(r, file, url, etag, size)) != TD_OK)
        goto out;
    s = link_snapshot_file(r, file, etag);
    td_debug("%s: %s (%llu bytes) -> blobs/%s", r->repo_id, file, (unsigned long long)size, etag);
out:
    free(link_path);
    free(file_esc);
    free(url);
    free(etag);
    return s;
}

static td_status refuse_pickle(hub_run *r, char **files, size_t n) {
    const char *found = NULL;
    for (size_t i = 0; i < sizeof pickle_weight_files / sizeof *pickle_weight_files && !found; i++)
        if (list_has(files, n, pickle_weight_files[i]))
            found = pickle_weight_files[i];
    if (found)
        return td_fail(r->ctx, TD_ERR_UNSUPPORTED,
                       "%s (revision %s) has no safetensors weights, only %s; tdeploy does not unpickle (loading a "
                       "pickle can run arbitrary code). Convert it once where you trust the file, e.g. python -c "
                       "\"from transformers import AutoModel as M; M.from_pretrained('%s', revision='%s')"
                       ".save_pretrained('DIR', safe_serialization=True)\", copy the tokenizer files next to it and "
                       "run tdeploy on DIR; or pick a revision that has model.safetensors (the Hub's safetensors "
                       "conversion bot opens one as a pull request, refs/pr/N)",
                       r->repo_id, r->revision, found, r->repo_id, r->revision);
    return td_fail(r->ctx, TD_ERR_UNSUPPORTED,
                   "%s (revision %s) has no %s or %s: tdeploy needs safetensors weights", r->repo_id, r->revision,
                   WEIGHTS_SINGLE, WEIGHTS_INDEX);
}

static td_status write_ref(hub_run *r) {
    char *ref = NULL, *dir = NULL;
    td_status s = TD_OK;
    if (strcmp(r->revision, r->commit) == 0)
        return TD_OK; /* huggingface_hub writes no ref for a commit id */
    if (asprintf(&ref, "%s/refs/%s", r->repo_dir, r->revision) < 0) {
        ref = NULL;
        s = td_fail_oom(r->ctx, 256, "a path");
        goto out;
    }
    if (!(dir = td_path_dirname(ref))) {
        s = td_fail_oom(r->ctx, 256, "a path");
        goto out;
    }
    if ((s = td_hub_make_dirs(r->ctx, r->cache, dir)) == TD_OK)
        s = td_write_file_atomic(r->ctx, ref, r->commit, strlen(r->commit));
out:
    free(ref);
    free(dir);
    return s;
}

/* Download everything tdeploy needs of r->repo_id at r->revision. */
static td_status download_repo(hub_run *r) {
    char **files = NULL, **shards = NULL;
    size_t n_files = 0, n_shards = 0;
    char *blobs = NULL, *index_path = NULL;
    td_status s = resolve_revision(r, &files, &n_files);
    if (s != TD_OK)
        goto out;
    if (!list_has(files, n_files, "config.json")) {
        s = td_fail(r->ctx, TD_ERR_UNSUPPORTED,
                    "%s (revision %s) has no config.json: it is not a transformers model repository", r->repo_id,
                    r->revision);
        goto out;
    }
    bool has_index = list_has(files, n_files, WEIGHTS_INDEX);
    if (!has_index && !list_has(files, n_files, WEIGHTS_SINGLE)) {
        s = refuse_pickle(r, files, n_files);
        goto out;
    }
    if (asprintf(&r->snap_dir, "%s/snapshots/%s", r->repo_dir, r->commit) < 0 ||
        asprintf(&blobs, "%s/blobs", r->repo_dir) < 0) {
        r->snap_dir = NULL;
        blobs = NULL;
        s = td_fail_oom(r->ctx, 256, "a path");
        goto out;
    }
    if ((s = td_hub_make_dirs(r->ctx, r->cache, blobs)) != TD_OK || (s = td_hub_make_dirs(r->ctx, r->cache, r->lock_dir)) != TD_OK ||
        (s = td_hub_make_dirs(r->ctx, r->cache, r->snap_dir)) != TD_OK)
        goto out;
    /* Small files first and weights last: a snapshot whose weights are present
     * is complete, which is what the cache check relies on. */
    for (size_t i = 0; i < n_files; i++)
        if (is_wanted_small(files[i]) && (s = fetch_file(r, files[i])) != TD_OK)
            goto out;
    if (has_index) {
        if ((s = fetch_file(r, WEIGHTS_INDEX)) != TD_OK)
            goto out;
        if (asprintf(&index_path, "%s/" WEIGHTS_INDEX, r->snap_dir) < 0) {
            index_path = NULL;
            s = td_fail_oom(r->ctx, 256, "a path");
            goto out;
        }
        if ((s = td_hub_index_shards(r->ctx, index_path, &shards, &n_shards)) != TD_OK)
            goto out;
        for (size_t i = 0; i < n_shards; i++)
            if (!list_has(files, n_files, shards[i])) {
                s = td_fail(r->ctx, TD_ERR_FORMAT, "%s: %s names the shard %s, which the repository does not have",
                            r->repo_id, WEIGHTS_INDEX, shards[i]);
                goto out;
            }
        for (size_t i = 0; i < n_shards; i++)
            if ((s = fetch_file(r, shards[i])) != TD_OK)
                goto out;
    } else if ((s = fetch_file(r, WEIGHTS_SINGLE)) != TD_OK)
        goto out;
    s = write_ref(r);
out:
    td_hub_free_list(files, n_files);
    td_hub_free_list(shards, n_shards);
    free(blobs);
    free(index_path);
    return s;
}

td_status td_hub_download(td_ctx *ctx, const char *repo_id, const char *revision, const td_hub_options *opts,
                          char **snapshot_dir_out) {
    td_hub_options defaults;
    char *token_from_file = NULL;
    hub_run r = {.ctx = ctx, .repo_id = repo_id, .revision = revision ? revision : "main"};
    td_status s = TD_OK;
    *snapshot_dir_out = NULL;
    if (!opts) {
        td_hub_options_init(&defaults);
        opts = &defaults;
    }
    if ((s = td_hub_check_repo_id(ctx, repo_id)) != TD_OK || (s = td_hub_check_revision(ctx, r.revision)) != TD_OK ||
        (s = td_hub_cache_dir(ctx, opts, &r.cache)) != TD_OK)
        goto out;
    bool offline = opts->offline < 0 ? env_truthy("HF_HUB_OFFLINE") : opts->offline > 0;
    if (offline || !opts->refresh) {
        td_ctx probe = {0};
        s = td_hub_cached_snapshot(&probe, repo_id, r.revision, opts, snapshot_dir_out);
        if (s == TD_OK)
            goto out;
        if (offline) {
            /* name what made it offline: the caller's option (--offline) or the environment */
            bool from_env = opts->offline < 0;
            s = td_fail(ctx, TD_ERR_NOT_FOUND,
                        "%s, so nothing is downloaded, and %s; %s to download it, or pass a model directory",
                        from_env ? "HF_HUB_OFFLINE is set" : "offline mode (--offline) is on", probe.message,
                        from_env ? "unset HF_HUB_OFFLINE" : "drop --offline");
            goto out;
        }
        s = TD_OK;
    }
    const char *endpoint = opts->endpoint ? opts->endpoint : env_nonempty("HF_ENDPOINT");
    const char *token = opts->token ? opts->token : env_nonempty("HF_TOKEN");
    if (!token)
        token = token_from_file = stored_token();
    if (!(r.endpoint = strdup(endpoint ? endpoint : DEFAULT_ENDPOINT))) {
        s = td_fail_oom(ctx, 256, "the endpoint");
        goto out;
    }
    for (size_t n = strlen(r.endpoint); n && r.endpoint[n - 1] == '/'; n--)
        r.endpoint[n - 1] = '\0';
    if (strncmp(r.endpoint, "http://", 7) != 0 && strncmp(r.endpoint, "https://", 8) != 0) {
        s = td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "HF_ENDPOINT '%s' is not an http:// or https:// URL", r.endpoint);
        goto out;
    }
    r.has_token = token && *token;
    r.progress = opts->progress;
    if (!(r.repo_dir = td_hub_repo_dir(r.cache, repo_id))) {
        s = td_fail_oom(ctx, 256, "a path");
        goto out;
    }
    const char *folder = strrchr(r.repo_dir, '/') + 1;
    if (asprintf(&r.lock_dir, "%s/.locks/%s", r.cache, folder) < 0) {
        r.lock_dir = NULL;
        s = td_fail_oom(ctx, 256, "a path");
        goto out;
    }
    long deadline = opts->deadline_s;
    const char *dl = env_nonempty("TDEPLOY_HUB_DEADLINE");
    if (deadline <= 0 && dl) {
        char *end;
        errno = 0;
        deadline = strtol(dl, &end, 10);
        if (errno || *end || deadline <= 0 || deadline > 30L * 24 * 3600) {
            s = td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                        "TDEPLOY_HUB_DEADLINE='%s' is not a number of seconds between 1 and 2592000", dl);
            goto out;
        }
    }
    if ((s = td_http_new(ctx, token, deadline, &r.http)) != TD_OK)
        goto out;
    if ((s = download_repo(&r)) != TD_OK)
        goto out;
    char why[1024] = "";
    if (!td_hub_snapshot_usable(r.snap_dir, why, sizeof why)) {
        s = td_fail(ctx, TD_ERR_INTERNAL, "%s downloaded but the snapshot is not usable: %s", repo_id, why);
        goto out;
    }
    *snapshot_dir_out = r.snap_dir;
    r.snap_dir = NULL;
out:
    td_http_response_clear(&r.resp);
    td_http_free(r.http);
    free(r.endpoint);
    free(r.cache);
    free(r.repo_dir);
    free(r.lock_dir);
    free(r.commit);
    free(r.snap_dir);
    free(token_from_file);
    return s;
}
