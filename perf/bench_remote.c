/*
 * bench_remote.c — the two-rank benchmark: remote empty tasks and object pulls.
 *
 * Run under the launcher with two ranks: `deedrun -n 2 bench_remote [options]`. Rank 0
 * measures; rank 1 only serves (runs the tasks pinned to it and holds their large returns);
 * both call deed_finalize at the end.
 *
 * Output: one JSON object per line on rank 0's stdout (deedrun prefixes it with "[0] "), each
 * with at least "bench", "metric", "value" and "unit", plus "tls" (the UCX_TLS of the run, or
 * "default"); nothing else goes to stdout (diagnostics go to stderr).
 *
 *   bench "remote":
 *     tasks_per_s_pipelined  empty tasks (one return each) pinned to rank 1, submitted in
 *                        windows of W, then deed_wait for the window and deed_ref_release_n;
 *                        value = best of the runs, "median" = their median
 *     sync_round_trip    submit one empty task pinned to rank 1, deed_get it, release the
 *                        view and the ref; each iteration timed; value = mean (us), plus
 *                        p50/p99/p999/min/max
 *     pull_bandwidth     for each size: a task pinned to rank 1 fills an object of that size
 *                        (deed_task_return_alloc, deterministic pattern); rank 0 waits until
 *                        it exists (deed_wait, which does not pull), then times deed_get,
 *                        which pulls it into rank 0's store with a one-sided get; the whole
 *                        object is verified afterwards (untimed). value = best GB/s (1e9
 *                        bytes/s), "median" = median GB/s, "pulled" = how many of the timed
 *                        gets really pulled (from deed_stats; should equal "n")
 *     end_state          after everything was released (and a short settle): objects still
 *                        alive on rank 0 + rank 1 (should be 0), with each rank's store bytes
 *                        in use, misuse and dropped-message counters
 *
 * Configuration: the DEED_* environment applies, except that when DEED_STORE_SIZE is not
 * set the store is 1G (the 64 MiB objects need room on both ranks). Objects up to
 * inline_max travel inside the task reply and are not pulled: keep DEED_INLINE_MAX below
 * 64K (its default, the transport's eager limit, is 8 KiB with UCX); "pulled" shows it.
 *
 * usage: bench_remote [--quick] [--tasks N] [--window W] [--runs R] [--iters N] [--warmup N]
 *                     [--pull-reps N] [--max-size BYTES] [--plain-get] [--verbose]
 */
#include <deed.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_US (60 * 1000000LL) /* no single wait or get should take anywhere near this */

struct opts {
    uint64_t tasks;     /* pipelined tasks per run */
    uint32_t window;    /* tasks submitted before each wait */
    uint32_t runs;      /* pipelined runs (best and median reported) */
    uint64_t iters;     /* synchronous round trips measured */
    uint64_t warmup;    /* synchronous round trips before measuring */
    uint32_t pull_reps; /* pulls per size up to 1 MiB (fewer for larger sizes) */
    uint64_t max_size;  /* largest pulled object */
    int verbose;        /* progress on stderr */
    int plain_get;      /* time one blocking deed_get (see get_kick) */
};

static int verbose;

/* Progress line on stderr with the time since the start (--verbose). */
static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *tls_name(void)
{
    const char *t = getenv("UCX_TLS");
    return (t && *t) ? t : "default";
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double start_ns;

static void progress(const char *fmt, ...)
{
    if (!verbose)
        return;
    va_list ap;
    fprintf(stderr, "bench_remote: %8.3f s: ", (now_ns() - start_ns) * 1e-9);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
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

/* ---- tasks (run on rank 1) -------------------------------------------------------------- */

static int empty_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    return 0; /* the return stays an empty object */
}
DEED_REGISTER_AS(empty_task, "bench_remote_empty")

struct produce_spec {
    uint64_t size; /* bytes, a multiple of 8 */
    uint64_t seed;
};

static inline uint64_t pattern(uint64_t seed, uint64_t i)
{
    return (seed * 0x9E3779B97F4A7C15ull) ^ (i * 0xBF58476D1CE4E5B9ull) ^ i;
}

static int produce_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    struct produce_spec s;
    if (nargs != 1 || args[0].size != sizeof(s))
        return deed_task_fail(task, 1, "bench_remote_produce: bad arguments");
    memcpy(&s, args[0].data, sizeof(s));
    void *buf;
    deed_status_t rc = deed_task_return_alloc(task, 0, s.size, &buf);
    if (rc != DEED_OK)
        return deed_task_fail(task, 2, "deed_task_return_alloc(%" PRIu64 "): %s", s.size,
                              deed_strerror(rc));
    uint64_t *w = buf;
    for (uint64_t i = 0; i < s.size / 8; i++)
        w[i] = pattern(s.seed, i);
    return 0;
}
DEED_REGISTER_AS(produce_task, "bench_remote_produce")

