/*
 * verbs.h — the "verbs" transport: RC queue pairs set up with librdmacm, active messages by
 * SEND/RECV over a shared receive queue with per-peer credits, object data by RDMA READ from
 * regions registered once with ibv_reg_mr, the completion channel and the rdma_cm event
 * channel behind one epoll fd, peer failure from CM events and QP errors. See verbs.c.
 *
 * This header does not include the verbs headers: the core and the tests only see the ops
 * table and a few counters.
 */
#ifndef DEED_TP_VERBS_H
#define DEED_TP_VERBS_H

#include <stdint.h>

#include "transport.h"

extern const struct tp_ops tp_verbs_ops;

/* Counters and settings of one verbs transport instance (for tests and diagnostics). */
struct tp_verbs_stats {
    uint64_t am_sent;       /* am_send calls that succeeded */
    uint64_t am_recv;       /* messages delivered to am_cb */
    uint64_t frags_sent;    /* SENDs posted for messages (a message > frag_max is several) */
    uint64_t frags_recv;    /* message fragments received */
    uint64_t credit_msgs;   /* credit-only SENDs (credits not piggybacked in time) */
    uint64_t credit_stalls; /* times a peer's output waited for credits */
    uint64_t gets;          /* get calls that succeeded */
    uint64_t read_wrs;      /* RDMA READ work requests posted (gets are cut in chunks) */
    uint64_t peers_failed;  /* peers reported through failure_cb */
    uint32_t credits;       /* receive buffers granted to each peer */
    uint32_t srq_depth;     /* receive buffers posted in the shared receive queue */
    uint32_t frag_max;      /* largest payload of one SEND */
    uint32_t max_inline;    /* inline data of the last QP created */
    uint32_t port;          /* the port used */
    int32_t gid_index;      /* the GID index chosen (-1: none, InfiniBand) */
    char device[64];        /* the device used, e.g. "rxe0" */
};

/* Fills *st with tp's counters. tp must be a "verbs" instance. */
void tp_verbs_get_stats(struct tp *tp, struct tp_verbs_stats *st);

#endif /* DEED_TP_VERBS_H */
