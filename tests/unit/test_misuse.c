/*
 * test_misuse.c — every public function fed bad input: NULL context / outputs / arrays,
 * garbage and finalized contexts, released / unknown / foreign refs, wrong sizes, unknown
 * tasks, task-only calls outside a task, finalize inside a task, bad configuration (struct
 * and environment). Nothing may crash; every call returns its documented status.
 */
#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "testutil.h"

static int x_ok(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)a;
    (void)n;
    int64_t v = 1;
    deed_task_return(t, 0, &v, sizeof(v));
    return 0;
}
DEED_REGISTER(x_ok)

static _Atomic int x_runs;
static int x_count(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)t;
    (void)a;
    (void)n;
    atomic_fetch_add(&x_runs, 1);
    return 0;
}
DEED_REGISTER(x_count)

/* Tries deed_finalize from inside the body; returns its status as the value. */
static int x_finalize(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)a;
    (void)n;
    int32_t rc = deed_finalize(deed_task_ctx(t));
    deed_task_return(t, 0, &rc, sizeof(rc));
    return 0;
}
DEED_REGISTER(x_finalize)

/* Misuses the task API from inside a body; returns a bitmask of checks that failed. */
static int x_bad_task_api(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)a;
    (void)n;
    uint32_t bad = 0;
    int64_t v = 5;
    void *buf = NULL;
    deed_ref_t nullref = DEED_REF_NULL;
    if (deed_task_return(t, 1, &v, sizeof(v)) != DEED_ERR_INVALID_ARG) /* 1 return */
        bad |= 1;
    if (deed_task_return(t, 0, NULL, 8) != DEED_ERR_INVALID_ARG)
        bad |= 2;
    if (deed_task_return_alloc(t, 0, 8, NULL) != DEED_ERR_INVALID_ARG)
        bad |= 4;
    if (deed_task_return_refs(t, 0, &v, 8, NULL, 2) != DEED_ERR_INVALID_ARG)
        bad |= 8;
    if (deed_task_return_refs(t, 0, &v, 8, &nullref, 1) != DEED_ERR_INVALID_REF)
        bad |= 16;
    if (deed_task_return(NULL, 0, &v, sizeof(v)) != DEED_ERR_NOT_IN_TASK)
        bad |= 32;
    if (deed_task_ctx(NULL) != NULL || deed_task_nreturns(NULL) != 0)
        bad |= 64;
    /* a handle that is not the running task */
    deed_task_t *other = (deed_task_t *)&v;
    if (deed_task_return(other, 0, &v, 8) != DEED_ERR_NOT_IN_TASK || deed_task_ctx(other))
        bad |= 128;
    if (deed_task_return_alloc(t, 0, 16, &buf) != DEED_OK || buf == NULL)
        bad |= 256;
    else
        memset(buf, 0, 16);
    if (deed_task_nreturns(t) != 1)
        bad |= 512;
    if (bad)
        return deed_task_fail(t, (int)bad, "bad=%u", bad);
    deed_task_return(t, 0, &v, sizeof(v));
    return 0;
}
DEED_REGISTER(x_bad_task_api)

/* Fails with code 0 (means success: the runtime must still fail the task). */
static int x_fail0(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)a;
    (void)n;
    return deed_task_fail(t, 0, "zero");
}
DEED_REGISTER(x_fail0)

/* Returns refs it was given by value (args[0] is an array of refs, possibly released). */
static int x_return_refs(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)n;
    deed_status_t rc = deed_task_return_refs(t, 0, "r", 1, a[0].data,
                                             (uint32_t)(a[0].size / sizeof(deed_ref_t)));
    return rc == DEED_OK ? 0 : 1;
}
DEED_REGISTER(x_return_refs)

static void quiet(void)
{
    deed__log_level = -1; /* every misuse below logs an error by design */
}

static deed_ctx_t *init_quiet(uint32_t workers)
{
    deed_ctx_t *ctx = tu_init_w(workers);
    quiet();
    return ctx;
}

/* Calls every context-taking function with @p ctx and checks each returns @p want.
 * @p r and @p v are a (possibly stale) ref and view. */
