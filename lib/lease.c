/*
 * lease.c — leases (design §5.3): how an owner gets the right to push tasks to a rank's
 * workers. Loop thread (combiner) only.
 *
 * Owner side: resolved tasks queue by *scheduling key* (function + target rank: the rank a
 * task is pinned to, or the one holding most of its large argument bytes, else "anywhere").
 * A key's queue drains into its leases: each lease allows `depth` tasks in flight on one
 * rank, so a lease is reused by the next tasks of the key and keeps several of them in
 * flight (pipelining). When the queue outgrows the leases' room the owner asks for one more
 * lease: first from its own rank's scheduler (no message), which grants while it has free
 * worker slots and otherwise *spills back* to the rank with the most free slots according to
 * the load figures piggybacked on every batch; the owner then asks that rank, marking the
 * request final so it cannot bounce. A lease idle for DEED_LEASE_IDLE_US (default 2000 us)
 * with an empty queue is returned.
 *
 * Scheduler side: a rank grants one lease per worker slot; a request beyond that is spilled
 * back unless it is final, pinned, or no rank has a free slot — then it is granted anyway.
 * Leases steer load; they never block progress (tasks blocked in get give their worker slot
 * away, see sched.c, so admission must not wait for them either).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "rt.h"

#define KEY_BUCKETS 256

enum { LREQ_FINAL = 1, LREQ_PINNED = 2 };

struct lease {
    struct lease *next;
    struct lease *anext, *aprev; /* the key's ring of leases with room (inflight < depth) */
    struct keyq *q;
    uint32_t rank;
    uint32_t id;
    uint32_t inflight;
    uint32_t depth;          /* tasks in flight allowed now (adaptive, see lease_adapt) */
    uint32_t done;           /* tasks finished since rate_since */
    uint8_t in_avail;
    uint64_t last_used;
    uint64_t rate_since;     /* coarse clock */
};

struct keyq {
    struct keyq *next;
    uint64_t key;
    int32_t target;            /* rank to ask, -1 = this rank's scheduler first */
    uint8_t pinned;
    struct task *head, *tail;  /* resolved tasks waiting for room in a lease */
    uint32_t queued;
    struct lease *leases;
    struct lease *avail;       /* leases with room, served round-robin from here */
    uint32_t depth_hint;       /* the depth its leases reached last: a new lease starts there */
    uint32_t nleases;
    uint32_t requests;         /* lease requests in flight */
    uint32_t req_to;           /* the rank the last request went to */
};

struct leases {
    struct keyq *keys[KEY_BUCKETS];
    struct keyq *last_q;       /* the key found last (keys are never removed before fini) */
    uint32_t next_req;
    /* scheduler side */
    uint32_t granted;          /* leases of this rank held by owners (incl. this rank) */
    uint32_t next_id;
    uint64_t idle_ns;
    uint64_t last_scan;
    uint32_t held;             /* owner side: leases held */
    uint32_t held_peak;
    uint64_t requested, spilled;
    uint32_t *granted_to;      /* scheduler side: leases held per owner rank */
};

/* Pipelining depth. A lease keeps `depth` tasks in flight: enough to cover the round trip
 * to its rank, few enough that a queue of long tasks is not pushed onto one worker while
 * other leases (ranks) could take them. The right number depends on the task length, so it
 * adapts: every few ms of the coarse clock a lease sets its depth to the tasks it finished
 * in DEPTH_WINDOW_NS at its measured rate, between rt->lease_depth (32) and LEASE_DEPTH_MAX.
 * Empty remote tasks (1.7 M/s) reach the maximum after the first tick; 1 ms tasks stay at
 * the minimum. Measured (2 ranks, shm, empty tasks): a fixed depth of 32 ran 1.16 M
 * tasks/s, 256 and more 1.7-1.8 M (the plateau). A lease on this rank's own workers has no
 * round trip to cover and keeps the minimum: the queue then outgrows the local leases, and
 * asks for (spills to) other ranks' slots, after ~32 tasks per local worker instead of 1024
 * (with deep local leases, 20,000 unpinned tasks in the soft-RoCE VM all stayed on rank 0). */
#define LEASE_DEPTH_MAX 1024
#define DEPTH_WINDOW_NS 2000000ull
#define DEPTH_TICK_NS 4000000ull

