/*
 * deed_info_net.c — deed-info's look at the network libraries of this host: the transport
 * resources UCT reports (like ucx_info -d, every component, memory domain and device) and
 * the RDMA devices libibverbs reports (ports, state, link layer, GIDs, like ibv_devinfo).
 * Read-only: opens and closes what it queries, keeps nothing.
 */
#include "deed_info.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef DEED_HAVE_UCX
#include <ucp/api/ucp.h>
#include <uct/api/uct.h>
#endif
#ifdef DEED_HAVE_IBVERBS
#include <arpa/inet.h>
#include <endian.h>
#include <infiniband/verbs.h>
#endif

void info_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

#ifdef DEED_HAVE_UCX
static const char *ucx_kind(uct_device_type_t t)
{
    switch (t) {
    case UCT_DEVICE_TYPE_NET:
        return "net";
    case UCT_DEVICE_TYPE_SHM:
        return "shm";
    case UCT_DEVICE_TYPE_ACC:
        return "acc";
    case UCT_DEVICE_TYPE_SELF:
        return "self";
    default:
        return "?";
    }
}

/* Append the resources of one memory domain. */
static int ucx_md_devices(uct_component_h comp, const char *md_name, struct info_ucx_dev **devs,
                          int *n, int *cap)
{
    uct_md_config_t *cfg = NULL;
    uct_md_h md = NULL;
    uct_tl_resource_desc_t *res = NULL;
    unsigned nres = 0;

    if (uct_md_config_read(comp, NULL, NULL, &cfg) != UCS_OK)
        return 0; /* a component that cannot be configured here has no devices */
    if (uct_md_open(comp, md_name, cfg, &md) != UCS_OK) {
        uct_config_release(cfg);
        return 0;
    }
    uct_config_release(cfg);
    if (uct_md_query_tl_resources(md, &res, &nres) != UCS_OK)
        nres = 0;
    for (unsigned i = 0; i < nres; i++) {
        if (*n == *cap) {
            int ncap = *cap ? 2 * *cap : 16;
            struct info_ucx_dev *d = realloc(*devs, (size_t)ncap * sizeof(*d));
            if (!d) {
                uct_release_tl_resource_list(res);
                uct_md_close(md);
                return -1;
            }
            *devs = d;
            *cap = ncap;
        }
        snprintf((*devs)[*n].tl, sizeof((*devs)[*n].tl), "%s", res[i].tl_name);
        snprintf((*devs)[*n].dev, sizeof((*devs)[*n].dev), "%s", res[i].dev_name);
        (*devs)[*n].kind = ucx_kind(res[i].dev_type);
        (*n)++;
    }
    if (nres)
        uct_release_tl_resource_list(res);
    uct_md_close(md);
    return 0;
}
#endif

int info_ucx_devices(struct info_ucx_dev **devs, char *version, size_t vlen, char *why, size_t wlen)
{
    *devs = NULL;
    version[0] = '\0';
#ifdef DEED_HAVE_UCX
    uct_component_h *comps = NULL;
    unsigned ncomps = 0;
    int n = 0, cap = 0, rc = 0;

    snprintf(version, vlen, "%s", ucp_get_version_string());
    if (uct_query_components(&comps, &ncomps) != UCS_OK) {
        snprintf(why, wlen, "uct_query_components failed");
        return -1;
    }
    for (unsigned c = 0; c < ncomps && rc == 0; c++) {
        uct_component_attr_t attr;
        memset(&attr, 0, sizeof(attr));
        attr.field_mask =
            UCT_COMPONENT_ATTR_FIELD_NAME | UCT_COMPONENT_ATTR_FIELD_MD_RESOURCE_COUNT;
        if (uct_component_query(comps[c], &attr) != UCS_OK || attr.md_resource_count == 0)
            continue;
        attr.md_resources = calloc(attr.md_resource_count, sizeof(*attr.md_resources));
        if (!attr.md_resources) {
            rc = -1;
            break;
        }
        attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCES;
        if (uct_component_query(comps[c], &attr) == UCS_OK)
            for (unsigned m = 0; m < attr.md_resource_count && rc == 0; m++)
                rc = ucx_md_devices(comps[c], attr.md_resources[m].md_name, devs, &n, &cap);
        free(attr.md_resources);
    }
    uct_release_component_list(comps);
    if (rc != 0) {
        free(*devs);
        *devs = NULL;
        snprintf(why, wlen, "out of memory");
        return -1;
    }
    return n;
#else
    (void)vlen;
    snprintf(why, wlen, "deed was built without UCX");
    return -1;
#endif
}

#ifdef DEED_HAVE_IBVERBS
static void ib_port(struct ibv_context *ctx, unsigned num, struct info_ib_port *p)
{
    struct ibv_port_attr pa;

    memset(p, 0, sizeof(*p));
    p->num = num;
    p->state = "?";
    p->link_layer = "?";
    if (ibv_query_port(ctx, (uint8_t)num, &pa) != 0)
        return;
    p->state = ibv_port_state_str(pa.state);
    p->link_layer = pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand";
    p->lid = pa.lid;
    p->active_mtu = 128 << pa.active_mtu;
    for (int i = 0; i < pa.gid_tbl_len; i++) {
        union ibv_gid gid;
        static const uint8_t zero[16];
        if (ibv_query_gid(ctx, (uint8_t)num, i, &gid) != 0 || memcmp(gid.raw, zero, 16) == 0)
            continue;
        if (p->ngids < INFO_GIDS)
            inet_ntop(AF_INET6, gid.raw, p->gids[p->ngids], sizeof(p->gids[0]));
        p->ngids++;
    }
}
#endif

int info_verbs_devices(struct info_ib_dev **devs, char *why, size_t wlen)
{
    *devs = NULL;
#ifdef DEED_HAVE_IBVERBS
    struct ibv_device **list;
    int n = 0;

    list = ibv_get_device_list(&n);
    if (!list || n <= 0) {
        if (list)
            ibv_free_device_list(list);
        return 0;
    }
    *devs = calloc((size_t)n, sizeof(**devs));
    if (!*devs) {
        ibv_free_device_list(list);
        snprintf(why, wlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct info_ib_dev *d = &(*devs)[i];
        struct ibv_context *ctx;
        struct ibv_device_attr da;
        uint64_t guid = be64toh(ibv_get_device_guid(list[i]));

        snprintf(d->name, sizeof(d->name), "%s", ibv_get_device_name(list[i]));
        snprintf(d->node_guid, sizeof(d->node_guid), "%04x:%04x:%04x:%04x",
                 (unsigned)(guid >> 48) & 0xffff, (unsigned)(guid >> 32) & 0xffff,
                 (unsigned)(guid >> 16) & 0xffff, (unsigned)guid & 0xffff);
        ctx = ibv_open_device(list[i]);
        if (!ctx) {
            snprintf(d->error, sizeof(d->error), "cannot open the device");
            continue;
        }
        if (ibv_query_device(ctx, &da) != 0) {
            snprintf(d->error, sizeof(d->error), "ibv_query_device failed");
        } else {
            d->nports = da.phys_port_cnt < INFO_PORTS ? da.phys_port_cnt : INFO_PORTS;
            for (unsigned p = 0; p < d->nports; p++)
                ib_port(ctx, p + 1, &d->ports[p]);
        }
        ibv_close_device(ctx);
    }
    ibv_free_device_list(list);
    return n;
#else
    snprintf(why, wlen, "deed was built without libibverbs");
    return -1;
#endif
}
