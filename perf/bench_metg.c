/*
 * bench_metg.c — Task Bench's METG(50%) for deed: the minimum effective task granularity,
 * i.e. the smallest task duration at which the runtime still keeps >= 50% efficiency.
 *
 * Run: `bench_metg [options]` (one rank), or `deedrun -n P bench_metg` (rank 0 drives, the
 * other ranks serve; see benchutil.h).
 *
 * The task body busy-spins a calibrated number of iterations of a xorshift kernel (real
 * work on the core, not sleeping); the kernel's speed is measured first (iterations per us,
 * best of several timings), and a grain of g us is round(g * rate) iterations.
 * width = the total number of workers (W per rank times P ranks), T steps:
 *   nodep    T x width independent tasks
 *   stencil  task (t, i) takes the results of (t-1, i-1), (t-1, i), (t-1, i+1) by reference
 *            (1-D stencil, clamped at the edges), so step t waits for step t-1's neighbours
 * The driver submits step after step, keeping at most L steps unfinished (L * width ~ 1024
 * tasks in flight): before submitting step t it retires step t-L (deed_wait, then it gets
 * every result and compares it with the value it computes itself: a task returns
 * spin(seed, iters) + mix(its inputs, t, i), and the spin's value is computed once per grain).
 * efficiency = (width * T * grain) / (wall * width): the work done over the peak of the
 * workers in the time taken. The grains are swept geometrically from --max-grain down to
 * --min-grain (--per-decade points per decade), T chosen per point so that one repetition
 * takes about --point-time seconds (estimated from the previous point). Each point runs
 * --reps times with the same T and the fastest run counts (the machine is shared and noisy;
 * the baseline is treated the same way). METG(50%) = the smallest grain with efficiency
 * >= 0.5, log-interpolated between it and the next smaller grain.
 *
 * Baseline in the same command: the same spin kernel on `width` plain pthreads with a
 * spinning barrier after every step (no runtime at all), swept the same way and interleaved
 * with the deed runs (per grain, repetition r of the baseline, nodep and stencil runs before
 * repetition r + 1 of any: they see the same load of the shared machine), then alone past
 * --min-grain (down to a hundredth of it) until its efficiency falls below 0.5.
 *
 * Output, one JSON object per line (rank 0's stdout; deedrun prefixes "[0] "):
 *   {"bench":"metg","metric":"spin_rate","value":r,"unit":"iters/us"}
 *   {"bench":"metg_baseline","metric":"efficiency","value":e,"unit":"fraction",
 *    "pattern":"barrier","grain_us":g,"tasks":n,"workers":W,"steps":T,"wall_s":s}  per
 *    point, then
 *   {"bench":"metg_baseline","metric":"metg50","value":us,"unit":"us","pattern":"barrier",
 *    "workers":W,"found":true|false}
 *   {"bench":"metg","metric":"efficiency","value":e,"unit":"fraction",
 *    "pattern":"nodep"|"stencil","grain_us":g,"tasks":n,"workers":W,"steps":T,"wall_s":s,
 *    "overhead_us":o,"rank0_share":f,"leases_requested":n,"leases_spilled":n}  per point:
 *    overhead_us = wall * width / tasks - grain (runtime time per task on one worker),
 *    rank0_share = the fraction of the task bodies that ran on rank 0, leases_requested and
 *    leases_spilled = rank 0's counters over the point's repetitions (placement)
 *   {"bench":"metg","metric":"metg50","value":us,"unit":"us","pattern":P,"workers":W,
 *    "found":true|false}
 *   {"bench":"metg","metric":"metg50_over_baseline","value":x,"unit":"x","pattern":P,
 *    "workers":W,"found":true|false}      (found: both METGs were found, not bounds)
 * "workers" is the width (all ranks). "found" is false when no grain reached 50% (value =
 * the largest grain swept) or every grain did (value = the smallest grain swept: METG is
 * at most that). Exit status 1 if a task returned a wrong value or a call failed, 2 for
 * bad options.
 *
 * usage: bench_metg [--quick] [--workers W] [--pattern nodep|stencil|both] [--max-grain US]
 *                   [--min-grain US] [--per-decade N] [--point-time S] [--reps R]
 *                   [--steps T] [--no-baseline] [--inject-error]
 * (every option but --quick and --workers is an addition to the CLI of the issue.)
 */
