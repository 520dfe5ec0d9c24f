/*
 * remote.c — the multi-rank half of the loop (design §5-§7): placing tasks on other ranks,
 * executing tasks pushed here, locating and pulling objects, copies, and the borrower
 * protocol. Loop thread (combiner) only; docs/protocol.md describes every message.
 *
 * Owner side: lease.c decides where a resolved task runs (leases, spillback, locality); a
 * task for another rank is pushed with small arguments inline and large ones as locations,
 * and waits in the remote-pending table for its reply. The reply carries small returns inline, large ones as
 * locations (they stay in the executor's store), and the executor's borrow report, merged
 * before the task's argument counts drop.
 *
 * Executor side: a pushed task gets borrowed rows for its located and future arguments,
 * pulls located arguments into this rank's store with a one-sided get, runs, and replies.
 *
 * Not yet: failures (the fault-tolerance issue).
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry.h"
#include "rt.h"
#include "transport.h"

#define PENDING_BUCKETS 4096
/* an object in debug lines: low 32 bits of the id, index, owner */
#define OBJ_FMT "obj %08x:%u@%u"
#define OBJ_ARGS(o) (unsigned)(o)->id.lo, (o)->id.index, (o)->owner
#define MAX_SEGS 8

enum { ARG_VALUE = 1, ARG_INLINE, ARG_LOCATED, ARG_FUTURE };
enum { RET_INLINE = 1, RET_LOCATED };
enum { LOC_INLINE = 1, LOC_LOCATED, LOC_ERROR };

struct pull {
    struct pull *next;
    struct pull *iprev, *inext; /* issued and not completed (remote->issued) */
    uint8_t abandoned;          /* its source died; the transport may never complete it */
    struct rt *rt;
    struct obj *row;
    struct loc src;
    struct store_loc dst;
};

struct seginfo {
    uint64_t base, len;
    void *rkey;
    uint32_t rkey_len;
    uint8_t state; /* 0 unknown, 1 requested, 2 known */
    struct pull *waiting;
};

struct rwaiter {
    struct waiter w;
    uint32_t rank;
};

struct remote {
    struct task *pending[PENDING_BUCKETS];
    struct seginfo (*segs)[MAX_SEGS]; /* [nranks][MAX_SEGS]: peers' segments */
    void *my_rkey[MAX_SEGS];          /* our packed rkeys, packed once */
    size_t my_rkey_len[MAX_SEGS];
    uint32_t *inflight;               /* [nranks]: tasks pushed, reply pending */
    struct pull *retry;               /* pulls waiting for store space */
    struct pull *issued;              /* gets in flight */
};

/* ---- helpers ----------------------------------------------------------------------------- */

int remote_init(struct rt *rt)
{
    struct remote *re = calloc(1, sizeof(*re));
    if (re == NULL)
        return DEED_ERR_NO_MEMORY;
    re->segs = calloc(rt->nranks, sizeof(*re->segs));
    re->inflight = calloc(rt->nranks, sizeof(*re->inflight));
    rt->remote = re;
    if (re->segs == NULL || re->inflight == NULL)
        return DEED_ERR_NO_MEMORY;
    return DEED_OK;
}

void remote_fini(struct rt *rt)
{
    struct remote *re = rt->remote;
    if (re == NULL)
        return;
    for (uint32_t r = 0; re->segs && r < rt->nranks; r++)
        for (int s = 0; s < MAX_SEGS; s++)
            free(re->segs[r][s].rkey);
    for (int s = 0; s < MAX_SEGS; s++)
        if (re->my_rkey[s])
            rt->tp_ops->rkey_buf_free(rt->tp, re->my_rkey[s]);
    free(re->segs);
    free(re->inflight);
    free(re);
    rt->remote = NULL;
}

static inline deed_ref_t row_ref(const struct obj *o)
{
    deed_ref_t r = {o->id.hi, o->id.lo, o->id.index, o->owner};
    return r;
}

/* Where in our store an address lies (a location other ranks can read). */
static int store_where(struct rt *rt, const void *addr, uint64_t len, struct loc *l)
{
    uint32_t n = store_nsegments(rt->store);
    for (uint32_t i = 0; i < n; i++) {
        void *base;
        uint64_t slen;
        struct tp_mem *mem;
        store_segment(rt->store, i, &base, &slen, &mem);
        if ((const char *)addr >= (char *)base && (const char *)addr + len <= (char *)base + slen) {
            l->rank = rt->rank;
            l->segment = i;
            l->offset = (uint64_t)((const char *)addr - (char *)base);
            l->len = len;
            return 0;
        }
    }
    return -1;
}

static void wbuf_loc(struct wbuf *b, const struct loc *l)
{
    wbuf_u32(b, l->rank);
    wbuf_u32(b, l->segment);
    wbuf_u64(b, l->offset);
    wbuf_u64(b, l->len);
}

static int rbuf_loc(struct rt *rt, struct rbuf *r, struct loc *l)
{
    l->rank = rbuf_u32(r);
    l->segment = rbuf_u32(r);
    l->offset = rbuf_u64(r);
    l->len = rbuf_u64(r);
    return (r->err || l->rank >= rt->nranks || l->segment >= MAX_SEGS) ? -1 : 0;
}

static int add_rank(uint32_t **arr, uint32_t *n, uint32_t rank)
{
    for (uint32_t i = 0; i < *n; i++)
        if ((*arr)[i] == rank)
            return 0;
    uint32_t *na = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (na == NULL)
        return -1;
    na[(*n)++] = rank;
    *arr = na;
    return 1;
}

static void del_rank(uint32_t *arr, uint32_t *n, uint32_t rank)
{
    for (uint32_t i = 0; i < *n; i++)
        if (arr[i] == rank) {
            arr[i] = arr[--*n];
            return;
        }
}

struct obj *remote_borrow_row(struct rt *rt, deed_ref_t ref)
{
    struct obj *o = objtab_find(&rt->objs, ref.id_hi, ref.id_lo, ref.index);
    if (o)
        return o->owner == ref.owner ? o : NULL;
    objid_t id = {ref.id_hi, ref.id_lo, ref.index};
    o = owner_create(rt, id);
    if (o)
        o->owner = ref.owner;
    return o;
}

/* An owned row gained borrower `b`: ask it to tell us when it is done. */
static void add_borrower(struct rt *rt, struct obj *o, uint32_t b)
{
    if (b == rt->rank || b >= rt->nranks)
        return;
    int added = add_rank(&o->ranks, &o->nranks, b);
    if (added < 0) {
        log_error("remote: out of memory recording a borrower; object %u may be freed early",
                  o->id.index);
        return;
    }
    if (added) {
        struct wbuf *w = net_msg(rt, b, WT_BORROW_WAIT);
        wbuf_ref(w, row_ref(o));
        net_msg_end(rt, b);
    }
}

/* ---- refs inside objects that cross ranks ---------------------------------------------- *
 *
 * Whoever hands a ref to a new holder makes sure the ref's owner learns of that holder
 * before anything could drop the ref, and says so in the same message (no ordering race):
 *   - the receiver owns it: nothing to do;
 *   - we own it: the receiver becomes our borrower right now (flag 1: the receiver knows
 *     it is registered and answers BORROW_DONE when it is done);
 *   - someone else owns it: the receiver becomes *our* new borrower, reported to the owner
 *     in our own BORROW_DONE (flag 0: the receiver keeps its row until the owner's
 *     BORROW_WAIT arrives). We keep our row until then.
 */
