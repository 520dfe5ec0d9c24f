/*
 * store.h — a rank's object store: a few large pinned segments, NUMA-bound with hwloc and
 * registered with the transport once at start, from which objects are carved out by an O(1)
 * allocator (TLSF-style: two-level segregated free lists + bitmaps, boundary tags for
 * coalescing).
 *
 * Thread safety: store_alloc/store_free/store_usage may be called from any thread (workers
 * write large returns in place); they take one short internal lock. store_create/destroy are
 * called by the context's init/finalize only.
 *
 * Invariant: every block handed out lies entirely inside one registered segment, so a
 * remote read of a location the store published can never leave registered memory.
 */
#ifndef DEED_STORE_H
#define DEED_STORE_H

#include <stddef.h>
#include <stdint.h>

struct hwloc_topology;
struct tp;
struct tp_ops;
struct tp_mem;
struct store;

struct store_params {
    uint64_t size;              /* total bytes (rounded up to the page size) */
    int numa_node;              /* hwloc NUMA node os_index to bind to, -1 = leave to the OS */
    struct hwloc_topology *topology; /* loaded topology to bind with (the rank's, not taken
                                      * over); NULL = the store loads one when it binds */
    int pin;                    /* 1: mlock the segments (falls back with a warning) */
    const struct tp_ops *tp_ops;/* may be NULL: no registration */
    struct tp *tp;
};

/* A block: where an object's bytes live. */
struct store_loc {
    void *addr;
    uint32_t segment;   /* index of the segment */
    uint64_t offset;    /* offset inside the segment */
    uint64_t len;       /* usable bytes (>= requested) */
};

int store_create(const struct store_params *p, struct store **out);
void store_destroy(struct store *s);

/* O(1). Returns DEED_OK, DEED_ERR_STORE_FULL (no block large enough right now),
 * DEED_ERR_INVALID_ARG (size 0 or larger than the whole store). Blocks are 64-byte aligned. */
int store_alloc(struct store *s, uint64_t size, struct store_loc *loc);
/* O(1). Frees a block returned by store_alloc (by its address). */
void store_free(struct store *s, void *addr);

/* Bytes currently allocated (incl. per-block overhead) and capacity. */
void store_usage(struct store *s, uint64_t *used, uint64_t *total);
/* Segments for publishing: count, and each one's base, length and transport registration. */
uint32_t store_nsegments(struct store *s);
void store_segment(struct store *s, uint32_t i, void **base, uint64_t *len, struct tp_mem **mem);
/* 1 if [addr, addr+len) lies inside one segment. */
int store_contains(struct store *s, const void *addr, uint64_t len);

#endif /* DEED_STORE_H */
