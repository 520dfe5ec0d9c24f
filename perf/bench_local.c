/*
 * bench_local.c — the local empty-task benchmark, with a baseline measured in the same
 * process right before it.
 *
 * Output: one JSON object per line on stdout, each with at least "bench", "metric", "value"
 * and "unit"; nothing else goes to stdout (diagnostics go to stderr).
 *
 *   bench "baseline" — what the machine gives without deed:
 *     spin_pingpong      round trip of two threads handing a token back and forth through an
 *                        atomic variable, both spinning (one cross-thread hand-off each way)
 *     futex_pingpong     the same with the waiting side sleeping in futex_wait and woken by
 *                        futex_wake (the cost of a sleeping hand-off)
 *     indirect_call      one call through a function pointer the compiler cannot see through
 *   bench "local" — deed on one rank, once with the default worker count and once with
 *   num_workers = 1:
 *     tasks_per_s_pipelined  empty tasks (one return each) submitted in windows of W, then
 *                        deed_wait for the window and deed_ref_release_n; value = best of the
 *                        runs, "median" = their median
 *     sync_round_trip    submit one empty task, deed_get it, release the view and the ref;
 *                        each iteration timed with clock_gettime; value = mean, plus
 *                        p50/p99/p999/min/max and the fraction of round trips over 10 us
 *   bench "ratio" — deed figures divided by the baseline (how many raw hand-offs or calls
 *   one deed operation costs), so runs on different or noisy machines can be compared.
 *
 * usage: bench_local [--quick] [--tasks N] [--window W] [--runs R] [--iters N] [--warmup N]
 *                    [--pingpong N] [--calls N]
 * The DEED_* environment applies to the first configuration; the second one overrides
 * num_workers with 1.
 */
#include <deed.h>

#include <errno.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct opts {
    uint64_t tasks;    /* pipelined tasks per run */
    uint32_t window;   /* tasks submitted before each wait */
    uint32_t runs;     /* pipelined runs (best and median reported) */
    uint64_t iters;    /* synchronous round trips measured */
    uint64_t warmup;   /* synchronous round trips before measuring */
    uint64_t pingpong; /* baseline ping-pong round trips */
    uint64_t calls;    /* baseline indirect calls */
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double p)
{
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int ncpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 1;
    return CPU_COUNT(&set);
}

/* ---- baseline: spin ping-pong ----------------------------------------------------------- */

static struct {
    _Alignas(64) atomic_uint token;
    _Alignas(64) uint64_t n;
    int yield; /* fewer than 2 CPUs: spinning alone would wait for a time slice */
} spin;

static void spin_until(atomic_uint *w, unsigned v)
{
    while (atomic_load_explicit(w, memory_order_acquire) != v) {
        if (spin.yield)
            sched_yield();
        else
            cpu_relax();
    }
}

static void *spin_pong(void *arg)
{
    for (uint64_t i = 0; i < spin.n; i++) {
        spin_until(&spin.token, 1);
        atomic_store_explicit(&spin.token, 0, memory_order_release);
    }
    return arg;
}

/* Mean round trip in ns. */
static double bench_spin_pingpong(uint64_t n)
{
    pthread_t th;
    spin.n = n;
    spin.yield = ncpus() < 2;
    atomic_store(&spin.token, 0);
    if (pthread_create(&th, NULL, spin_pong, NULL) != 0)
        return -1;
    /* a few untimed round trips so both threads are running */
    uint64_t warm = n / 10 ? n / 10 : 1;
    double t0 = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (i == warm)
            t0 = now_ns();
        atomic_store_explicit(&spin.token, 1, memory_order_release);
        spin_until(&spin.token, 0);
    }
    double dt = now_ns() - t0;
    pthread_join(th, NULL);
    return dt / (double)(n - warm);
}

/* ---- baseline: futex ping-pong ---------------------------------------------------------- */

static struct {
    _Alignas(64) atomic_uint word;
    uint64_t n;
} fx;

