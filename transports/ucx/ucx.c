/*
 * ucx.c — the "ucx" transport (see ucx.h) on UCP (UCX >= 1.13). Owns one UCP context and one
 * worker per rank, an endpoint per connected peer, the rendezvous receives in flight, the
 * registered regions and a cache of unpacked remote keys.
 *
 * Setup. The context asks for AM | RMA | WAKEUP. Unless the user set UCX_MM_ERROR_HANDLING,
 * MM_ERROR_HANDLING=y is set on the config: UCX 1.13 drops the shared-memory transports
 * (posix, sysv) from endpoints with peer error handling otherwise, and silently falls back to
 * tcp loopback (or fails with UCX_TLS=shm). It is not set when UCX_TLS rules shared memory
 * out (UCX would warn about an unused setting). Under peer error handling UCX 1.13 also drops
 * cma (no rendezvous zero-copy lane on one host), so MiB active messages go through the
 * shared-memory FIFO in fragments. The worker is SERIALIZED: the runtime calls in
 * from one thread at a time, not always the same one. Endpoints are created from worker
 * addresses with UCP_ERR_HANDLING_MODE_PEER.
 *
 * Active messages. One UCP AM id; the AM header is the sender's rank (so am_cb learns
 * src_rank without a reply endpoint). am_send never keeps the caller's buffers: a message of
 * at most AM_TRY_INPLACE bytes is first tried with UCP_OP_ATTR_FLAG_FORCE_IMM_CMPL (short
 * protocol: sent before the call returns, no copy); otherwise header and payload are copied
 * into one malloc'd block freed by the send completion (or at once when UCX completed in
 * place). Messages up to eager_limit() go with UCP_AM_SEND_FLAG_EAGER; larger ones let UCX
 * choose, which is rendezvous for MiB messages. On the receiving side, eager messages are
 * delivered straight from UCX's buffer inside the progress call; a rendezvous message is
 * received with ucp_am_recv_data_nbx into a malloc'd buffer and delivered when complete.
 * Per-peer order is kept: while a rendezvous receive from a peer is in flight, later messages
 * from that peer are copied and queued behind it.
 *
 * Callbacks (am_cb, get callbacks, failure_cb) run only from progress(), or from get() when
 * the get completed in place. They may call am_send, get, rkey_pack, mem_map, but not
 * progress (it returns 0 when re-entered) nor fini.
 *
 * Failures. The endpoint error callback only marks the peer dead; progress() then destroys
 * the peer's cached rkeys, force-closes the endpoint and calls failure_cb once per peer.
 * Later sends and gets to the peer return DEED_ERR_TRANSPORT; gets in flight complete with
 * DEED_ERR_TRANSPORT. Over tcp a killed peer is seen when its socket closes; a dead
 * shared-memory peer is never reported by UCX 1.13 (the runtime detects same-host deaths
 * itself). Note that a peer that finalizes normally closes its sockets too, so over tcp a
 * clean exit of a peer is also reported through failure_cb.
 *
 * Gets. ucp_get_nbx into local memory. Packed rkeys are unpacked on first use per
 * (peer, blob) and cached in a hash table (key: peer rank + FNV-1a hash of the blob, the blob
 * compared byte for byte); entries are destroyed when the peer dies or at fini, never per
 * get. A get is truly one-sided only where UCX has a native lane for it: shared memory on
 * memory UCX allocated (mem_map with TP_MEM_ALLOCATE: posix/sysv segments the reader maps),
 * cma, or RDMA. Over tcp UCX emulates gets with active messages that the target's worker must
 * progress: the target rank must keep calling progress() (or sleep on event_fd()) while
 * others read from it. The caps therefore say TP_CAP_NEEDS_TARGET_PROGRESS (conservative: the
 * transport cannot tell which lanes UCX picked) and never TP_CAP_RMA_NATIVE.
 *
 * Eager limit. UCX 1.13 does not report its rendezvous threshold through the API (it depends
 * on the lanes and on UCX_RNDV_THRESH); eager_limit() returns UCX_EAGER_LIMIT (8 KiB), below
 * which every transport we run on sends eagerly, and messages up to it are forced eager.
 */
#include "ucx.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ucp/api/ucp.h>

#include "deed.h"
#include "log.h"

#define UCX_AM_ID 1u
#define UCX_EAGER_LIMIT (8u * 1024u)
#define AM_TRY_INPLACE 2048u            /* try the short protocol (no copy) up to this size */
#define PROGRESS_ROUNDS 64              /* ucp_worker_progress calls per progress(), at most */
#define RKEY_BUCKETS 256u               /* power of two */
#define FINI_TIMEOUT_NS (3000000000ull) /* flush and close at fini, at most */

/* The AM header: who sent the message. */
struct ucx_hdr {
    uint32_t src_rank;
};

/* A message from one peer, received (or being received) while an earlier one is still in
 * flight: delivered in arrival order by rx_flush(). */
