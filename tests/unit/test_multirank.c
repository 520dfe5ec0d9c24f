/*
 * test_multirank.c — deed across ranks, end to end: the real launcher ($DEED_TEST_DEEDRUN,
 * tools/deedrun) starts N local ranks of THIS binary, which then run as an SPMD deed program
 * (`<this> --rank SCENARIO`): every rank calls deed_init(NULL, ...), rank 0 drives the
 * scenario, every rank ends with deed_finalize, and the exit status says whether every check
 * passed (diagnostics on stdout, prefixed by deedrun with "[rank] ").
 *
 * The Check suite spawns `deedrun -n N <this> --rank SCENARIO` for each scenario, once over
 * shared memory (UCX_TLS=posix,sysv,cma,self) and once over tcp (UCX_TLS=tcp,self), captures
 * the output in a temporary file, asserts deedrun's exit status and the expected lines, and
 * prints the whole output on failure. A scenario passes only if deedrun exits 0, rank 0
 * prints "<scenario>: PASS", every rank prints "<scenario>: rank r finalized", and the runtime
 * logged no error (a correct program must not make it log " error: ").
 * Runtime bugs this suite found: tests/unit/BUGS-multirank.md.
 *
 * Scenarios (the rank program; every check can fail):
 *   remote_tasks   (4 ranks) 20,000 small tasks verified; tasks pinned to each rank run there;
 *                  unpinned tasks spread over at least 2 ranks.
 *   large_objects  (2 ranks) objects of 1 KiB .. 64 MiB made on rank 1, read by rank 0 byte
 *                  for byte, and checksummed by by-ref tasks on rank 1 and rank 0; then, per
 *                  size, a by-ref task on rank 0 submitted before its argument exists.
 *   three_ranks    (3 ranks) an 8 MiB object made on rank 1 (owned by rank 0) consumed
 *                  DEED_REF and DEED_FUT by tasks on rank 2 (pulled 1 -> 2, not via rank 0);
 *                  then twice with a slow producer (rank 2's LOCATE for the DEED_FUT
 *                  consumer's get is still out when the DEED_REF task brings the location),
 *                  each consumer submitted first once.
 *   borrower_chain (4 ranks) a future handed 0 -> 1 -> 2 -> 3 with nested submits, read on
 *                  rank 3; then a rank-2 task keeps (dups) the ref beyond its end, the driver
 *                  releases everything, and a later rank-2 task can still read it.
 *   random_dag     (4 ranks) 10,000 tasks of a random DAG (fixed seed) with small and large
 *                  (256 KiB - 2 MiB) objects, a quarter pinned to random ranks, every node's
 *                  result compared with a sequential computation in the driver, sinks' bytes
 *                  verified too; tasks per rank printed.
 *   long_driver    (2 ranks) rank 0 drives for 8 s while rank 1 waits in deed_finalize, with a
 *                  3 s bootstrap timeout (deedrun --timeout 3): a healthy job must not fail.
 *   no_holdback    (2 ranks, one worker each) task A and task B go to rank 1 together; B
 *                  waits (polling a file) until the driver has A's result: A's reply must
 *                  not stay in a batch kept open for more replies while B runs.
 *   (gc)           every scenario above ends with: after the driver released everything,
 *                  EVERY rank reports objects_alive == 0, store_bytes_used == 0, misuse == 0
 *                  (tasks pinned to each rank poll deed_stats there; rank 0 polled directly).
 *   task_table     (3 ranks) rank 1 registers one extra task before deed_init: deed_init must
 *                  fail on every rank, with a message saying the task tables differ.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deed.h"
#include "testutil.h"

#define KiB 1024ull
#define MiB (1024ull * 1024ull)

#define TLS_SHM "posix,sysv,cma,self"
#define TLS_TCP "tcp,self"

#define GC_TIMEOUT_MS 10000
#ifndef GET_TIMEOUT_US
#define GET_TIMEOUT_US (30 * 1000 * 1000) /* the driver's gets: a hang is a failure */
#endif

#include "rankprog.h" /* mix64, dag_fill/dag_hash, CHECK, submit_on, my_stats, get_exact */

/* ==== tasks (registered at load time, so every rank has the same table) ==================== */

struct vr {
    int64_t v;
    int32_t rank;
    int32_t pad;
};

/* args: int64 x. Returns {x*x, rank it ran on}. */
static int mr_square(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    int64_t x;
    if (nargs != 1 || args[0].kind != DEED_ARG_VALUE || args[0].size != sizeof(x))
        return deed_task_fail(task, 1, "mr_square: bad arguments");
    memcpy(&x, args[0].data, sizeof(x));
    struct vr r = {x * x, deed_rank(deed_task_ctx(task)), 0};
    return deed_task_return(task, 0, &r, sizeof(r));
}
DEED_REGISTER(mr_square)

struct make_arg {
    uint64_t size;
    uint64_t seed;
    uint64_t delay_ms; /* sleep this long first (a slow producer) */
};

/* args: {size, seed}. Return 0: size bytes of tu_fill(seed), written in place; return 1:
 * int32 rank it ran on. */
