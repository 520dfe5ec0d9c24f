/*
 * test_ucx.c — the "ucx" transport with real processes: each test forks a peer (rank 1),
 * the two exchange worker addresses over a socketpair, then run active-message ping-pong and
 * streams, one-sided gets from a UCX-allocated region (with the rkey cache counted), and a
 * killed peer reported through failure_cb. The AM and get tests run once over shared memory
 * (UCX_TLS=shm,self) and once over tcp (UCX_TLS=tcp,self). UCX state is created after the
 * fork, in each process.
 *
 * The child never uses Check's assertions (it is not Check's process): CHILD_CHECK prints
 * and exits non-zero, and the parent asserts the child's exit status. A child that passes
 * exits through exit(), so LeakSanitizer checks its side as well. The child dies with
 * its parent (PR_SET_PDEATHSIG) so a failed assertion leaves no stray process.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deed.h"
#include "testutil.h"
#include "log.h"
#include "transport.h"
#include "ucx/ucx.h"

#define MiB (1024u * 1024u)
#define REGION (64u * MiB)

/* ---- small helpers ------------------------------------------------------------------- */

#define CHILD_CHECK(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "child: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);        \
            _exit(3);                                                                              \
        }                                                                                          \
    } while (0)

/* Check's ck_assert records a checkpoint on every call (a write, in CK_FORK=no mode): too
 * slow inside timed loops. FAST_CHECK only does work when the condition fails. */
#define FAST_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

static int send_blob(int fd, const void *buf, size_t len)
{
    uint64_t n = len;

    return tu_write_all(fd, &n, sizeof(n)) || tu_write_all(fd, buf, len) ? -1 : 0;
}

