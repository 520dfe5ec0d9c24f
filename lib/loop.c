/*
 * loop.c — the rank's event loop (design §2), run by flat combining.
 *
 * All runtime state is owned by "the loop": a single-threaded state machine fed by messages.
 * The guide runs it on one dedicated thread; measured on a 2-core machine, every hand-off to
 * a sleeping thread costs ~3 us (futex wake) and four spinning threads starve each other, so
 * a task cost 4 hand-offs and 30-150 us. Here the state machine runs on whichever thread
 * holds the combiner flag: a thread that posts a message pushes it into the MPSC inbox and
 * then tries to become the combiner; the combiner drains the inbox (everyone's messages, in
 * order), dispatches each to its handler, hands ready tasks to the workers, and before
 * leaving re-checks the inbox (Dekker handshake with posters), so no message is stranded.
 * Handlers never run user code and never post messages, so the state machine is still
 * strictly single-threaded: one lock around the core, none inside it.
 *
 * The dedicated loop thread remains for what needs a thread of its own: it sleeps in epoll
 * on an eventfd plus the transport's fd, progresses the transport, and takes over when a
 * combiner gives up on a poster that is stuck between its push and its link.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "rt.h"
#include "transport.h"

static void dispatch(struct rt *rt, struct msg *m);

/* Batching across passes. A pass ends by sending one batch per destination; a thread that
 * posts one message per pass (a driver submitting in a loop, a worker reporting each task
 * done) sent one batch per task that way (the remote benchmark: 310,000 reply batches for
 * 310,000 tasks), and the receiver paid a message's overhead per task. So a pass may leave
 * its batches open, for at most DEFER_NS after the first pass that did so, when more is
 * about to be added to them:
 *   - its poster will be back soon (loop_post_defer: a submitter, a worker with tasks left);
 *   - tasks wait in the ready ring here (their "done" replies follow), unless the pass is a
 *     waiting thread's (deed_get, deed_wait, an idle worker: loop_poll): it flushes, since
 *     what it waits for may need what the batches carry.
 * The loop thread must not sleep on open batches: loop_sleep re-checks net_deferred after
 * announcing its sleep, and a deferring pass wakes a loop thread that announced it (both
 * sides seq_cst: one sees the other); a napping one comes back within LOOP_NAP_NS anyway.
 * So open batches go out within DEFER_NS while passes go on, and within the loop thread's
 * nap (at most LOOP_NAP_MAX_NS, 200 us) when their poster then stops driving the loop.
 * Measured (2 ranks, shm, empty tasks): replies 1 batch per task -> ~45 tasks per batch. */
#define DEFER_NS 20000
#define LOOP_NAP_NS 50000
#define LOOP_NAP_MAX_NS 200000
enum { LOOP_AWAKE, LOOP_SLEEP, LOOP_NAP };
enum { PASS_PLAIN, PASS_DEFER, PASS_FLUSH };
static DEED_TLS int tl_pass;
static DEED_TLS int tl_is_loop;

static void pass_flush(struct rt *rt)
{
    if (rt->net_ndirty == 0)
        return;
    if (tl_pass != PASS_FLUSH && (tl_pass == PASS_DEFER || ring_nonempty(&rt->sched.ready))) {
        if (!atomic_load_explicit(&rt->net_deferred, memory_order_relaxed)) {
            rt->net_defer_since = now_ns();
            rt->net_defer_passes = 0;
            atomic_store_explicit(&rt->net_deferred, 1, memory_order_seq_cst);
            return;
        }
        /* the clock every 8th pass (a pass takes ~0.3 us or more) */
        if ((++rt->net_defer_passes & 7) != 0 || now_ns() - rt->net_defer_since < DEFER_NS)
            return;
    }
    net_flush(rt);
}

static inline int combiner_try(struct rt *rt)
{
    return atomic_load_explicit(&rt->combiner, memory_order_relaxed) == 0 &&
           atomic_exchange_explicit(&rt->combiner, 1, memory_order_acquire) == 0;
}

static void loop_wake_thread(struct rt *rt)
{
    if (atomic_exchange_explicit(&rt->loop_sleeping, 0, memory_order_seq_cst)) {
        uint64_t one = 1;
        ssize_t w = write(rt->efd, &one, sizeof(one));
        (void)w;
    }
}

