/*
 * bench_borrow.c — the paper's borrowing benchmark: N tasks all reading one 1 MiB object,
 * submitted by the driver itself (k = 0) or fanned out through k borrower tasks.
 *
 * Run: `deedrun -n 2 bench_borrow [options]` (any number of ranks, 1 included). Rank 0 is
 * the driver: it puts one object of --size bytes (a known pattern), then for each k:
 *   k = 0     the driver submits the N reader tasks itself, each taking the object by
 *             reference (DEED_REF), in windows of W: submit W, deed_wait, get each result,
 *             release. The driver owns every reader's return.
 *   k >= 1    the driver submits k borrower tasks that receive the object's ref as a future
 *             (DEED_FUT: each becomes a borrower); borrower i submits its share of the N
 *             readers (DEED_REF of the borrowed ref) the same way, in windows of W/k, and
 *             returns a summary. The readers' returns are owned by the borrowers, wherever
 *             those run. W/k keeps the same number of readers in flight for every k: the
 *             runtime's rate falls as the tasks in flight grow (measured on one rank, k = 0:
 *             1.2 M tasks/s with W = 1000, 0.16 M with W = 50000), which would otherwise
 *             mask the effect of the borrowers.
 * A reader sums 8 words of the object at an offset given by its index and returns the sum;
 * whoever waits for it compares the sum with the expected one, and rank 0 checks the job-wide
 * count and checksum. Tasks run wherever the runtime places them (readers: where the object
 * is, or under a lease; borrowers: under a lease), unless --pin pins borrower i to rank
 * i mod P. The other ranks only serve (see benchutil.h).
 *
 * The paper's setting (one owner per node, the owner's node the bottleneck) is one core and
 * one worker per rank with the borrowers spread: `DEED_WORKERS=1 deedrun -n 2 --bind core
 * bench_borrow --pin` (benchmark 'borrow_pinned_1core'). Unpinned, the k borrowers go
 * through one lease (32 tasks in flight per lease) and so all run on the same rank.
 *
 * Output (rank 0's stdout; deedrun prefixes "[0] "), one JSON object per line, per k:
 *   {"bench":"borrow","metric":"tasks_per_s","value":R,"unit":"tasks/s","k":K,"tasks":N,
 *    "ranks":P, ...}                     R = best of --runs runs; extra fields: median, runs,
 *                                        window, size, borrowers ("spread" or "pinned"),
 *                                        rank0_tasks_run (task bodies run on rank 0, mean
 *                                        per run)
 *   {"bench":"borrow","metric":"speedup_over_driver","value":R_k/R_0,"unit":"x","k":K,...}
 *                                        (when k = 0 was run too: the baseline of the command)
 * Exit status: 0; 1 if a reader got wrong bytes, a count or checksum is off, or a call
 * failed; 2 for bad options.
 *
 * usage: bench_borrow [--quick] [--tasks N] [--k LIST] [--window W] [--runs R] [--size BYTES]
 *                     [--pin] [--inject-error]
 * (--k, --window, --runs, --size, --pin and --inject-error are additions to the CLI of the
 * issue.)
 */
#include "benchutil.h"

#include <deed.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_K 64
#define READ_WORDS 8

struct opts {
    uint64_t tasks;  /* reader tasks per run */
    uint64_t window; /* readers submitted before each wait */
    uint64_t runs;   /* runs per k (best and median reported) */
    uint64_t size;   /* object bytes, a multiple of 8 */
    uint32_t ks[MAX_K];
    uint32_t nk;
    int pin;    /* borrower i pinned to rank i mod P */
    int inject; /* self-test: one reader per run gets a wrong index (the run must fail) */
};

/* What a reader loop (the driver's, or a borrower's) reports. */
struct read_sum {
    uint64_t ok;  /* readers whose sum was right */
    uint64_t bad; /* readers whose sum was wrong, or that failed */
    uint64_t sum; /* sum of the readers' sums (wrapping) */
};

/* A borrower's share of the readers. */
struct share {
    uint64_t first, count, window;
    uint64_t inject; /* --inject-error: reader first+inject-1 is given the wrong index */
};

