/*
 * store.c — a rank's object store (see store.h). Owns the store's segments (their memory,
 * NUMA binding, pinning and transport registration) and the allocator that carves objects
 * out of them.
 *
 * Segments: the total size is split into at most STORE_MAX_SEGMENTS segments of up to
 * STORE_SEG_MAX bytes each (more only when the store is larger than their product). Each is
 * first offered to the transport to allocate (TP_MEM_ALLOCATE, e.g. UCX shared memory, on
 * which gets are truly one-sided) and bound to the NUMA node after mapping; when it declines,
 * the store mmaps the segment, binds it to the NUMA node, mlocks it if asked and registers
 * it. Segments never move or grow, so the
 * segment table is read without the lock.
 *
 * Allocator: TLSF (two-level segregated fit). A block is a 32-byte header followed by its
 * payload; block sizes (header included) are multiples of 64 and headers sit at 32 mod 64,
 * so every payload is 64-byte aligned. Free blocks are kept in FL_COUNT x SL_COUNT lists
 * (first level: power of two, second level: SL_COUNT linear steps inside it) with a bitmap
 * per level, so finding a fit is two find-first-set operations. Every header records the
 * physically previous block, and the next one is at header + size, so a freed block merges
 * with both free neighbours in O(1): there are never two adjacent free blocks.
 *
 * Invariants: every block lies inside one segment (blocks never span segments); `used` is
 * the sum of the sizes of allocated blocks, headers included, so it is 0 when all is free;
 * a header's magic tells allocated from free blocks, which is how store_free detects foreign
 * pointers and double frees without crashing.
 */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hwloc.h>

#include "deed.h"
#include "log.h"
#include "transport.h"

#define STORE_MAX_SEGMENTS 4u
#define STORE_SEG_MAX (1ull << 30)
#define STORE_SEG_LIMIT (1ull << 40) /* largest segment the size classes cover */

#define ALIGN_LOG2 6
#define ALIGN (1ull << ALIGN_LOG2) /* payload alignment and block size granule */
#define SL_LOG2 5
#define SL_COUNT (1u << SL_LOG2)
#define FL_SHIFT (SL_LOG2 + ALIGN_LOG2) /* blocks below 1 << FL_SHIFT share first level 0 */
#define SMALL_BLOCK (1ull << FL_SHIFT)
#define FL_COUNT 32u /* first levels 0..31: block sizes up to 2^(FL_SHIFT + 30) = 2 TiB */

#define BLK_USED 0xdeedb10cu
#define BLK_FREE 0xf7eeb10cu

/* A block header. next_free/prev_free exist only while the block is free: they are the
 * first bytes of the payload. */
struct blk {
    uint64_t size;         /* whole block, header included; multiple of ALIGN */
    struct blk *prev_phys; /* physically previous block in the segment, NULL if first */
    uint32_t magic;        /* BLK_USED or BLK_FREE */
    uint32_t seg;          /* segment index */
    uint64_t reserved;
    struct blk *next_free;
    struct blk *prev_free;
};

#define HDR_SIZE offsetof(struct blk, next_free)
#define MIN_BLOCK ALIGN /* header + room for the free-list links */

_Static_assert(HDR_SIZE == 32, "block header must be 32 bytes");
_Static_assert(sizeof(struct blk) <= MIN_BLOCK, "free block must fit the smallest block");

struct store_seg {
    char *base;
    uint64_t len;
    struct tp_mem *mem; /* transport registration, NULL without a transport */
    int tp_allocated;   /* the transport owns the memory (mem_unmap frees it) */
    struct blk *first;  /* first block header */
    char *end;          /* end of the last block */
};

struct store {
    pthread_mutex_t lock;
    const struct tp_ops *tp_ops;
    struct tp *tp;
    uint32_t nsegs;
    struct store_seg segs[STORE_MAX_SEGMENTS];
    uint64_t total;     /* bytes of segment memory */
    uint64_t max_block; /* largest block any segment can hold */
    uint64_t used;      /* bytes in allocated blocks (guarded by lock) */
    uint32_t fl_map;
    uint32_t sl_map[FL_COUNT];
    struct blk *heads[FL_COUNT][SL_COUNT];
};

