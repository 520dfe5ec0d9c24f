/*
 * topo.h — hwloc topology and placement: which core each worker thread of a rank is pinned
 * to, and which NUMA node its store is bound to.
 *
 * Placement is a pure function of (topology, the rank's cpuset, number of workers) so it can
 * be unit-tested against synthetic topologies (hwloc_topology_set_synthetic). topo_open loads
 * the real machine; the plan functions work on any loaded topology.
 */
#ifndef DEED_TOPO_H
#define DEED_TOPO_H

#include <stdint.h>
#include <hwloc.h>

struct topo {
    hwloc_topology_t topology;
    hwloc_cpuset_t cpuset;    /* the rank's allowed cpuset (process binding) */
};

/* Load the machine's topology and the process's current binding. */
int topo_open(struct topo *t);
/* Load a synthetic topology (e.g. "pack:2 numa:1 core:4 pu:2") with the given cpuset
 * (NULL = the whole machine); for tests. */
int topo_open_synthetic(struct topo *t, const char *desc, hwloc_const_cpuset_t cpuset);
void topo_close(struct topo *t);

/* Number of cores (HWLOC_OBJ_CORE, or PUs where hwloc reports no cores) inside the cpuset. */
uint32_t topo_ncores(const struct topo *t);

/* Placement plan: cpusets[i] (allocated, free with topo_plan_free) is the single core
 * (all its PUs) worker i is pinned to; workers are spread round-robin over the cores of the
 * cpuset, NUMA node by NUMA node. numa_node: os_index of the NUMA node holding most of
 * the cpuset (for the store), -1 if unknown. */
struct topo_plan {
    uint32_t nworkers;
    hwloc_cpuset_t *cpusets;
    int numa_node;
};
int topo_plan_workers(const struct topo *t, uint32_t nworkers, struct topo_plan *plan);
void topo_plan_free(struct topo_plan *plan);

/* Pin the calling thread to a cpuset; returns DEED_OK or logs a warning and returns
 * DEED_ERR_UNSUPPORTED (never fatal). */
int topo_bind_thread(const struct topo *t, hwloc_const_cpuset_t set);

#endif /* DEED_TOPO_H */
