/*
 * verbs.c — the "verbs" transport (see verbs.h) on libibverbs + librdmacm. Owns the device
 * context's protection domain, one completion queue with its completion channel, one shared
 * receive queue (SRQ) with its registered receive buffers, a pool of registered send slots,
 * one RC queue pair and rdma_cm id per peer, the rdma_cm listener, the registered regions
 * and the gets in flight.
 *
 * Device. verbs_dev.c picks device, port and GID (DEED_VERBS_DEVICE, DEED_VERBS_PORT,
 * DEED_VERBS_GID_INDEX, DEED_VERBS_ADDR) and so an IPv4 address; the listener is bound to it
 * on an ephemeral port. The address blob is {magic, rank, IPv4, port}. Without a device
 * init fails with "no RDMA device: ..." (DEED_ERR_TRANSPORT).
 *
 * Connections. The lower rank of each pair connects (rdma_resolve_addr/route, rdma_connect)
 * and the higher one accepts; private data carries {magic, rank, credits granted}. connect()
 * blocks until that peer is ESTABLISHED (or VERBS_CONNECT_TIMEOUT_S passes), serving every
 * CM event meanwhile, so the ranks' connect loops cannot deadlock: rank 0 only connects, and
 * every rank accepts whatever arrives while it waits. An active connect that fails
 * (REJECTED, UNREACHABLE, ...) during setup is retried after a pause.
 *
 * Messages. A header {src, total, len, credits, flags} and up to frag_max payload bytes per
 * SEND, copied into a registered send slot (IBV_SEND_INLINE when the QP takes that much
 * inline data: DEED_VERBS_INLINE, default 64). Larger messages are cut into fragments and
 * put together by the receiver (RC keeps a QP's order). Receives come from one SRQ holding
 * credits * (nranks-1) + CREDIT_RESERVE * (nranks-1) buffers. Flow control: every peer may
 * have at most `credits` (DEED_VERBS_CREDITS, default 32, fewer when the SRQ or CQ limits
 * of the device demand it) unreturned fragments in this rank's SRQ; the receiver returns
 * credits in the header of every SEND it makes to that peer, and in a credit-only SEND (which
 * costs no credit: at most two can be outstanding per peer, hence the reserve) once half of
 * them are owed. A peer's output that is out of credits, send slots or send-queue entries is
 * queued (copied) in order and flushed by progress(); RNR retries are infinite as a last
 * guard. Per-peer order is kept: once something is queued, later messages queue behind it.
 *
 * Gets. RDMA READ from the packed {rkey, addr, len} of a region registered once by mem_map
 * (with TP_MEM_ALLOCATE the region is mmap'd here). Reads are cut into chunks of at most
 * the port's max_msg_sz (and READ_CHUNK_MAX) and complete when the last chunk does. The
 * target takes no part: TP_CAP_RMA_NATIVE.
 *
 * Events. event_fd() is an epoll fd holding the completion channel fd and the rdma_cm event
 * channel fd (both non-blocking). arm() requests a CQ notification and then polls the CQ
 * once; completions found are kept for the next progress() (returns 1).
 *
 * Failures. RDMA_CM_EVENT_DISCONNECTED / DEVICE_REMOVAL and error completions on a peer's
 * QP mark the peer dead: the QP is disconnected (moved to the error state, so what was
 * posted flushes), queued output is dropped, gets to the peer complete with
 * DEED_ERR_TRANSPORT, and progress() calls failure_cb once. Later sends and gets to the peer
 * return DEED_ERR_TRANSPORT. A killed process's rdma_cm ids are destroyed by the kernel,
 * which sends a disconnect request: the survivors see DISCONNECTED at once. A peer that
 * finalizes normally disconnects too, which is also reported (as the ucx transport does
 * over tcp), but it says goodbye first (a credit-only SEND flagged BYE, after its output
 * drained), so that its end is logged as such and not as "unreachable".
 *
 * Callbacks (am_cb, get callbacks, failure_cb) run only from progress() (or from get() for a
 * zero-length read). They may call am_send, get, rkey_pack, mem_map, but not progress
 * (it returns 0 when re-entered) nor fini.
 */
#include "verbs.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "deed.h"
#include "log.h"
#include "verbs_dev.h"

#define VERBS_MAGIC 0x64566264u /* "dbVd" */
#define RKEY_MAGIC 0x6b567264u
#define RBUF_SIZE 16384u /* one receive buffer / send slot */
#define CREDITS_DEFAULT 32
#define CREDIT_RESERVE 4 /* SRQ buffers per peer for credit-only messages */
#define SRQ_MAX 16384u   /* receive buffers, at most */
#define SQ_DEPTH 128u    /* send-queue entries per QP (SENDs and READs) */
#define SEND_SLOTS 256u
#define INLINE_DEFAULT 64
#define READ_CHUNK_MAX (8u << 20)
#define CQ_BATCH 32
#define PROGRESS_MAX_WC 512
#define STASH_MAX 16
#define VERBS_CONNECT_TIMEOUT_S 120
#define RESOLVE_TIMEOUT_MS 5000
#define RETRY_PAUSE_MS 200
#define FINI_TIMEOUT_NS (3000000000ull)

enum { F_FIRST = 1, F_LAST = 2, F_CREDIT = 4, F_BYE = 8 }; /* BYE: with CREDIT, sent at fini */
enum { WR_RECV = 1, WR_SEND, WR_READ };
enum { P_IDLE, P_CONNECTING, P_RETRY, P_UP, P_DEAD };

struct vhdr {
    uint32_t src;
    uint32_t total;   /* message length (in every fragment) */
    uint32_t len;     /* payload bytes in this fragment */
    uint16_t credits; /* receive buffers returned to the destination */
    uint16_t flags;
};
#define HDR ((uint32_t)sizeof(struct vhdr))
#define FRAG_MAX (RBUF_SIZE - HDR)

struct addr_blob {
    uint32_t magic;
    uint32_t rank;
    uint32_t ip;   /* network order */
    uint16_t port; /* network order */
    uint16_t pad;
};

struct conn_priv {
    uint32_t magic;
    uint32_t rank;
    uint32_t credits;
};

struct rkey_blob {
    uint32_t magic;
    uint32_t rkey;
    uint64_t addr;
    uint64_t len;
};

struct rbuf {
    int kind; /* WR_RECV; first member of every wr_id context */
    uint32_t idx;
};

struct sslot {
    int kind; /* WR_SEND */
    uint32_t idx;
    uint32_t peer;
    struct sslot *next_free;
};

struct get_op {
    int kind;            /* WR_READ */
    struct get_op *next; /* in the peer's queue */
    struct get_op *live_prev, *live_next;
    uint32_t peer;
    int queued; /* in the peer's queue (not fully posted) */
    int status;
    char *local;
    uint32_t lkey, rkey;
    uint64_t raddr;
    size_t len, posted;
    unsigned chunks_out;
    struct ibv_mr *tmp_mr; /* destination outside any mapped region */
    tp_get_cb_t cb;
    void *arg;
};

struct out_msg {
    struct out_msg *next;
    uint32_t total, nfrags, next_frag;
    size_t base; /* message offset of data[0] */
    unsigned char data[];
};

struct peer {
    uint32_t rank;
    int state;
    int active; /* this rank connects (rank < peer) */
    int bye;    /* the peer said goodbye (it is finalizing): its disconnect is no death */
    int on_pend, on_fail;
    struct peer *pend_next, *fail_next;
    struct rdma_cm_id *id;
    struct ibv_qp *qp;
    uint32_t max_inline;
    struct sockaddr_in addr;
    int have_addr;
    uint64_t retry_at;
    unsigned retries;
    int credits; /* SENDs we may still make */
    int ret;     /* buffers we owe back */
    unsigned sq_used;
    struct out_msg *out_head, *out_tail;
    struct get_op *gq_head, *gq_tail;
    unsigned char *rx;
    size_t rx_len, rx_total;
};

struct tp_mem {
    struct ibv_mr *mr;
    void *addr;
    size_t len;
    int allocated;
    struct tp_mem *prev, *next;
};

struct qpn_ent {
    uint32_t qpn;
    uint32_t rank; /* QPN_EMPTY / QPN_GONE */
};
#define QPN_EMPTY UINT32_MAX
#define QPN_GONE (UINT32_MAX - 1)

