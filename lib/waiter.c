/*
 * waiter.c — completions and event counts on Linux futexes (see waiter.h).
 *
 * Both follow the same Dekker-style handshake: the sleeper announces itself (seq_cst) and
 * re-checks the condition before sleeping; the signaller publishes its change (seq_cst) and
 * then checks for sleepers. One of the two always sees the other, so no wake-up is lost, and
 * the signaller only pays for a syscall when a thread really sleeps.
 */
#include "waiter.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The clock of the housekeeping timers that run on every combiner pass (heartbeats, idle
 * leases): CLOCK_MONOTONIC_COARSE reads the last tick (~5 ns against ~26 ns for
 * CLOCK_MONOTONIC in a KVM guest; its resolution is the kernel tick, 1-4 ms). These call
 * sites ran several times per task (13% of the owner's time in the remote benchmark). A
 * timestamp taken with it is only ever compared with another one of the same clock. */
uint64_t now_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long futex_wait(_Atomic uint32_t *addr, uint32_t val, uint64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000ull);
        ts.tv_nsec = (long)(timeout_ns % 1000000000ull);
        tsp = &ts;
    }
    return syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void completion_signal(struct completion *c)
{
    uint32_t old = atomic_fetch_add_explicit(&c->word, 2, memory_order_seq_cst);
    if (old & 1)
        futex_wake(&c->word, INT_MAX);
}

static inline int reached(uint32_t word, uint32_t target)
{
    return (int32_t)((word >> 1) - target) >= 0;
}

int completion_wait(struct completion *c, uint32_t target, uint64_t deadline_ns,
                    uint64_t spin_ns)
{
    return completion_wait_poll(c, target, deadline_ns, spin_ns, NULL, NULL, NULL);
}

int completion_wait_poll(struct completion *c, uint32_t target, uint64_t deadline_ns,
                         uint64_t spin_ns, void (*poll)(void *), void (*rest)(void *),
                         void *arg)
{
    if (reached(atomic_load_explicit(&c->word, memory_order_acquire), target))
        return 0;
    uint64_t spin_end = now_ns() + spin_ns;
    unsigned i = 0;
    for (;;) {
        uint32_t w = atomic_load_explicit(&c->word, memory_order_acquire);
        if (reached(w, target))
            return 0;
        /* A pause costs 10-40 ns (38 ns on AMD EPYC): with a poll function, drive it every
         * 4th turn (a message that arrives is seen within ~0.2 us instead of ~2.5 us, which
         * was most of the remote round trip); without one, look at the clock every 64th. */
        if ((++i & (poll ? 3 : 63)) != 0) {
            cpu_relax();
            continue;
        }
        uint64_t t = now_ns();
        if (deadline_ns && t >= deadline_ns)
            return -1;
        if (t < spin_end) {
            /* Waiting anyway: drive the network ourselves, so an answer that arrives is
             * handled here instead of waking a sleeping thread. */
            if (poll)
                poll(arg);
            /* Oversubscribed machines: let the thread we wait for run. */
            if ((i & 1023) == 0)
                sched_yield();
            continue;
        }
        if (!(w & 1) && !atomic_compare_exchange_strong_explicit(
                            &c->word, &w, w | 1, memory_order_seq_cst, memory_order_acquire))
            continue;
        if (rest)
            rest(arg);
        futex_wait(&c->word, w | 1, deadline_ns ? deadline_ns - t : 0);
    }
}

uint32_t eventcount_prepare(struct eventcount *e)
{
    atomic_fetch_add_explicit(&e->nsleep, 1, memory_order_seq_cst);
    return atomic_load_explicit(&e->seq, memory_order_seq_cst);
}

void eventcount_cancel(struct eventcount *e)
{
    atomic_fetch_sub_explicit(&e->nsleep, 1, memory_order_relaxed);
}

void eventcount_wait(struct eventcount *e, uint32_t key, uint64_t timeout_ns)
{
    futex_wait(&e->seq, key, timeout_ns);
    atomic_fetch_sub_explicit(&e->nsleep, 1, memory_order_relaxed);
}

void eventcount_notify(struct eventcount *e, int n)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&e->nsleep, memory_order_seq_cst) == 0)
        return;
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_seq_cst);
    futex_wake(&e->seq, n);
}