static void write_refs_to(struct rt *rt, struct wbuf *w, const deed_ref_t *refs, uint32_t n,
                          uint32_t dst)
{
    wbuf_u32(w, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t reg = 0;
        wbuf_ref(w, refs[i]);
        if (refs[i].owner != dst) {
            struct obj *o = owner_find(rt, refs[i]);
            if (o && o->owner == rt->rank) {
                if (add_rank(&o->ranks, &o->nranks, dst) >= 0)
                    reg = 1;
            } else if (o && add_rank(&o->ranks, &o->nranks, dst) < 0) {
                log_error("remote: out of memory recording a borrower");
            }
        }
        wbuf_u8(w, reg);
    }
}

/* Decode refs written by write_refs_to into rows counted by one more holder (*contained*
 * when an object here holds them, *submitted* when a task does). Returns a malloc'd array
 * (NULL when n == 0) or sets r->err. */
static deed_ref_t *read_refs_from(struct rt *rt, struct rbuf *r, uint32_t *n_out, int contained,
                                  struct obj **rows_out)
{
    uint32_t n = rbuf_u32(r);
    *n_out = 0;
    if (r->err || n > rbuf_left(r) / 25) {
        r->err = 1;
        return NULL;
    }
    if (n == 0)
        return NULL;
    deed_ref_t *refs = malloc(n * sizeof(*refs));
    if (refs == NULL) {
        r->err = 1;
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        refs[i] = rbuf_ref(r);
        uint8_t reg = rbuf_u8(r);
        if (r->err || refs[i].owner >= rt->nranks || deed_ref_is_null(refs[i])) {
            r->err = 1;
            break;
        }
        struct obj *o = remote_borrow_row(rt, refs[i]);
        if (o == NULL) {
            r->err = 1;
            break;
        }
        if (o->owner != rt->rank) {
            if (reg)
                o->owner_waits = 1, o->expect_wait = 0;
            else if (!o->owner_waits)
                o->expect_wait = 1;
        }
        if (contained)
            o->contained++;
        else
            o->submitted++;
        if (rows_out)
            rows_out[i] = o;
        *n_out = i + 1;
    }
    if (r->err) {
        /* undo the counts taken so far */
        for (uint32_t i = 0; i < *n_out; i++) {
            struct obj *o = owner_find(rt, refs[i]);
            if (o) {
                if (contained)
                    o->contained--;
                else
                    o->submitted--;
                owner_maybe_free(rt, o);
            }
        }
        free(refs);
        *n_out = 0;
        return NULL;
    }
    return refs;
}

void remote_drop_contained(struct rt *rt, const deed_ref_t *refs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct obj *o = owner_find(rt, refs[i]);
        if (o && o->contained) {
            o->contained--;
            owner_maybe_free(rt, o);
        }
    }
}

/* ---- placement and push (owner side) ------------------------------------------------------ */

static uint32_t pending_bucket(taskid_t id)
{
    return (uint32_t)(id.lo ^ (id.hi >> 7)) & (PENDING_BUCKETS - 1);
}

static struct task *pending_take(struct rt *rt, uint64_t hi, uint64_t lo)
{
    taskid_t id = {hi, lo};
    struct task **pp = &rt->remote->pending[pending_bucket(id)];
    for (; *pp; pp = &(*pp)->hnext)
        if ((*pp)->id.hi == hi && (*pp)->id.lo == lo) {
            struct task *t = *pp;
            *pp = t->hnext;
            return t;
        }
    return NULL;
}

/* Locality: the rank holding most of the task's large argument bytes, or -1 if none. */
int32_t remote_locality(struct rt *rt, struct task *t)
{
    int32_t best = -1;
    uint64_t best_bytes = 0;
    for (uint32_t i = 0; i < t->nargs; i++) {
        struct obj *row = t->deps[i].row;
        if (t->uargs[i].kind != DEED_ARG_REF || row == NULL || row->size <= rt->inline_max)
            continue;
        uint32_t holder = (!row_has_bytes(row) && row->nlocs) ? row->locs[0].rank : rt->rank;
        uint64_t bytes = 0;
        for (uint32_t j = 0; j < t->nargs; j++) {
            struct obj *r2 = t->deps[j].row;
            if (t->uargs[j].kind != DEED_ARG_REF || r2 == NULL || r2->size <= rt->inline_max)
                continue;
            uint32_t h2 = (!row_has_bytes(r2) && r2->nlocs) ? r2->locs[0].rank : rt->rank;
            if (h2 == holder)
                bytes += r2->size;
        }
        if (bytes > best_bytes && !rt->peers[holder].dead) {
            best_bytes = bytes;
            best = (int32_t)holder;
        }
    }
    return best;
}

static void push_arg(struct rt *rt, struct wbuf *w, struct task *t, uint32_t i, uint32_t dst)
{
    deed_arg_t *a = &t->uargs[i];
    struct obj *row = t->deps[i].row;
    if (a->kind == DEED_ARG_VALUE) {
        wbuf_u8(w, ARG_VALUE);
        wbuf_blob(w, a->data, (uint32_t)a->size);
    } else if (a->kind == DEED_ARG_FUTURE) {
        wbuf_u8(w, ARG_FUTURE);
        wbuf_ref(w, a->ref);
    } else if (row_has_bytes(row) && row->where != WHERE_STORE) {
        wbuf_u8(w, ARG_INLINE);
        wbuf_ref(w, a->ref);
        wbuf_blob(w, row->data, (uint32_t)row->size);
        write_refs_to(rt, w, row->refs, row->nrefs, dst);
    } else {
        struct loc mine;
        int have = row->where == WHERE_STORE &&
                   store_where(rt, row->data, row->size, &mine) == 0;
        wbuf_u8(w, ARG_LOCATED);
        wbuf_ref(w, a->ref);
        wbuf_u64(w, row->size);
        wbuf_u16(w, (uint16_t)(row->nlocs + (have ? 1 : 0)));
        if (have)
            wbuf_loc(w, &mine);
        for (uint32_t j = 0; j < row->nlocs; j++)
            wbuf_loc(w, &row->locs[j]);
        write_refs_to(rt, w, row->refs, row->nrefs, dst);
    }
}

int remote_push(struct rt *rt, struct task *t, uint32_t dst, uint32_t lease)
{
    /* every by-ref argument must be readable from somewhere: one whose copies died since
     * the task was resolved must be re-created first (the caller re-resolves the task) */
    for (uint32_t i = 0; i < t->nargs; i++) {
        struct obj *row = t->deps[i].row;
        if (t->uargs[i].kind == DEED_ARG_REF && row && !row_has_bytes(row) && row->nlocs == 0)
            return -1;
    }
    struct wbuf *w = net_msg(rt, dst, WT_TASK_PUSH);
    uint8_t *q = wbuf_reserve(w, 32);
    if (q) {
        wire_put64(q, t->id.hi);
        wire_put64(q + 8, t->id.lo);
        wire_put64(q + 16, t->fid);
        wire_put32(q + 24, lease);
        wire_put16(q + 28, (uint16_t)t->nrets);
        wire_put16(q + 30, (uint16_t)t->nargs);
    }
    for (uint32_t i = 0; i < t->nargs; i++)
        push_arg(rt, w, t, i, dst);
    net_msg_end(rt, dst);
    uint32_t b = pending_bucket(t->id);
    t->hnext = rt->remote->pending[b];
    rt->remote->pending[b] = t;
    rt->remote->inflight[dst]++;
    t->state = TASK_RUNNING;
    return 0;
}

/* ---- executor side ------------------------------------------------------------------------ */

static void reply_error(struct rt *rt, uint32_t dst, uint64_t hi, uint64_t lo, int status,
                        const char *msg)
{
    struct wbuf *w = net_msg(rt, dst, WT_TASK_REPLY);
    wbuf_u64(w, hi);
    wbuf_u64(w, lo);
    wbuf_u32(w, (uint32_t)status);
    wbuf_u32(w, 0);
    wbuf_blob(w, msg, (uint32_t)strlen(msg));
    wbuf_u16(w, 0); /* no returns */
    wbuf_u32(w, 0); /* no borrow report */
    net_msg_end(rt, dst);
}

