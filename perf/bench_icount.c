/*
 * bench_icount.c — a fixed amount of deed work, and nothing else, for instruction counting.
 *
 * perf/callgrind.sh runs this program under `valgrind --tool=callgrind` twice with different
 * task counts and divides the difference of the instruction totals by the difference of the
 * task counts: start-up, connection set-up and finalize cancel out, leaving the instructions
 * one more task costs (all threads of the process, and for --mode remote both ranks).
 * Unlike wall-clock figures, that number does not move when the machine is busy.
 *
 * Modes (one per run):
 *   pipelined  N empty tasks (one return each), submitted in windows of W, deed_wait on the
 *              window, deed_ref_release_n (the loop of bench_local's tasks_per_s_pipelined)
 *   sync       N times: submit one empty task, deed_get it, release the view and the ref
 *              (bench_local's sync_round_trip)
 *   remote     two ranks (deedrun -n 2): rank 0 submits N empty tasks pinned to rank 1 in
 *              windows of W (bench_remote's tasks_per_s_pipelined)
 *
 * Output: one JSON line on rank 0's stdout saying what ran (the instruction counts come from
 * callgrind, not from here); errors on stderr, exit status 1.
 *
 * usage: bench_icount --mode pipelined|sync|remote [--tasks N] [--window W]
 */
#include <deed.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_US (600 * 1000000LL) /* valgrind is slow: generous */

static int empty_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    return 0;
}
DEED_REGISTER_AS(empty_task, "icount_empty")

/* Rank 0 runs this on rank 1 last: rank 1 may then finalize. */
static atomic_int may_finish;

static int done_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    atomic_store(&may_finish, 1);
    return 0;
}
DEED_REGISTER_AS(done_task, "icount_done")

#define CHECK(call)                                                                           \
    do {                                                                                      \
        deed_status_t rc_ = (call);                                                           \
        if (rc_ != DEED_OK) {                                                                 \
            fprintf(stderr, "bench_icount: %s: %s\n", #call, deed_strerror(rc_));             \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)

static int run_pipelined(deed_ctx_t *ctx, uint64_t n, uint32_t window, int rank)
{
    deed_submit_opts_t opts = DEED_SUBMIT_OPTS_INIT;
    opts.rank = rank;
    deed_task_id_t id = deed_task_id("icount_empty");
    deed_ref_t *refs = malloc(window * sizeof(*refs));
    if (refs == NULL) {
        fprintf(stderr, "bench_icount: out of memory\n");
        return -1;
    }
    int rc = -1;
    for (uint64_t done = 0; done < n;) {
        uint32_t w = n - done < window ? (uint32_t)(n - done) : window;
        for (uint32_t i = 0; i < w; i++)
            if (deed_submit_opts(ctx, id, NULL, 0, &refs[i], 1, &opts) != DEED_OK)
                goto out;
        if (deed_wait(ctx, refs, w, w, WAIT_US, NULL) != DEED_OK ||
            deed_ref_release_n(ctx, refs, w) != DEED_OK)
            goto out;
        done += w;
    }
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "bench_icount: a pipelined submit, wait or release failed\n");
    free(refs);
    return rc;
}

static int run_sync(deed_ctx_t *ctx, uint64_t n)
{
    deed_task_id_t id = deed_task_id("icount_empty");
    for (uint64_t i = 0; i < n; i++) {
        deed_ref_t ref;
        deed_view_t v;
        CHECK(deed_submit(ctx, id, NULL, 0, &ref, 1));
        CHECK(deed_get(ctx, ref, &v, WAIT_US));
        CHECK(deed_view_release(ctx, &v));
        CHECK(deed_ref_release(ctx, ref));
    }
    return 0;
}

/* Rank 0 tells rank 1 it may finalize; rank 1 serves until then. */
static int finish_remote(deed_ctx_t *ctx, int rank)
{
    if (rank == 0) {
        deed_submit_opts_t opts = DEED_SUBMIT_OPTS_INIT;
        opts.rank = 1;
        deed_ref_t ref;
        CHECK(deed_submit_opts(ctx, deed_task_id("icount_done"), NULL, 0, &ref, 1, &opts));
        CHECK(deed_wait(ctx, &ref, 1, 1, WAIT_US, NULL));
        CHECK(deed_ref_release(ctx, ref));
    } else {
        while (!atomic_load(&may_finish))
            usleep(2000);
    }
    return 0;
}

static void usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s --mode pipelined|sync|remote [--tasks N] [--window W]\n"
            "  --mode M     pipelined: N empty local tasks in windows of W; sync: N submit+get\n"
            "               round trips; remote: N empty tasks from rank 0 to rank 1 in\n"
            "               windows of W (run it with deedrun -n 2)\n"
            "  --tasks N    tasks (default 1000)\n"
            "  --window W   tasks submitted before each deed_wait, 1..1000000 (default 1000)\n",
            prog);
}

