/*
 * test_semantics.c — what the API promises, end to end on a one-rank runtime: chains,
 * diamonds, nested tasks, wait k-of-n and timeouts, error propagation, the three argument
 * kinds, several returns, contained refs, zero-copy views, in-place returns, get_copy sizes
 * and empty objects.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- tasks ---------------------------------------------------------------------------- */

static _Atomic uint64_t runs_inc, runs_after_fail;

/* Sum of every int64 argument (VALUE or REF) plus 1. */
static int t_inc(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    int64_t s = 1;
    atomic_fetch_add(&runs_inc, 1);
    for (uint32_t i = 0; i < n; i++) {
        if (a[i].size != sizeof(int64_t))
            return deed_task_fail(t, 90, "arg %u has %zu bytes", i, a[i].size);
        int64_t v;
        memcpy(&v, a[i].data, sizeof(v));
        s += v;
    }
    return deed_task_return(t, 0, &s, sizeof(s)) == DEED_OK ? 0 : 91;
}
DEED_REGISTER(t_inc)

/* Sum of the arguments (no +1). */
static int t_add(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    int64_t s = 0;
    for (uint32_t i = 0; i < n; i++) {
        int64_t v;
        if (a[i].size != sizeof(v))
            return deed_task_fail(t, 90, "arg %u has %zu bytes", i, a[i].size);
        memcpy(&v, a[i].data, sizeof(v));
        s += v;
    }
    deed_task_return(t, 0, &s, sizeof(s));
    return 0;
}
DEED_REGISTER(t_add)

/* Counts its runs; used downstream of a failure (must never run). */
static int t_after_fail(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)a;
    (void)n;
    atomic_fetch_add(&runs_after_fail, 1);
    int64_t x = 7;
    deed_task_return(t, 0, &x, sizeof(x));
    return 0;
}
DEED_REGISTER(t_after_fail)

/* Fails with code args[0] and message "boom <code> <tag>" (args[1] as a string), or with no
 * message at all when there is no second argument. */
static int t_fail(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    int code;
    memcpy(&code, a[0].data, sizeof(code));
    /* a return set before failing must not leak through */
    int64_t junk = 1234;
    deed_task_return(t, 0, &junk, sizeof(junk));
    if (n < 2)
        return code;
    return deed_task_fail(t, code, "boom %d %.*s", code, (int)a[1].size, (const char *)a[1].data);
}
DEED_REGISTER(t_fail)

/* Nested: depth d submits a child with d-1 and gets it; returns child + 1. */
static int t_nest(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    int64_t d;
    memcpy(&d, a[0].data, sizeof(d));
    if (d == 0) {
        int64_t z = 0;
        deed_task_return(t, 0, &z, sizeof(z));
        return 0;
    }
    deed_ctx_t *ctx = deed_task_ctx(t);
    if (ctx == NULL)
        return deed_task_fail(t, 80, "no ctx");
    int64_t dm1 = d - 1;
    deed_ref_t r;
    deed_arg_in_t in = DEED_VAL(&dm1, sizeof(dm1));
    if (deed_submit_name(ctx, "t_nest", &in, 1, &r, 1) != DEED_OK)
        return deed_task_fail(t, 81, "submit failed at depth %lld", (long long)d);
    deed_view_t v;
    deed_status_t rc = deed_get(ctx, r, &v, DEED_WAIT_FOREVER);
    if (rc != DEED_OK) {
        int code = v.error_code ? v.error_code : 82;
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", v.error_msg ? v.error_msg : deed_strerror(rc));
        deed_view_release(ctx, &v);
        deed_ref_release(ctx, r);
        return deed_task_fail(t, code, "%s", msg);
    }
    int64_t c;
    memcpy(&c, v.data, sizeof(c));
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, r);
    c += 1;
    deed_task_return(t, 0, &c, sizeof(c));
    return 0;
}
DEED_REGISTER(t_nest)

static int64_t fib_seq(int64_t n)
{
    int64_t a = 0, b = 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = a + b;
        a = b;
        b = c;
    }
    return a;
}

static int t_fib(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    int64_t k;
    memcpy(&k, a[0].data, sizeof(k));
    if (k < 2) {
        deed_task_return(t, 0, &k, sizeof(k));
        return 0;
    }
    deed_ctx_t *ctx = deed_task_ctx(t);
    int64_t k1 = k - 1, k2 = k - 2;
    deed_ref_t r[2];
    deed_arg_in_t in1 = DEED_VAL(&k1, sizeof(k1)), in2 = DEED_VAL(&k2, sizeof(k2));
    if (deed_submit_name(ctx, "t_fib", &in1, 1, &r[0], 1) != DEED_OK ||
        deed_submit_name(ctx, "t_fib", &in2, 1, &r[1], 1) != DEED_OK)
        return deed_task_fail(t, 70, "submit");
    int64_t x = 0, y = 0;
    size_t sz;
    deed_status_t rc1 = deed_get_copy(ctx, r[0], &x, sizeof(x), &sz, DEED_WAIT_FOREVER);
    deed_status_t rc2 = deed_get_copy(ctx, r[1], &y, sizeof(y), &sz, DEED_WAIT_FOREVER);
    deed_ref_release_n(ctx, r, 2);
    if (rc1 != DEED_OK || rc2 != DEED_OK)
        return deed_task_fail(t, 71, "get: %d %d", rc1, rc2);
    int64_t s = x + y;
    deed_task_return(t, 0, &s, sizeof(s));
    return 0;
}
DEED_REGISTER(t_fib)

/* Sleeps args[0] microseconds, returns args[0]. */
static int t_sleep(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    int64_t us;
    memcpy(&us, a[0].data, sizeof(us));
    usleep((useconds_t)us);
    deed_task_return(t, 0, &us, sizeof(us));
    return 0;
}
DEED_REGISTER(t_sleep)

/* Returns the concatenation of every VALUE/REF argument's bytes; checks the kinds match
 * the bytes it sees (REF args have their ref set, VALUE args do not). */
static int t_concat(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (a[i].kind == DEED_ARG_VALUE && !deed_ref_is_null(a[i].ref))
            return deed_task_fail(t, 60, "value arg %u has a ref", i);
        if (a[i].kind == DEED_ARG_REF && deed_ref_is_null(a[i].ref))
            return deed_task_fail(t, 61, "ref arg %u has no ref", i);
        if (a[i].kind == DEED_ARG_FUTURE)
            return deed_task_fail(t, 62, "unexpected future");
        if (a[i].size && a[i].data == NULL)
            return deed_task_fail(t, 63, "arg %u: NULL data", i);
        total += a[i].size;
    }
    void *buf = NULL;
    if (deed_task_return_alloc(t, 0, total, &buf) != DEED_OK)
        return deed_task_fail(t, 64, "alloc %zu", total);
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (a[i].size)
            memcpy((char *)buf + off, a[i].data, a[i].size);
        off += a[i].size;
    }
    return 0;
}
DEED_REGISTER(t_concat)

/* Argument 0 is a FUTURE: the task gets it itself and returns {fnv of the bytes, size}.
 * Also returns whether the ref it saw equals the one in args[1] (VALUE, the expected ref). */