/* The refs inside a by-ref argument: held by the task (t->held) and shown to the body. */
static char *push_arg_refs(struct rt *rt, struct rbuf *r, struct task *t, deed_arg_t *a, char *p)
{
    uint32_t n;
    struct obj *rows[64], **rowv = rows;
    uint32_t peek = 0;
    if (rbuf_left(r) >= 4)
        peek = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
               (uint32_t)r->p[3] << 24;
    if (peek > 64 && (rowv = malloc(peek * sizeof(*rowv))) == NULL) {
        r->err = 1;
        return p;
    }
    deed_ref_t *refs = read_refs_from(rt, r, &n, 0, rowv);
    if (n) {
        struct obj **nh = realloc(t->held, (t->nheld + n) * sizeof(*nh));
        if (nh == NULL) {
            r->err = 1;
        } else {
            t->held = nh;
            memcpy(t->held + t->nheld, rowv, n * sizeof(*nh));
            t->nheld += n;
            p = (char *)(((uintptr_t)p + 7) & ~(uintptr_t)7);
            memcpy(p, refs, n * sizeof(*refs));
            a->refs = (const deed_ref_t *)p;
            a->nrefs = n;
            p += n * sizeof(*refs);
        }
    }
    free(refs);
    if (rowv != rows)
        free(rowv);
    return p;
}

static int on_task_push(struct rt *rt, uint32_t src, struct rbuf *r)
{
    uint64_t hi = rbuf_u64(r), lo = rbuf_u64(r);
    deed_task_id_t fid = rbuf_u64(r);
    uint32_t lease = rbuf_u32(r);
    uint32_t nrets = rbuf_u16(r), nargs = rbuf_u16(r);
    (void)lease; /* the lease the owner pushes under; tasks run whatever it says */
    if (r->err || nrets > 255)
        return -1;
    const struct registry_entry *e = registry_find(fid);
    if (e == NULL) {
        reply_error(rt, src, hi, lo, DEED_ERR_UNKNOWN_TASK,
                    "task pushed to a rank that has no such task registered");
        return 0;
    }
    /* first pass: sizes (and validation) */
    struct rbuf scan = *r;
    uint64_t payload = 0;
    for (uint32_t i = 0; i < nargs && !scan.err; i++) {
        uint8_t kind = rbuf_u8(&scan);
        uint32_t n;
        switch (kind) {
        case ARG_VALUE:
            rbuf_blob(&scan, &n, WIRE_MAX_MSG);
            payload += (n + 15) & ~15u;
            break;
        case ARG_INLINE:
        case ARG_LOCATED: {
            (void)rbuf_ref(&scan);
            if (kind == ARG_INLINE) {
                rbuf_blob(&scan, &n, WIRE_MAX_MSG);
                payload += (n + 15) & ~15u;
            } else {
                (void)rbuf_u64(&scan);
                uint32_t nl = rbuf_u16(&scan);
                if (nl == 0 || !rbuf_take(&scan, (size_t)nl * 24))
                    scan.err = 1;
            }
            uint32_t nr = rbuf_u32(&scan);
            if (nr > rbuf_left(&scan) / 25 || !rbuf_take(&scan, (size_t)nr * 25))
                scan.err = 1;
            payload += (uint64_t)nr * sizeof(deed_ref_t) + 8;
            break;
        }
        case ARG_FUTURE:
            (void)rbuf_ref(&scan);
            break;
        default:
            scan.err = 1;
        }
    }
    if (scan.err || rbuf_left(&scan) != 0) {
        log_warn("remote: task push from rank %u does not decode (%u args, %zu bytes left)",
                 src, nargs, rbuf_left(&scan));
        return -1;
    }
    struct task *t = task_new(nargs, nrets, payload);
    if (t == NULL) {
        reply_error(rt, src, hi, lo, DEED_ERR_NO_MEMORY, "executor out of memory");
        return 0;
    }
    t->rt = rt;
    t->id.hi = hi;
    t->id.lo = lo;
    t->fid = fid;
    t->fn = e->fn;
    t->remote = 1;
    t->placed = 1;
    t->owner_rank = src;
    t->exec_rank = rt->rank;
    char *p = task_payload(t);
    for (uint32_t i = 0; i < nargs; i++) {
        deed_arg_t *a = &t->uargs[i];
        struct task_dep *d = &t->deps[i];
        memset(a, 0, sizeof(*a));
        memset(d, 0, sizeof(*d));
        d->task = t;
        d->i = i;
        d->w.kind = W_TASKDEP;
        uint8_t kind = rbuf_u8(r);
        uint32_t n;
        const void *bytes;
        if (kind == ARG_VALUE || kind == ARG_INLINE) {
            a->kind = kind == ARG_VALUE ? DEED_ARG_VALUE : DEED_ARG_REF;
            if (kind == ARG_INLINE)
                a->ref = rbuf_ref(r);
            bytes = rbuf_blob(r, &n, WIRE_MAX_MSG);
            if (n) {
                memcpy(p, bytes, n);
                a->data = p;
                p += (n + 15) & ~15u;
            }
            a->size = n;
            if (kind == ARG_INLINE)
                p = push_arg_refs(rt, r, t, a, p);
            continue;
        }
        a->ref = rbuf_ref(r);
        a->kind = kind == ARG_FUTURE ? DEED_ARG_FUTURE : DEED_ARG_REF;
        struct obj *row = remote_borrow_row(rt, a->ref);
        if (kind == ARG_LOCATED) {
            uint64_t size = rbuf_u64(r);
            uint32_t nl = rbuf_u16(r);
            struct loc *locs = malloc(nl * sizeof(*locs));
            for (uint32_t j = 0; j < nl; j++) {
                struct loc tmp;
                if (rbuf_loc(rt, r, &tmp) != 0 && t->err == NULL)
                    t->err = err_new(DEED_ERR_INTERNAL, 0, "malformed location from rank %u",
                                     src);
                if (locs)
                    locs[j] = tmp;
            }
            if (row && locs && row->state == OBJ_PENDING && row->owner != rt->rank) {
                free(row->locs);
                row->locs = locs;
                row->nlocs = nl;
                locs = NULL;
                row->size = size;
                owner_set_value(rt, row, NULL, size, WHERE_REMOTE);
            }
            free(locs);
            p = push_arg_refs(rt, r, t, a, p);
        }
        if (row == NULL) {
            if (t->err == NULL)
                t->err = err_new(DEED_ERR_NO_MEMORY, 0, "executor cannot track argument %u", i);
            continue;
        }
        row->submitted++;
        d->row = row;
    }
    rt->st.remote_in++;
    rt->st.pending++; /* finished by remote_task_done */
    task_resolve_deps(rt, t);
    return 0;
}

/* The executor's borrow report for the refs a finished remote task was handed. */
static void write_borrow_report(struct rt *rt, struct wbuf *w, struct task *t, uint32_t dst)
{
    size_t count_at = w->len;
    uint32_t count = 0;
    wbuf_u32(w, 0);
    for (uint32_t i = 0; i < t->nargs; i++) {
        struct obj *row = t->deps[i].row;
        if (row == NULL)
            continue;
        int seen = 0;
        for (uint32_t j = 0; j < i; j++)
            if (t->deps[j].row == row)
                seen = 1;
        if (seen)
            continue;
        /* the caller itself as our new borrower (it received the ref inside one of our
         * returns) stays ours to report to the owner: we remain a borrower for it */
        int keeps_caller = 0;
        for (uint32_t k = 0; k < row->nranks; k++)
            keeps_caller |= row->ranks[k] == dst;
        int still = row->local_refs || row->submitted || row->contained || keeps_caller;
        wbuf_ref(w, row_ref(row));
        wbuf_u8(w, (uint8_t)still);
        wbuf_u16(w, (uint16_t)(row->nranks - (uint32_t)keeps_caller));
        for (uint32_t k = 0; k < row->nranks; k++)
            if (row->ranks[k] != dst)
                wbuf_u32(w, row->ranks[k]);
        row->nranks = 0; /* responsibility moved to the caller */
        if (keeps_caller)
            row->ranks[row->nranks++] = dst;
        if (still && row->owner != rt->rank && !row->owner_waits)
            row->expect_wait = 1;
        count++;
    }
    if (!w->oom)
        for (int k = 0; k < 4; k++)
            w->data[count_at + (size_t)k] = (uint8_t)(count >> (8 * k));
}