struct tp {
    struct tp_params params;
    struct ibv_context **devs;
    struct verbs_dev_choice dev;
    struct ibv_device_attr da;
    uint32_t max_msg;
    struct rdma_event_channel *ec;
    struct rdma_cm_id *listen_id;
    struct ibv_pd *pd;
    struct ibv_comp_channel *ch;
    struct ibv_cq *cq;
    struct ibv_srq *srq;
    unsigned cq_unacked;
    unsigned char *rmem, *smem;
    struct ibv_mr *rmr, *smr;
    struct rbuf *rbufs;
    struct sslot *slots, *free_slots;
    uint32_t srq_depth, credits, sq_depth, inline_want;
    int epfd;
    struct addr_blob blob;
    struct peer *peers;
    struct qpn_ent *qpn;
    uint32_t qpn_cap;
    struct peer *pend, *fail;
    struct get_op *live;
    struct tp_mem *regions;
    struct ibv_wc stash[STASH_MAX];
    int nstash;
    int events, in_progress, finalizing;
    struct tp_verbs_stats st;
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* DEED_VERBS_<name> as an integer in [lo, hi], else def; -1 (logged) when malformed. */
static long env_long(const char *var, long def, long lo, long hi)
{
    const char *s = getenv(var);
    char *end;
    long v;

    if (!s || !*s)
        return def;
    v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        log_error("verbs transport: %s='%s' is invalid (allowed: an integer %ld..%ld)", var, s, lo,
                  hi);
        return -1;
    }
    return v;
}

/* ---- QP number -> peer ------------------------------------------------------------------ */

static uint32_t qpn_slot(struct tp *tp, uint32_t qpn)
{
    return (qpn * 2654435761u) & (tp->qpn_cap - 1);
}

static void qpn_add(struct tp *tp, uint32_t qpn, uint32_t rank)
{
    uint32_t i = qpn_slot(tp, qpn);

    while (tp->qpn[i].rank != QPN_EMPTY && tp->qpn[i].rank != QPN_GONE)
        i = (i + 1) & (tp->qpn_cap - 1);
    tp->qpn[i].qpn = qpn;
    tp->qpn[i].rank = rank;
}

static struct peer *qpn_find(struct tp *tp, uint32_t qpn)
{
    for (uint32_t i = qpn_slot(tp, qpn), n = 0; n < tp->qpn_cap;
         i = (i + 1) & (tp->qpn_cap - 1), n++) {
        if (tp->qpn[i].rank == QPN_EMPTY)
            return NULL;
        if (tp->qpn[i].rank != QPN_GONE && tp->qpn[i].qpn == qpn)
            return &tp->peers[tp->qpn[i].rank];
    }
    return NULL;
}

static void qpn_del(struct tp *tp, uint32_t qpn)
{
    for (uint32_t i = qpn_slot(tp, qpn), n = 0; n < tp->qpn_cap;
         i = (i + 1) & (tp->qpn_cap - 1), n++) {
        if (tp->qpn[i].rank == QPN_EMPTY)
            return;
        if (tp->qpn[i].rank != QPN_GONE && tp->qpn[i].qpn == qpn) {
            tp->qpn[i].rank = QPN_GONE;
            return;
        }
    }
}

/* ---- peer bookkeeping ------------------------------------------------------------------- */

static void mark_pending(struct tp *tp, struct peer *p)
{
    if (!p->on_pend) {
        p->on_pend = 1;
        p->pend_next = tp->pend;
        tp->pend = p;
    }
}

/* The peer is gone: its QP goes to the error state so that posted work flushes; progress()
 * reports it. */
static void mark_failed(struct tp *tp, struct peer *p, const char *why)
{
    if (p->state == P_DEAD)
        return;
    p->state = P_DEAD;
    if (!tp->finalizing)
        log_debug("verbs transport: rank %u failed: %s", p->rank, why);
    if (p->id && p->qp)
        rdma_disconnect(p->id); /* QP -> error; sends a DREQ if still connected */
    if (!p->on_fail) {
        p->on_fail = 1;
        p->fail_next = tp->fail;
        tp->fail = p;
    }
}

/* Destroys the QP and id of a peer whose connection attempt failed (no work was posted). */
static void peer_teardown(struct tp *tp, struct peer *p)
{
    if (p->qp) {
        qpn_del(tp, p->qp->qp_num);
        rdma_destroy_qp(p->id);
        p->qp = NULL;
    }
    if (p->id) {
        rdma_destroy_id(p->id);
        p->id = NULL;
    }
}

/* ---- receive buffers and send slots ----------------------------------------------------- */

static int post_recv(struct tp *tp, struct rbuf *b)
{
    struct ibv_sge sge = {.addr = (uintptr_t)(tp->rmem + (size_t)b->idx * RBUF_SIZE),
                          .length = RBUF_SIZE,
                          .lkey = tp->rmr->lkey};
    struct ibv_recv_wr wr = {.wr_id = (uintptr_t)b, .sg_list = &sge, .num_sge = 1}, *bad;
    int e = ibv_post_srq_recv(tp->srq, &wr, &bad);

    if (e)
        log_error("verbs transport: reposting a receive buffer failed: %s", strerror(e));
    return e;
}

/* Copies bytes [off, off+n) of the iov list to dst. */
static void iov_copy(unsigned char *dst, const struct iovec *iov, int iovcnt, size_t off, size_t n)
{
    for (int i = 0; i < iovcnt && n; i++) {
        size_t l = iov[i].iov_len;

        if (off >= l) {
            off -= l;
            continue;
        }
        size_t c = l - off < n ? l - off : n;
        memcpy(dst, (const char *)iov[i].iov_base + off, c);
        dst += c;
        n -= c;
        off = 0;
    }
}

static int can_send(struct tp *tp, struct peer *p, int credit_only)
{
    return tp->free_slots && p->sq_used < tp->sq_depth && (credit_only || p->credits > 0);
}

/* Posts one SEND to p: fragment `frag` of a `total`-byte message whose bytes from message
 * offset `base` are in iov (flags F_CREDIT: no payload). The caller checked can_send. */
static int post_frag(struct tp *tp, struct peer *p, const struct iovec *iov, int iovcnt,
                     size_t base, uint32_t total, uint32_t frag, int flags)
{
    struct sslot *s = tp->free_slots;
    unsigned char *buf = tp->smem + (size_t)s->idx * RBUF_SIZE;
    size_t off = (size_t)frag * FRAG_MAX;
    uint32_t n = 0;
    struct vhdr h;
    struct ibv_sge sge;
    struct ibv_send_wr wr, *bad;
    int e;

    if (!(flags & F_CREDIT)) {
        n = total - off < FRAG_MAX ? (uint32_t)(total - off) : FRAG_MAX;
        flags |= (frag == 0 ? F_FIRST : 0) | (off + n == total ? F_LAST : 0);
        iov_copy(buf + HDR, iov, iovcnt, off - base, n);
    }
    h.src = tp->params.rank;
    h.total = total;
    h.len = n;
    h.credits = (uint16_t)(p->ret > 0xffff ? 0xffff : p->ret);
    h.flags = (uint16_t)flags;
    memcpy(buf, &h, HDR);
    sge.addr = (uintptr_t)buf;
    sge.length = HDR + n;
    sge.lkey = tp->smr->lkey;
    memset(&wr, 0, sizeof(wr));
    wr.wr_id = (uintptr_t)s;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED | (sge.length <= p->max_inline ? IBV_SEND_INLINE : 0);
    e = ibv_post_send(p->qp, &wr, &bad);
    if (e) {
        log_error("verbs transport: posting a SEND to rank %u failed: %s", p->rank, strerror(e));
        mark_failed(tp, p, "ibv_post_send failed");
        return DEED_ERR_TRANSPORT;
    }
    tp->free_slots = s->next_free;
    s->peer = p->rank;
    p->ret -= h.credits;
    p->sq_used++;
    if (flags & F_CREDIT) {
        tp->st.credit_msgs++;
    } else {
        p->credits--;
        tp->st.frags_sent++;
    }
    return DEED_OK;
}

