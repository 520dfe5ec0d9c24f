/*
 * member.c — membership and failure handling (design §8). Loop thread (combiner) only,
 * except member_suspect_async (any thread, e.g. the loop thread's epoll).
 *
 * Detection, on every rank:
 *   - same-host peers: a pidfd per peer (PIDs and hosts are exchanged at start) fires the
 *     instant the process exits — UCX never reports a dead shared-memory peer;
 *   - transport peer errors (tcp, RDMA);
 *   - heartbeats: every rank and rank 0 exchange a small message every heartbeat period
 *     (any batch counts); silence longer than the timeout makes the peer suspect.
 * Decision: rank 0 alone declares a rank dead: it bumps the membership epoch and announces
 * MEMBER_DEAD to every live rank; other ranks report suspects to it (MEMBER_SUSPECT). From
 * then on every rank ignores the dead rank's messages (fencing) and repairs its state
 * (member_apply): tasks that were running there are re-submitted by their owners (up to
 * their retry limit), refs owned by the dead rank fail with DEED_ERR_OWNER_DIED (waking any
 * get or wait on them), copies held for it are dropped, it stops counting as a borrower, and
 * objects whose only copy it held are lost (DEED_ERR_OBJECT_LOST).
 * Rank 0's death ends the job: every rank exits with a message naming the cause.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "registry.h"
#include "rt.h"

struct member {
    uint32_t epoch;
    uint8_t *dead;            /* declared dead */
    uint8_t *reported;        /* suspicion already reported to rank 0 */
    _Atomic uint8_t *suspect; /* detected locally (any thread) */
    int *pidfd;               /* same-host peers, -1 otherwise */
    uint64_t *last_heard;     /* heartbeat bookkeeping */
    uint64_t *last_sent;
    uint64_t period_ns, timeout_ns;
    uint64_t last_check;
    _Atomic int any_suspect;
    /* finalize rounds: rank 0 collects FIN_ENTER from every live rank, then sends FIN_GO */
    uint32_t fin_round;       /* round this rank waits in (0 = none) */
    uint8_t *fin_entered;     /* rank 0: entered the current round */
    uint32_t fin_go;          /* last round released */
    struct req *fin_req;      /* the waiting deed_finalize */
};

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int member_init(struct rt *rt, const uint32_t *pids, const uint64_t *hosts)
{
    struct member *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return DEED_ERR_NO_MEMORY;
    rt->member = m;
    m->dead = calloc(rt->nranks, 1);
    m->reported = calloc(rt->nranks, 1);
    m->suspect = calloc(rt->nranks, 1);
    m->pidfd = malloc(rt->nranks * sizeof(int));
    m->last_heard = calloc(rt->nranks, sizeof(uint64_t));
    m->last_sent = calloc(rt->nranks, sizeof(uint64_t));
    m->fin_entered = calloc(rt->nranks, 1);
    if (!m->dead || !m->reported || !m->suspect || !m->pidfd || !m->last_heard ||
        !m->last_sent || !m->fin_entered)
        return DEED_ERR_NO_MEMORY;
    m->period_ns = (uint64_t)rt->heartbeat_ms * 1000000ull;
    m->timeout_ns = (uint64_t)rt->heartbeat_timeout_ms * 1000000ull;
    uint64_t now = now_coarse_ns();
    rt->now_coarse = now;
    int same_host = 0;
    for (uint32_t r = 0; r < rt->nranks; r++) {
        m->pidfd[r] = -1;
        m->last_heard[r] = now;
        if (r == rt->rank || hosts[r] != hosts[rt->rank])
            continue;
        m->pidfd[r] = pidfd_open_((pid_t)pids[r]);
        if (m->pidfd[r] < 0)
            log_warn("member: no pidfd for rank %u (pid %u): %s; its death is detected by "
                     "heartbeats only",
                     r, pids[r], strerror(errno));
        else
            same_host++;
    }
    log_debug("member: watching %d same-host ranks through pidfds", same_host);
    return DEED_OK;
}

void member_fini(struct rt *rt)
{
    struct member *m = rt->member;
    if (m == NULL)
        return;
    for (uint32_t r = 0; m->pidfd && r < rt->nranks; r++)
        if (m->pidfd[r] >= 0)
            close(m->pidfd[r]);
    free(m->dead);
    free(m->reported);
    free((void *)m->suspect);
    free(m->pidfd);
    free(m->last_heard);
    free(m->last_sent);
    free(m->fin_entered);
    free(m);
    rt->member = NULL;
}

