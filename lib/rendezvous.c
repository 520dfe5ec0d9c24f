/*
 * rendezvous.c — the rendezvous server of the "tcp" bootstrap (see rendezvous.h for the wire
 * protocol). Owns the listening socket, one connection object per accepted socket (with its
 * partial input message and its pending output) and the current all-gather round (one
 * contribution per rank). Single-threaded and poll-driven: rdv_pollfds/rdv_poll; nothing
 * here blocks.
 *
 * Connection states: HELLO (accepted, must send HELLO first), AUTHED (a rank), CLOSING
 * (refused: the REFUSE is flushed, then the write side is shut and input is discarded until
 * the peer closes, so the reason is not lost to a reset), DEAD (closed; removed at the end
 * of rdv_poll so the indices matching the caller's pollfd array stay valid meanwhile).
 *
 * Fault-tolerant mode (tolerant): a failed rank other than 0 is removed (rank_remove) rather
 * than failing the job; a round then needs nranks - removed contributions.
 */
#include "rendezvous.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deed.h"
#include "log.h"

#define RDV_MAX_PENDING 64 /* connections not yet (or no longer) a rank */

enum conn_state { C_HELLO, C_AUTHED, C_CLOSING, C_DEAD };
enum rank_state { R_NONE, R_UP, R_DONE, R_FAILED };

struct conn {
    int fd;
    enum conn_state state;
    bool shut;          /* CLOSING: write side shut down */
    uint32_t rank;      /* AUTHED */
    char peer[80];
    uint8_t hdr[RDV_HDR_LEN];
    uint32_t hdr_got;
    uint16_t type;
    uint8_t *payload;
    uint32_t plen, pgot;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
};

struct rdv {
    int lfd;
    uint32_t nranks;
    uint8_t key[RDV_KEY_LEN];
    struct conn **conns;
    size_t nconns, cap;
    uint8_t *rstate;       /* enum rank_state per rank */
    struct conn **rconn;   /* the AUTHED connection of each rank */
    uint8_t **contrib;     /* current round: payload buffers (GATHER messages, data at +4) */
    uint32_t *clen;
    uint32_t round, ncontrib;
    uint32_t connected, finished, failed;
    uint32_t removed;      /* tolerant mode: failed ranks taken out of the rounds */
    bool tolerant;
    bool job_failed;
    char fail_msg[RDV_MAX_TEXT]; /* why (sent to ranks that ask after the failure) */
    size_t fail_len;
};

static void conn_lost(struct rdv *r, struct conn *c, const char *why);
static void conn_readable(struct rdv *r, struct conn *c);

static bool key_equal(const uint8_t *a, const uint8_t *b)
{
    volatile uint8_t d = 0;

    for (unsigned i = 0; i < RDV_KEY_LEN; i++)
        d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

static const char *conn_name(const struct conn *c, char *buf, size_t len)
{
    if (c->state == C_AUTHED)
        snprintf(buf, len, "rank %u (%s)", c->rank, c->peer);
    else
        snprintf(buf, len, "a connection from %s", c->peer);
    return buf;
}

static void conn_close(struct conn *c)
{
    if (c->state == C_DEAD)
        return;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
    free(c->payload);
    c->payload = NULL;
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = c->out_cap = 0;
}

/* Send what is pending; errors end the connection. */
static void conn_flush(struct rdv *r, struct conn *c)
{
    while (c->state != C_DEAD && c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            conn_lost(r, c, n < 0 ? strerror(errno) : "send returned 0");
            return;
        }
    }
    if (c->state == C_DEAD)
        return;
    c->out_off = c->out_len = 0;
    if (c->state == C_CLOSING && !c->shut) {
        shutdown(c->fd, SHUT_WR);
        c->shut = true;
    }
}

/* Queue one message (header + up to two payload parts) and try to send it now. */
static int conn_send(struct rdv *r, struct conn *c, uint16_t type, const void *a, size_t alen,
                     const void *b, size_t blen)
{
    size_t need = RDV_HDR_LEN + alen + blen;

    if (c->state == C_DEAD)
        return DEED_OK;
    if (c->out_len + need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + need)
            cap *= 2;
        uint8_t *nb = realloc(c->out, cap);
        if (!nb) {
            log_error("rendezvous: out of memory queueing %zu bytes", need);
            conn_lost(r, c, "out of memory");
            return DEED_ERR_NO_MEMORY;
        }
        c->out = nb;
        c->out_cap = cap;
    }
    rdv_put_header(c->out + c->out_len, type, (uint32_t)(alen + blen));
    if (alen)
        memcpy(c->out + c->out_len + RDV_HDR_LEN, a, alen);
    if (blen)
        memcpy(c->out + c->out_len + RDV_HDR_LEN + alen, b, blen);
    c->out_len += need;
    conn_flush(r, c);
    return DEED_OK;
}

