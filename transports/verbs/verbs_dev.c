/*
 * verbs_dev.c — the device, port and GID choice of the "verbs" transport (see verbs_dev.h).
 *
 * rdma_cm finds the device from an IP address, so the choice ends in an IPv4 address:
 *   RoCE  — the IPv4-mapped GID (::ffff:a.b.c.d) at DEED_VERBS_GID_INDEX, or automatically
 *           the first such GID of type RoCE v2 (else RoCE v1) whose address is not loopback
 *           (rdma_cm does not work over a device on `lo`);
 *   IB    — the address of the port's IPoIB interface (/sys/class/infiniband/DEV/device/net).
 * DEED_VERBS_ADDR overrides the address (the GID index then only has to exist). The device
 * (DEED_VERBS_DEVICE, default: every device in turn) and port (DEED_VERBS_PORT, default:
 * every port in turn) must be ACTIVE. Why each candidate was refused ends up in the error.
 */
#include "verbs_dev.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deed.h"
#include "log.h"

struct env_choice {
    const char *device; /* NULL: any */
    int port;           /* 0: any */
    int gid_index;      /* -1: auto */
    int have_addr;
    struct in_addr addr;
};

static int parse_env(struct env_choice *e)
{
    const char *s;
    char *end;
    long v;

    memset(e, 0, sizeof(*e));
    e->gid_index = -1;
    s = getenv("DEED_VERBS_DEVICE");
    if (s && *s && strcmp(s, "auto") != 0)
        e->device = s;
    s = getenv("DEED_VERBS_PORT");
    if (s && *s && strcmp(s, "auto") != 0) {
        v = strtol(s, &end, 10);
        if (*end || v < 1 || v > 255) {
            log_error("verbs transport: DEED_VERBS_PORT='%s' is invalid (allowed: auto or a "
                      "port number 1..255)",
                      s);
            return DEED_ERR_CONFIG;
        }
        e->port = (int)v;
    }
    s = getenv("DEED_VERBS_GID_INDEX");
    if (s && *s && strcmp(s, "auto") != 0) {
        v = strtol(s, &end, 10);
        if (*end || v < 0 || v > 65535) {
            log_error("verbs transport: DEED_VERBS_GID_INDEX='%s' is invalid (allowed: auto or "
                      "a GID table index 0..65535)",
                      s);
            return DEED_ERR_CONFIG;
        }
        e->gid_index = (int)v;
    }
    s = getenv("DEED_VERBS_ADDR");
    if (s && *s) {
        if (inet_pton(AF_INET, s, &e->addr) != 1) {
            log_error("verbs transport: DEED_VERBS_ADDR='%s' is invalid (allowed: an IPv4 "
                      "address of this host, e.g. 192.0.2.1)",
                      s);
            return DEED_ERR_CONFIG;
        }
        e->have_addr = 1;
    }
    return DEED_OK;
}

static void note(char *why, size_t cap, const char *name, int port, const char *detail)
{
    size_t n = strlen(why);

    if (n + 8 < cap)
        snprintf(why + n, cap - n, "%s%s port %d: %s", n ? "; " : "", name, port, detail);
}

/* The IPv4 address in an IPv4-mapped GID, or 0 when it is not one. */
static int gid_ipv4(const union ibv_gid *g, struct in_addr *a)
{
    static const unsigned char pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (memcmp(g->raw, pfx, sizeof(pfx)) != 0)
        return 0;
    memcpy(&a->s_addr, g->raw + 12, 4);
    return a->s_addr != 0;
}

static int is_loopback(struct in_addr a)
{
    return (ntohl(a.s_addr) >> 24) == 127;
}

/* RoCE: the GID index and address to use on (ctx, port); 0 if found. */
static int roce_pick(struct ibv_context *ctx, uint8_t port, int gid_tbl_len,
                     const struct env_choice *e, int *gid_out, struct in_addr *addr_out,
                     const char **why)
{
    int best = -1, best_v2 = 0;
    struct in_addr best_addr = {0};

    if (e->gid_index >= 0) {
        struct ibv_gid_entry ent;
        struct in_addr a;

        if (e->gid_index >= gid_tbl_len) {
            *why = "DEED_VERBS_GID_INDEX is beyond the GID table";
            return -1;
        }
        if (ibv_query_gid_ex(ctx, port, (uint32_t)e->gid_index, &ent, 0) != 0) {
            *why = "the GID at DEED_VERBS_GID_INDEX is empty";
            return -1;
        }
        if (!e->have_addr && !gid_ipv4(&ent.gid, &a)) {
            *why = "the GID at DEED_VERBS_GID_INDEX is not IPv4-mapped (set DEED_VERBS_ADDR)";
            return -1;
        }
        *gid_out = e->gid_index;
        *addr_out = e->have_addr ? e->addr : a;
        return 0;
    }
    for (int i = 0; i < gid_tbl_len; i++) {
        struct ibv_gid_entry ent;
        struct in_addr a;
        int v2;

        if (ibv_query_gid_ex(ctx, port, (uint32_t)i, &ent, 0) != 0 || !gid_ipv4(&ent.gid, &a))
            continue;
        if (e->have_addr ? a.s_addr != e->addr.s_addr : is_loopback(a))
            continue;
        v2 = ent.gid_type == IBV_GID_TYPE_ROCE_V2;
        if (best < 0 || (v2 && !best_v2)) {
            best = i;
            best_v2 = v2;
            best_addr = a;
        }
    }
    if (best < 0) {
        *why = e->have_addr ? "no GID carries DEED_VERBS_ADDR"
                            : "no IPv4-mapped GID with a non-loopback address (rdma_cm "
                              "cannot use a device on lo; is the interface up with an "
                              "IPv4 address?)";
        return -1;
    }
    *gid_out = best;
    *addr_out = best_addr;
    return 0;
}