void member_mark_dead(struct rt *rt, uint32_t d)
{
    struct member *m = rt->member;
    m->dead[d] = 1;
    if (m->pidfd[d] >= 0) {
        close(m->pidfd[d]);
        m->pidfd[d] = -1;
    }
}

int member_is_dead(struct rt *rt, uint32_t r)
{
    return rt->member && r < rt->nranks && rt->member->dead[r];
}

/* Any thread: rank r looks dead (transport error, pidfd, ...). Handled by the combiner. */
void member_suspect_async(struct rt *rt, uint32_t r)
{
    struct member *m = rt->member;
    if (m == NULL || r >= rt->nranks || r == rt->rank)
        return;
    atomic_store(&m->suspect[r], 1);
    atomic_store(&m->any_suspect, 1);
}

/* ---- finalize rounds (a barrier over the transport that skips dead ranks) ------------------ */

static void fin_release(struct rt *rt, uint32_t round)
{
    struct member *m = rt->member;
    m->fin_go = round;
    if (m->fin_req && m->fin_round == round) {
        struct req *q = m->fin_req;
        m->fin_req = NULL;
        m->fin_round = 0;
        completion_signal(&q->done);
    }
}

/* Rank 0: release the round once every live rank entered it. */
static void fin_check(struct rt *rt)
{
    struct member *m = rt->member;
    if (rt->rank != 0 || m->fin_round == 0)
        return;
    for (uint32_t r = 0; r < rt->nranks; r++)
        if (!m->dead[r] && !m->fin_entered[r])
            return;
    uint32_t round = m->fin_round;
    memset(m->fin_entered, 0, rt->nranks);
    for (uint32_t r = 1; r < rt->nranks; r++) {
        if (m->dead[r])
            continue;
        struct wbuf *w = net_msg(rt, r, WT_FIN_GO);
        wbuf_u32(w, round);
        net_msg_end(rt, r);
    }
    fin_release(rt, round);
}

/* Loop side of deed_finalize's rounds: r->n carries the round number. */
void member_fin_enter(struct rt *rt, struct req *r)
{
    struct member *m = rt->member;
    m->fin_round = r->n;
    m->fin_req = r;
    if (m->fin_go >= r->n) {
        fin_release(rt, r->n);
        return;
    }
    if (rt->rank == 0) {
        m->fin_entered[0] = 1;
        fin_check(rt);
    } else {
        struct wbuf *w = net_msg(rt, 0, WT_FIN_ENTER);
        wbuf_u32(w, r->n);
        net_msg_end(rt, 0);
    }
}

static void rank0_died(struct rt *rt, const char *how)
{
    if (atomic_load(&rt->finalizing))
        return;
    log_error("rank 0 died (%s); the job cannot continue without it (rank 0 hosts the job's "
              "membership): exiting",
              how);
    _exit(3);
}

static void declare(struct rt *rt, uint32_t d);

static void suspect(struct rt *rt, uint32_t d, const char *how)
{
    struct member *m = rt->member;
    if (m->dead[d])
        return;
    if (atomic_load(&rt->finalizing)) {
        /* Past finalize's first round every task is done: a rank that goes now (it
         * finished, or it died) needs no repair, but it must not hold up the second round.
         * Before, its death was ignored here and the others waited for its FIN_ENTER
         * forever (a soak job killed in that window hung in deed_finalize). */
        if (rt->rank == 0) {
            m->dead[d] = 1;
            if (m->pidfd[d] >= 0) {
                close(m->pidfd[d]);
                m->pidfd[d] = -1;
            }
            log_debug("member: rank %u left during finalize (%s)", d, how);
            fin_check(rt);
        } else if (d == 0 && m->fin_req) {
            log_debug("member: rank 0 left during finalize (%s)", how);
            fin_release(rt, m->fin_round); /* nobody is left to release this round */
        }
        return;
    }
    if (d == 0) {
        rank0_died(rt, how);
        return;
    }
    if (rt->rank == 0) {
        log_warn("member: rank %u is dead (%s)", d, how);
        declare(rt, d);
    } else if (!m->reported[d]) {
        m->reported[d] = 1;
        log_info("member: rank %u looks dead (%s); reporting to rank 0", d, how);
        struct wbuf *w = net_msg(rt, 0, WT_MEMBER_SUSPECT);
        wbuf_u32(w, d);
        net_msg_end(rt, 0);
    }
}