static void lease_adapt(struct rt *rt, struct lease *l, uint64_t now)
{
    if (l->rank == rt->rank)
        return; /* no round trip to cover: a shallow local lease spills sooner */
    uint64_t dt = now - l->rate_since;
    if (dt < DEPTH_TICK_NS)
        return;
    uint64_t want = (uint64_t)l->done * DEPTH_WINDOW_NS / dt;
    if (want < rt->lease_depth)
        want = rt->lease_depth;
    if (want > LEASE_DEPTH_MAX)
        want = LEASE_DEPTH_MAX;
    l->depth = (uint32_t)want;
    l->q->depth_hint = l->depth;
    l->done = 0;
    l->rate_since = now;
}

int lease_init(struct rt *rt)
{
    struct leases *L = calloc(1, sizeof(*L));
    if (L == NULL)
        return DEED_ERR_NO_MEMORY;
    /* last_used is stamped with the coarse clock (one tick, 1-4 ms): a lease stamped late in
     * tick T looks a whole tick older at T+1. Without the extra tick, a lease used a few
     * microseconds ago was returned as idle at a tick boundary (between two waves of tasks),
     * and the next wave waited for a new grant and started again at the minimum depth:
     * the remote benchmark was capped at one window per 4 ms tick (2.5 M tasks/s). */
    struct timespec res;
    uint64_t tick = clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0
                        ? (uint64_t)res.tv_sec * 1000000000ull + (uint64_t)res.tv_nsec
                        : 10000000ull;
    L->idle_ns = (uint64_t)rt->lease_idle_us * 1000ull + tick;
    L->granted_to = calloc(rt->nranks, sizeof(*L->granted_to));
    if (L->granted_to == NULL) {
        free(L);
        return DEED_ERR_NO_MEMORY;
    }
    rt->leases = L;
    return DEED_OK;
}

void lease_fini(struct rt *rt)
{
    struct leases *L = rt->leases;
    if (L == NULL)
        return;
    for (int b = 0; b < KEY_BUCKETS; b++) {
        struct keyq *q, *qn;
        for (q = L->keys[b]; q; q = qn) {
            qn = q->next;
            struct lease *l, *ln;
            for (l = q->leases; l; l = ln) {
                ln = l->next;
                free(l);
            }
            free(q);
        }
    }
    free(L->granted_to);
    free(L);
    rt->leases = NULL;
}

/* Any lease held (a hint read without the combiner: the loop thread's sleep length). */
int lease_held(struct rt *rt)
{
    return rt->leases && __atomic_load_n(&rt->leases->held, __ATOMIC_RELAXED) > 0;
}

void lease_stats(struct rt *rt, deed_stats_t *s)
{
    struct leases *L = rt->leases;
    if (L == NULL)
        return;
    s->leases_held = L->held;
    s->leases_held_peak = L->held_peak;
    s->leases_granted = L->granted;
    s->leases_requested = L->requested;
    s->leases_spilled = L->spilled;
}

uint32_t lease_free_slots(struct rt *rt)
{
    struct leases *L = rt->leases;
    return L->granted < rt->sched.nslots ? rt->sched.nslots - L->granted : 0;
}

/* ---- scheduler side ------------------------------------------------------------------------ */

/* Decide on a request: 1 = granted (*id set), 0 = spilled to *spill. */
static int sched_decide(struct rt *rt, uint32_t owner, uint8_t flags, uint32_t *id,
                        uint32_t *spill)
{
    struct leases *L = rt->leases;
    if (L->granted >= rt->sched.nslots && !(flags & (LREQ_FINAL | LREQ_PINNED))) {
        uint32_t best = rt->rank, best_free = 0;
        /* every other rank once, starting at a rotating one (ties spread); the rotation
         * used to be (rank + k + rr) % nranks, which can land on this rank and skip a
         * peer: about half the spills were granted here */
        for (uint32_t k = 0; k + 1 < rt->nranks; k++) {
            uint32_t p = (rt->rank + 1 + (k + rt->place_rr) % (rt->nranks - 1)) % rt->nranks;
            struct peer *pe = &rt->peers[p];
            if (pe->dead)
                continue;
            uint32_t fr = pe->load_free;
            if (fr > best_free) {
                best_free = fr;
                best = p;
            }
        }
        rt->place_rr++;
        if (best != rt->rank) {
            *spill = best;
            L->spilled++;
            return 0;
        }
    }
    L->granted++;
    L->granted_to[owner]++;
    *id = ++L->next_id;
    return 1;
}

