/*
 * bench_recovery.c — the recovery benchmark: a chain of tasks that survives a rank's death,
 * and the failure-detection latency on its own.
 *
 * Run under the launcher (perf/recovery.sh runs every configuration and prints the ratios):
 *
 *   deedrun -n 3 [--keep-going --kill 2@MS] bench_recovery --mode chain [options]
 *   deedrun -n 4 --keep-going bench_recovery --mode detect [--own-host]
 *
 * Rank 0 measures and prints JSON lines on stdout (deedrun prefixes them with "[0] "); the
 * other ranks serve and then call deed_finalize (finalize skips dead ranks). Diagnostics go
 * to stderr. Every line carries "tls" (UCX_TLS, or "default").
 *
 * --mode chain: N tasks, each sleeps d, then returns an object of S bytes whose first and
 * last 8-byte words are its input's counter + 1 (the input is the previous task's return,
 * passed by DEED_REF, so the tasks run one after another; the first one gets a value).
 * With --placement alternate (default) task i is pinned to rank 1 + (i mod 2) (ranks 1 and 2
 * of three), so each link is produced on another rank than the previous one; a pin to a
 * dead rank falls back to free placement. --placement free leaves placement to the runtime.
 * --placement victim pins every task to rank 2 (the rank that perf/recovery.sh kills).
 * Rank 0 keeps the ref of every link (--keep all, the default: the chain's history is the
 * result), waits for the last link, then reads the whole history back (deed_get of every
 * link by 4 threads, each link's words checked, then released). When a rank dies, the task
 * it was running is re-submitted by its owner (rank 0), and large links (over the inline
 * limit) with no copy left are re-created from lineage, when the retried task or the
 * history read-back needs them. Small links (8 B) live inline in rank 0's table and are
 * never lost. Under alternate placement a link made on rank 2 is pulled by the next task on
 * rank 1, and that copy stays while rank 0 holds the ref: only a link that rank 1 had not
 * pulled yet when rank 2 died is lost. Under victim placement every link so far exists only
 * on rank 2, so its death loses the whole prefix: the retried task needs its input, which is
 * re-created from its own input, and so on back to the start (the worst case for lineage).
 * --keep last releases every link as soon as the next task was submitted and reads only
 * the last one.
 *   bench "recovery", metric "chain_time": value = seconds from the first submit until the
 *   history is read back and verified; "chain_s" = until the last link was ready;
 *   "history_s" = the read-back; "start_ms" = milliseconds from this process's start (its
 *   exec, as /proc/self/stat tells) to the first submit, so that a driver can aim
 *   `deedrun --kill 2@MS` at a chosen point of the chain; "dead_at_s" = when rank 0 saw a
 *   rank declared dead (deed_stats().ranks_dead, polled every millisecond by a watcher
 *   thread; -1 if none) from the first submit; "retried", "reconstructed", "ranks_dead",
 *   "tasks_failed" from rank 0's deed_stats (rank 0 owns every task and link).
 *
 * --mode detect: for each victim v = nranks-1 down to 1 (one job measures nranks-1 deaths):
 * rank 0 submits an "arm" task pinned to v that picks a kill time t_kill = now + 100 ms
 * (CLOCK_REALTIME, shared by the processes of one host), starts a thread that sleeps until
 * t_kill and then raise(SIGKILL)s its own process, and returns t_kill; plus a "hold" task
 * pinned to v that sleeps 10 s when it runs on v (the task a driver would be waiting for;
 * when it is re-submitted elsewhere after v's death it returns at once). Rank 0 gets t_kill,
 * then polls deed_stats() every 20 us until ranks_dead grows, and reads CLOCK_REALTIME:
 *   bench "recovery", metric "detection_latency_sample": value = that time - t_kill (ms);
 *   "retry_ms" = until the hold task's re-submitted run delivered its result.
 *   metric "detection_latency": the median of the samples (also "min", "max", "n").
 * The killer thread's own lateness (clock_nanosleep overshoot, usually tens of us) is part
 * of the figure, and so is the kernel's teardown of the dead process (its pidfd fires and
 * its sockets close only once its memory is unmapped, which grows with the store it had
 * touched: "store" in the lines); neither is subtracted.
 * Detection paths: ranks on one host watch each other through pidfds (they fire the instant
 * the process exits). --own-host puts every rank in its own UTS namespace with its own host
 * name before deed_init (unshare(2); as root directly, else in a new user namespace that
 * maps the caller's ids), so the runtime treats the ranks as separate hosts and opens no
 * pidfds: then only the transport's error (tcp: the peer's sockets close) or the heartbeat
 * timeout can reveal a death ("detector" in the lines says which setup was used).
 *
 * Configuration: the DEED_* environment applies, except that DEED_STORE_SIZE defaults to 1G
 * here (the history of large links needs room on the survivor).
 *
 * usage: bench_recovery [--mode chain|detect] [--tasks N] [--d-ms D] [--size BYTES]
 *                       [--placement alternate|free|victim] [--keep all|last] [--own-host]
 *                       [--delay-ms MS] [--verbose]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <deed.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_US (120 * 1000000LL) /* no single wait or get should take anywhere near this */