#include "benchutil.h"

#include <deed.h>

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POINTS 64
#define INFLIGHT_TASKS 1024
#define MAX_POINT_TASKS 4000000ull

struct opts {
    uint64_t workers; /* W per rank */
    double max_grain, min_grain;
    uint64_t per_decade;
    double point_time; /* seconds per repetition of a point */
    uint64_t reps;     /* repetitions per point: the fastest counts */
    int nodep, stencil;
    int inject;      /* --inject-error */
    int no_baseline; /* --no-baseline (profiling the runtime alone) */
    uint64_t steps;  /* --steps: T of every point (0 = chosen from --point-time) */
};

/* ---- the work ----------------------------------------------------------------------------- */

__attribute__((noinline)) static uint64_t spin(uint64_t x, uint64_t iters)
{
    for (uint64_t i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7FB5D329728EA185ull;
    x ^= x >> 27;
    x *= 0x81DADEF4BC2DD44Dull;
    return x ^ (x >> 33);
}

/* What every task gets by value. */
struct task_spec {
    uint64_t iters, seed, t, i;
};

/* The value task (t, i) returns, given the sum of its inputs and the spin's value. */
static inline uint64_t task_value(uint64_t spun, uint64_t in_sum, uint64_t t, uint64_t i)
{
    return spun + mix(in_sum + t * 0x9E3779B97F4A7C15ull + i);
}

/* args: [0] struct task_spec (VAL), [1..] inputs (REF, 8 bytes each). */
static int metg_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    struct task_spec s;
    if (nargs < 1 || args[0].size != sizeof(s))
        return deed_task_fail(task, 1, "bench_metg_task: bad arguments");
    memcpy(&s, args[0].data, sizeof(s));
    uint64_t sum = 0, v;
    for (uint32_t k = 1; k < nargs; k++) {
        if (args[k].size != sizeof(v))
            return deed_task_fail(task, 1, "bench_metg_task: input %u has %zu bytes", k,
                                  args[k].size);
        memcpy(&v, args[k].data, sizeof(v));
        sum += v;
    }
    v = task_value(spin(s.seed, s.iters), sum, s.t, s.i);
    return deed_task_return(task, 0, &v, sizeof(v)) == DEED_OK ? 0 : 2;
}
DEED_REGISTER_AS(metg_task, "bench_metg_task")

/* Iterations of spin() per microsecond on one core: best of several timings. */
static double calibrate(void)
{
    uint64_t iters = 1 << 16;
    double best = 0;
    volatile uint64_t sink = 0;
    for (;;) { /* grow until one timing takes >= 5 ms */
        double t0 = bench_now_ns();
        sink += spin(sink + 1, iters);
        double dt = bench_now_ns() - t0;
        if (dt >= 5e6)
            break;
        iters *= 2;
    }
    for (int r = 0; r < 7; r++) {
        double t0 = bench_now_ns();
        sink += spin(sink + 1, iters);
        double rate = (double)iters / ((bench_now_ns() - t0) * 1e-3);
        best = rate > best ? rate : best;
    }
    return best;
}

/* ---- METG from a sweep ---------------------------------------------------------------------- */

struct point {
    double grain; /* us */
    double eff;
};

/* Smallest grain with efficiency >= 0.5, log-interpolated with the next smaller grain.
 * @p pts in decreasing grain order. *found = 0 when no point or every point reached 0.5. */
static double metg50(const struct point *pts, int n, int *found)
{
    int last = -1;
    for (int i = 0; i < n; i++)
        if (pts[i].eff >= 0.5)
            last = i;
    *found = last >= 0 && last < n - 1;
    if (last < 0)
        return pts[0].grain;
    if (last == n - 1)
        return pts[n - 1].grain;
    const struct point *a = &pts[last], *b = &pts[last + 1];
    double f = (a->eff - 0.5) / (a->eff - b->eff);
    return exp(log(a->grain) + f * (log(b->grain) - log(a->grain)));
}

/* Number of steps for a point of grain @p g, from the previous point (time per step at its
 * grain; 0 = none): assume a fixed overhead per step. */