static int on_lease_req(struct rt *rt, uint32_t src, struct rbuf *r)
{
    uint64_t key = rbuf_u64(r);
    uint32_t req = rbuf_u32(r);
    uint8_t flags = rbuf_u8(r);
    if (r->err)
        return -1;
    uint32_t id = 0, spill = 0;
    if (sched_decide(rt, src, flags, &id, &spill)) {
        struct wbuf *w = net_msg(rt, src, WT_LEASE_GRANT);
        wbuf_u64(w, key);
        wbuf_u32(w, req);
        wbuf_u32(w, id);
        net_msg_end(rt, src);
    } else {
        struct wbuf *w = net_msg(rt, src, WT_LEASE_SPILL);
        wbuf_u64(w, key);
        wbuf_u32(w, req);
        wbuf_u32(w, spill);
        net_msg_end(rt, src);
    }
    return 0;
}

static int on_lease_return(struct rt *rt, uint32_t src, struct rbuf *r)
{
    uint32_t id = rbuf_u32(r);
    if (r->err)
        return -1;
    (void)id;
    if (rt->leases->granted)
        rt->leases->granted--;
    if (rt->leases->granted_to[src])
        rt->leases->granted_to[src]--;
    return 0;
}

/* ---- owner side ---------------------------------------------------------------------------- */

static struct keyq *keyq_get(struct rt *rt, uint64_t key, int32_t target, uint8_t pinned)
{
    struct leases *L = rt->leases;
    if (L->last_q && L->last_q->key == key)
        return L->last_q; /* a stream of tasks of one key: the common case */
    struct keyq **pp = &L->keys[key & (KEY_BUCKETS - 1)];
    for (struct keyq *q = *pp; q; q = q->next)
        if (q->key == key)
            return L->last_q = q;
    struct keyq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->key = key;
    q->target = target;
    q->pinned = pinned;
    q->next = *pp;
    *pp = q;
    return L->last_q = q;
}

static void request_lease(struct rt *rt, struct keyq *q, uint32_t to, uint8_t flags);

/* The ring of leases with room: a task goes to the head, which then moves to the tail, so
 * consecutive tasks spread over the leases (different ranks or worker slots) in O(1). */
static void avail_add(struct keyq *q, struct lease *l)
{
    if (l->in_avail)
        return;
    l->in_avail = 1;
    if (q->avail == NULL) {
        l->anext = l->aprev = l;
        q->avail = l;
        return;
    }
    struct lease *h = q->avail; /* insert before the head = at the tail */
    l->anext = h;
    l->aprev = h->aprev;
    h->aprev->anext = l;
    h->aprev = l;
}

static void avail_del(struct keyq *q, struct lease *l)
{
    if (!l->in_avail)
        return;
    l->in_avail = 0;
    if (l->anext == l) {
        q->avail = NULL;
    } else {
        l->aprev->anext = l->anext;
        l->anext->aprev = l->aprev;
        if (q->avail == l)
            q->avail = l->anext;
    }
    l->anext = l->aprev = NULL;
}

/* How many leases one key may hold. A key pinned to (or aimed at) one rank: one per worker
 * slot there (the ranks of a job run the same number of workers; more leases than slots add
 * no parallelism, only tasks in flight); a key that runs anywhere: one per slot of the job.
 * Before this bound, a queue longer than the leases' room asked for one more lease every
 * time it found them full, and a pinned target grants every request: a 2-rank benchmark
 * held 146 leases and scanned them for every task (half of the owner's time). */
static uint32_t lease_cap(struct rt *rt, const struct keyq *q)
{
    uint32_t slots = rt->sched.nslots ? rt->sched.nslots : 1;
    return q->target >= 0 ? slots : rt->nranks * slots;
}

/* Ask for one more lease when tasks wait, none of the leases has room, no request is out
 * and the key is below its bound. */
static void maybe_request(struct rt *rt, struct keyq *q)
{
    if (q->head == NULL || q->avail != NULL || q->requests != 0 || q->nleases >= lease_cap(rt, q))
        return;
    uint32_t to = q->target >= 0 ? (uint32_t)q->target : rt->rank;
    request_lease(rt, q, to, q->target >= 0 ? LREQ_FINAL | (q->pinned ? LREQ_PINNED : 0) : 0);
}