enum { PLACE_ALTERNATE, PLACE_FREE, PLACE_VICTIM };
static const char *const place_names[] = {"alternate", "free", "victim"};

struct opts {
    int detect;         /* --mode detect */
    uint32_t tasks;     /* chain length */
    double d_ms;        /* task duration */
    uint64_t size;      /* link size in bytes, >= 8 */
    int placement;      /* PLACE_* */
    int keep_all;       /* keep every link and read the history back */
    int own_host;       /* own UTS namespace and host name per rank */
    uint32_t delay_ms;  /* detect: arm-to-kill delay */
    int verbose;
};

static int verbose;

static const char *tls_name(void)
{
    const char *t = getenv("UCX_TLS");
    return (t && *t) ? t : "default";
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double start_s;

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    if (!verbose)
        return;
    va_list ap;
    fprintf(stderr, "bench_recovery: %8.3f s: ", mono_s() - start_s);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Milliseconds since this process was exec'd (field 22 of /proc/self/stat, in clock ticks
 * since boot, against CLOCK_BOOTTIME); -1 if unknown. deedrun's --kill R@MS counts from the
 * rank's start, so this is the clock a driver needs. */
static double ms_since_exec(void)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    /* after ") ": field 3 (state) ... field 22 (starttime) */
    unsigned long long start = 0;
    int field = 2;
    for (char *q = p + 1; *q; q++) {
        if (*q == ' ') {
            field++;
            if (field == 22) {
                start = strtoull(q + 1, NULL, 10);
                break;
            }
        }
    }
    long hz = sysconf(_SC_CLK_TCK);
    struct timespec ts;
    if (start == 0 || hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
        return -1;
    double now_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    return now_ms - (double)start * 1e3 / (double)hz;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- tasks -------------------------------------------------------------------------------- */

struct link_spec {
    uint64_t d_ns;  /* how long the task sleeps */
    uint64_t size;  /* bytes of its return, >= 8, multiple of 8 */
    uint64_t index; /* position in the chain (1-based): the return's counter */
};

/* args[0]: the previous link (REF) or the first counter (VALUE); args[1]: link_spec. */
static int link_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    struct link_spec s;
    uint64_t prev;
    if (nargs != 2 || args[1].size != sizeof(s) || args[0].size < 8)
        return deed_task_fail(task, 1, "bench_recovery_link: bad arguments");
    memcpy(&s, args[1].data, sizeof(s));
    memcpy(&prev, args[0].data, 8);
    if (prev + 1 != s.index)
        return deed_task_fail(task, 2, "bench_recovery_link: link %" PRIu64 " got counter %" PRIu64,
                              s.index, prev);
    sleep_ns((int64_t)s.d_ns);
    void *buf;
    deed_status_t rc = deed_task_return_alloc(task, 0, s.size, &buf);
    if (rc != DEED_OK)
        return deed_task_fail(task, 3, "deed_task_return_alloc(%" PRIu64 "): %s", s.size,
                              deed_strerror(rc));
    uint64_t *w = buf, nw = s.size / 8;
    for (uint64_t i = 0; i < nw; i += 512) /* one word per 4 KiB page: the pages are real */
        w[i] = s.index ^ i;
    w[0] = s.index;
    w[nw - 1] = s.index;
    return 0;
}
DEED_REGISTER_AS(link_task, "bench_recovery_link")

