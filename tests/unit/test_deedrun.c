/*
 * test_deedrun.c — runs the real deedrun binary ($DEED_TEST_DEEDRUN, as tests/meson.build
 * sets it, else <build>/tools/deedrun found from /proc/self/exe) on this test binary itself as the rank program: `deedrun -n N <this> --child
 * MODE` runs child_main instead of the Check suite. Checks: every rank's output arrives with
 * its "[r] " prefix on the right stream; the environment; a failing rank (exit code, signal)
 * is reported by rank and makes deedrun fail, the others being stopped after the grace
 * period; SIGTERM to deedrun reaches every rank; the ranks bootstrap over the rendezvous;
 * a process with a wrong job key is refused; option errors and --help. Fault tolerance:
 * --keep-going (and DEED_KEEP_GOING=1) lets the job go on when a rank other than 0 fails
 * (reported with the time; exit status rank 0's), but not when rank 0 fails; --kill R@MS
 * kills a rank, --kill R@tasks=N reaches that rank's environment only; with keep-going the
 * survivors' bootstrap barriers and all-gathers complete without a rank that died.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap.h"
#include "deed.h"

static char self[PATH_MAX];
static char deedrun[PATH_MAX];

/* ---- the rank program ---------------------------------------------------------------- */

static void on_term(int sig)
{
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "rank %s got SIGTERM\n", getenv("DEED_RANK"));
    ssize_t w = write(STDOUT_FILENO, buf, (size_t)n);

    (void)w;
    (void)sig;
    _exit(0);
}

static int child_boot(uint32_t expect_rank, uint32_t expect_n)
{
    const struct boot_ops *ops = boot_select();
    struct boot *b;
    uint32_t rank, n;
    char mine[32];
    void *all;
    size_t *lens, off = 0;

    if (ops != &boot_tcp_ops || ops->init(0, &b, &rank, &n) != DEED_OK)
        return 10;
    if (rank != expect_rank || n != expect_n)
        return 11;
    snprintf(mine, sizeof(mine), "rank %u", rank);
    if (ops->allgatherv(b, mine, strlen(mine), &all, &lens) != DEED_OK)
        return 12;
    printf("gathered:");
    for (uint32_t r = 0; r < n; r++) {
        printf(" <%.*s>", (int)lens[r], (char *)all + off);
        off += lens[r];
    }
    printf("\n");
    free(all);
    free(lens);
    if (ops->barrier(b) != DEED_OK)
        return 13;
    ops->fini(b);
    return 0;
}

/* Fault tolerance: every rank connects; rank 1 dies before the barrier; the others go on
 * through two barriers (as finalize does) and an all-gather, without it. */
static int child_ft_boot(uint32_t expect_rank, uint32_t expect_n)
{
    const struct boot_ops *ops = boot_select();
    struct boot *b;
    uint32_t rank, n;
    char mine[32];
    void *all;
    size_t *lens, off = 0;

    if (ops != &boot_tcp_ops || ops->init(0, &b, &rank, &n) != DEED_OK)
        return 10;
    if (rank != expect_rank || n != expect_n)
        return 11;
    printf("connected\n");
    if (rank == 1)
        _exit(1); /* dies without finalizing */
    if (ops->barrier(b) != DEED_OK) {
        ops->fini(b);
        return 13;
    }
    printf("barrier ok\n");
    snprintf(mine, sizeof(mine), "rank %u", rank);
    if (ops->allgatherv(b, mine, strlen(mine), &all, &lens) != DEED_OK) {
        ops->fini(b);
        return 12;
    }
    printf("gathered:");
    for (uint32_t r = 0; r < n; r++) {
        printf(" <%.*s>", (int)lens[r], (char *)all + off);
        off += lens[r];
    }
    printf("\n");
    free(all);
    free(lens);
    if (ops->barrier(b) != DEED_OK) {
        ops->fini(b);
        return 14;
    }
    printf("barrier 2 ok\n");
    ops->fini(b);
    return 0;
}