enum { RX_PENDING, RX_DONE, RX_FAILED };
struct rx_msg {
    struct rx_msg *next;
    struct tp *tp;
    uint32_t src;
    int state;
    size_t len;
    void *data; /* malloc'd (rendezvous) or points into the block (copied eager) */
};

struct peer {
    ucp_ep_h ep;
    int dead; /* the endpoint failed (or was closed after a failure) */
    uint32_t rank;
    struct tp *tp;
    struct rkey_ent *last_rkey; /* the rkey this peer's last get used: checked first */
    struct peer *fail_next;
    struct rx_msg *rx_head, *rx_tail;
};

struct rkey_ent {
    struct rkey_ent *next;
    uint32_t rank;
    uint64_t hash;
    ucp_rkey_h rkey;
    size_t len;
    unsigned char blob[];
};

struct tp_mem {
    ucp_mem_h memh;
    void *addr;
    size_t len;
    struct tp_mem *prev, *next;
};

/* Lives in UCX's request (context request_size): a get's completion. Filled after
 * ucp_get_nbx returns the request; UCX calls completion callbacks only from progress. */
struct get_req {
    tp_get_cb_t cb;
    void *arg;
};

/* One copied outgoing message: header and payload in one block, freed on completion. */
struct send_buf {
    struct tp *tp;
    struct ucx_hdr hdr;
    unsigned char payload[];
};

struct tp {
    struct tp_params params;
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_address_t *addr;
    size_t addr_len;
    int efd;
    struct peer *peers; /* nranks */
    struct peer *fail_list;
    struct rkey_ent *rkeys[RKEY_BUCKETS];
    struct tp_mem *regions;
    uint64_t inflight; /* UCX requests whose callback has not run yet */
    int events;        /* events counted during the current progress() */
    int in_progress;
    int finalizing; /* no user callbacks any more */
    struct tp_ucx_stats st;
};

static int tp_status(ucs_status_t s)
{
    return s == UCS_ERR_NO_MEMORY ? DEED_ERR_NO_MEMORY : DEED_ERR_TRANSPORT;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- receive side ---------------------------------------------------------------------- */

static void deliver(struct tp *tp, uint32_t src, const void *data, size_t len)
{
    tp->events++;
    tp->st.am_recv++;
    if (tp->params.am_cb)
        tp->params.am_cb(tp->params.cb_arg, src, data, len);
}

/* Delivers (or drops, if failed) the finished messages at the head of p's queue. */
static void rx_flush(struct tp *tp, struct peer *p)
{
    struct rx_msg *m;

    while ((m = p->rx_head) && m->state != RX_PENDING) {
        p->rx_head = m->next;
        if (!p->rx_head)
            p->rx_tail = NULL;
        if (m->state == RX_DONE && !tp->finalizing)
            deliver(tp, m->src, m->data, m->len);
        if (m->data != (void *)(m + 1))
            free(m->data);
        free(m);
    }
}

static void rx_append(struct peer *p, struct rx_msg *m)
{
    m->next = NULL;
    if (p->rx_tail)
        p->rx_tail->next = m;
    else
        p->rx_head = m;
    p->rx_tail = m;
}

static void rndv_recv_done(void *request, ucs_status_t status, size_t length, void *user_data)
{
    struct rx_msg *m = user_data;
    struct tp *tp = m->tp;

    tp->inflight--;
    if (status == UCS_OK) {
        m->state = RX_DONE;
    } else {
        m->state = RX_FAILED;
        if (!tp->finalizing)
            log_error("ucx transport: receiving a %zu-byte message from rank %u failed: %s", m->len,
                      m->src, ucs_status_string(status));
    }
    ucp_request_free(request);
    rx_flush(tp, &tp->peers[m->src]);
}

static ucs_status_t am_recv_cb(void *arg, const void *header, size_t header_length, void *data,
                               size_t length, const ucp_am_recv_param_t *param)
{
    struct tp *tp = arg;
    struct ucx_hdr hdr;
    struct peer *p;
    struct rx_msg *m;

    if (header_length != sizeof(hdr) || !header) {
        log_error("ucx transport: dropped a message with a %zu-byte header (expected %zu)",
                  header_length, sizeof(hdr));
        return UCS_OK;
    }
    memcpy(&hdr, header, sizeof(hdr));
    if (hdr.src_rank >= tp->params.nranks) {
        log_error("ucx transport: dropped a message from rank %u (the job has %u ranks)",
                  hdr.src_rank, tp->params.nranks);
        return UCS_OK;
    }
    p = &tp->peers[hdr.src_rank];

    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
        ucp_request_param_t rp;
        ucs_status_ptr_t sp;

        m = malloc(sizeof(*m));
        if (m)
            m->data = malloc(length ? length : 1);
        if (!m || !m->data) {
            log_error("ucx transport: out of memory receiving a %zu-byte message from rank %u",
                      length, hdr.src_rank);
            free(m);
            return UCS_ERR_NO_MEMORY; /* the sender's request completes with this status */
        }
        m->tp = tp;
        m->src = hdr.src_rank;
        m->len = length;
        m->state = RX_PENDING;
        rx_append(p, m);
        tp->st.am_recv_rndv++;

        memset(&rp, 0, sizeof(rp));
        rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
        rp.cb.recv_am = rndv_recv_done;
        rp.user_data = m;
        sp = ucp_am_recv_data_nbx(tp->worker, data, m->data, length, &rp);
        if (sp == NULL) {
            m->state = RX_DONE;
            rx_flush(tp, p);
        } else if (UCS_PTR_IS_ERR(sp)) {
            log_error("ucx transport: receiving a %zu-byte message from rank %u failed: %s", length,
                      hdr.src_rank, ucs_status_string(UCS_PTR_STATUS(sp)));
            m->state = RX_FAILED;
            rx_flush(tp, p);
        } else {
            tp->inflight++;
        }
        return UCS_OK; /* UCX keeps the descriptor: the receive was started */
    }

    if (tp->finalizing)
        return UCS_OK;
    if (!p->rx_head) {
        deliver(tp, hdr.src_rank, data, length);
        return UCS_OK;
    }
    /* A rendezvous message from this peer is still arriving: keep the order. */
    m = malloc(sizeof(*m) + length);
    if (!m) {
        log_error("ucx transport: out of memory queueing a %zu-byte message from rank %u "
                  "(dropped)",
                  length, hdr.src_rank);
        return UCS_OK;
    }
    m->tp = tp;
    m->src = hdr.src_rank;
    m->len = length;
    m->state = RX_DONE;
    m->data = m + 1;
    if (length)
        memcpy(m->data, data, length);
    rx_append(p, m);
    return UCS_OK;
}

