/*
 * bootstrap.c — the bootstrap layer's common parts (see bootstrap.h): choosing an
 * implementation from the environment (and the registry of implementations that live outside
 * the core, e.g. libdeed_mpi's "mpi"), the "single" implementation (a one-rank job with no
 * launcher), the DEED_BOOT_TIMEOUT default and the launcher's placement function.
 */
#include "bootstrap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "deed.h"
#include "log.h"
#include "topo.h"

#define BOOT_DEFAULT_TIMEOUT_MS 30000u

uint32_t boot_default_timeout_ms(void)
{
    const char *s = getenv("DEED_BOOT_TIMEOUT");
    char *end;
    double v;

    if (!s || !*s)
        return BOOT_DEFAULT_TIMEOUT_MS;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v > 0) || v > 86400.0 * 7) {
        log_warn("bootstrap: DEED_BOOT_TIMEOUT='%s' is invalid (seconds, e.g. 30 or 0.5, at "
                 "most a week); using %u s", s, BOOT_DEFAULT_TIMEOUT_MS / 1000);
        return BOOT_DEFAULT_TIMEOUT_MS;
    }
    v = v * 1000.0 + 0.999;
    return v < 1.0 ? 1u : (uint32_t)v;
}

/* ---- "single": rank 0 of 1 ---------------------------------------------------------- */

static int single_init(uint32_t timeout_ms, struct boot **b, uint32_t *rank, uint32_t *nranks)
{
    const char *n = getenv("DEED_NRANKS");

    if (!b || !rank || !nranks)
        return DEED_ERR_INVALID_ARG;
    if (n && strcmp(n, "1") != 0) {
        log_error("bootstrap: DEED_NRANKS=%s but DEED_RENDEZVOUS is not set: a multi-rank job "
                  "needs a launcher (deedrun -n N, or srun)", n);
        return DEED_ERR_BOOTSTRAP;
    }
    *b = calloc(1, sizeof(**b));
    if (!*b)
        return DEED_ERR_NO_MEMORY;
    (*b)->ops = &boot_single_ops;
    *rank = 0;
    *nranks = 1;
    return DEED_OK;
}

static int single_allgatherv(struct boot *b, const void *mine, size_t len, void **all,
                             size_t **lens)
{
    if (!b || !all || !lens || (len && !mine))
        return DEED_ERR_INVALID_ARG;
    *all = malloc(len ? len : 1);
    *lens = malloc(sizeof(size_t));
    if (!*all || !*lens) {
        free(*all);
        free(*lens);
        *all = NULL;
        *lens = NULL;
        return DEED_ERR_NO_MEMORY;
    }
    if (len)
        memcpy(*all, mine, len);
    (*lens)[0] = len;
    return DEED_OK;
}

static int single_barrier(struct boot *b)
{
    return b ? DEED_OK : DEED_ERR_INVALID_ARG;
}

static void single_abort(struct boot *b, const char *msg)
{
    log_error("bootstrap: rank 0 aborted the job: %s", msg ? msg : "(no reason given)");
}

static void single_fini(struct boot *b)
{
    free(b);
}

const struct boot_ops boot_single_ops = {
    .size = sizeof(struct boot_ops),
    .name = "single",
    .init = single_init,
    .allgatherv = single_allgatherv,
    .barrier = single_barrier,
    .abort = single_abort,
    .fini = single_fini,
};

/* ---- selection ---------------------------------------------------------------------- */

#define BOOT_MAX_REGISTERED 8

static const struct boot_ops *const builtin[] = {&boot_single_ops, &boot_tcp_ops,
                                                 &boot_slurm_ops};
static const struct boot_ops *registered[BOOT_MAX_REGISTERED];
static pthread_mutex_t registered_lock = PTHREAD_MUTEX_INITIALIZER;

int deed__boot_register(const struct boot_ops *ops)
{
    int rc = DEED_ERR_TOO_MANY;

    if (!ops || !ops->name || ops->size != sizeof(struct boot_ops) ||
        strcmp(ops->name, boot_pmix_ops.name) == 0)
        return DEED_ERR_INVALID_ARG;
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
        if (strcmp(builtin[i]->name, ops->name) == 0)
            return DEED_ERR_INVALID_ARG;
    pthread_mutex_lock(&registered_lock);
    for (size_t i = 0; i < BOOT_MAX_REGISTERED; i++) {
        if (!registered[i] || strcmp(registered[i]->name, ops->name) == 0) {
            registered[i] = ops;
            rc = DEED_OK;
            break;
        }
    }
    pthread_mutex_unlock(&registered_lock);
    return rc;
}

const struct boot_ops *boot_find(const char *name)
{
    const struct boot_ops *found = NULL;

    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
        if (strcmp(builtin[i]->name, name) == 0)
            return builtin[i];
    pthread_mutex_lock(&registered_lock);
    for (size_t i = 0; i < BOOT_MAX_REGISTERED && registered[i]; i++)
        if (strcmp(registered[i]->name, name) == 0) {
            found = registered[i];
            break;
        }
    pthread_mutex_unlock(&registered_lock);
    return found;
}

static int env_set(const char *name)
{
    const char *v = getenv(name);
    return v && *v;
}

const struct boot_ops *boot_select(void)
{
    const char *s = getenv("DEED_BOOTSTRAP");

    if (s && *s) {
        const struct boot_ops *ops = strcmp(s, boot_pmix_ops.name) == 0 ? &boot_pmix_ops
                                                                         : boot_find(s);
        if (ops)
            return ops;
        log_warn("bootstrap: DEED_BOOTSTRAP='%s' is unknown (allowed: single, tcp, slurm, pmix, "
                 "or mpi through deed_init_mpi); choosing from the environment", s);
    }
    if (env_set("DEED_RENDEZVOUS"))
        return &boot_tcp_ops;
    if (env_set("PMIX_RANK"))
        return &boot_pmix_ops;
    /* an srun step (the batch script itself has SLURM_PROCID but no step id) */
    if (env_set("SLURM_PROCID") && env_set("SLURM_STEP_ID") &&
        (env_set("SLURM_STEP_NUM_TASKS") || env_set("SLURM_NTASKS")))
        return &boot_slurm_ops;
    return &boot_single_ops;
}

/* ---- placement ---------------------------------------------------------------------- */

int boot_place_rank(hwloc_topology_t topology, enum boot_bind mode, uint32_t rank,
                    uint32_t nranks, hwloc_bitmap_t out)
{
    struct topo_place_in in = {0};
    struct topo_placement p;
    int rc;

    if (!topology || !out || nranks == 0 || rank >= nranks)
        return DEED_ERR_INVALID_ARG;
    switch (mode) {
    case BOOT_BIND_NONE: in.bind = TOPO_BIND_NONE; break;
    case BOOT_BIND_CORE: in.bind = TOPO_BIND_CORE; break;
    case BOOT_BIND_NUMA: in.bind = TOPO_BIND_NUMA; break;
    default: return DEED_ERR_INVALID_ARG;
    }
    in.cpuset = hwloc_topology_get_allowed_cpuset(topology);
    in.local_rank = rank;
    in.local_nranks = nranks;
    in.nworkers = 1;
    hwloc_bitmap_zero(out);
    rc = topo_place(topology, &in, &p); /* the one placement function (lib/topo_place.c) */
    if (rc == DEED_ERR_INVALID_ARG)
        return DEED_ERR_UNSUPPORTED; /* the arguments were checked: no usable core or node */
    if (rc != DEED_OK)
        return rc;
    hwloc_bitmap_copy(out, p.rank_cpuset);
    topo_place_free(&p);
    return DEED_OK;
}