static void add_lease(struct rt *rt, struct keyq *q, uint32_t rank, uint32_t id)
{
    struct lease *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        log_error("lease: out of memory; returning the lease of rank %u", rank);
        return;
    }
    l->q = q;
    l->rank = rank;
    l->id = id;
    l->depth = rank != rt->rank && q->depth_hint > rt->lease_depth ? q->depth_hint
                                                                    : rt->lease_depth;
    l->last_used = rt->now_coarse;
    l->rate_since = l->last_used;
    l->next = q->leases;
    q->leases = l;
    q->nleases++;
    avail_add(q, l);
    if (++rt->leases->held > rt->leases->held_peak)
        rt->leases->held_peak = rt->leases->held;
}

static void lease_dispatch(struct rt *rt, struct keyq *q);

static void request_lease(struct rt *rt, struct keyq *q, uint32_t to, uint8_t flags)
{
    q->requests++;
    rt->leases->requested++;
    if (to == rt->rank) {
        uint32_t id, spill;
        q->requests--;
        if (sched_decide(rt, rt->rank, flags, &id, &spill)) {
            add_lease(rt, q, rt->rank, id);
        } else {
            request_lease(rt, q, spill, flags | LREQ_FINAL);
            return;
        }
        lease_dispatch(rt, q);
        return;
    }
    q->req_to = to;
    struct wbuf *w = net_msg(rt, to, WT_LEASE_REQ);
    wbuf_u64(w, q->key);
    wbuf_u32(w, ++rt->leases->next_req);
    wbuf_u8(w, flags);
    net_msg_end(rt, to);
}

static int on_lease_grant(struct rt *rt, uint32_t src, struct rbuf *r)
{
    uint64_t key = rbuf_u64(r);
    uint32_t req = rbuf_u32(r), id = rbuf_u32(r);
    (void)req;
    if (r->err)
        return -1;
    struct keyq *q = keyq_get(rt, key, -1, 0);
    if (q == NULL)
        return -1;
    if (q->requests)
        q->requests--;
    add_lease(rt, q, src, id);
    lease_dispatch(rt, q);
    return 0;
}

static int on_lease_spill(struct rt *rt, uint32_t src, struct rbuf *r)
{
    uint64_t key = rbuf_u64(r);
    uint32_t req = rbuf_u32(r), to = rbuf_u32(r);
    (void)req;
    if (r->err || to >= rt->nranks)
        return -1;
    struct keyq *q = keyq_get(rt, key, -1, 0);
    if (q == NULL)
        return -1;
    if (q->requests)
        q->requests--;
    request_lease(rt, q, rt->peers[to].dead ? rt->rank : to, LREQ_FINAL);
    return 0;
}

static void return_lease(struct rt *rt, struct keyq *q, struct lease *l)
{
    struct lease **pp = &q->leases;
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    avail_del(q, l);
    q->nleases--;
    rt->leases->held--;
    if (l->rank == rt->rank) {
        if (rt->leases->granted)
            rt->leases->granted--;
        if (rt->leases->granted_to[rt->rank])
            rt->leases->granted_to[rt->rank]--;
    } else if (!rt->peers[l->rank].dead) {
        struct wbuf *w = net_msg(rt, l->rank, WT_LEASE_RETURN);
        wbuf_u32(w, l->id);
        net_msg_end(rt, l->rank);
        /* that rank has a slot more now: an idle rank sends nothing that would say so,
         * and a view stuck at 0 free slots kept every spill away from it */
        if (rt->peers[l->rank].load_free < UINT16_MAX)
            rt->peers[l->rank].load_free++;
    }
    free(l);
}

static void lease_dispatch(struct rt *rt, struct keyq *q)
{
    while (q->head) {
        struct lease *best = q->avail;
        if (best == NULL) {
            uint32_t before = q->nleases;
            maybe_request(rt, q);
            if (q->avail != NULL || q->nleases != before)
                continue; /* a local grant arrived synchronously */
            return;       /* the tasks wait for room in a lease, or for a grant */
        }
        struct task *t = q->head;
        q->head = t->qnext;
        if (q->head == NULL)
            q->tail = NULL;
        q->queued--;
        best->inflight++;
        if (best->inflight >= best->depth)
            avail_del(q, best);
        else
            q->avail = best->anext; /* round-robin: the next task tries the next lease */
        best->last_used = rt->now_coarse;
        t->lease = best;
        t->placed = 1;
        t->exec_rank = best->rank;
        if (best->rank == rt->rank) {
            task_run_here(rt, t);
        } else if (remote_push(rt, t, best->rank, best->id) != 0) {
            /* an argument lost its last copy since the task was resolved: re-create it,
             * then place the task again */
            best->inflight--;
            avail_add(q, best);
            t->lease = NULL;
            t->placed = 0;
            task_resolve_deps(rt, t);
        }
    }
}