/* Sends fragments *frag.. of a message while resources last: 1 = all sent, 0 = blocked. */
static int send_frags(struct tp *tp, struct peer *p, const struct iovec *iov, int iovcnt,
                      size_t base, uint32_t total, uint32_t nfrags, uint32_t *frag)
{
    while (*frag < nfrags) {
        int rc;

        if (!can_send(tp, p, 0)) {
            if (p->credits <= 0)
                tp->st.credit_stalls++;
            return 0;
        }
        if ((rc = post_frag(tp, p, iov, iovcnt, base, total, *frag, 0)) != DEED_OK)
            return rc;
        ++*frag;
    }
    return 1;
}

/* ---- gets ------------------------------------------------------------------------------- */

static void get_finish(struct tp *tp, struct get_op *op)
{
    if (op->live_prev)
        op->live_prev->live_next = op->live_next;
    else
        tp->live = op->live_next;
    if (op->live_next)
        op->live_next->live_prev = op->live_prev;
    if (op->tmp_mr)
        ibv_dereg_mr(op->tmp_mr);
    tp->events++;
    if (!tp->finalizing && op->cb)
        op->cb(op->arg, op->status);
    free(op);
}

/* Posts READ chunks of op while the send queue has room: 1 = fully posted. */
static int post_reads(struct tp *tp, struct peer *p, struct get_op *op)
{
    size_t chunk = tp->max_msg < READ_CHUNK_MAX ? tp->max_msg : READ_CHUNK_MAX;

    while (op->posted < op->len && p->sq_used < tp->sq_depth) {
        size_t n = op->len - op->posted < chunk ? op->len - op->posted : chunk;
        struct ibv_sge sge = {
            .addr = (uintptr_t)(op->local + op->posted), .length = (uint32_t)n, .lkey = op->lkey};
        struct ibv_send_wr wr, *bad;
        int e;

        memset(&wr, 0, sizeof(wr));
        wr.wr_id = (uintptr_t)op;
        wr.sg_list = &sge;
        wr.num_sge = 1;
        wr.opcode = IBV_WR_RDMA_READ;
        wr.send_flags = IBV_SEND_SIGNALED;
        wr.wr.rdma.remote_addr = op->raddr + op->posted;
        wr.wr.rdma.rkey = op->rkey;
        e = ibv_post_send(p->qp, &wr, &bad);
        if (e) {
            log_error("verbs transport: posting an RDMA READ to rank %u failed: %s", p->rank,
                      strerror(e));
            op->status = DEED_ERR_TRANSPORT;
            mark_failed(tp, p, "ibv_post_send (READ) failed");
            return 1;
        }
        op->posted += n;
        op->chunks_out++;
        p->sq_used++;
        tp->st.read_wrs++;
    }
    return op->posted == op->len;
}

/* ---- flushing queued output ------------------------------------------------------------- */

static void flush_peer(struct tp *tp, struct peer *p)
{
    struct out_msg *m;
    struct get_op *op;

    while ((m = p->out_head)) {
        struct iovec iov = {.iov_base = m->data, .iov_len = m->total - m->base};

        if (send_frags(tp, p, &iov, 1, m->base, m->total, m->nfrags, &m->next_frag) != 1)
            break;
        p->out_head = m->next;
        if (!p->out_head)
            p->out_tail = NULL;
        free(m);
    }
    while ((op = p->gq_head)) {
        if (op->status == 0 && !post_reads(tp, p, op))
            break;
        p->gq_head = op->next;
        if (!p->gq_head)
            p->gq_tail = NULL;
        op->queued = 0;
        if (op->chunks_out == 0)
            get_finish(tp, op);
    }
    if (p->state == P_UP && p->ret >= (int)(tp->credits + 1) / 2 && can_send(tp, p, 1))
        post_frag(tp, p, NULL, 0, 0, 0, 0, F_CREDIT);
}

static void flush_pending(struct tp *tp)
{
    struct peer *list = tp->pend, *p;

    tp->pend = NULL;
    while ((p = list)) {
        list = p->pend_next;
        p->on_pend = 0;
        if (p->state != P_UP)
            continue;
        flush_peer(tp, p);
        if (p->out_head || p->gq_head || p->ret >= (int)(tp->credits + 1) / 2)
            mark_pending(tp, p);
    }
}

/* ---- failures --------------------------------------------------------------------------- */

static void handle_failures(struct tp *tp)
{
    struct peer *p;

    while ((p = tp->fail)) {
        struct get_op *op;

        tp->fail = p->fail_next;
        p->on_fail = 0;
        while (p->out_head) {
            struct out_msg *m = p->out_head;

            p->out_head = m->next;
            free(m);
        }
        p->out_tail = NULL;
        while ((op = p->gq_head)) {
            p->gq_head = op->next;
            op->queued = 0;
            op->status = DEED_ERR_TRANSPORT;
            if (op->chunks_out == 0)
                get_finish(tp, op);
        }
        p->gq_tail = NULL;
        free(p->rx);
        p->rx = NULL;
        tp->events++;
        tp->st.peers_failed++;
        if (!tp->finalizing) {
            if (p->bye)
                log_debug("verbs transport: rank %u finalized and disconnected", p->rank);
            else
                log_info("verbs transport: rank %u is unreachable (connection lost)", p->rank);
            if (tp->params.failure_cb)
                tp->params.failure_cb(tp->params.cb_arg, p->rank);
        }
    }
}

/* ---- completions ------------------------------------------------------------------------ */

static void deliver(struct tp *tp, uint32_t src, const void *data, size_t len)
{
    tp->events++;
    tp->st.am_recv++;
    if (tp->params.am_cb && !tp->finalizing)
        tp->params.am_cb(tp->params.cb_arg, src, data, len);
}

/* One received fragment from p in buffer b (byte_len bytes). */
static void on_recv(struct tp *tp, struct peer *p, struct rbuf *b, uint32_t byte_len)
{
    const unsigned char *buf = tp->rmem + (size_t)b->idx * RBUF_SIZE;
    struct vhdr h;

    if (byte_len < HDR) {
        log_error("verbs transport: dropped a %u-byte SEND from rank %u (no header)", byte_len,
                  p->rank);
        return;
    }
    memcpy(&h, buf, HDR);
    if (h.src != p->rank || h.len != byte_len - HDR || h.len > h.total ||
        (h.flags & ~(F_CREDIT | F_FIRST | F_LAST | F_BYE)) != 0) {
        log_error("verbs transport: dropped a malformed SEND on rank %u's connection (src %u, "
                  "len %u of %u, %u bytes)",
                  p->rank, h.src, h.len, h.total, byte_len);
        return;
    }
    p->credits += h.credits;
    if (h.credits)
        mark_pending(tp, p);
    if (h.flags & F_CREDIT) {
        p->bye |= (h.flags & F_BYE) != 0;
        return;
    }
    tp->st.frags_recv++;
    if ((h.flags & (F_FIRST | F_LAST)) == (F_FIRST | F_LAST)) {
        if (h.len == h.total)
            deliver(tp, p->rank, buf + HDR, h.len);
        return;
    }
    if (h.flags & F_FIRST) {
        free(p->rx);
        p->rx = malloc(h.total ? h.total : 1);
        p->rx_len = 0;
        p->rx_total = h.total;
        if (!p->rx)
            log_error("verbs transport: out of memory receiving a %u-byte message from rank %u "
                      "(dropped)",
                      h.total, p->rank);
    }
    if (!p->rx)
        return; /* dropping the rest of a message we had no room for */
    if (h.total != p->rx_total || p->rx_len + h.len > p->rx_total) {
        log_error("verbs transport: fragment out of order from rank %u (dropped)", p->rank);
        free(p->rx);
        p->rx = NULL;
        return;
    }
    memcpy(p->rx + p->rx_len, buf + HDR, h.len);
    p->rx_len += h.len;
    if (h.flags & F_LAST) {
        unsigned char *m = p->rx;

        p->rx = NULL;
        if (p->rx_len == p->rx_total)
            deliver(tp, p->rank, m, p->rx_len);
        free(m);
    }
}