static int mr_make(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    struct make_arg a;
    void *buf = NULL;
    if (nargs != 1 || args[0].size != sizeof(a))
        return deed_task_fail(task, 1, "mr_make: bad arguments");
    memcpy(&a, args[0].data, sizeof(a));
    if (a.delay_ms) {
        struct timespec ts = {(time_t)(a.delay_ms / 1000), (long)(a.delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    int rc = deed_task_return_alloc(task, 0, a.size, &buf);
    if (rc != DEED_OK)
        return deed_task_fail(task, 2, "mr_make: return_alloc(%llu): %s",
                              (unsigned long long)a.size, deed_strerror(rc));
    tu_fill(buf, a.size, a.seed);
    int32_t r = deed_rank(deed_task_ctx(task));
    if (deed_task_nreturns(task) > 1)
        return deed_task_return(task, 1, &r, sizeof(r));
    return 0;
}
DEED_REGISTER(mr_make)

struct sum_res {
    uint64_t fnv;
    int64_t bad;       /* first wrong byte, -1 if none */
    uint64_t size;
    uint64_t pull_bytes; /* this rank's deed_stats pull_bytes after reading */
    int32_t rank;
    int32_t get_rc;    /* for the future variant: what deed_get returned */
};

static void sum_fill(deed_task_t *task, struct sum_res *r, const void *data, size_t size,
                     uint64_t seed)
{
    deed_stats_t s;
    memset(&s, 0, sizeof(s));
    s.size = sizeof(s);
    r->fnv = tu_fnv(data, size);
    r->bad = tu_check(data, size, seed);
    r->size = size;
    r->rank = deed_rank(deed_task_ctx(task));
    if (deed_stats(deed_task_ctx(task), &s) == DEED_OK)
        r->pull_bytes = s.pull_bytes;
}

/* args: REF object, uint64 seed. Returns struct sum_res. */
static int mr_sum_ref(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    uint64_t seed;
    struct sum_res r;
    memset(&r, 0, sizeof(r));
    if (nargs != 2 || args[0].kind != DEED_ARG_REF || args[1].size != sizeof(seed))
        return deed_task_fail(task, 1, "mr_sum_ref: bad arguments");
    memcpy(&seed, args[1].data, sizeof(seed));
    sum_fill(task, &r, args[0].data, args[0].size, seed);
    return deed_task_return(task, 0, &r, sizeof(r));
}
DEED_REGISTER(mr_sum_ref)

/* args: FUT object, uint64 seed. Gets the object itself. Returns struct sum_res. */
static int mr_sum_fut(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    uint64_t seed;
    struct sum_res r;
    deed_view_t v;
    memset(&r, 0, sizeof(r));
    if (nargs != 2 || args[0].kind != DEED_ARG_FUTURE || args[1].size != sizeof(seed))
        return deed_task_fail(task, 1, "mr_sum_fut: bad arguments");
    memcpy(&seed, args[1].data, sizeof(seed));
    r.get_rc = deed_get(deed_task_ctx(task), args[0].ref, &v, DEED_WAIT_FOREVER);
    if (r.get_rc != DEED_OK) {
        r.bad = -2;
        r.rank = deed_rank(deed_task_ctx(task));
        if (r.get_rc < 0 && r.get_rc != DEED_ERR_INVALID_REF && r.get_rc != DEED_ERR_INVALID_ARG)
            deed_view_release(deed_task_ctx(task), &v);
    } else {
        sum_fill(task, &r, v.data, v.size, seed);
        deed_view_release(deed_task_ctx(task), &v);
    }
    return deed_task_return(task, 0, &r, sizeof(r));
}
DEED_REGISTER(mr_sum_fut)

/* ---- borrower chain ---- */

#define CHAIN_MAX 4

struct chain_arg {
    uint64_t seed;
    int32_t next[CHAIN_MAX]; /* ranks of the tasks still to submit, in order */
    int32_t nnext;
    int32_t keep;            /* the leaf dups the ref into g_kept instead of reading it */
};

struct chain_res {
    uint64_t fnv;
    int64_t bad;
    uint64_t size;
    int32_t path[CHAIN_MAX]; /* ranks the levels ran on, leaf first */
    int32_t npath;
    int32_t rc;              /* first non-OK status seen along the chain */
};

static deed_ref_t g_kept; /* the ref a rank-2 task keeps beyond its end (rank 2's process) */
static int g_have_kept;

static int mr_chain(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    deed_ctx_t *ctx = deed_task_ctx(task);
    struct chain_arg a;
    struct chain_res r;
    memset(&r, 0, sizeof(r));
    if (nargs != 2 || args[0].kind != DEED_ARG_FUTURE || args[1].size != sizeof(a))
        return deed_task_fail(task, 1, "mr_chain: bad arguments");
    memcpy(&a, args[1].data, sizeof(a));
    int me = deed_rank(ctx);

    if (a.nnext > 0) {
        struct chain_arg sub = a;
        deed_submit_opts_t opts = DEED_SUBMIT_OPTS_INIT;
        deed_ref_t ret;
        opts.rank = a.next[0];
        memmove(sub.next, sub.next + 1, sizeof(sub.next[0]) * (CHAIN_MAX - 1));
        sub.nnext--;
        deed_arg_in_t in[2] = {DEED_FUT(args[0].ref), DEED_VAL(&sub, sizeof(sub))};
        int rc = deed_submit_opts(ctx, deed_task_id("mr_chain"), in, 2, &ret, 1, &opts);
        if (rc != DEED_OK) {
            r.rc = rc;
        } else {
            size_t sz = 0;
            rc = deed_get_copy(ctx, ret, &r, sizeof(r), &sz, DEED_WAIT_FOREVER);
            if (rc != DEED_OK || sz != sizeof(r)) {
                memset(&r, 0, sizeof(r));
                r.rc = rc != DEED_OK ? rc : DEED_ERR_INTERNAL;
            }
            deed_ref_release(ctx, ret);
        }
    } else if (a.keep) {
        deed_ref_t kept;
        int rc = deed_ref_dup(ctx, args[0].ref, &kept);
        if (rc == DEED_OK) {
            g_kept = kept;
            g_have_kept = 1;
        }
        r.rc = rc;
        r.bad = -1;
    } else {
        deed_view_t v;
        int rc = deed_get(ctx, args[0].ref, &v, DEED_WAIT_FOREVER);
        if (rc == DEED_OK) {
            r.fnv = tu_fnv(v.data, v.size);
            r.bad = tu_check(v.data, v.size, a.seed);
            r.size = v.size;
            deed_view_release(ctx, &v);
        } else {
            r.rc = rc;
            r.bad = -2;
        }
    }
    if (r.npath < CHAIN_MAX)
        r.path[r.npath++] = me;
    return deed_task_return(task, 0, &r, sizeof(r));
}
DEED_REGISTER(mr_chain)

/* args: uint64 seed. Reads g_kept (the ref an earlier task on this rank kept), releases it.
 * Returns struct chain_res (path = this rank). */
static int mr_use_kept(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    deed_ctx_t *ctx = deed_task_ctx(task);
    uint64_t seed;
    struct chain_res r;
    memset(&r, 0, sizeof(r));
    if (nargs != 1 || args[0].size != sizeof(seed))
        return deed_task_fail(task, 1, "mr_use_kept: bad arguments");
    memcpy(&seed, args[0].data, sizeof(seed));
    r.path[r.npath++] = deed_rank(ctx);
    if (!g_have_kept) {
        r.rc = DEED_ERR_INVALID_REF;
        r.bad = -3;
        return deed_task_return(task, 0, &r, sizeof(r));
    }
    deed_view_t v;
    int rc = deed_get(ctx, g_kept, &v, 10 * 1000 * 1000);
    if (rc == DEED_OK) {
        r.fnv = tu_fnv(v.data, v.size);
        r.bad = tu_check(v.data, v.size, seed);
        r.size = v.size;
        deed_view_release(ctx, &v);
    } else {
        r.rc = rc;
        r.bad = -2;
    }
    int rr = deed_ref_release(ctx, g_kept);
    if (r.rc == 0)
        r.rc = rr;
    g_have_kept = 0;
    return deed_task_return(task, 0, &r, sizeof(r));
}
DEED_REGISTER(mr_use_kept)

/* ---- garbage collection probe ---- */

struct gc_res {
    uint64_t objects_alive, objects_inline, objects_in_store, store_bytes_used, tasks_pending,
        misuse, ms;
    int32_t rank, pad;
};

static void gc_snapshot(deed_ctx_t *ctx, struct gc_res *r)
{
    deed_stats_t s;
    memset(&s, 0, sizeof(s));
    s.size = sizeof(s);
    if (deed_stats(ctx, &s) != DEED_OK) {
        r->objects_alive = UINT64_MAX;
        return;
    }
    r->objects_alive = s.objects_alive;
    r->objects_inline = s.objects_inline;
    r->objects_in_store = s.objects_in_store;
    r->store_bytes_used = s.store_bytes_used;
    r->tasks_pending = s.tasks_pending;
    r->misuse = s.misuse;
}

/* Poll this rank's stats until nothing is alive and the store is empty (or timeout). The
 * figures are those of @p ctx's rank; a task pinned to rank r reports rank r. */
static struct gc_res gc_poll(deed_ctx_t *ctx, int timeout_ms, int check_pending)
{
    struct gc_res r;
    uint64_t t0 = tu_now_ns();
    memset(&r, 0, sizeof(r));
    r.rank = deed_rank(ctx);
    for (;;) {
        gc_snapshot(ctx, &r);
        if (r.objects_alive == 0 && r.store_bytes_used == 0 &&
            (!check_pending || r.tasks_pending == 0))
            break;
        if (tu_ms_since(t0) > timeout_ms)
            break;
        usleep(2000);
    }
    r.ms = (uint64_t)tu_ms_since(t0);
    return r;
}

/* args: int32 timeout_ms. Returns struct gc_res of the rank it runs on. */
static int mr_gc_probe(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    int32_t ms;
    if (nargs != 1 || args[0].size != sizeof(ms))
        return deed_task_fail(task, 1, "mr_gc_probe: bad arguments");
    memcpy(&ms, args[0].data, sizeof(ms));
    struct gc_res r = gc_poll(deed_task_ctx(task), ms, 0);
    return deed_task_return(task, 0, &r, sizeof(r));
}
DEED_REGISTER(mr_gc_probe)

/* ---- random DAG ---- */

struct dag_arg {
    uint64_t i;
    uint64_t size;
};

struct dag_res {
    uint64_t h;
    int32_t rank, pad;
};

static uint64_t dag_node_hash(uint64_t i, uint64_t size, const uint64_t *in_ck, uint32_t nin)
{
    uint64_t h = mix64(i * 0x9e3779b97f4a7c15ull ^ size);
    for (uint32_t k = 0; k < nin; k++)
        h = mix64(h ^ in_ck[k] ^ (k + 1));
    return h;
}

/* args: {i, size}, then 0-3 REF inputs. Return 0: `size` bytes dag_fill(h); return 1:
 * {h, rank}, where h = dag_node_hash(i, size, hashes of the inputs' bytes). */
static int mr_dag_node(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    struct dag_arg a;
    uint64_t ck[4];
    void *buf = NULL;
    if (nargs < 1 || nargs > 4 || args[0].size != sizeof(a))
        return deed_task_fail(task, 1, "mr_dag_node: bad arguments");
    memcpy(&a, args[0].data, sizeof(a));
    for (uint32_t k = 1; k < nargs; k++) {
        if (args[k].kind != DEED_ARG_REF)
            return deed_task_fail(task, 1, "mr_dag_node: argument %u is not by-ref", k);
        ck[k - 1] = dag_hash(args[k].data, args[k].size);
    }
    uint64_t h = dag_node_hash(a.i, a.size, ck, nargs - 1);
    int rc = deed_task_return_alloc(task, 0, a.size, &buf);
    if (rc != DEED_OK)
        return deed_task_fail(task, 2, "mr_dag_node %llu: return_alloc(%llu): %s",
                              (unsigned long long)a.i, (unsigned long long)a.size,
                              deed_strerror(rc));
    dag_fill(buf, a.size, h);
    struct dag_res r = {h, deed_rank(deed_task_ctx(task)), 0};
    return deed_task_return(task, 1, &r, sizeof(r));
}
DEED_REGISTER(mr_dag_node)

/* Registered only on rank 1 by the task_table scenario. */
static int mr_only_here(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    return 0;
}

/* ==== the rank program ===================================================================== */

/* The gc check: every rank other than 0 is probed by a task pinned there; then rank 0 itself
 * (after the probes' result refs are released). Prints one line per rank. */
static void check_gc(deed_ctx_t *ctx)
{
    int n = deed_nranks(ctx);
    deed_ref_t rets[64];
    int32_t ms = GC_TIMEOUT_MS;
    deed_arg_in_t in[1] = {DEED_VAL(&ms, sizeof(ms))};
    for (int r = 1; r < n; r++) {
        int rc = submit_on(ctx, "mr_gc_probe", r, in, 1, &rets[r], 1);
        CHECK(rc == DEED_OK, "gc probe submit to rank %d: %s", r, deed_strerror(rc));
        if (rc != DEED_OK)
            rets[r] = DEED_REF_NULL;
    }
    for (int r = 1; r < n; r++) {
        struct gc_res g;
        if (deed_ref_is_null(rets[r]))
            continue;
        if (get_exact(ctx, rets[r], &g, sizeof(g), "gc probe") == 0) {
            printf("%s: gc rank %d: objects_alive=%" PRIu64 " (inline %" PRIu64 ", store %" PRIu64
                   ") store_bytes_used=%" PRIu64 " tasks_pending=%" PRIu64 " misuse=%" PRIu64
                   " after %" PRIu64 " ms\n",
                   g_scn, g.rank, g.objects_alive, g.objects_inline, g.objects_in_store,
                   g.store_bytes_used, g.tasks_pending, g.misuse, g.ms);
            CHECK(g.rank == r, "gc probe pinned to rank %d ran on rank %d", r, g.rank);
            CHECK(g.objects_alive == 0, "rank %d: %" PRIu64 " objects still alive", r,
                  g.objects_alive);
            CHECK(g.store_bytes_used == 0, "rank %d: %" PRIu64 " store bytes still used", r,
                  g.store_bytes_used);
            CHECK(g.misuse == 0, "rank %d: misuse counter %" PRIu64, r, g.misuse);
        }
        deed_ref_release(ctx, rets[r]);
    }
    struct gc_res g = gc_poll(ctx, GC_TIMEOUT_MS, 1);
    printf("%s: gc rank 0: objects_alive=%" PRIu64 " (inline %" PRIu64 ", store %" PRIu64
           ") store_bytes_used=%" PRIu64 " tasks_pending=%" PRIu64 " misuse=%" PRIu64
           " after %" PRIu64 " ms\n",
           g_scn, g.objects_alive, g.objects_inline, g.objects_in_store, g.store_bytes_used,
           g.tasks_pending, g.misuse, g.ms);
    CHECK(g.objects_alive == 0, "rank 0: %" PRIu64 " objects still alive", g.objects_alive);
    CHECK(g.store_bytes_used == 0, "rank 0: %" PRIu64 " store bytes still used",
          g.store_bytes_used);
    CHECK(g.tasks_pending == 0, "rank 0: %" PRIu64 " tasks pending", g.tasks_pending);
    CHECK(g.misuse == 0, "rank 0: misuse counter %" PRIu64, g.misuse);
    fflush(stdout);
}

/* ---- scenario 1: remote_tasks ---- */

#define RT_TASKS 20000
#define RT_PINNED 200

static void scn_remote_tasks(deed_ctx_t *ctx)
{
    int n = deed_nranks(ctx);
    deed_task_id_t sq = deed_task_id("mr_square");
    deed_ref_t *refs = calloc(RT_TASKS, sizeof(*refs));
    uint64_t count[64] = {0};
    int bad = 0;
    uint64_t t0 = tu_now_ns();

    for (int64_t i = 0; i < RT_TASKS; i++) {
        deed_arg_in_t in[1] = {DEED_VAL(&i, sizeof(i))};
        int rc = deed_submit(ctx, sq, in, 1, &refs[i], 1);
        if (rc != DEED_OK) {
            CHECK(0, "submit %" PRId64 ": %s", i, deed_strerror(rc));
            refs[i] = DEED_REF_NULL;
        }
    }
    for (int64_t i = 0; i < RT_TASKS; i++) {
        struct vr r;
        if (deed_ref_is_null(refs[i]))
            continue;
        if (get_exact(ctx, refs[i], &r, sizeof(r), "square") == 0) {
            if (r.v != i * i && bad++ < 10)
                CHECK(0, "square(%" PRId64 ") = %" PRId64, i, r.v);
            if (r.rank >= 0 && r.rank < n)
                count[r.rank]++;
            else
                CHECK(0, "square(%" PRId64 ") ran on rank %d", i, r.rank);
        }
        deed_ref_release(ctx, refs[i]);
    }
    CHECK(bad == 0, "%d wrong squares", bad);
    int used = 0;
    printf("%s: %d unpinned tasks in %.0f ms; per rank:", g_scn, RT_TASKS, tu_ms_since(t0));
    for (int r = 0; r < n; r++) {
        printf(" r%d=%" PRIu64, r, count[r]);
        used += count[r] > 0;
    }
    printf("\n");
    CHECK(used >= 2, "unpinned tasks ran on only %d rank(s)", used);

    /* pinned */
    for (int r = 0; r < n; r++) {
        int wrong = 0;
        for (int64_t i = 0; i < RT_PINNED; i++) {
            int64_t x = i + 1000 * r;
            deed_arg_in_t in[1] = {DEED_VAL(&x, sizeof(x))};
            int rc = submit_on(ctx, "mr_square", r, in, 1, &refs[i], 1);
            CHECK(rc == DEED_OK, "pinned submit: %s", deed_strerror(rc));
            if (rc != DEED_OK)
                refs[i] = DEED_REF_NULL;
        }
        for (int64_t i = 0; i < RT_PINNED; i++) {
            struct vr v;
            int64_t x = i + 1000 * r;
            if (deed_ref_is_null(refs[i]))
                continue;
            if (get_exact(ctx, refs[i], &v, sizeof(v), "pinned square") == 0) {
                CHECK(v.v == x * x, "pinned square(%" PRId64 ") = %" PRId64, x, v.v);
                if (v.rank != r && wrong++ < 5)
                    CHECK(0, "task pinned to rank %d ran on rank %d", r, v.rank);
            }
            deed_ref_release(ctx, refs[i]);
        }
        printf("%s: %d tasks pinned to rank %d: %d ran elsewhere\n", g_scn, RT_PINNED, r, wrong);
    }
    free(refs);
}

/* ---- scenario 2: large_objects ---- */

static void scn_large_objects(deed_ctx_t *ctx)
{
    const uint64_t sizes[] = {1 * KiB, 64 * KiB + 1, 1 * MiB, 16 * MiB, 64 * MiB};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint64_t S = sizes[k], seed = 1000 + k;
        struct make_arg ma = {S, seed, 0};
        deed_arg_in_t in[1] = {DEED_VAL(&ma, sizeof(ma))};
        deed_ref_t mk[2];
        int rc = submit_on(ctx, "mr_make", 1, in, 1, mk, 2);
        CHECK(rc == DEED_OK, "make %" PRIu64 ": %s", S, deed_strerror(rc));
        if (rc != DEED_OK)
            continue;
        int32_t where = -1;
        if (get_exact(ctx, mk[1], &where, sizeof(where), "make rank") == 0)
            CHECK(where == 1, "make pinned to rank 1 ran on rank %d", where);

        /* rank 0 reads it */
        deed_stats_t s0 = my_stats(ctx);
        uint64_t expect_fnv = 0;
        {
            unsigned char *tmp = malloc(S);
            tu_fill(tmp, S, seed);
            expect_fnv = tu_fnv(tmp, S);
            free(tmp);
        }
        deed_view_t v;
        uint64_t t0 = tu_now_ns();
        rc = deed_get(ctx, mk[0], &v, g_stuck ? 0 : GET_TIMEOUT_US);
        g_stuck |= rc == DEED_ERR_TIMEOUT;
        double ms = tu_ms_since(t0);
        CHECK(rc == DEED_OK, "get of %" PRIu64 " bytes: %s", S, deed_strerror(rc));
        if (rc == DEED_OK) {
            CHECK(v.size == S, "size %zu, expected %" PRIu64, v.size, S);
            long b = v.size == S ? tu_check(v.data, S, seed) : -2;
            CHECK(b == -1, "object of %" PRIu64 " bytes: first wrong byte at %ld", S, b);
            deed_view_release(ctx, &v);
        } else if (rc != DEED_ERR_TIMEOUT && rc != DEED_ERR_INVALID_REF) {
            deed_view_release(ctx, &v);
        }
        deed_stats_t s1 = my_stats(ctx);
        printf("%s: %" PRIu64 " bytes made on rank %d, read on rank 0 in %.1f ms (pulled %" PRIu64
               " bytes)\n",
               g_scn, S, where, ms, s1.pull_bytes - s0.pull_bytes);
        if (S > 64 * KiB)
            CHECK(s1.pull_bytes - s0.pull_bytes >= S,
                  "rank 0 read a %" PRIu64 "-byte object of rank 1 but pulled only %" PRIu64
                  " bytes", S, s1.pull_bytes - s0.pull_bytes);

        /* by-ref checksum tasks on rank 1 and on rank 0 */
        deed_ref_t sr[2];
        for (int r = 0; r < 2; r++) {
            deed_arg_in_t a2[2] = {DEED_REF(mk[0]), DEED_VAL(&seed, sizeof(seed))};
            int rc2 = submit_on(ctx, "mr_sum_ref", 1 - r, a2, 2, &sr[r], 1);
            CHECK(rc2 == DEED_OK, "sum submit: %s", deed_strerror(rc2));
            if (rc2 != DEED_OK)
                sr[r] = DEED_REF_NULL;
        }
        for (int r = 0; r < 2; r++) {
            struct sum_res res;
            if (deed_ref_is_null(sr[r]))
                continue;
            if (get_exact(ctx, sr[r], &res, sizeof(res), "sum_ref") == 0) {
                CHECK(res.rank == 1 - r, "sum task pinned to rank %d ran on %d", 1 - r, res.rank);
                CHECK(res.size == S, "sum task on rank %d saw %" PRIu64 " bytes, expected %" PRIu64,
                      res.rank, res.size, S);
                CHECK(res.bad == -1, "sum task on rank %d: %" PRIu64 " bytes, first wrong byte %" PRId64,
                      res.rank, S, res.bad);
                CHECK(res.fnv == expect_fnv, "sum task on rank %d: checksum %016" PRIx64
                      " expected %016" PRIx64, res.rank, res.fnv, expect_fnv);
            }
            deed_ref_release(ctx, sr[r]);
        }
        deed_ref_release(ctx, mk[0]);
        deed_ref_release(ctx, mk[1]);
        fflush(stdout);
    }

    /* A by-ref task pinned to rank 0 submitted while its argument is still being made on
     * rank 1 (rank 0 learns the object's location from the reply, then must pull it). */
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]) && !g_stuck; k++) {
        uint64_t S = sizes[k], seed = 2000 + k;
        struct make_arg ma = {S, seed, 0};
        deed_arg_in_t in[1] = {DEED_VAL(&ma, sizeof(ma))};
        deed_ref_t mk, sr;
        unsigned char *tmp = malloc(S);
        tu_fill(tmp, S, seed);
        uint64_t expect_fnv = tu_fnv(tmp, S);
        free(tmp);
        int rc = submit_on(ctx, "mr_make", 1, in, 1, &mk, 1);
        CHECK(rc == DEED_OK, "make %" PRIu64 ": %s", S, deed_strerror(rc));
        if (rc != DEED_OK)
            continue;
        deed_arg_in_t a2[2] = {DEED_REF(mk), DEED_VAL(&seed, sizeof(seed))};
        rc = submit_on(ctx, "mr_sum_ref", 0, a2, 2, &sr, 1);
        CHECK(rc == DEED_OK, "sum submit: %s", deed_strerror(rc));
        struct sum_res res;
        if (rc == DEED_OK && get_exact(ctx, sr, &res, sizeof(res), "early sum_ref on rank 0") == 0) {
            printf("%s: %" PRIu64 " bytes made on rank 1, consumed by a task on rank 0 "
                   "submitted before it existed: rank %d, first bad %" PRId64 "\n",
                   g_scn, S, res.rank, res.bad);
            CHECK(res.rank == 0, "early sum task pinned to rank 0 ran on %d", res.rank);
            CHECK(res.size == S && res.bad == -1 && res.fnv == expect_fnv,
                  "early sum task on rank 0: %" PRIu64 " bytes (expected %" PRIu64
                  "), first wrong byte %" PRId64 ", checksum %s",
                  res.size, S, res.bad, res.fnv == expect_fnv ? "ok" : "WRONG");
        }
        if (rc == DEED_OK)
            deed_ref_release(ctx, sr);
        deed_ref_release(ctx, mk);
        fflush(stdout);
    }
}