static void all_calls(deed_ctx_t *ctx, deed_status_t want, deed_ref_t r, deed_view_t *v)
{
    deed_ref_t out = DEED_REF_NULL, rets[2];
    int64_t x = 1;
    size_t sz;
    uint8_t ready[1];
    deed_stats_t st = {.size = sizeof(st)};
    deed_arg_in_t in = DEED_VAL(&x, sizeof(x));
    deed_submit_opts_t opts = {sizeof(opts), -1, -1};
    deed_view_t vv;
    deed_task_id_t id = deed_task_id("x_ok");

#define WANT(call) ck_assert_msg((call) == want, "%s returned %d (%s), expected %d", #call, \
                                 (int)(call), deed_strerror(call), (int)want)
    WANT(deed_rank(ctx));
    WANT(deed_nranks(ctx));
    WANT(deed_ref_dup(ctx, r, &out));
    WANT(deed_ref_release(ctx, r));
    WANT(deed_ref_release_n(ctx, &r, 1));
    WANT(deed_submit(ctx, id, &in, 1, rets, 1));
    WANT(deed_submit_opts(ctx, id, &in, 1, rets, 1, &opts));
    WANT(deed_submit_name(ctx, "x_ok", &in, 1, rets, 1));
    WANT(deed_submit_name(ctx, "no such task", &in, 1, rets, 1));
    WANT(deed_put(ctx, &x, sizeof(x), &out));
    WANT(deed_put_refs(ctx, &x, sizeof(x), &r, 1, &out));
    WANT(deed_get(ctx, r, &vv, 0));
    WANT(deed_get(ctx, r, &vv, DEED_WAIT_FOREVER));
    WANT(deed_get_copy(ctx, r, &x, sizeof(x), &sz, DEED_WAIT_FOREVER));
    WANT(deed_wait(ctx, &r, 1, 1, DEED_WAIT_FOREVER, ready));
    WANT(deed_stats(ctx, &st));
    WANT(deed_view_release(ctx, v));
    WANT(deed_finalize(ctx));
    WANT(deed_finalize(ctx));
#undef WANT
    ck_assert(deed_ref_is_null(out));
}

/* ---- contexts ---------------------------------------------------------------------------- */

START_TEST(null_context)
{
    quiet();
    deed_ref_t r = {1, 2, 0, 0};
    deed_view_t v = {0};
    v.priv = &v;
    all_calls(NULL, DEED_ERR_INVALID_ARG, r, &v);
}
END_TEST

START_TEST(garbage_context)
{
    quiet();
    deed_ref_t r = {1, 2, 0, 0};
    deed_view_t v = {0};
    v.priv = &v;
    char junk[256];
    memset(junk, 0x01, sizeof(junk)); /* looks like "running" everywhere */
    all_calls((deed_ctx_t *)junk, DEED_ERR_INVALID_ARG, r, &v);
    static long static_junk[64] = {1, 1, 1, 1};
    all_calls((deed_ctx_t *)static_junk, DEED_ERR_INVALID_ARG, r, &v);
    all_calls((deed_ctx_t *)(uintptr_t)0x10, DEED_ERR_INVALID_ARG, r, &v);
    /* with a real runtime alive next to it */
    deed_ctx_t *ctx = tu_init_w(1);
    quiet();
    all_calls((deed_ctx_t *)junk, DEED_ERR_INVALID_ARG, r, &v);
    deed_stats_t st = tu_stats(ctx);
    ck_assert_uint_eq(st.tasks_submitted, 0);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(misaligned_pointer_into_context_table)
{
    /* a stale pointer that is off by a few bytes from a real context: it points inside the
     * runtime's context table but at no context. It must be rejected, not dereferenced. */
    deed_ctx_t *a = tu_init_w(1);
    ck_assert_int_eq(deed_finalize(a), DEED_OK);
    deed_ctx_t *b = tu_init_w(1);
    quiet();
    deed_stats_t st = {.size = sizeof(st)};
    char report[512] = "";
    int nbad = 0;
    for (int off = 1; off < 24; off++) {
        if (off >= 16)
            continue; /* see pointer_into_dead_context_slot */
        deed_ctx_t *bad = (deed_ctx_t *)((char *)a + off);
        deed_status_t rc = deed_stats(bad, &st);
        if (rc != DEED_ERR_INVALID_ARG) {
            nbad++;
            snprintf(report + strlen(report), sizeof(report) - strlen(report), " +%d:%d", off,
                     rc);
        }
    }
    ck_assert_int_eq(deed_finalize(b), DEED_OK);
    ck_assert_msg(nbad == 0, "%d misaligned context pointers not rejected (offset:status):%s",
                  nbad, report);
}
END_TEST

START_TEST(pointer_into_dead_context_slot)
{
    /* the same, at an offset where the bytes happen to look like a running context (a dead
     * slot's bookkeeping followed by the next, live slot): must not be dereferenced */
    deed_ctx_t *a = tu_init_w(1);
    ck_assert_int_eq(deed_finalize(a), DEED_OK);
    deed_ctx_t *b = tu_init_w(1);
    quiet();
    deed_stats_t st = {.size = sizeof(st)};
    for (int off = 16; off < 24; off++) {
        deed_ctx_t *bad = (deed_ctx_t *)((char *)a + off);
        if (bad == b)
            continue;
        deed_status_t rc = deed_stats(bad, &st);
        ck_assert_msg(rc == DEED_ERR_INVALID_ARG, "ctx %p (+%d): %d", (void *)bad, off, rc);
    }
    ck_assert_int_eq(deed_finalize(b), DEED_OK);
}
END_TEST

START_TEST(finalized_context)
{
    deed_ctx_t *ctx = init_quiet(2);
    deed_ref_t r = tu_put_i64(ctx, 3);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, r, &v, DEED_WAIT_FOREVER), DEED_OK);
    deed_view_t keep = v;
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
    all_calls(ctx, DEED_ERR_FINALIZED, r, &keep);
    /* a new context does not bring the old pointer back to life */
    deed_ctx_t *c2 = tu_init_w(1);
    quiet();
    ck_assert_ptr_ne(c2, ctx);
    ck_assert_int_eq(deed_rank(ctx), DEED_ERR_FINALIZED);
    ck_assert_int_eq(deed_finalize(c2), DEED_OK);
}
END_TEST

