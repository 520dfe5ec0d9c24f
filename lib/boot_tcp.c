/*
 * boot_tcp.c — the "tcp" bootstrap: a client of the rendezvous server (rendezvous.c; the
 * wire protocol is described in rendezvous.h). Reads DEED_RENDEZVOUS, DEED_JOB_KEY,
 * DEED_RANK and DEED_NRANKS, connects (retrying until the timeout: the server may start
 * after the ranks), says hello with the job key, then runs all-gather rounds; a barrier is
 * an all-gather of nothing. Every wait is bounded by the timeout, and the error names the
 * rendezvous and what was awaited. Owns one blocking-style socket (non-blocking, driven by
 * poll with a deadline). The client proper is boot_tcp_client (also used by the "slurm"
 * bootstrap, boot_slurm.c, with an address derived from the Slurm environment).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap.h"
#include "deed.h"
#include "log.h"
#include "rendezvous.h"

struct tcp {
    int fd;
    char addr[256]; /* the rendezvous address as given, for messages */
    uint32_t rank, nranks, round, timeout_ms;
    bool broken;     /* the connection is unusable: no more messages, not even goodbye */
    bool job_failed; /* the server said the job failed: calls fail fast, goodbye still sent */
};

static void send_abort(struct tcp *t, const char *msg);

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double secs(uint32_t ms)
{
    return ms / 1000.0;
}

/* Wait for events on fd until deadline: 1 ready, 0 timed out, -1 error (errno). */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        struct pollfd p = {.fd = fd, .events = events};
        int rc;

        if (now >= deadline)
            return 0;
        rc = poll(&p, 1, (int)(deadline - now > 1000000 ? 1000000 : deadline - now));
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

static int send_all(struct tcp *t, const void *buf, size_t len, const char *what)
{
    const uint8_t *p = buf;
    uint64_t deadline = now_ms() + t->timeout_ms;

    while (len > 0) {
        ssize_t n = send(t->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(t->fd, POLLOUT, deadline);
            if (w > 0)
                continue;
            if (w == 0) {
                log_error("bootstrap: the rendezvous at %s took no data for %g s "
                          "(DEED_BOOT_TIMEOUT) while this process sent %s", t->addr,
                          secs(t->timeout_ms), what);
                t->broken = true;
                return DEED_ERR_TIMEOUT;
            }
        }
        log_error("bootstrap: lost the connection to the rendezvous at %s while sending %s: %s",
                  t->addr, what, n < 0 ? strerror(errno) : "send returned 0");
        t->broken = true;
        return DEED_ERR_BOOTSTRAP;
    }
    return DEED_OK;
}

static int recv_all(struct tcp *t, void *buf, size_t len, uint64_t deadline, const char *what)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = recv(t->fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(t->fd, POLLIN, deadline);
            if (w > 0)
                continue;
            if (w == 0) {
                char msg[RDV_MAX_TEXT];
                log_error("bootstrap: no answer from the rendezvous at %s after %g s "
                          "(DEED_BOOT_TIMEOUT) waiting for %s", t->addr, secs(t->timeout_ms),
                          what);
                /* tell the server, so the other ranks fail now rather than time out too */
                snprintf(msg, sizeof(msg), "rank %u timed out after %g s waiting for %s",
                         t->rank, secs(t->timeout_ms), what);
                send_abort(t, msg);
                t->broken = true;
                return DEED_ERR_TIMEOUT;
            }
        }
        if (n == 0)
            log_error("bootstrap: the rendezvous at %s closed the connection while this "
                      "process waited for %s (did the launcher exit?)", t->addr, what);
        else
            log_error("bootstrap: lost the connection to the rendezvous at %s while waiting "
                      "for %s: %s", t->addr, what, strerror(errno));
        t->broken = true;
        return DEED_ERR_BOOTSTRAP;
    }
    return DEED_OK;
}

static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            *s = '?';
}

/* Receive one message of the expected type (REFUSE and FAIL are handled here). *payload is
 * malloc'd (NULL when empty). */