/* ---- scenario 3: three_ranks ---- */

/* One round: the object made on rank 1 (after delay_ms), consumed on rank 2 by reference
 * and as a future. With a slow producer, the future consumer runs at once and its deed_get
 * asks the owner (LOCATE, answered only once the object exists); when the object appears,
 * the owner pushes the by-ref task (submitted first, so woken first) with the location and
 * then answers the LOCATE: rank 2 learns the location from the push while its LOCATE is
 * still out, and must still start the pull (it once waited forever). fut_first: submit the
 * future consumer first instead (the LOCATE answer then comes first). */
static void three_ranks_round(deed_ctx_t *ctx, uint64_t delay_ms, int fut_first)
{
    const uint64_t S = 8 * MiB, seed = 77 + delay_ms;
    struct make_arg ma = {S, seed, delay_ms};
    deed_arg_in_t in[1] = {DEED_VAL(&ma, sizeof(ma))};
    deed_ref_t mk[2], rr, rf;
    deed_stats_t s0 = my_stats(ctx);
    unsigned char *tmp = malloc(S);
    tu_fill(tmp, S, seed);
    uint64_t expect_fnv = tu_fnv(tmp, S);
    free(tmp);

    int rc = submit_on(ctx, "mr_make", 1, in, 1, mk, 2);
    CHECK(rc == DEED_OK, "make: %s", deed_strerror(rc));
    if (rc != DEED_OK)
        return;
    deed_arg_in_t a_ref[2] = {DEED_REF(mk[0]), DEED_VAL(&seed, sizeof(seed))};
    deed_arg_in_t a_fut[2] = {DEED_FUT(mk[0]), DEED_VAL(&seed, sizeof(seed))};
    if (fut_first) {
        rc = submit_on(ctx, "mr_sum_fut", 2, a_fut, 2, &rf, 1);
        CHECK(rc == DEED_OK, "sum_fut submit: %s", deed_strerror(rc));
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        rc = submit_on(ctx, "mr_sum_ref", 2, a_ref, 2, &rr, 1);
        CHECK(rc == DEED_OK, "sum_ref submit: %s", deed_strerror(rc));
    } else {
        rc = submit_on(ctx, "mr_sum_ref", 2, a_ref, 2, &rr, 1);
        CHECK(rc == DEED_OK, "sum_ref submit: %s", deed_strerror(rc));
        rc = submit_on(ctx, "mr_sum_fut", 2, a_fut, 2, &rf, 1);
        CHECK(rc == DEED_OK, "sum_fut submit: %s", deed_strerror(rc));
    }

    int32_t where = -1;
    if (get_exact(ctx, mk[1], &where, sizeof(where), "make rank") == 0)
        CHECK(where == 1, "make pinned to rank 1 ran on rank %d", where);
    deed_ref_t both[2] = {rr, rf};
    const char *names[2] = {"DEED_REF consumer", "DEED_FUT consumer"};
    for (int k = 0; k < 2; k++) {
        struct sum_res res;
        if (get_exact(ctx, both[k], &res, sizeof(res), names[k]) == 0) {
            printf("%s: %s ran on rank %d: %" PRIu64 " bytes, checksum %016" PRIx64
                   ", first bad %" PRId64 ", rank pull_bytes %" PRIu64 ", get %s\n",
                   g_scn, names[k], res.rank, res.size, res.fnv, res.bad, res.pull_bytes,
                   deed_strerror(res.get_rc));
            CHECK(res.get_rc == DEED_OK, "%s: deed_get inside the task: %s", names[k],
                  deed_strerror(res.get_rc));
            CHECK(res.rank == 2, "%s pinned to rank 2 ran on rank %d", names[k], res.rank);
            CHECK(res.size == S, "%s saw %" PRIu64 " bytes", names[k], res.size);
            CHECK(res.bad == -1, "%s: first wrong byte %" PRId64, names[k], res.bad);
            CHECK(res.fnv == expect_fnv, "%s: checksum mismatch", names[k]);
            CHECK(res.pull_bytes >= S, "%s: rank 2 pulled only %" PRIu64 " bytes", names[k],
                  res.pull_bytes);
        }
        deed_ref_release(ctx, both[k]);
    }
    deed_stats_t s1 = my_stats(ctx);
    printf("%s: rank 0 pulled %" PRIu64 " bytes meanwhile\n", g_scn, s1.pull_bytes - s0.pull_bytes);
    CHECK(s1.pull_bytes - s0.pull_bytes < S,
          "the object went through rank 0 (it pulled %" PRIu64 " bytes); expected 1 -> 2",
          s1.pull_bytes - s0.pull_bytes);
    deed_ref_release(ctx, mk[0]);
    deed_ref_release(ctx, mk[1]);
}