/* TASK_DONE, the common case of TASK_REPLY in fewer bytes and branches: the task succeeded,
 * every return is inline and holds no refs, and the task was handed no ref (so there is no
 * borrow report). Returns 0 when the task needs the full TASK_REPLY. */
static int reply_compact(struct rt *rt, struct task *t, uint32_t dst)
{
    if (t->err || t->nheld)
        return 0;
    for (uint32_t i = 0; i < t->nargs; i++)
        if (t->deps[i].row != NULL)
            return 0;
    for (uint32_t i = 0; i < t->nrets; i++)
        if (t->rets[i].where == WHERE_STORE || t->rets[i].nrefs != 0)
            return 0;
    struct wbuf *w = net_msg(rt, dst, WT_TASK_DONE);
    uint8_t *q = wbuf_reserve(w, 18);
    if (q) {
        wire_put64(q, t->id.hi);
        wire_put64(q + 8, t->id.lo);
        wire_put16(q + 16, (uint16_t)t->nrets);
    }
    for (uint32_t i = 0; i < t->nrets; i++) {
        struct task_ret *ret = &t->rets[i];
        wbuf_blob(w, ret->data, (uint32_t)ret->size);
        value_free(rt, ret->data, ret->size, ret->where);
        ret->data = NULL;
        ret->where = WHERE_NONE;
    }
    net_msg_end(rt, dst);
    return 1;
}

void remote_task_done(struct rt *rt, struct task *t)
{
    uint32_t dst = t->owner_rank;
    /* the task no longer holds its arguments */
    for (uint32_t i = 0; i < t->nheld; i++)
        t->held[i]->submitted--;
    for (uint32_t i = 0; i < t->nargs; i++) {
        struct task_dep *d = &t->deps[i];
        if (d->row == NULL)
            continue;
        if (d->linked) {
            wlist_del(&d->row->waiters, &d->w);
            d->linked = 0;
        }
        d->row->submitted--;
    }
    if (reply_compact(rt, t, dst))
        goto sent;
    struct wbuf *w = net_msg(rt, dst, WT_TASK_REPLY);
    wbuf_u64(w, t->id.hi);
    wbuf_u64(w, t->id.lo);
    if (t->err) {
        wbuf_u32(w, (uint32_t)t->err->status);
        wbuf_u32(w, (uint32_t)t->err->user_code);
        wbuf_blob(w, t->err->msg, (uint32_t)strlen(t->err->msg));
        wbuf_u16(w, 0);
        task_drop_returns(rt, t, 1);
    } else {
        wbuf_u32(w, 0);
        wbuf_u32(w, 0);
        wbuf_blob(w, NULL, 0);
        wbuf_u16(w, (uint16_t)t->nrets);
        for (uint32_t i = 0; i < t->nrets; i++) {
            struct task_ret *ret = &t->rets[i];
            struct loc l;
            if (ret->where == WHERE_STORE && store_where(rt, ret->data, ret->size, &l) == 0) {
                /* large return: stays here as the primary copy, pinned for the owner */
                deed_ref_t rref = {t->id.hi, t->id.lo, i, dst};
                struct obj *copy = remote_borrow_row(rt, rref);
                if (copy && row_has_bytes(copy) && copy->where == WHERE_STORE &&
                    store_where(rt, copy->data, copy->size, &l) == 0) {
                    /* this rank already holds it (an earlier run or a pull): keep that one */
                    value_free(rt, ret->data, ret->size, ret->where);
                    copy->copy_pinned = 1;
                    wbuf_u8(w, RET_LOCATED);
                    wbuf_u64(w, copy->size);
                    wbuf_loc(w, &l);
                    memset(ret, 0, sizeof(*ret));
                    continue;
                }
                if (copy && copy->state != OBJ_ERROR && !copy->pulling) {
                    copy->copy_pinned = 1;
                    if (copy->where == WHERE_REMOTE) { /* known elsewhere: now here too */
                        copy->state = OBJ_PENDING;
                    }
                    owner_set_value(rt, copy, ret->data, ret->size, WHERE_STORE);
                    wbuf_u8(w, RET_LOCATED);
                    wbuf_u64(w, ret->size);
                    wbuf_loc(w, &l);
                    memset(ret, 0, sizeof(*ret));
                    continue;
                }
            }
            wbuf_u8(w, RET_INLINE);
            wbuf_blob(w, ret->data, (uint32_t)ret->size);
            value_free(rt, ret->data, ret->size, ret->where);
            ret->data = NULL;
            ret->where = WHERE_NONE;
        }
    }
    /* refs inside the returns: the owner of the returns now holds them (registered before
     * the body's own holds are dropped below) */
    for (uint32_t i = 0; i < t->nrets; i++)
        if (!t->err)
            write_refs_to(rt, w, t->rets[i].refs, t->rets[i].nrefs, dst);
    for (uint32_t i = 0; i < t->nrets; i++) {
        struct task_ret *ret = &t->rets[i];
        for (uint32_t j = 0; j < ret->nrefs; j++) {
            struct obj *o = owner_find(rt, ret->refs[j]);
            if (o && o->local_refs)
                o->local_refs--; /* the HOLD taken when the body set the return */
        }
    }
    write_borrow_report(rt, w, t, dst);
    net_msg_end(rt, dst);
sent:
    for (uint32_t i = 0; i < t->nrets; i++) {
        struct task_ret *ret = &t->rets[i];
        for (uint32_t j = 0; j < ret->nrefs; j++) {
            struct obj *o = owner_find(rt, ret->refs[j]);
            if (o)
                owner_maybe_free(rt, o);
        }
        free(ret->refs);
        memset(ret, 0, sizeof(*ret));
    }
    for (uint32_t i = 0; i < t->nheld; i++)
        owner_maybe_free(rt, t->held[i]);
    for (uint32_t i = 0; i < t->nargs; i++)
        if (t->deps[i].row)
            owner_maybe_free(rt, t->deps[i].row);
    err_unref(t->err);
    t->err = NULL;
    rt->st.pending--;
    if (rt->quiesce && rt->st.pending == 0) {
        struct req *q = rt->quiesce;
        rt->quiesce = NULL;
        completion_signal(&q->done);
    }
    if (t->queued)
        task_unref(t);
    else
        task_free(t);
}

/* ---- owner side: replies ------------------------------------------------------------------- */

static void merge_borrowers(struct rt *rt, struct obj *row, uint32_t b)
{
    if (b == rt->rank)
        return;
    if (row->owner == rt->rank)
        add_borrower(rt, row, b);
    else if (add_rank(&row->ranks, &row->nranks, b) < 0)
        log_error("remote: out of memory recording a borrower");
}

/* The pending task a reply from src is about, taken out of the pending table; NULL (and
 * the task left pending: the real reply may still come) when it is unknown, went to another
 * rank, or (nrets_matter) the reply's return count is wrong. */
