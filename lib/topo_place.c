/*
 * topo_place.c — the placement function (see topo.h, docs/placement.md): the rank's cpuset
 * for deedrun's bind modes, one worker per core, and the store's NUMA node (nearest the NIC
 * when one is known). Pure: reads only the topology and its arguments, binds nothing, logs
 * nothing, so synthetic and XML topologies test it and deed-info shows it for any machine.
 */
#include "topo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deed.h"

/* The type placement treats as a core: cores, or PUs where hwloc reports no cores. */
static hwloc_obj_type_t core_type(hwloc_topology_t topology)
{
    return hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
}

const char *topo_store_why_str(enum topo_store_why why)
{
    switch (why) {
    case TOPO_STORE_NONE:
        return "no NUMA node covers the rank";
    case TOPO_STORE_CPUSET:
        return "the node holding most of the rank's PUs (no NIC known)";
    case TOPO_STORE_NIC:
        return "the rank's node nearest the NIC";
    case TOPO_STORE_NIC_REMOTE:
        return "the node holding most of the rank's PUs (the rank has "
               "no PU near the NIC)";
    }
    return "?";
}

const char *topo_bind_str(enum topo_bind mode)
{
    switch (mode) {
    case TOPO_BIND_NONE:
        return "none";
    case TOPO_BIND_CORE:
        return "core";
    case TOPO_BIND_NUMA:
        return "numa";
    }
    return "?";
}

/* ---- NICs ------------------------------------------------------------------------------- */

static int is_nic(hwloc_obj_t o)
{
    return o->attr && (o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS ||
                       o->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK);
}

hwloc_obj_t topo_find_nic(hwloc_topology_t topology, const char *name)
{
    hwloc_obj_t o = NULL;

    if (!topology || !name || !*name)
        return NULL;
    while ((o = hwloc_get_next_osdev(topology, o)))
        if (is_nic(o) && o->name && strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

hwloc_obj_t topo_only_rdma_nic(hwloc_topology_t topology)
{
    hwloc_obj_t o = NULL, found = NULL;

    if (!topology)
        return NULL;
    while ((o = hwloc_get_next_osdev(topology, o))) {
        if (!o->attr || o->attr->osdev.type != HWLOC_OBJ_OSDEV_OPENFABRICS)
            continue;
        if (found)
            return NULL;
        found = o;
    }
    return found;
}

/* Whether a NUMA node is local memory: its cpuset contains no other node's cpuset
 * strictly. Memory attached above the packages (CPU-less CXL or far memory covering the
 * whole machine) is not: no core is near it. */
static int is_local_node(hwloc_topology_t topology, hwloc_obj_t node)
{
    hwloc_obj_t other = NULL;

    while ((other = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_NUMANODE, other)))
        if (other != node && other->cpuset && !hwloc_bitmap_iszero(other->cpuset) &&
            !hwloc_bitmap_isequal(other->cpuset, node->cpuset) &&
            hwloc_bitmap_isincluded(other->cpuset, node->cpuset))
            return 0;
    return 1;
}

/* The local NUMA node that covers most of set, ties to the node with the smaller cpuset,
 * then to the first (DRAM before an HBM node of the same cpuset); -1 if none meets set. */
static int best_node(hwloc_topology_t topology, hwloc_const_cpuset_t set)
{
    hwloc_obj_t node = NULL;
    hwloc_bitmap_t tmp = hwloc_bitmap_alloc();
    int best = -1, best_w = 0, best_size = 0;

    if (!tmp)
        return -1;
    while ((node = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_NUMANODE, node))) {
        int w, size;
        if (!node->cpuset || !is_local_node(topology, node))
            continue;
        hwloc_bitmap_and(tmp, node->cpuset, set);
        w = hwloc_bitmap_weight(tmp);
        size = hwloc_bitmap_weight(node->cpuset);
        if (w > best_w || (w == best_w && w > 0 && size < best_size)) {
            best = (int)node->os_index;
            best_w = w;
            best_size = size;
        }
    }
    hwloc_bitmap_free(tmp);
    return best;
}

/* The cpuset an OS device is local to, NULL when unknown (the device hangs off the root of a
 * machine with several NUMA nodes: the OS did not say where it is). */
static hwloc_const_cpuset_t nic_locality(hwloc_topology_t topology, hwloc_obj_t osdev)
{
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topology, osdev);

    if (!anc || !anc->cpuset)
        return NULL;
    if (!anc->parent && hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE) > 1)
        return NULL;
    return anc->cpuset;
}

int topo_nic_numa(hwloc_topology_t topology, hwloc_obj_t osdev)
{
    hwloc_const_cpuset_t loc;

    if (!topology || !osdev)
        return -1;
    loc = nic_locality(topology, osdev);
    return loc ? best_node(topology, loc) : -1;
}

