/*
 * test_bootstrap.c — unit tests for the bootstrap layer: the "single" implementation and
 * selection; the "tcp" client against the rendezvous server (the test process runs the
 * server's poll loop, forked clients do all-gathers of different lengths and barriers);
 * refusals (wrong key, duplicate rank, rank out of range, rank count mismatch) with their
 * messages; timeouts that name the rendezvous; malformed bytes dropped while the server goes
 * on; a rank that dies or aborts is seen by the server and fails the others quickly; and the
 * launcher placement function on synthetic topologies.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap.h"
#include "deed.h"
#include "log.h"
#include "rendezvous.h"
#include "topo.h"

#define MAXC 16

static const uint8_t KEY[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe};
static const char *KEYHEX = "0123456789abcdef1032547698badcfe";
static const char *BADKEYHEX = "0123456789abcdef1032547698badcff";

/* Child exit codes: 0 = all good; 100 + (-status) = a bootstrap call failed; 50+ = a check. */
#define CHILD_FAILED(rc) (100 - (rc))

enum scenario { SC_GATHER, SC_INIT_ONLY, SC_DIE_AFTER_INIT, SC_ABORT, SC_GATHER_ONCE };

struct client {
    pid_t pid;
    int err_fd; /* read end of its stderr */
    int status;
    char err[8192];
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void fill(uint8_t *p, size_t len, uint32_t rank, uint32_t round)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(rank * 31 + round * 7 + i);
}

/* Length of rank r's contribution in round k of SC_GATHER. */
static size_t contrib_len(uint32_t r, uint32_t k)
{
    switch (k) {
    case 0:
        return r * 3 + 1;
    case 1:
        return r % 2 ? 1000 + r : 0;
    default:
        return r == 0 ? 200000 : 5;
    }
}

static int client_gather(const struct boot_ops *ops, struct boot *b, uint32_t rank,
                         uint32_t nranks, int rounds)
{
    for (int k = 0; k < rounds; k++) {
        size_t len = contrib_len(rank, (uint32_t)k), off = 0;
        uint8_t *mine = malloc(len ? len : 1), *expect;
        void *all;
        size_t *lens;
        int rc;

        fill(mine, len, rank, (uint32_t)k);
        rc = ops->allgatherv(b, mine, len, &all, &lens);
        free(mine);
        if (rc != DEED_OK)
            return CHILD_FAILED(rc);
        for (uint32_t r = 0; r < nranks; r++) {
            size_t l = contrib_len(r, (uint32_t)k);
            if (lens[r] != l)
                return 50;
            expect = malloc(l ? l : 1);
            fill(expect, l, r, (uint32_t)k);
            if (l && memcmp((uint8_t *)all + off, expect, l) != 0) {
                free(expect);
                return 51;
            }
            free(expect);
            off += l;
        }
        free(all);
        free(lens);
        if ((rc = ops->barrier(b)) != DEED_OK)
            return CHILD_FAILED(rc);
    }
    return 0;
}

static int run_client(enum scenario sc)
{
    const struct boot_ops *ops = boot_select();
    struct boot *b;
    uint32_t rank, nranks;
    int rc;

    if (strcmp(ops->name, "tcp") != 0)
        return 60;
    rc = ops->init(0, &b, &rank, &nranks);
    if (rc != DEED_OK)
        return CHILD_FAILED(rc);
    if (rank != (uint32_t)atoi(getenv("DEED_RANK")) || nranks != (uint32_t)atoi(getenv("DEED_NRANKS")))
        return 61;
    switch (sc) {
    case SC_GATHER:
        rc = client_gather(ops, b, rank, nranks, 3);
        break;
    case SC_GATHER_ONCE:
        rc = client_gather(ops, b, rank, nranks, 1);
        break;
    case SC_INIT_ONLY:
        rc = 0;
        break;
    case SC_DIE_AFTER_INIT:
        _exit(0); /* no goodbye: the server sees EOF */
    case SC_ABORT:
        ops->abort(b, "boom: the test asked for it");
        ops->fini(b);
        return 0;
    }
    ops->fini(b);
    return rc;
}

