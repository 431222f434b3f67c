/* The HF cache reader (hf/hub_cache.h): `~` expansion, cache location from the
 * environment, refs read only as regular files, the shard list of an index
 * (each name once, sorted) and directories created inside the cache without
 * following planted symlinks. */
#define _GNU_SOURCE
#include "hf/hub.h"
#include "hf/hub_cache.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static td_ctx *ctx;
static char tmp[1024];

static void rm_rf(const char *path) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    CHECK(system(cmd) == 0);
}

static void write_text(const char *path, const char *text) {
    CHECK_MSG(td_write_file_atomic(ctx, path, text, strlen(text)) == TD_OK, "%s", td_error_message(ctx));
}

static void test_expand_home(void) {
    setenv("HOME", "/home/someone", 1);
    char *p = td_hub_expand_home("~");
    CHECK(p && strcmp(p, "/home/someone") == 0);
    free(p);
    p = td_hub_expand_home("~/hf");
    CHECK(p && strcmp(p, "/home/someone/hf") == 0);
    free(p);
    p = td_hub_expand_home("/abs/~/x");
    CHECK(p && strcmp(p, "/abs/~/x") == 0);
    free(p);
    p = td_hub_expand_home("~no-such-user-tdeploy/x"); /* kept as it is, as Python's expanduser does */
    CHECK(p && strcmp(p, "~no-such-user-tdeploy/x") == 0);
    free(p);
    p = td_hub_expand_home("~root/x");
    CHECK(p && p[0] == '/' && strcmp(p + strlen(p) - 2, "/x") == 0);
    free(p);
}

static void test_cache_dir(void) {
    char *dir = NULL;
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/h", 1);
    CHECK(td_hub_cache_dir(ctx, NULL, &dir) == TD_OK && strcmp(dir, "/h/.cache/huggingface/hub") == 0);
    free(dir);
    setenv("XDG_CACHE_HOME", "~/xdg", 1);
    CHECK(td_hub_cache_dir(ctx, NULL, &dir) == TD_OK && strcmp(dir, "/h/xdg/huggingface/hub") == 0);
    free(dir);
    setenv("HF_HOME", "~/hfh", 1);
    CHECK(td_hub_cache_dir(ctx, NULL, &dir) == TD_OK && strcmp(dir, "/h/hfh/hub") == 0);
    free(dir);
    char *home = td_hub_home_dir(); /* where the login token lives too */
    CHECK(home && strcmp(home, "/h/hfh") == 0);
    free(home);
    unsetenv("HF_HOME");
    home = td_hub_home_dir();
    CHECK(home && strcmp(home, "/h/xdg/huggingface") == 0);
    free(home);
    setenv("HF_HUB_CACHE", "~/c//", 1); /* trailing slashes dropped: one spelling of one cache */
    CHECK(td_hub_cache_dir(ctx, NULL, &dir) == TD_OK && strcmp(dir, "/h/c") == 0);
    free(dir);
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
}

static void test_refs(void) {
    char repo[1200], refs[1300], path[1400];
    snprintf(repo, sizeof repo, "%s/models--a--b", tmp);
    snprintf(refs, sizeof refs, "%s/refs", repo);
    rm_rf(repo);
    CHECK(td_hub_make_dirs(ctx, tmp, refs) == TD_OK);
    snprintf(path, sizeof path, "%s/main", refs);
    const char *commit = "0123456789abcdef0123456789abcdef01234567";
    char *got = td_hub_cached_commit(repo, commit); /* a commit id is its own snapshot */
    CHECK(got && strcmp(got, commit) == 0);
    free(got);
    CHECK(td_hub_cached_commit(repo, "main") == NULL); /* no ref */
    write_text(path, "abc123 \t\r\n");
    got = td_hub_cached_commit(repo, "main");
    CHECK(got && strcmp(got, "abc123") == 0);
    free(got);
    const char *bad[] = {"../../etc", ".hidden", "a/b", "", "two words"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i]);
        got = td_hub_cached_commit(repo, "main");
        CHECK_MSG(got == NULL, "ref '%s' accepted as '%s'", bad[i], got);
        free(got);
    }
    unlink(path);
    CHECK(mkfifo(path, 0644) == 0);
    CHECK(td_hub_cached_commit(repo, "main") == NULL); /* returns at once: a FIFO is never read */
    unlink(path);
    CHECK(mkdir(path, 0755) == 0);
    CHECK(td_hub_cached_commit(repo, "main") == NULL);
    rmdir(path);
}

