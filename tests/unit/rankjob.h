/*
 * rankjob.h — for Check suites whose binary is also their own SPMD rank program: run
 * `deedrun -n N <this binary> --rank` with a UCX_TLS and capture the whole job's output,
 * and a main() that dispatches between the rank side and the Check side.
 */
#ifndef DEED_TEST_RANKJOB_H
#define DEED_TEST_RANKJOB_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char rankjob_self[4096];

/* Run the job (extra deedrun options may be ""); returns deedrun's exit status, -1 if it
 * did not exit normally. out receives the merged output, NUL-terminated. */
static int rankjob_run(const char *tls, int nranks, const char *extra, char *out, size_t cap)
{
    const char *deedrun = getenv("DEED_TEST_DEEDRUN");
    ck_assert_msg(deedrun != NULL, "DEED_TEST_DEEDRUN is not set");
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "UCX_TLS=%s %s -n %d %s %s --rank 2>&1", tls, deedrun, nranks,
             extra, rankjob_self);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t len = fread(out, 1, cap - 1, f);
    out[len] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* main(): `--rank` runs the rank side; otherwise the suite made by make_suite(). */
static int rankjob_main(int argc, char **argv, int (*rank_main)(void), Suite *(*make_suite)(void))
{
    if (argc > 1 && strcmp(argv[1], "--rank") == 0)
        return rank_main();
    ssize_t len = readlink("/proc/self/exe", rankjob_self, sizeof(rankjob_self) - 1);
    if (len <= 0)
        return 1;
    rankjob_self[len] = 0;
    SRunner *sr = srunner_create(make_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif /* DEED_TEST_RANKJOB_H */
