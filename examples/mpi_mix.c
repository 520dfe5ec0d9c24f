/*
 * mpi_mix.c — deed inside an MPI program (libdeed_mpi, include/deed/mpi.h).
 *
 * What it shows:
 *   - deed_init_mpi(MPI_COMM_WORLD): the deed ranks are the MPI ranks, and they find each
 *     other with MPI collectives (no deedrun, rendezvous or job key);
 *   - an MPI phase and a deed phase in the same program, feeding each other:
 *       1. MPI: MPI_Allreduce of (rank + 1) over all ranks gives S = n(n+1)/2;
 *       2. deed: every rank submits `tasks` tasks "poly" with argument (S, rank, i), placed
 *          round robin on every rank of the job (deed_submit_opts' rank hint), and adds up
 *          their results;
 *       3. MPI: MPI_Allreduce of the per-rank sums, checked on every rank against the same
 *          sum computed with plain loops;
 *   - deed_finalize before MPI_Finalize (both are collective).
 *
 * usage: mpirun -n 4 mpi_mix [tasks]      (default 64 tasks per rank)
 * Prints "mpi_mix result: OK" on every rank when the check passed; exits non-zero otherwise.
 */
#include <deed/mpi.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* The work of one task: a small polynomial of the inputs (exact in 64-bit integers). */
static int64_t poly(int64_t s, int64_t rank, int64_t i)
{
    return s * s + 3 * rank * i + i * i + 7;
}

static int poly_task(deed_task_t *task, const deed_arg_t *args, uint32_t nargs)
{
    int64_t in[3], out;

    if (nargs != 1 || args[0].size != sizeof(in))
        return deed_task_fail(task, 1, "poly: expected one int64_t[3] argument");
    for (int k = 0; k < 3; k++)
        in[k] = ((const int64_t *)args[0].data)[k];
    out = poly(in[0], in[1], in[2]);
    return deed_task_return(task, 0, &out, sizeof(out));
}
DEED_REGISTER_AS(poly_task, "poly")

int main(int argc, char **argv)
{
    int rank, size, tasks = 64, bad = 0;
    int64_t mine, s = 0, local = 0, total = 0, expect = 0;
    deed_ctx_t *ctx = NULL;
    deed_ref_t *refs;
    deed_status_t rc;
    deed_task_id_t id = deed_task_id("poly");

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 1 && (tasks = atoi(argv[1])) <= 0) {
        if (rank == 0)
            fprintf(stderr, "usage: %s [tasks per rank > 0]\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    if ((rc = deed_init_mpi(MPI_COMM_WORLD, NULL, &ctx)) != DEED_OK) {
        fprintf(stderr, "mpi_mix: rank %d: deed_init_mpi: %s\n", rank, deed_strerror(rc));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (deed_rank(ctx) != rank || deed_nranks(ctx) != size) {
        fprintf(stderr, "mpi_mix: rank %d: deed says rank %d of %d, MPI says %d of %d\n", rank,
                deed_rank(ctx), deed_nranks(ctx), rank, size);
        bad = 1;
    }

    /* 1. MPI phase */
    mine = rank + 1;
    MPI_Allreduce(&mine, &s, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);

    /* 2. deed phase: tasks on every rank */
    refs = calloc((size_t)tasks, sizeof(*refs));
    if (!refs)
        MPI_Abort(MPI_COMM_WORLD, 1);
    for (int i = 0; i < tasks && !bad; i++) {
        int64_t in[3] = {s, rank, i};
        deed_arg_in_t arg = DEED_VAL(in, sizeof(in));
        deed_submit_opts_t opts = DEED_SUBMIT_OPTS_INIT;
        opts.rank = (rank + i) % size;
        if ((rc = deed_submit_opts(ctx, id, &arg, 1, &refs[i], 1, &opts)) != DEED_OK) {
            fprintf(stderr, "mpi_mix: rank %d: submit %d: %s\n", rank, i, deed_strerror(rc));
            bad = 1;
        }
    }
    for (int i = 0; i < tasks; i++) {
        int64_t v = 0;
        if (deed_ref_is_null(refs[i]))
            continue;
        rc = deed_get_copy(ctx, refs[i], &v, sizeof(v), NULL, DEED_WAIT_FOREVER);
        if (rc != DEED_OK) {
            fprintf(stderr, "mpi_mix: rank %d: task %d: %s\n", rank, i, deed_strerror(rc));
            bad = 1;
        }
        local += v;
        deed_ref_release(ctx, refs[i]);
    }
    free(refs);

    /* 3. MPI phase on the deed results, checked against plain loops */
    MPI_Allreduce(&local, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    for (int r = 0; r < size; r++)
        for (int i = 0; i < tasks; i++)
            expect += poly((int64_t)size * (size + 1) / 2, r, i);
    if (s != (int64_t)size * (size + 1) / 2 || total != expect)
        bad = 1;
    printf("mpi_mix: rank %d of %d: S = %" PRId64 ", sum of %d tasks per rank = %" PRId64
           " (expected %" PRId64 ")\n",
           rank, size, s, tasks, total, expect);

    if ((rc = deed_finalize(ctx)) != DEED_OK) {
        fprintf(stderr, "mpi_mix: rank %d: deed_finalize: %s\n", rank, deed_strerror(rc));
        bad = 1;
    }
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    printf("mpi_mix result: %s\n", bad ? "FAILED" : "OK");
    MPI_Finalize();
    return bad ? 1 : 0;
}