static int t_getfut(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    if (n < 1 || a[0].kind != DEED_ARG_FUTURE)
        return deed_task_fail(t, 50, "arg 0 is not a future");
    if (a[0].data != NULL || a[0].size != 0)
        return deed_task_fail(t, 51, "a future arg carries bytes");
    if (n > 1) {
        deed_ref_t want;
        memcpy(&want, a[1].data, sizeof(want));
        if (!deed_ref_equal(want, a[0].ref))
            return deed_task_fail(t, 52, "future arg is not the submitted ref");
    }
    deed_ctx_t *ctx = deed_task_ctx(t);
    deed_view_t v;
    deed_status_t rc = deed_get(ctx, a[0].ref, &v, DEED_WAIT_FOREVER);
    if (rc != DEED_OK) {
        deed_view_release(ctx, &v);
        return deed_task_fail(t, 53, "get of the future: %s", deed_strerror(rc));
    }
    uint64_t out[2] = {tu_fnv(v.data, v.size), v.size};
    deed_view_release(ctx, &v);
    deed_task_return(t, 0, out, sizeof(out));
    return 0;
}
DEED_REGISTER(t_getfut)

/* K returns: return i = base * 100 + i (as int64), for every return the task has. */
static int t_multi(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    int64_t base;
    memcpy(&base, a[0].data, sizeof(base));
    uint32_t k = deed_task_nreturns(t);
    for (uint32_t i = 0; i < k; i++) {
        int64_t v = base * 100 + i;
        if (deed_task_return(t, i, &v, sizeof(v)) != DEED_OK)
            return deed_task_fail(t, 40, "return %u", i);
    }
    /* out of range */
    int64_t v = 0;
    if (deed_task_return(t, k, &v, sizeof(v)) != DEED_ERR_INVALID_ARG)
        return deed_task_fail(t, 41, "return index %u accepted", k);
    return 0;
}
DEED_REGISTER(t_multi)

/* Sets only return 0 and 2, and return 0 twice (the second replaces the first). */
static int t_partial(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)a;
    (void)n;
    char big[100000];
    memset(big, 'x', sizeof(big));
    deed_task_return(t, 0, big, sizeof(big)); /* store object, then replaced */
    deed_task_return(t, 0, "first", 5);
    deed_task_return(t, 2, "third", 5);
    return 0;
}
DEED_REGISTER(t_partial)

/* Puts 3 objects (one large), returns an outer object containing their refs, releases its
 * own refs to them. */
static int t_mkrefs(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)a;
    (void)n;
    deed_ctx_t *ctx = deed_task_ctx(t);
    deed_ref_t inner[3];
    static const size_t sizes[3] = {16, 1000, 200000};
    for (int i = 0; i < 3; i++) {
        void *b = malloc(sizes[i]);
        tu_fill(b, sizes[i], 100 + i);
        deed_status_t rc = deed_put(ctx, b, sizes[i], &inner[i]);
        free(b);
        if (rc != DEED_OK)
            return deed_task_fail(t, 30, "put %d", i);
    }
    if (deed_task_return_refs(t, 0, "outer", 5, inner, 3) != DEED_OK)
        return deed_task_fail(t, 31, "return_refs");
    deed_ref_release_n(ctx, inner, 3);
    return 0;
}
DEED_REGISTER(t_mkrefs)

/* Argument 0 is REF to an object with contained refs: gets each contained ref inside the
 * task and returns the sum of their fnv hashes. */
static int t_readrefs(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    deed_ctx_t *ctx = deed_task_ctx(t);
    uint64_t s = a[0].nrefs;
    for (uint32_t i = 0; i < a[0].nrefs; i++) {
        deed_view_t v;
        if (deed_get(ctx, a[0].refs[i], &v, DEED_WAIT_FOREVER) != DEED_OK) {
            deed_view_release(ctx, &v);
            return deed_task_fail(t, 20, "inner %u", i);
        }
        s += tu_fnv(v.data, v.size);
        deed_view_release(ctx, &v);
    }
    deed_task_return(t, 0, &s, sizeof(s));
    return 0;
}
DEED_REGISTER(t_readrefs)

/* Returns a 1 MiB object written in place. */
static int t_alloc(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    uint64_t size, seed;
    memcpy(&size, a[0].data, sizeof(size));
    memcpy(&seed, a[1].data, sizeof(seed));
    void *buf = NULL;
    if (deed_task_return_alloc(t, 0, size, &buf) != DEED_OK)
        return deed_task_fail(t, 10, "alloc");
    if (size && buf == NULL)
        return deed_task_fail(t, 11, "NULL buffer");
    tu_fill(buf, size, seed);
    return 0;
}
DEED_REGISTER(t_alloc)

/* Returns nothing at all (every return an empty object). */
static int t_empty(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)t;
    for (uint32_t i = 0; i < n; i++)
        if (a[i].size != 0)
            return 9;
    return 0;
}
DEED_REGISTER(t_empty)

/* ---- chains and diamonds ---------------------------------------------------------------- */

