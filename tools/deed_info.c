/*
 * deed-info — what deed sees on this host and how it would place a job, like ucx_info or
 * fi_info:
 *
 *   deed-info [-n N] [--bind none|core|numa] [--workers W] [--nic NAME]
 *             [--synthetic DESC | --xml FILE] [--json]
 *
 * Prints the deed version; the transports built into libdeed and whether each initializes
 * here (for UCX, the transport resources UCT finds); the RDMA devices libibverbs finds
 * (ports, state, link layer, GIDs); the topology (packages, NUMA nodes with memory, cores,
 * PUs, NICs and their NUMA node); and the placement topo_place gives (lib/topo.h): with no
 * option, for this process as it is bound now; with -n/--bind, for each rank of
 * `deedrun -n N --bind MODE` on this machine, or on another one described by --synthetic
 * (hwloc synthetic syntax) or --xml (lstopo's XML output). --json prints one JSON object.
 *
 * Exit status: 0; 2 for usage errors; 1 when a topology cannot be loaded or placed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deed.h"
#include "deed_info.h"
#include "log.h"
#include "topo.h"
#include "transport.h"

struct opts {
    uint32_t n;
    bool have_n, have_bind, json;
    enum topo_bind bind;
    uint32_t workers;
    bool have_workers;
    const char *nic;       /* --nic, NULL = from the environment */
    const char *synthetic; /* --synthetic DESC */
    const char *xml;       /* --xml FILE */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: deed-info [options]\n"
            "\n"
            "Show the deed version, the transports and RDMA devices of this host, its\n"
            "topology, and the placement deed uses: for this process (no option), or for\n"
            "each rank of `deedrun -n N --bind MODE`.\n"
            "\n"
            "options:\n"
            "  -n N              ranks on the node (default 1)\n"
            "  --bind MODE       none (default), core or numa, as deedrun --bind\n"
            "  --workers W       worker threads per rank (default: DEED_WORKERS, else 0: one\n"
            "                    per core)\n"
            "  --nic NAME        the NIC whose NUMA node takes the store (default:\n"
            "                    DEED_VERBS_DEVICE, else the first of UCX_NET_DEVICES, else\n"
            "                    the only RDMA device)\n"
            "  --synthetic DESC  plan for a synthetic machine, e.g. \"pack:2 numa:1 core:8 pu:2\"\n"
            "  --xml FILE        plan for the machine of an XML topology (lstopo file.xml)\n"
            "  --json            one JSON object instead of text\n"
            "  -h, --help        this message\n");
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "deed-info: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry 'deed-info --help'\n");
    exit(2);
}

/* "--opt V" or "--opt=V" (and "-nV"); NULL when missing. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t l = strlen(name);

    if (a[l] == '=')
        return a + l + 1;
    if (a[l] != '\0')
        return a + l;
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

static bool is_opt(const char *a, const char *name)
{
    size_t l = strlen(name);

    return strncmp(a, name, l) == 0 &&
           (a[l] == '\0' || a[l] == '=' || (strcmp(name, "-n") == 0 && a[l] >= '0' && a[l] <= '9'));
}

static uint32_t parse_count(const char *v, const char *opt, uint32_t min, uint32_t max)
{
    char *end;
    unsigned long long x;

    errno = 0;
    x = v && *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
    if (!v || *v < '0' || *v > '9' || errno || *end || x < min || x > max)
        die_usage("%s needs an integer from %u to %u%s%s%s", opt, min, max, v ? ", not '" : "",
                  v ? v : "", v ? "'" : "");
    return (uint32_t)x;
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->n = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (is_opt(a, "-n")) {
            o->n = parse_count(opt_value(argc, argv, &i, "-n"), "-n", 1, 1u << 20);
            o->have_n = true;
        } else if (is_opt(a, "--bind")) {
            v = opt_value(argc, argv, &i, "--bind");
            if (v && strcmp(v, "none") == 0)
                o->bind = TOPO_BIND_NONE;
            else if (v && strcmp(v, "core") == 0)
                o->bind = TOPO_BIND_CORE;
            else if (v && strcmp(v, "numa") == 0)
                o->bind = TOPO_BIND_NUMA;
            else
                die_usage("--bind needs none, core or numa%s%s%s", v ? ", not '" : "", v ? v : "",
                          v ? "'" : "");
            o->have_bind = true;
        } else if (is_opt(a, "--workers")) {
            o->workers = parse_count(opt_value(argc, argv, &i, "--workers"), "--workers", 0, 1024);
            o->have_workers = true;
        } else if (is_opt(a, "--nic")) {
            o->nic = opt_value(argc, argv, &i, "--nic");
            if (!o->nic || !*o->nic || strlen(o->nic) >= TOPO_NIC_MAX)
                die_usage("--nic needs a device name (mlx5_0, eth0: lstopo or ibv_devices "
                          "lists them)");
        } else if (is_opt(a, "--synthetic")) {
            o->synthetic = opt_value(argc, argv, &i, "--synthetic");
            if (!o->synthetic || !*o->synthetic)
                die_usage("--synthetic needs an hwloc synthetic description, e.g. "
                          "\"pack:2 numa:1 core:8 pu:2\"");
        } else if (is_opt(a, "--xml")) {
            o->xml = opt_value(argc, argv, &i, "--xml");
            if (!o->xml || !*o->xml)
                die_usage("--xml needs the path of an hwloc XML file (lstopo FILE.xml)");
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else {
            die_usage("unknown %s '%s'", a[0] == '-' ? "option" : "argument", a);
        }
    }
    if (o->synthetic && o->xml)
        die_usage("--synthetic and --xml both describe the machine: give one");
}

/* ---- transports ------------------------------------------------------------------------- */

