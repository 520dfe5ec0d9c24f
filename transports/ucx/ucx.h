/*
 * ucx.h — the "ucx" transport: UCP active messages for control, ucp_get_nbx for object data,
 * one worker per rank driven by the event loop, peer error handling for failure detection.
 * See ucx.c for the details (ordering, buffer ownership, what needs target progress).
 *
 * This header does not include UCX headers: the core and the tests only see the ops table
 * and a few counters.
 */
#ifndef DEED_TP_UCX_H
#define DEED_TP_UCX_H

#include <stdint.h>

#include "transport.h"

extern const struct tp_ops tp_ucx_ops;

/* Counters of one ucx transport instance (for tests and diagnostics). */
struct tp_ucx_stats {
    uint64_t am_sent;         /* am_send calls that succeeded */
    uint64_t am_sent_inplace; /* ... of which completed before am_send returned, no copy */
    uint64_t am_recv;         /* active messages delivered to am_cb */
    uint64_t am_recv_rndv;    /* ... of which arrived by rendezvous */
    uint64_t gets;            /* get calls that succeeded */
    uint64_t gets_inplace;    /* ... of which completed before get returned */
    uint64_t rkey_hits;       /* get found the unpacked rkey in the cache */
    uint64_t rkey_misses;     /* get unpacked an rkey (first use per peer and blob) */
    uint64_t rkey_cached;     /* rkeys in the cache now */
    uint64_t peers_failed;    /* peers reported through failure_cb */
};

/* Fills *st with tp's counters. tp must be a "ucx" instance. */
void tp_ucx_get_stats(struct tp *tp, struct tp_ucx_stats *st);

#endif /* DEED_TP_UCX_H */