static struct task *reply_match(struct rt *rt, uint32_t src, uint64_t hi, uint64_t lo,
                                uint32_t nrets, int nrets_matter)
{
    struct task *t = pending_take(rt, hi, lo);
    if (t == NULL) {
        log_warn("remote: reply from rank %u for an unknown task", src);
        return NULL;
    }
    if (t->exec_rank != src || (nrets_matter && nrets != t->nrets)) {
        uint32_t b = pending_bucket(t->id);
        t->hnext = rt->remote->pending[b];
        rt->remote->pending[b] = t;
        return NULL;
    }
    rt->remote->inflight[src]--;
    return t;
}

/* An inline return's bytes (len u32 + bytes) into ret; -1 when the reply is malformed or
 * the owner has no memory (t->err set). */
static int reply_inline_ret(struct task *t, struct task_ret *ret, struct rbuf *r)
{
    uint32_t n;
    const void *bytes = rbuf_blob(r, &n, WIRE_MAX_MSG);
    if (r->err)
        return -1;
    if (n) {
        if ((ret->data = value_inline_alloc(n)) == NULL) {
            t->err = err_new(DEED_ERR_NO_MEMORY, 0, "owner out of memory");
            return -1;
        }
        memcpy(ret->data, bytes, n);
        ret->where = WHERE_INLINE;
    }
    ret->size = n;
    return 0;
}

/* The end of both reply forms: a failed task's returns become its error, the lease gets
 * its room back, the task finishes. */
static int reply_finish(struct rt *rt, struct task *t, struct rbuf *r)
{
    if (t->err)
        task_drop_returns(rt, t, 1);
    lease_task_done(rt, t);
    task_finish(rt, t);
    return r->err ? -1 : 0;
}

static int on_task_reply(struct rt *rt, uint32_t src, struct rbuf *r)
{
    uint64_t hi = rbuf_u64(r), lo = rbuf_u64(r);
    int status = (int)rbuf_u32(r);
    int user_code = (int)rbuf_u32(r);
    uint32_t mlen;
    const char *msg = rbuf_blob(r, &mlen, 4096);
    uint32_t nrets = rbuf_u16(r);
    if (r->err)
        return -1;
    struct task *t = reply_match(rt, src, hi, lo, nrets, status == 0);
    if (t == NULL)
        return -1;
    if (status != 0)
        t->err = err_new(status, user_code, "%.*s", (int)mlen, msg ? msg : "");
    for (uint32_t i = 0; status == 0 && i < nrets; i++) {
        struct task_ret *ret = &t->rets[i];
        uint8_t kind = rbuf_u8(r);
        if (kind == RET_INLINE) {
            if (reply_inline_ret(t, ret, r) != 0 && t->err)
                break;
        } else if (kind == RET_LOCATED) {
            ret->size = rbuf_u64(r);
            if (rbuf_loc(rt, r, &ret->loc) != 0 || ret->loc.rank != src)
                r->err = 1;
            ret->where = WHERE_REMOTE;
        } else {
            r->err = 1;
        }
        if (r->err) {
            if (t->err == NULL)
                t->err = err_new(DEED_ERR_INTERNAL, 0, "malformed reply from rank %u", src);
            break;
        }
    }
    for (uint32_t i = 0; status == 0 && !r->err && i < nrets; i++) {
        struct task_ret *ret = &t->rets[i];
        ret->refs = read_refs_from(rt, r, &ret->nrefs, 1, NULL);
        ret->refs_counted = 1;
    }
    if (r->err || t->err) {
        for (uint32_t i = 0; i < t->nrets; i++) {
            struct task_ret *ret = &t->rets[i];
            if (ret->refs_counted)
                remote_drop_contained(rt, ret->refs, ret->nrefs);
            free(ret->refs);
            ret->refs = NULL;
            ret->nrefs = 0;
            ret->refs_counted = 0;
        }
        if (t->err == NULL)
            t->err = err_new(DEED_ERR_INTERNAL, 0, "malformed reply from rank %u", src);
    }
    uint32_t nrep = r->err ? 0 : rbuf_u32(r);
    for (uint32_t i = 0; i < nrep && !r->err; i++) {
        deed_ref_t ref = rbuf_ref(r);
        uint8_t still = rbuf_u8(r);
        uint32_t nb = rbuf_u16(r);
        struct obj *row = owner_find(rt, ref);
        if (row && still)
            merge_borrowers(rt, row, src);
        for (uint32_t k = 0; k < nb && !r->err; k++) {
            uint32_t b = rbuf_u32(r);
            if (row && b < rt->nranks)
                merge_borrowers(rt, row, b);
        }
    }
    return reply_finish(rt, t, r);
}

/* TASK_DONE: id | nrets u16 | (len u32 | bytes) * nrets — a TASK_REPLY with status 0,
 * inline returns without refs and an empty borrow report. */
static int on_task_done(struct rt *rt, uint32_t src, struct rbuf *r)
{
    uint64_t hi = rbuf_u64(r), lo = rbuf_u64(r);
    uint32_t nrets = rbuf_u16(r);
    if (r->err)
        return -1;
    struct task *t = reply_match(rt, src, hi, lo, nrets, 1);
    if (t == NULL)
        return -1;
    for (uint32_t i = 0; i < nrets; i++) {
        t->rets[i].refs_counted = 1; /* no refs inside: nothing to count */
        if (reply_inline_ret(t, &t->rets[i], r) != 0)
            break;
    }
    if (r->err && t->err == NULL)
        t->err = err_new(DEED_ERR_INTERNAL, 0, "malformed reply from rank %u", src);
    return reply_finish(rt, t, r);
}

/* ---- locate, pull, copies ------------------------------------------------------------------ */

static void send_locate_reply(struct rt *rt, uint32_t dst, struct obj *o)
{
    struct wbuf *w = net_msg(rt, dst, WT_LOCATE_REPLY);
    wbuf_ref(w, row_ref(o));
    if (o->state == OBJ_ERROR) {
        wbuf_u8(w, LOC_ERROR);
        wbuf_u32(w, (uint32_t)o->err->status);
        wbuf_u32(w, (uint32_t)o->err->user_code);
        wbuf_blob(w, o->err->msg, (uint32_t)strlen(o->err->msg));
    } else if (o->where == WHERE_INLINE || o->where == WHERE_NONE) {
        wbuf_u8(w, LOC_INLINE);
        wbuf_blob(w, o->data, (uint32_t)o->size);
        write_refs_to(rt, w, o->refs, o->nrefs, dst);
    } else {
        struct loc mine;
        int have = o->where == WHERE_STORE && store_where(rt, o->data, o->size, &mine) == 0;
        wbuf_u8(w, LOC_LOCATED);
        wbuf_u64(w, o->size);
        wbuf_u16(w, (uint16_t)(o->nlocs + (have ? 1 : 0)));
        if (have)
            wbuf_loc(w, &mine);
        for (uint32_t j = 0; j < o->nlocs; j++)
            wbuf_loc(w, &o->locs[j]);
        write_refs_to(rt, w, o->refs, o->nrefs, dst);
    }
    net_msg_end(rt, dst);
}

void remote_locate_fire(struct rt *rt, struct waiter *w, struct obj *o)
{
    struct rwaiter *rw = (struct rwaiter *)w;
    send_locate_reply(rt, rw->rank, o);
    free(rw);
}