static inline uint64_t pattern(uint64_t i)
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 0x5851F42D4C957F2Dull;
    x ^= x >> 29;
    return x * 0xBF58476D1CE4E5B9ull;
}

static inline uint64_t read_offset(uint64_t idx, uint64_t words)
{
    return (idx * 4099u) % (words - READ_WORDS + 1);
}

/* The sum reader @p idx must find in an object of @p words words. */
static uint64_t expected_sum(uint64_t idx, uint64_t words)
{
    uint64_t off = read_offset(idx, words), s = 0;
    for (uint64_t j = 0; j < READ_WORDS; j++)
        s += pattern(off + j);
    return s;
}

/* ---- tasks ---------------------------------------------------------------------------------- */

static deed_task_id_t read_id, borrower_id; /* looked up by main on every rank */

/* args: [0] the object (REF), [1] the reader's index (VAL uint64). Returns the sum of
 * READ_WORDS words at the index's offset. */
static int reader(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    uint64_t idx;
    if (nargs != 2 || args[0].kind != DEED_ARG_REF || args[1].size != sizeof(idx) ||
        args[0].size % 8 != 0 || args[0].size < READ_WORDS * 8)
        return deed_task_fail(task, 1, "bench_borrow_read: bad arguments");
    memcpy(&idx, args[1].data, sizeof(idx));
    const uint64_t *w = args[0].data;
    uint64_t off = read_offset(idx, args[0].size / 8), s = 0;
    for (uint64_t j = 0; j < READ_WORDS; j++)
        s += w[off + j];
    return deed_task_return(task, 0, &s, sizeof(s)) == DEED_OK ? 0 : 2;
}
DEED_REGISTER_AS(reader, "bench_borrow_read")

/*
 * Submit @p count readers of @p obj (indices first..first+count-1) in windows of @p window,
 * check each one's sum, add them to @p out. Returns DEED_OK or the first API error.
 */
static deed_status_t read_loop(deed_ctx_t *ctx, deed_ref_t obj, uint64_t words,
                               const struct share *sh, struct read_sum *out)
{
    uint64_t w = sh->window < sh->count ? sh->window : sh->count;
    deed_ref_t *refs = calloc(w ? w : 1, sizeof(*refs));
    deed_status_t rc = DEED_OK;
    uint32_t live = 0;
    if (refs == NULL)
        return DEED_ERR_NO_MEMORY;
    for (uint64_t done = 0; done < sh->count && rc == DEED_OK;) {
        uint64_t n = sh->count - done < w ? sh->count - done : w;
        for (live = 0; live < n; live++) {
            uint64_t idx = sh->first + done + live;
            if (sh->inject && done + live == sh->inject - 1)
                idx++; /* self-test: this reader's sum will not be the expected one */
            deed_arg_in_t a[2] = {DEED_REF(obj), DEED_VAL(&idx, sizeof(idx))};
            rc = deed_submit(ctx, read_id, a, 2, &refs[live], 1);
            if (rc != DEED_OK)
                goto out;
        }
        rc = deed_wait(ctx, refs, live, live, BENCH_WAIT_US, NULL);
        if (rc != DEED_OK)
            goto out;
        for (uint32_t i = 0; i < live; i++) {
            uint64_t s = 0, idx = sh->first + done + i;
            size_t size = 0;
            deed_status_t g = deed_get_copy(ctx, refs[i], &s, sizeof(s), &size,
                                             BENCH_WAIT_US);
            if (g == DEED_OK && size == sizeof(s) && s == expected_sum(idx, words)) {
                out->ok++;
                out->sum += s;
            } else {
                if (out->bad == 0)
                    fprintf(stderr, "bench_borrow: reader %" PRIu64 ": %s, sum %" PRIu64
                                    " (expected %" PRIu64 ")\n",
                            idx, g == DEED_OK ? "wrong sum" : deed_strerror(g), s,
                            expected_sum(idx, words));
                out->bad++;
            }
        }
        rc = deed_ref_release_n(ctx, refs, live);
        live = 0;
        done += n;
    }
out:
    if (live)
        deed_ref_release_n(ctx, refs, live);
    free(refs);
    return rc;
}

