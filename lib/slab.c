/*
 * slab.c — the task path's block caches (see slab.h).
 */
#include "slab.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "rt.h" /* DEED_TLS */

struct slab_node {
    struct slab_node *next;
};

struct slab {
    _Atomic(struct slab_node *) head;
    _Atomic uint32_t len; /* approximate: reset when a thread takes the stack */
    uint32_t max;
    size_t size;
};

#if defined(__SANITIZE_ADDRESS__)
#define CACHE_MAX(n) 0
#else
#define CACHE_MAX(n) (n)
#endif

static struct slab slabs[SLAB_NCLASSES] = {
    [SLAB_TASK] = {NULL, 0, CACHE_MAX(16384), SLAB_TASK_SIZE},   /* 8 MiB */
    [SLAB_SMALL] = {NULL, 0, CACHE_MAX(16384), SLAB_SMALL_SIZE}, /* 1 MiB */
};

static DEED_TLS struct slab_node *local[SLAB_NCLASSES];
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static int exit_key_ok;

static void thread_exit(void *unused)
{
    (void)unused;
    for (int c = 0; c < SLAB_NCLASSES; c++) {
        struct slab_node *n;
        while ((n = local[c]) != NULL) {
            local[c] = n->next;
            free(n);
        }
    }
}

static void exit_key_init(void)
{
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
}

void *slab_alloc(enum slab_class c)
{
    struct slab *s = &slabs[c];
    struct slab_node *n = local[c];
    if (n == NULL) {
        if (atomic_load_explicit(&s->head, memory_order_relaxed) == NULL ||
            (n = atomic_exchange_explicit(&s->head, NULL, memory_order_acquire)) == NULL)
            return malloc(s->size);
        atomic_store_explicit(&s->len, 0, memory_order_relaxed);
        pthread_once(&exit_once, exit_key_init);
        if (exit_key_ok)
            pthread_setspecific(exit_key, (void *)1); /* so that thread_exit runs */
    }
    local[c] = n->next;
    return n;
}

void slab_free(enum slab_class c, void *p)
{
    struct slab *s = &slabs[c];
    if (p == NULL)
        return;
    if (atomic_load_explicit(&s->len, memory_order_relaxed) >= s->max) {
        free(p);
        return;
    }
    atomic_fetch_add_explicit(&s->len, 1, memory_order_relaxed);
    struct slab_node *n = p, *old = atomic_load_explicit(&s->head, memory_order_relaxed);
    do {
        n->next = old;
    } while (!atomic_compare_exchange_weak_explicit(&s->head, &old, n, memory_order_release,
                                                    memory_order_relaxed));
}