static void conn_refuse(struct rdv *r, struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_refuse(struct rdv *r, struct conn *c, const char *fmt, ...)
{
    char msg[RDV_MAX_TEXT];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(msg))
        n = (int)sizeof(msg) - 1;
    log_warn("rendezvous: refused a connection from %s: %s", c->peer, msg);
    c->state = C_CLOSING;
    conn_send(r, c, RDV_REFUSE, msg, (size_t)n, NULL, 0);
}

static void conn_drop(struct rdv *r, struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_drop(struct rdv *r, struct conn *c, const char *fmt, ...)
{
    char msg[256], who[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_warn("rendezvous: dropping %s: malformed message: %s", conn_name(c, who, sizeof(who)),
             msg);
    conn_lost(r, c, NULL);
}

static void round_clear(struct rdv *r)
{
    for (uint32_t i = 0; i < r->nranks; i++) {
        free(r->contrib[i]);
        r->contrib[i] = NULL;
        r->clen[i] = 0;
    }
    r->ncontrib = 0;
}

/* The job cannot go on: tell every connected rank why, once. */
static void job_fail(struct rdv *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_fail(struct rdv *r, const char *fmt, ...)
{
    char msg[RDV_MAX_TEXT];
    va_list ap;
    int n;

    if (r->job_failed)
        return;
    r->job_failed = true;
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(msg))
        n = (int)sizeof(msg) - 1;
    memcpy(r->fail_msg, msg, (size_t)n);
    r->fail_len = (size_t)n;
    round_clear(r);
    for (uint32_t i = 0; i < r->nranks; i++)
        if (r->rconn[i])
            conn_send(r, r->rconn[i], RDV_FAIL, msg, (size_t)n, NULL, 0);
}

static void round_complete(struct rdv *r);

/* Tolerant mode: a failed rank (R_FAILED, no connection any more) leaves the rounds; the
 * current round completes now if it only waited for that rank. */
static void rank_remove(struct rdv *r, uint32_t rank)
{
    if (r->contrib[rank]) {
        free(r->contrib[rank]);
        r->contrib[rank] = NULL;
        r->clen[rank] = 0;
        r->ncontrib--;
    }
    r->removed++;
    /* a job whose ranks never bootstrap (nobody connected yet) needs no warning */
    LOG_AT(r->connected ? DEED_LOG_WARN : DEED_LOG_INFO,
           "rendezvous: rank %u removed from the job (fault-tolerant mode): the other %u "
           "rank(s) go on without it", rank, r->nranks - r->removed);
    if (r->ncontrib > 0 && r->ncontrib == r->nranks - r->removed)
        round_complete(r);
}

static bool removable(const struct rdv *r, uint32_t rank)
{
    return r->tolerant && rank != 0 && !r->job_failed;
}

/* A connection ended (EOF, error, or a protocol violation, why == NULL: already logged). */
static void conn_lost(struct rdv *r, struct conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    if (c->state == C_AUTHED) {
        uint32_t rank = c->rank;
        r->rstate[rank] = R_FAILED;
        r->rconn[rank] = NULL;
        r->failed++;
        conn_close(c);
        if (why && r->job_failed)
            log_info("rendezvous: rank %u disconnected after the job failed (%s)", rank, why);
        else if (why && removable(r, rank))
            log_warn("rendezvous: rank %u disconnected before finalizing (%s): did it die?",
                     rank, why);
        else if (why)
            log_error("rendezvous: rank %u disconnected before finalizing (%s): did it die?",
                      rank, why);
        if (removable(r, rank))
            rank_remove(r, rank);
        else
            job_fail(r, "rank %u disconnected from the rendezvous before finalizing (it died, "
                        "exited early or broke the protocol)", rank);
        return;
    }
    if (why && c->state == C_HELLO)
        log_debug("rendezvous: a connection from %s ended before saying hello (%s)", c->peer,
                  why);
    conn_close(c);
}

static void round_complete(struct rdv *r)
{
    uint64_t total = 8 + 4ull * r->nranks;
    uint8_t *msg, *p;

    for (uint32_t i = 0; i < r->nranks; i++)
        total += r->clen[i];
    if (total > UINT32_MAX) {
        log_error("rendezvous: all-gather round %u is too large (%llu bytes)", r->round,
                  (unsigned long long)total);
        job_fail(r, "all-gather round %u is too large (%llu bytes)", r->round,
                 (unsigned long long)total);
        return;
    }
    msg = malloc((size_t)total);
    if (!msg) {
        log_error("rendezvous: out of memory for all-gather round %u", r->round);
        job_fail(r, "the rendezvous ran out of memory in all-gather round %u", r->round);
        return;
    }
    rdv_put32(msg, r->round);
    rdv_put32(msg + 4, r->nranks);
    p = msg + 8;
    for (uint32_t i = 0; i < r->nranks; i++, p += 4)
        rdv_put32(p, r->clen[i]);
    for (uint32_t i = 0; i < r->nranks; i++) {
        if (r->clen[i])
            memcpy(p, r->contrib[i] + 4, r->clen[i]);
        p += r->clen[i];
    }
    log_debug("rendezvous: all-gather round %u complete (%llu bytes)", r->round,
              (unsigned long long)total);
    round_clear(r);
    r->round++;
    for (uint32_t i = 0; i < r->nranks; i++)
        if (r->rconn[i])
            conn_send(r, r->rconn[i], RDV_RESULT, msg, (size_t)total, NULL, 0);
    free(msg);
}

static void on_hello(struct rdv *r, struct conn *c, const uint8_t *p)
{
    uint32_t rank = rdv_get32(p + RDV_KEY_LEN), nranks = rdv_get32(p + RDV_KEY_LEN + 4);

    /* The key first: a peer without it learns nothing else about the job. */
    if (!key_equal(p, r->key)) {
        conn_refuse(r, c, "wrong job key");
        return;
    }
    if (nranks != r->nranks) {
        conn_refuse(r, c, "rank count mismatch: this process has DEED_NRANKS=%u, the job has "
                          "%u ranks", nranks, r->nranks);
        return;
    }
    if (rank >= r->nranks) {
        conn_refuse(r, c, "rank %u is out of range (the job has %u ranks: 0 to %u)", rank,
                    r->nranks, r->nranks - 1);
        return;
    }
    if (r->rstate[rank] != R_NONE) {
        conn_refuse(r, c, "rank %u %s", rank,
                    r->rstate[rank] == R_UP     ? "is already connected (duplicate rank)"
                    : r->rstate[rank] == R_DONE ? "has already finalized"
                                                : "has already failed");
        return;
    }
    c->state = C_AUTHED;
    c->rank = rank;
    r->rstate[rank] = R_UP;
    r->rconn[rank] = c;
    r->connected++;
    log_debug("rendezvous: rank %u connected from %s (%u of %u)", rank, c->peer, r->connected,
              r->nranks);
    conn_send(r, c, RDV_WELCOME, NULL, 0, NULL, 0);
    if (r->job_failed)
        conn_send(r, c, RDV_FAIL, r->fail_msg, r->fail_len, NULL, 0);
}

static void on_gather(struct rdv *r, struct conn *c)
{
    uint32_t round = rdv_get32(c->payload);

    if (r->job_failed) {
        conn_send(r, c, RDV_FAIL, r->fail_msg, r->fail_len, NULL, 0);
        return;
    }
    if (round != r->round || r->contrib[c->rank]) {
        conn_drop(r, c, "all-gather round %u, expected round %u%s", round, r->round,
                  r->contrib[c->rank] ? " (already contributed)" : "");
        return;
    }
    if (r->finished) {
        for (uint32_t i = 0; i < r->nranks; i++)
            if (r->rstate[i] == R_DONE) {
                log_error("rendezvous: rank %u started all-gather round %u, but rank %u has "
                          "already finalized", c->rank, round, i);
                job_fail(r, "all-gather round %u can never complete: rank %u has already "
                            "finalized (the ranks did not make the same bootstrap calls)",
                         round, i);
                return;
            }
    }
    r->contrib[c->rank] = c->payload; /* ownership moves to the round */
    r->clen[c->rank] = c->plen - 4;
    c->payload = NULL;
    if (++r->ncontrib == r->nranks - r->removed)
        round_complete(r);
}

static void on_message(struct rdv *r, struct conn *c)
{
    char text[RDV_MAX_TEXT + 1];

    switch (c->type) {
    case RDV_HELLO:
        on_hello(r, c, c->payload);
        break;
    case RDV_GATHER:
        on_gather(r, c);
        break;
    case RDV_ABORT: {
        uint32_t rank = c->rank;
        memcpy(text, c->payload ? (const char *)c->payload : "", c->plen);
        text[c->plen] = '\0';
        for (uint32_t i = 0; i < c->plen; i++)
            if ((unsigned char)text[i] < 0x20 && text[i] != '\t')
                text[i] = '?';
        log_error("rendezvous: rank %u aborted the job: %s", rank, c->plen ? text : "(no reason)");
        r->rstate[rank] = R_FAILED;
        r->rconn[rank] = NULL;
        r->failed++;
        conn_close(c);
        job_fail(r, "rank %u aborted the job: %s", rank, c->plen ? text : "(no reason)");
        break;
    }
    case RDV_BYE: {
        uint32_t rank = c->rank;
        r->rstate[rank] = R_DONE;
        r->rconn[rank] = NULL;
        r->finished++;
        conn_close(c);
        log_debug("rendezvous: rank %u finalized (%u of %u)", rank, r->finished, r->nranks);
        if (r->ncontrib > 0) {
            log_error("rendezvous: rank %u finalized while all-gather round %u was in progress",
                      rank, r->round);
            job_fail(r, "rank %u finalized while all-gather round %u was in progress (the "
                        "ranks did not make the same bootstrap calls)", rank, r->round);
        }
        break;
    }
    default:
        break; /* unreachable: on_header admits only the types above */
    }
}

/* Validate a complete header; false if the connection was dropped or refused. */
static bool on_header(struct rdv *r, struct conn *c)
{
    uint32_t magic = rdv_get32(c->hdr), len = rdv_get32(c->hdr + 8);
    uint16_t version = rdv_get16(c->hdr + 4), type = rdv_get16(c->hdr + 6);
    bool ok;

    if (magic != RDV_MAGIC) {
        conn_drop(r, c, "bad magic 0x%08x (not a deed bootstrap client?)", magic);
        return false;
    }
    if (version != RDV_VERSION) {
        if (c->state == C_HELLO) {
            conn_refuse(r, c, "protocol version %u, this rendezvous speaks version %u "
                              "(mixed deed versions?)", version, RDV_VERSION);
        } else {
            conn_drop(r, c, "protocol version %u changed mid-connection", version);
        }
        return false;
    }
    if (c->state == C_HELLO)
        ok = type == RDV_HELLO && len == RDV_KEY_LEN + 8;
    else
        ok = (type == RDV_GATHER && len >= 4 && len <= 4 + RDV_MAX_CONTRIB) ||
             (type == RDV_ABORT && len <= RDV_MAX_TEXT) || (type == RDV_BYE && len == 0);
    if (!ok) {
        conn_drop(r, c, "message type %u with %u bytes is not allowed %s", type, len,
                  c->state == C_HELLO ? "before hello" : "from a rank");
        return false;
    }
    c->type = type;
    c->plen = len;
    c->pgot = 0;
    if (len) {
        c->payload = malloc(len);
        if (!c->payload) {
            log_error("rendezvous: out of memory for a %u-byte message", len);
            conn_lost(r, c, "out of memory");
            return false;
        }
    }
    return true;
}

static void conn_readable(struct rdv *r, struct conn *c)
{
    for (int iter = 0; iter < 64 && c->state != C_DEAD; iter++) {
        uint8_t junk[512], *dst;
        size_t want;
        ssize_t n;

        if (c->state == C_CLOSING) {
            dst = junk;
            want = sizeof(junk);
        } else if (c->hdr_got < RDV_HDR_LEN) {
            dst = c->hdr + c->hdr_got;
            want = RDV_HDR_LEN - c->hdr_got;
        } else {
            dst = c->payload + c->pgot;
            want = c->plen - c->pgot;
        }
        n = recv(c->fd, dst, want, 0);
        if (n == 0) {
            conn_lost(r, c, "the peer closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_lost(r, c, strerror(errno));
            return;
        }
        if (c->state == C_CLOSING)
            continue;
        if (c->hdr_got < RDV_HDR_LEN) {
            c->hdr_got += (uint32_t)n;
            if (c->hdr_got < RDV_HDR_LEN || !on_header(r, c))
                continue;
        } else {
            c->pgot += (uint32_t)n;
        }
        if (c->pgot == c->plen) {
            on_message(r, c);
            if (c->state == C_DEAD)
                return;
            free(c->payload);
            c->payload = NULL;
            c->hdr_got = 0;
            c->plen = c->pgot = 0;
        }
    }
}

static size_t pending_conns(const struct rdv *r)
{
    size_t n = 0;

    for (size_t i = 0; i < r->nconns; i++)
        if (r->conns[i]->state == C_HELLO || r->conns[i]->state == C_CLOSING)
            n++;
    return n;
}

static int accept_all(struct rdv *r)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char host[64], serv[16];
        struct conn *c;
        int one = 1;
        int fd = accept4(r->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED ||
                errno == EPROTO)
                return DEED_OK;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM ||
                errno == EPERM) {
                log_warn("rendezvous: accept failed: %s", strerror(errno));
                return DEED_OK;
            }
            log_error("rendezvous: accept failed: %s", strerror(errno));
            return DEED_ERR_BOOTSTRAP;
        }
        if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
                        NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
            snprintf(host, sizeof(host), "?");
            snprintf(serv, sizeof(serv), "?");
        }
        if (pending_conns(r) >= RDV_MAX_PENDING) {
            log_warn("rendezvous: too many connections that are not ranks; closing the one "
                     "from %s:%s", host, serv);
            close(fd);
            continue;
        }
        if (r->nconns == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 16;
            struct conn **nc = realloc(r->conns, cap * sizeof(*nc));
            if (!nc) {
                log_warn("rendezvous: out of memory accepting a connection");
                close(fd);
                return DEED_OK;
            }
            r->conns = nc;
            r->cap = cap;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
            log_warn("rendezvous: out of memory accepting a connection");
            close(fd);
            return DEED_OK;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        c->state = C_HELLO;
        snprintf(c->peer, sizeof(c->peer), "%s:%s", host, serv);
        r->conns[r->nconns++] = c;
    }
}