/* args: [0] the object (FUT: this task borrows it), [1] struct share (VAL). Returns a
 * struct read_sum for its readers. */
static int borrower(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    struct share sh;
    if (nargs != 2 || args[0].kind != DEED_ARG_FUTURE || args[1].size != sizeof(sh))
        return deed_task_fail(task, 1, "bench_borrow_borrower: bad arguments");
    memcpy(&sh, args[1].data, sizeof(sh));
    deed_ctx_t *ctx = deed_task_ctx(task);
    /* the borrower learns the object's size from the object itself (one get: a pull if the
     * object is elsewhere, which the readers placed here would need anyway) */
    deed_view_t v;
    deed_status_t rc = deed_get(ctx, args[0].ref, &v, BENCH_WAIT_US);
    if (rc != DEED_OK) {
        if (v.priv)
            deed_view_release(ctx, &v);
        return deed_task_fail(task, 2, "borrower: get of the borrowed object: %s",
                              deed_strerror(rc));
    }
    uint64_t words = v.size / 8;
    deed_view_release(ctx, &v);
    struct read_sum res = {0, 0, 0};
    rc = read_loop(ctx, args[0].ref, words, &sh, &res);
    if (rc != DEED_OK)
        return deed_task_fail(task, 3, "borrower: %s", deed_strerror(rc));
    return deed_task_return(task, 0, &res, sizeof(res)) == DEED_OK ? 0 : 4;
}
DEED_REGISTER_AS(borrower, "bench_borrow_borrower")

/* ---- driver (rank 0) ----------------------------------------------------------------------- */

/* One run with @p k borrowers; *secs gets its wall time. 0, or -1 on a failed call or a
 * wrong result. */
static int run_once(deed_ctx_t *ctx, const struct opts *o, deed_ref_t obj, uint32_t k,
                    uint64_t expect_sum, double *secs)
{
    int nranks = deed_nranks(ctx);
    uint64_t words = o->size / 8;
    struct read_sum total = {0, 0, 0};
    deed_ref_t rets[MAX_K];
    uint32_t nrets = 0;
    deed_status_t rc = DEED_OK;
    int status = -1;

    double t0 = bench_now_ns();
    if (k == 0) {
        struct share sh = {0, o->tasks, o->window, o->inject ? o->tasks / 2 + 1 : 0};
        rc = read_loop(ctx, obj, words, &sh, &total);
        if (rc != DEED_OK)
            goto out;
    } else {
        uint64_t first = 0;
        for (nrets = 0; nrets < k; nrets++) {
            uint64_t count = o->tasks / k + (nrets < o->tasks % k);
            uint64_t w = o->window / k ? o->window / k : 1; /* same total in flight as k=0 */
            struct share sh = {first, count, w, o->inject && nrets == k - 1 ? count : 0};
            deed_arg_in_t a[2] = {DEED_FUT(obj), DEED_VAL(&sh, sizeof(sh))};
            deed_submit_opts_t so = DEED_SUBMIT_OPTS_INIT;
            if (o->pin)
                so.rank = (int32_t)(nrets % (uint32_t)nranks);
            rc = deed_submit_opts(ctx, borrower_id, a, 2, &rets[nrets], 1, &so);
            if (rc != DEED_OK)
                goto out;
            first += count;
        }
        for (uint32_t i = 0; i < k; i++) {
            struct read_sum r;
            size_t size = 0;
            rc = deed_get_copy(ctx, rets[i], &r, sizeof(r), &size, BENCH_WAIT_US);
            if (rc != DEED_OK || size != sizeof(r)) {
                fprintf(stderr, "bench_borrow: borrower %u of %u: %s\n", i, k,
                        rc != DEED_OK ? deed_strerror(rc) : "wrong result size");
                goto out;
            }
            total.ok += r.ok;
            total.bad += r.bad;
            total.sum += r.sum;
        }
    }
    *secs = (bench_now_ns() - t0) * 1e-9;
    if (total.ok != o->tasks || total.bad != 0 || total.sum != expect_sum) {
        fprintf(stderr,
                "bench_borrow: k=%u: %" PRIu64 " readers right, %" PRIu64 " wrong (of %" PRIu64
                "), checksum %" PRIu64 " (expected %" PRIu64 ")\n",
                k, total.ok, total.bad, o->tasks, total.sum, expect_sum);
        goto out;
    }
    status = 0;
out:
    if (rc != DEED_OK)
        fprintf(stderr, "bench_borrow: k=%u: %s\n", k, deed_strerror(rc));
    if (nrets)
        deed_ref_release_n(ctx, rets, nrets);
    return status;
}

