/*
 * deed_mpi.c — libdeed_mpi: deed_init_mpi (include/deed/mpi.h) and the "mpi" bootstrap.
 *
 * The "mpi" bootstrap (struct boot_ops, lib/bootstrap.h) runs on a duplicate of the
 * caller's communicator: rank and size from it, an all-gather is MPI_Allgather of the
 * lengths + MPI_Allgatherv of the bytes, a barrier is MPI_Barrier, abort is MPI_Abort.
 * Errors on the duplicate return codes (MPI_ERRORS_RETURN) instead of aborting.
 *
 * How deed_init gets to it: the core has no entry point that takes boot ops, so
 * deed_init_mpi registers the ops (deed__boot_register), hands the duplicate communicator
 * over through a process-global (pending_comm, under init_lock) and calls deed_init with
 * DEED_BOOTSTRAP=mpi in the environment; the ops' init takes the communicator over and
 * frees it at fini. (With a core hook such as deed__init_with_boot(cfg, ops, arg, ctx) the
 * global and the environment variable would go away.) Calls to deed_init_mpi are
 * serialized; setenv is not thread-safe, so do not call getenv/setenv in other threads
 * meanwhile.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <deed/mpi.h>

#include "bootstrap.h"

struct mpib {
    MPI_Comm comm;
    int rank;
};

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static MPI_Comm pending_comm = MPI_COMM_NULL; /* set by deed_init_mpi, taken by mpi_init */

/* "deed[rank] error: bootstrap: mpi: <what> failed: <MPI's error string>" */
static void mpi_log(int rank, const char *what, int code)
{
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;

    if (code != MPI_SUCCESS)
        MPI_Error_string(code, text, &len);
    fprintf(stderr, "deed[%d] error: bootstrap: mpi: %s failed%s%s\n", rank, what,
            *text ? ": " : "", text);
}

static int mpi_finalized(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    return fin;
}

static const struct boot_ops boot_mpi_ops; /* defined below */

static int mpi_init(uint32_t timeout_ms, struct boot **bp, uint32_t *rank, uint32_t *nranks)
{
    struct boot *b;
    struct mpib *m;
    int r, n;

    (void)timeout_ms; /* MPI collectives cannot time out: the MPI launcher handles failures */
    if (!bp || !rank || !nranks)
        return DEED_ERR_INVALID_ARG;
    *bp = NULL;
    if (pending_comm == MPI_COMM_NULL) {
        fprintf(stderr, "deed error: bootstrap: mpi: DEED_BOOTSTRAP=mpi is only for "
                        "deed_init_mpi (include/deed/mpi.h); no communicator was given\n");
        return DEED_ERR_BOOTSTRAP;
    }
    b = calloc(1, sizeof(*b));
    m = calloc(1, sizeof(*m));
    if (!b || !m) {
        free(b);
        free(m);
        return DEED_ERR_NO_MEMORY;
    }
    m->comm = pending_comm;
    pending_comm = MPI_COMM_NULL; /* ours now: freed at fini */
    MPI_Comm_rank(m->comm, &r);
    MPI_Comm_size(m->comm, &n);
    m->rank = r;
    b->ops = &boot_mpi_ops;
    b->impl = m;
    *rank = (uint32_t)r;
    *nranks = (uint32_t)n;
    *bp = b;
    return DEED_OK;
}

static int mpi_allgatherv(struct boot *b, const void *mine, size_t len, void **all,
                          size_t **lens)
{
    struct mpib *m;
    uint64_t mylen = len, *ul = NULL;
    int n, rc, *counts = NULL, *displs = NULL;
    size_t total = 0, *sizes = NULL;
    char *buf = NULL;

    if (!b || !all || !lens || (len && !mine))
        return DEED_ERR_INVALID_ARG;
    *all = NULL;
    *lens = NULL;
    m = b->impl;
    MPI_Comm_size(m->comm, &n);
    ul = malloc((size_t)n * sizeof(*ul));
    counts = malloc((size_t)n * sizeof(*counts));
    displs = malloc((size_t)n * sizeof(*displs));
    sizes = malloc((size_t)n * sizeof(*sizes));
    if (!ul || !counts || !displs || !sizes) {
        rc = DEED_ERR_NO_MEMORY;
        goto out;
    }
    rc = MPI_Allgather(&mylen, 1, MPI_UINT64_T, ul, 1, MPI_UINT64_T, m->comm);
    if (rc != MPI_SUCCESS) {
        mpi_log(m->rank, "MPI_Allgather of the lengths", rc);
        rc = DEED_ERR_BOOTSTRAP;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (ul[i] > (uint64_t)INT32_MAX || total + ul[i] > (uint64_t)INT32_MAX) {
            mpi_log(m->rank, "an all-gather of more than 2 GiB", MPI_SUCCESS);
            rc = DEED_ERR_INVALID_ARG;
            goto out;
        }
        counts[i] = (int)ul[i];
        displs[i] = (int)total;
        sizes[i] = (size_t)ul[i];
        total += (size_t)ul[i];
    }
    buf = malloc(total ? total : 1);
    if (!buf) {
        rc = DEED_ERR_NO_MEMORY;
        goto out;
    }
    rc = MPI_Allgatherv(len ? mine : buf, (int)len, MPI_BYTE, buf, counts, displs, MPI_BYTE,
                        m->comm);
    if (rc != MPI_SUCCESS) {
        mpi_log(m->rank, "MPI_Allgatherv of the contributions", rc);
        rc = DEED_ERR_BOOTSTRAP;
        goto out;
    }
    *all = buf;
    *lens = sizes;
    buf = NULL;
    sizes = NULL;
    rc = DEED_OK;
out:
    free(ul);
    free(counts);
    free(displs);
    free(sizes);
    free(buf);
    return rc;
}