int rdv_create(const char *bind_host, uint16_t port, uint32_t nranks, const uint8_t key[16],
               struct rdv **out, uint16_t *port_out)
{
    struct addrinfo hints, *res = NULL, *ai;
    char portstr[8];
    struct rdv *r;
    int err, lfd = -1, saved = 0;

    if (!key || !out || nranks == 0 || nranks > RDV_MAX_NRANKS)
        return DEED_ERR_INVALID_ARG;
    *out = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    err = getaddrinfo(bind_host, portstr, &hints, &res);
    if (err != 0) {
        log_error("rendezvous: cannot resolve %s: %s", bind_host ? bind_host : "(any)",
                  gai_strerror(err));
        return DEED_ERR_BOOTSTRAP;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        int one = 1;
        lfd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     ai->ai_protocol);
        if (lfd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(lfd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(lfd, SOMAXCONN) == 0)
            break;
        saved = errno;
        close(lfd);
        lfd = -1;
    }
    freeaddrinfo(res);
    if (lfd < 0) {
        log_error("rendezvous: cannot listen on %s port %u: %s", bind_host ? bind_host : "(any)",
                  (unsigned)port, strerror(saved));
        return DEED_ERR_BOOTSTRAP;
    }
    if (port_out) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(lfd, (struct sockaddr *)&ss, &sl) < 0) {
            log_error("rendezvous: getsockname failed: %s", strerror(errno));
            close(lfd);
            return DEED_ERR_BOOTSTRAP;
        }
        *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    r = calloc(1, sizeof(*r));
    if (r) {
        r->rstate = calloc(nranks, sizeof(*r->rstate));
        r->rconn = calloc(nranks, sizeof(*r->rconn));
        r->contrib = calloc(nranks, sizeof(*r->contrib));
        r->clen = calloc(nranks, sizeof(*r->clen));
    }
    if (!r || !r->rstate || !r->rconn || !r->contrib || !r->clen) {
        if (r) {
            free(r->rstate);
            free(r->rconn);
            free(r->contrib);
            free(r->clen);
            free(r);
        }
        close(lfd);
        log_error("rendezvous: out of memory for %u ranks", nranks);
        return DEED_ERR_NO_MEMORY;
    }
    r->lfd = lfd;
    r->nranks = nranks;
    memcpy(r->key, key, RDV_KEY_LEN);
    *out = r;
    return DEED_OK;
}