static int drive(deed_ctx_t *ctx, const struct opts *o)
{
    int nranks = deed_nranks(ctx);
    uint64_t words = o->size / 8;
    uint64_t *buf = malloc(o->size);
    double *secs = calloc(o->runs, sizeof(*secs));
    deed_ref_t obj = DEED_REF_NULL;
    double base = 0;
    int status = -1;

    if (buf == NULL || secs == NULL || read_id == 0 || borrower_id == 0)
        goto out;
    for (uint64_t i = 0; i < words; i++)
        buf[i] = pattern(i);
    deed_status_t rc = deed_put(ctx, buf, o->size, &obj);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_borrow: deed_put of %" PRIu64 " bytes: %s\n", o->size,
                deed_strerror(rc));
        goto out;
    }
    uint64_t expect = 0;
    for (uint64_t i = 0; i < o->tasks; i++)
        expect += expected_sum(i, words);

    for (uint32_t ki = 0; ki < o->nk; ki++) {
        uint32_t k = o->ks[ki];
        deed_stats_t s0, s1;
        if (bench_stats(ctx, &s0) != 0)
            goto out;
        for (uint64_t r = 0; r < o->runs; r++)
            if (run_once(ctx, o, obj, k, expect, &secs[r]) != 0)
                goto out;
        if (bench_stats(ctx, &s1) != 0)
            goto out;
        double best = secs[0];
        for (uint64_t r = 1; r < o->runs; r++)
            best = secs[r] < best ? secs[r] : best;
        double med = bench_median(secs, o->runs);
        double rate = (double)o->tasks / best;
        printf("{\"bench\":\"borrow\",\"metric\":\"tasks_per_s\",\"value\":%.0f,"
               "\"unit\":\"tasks/s\",\"k\":%u,\"tasks\":%" PRIu64 ",\"ranks\":%d,"
               "\"median\":%.0f,\"runs\":%" PRIu64 ",\"window\":%" PRIu64 ",\"size\":%" PRIu64
               ",\"borrowers\":\"%s\",\"rank0_tasks_run\":%" PRIu64 "}\n",
               rate, k, o->tasks, nranks, (double)o->tasks / med, o->runs, o->window, o->size,
               o->pin ? "pinned" : "spread", (s1.tasks_run - s0.tasks_run) / o->runs);
        if (k == 0)
            base = rate;
        else if (base > 0)
            printf("{\"bench\":\"borrow\",\"metric\":\"speedup_over_driver\",\"value\":%.3f,"
                   "\"unit\":\"x\",\"k\":%u,\"tasks\":%" PRIu64 ",\"ranks\":%d}\n",
                   rate / base, k, o->tasks, nranks);
    }
    status = 0;
