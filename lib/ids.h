/*
 * ids.h — deterministic identities (design §3).
 *
 * TaskID (128 bit) = hash(parent TaskID, index of the child within its parent); a rank's
 * driver has a root TaskID derived from (job key, rank). ObjectID = TaskID + return index;
 * puts made by a task use indices after its returns. Re-running a task therefore re-creates
 * the same child and object ids. The hash is a fast mixer (not cryptographic); collisions
 * among 2^40 ids have probability ~2^-48.
 */
#ifndef DEED_IDS_H
#define DEED_IDS_H

#include <stdint.h>

#include "deed.h"

typedef struct taskid {
    uint64_t hi, lo;
} taskid_t;

typedef struct objid {
    uint64_t hi, lo;
    uint32_t index;
} objid_t;

taskid_t ids_root(uint64_t job_key_hi, uint64_t job_key_lo, uint32_t rank);
taskid_t ids_child(taskid_t parent, uint64_t child_index);
/* The c-th task the driver submits (c from 0): (root.hi, root.lo + c + 1), not a hash, so
 * that the owner can index the driver's stream of tasks by c (objtab's sequence ring). Unique
 * like the hashed ids (another id equals one of these with probability ~n / 2^128) and as
 * deterministic (lineage re-runs keep the ids they were submitted with). */
static inline taskid_t ids_root_child(taskid_t root, uint64_t c)
{
    taskid_t t = {root.hi, root.lo + c + 1};
    return t;
}
/* The object id of the n-th put made by a task with nrets returns. */
objid_t ids_put(taskid_t task, uint32_t nrets, uint64_t nth_put);
uint64_t ids_name_hash(const char *name);
/* hash of an object id, for the ownership table */
static inline uint64_t ids_obj_hash(uint64_t hi, uint64_t lo, uint32_t index)
{
    uint64_t h = hi ^ (lo * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)index << 32 | index);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return h;
}

static inline deed_ref_t ids_ref(objid_t o, uint32_t owner)
{
    deed_ref_t r = {o.hi, o.lo, o.index, owner};
    return r;
}

#endif /* DEED_IDS_H */
