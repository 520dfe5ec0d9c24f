/*
 * bootstrap.h — how the ranks of a job find each other before the transport is up: rank and
 * size, a variable-length all-gather (transport addresses, task-table digests) and a barrier.
 * A pluggable layer: one const ops table per implementation.
 *
 * Implementations:
 *   - "tcp": a client of a rendezvous server (lib/rendezvous.c). deedrun hosts the server for
 *     local jobs; under Slurm (later issue) rank 0 hosts it. Every connection must present
 *     the job key (DEED_JOB_KEY); a wrong key is refused with a clear message on both sides.
 *   - "single": a one-rank job with no launcher (nranks = 1, all-gather copies).
 * Later: "pmix" (Slurm steps), "mpi" (deed_init_mpi).
 *
 * Environment set by the launcher (deedrun): DEED_RANK, DEED_NRANKS, DEED_JOB_KEY (hex, 32
 * digits), DEED_RENDEZVOUS (host:port of the server). Absent DEED_RENDEZVOUS = "single".
 */
#ifndef DEED_BOOTSTRAP_H
#define DEED_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>

struct boot;

struct boot_ops {
    size_t size;       /* sizeof(struct boot_ops) */
    const char *name;
    /* Connect; fills rank and nranks. timeout_ms bounds every wait (0 = default 30 s). On
     * failure the log names what it waited for (address, rank count, ...). */
    int (*init)(uint32_t timeout_ms, struct boot **b, uint32_t *rank, uint32_t *nranks);
    /* Every rank contributes len bytes (lengths may differ between ranks); on success
     * *all is one malloc'd block holding the nranks contributions back to back, lens[r]
     * (malloc'd array) their lengths, in rank order. Caller frees both. */
    int (*allgatherv)(struct boot *b, const void *mine, size_t len, void **all, size_t **lens);
    int (*barrier)(struct boot *b);
    /* Abort the job: tell the launcher/server that this rank failed with a message. */
    void (*abort)(struct boot *b, const char *msg);
    void (*fini)(struct boot *b);
};

/* Choose from the environment: DEED_RENDEZVOUS set -> "tcp", else "single". */
const struct boot_ops *boot_select(void);
const struct boot_ops *boot_find(const char *name);

extern const struct boot_ops boot_single_ops;
extern const struct boot_ops boot_tcp_ops;

#endif /* DEED_BOOTSTRAP_H */
