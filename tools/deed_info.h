/*
 * deed_info.h — what deed-info's parts share: the devices the network libraries see on this
 * host (deed_info_net.c) and the JSON string writer.
 */
#ifndef DEED_INFO_H
#define DEED_INFO_H

#include <stdio.h>
#include <stddef.h>

/* A UCT transport resource: transport layer, device, kind (net, shm, acc, self). */
struct info_ucx_dev {
    char tl[32];
    char dev[64];
    const char *kind;
};

/* One port of an RDMA device as libibverbs sees it. */
struct info_ib_port {
    unsigned num;
    const char *state;      /* ibv_port_state_str */
    const char *link_layer; /* InfiniBand, Ethernet */
    unsigned lid;
    int active_mtu; /* bytes */
    unsigned ngids; /* non-zero entries of the GID table (first INFO_GIDS shown) */
    char gids[4][40];
};
#define INFO_GIDS 4
#define INFO_PORTS 4

struct info_ib_dev {
    char name[64];
    char node_guid[24];
    unsigned nports; /* shown: at most INFO_PORTS */
    struct info_ib_port ports[INFO_PORTS];
    char error[96]; /* "" or why it could not be opened/queried */
};

/* UCX's version string ("" when UCX is not built in) and the transport resources UCT
 * finds on this host. Returns the count (>= 0; *devs malloc'ed, may be NULL when 0), or -1
 * when UCX is not built into deed (why says so) or the query failed (why says why). */
int info_ucx_devices(struct info_ucx_dev **devs, char *version, size_t vlen, char *why,
                     size_t wlen);
/* The RDMA devices libibverbs finds. Returns the count (*devs malloc'ed), or -1 when deed
 * was built without libibverbs (why says so). */
int info_verbs_devices(struct info_ib_dev **devs, char *why, size_t wlen);

/* s as a JSON string, quotes included. */
void info_json_str(FILE *f, const char *s);

#endif /* DEED_INFO_H */