static void scn_three_ranks(deed_ctx_t *ctx)
{
    three_ranks_round(ctx, 0, 0);
    printf("%s: again with a slow producer\n", g_scn);
    three_ranks_round(ctx, 300, 0);
    printf("%s: again with a slow producer, the future consumer first\n", g_scn);
    three_ranks_round(ctx, 300, 1);
}

/* ---- scenario 4: borrower_chain ---- */

static void check_chain(const char *what, const struct chain_res *r, const int32_t *path,
                        int npath, uint64_t size, uint64_t expect_fnv)
{
    printf("%s: %s: rc=%s size=%" PRIu64 " bad=%" PRId64 " path(leaf first)=", g_scn, what,
           deed_strerror(r->rc), r->size, r->bad);
    for (int k = 0; k < r->npath && k < CHAIN_MAX; k++)
        printf("%s%d", k ? "," : "", r->path[k]);
    printf("\n");
    CHECK(r->rc == DEED_OK, "%s: %s", what, deed_strerror(r->rc));
    CHECK(r->npath == npath, "%s: %d levels, expected %d", what, r->npath, npath);
    for (int k = 0; k < npath && k < r->npath; k++)
        CHECK(r->path[k] == path[k], "%s: level %d ran on rank %d, expected %d", what, k,
              r->path[k], path[k]);
    if (size) {
        CHECK(r->size == size, "%s: %" PRIu64 " bytes, expected %" PRIu64, what, r->size, size);
        CHECK(r->bad == -1, "%s: first wrong byte %" PRId64, what, r->bad);
        CHECK(r->fnv == expect_fnv, "%s: checksum mismatch", what);
    }
}

