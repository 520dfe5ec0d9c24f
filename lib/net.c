/*
 * net.c — per-destination batching and dispatch of messages between ranks (see net.h).
 */
#include "net.h"

#include <stdlib.h>

#include "log.h"
#include "rt.h"
#include "transport.h"

int net_init(struct rt *rt)
{
    rt->peers = calloc(rt->nranks, sizeof(*rt->peers));
    rt->net_dirty = calloc(rt->nranks, sizeof(*rt->net_dirty));
    if (rt->peers == NULL || rt->net_dirty == NULL)
        return DEED_ERR_NO_MEMORY;
    for (uint32_t i = 0; i < rt->nranks; i++) {
        wbuf_init(&rt->peers[i].out);
        /* until a peer says otherwise, assume it is like this rank: all slots free */
        rt->peers[i].load_free = (uint16_t)(rt->cfg.num_workers ? rt->cfg.num_workers : 1);
    }
    rt->net_ndirty = 0;
    return DEED_OK;
}

void net_fini(struct rt *rt)
{
    if (rt->peers)
        for (uint32_t i = 0; i < rt->nranks; i++)
            wbuf_free(&rt->peers[i].out);
    free(rt->peers);
    free(rt->net_dirty);
    rt->peers = NULL;
    rt->net_dirty = NULL;
}

struct wbuf *net_msg(struct rt *rt, uint32_t dst, uint16_t type)
{
    struct peer *p = &rt->peers[dst];
    if (!p->dirty) {
        wire_batch_begin(&p->out, rt->rank, 0);
        p->dirty = 1;
        rt->net_dirty[rt->net_ndirty++] = dst;
    }
    wire_msg_begin(&p->out, type);
    return &p->out;
}

void net_msg_end(struct rt *rt, uint32_t dst)
{
    wire_msg_end(&rt->peers[dst].out);
}

void net_flush(struct rt *rt)
{
    if (rt->net_ndirty == 0)
        return;
    /* piggybacked load: tasks queued or running here, and worker slots */
    uint32_t queued = (uint32_t)rt->local_load;
    uint16_t slots = (uint16_t)lease_free_slots(rt);
    for (uint32_t i = 0; i < rt->net_ndirty; i++) {
        uint32_t dst = rt->net_dirty[i];
        struct peer *p = &rt->peers[dst];
        p->dirty = 0;
        wire_batch_end(&p->out, queued, slots);
        if (p->out.oom) {
            log_error("net: out of memory building a batch for rank %u; %u messages lost", dst,
                      p->out.count);
        } else if (p->dead) {
            log_debug("net: dropping %u messages to dead rank %u", p->out.count, dst);
        } else {
            struct iovec iov = {p->out.data, p->out.len};
            int rc = rt->tp_ops->am_send(rt->tp, dst, &iov, 1);
            member_sent(rt, dst);
            if (rc != DEED_OK)
                log_warn("net: sending %u messages to rank %u failed: %s", p->out.count, dst,
                         deed_strerror(rc));
            rt->st.batches_sent++;
        }
        wbuf_reset(&p->out);
        /* keep small buffers, release big ones */
        if (p->out.cap > (1u << 20)) {
            wbuf_free(&p->out);
            wbuf_init(&p->out);
        }
    }
    rt->net_ndirty = 0;
    atomic_store_explicit(&rt->net_deferred, 0, memory_order_relaxed);
}

void net_on_am(void *arg, uint32_t src, const void *data, size_t len)
{
    struct rt *rt = arg;
    struct rbuf r, body;
    struct wire_batch_hdr h;
    uint16_t type;
    int rc;

    if (wire_batch_open(&r, data, len, &h) != 0 || h.src != src || src >= rt->nranks ||
        src == rt->rank) {
        rt->st.msgs_dropped++;
        log_warn("net: dropping a malformed batch of %zu bytes from rank %u", len, src);
        return;
    }
    struct peer *p = &rt->peers[src];
    if (p->dead) {
        rt->st.msgs_dropped++;
        return; /* fencing: a rank declared dead is not heard any more */
    }
    p->load_queued = h.load_queued;
    p->load_free = h.load_free;
    member_heard(rt, src);
    unsigned seen = 0;
    while ((rc = wire_batch_next(&r, &type, &body)) == 1) {
        seen++;
        if (type == 0 || type >= WT_TYPE_MAX || remote_dispatch(rt, src, type, &body) != 0) {
            rt->st.msgs_dropped++;
            log_warn("net: dropping a malformed message (type %u, %zu bytes) from rank %u",
                     type, rbuf_left(&body), src);
        }
    }
    if (rc < 0 || seen != h.count) {
        rt->st.msgs_dropped++;
        log_warn("net: batch from rank %u is truncated (%u of %u messages)", src, seen,
                 h.count);
    }
}
