/*
 * mpsc.h — intrusive multi-producer single-consumer queue (D. Vyukov's design): the inbox
 * through which every API call and worker reaches the event loop.
 *
 * Push is one atomic exchange (wait-free, linearizable: a push that returns before another
 * starts is popped first). Pop is called by the loop thread only; it may return NULL while a
 * producer is between its exchange and its link store ("in flight"): mpsc_empty() is false
 * then, and the consumer just tries again.
 */
#ifndef DEED_MPSC_H
#define DEED_MPSC_H

#include <stdatomic.h>
#include <stddef.h>

struct mpsc_node {
    struct mpsc_node *_Atomic next;
};

struct mpsc {
    struct mpsc_node *_Atomic head; /* producers exchange here */
    char pad[64 - sizeof(void *)];
    struct mpsc_node *tail;         /* consumer side */
    struct mpsc_node stub;
};

static inline void mpsc_init(struct mpsc *q)
{
    atomic_store_explicit(&q->stub.next, NULL, memory_order_relaxed);
    atomic_store_explicit(&q->head, &q->stub, memory_order_relaxed);
    q->tail = &q->stub;
}

static inline void mpsc_push(struct mpsc *q, struct mpsc_node *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    struct mpsc_node *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* 1 if nothing is queued and nothing is in flight. */
static inline int mpsc_empty(struct mpsc *q)
{
    return q->tail == &q->stub &&
           atomic_load_explicit(&q->stub.next, memory_order_acquire) == NULL &&
           atomic_load_explicit(&q->head, memory_order_acquire) == &q->stub;
}

static inline struct mpsc_node *mpsc_pop(struct mpsc *q)
{
    struct mpsc_node *tail = q->tail;
    struct mpsc_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);

    if (tail == &q->stub) {
        if (next == NULL)
            return NULL;
        q->tail = next;
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next != NULL) {
        q->tail = next;
        return tail;
    }
    if (tail != atomic_load_explicit(&q->head, memory_order_acquire))
        return NULL; /* a producer is in flight */
    mpsc_push(q, &q->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next != NULL) {
        q->tail = next;
        return tail;
    }
    return NULL;
}

#endif /* DEED_MPSC_H */
