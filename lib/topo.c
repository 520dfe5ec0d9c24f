/*
 * topo.c — loading the hwloc topology (the machine with its I/O devices, a synthetic
 * description or an XML file), the NIC named by the environment, the running rank's worker
 * plan and thread pinning (see topo.h). Owns the loaded topology and the rank's cpuset; the
 * placement itself is the pure function in topo_place.c.
 */
#include "topo.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deed.h"
#include "log.h"

static void topo_reset(struct topo *t)
{
    if (t->cpuset)
        hwloc_bitmap_free(t->cpuset);
    if (t->topology)
        hwloc_topology_destroy(t->topology);
    t->cpuset = NULL;
    t->topology = NULL;
}

static int topo_init(struct topo *t)
{
    memset(t, 0, sizeof(*t));
    if (hwloc_topology_init(&t->topology) < 0) {
        t->topology = NULL;
        log_error("topo: hwloc_topology_init failed: %s", strerror(errno));
        return DEED_ERR_NO_MEMORY;
    }
    /* PCI devices and their OS devices (mlx5_0, eth0): where the NICs are */
    hwloc_topology_set_io_types_filter(t->topology, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    return DEED_OK;
}

char *topo_env_nic(char *out, size_t len)
{
    const char *v = getenv("DEED_VERBS_DEVICE");
    size_t n;

    if (!out || len == 0)
        return out;
    out[0] = '\0';
    if (!v || !*v || strcmp(v, "auto") == 0) {
        v = getenv("UCX_NET_DEVICES");
        if (!v || !*v || strncmp(v, "all", 3) == 0)
            return out;
    }
    n = strcspn(v, ":,");
    if (n >= len)
        n = len - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return out;
}

/* Whether the NICs can matter to placement: a NIC is configured, or the machine has an RDMA
 * device (the only one is used when none is configured). Looking for the I/O devices costs
 * some milliseconds of sysfs reads at every deed_init, so it is skipped when they cannot. */
static int topo_nics_matter(const char *nic)
{
    DIR *d;
    struct dirent *e;
    int n = 0;

    if (nic[0])
        return 1;
    d = opendir("/sys/class/infiniband");
    if (!d)
        return 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0;
}

/* A local-rank variable pair (rank, count) from the launcher's environment; 0 if absent. */
static int local_env(const char *rk, const char *nk, uint32_t *rank, uint32_t *n)
{
    const char *r = getenv(rk), *c = getenv(nk);
    char *e1, *e2;
    if (r == NULL || c == NULL)
        return 0;
    unsigned long lr = strtoul(r, &e1, 10), ln = strtoul(c, &e2, 10);
    if (*r == 0 || *e1 || *c == 0 || *e2 || ln == 0 || lr >= ln || ln > 1u << 20)
        return 0;
    *rank = (uint32_t)lr;
    *n = (uint32_t)ln;
    return 1;
}

/*
 * The process is not bound (its cpuset is the whole machine) but shares the node with other
 * ranks of the job: plan its workers within its share of the cores (deedrun's --bind core
 * cut: local rank r of N gets cores [r*K/N, (r+1)*K/N), or core r mod K), not from core 0
 * as every rank would. Without this, the ranks' workers were pinned to the same cores and a
 * one-worker remote round trip measured 1.75 us or ~70 us from run to run (two workers
 * spinning on one core). The process itself is not re-bound. Local rank and count come from
 * deedrun (DEED_LOCAL_RANK / DEED_LOCAL_NRANKS) or Open MPI's mpirun
 * (OMPI_COMM_WORLD_LOCAL_RANK / _SIZE); srun binds its tasks itself.
 */
static void topo_local_share(struct topo *t)
{
    uint32_t lr, ln;
    if (!local_env("DEED_LOCAL_RANK", "DEED_LOCAL_NRANKS", &lr, &ln) &&
        !local_env("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", &lr, &ln))
        return;
    if (ln < 2)
        return;
    struct topo_place_in in = {.cpuset = t->cpuset, .bind = TOPO_BIND_CORE, .local_rank = lr,
                               .local_nranks = ln, .nworkers = 1, .nic = NULL};
    struct topo_placement pl;
    if (topo_place(t->topology, &in, &pl) != DEED_OK)
        return;
    char *s = NULL;
    hwloc_bitmap_list_asprintf(&s, pl.rank_cpuset);
    log_debug("topo: %u ranks share this node unbound: local rank %u plans its workers on "
              "its share of the cores, PUs %s (bind the ranks to choose otherwise)",
              ln, lr, s ? s : "?");
    free(s);
    hwloc_bitmap_copy(t->cpuset, pl.rank_cpuset);
    topo_place_free(&pl);
}

static int topo_open_machine(struct topo *t, int io)
{
    hwloc_const_cpuset_t allowed;
    int rc;

    if (!t)
        return DEED_ERR_INVALID_ARG;
    if ((rc = topo_init(t)) != DEED_OK)
        return rc;
    topo_env_nic(t->nic, sizeof(t->nic));
    if (io < 0)
        io = topo_nics_matter(t->nic);
    if (!io)
        hwloc_topology_set_io_types_filter(t->topology, HWLOC_TYPE_FILTER_KEEP_NONE);
#if HWLOC_API_VERSION >= 0x00020100
    /* The NICs and their locality come from sysfs (hwloc's linux component). The libpciaccess
     * component ("pci") only adds names, is slower and leaks at exit; the GPU ones would load
     * CUDA/OpenCL/ROCm libraries into every rank. */
    static const char *const skip[] = {"pci", "opencl", "gl", "cuda", "nvml", "rsmi", "levelzero"};
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
        hwloc_topology_set_components(t->topology, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST,
                                      skip[i]);
#endif
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
    if (t->nic[0] && !topo_find_nic(t->topology, t->nic))
        log_debug("topo: NIC '%s' (DEED_VERBS_DEVICE / UCX_NET_DEVICES) is not in the hwloc "
                  "topology; the store is placed by the rank's cpuset",
                  t->nic);
    if (hwloc_bitmap_isequal(t->cpuset, allowed))
        topo_local_share(t);
    return DEED_OK;

err:
    topo_reset(t);
    return rc;
}

int topo_open(struct topo *t)
{
    return topo_open_machine(t, -1);
}

int topo_open_all(struct topo *t)
{
    return topo_open_machine(t, 1);
}

/* After a successful load: the cpuset (NULL = the whole machine). */
static int topo_set_cpuset(struct topo *t, hwloc_const_cpuset_t cpuset)
{
    t->cpuset = hwloc_bitmap_dup(cpuset ? cpuset : hwloc_topology_get_topology_cpuset(t->topology));
    if (!t->cpuset) {
        log_error("topo: out of memory");
        return DEED_ERR_NO_MEMORY;
    }
    return DEED_OK;
}

int topo_open_synthetic(struct topo *t, const char *desc, hwloc_const_cpuset_t cpuset)
{
    int rc;

    if (!t || !desc)
        return DEED_ERR_INVALID_ARG;
    if ((rc = topo_init(t)) != DEED_OK)
        return rc;
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
    if ((rc = topo_set_cpuset(t, cpuset)) != DEED_OK)
        goto err;
    return DEED_OK;

err:
    topo_reset(t);
    return rc;
}

int topo_open_xml(struct topo *t, const char *path, const char *buffer, hwloc_const_cpuset_t cpuset)
{
    int rc;

    if (!t || (!path && !buffer))
        return DEED_ERR_INVALID_ARG;
    if ((rc = topo_init(t)) != DEED_OK)
        return rc;
    if ((path ? hwloc_topology_set_xml(t->topology, path)
              : hwloc_topology_set_xmlbuffer(t->topology, buffer, (int)strlen(buffer) + 1)) < 0) {
        log_error("topo: cannot use the XML topology %s%s: %s", path ? "file " : "",
                  path ? path : "buffer", strerror(errno));
        rc = DEED_ERR_INVALID_ARG;
        goto err;
    }
    if (hwloc_topology_load(t->topology) < 0) {
        log_error("topo: loading the XML topology %s%s failed (not an hwloc XML file?): %s",
                  path ? "file " : "", path ? path : "buffer", strerror(errno));
        rc = DEED_ERR_INVALID_ARG;
        goto err;
    }
    if ((rc = topo_set_cpuset(t, cpuset)) != DEED_OK)
        goto err;
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
    type =
        hwloc_get_nbobjs_by_type(t->topology, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
    while ((core = hwloc_get_next_obj_by_type(t->topology, type, core)))
        if (hwloc_bitmap_intersects(core->cpuset, t->cpuset))
            n++;
    return n;
}

int topo_plan_workers(const struct topo *t, uint32_t nworkers, struct topo_plan *plan)
{
    struct topo_place_in in = {0};
    struct topo_placement p;
    int rc;

    if (!t || !t->topology || !t->cpuset || !plan)
        return DEED_ERR_INVALID_ARG;
    memset(plan, 0, sizeof(*plan));
    plan->numa_node = -1;
    in.cpuset = t->cpuset;
    in.bind = TOPO_BIND_NONE;
    in.local_nranks = 1;
    in.nworkers = nworkers ? nworkers : 1;
    in.nic = t->nic;
    rc = topo_place(t->topology, &in, &p);
    if (rc != DEED_OK) {
        log_error("topo: no placement for the rank's cpuset: %s", deed_strerror(rc));
        return rc;
    }
    plan->numa_node = p.store_node;
    if (nworkers > 0) {
        plan->nworkers = p.nworkers;
        plan->cpusets = p.workers; /* moved to the plan */
        p.workers = NULL;
        p.nworkers = 0;
    }
    if (nworkers > 1 && deed__log_level >= DEED_LOG_DEBUG) { /* the workers' plan */
        char *str = NULL;
        hwloc_bitmap_list_asprintf(&str, p.rank_cpuset);
        log_debug("topo: %u workers on PUs %s (%u cores%s); store on NUMA node %d: %s%s%s",
                  nworkers, str ? str : "?", p.ncores,
                  nworkers > p.ncores ? ", one PU per worker" : "", p.store_node,
                  topo_store_why_str(p.store_why), p.nic[0] ? ", NIC " : "", p.nic);
        free(str);
    }
    topo_place_free(&p);
    return DEED_OK;
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