static int child_main(const char *mode)
{
    const char *rs = getenv("DEED_RANK"), *ns = getenv("DEED_NRANKS");
    uint32_t rank, n;

    if (!rs || !ns || !getenv("DEED_JOB_KEY") || !getenv("DEED_RENDEZVOUS") ||
        !getenv("DEED_LOCAL_RANK"))
        return 90;
    rank = (uint32_t)atoi(rs);
    n = (uint32_t)atoi(ns);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (strcmp(mode, "print") == 0) {
        printf("hello from rank %u of %u\n", rank, n);
        fprintf(stderr, "note from rank %u\n", rank);
        printf("key has %zu digits, local rank %s\n", strlen(getenv("DEED_JOB_KEY")),
               getenv("DEED_LOCAL_RANK"));
        printf("no newline at the end");
        return 0;
    }
    if (strcmp(mode, "exit3") == 0)
        return rank == 2 ? 3 : 0;
    if (strcmp(mode, "kill") == 0) {
        if (rank == 1)
            raise(SIGKILL);
        sleep(60); /* deedrun stops us after the grace period */
        return 0;
    }
    if (strcmp(mode, "term") == 0) {
        signal(SIGTERM, on_term);
        printf("ready %u\n", rank);
        for (int i = 0; i < 60; i++)
            sleep(1);
        return 1;
    }
    if (strcmp(mode, "boot") == 0)
        return child_boot(rank, n);
    if (strcmp(mode, "intruder") == 0) {
        /* first as an outsider with a wrong key: refused; then as the real rank */
        char *key = strdup(getenv("DEED_JOB_KEY"));
        const char *bad = strcmp(key, "00000000000000000000000000000000") == 0
                              ? "11111111111111111111111111111111"
                              : "00000000000000000000000000000000";
        struct boot *b;
        uint32_t r2, n2;
        int rc;

        setenv("DEED_JOB_KEY", bad, 1);
        rc = boot_tcp_ops.init(5000, &b, &r2, &n2);
        setenv("DEED_JOB_KEY", key, 1);
        free(key);
        if (rc != DEED_ERR_BOOTSTRAP)
            return 20;
        printf("outsider refused\n");
        return child_boot(rank, n);
    }
    if (strcmp(mode, "exit3late") == 0) {
        if (rank == 2)
            return 3;
        usleep(1500 * 1000); /* without keep-going, deedrun stops us (--grace 0.2) */
        printf("rank %u finished\n", rank);
        return 0;
    }
    if (strcmp(mode, "sleep1") == 0) {
        sleep(1);
        printf("rank %u woke up\n", rank);
        return 0;
    }
    if (strcmp(mode, "sleep60") == 0) {
        sleep(60); /* deedrun stops us */
        return 0;
    }
    if (strcmp(mode, "faultenv") == 0) {
        const char *v = getenv("DEED_FAULT_KILL_AFTER_TASKS");
        printf("fault=%s\n", v ? v : "-");
        return 0;
    }
    if (strcmp(mode, "ftboot") == 0)
        return child_ft_boot(rank, n);
    if (strcmp(mode, "env") == 0) {
        printf("timeout=%s\n", getenv("DEED_BOOT_TIMEOUT") ? getenv("DEED_BOOT_TIMEOUT") : "-");
        return 0;
    }
    return 99;
}

/* ---- running deedrun ----------------------------------------------------------------- */

