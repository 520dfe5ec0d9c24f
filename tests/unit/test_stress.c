/*
 * test_stress.c — volume: DEED_STRESS_TASKS empty tasks pipelined in windows (submit, wait,
 * release), the same from several submitting threads at once, and a random DAG of a few
 * thousand tasks mixing small and large (store) objects whose every value is checked against
 * a sequential computation. Counters must add up and the table must drain to zero.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#ifndef DEED_STRESS_TASKS
#define DEED_STRESS_TASKS 1000000
#endif

static int s_empty(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    (void)t;
    (void)a;
    (void)n;
    return 0;
}
DEED_REGISTER(s_empty)

/* ---- empty tasks ------------------------------------------------------------------------ */

static void run_windows(deed_ctx_t *ctx, uint64_t total, uint32_t window, deed_task_id_t id)
{
    deed_ref_t *refs = malloc(window * sizeof(*refs));
    ck_assert_ptr_nonnull(refs);
    for (uint64_t done = 0; done < total;) {
        uint32_t n = (uint32_t)((total - done) < window ? (total - done) : window);
        for (uint32_t i = 0; i < n; i++) {
            deed_status_t rc = deed_submit(ctx, id, NULL, 0, &refs[i], 1);
            ck_assert_msg(rc == DEED_OK, "submit %llu: %s", (unsigned long long)(done + i),
                          deed_strerror(rc));
        }
        deed_status_t rc = deed_wait(ctx, refs, n, n, 120 * 1000000ll, NULL);
        ck_assert_msg(rc == DEED_OK, "wait at %llu: %s", (unsigned long long)done,
                      deed_strerror(rc));
        ck_assert_int_eq(deed_ref_release_n(ctx, refs, n), DEED_OK);
        done += n;
    }
    free(refs);
}