/* Fork a client with the given environment; its stderr goes to a pipe. */
static void spawn(struct client *c, uint16_t port, const char *key, uint32_t rank,
                  uint32_t nranks, const char *timeout, enum scenario sc)
{
    int p[2];

    memset(c, 0, sizeof(*c));
    ck_assert_int_eq(pipe(p), 0);
    c->pid = fork();
    ck_assert_int_ge(c->pid, 0);
    if (c->pid == 0) {
        char buf[64];
        close(p[0]);
        dup2(p[1], STDERR_FILENO);
        close(p[1]);
        snprintf(buf, sizeof(buf), "127.0.0.1:%u", (unsigned)port);
        setenv("DEED_RENDEZVOUS", buf, 1);
        setenv("DEED_JOB_KEY", key, 1);
        snprintf(buf, sizeof(buf), "%u", rank);
        setenv("DEED_RANK", buf, 1);
        snprintf(buf, sizeof(buf), "%u", nranks);
        setenv("DEED_NRANKS", buf, 1);
        unsetenv("DEED_BOOTSTRAP");
        if (timeout)
            setenv("DEED_BOOT_TIMEOUT", timeout, 1);
        else
            unsetenv("DEED_BOOT_TIMEOUT");
        _exit(run_client(sc));
    }
    close(p[1]);
    c->err_fd = p[0];
    fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
}

static void drain(struct client *c)
{
    size_t len = strlen(c->err);
    ssize_t n;

    if (c->err_fd < 0)
        return;
    while (len + 1 < sizeof(c->err) &&
           (n = read(c->err_fd, c->err + len, sizeof(c->err) - 1 - len)) > 0)
        len += (size_t)n;
    c->err[len] = '\0';
}

/* Run the server (if any) until every client exited or the deadline; returns how many are
 * still running (then killed). */
