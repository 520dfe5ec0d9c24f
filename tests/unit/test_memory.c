/*
 * test_memory.c — nothing leaks: after every ref and view is released, deed_stats reports
 * objects_alive == 0 and store_bytes_used == 0 (polled for a bounded time, since releases are
 * asynchronous), for each scenario: chains, diamonds, nested tasks, contained refs, failed
 * tasks, large objects, views, cancelled timeouts, dups, futures, replaced returns.
 * Each scenario also checks that the counters are non-zero while objects are held, so the
 * final zero is meaningful.
 */
#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- tasks ---------------------------------------------------------------------------- */

static int m_inc(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    int64_t s = 1;
    for (uint32_t i = 0; i < n; i++) {
        int64_t v = 0;
        if (a[i].size == sizeof(v))
            memcpy(&v, a[i].data, sizeof(v));
        s += v;
    }
    deed_task_return(t, 0, &s, sizeof(s));
    return 0;
}
DEED_REGISTER(m_inc)

static int m_sleep(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    int64_t us;
    memcpy(&us, a[0].data, sizeof(us));
    usleep((useconds_t)us);
    deed_task_return(t, 0, &us, sizeof(us));
    return 0;
}
DEED_REGISTER(m_sleep)

/* Sets a large return (store) and a contained-ref return, then fails. */
static int m_fail(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)a;
    (void)n;
    deed_ctx_t *ctx = deed_task_ctx(t);
    void *buf;
    if (deed_task_return_alloc(t, 0, 300000, &buf) == DEED_OK)
        memset(buf, 1, 300000);
    if (deed_task_nreturns(t) > 1) {
        deed_ref_t in;
        char big[100000];
        memset(big, 2, sizeof(big));
        if (deed_put(ctx, big, sizeof(big), &in) == DEED_OK) {
            deed_task_return_refs(t, 1, "x", 1, &in, 1);
            deed_ref_release(ctx, in);
        }
    }
    return deed_task_fail(t, 7, "failed on purpose");
}
DEED_REGISTER(m_fail)

static int m_nest(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    int64_t d;
    memcpy(&d, a[0].data, sizeof(d));
    deed_ctx_t *ctx = deed_task_ctx(t);
    /* every level also puts a large temporary object and releases it */
    char *tmp = malloc(70000);
    memset(tmp, (int)d, 70000);
    deed_ref_t tr;
    if (deed_put(ctx, tmp, 70000, &tr) == DEED_OK)
        deed_ref_release(ctx, tr);
    free(tmp);
    if (d == 0) {
        deed_task_return(t, 0, &d, sizeof(d));
        return 0;
    }
    int64_t dm1 = d - 1;
    deed_ref_t r;
    deed_arg_in_t in = DEED_VAL(&dm1, sizeof(dm1));
    if (deed_submit_name(ctx, "m_nest", &in, 1, &r, 1) != DEED_OK)
        return 1;
    deed_view_t v;
    if (deed_get(ctx, r, &v, DEED_WAIT_FOREVER) != DEED_OK) {
        deed_view_release(ctx, &v);
        deed_ref_release(ctx, r);
        return 2;
    }
    int64_t c;
    memcpy(&c, v.data, sizeof(c));
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, r);
    c++;
    deed_task_return(t, 0, &c, sizeof(c));
    return 0;
}
DEED_REGISTER(m_nest)

static int m_fib(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    int64_t k;
    memcpy(&k, a[0].data, sizeof(k));
    if (k < 2) {
        deed_task_return(t, 0, &k, sizeof(k));
        return 0;
    }
    deed_ctx_t *ctx = deed_task_ctx(t);
    int64_t k1 = k - 1, k2 = k - 2, x = 0, y = 0;
    deed_ref_t r[2];
    deed_arg_in_t i1 = DEED_VAL(&k1, 8), i2 = DEED_VAL(&k2, 8);
    deed_submit_name(ctx, "m_fib", &i1, 1, &r[0], 1);
    deed_submit_name(ctx, "m_fib", &i2, 1, &r[1], 1);
    deed_get_copy(ctx, r[0], &x, 8, NULL, DEED_WAIT_FOREVER);
    deed_get_copy(ctx, r[1], &y, 8, NULL, DEED_WAIT_FOREVER);
    deed_ref_release_n(ctx, r, 2);
    x += y;
    deed_task_return(t, 0, &x, 8);
    return 0;
}
DEED_REGISTER(m_fib)

