/*
 * topo.c — hwloc topology and worker placement (see topo.h). Owns the loaded topology and the
 * rank's cpuset; does not bind anything except through topo_bind_thread.
 *
 * The plan is a pure function of (topology, cpuset, nworkers): the cores that intersect the
 * cpuset are listed NUMA node by NUMA node (each core once, even where several NUMA nodes,
 * e.g. DRAM and HBM, cover it), and worker i gets core i mod ncores, restricted to the
 * cpuset, with all of that core's PUs (SMT siblings stay together). Machines where hwloc
 * reports no cores use PUs as cores.
 */
#include "topo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "deed.h"
#include "log.h"

/* The type placement treats as a core: cores, or PUs where hwloc reports no cores. */
static hwloc_obj_type_t topo_core_type(hwloc_topology_t topology)
{
    return hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
}

static void topo_reset(struct topo *t)
{
    if (t->cpuset)
        hwloc_bitmap_free(t->cpuset);
    if (t->topology)
        hwloc_topology_destroy(t->topology);
    t->cpuset = NULL;
    t->topology = NULL;
}

int topo_open(struct topo *t)
{
    hwloc_const_cpuset_t allowed;
    int rc;

    if (!t)
        return DEED_ERR_INVALID_ARG;
    memset(t, 0, sizeof(*t));
    if (hwloc_topology_init(&t->topology) < 0) {
        t->topology = NULL;
        log_error("topo: hwloc_topology_init failed: %s", strerror(errno));
        return DEED_ERR_NO_MEMORY;
    }
    if (hwloc_topology_load(t->topology) < 0) {
        log_error("topo: hwloc_topology_load failed: %s", strerror(errno));
        rc = DEED_ERR_UNSUPPORTED;
        goto err;
    }
    t->cpuset = hwloc_bitmap_alloc();
    if (!t->cpuset) {
        log_error("topo: out of memory");
        rc = DEED_ERR_NO_MEMORY;
        goto err;
    }
    allowed = hwloc_topology_get_allowed_cpuset(t->topology);
    if (hwloc_get_cpubind(t->topology, t->cpuset, HWLOC_CPUBIND_PROCESS) < 0) {
        log_debug("topo: cannot read the process binding (%s); using the allowed cpuset",
                  strerror(errno));
        hwloc_bitmap_copy(t->cpuset, allowed);
    } else {
        hwloc_bitmap_and(t->cpuset, t->cpuset, allowed);
        if (hwloc_bitmap_iszero(t->cpuset))
            hwloc_bitmap_copy(t->cpuset, allowed);
    }
    return DEED_OK;

err:
    topo_reset(t);
    return rc;
}

int topo_open_synthetic(struct topo *t, const char *desc, hwloc_const_cpuset_t cpuset)
{
    int rc;

    if (!t || !desc)
        return DEED_ERR_INVALID_ARG;
    memset(t, 0, sizeof(*t));
    if (hwloc_topology_init(&t->topology) < 0) {
        t->topology = NULL;
        log_error("topo: hwloc_topology_init failed: %s", strerror(errno));
        return DEED_ERR_NO_MEMORY;
    }
    if (hwloc_topology_set_synthetic(t->topology, desc) < 0) {
        log_error("topo: invalid synthetic topology \"%s\"", desc);
        rc = DEED_ERR_INVALID_ARG;
        goto err;
    }
    if (hwloc_topology_load(t->topology) < 0) {
        log_error("topo: loading synthetic topology \"%s\" failed: %s", desc, strerror(errno));
        rc = DEED_ERR_INVALID_ARG;
        goto err;
    }
    t->cpuset = hwloc_bitmap_dup(cpuset ? cpuset : hwloc_topology_get_topology_cpuset(t->topology));
    if (!t->cpuset) {
        log_error("topo: out of memory");
        rc = DEED_ERR_NO_MEMORY;
        goto err;
    }
    return DEED_OK;

err:
    topo_reset(t);
    return rc;
}

void topo_close(struct topo *t)
{
    if (t)
        topo_reset(t);
}

uint32_t topo_ncores(const struct topo *t)
{
    hwloc_obj_type_t type;
    hwloc_obj_t core = NULL;
    uint32_t n = 0;

    if (!t || !t->topology || !t->cpuset)
        return 0;
    type = topo_core_type(t->topology);
    while ((core = hwloc_get_next_obj_by_type(t->topology, type, core)))
        if (hwloc_bitmap_intersects(core->cpuset, t->cpuset))
            n++;
    return n;
}