static int serve(struct rdv *r, struct client *cs, int n, int max_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)max_ms;
    int left = n;

    while (left > 0 && now_ms() < deadline) {
        struct pollfd fds[64];
        int nf = r ? rdv_pollfds(r, fds, 64) : 0;
        int rc = poll(fds, (nfds_t)nf, 20);
        if (rc > 0)
            ck_assert_int_eq(rdv_poll(r, fds, nf), DEED_OK);
        for (int i = 0; i < n; i++) {
            drain(&cs[i]);
            if (cs[i].pid > 0 && waitpid(cs[i].pid, &cs[i].status, WNOHANG) == cs[i].pid) {
                cs[i].pid = 0;
                left--;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (cs[i].pid > 0) {
            kill(cs[i].pid, SIGKILL);
            waitpid(cs[i].pid, &cs[i].status, 0);
            cs[i].pid = 0;
        }
        drain(&cs[i]);
        close(cs[i].err_fd);
        cs[i].err_fd = -1;
    }
    /* one more turn so the server sees the last goodbyes and hang-ups */
    for (int k = 0; r && k < 5; k++) {
        struct pollfd fds[64];
        int nf = rdv_pollfds(r, fds, 64);
        if (poll(fds, (nfds_t)nf, 10) > 0)
            rdv_poll(r, fds, nf);
    }
    return left;
}

static int exit_code(const struct client *c)
{
    return WIFEXITED(c->status) ? WEXITSTATUS(c->status) : 1000 + WTERMSIG(c->status);
}

static struct rdv *server(uint32_t nranks, uint16_t *port)
{
    struct rdv *r = NULL;

    ck_assert_int_eq(rdv_create("127.0.0.1", 0, nranks, KEY, &r, port), DEED_OK);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_gt(*port, 0);
    return r;
}

/* A raw TCP connection to the server (blocking, with a receive timeout). */
static int raw_connect(uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval tv = {.tv_sec = 5};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Serve until fd has an answer (or EOF) from the server; returns bytes read, 0 at EOF. */
static ssize_t raw_reply(struct rdv *r, int fd, uint8_t *buf, size_t len)
{
    uint64_t deadline = now_ms() + 5000;

    while (now_ms() < deadline) {
        struct pollfd fds[65];
        int nf = rdv_pollfds(r, fds, 64);
        fds[nf] = (struct pollfd){.fd = fd, .events = POLLIN};
        if (poll(fds, (nfds_t)nf + 1, 20) > 0) {
            rdv_poll(r, fds, nf);
            if (fds[nf].revents) {
                ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
                if (n >= 0)
                    return n;
                if (errno == ECONNRESET)
                    return 0;
            }
        }
    }
    return -1;
}

static void raw_hello(int fd, const uint8_t *key, uint32_t rank, uint32_t nranks)
{
    uint8_t m[RDV_HDR_LEN + 24];

    rdv_put_header(m, RDV_HELLO, 24);
    memcpy(m + RDV_HDR_LEN, key, 16);
    rdv_put32(m + RDV_HDR_LEN + 16, rank);
    rdv_put32(m + RDV_HDR_LEN + 20, nranks);
    ck_assert_int_eq(send(fd, m, sizeof(m), MSG_NOSIGNAL), (ssize_t)sizeof(m));
}

/* Expect a REFUSE whose text contains want. */
static void expect_refuse(struct rdv *r, int fd, const char *want)
{
    uint8_t buf[1024];
    ssize_t n = raw_reply(r, fd, buf, sizeof(buf) - 1);

    ck_assert_int_ge(n, RDV_HDR_LEN);
    ck_assert_uint_eq(rdv_get32(buf), RDV_MAGIC);
    ck_assert_uint_eq(rdv_get16(buf + 6), RDV_REFUSE);
    ck_assert_uint_eq(rdv_get32(buf + 8), (uint32_t)n - RDV_HDR_LEN);
    buf[n] = '\0';
    ck_assert_msg(strstr((char *)buf + RDV_HDR_LEN, want), "refusal '%s' lacks '%s'",
                  (char *)buf + RDV_HDR_LEN, want);
}

/* ---- tests --------------------------------------------------------------------------- */

START_TEST(single_is_rank_0_of_1)
{
    const struct boot_ops *ops;
    struct boot *b;
    uint32_t rank = 9, nranks = 9;
    void *all;
    size_t *lens;

    unsetenv("DEED_RENDEZVOUS");
    unsetenv("DEED_BOOTSTRAP");
    unsetenv("DEED_NRANKS");
    ops = boot_select();
    ck_assert_ptr_eq(ops, &boot_single_ops);
    ck_assert_uint_eq(ops->size, sizeof(struct boot_ops));
    ck_assert_int_eq(ops->init(0, &b, &rank, &nranks), DEED_OK);
    ck_assert_uint_eq(rank, 0);
    ck_assert_uint_eq(nranks, 1);
    ck_assert_int_eq(ops->allgatherv(b, "hello", 5, &all, &lens), DEED_OK);
    ck_assert_uint_eq(lens[0], 5);
    ck_assert_mem_eq(all, "hello", 5);
    free(all);
    free(lens);
    ck_assert_int_eq(ops->allgatherv(b, NULL, 0, &all, &lens), DEED_OK);
    ck_assert_uint_eq(lens[0], 0);
    free(all);
    free(lens);
    ck_assert_int_eq(ops->barrier(b), DEED_OK);
    ops->fini(b);

    setenv("DEED_NRANKS", "4", 1); /* a multi-rank job without a rendezvous is an error */
    ck_assert_int_eq(ops->init(0, &b, &rank, &nranks), DEED_ERR_BOOTSTRAP);
    unsetenv("DEED_NRANKS");
}
END_TEST

START_TEST(select_and_find)
{
    ck_assert_ptr_eq(boot_find("tcp"), &boot_tcp_ops);
    ck_assert_ptr_eq(boot_find("single"), &boot_single_ops);
    ck_assert_ptr_null(boot_find("pmix"));
    ck_assert_ptr_null(boot_find(NULL));
    unsetenv("DEED_BOOTSTRAP");
    setenv("DEED_RENDEZVOUS", "127.0.0.1:1", 1);
    ck_assert_ptr_eq(boot_select(), &boot_tcp_ops);
    setenv("DEED_BOOTSTRAP", "single", 1);
    ck_assert_ptr_eq(boot_select(), &boot_single_ops);
    unsetenv("DEED_BOOTSTRAP");
    unsetenv("DEED_RENDEZVOUS");
    ck_assert_ptr_eq(boot_select(), &boot_single_ops);

    unsetenv("DEED_BOOT_TIMEOUT");
    ck_assert_uint_eq(boot_default_timeout_ms(), 30000);
    setenv("DEED_BOOT_TIMEOUT", "2", 1);
    ck_assert_uint_eq(boot_default_timeout_ms(), 2000);
    setenv("DEED_BOOT_TIMEOUT", "0.25", 1);
    ck_assert_uint_eq(boot_default_timeout_ms(), 250);
    setenv("DEED_BOOT_TIMEOUT", "soon", 1);
    ck_assert_uint_eq(boot_default_timeout_ms(), 30000);
    unsetenv("DEED_BOOT_TIMEOUT");
}
END_TEST

START_TEST(tcp_env_errors_are_reported)
{
    struct boot *b;
    uint32_t rank, nranks;
    const struct {
        const char *rv, *key, *rank, *nranks;
    } cases[] = {
        {"nocolon", KEYHEX, "0", "1"},        {"127.0.0.1:99999", KEYHEX, "0", "1"},
        {"127.0.0.1:5", "abc", "0", "1"},      {"127.0.0.1:5", NULL, "0", "1"},
        {"127.0.0.1:5", KEYHEX, "2", "2"},     {"127.0.0.1:5", KEYHEX, "x", "2"},
        {"127.0.0.1:5", KEYHEX, "0", "0"},     {"127.0.0.1:5", KEYHEX, "0", NULL},
    };

    deed__log_level = -1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        setenv("DEED_RENDEZVOUS", cases[i].rv, 1);
        if (cases[i].key)
            setenv("DEED_JOB_KEY", cases[i].key, 1);
        else
            unsetenv("DEED_JOB_KEY");
        setenv("DEED_RANK", cases[i].rank, 1);
        if (cases[i].nranks)
            setenv("DEED_NRANKS", cases[i].nranks, 1);
        else
            unsetenv("DEED_NRANKS");
        b = (struct boot *)1;
        ck_assert_int_eq(boot_tcp_ops.init(100, &b, &rank, &nranks), DEED_ERR_BOOTSTRAP);
        ck_assert_ptr_null(b);
    }
    deed__log_level = DEED_LOG_WARN;
}
END_TEST

START_TEST(allgatherv_and_barriers)
{
    uint16_t port;
    struct rdv *r = server(5, &port);
    struct client cs[5];

    for (uint32_t i = 0; i < 5; i++)
        spawn(&cs[i], port, KEYHEX, i, 5, "20", SC_GATHER);
    ck_assert_int_eq(serve(r, cs, 5, 30000), 0);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(exit_code(&cs[i]) == 0, "rank %d: exit %d, stderr: %s", i,
                      exit_code(&cs[i]), cs[i].err);
    ck_assert_uint_eq(rdv_connected(r), 5);
    ck_assert_uint_eq(rdv_finished(r), 5);
    ck_assert_uint_eq(rdv_failed(r), 0);
    rdv_destroy(r);
}
END_TEST

START_TEST(one_rank_job_over_tcp)
{
    uint16_t port;
    struct rdv *r = server(1, &port);
    struct client c;

    spawn(&c, port, KEYHEX, 0, 1, "20", SC_GATHER);
    ck_assert_int_eq(serve(r, &c, 1, 30000), 0);
    ck_assert_msg(exit_code(&c) == 0, "exit %d: %s", exit_code(&c), c.err);
    ck_assert_uint_eq(rdv_finished(r), 1);
    rdv_destroy(r);
}
END_TEST

START_TEST(wrong_key_is_refused_with_a_message)
{
    uint16_t port;
    struct rdv *r = server(2, &port);
    struct client cs[2];

    spawn(&cs[0], port, BADKEYHEX, 0, 2, "10", SC_INIT_ONLY);
    ck_assert_int_eq(serve(r, cs, 1, 15000), 0);
    ck_assert_int_eq(exit_code(&cs[0]), CHILD_FAILED(DEED_ERR_BOOTSTRAP));
    ck_assert_msg(strstr(cs[0].err, "bootstrap: the rendezvous refused this process: wrong job key"),
                  "stderr: %s", cs[0].err);
    ck_assert_uint_eq(rdv_connected(r), 0);

    /* the job itself is unaffected: the real ranks still get in */
    spawn(&cs[0], port, KEYHEX, 0, 2, "10", SC_GATHER_ONCE);
    spawn(&cs[1], port, KEYHEX, 1, 2, "10", SC_GATHER_ONCE);
    ck_assert_int_eq(serve(r, cs, 2, 15000), 0);
    ck_assert_int_eq(exit_code(&cs[0]), 0);
    ck_assert_int_eq(exit_code(&cs[1]), 0);
    ck_assert_uint_eq(rdv_connected(r), 2);
    rdv_destroy(r);
}
END_TEST

START_TEST(bad_hellos_are_refused_with_the_reason)
{
    uint16_t port;
    struct rdv *r = server(2, &port);
    uint8_t badkey[16];
    int a, b, c, d, e;

    memcpy(badkey, KEY, 16);
    badkey[15] ^= 1;
    a = raw_connect(port);
    raw_hello(a, KEY, 7, 2);
    expect_refuse(r, a, "rank 7 is out of range (the job has 2 ranks: 0 to 1)");
    b = raw_connect(port);
    raw_hello(b, KEY, 0, 3);
    expect_refuse(r, b, "rank count mismatch");
    c = raw_connect(port);
    raw_hello(c, KEY, 1, 2);
    {
        uint8_t buf[64];
        ck_assert_int_eq(raw_reply(r, c, buf, sizeof(buf)), RDV_HDR_LEN);
        ck_assert_uint_eq(rdv_get16(buf + 6), RDV_WELCOME);
    }
    d = raw_connect(port);
    raw_hello(d, KEY, 1, 2);
    expect_refuse(r, d, "rank 1 is already connected");
    e = raw_connect(port);
    raw_hello(e, badkey, 7, 9); /* a wrong key learns nothing else */
    expect_refuse(r, e, "wrong job key");
    ck_assert_uint_eq(rdv_connected(r), 1);
    ck_assert_uint_eq(rdv_failed(r), 0);
    close(a);
    close(b);
    close(d);
    close(e);
    close(c); /* rank 1 hangs up without goodbye: a failure */
    for (int k = 0; k < 50 && rdv_failed(r) == 0; k++) {
        struct pollfd fds[16];
        int nf = rdv_pollfds(r, fds, 16);
        if (poll(fds, (nfds_t)nf, 20) > 0)
            rdv_poll(r, fds, nf);
    }
    ck_assert_uint_eq(rdv_failed(r), 1);
    rdv_destroy(r);
}
END_TEST

START_TEST(missing_rank_times_out_naming_the_rendezvous)
{
    uint16_t port;
    struct rdv *r = server(3, &port);
    struct client cs[2];
    char want[128];
    uint64_t t0 = now_ms();

    spawn(&cs[0], port, KEYHEX, 0, 3, "2", SC_GATHER_ONCE);
    spawn(&cs[1], port, KEYHEX, 2, 3, "2", SC_GATHER_ONCE); /* rank 1 never comes */
    ck_assert_int_eq(serve(r, cs, 2, 20000), 0);
    ck_assert_uint_lt(now_ms() - t0, 10000);
    snprintf(want, sizeof(want), "no answer from the rendezvous at 127.0.0.1:%u after 2 s "
                                 "(DEED_BOOT_TIMEOUT)", (unsigned)port);
    /* The first rank to time out says so, names the rendezvous, and tells the server, which
     * fails the job for the other (unless that one timed out at the same moment). */
    int timed_out = 0;
    for (int i = 0; i < 2; i++) {
        if (exit_code(&cs[i]) == CHILD_FAILED(DEED_ERR_TIMEOUT)) {
            timed_out++;
            ck_assert_msg(strstr(cs[i].err, want), "stderr lacks '%s': %s", want, cs[i].err);
            ck_assert_msg(strstr(cs[i].err, "all-gather round 0"), "stderr: %s", cs[i].err);
        } else {
            ck_assert_int_eq(exit_code(&cs[i]), CHILD_FAILED(DEED_ERR_BOOTSTRAP));
            ck_assert_msg(strstr(cs[i].err, "timed out after 2 s waiting for all-gather round 0"),
                          "stderr: %s", cs[i].err);
        }
    }
    ck_assert_int_ge(timed_out, 1);
    rdv_destroy(r);
}
END_TEST

START_TEST(no_server_times_out_naming_the_address)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    uint16_t port;
    struct client c;
    char want[128];
    /* a port that is bound but not listening: connections are refused, and no other test
     * running in parallel can take it meanwhile */
    int hold = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(hold, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(hold, (struct sockaddr *)&sa, &sl), 0);
    port = ntohs(sa.sin_port);
    spawn(&c, port, KEYHEX, 0, 1, "1", SC_INIT_ONLY);
    ck_assert_int_eq(serve(NULL, &c, 1, 10000), 0);
    ck_assert_int_eq(exit_code(&c), CHILD_FAILED(DEED_ERR_TIMEOUT));
    snprintf(want, sizeof(want), "cannot connect to the rendezvous at 127.0.0.1:%u after 1 s",
             (unsigned)port);
    ck_assert_msg(strstr(c.err, want), "stderr lacks '%s': %s", want, c.err);
    close(hold);
}
END_TEST

