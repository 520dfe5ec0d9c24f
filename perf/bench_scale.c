/*
 * bench_scale.c — the paper's scalability workload: chains of batches, each batch M tasks
 * plus one aggregator, on 1..P ranks, with the owners spread over the ranks or colocated.
 *
 * Run: `deedrun -n P bench_scale [--owners spread|colocated] [options]`.
 *
 * One chain: B batches. Batch b = M work tasks, each taking the previous batch's aggregate
 * by reference (DEED_REF; batch 0 takes a put seed), plus one aggregator task taking the M
 * work results by reference and returning their combination. So batches are chained
 * through the aggregates, and the tasks of one batch are independent. The chain's driver
 * submits batch after batch without waiting for them, keeping at most --inflight batches
 * unfinished (it waits for the aggregate of batch b - inflight before submitting batch b),
 * then gets the last aggregate and returns it.
 *
 * A chain's driver is a task ("bench_scale_chain") pinned to a rank: everything it submits
 * is owned by that rank. The work and aggregator tasks are not pinned (the runtime places
 * them: under a lease, spilled to ranks with free workers).
 *   --owners spread     chain r is driven on rank r, r = 0..P-1 (every rank owns one chain)
 *   --owners colocated  the P chains are all driven on rank 0 (rank 0 owns every task)
 * Rank 0 first runs a task pinned to each rank (all ranks up and connected) and one untimed
 * short run (B/10 batches) of each mode; then, per run, it starts the clock, submits the P
 * chain drivers, gets their P results and stops the clock: the job-wide rate =
 * P * B * (M + 1) / that time. Every chain's final aggregate is checked against the value
 * rank 0 computes sequentially (exit status 1 if one is wrong).
 *
 * Output (rank 0's stdout; deedrun prefixes "[0] "), per --owners mode run:
 *   {"bench":"scale","metric":"tasks_per_s","value":R,"unit":"tasks/s","ranks":P,
 *    "owners":"spread"|"colocated","tasks":N, ...}   R = best of --runs runs; extra fields:
 *    median, runs, chains, batches, width, inflight, rank0_tasks_run (bodies run on rank 0,
 *    mean per run)
 *   {"bench":"scale","metric":"spread_over_colocated","value":R_s/R_c,"unit":"x",...} when
 *    both modes were run (--owners both, the default): the baseline of the same command.
 *
 * usage: bench_scale [--quick] [--owners spread|colocated|both] [--batches B] [--width M]
 *                    [--inflight K] [--runs R] [--inject-error]
 * (--owners both, --batches, --width, --inflight, --runs and --inject-error are additions to
 * the CLI of the issue; the default runs both modes.)
 */
#include "benchutil.h"

#include <deed.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WIDTH 4096
#define MAX_INFLIGHT 64

struct opts {
    uint64_t batches;  /* B: batches per chain */
    uint64_t width;    /* M: work tasks per batch */
    uint64_t inflight; /* unfinished batches a chain driver allows */
    uint64_t runs;     /* runs per mode (best and median reported) */
    int spread, colocated;
    int inject; /* --inject-error */
};

/* What a chain driver is given. */
struct chain_spec {
    uint64_t chain; /* chain number (the seed) */
    uint64_t batches, width, inflight;
    uint64_t inject; /* self-test: work task 0 of batch 0 gets j = 1 (the chain goes wrong) */
};

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7FB5D329728EA185ull;
    x ^= x >> 27;
    x *= 0x81DADEF4BC2DD44Dull;
    return x ^ (x >> 33);
}

/* The value of work task j of a batch whose previous aggregate is @p prev. */
static inline uint64_t work_value(uint64_t prev, uint64_t j)
{
    return mix(prev + j * 0x9E3779B97F4A7C15ull);
}

/* The aggregate of the M work values (order-dependent, so a swapped argument shows). */
static inline uint64_t agg_step(uint64_t acc, uint64_t v)
{
    return mix(acc ^ v) + 1;
}

static uint64_t chain_seed(uint64_t chain)
{
    return mix(chain + 12345);
}

/* The chain's final aggregate, computed sequentially. */
static uint64_t chain_expected(const struct chain_spec *s)
{
    uint64_t prev = chain_seed(s->chain);
    for (uint64_t b = 0; b < s->batches; b++) {
        uint64_t acc = b;
        for (uint64_t j = 0; j < s->width; j++)
            acc = agg_step(acc, work_value(prev, j));
        prev = acc;
    }
    return prev;
}

/* ---- tasks ---------------------------------------------------------------------------------- */

static deed_task_id_t work_id, agg_id, chain_id; /* looked up by main on every rank */