START_TEST(finalize_twice_and_null)
{
    deed_ctx_t *ctx = init_quiet(1);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
    ck_assert_int_eq(deed_finalize(ctx), DEED_ERR_FINALIZED);
    ck_assert_int_eq(deed_finalize(ctx), DEED_ERR_FINALIZED);
    ck_assert_int_eq(deed_finalize(NULL), DEED_ERR_INVALID_ARG);
}
END_TEST

START_TEST(finalize_inside_task)
{
    deed_ctx_t *ctx = init_quiet(2);
    deed_ref_t r;
    ck_assert_int_eq(deed_submit_name(ctx, "x_finalize", NULL, 0, &r, 1), DEED_OK);
    int32_t rc = 0;
    ck_assert_int_eq(deed_get_copy(ctx, r, &rc, sizeof(rc), NULL, DEED_WAIT_FOREVER), DEED_OK);
    ck_assert_int_eq(rc, DEED_ERR_IN_TASK);
    /* the runtime still works */
    deed_ref_t r2;
    ck_assert_int_eq(deed_submit_name(ctx, "x_ok", NULL, 0, &r2, 1), DEED_OK);
    ck_assert_int_eq(tu_get_i64(ctx, r2), 1);
    deed_ref_release(ctx, r);
    deed_ref_release(ctx, r2);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(init_arguments)
{
    quiet();
    tu_clear_env();
    deed_config_t c;
    deed_ctx_t *ctx = (deed_ctx_t *)0x1;
    ck_assert_int_eq(deed_init(NULL, NULL), DEED_ERR_INVALID_ARG);
    deed_config_default(&c);
    ck_assert_int_eq(deed_init(&c, NULL), DEED_ERR_INVALID_ARG);
#define BADCFG(stmt)                                                                         \
    do {                                                                                     \
        deed_config_default(&c);                                                             \
        c.store_size = 8 << 20;                                                              \
        stmt;                                                                                \
        ctx = (deed_ctx_t *)0x1;                                                             \
        ck_assert_msg(deed_init(&c, &ctx) == DEED_ERR_CONFIG, "accepted: %s", #stmt);        \
        ck_assert_ptr_null(ctx);                                                             \
    } while (0)
    BADCFG(c.size = 0);
    BADCFG(c.size = sizeof(c) - 4);
    BADCFG(c.size = 0xFFFFFFFF);
    BADCFG(c.num_workers = 5000);
    BADCFG(c.max_threads = 0);
    BADCFG(c.store_size = 1000);
    BADCFG(c.store_size = ~0ull);
    BADCFG(c.inline_max = 1ull << 40);
    BADCFG(c.stack_size = 10);
    BADCFG(c.pin_workers = 7);
    BADCFG(c.log_level = (deed_log_level_t)99);
    BADCFG(strcpy(c.transport, "nope"));
    BADCFG(c.spin_us = 2000000);
#undef BADCFG
    /* config_from_env on a config with a wrong size */
    deed_config_default(&c);
    c.size = 1;
    ck_assert_int_ne(deed_config_from_env(&c), DEED_OK);
    ck_assert_int_eq(deed_config_from_env(NULL), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_config_default(NULL), DEED_ERR_INVALID_ARG);
}
END_TEST

START_TEST(bad_environment)
{
    quiet();
    const char *vars[][2] = {{"DEED_WORKERS", "abc"}, {"DEED_STORE_SIZE", "12Q"},
                             {"DEED_LOG", "loud"}, {"DEED_TRANSPORT", "nope"},
                             {"DEED_PIN", "sometimes"}, {"DEED_SPIN_US", "-5"},
                             {"DEED_MAX_THREADS", "99999999999999999999999"},
                             {"DEED_STACK_SIZE", "8X"}, {"DEED_INLINE_MAX", "64KK"}};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        tu_clear_env();
        setenv(vars[i][0], vars[i][1], 1);
        deed_ctx_t *ctx = (deed_ctx_t *)0x1;
        ck_assert_msg(deed_init(NULL, &ctx) == DEED_ERR_CONFIG, "%s=%s", vars[i][0], vars[i][1]);
        ck_assert_ptr_null(ctx);
        deed_config_t c;
        deed_config_default(&c);
        ck_assert_int_eq(deed_config_from_env(&c), DEED_ERR_CONFIG);
    }
}
END_TEST

START_TEST(too_many_contexts)
{
    /* the limit is reported, and contexts still work after it */
    quiet();
    deed_config_t c;
    deed_config_default(&c);
    c.num_workers = 1;
    c.store_size = 1 << 20;
    c.pin_workers = 0;
    c.stack_size = 64 << 10;
    c.log_level = DEED_LOG_ERROR;
    enum { MAXN = 300 };
    deed_ctx_t **ctxs = calloc(MAXN, sizeof(*ctxs));
    int n = 0;
    deed_status_t rc = DEED_OK;
    while (n < MAXN && (rc = deed_init(&c, &ctxs[n])) == DEED_OK)
        n++;
    quiet();
    ck_assert_msg(rc == DEED_ERR_TOO_MANY, "stopped at %d with %d (%s)", n, rc,
                  deed_strerror(rc));
    ck_assert_int_ge(n, 1);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(deed_finalize(ctxs[i]), DEED_OK);
    deed_ctx_t *ctx = NULL;
    ck_assert_int_eq(deed_init(&c, &ctx), DEED_OK);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
    free(ctxs);
}
END_TEST

/* ---- NULL and bad arguments with a live context -------------------------------------------- */

START_TEST(null_outputs_and_arrays)
{
    deed_ctx_t *ctx = init_quiet(2);
    deed_ref_t r = tu_put_i64(ctx, 1), nullref = DEED_REF_NULL, out;
    deed_task_id_t id = deed_task_id("x_ok");
    deed_arg_in_t in = DEED_VAL(&r, 8);
    int64_t x;
    ck_assert_uint_ne(id, 0);

    ck_assert_int_eq(deed_ref_dup(ctx, r, NULL), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_ref_dup(ctx, nullref, &out), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_ref_release(ctx, nullref), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_ref_release_n(ctx, NULL, 3), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_ref_release_n(ctx, NULL, 0), DEED_OK);

    ck_assert_int_eq(deed_submit(ctx, id, NULL, 2, &out, 1), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_submit(ctx, id, &in, 1, NULL, 1), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_submit_name(ctx, NULL, &in, 1, &out, 1), DEED_ERR_INVALID_ARG);
    deed_arg_in_t badval = DEED_VAL(NULL, 8);
    ck_assert_int_eq(deed_submit(ctx, id, &badval, 1, &out, 1), DEED_ERR_INVALID_ARG);
    deed_arg_in_t badkind = {(deed_arg_kind_t)0, &x, 8, DEED_REF_NULL};
    ck_assert_int_eq(deed_submit(ctx, id, &badkind, 1, &out, 1), DEED_ERR_INVALID_ARG);
    badkind.kind = (deed_arg_kind_t)77;
    ck_assert_int_eq(deed_submit(ctx, id, &badkind, 1, &out, 1), DEED_ERR_INVALID_ARG);
    deed_arg_in_t nr = DEED_REF(nullref), nf = DEED_FUT(nullref);
    ck_assert_int_eq(deed_submit(ctx, id, &nr, 1, &out, 1), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_submit(ctx, id, &nf, 1, &out, 1), DEED_ERR_INVALID_REF);
    /* limits */
    deed_arg_in_t *many = calloc(65536, sizeof(*many));
    for (int i = 0; i < 65536; i++)
        many[i] = DEED_VAL(&x, 0);
    ck_assert_int_eq(deed_submit(ctx, id, many, 65536, &out, 1), DEED_ERR_TOO_MANY);
    free(many);
    deed_ref_t *rets = calloc(256, sizeof(*rets));
    ck_assert_int_eq(deed_submit(ctx, id, NULL, 0, rets, 256), DEED_ERR_TOO_MANY);
    free(rets);
    /* no submit above was accepted */
    ck_assert_uint_eq(tu_stats(ctx).tasks_submitted, 0);

    ck_assert_int_eq(deed_put(ctx, &x, 8, NULL), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_put(ctx, NULL, 8, &out), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_put_refs(ctx, &x, 8, NULL, 1, &out), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_put_refs(ctx, &x, 8, &nullref, 1, &out), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_put_refs(ctx, &x, 8, &r, 1, NULL), DEED_ERR_INVALID_ARG);

    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, r, NULL, 0), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_get(ctx, nullref, &v, 0), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_view_release(ctx, NULL), DEED_ERR_INVALID_ARG);
    memset(&v, 0, sizeof(v));
    ck_assert_int_eq(deed_view_release(ctx, &v), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_get(ctx, r, &v, 0), DEED_OK);
    ck_assert_int_eq(deed_view_release(ctx, &v), DEED_OK);
    ck_assert_int_eq(deed_view_release(ctx, &v), DEED_ERR_INVALID_ARG); /* twice */

    ck_assert_int_eq(deed_get_copy(ctx, r, NULL, 8, NULL, 0), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_get_copy(ctx, nullref, &x, 8, NULL, 0), DEED_ERR_INVALID_REF);
    size_t sz = 0;
    ck_assert_int_eq(deed_get_copy(ctx, r, &x, 4, &sz, 0), DEED_ERR_TOO_SMALL);
    ck_assert_uint_eq(sz, 8);

    uint8_t rd[2];
    deed_ref_t two[2] = {r, nullref};
    ck_assert_int_eq(deed_wait(ctx, NULL, 2, 1, 0, rd), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_wait(ctx, &r, 1, 2, 0, rd), DEED_ERR_INVALID_ARG); /* k > n */
    ck_assert_int_eq(deed_wait(ctx, two, 2, 1, 0, rd), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_wait(ctx, NULL, 0, 0, 0, NULL), DEED_OK);
    two[1] = r; /* the same ref twice is fine */
    ck_assert_int_eq(deed_wait(ctx, two, 2, 2, 1000000, rd), DEED_OK);
    ck_assert(rd[0] == 1 && rd[1] == 1);

    ck_assert_int_eq(deed_stats(ctx, NULL), DEED_ERR_INVALID_ARG);
    deed_stats_t st;
    memset(&st, 0, sizeof(st));
    st.size = 12; /* wrong size */
    ck_assert_int_eq(deed_stats(ctx, &st), DEED_ERR_INVALID_ARG);
    st.size = 0; /* 0 is allowed */
    ck_assert_int_eq(deed_stats(ctx, &st), DEED_OK);
    ck_assert_uint_eq(st.size, sizeof(st));

    deed_submit_opts_t o = {sizeof(o) + 4, -1, -1};
    ck_assert_int_eq(deed_submit_opts(ctx, id, NULL, 0, &out, 1, &o), DEED_ERR_INVALID_ARG);
    o.size = 0;
    ck_assert_int_eq(deed_submit_opts(ctx, id, NULL, 0, &out, 1, &o), DEED_ERR_INVALID_ARG);
    o.size = sizeof(o);
    ck_assert_int_eq(deed_submit_opts(ctx, id, NULL, 0, &out, 1, &o), DEED_OK);
    ck_assert_int_eq(tu_get_i64(ctx, out), 1);
    deed_ref_release(ctx, out);
    ck_assert_int_eq(deed_submit_opts(ctx, id, NULL, 0, &out, 1, NULL), DEED_OK);
    deed_ref_release(ctx, out);

    deed_ref_release(ctx, r);
    tu_assert_drained(ctx);
    ck_assert_uint_eq(tu_stats(ctx).misuse, 0);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(unknown_tasks)
{
    deed_ctx_t *ctx = init_quiet(1);
    deed_ref_t out = DEED_REF_NULL;
    ck_assert_int_eq(deed_submit(ctx, 0, NULL, 0, &out, 1), DEED_ERR_UNKNOWN_TASK);
    ck_assert_int_eq(deed_submit(ctx, 0x1234567ull, NULL, 0, &out, 1), DEED_ERR_UNKNOWN_TASK);
    ck_assert_int_eq(deed_submit(ctx, deed_task_id("x_ok") + 1, NULL, 0, &out, 1),
                     DEED_ERR_UNKNOWN_TASK);
    ck_assert_int_eq(deed_submit_name(ctx, "nope", NULL, 0, &out, 1), DEED_ERR_UNKNOWN_TASK);
    ck_assert_int_eq(deed_submit_name(ctx, "", NULL, 0, &out, 1), DEED_ERR_UNKNOWN_TASK);
    ck_assert_int_eq(deed_submit_name(ctx, "X_OK", NULL, 0, &out, 1), DEED_ERR_UNKNOWN_TASK);
    ck_assert(deed_ref_is_null(out));
    ck_assert_uint_eq(deed_task_id("nope"), 0);
    ck_assert_ptr_null(deed_task_name(0x1234567ull));
    ck_assert_uint_eq(tu_stats(ctx).tasks_submitted, 0);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- released, unknown and foreign refs ------------------------------------------------------ */

START_TEST(released_refs)
{
    deed_ctx_t *ctx = init_quiet(2);
    deed_ref_t r = tu_put_i64(ctx, 5), out;
    ck_assert_int_eq(deed_ref_release(ctx, r), DEED_OK);
    usleep(20000);
    deed_view_t v;
    int64_t x;
    uint8_t rd[1] = {7};
    ck_assert_int_eq(deed_get(ctx, r, &v, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
    ck_assert_ptr_null(v.priv);
    ck_assert_int_eq(deed_get(ctx, r, &v, 0), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_get_copy(ctx, r, &x, 8, NULL, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_wait(ctx, &r, 1, 1, DEED_WAIT_FOREVER, rd), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_wait(ctx, &r, 1, 0, 0, rd), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(deed_ref_dup(ctx, r, &out), DEED_ERR_INVALID_REF);

    /* a submit with the released ref as argument: accepted, its returns are errors */
    atomic_store(&x_runs, 0);
    deed_ref_t rets[2], f;
    deed_arg_in_t in[2] = {DEED_VAL(&x, 8), DEED_REF(r)};
    ck_assert_int_eq(deed_submit_name(ctx, "x_count", in, 2, rets, 2), DEED_OK);
    deed_arg_in_t fin = DEED_FUT(r);
    ck_assert_int_eq(deed_submit_name(ctx, "x_count", &fin, 1, &f, 1), DEED_OK);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(deed_get(ctx, rets[i], &v, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
        ck_assert_ptr_nonnull(v.error_msg);
        deed_view_release(ctx, &v);
    }
    ck_assert_int_eq(deed_get(ctx, f, &v, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
    deed_view_release(ctx, &v);
    ck_assert_int_eq(deed_get_copy(ctx, f, &x, 8, NULL, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
    ck_assert_int_eq(atomic_load(&x_runs), 0);
    /* dependents of such an error object get the same error */
    deed_ref_t dep;
    deed_arg_in_t din = DEED_REF(rets[0]);
    ck_assert_int_eq(deed_submit_name(ctx, "x_count", &din, 1, &dep, 1), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, dep, &v, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
    deed_view_release(ctx, &v);
    ck_assert_int_eq(atomic_load(&x_runs), 0);
    deed_ref_release_n(ctx, rets, 2);
    deed_ref_release(ctx, f);
    deed_ref_release(ctx, dep);

    /* double release: counted as misuse, nothing else happens */
    deed_stats_t s0 = tu_stats(ctx);
    ck_assert_int_eq(deed_ref_release(ctx, r), DEED_OK); /* asynchronous: reported later */
    deed_ref_t again = tu_put_i64(ctx, 6);
    ck_assert_int_eq(deed_ref_release(ctx, again), DEED_OK);
    ck_assert_int_eq(deed_ref_release(ctx, again), DEED_OK);
    deed_stats_t s1;
    uint64_t t0 = tu_now_ns();
    do {
        s1 = tu_stats(ctx);
    } while (s1.misuse < s0.misuse + 2 && tu_ms_since(t0) < 5000);
    ck_assert_uint_eq(s1.misuse, s0.misuse + 2);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(unknown_and_foreign_refs)
{
    deed_ctx_t *ctx = init_quiet(2);
    deed_ctx_t *other = tu_init_w(1);
    quiet();
    deed_ref_t mine = tu_put_i64(ctx, 1), theirs = tu_put_i64(other, 2);
    deed_ref_t unknown = {0x1234, 0x5678, 0, 0}, remote = mine, badidx = mine;
    remote.owner = 7; /* no such rank */
    badidx.index = 12345;
    deed_ref_t bad[] = {unknown, remote, badidx};
    deed_view_t v;
    int64_t x;
    deed_ref_t out;
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(deed_get(ctx, bad[i], &v, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
        ck_assert_int_eq(deed_get_copy(ctx, bad[i], &x, 8, NULL, 0), DEED_ERR_INVALID_REF);
        ck_assert_int_eq(deed_wait(ctx, &bad[i], 1, 1, DEED_WAIT_FOREVER, NULL),
                         DEED_ERR_INVALID_REF);
        ck_assert_int_eq(deed_ref_dup(ctx, bad[i], &out), DEED_ERR_INVALID_REF);
    }
    /* a ref of another context is unknown here (their ids differ) */
    ck_assert_int_eq(deed_get(ctx, theirs, &v, 0), DEED_ERR_INVALID_REF);
    deed_stats_t s0 = tu_stats(ctx);
    deed_ref_release(ctx, theirs); /* misuse here; the other context keeps its count */
    deed_ref_release(ctx, unknown);
    deed_stats_t s1;
    uint64_t t0 = tu_now_ns();
    do {
        s1 = tu_stats(ctx);
    } while (s1.misuse < s0.misuse + 2 && tu_ms_since(t0) < 5000);
    ck_assert_uint_eq(s1.misuse, s0.misuse + 2);
    ck_assert_int_eq(tu_get_i64(other, theirs), 2);
    ck_assert_int_eq(tu_get_i64(ctx, mine), 1);
    /* put_refs with an unknown contained ref: an error object */
    deed_ref_t o;
    ck_assert_int_eq(deed_put_refs(ctx, &x, 8, &unknown, 1, &o), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, o, &v, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, o);
    /* a task returning a released / unknown ref: its return is an error object */
    deed_ref_t gone = tu_put_i64(ctx, 9), tr;
    deed_ref_release(ctx, gone);
    usleep(20000);
    deed_ref_t inside[2] = {mine, gone};
    deed_arg_in_t in = DEED_VAL(inside, sizeof(inside));
    ck_assert_int_eq(deed_submit_name(ctx, "x_return_refs", &in, 1, &tr, 1), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, tr, &v, DEED_WAIT_FOREVER), DEED_ERR_INVALID_REF);
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, tr);
    ck_assert_int_eq(tu_get_i64(ctx, mine), 1); /* unharmed */
    deed_ref_release(ctx, mine);
    deed_ref_release(other, theirs);
    tu_assert_drained(ctx);
    tu_assert_drained(other);
    ck_assert_int_eq(deed_finalize(other), DEED_OK);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- task API outside and inside tasks ---------------------------------------------------- */

START_TEST(task_api_outside_a_task)
{
    deed_ctx_t *ctx = init_quiet(1);
    int64_t v = 1;
    void *buf = (void *)0x1;
    deed_ref_t r = tu_put_i64(ctx, 1);
    deed_task_t *fake = (deed_task_t *)&v;
    ck_assert_ptr_null(deed_task_ctx(NULL));
    ck_assert_ptr_null(deed_task_ctx(fake));
    ck_assert_uint_eq(deed_task_nreturns(NULL), 0);
    ck_assert_uint_eq(deed_task_nreturns(fake), 0);
    ck_assert_int_eq(deed_task_return(NULL, 0, &v, 8), DEED_ERR_NOT_IN_TASK);
    ck_assert_int_eq(deed_task_return(fake, 0, &v, 8), DEED_ERR_NOT_IN_TASK);
    ck_assert_int_eq(deed_task_return_alloc(NULL, 0, 8, &buf), DEED_ERR_NOT_IN_TASK);
    ck_assert_int_eq(deed_task_return_alloc(fake, 0, 8, &buf), DEED_ERR_NOT_IN_TASK);
    ck_assert_int_eq(deed_task_return_refs(NULL, 0, &v, 8, &r, 1), DEED_ERR_NOT_IN_TASK);
    ck_assert_int_eq(deed_task_return_refs(fake, 0, &v, 8, &r, 1), DEED_ERR_NOT_IN_TASK);
    ck_assert_int_eq(deed_task_fail(NULL, 5, "x %d", 1), 5); /* harmless */
    ck_assert_int_ne(deed_task_fail(fake, 0, "x"), 0);
    ck_assert_int_ne(deed_task_fail(NULL, 0, NULL), 0);
    ck_assert_int_eq(v, 1);
    deed_ref_release(ctx, r);
    tu_assert_drained(ctx);
    ck_assert_uint_eq(tu_stats(ctx).misuse, 0);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(task_api_misuse_inside_a_task)
{
    deed_ctx_t *ctx = init_quiet(2);
    deed_ref_t r;
    ck_assert_int_eq(deed_submit_name(ctx, "x_bad_task_api", NULL, 0, &r, 1), DEED_OK);
    deed_view_t v;
    deed_status_t rc = deed_get(ctx, r, &v, DEED_WAIT_FOREVER);
    ck_assert_msg(rc == DEED_OK, "failed checks mask %d (%s)", v.error_code,
                  v.error_msg ? v.error_msg : "");
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, r);
    /* deed_task_fail with code 0 still fails the task */
    ck_assert_int_eq(deed_submit_name(ctx, "x_fail0", NULL, 0, &r, 1), DEED_OK);
    rc = deed_get(ctx, r, &v, DEED_WAIT_FOREVER);
    ck_assert_int_eq(rc, DEED_ERR_TASK_FAILED);
    ck_assert_int_ne(v.error_code, 0);
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, r);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- sizes ------------------------------------------------------------------------------- */

START_TEST(objects_too_large_for_the_store)
{
    deed_ctx_t *ctx = init_quiet(1);
    deed_ref_t r = DEED_REF_NULL;
    size_t n = TU_STORE + 1;
    void *b = malloc(n);
    memset(b, 1, n);
    ck_assert_int_eq(deed_put(ctx, b, n, &r), DEED_ERR_STORE_FULL);
    ck_assert(deed_ref_is_null(r));
    free(b);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(strerror_table)
{
#define CHECK(name, value, text)                                                              \
    ck_assert_str_eq(deed_strerror(value), text);                                             \
    ck_assert(deed_strerror(value)[0] != 0);
    DEED_STATUS_LIST(CHECK)
#undef CHECK
    ck_assert_str_eq(deed_strerror(1), "unknown status code");
    ck_assert_str_eq(deed_strerror(-99), "unknown status code");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("misuse");
    TCase *tc = tcase_create("misuse");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, null_context);
    tcase_add_test(tc, garbage_context);
    tcase_add_test(tc, misaligned_pointer_into_context_table);
    tcase_add_test(tc, pointer_into_dead_context_slot);
    tcase_add_test(tc, finalized_context);
    tcase_add_test(tc, finalize_twice_and_null);
    tcase_add_test(tc, finalize_inside_task);
    tcase_add_test(tc, init_arguments);
    tcase_add_test(tc, bad_environment);
    tcase_add_test(tc, too_many_contexts);
    tcase_add_test(tc, null_outputs_and_arrays);
    tcase_add_test(tc, unknown_tasks);
    tcase_add_test(tc, released_refs);
    tcase_add_test(tc, unknown_and_foreign_refs);
    tcase_add_test(tc, task_api_outside_a_task);
    tcase_add_test(tc, task_api_misuse_inside_a_task);
    tcase_add_test(tc, objects_too_large_for_the_store);
    tcase_add_test(tc, strerror_table);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