struct run {
    int status;
    char out[65536], err[65536];
    size_t olen, elen;
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Run deedrun with args (NULL-terminated). If term_after_ready > 0, send SIGTERM to deedrun
 * once stdout holds that many "ready" lines. */
static void run_deedrun(struct run *res, const char *const *args, int term_after_ready)
{
    const char *argv[32];
    int po[2], pe[2], nargs = 0;
    pid_t pid;
    int open_fds = 2, termed = 0;
    uint64_t deadline = now_ms() + 60000;

    memset(res, 0, sizeof(*res));
    argv[nargs++] = deedrun;
    for (int i = 0; args[i]; i++)
        argv[nargs++] = args[i];
    argv[nargs] = NULL;
    ck_assert_int_eq(pipe(po), 0);
    ck_assert_int_eq(pipe(pe), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(po[1], STDOUT_FILENO);
        dup2(pe[1], STDERR_FILENO);
        close(po[0]);
        close(pe[0]);
        close(po[1]);
        close(pe[1]);
        execv(deedrun, (char *const *)argv);
        _exit(126);
    }
    close(po[1]);
    close(pe[1]);
    while (open_fds > 0 && now_ms() < deadline) {
        struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
        if (poll(fds, 2, 200) <= 0)
            continue;
        for (int k = 0; k < 2; k++) {
            char *buf = k ? res->err : res->out;
            size_t *len = k ? &res->elen : &res->olen;
            ssize_t n;
            if (!fds[k].revents || fds[k].fd < 0)
                continue;
            n = read(fds[k].fd, buf + *len, sizeof(res->out) - 1 - *len);
            if (n <= 0) {
                close(k ? pe[0] : po[0]);
                if (k)
                    pe[0] = -1;
                else
                    po[0] = -1;
                open_fds--;
                continue;
            }
            *len += (size_t)n;
            buf[*len] = '\0';
        }
        if (term_after_ready && !termed && (int)count(res->out, "ready ") >= term_after_ready) {
            kill(pid, SIGTERM);
            termed = 1;
        }
    }
    if (open_fds > 0)
        kill(pid, SIGKILL);
    if (po[0] >= 0)
        close(po[0]);
    if (pe[0] >= 0)
        close(pe[0]);
    ck_assert_int_eq(waitpid(pid, &res->status, 0), pid);
    ck_assert_msg(open_fds == 0, "deedrun did not finish; stdout: %s\nstderr: %s", res->out,
                  res->err);
}

static int code(const struct run *r)
{
    return WIFEXITED(r->status) ? WEXITSTATUS(r->status) : 1000 + WTERMSIG(r->status);
}

#define HAS(buf, s) ck_assert_msg(strstr((buf), (s)), "missing '%s' in:\n%s", (s), (buf))

/* ---- tests --------------------------------------------------------------------------- */

START_TEST(every_rank_prints_with_its_prefix)
{
    struct run r;
    const char *args[] = {"-n", "3", self, "--child", "print", NULL};

    run_deedrun(&r, args, 0);
    ck_assert_msg(code(&r) == 0, "exit %d, stderr: %s", code(&r), r.err);
    for (int i = 0; i < 3; i++) {
        char want[128];
        snprintf(want, sizeof(want), "[%d] hello from rank %d of 3\n", i, i);
        HAS(r.out, want);
        snprintf(want, sizeof(want), "[%d] key has 32 digits, local rank %d\n", i, i);
        HAS(r.out, want);
        snprintf(want, sizeof(want), "[%d] no newline at the end\n", i);
        HAS(r.out, want);
        snprintf(want, sizeof(want), "[%d] note from rank %d\n", i, i);
        HAS(r.err, want);
        ck_assert(!strstr(r.out, want)); /* stderr lines stay on stderr */
    }
    ck_assert_uint_eq(count(r.out, "\n"), 9);
}
END_TEST

START_TEST(a_failing_rank_is_reported_and_fails_the_job)
{
    struct run r;
    const char *args[] = {"-n", "4", "--", self, "--child", "exit3", NULL};

    run_deedrun(&r, args, 0);
    ck_assert_int_eq(code(&r), 3);
    HAS(r.err, "deedrun: rank 2 exited with code 3\n");
    ck_assert_uint_eq(count(r.err, "deedrun: rank"), 1);
}
END_TEST

START_TEST(a_killed_rank_is_reported_with_the_signal)
{
    struct run r;
    const char *args[] = {"-n", "3", "--grace", "0.5", self, "--child", "kill", NULL};
    uint64_t t0 = now_ms();

    run_deedrun(&r, args, 0);
    ck_assert_int_ne(code(&r), 0);
    ck_assert_int_eq(code(&r), 128 + SIGKILL);
    HAS(r.err, "deedrun: rank 1 killed by signal 9 (Killed)\n");
    /* the others were stopped after the grace period, long before their 60 s sleep */
    HAS(r.err, "deedrun: rank 0 killed by signal 15 (Terminated) (stopped by deedrun after "
               "rank 1 failed)");
    HAS(r.err, "deedrun: rank 2 killed by signal 15");
    ck_assert_uint_lt(now_ms() - t0, 20000);
}
END_TEST

START_TEST(sigterm_reaches_every_rank)
{
    struct run r;
    const char *args[] = {"-n", "3", self, "--child", "term", NULL};

    run_deedrun(&r, args, 3);
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof(want), "[%d] rank %d got SIGTERM\n", i, i);
        HAS(r.out, want);
    }
    ck_assert_msg(code(&r) == 0, "exit %d, stderr: %s", code(&r), r.err);
}
END_TEST