static uint64_t choose_steps(const struct opts *o, uint64_t width, double g, double prev_g,
                             double prev_step_us)
{
    if (o->steps)
        return o->steps;
    double est = g;
    if (prev_step_us > 0 && prev_step_us - prev_g > 0)
        est = g + (prev_step_us - prev_g);
    if (est < 0.05)
        est = 0.05;
    double steps = o->point_time * 1e6 / est;
    if (steps < 8)
        steps = 8;
    if (steps * (double)width > (double)MAX_POINT_TASKS)
        steps = (double)MAX_POINT_TASKS / (double)width;
    return (uint64_t)steps;
}

/* ---- baseline: pthreads and a spinning barrier ---------------------------------------------- */

static struct {
    _Alignas(64) atomic_uint arrived;
    _Alignas(64) atomic_uint generation;
    uint32_t nthreads;
    uint64_t steps, iters;
    int yield; /* more threads than CPUs: yield while waiting */
    double t0, t1; /* set by thread 0 */
    /* a run past its deadline stops early (a spinning barrier on a loaded machine can take a
     * time slice per step): the releasing thread sets stop, every thread sees it after the
     * same barrier */
    double deadline_ns;
    uint64_t released, done;
    int stop;
    _Alignas(64) atomic_uint_fast64_t sink;
} bar;

static void barrier_wait(void)
{
    unsigned gen = atomic_load_explicit(&bar.generation, memory_order_acquire);
    if (atomic_fetch_add_explicit(&bar.arrived, 1, memory_order_acq_rel) + 1 == bar.nthreads) {
        if ((++bar.released & 255) == 0 && bench_now_ns() > bar.deadline_ns)
            bar.stop = 1;
        atomic_store_explicit(&bar.arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&bar.generation, gen + 1, memory_order_release);
        return;
    }
    for (unsigned n = 0; atomic_load_explicit(&bar.generation, memory_order_acquire) == gen; n++) {
        if (bar.yield || n > 4096)
            sched_yield();
#if defined(__x86_64__) || defined(__i386__)
        else
            __builtin_ia32_pause();
#endif
    }
}

static void *baseline_thread(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg;
    uint64_t x = me + 1, acc = 0;
    barrier_wait(); /* every thread started: thread 0 starts the clock */
    if (me == 0)
        bar.t0 = bench_now_ns();
    uint64_t t = 0;
    while (t < bar.steps) {
        acc += spin(x + t, bar.iters);
        barrier_wait();
        t++;
        if (bar.stop)
            break;
    }
    if (me == 0) {
        bar.t1 = bench_now_ns();
        bar.done = t;
    }
    atomic_fetch_add(&bar.sink, acc);
    return NULL;
}

/* Wall time (s) of up to @p steps steps on @p n threads (thread start-up not included); the
 * run stops after @p max_s seconds; *done gets the steps run. */
static double baseline_run(uint32_t n, uint64_t steps, uint64_t iters, double max_s,
                           uint64_t *done)
{
    pthread_t th[1024];
    bar.nthreads = n;
    bar.steps = steps;
    bar.iters = iters;
    bar.deadline_ns = bench_now_ns() + max_s * 1e9;
    bar.released = 0;
    bar.stop = 0;
    bar.yield = (int)n > bench_ncpus();
    atomic_store(&bar.arrived, 0);
    uint32_t started = 0;
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, baseline_thread, (void *)(uintptr_t)started) != 0)
            break;
    if (started != n) { /* let the started ones through their barriers: cannot; report */
        fprintf(stderr, "bench_metg: could not start %u baseline threads\n", n);
        _exit(1);
    }
    for (uint32_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    *done = bar.done;
    return (bar.t1 - bar.t0) * 1e-9;
}

/* ---- deed ----------------------------------------------------------------------------------- */

static deed_task_id_t task_id; /* looked up by main on every rank */

struct sweep_ctx {
    deed_ctx_t *ctx;
    uint64_t width, steps, iters, seed;
    int stencil;
    uint64_t L;          /* steps in flight */
    deed_ref_t *refs;    /* L x width */
    uint64_t *expect;    /* L x width */
    uint64_t spun;       /* spin(seed, iters) */
    uint64_t wrong;      /* results that did not match */
    int inject;          /* self-test: task (1, 0) is told it is (1, 1) */
};