static void test_index_shards(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/index.json", tmp);
    write_text(path, "{\"weight_map\": {\"a\": \"m-2.safetensors\", \"b\": \"m-1.safetensors\", "
                     "\"c\": \"m-2.safetensors\", \"d\": \"m-1.safetensors\", \"e\": \"sub/m-3.safetensors\"}}");
    char **shards = NULL;
    size_t n = 0;
    CHECK_MSG(td_hub_index_shards(ctx, path, &shards, &n) == TD_OK, "%s", td_error_message(ctx));
    CHECK(n == 3 && shards && strcmp(shards[0], "m-1.safetensors") == 0 && strcmp(shards[1], "m-2.safetensors") == 0 &&
          strcmp(shards[2], "sub/m-3.safetensors") == 0);
    td_hub_free_list(shards, n);
    const char *bad[] = {"{\"weight_map\": {\"a\": \"../x.safetensors\"}}", "{\"weight_map\": {\"a\": \"/abs\"}}",
                         "{\"weight_map\": {\"a\": 3}}", "{\"weight_map\": {}}", "{\"weight_map\": []}", "not json"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i]);
        shards = NULL;
        n = 0;
        CHECK_MSG(td_hub_index_shards(ctx, path, &shards, &n) == TD_ERR_FORMAT && !shards && n == 0, "%s", bad[i]);
    }
}

static void test_make_dirs(void) {
    char root[1200], outside[1200], link[1300], path[1400], root_link[1300];
    snprintf(root, sizeof root, "%s/cache", tmp);
    snprintf(outside, sizeof outside, "%s/outside", tmp);
    rm_rf(root);
    rm_rf(outside);
    CHECK(mkdir(outside, 0755) == 0);
    snprintf(path, sizeof path, "%s/models--x/blobs", root);
    CHECK_MSG(td_hub_make_dirs(ctx, root, path) == TD_OK, "%s", td_error_message(ctx));
    CHECK(td_is_dir(path));
    /* a symlink below the root is refused, and nothing is created where it points */
    snprintf(link, sizeof link, "%s/models--y", root);
    CHECK(symlink(outside, link) == 0);
    snprintf(path, sizeof path, "%s/models--y/snapshots", root);
    CHECK(td_hub_make_dirs(ctx, root, path) == TD_ERR_IO && strstr(td_error_message(ctx), "symbolic link"));
    snprintf(path, sizeof path, "%s/snapshots", outside);
    CHECK(!td_is_dir(path));
    /* a file where a directory belongs is refused too */
    snprintf(path, sizeof path, "%s/models--z", root);
    write_text(path, "x");
    snprintf(path, sizeof path, "%s/models--z/refs", root);
    CHECK(td_hub_make_dirs(ctx, root, path) == TD_ERR_IO);
    /* the root itself may be a symlink (a cache moved to another disk) */
    snprintf(root_link, sizeof root_link, "%s/cache-link", tmp);
    unlink(root_link);
    CHECK(symlink(outside, root_link) == 0);
    snprintf(path, sizeof path, "%s/models--x/refs", root_link);
    CHECK_MSG(td_hub_make_dirs(ctx, root_link, path) == TD_OK, "%s", td_error_message(ctx));
    snprintf(path, sizeof path, "%s/models--x/refs", outside);
    CHECK(td_is_dir(path));
    /* a path outside the root is a caller's bug, not a directory to make */
    CHECK(td_hub_make_dirs(ctx, root, "/elsewhere/x") == TD_ERR_INTERNAL);
}

int main(void) {
    ctx = td_ctx_new();
    snprintf(tmp, sizeof tmp, "%s/test_hub_cache", td_test_env("TD_TMP", "/tmp"));
    rm_rf(tmp);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp);
    CHECK(system(cmd) == 0);
    char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    test_expand_home();
    test_cache_dir();
    if (saved_home)
        setenv("HOME", saved_home, 1);
    free(saved_home);
    test_refs();
    test_index_shards();
    test_make_dirs();
    td_ctx_free(ctx);
    return td_test_finish("test_hub_cache");
}