START_TEST(ranks_bootstrap_through_the_rendezvous)
{
    struct run r;
    const char *args[] = {"-n", "4", "--timeout", "20", self, "--child", "boot", NULL};

    run_deedrun(&r, args, 0);
    ck_assert_msg(code(&r) == 0, "exit %d, stdout: %s, stderr: %s", code(&r), r.out, r.err);
    for (int i = 0; i < 4; i++) {
        char want[128];
        snprintf(want, sizeof(want),
                 "[%d] gathered: <rank 0> <rank 1> <rank 2> <rank 3>\n", i);
        HAS(r.out, want);
    }
}
END_TEST

START_TEST(a_process_with_the_wrong_key_is_refused)
{
    struct run r;
    const char *args[] = {"-n", "2", self, "--child", "intruder", NULL};

    run_deedrun(&r, args, 0);
    ck_assert_msg(code(&r) == 0, "exit %d, stdout: %s, stderr: %s", code(&r), r.out, r.err);
    HAS(r.err, "[0] deed error: bootstrap: the rendezvous refused this process: wrong job key");
    HAS(r.err, "[1] deed error: bootstrap: the rendezvous refused this process: wrong job key");
    HAS(r.err, "rendezvous: refused a connection from 127.0.0.1");
    HAS(r.out, "[0] outsider refused");
    HAS(r.out, "[1] gathered: <rank 0> <rank 1>");
}
END_TEST

START_TEST(timeout_option_reaches_the_ranks)
{
    struct run r;
    const char *args[] = {"-n", "1", "--timeout=2.5", self, "--child", "env", NULL};

    run_deedrun(&r, args, 0);
    ck_assert_int_eq(code(&r), 0);
    HAS(r.out, "[0] timeout=2.5\n");
}
END_TEST

START_TEST(a_missing_program_is_reported)
{
    struct run r;
    const char *args[] = {"-n", "2", "/nonexistent/program", NULL};

    run_deedrun(&r, args, 0);
    ck_assert_int_eq(code(&r), 127);
    HAS(r.err, "deedrun: cannot run /nonexistent/program");
    HAS(r.err, "deedrun: rank 0 exited with code 127");
    HAS(r.err, "deedrun: rank 1 exited with code 127");
}
END_TEST