static void futex_wait(atomic_uint *w, unsigned v)
{
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void futex_wake(atomic_uint *w)
{
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *futex_pong(void *arg)
{
    for (uint64_t i = 0; i < fx.n; i++) {
        while (atomic_load_explicit(&fx.word, memory_order_acquire) == 0)
            futex_wait(&fx.word, 0);
        atomic_store_explicit(&fx.word, 0, memory_order_release);
        futex_wake(&fx.word);
    }
    return arg;
}

static double bench_futex_pingpong(uint64_t n)
{
    pthread_t th;
    fx.n = n;
    atomic_store(&fx.word, 0);
    if (pthread_create(&th, NULL, futex_pong, NULL) != 0)
        return -1;
    uint64_t warm = n / 10 ? n / 10 : 1;
    double t0 = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (i == warm)
            t0 = now_ns();
        atomic_store_explicit(&fx.word, 1, memory_order_release);
        futex_wake(&fx.word);
        while (atomic_load_explicit(&fx.word, memory_order_acquire) == 1)
            futex_wait(&fx.word, 1);
    }
    double dt = now_ns() - t0;
    pthread_join(th, NULL);
    return dt / (double)(n - warm);
}

/* ---- baseline: indirect call ------------------------------------------------------------ */

static uint64_t sink;

__attribute__((noinline)) static void call_target(uint64_t x)
{
    sink += x;
}

static void (*volatile call_ptr)(uint64_t) = call_target;

static double bench_indirect_call(uint64_t n)
{
    double t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        call_ptr(i);
    return (now_ns() - t0) / (double)n;
}

/* ---- deed ------------------------------------------------------------------------------- */

static int empty_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    return 0; /* the return stays an empty object */
}
DEED_REGISTER_AS(empty_task, "bench_empty")

struct result {
    uint32_t workers;
    double tps_best, tps_median; /* tasks per second */
    double sync_mean, sync_p50, sync_p99, sync_p999, sync_min, sync_max; /* microseconds */
    double sync_slow; /* fraction of round trips over 10 us */
};

