/*
 * demo.c — the demo job that tools/demo.sh runs: a small but complete deed program.
 *
 * What it shows, in order:
 *   1. data in the store: a large array is split into chunks, each put into the object store
 *      with deed_put (chunks above DEED_INLINE_MAX live in pinned store memory);
 *   2. a tree reduction: one task per chunk computes a partial sum, receiving its chunk by
 *      reference (DEED_REF, zero-copy); "combine" tasks add groups of partial sums; a final
 *      task receives the combine results as futures (DEED_FUT), waits for all of them with
 *      deed_wait and gets each one itself. The driver submits the whole tree at once and
 *      only waits for the root;
 *   3. contained refs: an index object made with deed_put_refs holds the refs of every chunk;
 *      a task that receives the index by reference sees those refs (borrowed) and gets each
 *      chunk through them;
 *   4. errors are values: a task that fails on purpose, and a task that takes its result as
 *      argument, both yield error objects whose code and message reach the driver's get;
 *   5. nested tasks: a short recursive Fibonacci where each task submits and gets children;
 *   6. statistics: deed_stats before finalize (no misuse, no leaked pending tasks).
 *
 * Every result is checked against a plain computation. The last line is "demo result: OK"
 * when every check passed; the exit status is non-zero otherwise.
 *
 * usage: demo [elements] [chunks] [fib_n]     (defaults 4194304, 32, 18)
 * Every rank of a multi-rank job runs the same computation on its own data and reports it.
 */
#include <deed.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FANIN 4         /* partial sums added by one combine task */
#define FAIL_CODE 42    /* the code the failing task returns */

static int checks_failed;

#define EXPECT(cond, ...)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "demo: check failed: " __VA_ARGS__);                              \
            fputc('\n', stderr);                                                              \
            checks_failed++;                                                                  \
        }                                                                                     \
    } while (0)

static uint64_t element(uint64_t i)
{
    return (i * 2654435761u) % 1000003u;
}

/* ---- tasks ------------------------------------------------------------------------------ */

/* args[0]: a chunk of uint64_t (by reference). Returns the sum of its elements. */
static int chunk_sum(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    if (nargs != 1 || args[0].size % sizeof(uint64_t) != 0)
        return deed_task_fail(task, 1, "chunk_sum: expected one array of uint64_t");
    const uint64_t *a = args[0].data;
    uint64_t s = 0;
    for (size_t i = 0; i < args[0].size / sizeof(uint64_t); i++)
        s += a[i];
    return deed_task_return(task, 0, &s, sizeof(s));
}
DEED_REGISTER(chunk_sum)

/* args[]: partial sums (each by reference, 8 bytes). Returns their sum. */
static int combine(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    uint64_t s = 0, x;
    for (uint32_t i = 0; i < nargs; i++) {
        if (args[i].size != sizeof(x))
            return deed_task_fail(task, 1, "combine: argument %u has %zu bytes", i,
                                  args[i].size);
        memcpy(&x, args[i].data, sizeof(x));
        s += x;
    }
    return deed_task_return(task, 0, &s, sizeof(s));
}
DEED_REGISTER(combine)

/* args[]: futures of partial sums. Waits for all of them, then gets and adds them. */
static int sum_futures(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    deed_ctx_t *ctx = deed_task_ctx(task);
    deed_ref_t refs[256];
    uint64_t s = 0, x;
    deed_status_t rc;

    if (nargs > 256)
        return deed_task_fail(task, 1, "sum_futures: at most 256 futures");
    for (uint32_t i = 0; i < nargs; i++)
        refs[i] = args[i].ref; /* borrowed: valid while this task runs */
    rc = deed_wait(ctx, refs, nargs, nargs, DEED_WAIT_FOREVER, NULL);
    if (rc != DEED_OK)
        return deed_task_fail(task, 2, "sum_futures: wait: %s", deed_strerror(rc));
    for (uint32_t i = 0; i < nargs; i++) {
        rc = deed_get_copy(ctx, refs[i], &x, sizeof(x), NULL, DEED_WAIT_FOREVER);
        if (rc != DEED_OK)
            return deed_task_fail(task, 3, "sum_futures: get %u: %s", i, deed_strerror(rc));
        s += x;
    }
    return deed_task_return(task, 0, &s, sizeof(s));
}
DEED_REGISTER(sum_futures)

/* args[0]: the index object (by reference): its bytes say how many elements it covers, its
 * contained refs are the chunks. Maps every chunk through its ref and returns
 * {number of chunks, number of elements, sum of the first element of every chunk}. */