int lease_enqueue(struct rt *rt, struct task *t)
{
    int32_t target = -1;
    uint8_t pinned = 0;
    if (t->want_rank >= 0 && (uint32_t)t->want_rank < rt->nranks &&
        !rt->peers[t->want_rank].dead) {
        target = t->want_rank;
        pinned = 1;
    } else {
        int32_t loc = remote_locality(rt, t);
        if (loc >= 0 && (uint32_t)loc != rt->rank)
            target = loc;
    }
    uint64_t key = t->fid * 0x9E3779B97F4A7C15ull ^ (uint64_t)(target + 2) * 0xD6E8FEB86659FD93ull;
    struct keyq *q = keyq_get(rt, key, target, pinned);
    if (q == NULL)
        return -1;
    t->qnext = NULL;
    if (q->tail)
        q->tail->qnext = t;
    else
        q->head = t;
    q->tail = t;
    q->queued++;
    lease_dispatch(rt, q);
    return 0;
}

void lease_task_done(struct rt *rt, struct task *t)
{
    struct lease *l = t->lease;
    if (l == NULL)
        return;
    t->lease = NULL;
    if (l->inflight)
        l->inflight--;
    l->done++;
    l->last_used = rt->now_coarse;
    lease_adapt(rt, l, l->last_used);
    if (l->inflight < l->depth)
        avail_add(l->q, l);
    if (l->q->head)
        lease_dispatch(rt, l->q);
}

/* Return leases idle for longer than the idle time (called every loop pass; cheap). */
void lease_expire(struct rt *rt)
{
    struct leases *L = rt->leases;
    if (L == NULL || L->held == 0)
        return;
    uint64_t now = rt->now_coarse;
    if (now - L->last_scan < L->idle_ns / 4)
        return;
    L->last_scan = now;
    for (int b = 0; b < KEY_BUCKETS; b++)
        for (struct keyq *q = L->keys[b]; q; q = q->next) {
            struct lease *l = q->leases, *ln;
            for (; l; l = ln) {
                ln = l->next;
                if (l->inflight == 0 && q->head == NULL && now - l->last_used >= L->idle_ns)
                    return_lease(rt, q, l);
            }
        }
}

/* Rank d died: leases on d are gone (their tasks are re-submitted by member_apply), and the
 * leases of this rank that d held come back. */
void lease_on_death(struct rt *rt, uint32_t d)
{
    struct leases *L = rt->leases;
    if (L == NULL)
        return;
    for (int b = 0; b < KEY_BUCKETS; b++)
        for (struct keyq *q = L->keys[b]; q; q = q->next) {
            struct lease **pp = &q->leases;
            while (*pp) {
                struct lease *l = *pp;
                if (l->rank == d) {
                    *pp = l->next;
                    avail_del(q, l);
                    q->nleases--;
                    L->held--;
                    free(l);
                } else {
                    pp = &l->next;
                }
            }
            /* a request to d will never be answered; tasks for d go anywhere now */
            if (q->requests && q->req_to == d)
                q->requests = 0;
            if (q->target == (int32_t)d) {
                q->target = -1;
                q->pinned = 0;
            }
        }
    /* place what was queued (their keys may still say d: the queue itself moved on) */
    for (int b = 0; b < KEY_BUCKETS; b++)
        for (struct keyq *q = L->keys[b]; q; q = q->next)
            if (q->head)
                lease_dispatch(rt, q);
    if (L->granted_to) {
        L->granted -= L->granted_to[d] < L->granted ? L->granted_to[d] : L->granted;
        L->granted_to[d] = 0;
    }
}

int lease_dispatch_msg(struct rt *rt, uint32_t src, uint16_t type, struct rbuf *body)
{
    switch (type) {
    case WT_LEASE_REQ: return on_lease_req(rt, src, body);
    case WT_LEASE_GRANT: return on_lease_grant(rt, src, body);
    case WT_LEASE_SPILL: return on_lease_spill(rt, src, body);
    case WT_LEASE_RETURN: return on_lease_return(rt, src, body);
    default: return -1;
    }
}
