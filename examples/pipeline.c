/*
 * pipeline.c — several pipelines of large objects in flight at once.
 *
 * What it shows:
 *   - large objects produced in place: each stage allocates its output with
 *     deed_task_return_alloc, which hands out memory straight in the rank's store (no copy);
 *   - large arguments passed by reference: each stage receives the previous stage's object
 *     with DEED_REF and reads its bytes where they lie (zero-copy, args[0].data);
 *   - chaining futures without waiting: the driver submits every stage of every pipeline up
 *     front, passing the ref of stage s as the argument of stage s+1, and releases each
 *     intermediate ref right after submitting its consumer (the pending task keeps the
 *     object alive; the store bytes are freed as soon as the consumer is done);
 *   - a zero-copy deed_get of the final objects, checked against a checksum computed by a
 *     plain loop.
 *
 * Stage 0 fills an object of `mib` MiB with a sequence derived from the pipeline number;
 * stages 1..S-1 each map every 64-bit word through a stage-dependent mixing function.
 *
 * usage: pipeline [pipelines] [stages] [mib]     (defaults 4, 4 and 8)
 */
#include <deed.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct gen_args {
    uint64_t seed;
    uint64_t words;
};

static uint64_t gen_word(uint64_t seed, uint64_t i)
{
    return seed * 0x9e3779b97f4a7c15ull + i;
}

static uint64_t mix_word(uint64_t x, uint64_t stage)
{
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull + 2 * stage;
    x ^= x >> 27;
    return x + stage;
}

/* Stage 0: produce the first object (words 64-bit words) in place. */
static int gen_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    struct gen_args g;
    uint64_t *out;
    deed_status_t rc;

    if (nargs != 1 || args[0].size != sizeof(g))
        return deed_task_fail(task, 1, "gen: bad arguments");
    memcpy(&g, args[0].data, sizeof(g));
    rc = deed_task_return_alloc(task, 0, g.words * sizeof(uint64_t), (void **)&out);
    if (rc != DEED_OK)
        return deed_task_fail(task, 2, "gen: return_alloc: %s", deed_strerror(rc));
    for (uint64_t i = 0; i < g.words; i++)
        out[i] = gen_word(g.seed, i);
    return 0;
}
DEED_REGISTER_AS(gen_task, "pipeline_gen")

/* Stage s >= 1: args[0] = the previous object (by reference), args[1] = s (by value). */
static int mix_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    uint64_t stage, *out;
    deed_status_t rc;

    if (nargs != 2 || args[0].kind != DEED_ARG_REF || args[0].size % sizeof(uint64_t) != 0 ||
        args[1].size != sizeof(stage))
        return deed_task_fail(task, 1, "mix: bad arguments");
    memcpy(&stage, args[1].data, sizeof(stage));
    const uint64_t *in = args[0].data;
    size_t words = args[0].size / sizeof(uint64_t);
    rc = deed_task_return_alloc(task, 0, args[0].size, (void **)&out);
    if (rc != DEED_OK)
        return deed_task_fail(task, 2, "mix: return_alloc: %s", deed_strerror(rc));
    for (size_t i = 0; i < words; i++)
        out[i] = mix_word(in[i], stage);
    return 0;
}
DEED_REGISTER_AS(mix_task, "pipeline_mix")

static uint64_t checksum(const uint64_t *w, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ w[i]) * 0x100000001b3ull;
    return h;
}

/* The same computation without deed, one word at a time. */
static uint64_t expected_checksum(uint64_t seed, uint64_t words, uint64_t stages)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < words; i++) {
        uint64_t x = gen_word(seed, i);
        for (uint64_t s = 1; s < stages; s++)
            x = mix_word(x, s);
        h = (h ^ x) * 0x100000001b3ull;
    }
    return h;
}