/* Wait for step @p t (in its slot), check and release its results. */
static deed_status_t retire(struct sweep_ctx *s, uint64_t t)
{
    deed_ref_t *r = &s->refs[(t % s->L) * s->width];
    const uint64_t *e = &s->expect[(t % s->L) * s->width];
    deed_status_t rc = deed_wait(s->ctx, r, (uint32_t)s->width, (uint32_t)s->width,
                                 BENCH_WAIT_US, NULL);
    for (uint64_t i = 0; i < s->width && rc == DEED_OK; i++) {
        uint64_t v = 0;
        size_t size = 0;
        rc = deed_get_copy(s->ctx, r[i], &v, sizeof(v), &size, BENCH_WAIT_US);
        if (rc == DEED_OK && (size != sizeof(v) || v != e[i])) {
            if (s->wrong++ == 0)
                fprintf(stderr, "bench_metg: task (%" PRIu64 ", %" PRIu64 ") returned %" PRIu64
                                " (%zu bytes), expected %" PRIu64 "\n",
                        t, i, v, size, e[i]);
        }
    }
    deed_ref_release_n(s->ctx, r, (uint32_t)s->width);
    return rc;
}

/* Submit step @p t into its slot; the expected values go beside the refs. */
static deed_status_t submit_step(struct sweep_ctx *s, uint64_t t)
{
    deed_ref_t *r = &s->refs[(t % s->L) * s->width];
    uint64_t *e = &s->expect[(t % s->L) * s->width];
    const deed_ref_t *pr = &s->refs[((t + s->L - 1) % s->L) * s->width];
    const uint64_t *pe = &s->expect[((t + s->L - 1) % s->L) * s->width];
    for (uint64_t i = 0; i < s->width; i++) {
        struct task_spec spec = {s->iters, s->seed, t, i + (s->inject && t == 1 && i == 0)};
        deed_arg_in_t a[4];
        uint32_t na = 1;
        uint64_t in_sum = 0;
        a[0] = DEED_VAL(&spec, sizeof(spec));
        if (s->stencil && t > 0) {
            uint64_t lo = i > 0 ? i - 1 : 0, hi = i + 1 < s->width ? i + 1 : i;
            for (uint64_t j = lo; j <= hi; j++) {
                a[na++] = DEED_REF(pr[j]);
                in_sum += pe[j];
            }
        }
        e[i] = task_value(s->spun, in_sum, t, i);
        deed_status_t rc = deed_submit(s->ctx, task_id, a, na, &r[i], 1);
        if (rc != DEED_OK) {
            if (i)
                deed_ref_release_n(s->ctx, r, (uint32_t)i);
            return rc;
        }
    }
    return DEED_OK;
}

/* One point: T steps of the pattern at @p iters; *wall gets the time. 0 or -1. */
static int deed_point(struct sweep_ctx *s, double *wall)
{
    deed_status_t rc = DEED_OK;
    uint64_t t = 0, retired = 0;
    s->spun = spin(s->seed, s->iters);
    double t0 = bench_now_ns();
    for (; t < s->steps; t++) {
        if (t >= s->L) {
            rc = retire(s, retired++);
            if (rc != DEED_OK)
                break;
        }
        rc = submit_step(s, t);
        if (rc != DEED_OK)
            break;
    }
    while (rc == DEED_OK && retired < t)
        rc = retire(s, retired++);
    *wall = (bench_now_ns() - t0) * 1e-9;
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_metg: %s at step %" PRIu64 ": %s\n",
                s->stencil ? "stencil" : "nodep", retired, deed_strerror(rc));
        /* the steps submitted and not retired stay referenced: the caller exits */
        return -1;
    }
    return s->wrong ? -1 : 0;
}

/* ---- sweeps --------------------------------------------------------------------------------- */

/* The grains from --max-grain down to @p min_grain, geometrically. */
static int make_grains(const struct opts *o, double min_grain, double *g)
{
    int n = 0;
    for (int k = 0; n < MAX_POINTS; k++) {
        double v = o->max_grain * pow(10.0, -(double)k / (double)o->per_decade);
        if (v < min_grain * (1 - 1e-9))
            break;
        g[n++] = v;
    }
    return n;
}