static int recv_msg(struct tcp *t, uint16_t expect, uint32_t maxlen, uint8_t **payload,
                    uint32_t *len, const char *what)
{
    uint64_t deadline = now_ms() + t->timeout_ms;
    uint8_t hdr[RDV_HDR_LEN];
    uint32_t n;
    uint16_t type;
    uint8_t *p = NULL;
    int rc;

    *payload = NULL;
    *len = 0;
    if ((rc = recv_all(t, hdr, sizeof(hdr), deadline, what)) != DEED_OK)
        return rc;
    type = rdv_get16(hdr + 6);
    n = rdv_get32(hdr + 8);
    if (rdv_get32(hdr) != RDV_MAGIC || rdv_get16(hdr + 4) != RDV_VERSION) {
        log_error("bootstrap: %s is not a deed rendezvous of this version (bad magic or "
                  "protocol version %u)", t->addr, rdv_get16(hdr + 4));
        t->broken = true;
        return DEED_ERR_BOOTSTRAP;
    }
    if (type == RDV_REFUSE || type == RDV_FAIL) {
        char text[RDV_MAX_TEXT + 1];
        if (n > RDV_MAX_TEXT)
            goto bad;
        if ((rc = recv_all(t, text, n, deadline, what)) != DEED_OK)
            return rc;
        text[n] = '\0';
        sanitize(text);
        if (type == RDV_REFUSE) {
            log_error("bootstrap: the rendezvous refused this process: %s", text);
            t->broken = true;
        } else {
            log_error("bootstrap: the job failed (rank %u, waiting for %s): %s", t->rank, what,
                      text);
            t->job_failed = true;
        }
        return DEED_ERR_BOOTSTRAP;
    }
    if (type != expect || n > maxlen)
        goto bad;
    if (n) {
        p = malloc(n);
        if (!p) {
            log_error("bootstrap: out of memory for a %u-byte answer from the rendezvous", n);
            t->broken = true;
            return DEED_ERR_NO_MEMORY;
        }
        if ((rc = recv_all(t, p, n, deadline, what)) != DEED_OK) {
            free(p);
            return rc;
        }
    }
    *payload = p;
    *len = n;
    return DEED_OK;

bad:
    log_error("bootstrap: malformed answer from the rendezvous at %s (type %u, %u bytes) while "
              "waiting for %s", t->addr, type, n, what);
    t->broken = true;
    return DEED_ERR_BOOTSTRAP;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long long v;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_key(const char *s, uint8_t key[RDV_KEY_LEN])
{
    if (!s || strlen(s) != 2 * RDV_KEY_LEN)
        return -1;
    for (unsigned i = 0; i < RDV_KEY_LEN; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* "host:port" or "[v6addr]:port" */
static int split_addr(const char *s, char *host, size_t hlen, char *port, size_t plen)
{
    const char *colon, *h = s, *hend;

    if (s[0] == '[') {
        hend = strchr(s, ']');
        if (!hend || hend[1] != ':')
            return -1;
        h = s + 1;
        colon = hend + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hend = colon;
    }
    if (hend == h || (size_t)(hend - h) >= hlen || strlen(colon + 1) >= plen || !colon[1])
        return -1;
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    strcpy(port, colon + 1);
    for (const char *q = port; *q; q++)
        if (*q < '0' || *q > '9')
            return -1;
    return atoi(port) > 0 && atoi(port) <= 65535 ? 0 : -1;
}

/* Connect, retrying until the deadline (the server may not be listening yet). */
static int tcp_connect(struct tcp *t, const char *host, const char *port, const char *origin)
{
    uint64_t deadline = now_ms() + t->timeout_ms;
    struct addrinfo hints, *res = NULL;
    int err, last = ECONNREFUSED;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    err = getaddrinfo(host, port, &hints, &res);
    if (err != 0) {
        log_error("bootstrap: cannot resolve the rendezvous address %s (%s): %s", t->addr,
                  origin, gai_strerror(err));
        return DEED_ERR_BOOTSTRAP;
    }
    for (;;) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            ai->ai_protocol);
            int soerr = 0, one = 1;
            socklen_t sl = sizeof(soerr);

            if (fd < 0) {
                last = errno;
                continue;
            }
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                if (errno != EINPROGRESS) {
                    last = errno;
                    close(fd);
                    continue;
                }
                int w = wait_fd(fd, POLLOUT, deadline);
                if (w <= 0) {
                    last = w == 0 ? ETIMEDOUT : errno;
                    close(fd);
                    continue;
                }
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
                    last = soerr ? soerr : errno;
                    close(fd);
                    continue;
                }
            }
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            freeaddrinfo(res);
            t->fd = fd;
            return DEED_OK;
        }
        uint64_t now = now_ms();
        if (now >= deadline)
            break;
        struct timespec ts = {0, (long)((deadline - now < 50 ? deadline - now : 50) * 1000000)};
        nanosleep(&ts, NULL);
    }
    freeaddrinfo(res);
    log_error("bootstrap: cannot connect to the rendezvous at %s after %g s (DEED_BOOT_TIMEOUT; "
              "address from %s): %s", t->addr, secs(t->timeout_ms), origin, strerror(last));
    return DEED_ERR_TIMEOUT;
}

static void tcp_free(struct boot *b)
{
    struct tcp *t = b->impl;

    if (t->fd >= 0)
        close(t->fd);
    free(t);
    free(b);
}