START_TEST(bad_options_get_a_clear_message)
{
    struct run r;
    const struct {
        const char *a[6];
        const char *msg;
    } cases[] = {
        {{"-n", "0", "true", NULL}, "deedrun: -n needs a positive integer"},
        {{"-n", "x", "true", NULL}, "deedrun: -n needs a positive integer"},
        {{"-n", NULL}, "deedrun: -n needs a positive integer"},
        {{"true", NULL}, "deedrun: -n N is required"},
        {{"-n", "2", NULL}, "deedrun: no program to run"},
        {{"-n", "2", "--bind", "socket", "true", NULL}, "deedrun: --bind needs none, core or numa"},
        {{"-n", "2", "--timeout", "0", "true", NULL}, "deedrun: --timeout needs a positive"},
        {{"-n", "2", "--grace", "-1", "true", NULL}, "deedrun: --grace needs a number"},
        {{"-n", "2", "--frobnicate", "true", NULL}, "deedrun: unknown option '--frobnicate'"},
        {{"-n", "2", "--kill", "1", "true", NULL}, "deedrun: --kill expects RANK@MS or RANK@tasks=N"},
        {{"-n", "2", "--kill", "x@5", "true", NULL}, "deedrun: --kill expects RANK@MS or RANK@tasks=N"},
        {{"-n", "2", "--kill", "1@", "true", NULL}, "deedrun: --kill expects RANK@MS or RANK@tasks=N"},
        {{"-n", "2", "--kill", "1@5ms", "true", NULL}, "deedrun: --kill expects RANK@MS or RANK@tasks=N"},
        {{"-n", "2", "--kill", "1@-5", "true", NULL}, "deedrun: --kill expects RANK@MS or RANK@tasks=N"},
        {{"-n", "2", "--kill", "1@tasks=", "true", NULL}, "deedrun: --kill expects RANK@MS or RANK@tasks=N"},
        {{"-n", "2", "--kill", "1@tasks=x", "true", NULL}, "deedrun: --kill expects RANK@MS or RANK@tasks=N"},
        {{"-n", "2", "--kill", "1@tasks=0", "true", NULL}, "deedrun: --kill expects RANK@MS or RANK@tasks=N"},
        {{"-n", "2", "--kill", NULL}, "deedrun: --kill expects RANK@MS or RANK@tasks=N"},
        {{"-n", "2", "--kill", "2@100", "true", NULL}, "deedrun: --kill: rank 2 is out of range"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_deedrun(&r, cases[i].a, 0);
        ck_assert_int_eq(code(&r), 2);
        HAS(r.err, cases[i].msg);
        HAS(r.err, "deedrun --help");
    }
    {
        const char *args[] = {"--help", NULL};
        run_deedrun(&r, args, 0);
        ck_assert_int_eq(code(&r), 0);
        HAS(r.out, "usage: deedrun -n N");
        HAS(r.out, "--bind");
    }
}
END_TEST

/* "deedrun: rank R killed by signal 9 (Killed) at X s": X, or -1 */
static double killed_at(const char *err, unsigned rank)
{
    char want[64];
    const char *p;
    double t;

    snprintf(want, sizeof(want), "deedrun: rank %u killed by signal 9 (Killed) at ", rank);
    p = strstr(err, want);
    if (!p || sscanf(p + strlen(want), "%lf s", &t) != 1)
        return -1;
    return t;
}

START_TEST(keep_going_survives_a_failing_rank)
{
    struct run r;
    const char *args[] = {"-n", "4", "--keep-going", "--grace", "0.2", self, "--child",
                          "exit3late", NULL};
    const char *plain[] = {"-n", "4", "--grace", "0.2", self, "--child", "exit3late", NULL};

    run_deedrun(&r, args, 0);
    ck_assert_msg(code(&r) == 0, "exit %d, stderr: %s", code(&r), r.err);
    HAS(r.err, "deedrun: rank 2 exited with code 3 at ");
    ck_assert_uint_eq(count(r.err, "deedrun: rank"), 1);
    HAS(r.out, "[0] rank 0 finished\n");
    HAS(r.out, "[1] rank 1 finished\n");
    HAS(r.out, "[3] rank 3 finished\n");

    /* the same through the environment */
    setenv("DEED_KEEP_GOING", "1", 1);
    run_deedrun(&r, plain, 0);
    unsetenv("DEED_KEEP_GOING");
    ck_assert_msg(code(&r) == 0, "exit %d, stderr: %s", code(&r), r.err);
    HAS(r.err, "deedrun: rank 2 exited with code 3 at ");
    HAS(r.out, "[3] rank 3 finished\n");

    /* and without it, the others are stopped and the job fails */
    run_deedrun(&r, plain, 0);
    ck_assert_int_eq(code(&r), 3);
    HAS(r.err, "deedrun: rank 2 exited with code 3\n");
    HAS(r.err, "(stopped by deedrun after rank 2 failed)");
    ck_assert(!strstr(r.out, "finished"));
}
END_TEST

START_TEST(kill_option_kills_a_rank_and_the_job_goes_on)
{
    struct run r;
    const char *args[] = {"-n", "3", "--kill", "1@200", self, "--child", "sleep1", NULL};
    uint64_t t0 = now_ms();
    double t;

    run_deedrun(&r, args, 0);
    ck_assert_msg(code(&r) == 0, "exit %d, stderr: %s", code(&r), r.err);
    t = killed_at(r.err, 1);
    ck_assert_msg(t >= 0.15 && t < 0.9, "rank 1 killed at %g s; stderr: %s", t, r.err);
    HAS(r.err, "(injected by --kill)");
    ck_assert_uint_eq(count(r.err, "deedrun: rank"), 1);
    HAS(r.out, "[0] rank 0 woke up\n");
    HAS(r.out, "[2] rank 2 woke up\n");
    ck_assert(!strstr(r.out, "[1] rank 1 woke up"));
    ck_assert_uint_ge(now_ms() - t0, 1000);
}
END_TEST

START_TEST(a_killed_rank_0_fails_the_job)
{
    struct run r;
    const char *a1[] = {"-n", "3", "--keep-going", "--grace", "0.3", "--kill", "0@200", self,
                        "--child", "sleep60", NULL};
    const char *a2[] = {"-n", "3", "--grace=0.3", "--kill=0@100", self, "--child", "sleep60",
                        NULL};
    uint64_t t0 = now_ms();

    run_deedrun(&r, a1, 0);
    ck_assert_int_eq(code(&r), 128 + SIGKILL);
    ck_assert_msg(killed_at(r.err, 0) >= 0.15, "stderr: %s", r.err);
    HAS(r.err, "deedrun: rank 1 killed by signal 15 (Terminated) at ");
    HAS(r.err, "(stopped by deedrun after rank 0 failed)");
    HAS(r.err, "deedrun: rank 2 killed by signal 15 (Terminated) at ");
    /* --kill 0@ alone does not imply --keep-going */
    run_deedrun(&r, a2, 0);
    ck_assert_int_eq(code(&r), 128 + SIGKILL);
    HAS(r.err, "deedrun: rank 0 killed by signal 9 (Killed) (injected by --kill)\n");
    HAS(r.err, "deedrun: rank 2 killed by signal 15 (Terminated) (stopped by deedrun after "
               "rank 0 failed)\n");
    ck_assert_uint_lt(now_ms() - t0, 20000);
}
END_TEST

START_TEST(kill_after_tasks_reaches_only_that_rank)
{
    struct run r;
    const char *args[] = {"-n", "3", "--kill", "1@tasks=5", self, "--child", "faultenv", NULL};

    /* an inherited value reaches nobody else */
    setenv("DEED_FAULT_KILL_AFTER_TASKS", "77", 1);
    run_deedrun(&r, args, 0);
    unsetenv("DEED_FAULT_KILL_AFTER_TASKS");
    ck_assert_msg(code(&r) == 0, "exit %d, stderr: %s", code(&r), r.err);
    HAS(r.out, "[0] fault=-\n");
    HAS(r.out, "[1] fault=5\n");
    HAS(r.out, "[2] fault=-\n");
}
END_TEST

START_TEST(keep_going_barriers_complete_without_a_dead_rank)
{
    struct run r;
    const char *args[] = {"-n", "3", "--keep-going", "--timeout", "20", self, "--child",
                          "ftboot", NULL};
    const char *plain[] = {"-n", "3", "--timeout", "20", self, "--child", "ftboot", NULL};

    run_deedrun(&r, args, 0);
    ck_assert_msg(code(&r) == 0, "exit %d, stdout: %s, stderr: %s", code(&r), r.out, r.err);
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof(want), "[%d] connected\n", i);
        HAS(r.out, want);
    }
    HAS(r.out, "[0] barrier ok\n");
    HAS(r.out, "[2] barrier ok\n");
    HAS(r.out, "[0] gathered: <rank 0> <> <rank 2>\n");
    HAS(r.out, "[2] gathered: <rank 0> <> <rank 2>\n");
    HAS(r.out, "[0] barrier 2 ok\n");
    HAS(r.out, "[2] barrier 2 ok\n");
    ck_assert(!strstr(r.out, "[1] barrier"));
    HAS(r.err, "deedrun: rank 1 exited with code 1 at ");
    HAS(r.err, "rendezvous: rank 1 removed from the job");
    ck_assert_uint_eq(count(r.err, "deedrun: rank"), 1);

    /* without keep-going, the rendezvous fails the job instead */
    run_deedrun(&r, plain, 0);
    ck_assert_int_ne(code(&r), 0);
    ck_assert(!strstr(r.out, "barrier ok"));
    HAS(r.err, "rank 1 disconnected from the rendezvous before finalizing");
}
END_TEST

