/*
 * objtab.h — the ownership table's index: from object id to row pointer. Loop thread only.
 *
 * Two parts. The hash part: open addressing (linear probing, backward-shift deletion, the
 * full 64-bit hash per slot), doubling at 50% load. The sequence ring (objtab_set_seq):
 * the first return of each task the rank's driver submits has the id (root.hi, root.lo + c,
 * 0) for its c-th child (ids_root_child), so it lives in ring slot c mod the ring size: the
 * driver's stream of tasks is inserted, waited on, released and removed in about the order
 * of c, walking the ring sequentially (a hash part of 10,000 rows is past the L2 cache:
 * each of those four operations was a miss, ~19% of the owner's time in the remote
 * benchmark). A row whose ring slot is taken (its task is >= ring size behind or ahead of a
 * live one) goes to the hash part; `seq_in_hash` counts those, so a lookup that misses the
 * ring consults the hash part only when some exist.
 */
#ifndef DEED_OBJTAB_H
#define DEED_OBJTAB_H

#include <stdint.h>

struct obj;

struct objtab_slot {
    uint64_t hash; /* 0 = empty */
    struct obj *row;
};

struct objtab {
    struct objtab_slot *slots;
    uint64_t mask;
    uint64_t count;       /* rows in both parts */
    uint64_t hcount;      /* rows in the hash part */
    struct obj **ring;    /* the sequence ring, or NULL */
    uint64_t rmask;
    uint64_t seq_hi, seq_lo;
    uint64_t seq_in_hash; /* sequence ids that live in the hash part */
};

int objtab_init(struct objtab *t, uint64_t capacity);
void objtab_fini(struct objtab *t);
/* Enable the sequence ring (2^ring_bits slots) for ids (hi, lo + c, 0), c >= 1 (the
 * driver's children, ids.h: ids_root_child). 0, or -1 (no memory: the hash part serves). */
int objtab_set_seq(struct objtab *t, uint64_t hi, uint64_t lo, unsigned ring_bits);
struct obj *objtab_find(struct objtab *t, uint64_t hi, uint64_t lo, uint32_t index);
int objtab_insert(struct objtab *t, struct obj *row); /* 0, or -1 (no memory, or the id exists) */
/* Insert unless a row with the same id is there (one probe sequence for both): 0 inserted,
 * 1 the id exists (nothing inserted), -1 no memory. */
int objtab_insert_new(struct objtab *t, struct obj *row);
void objtab_remove(struct objtab *t, struct obj *row);
/* Iterate: i from 0; returns next row or NULL. */
struct obj *objtab_next(struct objtab *t, uint64_t *i);

#endif /* DEED_OBJTAB_H */