static void scn_borrower_chain(deed_ctx_t *ctx)
{
    const uint64_t S = 8 * MiB;
    unsigned char *buf = malloc(S);

    /* A: put on rank 0, handed 0 -> 1 -> 2 -> 3 as a future, read on rank 3 */
    {
        uint64_t seed = 5;
        deed_ref_t obj, ret;
        tu_fill(buf, S, seed);
        uint64_t fnv = tu_fnv(buf, S);
        int rc = deed_put(ctx, buf, S, &obj);
        CHECK(rc == DEED_OK, "put: %s", deed_strerror(rc));
        struct chain_arg a = {seed, {2, 3}, 2, 0};
        deed_arg_in_t in[2] = {DEED_FUT(obj), DEED_VAL(&a, sizeof(a))};
        rc = submit_on(ctx, "mr_chain", 1, in, 2, &ret, 1);
        CHECK(rc == DEED_OK, "chain submit: %s", deed_strerror(rc));
        struct chain_res r;
        if (rc == DEED_OK && get_exact(ctx, ret, &r, sizeof(r), "chain A") == 0) {
            const int32_t path[3] = {3, 2, 1};
            check_chain("chain A (put on 0, read on 3)", &r, path, 3, S, fnv);
        }
        deed_ref_release(ctx, ret);
        deed_ref_release(ctx, obj);
    }

    /* A': made by a task on rank 1 (not awaited), handed 0 -> 2 -> 3 -> 1, read on rank 1 */
    {
        uint64_t seed = 6;
        struct make_arg ma = {S, seed, 0};
        deed_arg_in_t mi[1] = {DEED_VAL(&ma, sizeof(ma))};
        deed_ref_t mk, ret;
        tu_fill(buf, S, seed);
        uint64_t fnv = tu_fnv(buf, S);
        int rc = submit_on(ctx, "mr_make", 1, mi, 1, &mk, 1);
        CHECK(rc == DEED_OK, "make: %s", deed_strerror(rc));
        struct chain_arg a = {seed, {3, 1}, 2, 0};
        deed_arg_in_t in[2] = {DEED_FUT(mk), DEED_VAL(&a, sizeof(a))};
        rc = submit_on(ctx, "mr_chain", 2, in, 2, &ret, 1);
        CHECK(rc == DEED_OK, "chain submit: %s", deed_strerror(rc));
        struct chain_res r;
        if (rc == DEED_OK && get_exact(ctx, ret, &r, sizeof(r), "chain A'") == 0) {
            const int32_t path[3] = {1, 3, 2};
            check_chain("chain A' (made on 1, read on 1 via 2, 3)", &r, path, 3, S, fnv);
        }
        deed_ref_release(ctx, ret);
        deed_ref_release(ctx, mk);
    }

    /* B: made on rank 3, handed 0 -> 1 -> 2; the rank-2 task keeps a dup of the ref and
     * ends; the driver releases everything; later a task on rank 2 reads and releases it */
    {
        uint64_t seed = 7;
        struct make_arg ma = {S, seed, 0};
        deed_arg_in_t mi[1] = {DEED_VAL(&ma, sizeof(ma))};
        deed_ref_t mk, ret;
        tu_fill(buf, S, seed);
        uint64_t fnv = tu_fnv(buf, S);
        int rc = submit_on(ctx, "mr_make", 3, mi, 1, &mk, 1);
        CHECK(rc == DEED_OK, "make: %s", deed_strerror(rc));
        struct chain_arg a = {seed, {2}, 1, 1};
        deed_arg_in_t in[2] = {DEED_FUT(mk), DEED_VAL(&a, sizeof(a))};
        rc = submit_on(ctx, "mr_chain", 1, in, 2, &ret, 1);
        CHECK(rc == DEED_OK, "chain submit: %s", deed_strerror(rc));
        struct chain_res r;
        if (rc == DEED_OK && get_exact(ctx, ret, &r, sizeof(r), "chain B") == 0) {
            const int32_t path[2] = {2, 1};
            check_chain("chain B (rank 2 keeps the ref)", &r, path, 2, 0, 0);
        }
        deed_ref_release(ctx, ret);
        deed_ref_release(ctx, mk);
        /* the driver holds nothing now; give the releases time to reach everyone */
        usleep(500 * 1000);
        deed_stats_t s = my_stats(ctx);
        printf("%s: driver released everything; rank 0 objects_alive=%" PRIu64 "\n", g_scn,
               s.objects_alive);
        CHECK(s.objects_alive >= 1,
              "owner rank 0 has no row left although rank 2 still holds a borrowed ref");

        deed_arg_in_t ui[1] = {DEED_VAL(&seed, sizeof(seed))};
        rc = submit_on(ctx, "mr_use_kept", 2, ui, 1, &ret, 1);
        CHECK(rc == DEED_OK, "use_kept submit: %s", deed_strerror(rc));
        if (rc == DEED_OK && get_exact(ctx, ret, &r, sizeof(r), "use_kept") == 0) {
            const int32_t path[1] = {2};
            check_chain("kept ref read later on rank 2", &r, path, 1, S, fnv);
        }
        deed_ref_release(ctx, ret);
        /* check_gc (run next) verifies the object is freed after that release */
    }
    free(buf);
}

