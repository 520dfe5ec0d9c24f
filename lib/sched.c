/*
 * sched.c — the local scheduler (design §2, §5): the ready ring between the loop and the
 * worker threads, the W execution slots, and the pool of threads that keeps W slots busy
 * while some tasks are blocked in get/wait.
 *
 * Slots: a thread must hold one of the W slots (sched.running < nslots) to start a task body.
 * A body that blocks in get/wait gives its slot back (sched_block) and takes one again when
 * it wakes (sched_unblock, possibly exceeding W for a moment; the thread then drops its slot
 * after that task). If no idle thread is left when a body blocks, a new one is started (up
 * to max_threads), so the work a blocked task waits for always finds a thread: nested tasks
 * cannot deadlock the pool.
 *
 * The loop is the only producer of the ring; overflow beyond the ring's capacity waits in a
 * loop-owned list. Idle threads spin for spin_us, then sleep on an event count. At most W
 * threads are idle at a time; threads beyond that (started for tasks that have since
 * unblocked) park as spares that only a blocking task wakes, so a pool grown by deep nesting
 * does not leave hundreds of threads competing for work.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rt.h"
#include "worker.h"

#define RING_CAP 4096

int sched_init(struct rt *rt)
{
    struct sched *s = &rt->sched;
    if (ring_init(&s->ready, RING_CAP) != 0)
        return DEED_ERR_NO_MEMORY;
    s->overflow_head = s->overflow_tail = NULL;
    eventcount_init(&s->idle);
    pthread_mutex_init(&s->threads_lock, NULL);
    atomic_store(&s->running, 0);
    atomic_store(&s->nthreads, 0);
    atomic_store(&s->blocked, 0);
    atomic_store(&s->stopping, 0);
    atomic_store(&s->nidle, 0);
    atomic_store(&s->nspare, 0);
    atomic_store(&s->spare_wanted, 0);
    eventcount_init(&s->spare);
    s->pushed = 0;
    s->max_threads = rt->cfg.max_threads;
    s->nslots = rt->cfg.num_workers;
    if (s->nslots == 0)
        s->nslots = rt->topo_ok ? topo_ncores(&rt->topo) : 1;
    if (s->nslots == 0)
        s->nslots = 1;
    if (s->max_threads < s->nslots)
        s->max_threads = s->nslots;
    s->threads_cap = s->nslots * 2;
    s->threads = calloc(s->threads_cap, sizeof(*s->threads));
    if (s->threads == NULL)
        return DEED_ERR_NO_MEMORY;
    s->pinned = 0;
    if (rt->cfg.pin_workers && rt->topo_ok &&
        topo_plan_workers(&rt->topo, s->nslots, &s->plan) == DEED_OK)
        s->pinned = 1;
    for (uint32_t i = 0; i < s->nslots; i++) {
        int rc = worker_spawn(rt);
        if (rc != DEED_OK)
            return rc;
    }
    return DEED_OK;
}

void sched_stop(struct rt *rt)
{
    struct sched *s = &rt->sched;
    atomic_store(&s->stopping, 1);
    /* wake every sleeper until all threads have seen the flag */
    uint32_t n = atomic_load(&s->nthreads);
    for (uint32_t i = 0; i < n; i++) {
        eventcount_notify(&s->idle, (int)n);
        eventcount_notify(&s->spare, (int)n);
        pthread_join(s->threads[i]->thread, NULL);
        free(s->threads[i]);
        s->threads[i] = NULL;
    }
}

void sched_fini(struct rt *rt)
{
    struct sched *s = &rt->sched;
    struct task *t;
    /* after quiesce every queued task has run; what is left are ring refs */
    while ((t = ring_pop(&s->ready)) != NULL)
        task_unref(t);
    while ((t = s->overflow_head) != NULL) {
        s->overflow_head = t->qnext;
        task_unref(t);
    }
    ring_fini(&s->ready);
    free(s->threads);
    s->threads = NULL;
    if (s->pinned)
        topo_plan_free(&s->plan);
    pthread_mutex_destroy(&s->threads_lock);
}

void sched_push(struct rt *rt, struct task *t)
{
    struct sched *s = &rt->sched;
    if (s->overflow_head == NULL && ring_push(&s->ready, t) == 0) {
        s->pushed++;
        return;
    }
    t->qnext = NULL;
    if (s->overflow_tail)
        s->overflow_tail->qnext = t;
    else
        s->overflow_head = t;
    s->overflow_tail = t;
}