static void noop_am(void *arg, uint32_t src, const void *data, size_t len)
{
}

/* Whether transport `name` starts here as rank 0 of a one-rank job: DEED_OK or why not
 * (what the transport logged while it failed, captured from stderr, goes to why). */
static int transport_try(const char *name, char *why, size_t wlen)
{
    const struct tp_ops *ops = tp_find(name);
    struct tp_params p = {.rank = 0, .nranks = 1, .am_cb = noop_am};
    struct tp *tp = NULL;
    FILE *cap = tmpfile();
    int rc, saved = -1;

    why[0] = '\0';
    if (!ops)
        return DEED_ERR_UNSUPPORTED;
    fflush(stdout);
    fflush(stderr);
    if (cap && (saved = dup(STDERR_FILENO)) >= 0)
        dup2(fileno(cap), STDERR_FILENO);
    rc = ops->init(&p, &tp);
    if (rc == DEED_OK)
        ops->fini(tp);
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, STDERR_FILENO);
        close(saved);
        rewind(cap);
        if (rc != DEED_OK && fgets(why, (int)wlen, cap)) {
            const char *msg = strstr(why, "error: ");
            memmove(why, msg ? msg + 7 : why, strlen(msg ? msg + 7 : why) + 1);
            why[strcspn(why, "\n")] = '\0';
        }
    }
    if (cap)
        fclose(cap);
    return rc;
}