START_TEST(bind_core_and_numa_run)
{
    struct run r;
    const char *a1[] = {"-n", "2", "--bind", "core", self, "--child", "print", NULL};
    const char *a2[] = {"-n", "2", "--bind=numa", self, "--child", "print", NULL};

    run_deedrun(&r, a1, 0);
    ck_assert_msg(code(&r) == 0, "stderr: %s", r.err);
    HAS(r.out, "[1] hello from rank 1 of 2");
    run_deedrun(&r, a2, 0);
    ck_assert_msg(code(&r) == 0, "stderr: %s", r.err);
    HAS(r.out, "[1] hello from rank 1 of 2");
}
END_TEST

static Suite *deedrun_suite(void)
{
    Suite *su = suite_create("deedrun");
    TCase *tc = tcase_create("deedrun");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, every_rank_prints_with_its_prefix);
    tcase_add_test(tc, a_failing_rank_is_reported_and_fails_the_job);
    tcase_add_test(tc, a_killed_rank_is_reported_with_the_signal);
    tcase_add_test(tc, sigterm_reaches_every_rank);
    tcase_add_test(tc, ranks_bootstrap_through_the_rendezvous);
    tcase_add_test(tc, a_process_with_the_wrong_key_is_refused);
    tcase_add_test(tc, timeout_option_reaches_the_ranks);
    tcase_add_test(tc, a_missing_program_is_reported);
    tcase_add_test(tc, bad_options_get_a_clear_message);
    tcase_add_test(tc, bind_core_and_numa_run);
    tcase_add_test(tc, keep_going_survives_a_failing_rank);
    tcase_add_test(tc, kill_option_kills_a_rank_and_the_job_goes_on);
    tcase_add_test(tc, a_killed_rank_0_fails_the_job);
    tcase_add_test(tc, kill_after_tasks_reaches_only_that_rank);
    tcase_add_test(tc, keep_going_barriers_complete_without_a_dead_rank);
    suite_add_tcase(su, tc);
    return su;
}