int boot_tcp_client(const char *addr, const char *origin, const char *keys, uint32_t rank,
                    uint32_t nranks, uint32_t timeout_ms, struct boot **bp)
{
    uint8_t key[RDV_KEY_LEN], hello[RDV_HDR_LEN + RDV_KEY_LEN + 8], *payload;
    char host[256], port[16], what[128];
    struct boot *b;
    struct tcp *t;
    uint32_t len;
    int rc;

    if (!bp || !addr || !origin || nranks == 0 || rank >= nranks)
        return DEED_ERR_INVALID_ARG;
    *bp = NULL;
    if (strlen(addr) >= sizeof(((struct tcp *)0)->addr) ||
        split_addr(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        log_error("bootstrap: the rendezvous address '%s' (%s) is not host:port (e.g. "
                  "127.0.0.1:4242 or [::1]:4242)", addr, origin);
        return DEED_ERR_BOOTSTRAP;
    }
    if (!keys) {
        log_error("bootstrap: DEED_JOB_KEY is not set (the launcher sets it; 32 hex digits)");
        return DEED_ERR_BOOTSTRAP;
    }
    if (parse_key(keys, key) != 0) {
        log_error("bootstrap: DEED_JOB_KEY is not 32 hex digits (%zu characters)", strlen(keys));
        return DEED_ERR_BOOTSTRAP;
    }

    b = calloc(1, sizeof(*b));
    t = calloc(1, sizeof(*t));
    if (!b || !t) {
        free(b);
        free(t);
        return DEED_ERR_NO_MEMORY;
    }
    b->ops = &boot_tcp_ops;
    b->impl = t;
    t->fd = -1;
    t->rank = rank;
    t->nranks = nranks;
    t->timeout_ms = timeout_ms ? timeout_ms : boot_default_timeout_ms();
    snprintf(t->addr, sizeof(t->addr), "%s", addr);

    if ((rc = tcp_connect(t, host, port, origin)) != DEED_OK)
        goto fail;
    rdv_put_header(hello, RDV_HELLO, RDV_KEY_LEN + 8);
    memcpy(hello + RDV_HDR_LEN, key, RDV_KEY_LEN);
    rdv_put32(hello + RDV_HDR_LEN + RDV_KEY_LEN, t->rank);
    rdv_put32(hello + RDV_HDR_LEN + RDV_KEY_LEN + 4, t->nranks);
    memset(key, 0, sizeof(key));
    rc = send_all(t, hello, sizeof(hello), "its hello");
    memset(hello, 0, sizeof(hello));
    if (rc != DEED_OK)
        goto fail;
    snprintf(what, sizeof(what), "the answer to the hello of rank %u", t->rank);
    if ((rc = recv_msg(t, RDV_WELCOME, 0, &payload, &len, what)) != DEED_OK)
        goto fail;
    log_debug("bootstrap: rank %u of %u connected to the rendezvous at %s", t->rank, t->nranks,
              t->addr);
    *bp = b;
    return DEED_OK;

fail:
    tcp_free(b);
    return rc;
}

static int tcp_init(uint32_t timeout_ms, struct boot **bp, uint32_t *rank, uint32_t *nranks)
{
    const char *addr = getenv("DEED_RENDEZVOUS"), *keys = getenv("DEED_JOB_KEY");
    const char *rs = getenv("DEED_RANK"), *ns = getenv("DEED_NRANKS");

    if (!bp || !rank || !nranks)
        return DEED_ERR_INVALID_ARG;
    *bp = NULL;
    if (!addr || !*addr) {
        log_error("bootstrap: DEED_RENDEZVOUS is not set (host:port of the rendezvous; deedrun "
                  "sets it)");
        return DEED_ERR_BOOTSTRAP;
    }
    if (parse_u32(ns, nranks) != 0 || *nranks == 0 || *nranks > RDV_MAX_NRANKS) {
        log_error("bootstrap: DEED_NRANKS='%s' is not a rank count (1 to %u)", ns ? ns : "",
                  RDV_MAX_NRANKS);
        return DEED_ERR_BOOTSTRAP;
    }
    if (parse_u32(rs, rank) != 0 || *rank >= *nranks) {
        log_error("bootstrap: DEED_RANK='%s' is not a rank of a %u-rank job (0 to %u)",
                  rs ? rs : "", *nranks, *nranks - 1);
        return DEED_ERR_BOOTSTRAP;
    }
    return boot_tcp_client(addr, "DEED_RENDEZVOUS", keys, *rank, *nranks, timeout_ms, bp);
}

static int tcp_allgatherv(struct boot *b, const void *mine, size_t len, void **all,
                          size_t **lens)
{
    struct tcp *t;
    uint8_t hdr[RDV_HDR_LEN + 4], *res = NULL, *data;
    uint32_t rlen, n;
    uint64_t sum = 0, maxlen;
    char what[160];
    int rc;

    if (!b || !all || !lens || (len && !mine))
        return DEED_ERR_INVALID_ARG;
    *all = NULL;
    *lens = NULL;
    t = b->impl;
    if (len > RDV_MAX_CONTRIB) {
        log_error("bootstrap: all-gather contribution of %zu bytes is over the limit (%u)", len,
                  RDV_MAX_CONTRIB);
        return DEED_ERR_INVALID_ARG;
    }
    if (t->broken || t->job_failed || t->fd < 0) {
        log_error("bootstrap: all-gather after the bootstrap failed");
        return DEED_ERR_BOOTSTRAP;
    }
    n = t->nranks;
    rdv_put_header(hdr, RDV_GATHER, (uint32_t)(4 + len));
    rdv_put32(hdr + RDV_HDR_LEN, t->round);
    snprintf(what, sizeof(what), "all-gather round %u", t->round);
    if ((rc = send_all(t, hdr, sizeof(hdr), what)) != DEED_OK ||
        (len && (rc = send_all(t, mine, len, what)) != DEED_OK))
        return rc;
    snprintf(what, sizeof(what), "all-gather round %u (all %u ranks must join it)", t->round, n);
    maxlen = 8 + (uint64_t)n * (4 + RDV_MAX_CONTRIB);
    if ((rc = recv_msg(t, RDV_RESULT, maxlen > UINT32_MAX ? UINT32_MAX : (uint32_t)maxlen, &res,
                       &rlen, what)) != DEED_OK)
        return rc;
    if (rlen < 8 + 4ull * n || rdv_get32(res) != t->round || rdv_get32(res + 4) != n)
        goto bad;
    for (uint32_t i = 0; i < n; i++)
        sum += rdv_get32(res + 8 + 4 * (size_t)i);
    if (sum != rlen - 8 - 4ull * n)
        goto bad;
    *lens = malloc(n * sizeof(size_t));
    *all = malloc(sum ? (size_t)sum : 1);
    if (!*lens || !*all) {
        free(*lens);
        free(*all);
        *lens = NULL;
        *all = NULL;
        free(res);
        return DEED_ERR_NO_MEMORY;
    }
    for (uint32_t i = 0; i < n; i++)
        (*lens)[i] = rdv_get32(res + 8 + 4 * (size_t)i);
    data = res + 8 + 4 * (size_t)n;
    if (sum)
        memcpy(*all, data, (size_t)sum);
    free(res);
    t->round++;
    return DEED_OK;

bad:
    log_error("bootstrap: malformed all-gather result from the rendezvous at %s (round %u, %u "
              "bytes)", t->addr, t->round, rlen);
    free(res);
    t->broken = true;
    return DEED_ERR_BOOTSTRAP;
}

static int tcp_barrier(struct boot *b)
{
    void *all;
    size_t *lens;
    int rc = tcp_allgatherv(b, NULL, 0, &all, &lens);

    if (rc == DEED_OK) {
        free(all);
        free(lens);
    }
    return rc;
}

/* Best effort, bounded by min(timeout, 2 s); marks the connection broken. */
static void send_abort(struct tcp *t, const char *msg)
{
    uint8_t buf[RDV_HDR_LEN + RDV_MAX_TEXT];
    size_t n = strlen(msg);

    if (t->fd >= 0 && !t->broken) {
        uint32_t saved = t->timeout_ms;
        if (n > RDV_MAX_TEXT)
            n = RDV_MAX_TEXT;
        rdv_put_header(buf, RDV_ABORT, (uint32_t)n);
        memcpy(buf + RDV_HDR_LEN, msg, n);
        t->timeout_ms = saved < 2000 ? saved : 2000;
        send_all(t, buf, RDV_HDR_LEN + n, "its abort");
        t->timeout_ms = saved;
    }
    t->broken = true;
}

static void tcp_abort(struct boot *b, const char *msg)
{
    struct tcp *t;

    if (!b)
        return;
    t = b->impl;
    if (!msg)
        msg = "";
    log_error("bootstrap: rank %u aborts the job: %s", t->rank, *msg ? msg : "(no reason)");
    send_abort(t, msg);
}

static void tcp_fini(struct boot *b)
{
    struct tcp *t;

    if (!b)
        return;
    t = b->impl;
    if (t->fd >= 0 && !t->broken) {
        uint8_t bye[RDV_HDR_LEN];
        rdv_put_header(bye, RDV_BYE, 0);
        send_all(t, bye, sizeof(bye), "its goodbye");
    }
    tcp_free(b);
}

const struct boot_ops boot_tcp_ops = {
    .size = sizeof(struct boot_ops),
    .name = "tcp",
    .init = tcp_init,
    .allgatherv = tcp_allgatherv,
    .barrier = tcp_barrier,
    .abort = tcp_abort,
    .fini = tcp_fini,
};
