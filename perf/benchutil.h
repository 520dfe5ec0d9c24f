/*
 * benchutil.h — small helpers shared by the paper benchmarks (bench_borrow, bench_scale,
 * bench_metg): time, numeric option parsing with clear errors, percentiles, and the
 * multi-rank protocol of a benchmark job.
 *
 * Multi-rank protocol: rank 0 measures; every other rank only serves (its loop and workers
 * run what is pushed to it). Rank 0 first calls bench_ping_ranks() (a task pinned to each
 * rank, so every rank is up and connected before anything is timed), and at the end
 * bench_release_ranks(), which runs a task on each other rank that lets it leave
 * bench_serve_until_released() and enter deed_finalize (whose barrier gives up after
 * DEED_BOOT_TIMEOUT, so the serving ranks must not wait there while rank 0 measures).
 *
 * Include it from exactly one .c file per program: it defines static functions and
 * registers two tasks ("benchutil_ping", "benchutil_release").
 */
#ifndef DEED_PERF_BENCHUTIL_H
#define DEED_PERF_BENCHUTIL_H

#include <deed.h>

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* no single wait or get of a benchmark should take anywhere near this */
#define BENCH_WAIT_US (120 * 1000000LL)

static inline double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* CPUs this process may run on. */
static inline int bench_ncpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 1;
    return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts @p v in place; returns its median. */
static inline double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), bench_cmp_double);
    return n ? v[n / 2] : 0;
}

/*
 * Parse option @p name's value @p s as an unsigned integer in [lo, hi]. On error prints
 * "<prog>: <name> wants an integer in [lo, hi], got 's'" and returns -1.
 */
static inline int bench_parse_u64(const char *prog, const char *name, const char *s, uint64_t lo,
                                  uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (s == NULL || *s == '\0' || *s == '-' || errno || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: %s wants an integer in [%" PRIu64 ", %" PRIu64 "], got '%s'\n",
                prog, name, lo, hi, s ? s : "(nothing)");
        return -1;
    }
    *out = v;
    return 0;
}

/* The same for a positive number (microseconds and the like) in [lo, hi]. */
static inline int bench_parse_double(const char *prog, const char *name, const char *s, double lo,
                                     double hi, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (s == NULL || *s == '\0' || errno || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: %s wants a number in [%g, %g], got '%s'\n", prog, name, lo, hi,
                s ? s : "(nothing)");
        return -1;
    }
    *out = v;
    return 0;
}

/* Fill @p st with this rank's counters; 0 or -1. */
static inline int bench_stats(deed_ctx_t *ctx, deed_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    st->size = sizeof(*st);
    return deed_stats(ctx, st) == DEED_OK ? 0 : -1;
}

/* ---- multi-rank protocol ------------------------------------------------------------------ */

static atomic_int benchutil_released;

/* Returns the rank it ran on. */
static int benchutil_ping(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    (void)args;
    (void)nargs;
    int32_t r = deed_rank(deed_task_ctx(task));
    return deed_task_return(task, 0, &r, sizeof(r)) == DEED_OK ? 0 : 1;
}
DEED_REGISTER_AS(benchutil_ping, "benchutil_ping")

static int benchutil_release(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    (void)task;
    (void)args;
    (void)nargs;
    atomic_store(&benchutil_released, 1);
    return 0;
}
DEED_REGISTER_AS(benchutil_release, "benchutil_release")

/* Run task @p task pinned to each rank from @p from on and wait for it; with @p check it must
 * return the rank it ran on. 0 or -1 (reported on stderr). */
static inline int benchutil_each_rank(deed_ctx_t *ctx, const char *task, int from, int check)
{
    int n = deed_nranks(ctx);
    deed_task_id_t id = deed_task_id(task);
    for (int r = from; r < n; r++) {
        deed_submit_opts_t o = DEED_SUBMIT_OPTS_INIT;
        deed_ref_t ref;
        int32_t where = -1;
        size_t size = 0;
        o.rank = r;
        deed_status_t rc = deed_submit_opts(ctx, id, NULL, 0, &ref, 1, &o);
        if (rc != DEED_OK) {
            fprintf(stderr, "bench: %s on rank %d: submit: %s\n", task, r, deed_strerror(rc));
            return -1;
        }
        rc = deed_get_copy(ctx, ref, &where, sizeof(where), &size, BENCH_WAIT_US);
        deed_ref_release(ctx, ref);
        if (rc != DEED_OK) {
            fprintf(stderr, "bench: %s on rank %d: %s\n", task, r, deed_strerror(rc));
            return -1;
        }
        if (check && (size != sizeof(where) || where != r)) {
            fprintf(stderr, "bench: %s pinned to rank %d ran on rank %d\n", task, r, (int)where);
            return -1;
        }
    }
    return 0;
}

/* Rank 0: a round trip to every rank (all up and connected); 0 or -1. */
static inline int bench_ping_ranks(deed_ctx_t *ctx)
{
    return benchutil_each_rank(ctx, "benchutil_ping", 0, 1);
}

/* Rank 0: let every other rank leave bench_serve_until_released(); 0 or -1. */
static inline int bench_release_ranks(deed_ctx_t *ctx)
{
    return benchutil_each_rank(ctx, "benchutil_release", 1, 0);
}

/* Ranks other than 0: serve until rank 0 releases this rank. */
static inline void bench_serve_until_released(void)
{
    while (!atomic_load(&benchutil_released))
        usleep(2000);
}

#endif /* DEED_PERF_BENCHUTIL_H */