static void *killer(void *arg)
{
    int64_t t_kill = (int64_t)(intptr_t)arg;
    struct timespec ts = {t_kill / 1000000000LL, t_kill % 1000000000LL};
    while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
    raise(SIGKILL);
    return NULL;
}

/* args[0]: delay in ms (uint32). Returns t_kill (int64 ns, CLOCK_REALTIME). */
static int arm_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    uint32_t delay_ms;
    if (nargs != 1 || args[0].size != sizeof(delay_ms))
        return deed_task_fail(task, 1, "bench_recovery_arm: bad arguments");
    memcpy(&delay_ms, args[0].data, sizeof(delay_ms));
    int64_t t_kill = real_ns() + (int64_t)delay_ms * 1000000LL;
    pthread_t th;
    if (pthread_create(&th, NULL, killer, (void *)(intptr_t)t_kill) != 0)
        return deed_task_fail(task, 2, "bench_recovery_arm: pthread_create failed");
    pthread_detach(th);
    return deed_task_return(task, 0, &t_kill, sizeof(t_kill)) == DEED_OK ? 0 : 3;
}
DEED_REGISTER_AS(arm_task, "bench_recovery_arm")

/* args[0]: the victim rank (int32): sleeps 10 s there, returns at once anywhere else. */
static int hold_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    int32_t victim;
    if (nargs != 1 || args[0].size != sizeof(victim))
        return deed_task_fail(task, 1, "bench_recovery_hold: bad arguments");
    memcpy(&victim, args[0].data, sizeof(victim));
    int32_t me = deed_rank(deed_task_ctx(task));
    if (me == victim)
        sleep_ns(10 * 1000000000LL);
    return deed_task_return(task, 0, &me, sizeof(me)) == DEED_OK ? 0 : 2;
}
DEED_REGISTER_AS(hold_task, "bench_recovery_hold")

/* ---- rank 0 ------------------------------------------------------------------------------- */

