/*
 * test_verbs.c — the "verbs" transport with real processes on a real RDMA device (soft-RoCE
 * in CI: tests/rxe/vm.sh runs this suite inside a VM with rdma_rxe). Each data-path test
 * forks a peer (rank 1); the two exchange their addresses over a socketpair and connect with
 * rdma_cm, then: active messages in order from 0 bytes to 3 MiB (fragmented) and a burst far
 * beyond the credits (flow control and queueing, byte for byte); a 64 MiB RDMA READ from a
 * region the peer registered, while the peer does not progress at all (one-sided), and reads
 * into unregistered memory; a SIGKILLed peer reported through failure_cb, after which sends
 * and gets to it fail. The configuration checks run everywhere.
 *
 * Without an RDMA device (no rdma_rxe, no HCA) the data-path tests cannot run: main() probes
 * in a child process, prints why ("no RDMA device: ...") and exits 77 (meson: SKIP) after the
 * configuration checks passed. DEED_TEST_REQUIRE_VERBS=1 (set inside the VM) turns that into
 * a failure. Transport state is created after Check's fork, in each process; the child never
 * uses Check's assertions (CHILD_CHECK prints and exits non-zero, and the parent asserts the
 * child's exit status).
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
#include "transport.h"
#include "verbs/verbs.h"

/* Weak: this file is built whether or not the verbs transport is (main() checks tp_find). */
#pragma weak tp_verbs_get_stats

#define MiB (1024u * 1024u)
#define REGION (64u * MiB)
#define WAIT_S 120 /* a hang guard, not a performance bound */

#define CHILD_CHECK(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "child: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);        \
            _exit(3);                                                                              \
        }                                                                                          \
    } while (0)

/* Byte i of message `seq`. */
static unsigned char msg_byte(uint64_t seq, size_t i)
{
    uint64_t z = (seq << 32) + i / 8;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (unsigned char)((z ^ (z >> 31)) >> (8 * (i % 8)));
}

static void msg_fill(unsigned char *b, uint64_t seq, size_t len)
{
    for (size_t i = 0; i < len; i++)
        b[i] = msg_byte(seq, i);
}

/* ---- one side of a connection ---------------------------------------------------------- */

struct msg {
    struct msg *next;
    uint32_t src;
    size_t len;
    unsigned char data[];
};

struct side {
    const struct tp_ops *ops;
    struct tp *tp;
    struct msg *head, *tail;
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
    }
    return m;
}

/* Opens "verbs" as `rank` of 2 and connects to the other rank through sock. 0 on success. */
static int side_open(struct side *s, uint32_t rank, int sock)
{
    struct tp_params p = {
        .rank = rank, .nranks = 2, .am_cb = on_am, .failure_cb = on_failure, .cb_arg = s};
    const void *addr;
    size_t len;
    unsigned char peer[256];
    uint32_t plen, mylen;

    memset(s, 0, sizeof(*s));
    s->ops = tp_find("verbs");
    if (!s->ops || s->ops->init(&p, &s->tp) != DEED_OK)
        return -1;
    if (s->ops->address(s->tp, &addr, &len) != DEED_OK || len > sizeof(peer))
        return -2;
    mylen = (uint32_t)len;
    if (tu_write_all(sock, &mylen, 4) || tu_write_all(sock, addr, len) || tu_read_all(sock, &plen, 4) ||
        plen > sizeof(peer) || tu_read_all(sock, peer, plen))
        return -3;
    return s->ops->connect(s->tp, 1 - rank, peer, plen) == DEED_OK ? 0 : -4;
}

static void side_close(struct side *s)
{
    struct msg *m;

    s->ops->fini(s->tp);
    while ((m = pop_msg(s)))
        free(m);
}

/* Progresses until pred holds (sleeping on the event fd once armed): 0, or -1 after WAIT_S. */
static int wait_for(struct side *s, int (*pred)(struct side *, void *), void *arg)
{
    double end = tu_now_s() + WAIT_S;

    while (!pred(s, arg)) {
        if (s->ops->progress(s->tp) > 0)
            continue;
        if (s->ops->arm(s->tp) == 0) {
            struct pollfd pf = {.fd = s->ops->event_fd(s->tp), .events = POLLIN};
            poll(&pf, 1, 100);
        }
        if (tu_now_s() > end)
            return -1;
    }
    return 0;
}

static int has_msg(struct side *s, void *arg)
{
    return s->head != NULL;
}

