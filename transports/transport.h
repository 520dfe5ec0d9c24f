/*
 * transport.h — the interface between the runtime core and a network transport.
 *
 * A transport is one const ops table (struct tp_ops) plus capability flags. The core calls
 * only through this table and never includes a plugin's headers (UCX, verbs). All calls are
 * made from the rank's event-loop thread, except mem_map/mem_unmap (called at store setup and
 * teardown, before/after the loop runs).
 *
 * Implementations: local/ (one-rank jobs, no network: registration is bookkeeping only),
 * ucx/ and verbs/ (multi-rank; later issues).
 */
#ifndef DEED_TRANSPORT_H
#define DEED_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Capability flags (tp_ops.caps(tp)) */
enum {
    TP_CAP_AM = 1u << 0,              /* active messages to peers */
    TP_CAP_MEM_REG = 1u << 1,         /* memory registration for remote access */
    TP_CAP_RMA_GET = 1u << 2,         /* one-sided get from registered remote memory */
    TP_CAP_RMA_NATIVE = 1u << 3,      /* gets need no progress on the target */
    TP_CAP_NEEDS_TARGET_PROGRESS = 1u << 4, /* target must keep progressing for gets */
    TP_CAP_PEER_FAILURE = 1u << 5,    /* reports dead peers through the failure callback */
    TP_CAP_EVENT_FD = 1u << 6,        /* event_fd() gives an fd the loop can sleep on */
    TP_CAP_MEM_ALLOC = 1u << 7,       /* mem_map can allocate the memory itself */
};

/* mem_map flags */
enum {
    TP_MEM_ALLOCATE = 1u << 0, /* *addr is NULL: the transport (or the caller's fallback) allocates */
};

struct tp;       /* one transport instance per rank */
struct tp_mem;   /* one registered memory region */

/* Called by the transport (from progress) for every received active message. */
typedef void (*tp_am_cb_t)(void *arg, uint32_t src_rank, const void *data, size_t len);
/* Called by the transport (from progress) when a peer is known dead. */
typedef void (*tp_peer_failure_cb_t)(void *arg, uint32_t rank);
/* Completion of a get: status 0 = ok, negative deed_status_t otherwise. */
typedef void (*tp_get_cb_t)(void *arg, int status);

struct tp_params {
    uint32_t rank;
    uint32_t nranks;
    tp_am_cb_t am_cb;
    tp_peer_failure_cb_t failure_cb;
    void *cb_arg;
};

struct tp_ops {
    size_t size;        /* sizeof(struct tp_ops): lets the table grow */
    const char *name;

    int (*init)(const struct tp_params *params, struct tp **tp);
    void (*fini)(struct tp *tp);
    uint32_t (*caps)(struct tp *tp);
    size_t (*eager_limit)(struct tp *tp);   /* largest message sent without rendezvous */

    /* Bootstrap: this rank's address, and connecting to a peer from its address. */
    int (*address)(struct tp *tp, const void **addr, size_t *len);
    int (*connect)(struct tp *tp, uint32_t rank, const void *addr, size_t len);

    /* Active messages (copied before return or queued internally; caller batches). */
    int (*am_send)(struct tp *tp, uint32_t rank, const struct iovec *iov, int iovcnt);

    /* Progress: returns the number of events handled (>= 0) or a negative status. */
    int (*progress)(struct tp *tp);
    int (*event_fd)(struct tp *tp);          /* -1 if none */
    int (*arm)(struct tp *tp);               /* 0 = armed, may sleep; 1 = events pending */

    /* Memory registration. With TP_MEM_ALLOCATE and *addr == NULL the transport allocates
     * len bytes (TP_CAP_MEM_ALLOC) or returns DEED_ERR_UNSUPPORTED so the caller allocates
     * and calls again without the flag. */
    int (*mem_map)(struct tp *tp, void **addr, size_t len, unsigned flags, struct tp_mem **mem);
    int (*mem_unmap)(struct tp *tp, struct tp_mem *mem);
    int (*rkey_pack)(struct tp *tp, struct tp_mem *mem, void **buf, size_t *len);
    void (*rkey_buf_free)(struct tp *tp, void *buf);

    /* One-sided read of len bytes at remote_addr (within a region whose packed rkey is
     * rkey/rkey_len, cached by the transport per peer) into local (within local_mem). */
    int (*get)(struct tp *tp, uint32_t rank, void *local, struct tp_mem *local_mem,
               uint64_t remote_addr, const void *rkey, size_t rkey_len, size_t len,
               tp_get_cb_t cb, void *cb_arg);
};

/* Find a transport by name ("local", "ucx", "verbs"); NULL if not built in. */
const struct tp_ops *tp_find(const char *name);
/* Comma-separated names of the transports built in (static string). */
const char *tp_names(void);

#endif /* DEED_TRANSPORT_H */