static int get_u64(const deed_arg_t *a, uint64_t *v)
{
    if (a->size != sizeof(*v))
        return -1;
    memcpy(v, a->data, sizeof(*v));
    return 0;
}

/* args: [0] previous aggregate (REF), [1] j (VAL). */
static int work(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    uint64_t prev, j;
    if (nargs != 2 || get_u64(&args[0], &prev) != 0 || get_u64(&args[1], &j) != 0)
        return deed_task_fail(task, 1, "bench_scale_work: bad arguments");
    uint64_t v = work_value(prev, j);
    return deed_task_return(task, 0, &v, sizeof(v)) == DEED_OK ? 0 : 2;
}
DEED_REGISTER_AS(work, "bench_scale_work")

/* args: [0] batch number (VAL), [1..M] the work results (REF). */
static int aggregate(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    uint64_t acc, v;
    if (nargs < 2 || get_u64(&args[0], &acc) != 0)
        return deed_task_fail(task, 1, "bench_scale_agg: bad arguments");
    for (uint32_t i = 1; i < nargs; i++) {
        if (get_u64(&args[i], &v) != 0)
            return deed_task_fail(task, 1, "bench_scale_agg: argument %u has %zu bytes", i,
                                  args[i].size);
        acc = agg_step(acc, v);
    }
    return deed_task_return(task, 0, &acc, sizeof(acc)) == DEED_OK ? 0 : 2;
}
DEED_REGISTER_AS(aggregate, "bench_scale_agg")

/* Submit one batch taking @p prev; *agg gets the aggregator's ref (counted). */
static deed_status_t submit_batch(deed_ctx_t *ctx, deed_ref_t prev, uint64_t b, uint64_t width,
                                  int inject, deed_ref_t *outs, deed_arg_in_t *aargs,
                                  deed_ref_t *agg)
{
    deed_status_t rc = DEED_OK;
    uint64_t j;
    for (j = 0; j < width; j++) {
        uint64_t jj = j + (inject && b == 0 && j == 0);
        deed_arg_in_t a[2] = {DEED_REF(prev), DEED_VAL(&jj, sizeof(jj))};
        rc = deed_submit(ctx, work_id, a, 2, &outs[j], 1);
        if (rc != DEED_OK)
            break;
        aargs[1 + j] = DEED_REF(outs[j]);
    }
    if (rc == DEED_OK) {
        aargs[0] = DEED_VAL(&b, sizeof(b));
        rc = deed_submit(ctx, agg_id, aargs, (uint32_t)(width + 1), agg, 1);
    }
    if (j)
        deed_ref_release_n(ctx, outs, (uint32_t)j); /* the aggregator holds them */
    return rc;
}

/* args: [0] struct chain_spec (VAL). Drives one chain; returns its final aggregate. */
static int chain(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    struct chain_spec s;
    if (nargs != 1 || args[0].size != sizeof(s))
        return deed_task_fail(task, 1, "bench_scale_chain: bad arguments");
    memcpy(&s, args[0].data, sizeof(s));
    deed_ctx_t *ctx = deed_task_ctx(task);
    deed_ref_t *outs = calloc(s.width, sizeof(*outs));
    deed_arg_in_t *aargs = calloc(s.width + 1, sizeof(*aargs));
    deed_ref_t ring[MAX_INFLIGHT + 1]; /* aggregates of the unfinished batches */
    uint64_t head = 0, tail = 0;       /* ring[tail % n .. head % n) */
    const uint64_t n = s.inflight + 1;
    deed_status_t rc = DEED_ERR_NO_MEMORY;
    uint64_t result = 0;
    if (outs == NULL || aargs == NULL)
        goto out;

    uint64_t seed = chain_seed(s.chain);
    deed_ref_t prev;
    rc = deed_put(ctx, &seed, sizeof(seed), &prev);
    if (rc != DEED_OK)
        goto out;
    ring[head++ % n] = prev; /* the seed counts as one unfinished "batch" */
    for (uint64_t b = 0; b < s.batches && rc == DEED_OK; b++) {
        while (head - tail > s.inflight) { /* never the last one: inflight >= 1 */
            rc = deed_wait(ctx, &ring[tail % n], 1, 1, BENCH_WAIT_US, NULL);
            deed_ref_release(ctx, ring[tail++ % n]);
            if (rc != DEED_OK)
                goto out;
        }
        deed_ref_t agg;
        rc = submit_batch(ctx, ring[(head - 1) % n], b, s.width, s.inject != 0, outs, aargs,
                          &agg);
        if (rc == DEED_OK)
            ring[head++ % n] = agg;
    }
    if (rc == DEED_OK)
        rc = deed_get_copy(ctx, ring[(head - 1) % n], &result, sizeof(result), NULL,
                           BENCH_WAIT_US);
out:
    while (tail < head)
        deed_ref_release(ctx, ring[tail++ % n]);
    free(outs);
    free(aargs);
    if (rc != DEED_OK)
        return deed_task_fail(task, 2, "bench_scale_chain %" PRIu64 ": %s", s.chain,
                              deed_strerror(rc));
    return deed_task_return(task, 0, &result, sizeof(result)) == DEED_OK ? 0 : 3;
}
DEED_REGISTER_AS(chain, "bench_scale_chain")