#define CHECK(call)                                                                           \
    do {                                                                                      \
        deed_status_t rc_ = (call);                                                           \
        if (rc_ != DEED_OK) {                                                                 \
            fprintf(stderr, "bench_local: %s: %s\n", #call, deed_strerror(rc_));              \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)

static int pipelined_run(deed_ctx_t *ctx, deed_task_id_t id, const struct opts *o,
                         deed_ref_t *refs, double *tps)
{
    double t0 = now_ns();
    for (uint64_t done = 0; done < o->tasks;) {
        uint32_t w = o->tasks - done < o->window ? (uint32_t)(o->tasks - done) : o->window;
        for (uint32_t i = 0; i < w; i++)
            CHECK(deed_submit(ctx, id, NULL, 0, &refs[i], 1));
        CHECK(deed_wait(ctx, refs, w, w, DEED_WAIT_FOREVER, NULL));
        CHECK(deed_ref_release_n(ctx, refs, w));
        done += w;
    }
    *tps = (double)o->tasks / ((now_ns() - t0) * 1e-9);
    return 0;
}

static int sync_round_trip(deed_ctx_t *ctx, deed_task_id_t id, int64_t *ok)
{
    deed_ref_t ref;
    deed_view_t v;
    CHECK(deed_submit(ctx, id, NULL, 0, &ref, 1));
    CHECK(deed_get(ctx, ref, &v, DEED_WAIT_FOREVER));
    CHECK(deed_view_release(ctx, &v));
    CHECK(deed_ref_release(ctx, ref));
    (*ok)++;
    return 0;
}

static int bench_deed(const struct opts *o, uint32_t num_workers, struct result *res)
{
    deed_config_t cfg;
    deed_ctx_t *ctx;
    deed_task_id_t id = deed_task_id("bench_empty");
    deed_stats_t st = {.size = sizeof(st)};
    int64_t ok = 0;

    CHECK(deed_config_default(&cfg));
    CHECK(deed_config_from_env(&cfg));
    if (num_workers) {
        cfg.num_workers = num_workers;
        if (cfg.max_threads < num_workers)
            cfg.max_threads = num_workers;
    }
    CHECK(deed_init(&cfg, &ctx));
    CHECK(deed_stats(ctx, &st));
    res->workers = st.workers;

    deed_ref_t *refs = malloc(o->window * sizeof(*refs));
    double *tps = malloc(o->runs * sizeof(*tps));
    double *lat = malloc(o->iters * sizeof(*lat));
    int rc = -1;
    if (refs == NULL || tps == NULL || lat == NULL)
        goto out;

    for (uint32_t r = 0; r < o->runs; r++)
        if (pipelined_run(ctx, id, o, refs, &tps[r]) != 0)
            goto out;
    qsort(tps, o->runs, sizeof(*tps), cmp_double);
    res->tps_best = tps[o->runs - 1];
    res->tps_median = tps[o->runs / 2];

    for (uint64_t i = 0; i < o->warmup; i++)
        if (sync_round_trip(ctx, id, &ok) != 0)
            goto out;
    double sum = 0;
    for (uint64_t i = 0; i < o->iters; i++) {
        double t0 = now_ns();
        if (sync_round_trip(ctx, id, &ok) != 0)
            goto out;
        lat[i] = (now_ns() - t0) * 1e-3;
        sum += lat[i];
    }
    qsort(lat, o->iters, sizeof(*lat), cmp_double);
    res->sync_mean = sum / (double)o->iters;
    res->sync_p50 = percentile(lat, o->iters, 50);
    res->sync_p99 = percentile(lat, o->iters, 99);
    res->sync_p999 = percentile(lat, o->iters, 99.9);
    res->sync_min = lat[0];
    res->sync_max = lat[o->iters - 1];
    uint64_t slow = 0;
    for (uint64_t i = 0; i < o->iters; i++)
        slow += lat[i] > 10.0;
    res->sync_slow = (double)slow / (double)o->iters;

    CHECK(deed_stats(ctx, &st));
    if (st.misuse != 0 || st.tasks_failed != 0)
        fprintf(stderr, "bench_local: stats report %" PRIu64 " misuse, %" PRIu64 " failed\n",
                st.misuse, st.tasks_failed);
    else
        rc = 0;
out:
    free(refs);
    free(tps);
    free(lat);
    if (deed_finalize(ctx) != DEED_OK)
        rc = -1;
    return rc;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--quick] [--tasks N] [--window W] [--runs R] [--iters N] [--warmup N]\n"
            "          [--pingpong N] [--calls N]\n"
            "  --quick       small counts (a smoke run of a few seconds)\n"
            "  --tasks N     empty tasks per pipelined run (default 1000000)\n"
            "  --window W    tasks submitted before each deed_wait (default 10000)\n"
            "  --runs R      pipelined runs; best and median are reported (default 3)\n"
            "  --iters N     timed synchronous round trips (default 100000)\n"
            "  --warmup N    untimed synchronous round trips first (default 10000)\n"
            "  --pingpong N  baseline ping-pong round trips (default 200000)\n"
            "  --calls N     baseline indirect calls (default 100000000)\n",
            prog);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){1000000, 10000, 3, 100000, 10000, 200000, 100000000};
    for (int i = 1; i < argc; i++) /* --quick sets the base; the other options override it */
        if (strcmp(argv[i], "--quick") == 0)
            *o = (struct opts){100000, 10000, 3, 5000, 500, 20000, 10000000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0)
            continue;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(argv[0]);
            exit(0);
        }
        if (i + 1 >= argc)
            return -1;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(argv[++i], &end, 10);
        if (errno || *end != '\0' || v == 0)
            return -1;
        if (strcmp(a, "--tasks") == 0)
            o->tasks = v;
        else if (strcmp(a, "--window") == 0 && v <= 1000000)
            o->window = (uint32_t)v;
        else if (strcmp(a, "--runs") == 0 && v <= 1000)
            o->runs = (uint32_t)v;
        else if (strcmp(a, "--iters") == 0)
            o->iters = v;
        else if (strcmp(a, "--warmup") == 0)
            o->warmup = v;
        else if (strcmp(a, "--pingpong") == 0 && v >= 2)
            o->pingpong = v;
        else if (strcmp(a, "--calls") == 0)
            o->calls = v;
        else
            return -1;
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

    /* Baseline first, in this process, right before the deed runs. */
    int cpus = ncpus();
    double spin_ns = bench_spin_pingpong(o.pingpong);
    double futex_ns = bench_futex_pingpong(o.pingpong / 4 ? o.pingpong / 4 : 2);
    double call_ns = bench_indirect_call(o.calls);
    if (spin_ns <= 0 || futex_ns <= 0) {
        fprintf(stderr, "bench_local: cannot start the baseline threads\n");
        return 1;
    }
    printf("{\"bench\":\"baseline\",\"metric\":\"spin_pingpong_round_trip\",\"value\":%.4f,"
           "\"unit\":\"us\",\"n\":%" PRIu64 ",\"cpus\":%d}\n",
           spin_ns * 1e-3, o.pingpong, cpus);
    printf("{\"bench\":\"baseline\",\"metric\":\"futex_pingpong_round_trip\",\"value\":%.4f,"
           "\"unit\":\"us\",\"n\":%" PRIu64 ",\"cpus\":%d}\n",
           futex_ns * 1e-3, o.pingpong / 4, cpus);
    printf("{\"bench\":\"baseline\",\"metric\":\"indirect_call\",\"value\":%.4f,"
           "\"unit\":\"ns\",\"n\":%" PRIu64 "}\n",
           call_ns, o.calls);

    static const uint32_t configs[2] = {0, 1}; /* 0 = default / DEED_WORKERS */
    for (int c = 0; c < 2; c++) {
        struct result r;
        memset(&r, 0, sizeof(r));
        if (bench_deed(&o, configs[c], &r) != 0) {
            fprintf(stderr, "bench_local: the deed run with num_workers=%u failed\n",
                    configs[c]);
            return 1;
        }
        printf("{\"bench\":\"local\",\"metric\":\"tasks_per_s_pipelined\",\"value\":%.0f,"
               "\"unit\":\"tasks/s\",\"median\":%.0f,\"runs\":%u,\"workers\":%u,"
               "\"n\":%" PRIu64 ",\"window\":%u}\n",
               r.tps_best, r.tps_median, o.runs, r.workers, o.tasks, o.window);
        printf("{\"bench\":\"local\",\"metric\":\"sync_round_trip\",\"value\":%.3f,"
               "\"unit\":\"us\",\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"min\":%.3f,"
               "\"max\":%.3f,\"over_10us\":%.4f,\"workers\":%u,\"n\":%" PRIu64 "}\n",
               r.sync_mean, r.sync_p50, r.sync_p99, r.sync_p999, r.sync_min, r.sync_max,
               r.sync_slow, r.workers, o.iters);
        double task_ns = 1e9 / r.tps_best;
        printf("{\"bench\":\"ratio\",\"metric\":\"sync_round_trip_over_spin_pingpong\","
               "\"value\":%.2f,\"unit\":\"x\",\"workers\":%u}\n",
               r.sync_mean * 1e3 / spin_ns, r.workers);
        printf("{\"bench\":\"ratio\",\"metric\":\"sync_round_trip_over_futex_pingpong\","
               "\"value\":%.2f,\"unit\":\"x\",\"workers\":%u}\n",
               r.sync_mean * 1e3 / futex_ns, r.workers);
        printf("{\"bench\":\"ratio\",\"metric\":\"pipelined_task_time_over_spin_pingpong\","
               "\"value\":%.2f,\"unit\":\"x\",\"workers\":%u}\n",
               task_ns / spin_ns, r.workers);
        printf("{\"bench\":\"ratio\",\"metric\":\"pipelined_task_time_over_indirect_call\","
               "\"value\":%.1f,\"unit\":\"x\",\"workers\":%u}\n",
               task_ns / call_ns, r.workers);
    }
    return 0;
}