/* Reads one blob into a malloc'd buffer; NULL on error. */
static void *recv_blob(int fd, size_t *len)
{
    uint64_t n;
    void *buf;

    if (tu_read_all(fd, &n, sizeof(n)) || n > (1u << 20))
        return NULL;
    buf = malloc(n ? n : 1);
    if (buf && tu_read_all(fd, buf, n)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Bytes of message number `seq` of `len` bytes in direction `dir`: a window into a fixed
 * random pattern, shifted per message so consecutive messages differ. */
static unsigned char *pattern;
#define PATTERN_LEN (8u * MiB + 4096u)

static void pattern_init(void)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;

    if (pattern)
        return;
    pattern = malloc(PATTERN_LEN);
    for (size_t i = 0; i < PATTERN_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (unsigned char)x;
    }
}

static const unsigned char *msg_bytes(uint64_t seq, int dir, size_t len)
{
    return pattern + (seq * 7 + (uint64_t)dir * 1031) % 4096;
}

/* The word at byte offset 8*k of the get region. */
static uint64_t region_word(uint64_t k)
{
    uint64_t z = k + 0x632be59bd9b4e019ull;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void region_fill(void *buf, size_t len)
{
    uint64_t *w = buf;

    for (size_t k = 0; k < len / 8; k++)
        w[k] = region_word(k);
}

/* ---- one side of a connection --------------------------------------------------------- */

struct msg {
    struct msg *next;
    uint32_t src;
    size_t len;
    unsigned char data[];
};

struct side {
    const struct tp_ops *ops;
    struct tp *tp;
    uint32_t rank;
    struct msg *head, *tail;
    int nmsgs;
    int failures;
    uint32_t failed_rank;
};

static void on_am(void *arg, uint32_t src, const void *data, size_t len)
{
    struct side *s = arg;
    struct msg *m = malloc(sizeof(*m) + len);

    if (!m)
        abort();
    m->next = NULL;
    m->src = src;
    m->len = len;
    if (len)
        memcpy(m->data, data, len);
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->nmsgs++;
}

static void on_failure(void *arg, uint32_t rank)
{
    struct side *s = arg;

    s->failures++;
    s->failed_rank = rank;
}

static struct msg *pop_msg(struct side *s)
{
    struct msg *m = s->head;

    if (m) {
        s->head = m->next;
        if (!s->head)
            s->tail = NULL;
        s->nmsgs--;
    }
    return m;
}

/* Opens the transport as `rank` of 2, exchanges addresses over sock, connects to the other
 * rank. 0 on success. */
static int side_open(struct side *s, uint32_t rank, int sock)
{
    struct tp_params p = {
        .rank = rank, .nranks = 2, .am_cb = on_am, .failure_cb = on_failure, .cb_arg = s};
    const void *addr;
    size_t len, plen;
    void *peer;
    int rc;

    memset(s, 0, sizeof(*s));
    s->rank = rank;
    s->ops = tp_find("ucx");
    if (!s->ops || s->ops->init(&p, &s->tp) != DEED_OK)
        return -1;
    if (s->ops->address(s->tp, &addr, &len) != DEED_OK || send_blob(sock, addr, len))
        return -2;
    peer = recv_blob(sock, &plen);
    if (!peer)
        return -3;
    rc = s->ops->connect(s->tp, 1 - rank, peer, plen);
    free(peer);
    return rc == DEED_OK ? 0 : -4;
}

static void side_close(struct side *s)
{
    struct msg *m;

    s->ops->fini(s->tp);
    while ((m = pop_msg(s)))
        free(m);
}

/* How wait_msg waits: progress calls before it sleeps on the event fd, and the poll timeout.
 * Spinning first gives the latency numbers; sleeping keeps the test sane on a machine with
 * fewer cores than busy processes. The event-driven test never spins and polls for long. */
static unsigned wait_spins = 2000;
static int wait_poll_ms = 10;
static unsigned wait_sleeps, wait_timeouts; /* in wait_msg: poll calls, and those that timed out */

/* Progresses until a message is queued; NULL after `timeout` seconds. */

static struct msg *wait_msg(struct side *s, double timeout)
{
    double end = tu_now_s() + timeout;
    unsigned spins = 0;

    while (!s->head) {
        s->ops->progress(s->tp);
        if (s->head)
            break;
        if (++spins > wait_spins && s->ops->arm(s->tp) == 0) {
            struct pollfd pf = {.fd = s->ops->event_fd(s->tp), .events = POLLIN};

            wait_sleeps++;
            if (poll(&pf, 1, wait_poll_ms) == 0)
                wait_timeouts++;
        }
        if (tu_now_s() > end)
            return NULL;
    }
    return pop_msg(s);
}

/* Progresses (sleeping on the event fd when armed) until fd is readable or the deadline. */
static int wait_fd_progress(struct side *s, int fd, double timeout, int *sleeps)
{
    double end = tu_now_s() + timeout;

    for (;;) {
        struct pollfd pf[2] = {{.fd = fd, .events = POLLIN},
                               {.fd = s->ops->event_fd(s->tp), .events = POLLIN}};
        int ms = 0;

        s->ops->progress(s->tp);
        if (sleeps && s->ops->arm(s->tp) == 0) {
            ms = 1000;
            (*sleeps)++;
        }
        if (poll(pf, 2, ms) > 0 && (pf[0].revents & (POLLIN | POLLHUP)))
            return 0;
        if (tu_now_s() > end)
            return -1;
    }
}

static pid_t fork_peer(int *sock_parent, int *sock_child)
{
    int sv[2];
    pid_t pid;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(sv[0]);
        *sock_child = sv[1];
        *sock_parent = -1;
    } else {
        close(sv[1]);
        *sock_parent = sv[0];
        *sock_child = -1;
    }
    return pid;
}

static void reap_ok(pid_t pid)
{
    int status;

    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "peer exited abnormally (status 0x%x)", status);
}

/* ---- active messages ------------------------------------------------------------------- */

struct pp_step {
    size_t len;
    int rounds;
};

/* Message size and round trips per step; the first step is a warm-up (wireup, first touch). */
static const struct pp_step pp_steps[] = {
    {8, 100},     {0, 1000},     {8, 1000},      {100, 1000},   {4096, 1000},
    {8192, 1000}, {65536, 1000}, {1 * MiB, 200}, {8 * MiB, 20},
};
/* For the event-driven test (every wait sleeps on the event fd). */
static const struct pp_step ev_steps[] = {
    {8, 50}, {8192, 20}, {65536, 20}, {1 * MiB + 3, 10}, {8 * MiB, 5}, {0, 10},
};

/* The schedule both processes follow (set before the fork). */
static const struct pp_step *steps = pp_steps;
static int nsteps = (int)(sizeof(pp_steps) / sizeof(pp_steps[0]));
static int stream_n = 400;

static size_t stream_len(int i)
{
    static const size_t lens[] = {8, 3000, 70000, 1 * MiB + 3, 16, 0, 9000, 2 * MiB};
    return lens[i % 8];
}