/* Drain the inbox as the combiner, then leave; re-enter while messages keep arriving. */
static void combine(struct rt *rt)
{
    unsigned fruitless = 0;
    if (!tl_is_loop)
        atomic_store_explicit(&rt->passes, atomic_load_explicit(&rt->passes, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    for (;;) {
        unsigned n = 0;
        struct mpsc_node *node;
        if (rt->nranks > 1)
            rt->now_coarse = now_coarse_ns(); /* the pass's clock (leases, heartbeats) */
        while ((node = mpsc_pop(&rt->inbox)) != NULL) {
            dispatch(rt, (struct msg *)node);
            if ((++n & 255) == 0)
                sched_flush(rt);
        }
        sched_flush(rt);
        /* A submitter's pass inside a deferral episode (its batches are open anyway, and
         * something will send them: see pass_flush) skips the network three times in
         * four: progress, housekeeping and flush cost more than the submit itself. */
        int light = tl_pass == PASS_DEFER &&
                    atomic_load_explicit(&rt->net_deferred, memory_order_relaxed) &&
                    (++rt->light_passes & 3) != 0;
        if (rt->nranks > 1 && !light) {
            if (rt->tp_ops->progress(rt->tp) > 0)
                n++;
            remote_poll(rt);
            lease_expire(rt);
            member_poll(rt);
            sched_flush(rt);
            pass_flush(rt); /* one batch per destination per pass, or per few passes */
        }
        atomic_store_explicit(&rt->combiner, 0, memory_order_release);
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&rt->net_deferred, memory_order_relaxed) &&
            atomic_load_explicit(&rt->loop_sleeping, memory_order_relaxed) == LOOP_SLEEP)
            loop_wake_thread(rt);
        if (mpsc_empty(&rt->inbox))
            return;
        if (n == 0 && ++fruitless > 64) {
            /* a poster is preempted between its push and its link: it will combine itself
             * once it resumes; the loop thread covers the case where it cannot */
            loop_wake_thread(rt);
            return;
        }
        if (!combiner_try(rt))
            return; /* the new combiner will see our messages */
    }
}

/* A thread that is waiting anyway (a getter, an idle worker) drives the loop: incoming
 * messages are handled by it rather than by waking the loop thread (~25 us per wake-up on
 * an oversubscribed machine). */
void loop_poll(void *arg)
{
    struct rt *rt = arg;
    if (rt->nranks > 1 && combiner_try(rt)) {
        int outer = tl_pass;
        tl_pass = PASS_FLUSH;
        combine(rt);
        tl_pass = outer;
    }
}

void loop_rest(void *arg)
{
    struct rt *rt = arg;
    /* Dekker with loop_sleep_ns: count the rest, then look; the loop thread announces its
     * nap, then looks at the count. Either it sees the rest and does not nap, or this sees
     * the nap and wakes it (a nap begun just after a driver's last look lasted up to 200 us
     * with nobody watching the network: the 285 us maxima of the sync benchmark). */
    atomic_fetch_add_explicit(&rt->rests, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&rt->loop_sleeping, memory_order_seq_cst) == LOOP_NAP)
        loop_wake_thread(rt);
}

void loop_post(struct rt *rt, struct msg *m)
{
    if (combiner_try(rt)) {
        /* messages posted before ours go first (causality), then ours, straight. A pop
         * also returns NULL while some poster is between its exchange and its link: then
         * messages may still sit behind that one (even this thread's own earlier ones), so
         * ours must queue behind them instead of overtaking */
        struct mpsc_node *node;
        while ((node = mpsc_pop(&rt->inbox)) != NULL)
            dispatch(rt, (struct msg *)node);
        if (mpsc_empty(&rt->inbox))
            dispatch(rt, m);
        else
            mpsc_push(&rt->inbox, &m->node);
        combine(rt);
        return;
    }
    mpsc_push(&rt->inbox, &m->node);
    atomic_thread_fence(memory_order_seq_cst);
    if (combiner_try(rt))
        combine(rt);
}

void loop_post_defer(struct rt *rt, struct msg *m)
{
    tl_pass = PASS_DEFER;
    loop_post(rt, m);
    tl_pass = PASS_PLAIN;
}

static void release_one(struct rt *rt, deed_ref_t ref)
{
    struct obj *o = owner_find(rt, ref);
    if (o == NULL || o->local_refs == 0) {
        rt->st.misuse++;
        log_warn("deed_ref_release: ref %016llx%016llx:%u is released or unknown (double "
                 "release?)",
                 (unsigned long long)ref.id_hi, (unsigned long long)ref.id_lo, ref.index);
    } else {
        o->local_refs--;
        owner_maybe_free(rt, o);
    }
}