int main(int argc, char **argv)
{
    const char *mode = NULL;
    uint64_t tasks = 1000;
    uint32_t window = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout, argv[0]);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_icount: %s needs a value\n", a);
            usage(stderr, argv[0]);
            return 2;
        }
        const char *v = argv[++i];
        char *end;
        unsigned long long n = strtoull(v, &end, 10);
        if (strcmp(a, "--mode") == 0 &&
            (strcmp(v, "pipelined") == 0 || strcmp(v, "sync") == 0 || strcmp(v, "remote") == 0)) {
            mode = v;
        } else if (strcmp(a, "--tasks") == 0 && *end == '\0' && end != v && n >= 1) {
            tasks = n;
        } else if (strcmp(a, "--window") == 0 && *end == '\0' && end != v && n >= 1 &&
                   n <= 1000000) {
            window = (uint32_t)n;
        } else {
            fprintf(stderr, "bench_icount: bad option or value: %s %s\n", a, v);
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (mode == NULL) {
        fprintf(stderr, "bench_icount: --mode is required (pipelined, sync or remote)\n");
        usage(stderr, argv[0]);
        return 2;
    }

    deed_ctx_t *ctx;
    deed_status_t rc = deed_init(NULL, &ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_icount: deed_init: %s\n", deed_strerror(rc));
        return 1;
    }
    int rank = deed_rank(ctx), nranks = deed_nranks(ctx);
    int remote = strcmp(mode, "remote") == 0;
    int status = 0;
    if (remote && nranks < 2) {
        fprintf(stderr, "bench_icount: --mode remote needs two ranks (deedrun -n 2 %s ...)\n",
                argv[0]);
        status = 2;
    } else if (!remote && nranks != 1) {
        fprintf(stderr, "bench_icount: --mode %s runs on one rank\n", mode);
        status = 2;
    } else if (rank == 0) {
        int r = strcmp(mode, "sync") == 0 ? run_sync(ctx, tasks)
                                          : run_pipelined(ctx, tasks, window, remote ? 1 : -1);
        status = r == 0 ? 0 : 1;
    }
    if (status == 1) {
        _exit(1); /* the runtime may be stuck; deedrun ends the other rank */
    }
    if (remote && status == 0 && finish_remote(ctx, rank) != 0)
        status = 1;
    if (status == 0 && rank == 0)
        printf("{\"bench\":\"icount_run\",\"metric\":\"tasks\",\"value\":%" PRIu64 ","
               "\"unit\":\"tasks\",\"mode\":\"%s\",\"window\":%u,\"ranks\":%d}\n",
               tasks, mode, window, nranks);
    rc = deed_finalize(ctx);
    if (rc != DEED_OK) {
        fprintf(stderr, "bench_icount: rank %d: deed_finalize: %s\n", rank, deed_strerror(rc));
        if (status == 0)
            status = 1;
    }
    return status;
}