void sched_flush(struct rt *rt)
{
    struct sched *s = &rt->sched;
    struct task *t;
    while ((t = s->overflow_head) != NULL && ring_push(&s->ready, t) == 0) {
        s->overflow_head = t->qnext;
        if (s->overflow_head == NULL)
            s->overflow_tail = NULL;
        s->pushed++;
    }
    if (s->pushed) {
        eventcount_notify(&s->idle, (int)s->pushed);
        s->pushed = 0;
    }
}

/* Worker side. *holding: whether the caller holds a slot (kept across consecutive tasks). */
struct task *sched_take(struct rt *rt, int *holding)
{
    struct sched *s = &rt->sched;
    if (*holding && atomic_load_explicit(&s->running, memory_order_relaxed) > s->nslots) {
        atomic_fetch_sub(&s->running, 1); /* over-subscribed after an unblock: step back */
        *holding = 0;
    }
    if (!*holding) {
        uint32_t r = atomic_load_explicit(&s->running, memory_order_relaxed);
        do {
            if (r >= s->nslots)
                return NULL;
        } while (!atomic_compare_exchange_weak(&s->running, &r, r + 1));
        *holding = 1;
    }
    struct task *t = ring_pop(&s->ready);
    if (t == NULL) {
        atomic_fetch_sub(&s->running, 1);
        *holding = 0;
    }
    return t;
}

static int work_visible(struct sched *s)
{
    return atomic_load(&s->stopping) ||
           (ring_nonempty(&s->ready) && atomic_load(&s->running) < s->nslots);
}

static int spare_called(struct sched *s)
{
    uint32_t w = atomic_load(&s->spare_wanted);
    while (w > 0)
        if (atomic_compare_exchange_weak(&s->spare_wanted, &w, w - 1))
            return 1;
    return atomic_load(&s->stopping);
}

void sched_idle_wait(struct rt *rt)
{
    struct sched *s = &rt->sched;
    if (atomic_fetch_add(&s->nidle, 1) >= s->nslots) {
        /* enough threads already look for work: park as a spare */
        atomic_fetch_sub(&s->nidle, 1);
        atomic_fetch_add(&s->nspare, 1);
        for (;;) {
            uint32_t key = eventcount_prepare(&s->spare);
            if (spare_called(s)) {
                eventcount_cancel(&s->spare);
                break;
            }
            eventcount_wait(&s->spare, key, 0);
        }
        atomic_fetch_sub(&s->nspare, 1);
        return;
    }
    uint64_t end = now_ns() + rt->spin_ns;
    unsigned i = 0;
    while (!work_visible(s)) {
        if (rt->nranks > 1 && (i & 3) == 0)
            loop_poll(rt); /* an idle worker picks up pushed tasks itself (every ~0.2 us) */
        if ((++i & 255) == 0)
            sched_yield(); /* oversubscribed machines: idle spinners must not starve */
        if ((i & 63) == 0 && now_ns() >= end) {
            uint32_t key = eventcount_prepare(&s->idle);
            if (work_visible(s)) {
                eventcount_cancel(&s->idle);
            } else {
                if (rt->nranks > 1)
                    loop_rest(rt); /* it polled the network: hand that back */
                eventcount_wait(&s->idle, key, 0);
            }
            break;
        }
        cpu_relax();
    }
    atomic_fetch_sub(&s->nidle, 1);
}

/* Only worker threads hold slots; a driver thread running a task inline holds none. */
static int holds_slot(struct rt *rt)
{
    return tl_worker != NULL && tl_worker->rt == rt;
}

void sched_block(struct rt *rt)
{
    struct sched *s = &rt->sched;
    if (!holds_slot(rt))
        return;
    atomic_fetch_sub(&s->running, 1);
    atomic_fetch_add(&s->blocked, 1);
    if (atomic_load(&s->nidle) > 0) {
        eventcount_notify(&s->idle, 1);
    } else if (atomic_load(&s->nspare) > atomic_load(&s->spare_wanted)) {
        atomic_fetch_add(&s->spare_wanted, 1);
        eventcount_notify(&s->spare, 1);
    } else if (atomic_load(&s->nthreads) < s->max_threads) {
        if (worker_spawn(rt) != DEED_OK)
            log_warn("cannot start a spare worker thread while a task blocks; "
                     "nested tasks may wait for a free worker");
    } else {
        static _Atomic int warned;
        if (!atomic_exchange(&warned, 1))
            log_warn("all %u worker threads are blocked in get/wait (DEED_MAX_THREADS); "
                     "tasks wait until one returns", s->max_threads);
    }
}

void sched_unblock(struct rt *rt)
{
    struct sched *s = &rt->sched;
    if (!holds_slot(rt))
        return;
    atomic_fetch_sub(&s->blocked, 1);
    atomic_fetch_add(&s->running, 1);
}