/* Rank 0: d is dead under a new epoch; tell everyone, then repair locally. */
static void declare(struct rt *rt, uint32_t d)
{
    struct member *m = rt->member;
    m->epoch++;
    for (uint32_t r = 1; r < rt->nranks; r++) {
        if (r == d || m->dead[r])
            continue;
        struct wbuf *w = net_msg(rt, r, WT_MEMBER_DEAD);
        wbuf_u32(w, d);
        wbuf_u32(w, m->epoch);
        net_msg_end(rt, r);
    }
    member_apply(rt, d);
    fin_check(rt); /* a rank that died cannot hold up finalize */
}

int member_dispatch(struct rt *rt, uint32_t src, uint16_t type, struct rbuf *r)
{
    struct member *m = rt->member;
    switch (type) {
    case WT_MEMBER_SUSPECT: {
        uint32_t d = rbuf_u32(r);
        if (r->err || d >= rt->nranks || rt->rank != 0)
            return -1;
        suspect(rt, d, "reported by a peer");
        return 0;
    }
    case WT_MEMBER_DEAD: {
        uint32_t d = rbuf_u32(r), epoch = rbuf_u32(r);
        if (r->err || d >= rt->nranks || src != 0)
            return -1;
        if (epoch > m->epoch)
            m->epoch = epoch;
        if (d == rt->rank) {
            log_error("rank 0 declared this rank dead (epoch %u); exiting", epoch);
            _exit(3);
        }
        if (!m->dead[d]) {
            log_warn("member: rank %u declared dead by rank 0 (epoch %u)", d, epoch);
            member_apply(rt, d);
        }
        return 0;
    }
    case WT_HEARTBEAT:
        return 0; /* hearing anything is the point: see member_heard */
    case WT_FIN_ENTER: {
        uint32_t round = rbuf_u32(r);
        if (r->err || rt->rank != 0)
            return -1;
        m->fin_entered[src] = 1;
        if (m->fin_round == 0)
            m->fin_round = round; /* rank 0 enters when its own driver gets there */
        fin_check(rt);
        return 0;
    }
    case WT_FIN_GO: {
        uint32_t round = rbuf_u32(r);
        if (r->err || src != 0)
            return -1;
        fin_release(rt, round);
        return 0;
    }
    default:
        return -1;
    }
}

void member_heard(struct rt *rt, uint32_t src)
{
    if (rt->member)
        rt->member->last_heard[src] = rt->now_coarse;
}

void member_sent(struct rt *rt, uint32_t dst)
{
    if (rt->member)
        rt->member->last_sent[dst] = rt->now_coarse;
}

/* Every combiner pass (cheap: rate-limited): process suspicions, poll pidfds, heartbeats. */
void member_poll(struct rt *rt)
{
    struct member *m = rt->member;
    if (m == NULL)
        return;
    if (atomic_exchange(&m->any_suspect, 0))
        for (uint32_t r = 0; r < rt->nranks; r++)
            if (atomic_exchange(&m->suspect[r], 0))
                suspect(rt, r, "its connection failed");
    uint64_t now = rt->now_coarse;
    if (now - m->last_check < 1000000ull) /* 1 ms */
        return;
    m->last_check = now;
    for (uint32_t r = 0; r < rt->nranks; r++) {
        if (m->pidfd[r] < 0 || m->dead[r])
            continue;
        struct pollfd p = {m->pidfd[r], POLLIN, 0};
        if (poll(&p, 1, 0) > 0) {
            close(m->pidfd[r]);
            m->pidfd[r] = -1;
            suspect(rt, r, "its process exited");
        }
    }
    if (atomic_load(&rt->finalizing))
        return;
    /* heartbeats: ranks <-> rank 0 */
    for (uint32_t r = 0; r < rt->nranks; r++) {
        if (r == rt->rank || m->dead[r] || (rt->rank != 0 && r != 0))
            continue;
        if (now - m->last_sent[r] >= m->period_ns) {
            (void)net_msg(rt, r, WT_HEARTBEAT); /* empty body */
            net_msg_end(rt, r);
        }
        if (m->timeout_ns && now - m->last_heard[r] > m->timeout_ns) {
            m->last_heard[r] = now;
            suspect(rt, r, "no heartbeat within DEED_HEARTBEAT_TIMEOUT_MS");
        }
    }
}

/* All pidfds, for the loop thread's epoll set. */
int member_pidfd(struct rt *rt, uint32_t r)
{
    return rt->member ? rt->member->pidfd[r] : -1;
}
