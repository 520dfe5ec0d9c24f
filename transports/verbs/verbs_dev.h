/*
 * verbs_dev.h — choosing the RDMA device, port and GID (and so the IP address) that the
 * "verbs" transport binds its rdma_cm listener to, from DEED_VERBS_DEVICE, DEED_VERBS_PORT,
 * DEED_VERBS_GID_INDEX and DEED_VERBS_ADDR, with an automatic choice for each.
 */
#ifndef DEED_TP_VERBS_DEV_H
#define DEED_TP_VERBS_DEV_H

#include <stdint.h>
#include <netinet/in.h>

#include <infiniband/verbs.h>

struct verbs_dev_choice {
    struct ibv_context *ctx; /* from rdma_get_devices(): the context rdma_cm ids use */
    char name[64];
    uint8_t port;
    int gid_index;           /* -1 on InfiniBand without a GID-derived address */
    int link_layer;          /* IBV_LINK_LAYER_* */
    struct sockaddr_in addr; /* the IPv4 address to bind (port 0) */
};

/* Picks the device/port/GID from the environment (see verbs.c's header comment) among the
 * contexts of rdma_get_devices(). Returns DEED_OK, DEED_ERR_CONFIG (a variable names
 * something that does not exist or is malformed: the log names it and the allowed values)
 * or DEED_ERR_TRANSPORT ("no RDMA device: ..." when there is none usable). */
int verbs_dev_choose(struct ibv_context **devs, int ndevs, struct verbs_dev_choice *out);

#endif /* DEED_TP_VERBS_DEV_H */