static void show_transports(const struct opts *o)
{
    char names[256], *save = NULL, version[64], why[128];
    struct info_ucx_dev *ucx = NULL;
    int nucx = info_ucx_devices(&ucx, version, sizeof(version), why, sizeof(why));
    bool first = true;

    snprintf(names, sizeof(names), "%s", tp_names());
    if (o->json) {
        printf(",\"transports\":[");
    } else {
        printf("\ntransports built in: %s\n", tp_names());
    }
    for (char *n = strtok_r(names, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        char fail[256];
        int rc = transport_try(n, fail, sizeof(fail));
        bool is_ucx = strcmp(n, "ucx") == 0;
        if (o->json) {
            printf("%s{\"name\":", first ? "" : ",");
            info_json_str(stdout, n);
            printf(",\"initializes\":%s,\"status\":", rc == DEED_OK ? "true" : "false");
            info_json_str(stdout, deed_strerror(rc));
            printf(",\"why\":");
            info_json_str(stdout, fail);
            if (is_ucx) {
                printf(",\"version\":");
                info_json_str(stdout, version);
                printf(",\"devices\":[");
                for (int i = 0; i < nucx; i++) {
                    printf("%s{\"tl\":", i ? "," : "");
                    info_json_str(stdout, ucx[i].tl);
                    printf(",\"device\":");
                    info_json_str(stdout, ucx[i].dev);
                    printf(",\"kind\":\"%s\"}", ucx[i].kind);
                }
                printf("]");
            }
            printf("}");
        } else {
            printf("  %-6s %s%s%s%s\n", n,
                   rc == DEED_OK ? "initializes here" : "does not initialize here: ",
                   rc == DEED_OK ? "" : deed_strerror(rc), fail[0] ? "\n         " : "", fail);
            if (is_ucx) {
                printf("         UCX %s; UCX_TLS=%s UCX_NET_DEVICES=%s\n", version,
                       getenv("UCX_TLS") ? getenv("UCX_TLS") : "(all)",
                       getenv("UCX_NET_DEVICES") ? getenv("UCX_NET_DEVICES") : "(all)");
                printf("         resources:%s", nucx > 0 ? "" : nucx == 0 ? " none" : " ?");
                for (int i = 0; i < nucx; i++)
                    printf("%s %s/%s(%s)", i && i % 5 == 0 ? "\n                   " : "",
                           ucx[i].tl, ucx[i].dev, ucx[i].kind);
                printf("\n");
                if (nucx < 0)
                    printf("         (%s)\n", why);
            }
        }
        first = false;
    }
    if (o->json)
        printf("]");
    free(ucx);
}

static void show_verbs(const struct opts *o)
{
    struct info_ib_dev *d = NULL;
    char why[128] = "";
    int n = info_verbs_devices(&d, why, sizeof(why));

    if (o->json) {
        printf(",\"rdma_devices\":");
        if (n < 0) {
            printf("null,\"rdma_devices_why\":");
            info_json_str(stdout, why);
        } else {
            printf("[");
            for (int i = 0; i < n; i++) {
                printf("%s{\"name\":", i ? "," : "");
                info_json_str(stdout, d[i].name);
                printf(",\"node_guid\":\"%s\",\"error\":", d[i].node_guid);
                info_json_str(stdout, d[i].error);
                printf(",\"ports\":[");
                for (unsigned p = 0; p < d[i].nports; p++) {
                    const struct info_ib_port *pt = &d[i].ports[p];
                    printf("%s{\"port\":%u,\"state\":", p ? "," : "", pt->num);
                    info_json_str(stdout, pt->state);
                    printf(",\"link_layer\":\"%s\",\"lid\":%u,\"active_mtu\":%d,\"ngids\":%u,"
                           "\"gids\":[",
                           pt->link_layer, pt->lid, pt->active_mtu, pt->ngids);
                    for (unsigned g = 0; g < pt->ngids && g < INFO_GIDS; g++)
                        printf("%s\"%s\"", g ? "," : "", pt->gids[g]);
                    printf("]}");
                }
                printf("]}");
            }
            printf("]");
        }
        free(d);
        return;
    }
    printf("\nRDMA devices (libibverbs):");
    if (n < 0)
        printf(" unknown: %s\n", why);
    else if (n == 0)
        printf(" none\n");
    else
        printf("\n");
    for (int i = 0; i < n; i++) {
        printf("  %s (node GUID %s)%s%s\n", d[i].name, d[i].node_guid, d[i].error[0] ? ": " : "",
               d[i].error);
        for (unsigned p = 0; p < d[i].nports; p++) {
            const struct info_ib_port *pt = &d[i].ports[p];
            printf("    port %u: %s, %s, lid %u, mtu %d, %u GID%s", pt->num, pt->state,
                   pt->link_layer, pt->lid, pt->active_mtu, pt->ngids, pt->ngids == 1 ? "" : "s");
            for (unsigned g = 0; g < pt->ngids && g < INFO_GIDS; g++)
                printf("%s%s", g ? ", " : ": ", pt->gids[g]);
            printf("%s\n", pt->ngids > INFO_GIDS ? ", ..." : "");
        }
    }
    free(d);
}

/* ---- topology --------------------------------------------------------------------------- */

static unsigned count_in(hwloc_topology_t topo, hwloc_obj_type_t type, hwloc_const_cpuset_t set)
{
    hwloc_obj_t o = NULL;
    unsigned n = 0;

    while ((o = hwloc_get_next_obj_by_type(topo, type, o)))
        if (o->cpuset && hwloc_bitmap_intersects(o->cpuset, set))
            n++;
    return n;
}

static const char *nic_kind(hwloc_obj_t o)
{
    return o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS ? "rdma" : "network";
}

static void show_topology(const struct opts *o, const struct topo *t, const char *source)
{
    hwloc_topology_t topo = t->topology;
    hwloc_const_cpuset_t all = hwloc_topology_get_topology_cpuset(topo);
    hwloc_obj_t node = NULL, dev = NULL;
    bool first = true;
    char *str = NULL;

    hwloc_bitmap_list_asprintf(&str, t->cpuset);
    if (o->json) {
        printf(",\"topology\":{\"source\":");
        info_json_str(stdout, source);
        printf(",\"packages\":%d,\"cores\":%d,\"pus\":%d,\"cpuset\":\"%s\",\"numa_nodes\":[",
               hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE),
               hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE),
               hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU), str ? str : "");
    } else {
        printf("\ntopology (%s): %d package%s, %d NUMA node%s, %d cores, %d PUs; this process "
               "may use PUs %s\n",
               source, hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE),
               hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE) == 1 ? "" : "s",
               hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE),
               hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE) == 1 ? "" : "s",
               hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE),
               hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU), str ? str : "?");
    }
    free(str);
    while ((node = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, node))) {
        hwloc_const_cpuset_t set = node->cpuset ? node->cpuset : all;
        unsigned long long mib = node->attr->numanode.local_memory >> 20;
        str = NULL;
        hwloc_bitmap_list_asprintf(&str, set);
        if (o->json)
            printf("%s{\"os_index\":%u,\"memory_mib\":%llu,\"cpuset\":\"%s\",\"cores\":%u}",
                   first ? "" : ",", node->os_index, mib, str ? str : "",
                   count_in(topo, HWLOC_OBJ_CORE, set));
        else
            printf("  NUMA node %u: %llu MiB, PUs %s (%u cores)%s%s\n", node->os_index, mib,
                   str ? str : "?", count_in(topo, HWLOC_OBJ_CORE, set), node->subtype ? ", " : "",
                   node->subtype ? node->subtype : "");
        free(str);
        first = false;
    }
    if (o->json)
        printf("],\"nics\":[");
    else
        printf("  NICs:");
    first = true;
    while ((dev = hwloc_get_next_osdev(topo, dev))) {
        if (dev->attr->osdev.type != HWLOC_OBJ_OSDEV_OPENFABRICS &&
            dev->attr->osdev.type != HWLOC_OBJ_OSDEV_NETWORK)
            continue;
        if (o->json) {
            printf("%s{\"name\":", first ? "" : ",");
            info_json_str(stdout, dev->name);
            printf(",\"kind\":\"%s\",\"numa_node\":%d}", nic_kind(dev), topo_nic_numa(topo, dev));
        } else {
            int nn = topo_nic_numa(topo, dev);
            printf("%s %s (%s, ", first ? "" : ",", dev->name, nic_kind(dev));
            if (nn >= 0)
                printf("NUMA node %d)", nn);
            else
                printf("NUMA node unknown)");
        }
        first = false;
    }
    if (o->json)
        printf("]}");
    else
        printf("%s\n", first ? " none (hwloc sees no PCI network or RDMA device)" : "");
}