/* Sends len bytes of message (seq, dir), as one iov or split in three. */
static int send_msg(struct side *s, uint32_t to, uint64_t seq, int dir, size_t len)
{
    const unsigned char *b = msg_bytes(seq, dir, len);
    struct iovec iov[3];

    if (seq % 2 == 0 || len < 3) {
        iov[0].iov_base = (void *)b;
        iov[0].iov_len = len;
        return s->ops->am_send(s->tp, to, iov, 1);
    }
    iov[0].iov_base = (void *)b;
    iov[0].iov_len = 1;
    iov[1].iov_base = (void *)(b + 1);
    iov[1].iov_len = len / 2;
    iov[2].iov_base = (void *)(b + 1 + len / 2);
    iov[2].iov_len = len - 1 - len / 2;
    return s->ops->am_send(s->tp, to, iov, 3);
}

static int msg_ok(const struct msg *m, uint32_t src, uint64_t seq, int dir, size_t len)
{
    return m && m->src == src && m->len == len &&
           memcmp(m->data, msg_bytes(seq, dir, len), len) == 0;
}

static void am_child(int sock)
{
    struct side s;
    uint64_t seq = 0;
    struct msg *m;
    char c = 0;

    CHILD_CHECK(side_open(&s, 1, sock) == 0);
    for (int st = 0; st < nsteps; st++) {
        for (int r = 0; r < steps[st].rounds; r++, seq++) {
            m = wait_msg(&s, 60);
            CHILD_CHECK(msg_ok(m, 0, seq, 0, steps[st].len));
            free(m);
            CHILD_CHECK(send_msg(&s, 0, seq, 1, steps[st].len) == DEED_OK);
        }
    }
    /* The stream: stream_n messages back to back, checked in order, then one reply. */
    for (int i = 0; i < stream_n; i++) {
        m = wait_msg(&s, 60);
        CHILD_CHECK(msg_ok(m, 0, 100000 + i, 0, stream_len(i)));
        free(m);
    }
    CHILD_CHECK(send_msg(&s, 0, 0, 1, 8) == DEED_OK);
    fprintf(stderr, "test_ucx child: slept on the event fd %u times, %u timed out (%d ms)\n",
            wait_sleeps, wait_timeouts, wait_poll_ms);
    if (wait_spins == 0)
        CHILD_CHECK(wait_timeouts == 0); /* event-driven: every sleep was woken */
    /* Keep progressing (the reply may still be in flight) until the parent is done. */
    CHILD_CHECK(wait_fd_progress(&s, sock, 60, NULL) == 0);
    CHILD_CHECK(tu_read_all(sock, &c, 1) == 0 && c == 'x');
    side_close(&s);
    exit(0); /* not _exit: leak checkers run at exit */
}

/* event_driven: every wait sleeps on the event fd with a 5 s timeout, and none may time out
 * (a lost wakeup would hang the runtime's loop). */