static void on_wc(struct tp *tp, const struct ibv_wc *wc)
{
    int kind = *(int *)(uintptr_t)wc->wr_id;
    struct peer *p;

    if (kind == WR_RECV) {
        struct rbuf *b = (struct rbuf *)(uintptr_t)wc->wr_id;

        p = qpn_find(tp, wc->qp_num);
        if (wc->status != IBV_WC_SUCCESS) {
            if (p && !tp->finalizing)
                mark_failed(tp, p, ibv_wc_status_str(wc->status));
        } else if (!p) {
            log_error("verbs transport: dropped a SEND from an unknown QP %u", wc->qp_num);
        } else if (p->state == P_UP || p->state == P_CONNECTING) {
            struct vhdr h;

            memcpy(&h, tp->rmem + (size_t)b->idx * RBUF_SIZE, sizeof(h));
            on_recv(tp, p, b, wc->byte_len);
            if (!(h.flags & F_CREDIT) && wc->byte_len >= HDR) {
                p->ret++;
                if (p->ret >= (int)(tp->credits + 1) / 2)
                    mark_pending(tp, p);
            }
        }
        if (!(tp->finalizing && wc->status == IBV_WC_WR_FLUSH_ERR))
            post_recv(tp, b);
        return;
    }
    if (kind == WR_SEND) {
        struct sslot *s = (struct sslot *)(uintptr_t)wc->wr_id;

        p = &tp->peers[s->peer];
        s->next_free = tp->free_slots;
        tp->free_slots = s;
        p->sq_used--;
        if (wc->status != IBV_WC_SUCCESS) {
            if (wc->status != IBV_WC_WR_FLUSH_ERR && !tp->finalizing && p->state != P_DEAD)
                log_info("verbs transport: a SEND to rank %u failed: %s", p->rank,
                         ibv_wc_status_str(wc->status));
            mark_failed(tp, p, ibv_wc_status_str(wc->status));
        }
        return; /* peers whose output waits for a slot are on the pending list already */
    }
    if (kind == WR_READ) {
        struct get_op *op = (struct get_op *)(uintptr_t)wc->wr_id;

        p = &tp->peers[op->peer];
        p->sq_used--;
        op->chunks_out--;
        if (wc->status != IBV_WC_SUCCESS) {
            if (wc->status != IBV_WC_WR_FLUSH_ERR && !tp->finalizing && p->state != P_DEAD)
                log_info("verbs transport: an RDMA READ from rank %u failed: %s", p->rank,
                         ibv_wc_status_str(wc->status));
            op->status = DEED_ERR_TRANSPORT;
            mark_failed(tp, p, ibv_wc_status_str(wc->status));
        }
        if (!op->queued && op->chunks_out == 0)
            get_finish(tp, op);
        if (p->gq_head || p->out_head)
            mark_pending(tp, p);
        return;
    }
    log_error("verbs transport: completion with an unknown context (opcode %d)", wc->opcode);
}

static void cq_drain(struct tp *tp, int max)
{
    struct ibv_cq *cq;
    struct ibv_wc wc[CQ_BATCH];
    void *cctx;
    int n, done = 0;

    while (ibv_get_cq_event(tp->ch, &cq, &cctx) == 0) {
        if (++tp->cq_unacked >= 64) {
            ibv_ack_cq_events(tp->cq, tp->cq_unacked);
            tp->cq_unacked = 0;
        }
    }
    for (int i = 0; i < tp->nstash; i++)
        on_wc(tp, &tp->stash[i]);
    done = tp->nstash;
    tp->nstash = 0;
    while (done < max && (n = ibv_poll_cq(tp->cq, CQ_BATCH, wc)) > 0) {
        for (int i = 0; i < n; i++)
            on_wc(tp, &wc[i]);
        done += n;
    }
    tp->events += done;
}

/* ---- connection management -------------------------------------------------------------- */

static void conn_param(struct tp *tp, struct rdma_conn_param *cp, struct conn_priv *priv)
{
    priv->magic = VERBS_MAGIC;
    priv->rank = tp->params.rank;
    priv->credits = tp->credits;
    memset(cp, 0, sizeof(*cp));
    cp->private_data = priv;
    cp->private_data_len = sizeof(*priv);
    cp->responder_resources = (uint8_t)(tp->da.max_qp_rd_atom < 16 ? tp->da.max_qp_rd_atom : 16);
    cp->initiator_depth =
        (uint8_t)(tp->da.max_qp_init_rd_atom < 16 ? tp->da.max_qp_init_rd_atom : 16);
    cp->retry_count = 7;
    cp->rnr_retry_count = 7; /* infinite: a receiver short of buffers slows the sender down */
    cp->srq = 1;
}

static int make_qp(struct tp *tp, struct peer *p, struct rdma_cm_id *id)
{
    struct ibv_qp_init_attr qa;

    memset(&qa, 0, sizeof(qa));
    qa.send_cq = tp->cq;
    qa.recv_cq = tp->cq;
    qa.srq = tp->srq;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = tp->sq_depth;
    qa.cap.max_send_sge = 1;
    qa.cap.max_inline_data = tp->inline_want;
    if (rdma_create_qp(id, tp->pd, &qa) != 0) {
        qa.cap.max_inline_data = 0; /* the device may take less inline data: go without */
        if (!tp->inline_want || rdma_create_qp(id, tp->pd, &qa) != 0) {
            log_error("verbs transport: creating the QP for rank %u failed: %s", p->rank,
                      strerror(errno));
            return DEED_ERR_TRANSPORT;
        }
    }
    p->id = id;
    p->qp = id->qp;
    p->max_inline = qa.cap.max_inline_data;
    tp->st.max_inline = p->max_inline;
    p->sq_used = 0;
    p->ret = 0;
    qpn_add(tp, p->qp->qp_num, p->rank);
    id->context = p;
    return DEED_OK;
}

static int start_active(struct tp *tp, struct peer *p)
{
    struct sockaddr_in src = tp->dev.addr;

    src.sin_port = 0;
    if (rdma_create_id(tp->ec, &p->id, p, RDMA_PS_TCP) != 0) {
        log_error("verbs transport: rdma_create_id failed: %s", strerror(errno));
        p->id = NULL;
        return DEED_ERR_TRANSPORT;
    }
    if (rdma_resolve_addr(p->id, (struct sockaddr *)&src, (struct sockaddr *)&p->addr,
                          RESOLVE_TIMEOUT_MS) != 0) {
        log_error("verbs transport: resolving the address of rank %u failed: %s", p->rank,
                  strerror(errno));
        rdma_destroy_id(p->id);
        p->id = NULL;
        return DEED_ERR_TRANSPORT;
    }
    p->state = P_CONNECTING;
    return DEED_OK;
}

/* A connection attempt to/from p failed during setup: retry (active side) or wait for the
 * peer to retry (passive side). The event was acked already. */
static void setup_failed(struct tp *tp, struct peer *p, const char *what)
{
    peer_teardown(tp, p);
    if (p->active) {
        p->retries++;
        p->state = P_RETRY;
        p->retry_at = now_ns() + RETRY_PAUSE_MS * 1000000ull * (p->retries < 10 ? p->retries : 10);
        log_debug("verbs transport: connecting to rank %u: %s; retrying", p->rank, what);
    } else {
        p->state = P_IDLE;
        log_debug("verbs transport: rank %u's connection attempt: %s", p->rank, what);
    }
}

static void on_connect_request(struct tp *tp, struct rdma_cm_id *id,
                               const struct rdma_conn_param *req)
{
    struct conn_priv in, out;
    struct rdma_conn_param cp;
    struct peer *p;

    memset(&in, 0, sizeof(in));
    if (req->private_data && req->private_data_len >= sizeof(in))
        memcpy(&in, req->private_data, sizeof(in));
    if (in.magic != VERBS_MAGIC || in.rank >= tp->params.rank || in.credits == 0) {
        log_warn("verbs transport: rejected a connection request (not from a lower rank of "
                 "this job: magic %#x, rank %u)",
                 in.magic, in.rank);
        rdma_reject(id, NULL, 0);
        rdma_destroy_id(id);
        return;
    }
    p = &tp->peers[in.rank];
    if (p->state == P_UP || p->state == P_DEAD) {
        log_warn("verbs transport: rejected a second connection request from rank %u", in.rank);
        rdma_reject(id, NULL, 0);
        rdma_destroy_id(id);
        return;
    }
    peer_teardown(tp, p); /* an earlier attempt of the same peer */
    if (make_qp(tp, p, id) != DEED_OK) {
        rdma_reject(id, NULL, 0);
        rdma_destroy_id(id);
        p->id = NULL;
        return;
    }
    p->credits = (int)in.credits;
    conn_param(tp, &cp, &out);
    if (rdma_accept(id, &cp) != 0) {
        log_warn("verbs transport: accepting rank %u failed: %s", in.rank, strerror(errno));
        peer_teardown(tp, p);
        p->state = P_IDLE;
        return;
    }
    p->state = P_CONNECTING;
}

