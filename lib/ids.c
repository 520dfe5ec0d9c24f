/*
 * ids.c — the id hash functions (see ids.h). Pure functions; no state.
 */
#include "ids.h"

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static taskid_t mix128(uint64_t a, uint64_t b, uint64_t c)
{
    taskid_t t;
    t.hi = mix64(a ^ mix64(b + 0x9E3779B97F4A7C15ull) ^ (c * 0xD6E8FEB86659FD93ull));
    t.lo = mix64(b ^ mix64(t.hi + c) ^ (a * 0xA0761D6478BD642Full));
    if ((t.hi | t.lo) == 0)
        t.lo = 1; /* the null ref is all zero */
    return t;
}

taskid_t ids_root(uint64_t job_key_hi, uint64_t job_key_lo, uint32_t rank)
{
    return mix128(job_key_hi, job_key_lo ^ 0x524F4F54ull /* "ROOT" */, rank);
}

taskid_t ids_child(taskid_t parent, uint64_t child_index)
{
    return mix128(parent.hi, parent.lo, child_index);
}

objid_t ids_put(taskid_t task, uint32_t nrets, uint64_t nth_put)
{
    /* Up to 2^30 puts use the task's own id; beyond, each further 2^30 puts hash into a
     * fresh id so indices never wrap onto the returns. */
    const uint64_t span = 1ull << 30;
    objid_t o;
    if (nth_put < span) {
        o.hi = task.hi;
        o.lo = task.lo;
        o.index = nrets + (uint32_t)nth_put;
    } else {
        taskid_t t = mix128(task.hi ^ 0x505554ull /* "PUT" */, task.lo, nth_put / span);
        o.hi = t.hi;
        o.lo = t.lo;
        o.index = (uint32_t)(nth_put % span);
    }
    return o;
}

uint64_t ids_name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a finalizer */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    h = mix64(h);
    return h ? h : 1;
}