/* InfiniBand: the IPv4 address of one of the device's IPoIB interfaces; 0 if found. */
static int ipoib_addr(const char *dev, struct in_addr *out)
{
    char path[128];
    struct ifaddrs *ifs = NULL;
    struct dirent *d;
    DIR *dir;
    int found = -1;

    snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device/net", dev);
    dir = opendir(path);
    if (!dir || getifaddrs(&ifs) != 0)
        goto out;
    while (found != 0 && (d = readdir(dir))) {
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            if (d->d_name[0] != '.' && i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
                strcmp(i->ifa_name, d->d_name) == 0) {
                *out = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
                found = 0;
                break;
            }
        }
    }
out:
    if (ifs)
        freeifaddrs(ifs);
    if (dir)
        closedir(dir);
    return found;
}

int verbs_dev_choose(struct ibv_context **devs, int ndevs, struct verbs_dev_choice *out)
{
    struct env_choice e;
    char why[1024] = "";
    int rc, named = 0;

    if ((rc = parse_env(&e)) != DEED_OK)
        return rc;
    if (!devs || ndevs <= 0) {
        log_error("verbs transport: no RDMA device: rdma_get_devices() found none (load a "
                  "driver; for soft-RoCE: modprobe rdma_rxe; rdma link add rxe0 type rxe "
                  "netdev eth0)");
        return DEED_ERR_TRANSPORT;
    }
    for (int d = 0; d < ndevs; d++) {
        struct ibv_context *ctx = devs[d];
        const char *name = ibv_get_device_name(ctx->device);
        struct ibv_device_attr da;

        if (e.device && strcmp(e.device, name) != 0)
            continue;
        named = 1;
        if (ibv_query_device(ctx, &da) != 0) {
            note(why, sizeof(why), name, 0, "ibv_query_device failed");
            continue;
        }
        if (e.port > da.phys_port_cnt) {
            log_error("verbs transport: DEED_VERBS_PORT=%d is invalid for %s (allowed: auto "
                      "or 1..%u)",
                      e.port, name, da.phys_port_cnt);
            return DEED_ERR_CONFIG;
        }
        for (int port = 1; port <= da.phys_port_cnt; port++) {
            struct ibv_port_attr pa;
            const char *reason = NULL;
            struct in_addr a;
            int gid = -1;

            if (e.port && port != e.port)
                continue;
            if (ibv_query_port(ctx, (uint8_t)port, &pa) != 0) {
                note(why, sizeof(why), name, port, "ibv_query_port failed");
                continue;
            }
            if (pa.state != IBV_PORT_ACTIVE) {
                char st[64];

                snprintf(st, sizeof(st), "not active (%s)", ibv_port_state_str(pa.state));
                note(why, sizeof(why), name, port, st);
                continue;
            }
            if (pa.link_layer == IBV_LINK_LAYER_ETHERNET) {
                if (roce_pick(ctx, (uint8_t)port, pa.gid_tbl_len, &e, &gid, &a, &reason)) {
                    note(why, sizeof(why), name, port, reason);
                    continue;
                }
            } else if (e.have_addr) {
                a = e.addr;
            } else if (ipoib_addr(name, &a) != 0) {
                note(why, sizeof(why), name, port,
                     "InfiniBand port without an IPoIB IPv4 address (set DEED_VERBS_ADDR)");
                continue;
            }
            memset(out, 0, sizeof(*out));
            out->ctx = ctx;
            snprintf(out->name, sizeof(out->name), "%s", name);
            out->port = (uint8_t)port;
            out->gid_index = gid;
            out->link_layer = pa.link_layer;
            out->addr.sin_family = AF_INET;
            out->addr.sin_addr = a;
            return DEED_OK;
        }
    }
    if (e.device && !named) {
        char names[512] = "";

        for (int d = 0; d < ndevs; d++) {
            size_t n = strlen(names);
            snprintf(names + n, sizeof(names) - n, "%s%s", d ? ", " : "",
                     ibv_get_device_name(devs[d]->device));
        }
        log_error("verbs transport: DEED_VERBS_DEVICE='%s' is not an RDMA device here "
                  "(allowed: auto or one of: %s)",
                  e.device, names);
        return DEED_ERR_CONFIG;
    }
    log_error("verbs transport: no RDMA device: no usable port (%s)", why);
    return DEED_ERR_TRANSPORT;
}