/* ---- driver (rank 0) ----------------------------------------------------------------------- */

/* One run: P chains, each driven on rank r (spread) or on rank 0 (colocated). */
static int run_once(deed_ctx_t *ctx, const struct opts *o, int spread, double *secs)
{
    int nranks = deed_nranks(ctx);
    deed_ref_t rets[1024];
    int nrets = 0, status = -1;
    deed_status_t rc = DEED_OK;

    double t0 = bench_now_ns();
    for (nrets = 0; nrets < nranks; nrets++) {
        struct chain_spec s = {(uint64_t)nrets, o->batches, o->width, o->inflight,
                               (uint64_t)(o->inject && nrets == nranks - 1)};
        deed_arg_in_t a = DEED_VAL(&s, sizeof(s));
        deed_submit_opts_t so = DEED_SUBMIT_OPTS_INIT;
        so.rank = spread ? nrets : 0;
        rc = deed_submit_opts(ctx, chain_id, &a, 1, &rets[nrets], 1, &so);
        if (rc != DEED_OK) {
            fprintf(stderr, "bench_scale: submit of chain %d: %s\n", nrets, deed_strerror(rc));
            goto out;
        }
    }
    uint64_t got[1024];
    for (int c = 0; c < nranks; c++) {
        size_t size = 0;
        rc = deed_get_copy(ctx, rets[c], &got[c], sizeof(got[c]), &size, BENCH_WAIT_US);
        if (rc != DEED_OK || size != sizeof(got[c])) {
            fprintf(stderr, "bench_scale: chain %d: %s\n", c,
                    rc != DEED_OK ? deed_strerror(rc) : "wrong result size");
            goto out;
        }
    }
    *secs = (bench_now_ns() - t0) * 1e-9;
    status = 0;
    for (int c = 0; c < nranks; c++) {
        struct chain_spec s = {(uint64_t)c, o->batches, o->width, o->inflight, 0};
        uint64_t want = chain_expected(&s);
        if (got[c] != want) {
            fprintf(stderr, "bench_scale: chain %d ended with %" PRIu64 ", expected %" PRIu64 "\n",
                    c, got[c], want);
            status = -1;
        }
    }
out:
    if (nrets)
        deed_ref_release_n(ctx, rets, (uint32_t)nrets);
    return status;
}