START_TEST(chain_100)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t prev = tu_put_i64(ctx, 5);
    for (int i = 0; i < 100; i++) {
        deed_ref_t next;
        deed_arg_in_t in = DEED_REF(prev);
        ck_assert_int_eq(deed_submit_name(ctx, "t_inc", &in, 1, &next, 1), DEED_OK);
        ck_assert(!deed_ref_equal(prev, next));
        ck_assert_int_eq(deed_ref_release(ctx, prev), DEED_OK); /* the task keeps it alive */
        prev = next;
    }
    ck_assert_int_eq(tu_get_i64(ctx, prev), 105);
    deed_ref_release(ctx, prev);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(chain_keep_every_link)
{
    /* every intermediate stays gettable while its ref is held */
    deed_ctx_t *ctx = tu_init_w(2);
    deed_ref_t r[101];
    r[0] = tu_put_i64(ctx, -50);
    for (int i = 1; i <= 100; i++) {
        deed_arg_in_t in = DEED_REF(r[i - 1]);
        ck_assert_int_eq(deed_submit_name(ctx, "t_inc", &in, 1, &r[i], 1), DEED_OK);
    }
    for (int i = 100; i >= 0; i--)
        ck_assert_int_eq(tu_get_i64(ctx, r[i]), -50 + i);
    ck_assert_int_eq(deed_ref_release_n(ctx, r, 101), DEED_OK);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(diamonds)
{
    deed_ctx_t *ctx = tu_init();
    /* a -> (b, c) -> d */
    deed_ref_t a = tu_put_i64(ctx, 10), b, c, d;
    deed_arg_in_t ia = DEED_REF(a);
    ck_assert_int_eq(deed_submit_name(ctx, "t_inc", &ia, 1, &b, 1), DEED_OK);
    ck_assert_int_eq(deed_submit_name(ctx, "t_inc", &ia, 1, &c, 1), DEED_OK);
    deed_arg_in_t bc[2] = {DEED_REF(b), DEED_REF(c)};
    ck_assert_int_eq(deed_submit_name(ctx, "t_add", bc, 2, &d, 1), DEED_OK);
    ck_assert_int_eq(tu_get_i64(ctx, d), 22);
    deed_ref_t rel[4] = {a, b, c, d};
    deed_ref_release_n(ctx, rel, 4);

    /* stacked diamonds: layer i has W nodes each adding two nodes of layer i-1; the same
     * argument twice in one task as well */
    enum { W = 8, L = 12 };
    deed_ref_t layer[W], next[W];
    int64_t model[W], mnext[W];
    for (int j = 0; j < W; j++) {
        layer[j] = tu_put_i64(ctx, j);
        model[j] = j;
    }
    for (int l = 0; l < L; l++) {
        for (int j = 0; j < W; j++) {
            int k = (j + 1 + l) % W;
            deed_arg_in_t in[2] = {DEED_REF(layer[j]), DEED_REF(layer[k])};
            ck_assert_int_eq(deed_submit_name(ctx, "t_add", in, 2, &next[j], 1), DEED_OK);
            mnext[j] = model[j] + model[k];
        }
        deed_ref_release_n(ctx, layer, W);
        memcpy(layer, next, sizeof(layer));
        memcpy(model, mnext, sizeof(model));
    }
    for (int j = 0; j < W; j++)
        ck_assert_int_eq(tu_get_i64(ctx, layer[j]), model[j]);
    deed_ref_release_n(ctx, layer, W);
    /* same ref twice as arguments */
    deed_ref_t x = tu_put_i64(ctx, 21), y;
    deed_arg_in_t xx[2] = {DEED_REF(x), DEED_REF(x)};
    ck_assert_int_eq(deed_submit_name(ctx, "t_add", xx, 2, &y, 1), DEED_OK);
    ck_assert_int_eq(tu_get_i64(ctx, y), 42);
    deed_ref_release(ctx, x);
    deed_ref_release(ctx, y);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- nested tasks ----------------------------------------------------------------------- */

static void nest_depth(uint32_t workers, int64_t depth)
{
    deed_ctx_t *ctx = tu_init_w(workers);
    deed_ref_t r;
    deed_arg_in_t in = DEED_VAL(&depth, sizeof(depth));
    ck_assert_int_eq(deed_submit_name(ctx, "t_nest", &in, 1, &r, 1), DEED_OK);
    ck_assert_int_eq(tu_get_i64(ctx, r), depth);
    deed_ref_release(ctx, r);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_ge(s.tasks_run, (uint64_t)depth + 1);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}

START_TEST(nested_depth_16)
{
    nest_depth(4, 16);
}
END_TEST

START_TEST(nested_depth_64_one_worker)
{
    /* a single worker slot: each level blocks in get, which must not deadlock */
    nest_depth(1, 64);
}
END_TEST

START_TEST(nested_parallel_roots)
{
    /* many nested chains at once on 2 workers: blocked tasks must give their slots away */
    deed_ctx_t *ctx = tu_init_w(2);
    enum { N = 32 };
    deed_ref_t r[N];
    for (int i = 0; i < N; i++) {
        int64_t d = 12 + i % 5;
        deed_arg_in_t in = DEED_VAL(&d, sizeof(d));
        ck_assert_int_eq(deed_submit_name(ctx, "t_nest", &in, 1, &r[i], 1), DEED_OK);
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(tu_get_i64(ctx, r[i]), 12 + i % 5);
    deed_ref_release_n(ctx, r, N);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(fib_15_to_20)
{
    deed_ctx_t *ctx = tu_init();
    for (int64_t k = 15; k <= 20; k++) {
        deed_ref_t r;
        deed_arg_in_t in = DEED_VAL(&k, sizeof(k));
        deed_stats_t s0 = tu_stats(ctx);
        ck_assert_int_eq(deed_submit_name(ctx, "t_fib", &in, 1, &r, 1), DEED_OK);
        int64_t got = tu_get_i64(ctx, r);
        ck_assert_msg(got == fib_seq(k), "fib(%lld) = %lld, expected %lld", (long long)k,
                      (long long)got, (long long)fib_seq(k));
        deed_ref_release(ctx, r);
        /* the tree has 2*fib(k+1)-1 tasks, every one of which ran */
        deed_stats_t s1 = tu_stats(ctx);
        ck_assert_uint_eq(s1.tasks_run - s0.tasks_run, (uint64_t)(2 * fib_seq(k + 1) - 1));
    }
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(fib_one_worker)
{
    deed_ctx_t *ctx = tu_init_w(1);
    int64_t k = 15;
    deed_ref_t r;
    deed_arg_in_t in = DEED_VAL(&k, sizeof(k));
    ck_assert_int_eq(deed_submit_name(ctx, "t_fib", &in, 1, &r, 1), DEED_OK);
    ck_assert_int_eq(tu_get_i64(ctx, r), fib_seq(15));
    deed_ref_release(ctx, r);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- wait and timeouts -------------------------------------------------------------------- */

static deed_ref_t submit_sleep(deed_ctx_t *ctx, int64_t us)
{
    deed_ref_t r;
    deed_arg_in_t in = DEED_VAL(&us, sizeof(us));
    ck_assert_int_eq(deed_submit_name(ctx, "t_sleep", &in, 1, &r, 1), DEED_OK);
    return r;
}

START_TEST(wait_k_of_n)
{
    deed_ctx_t *ctx = tu_init_w(8);
    deed_ref_t r[6];
    for (int i = 0; i < 3; i++)
        r[i] = submit_sleep(ctx, 1000);
    r[3] = tu_put_i64(ctx, 1); /* ready from the start */
    r[4] = submit_sleep(ctx, 3000000);
    r[5] = submit_sleep(ctx, 3000000);
    uint8_t ready[6];

    /* k satisfied well before the slow ones finish */
    memset(ready, 0xEE, sizeof(ready));
    uint64_t t0 = tu_now_ns();
    ck_assert_int_eq(deed_wait(ctx, r, 6, 4, 10000000, ready), DEED_OK);
    double ms = tu_ms_since(t0);
    ck_assert_msg(ms < 2500, "wait took %.0f ms", ms);
    int nready = 0;
    for (int i = 0; i < 6; i++) {
        ck_assert_uint_le(ready[i], 1);
        nready += ready[i];
    }
    ck_assert_int_ge(nready, 4);
    ck_assert_uint_eq(ready[3], 1);
    ck_assert_uint_eq(ready[4], 0);
    ck_assert_uint_eq(ready[5], 0);

    /* k = 6 with a short timeout: expires, flags still filled */
    memset(ready, 0xEE, sizeof(ready));
    t0 = tu_now_ns();
    ck_assert_int_eq(deed_wait(ctx, r, 6, 6, 100000, ready), DEED_ERR_TIMEOUT);
    ms = tu_ms_since(t0);
    ck_assert_msg(ms >= 95 && ms < 2500, "timeout after %.0f ms", ms);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(ready[i], 1);
    ck_assert_uint_eq(ready[4], 0);
    ck_assert_uint_eq(ready[5], 0);

    /* poll (timeout 0) */
    memset(ready, 0xEE, sizeof(ready));
    t0 = tu_now_ns();
    ck_assert_int_eq(deed_wait(ctx, r, 6, 5, 0, ready), DEED_ERR_TIMEOUT);
    ck_assert_msg(tu_ms_since(t0) < 500, "poll blocked");
    ck_assert_uint_eq(ready[0] + ready[1] + ready[2] + ready[3], 4);
    ck_assert_uint_eq(ready[4] + ready[5], 0);
    ck_assert_int_eq(deed_wait(ctx, r, 6, 4, 0, NULL), DEED_OK);
    ck_assert_int_eq(deed_wait(ctx, r, 6, 0, 0, NULL), DEED_OK); /* k = 0: trivially */
    ck_assert_int_eq(deed_wait(ctx, r, 0, 0, 0, NULL), DEED_OK);

    /* get with timeouts */
    deed_view_t v;
    t0 = tu_now_ns();
    ck_assert_int_eq(deed_get(ctx, r[4], &v, 0), DEED_ERR_TIMEOUT);
    ck_assert_int_eq(deed_get(ctx, r[4], &v, 50000), DEED_ERR_TIMEOUT);
    ms = tu_ms_since(t0);
    ck_assert_msg(ms >= 45 && ms < 2500, "get timeout after %.0f ms", ms);
    int64_t x;
    ck_assert_int_eq(deed_get_copy(ctx, r[5], &x, sizeof(x), NULL, 20000), DEED_ERR_TIMEOUT);
    ck_assert_int_eq(deed_get(ctx, r[3], &v, 0), DEED_OK); /* ready: poll succeeds */
    deed_view_release(ctx, &v);

    /* and eventually everything is ready */
    memset(ready, 0, sizeof(ready));
    ck_assert_int_eq(deed_wait(ctx, r, 6, 6, DEED_WAIT_FOREVER, ready), DEED_OK);
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq(ready[i], 1);
    ck_assert_int_eq(tu_get_i64(ctx, r[4]), 3000000);
    deed_ref_release_n(ctx, r, 6);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(wait_counts_errors_as_ready)
{
    deed_ctx_t *ctx = tu_init_w(4);
    int code = 5;
    deed_ref_t r[2];
    deed_arg_in_t in = DEED_VAL(&code, sizeof(code));
    ck_assert_int_eq(deed_submit_name(ctx, "t_fail", &in, 1, &r[0], 1), DEED_OK);
    r[1] = submit_sleep(ctx, 2000000);
    uint8_t ready[2] = {9, 9};
    ck_assert_int_eq(deed_wait(ctx, r, 2, 1, 5000000, ready), DEED_OK);
    ck_assert_uint_eq(ready[0], 1);
    ck_assert_uint_eq(ready[1], 0);
    deed_ref_release_n(ctx, r, 2);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

static deed_ctx_t *g_ctx;
static deed_ref_t g_ref;
static void *waiter_thread(void *p)
{
    (void)p;
    return (void *)(intptr_t)tu_get_i64(g_ctx, g_ref);
}

START_TEST(concurrent_getters)
{
    /* several application threads wait for the same object */
    deed_ctx_t *ctx = g_ctx = tu_init_w(2);
    g_ref = submit_sleep(ctx, 200000);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, waiter_thread, NULL);
    for (int i = 0; i < 8; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        ck_assert_int_eq((intptr_t)ret, 200000);
    }
    deed_ref_release(ctx, g_ref);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------ */

START_TEST(error_propagates_through_chain)
{
    deed_ctx_t *ctx = tu_init();
    atomic_store(&runs_after_fail, 0);
    atomic_store(&runs_inc, 0);
    int code = 42;
    const char *tag = "chain-tag";
    deed_arg_in_t in[2] = {DEED_VAL(&code, sizeof(code)), DEED_VAL(tag, strlen(tag))};
    deed_ref_t f, prev, side;
    ck_assert_int_eq(deed_submit_name(ctx, "t_fail", in, 2, &f, 1), DEED_OK);
    prev = f;
    ck_assert_int_eq(deed_ref_dup(ctx, f, &f), DEED_OK);
    for (int i = 0; i < 20; i++) {
        deed_ref_t next;
        deed_arg_in_t a[2] = {DEED_REF(prev), DEED_VAL(&i, sizeof(i))};
        ck_assert_int_eq(deed_submit_name(ctx, (i & 1) ? "t_inc" : "t_after_fail", a, 2,
                                          &next, 1), DEED_OK);
        deed_ref_release(ctx, prev);
        prev = next;
    }
    /* a dependent with a good argument as well */
    deed_ref_t good = tu_put_i64(ctx, 1);
    deed_arg_in_t mix[2] = {DEED_REF(good), DEED_REF(prev)};
    ck_assert_int_eq(deed_submit_name(ctx, "t_add", mix, 2, &side, 1), DEED_OK);

    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, f, &v, DEED_WAIT_FOREVER), DEED_ERR_TASK_FAILED);
    ck_assert_int_eq(v.error_code, 42);
    ck_assert_ptr_nonnull(v.error_msg);
    ck_assert_str_eq(v.error_msg, "boom 42 chain-tag");
    ck_assert_ptr_nonnull(v.priv);
    ck_assert_uint_eq(v.size, 0); /* the return set before failing is not visible */
    deed_view_release(ctx, &v);

    ck_assert_int_eq(deed_get(ctx, prev, &v, DEED_WAIT_FOREVER), DEED_ERR_TASK_FAILED);
    ck_assert_int_eq(v.error_code, 42);
    ck_assert_ptr_nonnull(v.error_msg);
    ck_assert_str_eq(v.error_msg, "boom 42 chain-tag");
    deed_view_release(ctx, &v);
    ck_assert_int_eq(deed_get(ctx, side, &v, DEED_WAIT_FOREVER), DEED_ERR_TASK_FAILED);
    ck_assert_int_eq(v.error_code, 42);
    ck_assert_str_eq(v.error_msg, "boom 42 chain-tag");
    deed_view_release(ctx, &v);

    int64_t x = 99;
    size_t sz = 77;
    ck_assert_int_eq(deed_get_copy(ctx, prev, &x, sizeof(x), &sz, DEED_WAIT_FOREVER),
                     DEED_ERR_TASK_FAILED);
    ck_assert_int_eq(x, 99);
    ck_assert_uint_eq(atomic_load(&runs_after_fail), 0);
    ck_assert_uint_eq(atomic_load(&runs_inc), 0);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_ge(s.tasks_failed, 22);
    ck_assert_uint_eq(s.tasks_run, 1); /* only t_fail ran */
    deed_ref_t rel[4] = {f, prev, side, good};
    deed_ref_release_n(ctx, rel, 4);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(error_without_message_and_every_return)
{
    deed_ctx_t *ctx = tu_init();
    int code = -77;
    deed_arg_in_t in = DEED_VAL(&code, sizeof(code));
    deed_ref_t r[3];
    ck_assert_int_eq(deed_submit_name(ctx, "t_fail", &in, 1, r, 3), DEED_OK);
    for (int i = 0; i < 3; i++) {
        deed_view_t v;
        ck_assert_int_eq(deed_get(ctx, r[i], &v, DEED_WAIT_FOREVER), DEED_ERR_TASK_FAILED);
        ck_assert_int_eq(v.error_code, -77);
        ck_assert_ptr_nonnull(v.error_msg); /* a default message */
        ck_assert(v.error_msg[0] != 0);
        deed_view_release(ctx, &v);
    }
    /* an error argument passed as a FUTURE: the task runs, and its get sees the error */
    deed_ref_t g;
    deed_arg_in_t fa = DEED_FUT(r[0]);
    ck_assert_int_eq(deed_submit_name(ctx, "t_getfut", &fa, 1, &g, 1), DEED_OK);
    deed_view_t v;
    deed_status_t rc = deed_get(ctx, g, &v, DEED_WAIT_FOREVER);
    ck_assert_int_eq(rc, DEED_ERR_TASK_FAILED);
    /* either propagated (-77) or the body's own failure (53); both are failures */
    ck_assert(v.error_code == -77 || v.error_code == 53);
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, g);
    deed_ref_release_n(ctx, r, 3);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(error_in_nested_child)
{
    /* t_nest at depth 0 with a bad arg fails; each level re-fails with the child's code
     * and message */
    deed_ctx_t *ctx = tu_init();
    int code = 13;
    const char *tag = "deep";
    deed_arg_in_t in[2] = {DEED_VAL(&code, sizeof(code)), DEED_VAL(tag, 4)};
    deed_ref_t f, r;
    ck_assert_int_eq(deed_submit_name(ctx, "t_fail", in, 2, &f, 1), DEED_OK);
    deed_arg_in_t a = DEED_REF(f);
    ck_assert_int_eq(deed_submit_name(ctx, "t_nest", &a, 1, &r, 1), DEED_OK);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, r, &v, DEED_WAIT_FOREVER), DEED_ERR_TASK_FAILED);
    ck_assert_int_eq(v.error_code, 13);
    ck_assert_str_eq(v.error_msg, "boom 13 deep");
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, f);
    deed_ref_release(ctx, r);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- arguments ----------------------------------------------------------------------------- */

START_TEST(args_by_value)
{
    deed_ctx_t *ctx = tu_init();
    size_t sizes[] = {1, 0, 7, 4096, 70000, 300000, 3};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    void *bufs[N];
    deed_arg_in_t in[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        bufs[i] = sizes[i] ? malloc(sizes[i]) : NULL;
        tu_fill(bufs[i], sizes[i], 1000 + i);
        in[i] = DEED_VAL(bufs[i], sizes[i]);
        total += sizes[i];
    }
    deed_ref_t r;
    ck_assert_int_eq(deed_submit_name(ctx, "t_concat", in, N, &r, 1), DEED_OK);
    /* the bytes were copied at submit: scribbling now must not matter */
    for (int i = 0; i < N; i++)
        if (sizes[i])
            memset(bufs[i], 0, sizes[i]);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, r, &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(v.size, total);
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(tu_check((const char *)v.data + off, sizes[i], 1000 + i), -1);
        off += sizes[i];
        free(bufs[i]);
    }
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, r);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(args_by_reference_large)
{
    deed_ctx_t *ctx = tu_init();
    const size_t big = 3 * TU_MiB + 17, mid = 65 * 1024 + 1;
    void *b1 = malloc(big), *b2 = malloc(mid);
    tu_fill(b1, big, 1);
    tu_fill(b2, mid, 2);
    deed_ref_t o1, o2, r;
    deed_stats_t s0 = tu_stats(ctx);
    ck_assert_int_eq(deed_put(ctx, b1, big, &o1), DEED_OK);
    ck_assert_int_eq(deed_put(ctx, b2, mid, &o2), DEED_OK);
    memset(b1, 0, big); /* put copied */
    deed_arg_in_t in[3] = {DEED_REF(o1), DEED_VAL("|", 1), DEED_REF(o2)};
    ck_assert_int_eq(deed_submit_name(ctx, "t_concat", in, 3, &r, 1), DEED_OK);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, r, &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(v.size, big + 1 + mid);
    ck_assert_int_eq(tu_check(v.data, big, 1), -1);
    ck_assert_int_eq(((const char *)v.data)[big], '|');
    ck_assert_int_eq(tu_check((const char *)v.data + big + 1, mid, 2), -1);
    /* the large objects live in the store */
    deed_stats_t s1 = tu_stats(ctx);
    ck_assert_uint_ge(s1.objects_in_store, s0.objects_in_store + 3);
    ck_assert_uint_ge(s1.store_bytes_used, s0.store_bytes_used + 2 * big + 2 * mid);
    deed_view_release(ctx, &v);
    /* the original large object, read back through get */
    ck_assert_int_eq(deed_get(ctx, o1, &v, 0), DEED_OK);
    ck_assert_uint_eq(v.size, big);
    ck_assert_int_eq(tu_check(v.data, big, 1), -1);
    deed_view_release(ctx, &v);
    deed_ref_t rel[3] = {o1, o2, r};
    deed_ref_release_n(ctx, rel, 3);
    free(b1);
    free(b2);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(args_as_future)
{
    deed_ctx_t *ctx = tu_init_w(4);
    const size_t n = 200000;
    void *b = malloc(n);
    tu_fill(b, n, 9);
    deed_ref_t o, r, s, r2;
    ck_assert_int_eq(deed_put(ctx, b, n, &o), DEED_OK);
    deed_arg_in_t in[2] = {DEED_FUT(o), DEED_VAL(&o, sizeof(o))};
    ck_assert_int_eq(deed_submit_name(ctx, "t_getfut", in, 2, &r, 1), DEED_OK);
    deed_ref_release(ctx, o); /* the borrowing task keeps it alive */
    uint64_t out[2];
    ck_assert_int_eq(deed_get_copy(ctx, r, out, sizeof(out), NULL, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(out[0], tu_fnv(b, n));
    ck_assert_uint_eq(out[1], n);
    /* a future of a task that is still running: the task body waits for it itself */
    s = submit_sleep(ctx, 100000);
    deed_arg_in_t in2[2] = {DEED_FUT(s), DEED_VAL(&s, sizeof(s))};
    ck_assert_int_eq(deed_submit_name(ctx, "t_getfut", in2, 2, &r2, 1), DEED_OK);
    int64_t us = 100000;
    ck_assert_int_eq(deed_get_copy(ctx, r2, out, sizeof(out), NULL, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(out[0], tu_fnv(&us, sizeof(us)));
    ck_assert_uint_eq(out[1], sizeof(us));
    deed_ref_t rel[3] = {r, s, r2};
    deed_ref_release_n(ctx, rel, 3);
    free(b);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- returns -------------------------------------------------------------------------------- */

START_TEST(five_returns)
{
    deed_ctx_t *ctx = tu_init();
    for (int64_t base = 1; base <= 20; base++) {
        deed_ref_t r[5];
        deed_arg_in_t in = DEED_VAL(&base, sizeof(base));
        ck_assert_int_eq(deed_submit_name(ctx, "t_multi", &in, 1, r, 5), DEED_OK);
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < i; j++)
                ck_assert(!deed_ref_equal(r[i], r[j]));
        for (int i = 4; i >= 0; i--)
            ck_assert_int_eq(tu_get_i64(ctx, r[i]), base * 100 + i);
        deed_ref_release_n(ctx, r, 5);
    }
    /* 255 returns is the limit */
    deed_ref_t *many = calloc(255, sizeof(*many));
    int64_t base = 3;
    deed_arg_in_t in = DEED_VAL(&base, sizeof(base));
    ck_assert_int_eq(deed_submit_name(ctx, "t_multi", &in, 1, many, 255), DEED_OK);
    ck_assert_int_eq(tu_get_i64(ctx, many[254]), 300 + 254);
    ck_assert_int_eq(tu_get_i64(ctx, many[0]), 300);
    deed_ref_release_n(ctx, many, 255);
    free(many);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(unset_returns_are_empty)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t r[4];
    ck_assert_int_eq(deed_submit_name(ctx, "t_partial", NULL, 0, r, 4), DEED_OK);
    char buf[16];
    size_t sz = 99;
    ck_assert_int_eq(deed_get_copy(ctx, r[0], buf, sizeof(buf), &sz, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(sz, 5);
    ck_assert_int_eq(memcmp(buf, "first", 5), 0);
    ck_assert_int_eq(deed_get_copy(ctx, r[1], buf, sizeof(buf), &sz, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(sz, 0);
    ck_assert_int_eq(deed_get_copy(ctx, r[2], buf, sizeof(buf), &sz, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(sz, 5);
    ck_assert_int_eq(memcmp(buf, "third", 5), 0);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, r[3], &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(v.size, 0);
    ck_assert_ptr_null(v.data);
    ck_assert_uint_eq(v.nrefs, 0);
    deed_view_release(ctx, &v);
    deed_ref_release_n(ctx, r, 4);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(return_alloc_1mib)
{
    deed_ctx_t *ctx = tu_init();
    uint64_t sizes[] = {TU_MiB, 1, 100, 65536, 65537, 5 * TU_MiB + 3};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t seed = 50 + i;
        deed_arg_in_t in[2] = {DEED_VAL(&sizes[i], 8), DEED_VAL(&seed, 8)};
        deed_ref_t r;
        ck_assert_int_eq(deed_submit_name(ctx, "t_alloc", in, 2, &r, 1), DEED_OK);
        deed_view_t v;
        ck_assert_int_eq(deed_get(ctx, r, &v, DEED_WAIT_FOREVER), DEED_OK);
        ck_assert_uint_eq(v.size, sizes[i]);
        ck_assert_int_eq(tu_check(v.data, v.size, seed), -1);
        deed_view_release(ctx, &v);
        /* and by copy */
        void *buf = malloc(sizes[i]);
        size_t sz = 0;
        ck_assert_int_eq(deed_get_copy(ctx, r, buf, sizes[i], &sz, DEED_WAIT_FOREVER), DEED_OK);
        ck_assert_uint_eq(sz, sizes[i]);
        ck_assert_int_eq(tu_check(buf, sz, seed), -1);
        free(buf);
        deed_ref_release(ctx, r);
    }
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- contained refs --------------------------------------------------------------------------- */

START_TEST(put_refs_keeps_inner_alive)
{
    deed_ctx_t *ctx = tu_init();
    const size_t sizes[3] = {8, 5000, 400000};
    deed_ref_t inner[3], outer;
    for (int i = 0; i < 3; i++) {
        void *b = malloc(sizes[i]);
        tu_fill(b, sizes[i], 200 + i);
        ck_assert_int_eq(deed_put(ctx, b, sizes[i], &inner[i]), DEED_OK);
        free(b);
    }
    ck_assert_int_eq(deed_put_refs(ctx, "hdr", 3, inner, 3, &outer), DEED_OK);
    deed_ref_t expect[3];
    memcpy(expect, inner, sizeof(inner));
    ck_assert_int_eq(deed_ref_release_n(ctx, inner, 3), DEED_OK);
    /* give the releases time to be processed before looking */
    usleep(20000);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, outer, &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(v.size, 3);
    ck_assert_int_eq(memcmp(v.data, "hdr", 3), 0);
    ck_assert_uint_eq(v.nrefs, 3);
    ck_assert_ptr_nonnull(v.refs);
    for (int i = 0; i < 3; i++) {
        ck_assert(deed_ref_equal(v.refs[i], expect[i]));
        deed_view_t iv;
        ck_assert_int_eq(deed_get(ctx, v.refs[i], &iv, 0), DEED_OK);
        ck_assert_uint_eq(iv.size, sizes[i]);
        ck_assert_int_eq(tu_check(iv.data, iv.size, 200 + i), -1);
        deed_view_release(ctx, &iv);
    }
    /* a dup of a contained ref outlives the outer object */
    deed_ref_t kept;
    ck_assert_int_eq(deed_ref_dup(ctx, v.refs[2], &kept), DEED_OK);
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, outer);
    usleep(20000);
    ck_assert_int_eq(deed_get(ctx, kept, &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_int_eq(tu_check(v.data, v.size, 202), -1);
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, kept);
    /* outer released: its inner objects 0 and 1 are gone */
    usleep(20000);
    ck_assert_int_eq(deed_get(ctx, expect[0], &v, 0), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(nested_contained_refs)
{
    /* a chain of objects, each containing the previous one, only the last ref held */
    deed_ctx_t *ctx = tu_init();
    deed_ref_t prev;
    int64_t zero = 0;
    ck_assert_int_eq(deed_put(ctx, &zero, sizeof(zero), &prev), DEED_OK);
    for (int64_t i = 1; i < 200; i++) {
        deed_ref_t next;
        ck_assert_int_eq(deed_put_refs(ctx, &i, sizeof(i), &prev, 1, &next), DEED_OK);
        deed_ref_release(ctx, prev);
        prev = next;
    }
    /* walk down */
    deed_ref_t cur = prev;
    deed_view_t views[200];
    for (int64_t i = 199; i >= 0; i--) {
        ck_assert_int_eq(deed_get(ctx, cur, &views[i], DEED_WAIT_FOREVER), DEED_OK);
        int64_t x;
        memcpy(&x, views[i].data, sizeof(x));
        ck_assert_int_eq(x, i);
        ck_assert_uint_eq(views[i].nrefs, i ? 1 : 0);
        if (i)
            cur = views[i].refs[0];
    }
    for (int i = 0; i < 200; i++)
        deed_view_release(ctx, &views[i]);
    deed_ref_release(ctx, prev);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(task_returns_refs)
{
    deed_ctx_t *ctx = tu_init();
    static const size_t sizes[3] = {16, 1000, 200000};
    deed_ref_t outer, sum;
    ck_assert_int_eq(deed_submit_name(ctx, "t_mkrefs", NULL, 0, &outer, 1), DEED_OK);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, outer, &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(v.size, 5);
    ck_assert_int_eq(memcmp(v.data, "outer", 5), 0);
    ck_assert_uint_eq(v.nrefs, 3);
    uint64_t expect = 3;
    for (int i = 0; i < 3; i++) {
        deed_view_t iv;
        ck_assert_int_eq(deed_get(ctx, v.refs[i], &iv, DEED_WAIT_FOREVER), DEED_OK);
        ck_assert_uint_eq(iv.size, sizes[i]);
        ck_assert_int_eq(tu_check(iv.data, iv.size, 100 + i), -1);
        expect += tu_fnv(iv.data, iv.size);
        deed_view_release(ctx, &iv);
    }
    deed_view_release(ctx, &v);
    /* pass the outer object by REF: the task sees the contained refs and gets them */
    deed_arg_in_t in = DEED_REF(outer);
    ck_assert_int_eq(deed_submit_name(ctx, "t_readrefs", &in, 1, &sum, 1), DEED_OK);
    uint64_t got;
    ck_assert_int_eq(deed_get_copy(ctx, sum, &got, sizeof(got), NULL, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(got, expect);
    deed_ref_release(ctx, outer);
    deed_ref_release(ctx, sum);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- views, get_copy, empty objects ------------------------------------------------------- */

START_TEST(view_outlives_ref)
{
    deed_ctx_t *ctx = tu_init();
    const size_t n = 2 * TU_MiB;
    void *b = malloc(n);
    tu_fill(b, n, 77);
    deed_ref_t r, small;
    ck_assert_int_eq(deed_put(ctx, b, n, &r), DEED_OK);
    ck_assert_int_eq(deed_put(ctx, "tiny", 4, &small), DEED_OK);
    deed_view_t v, sv;
    ck_assert_int_eq(deed_get(ctx, r, &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, small, &sv, DEED_WAIT_FOREVER), DEED_OK);
    const void *p = v.data;
    ck_assert_int_eq(deed_ref_release(ctx, r), DEED_OK);
    ck_assert_int_eq(deed_ref_release(ctx, small), DEED_OK);
    /* churn the store so freed memory would be reused */
    for (int i = 0; i < 20; i++) {
        deed_ref_t x;
        memset(b, i, n);
        ck_assert_int_eq(deed_put(ctx, b, n, &x), DEED_OK);
        deed_ref_release(ctx, x);
    }
    usleep(20000);
    ck_assert_ptr_eq(v.data, p);
    ck_assert_uint_eq(v.size, n);
    ck_assert_int_eq(tu_check(v.data, n, 77), -1);
    ck_assert_int_eq(memcmp(sv.data, "tiny", 4), 0);
    ck_assert_int_eq(deed_view_release(ctx, &v), DEED_OK);
    ck_assert_int_eq(deed_view_release(ctx, &sv), DEED_OK);
    free(b);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(get_copy_sizes)
{
    deed_ctx_t *ctx = tu_init();
    char data[100], buf[200];
    tu_fill(data, sizeof(data), 5);
    deed_ref_t r, big;
    ck_assert_int_eq(deed_put(ctx, data, sizeof(data), &r), DEED_OK);
    memset(buf, 'Z', sizeof(buf));
    size_t sz = 0;
    ck_assert_int_eq(deed_get_copy(ctx, r, buf, 10, &sz, DEED_WAIT_FOREVER), DEED_ERR_TOO_SMALL);
    ck_assert_uint_eq(sz, 100);
    for (int i = 0; i < 200; i++)
        ck_assert_int_eq(buf[i], 'Z'); /* nothing copied */
    sz = 0;
    ck_assert_int_eq(deed_get_copy(ctx, r, buf, 99, &sz, DEED_WAIT_FOREVER), DEED_ERR_TOO_SMALL);
    ck_assert_uint_eq(sz, 100);
    sz = 0;
    ck_assert_int_eq(deed_get_copy(ctx, r, NULL, 0, &sz, DEED_WAIT_FOREVER), DEED_ERR_TOO_SMALL);
    ck_assert_uint_eq(sz, 100); /* size query */
    ck_assert_int_eq(deed_get_copy(ctx, r, buf, 100, &sz, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(sz, 100);
    ck_assert_int_eq(memcmp(buf, data, 100), 0);
    ck_assert_int_eq(buf[100], 'Z');
    ck_assert_int_eq(deed_get_copy(ctx, r, buf, 200, NULL, DEED_WAIT_FOREVER), DEED_OK);
    /* large (store) object */
    const size_t n = TU_MiB + 5;
    void *b = malloc(n), *c = malloc(n);
    tu_fill(b, n, 6);
    ck_assert_int_eq(deed_put(ctx, b, n, &big), DEED_OK);
    memset(c, 'Q', n);
    sz = 0;
    ck_assert_int_eq(deed_get_copy(ctx, big, c, n - 1, &sz, DEED_WAIT_FOREVER), DEED_ERR_TOO_SMALL);
    ck_assert_uint_eq(sz, n);
    ck_assert_int_eq(((char *)c)[0], 'Q');
    ck_assert_int_eq(deed_get_copy(ctx, big, c, n, &sz, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(sz, n);
    ck_assert_int_eq(memcmp(b, c, n), 0);
    free(b);
    free(c);
    deed_ref_release(ctx, r);
    deed_ref_release(ctx, big);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(empty_objects)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t p, t, c;
    ck_assert_int_eq(deed_put(ctx, NULL, 0, &p), DEED_OK);
    ck_assert(!deed_ref_is_null(p));
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, p, &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(v.size, 0);
    ck_assert_ptr_null(v.data);
    ck_assert_uint_eq(v.nrefs, 0);
    ck_assert_int_eq(v.error_code, 0);
    ck_assert_ptr_null(v.error_msg);
    ck_assert_int_eq(deed_view_release(ctx, &v), DEED_OK);
    size_t sz = 5;
    ck_assert_int_eq(deed_get_copy(ctx, p, NULL, 0, &sz, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(sz, 0);
    char buf[4] = "abc";
    ck_assert_int_eq(deed_get_copy(ctx, p, buf, sizeof(buf), &sz, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(sz, 0);
    ck_assert_str_eq(buf, "abc");
    /* empty as an argument (REF and VALUE), and a task with empty returns */
    deed_arg_in_t in[2] = {DEED_REF(p), DEED_VAL(NULL, 0)};
    ck_assert_int_eq(deed_submit_name(ctx, "t_empty", in, 2, &t, 1), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, t, &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(v.size, 0);
    deed_view_release(ctx, &v);
    ck_assert_int_eq(deed_submit_name(ctx, "t_concat", in, 2, &c, 1), DEED_OK);
    ck_assert_int_eq(deed_get_copy(ctx, c, buf, sizeof(buf), &sz, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(sz, 0);
    /* empty object that contains refs */
    deed_ref_t o;
    ck_assert_int_eq(deed_put_refs(ctx, NULL, 0, &p, 1, &o), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, o, &v, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_uint_eq(v.size, 0);
    ck_assert_uint_eq(v.nrefs, 1);
    ck_assert(deed_ref_equal(v.refs[0], p));
    deed_view_release(ctx, &v);
    deed_ref_t rel[4] = {p, t, c, o};
    deed_ref_release_n(ctx, rel, 4);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(dup_counts)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t r = tu_put_i64(ctx, 8), d1, d2;
    ck_assert_int_eq(deed_ref_dup(ctx, r, &d1), DEED_OK);
    ck_assert(deed_ref_equal(r, d1));
    ck_assert_int_eq(deed_ref_dup(ctx, d1, &d2), DEED_OK);
    deed_ref_release(ctx, r);
    deed_ref_release(ctx, d1);
    usleep(20000);
    ck_assert_int_eq(tu_get_i64(ctx, d2), 8); /* one count left */
    deed_ref_release(ctx, d2);
    usleep(20000);
    int64_t x;
    ck_assert_int_eq(deed_get_copy(ctx, d2, &x, sizeof(x), NULL, 0), DEED_ERR_INVALID_REF);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_eq(s.misuse, 0);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(finalize_waits_for_tasks)
{
    deed_ctx_t *ctx = tu_init_w(2);
    atomic_store(&runs_after_fail, 0);
    deed_ref_t s = submit_sleep(ctx, 200000), r;
    deed_arg_in_t in = DEED_REF(s);
    ck_assert_int_eq(deed_submit_name(ctx, "t_after_fail", &in, 1, &r, 1), DEED_OK);
    deed_ref_release(ctx, s);
    deed_ref_release(ctx, r);
    uint64_t t0 = tu_now_ns();
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
    ck_assert_msg(tu_ms_since(t0) >= 100, "finalize returned before the tasks ran");
    ck_assert_uint_eq(atomic_load(&runs_after_fail), 1);
}
END_TEST

/* Inside a task: get with a short timeout on a slow object times out; wait k-of-n too. */
static int t_timed_get(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    deed_ctx_t *ctx = deed_task_ctx(t);
    deed_view_t v;
    uint64_t t0 = tu_now_ns();
    deed_status_t rc1 = deed_get(ctx, a[0].ref, &v, 20000);
    double ms = tu_ms_since(t0);
    uint8_t rd = 9;
    deed_status_t rc2 = deed_wait(ctx, &a[0].ref, 1, 1, 20000, &rd);
    deed_status_t rc3 = deed_get(ctx, a[0].ref, &v, 0);
    if (rc1 != DEED_ERR_TIMEOUT || rc2 != DEED_ERR_TIMEOUT || rc3 != DEED_ERR_TIMEOUT ||
        rd != 0 || ms > 1500)
        return deed_task_fail(t, 1, "rc %d %d %d ready %u after %.0f ms", rc1, rc2, rc3, rd, ms);
    /* and then really wait */
    if (deed_get(ctx, a[0].ref, &v, DEED_WAIT_FOREVER) != DEED_OK)
        return deed_task_fail(t, 2, "final get");
    deed_view_release(ctx, &v);
    return 0;
}
DEED_REGISTER(t_timed_get)

START_TEST(timeouts_inside_a_task)
{
    deed_ctx_t *ctx = tu_init_w(4);
    deed_ref_t s = submit_sleep(ctx, 2000000), r;
    deed_arg_in_t in = DEED_FUT(s);
    ck_assert_int_eq(deed_submit_name(ctx, "t_timed_get", &in, 1, &r, 1), DEED_OK);
    deed_view_t v;
    deed_status_t rc = deed_get(ctx, r, &v, DEED_WAIT_FOREVER);
    ck_assert_msg(rc == DEED_OK, "%s: %s", deed_strerror(rc), v.error_msg ? v.error_msg : "");
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, s);
    deed_ref_release(ctx, r);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(get_timeout_on_queued_task)
{
    /* one worker busy with a long task; a second task is queued behind it. A get with a
     * 50 ms timeout on the queued task must return DEED_ERR_TIMEOUT after about 50 ms; it
     * must not run the queued 1 s task on the caller's thread and return late. */
    deed_ctx_t *ctx = tu_init_w(1);
    deed_ref_t busy = submit_sleep(ctx, 1000000);
    usleep(50000); /* let the worker take it */
    deed_ref_t queued = submit_sleep(ctx, 1000000);
    deed_view_t v;
    uint64_t t0 = tu_now_ns();
    deed_status_t rc = deed_get(ctx, queued, &v, 50000);
    double ms = tu_ms_since(t0);
    if (rc == DEED_OK)
        deed_view_release(ctx, &v);
    ck_assert_msg(rc == DEED_ERR_TIMEOUT && ms < 500,
                  "get(timeout 50 ms) returned %s after %.0f ms", deed_strerror(rc), ms);
    deed_ref_release(ctx, busy);
    deed_ref_release(ctx, queued);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(future_of_pending_object_released_early)
{
    deed_ctx_t *ctx = tu_init_w(2);
    deed_ref_t s = submit_sleep(ctx, 100000), r;
    deed_arg_in_t in[2] = {DEED_FUT(s), DEED_VAL(&s, sizeof(s))};
    ck_assert_int_eq(deed_submit_name(ctx, "t_getfut", in, 2, &r, 1), DEED_OK);
    ck_assert_int_eq(deed_ref_release(ctx, s), DEED_OK); /* only the borrower is left */
    uint64_t out[2];
    ck_assert_int_eq(deed_get_copy(ctx, r, out, sizeof(out), NULL, DEED_WAIT_FOREVER), DEED_OK);
    int64_t us = 100000;
    ck_assert_uint_eq(out[0], tu_fnv(&us, sizeof(us)));
    deed_ref_release(ctx, r);
    ck_assert_msg(tu_drained_within(ctx, 5000), "leak");
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("semantics");
    TCase *tc = tcase_create("semantics");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, chain_100);
    tcase_add_test(tc, chain_keep_every_link);
    tcase_add_test(tc, diamonds);
    tcase_add_test(tc, nested_depth_16);
    tcase_add_test(tc, nested_depth_64_one_worker);
    tcase_add_test(tc, nested_parallel_roots);
    tcase_add_test(tc, fib_15_to_20);
    tcase_add_test(tc, fib_one_worker);
    tcase_add_test(tc, wait_k_of_n);
    tcase_add_test(tc, wait_counts_errors_as_ready);
    tcase_add_test(tc, concurrent_getters);
    tcase_add_test(tc, error_propagates_through_chain);
    tcase_add_test(tc, error_without_message_and_every_return);
    tcase_add_test(tc, error_in_nested_child);
    tcase_add_test(tc, args_by_value);
    tcase_add_test(tc, args_by_reference_large);
    tcase_add_test(tc, args_as_future);
    tcase_add_test(tc, five_returns);
    tcase_add_test(tc, unset_returns_are_empty);
    tcase_add_test(tc, return_alloc_1mib);
    tcase_add_test(tc, put_refs_keeps_inner_alive);
    tcase_add_test(tc, nested_contained_refs);
    tcase_add_test(tc, task_returns_refs);
    tcase_add_test(tc, view_outlives_ref);
    tcase_add_test(tc, get_copy_sizes);
    tcase_add_test(tc, empty_objects);
    tcase_add_test(tc, dup_counts);
    tcase_add_test(tc, finalize_waits_for_tasks);
    tcase_add_test(tc, timeouts_inside_a_task);
    tcase_add_test(tc, get_timeout_on_queued_task);
    tcase_add_test(tc, future_of_pending_object_released_early);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