static void on_cm_event(struct tp *tp, struct rdma_cm_event *ev)
{
    enum rdma_cm_event_type type = ev->event;
    struct rdma_cm_id *id = ev->id;
    struct peer *p = id->context;
    struct rdma_conn_param cparam = ev->param.conn;
    struct conn_priv priv;

    tp->events++;
    if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
        /* private data lives in the event: copy it before the ack */
        unsigned char pd[64];
        uint8_t n = cparam.private_data_len < sizeof(pd) ? cparam.private_data_len : sizeof(pd);

        if (cparam.private_data)
            memcpy(pd, cparam.private_data, n);
        cparam.private_data = pd;
        cparam.private_data_len = n;
        rdma_ack_cm_event(ev);
        on_connect_request(tp, id, &cparam);
        return;
    }
    memset(&priv, 0, sizeof(priv));
    if (type == RDMA_CM_EVENT_ESTABLISHED && cparam.private_data &&
        cparam.private_data_len >= sizeof(priv))
        memcpy(&priv, cparam.private_data, sizeof(priv));
    rdma_ack_cm_event(ev);
    if (!p || p->id != id)
        return; /* the listener, or an id torn down since */

    switch (type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        if (rdma_resolve_route(id, RESOLVE_TIMEOUT_MS) != 0)
            setup_failed(tp, p, "rdma_resolve_route failed");
        break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED: {
        struct rdma_conn_param cp;
        struct conn_priv out;

        if (make_qp(tp, p, id) != DEED_OK) {
            setup_failed(tp, p, "creating the QP failed");
            break;
        }
        conn_param(tp, &cp, &out);
        if (rdma_connect(id, &cp) != 0)
            setup_failed(tp, p, "rdma_connect failed");
        break;
    }
    case RDMA_CM_EVENT_ESTABLISHED:
        if (p->state != P_CONNECTING)
            break;
        if (p->active) {
            if (priv.magic != VERBS_MAGIC || priv.rank != p->rank || priv.credits == 0) {
                log_error("verbs transport: the peer at rank %u's address answered as rank %u "
                          "(magic %#x)",
                          p->rank, priv.rank, priv.magic);
                mark_failed(tp, p, "wrong peer");
                break;
            }
            p->credits = (int)priv.credits;
        }
        p->state = P_UP;
        log_debug("verbs transport: connected to rank %u (QP %u, %d credits)", p->rank,
                  p->qp->qp_num, p->credits);
        break;
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
    case RDMA_CM_EVENT_CONNECT_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_REJECTED:
        if (p->state == P_CONNECTING) {
            setup_failed(tp, p, rdma_event_str(type));
        } else if (p->state == P_UP) {
            mark_failed(tp, p, rdma_event_str(type));
        }
        break;
    case RDMA_CM_EVENT_DISCONNECTED:
        if (p->state == P_CONNECTING)
            setup_failed(tp, p, "disconnected during setup");
        else
            mark_failed(tp, p, "disconnected");
        break;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
        for (uint32_t r = 0; r < tp->params.nranks; r++) {
            if (r != tp->params.rank && tp->peers[r].id)
                mark_failed(tp, &tp->peers[r], "device removed");
        }
        break;
    default:
        break;
    }
}

static void cm_drain(struct tp *tp)
{
    struct rdma_cm_event *ev;

    while (rdma_get_cm_event(tp->ec, &ev) == 0)
        on_cm_event(tp, ev);
}

/* ---- ops -------------------------------------------------------------------------------- */

static void verbs_fini(struct tp *tp);

static int nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Sizes the SRQ, CQ and credits from the job size and the device's limits. */
static int size_queues(struct tp *tp, long credits)
{
    uint32_t npeers = tp->params.nranks - 1 ? tp->params.nranks - 1 : 1;
    uint32_t srq_max =
        (uint32_t)tp->da.max_srq_wr < SRQ_MAX ? (uint32_t)tp->da.max_srq_wr : SRQ_MAX;
    uint64_t cqe;

    if (srq_max == 0 || tp->da.max_srq == 0) {
        log_error("verbs transport: device %s has no shared receive queues", tp->dev.name);
        return DEED_ERR_UNSUPPORTED;
    }
    tp->credits = (uint32_t)credits;
    while (tp->credits > 2 && (uint64_t)npeers * (tp->credits + CREDIT_RESERVE) > srq_max)
        tp->credits /= 2;
    tp->srq_depth = npeers * (tp->credits + CREDIT_RESERVE);
    if (tp->srq_depth > srq_max) {
        log_error("verbs transport: %u ranks need %u receive buffers; device %s allows %u",
                  tp->params.nranks, tp->srq_depth, tp->dev.name, srq_max);
        return DEED_ERR_UNSUPPORTED;
    }
    tp->sq_depth = SQ_DEPTH < (uint32_t)tp->da.max_qp_wr ? SQ_DEPTH : (uint32_t)tp->da.max_qp_wr;
    cqe = tp->srq_depth + (uint64_t)npeers * tp->sq_depth + 16;
    while (cqe > (uint64_t)tp->da.max_cqe && tp->sq_depth > 8) {
        tp->sq_depth /= 2;
        cqe = tp->srq_depth + (uint64_t)npeers * tp->sq_depth + 16;
    }
    if (cqe > (uint64_t)tp->da.max_cqe) {
        log_error("verbs transport: %u ranks need a %llu-entry CQ; device %s allows %d",
                  tp->params.nranks, (unsigned long long)cqe, tp->dev.name, tp->da.max_cqe);
        return DEED_ERR_UNSUPPORTED;
    }
    return DEED_OK;
}