/* ---- scenario 5: random_dag ---- */

#define DAG_NODES 10000
#define DAG_WINDOW 200

struct dag_node {
    uint64_t size;
    uint32_t nin;
    uint32_t in[3];
    uint32_t last_use; /* index of the last node that takes it as input; 0 = none */
    int32_t pin;       /* rank it is pinned to, -1 = anywhere */
    uint64_t h;        /* expected */
    uint64_t ck;       /* expected hash of its output bytes */
};

static void scn_random_dag(deed_ctx_t *ctx)
{
    int n = deed_nranks(ctx);
    struct dag_node *nd = calloc(DAG_NODES, sizeof(*nd));
    deed_ref_t *out = calloc(DAG_NODES, sizeof(*out)), *res = calloc(DAG_NODES, sizeof(*res));
    unsigned char *scratch = malloc(2 * MiB);
    uint64_t rng = 0x5eed0000deedull;
    uint64_t nlarge = 0, large_bytes = 0, edges = 0;

    /* the DAG, and its expected results computed sequentially */
    for (uint32_t i = 0; i < DAG_NODES; i++) {
        struct dag_node *d = &nd[i];
        d->nin = i == 0 ? 0 : (uint32_t)(tu_rnd(&rng) % 4);
        uint32_t lo = i > DAG_WINDOW ? i - DAG_WINDOW : 0;
        if (d->nin > i - lo)
            d->nin = i - lo;
        for (uint32_t k = 0; k < d->nin; k++) {
            uint32_t c;
            int dup;
            do {
                c = lo + (uint32_t)(tu_rnd(&rng) % (i - lo));
                dup = 0;
                for (uint32_t m = 0; m < k; m++)
                    dup |= d->in[m] == c;
            } while (dup);
            d->in[k] = c;
            nd[c].last_use = i;
        }
        edges += d->nin;
        if (tu_rnd(&rng) % 100 < 5) {
            d->size = 256 * KiB + tu_rnd(&rng) % (2 * MiB - 256 * KiB + 1);
            nlarge++;
            large_bytes += d->size;
        } else {
            d->size = 8 + tu_rnd(&rng) % 57;
        }
        /* a quarter of the nodes are pinned to a random rank, so data crosses ranks */
        d->pin = tu_rnd(&rng) % 4 == 0 ? (int32_t)(tu_rnd(&rng) % (uint64_t)n) : -1;
        uint64_t ck[3];
        for (uint32_t k = 0; k < d->nin; k++)
            ck[k] = nd[d->in[k]].ck;
        d->h = dag_node_hash(i, d->size, ck, d->nin);
        dag_fill(scratch, d->size, d->h);
        d->ck = dag_hash(scratch, d->size);
    }
    printf("%s: %d nodes (window %d), %" PRIu64 " edges, %" PRIu64 " large objects (%" PRIu64 " MiB)\n",
           g_scn, DAG_NODES, DAG_WINDOW, edges, nlarge, (uint64_t)(large_bytes / MiB));

    /* submit everything; drop each output ref once its last consumer is submitted */
    uint64_t t0 = tu_now_ns();
    deed_task_id_t tid = deed_task_id("mr_dag_node");
    for (uint32_t i = 0; i < DAG_NODES; i++) {
        struct dag_node *d = &nd[i];
        struct dag_arg a = {i, d->size};
        deed_arg_in_t in[4];
        deed_ref_t rets[2];
        in[0] = DEED_VAL(&a, sizeof(a));
        for (uint32_t k = 0; k < d->nin; k++)
            in[k + 1] = DEED_REF(out[d->in[k]]);
        deed_submit_opts_t opts = DEED_SUBMIT_OPTS_INIT;
        opts.rank = d->pin;
        int rc = deed_submit_opts(ctx, tid, in, 1 + d->nin, rets, 2, &opts);
        if (rc != DEED_OK) {
            CHECK(0, "submit node %u: %s", i, deed_strerror(rc));
            out[i] = res[i] = DEED_REF_NULL;
        } else {
            out[i] = rets[0];
            res[i] = rets[1];
        }
        for (uint32_t k = 0; k < d->nin; k++) {
            uint32_t c = d->in[k];
            if (nd[c].last_use == i && !deed_ref_is_null(out[c])) {
                deed_ref_release(ctx, out[c]);
                out[c] = DEED_REF_NULL;
            }
        }
    }
    /* compare every node's result; sinks' bytes too */
    uint64_t per_rank[64] = {0};
    int wrong = 0, sinks = 0;
    for (uint32_t i = 0; i < DAG_NODES; i++) {
        struct dag_res r;
        char what[64];
        snprintf(what, sizeof(what), "node %u", i);
        if (g_stuck) {
            CHECK(0, "node %u: a get timed out; not waiting for the remaining nodes", i);
            break;
        }
        if (i % 2500 == 0)
            printf("%s: checking node %u (%.0f ms since the first submit)\n", g_scn, i,
                   tu_ms_since(t0));
        if (!deed_ref_is_null(res[i])) {
            if (get_exact(ctx, res[i], &r, sizeof(r), what) == 0) {
                if (r.h != nd[i].h && wrong++ < 10)
                    CHECK(0, "node %u: result %016" PRIx64 ", expected %016" PRIx64, i, r.h,
                          nd[i].h);
                if (r.rank >= 0 && r.rank < n)
                    per_rank[r.rank]++;
                if (nd[i].pin >= 0 && r.rank != nd[i].pin && wrong++ < 10)
                    CHECK(0, "node %u pinned to rank %d ran on rank %d", i, nd[i].pin, r.rank);
            }
            deed_ref_release(ctx, res[i]);
        }
        if (nd[i].last_use == 0 && !deed_ref_is_null(out[i])) {
            deed_view_t v;
            sinks++;
            int rc = deed_get(ctx, out[i], &v, g_stuck ? 0 : GET_TIMEOUT_US);
            g_stuck |= rc == DEED_ERR_TIMEOUT;
            CHECK(rc == DEED_OK, "sink %u: get: %s", i, deed_strerror(rc));
            if (rc == DEED_OK) {
                uint64_t ck = dag_hash(v.data, v.size);
                if ((v.size != nd[i].size || ck != nd[i].ck) && wrong++ < 10)
                    CHECK(0, "sink %u: %zu bytes (expected %" PRIu64 "), hash %s", i, v.size,
                          nd[i].size, ck == nd[i].ck ? "ok" : "WRONG");
                deed_view_release(ctx, &v);
            } else if (rc != DEED_ERR_TIMEOUT && rc != DEED_ERR_INVALID_REF) {
                deed_view_release(ctx, &v);
            }
            deed_ref_release(ctx, out[i]);
            out[i] = DEED_REF_NULL;
        }
    }
    for (uint32_t i = 0; i < DAG_NODES && !g_stuck; i++)
        CHECK(deed_ref_is_null(out[i]), "test bug: output of node %u never released", i);
    CHECK(wrong == 0, "%d wrong results", wrong);
    printf("%s: %d tasks in %.0f ms, %d sinks verified; tasks per rank:", g_scn, DAG_NODES,
           tu_ms_since(t0), sinks);
    int used = 0;
    for (int r = 0; r < n; r++) {
        printf(" r%d=%" PRIu64, r, per_rank[r]);
        used += per_rank[r] > 0;
    }
    printf("\n");
    CHECK(used >= 2, "the DAG ran on only %d rank(s)", used);
    free(nd);
    free(out);
    free(res);
    free(scratch);
}