static void on_release(struct rt *rt, struct ref_msg *m)
{
    release_one(rt, m->ref);
    free(m);
}

static void on_release_n(struct rt *rt, struct release_msg *m)
{
    for (uint32_t i = 0; i < m->n; i++)
        release_one(rt, m->refs[i]);
    free(m);
}

static void on_hold(struct rt *rt, struct ref_msg *m)
{
    struct obj *o = owner_find(rt, m->ref);
    if (o == NULL) {
        rt->st.misuse++;
        log_warn("a returned object contains a released or unknown ref");
    } else {
        o->local_refs++;
    }
    free(m);
}

static void on_unpin(struct rt *rt, struct ref_msg *m)
{
    struct obj *o = m->row;
    o->pins--;
    owner_maybe_free(rt, o);
    free(m);
}

static void on_dup(struct rt *rt, struct req *r)
{
    struct obj *o = owner_find(rt, r->ref);
    if (o == NULL || (o->local_refs == 0 && o->submitted == 0 && o->contained == 0 &&
                      o->pins == 0)) {
        r->status = DEED_ERR_INVALID_REF;
    } else {
        o->local_refs++;
        r->status = DEED_OK;
    }
    completion_signal(&r->done);
}

static void on_stats(struct rt *rt, struct req *r)
{
    deed_stats_t *s = r->stats;
    uint64_t used = 0, total = 0;
    store_usage(rt->store, &used, &total);
    s->rank = rt->rank;
    s->tasks_submitted = rt->st.submitted;
    s->tasks_run = rt->st.run;
    s->tasks_failed = rt->st.failed;
    s->tasks_pending = rt->st.pending;
    s->objects_alive = rt->objs.count;
    s->objects_inline = rt->st.inline_objs;
    s->objects_in_store = rt->st.store_objs;
    s->puts = rt->st.puts;
    s->gets = rt->st.gets;
    s->store_bytes_used = used;
    s->store_bytes_total = total;
    s->inline_bytes = rt->st.inline_bytes;
    s->workers = rt->sched.nslots;
    s->threads = atomic_load(&rt->sched.nthreads);
    s->blocked = atomic_load(&rt->sched.blocked);
    s->misuse = rt->st.misuse;
    s->tasks_remote_in = rt->st.remote_in;
    s->pulls = rt->st.pulls;
    s->pull_bytes = rt->st.pull_bytes;
    s->batches_sent = rt->st.batches_sent;
    s->msgs_dropped = rt->st.msgs_dropped;
    lease_stats(rt, s);
    s->tasks_retried = rt->st.retries;
    s->reconstructions = rt->st.reconstructions;
    s->lineage_bytes = rt->lineage_bytes;
    s->lineage_evictions = rt->st.lineage_evictions;
    for (uint32_t k = 0; rt->nranks > 1 && k < rt->nranks; k++)
        s->ranks_dead += (uint32_t)member_is_dead(rt, k);
    r->status = DEED_OK;
    completion_signal(&r->done);
}

static void dispatch(struct rt *rt, struct msg *m)
{
    switch (m->type) {
    case MSG_SUBMIT:
        task_on_submit(rt, (struct task *)m);
        break;
    case MSG_DONE:
        task_on_done(rt, (struct task *)m);
        break;
    case MSG_PUT:
        put_on_msg(rt, (struct put_msg *)m);
        break;
    case MSG_RELEASE:
        on_release(rt, (struct ref_msg *)m);
        break;
    case MSG_RELEASE_N:
        on_release_n(rt, (struct release_msg *)m);
        break;
    case MSG_HOLD:
        on_hold(rt, (struct ref_msg *)m);
        break;
    case MSG_UNPIN:
        on_unpin(rt, (struct ref_msg *)m);
        break;
    case MSG_DUP:
        on_dup(rt, (struct req *)m);
        break;
    case MSG_GET:
        req_on_get(rt, (struct req *)m);
        break;
    case MSG_WAIT:
        req_on_wait(rt, (struct req *)m);
        break;
    case MSG_CANCEL:
        req_on_cancel(rt, (struct req *)((char *)m - offsetof(struct req, cancel)));
        break;
    case MSG_STATS:
        on_stats(rt, (struct req *)m);
        break;
    case MSG_FIN:
        member_fin_enter(rt, (struct req *)m);
        break;
    case MSG_QUIESCE: {
        struct req *r = (struct req *)m;
        if (rt->st.pending == 0) {
            completion_signal(&r->done);
        } else {
            rt->quiesce = r;
        }
        break;
    }
    default:
        log_error("loop: dropping message of unknown type %u", m->type);
        break;
    }
}