static int verbs_init(const struct tp_params *params, struct tp **out)
{
    struct ibv_port_attr pa;
    struct epoll_event ev = {.events = EPOLLIN};
    struct tp *tp;
    long credits, inl;
    int ndevs = 0, rc = DEED_ERR_TRANSPORT;
    uint32_t nslots = SEND_SLOTS;

    if (!params || !out) {
        log_error("verbs transport: init with a NULL argument");
        return DEED_ERR_INVALID_ARG;
    }
    if (params->nranks == 0 || params->rank >= params->nranks) {
        log_error("verbs transport: rank %u out of range in a %u-rank job", params->rank,
                  params->nranks);
        return DEED_ERR_INVALID_ARG;
    }
    credits = env_long("DEED_VERBS_CREDITS", CREDITS_DEFAULT, 2, 4096);
    inl = env_long("DEED_VERBS_INLINE", INLINE_DEFAULT, 0, 4096);
    if (credits < 0 || inl < 0)
        return DEED_ERR_CONFIG;
    tp = calloc(1, sizeof(*tp));
    if (!tp)
        return DEED_ERR_NO_MEMORY;
    tp->params = *params;
    tp->epfd = -1;
    tp->inline_want = (uint32_t)inl;
    tp->peers = calloc(params->nranks, sizeof(*tp->peers));
    for (tp->qpn_cap = 16; tp->qpn_cap < 4 * params->nranks; tp->qpn_cap *= 2)
        ;
    tp->qpn = malloc(tp->qpn_cap * sizeof(*tp->qpn));
    if (!tp->peers || !tp->qpn) {
        rc = DEED_ERR_NO_MEMORY;
        goto fail;
    }
    for (uint32_t i = 0; i < tp->qpn_cap; i++)
        tp->qpn[i].rank = QPN_EMPTY;
    for (uint32_t r = 0; r < params->nranks; r++) {
        tp->peers[r].rank = r;
        tp->peers[r].active = params->rank < r;
    }

    tp->devs = rdma_get_devices(&ndevs);
    if ((rc = verbs_dev_choose(tp->devs, tp->devs ? ndevs : 0, &tp->dev)) != DEED_OK)
        goto fail;
    rc = DEED_ERR_TRANSPORT;
    if (ibv_query_device(tp->dev.ctx, &tp->da) != 0 ||
        ibv_query_port(tp->dev.ctx, tp->dev.port, &pa) != 0) {
        log_error("verbs transport: querying %s failed: %s", tp->dev.name, strerror(errno));
        goto fail;
    }
    tp->max_msg = pa.max_msg_sz ? pa.max_msg_sz : (1u << 20);
    if ((rc = size_queues(tp, credits)) != DEED_OK)
        goto fail;
    rc = DEED_ERR_TRANSPORT;

    /* the listener: bound to the chosen address, ephemeral port */
    tp->ec = rdma_create_event_channel();
    if (!tp->ec || nonblock(tp->ec->fd) != 0) {
        log_error("verbs transport: creating the rdma_cm event channel failed: %s",
                  strerror(errno));
        goto fail;
    }
    if (rdma_create_id(tp->ec, &tp->listen_id, NULL, RDMA_PS_TCP) != 0) {
        log_error("verbs transport: rdma_create_id failed: %s", strerror(errno));
        tp->listen_id = NULL;
        goto fail;
    }
    if (rdma_bind_addr(tp->listen_id, (struct sockaddr *)&tp->dev.addr) != 0 ||
        rdma_listen(tp->listen_id, 128) != 0) {
        char ip[INET_ADDRSTRLEN];

        inet_ntop(AF_INET, &tp->dev.addr.sin_addr, ip, sizeof(ip));
        log_error("verbs transport: no RDMA device: rdma_cm cannot listen on %s (%s port %u): "
                  "%s",
                  ip, tp->dev.name, tp->dev.port, strerror(errno));
        goto fail;
    }
    if (tp->listen_id->verbs != tp->dev.ctx)
        log_warn("verbs transport: rdma_cm bound the address to device %s, not %s",
                 tp->listen_id->verbs ? ibv_get_device_name(tp->listen_id->verbs->device) : "?",
                 tp->dev.name);
    tp->dev.ctx = tp->listen_id->verbs ? tp->listen_id->verbs : tp->dev.ctx;
    tp->blob.magic = VERBS_MAGIC;
    tp->blob.rank = params->rank;
    tp->blob.ip = tp->dev.addr.sin_addr.s_addr;
    tp->blob.port = rdma_get_src_port(tp->listen_id);

    /* PD, completion channel + CQ, SRQ, buffers */
    tp->pd = ibv_alloc_pd(tp->dev.ctx);
    tp->ch = tp->pd ? ibv_create_comp_channel(tp->dev.ctx) : NULL;
    if (!tp->ch || nonblock(tp->ch->fd) != 0) {
        log_error("verbs transport: allocating a PD / completion channel on %s failed: %s",
                  tp->dev.name, strerror(errno));
        goto fail;
    }
    tp->cq = ibv_create_cq(
        tp->dev.ctx,
        (int)(tp->srq_depth + (params->nranks - 1 ? params->nranks - 1 : 1) * tp->sq_depth + 16),
        NULL, tp->ch, 0);
    struct ibv_srq_init_attr sa = {.attr = {.max_wr = tp->srq_depth, .max_sge = 1}};
    tp->srq = tp->cq ? ibv_create_srq(tp->pd, &sa) : NULL;
    if (!tp->srq) {
        log_error("verbs transport: creating the CQ / SRQ (%u buffers) on %s failed: %s",
                  tp->srq_depth, tp->dev.name, strerror(errno));
        goto fail;
    }
    tp->rmem = mmap(NULL, (size_t)tp->srq_depth * RBUF_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    tp->smem = mmap(NULL, (size_t)nslots * RBUF_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    tp->rbufs = calloc(tp->srq_depth, sizeof(*tp->rbufs));
    tp->slots = calloc(nslots, sizeof(*tp->slots));
    if (tp->rmem == MAP_FAILED || tp->smem == MAP_FAILED || !tp->rbufs || !tp->slots) {
        rc = DEED_ERR_NO_MEMORY;
        goto fail;
    }
    tp->rmr =
        ibv_reg_mr(tp->pd, tp->rmem, (size_t)tp->srq_depth * RBUF_SIZE, IBV_ACCESS_LOCAL_WRITE);
    tp->smr = ibv_reg_mr(tp->pd, tp->smem, (size_t)nslots * RBUF_SIZE, IBV_ACCESS_LOCAL_WRITE);
    if (!tp->rmr || !tp->smr) {
        log_error("verbs transport: registering the message buffers failed: %s", strerror(errno));
        goto fail;
    }
    for (uint32_t i = 0; i < tp->srq_depth; i++) {
        tp->rbufs[i].kind = WR_RECV;
        tp->rbufs[i].idx = i;
        if (post_recv(tp, &tp->rbufs[i]) != 0)
            goto fail;
    }
    for (uint32_t i = nslots; i-- > 0;) {
        tp->slots[i].kind = WR_SEND;
        tp->slots[i].idx = i;
        tp->slots[i].next_free = tp->free_slots;
        tp->free_slots = &tp->slots[i];
    }
    tp->epfd = epoll_create1(EPOLL_CLOEXEC);
    ev.data.fd = tp->ch->fd;
    if (tp->epfd < 0 || epoll_ctl(tp->epfd, EPOLL_CTL_ADD, tp->ch->fd, &ev) != 0) {
        log_error("verbs transport: epoll setup failed: %s", strerror(errno));
        goto fail;
    }
    ev.data.fd = tp->ec->fd;
    if (epoll_ctl(tp->epfd, EPOLL_CTL_ADD, tp->ec->fd, &ev) != 0) {
        log_error("verbs transport: epoll setup failed: %s", strerror(errno));
        goto fail;
    }
    snprintf(tp->st.device, sizeof(tp->st.device), "%s", tp->dev.name);
    tp->st.port = tp->dev.port;
    tp->st.gid_index = tp->dev.gid_index;
    tp->st.credits = tp->credits;
    tp->st.srq_depth = tp->srq_depth;
    tp->st.frag_max = FRAG_MAX;
    {
        char ip[INET_ADDRSTRLEN];

        inet_ntop(AF_INET, &tp->dev.addr.sin_addr, ip, sizeof(ip));
        log_debug("verbs transport: rank %u of %u on %s port %u gid %d, %s:%u, %u credits x "
                  "%u peers, SRQ %u, SQ %u",
                  params->rank, params->nranks, tp->dev.name, tp->dev.port, tp->dev.gid_index, ip,
                  ntohs(tp->blob.port), tp->credits, params->nranks - 1, tp->srq_depth,
                  tp->sq_depth);
    }
    *out = tp;
    return DEED_OK;

fail:
    verbs_fini(tp);
    return rc;
}

static int quiet(struct tp *tp)
{
    for (uint32_t r = 0; r < tp->params.nranks; r++) {
        struct peer *p = &tp->peers[r];

        if (p->state == P_UP && (p->out_head || p->gq_head || p->sq_used))
            return 0;
    }
    return 1;
}

static int verbs_progress(struct tp *tp);

static void verbs_fini(struct tp *tp)
{
    if (!tp)
        return;
    if (tp->cq && tp->peers) {
        uint64_t deadline = now_ns() + FINI_TIMEOUT_NS;

        /* let queued and posted messages reach the peers (no callbacks any more), then a
         * goodbye so that they can tell our disconnect from a death */
        tp->finalizing = 1;
        while (!quiet(tp) && now_ns() < deadline)
            verbs_progress(tp);
        for (uint32_t r = 0; r < tp->params.nranks; r++) {
            struct peer *p = &tp->peers[r];

            if (p->state == P_UP && can_send(tp, p, 1))
                post_frag(tp, p, NULL, 0, 0, 0, 0, F_CREDIT | F_BYE);
        }
        while (!quiet(tp) && now_ns() < deadline)
            verbs_progress(tp);
        if (!quiet(tp))
            log_warn("verbs transport: output still queued at fini (a peer not progressing?)");
    }
    tp->finalizing = 1;
    for (uint32_t r = 0; tp->peers && r < tp->params.nranks; r++) {
        struct peer *p = &tp->peers[r];

        if (p->id && p->qp && p->state == P_UP)
            rdma_disconnect(p->id);
        if (p->qp) {
            rdma_destroy_qp(p->id);
            p->qp = NULL;
        }
        if (p->id)
            rdma_destroy_id(p->id);
        p->id = NULL;
        while (p->out_head) {
            struct out_msg *m = p->out_head;

            p->out_head = m->next;
            free(m);
        }
        free(p->rx);
    }
    while (tp->live) {
        struct get_op *op = tp->live;

        tp->live = op->live_next;
        if (op->tmp_mr)
            ibv_dereg_mr(op->tmp_mr);
        free(op);
    }
    if (tp->listen_id)
        rdma_destroy_id(tp->listen_id);
    if (tp->srq)
        ibv_destroy_srq(tp->srq);
    if (tp->cq) {
        if (tp->cq_unacked)
            ibv_ack_cq_events(tp->cq, tp->cq_unacked);
        ibv_destroy_cq(tp->cq);
    }
    if (tp->ch)
        ibv_destroy_comp_channel(tp->ch);
    if (tp->rmr)
        ibv_dereg_mr(tp->rmr);
    if (tp->smr)
        ibv_dereg_mr(tp->smr);
    if (tp->rmem && tp->rmem != MAP_FAILED)
        munmap(tp->rmem, (size_t)tp->srq_depth * RBUF_SIZE);
    if (tp->smem && tp->smem != MAP_FAILED)
        munmap(tp->smem, (size_t)SEND_SLOTS * RBUF_SIZE);
    while (tp->regions) {
        struct tp_mem *m = tp->regions;

        log_debug("verbs transport: region %p+%zu still mapped at fini", m->addr, m->len);
        tp->regions = m->next;
        ibv_dereg_mr(m->mr);
        if (m->allocated)
            munmap(m->addr, m->len);
        free(m);
    }
    if (tp->pd)
        ibv_dealloc_pd(tp->pd);
    if (tp->ec)
        rdma_destroy_event_channel(tp->ec);
    if (tp->devs)
        rdma_free_devices(tp->devs);
    if (tp->epfd >= 0)
        close(tp->epfd);
    free(tp->rbufs);
    free(tp->slots);
    free(tp->qpn);
    free(tp->peers);
    free(tp);
}

static uint32_t verbs_caps(struct tp *tp)
{
    return TP_CAP_AM | TP_CAP_MEM_REG | TP_CAP_RMA_GET | TP_CAP_RMA_NATIVE | TP_CAP_PEER_FAILURE |
           TP_CAP_EVENT_FD | TP_CAP_MEM_ALLOC;
}

static size_t verbs_eager_limit(struct tp *tp)
{
    return FRAG_MAX;
}

static int verbs_address(struct tp *tp, const void **addr, size_t *len)
{
    if (!tp || !addr || !len)
        return DEED_ERR_INVALID_ARG;
    *addr = &tp->blob;
    *len = sizeof(tp->blob);
    return DEED_OK;
}

static int verbs_connect(struct tp *tp, uint32_t rank, const void *addr, size_t len)
{
    struct addr_blob b;
    struct peer *p;
    uint64_t deadline = now_ns() + VERBS_CONNECT_TIMEOUT_S * 1000000000ull;

    if (!tp || !addr || len != sizeof(b) || rank >= tp->params.nranks || rank == tp->params.rank) {
        log_error("verbs transport: connect to rank %u with a NULL or malformed address, or "
                  "out of range",
                  rank);
        return DEED_ERR_INVALID_ARG;
    }
    memcpy(&b, addr, sizeof(b));
    if (b.magic != VERBS_MAGIC || b.rank != rank) {
        log_error("verbs transport: the address given for rank %u is not a verbs address of "
                  "that rank (another transport on that rank?)",
                  rank);
        return DEED_ERR_INVALID_ARG;
    }
    p = &tp->peers[rank];
    if (p->have_addr) {
        log_error("verbs transport: rank %u is already connected", rank);
        return DEED_ERR_INVALID_ARG;
    }
    p->have_addr = 1;
    p->addr.sin_family = AF_INET;
    p->addr.sin_addr.s_addr = b.ip;
    p->addr.sin_port = b.port;
    if (p->active && start_active(tp, p) != DEED_OK)
        return DEED_ERR_TRANSPORT;
    /* serve every CM event until this peer is up */
    while (p->state != P_UP) {
        struct pollfd pf = {.fd = tp->ec->fd, .events = POLLIN};

        cm_drain(tp);
        if (p->state == P_UP)
            break;
        if (p->state == P_DEAD) {
            log_error("verbs transport: connecting to rank %u failed", rank);
            return DEED_ERR_TRANSPORT;
        }
        if (now_ns() > deadline) {
            log_error("verbs transport: no connection with rank %u after %d s", rank,
                      VERBS_CONNECT_TIMEOUT_S);
            return DEED_ERR_TRANSPORT;
        }
        if (p->state == P_RETRY && now_ns() >= p->retry_at && start_active(tp, p) != DEED_OK)
            return DEED_ERR_TRANSPORT;
        poll(&pf, 1, p->state == P_RETRY ? 10 : 100);
    }
    return DEED_OK; /* failures of other peers seen meanwhile are reported by progress() */
}

static int verbs_am_send(struct tp *tp, uint32_t rank, const struct iovec *iov, int iovcnt)
{
    struct peer *p;
    struct out_msg *m;
    size_t total = 0;
    uint32_t nfrags, frag = 0;
    int rc;

    if (!tp || rank >= tp->params.nranks || iovcnt < 0 || (iovcnt > 0 && !iov)) {
        log_error("verbs transport: am_send to rank %u: bad arguments", rank);
        return DEED_ERR_INVALID_ARG;
    }
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len && !iov[i].iov_base) {
            log_error("verbs transport: am_send with a NULL iov_base");
            return DEED_ERR_INVALID_ARG;
        }
        total += iov[i].iov_len;
    }
    if (total > UINT32_MAX - RBUF_SIZE) {
        log_error("verbs transport: a %zu-byte message is too large (4 GiB at most)", total);
        return DEED_ERR_INVALID_ARG;
    }
    p = &tp->peers[rank];
    if (p->state != P_UP) {
        if (p->state != P_DEAD)
            log_error("verbs transport: am_send to rank %u, which is not connected", rank);
        return DEED_ERR_TRANSPORT;
    }
    nfrags = total ? (uint32_t)((total + FRAG_MAX - 1) / FRAG_MAX) : 1;
    if (!p->out_head) {
        rc = send_frags(tp, p, iov, iovcnt, 0, (uint32_t)total, nfrags, &frag);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            tp->st.am_sent++;
            return DEED_OK;
        }
    }
    /* queue the rest, in order behind what is queued already */
    size_t base = (size_t)frag * FRAG_MAX;
    m = malloc(sizeof(*m) + (total - base));
    if (!m) {
        log_error("verbs transport: out of memory queueing a %zu-byte message", total);
        return DEED_ERR_NO_MEMORY;
    }
    m->next = NULL;
    m->total = (uint32_t)total;
    m->nfrags = nfrags;
    m->next_frag = frag;
    m->base = base;
    iov_copy(m->data, iov, iovcnt, base, total - base);
    if (p->out_tail)
        p->out_tail->next = m;
    else
        p->out_head = m;
    p->out_tail = m;
    mark_pending(tp, p);
    tp->st.am_sent++;
    return DEED_OK;
}