/* ---- long_driver: the driver works longer than the bootstrap timeout ---- */

#define LONG_DRIVER_S 8 /* the suite runs it with a 3 s bootstrap timeout */

static void scn_long_driver(deed_ctx_t *ctx)
{
    int n = deed_nranks(ctx);
    uint64_t t0 = tu_now_ns();
    /* keep every rank busy now and then, for longer than DEED_BOOT_TIMEOUT */
    while (tu_ms_since(t0) < LONG_DRIVER_S * 1000.0) {
        for (int r = 0; r < n; r++) {
            int64_t x = r + 7;
            deed_arg_in_t in[1] = {DEED_VAL(&x, sizeof(x))};
            deed_ref_t ret;
            struct vr v;
            int rc = submit_on(ctx, "mr_square", r, in, 1, &ret, 1);
            CHECK(rc == DEED_OK, "submit: %s", deed_strerror(rc));
            if (rc != DEED_OK)
                continue;
            if (get_exact(ctx, ret, &v, sizeof(v), "square") == 0)
                CHECK(v.v == x * x && v.rank == r, "square on rank %d: %" PRId64 " from rank %d",
                      r, v.v, v.rank);
            deed_ref_release(ctx, ret);
        }
        usleep(200 * 1000);
    }
    printf("%s: drove for %.1f s\n", g_scn, tu_ms_since(t0) / 1000.0);
}

/* ---- no_holdback: a finished task's result is not held back by the task behind it ---- */

/* Spins until the file named by its argument exists (the driver creates it once it has the
 * result of the task before this one) or 20 s pass; returns whether the file appeared. */
static int mr_wait_file(deed_task_t *t, const deed_arg_t *a, uint32_t n)
{
    char path[128];
    snprintf(path, sizeof(path), "%.*s", (int)a[0].size, (const char *)a[0].data);
    uint64_t t0 = tu_now_ns();
    int found = 0;
    while (!(found = access(path, F_OK) == 0) && tu_ms_since(t0) < 20000.0)
        usleep(100);
    return deed_task_return(t, 0, &found, sizeof(found));
}
DEED_REGISTER(mr_wait_file)

static void scn_no_holdback(deed_ctx_t *ctx)
{
    /* rank 1 runs one worker (rank_main): A, B, C arrive in one batch, A finishes while B and
     * C are in the ready ring, so A's reply is one the runtime may keep open for more replies
     * (batching), and C keeps it that way while B runs. B waits, by no means deed knows of,
     * for the driver to have A's result: the open batch must still go out (within ~0.2 ms),
     * or B waits out its 20 s and the check fails. */
    for (int round = 0; round < 5; round++) {
        char path[128];
        snprintf(path, sizeof(path), "/tmp/deed-holdback-%d-%d", (int)getpid(), round);
        unlink(path);
        int64_t x = 9;
        deed_arg_in_t in[1] = {DEED_VAL(&x, sizeof(x))};
        deed_arg_in_t pin[1] = {DEED_VAL(path, strlen(path))};
        deed_ref_t a, b, c;
        struct vr v;
        int found = -1;
        CHECK(submit_on(ctx, "mr_square", 1, in, 1, &a, 1) == DEED_OK, "submit A");
        CHECK(submit_on(ctx, "mr_wait_file", 1, pin, 1, &b, 1) == DEED_OK, "submit B");
        /* C keeps the ready ring non-empty while B runs (more replies are on their way) */
        CHECK(submit_on(ctx, "mr_square", 1, in, 1, &c, 1) == DEED_OK, "submit C");
        uint64_t t0 = tu_now_ns();
        int rc = deed_get_copy(ctx, a, &v, sizeof(v), NULL, 10 * 1000 * 1000);
        double ms = tu_ms_since(t0);
        CHECK(rc == DEED_OK && v.v == 81 && v.rank == 1,
              "round %d: A's result (while B runs behind it on rank 1): %s after %.1f ms", round,
              deed_strerror(rc), ms);
        int fd = open(path, O_CREAT | O_WRONLY, 0600);
        CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        if (get_exact(ctx, b, &found, sizeof(found), "B") == 0)
            CHECK(found == 1, "round %d: B never saw the file (A's result came %.1f ms late)",
                  round, ms);
        if (get_exact(ctx, c, &v, sizeof(v), "C") == 0)
            CHECK(v.v == 81 && v.rank == 1, "round %d: C: %" PRId64 " from rank %d", round, v.v,
                  v.rank);
        printf("%s: round %d: A's result after %.2f ms, B ran behind it\n", g_scn, round, ms);
        unlink(path);
        deed_ref_release(ctx, a);
        deed_ref_release(ctx, b);
        deed_ref_release(ctx, c);
    }
}

/* ---- scenario 7: task_table ---- */

static int scn_task_table(void)
{
    const char *rs = getenv("DEED_RANK");
    int rank = rs ? atoi(rs) : -1;
    deed_ctx_t *ctx = NULL;
    if (rs && strcmp(rs, "1") == 0) {
        int rc = deed_task_register("mr_only_here", mr_only_here, NULL);
        if (rc != DEED_OK) {
            printf("task_table: rank %d: registering the extra task failed: %s\n", rank,
                   deed_strerror(rc));
            return 2;
        }
    }
    int rc = deed_init(NULL, &ctx);
    if (rc == DEED_OK) {
        printf("task_table: rank %d: deed_init succeeded although the task tables differ\n",
               rank);
        fflush(stdout);
        deed_finalize(ctx);
        return 1;
    }
    printf("task_table: rank %d: deed_init failed as expected: %s\n", rank, deed_strerror(rc));
    fflush(stdout);
    return 3; /* a rank whose init failed exits non-zero */
}

static int rank_main(const char *scn)
{
    deed_ctx_t *ctx = NULL;
    g_scn = scn;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(scn, "task_table") == 0)
        return scn_task_table();
    if (strcmp(scn, "no_holdback") == 0)
        setenv("DEED_WORKERS", "1", 1); /* the tasks must queue behind each other */

    int rc = deed_init(NULL, &ctx);
    if (rc != DEED_OK) {
        printf("%s: deed_init failed: %s\n", scn, deed_strerror(rc));
        return 2;
    }
    int rank = deed_rank(ctx);
    if (rank == 0) {
        uint64_t t0 = tu_now_ns();
        printf("%s: %d ranks\n", scn, deed_nranks(ctx));
        if (strcmp(scn, "remote_tasks") == 0)
            scn_remote_tasks(ctx);
        else if (strcmp(scn, "large_objects") == 0)
            scn_large_objects(ctx);
        else if (strcmp(scn, "three_ranks") == 0)
            scn_three_ranks(ctx);
        else if (strcmp(scn, "borrower_chain") == 0)
            scn_borrower_chain(ctx);
        else if (strcmp(scn, "random_dag") == 0)
            scn_random_dag(ctx);
        else if (strcmp(scn, "long_driver") == 0)
            scn_long_driver(ctx);
        else if (strcmp(scn, "no_holdback") == 0)
            scn_no_holdback(ctx);
        else
            CHECK(0, "unknown scenario");
        if (!g_stuck)
            check_gc(ctx);
        printf("%s: %s (%d failed checks, %.0f ms)\n", scn, g_fails ? "FAIL" : "PASS", g_fails,
               tu_ms_since(t0));
        if (g_stuck) {
            /* deed_finalize would wait for the stuck tasks forever */
            printf("%s: rank 0: a get timed out; exiting without deed_finalize\n", scn);
            fflush(stdout);
            _exit(1);
        }
    }
    rc = deed_finalize(ctx);
    if (rc != DEED_OK) {
        printf("%s: rank %d: deed_finalize: %s\n", scn, rank, deed_strerror(rc));
        g_fails++;
    }
    printf("%s: rank %d finalized\n", scn, rank);
    return g_fails ? 1 : 0;
}

