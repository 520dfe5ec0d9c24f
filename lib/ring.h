/*
 * ring.h — bounded multi-producer multi-consumer queue of pointers (D. Vyukov's design).
 * The event loop pushes ready tasks; worker threads pop them. No locks, no allocation after
 * ring_init; each cell carries a sequence number that orders producers and consumers.
 */
#ifndef DEED_RING_H
#define DEED_RING_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

struct ring_cell {
    _Atomic size_t seq;
    void *data;
};

struct ring {
    struct ring_cell *cells;
    size_t mask;
    char pad0[64 - sizeof(void *) - sizeof(size_t)];
    _Atomic size_t enq;
    char pad1[64 - sizeof(size_t)];
    _Atomic size_t deq;
    char pad2[64 - sizeof(size_t)];
};

/* capacity must be a power of two */
static inline int ring_init(struct ring *r, size_t capacity)
{
    r->cells = aligned_alloc(64, capacity * sizeof(struct ring_cell));
    if (r->cells == NULL)
        return -1;
    for (size_t i = 0; i < capacity; i++)
        atomic_store_explicit(&r->cells[i].seq, i, memory_order_relaxed);
    r->mask = capacity - 1;
    atomic_store_explicit(&r->enq, 0, memory_order_relaxed);
    atomic_store_explicit(&r->deq, 0, memory_order_relaxed);
    return 0;
}

static inline void ring_fini(struct ring *r)
{
    free(r->cells);
    r->cells = NULL;
}

/* 0 on success, -1 if full */
static inline int ring_push(struct ring *r, void *data)
{
    size_t pos = atomic_load_explicit(&r->enq, memory_order_relaxed);
    for (;;) {
        struct ring_cell *c = &r->cells[pos & r->mask];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->enq, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                c->data = data;
                atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
                return 0;
            }
        } else if (dif < 0) {
            return -1;
        } else {
            pos = atomic_load_explicit(&r->enq, memory_order_relaxed);
        }
    }
}

/* NULL if empty */
static inline void *ring_pop(struct ring *r)
{
    size_t pos = atomic_load_explicit(&r->deq, memory_order_relaxed);
    for (;;) {
        struct ring_cell *c = &r->cells[pos & r->mask];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->deq, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                void *data = c->data;
                atomic_store_explicit(&c->seq, pos + r->mask + 1, memory_order_release);
                return data;
            }
        } else if (dif < 0) {
            return NULL;
        } else {
            pos = atomic_load_explicit(&r->deq, memory_order_relaxed);
        }
    }
}

/* Approximate: 1 if a pop would likely find something. */
static inline int ring_nonempty(struct ring *r)
{
    return atomic_load_explicit(&r->enq, memory_order_acquire) !=
           atomic_load_explicit(&r->deq, memory_order_acquire);
}

#endif /* DEED_RING_H */