/* os_index of the NUMA node that covers most of the cpuset (first one on ties), or -1. */
static int topo_numa_of(const struct topo *t)
{
    hwloc_obj_t node = NULL;
    hwloc_bitmap_t tmp = hwloc_bitmap_alloc();
    int best = -1, best_weight = 0;

    if (!tmp)
        return -1;
    while ((node = hwloc_get_next_obj_by_type(t->topology, HWLOC_OBJ_NUMANODE, node))) {
        int w;
        if (!node->cpuset)
            continue;
        hwloc_bitmap_and(tmp, node->cpuset, t->cpuset);
        w = hwloc_bitmap_weight(tmp);
        if (w > best_weight) {
            best_weight = w;
            best = (int)node->os_index;
        }
    }
    hwloc_bitmap_free(tmp);
    return best;
}

/* Append the unlisted cores inside `within` (NULL: any) that intersect the cpuset. */
static void topo_list_cores(const struct topo *t, hwloc_obj_type_t type,
                            hwloc_const_cpuset_t within, hwloc_obj_t *cores, char *listed,
                            uint32_t *n)
{
    hwloc_obj_t core = NULL;

    while ((core = hwloc_get_next_obj_by_type(t->topology, type, core))) {
        if (listed[core->logical_index] || !hwloc_bitmap_intersects(core->cpuset, t->cpuset))
            continue;
        if (within && !hwloc_bitmap_intersects(core->cpuset, within))
            continue;
        listed[core->logical_index] = 1;
        cores[(*n)++] = core;
    }
}

int topo_plan_workers(const struct topo *t, uint32_t nworkers, struct topo_plan *plan)
{
    hwloc_obj_type_t type;
    hwloc_obj_t *cores = NULL, node = NULL;
    char *listed = NULL;
    uint32_t ncores = 0;
    int total, rc = DEED_OK;

    if (!t || !t->topology || !t->cpuset || !plan)
        return DEED_ERR_INVALID_ARG;
    memset(plan, 0, sizeof(*plan));
    plan->numa_node = -1;
    type = topo_core_type(t->topology);
    total = hwloc_get_nbobjs_by_type(t->topology, type);
    if (total <= 0) {
        log_error("topo: topology has no cores or PUs");
        return DEED_ERR_INVALID_ARG;
    }
    cores = calloc((size_t)total, sizeof(*cores));
    listed = calloc((size_t)total, 1);
    if (!cores || !listed) {
        log_error("topo: out of memory");
        rc = DEED_ERR_NO_MEMORY;
        goto out;
    }
    while ((node = hwloc_get_next_obj_by_type(t->topology, HWLOC_OBJ_NUMANODE, node)))
        if (node->cpuset)
            topo_list_cores(t, type, node->cpuset, cores, listed, &ncores);
    topo_list_cores(t, type, NULL, cores, listed, &ncores); /* cores under no NUMA node */
    if (ncores == 0) {
        log_error("topo: the rank's cpuset contains no core of the machine");
        rc = DEED_ERR_INVALID_ARG;
        goto out;
    }

    plan->numa_node = topo_numa_of(t);
    if (nworkers > 0) {
        plan->cpusets = calloc(nworkers, sizeof(*plan->cpusets));
        if (!plan->cpusets) {
            log_error("topo: out of memory");
            rc = DEED_ERR_NO_MEMORY;
            goto out;
        }
    }
    plan->nworkers = nworkers;
    for (uint32_t i = 0; i < nworkers; i++) {
        plan->cpusets[i] = hwloc_bitmap_alloc();
        if (!plan->cpusets[i]) {
            log_error("topo: out of memory");
            rc = DEED_ERR_NO_MEMORY;
            goto out;
        }
        hwloc_bitmap_and(plan->cpusets[i], cores[i % ncores]->cpuset, t->cpuset);
    }
    if (nworkers > ncores)
        log_debug("topo: %u workers on %u cores: cores are shared", nworkers, ncores);

out:
    if (rc != DEED_OK)
        topo_plan_free(plan);
    free(cores);
    free(listed);
    return rc;
}

void topo_plan_free(struct topo_plan *plan)
{
    if (!plan)
        return;
    for (uint32_t i = 0; plan->cpusets && i < plan->nworkers; i++)
        if (plan->cpusets[i])
            hwloc_bitmap_free(plan->cpusets[i]);
    free(plan->cpusets);
    plan->cpusets = NULL;
    plan->nworkers = 0;
}

int topo_bind_thread(const struct topo *t, hwloc_const_cpuset_t set)
{
    static int warned;
    int err = EINVAL;

    if (t && t->topology && set) {
        if (hwloc_set_cpubind(t->topology, set, HWLOC_CPUBIND_THREAD) == 0)
            return DEED_OK;
        err = errno;
    }
    if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        log_warn("topo: cannot pin a worker thread (%s); threads run unpinned", strerror(err));
    return DEED_ERR_UNSUPPORTED;
}