int main(int argc, char **argv)
{
    SRunner *sr;
    ssize_t n;
    char *slash;
    int failed;

    if (argc >= 3 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2]);

    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return EXIT_FAILURE;
    }
    self[n] = '\0';
    if (getenv("DEED_TEST_DEEDRUN") && *getenv("DEED_TEST_DEEDRUN")) {
        snprintf(deedrun, sizeof(deedrun), "%s", getenv("DEED_TEST_DEEDRUN"));
        goto found;
    }
    snprintf(deedrun, sizeof(deedrun), "%s", self);
    slash = strrchr(deedrun, '/');
    *slash = '\0';
    slash = strrchr(deedrun, '/'); /* <build>/tests -> <build> */
    if (!slash) {
        fprintf(stderr, "test_deedrun: cannot derive the build directory from %s\n", self);
        return EXIT_FAILURE;
    }
    *slash = '\0';
    if (strlen(deedrun) + sizeof("/tools/deedrun") > sizeof(deedrun))
        return EXIT_FAILURE;
    strcat(deedrun, "/tools/deedrun");
found:
    if (access(deedrun, X_OK) != 0) {
        fprintf(stderr, "test_deedrun: %s is missing (build tools/deedrun first)\n", deedrun);
        return EXIT_FAILURE;
    }
    signal(SIGPIPE, SIG_IGN);
    unsetenv("DEED_RENDEZVOUS");
    unsetenv("DEED_KEEP_GOING"); /* the tests choose keep-going themselves */
    unsetenv("DEED_FAULT_KILL_AFTER_TASKS");
    sr = srunner_create(deedrun_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