/* ---- the rank's cpuset ------------------------------------------------------------------ */

/* The NUMA nodes that are binding domains: local (is_local_node), meeting set, and not a
 * copy of an earlier node's cpuset (HBM beside DRAM). Fills doms (capacity cap) and returns
 * how many. */
static uint32_t numa_domains(hwloc_topology_t topology, hwloc_const_cpuset_t set, hwloc_obj_t *doms,
                             uint32_t cap)
{
    hwloc_obj_t node = NULL;
    uint32_t n = 0;

    while ((node = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_NUMANODE, node))) {
        hwloc_obj_t other = NULL;
        int twin = 0;
        if (!node->cpuset || !hwloc_bitmap_intersects(node->cpuset, set) ||
            !is_local_node(topology, node))
            continue;
        while (!twin && (other = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_NUMANODE, other)))
            twin = other->logical_index < node->logical_index && other->cpuset &&
                   hwloc_bitmap_isequal(other->cpuset, node->cpuset);
        if (!twin && n < cap)
            doms[n++] = node;
    }
    return n;
}

/* [first, last) of K units for rank r of n: contiguous shares, or unit r mod K. */
static void share(uint32_t r, uint32_t n, uint32_t k, uint32_t *first, uint32_t *last)
{
    if (n <= k) {
        *first = (uint32_t)((uint64_t)r * k / n);
        *last = (uint32_t)((uint64_t)(r + 1) * k / n);
    } else {
        *first = r % k;
        *last = *first + 1;
    }
}

static int rank_cpuset(hwloc_topology_t topology, hwloc_const_cpuset_t set,
                       const struct topo_place_in *in, hwloc_bitmap_t out)
{
    hwloc_obj_type_t type = core_type(topology);
    int total = hwloc_get_nbobjs_by_type(topology, type);
    hwloc_obj_t *units = NULL, o = NULL;
    uint32_t k = 0, first, last;

    hwloc_bitmap_zero(out);
    if (in->bind == TOPO_BIND_NONE) {
        hwloc_bitmap_copy(out, set);
        return DEED_OK;
    }
    if (in->bind != TOPO_BIND_CORE && in->bind != TOPO_BIND_NUMA)
        return DEED_ERR_INVALID_ARG;
    if (total <= 0)
        return DEED_ERR_INVALID_ARG;
    if (in->bind == TOPO_BIND_NUMA) {
        int nn = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
        if (nn > 0 && (units = calloc((size_t)nn, sizeof(*units))) == NULL)
            return DEED_ERR_NO_MEMORY;
        k = nn > 0 ? numa_domains(topology, set, units, (uint32_t)nn) : 0;
    } else {
        if ((units = calloc((size_t)total, sizeof(*units))) == NULL)
            return DEED_ERR_NO_MEMORY;
        while ((o = hwloc_get_next_obj_by_type(topology, type, o)))
            if (hwloc_bitmap_intersects(o->cpuset, set))
                units[k++] = o;
    }
    if (k == 0) {
        free(units);
        return DEED_ERR_INVALID_ARG;
    }
    share(in->local_rank, in->local_nranks, k, &first, &last);
    for (uint32_t i = first; i < last; i++)
        hwloc_bitmap_or(out, out, units[i]->cpuset);
    hwloc_bitmap_and(out, out, set);
    free(units);
    return DEED_OK;
}

/* ---- workers ---------------------------------------------------------------------------- */

/* Append the unlisted cores inside `within` (NULL: any) that meet set. */
static void list_cores(hwloc_topology_t topology, hwloc_obj_type_t type, hwloc_const_cpuset_t set,
                       hwloc_const_cpuset_t within, hwloc_obj_t *cores, char *listed, uint32_t *n)
{
    hwloc_obj_t core = NULL;

    while ((core = hwloc_get_next_obj_by_type(topology, type, core))) {
        if (listed[core->logical_index] || !hwloc_bitmap_intersects(core->cpuset, set))
            continue;
        if (within && !hwloc_bitmap_intersects(core->cpuset, within))
            continue;
        listed[core->logical_index] = 1;
        cores[(*n)++] = core;
    }
}

