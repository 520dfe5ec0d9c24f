/*
 * deed/mpi.h — start deed inside an MPI program (libdeed_mpi; link with -ldeed_mpi -ldeed,
 * or pkg-config deed_mpi).
 *
 *     MPI_Init(&argc, &argv);
 *     deed_ctx_t *ctx;
 *     if (deed_init_mpi(MPI_COMM_WORLD, NULL, &ctx) != DEED_OK) MPI_Abort(MPI_COMM_WORLD, 1);
 *     ... MPI phases and deed tasks, in any order ...
 *     deed_finalize(ctx);      // before MPI_Finalize
 *     MPI_Finalize();
 *
 * The ranks of the deed job are the ranks of comm (deed rank r = MPI rank r in comm); they
 * find each other with MPI collectives on a duplicate of comm (MPI_Allgather, MPI_Allgatherv,
 * MPI_Barrier), so no launcher variables, rendezvous or job key are needed. deed_init_mpi is
 * collective over comm: every rank of comm must call it. deed_finalize is collective too
 * (it runs barriers on the duplicate communicator) and must come before MPI_Finalize.
 * deed's own traffic goes over its transport (DEED_TRANSPORT, e.g. UCX), not over MPI, and
 * only the thread that calls deed_init_mpi / deed_finalize makes MPI calls, so
 * MPI_THREAD_SINGLE or MPI_THREAD_FUNNELED is enough.
 */
#ifndef DEED_MPI_H
#define DEED_MPI_H

#include <mpi.h>

#include <deed.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * deed_init for the ranks of an MPI communicator (collective over @p comm).
 * @param comm an intracommunicator (e.g. MPI_COMM_WORLD); deed keeps a duplicate of it until
 *        deed_finalize.
 * @param cfg  as for deed_init (NULL: defaults + environment).
 * @param ctx  receives the context.
 * @return DEED_OK; DEED_ERR_INVALID_ARG (NULL ctx, MPI_COMM_NULL, MPI not initialized or
 *         already finalized); DEED_ERR_BOOTSTRAP (an MPI collective failed); anything
 *         deed_init returns.
 */
deed_status_t deed_init_mpi(MPI_Comm comm, const deed_config_t *cfg, deed_ctx_t **ctx);

#ifdef __cplusplus
}
#endif

#endif /* DEED_MPI_H */
