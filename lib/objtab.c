/*
 * objtab.c — open-addressing index of the ownership table (see objtab.h).
 * The full 64-bit hash is kept per slot so a probe compares rows only on a hash match.
 */
#include "objtab.h"

#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "rt.h"

static inline uint64_t slot_hash(uint64_t hi, uint64_t lo, uint32_t index)
{
    uint64_t h = ids_obj_hash(hi, lo, index);
    return h ? h : 1;
}

int objtab_init(struct objtab *t, uint64_t capacity)
{
    uint64_t cap = 64;
    while (cap < capacity)
        cap <<= 1;
    memset(t, 0, sizeof(*t));
    t->slots = calloc(cap, sizeof(*t->slots));
    if (t->slots == NULL)
        return -1;
    t->mask = cap - 1;
    return 0;
}

void objtab_fini(struct objtab *t)
{
    free(t->slots);
    free(t->ring);
    t->slots = NULL;
    t->ring = NULL;
}

int objtab_set_seq(struct objtab *t, uint64_t hi, uint64_t lo, unsigned ring_bits)
{
    if (t->count != 0 || ring_bits > 30)
        return -1;
    free(t->ring);
    t->ring = calloc((size_t)1 << ring_bits, sizeof(*t->ring));
    if (t->ring == NULL)
        return -1;
    t->rmask = ((uint64_t)1 << ring_bits) - 1;
    t->seq_hi = hi;
    t->seq_lo = lo;
    return 0;
}

/* The ring slot of a sequence id, or NULL for any other id. */
static inline struct obj **ring_slot(const struct objtab *t, uint64_t hi, uint64_t lo,
                                     uint32_t index)
{
    uint64_t c = lo - t->seq_lo;
    if (t->ring == NULL || index != 0 || hi != t->seq_hi || c == 0 || c >= (1ull << 48))
        return NULL;
    return &t->ring[c & t->rmask];
}

/* ---- the hash part ---- */

static struct obj *hash_find(const struct objtab *t, uint64_t hi, uint64_t lo, uint32_t index)
{
    uint64_t h = slot_hash(hi, lo, index);
    for (uint64_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct objtab_slot *s = &t->slots[i];
        if (s->hash == 0)
            return NULL;
        if (s->hash == h && s->row->id.hi == hi && s->row->id.lo == lo &&
            s->row->id.index == index)
            return s->row;
    }
}

static void place(struct objtab_slot *slots, uint64_t mask, uint64_t h, struct obj *row)
{
    uint64_t i = h & mask;
    while (slots[i].hash != 0)
        i = (i + 1) & mask;
    slots[i].hash = h;
    slots[i].row = row;
}

static int grow(struct objtab *t)
{
    uint64_t ncap = (t->mask + 1) * 2;
    struct objtab_slot *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return -1;
    for (uint64_t i = 0; i <= t->mask; i++)
        if (t->slots[i].hash)
            place(ns, ncap - 1, t->slots[i].hash, t->slots[i].row);
    free(t->slots);
    t->slots = ns;
    t->mask = ncap - 1;
    return 0;
}

/* 0 inserted, 1 the id exists, -1 no memory */
static int hash_insert_new(struct objtab *t, struct obj *row)
{
    if ((t->hcount + 1) * 2 > t->mask + 1 && grow(t) != 0)
        return -1;
    uint64_t h = slot_hash(row->id.hi, row->id.lo, row->id.index);
    uint64_t i = h & t->mask;
    for (; t->slots[i].hash != 0; i = (i + 1) & t->mask) {
        const struct obj *o = t->slots[i].row;
        if (t->slots[i].hash == h && o->id.hi == row->id.hi && o->id.lo == row->id.lo &&
            o->id.index == row->id.index)
            return 1;
    }
    t->slots[i].hash = h;
    t->slots[i].row = row;
    t->hcount++;
    return 0;
}

/* 1 removed, 0 not there */
static int hash_remove(struct objtab *t, struct obj *row)
{
    uint64_t h = slot_hash(row->id.hi, row->id.lo, row->id.index);
    uint64_t i = h & t->mask;
    while (t->slots[i].row != row) {
        if (t->slots[i].hash == 0)
            return 0;
        i = (i + 1) & t->mask;
    }
    /* backward-shift deletion keeps probe sequences intact without tombstones */
    uint64_t j = i;
    for (;;) {
        t->slots[i].hash = 0;
        t->slots[i].row = NULL;
        for (;;) {
            j = (j + 1) & t->mask;
            if (t->slots[j].hash == 0) {
                t->hcount--;
                return 1;
            }
            uint64_t home = t->slots[j].hash & t->mask;
            /* can slot j move to i? yes if home is not cyclically in (i, j] */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
                break;
        }
        t->slots[i] = t->slots[j];
        i = j;
    }
}

/* ---- both ---- */

struct obj *objtab_find(struct objtab *t, uint64_t hi, uint64_t lo, uint32_t index)
{
    struct obj **rs = ring_slot(t, hi, lo, index);
    if (rs != NULL) {
        struct obj *r = *rs;
        if (r != NULL && r->id.lo == lo) /* a ring row is a sequence id: hi, index match */
            return r;
        if (t->seq_in_hash == 0)
            return NULL;
    }
    return hash_find(t, hi, lo, index);
}

int objtab_insert_new(struct objtab *t, struct obj *row)
{
    struct obj **rs = ring_slot(t, row->id.hi, row->id.lo, row->id.index);
    if (rs != NULL) {
        if (*rs != NULL && (*rs)->id.lo == row->id.lo)
            return 1;
        if (*rs == NULL) {
            if (t->seq_in_hash && hash_find(t, row->id.hi, row->id.lo, row->id.index))
                return 1;
            *rs = row;
            t->count++;
            return 0;
        }
        /* the slot holds another live task's row: the hash part takes this one */
    }
    int rc = hash_insert_new(t, row);
    if (rc == 0) {
        t->count++;
        if (rs != NULL)
            t->seq_in_hash++;
    }
    return rc;
}

int objtab_insert(struct objtab *t, struct obj *row)
{
    return objtab_insert_new(t, row) == 0 ? 0 : -1;
}

void objtab_remove(struct objtab *t, struct obj *row)
{
    struct obj **rs = ring_slot(t, row->id.hi, row->id.lo, row->id.index);
    if (rs != NULL && *rs == row) {
        *rs = NULL;
        t->count--;
        return;
    }
    if (hash_remove(t, row)) {
        t->count--;
        if (rs != NULL)
            t->seq_in_hash--;
    }
}

struct obj *objtab_next(struct objtab *t, uint64_t *i)
{
    while (*i <= t->mask) {
        struct objtab_slot *s = &t->slots[(*i)++];
        if (s->hash)
            return s->row;
    }
    while (t->ring != NULL && *i - (t->mask + 1) <= t->rmask) {
        struct obj *r = t->ring[*i - (t->mask + 1)];
        (*i)++;
        if (r != NULL)
            return r;
    }
    return NULL;
}
