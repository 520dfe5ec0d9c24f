/*
 * net.h — messages between ranks: per-destination batching and incoming dispatch.
 *
 * Handlers append messages to a per-peer batch (net_msg / net_msg_end) while the loop runs;
 * net_flush, called once per combiner pass, sends each non-empty batch as one transport
 * active message (design §5.4: batched per destination per loop iteration) with this rank's
 * load piggybacked in the batch header. net_on_am decodes an incoming batch and dispatches
 * each message to its handler; a malformed message is dropped and logged, the rest of the
 * batch goes on. Loop thread (combiner) only.
 */
#ifndef DEED_NET_H
#define DEED_NET_H

#include <stdint.h>

#include "wire.h"

struct rt;

/* Message types (docs/protocol.md describes each). */
enum wire_type {
    WT_TASK_PUSH = 1,  /* owner -> executor: run this task */
    WT_TASK_REPLY,     /* executor -> owner: results, locations, borrow report */
    WT_LOCATE,         /* borrower -> owner: where is this object (answered when ready) */
    WT_LOCATE_REPLY,   /* owner -> borrower: inline value, a location, or an error */
    WT_COPY_ADDED,     /* reader -> owner: I now hold a copy */
    WT_COPY_FREE,      /* owner -> holder: drop your copy */
    WT_BORROW_WAIT,    /* owner -> borrower: tell me when you no longer hold this ref */
    WT_BORROW_DONE,    /* borrower -> owner: released, plus borrowers I created */
    WT_RKEY_REQ,       /* reader -> holder: the rkey of one of your store segments */
    WT_RKEY_REPLY,     /* holder -> reader: segment base, length, packed rkey */
    WT_LEASE_REQ,      /* owner -> scheduler: a lease for a scheduling key */
    WT_LEASE_GRANT,    /* scheduler -> owner: granted */
    WT_LEASE_SPILL,    /* scheduler -> owner: ask that rank instead */
    WT_LEASE_RETURN,   /* owner -> scheduler: idle lease given back */
    WT_MEMBER_SUSPECT, /* rank -> rank 0: this rank looks dead to me */
    WT_MEMBER_DEAD,    /* rank 0 -> all: this rank is dead (epoch) */
    WT_HEARTBEAT,      /* rank <-> rank 0: still here */
    WT_FIN_ENTER,      /* rank -> rank 0: this rank reached finalize round n */
    WT_FIN_GO,         /* rank 0 -> all: every live rank reached round n */
    WT_TASK_DONE,      /* executor -> owner: TASK_REPLY's common case, small returns only */
    WT_TYPE_MAX
};

struct peer {
    struct wbuf out;          /* open batch, or empty */
    uint8_t dirty;            /* in rt->net_dirty */
    uint8_t dead;
    uint32_t load_queued;     /* last load it piggybacked: tasks queued or running there */
    uint16_t load_free;       /* ... and its free worker slots (leases it can grant) */
};

int net_init(struct rt *rt);
void net_fini(struct rt *rt);
/* Open a message of `type` to `dst` and return the batch to write its body into. */
struct wbuf *net_msg(struct rt *rt, uint32_t dst, uint16_t type);
void net_msg_end(struct rt *rt, uint32_t dst);
/* Send every open batch. */
void net_flush(struct rt *rt);
/* The transport's active-message callback. */
void net_on_am(void *arg, uint32_t src, const void *data, size_t len);

#endif /* DEED_NET_H */