static int verbs_progress(struct tp *tp)
{
    if (!tp)
        return DEED_ERR_INVALID_ARG;
    if (tp->in_progress)
        return 0;
    tp->in_progress = 1;
    tp->events = 0;
    cm_drain(tp);
    cq_drain(tp, PROGRESS_MAX_WC);
    flush_pending(tp);
    handle_failures(tp);
    tp->in_progress = 0;
    return tp->events;
}

static int verbs_event_fd(struct tp *tp)
{
    return tp ? tp->epfd : -1;
}

static int verbs_arm(struct tp *tp)
{
    int n;

    if (!tp)
        return DEED_ERR_INVALID_ARG;
    if (tp->fail || tp->nstash)
        return 1;
    for (struct peer *p = tp->pend; p; p = p->pend_next) {
        if (p->state == P_UP &&
            ((p->out_head && can_send(tp, p, 0)) || (p->gq_head && p->sq_used < tp->sq_depth) ||
             (p->ret >= (int)(tp->credits + 1) / 2 && can_send(tp, p, 1))))
            return 1; /* queued output that can go now */
    }
    if (ibv_req_notify_cq(tp->cq, 0) != 0) {
        log_error("verbs transport: arming the CQ failed");
        return DEED_ERR_TRANSPORT;
    }
    n = ibv_poll_cq(tp->cq, STASH_MAX, tp->stash);
    if (n > 0) {
        tp->nstash = n;
        return 1;
    }
    return 0;
}