/* ---- rkey cache ------------------------------------------------------------------------ */

/* FNV-1a over 8-byte words (then the tail bytes), seeded with the rank. */
static uint64_t rkey_hash(uint32_t rank, const void *blob, size_t len)
{
    const unsigned char *b = blob;
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)rank * 0x9e3779b97f4a7c15ull);
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        uint64_t w;

        memcpy(&w, b + i, 8);
        h = (h ^ w) * 1099511628211ull;
    }
    for (; i < len; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static ucp_rkey_h rkey_lookup(struct tp *tp, struct peer *p, const void *blob, size_t len)
{
    struct rkey_ent *e = p->last_rkey, **bucket;
    ucs_status_t s;
    uint64_t h;

    if (e && e->len == len && memcmp(e->blob, blob, len) == 0) {
        tp->st.rkey_hits++;
        return e->rkey;
    }
    h = rkey_hash(p->rank, blob, len);
    bucket = &tp->rkeys[h & (RKEY_BUCKETS - 1)];
    for (e = *bucket; e; e = e->next) {
        if (e->hash == h && e->rank == p->rank && e->len == len &&
            memcmp(e->blob, blob, len) == 0) {
            tp->st.rkey_hits++;
            p->last_rkey = e;
            return e->rkey;
        }
    }
    e = malloc(sizeof(*e) + len);
    if (!e) {
        log_error("ucx transport: out of memory caching an rkey");
        return NULL;
    }
    s = ucp_ep_rkey_unpack(p->ep, blob, &e->rkey);
    if (s != UCS_OK) {
        log_error("ucx transport: unpacking a %zu-byte rkey from rank %u failed: %s", len, p->rank,
                  ucs_status_string(s));
        free(e);
        return NULL;
    }
    e->rank = p->rank;
    e->hash = h;
    e->len = len;
    memcpy(e->blob, blob, len);
    e->next = *bucket;
    *bucket = e;
    tp->st.rkey_misses++;
    tp->st.rkey_cached++;
    p->last_rkey = e;
    return e->rkey;
}

/* Destroys the cached rkeys of one rank, or of every rank when rank is UINT32_MAX. */
static void rkey_drop(struct tp *tp, uint32_t rank)
{
    for (uint32_t r = 0; r < tp->params.nranks; r++) {
        if (rank == UINT32_MAX || r == rank)
            tp->peers[r].last_rkey = NULL;
    }
    for (unsigned b = 0; b < RKEY_BUCKETS; b++) {
        struct rkey_ent **pp = &tp->rkeys[b], *e;

        while ((e = *pp)) {
            if (rank == UINT32_MAX || e->rank == rank) {
                *pp = e->next;
                ucp_rkey_destroy(e->rkey);
                free(e);
                tp->st.rkey_cached--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* ---- endpoints and failures ------------------------------------------------------------ */

static void close_done(void *request, ucs_status_t status, void *user_data)
{
    struct tp *tp = user_data;

    tp->inflight--;
    ucp_request_free(request);
}

/* Starts closing p's endpoint (force: drop what is queued). */
static void ep_close(struct tp *tp, struct peer *p, int force)
{
    ucp_request_param_t rp;
    ucs_status_ptr_t sp;

    if (!p->ep)
        return;
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.send = close_done;
    rp.user_data = tp;
    if (force) {
        rp.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
        rp.flags = UCP_EP_CLOSE_FLAG_FORCE;
    }
    sp = ucp_ep_close_nbx(p->ep, &rp);
    if (UCS_PTR_IS_PTR(sp))
        tp->inflight++;
    else if (UCS_PTR_IS_ERR(sp) && !force)
        log_debug("ucx transport: closing the endpoint to rank %u: %s", p->rank,
                  ucs_status_string(UCS_PTR_STATUS(sp)));
    p->ep = NULL;
}

static void ep_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    struct peer *p = arg;

    if (p->dead || p->ep != ep)
        return;
    p->dead = 1;
    p->fail_next = p->tp->fail_list;
    p->tp->fail_list = p;
    log_debug("ucx transport: endpoint to rank %u failed: %s", p->rank, ucs_status_string(status));
}

/* Handles the peers whose endpoint failed since the last call: drop their rkeys, close the
 * endpoint, tell the runtime. */
static void handle_failures(struct tp *tp)
{
    struct peer *p;

    while ((p = tp->fail_list)) {
        uint32_t r = p->rank;

        tp->fail_list = p->fail_next;
        p->fail_next = NULL;
        rkey_drop(tp, r);
        ep_close(tp, p, 1);
        tp->events++;
        tp->st.peers_failed++;
        if (!tp->finalizing) {
            log_info("ucx transport: rank %u is unreachable (endpoint failed)", r);
            if (tp->params.failure_cb)
                tp->params.failure_cb(tp->params.cb_arg, r);
        }
    }
}

/* ---- ops -------------------------------------------------------------------------------- */

/* 0 if the UCX_TLS list rules out the shared-memory (mm) transports, so that setting
 * MM_ERROR_HANDLING would only make UCX warn about an unused setting. */
static int tls_may_use_mm(const char *tls)
{
    static const char *const mm[] = {"all", "sm", "shm", "mm", "posix", "sysv", "xpmem"};
    char buf[256], *tok, *save = NULL;

    if (!tls || !*tls || tls[0] == '^' || strlen(tls) >= sizeof(buf))
        return 1;
    strcpy(buf, tls);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (tok[0] == '\\')
            tok++; /* a leading backslash asks for that exact transport */
        for (size_t i = 0; i < sizeof(mm) / sizeof(mm[0]); i++) {
            if (strcmp(tok, mm[i]) == 0)
                return 1;
        }
    }
    return 0;
}

static void ucx_fini(struct tp *tp);

static int ucx_init(const struct tp_params *params, struct tp **out)
{
    ucp_config_t *cfg = NULL;
    ucp_params_t cp;
    ucp_worker_params_t wp;
    ucp_worker_attr_t wa;
    ucp_am_handler_param_t ap;
    struct tp *tp;
    ucs_status_t s;

    if (!params || !out) {
        log_error("ucx transport: init with a NULL argument");
        return DEED_ERR_INVALID_ARG;
    }
    if (params->nranks == 0 || params->rank >= params->nranks) {
        log_error("ucx transport: rank %u out of range in a %u-rank job", params->rank,
                  params->nranks);
        return DEED_ERR_INVALID_ARG;
    }
    tp = calloc(1, sizeof(*tp));
    if (tp)
        tp->peers = calloc(params->nranks, sizeof(*tp->peers));
    if (!tp || !tp->peers) {
        log_error("ucx transport: out of memory");
        free(tp);
        return DEED_ERR_NO_MEMORY;
    }
    tp->params = *params;
    tp->efd = -1;
    for (uint32_t r = 0; r < params->nranks; r++) {
        tp->peers[r].rank = r;
        tp->peers[r].tp = tp;
    }

    s = ucp_config_read(NULL, NULL, &cfg);
    if (s != UCS_OK) {
        log_error("ucx transport: reading the UCX configuration failed: %s", ucs_status_string(s));
        goto fail;
    }
    if (!getenv("UCX_MM_ERROR_HANDLING") && tls_may_use_mm(getenv("UCX_TLS"))) {
        s = ucp_config_modify(cfg, "MM_ERROR_HANDLING", "y");
        if (s != UCS_OK)
            log_warn("ucx transport: cannot enable MM_ERROR_HANDLING (%s): shared memory "
                     "may not be used",
                     ucs_status_string(s));
    }
    memset(&cp, 0, sizeof(cp));
    cp.field_mask =
        UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_REQUEST_SIZE | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
    cp.features = UCP_FEATURE_AM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
    cp.request_size = sizeof(struct get_req);
    cp.estimated_num_eps = params->nranks;
    s = ucp_init(&cp, cfg, &tp->ctx);
    ucp_config_release(cfg);
    if (s != UCS_OK) {
        log_error("ucx transport: ucp_init failed: %s", ucs_status_string(s));
        tp->ctx = NULL;
        goto fail;
    }

    memset(&wp, 0, sizeof(wp));
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    s = ucp_worker_create(tp->ctx, &wp, &tp->worker);
    if (s != UCS_OK) {
        log_error("ucx transport: creating the worker failed: %s", ucs_status_string(s));
        tp->worker = NULL;
        goto fail;
    }
    memset(&wa, 0, sizeof(wa));
    wa.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
    if (ucp_worker_query(tp->worker, &wa) == UCS_OK && wa.thread_mode == UCS_THREAD_MODE_SINGLE)
        log_debug("ucx transport: UCX gave a single-threaded worker (built without "
                  "--enable-mt); calls must then come from one thread");

    s = ucp_worker_get_address(tp->worker, &tp->addr, &tp->addr_len);
    if (s != UCS_OK) {
        log_error("ucx transport: getting the worker address failed: %s", ucs_status_string(s));
        tp->addr = NULL;
        goto fail;
    }
    s = ucp_worker_get_efd(tp->worker, &tp->efd);
    if (s != UCS_OK) {
        log_error("ucx transport: getting the worker's event fd failed: %s", ucs_status_string(s));
        tp->efd = -1;
        goto fail;
    }

    memset(&ap, 0, sizeof(ap));
    ap.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                    UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    ap.id = UCX_AM_ID;
    ap.flags = UCP_AM_FLAG_WHOLE_MSG;
    ap.cb = am_recv_cb;
    ap.arg = tp;
    s = ucp_worker_set_am_recv_handler(tp->worker, &ap);
    if (s != UCS_OK) {
        log_error("ucx transport: setting the active message handler failed: %s",
                  ucs_status_string(s));
        goto fail;
    }
    log_debug("ucx transport: rank %u of %u, worker address %zu bytes", params->rank,
              params->nranks, tp->addr_len);
    *out = tp;
    return DEED_OK;

fail:
    ucx_fini(tp);
    return DEED_ERR_TRANSPORT;
}

/* Progresses the worker until pred(tp, arg) holds or the deadline passes; 1 if it holds. */
static int wait_until(struct tp *tp, int (*pred)(struct tp *, void *), void *arg, uint64_t deadline)
{
    while (!pred(tp, arg)) {
        if (now_ns() > deadline)
            return 0;
        ucp_worker_progress(tp->worker);
    }
    return 1;
}

static int no_inflight(struct tp *tp, void *arg)
{
    return tp->inflight == 0;
}

static int request_done(struct tp *tp, void *req)
{
    return ucp_request_check_status(req) != UCS_INPROGRESS;
}

static void ucx_fini(struct tp *tp)
{
    uint64_t deadline = now_ns() + FINI_TIMEOUT_NS;

    if (!tp)
        return;
    tp->finalizing = 1;
    if (tp->worker) {
        ucp_request_param_t rp;
        ucs_status_ptr_t sp;

        handle_failures(tp);
        /* Let what was sent reach the peers, then release the rkeys (before their
         * endpoints go) and close the endpoints. */
        memset(&rp, 0, sizeof(rp));
        sp = ucp_worker_flush_nbx(tp->worker, &rp);
        if (UCS_PTR_IS_PTR(sp)) {
            if (!wait_until(tp, request_done, sp, deadline))
                log_warn("ucx transport: operations still in flight at fini (a peer not "
                         "progressing?); closing anyway");
            ucp_request_free(sp);
        }
        rkey_drop(tp, UINT32_MAX);
        for (uint32_t r = 0; r < tp->params.nranks; r++)
            ep_close(tp, &tp->peers[r], tp->peers[r].dead || now_ns() > deadline);
        if (!wait_until(tp, no_inflight, NULL, deadline + FINI_TIMEOUT_NS))
            log_warn("ucx transport: %llu requests still in flight at fini",
                     (unsigned long long)tp->inflight);
    }
    for (uint32_t r = 0; tp->peers && r < tp->params.nranks; r++) {
        struct peer *p = &tp->peers[r];

        while (p->rx_head) {
            struct rx_msg *m = p->rx_head;

            if (m->state == RX_PENDING)
                break; /* still owned by UCX (should not happen: inflight is 0) */
            p->rx_head = m->next;
            if (m->data != (void *)(m + 1))
                free(m->data);
            free(m);
        }
    }
    while (tp->regions) {
        struct tp_mem *m = tp->regions;

        log_debug("ucx transport: region %p+%zu still mapped at fini", m->addr, m->len);
        tp->regions = m->next;
        ucp_mem_unmap(tp->ctx, m->memh);
        free(m);
    }
    if (tp->addr)
        ucp_worker_release_address(tp->worker, tp->addr);
    if (tp->worker)
        ucp_worker_destroy(tp->worker);
    if (tp->ctx)
        ucp_cleanup(tp->ctx);
    free(tp->peers);
    free(tp);
}

static uint32_t ucx_caps(struct tp *tp)
{
    return TP_CAP_AM | TP_CAP_MEM_REG | TP_CAP_RMA_GET | TP_CAP_NEEDS_TARGET_PROGRESS |
           TP_CAP_PEER_FAILURE | TP_CAP_EVENT_FD | TP_CAP_MEM_ALLOC;
}

static size_t ucx_eager_limit(struct tp *tp)
{
    return UCX_EAGER_LIMIT;
}

static int ucx_address(struct tp *tp, const void **addr, size_t *len)
{
    if (!tp || !addr || !len)
        return DEED_ERR_INVALID_ARG;
    *addr = tp->addr;
    *len = tp->addr_len;
    return DEED_OK;
}

static int ucx_connect(struct tp *tp, uint32_t rank, const void *addr, size_t len)
{
    ucp_ep_params_t ep;
    struct peer *p;
    ucs_status_t s;

    if (!tp || !addr || len == 0 || rank >= tp->params.nranks) {
        log_error("ucx transport: connect to rank %u with a NULL or empty address, or out "
                  "of range",
                  rank);
        return DEED_ERR_INVALID_ARG;
    }
    p = &tp->peers[rank];
    if (p->ep) {
        /* Alive, or failed and not yet reported by progress (which closes it). */
        log_error("ucx transport: rank %u is already connected", rank);
        return DEED_ERR_INVALID_ARG;
    }
    memset(&ep, 0, sizeof(ep));
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = addr;
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = ep_error_cb;
    ep.err_handler.arg = p;
    s = ucp_ep_create(tp->worker, &ep, &p->ep);
    if (s != UCS_OK) {
        log_error("ucx transport: connecting to rank %u failed: %s", rank, ucs_status_string(s));
        p->ep = NULL;
        return DEED_ERR_TRANSPORT;
    }
    p->dead = 0;
    return DEED_OK;
}

static void send_done(void *request, ucs_status_t status, void *user_data)
{
    struct send_buf *sb = user_data;
    struct tp *tp = sb->tp;

    tp->inflight--;
    if (status != UCS_OK && !tp->finalizing)
        log_debug("ucx transport: a send completed with %s", ucs_status_string(status));
    free(sb);
    ucp_request_free(request);
}

static int ucx_am_send(struct tp *tp, uint32_t rank, const struct iovec *iov, int iovcnt)
{
    ucp_request_param_t rp;
    ucs_status_ptr_t sp;
    struct send_buf *sb;
    struct peer *p;
    size_t total = 0, off = 0;

    if (!tp || rank >= tp->params.nranks || iovcnt < 0 || (iovcnt > 0 && !iov)) {
        log_error("ucx transport: am_send to rank %u: bad arguments", rank);
        return DEED_ERR_INVALID_ARG;
    }
    p = &tp->peers[rank];
    if (!p->ep || p->dead) {
        if (!p->dead)
            log_error("ucx transport: am_send to rank %u, which is not connected", rank);
        return DEED_ERR_TRANSPORT;
    }
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len && !iov[i].iov_base) {
            log_error("ucx transport: am_send with a NULL iov_base");
            return DEED_ERR_INVALID_ARG;
        }
        total += iov[i].iov_len;
    }

    if (total <= AM_TRY_INPLACE) {
        unsigned char stage[AM_TRY_INPLACE];
        struct ucx_hdr hdr = {.src_rank = tp->params.rank};
        const void *buf = stage;

        if (iovcnt == 1) {
            buf = iov[0].iov_base;
        } else {
            for (int i = 0; i < iovcnt; i++) {
                if (iov[i].iov_len)
                    memcpy(stage + off, iov[i].iov_base, iov[i].iov_len);
                off += iov[i].iov_len;
            }
        }
        memset(&rp, 0, sizeof(rp));
        rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FLAG_FORCE_IMM_CMPL;
        rp.flags = UCP_AM_SEND_FLAG_EAGER;
        sp = ucp_am_send_nbx(p->ep, UCX_AM_ID, &hdr, sizeof(hdr), buf, total, &rp);
        if (sp == NULL) {
            tp->st.am_sent++;
            tp->st.am_sent_inplace++;
            return DEED_OK;
        }
        if (UCS_PTR_IS_PTR(sp)) { /* unreachable in UCX 1.13 with FORCE_IMM_CMPL */
            while (ucp_request_check_status(sp) == UCS_INPROGRESS)
                ucp_worker_progress(tp->worker);
            ucp_request_free(sp);
            tp->st.am_sent++;
            return DEED_OK;
        }
        if (UCS_PTR_STATUS(sp) != UCS_ERR_NO_RESOURCE) {
            log_error("ucx transport: sending %zu bytes to rank %u failed: %s", total, rank,
                      ucs_status_string(UCS_PTR_STATUS(sp)));
            return tp_status(UCS_PTR_STATUS(sp));
        }
        off = 0;
    }

    sb = malloc(sizeof(*sb) + total);
    if (!sb) {
        log_error("ucx transport: out of memory copying a %zu-byte message", total);
        return DEED_ERR_NO_MEMORY;
    }
    sb->tp = tp;
    sb->hdr.src_rank = tp->params.rank;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(sb->payload + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.send = send_done;
    rp.user_data = sb;
    if (total <= UCX_EAGER_LIMIT) {
        rp.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
        rp.flags = UCP_AM_SEND_FLAG_EAGER;
    }
    sp = ucp_am_send_nbx(p->ep, UCX_AM_ID, &sb->hdr, sizeof(sb->hdr), sb->payload, total, &rp);
    if (UCS_PTR_IS_ERR(sp)) {
        log_error("ucx transport: sending %zu bytes to rank %u failed: %s", total, rank,
                  ucs_status_string(UCS_PTR_STATUS(sp)));
        free(sb);
        return tp_status(UCS_PTR_STATUS(sp));
    }
    if (sp == NULL)
        free(sb);
    else
        tp->inflight++;
    tp->st.am_sent++;
    return DEED_OK;
}

static int ucx_progress(struct tp *tp)
{
    int rounds = 0;

    if (!tp)
        return DEED_ERR_INVALID_ARG;
    if (tp->in_progress)
        return 0; /* called from one of our callbacks: UCX forbids recursion */
    tp->in_progress = 1;
    tp->events = 0;
    while (rounds < PROGRESS_ROUNDS && ucp_worker_progress(tp->worker))
        rounds++;
    handle_failures(tp);
    tp->in_progress = 0;
    return tp->events + rounds;
}

static int ucx_event_fd(struct tp *tp)
{
    return tp ? tp->efd : -1;
}

static int ucx_arm(struct tp *tp)
{
    ucs_status_t s;

    if (!tp)
        return DEED_ERR_INVALID_ARG;
    if (tp->fail_list)
        return 1; /* a failure to report */
    s = ucp_worker_arm(tp->worker);
    if (s == UCS_OK)
        return 0;
    if (s == UCS_ERR_BUSY)
        return 1;
    log_error("ucx transport: arming the worker failed: %s", ucs_status_string(s));
    return DEED_ERR_TRANSPORT;
}

static int ucx_mem_map(struct tp *tp, void **addr, size_t len, unsigned flags, struct tp_mem **mem)
{
    ucp_mem_map_params_t mp;
    ucp_mem_attr_t ma;
    struct tp_mem *m;
    ucs_status_t s;
    int alloc;

    if (!tp || !addr || len == 0 || !mem) {
        log_error("ucx transport: mem_map with a NULL argument or length 0");
        return DEED_ERR_INVALID_ARG;
    }
    alloc = (flags & TP_MEM_ALLOCATE) && *addr == NULL;
    if (!alloc && !*addr) {
        log_error("ucx transport: mem_map of a NULL address without TP_MEM_ALLOCATE");
        return DEED_ERR_INVALID_ARG;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        log_error("ucx transport: out of memory");
        return DEED_ERR_NO_MEMORY;
    }
    memset(&mp, 0, sizeof(mp));
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS;
    mp.length = len;
    if (alloc) {
        mp.flags = UCP_MEM_MAP_ALLOCATE;
    } else {
        mp.field_mask |= UCP_MEM_MAP_PARAM_FIELD_ADDRESS;
        mp.address = *addr;
    }
    s = ucp_mem_map(tp->ctx, &mp, &m->memh);
    if (s != UCS_OK) {
        log_error("ucx transport: %s %zu bytes failed: %s",
                  alloc ? "allocating and registering" : "registering", len, ucs_status_string(s));
        free(m);
        return tp_status(s);
    }
    m->addr = *addr;
    m->len = len;
    if (alloc) {
        memset(&ma, 0, sizeof(ma));
        ma.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
        s = ucp_mem_query(m->memh, &ma);
        if (s != UCS_OK || !ma.address || ma.length < len) {
            log_error("ucx transport: querying an allocated region failed: %s",
                      ucs_status_string(s));
            ucp_mem_unmap(tp->ctx, m->memh);
            free(m);
            return DEED_ERR_TRANSPORT;
        }
        m->addr = ma.address;
        *addr = ma.address;
    }
    m->next = tp->regions;
    if (tp->regions)
        tp->regions->prev = m;
    tp->regions = m;
    *mem = m;
    return DEED_OK;
}

static int ucx_mem_unmap(struct tp *tp, struct tp_mem *mem)
{
    ucs_status_t s;

    if (!tp || !mem)
        return DEED_ERR_INVALID_ARG;
    if (mem->prev)
        mem->prev->next = mem->next;
    else
        tp->regions = mem->next;
    if (mem->next)
        mem->next->prev = mem->prev;
    s = ucp_mem_unmap(tp->ctx, mem->memh);
    free(mem);
    if (s != UCS_OK) {
        log_error("ucx transport: unmapping a region failed: %s", ucs_status_string(s));
        return DEED_ERR_TRANSPORT;
    }
    return DEED_OK;
}

static int ucx_rkey_pack(struct tp *tp, struct tp_mem *mem, void **buf, size_t *len)
{
    void *ubuf;
    size_t ulen;
    ucs_status_t s;

    if (!tp || !mem || !buf || !len)
        return DEED_ERR_INVALID_ARG;
    s = ucp_rkey_pack(tp->ctx, mem->memh, &ubuf, &ulen);
    if (s != UCS_OK) {
        log_error("ucx transport: packing an rkey failed: %s", ucs_status_string(s));
        return tp_status(s);
    }
    *buf = malloc(ulen ? ulen : 1);
    if (!*buf) {
        ucp_rkey_buffer_release(ubuf);
        log_error("ucx transport: out of memory");
        return DEED_ERR_NO_MEMORY;
    }
    memcpy(*buf, ubuf, ulen);
    *len = ulen;
    ucp_rkey_buffer_release(ubuf);
    return DEED_OK;
}

static void ucx_rkey_buf_free(struct tp *tp, void *buf)
{
    free(buf);
}

static void get_done(void *request, ucs_status_t status, void *user_data)
{
    struct tp *tp = user_data;
    struct get_req g = *(struct get_req *)request;

    tp->inflight--;
    ucp_request_free(request);
    tp->events++;
    if (tp->finalizing)
        return;
    if (status != UCS_OK)
        log_debug("ucx transport: a get completed with %s", ucs_status_string(status));
    if (g.cb)
        g.cb(g.arg, status == UCS_OK ? 0 : DEED_ERR_TRANSPORT);
}

static int ucx_get(struct tp *tp, uint32_t rank, void *local, struct tp_mem *local_mem,
                   uint64_t remote_addr, const void *rkey, size_t rkey_len, size_t len,
                   tp_get_cb_t cb, void *cb_arg)
{
    ucp_request_param_t rp;
    ucs_status_ptr_t sp;
    ucp_rkey_h rk;
    struct peer *p;

    if (!tp || rank >= tp->params.nranks || (!local && len > 0) || !rkey || rkey_len == 0) {
        log_error("ucx transport: get from rank %u: bad arguments", rank);
        return DEED_ERR_INVALID_ARG;
    }
    if (local_mem && ((uintptr_t)local < (uintptr_t)local_mem->addr ||
                      (uintptr_t)local - (uintptr_t)local_mem->addr > local_mem->len ||
                      len > local_mem->len - ((uintptr_t)local - (uintptr_t)local_mem->addr))) {
        log_error("ucx transport: get destination %p+%zu is outside its region", local, len);
        return DEED_ERR_INVALID_ARG;
    }
    p = &tp->peers[rank];
    if (!p->ep || p->dead) {
        if (!p->dead)
            log_error("ucx transport: get from rank %u, which is not connected", rank);
        return DEED_ERR_TRANSPORT;
    }
    rk = rkey_lookup(tp, p, rkey, rkey_len);
    if (!rk)
        return DEED_ERR_TRANSPORT;

    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.send = get_done;
    rp.user_data = tp;
    if (local_mem) {
        rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
        rp.memh = local_mem->memh;
    }
    sp = ucp_get_nbx(p->ep, local, len, remote_addr, rk, &rp);
    if (UCS_PTR_IS_ERR(sp)) {
        log_error("ucx transport: get of %zu bytes at 0x%llx from rank %u failed: %s", len,
                  (unsigned long long)remote_addr, rank, ucs_status_string(UCS_PTR_STATUS(sp)));
        return DEED_ERR_TRANSPORT;
    }
    tp->st.gets++;
    if (sp == NULL) {
        tp->st.gets_inplace++;
        if (cb)
            cb(cb_arg, 0);
        return DEED_OK;
    }
    ((struct get_req *)sp)->cb = cb;
    ((struct get_req *)sp)->arg = cb_arg;
    tp->inflight++;
    return DEED_OK;
}

void tp_ucx_get_stats(struct tp *tp, struct tp_ucx_stats *st)
{
    if (tp && st)
        *st = tp->st;
}

const struct tp_ops tp_ucx_ops = {
    .size = sizeof(struct tp_ops),
    .name = "ucx",
    .init = ucx_init,
    .fini = ucx_fini,
    .caps = ucx_caps,
    .eager_limit = ucx_eager_limit,
    .address = ucx_address,
    .connect = ucx_connect,
    .am_send = ucx_am_send,
    .progress = ucx_progress,
    .event_fd = ucx_event_fd,
    .arm = ucx_arm,
    .mem_map = ucx_mem_map,
    .mem_unmap = ucx_mem_unmap,
    .rkey_pack = ucx_rkey_pack,
    .rkey_buf_free = ucx_rkey_buf_free,
    .get = ucx_get,
};