/* ------------------------------------------------------------------------------------------ */
/* Size classes and free lists                                                                */
/* ------------------------------------------------------------------------------------------ */

static int fls64(uint64_t x)
{
    return 63 - __builtin_clzll(x);
}

/* The class a block of exactly `size` bytes is filed under. */
static void mapping_insert(uint64_t size, uint32_t *fl, uint32_t *sl)
{
    if (size < SMALL_BLOCK) {
        *fl = 0;
        *sl = (uint32_t)(size >> ALIGN_LOG2);
    } else {
        int f = fls64(size);
        *sl = (uint32_t)(size >> (f - SL_LOG2)) ^ SL_COUNT;
        *fl = (uint32_t)(f - (FL_SHIFT - 1));
    }
}

/* The first class whose blocks are all >= size (size rounded up to the next class). */
static void mapping_search(uint64_t size, uint32_t *fl, uint32_t *sl)
{
    if (size >= SMALL_BLOCK)
        size += (1ull << (fls64(size) - SL_LOG2)) - 1;
    mapping_insert(size, fl, sl);
}

static void list_insert(struct store *s, struct blk *b)
{
    uint32_t fl, sl;

    mapping_insert(b->size, &fl, &sl);
    b->magic = BLK_FREE;
    b->prev_free = NULL;
    b->next_free = s->heads[fl][sl];
    if (b->next_free)
        b->next_free->prev_free = b;
    s->heads[fl][sl] = b;
    s->fl_map |= 1u << fl;
    s->sl_map[fl] |= 1u << sl;
}

static void list_remove(struct store *s, struct blk *b)
{
    uint32_t fl, sl;

    mapping_insert(b->size, &fl, &sl);
    if (b->prev_free)
        b->prev_free->next_free = b->next_free;
    else
        s->heads[fl][sl] = b->next_free;
    if (b->next_free)
        b->next_free->prev_free = b->prev_free;
    if (!s->heads[fl][sl]) {
        s->sl_map[fl] &= ~(1u << sl);
        if (!s->sl_map[fl])
            s->fl_map &= ~(1u << fl);
    }
}

/* A free block of at least `size` bytes, or NULL. O(1): two bitmap scans, plus one look at
 * the head of the request's own class (the rounded search skips that class, which would
 * otherwise make the largest blocks unusable for requests just below their size). */
static struct blk *find_fit(struct store *s, uint64_t size)
{
    uint32_t fl, sl, map;

    mapping_search(size, &fl, &sl);
    if (fl < FL_COUNT) {
        map = s->sl_map[fl] & (~0u << sl);
        if (!map) {
            uint32_t fmap = fl + 1 < FL_COUNT ? s->fl_map & (~0u << (fl + 1)) : 0;
            if (fmap) {
                fl = (uint32_t)__builtin_ctz(fmap);
                map = s->sl_map[fl];
            }
        }
        if (map)
            return s->heads[fl][__builtin_ctz(map)];
    }
    mapping_insert(size, &fl, &sl);
    if (fl < FL_COUNT && s->heads[fl][sl] && s->heads[fl][sl]->size >= size)
        return s->heads[fl][sl];
    return NULL;
}

static struct blk *next_phys(struct store *s, struct blk *b)
{
    char *n = (char *)b + b->size;