void rdv_destroy(struct rdv *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nconns; i++) {
        conn_close(r->conns[i]);
        free(r->conns[i]);
    }
    free(r->conns);
    round_clear(r);
    if (r->lfd >= 0)
        close(r->lfd);
    free(r->rstate);
    free(r->rconn);
    free(r->contrib);
    free(r->clen);
    memset(r->key, 0, sizeof(r->key));
    free(r);
}

int rdv_nfds(const struct rdv *r)
{
    return r ? (int)r->nconns + 1 : 0;
}

int rdv_pollfds(struct rdv *r, struct pollfd *fds, int max)
{
    int n = 0;

    if (!r || !fds || max <= 0)
        return 0;
    fds[n].fd = r->lfd;
    fds[n].events = POLLIN;
    fds[n].revents = 0;
    n++;
    for (size_t i = 0; i < r->nconns && n < max; i++, n++) {
        struct conn *c = r->conns[i];
        fds[n].fd = c->fd;
        fds[n].events = (short)(POLLIN | (c->out_off < c->out_len ? POLLOUT : 0));
        fds[n].revents = 0;
    }
    return n;
}

int rdv_poll(struct rdv *r, const struct pollfd *fds, int n)
{
    int rc = DEED_OK;
    bool listen_ready = false;
    size_t j = 0;

    if (!r || (n > 0 && !fds))
        return DEED_ERR_INVALID_ARG;
    for (int k = 0; k < n; k++) {
        if (!fds[k].revents)
            continue;
        if (fds[k].fd == r->lfd && k == 0) {
            listen_ready = true;
            continue;
        }
        /* rdv_pollfds put conns[i] at index i + 1; nothing is added or removed until below */
        size_t i = (size_t)k - 1;
        if (k == 0 || i >= r->nconns || r->conns[i]->fd != fds[k].fd ||
            r->conns[i]->state == C_DEAD)
            continue;
        struct conn *c = r->conns[i];
        if (fds[k].revents & POLLOUT)
            conn_flush(r, c);
        if (c->state != C_DEAD && (fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
            conn_readable(r, c);
        if (c->state != C_DEAD && (fds[k].revents & POLLNVAL))
            conn_lost(r, c, "invalid file descriptor");
    }
    /* New connections last, so a descriptor number freed above and reused by accept cannot
     * be mistaken for one the caller polled. */
    if (listen_ready)
        rc = accept_all(r);
    for (size_t i = 0; i < r->nconns; i++) {
        if (r->conns[i]->state == C_DEAD)
            free(r->conns[i]);
        else
            r->conns[j++] = r->conns[i];
    }
    r->nconns = j;
    return rc;
}

uint32_t rdv_connected(struct rdv *r)
{
    return r ? r->connected : 0;
}

uint32_t rdv_finished(struct rdv *r)
{
    return r ? r->finished : 0;
}

uint32_t rdv_failed(struct rdv *r)
{
    return r ? r->failed : 0;
}

void rdv_set_tolerant(struct rdv *r, bool on)
{
    if (r)
        r->tolerant = on;
}

bool rdv_tolerant(const struct rdv *r)
{
    return r && r->tolerant;
}

uint32_t rdv_removed(const struct rdv *r)
{
    return r ? r->removed : 0;
}

void rdv_rank_lost(struct rdv *r, uint32_t rank, const char *why)
{
    char msg[160];

    if (!r || rank >= r->nranks)
        return;
    if (!why || !*why)
        why = "ended";
    if (r->rstate[rank] == R_UP && r->rconn[rank]) {
        struct conn *c = r->rconn[rank];
        /* what it sent before it ended comes first (a BYE: it did finalize) */
        conn_readable(r, c);
        if (c->state != C_DEAD) {
            snprintf(msg, sizeof(msg), "its process %s", why);
            conn_lost(r, c, msg);
        }
        return;
    }
    if (r->rstate[rank] != R_NONE)
        return; /* finalized, or its failure is already counted */
    r->rstate[rank] = R_FAILED;
    r->failed++;
    /* deedrun already reports the exit; a job that never bootstraps needs no more noise */
    log_info("rendezvous: rank %u %s before connecting", rank, why);
    if (removable(r, rank))
        rank_remove(r, rank);
    else
        job_fail(r, "rank %u %s before connecting to the rendezvous", rank, why);
}