static double print_metg(const char *bench, const char *pattern, const struct point *pts, int n,
                         uint64_t width, int *found_out)
{
    int found;
    double m = metg50(pts, n, &found);
    *found_out = found;
    printf("{\"bench\":\"%s\",\"metric\":\"metg50\",\"value\":%.4g,\"unit\":\"us\","
           "\"pattern\":\"%s\",\"workers\":%" PRIu64 ",\"found\":%s}\n",
           bench, m, pattern, width, found ? "true" : "false");
    return m;
}

/* One swept series: the baseline (sc == NULL) or a deed pattern. */
struct series {
    const char *bench, *pattern;
    struct sweep_ctx *sc;
    struct point pts[MAX_POINTS];
    int n;
    double prev_g, prev_step; /* previous point: grain and wall time per step (us) */
    uint64_t steps, iters;    /* of the current point */
    double step_s;            /* fastest repetition of the current point: seconds per step */
    /* rank 0's counters over the repetitions of the current point (deed only) */
    uint64_t ran, lreq, lspill; /* task bodies run, leases requested, leases spilled */
};

/* Start point @p g of @p se: choose T and the spin iterations. */
static void series_begin(const struct opts *o, uint64_t width, double rate, struct series *se,
                         double g)
{
    se->steps = choose_steps(o, width, g, se->prev_g, se->prev_step);
    se->iters = (uint64_t)llround(g * rate);
    se->iters = se->iters ? se->iters : 1;
    se->step_s = 0;
    se->ran = se->lreq = se->lspill = 0;
    if (se->sc) {
        se->sc->steps = se->steps;
        se->sc->iters = se->iters;
    }
}

/* One repetition of the current point; 0 or -1. */
static int series_rep(const struct opts *o, deed_ctx_t *ctx, uint64_t width, struct series *se,
                      uint64_t r)
{
    double w;
    uint64_t done = se->steps;
    if (se->sc == NULL) {
        w = baseline_run((uint32_t)width, se->steps, se->iters, 3 * o->point_time + 0.2, &done);
    } else {
        deed_stats_t st0, st1;
        if (bench_stats(ctx, &st0) != 0 || deed_point(se->sc, &w) != 0 ||
            bench_stats(ctx, &st1) != 0)
            return -1;
        se->ran += st1.tasks_run - st0.tasks_run;
        se->lreq += st1.leases_requested - st0.leases_requested;
        se->lspill += st1.leases_spilled - st0.leases_spilled;
    }
    double step_s = w / (double)(done ? done : 1);
    se->step_s = r == 0 || step_s < se->step_s ? step_s : se->step_s;
    return 0;
}

/* Record and print the current point (grain @p g) of @p se. */
static void series_end(const struct opts *o, uint64_t width, struct series *se, double g)
{
    uint64_t tasks = se->steps * width;
    double wall = se->step_s * (double)se->steps; /* of the fastest repetition, per T steps */
    struct point *pt = &se->pts[se->n++];
    *pt = (struct point){g, g * 1e-6 / se->step_s};
    se->prev_g = g;
    se->prev_step = se->step_s * 1e6;
    printf("{\"bench\":\"%s\",\"metric\":\"efficiency\",\"value\":%.4f,\"unit\":\"fraction\","
           "\"pattern\":\"%s\",\"grain_us\":%.4g,\"tasks\":%" PRIu64 ",\"workers\":%" PRIu64
           ",\"steps\":%" PRIu64 ",\"wall_s\":%.4f",
           se->bench, pt->eff, se->pattern, g, tasks, width, se->steps, wall);
    if (se->sc)
        printf(",\"overhead_us\":%.3f,\"rank0_share\":%.3f,\"leases_requested\":%" PRIu64
               ",\"leases_spilled\":%" PRIu64,
               wall * 1e6 * (double)width / (double)tasks - g,
               (double)se->ran / (double)(tasks * o->reps), se->lreq, se->lspill);
    printf("}\n");
}

/*
 * The sweep. The series (baseline first, then nodep and stencil) are interleaved: for each
 * grain, repetition r of every series runs before repetition r + 1 of any, so the baseline
 * and deed see the same load of the machine. Then the baseline alone goes on past
 * --min-grain (down to a hundredth of it) until its efficiency falls below 0.5, so its METG
 * is found and the ratio means something.
 */