static int on_locate(struct rt *rt, uint32_t src, struct rbuf *r)
{
    deed_ref_t ref = rbuf_ref(r);
    if (r->err)
        return -1;
    struct obj *o = owner_find(rt, ref);
    if (o == NULL || o->owner != rt->rank) {
        struct wbuf *w = net_msg(rt, src, WT_LOCATE_REPLY);
        static const char m[] = "the owner no longer has this object (released)";
        wbuf_ref(w, ref);
        wbuf_u8(w, LOC_ERROR);
        wbuf_u32(w, (uint32_t)DEED_ERR_OBJECT_LOST);
        wbuf_u32(w, 0);
        wbuf_blob(w, m, sizeof(m) - 1);
        net_msg_end(rt, src);
        return 0;
    }
    if (row_lost(o, rt->rank))
        owner_reconstruct(rt, o, UINT32_MAX);
    if (o->state == OBJ_PENDING) {
        struct rwaiter *rw = calloc(1, sizeof(*rw));
        if (rw == NULL)
            return -1;
        rw->w.kind = W_REMOTE;
        rw->rank = src;
        wlist_add(&o->waiters, &rw->w);
        return 0;
    }
    send_locate_reply(rt, src, o);
    return 0;
}

static int on_locate_reply(struct rt *rt, uint32_t src, struct rbuf *r)
{
    deed_ref_t ref = rbuf_ref(r);
    uint8_t kind = rbuf_u8(r);
    if (r->err || ref.owner != src)
        return -1;
    struct obj *o = owner_find(rt, ref);
    if (o == NULL || o->owner == rt->rank)
        return 0; /* released meanwhile */
    o->locating = 0;
    if (o->state != OBJ_PENDING) {
        /* known meanwhile (e.g. produced here, or a pushed task brought its location):
         * nothing to learn (remote_fetch pulled it as soon as it was known) */
        owner_maybe_free(rt, o);
        return 0;
    }
    if (kind == LOC_INLINE) {
        uint32_t n;
        const void *bytes = rbuf_blob(r, &n, WIRE_MAX_MSG);
        if (r->err)
            return -1;
        void *data = NULL;
        if (n && (data = value_inline_alloc(n)) == NULL) {
            owner_set_error(rt, o, err_new(DEED_ERR_NO_MEMORY, 0, "out of memory"));
        } else {
            if (n)
                memcpy(data, bytes, n);
            o->refs = read_refs_from(rt, r, &o->nrefs, 1, NULL);
            if (r->err) {
                value_free(rt, data, n, WHERE_INLINE);
                return -1;
            }
            owner_set_value(rt, o, data, n, n ? WHERE_INLINE : WHERE_NONE);
        }
    } else if (kind == LOC_LOCATED) {
        uint64_t size = rbuf_u64(r);
        uint32_t nl = rbuf_u16(r);
        struct loc *locs = calloc(nl ? nl : 1, sizeof(*locs));
        for (uint32_t j = 0; j < nl && locs; j++)
            if (rbuf_loc(rt, r, &locs[j]) != 0)
                break;
        if (r->err || locs == NULL || nl == 0) {
            free(locs);
            return -1;
        }
        o->refs = read_refs_from(rt, r, &o->nrefs, 1, NULL);
        if (r->err) {
            free(locs);
            return -1;
        }
        free(o->locs);
        o->locs = locs;
        o->nlocs = nl;
        owner_set_value(rt, o, NULL, size, WHERE_REMOTE);
    } else if (kind == LOC_ERROR) {
        int status = (int)rbuf_u32(r), code = (int)rbuf_u32(r);
        uint32_t n;
        const char *m = rbuf_blob(r, &n, 4096);
        if (r->err)
            return -1;
        owner_set_error(rt, o, err_new(status, code, "%.*s", (int)n, m ? m : ""));
    } else {
        return -1;
    }
    owner_maybe_free(rt, o);
    return 0;
}

static void issued_unlink(struct rt *rt, struct pull *p);
static void pull_done(void *arg, int status);

/* A copy of o was on a dead rank. If another copy is known, pull that one; a borrower asks
 * the owner again (it may know other copies); an owner with no copy left has lost it. */
static void object_lost_or_refetch(struct rt *rt, struct obj *o, uint32_t dead)
{
    if (o->state != OBJ_READY || o->where != WHERE_REMOTE)
        return;
    if (o->nlocs > 0) {
        if (o->waiters.head)
            remote_fetch(rt, o);
        return;
    }
    if (o->owner != rt->rank) {
        o->state = OBJ_PENDING; /* ask the owner again when someone needs it */
        if (o->waiters.head)
            remote_fetch(rt, o);
        return;
    }
    /* owned, no copy left: re-create it now if someone waits, else when next needed */
    if (o->waiters.head)
        owner_reconstruct(rt, o, dead);
}

void member_apply(struct rt *rt, uint32_t d)
{
    struct remote *re = rt->remote;
    rt->peers[d].dead = 1; /* fencing: nothing from d is heard any more */
    if (rt->member)
        member_mark_dead(rt, d);
    /* 1. tasks that were running on d: re-submit (same ids) or fail */
    struct task *lost = NULL;
    for (int b = 0; b < PENDING_BUCKETS; b++) {
        struct task **pp = &re->pending[b];
        while (*pp) {
            struct task *t = *pp;
            if (t->exec_rank == d) {
                *pp = t->hnext;
                t->hnext = lost;
                lost = t;
            } else {
                pp = &t->hnext;
            }
        }
    }
    lease_on_death(rt, d);
    /* gets in flight from d: UCX never completes one whose shared-memory peer died */
    for (struct pull *p = re->issued, *pn; p; p = pn) {
        pn = p->inext;
        if (p->src.rank != d)
            continue;
        issued_unlink(rt, p);
        p->abandoned = 1; /* its block stays allocated: a late completion frees it */
        p->row->pulling = 0;
        log_debug("pull abandoned: " OBJ_FMT " from dead rank %u", OBJ_ARGS(p->row), d);
    }
    /* pulls waiting for an rkey from d */
    for (int s = 0; s < MAX_SEGS; s++) {
        struct pull *w;
        while ((w = re->segs[d][s].waiting) != NULL) {
            re->segs[d][s].waiting = w->next;
            pull_done(w, DEED_ERR_TRANSPORT);
        }
    }
    while (lost) {
        struct task *t = lost;
        lost = t->hnext;
        re->inflight[d]--;
        t->lease = NULL;
        int32_t limit = t->max_retries < 0 ? rt->default_retries : t->max_retries;
        const char *name = deed_task_name(t->fid);
        if (t->retries_used < limit) {
            t->retries_used++;
            rt->st.retries++;
            log_info("task '%s' was running on rank %u, which died: re-submitting (retry %d "
                     "of %d)",
                     name ? name : "?", d, t->retries_used, limit);
            task_retry(rt, t);
        } else {
            t->err = err_new(DEED_ERR_OBJECT_LOST, 0,
                             "task '%s' lost: rank %u died while running it (%d retries "
                             "allowed)",
                             name ? name : "?", d, limit);
            task_finish(rt, t);
        }
    }
    /* 2. rows: refs owned by d fail, copies on d go, d stops being a borrower */
    uint64_t n = rt->objs.count, k = 0, i = 0;
    struct obj **all = malloc((n + 1) * sizeof(*all)), *o;
    if (all == NULL) {
        log_error("member: out of memory repairing after rank %u died", d);
        return;
    }
    while ((o = objtab_next(&rt->objs, &i)) != NULL && k < n)
        all[k++] = o;
    for (uint64_t j = 0; j < k; j++) {
        o = all[j];
        del_rank(o->ranks, &o->nranks, d);
        if (o->owner == d) {
            o->copy_pinned = 0;
            o->owner_waits = 0;
            o->expect_wait = 0;
            o->locating = 0;
            if (o->state != OBJ_ERROR) {
                value_free(rt, o->data, o->size, o->where);
                if (o->where == WHERE_INLINE) {
                    rt->st.inline_objs--;
                    rt->st.inline_bytes -= o->size;
                } else if (o->where == WHERE_STORE) {
                    rt->st.store_objs--;
                }
                o->data = NULL;
                o->where = WHERE_NONE;
                owner_set_error(rt, o, err_new(DEED_ERR_OWNER_DIED, 0,
                                               "the owner of this object, rank %u, died", d));
            }
        } else {
            uint32_t m = 0, had = o->nlocs;
            for (uint32_t x = 0; x < o->nlocs; x++)
                if (o->locs[x].rank != d)
                    o->locs[m++] = o->locs[x];
            o->nlocs = m;
            if (m < had && !o->pulling)
                object_lost_or_refetch(rt, o, d);
        }
    }
    for (uint64_t j = 0; j < k; j++)
        if (objtab_find(&rt->objs, all[j]->id.hi, all[j]->id.lo, all[j]->id.index) == all[j])
            owner_maybe_free(rt, all[j]);
    free(all);
}