    return n < s->segs[b->seg].end ? (struct blk *)n : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Segments                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Bind [addr, addr+len) to the NUMA node with the given os_index (the placement's store
 * node, topo_place); failures are not fatal. */
static void seg_bind(hwloc_topology_t *topo, void *addr, uint64_t len, int numa_node)
{
    hwloc_obj_t node;

    if (!*topo) {
        if (hwloc_topology_init(topo) < 0) {
            *topo = NULL;
            log_debug("store: hwloc_topology_init failed, segments not NUMA-bound");
            return;
        }
        if (hwloc_topology_load(*topo) < 0) {
            hwloc_topology_destroy(*topo);
            *topo = NULL;
            log_debug("store: hwloc_topology_load failed, segments not NUMA-bound");
            return;
        }
    }
    node = hwloc_get_numanode_obj_by_os_index(*topo, (unsigned)numa_node);
    if (!node) {
        log_debug("store: no NUMA node with os_index %d, segment not bound", numa_node);
        return;
    }
    if (hwloc_set_area_membind(*topo, addr, len, node->nodeset, HWLOC_MEMBIND_BIND,
                               HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_MIGRATE) == 0)
        return;
    /* MIGRATE fails where touched pages cannot move (locked, shared): bind the rest */
    if (hwloc_set_area_membind(*topo, addr, len, node->nodeset, HWLOC_MEMBIND_BIND,
                               HWLOC_MEMBIND_BYNODESET) < 0)
        log_debug("store: binding a segment to NUMA node %d failed: %s", numa_node,
                  strerror(errno));
}

/* Obtain segment i's memory and registration. */
static int seg_create(struct store *s, const struct store_params *p, uint32_t i, uint64_t len,
                      hwloc_topology_t *topo, int *warned_pin)
{
    struct store_seg *seg = &s->segs[i];
    void *addr = NULL;
    int rc;

    seg->len = len;
    if (p->tp_ops) {
        rc = p->tp_ops->mem_map(p->tp, &addr, len, TP_MEM_ALLOCATE, &seg->mem);
        if (rc == DEED_OK) {
            seg->base = addr;
            seg->tp_allocated = 1;
            /* the transport's memory (UCX shared memory) is bound after mapping: pages not
             * touched yet follow the policy, touched ones are migrated */
            if (p->numa_node >= 0)
                seg_bind(topo, addr, len, p->numa_node);
            return DEED_OK;
        }
        if (rc != DEED_ERR_UNSUPPORTED) {
            seg->mem = NULL;
            log_error("store: transport %s could not allocate a %llu-byte segment: %s",
                      p->tp_ops->name, (unsigned long long)len, deed_strerror(rc));
            return rc;
        }
        seg->mem = NULL;
    }

    addr =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (addr == MAP_FAILED) {
        log_error("store: mmap of a %llu-byte segment failed: %s", (unsigned long long)len,
                  strerror(errno));
        return DEED_ERR_NO_MEMORY;
    }
    seg->base = addr;
    if (p->numa_node >= 0)
        seg_bind(topo, addr, len, p->numa_node);
    if (p->pin && mlock(addr, len) < 0 && !*warned_pin) {
        *warned_pin = 1;
        log_warn("store: mlock of a %llu-byte segment failed (%s); the store is not pinned "
                 "(raise RLIMIT_MEMLOCK, ulimit -l)",
                 (unsigned long long)len, strerror(errno));
    }
    if (p->tp_ops) {
        rc = p->tp_ops->mem_map(p->tp, &addr, len, 0, &seg->mem);
        if (rc != DEED_OK) {
            seg->mem = NULL;
            log_error("store: transport %s could not register a %llu-byte segment: %s",
                      p->tp_ops->name, (unsigned long long)len, deed_strerror(rc));
            return rc;
        }
    }
    return DEED_OK;
}

static void seg_destroy(struct store *s, struct store_seg *seg)
{
    if (!seg->base)
        return;
    if (seg->mem) {
        int rc = s->tp_ops->mem_unmap(s->tp, seg->mem);
        if (rc != DEED_OK)
            log_warn("store: transport %s failed to unmap a segment: %s", s->tp_ops->name,
                     deed_strerror(rc));
    }
    if (!seg->tp_allocated)
        munmap(seg->base, seg->len);
    memset(seg, 0, sizeof(*seg));
}

/* Lay segment i out as one free block. */
static void seg_format(struct store *s, uint32_t i)
{
    struct store_seg *seg = &s->segs[i];
    uintptr_t first = ((uintptr_t)seg->base + HDR_SIZE + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
    uint64_t size;
    struct blk *b;

    first -= HDR_SIZE;
    size = ((uintptr_t)seg->base + seg->len - first) & ~(ALIGN - 1);
    seg->first = (struct blk *)first;
    seg->end = (char *)first + size;
    if (size < MIN_BLOCK) {
        seg->end = (char *)first; /* too small to hold a block (only a tiny odd transport) */
        return;
    }
    b = seg->first;
    b->size = size;
    b->prev_phys = NULL;
    b->seg = i;
    b->reserved = 0;
    list_insert(s, b);
    if (size > s->max_block)
        s->max_block = size;
}

/* ------------------------------------------------------------------------------------------ */
/* Public (internal API) functions                                                            */
/* ------------------------------------------------------------------------------------------ */

int store_create(const struct store_params *p, struct store **out)
{
    hwloc_topology_t topo = p ? p->topology : NULL; /* the rank's, or loaded by seg_bind */
    int warned_pin = 0, rc;
    uint64_t page, size, per, left;
    struct store *s;

    if (!p || !out || p->size == 0 || (p->tp_ops && !p->tp)) {
        log_error("store: invalid parameters (%s)", !p || !out     ? "NULL argument"
                                                    : p->size == 0 ? "size 0"
                                                                   : "tp_ops without tp");
        return DEED_ERR_INVALID_ARG;
    }
    page = (uint64_t)sysconf(_SC_PAGESIZE);
    if (p->size > STORE_SEG_LIMIT * STORE_MAX_SEGMENTS) {
        log_error("store: size %llu is too large", (unsigned long long)p->size);
        return DEED_ERR_INVALID_ARG;
    }
    size = (p->size + page - 1) / page * page;
    /* Segments of STORE_SEG_MAX, or larger equal ones when that needs too many. */
    per = (size + STORE_MAX_SEGMENTS - 1) / STORE_MAX_SEGMENTS;
    per = (per + page - 1) / page * page;
    if (per < STORE_SEG_MAX)
        per = STORE_SEG_MAX;

    s = calloc(1, sizeof(*s));
    if (!s) {
        log_error("store: out of memory");
        return DEED_ERR_NO_MEMORY;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->tp_ops = p->tp_ops;
    s->tp = p->tp;
    for (left = size; left > 0; left -= s->segs[s->nsegs++].len) {
        uint64_t len = left < per ? left : per;
        rc = seg_create(s, p, s->nsegs, len, &topo, &warned_pin);
        if (rc != DEED_OK) {
            s->nsegs++; /* so the failed segment's partial state is cleaned up too */
            goto err;
        }
        s->total += len;
    }
    for (uint32_t i = 0; i < s->nsegs; i++)
        seg_format(s, i);
    if (topo && topo != p->topology)
        hwloc_topology_destroy(topo);
    log_debug("store: %u segment(s), %llu bytes, numa_node %d, pin %d", s->nsegs,
              (unsigned long long)s->total, p->numa_node, p->pin);
    *out = s;
    return DEED_OK;

err:
    if (topo && topo != p->topology)
        hwloc_topology_destroy(topo);
    store_destroy(s);
    return rc;
}

void store_destroy(struct store *s)
{
    if (!s)
        return;
    if (s->used)
        log_debug("store: destroyed with %llu bytes still allocated", (unsigned long long)s->used);
    for (uint32_t i = 0; i < s->nsegs; i++)
        seg_destroy(s, &s->segs[i]);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int store_alloc(struct store *s, uint64_t size, struct store_loc *loc)
{
    struct blk *b, *rest, *next;
    uint64_t need, cap;

    if (!s || !loc || size == 0) {
        log_error("store_alloc: %s", size == 0 ? "size 0" : "NULL argument");
        return DEED_ERR_INVALID_ARG;
    }
    cap = s->max_block >= MIN_BLOCK ? s->max_block - HDR_SIZE : 0;
    if (size > cap) {
        /* Could never succeed, even on an empty store: not a back-pressure condition. */
        log_error("store_alloc: %llu bytes is larger than the store can hold (%llu)",
                  (unsigned long long)size, (unsigned long long)cap);
        return DEED_ERR_INVALID_ARG;
    }
    need = (size + HDR_SIZE + ALIGN - 1) & ~(ALIGN - 1);

    pthread_mutex_lock(&s->lock);
    b = find_fit(s, need);
    if (!b) {
        pthread_mutex_unlock(&s->lock);
        log_debug("store_alloc: no free block of %llu bytes (used %llu of %llu)",
                  (unsigned long long)need, (unsigned long long)s->used,
                  (unsigned long long)s->total);
        return DEED_ERR_STORE_FULL;
    }
    list_remove(s, b);
    if (b->size - need >= MIN_BLOCK) {
        rest = (struct blk *)((char *)b + need);
        rest->size = b->size - need;
        rest->prev_phys = b;
        rest->seg = b->seg;
        rest->reserved = 0;
        next = next_phys(s, rest);
        if (next)
            next->prev_phys = rest;
        list_insert(s, rest);
        b->size = need;
    }
    b->magic = BLK_USED;
    s->used += b->size;
    pthread_mutex_unlock(&s->lock);

    loc->addr = (char *)b + HDR_SIZE;
    loc->segment = b->seg;
    loc->offset = (uint64_t)((char *)loc->addr - s->segs[b->seg].base);
    loc->len = b->size - HDR_SIZE;
    return DEED_OK;
}

/* The segment holding [addr, addr+len), or -1. */
static int seg_find(struct store *s, const void *addr, uint64_t len)
{
    uintptr_t a = (uintptr_t)addr;

    for (uint32_t i = 0; i < s->nsegs; i++) {
        uintptr_t base = (uintptr_t)s->segs[i].base;
        if (a >= base && a - base <= s->segs[i].len && len <= s->segs[i].len - (a - base))
            return (int)i;
    }
    return -1;
}

void store_free(struct store *s, void *addr)
{
    struct blk *b, *n;
    int seg;

    if (!s || !addr)
        return;
    b = (struct blk *)((char *)addr - HDR_SIZE);
    seg = ((uintptr_t)addr & (ALIGN - 1)) ? -1 : seg_find(s, b, HDR_SIZE);
    if (seg < 0 || (char *)b < (char *)s->segs[seg].first || (char *)b >= s->segs[seg].end) {
        log_error("store_free: %p is not a block of this store", addr);
        return;
    }

    pthread_mutex_lock(&s->lock);
    if (b->magic != BLK_USED || b->seg != (uint32_t)seg || b->size < MIN_BLOCK ||
        b->size > (uint64_t)(s->segs[seg].end - (char *)b)) {
        pthread_mutex_unlock(&s->lock);
        log_error("store_free: %p is not an allocated block (double free or foreign pointer)",
                  addr);
        return;
    }
    s->used -= b->size;

    /* Merge with the free neighbours: afterwards no two free blocks are adjacent. */
    n = next_phys(s, b);
    if (n && n->magic == BLK_FREE) {
        list_remove(s, n);
        b->size += n->size;
        n->magic = 0;
    }
    if (b->prev_phys && b->prev_phys->magic == BLK_FREE) {
        struct blk *p = b->prev_phys;
        list_remove(s, p);
        p->size += b->size;
        b->magic = 0;
        b = p;
    }
    n = next_phys(s, b);
    if (n)
        n->prev_phys = b;
    list_insert(s, b);
    pthread_mutex_unlock(&s->lock);
}

void store_usage(struct store *s, uint64_t *used, uint64_t *total)
{
    pthread_mutex_lock(&s->lock);
    if (used)
        *used = s->used;
    pthread_mutex_unlock(&s->lock);
    if (total)
        *total = s->total;
}

uint32_t store_nsegments(struct store *s)
{
    return s->nsegs;
}

void store_segment(struct store *s, uint32_t i, void **base, uint64_t *len, struct tp_mem **mem)
{
    if (i >= s->nsegs) {
        log_error("store_segment: segment %u out of range (%u segments)", i, s->nsegs);
        if (base)
            *base = NULL;
        if (len)
            *len = 0;
        if (mem)
            *mem = NULL;
        return;
    }
    if (base)
        *base = s->segs[i].base;
    if (len)
        *len = s->segs[i].len;
    if (mem)
        *mem = s->segs[i].mem;
}

int store_contains(struct store *s, const void *addr, uint64_t len)
{
    return s && addr && seg_find(s, addr, len) >= 0;
}
