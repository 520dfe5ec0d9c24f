/*
 * rendezvous.h — the rendezvous server behind the "tcp" bootstrap: accepts exactly nranks
 * connections that present the job key, serves all-gathers and barriers (rounds, in order),
 * and reports a rank that disconnects before finalizing. Used by deedrun (local jobs) and,
 * in a later issue, by rank 0 under Slurm. Single-threaded: driven by rdv_poll from the
 * host's own event loop (it exposes its fds), so deedrun can multiplex it with the ranks'
 * output pipes.
 */
#ifndef DEED_RENDEZVOUS_H
#define DEED_RENDEZVOUS_H

#include <poll.h>
#include <stdint.h>

struct rdv;

/* Listen on bind_host:port (port 0 = any); *port_out receives the port. key: 16 bytes. */
int rdv_create(const char *bind_host, uint16_t port, uint32_t nranks, const uint8_t key[16],
               struct rdv **out, uint16_t *port_out);
void rdv_destroy(struct rdv *r);
/* Fill up to max pollfds; returns how many. */
int rdv_pollfds(struct rdv *r, struct pollfd *fds, int max);
/* Handle ready fds (after poll). Returns 0, or a negative status on a fatal protocol error. */
int rdv_poll(struct rdv *r, const struct pollfd *fds, int n);
/* Ranks connected and authenticated so far; ranks that said goodbye (clean finalize). */
uint32_t rdv_connected(struct rdv *r);
uint32_t rdv_finished(struct rdv *r);

#endif /* DEED_RENDEZVOUS_H */