static void issued_unlink(struct rt *rt, struct pull *p)
{
    if (p->iprev)
        p->iprev->inext = p->inext;
    else if (rt->remote->issued == p)
        rt->remote->issued = p->inext;
    if (p->inext)
        p->inext->iprev = p->iprev;
    p->iprev = p->inext = NULL;
}

static void pull_done(void *arg, int status)
{
    struct pull *p = arg;
    struct rt *rt = p->rt;
    log_debug("pull done: " OBJ_FMT " from rank %u: status %d%s", OBJ_ARGS(p->row), p->src.rank,
              status, p->abandoned ? " (abandoned)" : "");
    if (p->abandoned) {
        /* its source died and the row moved on; the transport finished late: the block
         * is no longer written to */
        store_free(rt->store, p->dst.addr);
        free(p);
        return;
    }
    issued_unlink(rt, p);
    struct obj *o = p->row;
    o->pulling = 0;
    if (status != 0) {
        store_free(rt->store, p->dst.addr);
        if (status == DEED_ERR_TRANSPORT || member_is_dead(rt, p->src.rank) ||
            rt->peers[p->src.rank].dead) {
            /* the holder is unreachable (a purge may come before its death is declared):
             * report it, and read another copy or ask the owner */
            member_suspect_async(rt, p->src.rank);
            /* the copy's holder died: try another copy, or ask the owner again */
            uint32_t k = 0;
            for (uint32_t j = 0; j < o->nlocs; j++)
                if (o->locs[j].rank != p->src.rank)
                    o->locs[k++] = o->locs[j];
            o->nlocs = k;
            uint32_t dead = p->src.rank;
            free(p);
            object_lost_or_refetch(rt, o, dead);
            owner_maybe_free(rt, o);
            return;
        }
        owner_set_error(rt, o, err_new(DEED_ERR_TRANSPORT, 0,
                                       "pulling %llu bytes from rank %u failed: %s",
                                       (unsigned long long)p->src.len, p->src.rank,
                                       deed_strerror(status)));
    } else {
        rt->st.pulls++;
        rt->st.pull_bytes += p->src.len;
        o->data = p->dst.addr;
        o->where = WHERE_STORE;
        rt->st.store_objs++;
        if (o->owner != rt->rank) {
            struct loc mine;
            if (store_where(rt, o->data, o->size, &mine) == 0) {
                struct wbuf *w = net_msg(rt, o->owner, WT_COPY_ADDED);
                wbuf_ref(w, row_ref(o));
                wbuf_loc(w, &mine);
                net_msg_end(rt, o->owner);
                o->copy_pinned = 1;
            }
        }
        owner_wake(rt, o);
    }
    free(p);
    owner_maybe_free(rt, o);
}

static void pull_issue(struct rt *rt, struct pull *p)
{
    struct seginfo *si = &rt->remote->segs[p->src.rank][p->src.segment];
    if (si->state != 2) {
        p->next = si->waiting;
        si->waiting = p;
        if (si->state == 0) {
            si->state = 1;
            struct wbuf *w = net_msg(rt, p->src.rank, WT_RKEY_REQ);
            wbuf_u32(w, p->src.segment);
            net_msg_end(rt, p->src.rank);
        }
        return;
    }
    if (p->src.offset + p->src.len > si->len) {
        pull_done(p, DEED_ERR_INVALID_ARG);
        return;
    }
    void *base;
    uint64_t slen;
    struct tp_mem *mem;
    if (rt->peers[p->src.rank].dead) {
        pull_done(p, DEED_ERR_TRANSPORT);
        return;
    }
    store_segment(rt->store, p->dst.segment, &base, &slen, &mem);
    p->inext = rt->remote->issued;
    if (p->inext)
        p->inext->iprev = p;
    rt->remote->issued = p;
    int rc = rt->tp_ops->get(rt->tp, p->src.rank, p->dst.addr, mem, si->base + p->src.offset,
                             si->rkey, si->rkey_len, p->src.len, pull_done, p);
    if (rc != DEED_OK)
        pull_done(p, rc);
}

static void pull_start(struct rt *rt, struct obj *o)
{
    struct loc *src = NULL;
    for (uint32_t i = 0; i < o->nlocs; i++)
        if (o->locs[i].rank != rt->rank && !rt->peers[o->locs[i].rank].dead) {
            src = &o->locs[i];
            break;
        }
    log_debug("pull start: " OBJ_FMT " (%llu bytes) from %s%u", OBJ_ARGS(o),
              (unsigned long long)o->size, src ? "rank " : "no copy, nlocs ",
              src ? src->rank : o->nlocs);
    if (src == NULL) {
        if (o->owner == rt->rank) {
            owner_reconstruct(rt, o, UINT32_MAX);
        } else {
            o->state = OBJ_PENDING; /* ask the owner, who may re-create it */
            remote_fetch(rt, o);
        }
        return;
    }
    struct pull *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        owner_set_error(rt, o, err_new(DEED_ERR_NO_MEMORY, 0, "out of memory"));
        return;
    }
    p->rt = rt;
    p->row = o;
    p->src = *src;
    p->src.len = o->size;
    o->pulling = 1;
    if (store_alloc(rt->store, o->size, &p->dst) != DEED_OK) {
        p->next = rt->remote->retry; /* wait for store space; retried every loop pass */
        rt->remote->retry = p;
        return;
    }
    pull_issue(rt, p);
}

void remote_fetch(struct rt *rt, struct obj *o)
{
    if (rt->nranks == 1 || row_has_bytes(o))
        return;
    /* An outstanding LOCATE only matters while the row is pending: a row that became known
     * meanwhile (a pushed task brought its location) is pulled now. (Skipping it until the
     * LOCATE answer came made a get and a task wait forever: the answer found the row known
     * and had nothing to do; BUGS-multirank.md #6.) */
    if (o->pulling || (o->locating && o->state == OBJ_PENDING)) {
        log_debug("fetch: " OBJ_FMT " already %s", OBJ_ARGS(o),
                  o->pulling ? "being pulled" : "located");
        return;
    }
    if (o->state == OBJ_READY && o->where == WHERE_REMOTE) {
        pull_start(rt, o);
    } else if (o->owner != rt->rank && o->state == OBJ_PENDING) {
        o->locating = 1;
        struct wbuf *w = net_msg(rt, o->owner, WT_LOCATE);
        wbuf_ref(w, row_ref(o));
        net_msg_end(rt, o->owner);
    }
}

void remote_poll(struct rt *rt)
{
    if (rt->remote == NULL || rt->remote->retry == NULL)
        return;
    struct pull *list = rt->remote->retry, *p;
    rt->remote->retry = NULL;
    while ((p = list) != NULL) {
        list = p->next;
        if (store_alloc(rt->store, p->row->size, &p->dst) != DEED_OK) {
            p->next = rt->remote->retry;
            rt->remote->retry = p;
        } else {
            pull_issue(rt, p);
        }
    }
}