START_TEST(malformed_bytes_are_dropped_and_the_server_goes_on)
{
    uint16_t port;
    struct rdv *r = server(2, &port);
    struct client cs[2];
    uint8_t buf[256], m[RDV_HDR_LEN + 8];
    int fd;

    deed__log_level = -1; /* the drops are logged as warnings; keep the output clean */
    /* not our protocol at all */
    fd = raw_connect(port);
    ck_assert_int_eq(send(fd, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL), 18);
    ck_assert_int_eq(raw_reply(r, fd, buf, sizeof(buf)), 0);
    close(fd);
    /* right magic, absurd length: dropped before any allocation */
    fd = raw_connect(port);
    rdv_put_header(m, RDV_HELLO, 0xffffffffu);
    ck_assert_int_eq(send(fd, m, RDV_HDR_LEN, MSG_NOSIGNAL), RDV_HDR_LEN);
    ck_assert_int_eq(raw_reply(r, fd, buf, sizeof(buf)), 0);
    close(fd);
    /* a GATHER before hello */
    fd = raw_connect(port);
    rdv_put_header(m, RDV_GATHER, 8);
    ck_assert_int_eq(send(fd, m, sizeof(m), MSG_NOSIGNAL), (ssize_t)sizeof(m));
    ck_assert_int_eq(raw_reply(r, fd, buf, sizeof(buf)), 0);
    close(fd);
    /* half a header, then hang up */
    fd = raw_connect(port);
    ck_assert_int_eq(send(fd, m, 5, MSG_NOSIGNAL), 5);
    close(fd);
    /* another protocol version: refused with the reason */
    fd = raw_connect(port);
    rdv_put_header(m, RDV_HELLO, 24);
    rdv_put16(m + 4, 99);
    ck_assert_int_eq(send(fd, m, RDV_HDR_LEN, MSG_NOSIGNAL), RDV_HDR_LEN);
    expect_refuse(r, fd, "protocol version 99");
    close(fd);
    ck_assert_uint_eq(rdv_connected(r), 0);
    ck_assert_uint_eq(rdv_failed(r), 0);

    deed__log_level = DEED_LOG_WARN;
    for (uint32_t i = 0; i < 2; i++)
        spawn(&cs[i], port, KEYHEX, i, 2, "10", SC_GATHER);
    ck_assert_int_eq(serve(r, cs, 2, 20000), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(exit_code(&cs[i]) == 0, "rank %d: %s", i, cs[i].err);
    ck_assert_uint_eq(rdv_finished(r), 2);
    rdv_destroy(r);
}
END_TEST

START_TEST(bytes_split_across_reads_are_reassembled)
{
    uint16_t port;
    struct rdv *r = server(1, &port);
    uint8_t m[RDV_HDR_LEN + 24 + RDV_HDR_LEN + 4 + 3], buf[256];
    size_t len = 0;
    ssize_t n;
    int fd = raw_connect(port);

    rdv_put_header(m, RDV_HELLO, 24);
    memcpy(m + RDV_HDR_LEN, KEY, 16);
    rdv_put32(m + RDV_HDR_LEN + 16, 0);
    rdv_put32(m + RDV_HDR_LEN + 20, 1);
    len = RDV_HDR_LEN + 24;
    rdv_put_header(m + len, RDV_GATHER, 7);
    rdv_put32(m + len + RDV_HDR_LEN, 0);
    memcpy(m + len + RDV_HDR_LEN + 4, "abc", 3);
    len += RDV_HDR_LEN + 7;
    for (size_t i = 0; i < len; i++) { /* one byte at a time */
        struct pollfd fds[8];
        int nf;
        ck_assert_int_eq(send(fd, m + i, 1, MSG_NOSIGNAL), 1);
        nf = rdv_pollfds(r, fds, 8);
        if (poll(fds, (nfds_t)nf, 5) > 0)
            rdv_poll(r, fds, nf);
    }
    /* WELCOME then RESULT {round 0, nranks 1, len 3, "abc"} */
    len = 0;
    while (len < 2 * RDV_HDR_LEN + 8 + 4 + 3) {
        n = raw_reply(r, fd, buf + len, sizeof(buf) - len);
        ck_assert_int_gt(n, 0);
        len += (size_t)n;
    }
    ck_assert_uint_eq(rdv_get16(buf + 6), RDV_WELCOME);
    ck_assert_uint_eq(rdv_get16(buf + RDV_HDR_LEN + 6), RDV_RESULT);
    ck_assert_uint_eq(rdv_get32(buf + RDV_HDR_LEN + 8), 8 + 4 + 3);
    ck_assert_uint_eq(rdv_get32(buf + 2 * RDV_HDR_LEN), 0);
    ck_assert_uint_eq(rdv_get32(buf + 2 * RDV_HDR_LEN + 4), 1);
    ck_assert_uint_eq(rdv_get32(buf + 2 * RDV_HDR_LEN + 8), 3);
    ck_assert_mem_eq(buf + 2 * RDV_HDR_LEN + 12, "abc", 3);
    /* goodbye */
    rdv_put_header(m, RDV_BYE, 0);
    ck_assert_int_eq(send(fd, m, RDV_HDR_LEN, MSG_NOSIGNAL), RDV_HDR_LEN);
    ck_assert_int_eq(raw_reply(r, fd, buf, sizeof(buf)), 0);
    ck_assert_uint_eq(rdv_finished(r), 1);
    ck_assert_uint_eq(rdv_failed(r), 0);
    close(fd);
    rdv_destroy(r);
}
END_TEST

START_TEST(a_dead_rank_fails_the_others_quickly)
{
    uint16_t port;
    struct rdv *r = server(3, &port);
    struct client cs[3];
    uint64_t t0 = now_ms();

    spawn(&cs[0], port, KEYHEX, 0, 3, "20", SC_GATHER_ONCE);
    spawn(&cs[1], port, KEYHEX, 1, 3, "20", SC_DIE_AFTER_INIT);
    spawn(&cs[2], port, KEYHEX, 2, 3, "20", SC_GATHER_ONCE);
    ck_assert_int_eq(serve(r, cs, 3, 30000), 0);
    ck_assert_uint_lt(now_ms() - t0, 10000); /* well before the 20 s timeout */
    ck_assert_uint_eq(rdv_failed(r), 1);
    ck_assert_int_eq(exit_code(&cs[1]), 0);
    for (int i = 0; i < 3; i += 2) {
        ck_assert_int_eq(exit_code(&cs[i]), CHILD_FAILED(DEED_ERR_BOOTSTRAP));
        ck_assert_msg(strstr(cs[i].err, "rank 1 disconnected from the rendezvous before "
                                        "finalizing"), "stderr: %s", cs[i].err);
    }
    rdv_destroy(r);
}
END_TEST

START_TEST(abort_reaches_the_others)
{
    uint16_t port;
    struct rdv *r = server(2, &port);
    struct client cs[2];

    spawn(&cs[0], port, KEYHEX, 0, 2, "20", SC_GATHER_ONCE);
    spawn(&cs[1], port, KEYHEX, 1, 2, "20", SC_ABORT);
    ck_assert_int_eq(serve(r, cs, 2, 30000), 0);
    ck_assert_uint_eq(rdv_failed(r), 1);
    ck_assert_int_eq(exit_code(&cs[0]), CHILD_FAILED(DEED_ERR_BOOTSTRAP));
    ck_assert_msg(strstr(cs[0].err, "rank 1 aborted the job: boom: the test asked for it"),
                  "stderr: %s", cs[0].err);
    rdv_destroy(r);
}
END_TEST

/* ---- placement ----------------------------------------------------------------------- */

#define BIG "pack:2 numa:2 core:4 pu:2" /* 4 NUMA nodes x 4 cores x 2 PUs = 16 cores */

static hwloc_bitmap_t place(struct topo *t, enum boot_bind mode, uint32_t r, uint32_t n)
{
    hwloc_bitmap_t s = hwloc_bitmap_alloc();

    ck_assert_int_eq(boot_place_rank(t->topology, mode, r, n, s), DEED_OK);
    return s;
}

static int first_core_index(struct topo *t, hwloc_const_bitmap_t s)
{
    hwloc_obj_t core = hwloc_get_next_obj_covering_cpuset_by_type(t->topology, s,
                                                                   HWLOC_OBJ_CORE, NULL);
    ck_assert_ptr_nonnull(core);
    return (int)core->logical_index;
}

START_TEST(place_core_shares)
{
    struct topo t;
    hwloc_bitmap_t all = hwloc_bitmap_alloc();

    ck_assert_int_eq(topo_open_synthetic(&t, BIG, NULL), DEED_OK);
    /* 4 ranks: 4 cores (8 PUs) each, disjoint, covering the machine, NUMA node r each */
    for (uint32_t r = 0; r < 4; r++) {
        hwloc_bitmap_t s = place(&t, BOOT_BIND_CORE, r, 4);
        ck_assert_int_eq(hwloc_bitmap_weight(s), 8);
        ck_assert_int_eq(hwloc_bitmap_first(s), (int)(8 * r));
        ck_assert_int_eq(hwloc_bitmap_last(s), (int)(8 * r + 7));
        ck_assert(!hwloc_bitmap_intersects(all, s));
        hwloc_bitmap_or(all, all, s);
        hwloc_bitmap_free(s);
    }
    ck_assert(hwloc_bitmap_isequal(all, hwloc_topology_get_complete_cpuset(t.topology)));
    /* 3 ranks over 16 cores: 5, 5, 6 cores */
    {
        int want[3] = {10, 10, 12}, first[3] = {0, 5, 10};
        for (uint32_t r = 0; r < 3; r++) {
            hwloc_bitmap_t s = place(&t, BOOT_BIND_CORE, r, 3);
            ck_assert_int_eq(hwloc_bitmap_weight(s), want[r]);
            ck_assert_int_eq(first_core_index(&t, s), first[r]);
            hwloc_bitmap_free(s);
        }
    }
    /* 16 ranks: one whole core (both PUs) each */
    for (uint32_t r = 0; r < 16; r++) {
        hwloc_bitmap_t s = place(&t, BOOT_BIND_CORE, r, 16);
        ck_assert_int_eq(hwloc_bitmap_weight(s), 2);
        ck_assert_int_eq(first_core_index(&t, s), (int)r);
        hwloc_bitmap_free(s);
    }
    hwloc_bitmap_free(all);
    topo_close(&t);
}
END_TEST

START_TEST(place_core_round_robin_when_oversubscribed)
{
    struct topo t;

    ck_assert_int_eq(topo_open_synthetic(&t, BIG, NULL), DEED_OK);
    for (uint32_t r = 0; r < 40; r++) {
        hwloc_bitmap_t s = place(&t, BOOT_BIND_CORE, r, 40);
        ck_assert_int_eq(hwloc_bitmap_weight(s), 2);
        ck_assert_int_eq(first_core_index(&t, s), (int)(r % 16));
        hwloc_bitmap_free(s);
    }
    topo_close(&t);
}
END_TEST

START_TEST(place_numa_nodes_round_robin)
{
    struct topo t;

    ck_assert_int_eq(topo_open_synthetic(&t, BIG, NULL), DEED_OK);
    ck_assert_int_eq(hwloc_get_nbobjs_by_type(t.topology, HWLOC_OBJ_NUMANODE), 4);
    for (uint32_t r = 0; r < 6; r++) {
        hwloc_bitmap_t s = place(&t, BOOT_BIND_NUMA, r, 6);
        hwloc_obj_t node = hwloc_get_obj_by_type(t.topology, HWLOC_OBJ_NUMANODE, r % 4);
        ck_assert(hwloc_bitmap_isequal(s, node->cpuset));
        ck_assert_int_eq(hwloc_bitmap_weight(s), 8);
        hwloc_bitmap_free(s);
    }
    topo_close(&t);

    /* one NUMA node: everyone shares it */
    ck_assert_int_eq(topo_open_synthetic(&t, "pack:1 numa:1 core:2 pu:1", NULL), DEED_OK);
    for (uint32_t r = 0; r < 3; r++) {
        hwloc_bitmap_t s = place(&t, BOOT_BIND_NUMA, r, 3);
        ck_assert_int_eq(hwloc_bitmap_weight(s), 2);
        hwloc_bitmap_free(s);
    }
    topo_close(&t);
}
END_TEST

START_TEST(place_none_and_bad_arguments)
{
    struct topo t;
    hwloc_bitmap_t s = hwloc_bitmap_alloc();

    ck_assert_int_eq(topo_open_synthetic(&t, BIG, NULL), DEED_OK);
    ck_assert_int_eq(boot_place_rank(t.topology, BOOT_BIND_NONE, 1, 2, s), DEED_OK);
    ck_assert_int_eq(hwloc_bitmap_weight(s), 32);
    ck_assert_int_eq(boot_place_rank(t.topology, BOOT_BIND_CORE, 2, 2, s), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(boot_place_rank(t.topology, BOOT_BIND_CORE, 0, 0, s), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(boot_place_rank(NULL, BOOT_BIND_CORE, 0, 1, s), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(boot_place_rank(t.topology, BOOT_BIND_CORE, 0, 1, NULL), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(boot_place_rank(t.topology, (enum boot_bind)42, 0, 1, s),
                     DEED_ERR_INVALID_ARG);
    /* pure: the same answer twice */
    {
        hwloc_bitmap_t a = place(&t, BOOT_BIND_CORE, 3, 7), b = place(&t, BOOT_BIND_CORE, 3, 7);
        ck_assert(hwloc_bitmap_isequal(a, b));
        hwloc_bitmap_free(a);
        hwloc_bitmap_free(b);
    }
    topo_close(&t);
    hwloc_bitmap_free(s);
}
END_TEST

static Suite *bootstrap_suite(void)
{
    Suite *su = suite_create("bootstrap");
    TCase *tc = tcase_create("bootstrap");
    TCase *tp = tcase_create("placement");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, single_is_rank_0_of_1);
    tcase_add_test(tc, select_and_find);
    tcase_add_test(tc, tcp_env_errors_are_reported);
    tcase_add_test(tc, allgatherv_and_barriers);
    tcase_add_test(tc, one_rank_job_over_tcp);
    tcase_add_test(tc, wrong_key_is_refused_with_a_message);
    tcase_add_test(tc, bad_hellos_are_refused_with_the_reason);
    tcase_add_test(tc, missing_rank_times_out_naming_the_rendezvous);
    tcase_add_test(tc, no_server_times_out_naming_the_address);
    tcase_add_test(tc, malformed_bytes_are_dropped_and_the_server_goes_on);
    tcase_add_test(tc, bytes_split_across_reads_are_reassembled);
    tcase_add_test(tc, a_dead_rank_fails_the_others_quickly);
    tcase_add_test(tc, abort_reaches_the_others);
    suite_add_tcase(su, tc);
    tcase_add_test(tp, place_core_shares);
    tcase_add_test(tp, place_core_round_robin_when_oversubscribed);
    tcase_add_test(tp, place_numa_nodes_round_robin);
    tcase_add_test(tp, place_none_and_bad_arguments);
    suite_add_tcase(su, tp);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(bootstrap_suite());
    int failed;

    signal(SIGPIPE, SIG_IGN);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