START_TEST(empty_tasks_pipelined)
{
    deed_ctx_t *ctx = tu_init_w(0);
    deed_task_id_t id = deed_task_id("s_empty");
    ck_assert_uint_ne(id, 0);
    const uint64_t total = DEED_STRESS_TASKS;
    const uint32_t window = 10000;
    uint64_t t0 = tu_now_ns();
    run_windows(ctx, total, window, id);
    double ms = tu_ms_since(t0);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_eq(s.tasks_submitted, total);
    ck_assert_uint_eq(s.tasks_run, total);
    ck_assert_uint_eq(s.tasks_failed, 0);
    ck_assert_uint_le(s.objects_alive, window); /* releases may still be in flight */
    tu_assert_drained(ctx);
    s = tu_stats(ctx);
    ck_assert_uint_eq(s.tasks_pending, 0);
    ck_assert_uint_eq(s.misuse, 0);
    fprintf(stderr, "stress: %llu empty tasks in %.0f ms (%.2f us/task, %u workers)\n",
            (unsigned long long)total, ms, ms * 1000.0 / (double)total, s.workers);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

struct submitter {
    deed_ctx_t *ctx;
    uint64_t n;
    deed_task_id_t id;
};

static void *submit_thread(void *p)
{
    struct submitter *s = p;
    run_windows(s->ctx, s->n, 2000, s->id);
    return NULL;
}

START_TEST(empty_tasks_many_submitters)
{
    deed_ctx_t *ctx = tu_init_w(0);
    enum { T = 4 };
    uint64_t per = DEED_STRESS_TASKS / 10 / T;
    if (per < 1000)
        per = 1000;
    pthread_t th[T];
    struct submitter sub[T];
    for (int i = 0; i < T; i++) {
        sub[i] = (struct submitter){ctx, per, deed_task_id("s_empty")};
        ck_assert_int_eq(pthread_create(&th[i], NULL, submit_thread, &sub[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_eq(s.tasks_submitted, per * T);
    ck_assert_uint_eq(s.tasks_run, per * T);
    tu_assert_drained(ctx);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(fire_and_forget_volume)
{
    /* refs released right after submit, never waited on; finalize must run them all */
    deed_ctx_t *ctx = tu_init_w(0);
    deed_task_id_t id = deed_task_id("s_empty");
    uint64_t n = DEED_STRESS_TASKS / 10;
    for (uint64_t i = 0; i < n; i++) {
        deed_ref_t r;
        ck_assert_int_eq(deed_submit(ctx, id, NULL, 0, &r, 1), DEED_OK);
        ck_assert_int_eq(deed_ref_release(ctx, r), DEED_OK);
    }
    /* and tasks with no returns at all */
    for (uint64_t i = 0; i < n; i++)
        ck_assert_int_eq(deed_submit(ctx, id, NULL, 0, NULL, 0), DEED_OK);
    ck_assert_msg(tu_drained_within(ctx, 120000), "did not drain");
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_eq(s.tasks_run, 2 * n);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

/* ---- random DAG --------------------------------------------------------------------------- */

struct node_spec {
    uint64_t seed;
    uint64_t size; /* bytes of the result: >= 8; the first 8 are the value */
};

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* value = mix(seed + sum_i mix(arg_i + i)) */
static uint64_t node_value(uint64_t seed, const uint64_t *argv, uint32_t n)
{
    uint64_t acc = seed;
    for (uint32_t i = 0; i < n; i++)
        acc += mix(argv[i] + i);
    return mix(acc);
}

static int s_node(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    struct node_spec sp;
    if (n < 1 || a[0].kind != DEED_ARG_VALUE || a[0].size != sizeof(sp))
        return deed_task_fail(t, 1, "bad spec");
    memcpy(&sp, a[0].data, sizeof(sp));
    uint64_t argv[8];
    if (n - 1 > 8)
        return deed_task_fail(t, 2, "too many args");
    for (uint32_t i = 1; i < n; i++) {
        if (a[i].kind != DEED_ARG_REF || a[i].size < 8)
            return deed_task_fail(t, 3, "arg %u: kind %d size %zu", i, a[i].kind, a[i].size);
        memcpy(&argv[i - 1], a[i].data, 8);
        /* large inputs: every byte checked */
        if (a[i].size > 8 && tu_check((const char *)a[i].data + 8, a[i].size - 8, argv[i - 1]) != -1)
            return deed_task_fail(t, 4, "arg %u: corrupt bytes", i);
    }
    uint64_t v = node_value(sp.seed, argv, n - 1);
    void *buf;
    if (deed_task_return_alloc(t, 0, sp.size, &buf) != DEED_OK)
        return deed_task_fail(t, 5, "alloc %llu", (unsigned long long)sp.size);
    memcpy(buf, &v, 8);
    tu_fill((char *)buf + 8, sp.size - 8, v);
    return 0;
}
DEED_REGISTER(s_node)

START_TEST(random_dag)
{
    deed_ctx_t *ctx = tu_init_w(0);
    enum { N = 4000, LOOKBACK = 64, MAXARGS = 4 };
    deed_ref_t *refs = calloc(N, sizeof(*refs));
    uint64_t *model = calloc(N, sizeof(*model));
    uint64_t *sizes = calloc(N, sizeof(*sizes));
    uint64_t rs = 0xC0FFEEull;
    uint64_t large = 0, checked = 0;
    deed_task_id_t id = deed_task_id("s_node");

    for (int i = 0; i < N; i++) {
        struct node_spec sp;
        sp.seed = tu_rnd(&rs);
        uint64_t r = tu_rnd(&rs) % 100;
        sp.size = r < 15 ? 65 * 1024 + tu_rnd(&rs) % (512 * 1024) /* store */
                 : r < 20 ? 8 + tu_rnd(&rs) % 4096                /* medium inline */
                          : 8;
        large += sp.size > 64 * 1024;
        sizes[i] = sp.size;
        uint32_t nargs = i ? (uint32_t)(tu_rnd(&rs) % (MAXARGS + 1)) : 0;
        deed_arg_in_t in[MAXARGS + 1];
        uint64_t argv[MAXARGS];
        in[0] = DEED_VAL(&sp, sizeof(sp));
        for (uint32_t k = 0; k < nargs; k++) {
            int lo = i > LOOKBACK ? i - LOOKBACK : 0;
            int j = lo + (int)(tu_rnd(&rs) % (uint64_t)(i - lo));
            in[k + 1] = DEED_REF(refs[j]);
            argv[k] = model[j];
        }
        model[i] = node_value(sp.seed, argv, nargs);
        ck_assert_int_eq(deed_submit(ctx, id, in, nargs + 1, &refs[i], 1), DEED_OK);
        /* node i - LOOKBACK can no longer be an argument: check it and release it */
        int old = i - LOOKBACK;
        if (old >= 0) {
            deed_view_t v;
            deed_status_t rc = deed_get(ctx, refs[old], &v, DEED_WAIT_FOREVER);
            ck_assert_msg(rc == DEED_OK, "node %d: %s (%d: %s)", old, deed_strerror(rc),
                          v.error_code, v.error_msg ? v.error_msg : "");
            ck_assert_uint_eq(v.size, sizes[old]);
            uint64_t got;
            memcpy(&got, v.data, 8);
            ck_assert_msg(got == model[old], "node %d: %llx != %llx", old,
                          (unsigned long long)got, (unsigned long long)model[old]);
            ck_assert_int_eq(tu_check((const char *)v.data + 8, v.size - 8, got), -1);
            deed_view_release(ctx, &v);
            deed_ref_release(ctx, refs[old]);
            checked++;
        }
    }
    for (int i = N - LOOKBACK; i < N; i++) {
        deed_view_t v;
        ck_assert_int_eq(deed_get(ctx, refs[i], &v, DEED_WAIT_FOREVER), DEED_OK);
        uint64_t got;
        memcpy(&got, v.data, 8);
        ck_assert_uint_eq(got, model[i]);
        ck_assert_uint_eq(v.size, sizes[i]);
        deed_view_release(ctx, &v);
        deed_ref_release(ctx, refs[i]);
        checked++;
    }
    ck_assert_uint_eq(checked, N);
    ck_assert_uint_gt(large, N / 10);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_eq(s.tasks_run, N);
    ck_assert_uint_eq(s.tasks_failed, 0);
    tu_assert_drained(ctx);
    free(refs);
    free(model);
    free(sizes);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

START_TEST(random_dag_fire_and_forget)
{
    /* the same DAG shape, every ref released right after its dependents were submitted and
     * nothing waited on except the last node: a reduction whose value is checked */
    deed_ctx_t *ctx = tu_init_w(0);
    enum { N = 3000, LOOKBACK = 32 };
    deed_ref_t *refs = calloc(N, sizeof(*refs));
    uint64_t *model = calloc(N, sizeof(*model));
    uint64_t rs = 0xBADC0DEull;
    deed_task_id_t id = deed_task_id("s_node");
    for (int i = 0; i < N; i++) {
        struct node_spec sp = {tu_rnd(&rs), (tu_rnd(&rs) % 10 == 0) ? 100000 : 8};
        deed_arg_in_t in[3];
        uint64_t argv[2];
        uint32_t nargs = 0;
        in[0] = DEED_VAL(&sp, sizeof(sp));
        if (i > 0) {
            /* always depend on the previous node (a spine), plus maybe one random one */
            in[1] = DEED_REF(refs[i - 1]);
            argv[0] = model[i - 1];
            nargs = 1;
            if (i > 1 && tu_rnd(&rs) % 2) {
                int lo = i > LOOKBACK ? i - LOOKBACK : 0;
                int j = lo + (int)(tu_rnd(&rs) % (uint64_t)(i - 1 - lo));
                in[2] = DEED_REF(refs[j]);
                argv[1] = model[j];
                nargs = 2;
            }
        }
        model[i] = node_value(sp.seed, argv, nargs);
        ck_assert_int_eq(deed_submit(ctx, id, in, nargs + 1, &refs[i], 1), DEED_OK);
        if (i - LOOKBACK >= 0)
            deed_ref_release(ctx, refs[i - LOOKBACK]);
    }
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, refs[N - 1], &v, DEED_WAIT_FOREVER), DEED_OK);
    uint64_t got;
    memcpy(&got, v.data, 8);
    ck_assert_uint_eq(got, model[N - 1]);
    deed_view_release(ctx, &v);
    for (int i = N - LOOKBACK; i < N; i++)
        deed_ref_release(ctx, refs[i]);
    tu_assert_drained(ctx);
    ck_assert_uint_eq(tu_stats(ctx).tasks_run, N);
    free(refs);
    free(model);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stress");
    TCase *tc = tcase_create("stress");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, empty_tasks_pipelined);
    tcase_add_test(tc, empty_tasks_many_submitters);
    tcase_add_test(tc, fire_and_forget_volume);
    tcase_add_test(tc, random_dag);
    tcase_add_test(tc, random_dag_fire_and_forget);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