/* ---- placement -------------------------------------------------------------------------- */

static void print_set(const char *prefix, hwloc_const_bitmap_t set)
{
    char *str = NULL;

    hwloc_bitmap_list_asprintf(&str, set);
    printf("%s%s", prefix, str ? str : "?");
    free(str);
}

static const char *workers_str(const struct opts *o)
{
    static char buf[64];

    if (o->workers == 0)
        return "one worker per core";
    snprintf(buf, sizeof(buf), "%u workers (%s)", o->workers,
             o->have_workers ? "--workers" : "DEED_WORKERS");
    return buf;
}

static int show_placement(const struct opts *o, const struct topo *t, const char *nic,
                          bool this_process)
{
    if (o->json) {
        printf(",\"placement\":{\"for\":\"%s\",\"nranks\":%u,\"bind\":\"%s\",\"workers\":%u,"
               "\"nic_requested\":",
               this_process ? "this process" : "deedrun", o->n, topo_bind_str(o->bind), o->workers);
        info_json_str(stdout, nic ? nic : "");
        printf(",\"ranks\":[");
    } else if (this_process) {
        printf("\nplacement of this process (%s, NIC %s):\n", workers_str(o),
               nic && *nic ? nic : "auto: the only RDMA device");
    } else {
        printf("\nplacement for deedrun -n %u --bind %s (%s, NIC %s):\n", o->n,
               topo_bind_str(o->bind), workers_str(o),
               nic && *nic ? nic : "auto: the only RDMA device");
    }
    for (uint32_t r = 0; r < o->n; r++) {
        struct topo_place_in in = {.cpuset = t->cpuset,
                                   .bind = o->bind,
                                   .local_rank = r,
                                   .local_nranks = o->n,
                                   .nworkers = o->workers,
                                   .nic = nic};
        struct topo_placement p;
        int rc = topo_place(t->topology, &in, &p);

        if (rc != DEED_OK) {
            if (o->json)
                printf("]}}\n");
            fprintf(stderr,
                    "deed-info: no placement for rank %u: %s (the cpuset has no core "
                    "of the topology?)\n",
                    r, deed_strerror(rc));
            return 1;
        }
        if (o->json) {
            char *str = NULL;
            hwloc_bitmap_list_asprintf(&str, p.rank_cpuset);
            printf("%s{\"rank\":%u,\"cpuset\":\"%s\",\"cores\":%u,\"store_numa_node\":%d,"
                   "\"store_why\":",
                   r ? "," : "", r, str ? str : "", p.ncores, p.store_node);
            free(str);
            info_json_str(stdout, topo_store_why_str(p.store_why));
            printf(",\"nic\":");
            info_json_str(stdout, p.nic);
            printf(",\"nic_numa_node\":%d,\"workers\":[", p.nic_node);
            for (uint32_t w = 0; w < p.nworkers; w++) {
                str = NULL;
                hwloc_bitmap_list_asprintf(&str, p.workers[w]);
                printf("%s\"%s\"", w ? "," : "", str ? str : "");
                free(str);
            }
            printf("]}");
        } else {
            printf("  rank %u: PUs ", r);
            print_set("", p.rank_cpuset);
            printf(" (%u core%s); store on NUMA node %d: %s", p.ncores, p.ncores == 1 ? "" : "s",
                   p.store_node, topo_store_why_str(p.store_why));
            if (p.nic[0])
                printf(" (NIC %s, NUMA node %d)", p.nic, p.nic_node);
            printf("\n    %u worker%s on PUs:", p.nworkers, p.nworkers == 1 ? "" : "s");
            for (uint32_t w = 0; w < p.nworkers; w++)
                print_set(" ", p.workers[w]);
            printf("%s\n", p.nworkers > p.ncores
                               ? " (more workers than cores: one PU each, SMT siblings too)"
                               : "");
        }
        topo_place_free(&p);
    }
    if (o->json)
        printf("]}");
    if (!o->json && nic && *nic && !topo_find_nic(t->topology, nic))
        printf("  note: NIC '%s' is not in the topology; the store follows the rank's PUs\n", nic);
    return 0;
}