static void am_test(const char *tls, int event_driven)
{
    int sp, sc;
    pid_t pid;
    struct side s;
    struct tp_ucx_stats st;
    uint64_t seq = 0;
    struct msg *m;

    setenv("UCX_TLS", tls, 1);
    pattern_init();
    if (event_driven) {
        steps = ev_steps;
        nsteps = (int)(sizeof(ev_steps) / sizeof(ev_steps[0]));
        stream_n = 40;
        wait_spins = 0;
        wait_poll_ms = 5000;
    }
    pid = fork_peer(&sp, &sc);
    if (pid == 0)
        am_child(sc);

    ck_assert_int_eq(side_open(&s, 0, sp), 0);
    ck_assert_uint_eq(s.ops->eager_limit(s.tp) > 0, 1);
    for (int stp = 0; stp < nsteps; stp++) {
        double t0 = tu_now_s(), dt;

        for (int r = 0; r < steps[stp].rounds; r++, seq++) {
            FAST_CHECK(send_msg(&s, 1, seq, 0, steps[stp].len) == DEED_OK, "send failed");
            m = wait_msg(&s, 60);
            FAST_CHECK(msg_ok(m, 1, seq, 1, steps[stp].len),
                       "reply %llu of %zu bytes wrong or missing", (unsigned long long)seq,
                       steps[stp].len);
            free(m);
        }
        dt = tu_now_s() - t0;
        fprintf(stderr,
                "test_ucx [UCX_TLS=%s] AM ping-pong %8zu B: %5d round trips, %8.2f us per "
                "round trip, %7.1f MB/s each way\n",
                tls, steps[stp].len, steps[stp].rounds, dt * 1e6 / steps[stp].rounds,
                (double)steps[stp].len * steps[stp].rounds / dt / 1e6);
    }
    for (int i = 0; i < stream_n; i++)
        FAST_CHECK(send_msg(&s, 1, 100000 + i, 0, stream_len(i)) == DEED_OK, "send failed");
    m = wait_msg(&s, 120);
    ck_assert(msg_ok(m, 1, 0, 1, 8));
    free(m);

    tp_ucx_get_stats(s.tp, &st);
    ck_assert_uint_ge(st.am_recv, 1);
    ck_assert_uint_eq(st.peers_failed, 0);
    fprintf(stderr,
            "test_ucx [UCX_TLS=%s] parent: %llu sent (%llu in place), %llu received "
            "(%llu by rendezvous)\n",
            tls, (unsigned long long)st.am_sent, (unsigned long long)st.am_sent_inplace,
            (unsigned long long)st.am_recv, (unsigned long long)st.am_recv_rndv);
    ck_assert_uint_gt(st.am_recv_rndv, 0); /* 8 MiB replies came by rendezvous */
    fprintf(stderr, "test_ucx parent: slept on the event fd %u times, %u timed out (%d ms)\n",
            wait_sleeps, wait_timeouts, wait_poll_ms);
    if (event_driven)
        ck_assert_uint_eq(wait_timeouts, 0); /* every sleep was woken by the event fd */
    side_close(&s);
    ck_assert_int_eq(tu_write_all(sp, "x", 1), 0);
    reap_ok(pid);
    close(sp);
}

START_TEST(am_shm)
{
    am_test("shm,self", 0);
}
END_TEST

START_TEST(am_tcp)
{
    am_test("tcp,self", 0);
}
END_TEST

START_TEST(am_events_shm)
{
    am_test("shm,self", 1);
}
END_TEST

START_TEST(am_events_tcp)
{
    am_test("tcp,self", 1);
}
END_TEST

/* ---- gets ------------------------------------------------------------------------------ */

/* The target: allocates the region through UCX, fills it, sends {addr, rkey}, progresses
 * (sleeping on its event fd) until the reader is done. */
static void get_child(int sock)
{
    struct side s;
    struct tp_mem *mem = NULL;
    void *addr = NULL, *rkey;
    size_t rlen;
    uint64_t a;
    int sleeps = 0;
    char c = 0;

    CHILD_CHECK(side_open(&s, 1, sock) == 0);
    CHILD_CHECK(s.ops->mem_map(s.tp, &addr, REGION, TP_MEM_ALLOCATE, &mem) == DEED_OK);
    CHILD_CHECK(addr != NULL);
    region_fill(addr, REGION);
    CHILD_CHECK(s.ops->rkey_pack(s.tp, mem, &rkey, &rlen) == DEED_OK);
    a = (uint64_t)(uintptr_t)addr;
    CHILD_CHECK(tu_write_all(sock, &a, sizeof(a)) == 0 && send_blob(sock, rkey, rlen) == 0);
    s.ops->rkey_buf_free(s.tp, rkey);
    CHILD_CHECK(wait_fd_progress(&s, sock, 250, &sleeps) == 0);
    CHILD_CHECK(tu_read_all(sock, &c, 1) == 0 && c == 'x');
    CHILD_CHECK(s.ops->mem_unmap(s.tp, mem) == DEED_OK);
    side_close(&s);
    exit(0); /* not _exit: leak checkers run at exit */
}

struct get_done {
    int calls;
    int status;
};

static void get_cb(void *arg, int status)
{
    struct get_done *d = arg;

    if (d->calls++ == 0 || status != 0)
        d->status = status; /* the first call's status, or the first failure */
}

/* Issues one get and progresses until it completes; returns its status. */
static int get_wait(struct side *s, void *dst, struct tp_mem *dmem, uint64_t raddr,
                    const void *rkey, size_t rlen, size_t len)
{
    struct get_done d = {0, 1};
    double end = tu_now_s() + 120;
    int rc = s->ops->get(s->tp, 1, dst, dmem, raddr, rkey, rlen, len, get_cb, &d);

    if (rc != DEED_OK)
        return rc;
    while (d.calls == 0 && tu_now_s() < end)
        s->ops->progress(s->tp);
    ck_assert_int_eq(d.calls, 1);
    return d.status;
}