/* Puts objects and returns an outer object holding them. */
static int m_mkrefs(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)a;
    (void)n;
    deed_ctx_t *ctx = deed_task_ctx(t);
    deed_ref_t in[3];
    char *b = malloc(150000);
    memset(b, 3, 150000);
    deed_put(ctx, b, 150000, &in[0]);
    deed_put(ctx, b, 10, &in[1]);
    deed_put_refs(ctx, b, 70000, &in[0], 1, &in[2]); /* nested containment */
    free(b);
    deed_task_return_refs(t, 0, "o", 1, in, 3);
    deed_task_return_refs(t, 0, "o2", 2, in, 2); /* replaced: the first HOLDs are dropped */
    deed_ref_release_n(ctx, in, 3);
    return 0;
}
DEED_REGISTER(m_mkrefs)

/* Reads a FUTURE argument. */
static int m_getfut(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    deed_ctx_t *ctx = deed_task_ctx(t);
    deed_view_t v;
    deed_status_t rc = deed_get(ctx, a[0].ref, &v, DEED_WAIT_FOREVER);
    uint64_t sz = v.size;
    deed_view_release(ctx, &v);
    if (rc != DEED_OK)
        return 3;
    deed_task_return(t, 0, &sz, sizeof(sz));
    return 0;
}
DEED_REGISTER(m_getfut)

/* Echo a REF argument into a new object (1:1 copy via return_alloc). */
static int m_copy(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    void *b;
    if (deed_task_return_alloc(t, 0, a[0].size, &b) != DEED_OK)
        return 4;
    if (a[0].size)
        memcpy(b, a[0].data, a[0].size);
    return 0;
}
DEED_REGISTER(m_copy)

/* ---- helpers -------------------------------------------------------------------------- */

static deed_ref_t sub1(deed_ctx_t *ctx, const char *name, const deed_arg_in_t *in, uint32_t n)
{
    deed_ref_t r;
    ck_assert_int_eq(deed_submit_name(ctx, name, in, n, &r, 1), DEED_OK);
    return r;
}

static deed_ref_t put_big(deed_ctx_t *ctx, size_t n, uint64_t seed)
{
    void *b = malloc(n);
    tu_fill(b, n, seed);
    deed_ref_t r;
    ck_assert_int_eq(deed_put(ctx, b, n, &r), DEED_OK);
    free(b);
    return r;
}

/* Fails the test unless some object is alive right now (the final zero must mean
 * something). */
static void assert_something_alive(deed_ctx_t *ctx, int need_store)
{
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_gt(s.objects_alive, 0);
    if (need_store) {
        ck_assert_uint_gt(s.store_bytes_used, 0);
        ck_assert_uint_gt(s.objects_in_store, 0);
    }
}

/* ---- scenarios -------------------------------------------------------------------------- */

