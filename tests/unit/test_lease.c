/*
 * test_lease.c — leases between real ranks (deedrun -n 3, UCX over shared memory and tcp):
 *   - reuse: 2000 tasks pinned to rank 1 run under a handful of leases, several in flight;
 *   - spillback: a burst of slow unpinned tasks outgrows rank 0's slots, its scheduler spills
 *     lease requests to the other ranks, and tasks run there;
 *   - idle return: shortly after the work stops, the owner holds no lease and the other
 *     ranks' schedulers have none granted (besides the one the probing task runs under).
 * The binary is its own rank program (`--rank`).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deed.h"
#include "rankjob.h"

static int where(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    int r = deed_rank(deed_task_ctx(t));
    if (n)
        usleep(*(const unsigned *)a[0].data);
    return deed_task_return(t, 0, &r, sizeof(r));
}
DEED_REGISTER(where)

static int probe(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    deed_stats_t st = {.size = sizeof(st)};
    deed_stats(deed_task_ctx(t), &st);
    uint32_t v[2] = {st.leases_granted, st.leases_held};
    return deed_task_return(t, 0, v, sizeof(v));
}
DEED_REGISTER(probe)

static int rank_main(void)
{
    deed_ctx_t *ctx;
    if (deed_init(NULL, &ctx) != DEED_OK)
        return 2;
    int fail = 0, n = deed_nranks(ctx);
    if (deed_rank(ctx) == 0) {
        enum { N = 2000 };
        static deed_ref_t r[N];
        deed_submit_opts_t o = DEED_SUBMIT_OPTS_INIT;
        deed_stats_t st0 = {.size = sizeof(st0)}, st1 = {.size = sizeof(st1)};
        /* reuse */
        deed_stats(ctx, &st0);
        o.rank = 1;
        for (int i = 0; i < N; i++)
            deed_submit_opts(ctx, deed_task_id("where"), NULL, 0, &r[i], 1, &o);
        int on1 = 0;
        for (int i = 0; i < N; i++) {
            int w = -1;
            deed_get_copy(ctx, r[i], &w, sizeof(w), NULL, -1);
            on1 += w == 1;
            deed_ref_release(ctx, r[i]);
        }
        deed_stats(ctx, &st1);
        uint64_t req = st1.leases_requested - st0.leases_requested;
        printf("reuse: %d of %d pinned tasks ran on rank 1 under %llu lease requests\n", on1, N,
               (unsigned long long)req);
        if (on1 != N || req == 0 || req > (uint64_t)(n * 64))
            fail++;
        /* a key pinned to one rank holds at most one lease per worker slot there, however
         * long its queue (every rank runs st1.workers slots): the queue used to ask for one
         * more lease whenever the leases it had were full, and a pinned request is always
         * granted (146 leases in the remote benchmark, each scanned for every task) */
        printf("reuse: at most %u leases held at once for %u worker slots on rank 1\n",
               st1.leases_held_peak, st1.workers);
        if (st1.leases_held_peak == 0 || st1.leases_held_peak > st1.workers)
            fail++;
        /* spillback */
        unsigned us = 2000;
        deed_arg_in_t a = DEED_VAL(&us, sizeof(us));
        enum { M = 200 };
        int per[8] = {0};
        for (int i = 0; i < M; i++)
            deed_submit(ctx, deed_task_id("where"), &a, 1, &r[i], 1);
        for (int i = 0; i < M; i++) {
            int w = -1;
            deed_get_copy(ctx, r[i], &w, sizeof(w), NULL, -1);
            if (w >= 0 && w < 8)
                per[w]++;
            deed_ref_release(ctx, r[i]);
        }
        deed_stats(ctx, &st0);
        printf("spillback: tasks per rank %d %d %d, %llu requests spilled by rank 0\n", per[0],
               per[1], per[2], (unsigned long long)st0.leases_spilled);
        if (per[0] + per[1] + per[2] != M || per[1] + per[2] == 0 || st0.leases_spilled == 0)
            fail++;
        /* idle return */
        usleep(200000);
        deed_stats(ctx, &st0);
        printf("idle: rank 0 holds %u leases\n", st0.leases_held);
        if (st0.leases_held != 0)
            fail++;
        for (int rk = 1; rk < n; rk++) {
            deed_ref_t p;
            uint32_t v[2] = {99, 99};
            o.rank = rk;
            deed_submit_opts(ctx, deed_task_id("probe"), NULL, 0, &p, 1, &o);
            deed_get_copy(ctx, p, v, sizeof(v), NULL, -1);
            deed_ref_release(ctx, p);
            printf("idle: rank %d has %u leases granted (the probe's own included)\n", rk, v[0]);
            if (v[0] > 1)
                fail++;
        }
    }
    deed_finalize(ctx);
    if (fail)
        printf("FAILED checks: %d\n", fail);
    return fail ? 1 : 0;
}

static void check_job(const char *tls)
{
    static char out[1 << 20];
    int rc = rankjob_run(tls, 3, "", out, sizeof(out));
    fputs(out, stdout);
    ck_assert_msg(rc == 0, "job failed (exit %d):\n%s", rc, out);
    ck_assert_msg(strstr(out, "reuse: 2000 of 2000"), "reuse line missing:\n%s", out);
}

START_TEST(leases_shm)
{
    check_job("posix,sysv,cma,self");
}
END_TEST

START_TEST(leases_tcp)
{
    check_job("tcp,self");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("lease");
    TCase *tc = tcase_create("lease");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, leases_shm);
    tcase_add_test(tc, leases_tcp);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    return rankjob_main(argc, argv, rank_main, make_suite);
}