static int on_rkey_req(struct rt *rt, uint32_t src, struct rbuf *r)
{
    uint32_t seg = rbuf_u32(r);
    if (r->err || seg >= MAX_SEGS || seg >= store_nsegments(rt->store))
        return -1;
    struct remote *re = rt->remote;
    void *base;
    uint64_t len;
    struct tp_mem *mem;
    store_segment(rt->store, seg, &base, &len, &mem);
    if (re->my_rkey[seg] == NULL &&
        rt->tp_ops->rkey_pack(rt->tp, mem, &re->my_rkey[seg], &re->my_rkey_len[seg]) != DEED_OK) {
        log_error("remote: cannot pack the rkey of store segment %u", seg);
        re->my_rkey[seg] = NULL;
        return 0;
    }
    struct wbuf *w = net_msg(rt, src, WT_RKEY_REPLY);
    wbuf_u32(w, seg);
    wbuf_u64(w, (uint64_t)(uintptr_t)base);
    wbuf_u64(w, len);
    wbuf_blob(w, re->my_rkey[seg], (uint32_t)re->my_rkey_len[seg]);
    net_msg_end(rt, src);
    return 0;
}

static int on_rkey_reply(struct rt *rt, uint32_t src, struct rbuf *r)
{
    uint32_t seg = rbuf_u32(r);
    uint64_t base = rbuf_u64(r), len = rbuf_u64(r);
    uint32_t n;
    const void *blob = rbuf_blob(r, &n, 1 << 16);
    if (r->err || seg >= MAX_SEGS || n == 0)
        return -1;
    struct seginfo *si = &rt->remote->segs[src][seg];
    if (si->state == 2)
        return 0;
    si->rkey = malloc(n);
    if (si->rkey == NULL)
        return -1;
    memcpy(si->rkey, blob, n);
    si->rkey_len = n;
    si->base = base;
    si->len = len;
    si->state = 2;
    struct pull *p;
    while ((p = si->waiting) != NULL) {
        si->waiting = p->next;
        pull_issue(rt, p);
    }
    return 0;
}

static int on_copy_added(struct rt *rt, uint32_t src, struct rbuf *r)
{
    deed_ref_t ref = rbuf_ref(r);
    struct loc l;
    if (rbuf_loc(rt, r, &l) != 0 || l.rank != src)
        return -1;
    struct obj *o = owner_find(rt, ref);
    if (o == NULL || o->owner != rt->rank) {
        /* freed meanwhile: the copy must go */
        struct wbuf *w = net_msg(rt, src, WT_COPY_FREE);
        wbuf_ref(w, ref);
        net_msg_end(rt, src);
        return 0;
    }
    struct loc *nl = realloc(o->locs, (o->nlocs + 1) * sizeof(*nl));
    if (nl == NULL)
        return -1;
    nl[o->nlocs++] = l;
    o->locs = nl;
    return 0;
}

static int on_copy_free(struct rt *rt, uint32_t src, struct rbuf *r)
{
    deed_ref_t ref = rbuf_ref(r);
    if (r->err || ref.owner != src)
        return -1;
    struct obj *o = owner_find(rt, ref);
    if (o == NULL)
        return 0;
    o->copy_pinned = 0;
    owner_maybe_free(rt, o);
    return 0;
}

/* ---- borrowers --------------------------------------------------------------------------- */

static void send_borrow_done(struct rt *rt, struct obj *o)
{
    struct wbuf *w = net_msg(rt, o->owner, WT_BORROW_DONE);
    wbuf_ref(w, row_ref(o));
    wbuf_u16(w, (uint16_t)o->nranks);
    for (uint32_t i = 0; i < o->nranks; i++)
        wbuf_u32(w, o->ranks[i]);
    net_msg_end(rt, o->owner);
    o->nranks = 0;
    o->owner_waits = 0;
}

static int on_borrow_wait(struct rt *rt, uint32_t src, struct rbuf *r)
{
    deed_ref_t ref = rbuf_ref(r);
    if (r->err || ref.owner != src)
        return -1;
    struct obj *o = owner_find(rt, ref);
    if (o == NULL) {
        struct wbuf *w = net_msg(rt, src, WT_BORROW_DONE);
        wbuf_ref(w, ref);
        wbuf_u16(w, 0);
        net_msg_end(rt, src);
        return 0;
    }
    o->expect_wait = 0;
    o->owner_waits = 1;
    owner_maybe_free(rt, o); /* answers at once if nothing here holds it any more */
    return 0;
}

static int on_borrow_done(struct rt *rt, uint32_t src, struct rbuf *r)
{
    deed_ref_t ref = rbuf_ref(r);
    uint32_t nb = rbuf_u16(r);
    if (r->err || ref.owner != rt->rank)
        return -1;
    struct obj *o = owner_find(rt, ref);
    for (uint32_t i = 0; i < nb; i++) {
        uint32_t b = rbuf_u32(r);
        if (r->err)
            return -1;
        if (o && b < rt->nranks && b != src)
            add_borrower(rt, o, b); /* subscribe before the reporter is dropped */
    }
    if (o == NULL)
        return 0;
    del_rank(o->ranks, &o->nranks, src);
    owner_maybe_free(rt, o);
    return 0;
}

int remote_row_hold(struct rt *rt, struct obj *o)
{
    if (o->owner == rt->rank)
        return o->nranks > 0 || o->pulling;
    if (o->owner_waits)
        send_borrow_done(rt, o);
    return o->expect_wait || o->copy_pinned || o->pulling || o->locating || o->nranks > 0;
}

void remote_row_freed(struct rt *rt, struct obj *o)
{
    if (o->owner == rt->rank) {
        for (uint32_t i = 0; i < o->nlocs; i++) {
            uint32_t holder = o->locs[i].rank;
            int dup = 0;
            for (uint32_t j = 0; j < i; j++)
                dup |= o->locs[j].rank == holder;
            if (holder == rt->rank || dup || rt->peers[holder].dead)
                continue;
            struct wbuf *w = net_msg(rt, holder, WT_COPY_FREE);
            wbuf_ref(w, row_ref(o));
            net_msg_end(rt, holder);
        }
    }
    free(o->locs);
    free(o->ranks);
    o->locs = NULL;
    o->ranks = NULL;
    o->nlocs = o->nranks = 0;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

int remote_dispatch(struct rt *rt, uint32_t src, uint16_t type, struct rbuf *body)
{
    int rc;
    switch (type) {
    case WT_TASK_PUSH: rc = on_task_push(rt, src, body); break;
    case WT_TASK_REPLY: rc = on_task_reply(rt, src, body); break;
    case WT_TASK_DONE: rc = on_task_done(rt, src, body); break;
    case WT_LOCATE: rc = on_locate(rt, src, body); break;
    case WT_LOCATE_REPLY: rc = on_locate_reply(rt, src, body); break;
    case WT_COPY_ADDED: rc = on_copy_added(rt, src, body); break;
    case WT_COPY_FREE: rc = on_copy_free(rt, src, body); break;
    case WT_BORROW_WAIT: rc = on_borrow_wait(rt, src, body); break;
    case WT_BORROW_DONE: rc = on_borrow_done(rt, src, body); break;
    case WT_RKEY_REQ: rc = on_rkey_req(rt, src, body); break;
    case WT_RKEY_REPLY: rc = on_rkey_reply(rt, src, body); break;
    case WT_LEASE_REQ:
    case WT_LEASE_GRANT:
    case WT_LEASE_SPILL:
    case WT_LEASE_RETURN: rc = lease_dispatch_msg(rt, src, type, body); break;
    case WT_MEMBER_SUSPECT:
    case WT_MEMBER_DEAD:
    case WT_HEARTBEAT:
    case WT_FIN_ENTER:
    case WT_FIN_GO: rc = member_dispatch(rt, src, type, body); break;
    default: rc = -1;
    }
    return rc;
}