static long arg_long(int argc, char **argv, int i, long dflt, long lo, long hi)
{
    if (argc <= i)
        return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "usage: %s [pipelines 1-64] [stages 1-64] [mib 1-1024]\n", argv[0]);
        exit(2);
    }
    return v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    long npipes = arg_long(argc, argv, 1, 4, 1, 64);
    long nstages = arg_long(argc, argv, 2, 4, 1, 64);
    long mib = arg_long(argc, argv, 3, 8, 1, 1024);
    uint64_t words = (uint64_t)mib * (1u << 20) / sizeof(uint64_t);
    deed_task_id_t gen = deed_task_id("pipeline_gen"), mix = deed_task_id("pipeline_mix");
    deed_ref_t *last = calloc((size_t)npipes, sizeof(*last));
    deed_ctx_t *ctx = NULL;
    deed_status_t rc;
    int failures = 0;

    if (last == NULL || gen == 0 || mix == 0) {
        fprintf(stderr, "pipeline: out of memory or tasks not registered\n");
        return 1;
    }
    if ((rc = deed_init(NULL, &ctx)) != DEED_OK) {
        fprintf(stderr, "pipeline: deed_init: %s\n", deed_strerror(rc));
        return 1;
    }
    double t0 = now_s();

    /* Submit everything: stage by stage across the pipelines, so they all run at once. */
    for (long p = 0; p < npipes; p++) {
        struct gen_args g = {.seed = (uint64_t)p + 1, .words = words};
        deed_arg_in_t a = DEED_VAL(&g, sizeof(g));
        if ((rc = deed_submit(ctx, gen, &a, 1, &last[p], 1)) != DEED_OK) {
            fprintf(stderr, "pipeline %ld: submit gen: %s\n", p, deed_strerror(rc));
            return 1;
        }
    }
    for (uint64_t s = 1; s < (uint64_t)nstages; s++) {
        for (long p = 0; p < npipes; p++) {
            deed_arg_in_t a[2] = {DEED_REF(last[p]), DEED_VAL(&s, sizeof(s))};
            deed_ref_t next;
            if ((rc = deed_submit(ctx, mix, a, 2, &next, 1)) != DEED_OK) {
                fprintf(stderr, "pipeline %ld: submit stage %" PRIu64 ": %s\n", p, s,
                        deed_strerror(rc));
                return 1;
            }
            /* The stage just submitted holds the previous object until it has run. */
            deed_ref_release(ctx, last[p]);
            last[p] = next;
        }
    }

    /* Collect: map each final object (zero-copy) and checksum it. */
    uint64_t *sums = calloc((size_t)npipes, sizeof(*sums));
    for (long p = 0; p < npipes; p++) {
        deed_view_t v;
        rc = deed_get(ctx, last[p], &v, DEED_WAIT_FOREVER);
        if (rc != DEED_OK) {
            fprintf(stderr, "pipeline %ld: get: %s (%s)\n", p, deed_strerror(rc),
                    v.error_msg ? v.error_msg : "no message");
            failures++;
        } else if (v.size != words * sizeof(uint64_t)) {
            fprintf(stderr, "pipeline %ld: final object has %zu bytes, expected %" PRIu64 "\n",
                    p, v.size, words * sizeof(uint64_t));
            failures++;
        } else {
            sums[p] = checksum(v.data, words);
        }
        if (v.priv != NULL) /* error objects are mapped too and must be released */
            deed_view_release(ctx, &v);
        deed_ref_release(ctx, last[p]);
    }
    double dt = now_s() - t0;
    deed_stats_t st = {.size = sizeof(st)};
    deed_stats(ctx, &st);
    if ((rc = deed_finalize(ctx)) != DEED_OK) {
        fprintf(stderr, "pipeline: deed_finalize: %s\n", deed_strerror(rc));
        failures++;
    }

    for (long p = 0; p < npipes; p++) {
        uint64_t want = expected_checksum((uint64_t)p + 1, words, (uint64_t)nstages);
        int ok = sums[p] == want;
        printf("pipeline %ld: checksum %016" PRIx64 " expected %016" PRIx64 " %s\n", p,
               sums[p], want, ok ? "ok" : "MISMATCH");
        failures += !ok;
    }
    double moved = (double)npipes * (double)nstages * (double)mib;
    printf("%ld pipelines x %ld stages x %ld MiB: %.3f s, %.0f MiB produced (%.0f MiB/s), "
           "%" PRIu64 " tasks, store bytes in use at the end %" PRIu64 " bytes\n",
           npipes, nstages, mib, dt, moved, moved / dt, st.tasks_run, st.store_bytes_used);
    free(sums);
    free(last);
    if (failures) {
        printf("pipeline: FAILED (%d)\n", failures);
        return 1;
    }
    printf("pipeline: OK\n");
    return 0;
}
