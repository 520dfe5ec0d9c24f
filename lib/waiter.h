/*
 * waiter.h — how threads wait for each other without burning the machine: a completion
 * (a counter one thread waits on, another bumps) and an event count (many idle threads
 * sleep on it until work arrives). Both spin briefly, then sleep on a futex; the signalling
 * side makes the futex syscall only when someone is actually asleep.
 */
#ifndef DEED_WAITER_H
#define DEED_WAITER_H

#include <stdatomic.h>
#include <stdint.h>

/* word = (events delivered << 1) | (the waiter sleeps). One waiter per completion. The
 * signaller touches the word with a single atomic add and then only passes its address to
 * futex_wake, so the waiter may free it as soon as it sees the event. */
struct completion {
    _Atomic uint32_t word;
};

static inline void completion_init(struct completion *c)
{
    atomic_store_explicit(&c->word, 0, memory_order_relaxed);
}

/* Deliver one event (release: everything written before is visible to the waiter). */
void completion_signal(struct completion *c);
/* Wait until seq >= target. deadline_ns: absolute CLOCK_MONOTONIC time, or 0 = forever.
 * spin_ns: how long to spin first. Returns 0, or -1 on timeout. */
int completion_wait(struct completion *c, uint32_t target, uint64_t deadline_ns,
                    uint64_t spin_ns);
/* The same, calling poll(arg) now and then while spinning (e.g. to progress the network),
 * and rest(arg), if not NULL, each time before it goes to sleep (to hand that job over). */
int completion_wait_poll(struct completion *c, uint32_t target, uint64_t deadline_ns,
                         uint64_t spin_ns, void (*poll)(void *), void (*rest)(void *),
                         void *arg);

struct eventcount {
    _Atomic uint32_t seq;
    _Atomic uint32_t nsleep;
};

static inline void eventcount_init(struct eventcount *e)
{
    atomic_store(&e->seq, 0);
    atomic_store(&e->nsleep, 0);
}
/* Waiter: key = eventcount_prepare(); re-check the condition; eventcount_wait(key) or
 * eventcount_cancel(). */
uint32_t eventcount_prepare(struct eventcount *e);
void eventcount_cancel(struct eventcount *e);
void eventcount_wait(struct eventcount *e, uint32_t key, uint64_t timeout_ns);
/* Wake up to n sleepers (cheap when none sleeps). */
void eventcount_notify(struct eventcount *e, int n);

uint64_t now_ns(void);
/* Coarse monotonic time (resolution: the kernel tick), for timers of milliseconds. */
uint64_t now_coarse_ns(void);

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif /* DEED_WAITER_H */
