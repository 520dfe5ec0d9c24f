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
 *   - "slurm" (boot_slurm.c): a step started by srun without PMIx: rank = SLURM_PROCID,
 *     nranks = SLURM_STEP_NUM_TASKS (or SLURM_NTASKS); rank 0 hosts the rendezvous server in
 *     a thread on port DEED_SLURM_PORT (default derived from SLURM_JOB_ID and SLURM_STEP_ID)
 *     of the first host of SLURM_STEP_NODELIST, and every rank is a "tcp" client of it.
 *     DEED_JOB_KEY is required (the sbatch script generates it).
 *   - "pmix" (boot_slurm.c): a process started by a PMIx server (srun --mpi=pmix, mpirun):
 *     PMIx_Put/Commit/Fence/Get; libpmix is loaded at run time (dlopen), so libdeed does not
 *     link it. Falls back to "slurm" when libpmix cannot be loaded.
 *   - "mpi" (lib/mpi, libdeed_mpi): MPI collectives on the communicator given to
 *     deed_init_mpi; registered at run time with boot_register.
 *
 * Environment set by the launcher (deedrun): DEED_RANK, DEED_NRANKS, DEED_JOB_KEY (hex, 32
 * digits), DEED_RENDEZVOUS (host:port of the server), DEED_LOCAL_RANK, DEED_LOCAL_NRANKS.
 * Absent DEED_RENDEZVOUS = "single". DEED_BOOTSTRAP=single|tcp forces a choice.
 * DEED_BOOT_TIMEOUT (seconds, decimals allowed, default 30) bounds every wait when init is
 * given timeout_ms = 0.
 *
 * Every function returns DEED_OK or a negative deed_status_t: DEED_ERR_BOOTSTRAP (refused,
 * protocol error, the job failed, bad environment), DEED_ERR_TIMEOUT (a wait ran out; the
 * log names the rendezvous and what was awaited), DEED_ERR_NO_MEMORY, DEED_ERR_INVALID_ARG.
 */
#ifndef DEED_BOOTSTRAP_H
#define DEED_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>
#include <hwloc.h>

struct boot_ops;

/* A connected bootstrap handle: the implementation's ops and its private state. */
struct boot {
    const struct boot_ops *ops;
    void *impl;
};

struct boot_ops {
    size_t size;       /* sizeof(struct boot_ops) */
    const char *name;
    /* Connect; fills rank and nranks. timeout_ms bounds every wait (0 = boot_default_timeout_ms()). On
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

/* Choose from the environment: DEED_BOOTSTRAP names one (single, tcp, slurm, pmix or a
 * registered one) -> that; else DEED_RENDEZVOUS set -> "tcp"; else PMIX_RANK set -> "pmix";
 * else an srun step (SLURM_PROCID, SLURM_STEP_ID and SLURM_STEP_NUM_TASKS or SLURM_NTASKS)
 * -> "slurm"; else "single". */
const struct boot_ops *boot_select(void);
/* The built-in implementations (single, tcp, slurm) and the registered ones, by name. "pmix"
 * is reached through boot_select only (DEED_BOOTSTRAP=pmix or PMIX_RANK). */
const struct boot_ops *boot_find(const char *name);
/* Make an implementation that lives outside the core (libdeed_mpi's "mpi") known to
 * boot_find and boot_select. Idempotent; replaces a registered one of the same name.
 * Returns DEED_OK, DEED_ERR_INVALID_ARG (NULL, no name, a built-in name, size mismatch) or
 * DEED_ERR_TOO_MANY (more than 8). Exported from libdeed for libdeed_mpi only: not public API. */
__attribute__((visibility("default"))) int deed__boot_register(const struct boot_ops *ops);
#define boot_register deed__boot_register

extern const struct boot_ops boot_single_ops;
extern const struct boot_ops boot_tcp_ops;
extern const struct boot_ops boot_slurm_ops;
extern const struct boot_ops boot_pmix_ops;

/* The "tcp" client proper: connect to the rendezvous at addr ("host:port"; origin says where
 * the address came from, for messages, e.g. "DEED_RENDEZVOUS"), present the job key keys (32
 * hex digits, DEED_JOB_KEY) as rank of nranks, wait for the welcome. Every wait is bounded by
 * timeout_ms (0 = boot_default_timeout_ms()). *b gets a handle with boot_tcp_ops. */
int boot_tcp_client(const char *addr, const char *origin, const char *keys, uint32_t rank,
                    uint32_t nranks, uint32_t timeout_ms, struct boot **b);

/* The first host name of a Slurm hostlist ("node[01-04,07],gpu3" -> "node01"; each bracket
 * group gives its first value, zero padding kept). Returns 0, or -1 if the list is empty,
 * malformed or the name does not fit in len bytes. */
int boot_slurm_first_host(const char *list, char *out, size_t len);
/* The rendezvous port of a Slurm step: DEED_SLURM_PORT if set (1..65535), else
 * 20000 + (jobid * 16 + stepid) % 20000. Returns 0 or -1 (bad DEED_SLURM_PORT, no job id). */
int boot_slurm_port(const char *port_env, const char *jobid, const char *stepid,
                    uint16_t *port);

/* The timeout init uses when given 0: DEED_BOOT_TIMEOUT (seconds) or 30 s. A malformed
 * value is logged and the default is used. */
uint32_t boot_default_timeout_ms(void);

/* Launcher placement (deedrun --bind): the rank cpuset of topo_place (lib/topo.h, the one
 * placement function, pure so it is tested on synthetic topologies) for local rank `rank` of
 * `nranks` over the topology's allowed cpuset:
 *   BOOT_BIND_CORE: the usable cores (those intersecting the allowed cpuset, in hwloc's
 *     logical order; PUs where hwloc reports no cores) are cut into nranks contiguous
 *     shares, rank r getting cores [r*C/N, (r+1)*C/N), all PUs of each; with more ranks than
 *     cores, rank r gets core r mod C (round robin);
 *   BOOT_BIND_NUMA: the NUMA domains (nodes with a cpuset of their own: HBM twins and
 *     CPU-less memory are not domains) cut into contiguous shares the same way; with more
 *     ranks than domains, domain r mod #domains (shared);
 *   BOOT_BIND_NONE: the whole allowed cpuset.
 * Returns DEED_OK, DEED_ERR_INVALID_ARG (nranks 0, rank >= nranks, NULL, unknown mode) or
 * DEED_ERR_UNSUPPORTED (no usable core / NUMA node in the topology). */
enum boot_bind { BOOT_BIND_NONE = 0, BOOT_BIND_CORE, BOOT_BIND_NUMA };
int boot_place_rank(hwloc_topology_t topology, enum boot_bind mode, uint32_t rank,
                    uint32_t nranks, hwloc_bitmap_t out);

#endif /* DEED_BOOTSTRAP_H */