static void get_test(const char *tls)
{
    static const size_t lens[] = {8, 64, 1000, 4096, 65536, 1 * MiB, 16 * MiB + 5, REGION};
    int sp, sc;
    pid_t pid;
    struct side s;
    struct tp_mem *dmem = NULL;
    struct tp_ucx_stats st;
    unsigned char *expect, *dst;
    void *rkey;
    size_t rlen;
    uint64_t raddr;
    unsigned ngets = 0;
    double t0, dt;
    int n;

    setenv("UCX_TLS", tls, 1);
    pid = fork_peer(&sp, &sc);
    if (pid == 0)
        get_child(sc);

    ck_assert_int_eq(side_open(&s, 0, sp), 0);
    ck_assert(s.ops->caps(s.tp) & TP_CAP_RMA_GET);
    ck_assert(s.ops->caps(s.tp) & TP_CAP_MEM_ALLOC);
    ck_assert_int_eq(tu_read_all(sp, &raddr, sizeof(raddr)), 0);
    rkey = recv_blob(sp, &rlen);
    ck_assert_ptr_nonnull(rkey);
    expect = malloc(REGION);
    ck_assert_ptr_nonnull(expect);
    region_fill(expect, REGION);
    /* The destination: caller-allocated memory registered with the transport. */
    ck_assert_int_eq(posix_memalign((void **)&dst, 4096, REGION), 0);
    ck_assert_int_eq(s.ops->mem_map(s.tp, (void **)&dst, REGION, 0, &dmem), DEED_OK);

    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t len = lens[i];
        size_t offs[3] = {0, (REGION - len) / 2 + 3, REGION - len};

        for (int k = 0; k < 3; k++) {
            size_t off = offs[k] > REGION - len ? 0 : offs[k];
            unsigned char *d = dst + (k * 17) % 64;

            if ((size_t)(d - dst) + len > REGION)
                d = dst;
            memset(d, 0xee, len);
            ck_assert_int_eq(get_wait(&s, d, dmem, raddr + off, rkey, rlen, len), 0);
            ngets++;
            ck_assert_msg(memcmp(d, expect + off, len) == 0,
                          "get of %zu bytes at offset %zu: wrong bytes", len, off);
        }
    }
    tp_ucx_get_stats(s.tp, &st);
    ck_assert_uint_eq(st.rkey_misses, 1);
    ck_assert_uint_eq(st.rkey_hits, ngets - 1);
    ck_assert_uint_eq(st.rkey_cached, 1);

    /* Quick numbers: 8-byte get latency, 1 MiB get bandwidth (gets in flight: 8). */
    n = 100000;
    {
        struct get_done d = {0, 0};

        t0 = tu_now_s();
        for (int i = 0; i < n; i++) {
            int done = d.calls;

            FAST_CHECK(s.ops->get(s.tp, 1, dst, dmem, raddr + (uint64_t)(i % 4096) * 8, rkey, rlen,
                                  8, get_cb, &d) == DEED_OK,
                       "get %d failed", i);
            while (d.calls == done)
                s.ops->progress(s.tp);
        }
        dt = tu_now_s() - t0;
        ck_assert_int_eq(d.status, 0);
    }
    fprintf(stderr, "test_ucx [UCX_TLS=%s] get 8 B: %.2f us each (%d gets, one at a time)\n", tls,
            dt * 1e6 / n, n);
    {
        struct get_done d = {0, 0};
        int issued = 0, depth = 8;

        n = 512;
        t0 = tu_now_s();
        while (d.calls < n) {
            while (issued < n && issued - d.calls < depth) {
                FAST_CHECK(s.ops->get(s.tp, 1, dst + (size_t)(issued % 32) * MiB, dmem,
                                      raddr + (uint64_t)(issued % 64) * MiB, rkey, rlen, MiB,
                                      get_cb, &d) == DEED_OK,
                           "get %d failed", issued);
                issued++;
            }
            s.ops->progress(s.tp);
        }
        dt = tu_now_s() - t0;
        ck_assert_int_eq(d.status, 0);
        fprintf(stderr, "test_ucx [UCX_TLS=%s] get 1 MiB: %.2f GB/s (%d gets, %d in flight)\n", tls,
                (double)n * MiB / dt / 1e9, n, depth);
        ck_assert_int_eq(memcmp(dst + 31 * MiB, expect + 63 * MiB, MiB), 0);
    }
    {
        /* The same 1 MiB into the same buffer (cache-hot, as ucx_perftest measures). */
        struct get_done d = {0, 0};

        n = 2000;
        t0 = tu_now_s();
        for (int i = 0; i < n; i++) {
            int done = d.calls;

            FAST_CHECK(s.ops->get(s.tp, 1, dst, dmem, raddr, rkey, rlen, MiB, get_cb, &d) ==
                           DEED_OK,
                       "get %d failed", i);
            while (d.calls == done)
                s.ops->progress(s.tp);
        }
        dt = tu_now_s() - t0;
        ck_assert_int_eq(d.status, 0);
        fprintf(stderr,
                "test_ucx [UCX_TLS=%s] get 1 MiB, same buffers: %.2f GB/s (%d gets, one at a "
                "time)\n",
                tls, (double)n * MiB / dt / 1e9, n);
        ck_assert_int_eq(memcmp(dst, expect, MiB), 0);
    }
    tp_ucx_get_stats(s.tp, &st);
    ck_assert_uint_eq(st.rkey_misses, 1);
    fprintf(stderr,
            "test_ucx [UCX_TLS=%s] gets: %llu (%llu completed in place), rkey cache "
            "%llu hits / %llu misses\n",
            tls, (unsigned long long)st.gets, (unsigned long long)st.gets_inplace,
            (unsigned long long)st.rkey_hits, (unsigned long long)st.rkey_misses);

    ck_assert_int_eq(s.ops->mem_unmap(s.tp, dmem), DEED_OK);
    s.ops->rkey_buf_free(s.tp, rkey);
    side_close(&s);
    ck_assert_int_eq(tu_write_all(sp, "x", 1), 0);
    reap_ok(pid);
    close(sp);
    free(dst);
    free(expect);
}