static int drive(deed_ctx_t *ctx, const struct opts *o)
{
    int nranks = deed_nranks(ctx);
    double *secs = calloc(o->runs, sizeof(*secs));
    double rate[2] = {0, 0};
    uint64_t tasks = (uint64_t)nranks * o->batches * (o->width + 1);
    int status = -1;

    if (secs == NULL || work_id == 0 || agg_id == 0 || chain_id == 0)
        goto out;
    /* one untimed short run of each mode first (threads, connections, leases, allocator) */
    struct opts warm = *o;
    warm.batches = o->batches / 10 ? o->batches / 10 : 1;
    for (int spread = 1; spread >= 0; spread--)
        if ((spread ? o->spread : o->colocated) && run_once(ctx, &warm, spread, &secs[0]) != 0)
            goto out;
    for (int spread = 1; spread >= 0; spread--) {
        if (!(spread ? o->spread : o->colocated))
            continue;
        deed_stats_t s0, s1;
        if (bench_stats(ctx, &s0) != 0)
            goto out;
        for (uint64_t r = 0; r < o->runs; r++)
            if (run_once(ctx, o, spread, &secs[r]) != 0)
                goto out;
        if (bench_stats(ctx, &s1) != 0)
            goto out;
        double best = secs[0];
        for (uint64_t r = 1; r < o->runs; r++)
            best = secs[r] < best ? secs[r] : best;
        double med = bench_median(secs, o->runs);
        rate[spread] = (double)tasks / best;
        printf("{\"bench\":\"scale\",\"metric\":\"tasks_per_s\",\"value\":%.0f,"
               "\"unit\":\"tasks/s\",\"ranks\":%d,\"owners\":\"%s\",\"tasks\":%" PRIu64
               ",\"median\":%.0f,\"runs\":%" PRIu64 ",\"chains\":%d,\"batches\":%" PRIu64
               ",\"width\":%" PRIu64 ",\"inflight\":%" PRIu64 ",\"rank0_tasks_run\":%" PRIu64
               "}\n",
               rate[spread], nranks, spread ? "spread" : "colocated", tasks,
               (double)tasks / med, o->runs, nranks, o->batches, o->width, o->inflight,
               (s1.tasks_run - s0.tasks_run) / o->runs);
    }
    if (rate[0] > 0 && rate[1] > 0)
        printf("{\"bench\":\"scale\",\"metric\":\"spread_over_colocated\",\"value\":%.3f,"
               "\"unit\":\"x\",\"ranks\":%d,\"tasks\":%" PRIu64 "}\n",
               rate[1] / rate[0], nranks, tasks);
    status = 0;
out:
    free(secs);
    return status;
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: deedrun -n P %s [--quick] [--owners spread|colocated|both] [--batches B]\n"
            "          [--width M] [--inflight K] [--runs R] [--inject-error]\n"
            "  --quick          small counts (a smoke run of a few seconds)\n"
            "  --owners MODE    spread: chain r driven (owned) by rank r; colocated: all P\n"
            "                   chains driven by rank 0; both (default): one after the other\n"
            "  --batches B      batches per chain, 1..1000000 (default 1000; quick 10)\n"
            "  --width M        work tasks per batch, 1..%d (default 100; quick 20)\n"
            "  --inflight K     unfinished batches a chain allows, 1..%d (default 4)\n"
            "  --runs R         runs per mode, best and median reported, 1..100 (default 3;\n"
            "                   quick 1)\n"
            "  --inject-error   self-test: the last chain computes one wrong work value; the\n"
            "                   check must catch it (exit status 1)\n"
            "Rank 0 measures and prints JSON lines; the other ranks serve.\n",
            prog, MAX_WIDTH, MAX_INFLIGHT);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.batches = 1000, .width = 100, .inflight = 4, .runs = 3, .spread = 1,
                       .colocated = 1};
    for (int i = 1; i < argc; i++) /* --quick sets the base; the other options override it */
        if (strcmp(argv[i], "--quick") == 0) {
            o->batches = 10;
            o->width = 20;
            o->runs = 1;
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--quick") == 0)
            continue;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(argv[0]);
            exit(0);
        }
        if (strcmp(a, "--inject-error") == 0) {
            o->inject = 1;
            continue;
        }
        if (strcmp(a, "--owners") == 0) {
            if (v && strcmp(v, "spread") == 0)
                o->spread = 1, o->colocated = 0;
            else if (v && strcmp(v, "colocated") == 0)
                o->spread = 0, o->colocated = 1;
            else if (v && strcmp(v, "both") == 0)
                o->spread = 1, o->colocated = 1;
            else {
                fprintf(stderr, "%s: --owners wants spread, colocated or both, got '%s'\n",
                        argv[0], v ? v : "(nothing)");
                return -1;
            }
        } else if (strcmp(a, "--batches") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, 1000000, &o->batches);
        else if (strcmp(a, "--width") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, MAX_WIDTH, &o->width);
        else if (strcmp(a, "--inflight") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, MAX_INFLIGHT, &o->inflight);
        else if (strcmp(a, "--runs") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, 100, &o->runs);
        else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", argv[0], a);
            return -1;
        }
        if (rc != 0)
            return -1;
        i++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    work_id = deed_task_id("bench_scale_work");
    agg_id = deed_task_id("bench_scale_agg");
    chain_id = deed_task_id("bench_scale_chain");

    deed_ctx_t *ctx;
    deed_status_t rc = deed_init(NULL, &ctx); /* defaults + the DEED_* environment */
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_scale: deed_init: %s\n", deed_strerror(rc));
        return 1;
    }
    int status = 0;
    if (deed_nranks(ctx) > 1024) {
        fprintf(stderr, "bench_scale: at most 1024 ranks\n");
        status = 2;
    } else if (deed_rank(ctx) == 0) {
        if (bench_ping_ranks(ctx) != 0 || drive(ctx, &o) != 0) {
            fprintf(stderr, "bench_scale: failed\n");
            fflush(stdout);
            _exit(1); /* the runtime may be stuck; deedrun ends the other ranks */
        }
        if (bench_release_ranks(ctx) != 0)
            status = 1;
    } else {
        bench_serve_until_released();
    }
    rc = deed_finalize(ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_scale: deed_finalize: %s\n", deed_strerror(rc));
        status = 1;
    }
    return status;
}
