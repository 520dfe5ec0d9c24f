/*
 * rendezvous.h — the rendezvous server behind the "tcp" bootstrap: accepts exactly nranks
 * connections that present the job key, serves all-gathers and barriers (rounds, in order),
 * and reports a rank that disconnects before finalizing. Used by deedrun (local jobs) and,
 * in a later issue, by rank 0 under Slurm. Single-threaded: driven by rdv_poll from the
 * host's own event loop (it exposes its fds), so deedrun can multiplex it with the ranks'
 * output pipes. All sockets are non-blocking and close-on-exec; partial reads and writes
 * are buffered per connection.
 *
 * Wire protocol (shared with the client in boot_tcp.c). Every message is a 12-byte header
 * followed by a payload; all integers are big-endian:
 *
 *     u32 magic (RDV_MAGIC, "DEED")  u16 version (RDV_VERSION)  u16 type  u32 payload length
 *
 *   HELLO   client->server  key[16] u32 rank u32 nranks                 (exactly 24 bytes)
 *   WELCOME server->client  empty
 *   REFUSE  server->client  reason text (1..RDV_MAX_TEXT bytes); the server then closes
 *   GATHER  client->server  u32 round, contribution (0..RDV_MAX_CONTRIB bytes)
 *   RESULT  server->client  u32 round, u32 nranks, u32 lens[nranks], the contributions
 *   ABORT   client->server  reason text (0..RDV_MAX_TEXT bytes); the rank has failed
 *   FAIL    server->client  reason text: the job failed (a rank died or aborted)
 *   BYE     client->server  empty: clean finalize; the client then closes
 *
 * The server validates the header (magic, version, a type allowed in the connection's
 * state, the length against that type's bounds) before it reads or allocates a payload,
 * and every field after; anything malformed drops the connection (logged as a warning).
 * A HELLO with a wrong key, a rank out of range, a rank already connected or a different
 * rank count is answered with REFUSE and the reason. Rounds: round k completes when every
 * rank has sent its round-k GATHER; then every rank gets the same RESULT. A barrier is a
 * round with empty contributions. A rank whose connection ends without BYE (it died) or
 * that sends ABORT is counted in rdv_failed, logged, and every other connected rank gets
 * FAIL, so nobody waits for it until the timeout.
 *
 * Fault-tolerant mode (rdv_set_tolerant; off by default, deedrun --keep-going turns it on):
 * a rank other than 0 that fails without ABORT (its connection ends without BYE, or the
 * host reports with rdv_rank_lost that its process ended before it finalized, connected or
 * not) does not fail the job. It is removed from the rounds instead: the current round and
 * every later one complete when all the other ranks that have not failed have sent their
 * GATHER, and their RESULT still has nranks entries, the removed rank's contribution being
 * empty (length 0; a contribution it sent to the unfinished round is discarded). So the
 * surviving ranks' barriers and all-gathers (finalize's included) go on without it. Rank 0
 * (it hosts the job's membership) failing, and a rank sending ABORT (an explicit request to
 * end the job), still fail the whole job as above. A removed rank cannot come back: a later
 * HELLO for it is refused.
 */
#ifndef DEED_RENDEZVOUS_H
#define DEED_RENDEZVOUS_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#define RDV_MAGIC 0x44454544u /* "DEED" */
#define RDV_VERSION 1u
#define RDV_HDR_LEN 12u
#define RDV_KEY_LEN 16u
#define RDV_MAX_TEXT 512u                 /* REFUSE, ABORT, FAIL reasons */
#define RDV_MAX_CONTRIB (1u << 20)        /* one rank's all-gather contribution */
#define RDV_MAX_NRANKS (1u << 20)

enum rdv_msg_type {
    RDV_HELLO = 1,
    RDV_WELCOME = 2,
    RDV_REFUSE = 3,
    RDV_GATHER = 4,
    RDV_RESULT = 5,
    RDV_ABORT = 6,
    RDV_FAIL = 7,
    RDV_BYE = 8,
};

struct rdv;

/* Listen on bind_host:port (port 0 = any); *port_out receives the port. key: 16 bytes.
 * Returns DEED_OK, DEED_ERR_INVALID_ARG, DEED_ERR_NO_MEMORY or DEED_ERR_BOOTSTRAP (socket
 * errors, logged). */
int rdv_create(const char *bind_host, uint16_t port, uint32_t nranks, const uint8_t key[16],
               struct rdv **out, uint16_t *port_out);
void rdv_destroy(struct rdv *r);
/* Fill up to max pollfds; returns how many. The listening socket always comes first, so
 * max >= 1 keeps the server accepting; rdv_nfds says how many it would like. */
int rdv_pollfds(struct rdv *r, struct pollfd *fds, int max);
int rdv_nfds(const struct rdv *r);
/* Handle ready fds (after poll); fds/n as filled by rdv_pollfds (fds the server does not
 * own are ignored). Returns 0, or a negative status on a fatal error (the listening
 * socket failed). */
int rdv_poll(struct rdv *r, const struct pollfd *fds, int n);
/* Ranks connected and authenticated so far; ranks that said goodbye (clean finalize);
 * ranks that disconnected without goodbye or aborted. */
uint32_t rdv_connected(struct rdv *r);
uint32_t rdv_finished(struct rdv *r);
uint32_t rdv_failed(struct rdv *r);

/* Fault-tolerant mode (see above): on = a failed rank other than 0 is removed from the
 * rounds instead of failing the job. Set it before the ranks start (it may be changed at
 * any time; it applies to failures from then on). */
void rdv_set_tolerant(struct rdv *r, bool on);
bool rdv_tolerant(const struct rdv *r);
/* The host saw rank's process end (why: e.g. "exited with code 3", for the log). A rank
 * that has finalized (BYE) or already failed is left alone; otherwise it is counted failed
 * now, whether or not it ever connected (its connection, if any, is closed): the job fails
 * (every connected rank gets FAIL) or, in fault-tolerant mode and rank != 0, the rank is
 * removed from the rounds. Call it outside rdv_poll (between rdv_poll and the next
 * rdv_pollfds, or before rdv_poll: fds already filled stay valid). */
void rdv_rank_lost(struct rdv *r, uint32_t rank, const char *why);
/* Ranks removed from the rounds by fault-tolerant mode (counted in rdv_failed too). */
uint32_t rdv_removed(const struct rdv *r);

/* Byte order helpers shared by the client and server. */
static inline void rdv_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline uint32_t rdv_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void rdv_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline uint16_t rdv_get16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}
static inline void rdv_put_header(uint8_t h[RDV_HDR_LEN], uint16_t type, uint32_t len)
{
    rdv_put32(h, RDV_MAGIC);
    rdv_put16(h + 4, (uint16_t)RDV_VERSION);
    rdv_put16(h + 6, type);
    rdv_put32(h + 8, len);
}

#endif /* DEED_RENDEZVOUS_H */