START_TEST(get_shm)
{
    get_test("shm,self");
}
END_TEST

START_TEST(get_tcp)
{
    get_test("tcp,self");
}
END_TEST

/* ---- a killed peer --------------------------------------------------------------------- */

static void kill_child(int sock)
{
    struct side s;
    struct tp_mem *mem = NULL;
    void *addr = NULL, *rkey;
    size_t rlen;
    uint64_t a;
    char c;

    CHILD_CHECK(side_open(&s, 1, sock) == 0);
    CHILD_CHECK(s.ops->mem_map(s.tp, &addr, 8 * MiB, TP_MEM_ALLOCATE, &mem) == DEED_OK);
    CHILD_CHECK(s.ops->rkey_pack(s.tp, mem, &rkey, &rlen) == DEED_OK);
    a = (uint64_t)(uintptr_t)addr;
    CHILD_CHECK(tu_write_all(sock, &a, sizeof(a)) == 0 && send_blob(sock, rkey, rlen) == 0);
    CHILD_CHECK(send_msg(&s, 0, 0, 1, 8) == DEED_OK);
    /* Progress until the parent has its hello, then stop progressing (so a tcp get to us
     * stays pending) and wait to be killed. */
    CHILD_CHECK(wait_fd_progress(&s, sock, 60, NULL) == 0);
    CHILD_CHECK(tu_read_all(sock, &c, 1) == 0);
    for (;;)
        pause();
}