/* Consume the eventfd's wake-ups; returns 1 (someone asked for a pass). */
static int efd_drain(struct rt *rt)
{
    uint64_t v;
    ssize_t r = read(rt->efd, &v, sizeof(v));
    (void)r;
    return 1;
}

/* Sleep in epoll (the eventfd, the transport's fd when armed, peers' pidfds). `how`:
 * LOOP_SLEEP for a sleep that a poster's deferred batch must interrupt, LOOP_NAP for a short
 * one (see loop_main). Returns whether the eventfd woke it (someone asked for a pass). */
static int loop_sleep_ns(struct rt *rt, uint64_t timeout_ns, int how)
{
    struct epoll_event ev[4];
    int woken = 0;
    atomic_store_explicit(&rt->loop_sleeping, how, memory_order_seq_cst);
    if (how == LOOP_SLEEP && atomic_load_explicit(&rt->net_deferred, memory_order_seq_cst))
        timeout_ns = 0; /* batches wait for a pass: come back and send them */
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    if (how == LOOP_NAP) {
        if (atomic_load_explicit(&rt->rests, memory_order_seq_cst) != rt->rests_seen) {
            /* a driver went to sleep since the loop thread decided to nap: take over */
            rt->rests_seen = atomic_load_explicit(&rt->rests, memory_order_relaxed);
            atomic_store_explicit(&rt->loop_sleeping, 0, memory_order_relaxed);
            return 1;
        }
        /* the eventfd only: the transport's fd is not armed and may stay readable */
        struct pollfd pfd = {rt->efd, POLLIN, 0};
        if (ppoll(&pfd, 1, &ts, NULL) > 0)
            woken = efd_drain(rt);
        atomic_store_explicit(&rt->loop_sleeping, 0, memory_order_relaxed);
        return woken;
    }
#ifdef DEED_HAVE_EPOLL_PWAIT2
    int n = epoll_pwait2(rt->epfd, ev, 4, &ts, NULL);
    if (n < 0 && errno == ENOSYS) /* kernels before 5.11 */
        n = epoll_wait(rt->epfd, ev, 4, (int)((timeout_ns + 999999) / 1000000));
#else
    int n = epoll_wait(rt->epfd, ev, 4, (int)((timeout_ns + 999999) / 1000000));
#endif
    if (n < 0 && errno != EINTR)
        log_error("loop: epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++)
        if (ev[i].data.fd == rt->efd)
            woken = efd_drain(rt);
    atomic_store_explicit(&rt->loop_sleeping, 0, memory_order_relaxed);
    return woken;
}

static void loop_sleep(struct rt *rt, int timeout_ms)
{
    loop_sleep_ns(rt, (uint64_t)timeout_ms * 1000000ull, LOOP_SLEEP);
}

static void *loop_main(void *arg)
{
    struct rt *rt = arg;
    uint64_t idle_since = now_ns();

    log_set_rank((int)rt->rank);
    tl_is_loop = 1;
    uint64_t seen = atomic_load_explicit(&rt->passes, memory_order_relaxed);
    uint64_t nap = LOOP_NAP_NS;
    while (!atomic_load_explicit(&rt->stop_loop, memory_order_acquire)) {
        int events = 0, armed = 0;
        /* Other threads are driving the loop (a submitting driver, workers reporting
         * tasks done: every pass progresses the transport): stay out of their way. The
         * loop thread shares their cores (a rank bound to one core runs its driver or
         * worker and this thread on it); spinning here beside them, each sched_yield
         * handed the core back and forth (1-2 us per switch) and cut a streaming rank's
         * task rate by 5. A nap instead, 50 us and doubling up to LOOP_NAP_MAX_NS while
         * they keep driving (each nap is two context switches on their core: 20,000 a
         * second at a fixed 50 us). A thread that stops driving to sleep (a waiter, an
         * idle worker) wakes a napping loop thread (loop_rest); one that stops without a
         * word (a driver back in its own code) is covered within the nap, so a batch it
         * left open goes out within LOOP_NAP_MAX_NS; anyone who needs a pass now writes
         * the eventfd. */
        if (rt->nranks > 1) {
            uint64_t p = atomic_load_explicit(&rt->passes, memory_order_relaxed);
            if (p != seen) {
                seen = p;
                if (!loop_sleep_ns(rt, nap, LOOP_NAP)) {
                    /* still driven by others: nap longer */
                    if (nap < LOOP_NAP_MAX_NS)
                        nap *= 2;
                    continue;
                }
            }
            nap = LOOP_NAP_NS;
        }
        if (combiner_try(rt)) {
            events = rt->tp_ops->progress(rt->tp);
            if (events < 0) {
                log_debug("loop: transport progress reported an error");
                events = 0;
            }
            /* with nothing to do for a while, arm the transport's fd before sleeping (done
             * as the combiner: the transport is driven by one thread at a time) */
            if (events == 0 && mpsc_empty(&rt->inbox) &&
                now_ns() - idle_since >= rt->spin_ns)
                armed = rt->tp_ops->arm(rt->tp) == 0;
            combine(rt);
        }
        if (events > 0) {
            idle_since = now_ns();
            continue;
        }
        if (!armed) {
            if (rt->nranks > 1 && now_ns() - idle_since < rt->spin_ns) {
                sched_yield(); /* poll the network for a while before sleeping */
                continue;
            }
            if (rt->nranks > 1) {
                /* could not arm (events pending, or another thread is the combiner): nap,
                 * unarmed. It was 1 ms, and when that other thread went to sleep right
                 * after, nothing watched the transport for the rest of it: a streaming
                 * job stalled ~1 ms per lease round (88,000 tasks/s instead of 1.2 M) */
                loop_sleep_ns(rt, LOOP_NAP_NS, LOOP_NAP);
                continue;
            }
        }
        if (rt->nranks > 1) {
            /* held leases must be returned when idle: wake up for it */
            loop_sleep(rt, lease_held(rt) ? (int)(rt->lease_idle_us / 1000) + 1 : 100);
            idle_since = now_ns();
            continue;
        }
        /* Messages are combined by their posters; sleep until the transport or a stuck
         * combiner needs us. The timeout bounds the delay of anything missed. */
        loop_sleep(rt, mpsc_empty(&rt->inbox) ? 100 : 0);
        idle_since = now_ns();
    }
    return NULL;
}

int loop_start(struct rt *rt)
{
    struct epoll_event ev = {.events = EPOLLIN};

    mpsc_init(&rt->inbox);
    atomic_store(&rt->loop_sleeping, 0);
    atomic_store(&rt->combiner, 0);
    atomic_store(&rt->stop_loop, 0);
    rt->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    rt->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (rt->efd < 0 || rt->epfd < 0) {
        log_error("loop: cannot create eventfd/epoll: %s", strerror(errno));
        return DEED_ERR_NO_MEMORY;
    }
    ev.data.fd = rt->efd;
    epoll_ctl(rt->epfd, EPOLL_CTL_ADD, rt->efd, &ev);
    int tfd = rt->tp_ops->event_fd(rt->tp);
    if (tfd >= 0) {
        ev.data.fd = tfd;
        epoll_ctl(rt->epfd, EPOLL_CTL_ADD, tfd, &ev);
    }
    /* same-host peers' pidfds: a death wakes the loop at once */
    for (uint32_t r = 0; r < rt->nranks; r++) {
        int pfd = member_pidfd(rt, r);
        if (pfd >= 0) {
            ev.data.fd = pfd;
            epoll_ctl(rt->epfd, EPOLL_CTL_ADD, pfd, &ev);
        }
    }
    int e = pthread_create(&rt->loop_thread, NULL, loop_main, rt);
    if (e != 0) {
        log_error("loop: cannot start the loop thread: %s", strerror(e));
        return DEED_ERR_NO_MEMORY;
    }
    return DEED_OK;
}

void loop_join(struct rt *rt)
{
    atomic_store_explicit(&rt->stop_loop, 1, memory_order_release);
    atomic_store(&rt->loop_sleeping, 1);
    loop_wake_thread(rt);
    pthread_join(rt->loop_thread, NULL);
    close(rt->efd);
    close(rt->epfd);
}