static int mpi_barrier(struct boot *b)
{
    struct mpib *m;
    int rc;

    if (!b)
        return DEED_ERR_INVALID_ARG;
    m = b->impl;
    rc = MPI_Barrier(m->comm);
    if (rc != MPI_SUCCESS) {
        mpi_log(m->rank, "MPI_Barrier", rc);
        return DEED_ERR_BOOTSTRAP;
    }
    return DEED_OK;
}

static void mpi_abort(struct boot *b, const char *msg)
{
    struct mpib *m;

    if (!b)
        return;
    m = b->impl;
    fprintf(stderr, "deed[%d] error: bootstrap: rank %d aborts the job: %s\n", m->rank, m->rank,
            msg && *msg ? msg : "(no reason)");
    MPI_Abort(m->comm, 1);
}

static void mpi_fini(struct boot *b)
{
    struct mpib *m;

    if (!b)
        return;
    m = b->impl;
    if (m->comm != MPI_COMM_NULL && !mpi_finalized())
        MPI_Comm_free(&m->comm);
    free(m);
    free(b);
}

static const struct boot_ops boot_mpi_ops = {
    .size = sizeof(struct boot_ops),
    .name = "mpi",
    .init = mpi_init,
    .allgatherv = mpi_allgatherv,
    .barrier = mpi_barrier,
    .abort = mpi_abort,
    .fini = mpi_fini,
};

__attribute__((visibility("default"))) deed_status_t
deed_init_mpi(MPI_Comm comm, const deed_config_t *cfg, deed_ctx_t **ctx)
{
    int inited = 0, rc, had_old;
    char *old = NULL;
    const char *cur;
    MPI_Comm dup = MPI_COMM_NULL;

    if (!ctx)
        return DEED_ERR_INVALID_ARG;
    *ctx = NULL;
    MPI_Initialized(&inited);
    if (!inited || mpi_finalized()) {
        fprintf(stderr, "deed error: deed_init_mpi: MPI is %s\n",
                inited ? "already finalized" : "not initialized (call MPI_Init first)");
        return DEED_ERR_INVALID_ARG;
    }
    if (comm == MPI_COMM_NULL) {
        fprintf(stderr, "deed error: deed_init_mpi: comm is MPI_COMM_NULL\n");
        return DEED_ERR_INVALID_ARG;
    }
    rc = MPI_Comm_dup(comm, &dup);
    if (rc != MPI_SUCCESS) {
        mpi_log(-1, "MPI_Comm_dup", rc);
        return DEED_ERR_BOOTSTRAP;
    }
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    if ((rc = deed__boot_register(&boot_mpi_ops)) != DEED_OK) {
        MPI_Comm_free(&dup);
        return rc;
    }

    pthread_mutex_lock(&init_lock);
    cur = getenv("DEED_BOOTSTRAP");
    had_old = cur != NULL;
    if (had_old && !(old = strdup(cur))) {
        pthread_mutex_unlock(&init_lock);
        MPI_Comm_free(&dup);
        return DEED_ERR_NO_MEMORY;
    }
    pending_comm = dup;
    setenv("DEED_BOOTSTRAP", "mpi", 1);
    rc = deed_init(cfg, ctx);
    if (had_old)
        setenv("DEED_BOOTSTRAP", old, 1);
    else
        unsetenv("DEED_BOOTSTRAP");
    free(old);
    if (pending_comm != MPI_COMM_NULL) /* deed_init failed before the bootstrap took it */
        MPI_Comm_free(&pending_comm);
    pthread_mutex_unlock(&init_lock);
    return rc;
}
