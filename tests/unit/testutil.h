/*
 * testutil.h — small helpers shared by the unit suites: a context with a small store, stats
 * snapshots, polling until every object is freed, a deterministic PRNG, timing, patterns.
 * Header-only (static functions), so each suite stays one file.
 */
#ifndef DEED_TESTUTIL_H
#define DEED_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deed.h"

#define TU_MiB (1024ull * 1024ull)
#define TU_STORE (64ull * TU_MiB)

extern char **environ;

/* Remove every DEED_* variable (the test runner sets DEED_LOG; tests that read the
 * environment want a clean slate). */
static inline void tu_clear_env(void)
{
    for (;;) {
        char name[256];
        int found = 0;
        for (char **e = environ; e && *e; e++) {
            if (strncmp(*e, "DEED_", 5) == 0) {
                const char *eq = strchr(*e, '=');
                size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
                if (n >= sizeof(name))
                    n = sizeof(name) - 1;
                memcpy(name, *e, n);
                name[n] = 0;
                found = 1;
                break;
            }
        }
        if (!found)
            return;
        unsetenv(name);
    }
}

static inline uint64_t tu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double tu_ms_since(uint64_t t0)
{
    return (double)(tu_now_ns() - t0) / 1e6;
}

static inline double tu_now_s(void)
{
    return (double)tu_now_ns() * 1e-9;
}

/* All of len bytes to / from a pipe or socket (EINTR retried); 0, or -1 on error or EOF. */
static inline int tu_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static inline int tu_read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A context with @p workers workers (0 = one per core) and a 64 MiB store. */
static inline deed_ctx_t *tu_init_w(uint32_t workers)
{
    deed_config_t cfg;
    deed_ctx_t *ctx = NULL;
    ck_assert_int_eq(deed_config_default(&cfg), DEED_OK);
    cfg.store_size = TU_STORE;
    cfg.num_workers = workers;
    cfg.pin_workers = 0; /* suites run in parallel: do not fight over cores */
    cfg.log_level = DEED_LOG_ERROR;
    ck_assert_int_eq(deed_init(&cfg, &ctx), DEED_OK);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static inline deed_ctx_t *tu_init(void)
{
    return tu_init_w(4);
}

static inline deed_stats_t tu_stats(deed_ctx_t *ctx)
{
    deed_stats_t s;
    memset(&s, 0, sizeof(s));
    s.size = sizeof(s);
    ck_assert_int_eq(deed_stats(ctx, &s), DEED_OK);
    return s;
}

/* Poll deed_stats until no object is alive and the store is empty, for up to @p ms.
 * Returns 1 on success; on failure prints the last snapshot and returns 0. */
static inline int tu_drained_within(deed_ctx_t *ctx, int ms)
{
    uint64_t t0 = tu_now_ns();
    deed_stats_t s;
    for (;;) {
        s = tu_stats(ctx);
        if (s.objects_alive == 0 && s.store_bytes_used == 0 && s.tasks_pending == 0)
            return 1;
        if (tu_ms_since(t0) > ms)
            break;
        usleep(1000);
    }
    fprintf(stderr,
            "not drained after %d ms: objects_alive=%llu (inline %llu, store %llu) "
            "store_bytes_used=%llu tasks_pending=%llu inline_bytes=%llu\n",
            ms, (unsigned long long)s.objects_alive, (unsigned long long)s.objects_inline,
            (unsigned long long)s.objects_in_store, (unsigned long long)s.store_bytes_used,
            (unsigned long long)s.tasks_pending, (unsigned long long)s.inline_bytes);
    return 0;
}

#define tu_assert_drained(ctx) ck_assert_msg(tu_drained_within((ctx), 5000), \
                                             "objects or store bytes leaked")

/* xorshift64*: deterministic, so failures reproduce. */
static inline uint64_t tu_rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Fill / check a byte pattern that depends on the seed and the offset. */
static inline void tu_fill(void *buf, size_t n, uint64_t seed)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 131u + seed * 7u + (i >> 8)) ^ (seed >> 3));
}

/* Index of the first wrong byte, or -1. */
static inline long tu_check(const void *buf, size_t n, uint64_t seed)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)((i * 131u + seed * 7u + (i >> 8)) ^ (seed >> 3)))
            return (long)i;
    return -1;
}

static inline uint64_t tu_fnv(const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Get an int64 object (fails the test on any error). */
static inline int64_t tu_get_i64(deed_ctx_t *ctx, deed_ref_t r)
{
    int64_t v = 0;
    size_t sz = 0;
    deed_status_t rc = deed_get_copy(ctx, r, &v, sizeof(v), &sz, DEED_WAIT_FOREVER);
    ck_assert_msg(rc == DEED_OK, "get_copy: %s", deed_strerror(rc));
    ck_assert_uint_eq(sz, sizeof(v));
    return v;
}

static inline deed_ref_t tu_put_i64(deed_ctx_t *ctx, int64_t v)
{
    deed_ref_t r;
    ck_assert_int_eq(deed_put(ctx, &v, sizeof(v), &r), DEED_OK);
    ck_assert(!deed_ref_is_null(r));
    return r;
}

/* Run one suite, forking per test (Check default); returns the exit status for main. */
static inline int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif /* DEED_TESTUTIL_H */