START_TEST(killed_peer_tcp)
{
    int sp, sc;
    pid_t pid;
    struct side s;
    struct tp_mem *dmem = NULL;
    struct tp_ucx_stats st;
    struct get_done d = {0, 0};
    struct msg *m;
    void *rkey, *dst = NULL;
    size_t rlen;
    uint64_t raddr;
    double end;
    int status;
    struct iovec iov = {.iov_base = "hi", .iov_len = 2};

    setenv("UCX_TLS", "tcp,self", 1);
    pattern_init();
    pid = fork_peer(&sp, &sc);
    if (pid == 0)
        kill_child(sc);

    ck_assert_int_eq(side_open(&s, 0, sp), 0);
    ck_assert(s.ops->caps(s.tp) & TP_CAP_PEER_FAILURE);
    ck_assert_int_eq(tu_read_all(sp, &raddr, sizeof(raddr)), 0);
    rkey = recv_blob(sp, &rlen);
    ck_assert_ptr_nonnull(rkey);
    m = wait_msg(&s, 60);
    ck_assert(msg_ok(m, 1, 0, 1, 8));
    free(m);
    ck_assert_int_eq(tu_write_all(sp, "x", 1), 0);
    usleep(100000); /* let the child stop progressing */

    /* A get that needs the (no longer progressing) target over tcp: pending until the kill. */
    ck_assert_int_eq(s.ops->mem_map(s.tp, &dst, 8 * MiB, TP_MEM_ALLOCATE, &dmem), DEED_OK);
    ck_assert_int_eq(s.ops->get(s.tp, 1, dst, dmem, raddr, rkey, rlen, 8 * MiB, get_cb, &d),
                     DEED_OK);
    for (int i = 0; i < 100; i++)
        s.ops->progress(s.tp);

    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));

    end = tu_now_s() + 60;
    while (s.failures == 0 && tu_now_s() < end) {
        s.ops->progress(s.tp);
        usleep(1000);
    }
    ck_assert_int_eq(s.failures, 1);
    ck_assert_uint_eq(s.failed_rank, 1);
    fprintf(stderr, "test_ucx [UCX_TLS=tcp,self] killed peer reported after %.3f s\n",
            60 - (end - tu_now_s()));
    for (int i = 0; i < 100; i++)
        s.ops->progress(s.tp);
    ck_assert_int_eq(s.failures, 1); /* once */
    ck_assert_int_eq(d.calls, 1);    /* the pending get failed */
    ck_assert_int_eq(d.status, DEED_ERR_TRANSPORT);
    ck_assert_int_eq(s.ops->am_send(s.tp, 1, &iov, 1), DEED_ERR_TRANSPORT);
    ck_assert_int_eq(s.ops->get(s.tp, 1, dst, dmem, raddr, rkey, rlen, 8, get_cb, &d),
                     DEED_ERR_TRANSPORT);
    tp_ucx_get_stats(s.tp, &st);
    ck_assert_uint_eq(st.peers_failed, 1);
    ck_assert_uint_eq(st.rkey_cached, 0); /* dropped with the peer */

    ck_assert_int_eq(s.ops->mem_unmap(s.tp, dmem), DEED_OK);
    s.ops->rkey_buf_free(s.tp, rkey);
    side_close(&s);
    close(sp);
}
END_TEST

/* ---- one process ----------------------------------------------------------------------- */

