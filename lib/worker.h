/*
 * worker.h — worker threads: they run task bodies and nothing else.
 */
#ifndef DEED_WORKER_H
#define DEED_WORKER_H

#include <pthread.h>
#include <stdint.h>

struct rt;

struct worker {
    struct rt *rt;
    pthread_t thread;
    uint32_t index;
};

/* Start one more worker thread (index = current thread count). 0 or a deed status. */
int worker_spawn(struct rt *rt);

#endif /* DEED_WORKER_H */