static int index_scan(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    deed_ctx_t *ctx = deed_task_ctx(task);
    uint64_t out[3] = {0, 0, 0};

    if (nargs != 1 || args[0].kind != DEED_ARG_REF)
        return deed_task_fail(task, 1, "index_scan: expected the index by reference");
    for (uint32_t i = 0; i < args[0].nrefs; i++) {
        deed_view_t v;
        deed_status_t rc = deed_get(ctx, args[0].refs[i], &v, DEED_WAIT_FOREVER);
        if (rc != DEED_OK) {
            if (v.priv)
                deed_view_release(ctx, &v);
            return deed_task_fail(task, 2, "index_scan: chunk %u: %s", i, deed_strerror(rc));
        }
        out[0]++;
        out[1] += v.size / sizeof(uint64_t);
        if (v.size >= sizeof(uint64_t))
            out[2] += *(const uint64_t *)v.data;
        deed_view_release(ctx, &v);
    }
    return deed_task_return(task, 0, out, sizeof(out));
}
DEED_REGISTER(index_scan)

static int fail_on_purpose(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    return deed_task_fail(task, FAIL_CODE, "this task fails on purpose");
}
DEED_REGISTER(fail_on_purpose)

static int demo_fib(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    deed_ctx_t *ctx = deed_task_ctx(task);
    deed_task_id_t self = deed_task_id("demo_fib");
    int64_t n = *(const int64_t *)args[0].data, r[2] = {0, 0}, m[2] = {n - 1, n - 2};
    deed_ref_t kid[2];
    deed_status_t rc = DEED_OK;

    if (n < 2)
        return deed_task_return(task, 0, &n, sizeof(n));
    for (int i = 0; i < 2; i++) {
        deed_arg_in_t a = DEED_VAL(&m[i], sizeof(m[i]));
        if ((rc = deed_submit(ctx, self, &a, 1, &kid[i], 1)) != DEED_OK) {
            if (i == 1)
                deed_ref_release(ctx, kid[0]);
            return deed_task_fail(task, 1, "demo_fib: submit: %s", deed_strerror(rc));
        }
    }
    for (int i = 0; i < 2; i++) {
        deed_status_t r2 = deed_get_copy(ctx, kid[i], &r[i], sizeof(r[i]), NULL, -1);
        if (rc == DEED_OK)
            rc = r2;
        deed_ref_release(ctx, kid[i]);
    }
    if (rc != DEED_OK)
        return deed_task_fail(task, 2, "demo_fib: get: %s", deed_strerror(rc));
    int64_t s = r[0] + r[1];
    return deed_task_return(task, 0, &s, sizeof(s));
}
DEED_REGISTER(demo_fib)

/* ---- driver ----------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long arg_long(int argc, char **argv, int i, long dflt, long lo, long hi)
{
    if (argc <= i)
        return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "usage: %s [elements 1-1e9] [chunks 1-1024] [fib_n 0-30]\n", argv[0]);
        exit(2);
    }
    return v;
}

/* Submit, then abort the demo on a submission error (it would only cascade). */
#define SUBMIT(ctx, name, args, nargs, ret)                                                   \
    do {                                                                                      \
        deed_status_t src_ = deed_submit((ctx), deed_task_id(name), (args), (nargs), (ret), 1); \
        if (src_ != DEED_OK) {                                                                \
            fprintf(stderr, "demo: submit %s: %s\n", (name), deed_strerror(src_));            \
            return 1;                                                                         \
        }                                                                                     \
    } while (0)