START_TEST(fresh_context_is_empty)
{
    deed_ctx_t *ctx = tu_init();
    tu_assert_drained(ctx);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_eq(s.store_bytes_total, TU_STORE);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(chain)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t prev = put_big(ctx, 100000, 1);
    for (int i = 0; i < 100; i++) {
        deed_arg_in_t in = DEED_REF(prev);
        deed_ref_t next = sub1(ctx, (i == 0) ? "m_copy" : "m_inc", &in, 1);
        deed_ref_release(ctx, prev);
        prev = next;
    }
    int64_t v = tu_get_i64(ctx, prev);
    ck_assert_int_eq(v, 99); /* the first m_inc sees a 100000-byte arg (counted as 0) */
    assert_something_alive(ctx, 0);
    deed_ref_release(ctx, prev);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(fire_and_forget)
{
    /* every ref released right after submit, before the tasks have run */
    deed_ctx_t *ctx = tu_init_w(2);
    int64_t us = 20000;
    deed_arg_in_t sl = DEED_VAL(&us, sizeof(us));
    deed_ref_t head = sub1(ctx, "m_sleep", &sl, 1), prev = head;
    deed_ref_t big = put_big(ctx, 500000, 2);
    for (int i = 0; i < 200; i++) {
        deed_arg_in_t in[2] = {DEED_REF(prev), DEED_REF(big)};
        deed_ref_t next = sub1(ctx, "m_inc", in, 2);
        deed_ref_release(ctx, prev);
        prev = next;
    }
    deed_ref_release(ctx, prev);
    deed_ref_release(ctx, big);
    /* some tasks and the big object are still alive now */
    assert_something_alive(ctx, 1);
    tu_assert_drained(ctx);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_eq(s.tasks_run, 201);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(diamond)
{
    deed_ctx_t *ctx = tu_init();
    for (int rep = 0; rep < 20; rep++) {
        deed_ref_t a = put_big(ctx, 80000, rep);
        deed_arg_in_t ia = DEED_REF(a);
        deed_ref_t b = sub1(ctx, "m_copy", &ia, 1), c = sub1(ctx, "m_copy", &ia, 1);
        deed_arg_in_t bc[2] = {DEED_REF(b), DEED_REF(c)};
        deed_ref_t d = sub1(ctx, "m_inc", bc, 2);
        ck_assert_int_eq(tu_get_i64(ctx, d), 1);
        deed_ref_t all[4] = {a, b, c, d};
        deed_ref_release_n(ctx, all, 4);
    }
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(nested)
{
    deed_ctx_t *ctx = tu_init_w(2);
    int64_t d = 16;
    deed_arg_in_t in = DEED_VAL(&d, sizeof(d));
    deed_ref_t r = sub1(ctx, "m_nest", &in, 1);
    ck_assert_int_eq(tu_get_i64(ctx, r), 16);
    deed_ref_release(ctx, r);
    int64_t k = 15;
    deed_arg_in_t fin = DEED_VAL(&k, sizeof(k));
    r = sub1(ctx, "m_fib", &fin, 1);
    ck_assert_int_eq(tu_get_i64(ctx, r), 610);
    deed_ref_release(ctx, r);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(contained_refs_inner_released_first)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t in[3] = {put_big(ctx, 200000, 1), put_big(ctx, 16, 2), put_big(ctx, 70000, 3)};
    deed_ref_t outer;
    ck_assert_int_eq(deed_put_refs(ctx, "abc", 3, in, 3, &outer), DEED_OK);
    deed_ref_release_n(ctx, in, 3);
    usleep(20000);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_eq(s.objects_alive, 4); /* the outer keeps the inners */
    ck_assert_uint_gt(s.store_bytes_used, 270000);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, outer, &v, DEED_WAIT_FOREVER), DEED_OK);
    deed_view_t iv;
    ck_assert_int_eq(deed_get(ctx, v.refs[0], &iv, 0), DEED_OK);
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, outer);
    usleep(20000);
    /* the inner view still pins inner 0 */
    s = tu_stats(ctx);
    ck_assert_uint_ge(s.objects_alive, 1);
    ck_assert_int_eq(tu_check(iv.data, iv.size, 1), -1);
    deed_view_release(ctx, &iv);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(contained_refs_outer_released_first)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t in[2] = {put_big(ctx, 200000, 1), put_big(ctx, 8, 2)}, outer, outer2;
    ck_assert_int_eq(deed_put_refs(ctx, NULL, 0, in, 2, &outer), DEED_OK);
    ck_assert_int_eq(deed_put_refs(ctx, "z", 1, &outer, 1, &outer2), DEED_OK);
    deed_ref_release(ctx, outer2);
    deed_ref_release(ctx, outer);
    usleep(20000);
    ck_assert_uint_eq(tu_stats(ctx).objects_alive, 2);
    deed_ref_release_n(ctx, in, 2);
    tu_assert_drained(ctx);
    /* a long chain of containment, freed from the top (cascade) */
    deed_ref_t prev = put_big(ctx, 100000, 9);
    for (int i = 0; i < 5000; i++) {
        deed_ref_t next;
        ck_assert_int_eq(deed_put_refs(ctx, &i, sizeof(i), &prev, 1, &next), DEED_OK);
        deed_ref_release(ctx, prev);
        prev = next;
    }
    usleep(20000);
    ck_assert_uint_eq(tu_stats(ctx).objects_alive, 5001);
    deed_ref_release(ctx, prev);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(task_returned_refs)
{
    deed_ctx_t *ctx = tu_init();
    for (int rep = 0; rep < 10; rep++) {
        deed_ref_t o = sub1(ctx, "m_mkrefs", NULL, 0);
        deed_view_t v;
        ck_assert_int_eq(deed_get(ctx, o, &v, DEED_WAIT_FOREVER), DEED_OK);
        ck_assert_uint_eq(v.size, 2);
        ck_assert_uint_eq(v.nrefs, 2);
        deed_view_t iv;
        ck_assert_int_eq(deed_get(ctx, v.refs[0], &iv, DEED_WAIT_FOREVER), DEED_OK);
        ck_assert_uint_eq(iv.size, 150000);
        deed_view_release(ctx, &iv);
        deed_view_release(ctx, &v);
        deed_ref_release(ctx, o);
    }
    tu_assert_drained(ctx);
    /* never looked at */
    for (int rep = 0; rep < 10; rep++) {
        deed_ref_t o = sub1(ctx, "m_mkrefs", NULL, 0);
        deed_ref_release(ctx, o);
    }
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(failed_tasks)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t r[2];
    ck_assert_int_eq(deed_submit_name(ctx, "m_fail", NULL, 0, r, 2), DEED_OK);
    deed_ref_t prev = r[0];
    ck_assert_int_eq(deed_ref_dup(ctx, r[0], &prev), DEED_OK);
    for (int i = 0; i < 50; i++) {
        deed_arg_in_t in[2] = {DEED_REF(prev), DEED_REF(r[1])};
        deed_ref_t next = sub1(ctx, "m_inc", in, 2);
        deed_ref_release(ctx, prev);
        prev = next;
    }
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, prev, &v, DEED_WAIT_FOREVER), DEED_ERR_TASK_FAILED);
    ck_assert_int_eq(v.error_code, 7);
    deed_view_release(ctx, &v);
    ck_assert_int_eq(deed_get(ctx, r[1], &v, DEED_WAIT_FOREVER), DEED_ERR_TASK_FAILED);
    ck_assert_uint_eq(v.nrefs, 0);
    /* error view still held while the ref goes */
    deed_ref_release(ctx, r[1]);
    deed_ref_release(ctx, r[0]);
    deed_ref_release(ctx, prev);
    deed_view_release(ctx, &v);
    tu_assert_drained(ctx);
    /* failing tasks whose refs are dropped unseen */
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(deed_submit_name(ctx, "m_fail", NULL, 0, r, 2), DEED_OK);
        deed_ref_release_n(ctx, r, 2);
    }
    tu_assert_drained(ctx);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_ge(s.tasks_failed, 101);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(large_objects)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t r[5];
    for (int i = 0; i < 5; i++)
        r[i] = put_big(ctx, 4 * TU_MiB + (size_t)i, (uint64_t)i);
    deed_ref_t c[5];
    for (int i = 0; i < 5; i++) {
        deed_arg_in_t in = DEED_REF(r[i]);
        c[i] = sub1(ctx, "m_copy", &in, 1);
    }
    void *buf = malloc(4 * TU_MiB + 4);
    for (int i = 0; i < 5; i++) {
        size_t sz;
        ck_assert_int_eq(deed_get_copy(ctx, c[i], buf, 4 * TU_MiB + 4, &sz, DEED_WAIT_FOREVER),
                         DEED_OK);
        ck_assert_uint_eq(sz, 4 * TU_MiB + (size_t)i);
        ck_assert_int_eq(tu_check(buf, sz, (uint64_t)i), -1);
        ck_assert_int_eq(deed_get_copy(ctx, c[i], buf, 10, &sz, 0), DEED_ERR_TOO_SMALL);
    }
    free(buf);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_ge(s.store_bytes_used, 40 * TU_MiB);
    ck_assert_uint_eq(s.objects_in_store, 10);
    deed_ref_release_n(ctx, r, 5);
    deed_ref_release_n(ctx, c, 5);
    tu_assert_drained(ctx);
    /* the store can be filled again completely after the frees */
    for (int i = 0; i < 3; i++) {
        deed_ref_t x = put_big(ctx, 20 * TU_MiB, 1);
        deed_ref_t y = put_big(ctx, 20 * TU_MiB, 2);
        deed_ref_release(ctx, x);
        deed_ref_release(ctx, y);
    }
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(views)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t r = put_big(ctx, TU_MiB, 4), s = put_big(ctx, 100, 5);
    deed_view_t v[4];
    ck_assert_int_eq(deed_get(ctx, r, &v[0], DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, r, &v[1], DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, s, &v[2], DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, s, &v[3], DEED_WAIT_FOREVER), DEED_OK);
    deed_ref_release(ctx, r);
    deed_ref_release(ctx, s);
    usleep(20000);
    deed_stats_t st = tu_stats(ctx);
    ck_assert_uint_eq(st.objects_alive, 2);
    ck_assert_uint_ge(st.store_bytes_used, TU_MiB);
    deed_view_release(ctx, &v[0]);
    deed_view_release(ctx, &v[2]);
    usleep(20000);
    st = tu_stats(ctx);
    ck_assert_uint_eq(st.objects_alive, 2); /* one view of each left */
    ck_assert_int_eq(tu_check(v[1].data, TU_MiB, 4), -1);
    deed_view_release(ctx, &v[1]);
    deed_view_release(ctx, &v[3]);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(timeouts_cancelled)
{
    deed_ctx_t *ctx = tu_init_w(2);
    int64_t us = 300000;
    deed_arg_in_t in = DEED_VAL(&us, sizeof(us));
    deed_ref_t r[2] = {sub1(ctx, "m_sleep", &in, 1), sub1(ctx, "m_sleep", &in, 1)};
    deed_view_t v;
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(deed_get(ctx, r[0], &v, 1000), DEED_ERR_TIMEOUT);
        ck_assert_ptr_null(v.priv);
        ck_assert_int_eq(deed_get(ctx, r[1], &v, 0), DEED_ERR_TIMEOUT);
        int64_t x;
        ck_assert_int_eq(deed_get_copy(ctx, r[1], &x, 8, NULL, 500), DEED_ERR_TIMEOUT);
        uint8_t rd[2];
        ck_assert_int_eq(deed_wait(ctx, r, 2, 1, 1000, rd), DEED_ERR_TIMEOUT);
        ck_assert_int_eq(deed_wait(ctx, r, 2, 2, 0, rd), DEED_ERR_TIMEOUT);
    }
    /* released while still running, with no waiter left */
    deed_ref_release_n(ctx, r, 2);
    assert_something_alive(ctx, 0);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(dups_and_futures)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t b = put_big(ctx, 300000, 6), d[10];
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(deed_ref_dup(ctx, b, &d[i]), DEED_OK);
    deed_ref_t f[10];
    for (int i = 0; i < 10; i++) {
        deed_arg_in_t in = DEED_FUT(d[i]);
        f[i] = sub1(ctx, "m_getfut", &in, 1);
        deed_ref_release(ctx, d[i]); /* the borrowing task keeps it */
    }
    deed_ref_release(ctx, b);
    for (int i = 0; i < 10; i++) {
        uint64_t sz;
        ck_assert_int_eq(deed_get_copy(ctx, f[i], &sz, 8, NULL, DEED_WAIT_FOREVER), DEED_OK);
        ck_assert_uint_eq(sz, 300000);
    }
    deed_ref_release_n(ctx, f, 10);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(bad_contained_ref)
{
    deed_ctx_t *ctx = tu_init();
    deed_ref_t in = put_big(ctx, 100000, 1), gone = put_big(ctx, 10, 2), o;
    deed_ref_release(ctx, gone);
    usleep(20000);
    deed_ref_t refs[2] = {in, gone};
    ck_assert_int_eq(deed_put_refs(ctx, "x", 1, refs, 2, &o), DEED_OK);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, o, &v, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, o);
    deed_ref_release(ctx, in);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(many_rounds_stay_flat)
{
    /* repeated mixed work: the table and the store return to zero every round */
    deed_ctx_t *ctx = tu_init();
    for (int round = 0; round < 5; round++) {
        deed_ref_t refs[64];
        for (int i = 0; i < 64; i++) {
            deed_ref_t b = put_big(ctx, (i % 4 == 0) ? 100000 : 64, (uint64_t)i);
            deed_arg_in_t in = DEED_REF(b);
            refs[i] = sub1(ctx, (i & 1) ? "m_copy" : "m_inc", &in, 1);
            deed_ref_release(ctx, b);
        }
        ck_assert_int_eq(deed_wait(ctx, refs, 64, 64, DEED_WAIT_FOREVER, NULL), DEED_OK);
        deed_ref_release_n(ctx, refs, 64);
        tu_assert_drained(ctx);
    }
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memory");
    TCase *tc = tcase_create("memory");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fresh_context_is_empty);
    tcase_add_test(tc, chain);
    tcase_add_test(tc, fire_and_forget);
    tcase_add_test(tc, diamond);
    tcase_add_test(tc, nested);
    tcase_add_test(tc, contained_refs_inner_released_first);
    tcase_add_test(tc, contained_refs_outer_released_first);
    tcase_add_test(tc, task_returned_refs);
    tcase_add_test(tc, failed_tasks);
    tcase_add_test(tc, large_objects);
    tcase_add_test(tc, views);
    tcase_add_test(tc, timeouts_cancelled);
    tcase_add_test(tc, dups_and_futures);
    tcase_add_test(tc, bad_contained_ref);
    tcase_add_test(tc, many_rounds_stay_flat);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