#define CHECK(call)                                                                           \
    do {                                                                                      \
        deed_status_t rc_ = (call);                                                           \
        if (rc_ != DEED_OK) {                                                                 \
            fprintf(stderr, "bench_recovery: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,     \
                    deed_strerror(rc_));                                                      \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)

static int get_stats(deed_ctx_t *ctx, deed_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    st->size = sizeof(*st);
    CHECK(deed_stats(ctx, st));
    return 0;
}

struct watch {
    deed_ctx_t *ctx;
    double t0;
    atomic_int stop;
    double dead_at; /* seconds after t0, -1 = none */
};

static void *watcher(void *arg)
{
    struct watch *w = arg;
    while (!atomic_load(&w->stop)) {
        deed_stats_t st;
        if (get_stats(w->ctx, &st) == 0 && st.ranks_dead > 0) {
            w->dead_at = mono_s() - w->t0;
            break;
        }
        sleep_ns(1000000);
    }
    return NULL;
}

struct reader {
    deed_ctx_t *ctx;
    const deed_ref_t *refs;
    uint32_t n, stride, first;
    int failed;
};

/* Read links first, first + stride, ... back: deed_get, check the counters, release. */
static void *read_history(void *arg)
{
    struct reader *r = arg;
    for (uint32_t i = r->first; i < r->n; i += r->stride) {
        deed_view_t v;
        deed_status_t rc = deed_get(r->ctx, r->refs[i], &v, WAIT_US);
        if (rc != DEED_OK) {
            fprintf(stderr, "bench_recovery: deed_get(link %u): %s%s%s\n", i + 1,
                    deed_strerror(rc), v.error_msg ? ": " : "", v.error_msg ? v.error_msg : "");
            if (v.error_msg || v.data)
                deed_view_release(r->ctx, &v);
            r->failed = 1;
            continue;
        }
        uint64_t a = 0, b = 0;
        if (v.size >= 8) {
            memcpy(&a, v.data, 8);
            memcpy(&b, (const char *)v.data + v.size - 8, 8);
        }
        if (a != i + 1 || b != i + 1) {
            fprintf(stderr, "bench_recovery: link %u holds %" PRIu64 "/%" PRIu64 " (size %zu)\n",
                    i + 1, a, b, v.size);
            r->failed = 1;
        }
        deed_view_release(r->ctx, &v);
        deed_ref_release(r->ctx, r->refs[i]);
    }
    return NULL;
}

static int bench_chain(deed_ctx_t *ctx, const struct opts *o, int nranks)
{
    deed_task_id_t id = deed_task_id("bench_recovery_link");
    deed_ref_t *refs = calloc(o->tasks, sizeof(*refs));
    if (refs == NULL)
        return -1;
    deed_stats_t st;
    if (get_stats(ctx, &st) != 0)
        return -1;
    uint32_t workers = st.workers;
    double start_ms = ms_since_exec();
    struct watch w = {ctx, mono_s(), 0, -1};
    pthread_t wth;
    if (pthread_create(&wth, NULL, watcher, &w) != 0)
        return -1;
    progress("chain of %u tasks, d = %.1f ms, %" PRIu64 " bytes", o->tasks, o->d_ms, o->size);
    double t0 = w.t0;
    uint64_t first = 0;
    for (uint32_t i = 0; i < o->tasks; i++) {
        struct link_spec s = {(uint64_t)(o->d_ms * 1e6), o->size, i + 1};
        deed_arg_in_t args[2] = {i == 0 ? DEED_VAL(&first, sizeof(first)) : DEED_REF(refs[i - 1]),
                                 DEED_VAL(&s, sizeof(s))};
        deed_submit_opts_t so = DEED_SUBMIT_OPTS_INIT;
        if (o->placement == PLACE_ALTERNATE)
            so.rank = nranks >= 3 ? 1 + (int32_t)(i % 2) : 1;
        else if (o->placement == PLACE_VICTIM)
            so.rank = nranks >= 3 ? 2 : 1;
        CHECK(deed_submit_opts(ctx, id, args, 2, &refs[i], 1, &so));
        if (!o->keep_all && i > 0)
            CHECK(deed_ref_release(ctx, refs[i - 1]));
    }
    CHECK(deed_wait(ctx, &refs[o->tasks - 1], 1, 1, WAIT_US, NULL));
    double t_chain = mono_s();
    progress("last link ready after %.3f s; reading the history", t_chain - t0);
    int failed = 0;
    if (o->keep_all) {
        enum { NREADERS = 4 };
        struct reader rd[NREADERS];
        pthread_t th[NREADERS];
        for (int k = 0; k < NREADERS; k++) {
            rd[k] = (struct reader){ctx, refs, o->tasks, NREADERS, (uint32_t)k, 0};
            if (pthread_create(&th[k], NULL, read_history, &rd[k]) != 0)
                return -1;
        }
        for (int k = 0; k < NREADERS; k++) {
            pthread_join(th[k], NULL);
            failed |= rd[k].failed;
        }
    } else {
        struct reader rd = {ctx, refs, o->tasks, 1, o->tasks - 1, 0};
        read_history(&rd);
        failed = rd.failed;
    }
    double t1 = mono_s();
    atomic_store(&w.stop, 1);
    pthread_join(wth, NULL);
    free(refs);
    if (get_stats(ctx, &st) != 0)
        return -1;
    printf("{\"bench\":\"recovery\",\"metric\":\"chain_time\",\"value\":%.6f,\"unit\":\"s\","
           "\"d_ms\":%g,\"object\":\"%s\",\"size\":%" PRIu64 ",\"tasks\":%u,"
           "\"placement\":\"%s\",\"keep\":\"%s\",\"chain_s\":%.6f,\"history_s\":%.6f,"
           "\"start_ms\":%.1f,\"dead_at_s\":%.4f,\"ranks_dead\":%u,\"retried\":%" PRIu64
           ",\"reconstructed\":%" PRIu64 ",\"tasks_failed\":%" PRIu64 ",\"workers\":%u,"
           "\"ranks\":%d,\"ok\":%s,\"tls\":\"%s\"}\n",
           t1 - t0, o->d_ms, o->size > 8 ? "large" : "small", o->size, o->tasks,
           place_names[o->placement], o->keep_all ? "all" : "last", t_chain - t0,
           t1 - t_chain, start_ms, w.dead_at, st.ranks_dead, st.tasks_retried,
           st.reconstructions, st.tasks_failed, workers, nranks, failed ? "false" : "true",
           tls_name());
    if (failed) {
        fprintf(stderr, "bench_recovery: the chain's history is wrong or incomplete\n");
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_detect(deed_ctx_t *ctx, const struct opts *o, int nranks, uint64_t store)
{
    const char *detector = o->own_host ? "transport" : "pidfd";
    double lat[64];
    int n = 0;
    deed_stats_t st;
    if (get_stats(ctx, &st) != 0)
        return -1;
    uint32_t dead0 = st.ranks_dead;
    for (int32_t v = nranks - 1; v >= 1 && n < 64; v--) {
        deed_submit_opts_t so = DEED_SUBMIT_OPTS_INIT;
        so.rank = v;
        deed_ref_t hold, arm;
        CHECK(deed_submit_opts(ctx, deed_task_id("bench_recovery_hold"),
                               (deed_arg_in_t[]){DEED_VAL(&v, sizeof(v))}, 1, &hold, 1, &so));
        /* let the hold task start on v before arming the kill */
        sleep_ns(20 * 1000000LL);
        uint32_t delay = o->delay_ms;
        CHECK(deed_submit_opts(ctx, deed_task_id("bench_recovery_arm"),
                               (deed_arg_in_t[]){DEED_VAL(&delay, sizeof(delay))}, 1, &arm, 1,
                               &so));
        int64_t t_kill = 0;
        size_t sz = 0;
        CHECK(deed_get_copy(ctx, arm, &t_kill, sizeof(t_kill), &sz, WAIT_US));
        CHECK(deed_ref_release(ctx, arm));
        progress("rank %d dies at %" PRId64 " ns (realtime)", v, t_kill);
        /* poll (every 20 us) until rank 0's membership counts one more dead rank */
        int64_t t_det = 0;
        for (;;) {
            if (get_stats(ctx, &st) != 0)
                return -1;
            if (st.ranks_dead > dead0) {
                t_det = real_ns();
                break;
            }
            sleep_ns(20000); /* leave the cores to the ranks (a few per core on small hosts) */
            if (real_ns() - t_kill > 120 * 1000000000LL) {
                fprintf(stderr, "bench_recovery: rank %d not declared dead 120 s after its "
                                "kill\n", v);
                return -1;
            }
        }
        dead0 = st.ranks_dead;
        int32_t where = -1;
        CHECK(deed_get_copy(ctx, hold, &where, sizeof(where), &sz, WAIT_US));
        int64_t t_retry = real_ns();
        CHECK(deed_ref_release(ctx, hold));
        double ms = (double)(t_det - t_kill) * 1e-6;
        lat[n++] = ms;
        printf("{\"bench\":\"recovery\",\"metric\":\"detection_latency_sample\",\"value\":%.3f,"
               "\"unit\":\"ms\",\"victim\":%d,\"retry_ms\":%.3f,\"retried_on\":%d,"
               "\"detector\":\"%s\",\"store\":%" PRIu64 ",\"tls\":\"%s\"}\n",
               ms, v, (double)(t_retry - t_kill) * 1e-6, where, detector, store, tls_name());
    }
    if (n == 0) {
        fprintf(stderr, "bench_recovery: detect needs at least two ranks\n");
        return -1;
    }
    qsort(lat, (size_t)n, sizeof(lat[0]), cmp_double);
    double med = n % 2 ? lat[n / 2] : (lat[n / 2 - 1] + lat[n / 2]) / 2;
    printf("{\"bench\":\"recovery\",\"metric\":\"detection_latency\",\"value\":%.3f,"
           "\"unit\":\"ms\",\"stat\":\"median\",\"min\":%.3f,\"max\":%.3f,\"n\":%d,"
           "\"detector\":\"%s\",\"store\":%" PRIu64 ",\"tls\":\"%s\"}\n",
           med, lat[0], lat[n - 1], n, detector, store, tls_name());
    return 0;
}

/* ---- own host name ------------------------------------------------------------------------ */

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Give this process its own host name, so the runtime treats every rank as another host. */
static int own_host(void)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUTS) != 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWUTS) != 0) {
            fprintf(stderr, "bench_recovery: --own-host: unshare: %s\n", strerror(errno));
            return -1;
        }
        char map[64];
        snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
        if (write_file("/proc/self/uid_map", map) != 0 ||
            write_file("/proc/self/setgroups", "deny") != 0)
            fprintf(stderr, "bench_recovery: --own-host: uid map: %s\n", strerror(errno));
        snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
        if (write_file("/proc/self/gid_map", map) != 0)
            fprintf(stderr, "bench_recovery: --own-host: gid map: %s\n", strerror(errno));
    }
    const char *r = getenv("DEED_RANK");
    char name[64];
    snprintf(name, sizeof(name), "deed-bench-rank-%s", r ? r : "x");
    if (sethostname(name, strlen(name)) != 0) {
        fprintf(stderr, "bench_recovery: --own-host: sethostname: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- main --------------------------------------------------------------------------------- */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: deedrun -n 3 [--keep-going --kill 2@MS] %s [--mode chain] [--tasks N]\n"
            "          [--d-ms D] [--size BYTES] [--placement alternate|free|victim]\n"
            "          [--keep all|last] [--quick] [--verbose]\n"
            "       deedrun -n 4 --keep-going %s --mode detect [--own-host] [--delay-ms MS]\n"
            "  --mode M          chain (default): the chain of tasks; detect: kill ranks\n"
            "                    nranks-1..1 in turn and time their detection on rank 0\n"
            "  --tasks N         chain length (default 40)\n"
            "  --d-ms D          task duration in ms (default 100; may be fractional)\n"
            "  --size BYTES      size of each link, >= 8, suffix K/M (default 8)\n"
            "  --placement P     alternate (default): link i pinned to rank 1 + i mod 2;\n"
            "                    free: no pinning; victim: every link pinned to rank 2\n"
            "  --keep K          all (default): keep every link, read the history back;\n"
            "                    last: release links as the chain goes, read the last one\n"
            "  --own-host        own UTS namespace and host name per rank (no pidfds)\n"
            "  --delay-ms MS     detect: time from arming to the kill (default 100)\n"
            "  --quick           a short chain (12 tasks of 10 ms)\n"
            "  --verbose         progress on stderr\n"
            "Rank 0 prints JSON lines; see the top of perf/bench_recovery.c.\n",
            prog, prog);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    if (*end == 'K' || *end == 'k')
        v <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        v <<= 20, end++;
    else if (*end == 'G' || *end == 'g')
        v <<= 30, end++;
    if (*end != '\0' || v < 8)
        return -1;
    *out = (v + 7) & ~7ull;
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){0, 40, 100.0, 8, PLACE_ALTERNATE, 1, 0, 100, 0};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--quick") == 0)
            o->tasks = 12, o->d_ms = 10.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0)
            continue;
        if (strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
            continue;
        }
        if (strcmp(a, "--own-host") == 0) {
            o->own_host = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(argv[0]);
            exit(0);
        }
        if (i + 1 >= argc)
            return -1;
        const char *v = argv[++i];
        char *end;
        if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "chain") == 0)
                o->detect = 0;
            else if (strcmp(v, "detect") == 0)
                o->detect = 1;
            else
                return -1;
        } else if (strcmp(a, "--placement") == 0) {
            if (strcmp(v, "alternate") == 0)
                o->placement = PLACE_ALTERNATE;
            else if (strcmp(v, "free") == 0)
                o->placement = PLACE_FREE;
            else if (strcmp(v, "victim") == 0)
                o->placement = PLACE_VICTIM;
            else
                return -1;
        } else if (strcmp(a, "--keep") == 0) {
            if (strcmp(v, "all") == 0)
                o->keep_all = 1;
            else if (strcmp(v, "last") == 0)
                o->keep_all = 0;
            else
                return -1;
        } else if (strcmp(a, "--size") == 0) {
            if (parse_size(v, &o->size) != 0)
                return -1;
        } else if (strcmp(a, "--d-ms") == 0) {
            o->d_ms = strtod(v, &end);
            if (*end != '\0' || !(o->d_ms >= 0 && o->d_ms <= 60000))
                return -1;
        } else if (strcmp(a, "--tasks") == 0 || strcmp(a, "--delay-ms") == 0) {
            errno = 0;
            unsigned long x = strtoul(v, &end, 10);
            if (errno || *end != '\0' || x == 0 || x > 1000000)
                return -1;
            if (a[2] == 't')
                o->tasks = (uint32_t)x;
            else
                o->delay_ms = (uint32_t)x;
        } else {
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) != 0) {
        usage(argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    verbose = o.verbose;
    start_s = mono_s();
    if (o.own_host && own_host() != 0)
        return 1;

    deed_config_t cfg;
    deed_ctx_t *ctx;
    deed_status_t rc = deed_config_default(&cfg);
    if (rc == DEED_OK)
        rc = deed_config_from_env(&cfg);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_recovery: configuration: %s\n", deed_strerror(rc));
        return 1;
    }
    if (getenv("DEED_STORE_SIZE") == NULL)
        cfg.store_size = 1ull << 30;
    rc = deed_init(&cfg, &ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_recovery: deed_init: %s\n", deed_strerror(rc));
        return 1;
    }
    int rank = deed_rank(ctx), nranks = deed_nranks(ctx);
    int status = 0;
    if (rank == 0) {
        if (nranks < 2) {
            fprintf(stderr, "bench_recovery: needs at least two ranks (three for the chain): "
                            "deedrun -n 3 %s\n", argv[0]);
            status = 2;
        } else if ((o.detect ? bench_detect(ctx, &o, nranks, cfg.store_size)
                             : bench_chain(ctx, &o, nranks)) != 0) {
            fprintf(stderr, "bench_recovery: rank 0 failed\n");
            fflush(stdout);
            _exit(1); /* the runtime may be stuck; deedrun ends the other ranks */
        }
    }
    /* the other ranks serve until rank 0 finalizes: finalize is a barrier over the transport
     * that dead ranks do not hold up */
    rc = deed_finalize(ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_recovery: rank %d: deed_finalize: %s\n", rank, deed_strerror(rc));
        if (status == 0)
            status = 1;
    }
    return status;
}