static int has_failure(struct side *s, void *arg)
{
    return s->failures > 0;
}

static struct msg *wait_msg(struct side *s)
{
    return wait_for(s, has_msg, NULL) == 0 ? pop_msg(s) : NULL;
}

static pid_t fork_peer(int *sock)
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
        *sock = sv[1];
    } else {
        close(sv[1]);
        *sock = sv[0];
    }
    return pid;
}

static void reap(pid_t pid)
{
    int st;

    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the peer failed (status %d, signal %d)",
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* ---- configuration (runs without a device) --------------------------------------------- */

static void expect_init(const char *var, const char *val, int want)
{
    struct tp_params p = {.rank = 0, .nranks = 2};
    const struct tp_ops *ops = tp_find("verbs");
    struct tp *tp = NULL;
    int rc;

    setenv(var, val, 1);
    rc = ops->init(&p, &tp);
    unsetenv(var);
    if (rc == DEED_OK)
        ops->fini(tp);
    ck_assert_msg(rc == want, "%s=%s: init returned %d (%s), expected %s", var, val, rc,
                  deed_strerror(rc), deed_strerror(want));
}

START_TEST(config_errors)
{
    ck_assert_ptr_nonnull(tp_find("verbs"));
    ck_assert_ptr_nonnull(strstr(tp_names(), "verbs"));
    expect_init("DEED_VERBS_PORT", "zero", DEED_ERR_CONFIG);
    expect_init("DEED_VERBS_PORT", "0", DEED_ERR_CONFIG);
    expect_init("DEED_VERBS_GID_INDEX", "-1", DEED_ERR_CONFIG);
    expect_init("DEED_VERBS_ADDR", "not-an-ip", DEED_ERR_CONFIG);
    expect_init("DEED_VERBS_CREDITS", "1", DEED_ERR_CONFIG);
    expect_init("DEED_VERBS_INLINE", "lots", DEED_ERR_CONFIG);
}
END_TEST

START_TEST(unknown_device)
{
    /* CONFIG where devices exist (the message lists them), TRANSPORT where none do */
    struct tp_params p = {.rank = 0, .nranks = 2};
    const struct tp_ops *ops = tp_find("verbs");
    struct tp *tp = NULL;
    int rc;

    setenv("DEED_VERBS_DEVICE", "no_such_hca9", 1);
    rc = ops->init(&p, &tp);
    ck_assert_msg(rc == DEED_ERR_CONFIG || rc == DEED_ERR_TRANSPORT, "init returned %s",
                  deed_strerror(rc));
    ck_assert_int_eq(ops->init(NULL, &tp), DEED_ERR_INVALID_ARG);
}
END_TEST

/* ---- active messages ------------------------------------------------------------------- */

#define BURST 3000

/* The peer echoes every message back until it receives an empty one, then sends its stats. */
static void echo_child(int sock)
{
    struct side s;
    struct tp_verbs_stats st;

    CHILD_CHECK(side_open(&s, 1, sock) == 0);
    for (;;) {
        struct msg *m = wait_msg(&s);
        struct iovec iov;

        CHILD_CHECK(m && m->src == 0);
        if (m->len == 0) {
            free(m);
            break;
        }
        iov.iov_base = m->data;
        iov.iov_len = m->len;
        CHILD_CHECK(s.ops->am_send(s.tp, 0, &iov, 1) == DEED_OK);
        free(m);
    }
    tp_verbs_get_stats(s.tp, &st);
    CHILD_CHECK(tu_write_all(sock, &st, sizeof(st)) == 0);
    side_close(&s);
    close(sock);
    exit(0);
}

static void send_seq(struct side *s, uint64_t seq, size_t len)
{
    unsigned char *b = malloc(len + 16);
    /* two iov entries: an 8-byte sequence number and the pattern */
    struct iovec iov[2] = {{.iov_base = &seq, .iov_len = 8}, {.iov_base = b, .iov_len = len}};

    ck_assert_ptr_nonnull(b);
    msg_fill(b, seq, len);
    ck_assert_int_eq(s->ops->am_send(s->tp, 1, iov, 2), DEED_OK);
    free(b);
}

static void expect_seq(struct side *s, uint64_t seq, size_t len)
{
    struct msg *m = wait_msg(s);
    uint64_t got;

    ck_assert_msg(m != NULL, "no echo of message %llu within %d s", (unsigned long long)seq,
                  WAIT_S);
    ck_assert_uint_eq(m->src, 1);
    ck_assert_uint_eq(m->len, len + 8);
    memcpy(&got, m->data, 8);
    ck_assert_msg(got == seq, "echo %llu arrived where %llu was expected (order)",
                  (unsigned long long)got, (unsigned long long)seq);
    for (size_t i = 0; i < len; i++) {
        if (m->data[8 + i] != msg_byte(seq, i))
            ck_abort_msg("message %llu (%zu bytes): byte %zu differs", (unsigned long long)seq, len,
                         i);
    }
    free(m);
}

START_TEST(am_sizes_order_and_credits)
{
    static const size_t sizes[] = {0,   1,          100, 16368 - 8, 16368 - 7, 16368 * 3 + 5,
                                   MiB, 3 * MiB + 7};
    const size_t ns = sizeof(sizes) / sizeof(sizes[0]);
    struct side s;
    struct tp_verbs_stats st, peer;
    struct iovec end = {.iov_base = NULL, .iov_len = 0};
    int sock;
    pid_t pid = fork_peer(&sock);

    if (pid == 0)
        echo_child(sock);
    ck_assert_int_eq(side_open(&s, 0, sock), 0);
    ck_assert(s.ops->caps(s.tp) & TP_CAP_AM);
    ck_assert_uint_eq(s.ops->eager_limit(s.tp), 16368);

    /* one at a time, every size */
    for (size_t i = 0; i < ns; i++) {
        send_seq(&s, i, sizes[i]);
        expect_seq(&s, i, sizes[i]);
    }
    /* a burst far beyond the credits, with large ones mixed in, then all echoes in order */
    for (uint64_t k = 0; k < BURST; k++)
        send_seq(&s, 100 + k, k % 500 == 0 ? sizes[k / 500 % ns] : 64 + k % 200);
    for (uint64_t k = 0; k < BURST; k++)
        expect_seq(&s, 100 + k, k % 500 == 0 ? sizes[k / 500 % ns] : 64 + k % 200);

    ck_assert_int_eq(s.ops->am_send(s.tp, 1, &end, 1), DEED_OK);
    ck_assert_int_eq(tu_read_all(sock, &peer, sizeof(peer)), 0);
    tp_verbs_get_stats(s.tp, &st);
    fprintf(stderr,
            "test_verbs: %s port %u gid %d: %llu messages in %llu SENDs, %u credits/peer, SRQ "
            "%u, inline %u; credit stalls %llu here, %llu at the peer; credit-only SENDs %llu "
            "+ %llu\n",
            st.device, st.port, st.gid_index, (unsigned long long)st.am_sent,
            (unsigned long long)st.frags_sent, st.credits, st.srq_depth, st.max_inline,
            (unsigned long long)st.credit_stalls, (unsigned long long)peer.credit_stalls,
            (unsigned long long)st.credit_msgs, (unsigned long long)peer.credit_msgs);
    ck_assert_uint_eq(st.am_sent, ns + BURST + 1);
    ck_assert_uint_eq(st.am_recv, ns + BURST);
    ck_assert_uint_gt(st.frags_sent, st.am_sent); /* the large ones were fragmented */
    /* the burst outran the credits: the sender waited for returned credits */
    ck_assert_uint_gt(st.credit_stalls, 0);
    ck_assert_uint_eq(peer.am_recv, ns + BURST + 1);
    reap(pid);
    side_close(&s);
    close(sock);
}
END_TEST

/* ---- RDMA READ --------------------------------------------------------------------------- */

struct get_done {
    int calls;
    int status;
};

static void get_cb(void *arg, int status)
{
    struct get_done *d = arg;

    d->calls++;
    d->status = status;
}

static int get_finished(struct side *s, void *arg)
{
    return ((struct get_done *)arg)->calls > 0;
}

/* The peer registers a 64 MiB region, fills it, sends (addr, rkey), then blocks on the
 * socket without progressing until the reader is done. */
static void region_child(int sock, int die)
{
    struct side s;
    struct tp_mem *mem = NULL;
    void *base = NULL, *rkey;
    size_t rlen;
    uint64_t addr;
    char c;

    CHILD_CHECK(side_open(&s, 1, sock) == 0);
    CHILD_CHECK(s.ops->mem_map(s.tp, &base, REGION, TP_MEM_ALLOCATE, &mem) == DEED_OK);
    msg_fill(base, 77, REGION);
    CHILD_CHECK(s.ops->rkey_pack(s.tp, mem, &rkey, &rlen) == DEED_OK);
    addr = (uint64_t)(uintptr_t)base;
    uint32_t l = (uint32_t)rlen;
    CHILD_CHECK(tu_write_all(sock, &addr, 8) == 0 && tu_write_all(sock, &l, 4) == 0 &&
                tu_write_all(sock, rkey, rlen) == 0);
    s.ops->rkey_buf_free(s.tp, rkey);
    if (die) {
        pause(); /* killed by the parent */
        _exit(4);
    }
    CHILD_CHECK(tu_read_all(sock, &c, 1) == 0); /* no progress while the parent reads */
    CHILD_CHECK(s.ops->mem_unmap(s.tp, mem) == DEED_OK);
    side_close(&s);
    close(sock);
    exit(0);
}

static void *recv_rkey(int sock, uint64_t *addr, size_t *rlen)
{
    uint32_t l;
    void *rkey;

    ck_assert_int_eq(tu_read_all(sock, addr, 8), 0);
    ck_assert_int_eq(tu_read_all(sock, &l, 4), 0);
    ck_assert_uint_le(l, 256);
    rkey = malloc(l);
    ck_assert_int_eq(tu_read_all(sock, rkey, l), 0);
    *rlen = l;
    return rkey;
}

START_TEST(get_64mib_one_sided)
{
    struct side s;
    struct tp_mem *dmem = NULL;
    struct get_done d = {0, 0}, d2 = {0, 0};
    struct tp_verbs_stats st;
    void *dst = NULL, *rkey;
    unsigned char *plain;
    size_t rlen;
    uint64_t raddr;
    int sock;
    pid_t pid = fork_peer(&sock);

    if (pid == 0)
        region_child(sock, 0);
    ck_assert_int_eq(side_open(&s, 0, sock), 0);
    ck_assert(s.ops->caps(s.tp) & TP_CAP_RMA_NATIVE);
    rkey = recv_rkey(sock, &raddr, &rlen);

    ck_assert_int_eq(s.ops->mem_map(s.tp, &dst, REGION, TP_MEM_ALLOCATE, &dmem), DEED_OK);
    memset(dst, 0xee, REGION);
    ck_assert_int_eq(s.ops->get(s.tp, 1, dst, dmem, raddr, rkey, rlen, REGION, get_cb, &d),
                     DEED_OK);
    ck_assert_int_eq(wait_for(&s, get_finished, &d), 0);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_int_eq(d.status, 0);
    for (size_t i = 0; i < REGION; i++) {
        if (((unsigned char *)dst)[i] != msg_byte(77, i))
            ck_abort_msg("64 MiB get: byte %zu differs", i);
    }
    /* into memory no region covers (registered for the get), from an offset */
    plain = malloc(MiB + 3);
    ck_assert_int_eq(
        s.ops->get(s.tp, 1, plain, NULL, raddr + 5 * MiB + 1, rkey, rlen, MiB + 3, get_cb, &d2),
        DEED_OK);
    ck_assert_int_eq(wait_for(&s, get_finished, &d2), 0);
    ck_assert_int_eq(d2.status, 0);
    for (size_t i = 0; i < MiB + 3; i++) {
        if (plain[i] != msg_byte(77, 5 * MiB + 1 + i))
            ck_abort_msg("unregistered get: byte %zu differs", i);
    }
    free(plain);
    /* outside the peer's region: refused before anything is posted */
    ck_assert_int_eq(
        s.ops->get(s.tp, 1, dst, dmem, raddr + REGION - 8, rkey, rlen, 16, get_cb, &d2),
        DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(s.ops->get(s.tp, 1, dst, dmem, raddr, rkey, rlen - 1, 16, get_cb, &d2),
                     DEED_ERR_INVALID_ARG);
    tp_verbs_get_stats(s.tp, &st);
    ck_assert_uint_eq(st.gets, 2);
    ck_assert_uint_ge(st.read_wrs, 2);
    ck_assert_int_eq(tu_write_all(sock, "x", 1), 0);
    reap(pid);
    ck_assert_int_eq(s.ops->mem_unmap(s.tp, dmem), DEED_OK);
    free(rkey);
    side_close(&s);
    close(sock);
}
END_TEST

/* ---- failure ----------------------------------------------------------------------------- */

START_TEST(killed_peer_reported)
{
    struct side s;
    struct tp_mem *dmem = NULL;
    struct tp_verbs_stats st;
    struct get_done d = {0, 0};
    struct iovec iov = {.iov_base = "hi", .iov_len = 2};
    void *dst = NULL, *rkey;
    size_t rlen;
    uint64_t raddr;
    int sock, status;
    double t0;
    pid_t pid = fork_peer(&sock);

    if (pid == 0)
        region_child(sock, 1);
    ck_assert_int_eq(side_open(&s, 0, sock), 0);
    ck_assert(s.ops->caps(s.tp) & TP_CAP_PEER_FAILURE);
    rkey = recv_rkey(sock, &raddr, &rlen);
    ck_assert_int_eq(s.ops->mem_map(s.tp, &dst, MiB, TP_MEM_ALLOCATE, &dmem), DEED_OK);
    ck_assert_int_eq(s.ops->am_send(s.tp, 1, &iov, 1), DEED_OK);

    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    t0 = tu_now_s();
    ck_assert_msg(wait_for(&s, has_failure, NULL) == 0, "the killed peer was not reported");
    fprintf(stderr, "test_verbs: killed peer reported after %.3f s\n", tu_now_s() - t0);
    ck_assert_uint_eq(s.failed_rank, 1);
    for (int i = 0; i < 100; i++)
        s.ops->progress(s.tp);
    ck_assert_int_eq(s.failures, 1); /* once */
    ck_assert_int_eq(s.ops->am_send(s.tp, 1, &iov, 1), DEED_ERR_TRANSPORT);
    ck_assert_int_eq(s.ops->get(s.tp, 1, dst, dmem, raddr, rkey, rlen, 64, get_cb, &d),
                     DEED_ERR_TRANSPORT);
    ck_assert_int_eq(d.calls, 0);
    tp_verbs_get_stats(s.tp, &st);
    ck_assert_uint_eq(st.peers_failed, 1);
    ck_assert_int_eq(s.ops->mem_unmap(s.tp, dmem), DEED_OK);
    free(rkey);
    side_close(&s);
    close(sock);
}
END_TEST

/* ---- main -------------------------------------------------------------------------------- */

/* 0 if a verbs transport starts here (tried in a child: no state before Check's forks). */
static int probe_device(void)
{
    pid_t pid;
    int st;

    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        struct tp_params p = {.rank = 0, .nranks = 2};
        const struct tp_ops *ops = tp_find("verbs");
        struct tp *tp = NULL;

        if (!ops || ops->init(&p, &tp) != DEED_OK)
            _exit(1);
        ops->fini(tp);
        _exit(0);
    }
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int main(void)
{
    Suite *s = suite_create("verbs");
    TCase *cfg = tcase_create("config");
    int have = 0, rc;
    const char *req = getenv("DEED_TEST_REQUIRE_VERBS");

    if (!tp_find("verbs")) {
        fprintf(stderr,
                "test_verbs: %s: this build has no verbs transport (libibverbs and "
                "librdmacm not found; transports built: %s)\n",
                req && strcmp(req, "1") == 0 ? "FAIL" : "SKIP", tp_names());
        return req && strcmp(req, "1") == 0 ? EXIT_FAILURE : 77;
    }
    tcase_add_test(cfg, config_errors);
    tcase_add_test(cfg, unknown_device);
    suite_add_tcase(s, cfg);
    if (probe_device() == 0) {
        TCase *data = tcase_create("rdma");

        tcase_set_timeout(data, 300);
        tcase_add_test(data, am_sizes_order_and_credits);
        tcase_add_test(data, get_64mib_one_sided);
        tcase_add_test(data, killed_peer_reported);
        suite_add_tcase(s, data);
        have = 1;
    }
    rc = tu_run(s);
    if (!have) {
        if (req && strcmp(req, "1") == 0) {
            fprintf(stderr, "test_verbs: FAIL: DEED_TEST_REQUIRE_VERBS=1 but the verbs transport "
                            "cannot start (see the error above)\n");
            return EXIT_FAILURE;
        }
        fprintf(stderr, "test_verbs: SKIP the RDMA tests: no RDMA device usable here (the "
                        "reason is logged above); tests/rxe/vm.sh runs them under soft-RoCE\n");
        return rc == EXIT_SUCCESS ? 77 : rc;
    }
    return rc;
}