static int sweep(deed_ctx_t *ctx, const struct opts *o, uint64_t width, double rate)
{
    static struct series ser[3];
    struct sweep_ctx sc[2];
    int nser = 0, status = -1;
    double g[MAX_POINTS];
    int ng = make_grains(o, o->min_grain / 100, g);

    memset(ser, 0, sizeof(ser));
    memset(sc, 0, sizeof(sc));
    if (!o->no_baseline)
        ser[nser++] = (struct series){.bench = "metg_baseline", .pattern = "barrier"};
    for (int stencil = 0; stencil < 2; stencil++) {
        if (!(stencil ? o->stencil : o->nodep))
            continue;
        struct sweep_ctx *c = &sc[stencil];
        *c = (struct sweep_ctx){.ctx = ctx, .width = width, .seed = 0x1234567,
                                .stencil = stencil, .inject = o->inject};
        c->L = INFLIGHT_TASKS / width > 2 ? INFLIGHT_TASKS / width : 2;
        c->refs = calloc(c->L * width, sizeof(*c->refs));
        c->expect = calloc(c->L * width, sizeof(*c->expect));
        if (c->refs == NULL || c->expect == NULL)
            goto out;
        ser[nser++] = (struct series){.bench = "metg", .pattern = stencil ? "stencil" : "nodep",
                                      .sc = c};
    }
    for (int k = 0; k < ng; k++) {
        int below = g[k] < o->min_grain * (1 - 1e-9);
        struct series *base = o->no_baseline ? NULL : &ser[0];
        if (below && (base == NULL || (base->n > 0 && base->pts[base->n - 1].eff < 0.5)))
            break;
        int last = below ? 1 : nser; /* below --min-grain: the baseline alone */
        for (int i = 0; i < last; i++)
            series_begin(o, width, rate, &ser[i], g[k]);
        for (uint64_t r = 0; r < o->reps; r++)
            for (int i = 0; i < last; i++)
                if (series_rep(o, ctx, width, &ser[i], r) != 0)
                    goto out;
        for (int i = 0; i < last; i++)
            series_end(o, width, &ser[i], g[k]);
    }
    double base_metg = 0;
    int base_found = 0;
    for (int i = 0; i < nser; i++) {
        int found;
        double m = print_metg(ser[i].bench, ser[i].pattern, ser[i].pts, ser[i].n, width, &found);
        if (ser[i].sc == NULL) {
            base_metg = m;
            base_found = found;
        } else if (base_metg > 0) {
            printf("{\"bench\":\"metg\",\"metric\":\"metg50_over_baseline\",\"value\":%.3f,"
                   "\"unit\":\"x\",\"pattern\":\"%s\",\"workers\":%" PRIu64
                   ",\"found\":%s}\n",
                   m / base_metg, ser[i].pattern, width, found && base_found ? "true" : "false");
        }
    }
    status = 0;
out:
    for (int i = 0; i < 2; i++) {
        free(sc[i].refs);
        free(sc[i].expect);
    }
    return status;
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--quick] [--workers W] [--pattern nodep|stencil|both] [--max-grain US]\n"
            "          [--min-grain US] [--per-decade N] [--point-time S] [--reps R]\n"
            "          [--inject-error] [--no-baseline] [--steps T]\n"
            "  --quick          a smoke run: grains 100..1 us, ~0.02 s per point\n"
            "  --workers W      workers per rank, 1..1024 (default: the CPUs of this process)\n"
            "  --pattern P      nodep, stencil or both (default both)\n"
            "  --max-grain US   largest task duration, 0.01..1000000 us (default 1000)\n"
            "  --min-grain US   smallest task duration, 0.01..1000000 us (default 0.2)\n"
            "  --per-decade N   grains per decade, 1..20 (default 3)\n"
            "  --point-time S   seconds per repetition of a point, 0.001..60 (default 0.1)\n"
            "  --reps R         repetitions per point, the fastest counts, 1..100 (default 3;\n"
            "                   quick 1)\n"
            "  --inject-error   self-test: one task is given a wrong index; the check of the\n"
            "                   results must catch it (exit status 1)\n"
            "  --no-baseline    skip the pthread baseline (to profile the runtime alone)\n"
            "  --steps T        T of every point, 1..100000000 (default: from --point-time;\n"
            "                   for instruction counts under callgrind)\n"
            "One rank, or under deedrun -n P: rank 0 drives, width = W x P.\n",
            prog);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.workers = (uint64_t)bench_ncpus(), .max_grain = 1000, .min_grain = 0.2,
                       .per_decade = 3, .point_time = 0.1, .reps = 3, .nodep = 1,
                       .stencil = 1};
    for (int i = 1; i < argc; i++) /* --quick sets the base; the other options override it */
        if (strcmp(argv[i], "--quick") == 0) {
            o->max_grain = 100;
            o->min_grain = 1;
            o->point_time = 0.02;
            o->reps = 1;
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
        if (strcmp(a, "--no-baseline") == 0) {
            o->no_baseline = 1;
            continue;
        }
        if (strcmp(a, "--pattern") == 0) {
            if (v && strcmp(v, "nodep") == 0)
                o->nodep = 1, o->stencil = 0;
            else if (v && strcmp(v, "stencil") == 0)
                o->nodep = 0, o->stencil = 1;
            else if (v && strcmp(v, "both") == 0)
                o->nodep = 1, o->stencil = 1;
            else {
                fprintf(stderr, "%s: --pattern wants nodep, stencil or both, got '%s'\n",
                        argv[0], v ? v : "(nothing)");
                return -1;
            }
        } else if (strcmp(a, "--workers") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, 1024, &o->workers);
        else if (strcmp(a, "--max-grain") == 0)
            rc = bench_parse_double(argv[0], a, v, 0.01, 1e6, &o->max_grain);
        else if (strcmp(a, "--min-grain") == 0)
            rc = bench_parse_double(argv[0], a, v, 0.01, 1e6, &o->min_grain);
        else if (strcmp(a, "--per-decade") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, 20, &o->per_decade);
        else if (strcmp(a, "--point-time") == 0)
            rc = bench_parse_double(argv[0], a, v, 0.001, 60, &o->point_time);
        else if (strcmp(a, "--steps") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, 100000000, &o->steps);
        else if (strcmp(a, "--reps") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, 100, &o->reps);
        else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", argv[0], a);
            return -1;
        }
        if (rc != 0)
            return -1;
        i++;
    }
    if (o->min_grain > o->max_grain) {
        fprintf(stderr, "%s: --min-grain (%g) is above --max-grain (%g)\n", argv[0],
                o->min_grain, o->max_grain);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    task_id = deed_task_id("bench_metg_task");

    deed_config_t cfg;
    deed_ctx_t *ctx;
    deed_status_t rc = deed_config_default(&cfg);
    if (rc == DEED_OK)
        rc = deed_config_from_env(&cfg);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_metg: configuration: %s\n", deed_strerror(rc));
        return 1;
    }
    cfg.num_workers = (uint32_t)o.workers;
    if (cfg.max_threads < cfg.num_workers)
        cfg.max_threads = cfg.num_workers;
    rc = deed_init(&cfg, &ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_metg: deed_init: %s\n", deed_strerror(rc));
        return 1;
    }
    int status = 0;
    if (deed_rank(ctx) == 0) {
        uint64_t width = o.workers * (uint64_t)deed_nranks(ctx);
        if (bench_ping_ranks(ctx) != 0)
            goto fail;
        double rate = calibrate();
        printf("{\"bench\":\"metg\",\"metric\":\"spin_rate\",\"value\":%.2f,"
               "\"unit\":\"iters/us\"}\n",
               rate);
        if (width > 1024) {
            fprintf(stderr, "bench_metg: the baseline runs at most 1024 threads\n");
            goto fail;
        }
        if (sweep(ctx, &o, width, rate) != 0)
            goto fail;
        if (bench_release_ranks(ctx) != 0)
            status = 1;
    } else {
        bench_serve_until_released();
    }
    rc = deed_finalize(ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_metg: deed_finalize: %s\n", deed_strerror(rc));
        status = 1;
    }
    return status;
fail:
    fprintf(stderr, "bench_metg: failed\n");
    fflush(stdout);
    _exit(1); /* the runtime may be stuck; deedrun ends the other ranks */
}