/* ==== the Check suite ====================================================================== */

static char self_path[PATH_MAX];
static const char *deedrun_path;

/* Run `deedrun -n N <self> --rank SCN` with UCX_TLS=tls; return its wait status (-1 on a
 * timeout) and its output (stdout and stderr together) in *out (malloc'd). */
static int run_job(const char *tls, int nranks, const char *scn, const char *store,
                   const char *boot_timeout, int timeout_s, char **out)
{
    char tmpl[] = "/tmp/deed-multirank-XXXXXX";
    int fd = mkstemp(tmpl);
    ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(tmpl);
    char nstr[16];
    snprintf(nstr, sizeof(nstr), "%d", nranks);

    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        setenv("UCX_TLS", tls, 1);
        setenv("DEED_PIN", "0", 1); /* ranks share the cores */
        if (store)
            setenv("DEED_STORE_SIZE", store, 1);
        execl(deedrun_path, deedrun_path, "-n", nstr, "--timeout", boot_timeout, self_path, "--rank",
              scn, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", deedrun_path, strerror(errno));
        _exit(127);
    }
    int status = 0, timed_out = 0;
    uint64_t t0 = tu_now_ns();
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (!timed_out && tu_ms_since(t0) > timeout_s * 1000.0) {
            timed_out = 1;
            kill(pid, SIGTERM); /* deedrun forwards it to the ranks */
        } else if (timed_out && tu_ms_since(t0) > (timeout_s + 10) * 1000.0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
        usleep(20000);
    }
    struct stat st;
    fstat(fd, &st);
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t got = pread(fd, buf, (size_t)st.st_size, 0);
    buf[got > 0 ? got : 0] = 0;
    close(fd);
    *out = buf;
    return timed_out ? -1 : status;
}

struct scenario {
    const char *name;
    int nranks;
    const char *store;
    const char *boot_timeout; /* deedrun --timeout (DEED_BOOT_TIMEOUT of the ranks) */
};

static const struct scenario scenarios[] = {
    {"remote_tasks", 4, NULL, "280"},
    {"large_objects", 2, "512M", "280"},
    {"three_ranks", 3, "512M", "280"},
    {"borrower_chain", 4, "512M", "280"},
    {"random_dag", 4, "512M", "280"},
    /* rank 0 drives for 8 s while the others wait in deed_finalize: the bootstrap timeout
     * must not apply to a healthy job's finalize barrier */
    {"long_driver", 2, NULL, "3"},
    {"no_holdback", 2, NULL, "280"},
};
#define NSCENARIOS ((int)(sizeof(scenarios) / sizeof(scenarios[0])))

static void run_scenario(const char *tls, const struct scenario *s)
{
    char *out = NULL;
    uint64_t t0 = tu_now_ns();
    int st = run_job(tls, s->nranks, s->name, s->store, s->boot_timeout, 240, &out);
    int ok = st == 0;
    char line[256];
    snprintf(line, sizeof(line), "[0] %s: PASS", s->name);
    ok = ok && strstr(out, line) != NULL;
    for (int r = 0; r < s->nranks; r++) {
        snprintf(line, sizeof(line), "[%d] %s: rank %d finalized", r, s->name, r);
        ok = ok && strstr(out, line) != NULL;
    }
    const char *err = strstr(out, "] error: ");
    ok = ok && err == NULL;
    fprintf(stderr, "==== %s over UCX_TLS=%s (%d ranks): %s in %.1f s ====\n", s->name, tls,
            s->nranks, ok ? "pass" : "FAIL", tu_ms_since(t0) / 1000.0);
    fprintf(stderr, "%s", out);
    ck_assert_msg(st != -1, "%s (UCX_TLS=%s): timed out", s->name, tls);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "%s (UCX_TLS=%s): deedrun exit status %d (signal %d)", s->name, tls,
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    snprintf(line, sizeof(line), "[0] %s: PASS", s->name);
    ck_assert_msg(strstr(out, line) != NULL, "%s (UCX_TLS=%s): no '%s' line", s->name, tls, line);
    for (int r = 0; r < s->nranks; r++) {
        snprintf(line, sizeof(line), "[%d] %s: rank %d finalized", r, s->name, r);
        ck_assert_msg(strstr(out, line) != NULL, "%s (UCX_TLS=%s): no '%s' line", s->name, tls,
                      line);
    }
    /* a correct program must not make the runtime log errors */
    if (err) {
        const char *bol = err, *eol = strchr(err, '\n');
        while (bol > out && bol[-1] != '\n')
            bol--;
        ck_abort_msg("%s (UCX_TLS=%s): the runtime logged an error: %.*s", s->name, tls,
                     (int)(eol ? eol - bol : (long)strlen(bol)), bol);
    }
    free(out);
}

static void run_task_table(const char *tls)
{
    char *out = NULL, line[256];
    const int n = 3;
    int st = run_job(tls, n, "task_table", NULL, "60", 120, &out);
    fprintf(stderr, "==== task_table over UCX_TLS=%s ====\n%s", tls, out);
    ck_assert_msg(st != -1, "task_table: timed out (a rank hung in deed_init?)");
    ck_assert_msg(!(WIFEXITED(st) && WEXITSTATUS(st) == 0),
                  "task_table: deedrun exited 0 although the task tables differ");
    ck_assert_msg(strstr(out, "succeeded although") == NULL,
                  "task_table: a rank's deed_init succeeded");
    for (int r = 0; r < n; r++) {
        snprintf(line, sizeof(line), "[%d] task_table: rank %d: deed_init failed as expected", r,
                 r);
        ck_assert_msg(strstr(out, line) != NULL, "task_table: no '%s' line", line);
    }
    ck_assert_msg(strstr(out, "different task table") != NULL,
                  "task_table: no message saying the task tables differ");
    free(out);
}

START_TEST(shm_scenario)
{
    run_scenario(TLS_SHM, &scenarios[_i]);
}
END_TEST

START_TEST(tcp_scenario)
{
    run_scenario(TLS_TCP, &scenarios[_i]);
}
END_TEST

START_TEST(shm_task_table)
{
    run_task_table(TLS_SHM);
}
END_TEST

START_TEST(tcp_task_table)
{
    run_task_table(TLS_TCP);
}
END_TEST

static Suite *multirank_suite(void)
{
    Suite *s = suite_create("multirank");
    TCase *shm = tcase_create("shm");
    tcase_set_timeout(shm, 300);
    tcase_add_loop_test(shm, shm_scenario, 0, NSCENARIOS);
    tcase_add_test(shm, shm_task_table);
    suite_add_tcase(s, shm);
    TCase *tcp = tcase_create("tcp");
    tcase_set_timeout(tcp, 300);
    tcase_add_loop_test(tcp, tcp_scenario, 0, NSCENARIOS);
    tcase_add_test(tcp, tcp_task_table);
    suite_add_tcase(s, tcp);
    return s;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--rank") == 0)
        return rank_main(argv[2]);

    ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return EXIT_FAILURE;
    }
    self_path[n] = 0;
    deedrun_path = getenv("DEED_TEST_DEEDRUN");
    if (deedrun_path == NULL || access(deedrun_path, X_OK) != 0) {
        fprintf(stderr, "DEED_TEST_DEEDRUN is not set to an executable deedrun (got %s)\n",
                deedrun_path ? deedrun_path : "(unset)");
        return EXIT_FAILURE;
    }
    return tu_run(multirank_suite());
}