START_TEST(ops_and_errors)
{
    const struct tp_ops *ops = tp_find("ucx");
    struct tp_params bad = {.rank = 2, .nranks = 2};
    struct tp *tp = NULL;
    int level;

    ck_assert_ptr_nonnull(ops);
    ck_assert_str_eq(ops->name, "ucx");
    ck_assert_uint_eq(ops->size, sizeof(struct tp_ops));
    ck_assert_ptr_nonnull(strstr(tp_names(), "ucx"));
    ck_assert_ptr_nonnull(ops->init);
    ck_assert_ptr_nonnull(ops->fini);
    ck_assert_ptr_nonnull(ops->caps);
    ck_assert_ptr_nonnull(ops->eager_limit);
    ck_assert_ptr_nonnull(ops->address);
    ck_assert_ptr_nonnull(ops->connect);
    ck_assert_ptr_nonnull(ops->am_send);
    ck_assert_ptr_nonnull(ops->progress);
    ck_assert_ptr_nonnull(ops->event_fd);
    ck_assert_ptr_nonnull(ops->arm);
    ck_assert_ptr_nonnull(ops->mem_map);
    ck_assert_ptr_nonnull(ops->mem_unmap);
    ck_assert_ptr_nonnull(ops->rkey_pack);
    ck_assert_ptr_nonnull(ops->rkey_buf_free);
    ck_assert_ptr_nonnull(ops->get);

    level = deed__log_level;
    deed__log_level = -1;
    ck_assert_int_eq(ops->init(&bad, &tp), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(ops->init(NULL, &tp), DEED_ERR_INVALID_ARG);
    bad.rank = 0;
    ck_assert_int_eq(ops->init(&bad, &tp), DEED_OK);
    {
        struct iovec iov = {.iov_base = "x", .iov_len = 1};
        char buf[8];

        /* Not connected, out of range, NULL address. */
        ck_assert_int_eq(ops->am_send(tp, 1, &iov, 1), DEED_ERR_TRANSPORT);
        ck_assert_int_eq(ops->am_send(tp, 2, &iov, 1), DEED_ERR_INVALID_ARG);
        ck_assert_int_eq(ops->connect(tp, 1, NULL, 0), DEED_ERR_INVALID_ARG);
        ck_assert_int_eq(ops->get(tp, 1, buf, NULL, 0, "k", 1, 8, NULL, NULL), DEED_ERR_TRANSPORT);
        ck_assert_int_eq(ops->get(tp, 1, buf, NULL, 0, NULL, 0, 8, NULL, NULL),
                         DEED_ERR_INVALID_ARG);
    }
    deed__log_level = level;
    ck_assert_int_ge(ops->event_fd(tp), 0);
    ck_assert_int_ge(ops->progress(tp), 0);
    ops->fini(tp);
}
END_TEST

/* nranks = 1: the rank talks to itself (loopback endpoint). */
START_TEST(loopback)
{
    struct side s;
    struct tp_params p = {
        .rank = 0, .nranks = 1, .am_cb = on_am, .failure_cb = on_failure, .cb_arg = &s};
    struct tp_mem *mem = NULL;
    struct tp_ucx_stats st;
    struct get_done d = {0, 1};
    const void *addr;
    void *region = NULL, *rkey;
    size_t alen, rlen;
    char dst[4096];
    struct msg *m;
    double end;

    unsetenv("UCX_TLS");
    pattern_init();
    memset(&s, 0, sizeof(s));
    s.ops = tp_find("ucx");
    ck_assert_int_eq(s.ops->init(&p, &s.tp), DEED_OK);
    ck_assert_int_eq(s.ops->address(s.tp, &addr, &alen), DEED_OK);
    ck_assert_uint_gt(alen, 0);
    ck_assert_int_eq(s.ops->connect(s.tp, 0, addr, alen), DEED_OK);
    for (uint64_t i = 0; i < 10; i++)
        ck_assert_int_eq(send_msg(&s, 0, i, 0, (size_t)(i * i * 997) % (3 * MiB)), DEED_OK);
    for (uint64_t i = 0; i < 10; i++) {
        m = wait_msg(&s, 30);
        ck_assert(msg_ok(m, 0, i, 0, (size_t)(i * i * 997) % (3 * MiB)));
        free(m);
    }

    ck_assert_int_eq(s.ops->mem_map(s.tp, &region, MiB, TP_MEM_ALLOCATE, &mem), DEED_OK);
    ck_assert_ptr_nonnull(region);
    region_fill(region, MiB);
    ck_assert_int_eq(s.ops->rkey_pack(s.tp, mem, &rkey, &rlen), DEED_OK);
    ck_assert_int_eq(s.ops->get(s.tp, 0, dst, NULL, (uint64_t)(uintptr_t)region + 4096, rkey, rlen,
                                sizeof(dst), get_cb, &d),
                     DEED_OK);
    end = tu_now_s() + 30;
    while (d.calls == 0 && tu_now_s() < end)
        s.ops->progress(s.tp);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_int_eq(d.status, 0);
    ck_assert_int_eq(memcmp(dst, (char *)region + 4096, sizeof(dst)), 0);
    tp_ucx_get_stats(s.tp, &st);
    ck_assert_uint_eq(st.rkey_misses, 1);
    ck_assert_int_eq(s.failures, 0);

    /* arm/event fd: with nothing pending the worker can be armed (0) or reports events (1). */
    ck_assert_int_ge(s.ops->arm(s.tp), 0);

    s.ops->rkey_buf_free(s.tp, rkey);
    ck_assert_int_eq(s.ops->mem_unmap(s.tp, mem), DEED_OK);
    side_close(&s);
}
END_TEST

static Suite *ucx_suite(void)
{
    /* One case per test and transport (CK_RUN_CASE=get_shm runs one of them). */
    const struct {
        const char *name;
        const TTest *test;
        int timeout;
    } cases[] = {
        {"ops_and_errors", ops_and_errors, 60},
        {"loopback", loopback, 60},
        {"am_shm", am_shm, 240},
        {"am_tcp", am_tcp, 240},
        {"am_events_shm", am_events_shm, 120},
        {"am_events_tcp", am_events_tcp, 120},
        {"get_shm", get_shm, 240},
        {"get_tcp", get_tcp, 240},
        {"killed_peer_tcp", killed_peer_tcp, 120},
    };
    Suite *s = suite_create("ucx");

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);

        tcase_add_test(tc, cases[i].test);
        tcase_set_timeout(tc, cases[i].timeout);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ucx_suite());
    int failed;

    log_set_level(DEED_LOG_WARN);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