/* Rank 1's counters, returned to rank 0 at the end. */
static int stats_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    deed_stats_t st;
    memset(&st, 0, sizeof(st));
    st.size = sizeof(st);
    deed_status_t rc = deed_stats(deed_task_ctx(task), &st);
    if (rc != DEED_OK)
        return deed_task_fail(task, 1, "deed_stats: %s", deed_strerror(rc));
    return deed_task_return(task, 0, &st, sizeof(st)) == DEED_OK ? 0 : 2;
}
DEED_REGISTER_AS(stats_task, "bench_remote_stats")

/* Rank 0 runs this on rank 1 as its last call: rank 1 may then enter deed_finalize (whose
 * barrier gives up after DEED_BOOT_TIMEOUT, so rank 1 must not wait there while rank 0
 * measures). */
static atomic_int rank1_may_finish;

static int done_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    atomic_store(&rank1_may_finish, 1);
    return 0;
}
DEED_REGISTER_AS(done_task, "bench_remote_done")

/* ---- rank 0 ----------------------------------------------------------------------------- */

#define CHECK(call)                                                                           \
    do {                                                                                      \
        deed_status_t rc_ = (call);                                                           \
        if (rc_ != DEED_OK) {                                                                 \
            fprintf(stderr, "bench_remote: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,       \
                    deed_strerror(rc_));                                                      \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)

static deed_submit_opts_t on_rank1 = {sizeof(deed_submit_opts_t), -1, 1};

static int pipelined_run(deed_ctx_t *ctx, deed_task_id_t id, uint64_t tasks, uint32_t window,
                         deed_ref_t *refs, double *tps)
{
    double t0 = now_ns();
    for (uint64_t done = 0; done < tasks;) {
        uint32_t w = tasks - done < window ? (uint32_t)(tasks - done) : window;
        for (uint32_t i = 0; i < w; i++)
            CHECK(deed_submit_opts(ctx, id, NULL, 0, &refs[i], 1, &on_rank1));
        CHECK(deed_wait(ctx, refs, w, w, WAIT_US, NULL));
        CHECK(deed_ref_release_n(ctx, refs, w));
        done += w;
    }
    if (tps)
        *tps = (double)tasks / ((now_ns() - t0) * 1e-9);
    return 0;
}

static int sync_round_trip(deed_ctx_t *ctx, deed_task_id_t id)
{
    deed_ref_t ref;
    deed_view_t v;
    CHECK(deed_submit_opts(ctx, id, NULL, 0, &ref, 1, &on_rank1));
    CHECK(deed_get(ctx, ref, &v, WAIT_US));
    CHECK(deed_view_release(ctx, &v));
    CHECK(deed_ref_release(ctx, ref));
    return 0;
}

static int bench_tasks(deed_ctx_t *ctx, const struct opts *o, uint32_t workers)
{
    deed_task_id_t id = deed_task_id("bench_remote_empty");
    deed_ref_t *refs = malloc(o->window * sizeof(*refs));
    double *tps = malloc(o->runs * sizeof(*tps));
    double *lat = malloc(o->iters * sizeof(*lat));
    int rc = -1;
    if (refs == NULL || tps == NULL || lat == NULL)
        goto out;

    /* untimed warm-up: connections, rkeys, thread start-up */
    progress("pipelined warm-up");
    if (pipelined_run(ctx, id, o->window, o->window, refs, NULL) != 0)
        goto out;
    for (uint32_t r = 0; r < o->runs; r++) {
        progress("pipelined run %u", r);
        if (pipelined_run(ctx, id, o->tasks, o->window, refs, &tps[r]) != 0)
            goto out;
    }
    qsort(tps, o->runs, sizeof(*tps), cmp_double);
    printf("{\"bench\":\"remote\",\"metric\":\"tasks_per_s_pipelined\",\"value\":%.0f,"
           "\"unit\":\"tasks/s\",\"median\":%.0f,\"worst\":%.0f,\"runs\":%u,\"tls\":\"%s\","
           "\"n\":%" PRIu64 ",\"window\":%u,\"workers\":%u}\n",
           tps[o->runs - 1], tps[o->runs / 2], tps[0], o->runs, tls_name(), o->tasks,
           o->window, workers);

    progress("synchronous round trips");
    for (uint64_t i = 0; i < o->warmup; i++)
        if (sync_round_trip(ctx, id) != 0)
            goto out;
    double sum = 0;
    for (uint64_t i = 0; i < o->iters; i++) {
        double t0 = now_ns();
        if (sync_round_trip(ctx, id) != 0)
            goto out;
        lat[i] = (now_ns() - t0) * 1e-3;
        sum += lat[i];
    }
    qsort(lat, o->iters, sizeof(*lat), cmp_double);
    printf("{\"bench\":\"remote\",\"metric\":\"sync_round_trip\",\"value\":%.3f,\"unit\":\"us\","
           "\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"min\":%.3f,\"max\":%.3f,\"tls\":\"%s\","
           "\"n\":%" PRIu64 ",\"warmup\":%" PRIu64 "}\n",
           sum / (double)o->iters, percentile(lat, o->iters, 50),
           percentile(lat, o->iters, 99), percentile(lat, o->iters, 99.9), lat[0],
           lat[o->iters - 1], tls_name(), o->iters, o->warmup);
    rc = 0;
out:
    free(refs);
    free(tps);
    free(lat);
    return rc;
}

static int get_stats(deed_ctx_t *ctx, deed_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    st->size = sizeof(*st);
    CHECK(deed_stats(ctx, st));
    return 0;
}

/* Check every word of a pulled object; returns the number of bad words. */
static uint64_t verify(const void *data, uint64_t size, uint64_t seed)
{
    const uint64_t *w = data;
    uint64_t bad = 0;
    for (uint64_t i = 0; i < size / 8; i++)
        bad += w[i] != pattern(seed, i);
    return bad;
}

/* How rank 0 gets a pulled object. By default the benchmark "kicks" the pull with a polling
 * deed_get (timeout 0) and then blocks in deed_get; --plain-get times one blocking call.
 * (The kick once worked around a lost wake-up: a pull completing inside ucp_get_nbx finished
 * before deed_get's waiter was registered. lib/api.c req_on_get now links the waiter
 * first; --plain-get checks that it stays so: a timed-out get is reported below.) */
static int o_plain_get;
#define PLAIN_GET_US (10 * 1000000LL)

static int pull_one(deed_ctx_t *ctx, uint64_t size, uint64_t seed, double *secs, int *pulled)
{
    deed_task_id_t id = deed_task_id("bench_remote_produce");
    struct produce_spec s = {size, seed};
    deed_arg_in_t arg = DEED_VAL(&s, sizeof(s));
    deed_ref_t ref;
    deed_view_t v;
    deed_stats_t st0, st1, st2;

    CHECK(deed_submit_opts(ctx, id, &arg, 1, &ref, 1, &on_rank1));
    CHECK(deed_wait(ctx, &ref, 1, 1, WAIT_US, NULL));
    if (get_stats(ctx, &st0) != 0)
        return -1;
    double t0 = now_ns();
    if (!o_plain_get) {
        /* get_kick: a polling get starts the pull; when it completed in place the bytes are
         * here and the blocking get returns at once, else it waits for the pull */
        deed_status_t k = deed_get(ctx, ref, &v, 0);
        if (k == DEED_OK) {
            CHECK(deed_view_release(ctx, &v));
        } else if (k != DEED_ERR_TIMEOUT) {
            fprintf(stderr, "bench_remote: polling deed_get: %s\n", deed_strerror(k));
            return -1;
        }
    }
    deed_status_t g = deed_get(ctx, ref, &v, o_plain_get ? PLAIN_GET_US : WAIT_US);
    double t1 = now_ns();
    if (g == DEED_ERR_TIMEOUT && o_plain_get) {
        deed_stats_t sx;
        get_stats(ctx, &sx);
        fprintf(stderr,
                "bench_remote: a blocking deed_get of a %" PRIu64 "-byte object did not return "
                "in %d s although the pull %s (pulls %" PRIu64 " -> %" PRIu64 ")\n",
                size, (int)(PLAIN_GET_US / 1000000), sx.pulls > st0.pulls ? "completed" : "did not complete",
                st0.pulls, sx.pulls);
    }
    CHECK(g);
    if (get_stats(ctx, &st1) != 0)
        return -1;
    *secs = (t1 - t0) * 1e-9;
    *pulled = st1.pulls > st0.pulls;
    int rc = 0;
    if (v.size != size) {
        fprintf(stderr, "bench_remote: pulled object has %zu bytes, expected %" PRIu64 "\n",
                v.size, size);
        rc = -1;
    } else {
        uint64_t bad = verify(v.data, size, seed);
        if (bad) {
            fprintf(stderr,
                    "bench_remote: pulled object of %" PRIu64 " bytes (seed %" PRIu64
                    ") has %" PRIu64 " wrong words\n",
                    size, seed, bad);
            rc = -1;
        }
    }
    /* a second get of the same object must not pull again */
    if (rc == 0 && get_stats(ctx, &st2) == 0 && st2.pulls != st1.pulls)
        fprintf(stderr, "bench_remote: pulls went %" PRIu64 " -> %" PRIu64
                        " while verifying a %" PRIu64 "-byte object\n",
                st1.pulls, st2.pulls, size);
    CHECK(deed_view_release(ctx, &v));
    CHECK(deed_ref_release(ctx, ref));
    return rc;
}

static int bench_pull(deed_ctx_t *ctx, const struct opts *o, uint64_t store_size,
                      uint64_t inline_max)
{
    static const uint64_t sizes[] = {64ull << 10, 256ull << 10, 1ull << 20,
                                     4ull << 20,  16ull << 20,  64ull << 20};
    uint64_t seed = 1;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint64_t size = sizes[k];
        if (size > o->max_size)
            break;
        if (size * 2 > store_size) {
            fprintf(stderr, "bench_remote: skipping %" PRIu64 "-byte pulls: the store has %" PRIu64
                            " bytes (raise DEED_STORE_SIZE)\n",
                    size, store_size);
            continue;
        }
        uint32_t reps = o->pull_reps;
        if (size >= (64ull << 20))
            reps = reps / 4 > 2 ? reps / 4 : 2;
        else if (size >= (16ull << 20))
            reps = reps / 2 > 3 ? reps / 2 : 3;
        double gbs[64], sum_s = 0;
        if (reps > 64)
            reps = 64;
        int pulled = 0;
        progress("pulls of %" PRIu64 " bytes", size);
        /* one untimed pull first (the rkey of the segment, page faults of fresh store) */
        {
            double s;
            int p;
            if (pull_one(ctx, size, seed++, &s, &p) != 0)
                return -1;
        }
        for (uint32_t r = 0; r < reps; r++) {
            double s;
            int p;
            if (pull_one(ctx, size, seed++, &s, &p) != 0)
                return -1;
            pulled += p;
            sum_s += s;
            gbs[r] = (double)size / s * 1e-9;
        }
        if (pulled != (int)reps)
            fprintf(stderr,
                    "bench_remote: only %d of %u gets of %" PRIu64
                    "-byte objects pulled (DEED_INLINE_MAX: objects up to inline_max %" PRIu64
                    " (0 = the transport's eager limit) are not pulled)\n",
                    pulled, reps, size, inline_max);
        qsort(gbs, reps, sizeof(double), cmp_double);
        printf("{\"bench\":\"remote\",\"metric\":\"pull_bandwidth\",\"value\":%.3f,"
               "\"unit\":\"GB/s\",\"median\":%.3f,\"worst\":%.3f,\"mean_us\":%.1f,"
               "\"size\":%" PRIu64 ",\"pulled\":%d,\"get\":\"%s\",\"tls\":\"%s\",\"n\":%u}\n",
               gbs[reps - 1], gbs[reps / 2], gbs[0], sum_s / reps * 1e6, size, pulled,
               o_plain_get ? "plain" : "kick", tls_name(), reps);
    }
    return 0;
}

static int end_state(deed_ctx_t *ctx)
{
    deed_ref_t ref;
    deed_view_t v;
    deed_stats_t s0, s1;

    progress("end state");
    /* releases and COPY_FREEs are asynchronous: give them a moment */
    usleep(200 * 1000);
    CHECK(deed_submit_opts(ctx, deed_task_id("bench_remote_stats"), NULL, 0, &ref, 1,
                           &on_rank1));
    CHECK(deed_get(ctx, ref, &v, WAIT_US));
    if (v.size != sizeof(s1)) {
        fprintf(stderr, "bench_remote: rank 1 stats have %zu bytes\n", v.size);
        return -1;
    }
    memcpy(&s1, v.data, sizeof(s1));
    CHECK(deed_view_release(ctx, &v));
    CHECK(deed_ref_release(ctx, ref));
    usleep(50 * 1000);
    if (get_stats(ctx, &s0) != 0)
        return -1;
    /* rank 1's figure includes the stats task's own return and task, still in flight */
    printf("{\"bench\":\"remote\",\"metric\":\"end_state_objects_alive\",\"value\":%" PRIu64
           ",\"unit\":\"objects\",\"rank0_objects\":%" PRIu64 ",\"rank1_objects\":%" PRIu64
           ",\"rank0_store_used\":%" PRIu64 ",\"rank1_store_used\":%" PRIu64
           ",\"rank0_pending\":%" PRIu64 ",\"rank1_threads\":%u,\"rank1_tasks_remote_in\":%" PRIu64
           ",\"rank0_pulls\":%" PRIu64 ",\"rank0_pull_bytes\":%" PRIu64
           ",\"rank0_batches_sent\":%" PRIu64 ",\"rank1_batches_sent\":%" PRIu64
           ",\"misuse\":%" PRIu64 ",\"msgs_dropped\":%" PRIu64 ",\"tasks_failed\":%" PRIu64
           ",\"tls\":\"%s\"}\n",
           s0.objects_alive + s1.objects_alive, s0.objects_alive, s1.objects_alive,
           s0.store_bytes_used, s1.store_bytes_used, s0.tasks_pending, s1.threads,
           s1.tasks_remote_in, s0.pulls, s0.pull_bytes, s0.batches_sent, s1.batches_sent,
           s0.misuse + s1.misuse, s0.msgs_dropped + s1.msgs_dropped,
           s0.tasks_failed + s1.tasks_failed, tls_name());
    if (s0.misuse + s1.misuse + s0.msgs_dropped + s1.msgs_dropped + s0.tasks_failed +
            s1.tasks_failed !=
        0) {
        fprintf(stderr, "bench_remote: misuse, dropped messages or failed tasks reported\n");
        return -1;
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: deedrun -n 2 %s [--quick] [--tasks N] [--window W] [--runs R] [--iters N]\n"
            "          [--warmup N] [--pull-reps N] [--max-size BYTES] [--plain-get]\n"
            "          [--verbose]\n"
            "  --quick        small counts (a smoke run of a few seconds)\n"
            "  --tasks N      remote empty tasks per pipelined run (default 200000)\n"
            "  --window W     tasks submitted before each deed_wait (default 10000)\n"
            "  --runs R       pipelined runs; best and median are reported (default 3)\n"
            "  --iters N      timed synchronous remote round trips (default 20000)\n"
            "  --warmup N     untimed synchronous round trips first (default 2000)\n"
            "  --pull-reps N  timed pulls per size up to 4 MiB; half at 16 MiB, a quarter\n"
            "                 at 64 MiB (default 20)\n"
            "  --max-size B   largest pulled object, 64K..64M (default 67108864)\n"
            "  --plain-get    time one blocking deed_get per pull instead of a polling get\n"
            "                 followed by a blocking one (see the source)\n"
            "  --verbose      progress with timestamps on stderr\n"
            "Rank 0 measures and prints JSON lines; rank 1 serves.\n",
            prog);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){200000, 10000, 3, 20000, 2000, 20, 64ull << 20, 0, 0};
    for (int i = 1; i < argc; i++) /* --quick sets the base; the other options override it */
        if (strcmp(argv[i], "--quick") == 0)
            *o = (struct opts){20000, 5000, 3, 2000, 200, 4, 64ull << 20, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0)
            continue;
        if (strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
            continue;
        }
        if (strcmp(a, "--plain-get") == 0) {
            o->plain_get = 1;
            continue;
        }
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
        else if (strcmp(a, "--pull-reps") == 0 && v <= 64)
            o->pull_reps = (uint32_t)v;
        else if (strcmp(a, "--max-size") == 0)
            o->max_size = v;
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
    verbose = o.verbose;
    o_plain_get = o.plain_get;
    start_ns = now_ns();

    deed_config_t cfg;
    deed_ctx_t *ctx;
    deed_status_t rc = deed_config_default(&cfg);
    if (rc == DEED_OK)
        rc = deed_config_from_env(&cfg);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_remote: configuration: %s\n", deed_strerror(rc));
        return 1;
    }
    if (getenv("DEED_STORE_SIZE") == NULL)
        cfg.store_size = 1ull << 30;
    rc = deed_init(&cfg, &ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_remote: deed_init: %s\n", deed_strerror(rc));
        return 1;
    }
    int rank = deed_rank(ctx), nranks = deed_nranks(ctx);
    int status = 0;
    if (nranks < 2) {
        fprintf(stderr, "bench_remote: needs two ranks (run it as: deedrun -n 2 %s)\n", argv[0]);
        status = 2;
    } else if (rank == 0) {
        deed_stats_t st;
        if (get_stats(ctx, &st) != 0 || bench_tasks(ctx, &o, st.workers) != 0 ||
            bench_pull(ctx, &o, st.store_bytes_total, cfg.inline_max) != 0 ||
            end_state(ctx) != 0) {
            fprintf(stderr, "bench_remote: rank 0 failed\n");
            status = 1;
        }
    }
    if (status == 1) {
        /* the runtime may be stuck (finalize waits for every submitted task): leave now;
         * deedrun ends the other rank */
        fflush(stdout);
        _exit(1);
    }
    if (rank == 0 && nranks >= 2) {
        deed_ref_t ref;
        rc = deed_submit_opts(ctx, deed_task_id("bench_remote_done"), NULL, 0, &ref, 1,
                              &on_rank1);
        if (rc == DEED_OK)
            rc = deed_wait(ctx, &ref, 1, 1, WAIT_US, NULL);
        if (rc == DEED_OK)
            rc = deed_ref_release(ctx, ref);
        if (rc != DEED_OK)
            fprintf(stderr, "bench_remote: telling rank 1 to finish: %s\n", deed_strerror(rc));
    } else if (rank == 1) {
        /* serve (the loop and the workers do it) until rank 0 says it is done */
        while (!atomic_load(&rank1_may_finish))
            usleep(2000);
    }
    /* then everyone finalizes */
    rc = deed_finalize(ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_remote: rank %d: deed_finalize: %s\n", rank, deed_strerror(rc));
        if (status == 0)
            status = 1;
    }
    return status;
}
