/*
 * topo.h — hwloc topology and placement: which cpuset a rank is bound to by the launcher,
 * which core each worker thread of a rank is pinned to, and which NUMA node its store is
 * bound to (the one nearest the NIC when a NIC is known).
 *
 * Placement is one pure function, topo_place, of (topology, cpuset the node's ranks may use,
 * local rank, local rank count, bind mode, number of workers, NIC name) so it can be
 * unit-tested against synthetic and XML topologies and shown by deed-info for another
 * machine. topo_open loads the real machine (with its PCI/OS devices, for the NICs) and the
 * process's binding; everything else works on any loaded topology. See docs/placement.md.
 */
#ifndef DEED_TOPO_H
#define DEED_TOPO_H

#include <stddef.h>
#include <stdint.h>
#include <hwloc.h>

#define TOPO_NIC_MAX 64

struct topo {
    hwloc_topology_t topology;
    hwloc_cpuset_t cpuset;  /* the rank's allowed cpuset (process binding) */
    char nic[TOPO_NIC_MAX]; /* the configured NIC (topo_env_nic), "" = none configured */
};

/* Load the machine's topology and the process's current binding; nic is set from the
 * environment (topo_env_nic). The I/O devices (the NICs) are loaded when they can matter: a
 * NIC is configured or the machine has an RDMA device (/sys/class/infiniband). */
int topo_open(struct topo *t);
/* The same, always with the I/O devices (deed-info, deedrun --report-bindings). */
int topo_open_all(struct topo *t);
/* Load a synthetic topology (e.g. "pack:2 numa:1 core:4 pu:2") with the given cpuset
 * (NULL = the whole machine); for tests and deed-info --synthetic. nic is "". */
int topo_open_synthetic(struct topo *t, const char *desc, hwloc_const_cpuset_t cpuset);
/* Load an hwloc XML topology (I/O devices kept) from a file (path) or from memory (buffer,
 * when path is NULL); cpuset as above. For tests and deed-info --xml. nic is "". */
int topo_open_xml(struct topo *t, const char *path, const char *buffer,
                  hwloc_const_cpuset_t cpuset);
void topo_close(struct topo *t);

/* The NIC named by the environment: DEED_VERBS_DEVICE (unless "auto"), else the first device of
 * UCX_NET_DEVICES (unless "all"), without its ":port" suffix ("mlx5_0:1,mlx5_1:1" ->
 * "mlx5_0"). Writes "" when neither names one. Returns out. */
char *topo_env_nic(char *out, size_t len);

/* Number of cores (HWLOC_OBJ_CORE, or PUs where hwloc reports no cores) inside the cpuset. */
uint32_t topo_ncores(const struct topo *t);

/* ---- placement --------------------------------------------------------------------------- */

/* How the launcher binds a node's ranks (deedrun --bind). */
enum topo_bind { TOPO_BIND_NONE = 0, TOPO_BIND_CORE, TOPO_BIND_NUMA };

/* Why the store is bound where it is. */
enum topo_store_why {
    TOPO_STORE_NONE = 0,   /* no NUMA node covers the rank's cpuset: left to the OS */
    TOPO_STORE_CPUSET,     /* no NIC known: the node holding most of the rank's cpuset */
    TOPO_STORE_NIC,        /* the rank's node nearest the NIC */
    TOPO_STORE_NIC_REMOTE, /* NIC known but the rank has no core near it: as CPUSET */
};

struct topo_place_in {
    hwloc_const_cpuset_t cpuset; /* what the node's ranks may use; NULL = the allowed cpuset */
    enum topo_bind bind;
    uint32_t local_rank;   /* this rank's index among the node's ranks */
    uint32_t local_nranks; /* ranks on the node (>= 1) */
    uint32_t nworkers;     /* worker threads; 0 = one per core of the rank's cpuset */
    const char *nic;       /* NIC name (mlx5_0, eth0); NULL or "" = the only RDMA
                                  * (OpenFabrics) device of the topology, if exactly one */
};

struct topo_placement {
    hwloc_cpuset_t rank_cpuset; /* where the launcher binds the rank */
    uint32_t ncores;            /* cores (PUs where there are none) in rank_cpuset */
    uint32_t nworkers;
    hwloc_cpuset_t *workers; /* [nworkers]: worker i's cpuset */
    int store_node;          /* os_index of the store's NUMA node, -1 = leave to the OS */
    enum topo_store_why store_why;
    char nic[TOPO_NIC_MAX]; /* the NIC placement used, "" = none */
    int nic_node;           /* os_index of the NUMA node nearest the NIC, -1 = unknown */
};

/*
 * The placement of local rank in->local_rank (pure: the same inputs give the same plan).
 *
 * Rank cpuset (the cpuset C = in->cpuset, or the allowed cpuset):
 *   NONE: C.
 *   CORE: the cores meeting C (logical order) cut into local_nranks contiguous shares, rank r
 *     getting cores [r*K/N, (r+1)*K/N) with all their PUs in C; more ranks than cores: core
 *     r mod K.
 *   NUMA: the NUMA nodes meeting C (those with the same cpuset as an earlier one, e.g. HBM
 *     beside DRAM, and those whose cpuset contains another node's, e.g. CPU-less memory
 *     attached to the machine, are not separate domains) cut into contiguous shares the same
 *     way (more ranks than nodes: node r mod #nodes, shared), intersected with C.
 * Workers: one per core (all of the core's PUs in the rank cpuset), cores listed NUMA node by
 *   NUMA node starting with the store's node; SMT siblings are used only when there are more
 *   workers than cores: then worker i gets PU (i / K) mod (PUs of the core) of core i mod K.
 * Store node: among the rank's local NUMA nodes (not memory attached above the packages;
 *   scored by how many of the rank's PUs they cover, ties to the smaller node, then the
 *   first, i.e. DRAM before its HBM twin), the one nearest the NIC when the NIC is found
 *   in the topology (an OS device of type OpenFabrics or Network; its locality is its first
 *   non-I/O ancestor) and the rank has PUs near it; otherwise the best of all of them.
 *
 * Returns DEED_OK, DEED_ERR_INVALID_ARG (NULL, local_rank >= local_nranks, no core of the
 * topology in the cpuset) or DEED_ERR_NO_MEMORY. Free out with topo_place_free.
 */
int topo_place(hwloc_topology_t topology, const struct topo_place_in *in,
               struct topo_placement *out);
void topo_place_free(struct topo_placement *p);
const char *topo_store_why_str(enum topo_store_why why);
const char *topo_bind_str(enum topo_bind mode);

/* The OS device (OpenFabrics or Network) called name, or NULL. */
hwloc_obj_t topo_find_nic(hwloc_topology_t topology, const char *name);
/* The only OpenFabrics device of the topology, or NULL when there are none or several. */
hwloc_obj_t topo_only_rdma_nic(hwloc_topology_t topology);
/* os_index of the NUMA node nearest an OS device, -1 if its locality is unknown (it hangs
 * off the root of a machine with several NUMA nodes) or there are no NUMA nodes. */
int topo_nic_numa(hwloc_topology_t topology, hwloc_obj_t osdev);

/* Worker plan of a running rank: topo_place of t's cpuset (bind NONE, rank 0 of 1) with
 * t->nic. cpusets[i] (free with topo_plan_free) is worker i's cpuset; numa_node is the
 * store's node (-1 if unknown). */
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