out:
    if (!deed_ref_is_null(obj))
        deed_ref_release(ctx, obj);
    free(buf);
    free(secs);
    return status;
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: deedrun -n P %s [--quick] [--tasks N] [--k LIST] [--window W] [--runs R]\n"
            "          [--size BYTES] [--pin] [--inject-error]\n"
            "  --quick        small counts (a smoke run of a few seconds)\n"
            "  --tasks N      reader tasks per run, 1..100000000 (default 100000; quick 5000)\n"
            "  --k LIST       borrower counts, comma-separated, 0..%d; 0 = the driver submits\n"
            "                 every reader itself (default 0,1,2,4,8)\n"
            "  --window W     readers in flight: the driver (k=0) submits W before each wait,\n"
            "                 each of k borrowers W/k; 1..1000000 (default 1000)\n"
            "  --runs R       runs per k, best and median reported, 1..100 (default 3; quick 1)\n"
            "  --size BYTES   size of the shared object, 64..1073741824, a multiple of 8\n"
            "                 (default 1048576)\n"
            "  --pin          pin borrower i to rank i mod P (default: placed by the runtime)\n"
            "  --inject-error self-test: one reader per run reads the wrong words; the\n"
            "                 checksum must catch it (exit status 1)\n"
            "Rank 0 drives and prints JSON lines; the other ranks serve.\n",
            prog, MAX_K);
}

static int parse_k_list(const char *prog, const char *s, struct opts *o)
{
    char buf[256];
    if (s == NULL || strlen(s) >= sizeof(buf)) {
        fprintf(stderr, "%s: --k wants a comma-separated list of integers in [0, %d]\n", prog,
                MAX_K);
        return -1;
    }
    strcpy(buf, s);
    o->nk = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (o->nk == MAX_K || bench_parse_u64(prog, "--k", tok, 0, MAX_K, &v) != 0)
            return -1;
        o->ks[o->nk++] = (uint32_t)v;
    }
    if (o->nk == 0) {
        fprintf(stderr, "%s: --k wants at least one value\n", prog);
        return -1;
    }
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const uint32_t def_ks[] = {0, 1, 2, 4, 8};
    *o = (struct opts){.tasks = 100000, .window = 1000, .runs = 3, .size = 1 << 20, .nk = 5};
    memcpy(o->ks, def_ks, sizeof(def_ks));
    for (int i = 1; i < argc; i++) /* --quick sets the base; the other options override it */
        if (strcmp(argv[i], "--quick") == 0) {
            o->tasks = 5000;
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
        if (strcmp(a, "--pin") == 0) {
            o->pin = 1;
            continue;
        }
        if (strcmp(a, "--inject-error") == 0) {
            o->inject = 1;
            continue;
        }
        if (strcmp(a, "--tasks") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, 100000000, &o->tasks);
        else if (strcmp(a, "--window") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, 1000000, &o->window);
        else if (strcmp(a, "--runs") == 0)
            rc = bench_parse_u64(argv[0], a, v, 1, 100, &o->runs);
        else if (strcmp(a, "--size") == 0) {
            rc = bench_parse_u64(argv[0], a, v, READ_WORDS * 8, 1ull << 30, &o->size);
            if (rc == 0 && o->size % 8 != 0) {
                fprintf(stderr, "%s: --size must be a multiple of 8, got %s\n", argv[0], v);
                rc = -1;
            }
        } else if (strcmp(a, "--k") == 0)
            rc = parse_k_list(argv[0], v, o);
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
    read_id = deed_task_id("bench_borrow_read");
    borrower_id = deed_task_id("bench_borrow_borrower");

    deed_config_t cfg;
    deed_ctx_t *ctx;
    deed_status_t rc = deed_config_default(&cfg);
    if (rc == DEED_OK)
        rc = deed_config_from_env(&cfg);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_borrow: configuration: %s\n", deed_strerror(rc));
        return 1;
    }
    if (getenv("DEED_STORE_SIZE") == NULL && cfg.store_size < 8 * o.size + (64u << 20))
        cfg.store_size = 8 * o.size + (64u << 20);
    rc = deed_init(&cfg, &ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_borrow: deed_init: %s\n", deed_strerror(rc));
        return 1;
    }
    int status = 0;
    if (deed_rank(ctx) == 0) {
        if (bench_ping_ranks(ctx) != 0 || drive(ctx, &o) != 0) {
            fprintf(stderr, "bench_borrow: failed\n");
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
        fprintf(stderr, "bench_borrow: deed_finalize: %s\n", deed_strerror(rc));
        status = 1;
    }
    return status;
}