/* Tree reduction of the chunks; fills *total. Returns 0, or 1 on a fatal API error. */
static int reduce(deed_ctx_t *ctx, const deed_ref_t *chunks, uint32_t nchunks, uint64_t *total,
                  deed_status_t *status)
{
    uint32_t ncomb = (nchunks + FANIN - 1) / FANIN;
    deed_ref_t *partial = calloc(nchunks, sizeof(*partial));
    deed_ref_t *comb = calloc(ncomb, sizeof(*comb));
    deed_arg_in_t args[FANIN > 256 ? FANIN : 256];
    deed_ref_t root;

    if (partial == NULL || comb == NULL || ncomb > 256)
        return 1;
    for (uint32_t i = 0; i < nchunks; i++) { /* level 1: one task per chunk */
        args[0] = DEED_REF(chunks[i]);
        SUBMIT(ctx, "chunk_sum", args, 1, &partial[i]);
    }
    for (uint32_t c = 0; c < ncomb; c++) { /* level 2: groups of FANIN partial sums */
        uint32_t n = 0;
        for (uint32_t i = c * FANIN; i < nchunks && i < (c + 1) * FANIN; i++)
            args[n++] = DEED_REF(partial[i]);
        SUBMIT(ctx, "combine", args, n, &comb[c]);
    }
    deed_ref_release_n(ctx, partial, nchunks); /* the combine tasks hold them now */
    for (uint32_t c = 0; c < ncomb; c++)      /* root: futures, got inside the task */
        args[c] = DEED_FUT(comb[c]);
    SUBMIT(ctx, "sum_futures", args, ncomb, &root);
    deed_ref_release_n(ctx, comb, ncomb);
    *status = deed_get_copy(ctx, root, total, sizeof(*total), NULL, DEED_WAIT_FOREVER);
    deed_ref_release(ctx, root);
    free(partial);
    free(comb);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t nelem = (uint64_t)arg_long(argc, argv, 1, 4194304, 1, 1000000000);
    uint32_t nchunks = (uint32_t)arg_long(argc, argv, 2, 32, 1, 1024);
    int64_t fib_n = arg_long(argc, argv, 3, 18, 0, 30);
    deed_ctx_t *ctx = NULL;
    deed_status_t rc;

    if (nchunks > nelem)
        nchunks = (uint32_t)nelem;
    if ((rc = deed_init(NULL, &ctx)) != DEED_OK) {
        fprintf(stderr, "demo: deed_init: %s\n", deed_strerror(rc));
        return 1;
    }
    int rank = deed_rank(ctx), nranks = deed_nranks(ctx);
    printf("deed %d.%d.%d demo: rank %d of %d\n", DEED_VERSION_MAJOR, DEED_VERSION_MINOR,
           DEED_VERSION_PATCH, rank, nranks);
    EXPECT(rank >= 0 && nranks >= 1 && rank < nranks, "rank %d / nranks %d", rank, nranks);

    /* 1. The array, and its chunks in the store. */
    uint64_t *a = malloc(nelem * sizeof(*a)), expect_sum = 0, expect_firsts = 0;
    deed_ref_t *chunks = calloc(nchunks, sizeof(*chunks));
    if (a == NULL || chunks == NULL) {
        fprintf(stderr, "demo: out of memory\n");
        return 1;
    }
    for (uint64_t i = 0; i < nelem; i++) {
        a[i] = element(i + (uint64_t)rank);
        expect_sum += a[i];
    }
    double t0 = now_s();
    for (uint32_t c = 0; c < nchunks; c++) {
        uint64_t lo = nelem * c / nchunks, hi = nelem * (c + 1) / nchunks;
        expect_firsts += a[lo];
        if ((rc = deed_put(ctx, a + lo, (hi - lo) * sizeof(*a), &chunks[c])) != DEED_OK) {
            fprintf(stderr, "demo: put chunk %u: %s\n", c, deed_strerror(rc));
            return 1;
        }
    }
    free(a); /* deed_put copied the bytes */
    double t_put = now_s() - t0;

    /* 2. Tree reduction. */
    uint64_t total = 0;
    t0 = now_s();
    if (reduce(ctx, chunks, nchunks, &total, &rc))
        return 1;
    double t_red = now_s() - t0;
    EXPECT(rc == DEED_OK, "reduction: %s", deed_strerror(rc));
    EXPECT(total == expect_sum, "sum %" PRIu64 " != %" PRIu64, total, expect_sum);
    printf("  tree reduction: %" PRIu64 " elements in %u chunks (%.1f MiB put in %.3f s), "
           "%u chunk tasks + %u combine tasks + 1 root task: sum = %" PRIu64 " (expected %" PRIu64
           ") in %.3f s %s\n",
           nelem, nchunks, (double)nelem * 8 / (1 << 20), t_put, nchunks,
           (nchunks + FANIN - 1) / FANIN, total, expect_sum, t_red,
           rc == DEED_OK && total == expect_sum ? "ok" : "FAILED");

    /* 3. Contained refs: an index object that holds every chunk's ref. */
    deed_ref_t index, scan;
    uint64_t scanned[3] = {0, 0, 0};
    if ((rc = deed_put_refs(ctx, &nelem, sizeof(nelem), chunks, nchunks, &index)) != DEED_OK) {
        fprintf(stderr, "demo: put_refs: %s\n", deed_strerror(rc));
        return 1;
    }
    deed_ref_release_n(ctx, chunks, nchunks); /* the index keeps the chunks alive */
    deed_arg_in_t iarg = DEED_REF(index);
    SUBMIT(ctx, "index_scan", &iarg, 1, &scan);
    deed_ref_release(ctx, index);
    rc = deed_get_copy(ctx, scan, scanned, sizeof(scanned), NULL, DEED_WAIT_FOREVER);
    deed_ref_release(ctx, scan);
    int idx_ok = rc == DEED_OK && scanned[0] == nchunks && scanned[1] == nelem &&
                 scanned[2] == expect_firsts;
    EXPECT(idx_ok, "index scan: %s, %" PRIu64 " chunks, %" PRIu64 " elements", deed_strerror(rc),
           scanned[0], scanned[1]);
    printf("  contained refs: index object with %u refs -> task saw %" PRIu64
           " chunks, %" PRIu64 " elements %s\n",
           nchunks, scanned[0], scanned[1], idx_ok ? "ok" : "FAILED");

    /* 4. Errors are values, and they propagate through arguments. */
    deed_ref_t bad, dependent;
    deed_view_t v;
    SUBMIT(ctx, "fail_on_purpose", NULL, 0, &bad);
    deed_arg_in_t barg = DEED_REF(bad);
    SUBMIT(ctx, "chunk_sum", &barg, 1, &dependent);
    rc = deed_get(ctx, dependent, &v, DEED_WAIT_FOREVER);
    int err_ok = rc == DEED_ERR_TASK_FAILED && v.error_code == FAIL_CODE && v.error_msg &&
                 strstr(v.error_msg, "on purpose") != NULL;
    EXPECT(err_ok, "error propagation: got %s, code %d, message %s", deed_strerror(rc),
           v.error_code, v.error_msg ? v.error_msg : "(none)");
    printf("  errors as values: dependent of a failed task -> \"%s\", code %d, \"%s\" %s\n",
           deed_strerror(rc), v.error_code, v.error_msg ? v.error_msg : "(none)",
           err_ok ? "ok" : "FAILED");
    if (v.priv)
        deed_view_release(ctx, &v);
    deed_ref_release(ctx, dependent);
    deed_ref_release(ctx, bad);

    /* 5. Nested tasks. */
    deed_ref_t fut;
    int64_t fib = -1, fa = 0, fb = 1;
    deed_arg_in_t farg = DEED_VAL(&fib_n, sizeof(fib_n));
    t0 = now_s();
    SUBMIT(ctx, "demo_fib", &farg, 1, &fut);
    rc = deed_get_copy(ctx, fut, &fib, sizeof(fib), NULL, DEED_WAIT_FOREVER);
    deed_ref_release(ctx, fut);
    for (int64_t i = 0; i < fib_n; i++) {
        int64_t c = fa + fb;
        fa = fb;
        fb = c;
    }
    EXPECT(rc == DEED_OK && fib == fa, "fib(%" PRId64 "): %s, %" PRId64 " != %" PRId64, fib_n,
           deed_strerror(rc), fib, fa);
    printf("  nested tasks: fib(%" PRId64 ") = %" PRId64 " (expected %" PRId64 ") in %.3f s %s\n",
           fib_n, fib, fa, now_s() - t0, rc == DEED_OK && fib == fa ? "ok" : "FAILED");

    /* 6. Statistics. */
    deed_stats_t st = {.size = sizeof(st)};
    rc = deed_stats(ctx, &st);
    EXPECT(rc == DEED_OK, "stats: %s", deed_strerror(rc));
    EXPECT(st.misuse == 0, "%" PRIu64 " API misuses reported", st.misuse);
    EXPECT(st.tasks_failed == 2, "%" PRIu64 " failed tasks, expected 2", st.tasks_failed);
    printf("  stats: %" PRIu64 " tasks submitted, %" PRIu64 " run, %" PRIu64 " failed, %" PRIu64
           " pending, %" PRIu64 " objects alive, %u workers / %u threads, %" PRIu64
           " misuse\n",
           st.tasks_submitted, st.tasks_run, st.tasks_failed, st.tasks_pending,
           st.objects_alive, st.workers, st.threads, st.misuse);

    rc = deed_finalize(ctx);
    EXPECT(rc == DEED_OK, "finalize: %s", deed_strerror(rc));
    free(chunks);
    if (checks_failed) {
        printf("demo result: FAILED (%d checks failed)\n", checks_failed);
        return 1;
    }
    printf("demo result: OK\n");
    return 0;
}
