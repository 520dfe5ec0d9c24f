/*
 * fib.c — recursive Fibonacci with nested tasks.
 *
 * What it shows:
 *   - registering a task with DEED_REGISTER and looking its id up once (deed_task_id);
 *   - a task body that submits tasks itself (nested submits, through deed_task_ctx) and
 *     waits for them (nested gets): each fib(n) task submits fib(n-1) and fib(n-2) and gets
 *     both results. A task blocked in a get gives its worker slot away, and a child that is
 *     still queued is run right there by the waiting task, so deep recursion cannot
 *     deadlock the worker pool;
 *   - the counting rule: every ref returned by deed_submit counts once and is released
 *     with deed_ref_release, in task bodies as in the driver;
 *   - errors as values: a failed child makes deed_get_copy return its error, which the
 *     parent passes up with deed_task_fail.
 *
 * usage: fib [n]        (default 20; fib(20) runs 21891 tasks)
 * Prints fib(n), checks it against a plain loop and exits non-zero on any mismatch or error.
 */
#include <deed.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static deed_task_id_t fib_id;

static int fib_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    deed_ctx_t *ctx = deed_task_ctx(task);
    int64_t n, r[2] = {0, 0};
    deed_ref_t kids[2] = {DEED_REF_NULL, DEED_REF_NULL};
    deed_status_t rc = DEED_OK;

    if (nargs != 1 || args[0].size != sizeof(n))
        return deed_task_fail(task, 1, "fib: expected one int64_t argument");
    n = *(const int64_t *)args[0].data;
    if (n < 2)
        return deed_task_return(task, 0, &n, sizeof(n));

    for (int i = 0; i < 2; i++) {
        int64_t m = n - 1 - i;
        deed_arg_in_t arg = DEED_VAL(&m, sizeof(m));
        rc = deed_submit(ctx, fib_id, &arg, 1, &kids[i], 1);
        if (rc != DEED_OK)
            goto out;
    }
    for (int i = 0; i < 2 && rc == DEED_OK; i++)
        rc = deed_get_copy(ctx, kids[i], &r[i], sizeof(r[i]), NULL, DEED_WAIT_FOREVER);
out:
    for (int i = 0; i < 2; i++)
        if (!deed_ref_is_null(kids[i]))
            deed_ref_release(ctx, kids[i]);
    if (rc != DEED_OK)
        return deed_task_fail(task, 2, "fib(%" PRId64 "): child failed: %s", n,
                              deed_strerror(rc));
    int64_t sum = r[0] + r[1];
    return deed_task_return(task, 0, &sum, sizeof(sum));
}
DEED_REGISTER_AS(fib_task, "fib")

static int64_t fib_loop(int64_t n)
{
    int64_t a = 0, b = 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = a + b;
        a = b;
        b = c;
    }
    return a;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int64_t n = 20, result = -1;
    deed_ctx_t *ctx = NULL;
    deed_ref_t fut = DEED_REF_NULL;
    deed_stats_t st = {.size = sizeof(st)};
    deed_status_t rc;

    if (argc > 1) {
        char *end;
        n = strtoll(argv[1], &end, 10);
        if (*end != '\0' || n < 0 || n > 40) {
            fprintf(stderr, "usage: %s [n]   (0 <= n <= 40, default 20)\n", argv[0]);
            return 2;
        }
    }
    fib_id = deed_task_id("fib");
    if (fib_id == 0) {
        fprintf(stderr, "fib: task 'fib' is not registered\n");
        return 1;
    }
    if ((rc = deed_init(NULL, &ctx)) != DEED_OK) {
        fprintf(stderr, "fib: deed_init: %s\n", deed_strerror(rc));
        return 1;
    }

    double t0 = now_s();
    deed_arg_in_t arg = DEED_VAL(&n, sizeof(n));
    rc = deed_submit(ctx, fib_id, &arg, 1, &fut, 1);
    if (rc == DEED_OK)
        rc = deed_get_copy(ctx, fut, &result, sizeof(result), NULL, DEED_WAIT_FOREVER);
    double dt = now_s() - t0;
    if (!deed_ref_is_null(fut))
        deed_ref_release(ctx, fut);
    if (rc != DEED_OK) {
        fprintf(stderr, "fib: fib(%" PRId64 ") failed: %s\n", n, deed_strerror(rc));
        deed_finalize(ctx);
        return 1;
    }
    deed_stats(ctx, &st);

    int64_t expect = fib_loop(n);
    printf("fib(%" PRId64 ") = %" PRId64 " (loop: %" PRId64 ") in %.3f s, %" PRIu64
           " tasks on %u workers\n",
           n, result, expect, dt, st.tasks_run, st.workers);
    if ((rc = deed_finalize(ctx)) != DEED_OK) {
        fprintf(stderr, "fib: deed_finalize: %s\n", deed_strerror(rc));
        return 1;
    }
    if (result != expect) {
        fprintf(stderr, "fib: MISMATCH\n");
        return 1;
    }
    printf("fib: OK\n");
    return 0;
}