static int plan_workers(hwloc_topology_t topology, struct topo_placement *p, uint32_t nworkers)
{
    hwloc_obj_type_t type = core_type(topology);
    int total = hwloc_get_nbobjs_by_type(topology, type);
    hwloc_obj_t *cores, node = NULL, store;
    char *listed;
    uint32_t k = 0;
    int rc = DEED_OK;

    if (total <= 0)
        return DEED_ERR_INVALID_ARG;
    cores = calloc((size_t)total, sizeof(*cores));
    listed = calloc((size_t)total, 1);
    if (!cores || !listed) {
        rc = DEED_ERR_NO_MEMORY;
        goto out;
    }
    /* the store's node first, then node by node, then cores under no node */
    store = p->store_node >= 0
                ? hwloc_get_numanode_obj_by_os_index(topology, (unsigned)p->store_node)
                : NULL;
    if (store && store->cpuset)
        list_cores(topology, type, p->rank_cpuset, store->cpuset, cores, listed, &k);
    while ((node = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_NUMANODE, node)))
        if (node->cpuset)
            list_cores(topology, type, p->rank_cpuset, node->cpuset, cores, listed, &k);
    list_cores(topology, type, p->rank_cpuset, NULL, cores, listed, &k);
    p->ncores = k;
    if (k == 0) {
        rc = DEED_ERR_INVALID_ARG;
        goto out;
    }
    if (nworkers == 0)
        nworkers = k;
    p->workers = calloc(nworkers, sizeof(*p->workers));
    if (!p->workers) {
        rc = DEED_ERR_NO_MEMORY;
        goto out;
    }
    p->nworkers = nworkers;
    for (uint32_t i = 0; i < nworkers; i++) {
        hwloc_bitmap_t w = hwloc_bitmap_alloc();
        if (!w) {
            rc = DEED_ERR_NO_MEMORY;
            goto out;
        }
        p->workers[i] = w;
        hwloc_bitmap_and(w, cores[i % k]->cpuset, p->rank_cpuset);
        if (nworkers > k) { /* SMT siblings in use: one PU each, round by round */
            int npu = hwloc_bitmap_weight(w), want = (int)((i / k) % (uint32_t)npu), pu;
            pu = hwloc_bitmap_first(w);
            for (int j = 0; j < want; j++)
                pu = hwloc_bitmap_next(w, pu);
            hwloc_bitmap_only(w, (unsigned)pu);
        }
    }

out:
    free(cores);
    free(listed);
    return rc;
}

/* ---- the placement ---------------------------------------------------------------------- */

int topo_place(hwloc_topology_t topology, const struct topo_place_in *in, struct topo_placement *p)
{
    hwloc_const_cpuset_t set, loc = NULL;
    hwloc_obj_t nic = NULL;
    hwloc_bitmap_t near = NULL;
    int rc;

    if (!p)
        return DEED_ERR_INVALID_ARG;
    memset(p, 0, sizeof(*p));
    p->store_node = -1;
    p->nic_node = -1;
    if (!topology || !in || in->local_nranks == 0 || in->local_rank >= in->local_nranks)
        return DEED_ERR_INVALID_ARG;
    set = in->cpuset ? in->cpuset : hwloc_topology_get_allowed_cpuset(topology);
    p->rank_cpuset = hwloc_bitmap_alloc();
    near = hwloc_bitmap_alloc();
    if (!p->rank_cpuset || !near) {
        rc = DEED_ERR_NO_MEMORY;
        goto err;
    }
    if ((rc = rank_cpuset(topology, set, in, p->rank_cpuset)) != DEED_OK)
        goto err;
    if (hwloc_bitmap_iszero(p->rank_cpuset)) {
        rc = DEED_ERR_INVALID_ARG;
        goto err;
    }

    nic = in->nic && *in->nic ? topo_find_nic(topology, in->nic) : topo_only_rdma_nic(topology);
    if (nic) {
        snprintf(p->nic, sizeof(p->nic), "%s", nic->name);
        loc = nic_locality(topology, nic);
        p->nic_node = loc ? best_node(topology, loc) : -1;
    }
    p->store_why = TOPO_STORE_CPUSET;
    if (loc) {
        hwloc_bitmap_and(near, p->rank_cpuset, loc);
        p->store_why = hwloc_bitmap_iszero(near) ? TOPO_STORE_NIC_REMOTE : TOPO_STORE_NIC;
    }
    p->store_node = best_node(topology, p->store_why == TOPO_STORE_NIC ? near : p->rank_cpuset);
    if (p->store_node < 0)
        p->store_why = TOPO_STORE_NONE;

    if ((rc = plan_workers(topology, p, in->nworkers)) != DEED_OK)
        goto err;
    hwloc_bitmap_free(near);
    return DEED_OK;

err:
    hwloc_bitmap_free(near);
    topo_place_free(p);
    p->store_node = -1;
    p->nic_node = -1;
    return rc;
}

void topo_place_free(struct topo_placement *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; p->workers && i < p->nworkers; i++)
        if (p->workers[i])
            hwloc_bitmap_free(p->workers[i]);
    free(p->workers);
    if (p->rank_cpuset)
        hwloc_bitmap_free(p->rank_cpuset);
    p->workers = NULL;
    p->rank_cpuset = NULL;
    p->nworkers = 0;
}
