/*
 * objtab.h — the ownership table's index: open addressing (linear probing, backward-shift
 * deletion) from object id to row pointer. Loop thread only. No allocation except when the
 * table grows (doubling at 50% load).
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
    uint64_t count;
};

int objtab_init(struct objtab *t, uint64_t capacity);
void objtab_fini(struct objtab *t);
struct obj *objtab_find(struct objtab *t, uint64_t hi, uint64_t lo, uint32_t index);
int objtab_insert(struct objtab *t, struct obj *row); /* 0, or -1 (no memory) */
/* Insert unless a row with the same id is there (one probe sequence for both): 0 inserted,
 * 1 the id exists (nothing inserted), -1 no memory. */
int objtab_insert_new(struct objtab *t, struct obj *row);
void objtab_remove(struct objtab *t, struct obj *row);
/* Iterate: i from 0; returns next row or NULL. */
struct obj *objtab_next(struct objtab *t, uint64_t *i);

#endif /* DEED_OBJTAB_H */
