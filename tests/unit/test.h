/* Minimal C test harness: CHECK records a failure and continues; the test's
 * main returns td_test_finish(), which prints "N passed, N failed" and is
 * non-zero when anything failed. */
#ifndef TD_TEST_H
#define TD_TEST_H

#include <stdio.h>
#include <stdlib.h>

static int td_test_pass_count, td_test_fail_count;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            td_test_pass_count++;                                                    \
        } else {                                                                     \
            td_test_fail_count++;                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                              \
    do {                                                                  \
        if (cond) {                                                       \
            td_test_pass_count++;                                         \
        } else {                                                          \
            td_test_fail_count++;                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                 \
            fputc('\n', stderr);                                          \
        }                                                                 \
    } while (0)

static inline const char *td_test_env(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static inline int td_test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, td_test_pass_count, td_test_fail_count);
    return td_test_fail_count ? 1 : 0;
}

#endif