/* ---- main ------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct opts o;
    struct topo t;
    char source[512], env_nic[TOPO_NIC_MAX];
    const char *nic;
    bool this_process;
    int rc;

    parse_opts(argc, argv, &o);
    if (!o.have_workers && getenv("DEED_WORKERS")) { /* what deed_init would use */
        char *end;
        unsigned long w = strtoul(getenv("DEED_WORKERS"), &end, 10);
        if (*getenv("DEED_WORKERS") && !*end && w <= 1024)
            o.workers = (uint32_t)w;
    }
    log_set_level(-1); /* deed-info reports errors itself */
    if (o.synthetic) {
        rc = topo_open_synthetic(&t, o.synthetic, NULL);
        snprintf(source, sizeof(source), "synthetic \"%s\"", o.synthetic);
        if (rc != DEED_OK) {
            fprintf(stderr,
                    "deed-info: --synthetic '%s' is not an hwloc synthetic description "
                    "(e.g. \"pack:2 numa:1 core:8 pu:2\")\n",
                    o.synthetic);
            return 1;
        }
    } else if (o.xml) {
        rc = topo_open_xml(&t, o.xml, NULL, NULL);
        snprintf(source, sizeof(source), "XML file %s", o.xml);
        if (rc != DEED_OK) {
            fprintf(stderr,
                    "deed-info: --xml %s: cannot load it as an hwloc XML topology "
                    "(write one with: lstopo FILE.xml)\n",
                    o.xml);
            return 1;
        }
    } else {
        if (topo_open_all(&t) != DEED_OK) {
            fprintf(stderr, "deed-info: cannot load the hwloc topology of this machine\n");
            return 1;
        }
        snprintf(source, sizeof(source), "this machine");
    }
    log_set_level(DEED_LOG_ERROR);
    topo_env_nic(env_nic, sizeof(env_nic));
    nic = o.nic ? o.nic : env_nic;
    /* no -n/--bind on the real machine: this process as it is bound now */
    this_process = !o.have_n && !o.have_bind && !o.synthetic && !o.xml;

    if (o.json) {
        printf("{\"deed\":\"%d.%d.%d\"", DEED_VERSION_MAJOR, DEED_VERSION_MINOR,
               DEED_VERSION_PATCH);
    } else {
        printf("deed %d.%d.%d\n", DEED_VERSION_MAJOR, DEED_VERSION_MINOR, DEED_VERSION_PATCH);
    }
    show_transports(&o);
    show_verbs(&o);
    show_topology(&o, &t, source);
    rc = show_placement(&o, &t, nic, this_process);
    if (o.json && rc == 0)
        printf("}\n");
    topo_close(&t);
    return rc;
}
