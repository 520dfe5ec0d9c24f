/*
 * rankprog.h — the rank side of the SPMD test programs (test_multirank, test_fault): the
 * fast data pattern and hash for large objects, the CHECK macro that records a failed check
 * and goes on, and the driver's small helpers (submit pinned to a rank, own stats, an exact
 * get that remembers a timeout).
 *
 * Include once per program, after deed.h, with GET_TIMEOUT_US defined (the driver's get
 * timeout in microseconds; an expression is fine).
 */
#ifndef DEED_TEST_RANKPROG_H
#define DEED_TEST_RANKPROG_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "deed.h"

#ifndef GET_TIMEOUT_US
#error "define GET_TIMEOUT_US before including rankprog.h"
#endif

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Fast word-wise pattern and hash, for large objects (hashed many times). */
static void dag_fill(void *buf, size_t n, uint64_t seed)
{
    unsigned char *p = buf;
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t w = mix64(seed ^ (k * 0x100000001b3ull));
        memcpy(p + k, &w, 8);
    }
    if (k < n) {
        uint64_t w = mix64(seed ^ (k * 0x100000001b3ull));
        memcpy(p + k, &w, n - k);
    }
}

static uint64_t dag_hash(const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint64_t h = 0x84222325cbf29ce4ull ^ n;
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t w;
        memcpy(&w, p + k, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 32;
    }
    for (; k < n; k++)
        h = (h ^ p[k]) * 0x100000001b3ull;
    return mix64(h);
}

static const char *g_scn = "?";
static int g_fails;
static int g_stuck; /* a get timed out: the runtime is stuck, stop waiting */

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            printf("%s: CHECK FAILED (%s:%d: %s): ", g_scn, __FILE__, __LINE__, #cond);       \
            printf(__VA_ARGS__);                                                              \
            printf("\n");                                                                     \
            fflush(stdout);                                                                   \
            g_fails++;                                                                        \
        }                                                                                     \
    } while (0)

static deed_status_t submit_on(deed_ctx_t *ctx, const char *name, int rank,
                               const deed_arg_in_t *args, uint32_t nargs, deed_ref_t *rets,
                               uint32_t nrets)
{
    deed_submit_opts_t opts = DEED_SUBMIT_OPTS_INIT;
    opts.rank = rank;
    return deed_submit_opts(ctx, deed_task_id(name), args, nargs, rets, nrets, &opts);
}

static deed_stats_t my_stats(deed_ctx_t *ctx)
{
    deed_stats_t s;
    memset(&s, 0, sizeof(s));
    s.size = sizeof(s);
    int rc = deed_stats(ctx, &s);
    CHECK(rc == DEED_OK, "deed_stats: %s", deed_strerror(rc));
    return s;
}

/* get_copy of exactly `size` bytes; 0 on success (a failed check is recorded, with the
 * task's own message when it failed). After one timeout, later gets only poll. */
static int get_exact(deed_ctx_t *ctx, deed_ref_t r, void *buf, size_t size, const char *what)
{
    size_t got = 0;
    deed_view_t v;
    int rc = deed_get_copy(ctx, r, buf, size, &got, g_stuck ? 0 : GET_TIMEOUT_US);
    if (rc == DEED_ERR_TIMEOUT)
        g_stuck = 1;
    if (rc < 0 && rc != DEED_ERR_TIMEOUT && rc != DEED_ERR_TOO_SMALL &&
        rc != DEED_ERR_INVALID_REF) {
        if (deed_get(ctx, r, &v, 0) != DEED_ERR_INVALID_REF) {
            CHECK(0, "%s: get: %s (code %d, msg %s)", what, deed_strerror(rc), v.error_code,
                  v.error_msg ? v.error_msg : "-");
            deed_view_release(ctx, &v);
            return -1;
        }
    }
    CHECK(rc == DEED_OK, "%s: get_copy: %s", what, deed_strerror(rc));
    if (rc != DEED_OK)
        return -1;
    CHECK(got == size, "%s: size %zu, expected %zu", what, got, size);
    return got == size ? 0 : -1;
}

#endif /* DEED_TEST_RANKPROG_H */