static int verbs_mem_map(struct tp *tp, void **addr, size_t len, unsigned flags,
                         struct tp_mem **mem)
{
    struct tp_mem *m;
    int alloc;

    if (!tp || !addr || len == 0 || !mem) {
        log_error("verbs transport: mem_map with a NULL argument or length 0");
        return DEED_ERR_INVALID_ARG;
    }
    alloc = (flags & TP_MEM_ALLOCATE) && *addr == NULL;
    if (!alloc && !*addr) {
        log_error("verbs transport: mem_map of a NULL address without TP_MEM_ALLOCATE");
        return DEED_ERR_INVALID_ARG;
    }
    m = calloc(1, sizeof(*m));
    if (!m)
        return DEED_ERR_NO_MEMORY;
    m->addr = *addr;
    m->len = len;
    if (alloc) {
        m->addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m->addr == MAP_FAILED) {
            log_error("verbs transport: allocating %zu bytes failed: %s", len, strerror(errno));
            free(m);
            return DEED_ERR_NO_MEMORY;
        }
        m->allocated = 1;
    }
    m->mr = ibv_reg_mr(tp->pd, m->addr, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ);
    if (!m->mr) {
        int e = errno;

        log_error("verbs transport: registering %zu bytes failed: %s%s", len, strerror(e),
                  e == ENOMEM || e == EPERM ? " (raise the locked-memory limit: ulimit -l)" : "");
        if (m->allocated)
            munmap(m->addr, len);
        free(m);
        return e == ENOMEM ? DEED_ERR_NO_MEMORY : DEED_ERR_TRANSPORT;
    }
    *addr = m->addr;
    m->next = tp->regions;
    if (tp->regions)
        tp->regions->prev = m;
    tp->regions = m;
    *mem = m;
    return DEED_OK;
}

static int verbs_mem_unmap(struct tp *tp, struct tp_mem *mem)
{
    int e;

    if (!tp || !mem)
        return DEED_ERR_INVALID_ARG;
    if (mem->prev)
        mem->prev->next = mem->next;
    else
        tp->regions = mem->next;
    if (mem->next)
        mem->next->prev = mem->prev;
    e = ibv_dereg_mr(mem->mr);
    if (mem->allocated)
        munmap(mem->addr, mem->len);
    free(mem);
    if (e) {
        log_error("verbs transport: deregistering a region failed: %s", strerror(e));
        return DEED_ERR_TRANSPORT;
    }
    return DEED_OK;
}

static int verbs_rkey_pack(struct tp *tp, struct tp_mem *mem, void **buf, size_t *len)
{
    struct rkey_blob *b;

    if (!tp || !mem || !buf || !len)
        return DEED_ERR_INVALID_ARG;
    b = malloc(sizeof(*b));
    if (!b)
        return DEED_ERR_NO_MEMORY;
    b->magic = RKEY_MAGIC;
    b->rkey = mem->mr->rkey;
    b->addr = (uint64_t)(uintptr_t)mem->addr;
    b->len = mem->len;
    *buf = b;
    *len = sizeof(*b);
    return DEED_OK;
}

static void verbs_rkey_buf_free(struct tp *tp, void *buf)
{
    free(buf);
}

static int verbs_get(struct tp *tp, uint32_t rank, void *local, struct tp_mem *local_mem,
                     uint64_t remote_addr, const void *rkey, size_t rkey_len, size_t len,
                     tp_get_cb_t cb, void *cb_arg)
{
    struct rkey_blob rb;
    struct get_op *op;
    struct peer *p;

    if (!tp || rank >= tp->params.nranks || (!local && len > 0) || !rkey ||
        rkey_len != sizeof(rb)) {
        log_error("verbs transport: get from rank %u: bad arguments", rank);
        return DEED_ERR_INVALID_ARG;
    }
    memcpy(&rb, rkey, sizeof(rb));
    if (rb.magic != RKEY_MAGIC || remote_addr < rb.addr || remote_addr - rb.addr > rb.len ||
        len > rb.len - (remote_addr - rb.addr)) {
        log_error("verbs transport: get of %zu bytes at 0x%llx from rank %u is outside the "
                  "region of its key",
                  len, (unsigned long long)remote_addr, rank);
        return DEED_ERR_INVALID_ARG;
    }
    if (local_mem && ((uintptr_t)local < (uintptr_t)local_mem->addr ||
                      (uintptr_t)local - (uintptr_t)local_mem->addr > local_mem->len ||
                      len > local_mem->len - ((uintptr_t)local - (uintptr_t)local_mem->addr))) {
        log_error("verbs transport: get destination %p+%zu is outside its region", local, len);
        return DEED_ERR_INVALID_ARG;
    }
    p = &tp->peers[rank];
    if (p->state != P_UP) {
        if (p->state != P_DEAD)
            log_error("verbs transport: get from rank %u, which is not connected", rank);
        return DEED_ERR_TRANSPORT;
    }
    op = calloc(1, sizeof(*op));
    if (!op)
        return DEED_ERR_NO_MEMORY;
    op->kind = WR_READ;
    op->peer = rank;
    op->local = local;
    op->raddr = remote_addr;
    op->rkey = rb.rkey;
    op->len = len;
    op->cb = cb;
    op->arg = cb_arg;
    if (len && local_mem) {
        op->lkey = local_mem->mr->lkey;
    } else if (len) {
        op->tmp_mr = ibv_reg_mr(tp->pd, local, len, IBV_ACCESS_LOCAL_WRITE);
        if (!op->tmp_mr) {
            log_error("verbs transport: registering a %zu-byte get destination failed: %s", len,
                      strerror(errno));
            free(op);
            return DEED_ERR_TRANSPORT;
        }
        op->lkey = op->tmp_mr->lkey;
    }
    op->live_next = tp->live;
    if (tp->live)
        tp->live->live_prev = op;
    tp->live = op;
    tp->st.gets++;
    if (len == 0) {
        get_finish(tp, op);
        return DEED_OK;
    }
    if (!p->gq_head && post_reads(tp, p, op)) {
        if (op->status != 0 && op->chunks_out == 0) { /* nothing posted: fail the call */
            tp->live = op->live_next;
            if (tp->live)
                tp->live->live_prev = NULL;
            if (op->tmp_mr)
                ibv_dereg_mr(op->tmp_mr);
            free(op);
            tp->st.gets--;
            return DEED_ERR_TRANSPORT;
        }
        return DEED_OK;
    }
    op->queued = 1;
    if (p->gq_tail)
        p->gq_tail->next = op;
    else
        p->gq_head = op;
    p->gq_tail = op;
    mark_pending(tp, p);
    return DEED_OK;
}

void tp_verbs_get_stats(struct tp *tp, struct tp_verbs_stats *st)
{
    if (tp && st)
        *st = tp->st;
}

const struct tp_ops tp_verbs_ops = {
    .size = sizeof(struct tp_ops),
    .name = "verbs",
    .init = verbs_init,
    .fini = verbs_fini,
    .caps = verbs_caps,
    .eager_limit = verbs_eager_limit,
    .address = verbs_address,
    .connect = verbs_connect,
    .am_send = verbs_am_send,
    .progress = verbs_progress,
    .event_fd = verbs_event_fd,
    .arm = verbs_arm,
    .mem_map = verbs_mem_map,
    .mem_unmap = verbs_mem_unmap,
    .rkey_pack = verbs_rkey_pack,
    .rkey_buf_free = verbs_rkey_buf_free,
    .get = verbs_get,
};
