/*
 * owner.c — the ownership table (design §4): one row per object this rank owns, with its
 * counts, value, contained refs, error and waiters. Loop thread only.
 *
 * A row's value is freed the moment nothing can reach it: no local ref, no pending task
 * argument, no outer object, no view, no waiter, and its creating task has finished.
 * Freeing cascades to the refs the object contains (iteratively, through rt->freelist, so a
 * long chain of nested objects cannot overflow the stack).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#include "log.h"
#include "rt.h"
#include "slab.h"

struct err *err_new(int status, int user_code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if (n >= (int)sizeof(buf))
        n = sizeof(buf) - 1;
    struct err *e = malloc(sizeof(*e) + (size_t)n + 1);
    if (e == NULL)
        return NULL;
    e->refs = 1;
    e->status = status;
    e->user_code = user_code;
    memcpy(e->msg, buf, (size_t)n + 1);
    return e;
}

void err_unref(struct err *e)
{
    if (e && --e->refs == 0)
        free(e);
}

/* Stamps waiters linked while a wake runs on this thread, so the wake does not pick up a
 * waiter that re-linked itself (a task that now needs the bytes pulled). Every wake gets a
 * stamp never used before in the process: this thread's number (taken once) in the high
 * bits, its own wake count below, so no wake pays for a shared atomic; 0 = linked outside
 * any wake. (The stamp used to be this thread's counter, put back to its old value when a
 * wake ended: the next wake then reused the finished wake's stamp, took the waiters linked
 * during that one on other rows for its own re-links and left them aside, and a task waiting
 * for a row that was ready but held remotely waited forever: BUGS-fault.md F3.) */
static _Atomic uint32_t wake_threads;
static DEED_TLS uint64_t wake_base, wake_count, wake_stamp;

static uint64_t wake_new_stamp(void)
{
    if (wake_base == 0) /* thread numbers from 1: a stamp is never 0 */
        wake_base = (uint64_t)(atomic_fetch_add_explicit(&wake_threads, 1,
                                                         memory_order_relaxed) + 1) << 40;
    return wake_base | (++wake_count & ((1ull << 40) - 1));
}

void wlist_add(struct wlist *l, struct waiter *w)
{
    w->stamp = wake_stamp;
    w->prev = NULL;
    w->next = l->head;
    if (l->head)
        l->head->prev = w;
    l->head = w;
}

void wlist_del(struct wlist *l, struct waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        l->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

/* Rows are made and freed on the loop, one per object: freed rows wait in a list (up to
 * ROW_CACHE_MAX) for the next ones instead of going through malloc (a 160-byte row is past
 * glibc's fast bins; the owner paid ~300 instructions per object in _int_malloc/_int_free). */
#if defined(__SANITIZE_ADDRESS__)
#define ROW_CACHE_MAX 0 /* AddressSanitizer builds: keep use-after-free of rows visible */
#else
#define ROW_CACHE_MAX 16384
#endif

static struct obj *row_alloc(struct rt *rt)
{
    struct obj *o = rt->row_cache;
    if (o != NULL) {
        rt->row_cache = *(struct obj **)o;
        rt->row_cache_len--;
        return o;
    }
    return malloc(sizeof(*o));
}

static void row_release(struct rt *rt, struct obj *o)
{
    if (rt->row_cache_len >= ROW_CACHE_MAX) {
        free(o);
        return;
    }
    *(struct obj **)o = rt->row_cache;
    rt->row_cache = o;
    rt->row_cache_len++;
}

struct obj *owner_create(struct rt *rt, objid_t id)
{
    struct obj *o = row_alloc(rt);
    if (o == NULL)
        return NULL;
    memset(o, 0, sizeof(*o));
    o->id = id;
    o->owner = rt->rank;
    int rc = objtab_insert_new(&rt->objs, o);
    if (rc != 0) {
        if (rc > 0)
            log_error("object id %016llx%016llx:%u already exists (id collision)",
                      (unsigned long long)id.hi, (unsigned long long)id.lo, id.index);
        row_release(rt, o);
        return NULL;
    }
    return o;
}

struct obj *owner_find(struct rt *rt, deed_ref_t ref)
{
    struct obj *o = objtab_find(&rt->objs, ref.id_hi, ref.id_lo, ref.index);
    return (o && o->owner == ref.owner) ? o : NULL;
}

void *value_inline_alloc(uint64_t size)
{
    return size <= SLAB_SMALL_SIZE ? slab_alloc(SLAB_SMALL) : malloc(size);
}

void value_free(struct rt *rt, void *data, uint64_t size, uint8_t where)
{
    if (where == WHERE_INLINE) {
        if (size <= SLAB_SMALL_SIZE)
            slab_free(SLAB_SMALL, data);
        else
            free(data);
    } else if (where == WHERE_STORE) {
        store_free(rt->store, data);
    }
}

/* Fire the waiters a state change satisfies. A getter needs the bytes on this rank: while
 * the value only exists elsewhere (WHERE_REMOTE) it stays linked and a fetch starts. */
void owner_wake(struct rt *rt, struct obj *o)
{
    struct waiter *w;
    struct wlist keep = {NULL};
    int need_fetch = 0;
    if (o->state == OBJ_PENDING || o->waiters.head == NULL)
        return;
    /* a waiter's action may drop the row's last count: keep it alive until the walk ends
     * (callers free it afterwards through owner_maybe_free) */
    o->pins++;
    uint64_t outer = wake_stamp;
again:;
    uint64_t stamp = wake_new_stamp();
    wake_stamp = stamp;
    while ((w = o->waiters.head) != NULL) {
        wlist_del(&o->waiters, w);
        if (w->stamp == stamp) { /* linked during this wake: leave it for the next */
            wlist_add(&keep, w);
            w->stamp = stamp;
            continue;
        }
        switch (w->kind) {
        case W_TASKDEP:
            task_dep_ready(rt, (struct task_dep *)w, o);
            break;
        case W_GET:
            if (o->state == OBJ_READY && o->where == WHERE_REMOTE) {
                wlist_add(&keep, w);
                need_fetch = 1;
            } else {
                req_get_fire(rt, (struct req *)((char *)w - offsetof(struct req, w)), o);
            }
            break;
        case W_WAITN:
            req_wait_fire(rt, (struct wait_node *)w);
            break;
        case W_REMOTE:
            remote_locate_fire(rt, w, o);
            break;
        }
    }
    wake_stamp = outer; /* nodes re-added below are not "new" for an enclosing wake */
    int kept = keep.head != NULL;
    while ((w = keep.head) != NULL) {
        wlist_del(&keep, w);
        wlist_add(&o->waiters, w);
    }
    /* the bytes may have arrived while those waited aside (a pull completing inside this
     * wake): then nothing would wake them again */
    if (kept && row_has_bytes(o) && o->waiters.head) {
        need_fetch = 0;
        goto again;
    }
    o->pins--;
    if (need_fetch)
        remote_fetch(rt, o);
}

#define wake_waiters owner_wake

void owner_set_value(struct rt *rt, struct obj *o, void *data, uint64_t size, uint8_t where)
{
    o->data = data;
    o->size = size;
    o->where = where;
    o->state = OBJ_READY;
    if (where == WHERE_INLINE) {
        rt->st.inline_objs++;
        rt->st.inline_bytes += size;
    } else if (where == WHERE_STORE) {
        rt->st.store_objs++;
    }
    wake_waiters(rt, o);
}

void owner_set_error(struct rt *rt, struct obj *o, struct err *e)
{
    o->err = e;
    o->state = OBJ_ERROR;
    wake_waiters(rt, o);
}

/* No local holder left; for multi-rank rows the protocol may still hold it (and this is
 * where a borrower answers the owner's BORROW_WAIT). */
static int unreachable(struct rt *rt, struct obj *o)
{
    if (o->local_refs || o->submitted || o->contained || o->pins || o->creating ||
        o->waiters.head)
        return 0;
    return rt->nranks == 1 || !remote_row_hold(rt, o);
}

static void lineage_release(struct rt *rt, struct task *t, int in_destroy);

static void row_destroy(struct rt *rt, struct obj *o)
{
    objtab_remove(&rt->objs, o);
    if (o->lineage) {
        struct task *t = o->lineage;
        o->lineage = NULL;
        if (o->id.index < t->nrets && t->retrows[o->id.index] == o)
            t->retrows[o->id.index] = NULL;
        if (--t->lineage_refs == 0 && !t->finishing)
            lineage_release(rt, t, 1);
    }
    if (rt->nranks > 1)
        remote_row_freed(rt, o);
    if (o->where == WHERE_INLINE) {
        rt->st.inline_objs--;
        rt->st.inline_bytes -= o->size;
    } else if (o->where == WHERE_STORE) {
        rt->st.store_objs--;
    }
    value_free(rt, o->data, o->size, o->where);
    err_unref(o->err);
    for (uint32_t i = 0; i < o->nrefs; i++) {
        struct obj *inner = owner_find(rt, o->refs[i]);
        if (inner == NULL || inner->contained == 0) {
            log_error("object table: contained ref %u of a freed object is missing", i);
            continue;
        }
        inner->contained--;
        if (unreachable(rt, inner)) {
            if (rt->freelist_len == rt->freelist_cap) {
                uint32_t ncap = rt->freelist_cap ? rt->freelist_cap * 2 : 64;
                struct obj **nl = realloc(rt->freelist, ncap * sizeof(*nl));
                if (nl == NULL) {
                    log_error("out of memory freeing nested objects; %u leaked", o->nrefs - i);
                    break;
                }
                rt->freelist = nl;
                rt->freelist_cap = ncap;
            }
            rt->freelist[rt->freelist_len++] = inner;
        }
    }
    free(o->refs);
    row_release(rt, o);
}

void owner_maybe_free(struct rt *rt, struct obj *o)
{
    if (!unreachable(rt, o))
        return;
    row_destroy(rt, o);
    while (rt->freelist_len > 0) {
        /* a row is queued exactly once: when its last count drops */
        row_destroy(rt, rt->freelist[--rt->freelist_len]);
    }
}

void owner_free_all(struct rt *rt)
{
    uint64_t i = 0, n = 0;
    struct obj *o;
    if (rt->objs.slots == NULL)
        return; /* deed_init failed before the table existed */
    struct obj **all = malloc(sizeof(*all) * (rt->objs.count + 1));
    if (all == NULL)
        return;
    while ((o = objtab_next(&rt->objs, &i)) != NULL)
        all[n++] = o;
    if (n)
        log_debug("finalize: freeing %llu objects still referenced", (unsigned long long)n);
    for (uint64_t j = 0; j < n; j++) {
        value_free(rt, all[j]->data, all[j]->size, all[j]->where);
        err_unref(all[j]->err);
        free(all[j]->refs);
        free(all[j]->locs);
        free(all[j]->ranks);
        free(all[j]);
    }
    free(all);
    objtab_fini(&rt->objs);
    while ((o = rt->row_cache) != NULL) {
        rt->row_cache = *(struct obj **)o;
        free(o);
    }
    rt->row_cache_len = 0;
}

/* ---- lineage ------------------------------------------------------------------------------
 *
 * A finished task whose returns live in other ranks' stores is kept (with counts on its
 * arguments) while any of those returns is alive, so that a return whose every copy died
 * can be re-created by running the task again (same ids, same objects). Lineage memory is
 * bounded by DEED_LINEAGE_MAX: beyond it the oldest lineage is dropped and a later loss of
 * its objects says so. Objects made by put have no lineage: they are lost only with their
 * owner (they live in its memory).
 */
static void fifo_unlink(struct rt *rt, struct task *t)
{
    if (t->lprev)
        t->lprev->lnext = t->lnext;
    else if (rt->lineage_head == t)
        rt->lineage_head = t->lnext;
    if (t->lnext)
        t->lnext->lprev = t->lprev;
    else if (rt->lineage_tail == t)
        rt->lineage_tail = t->lprev;
    t->lprev = t->lnext = NULL;
}

static void lineage_release(struct rt *rt, struct task *t, int in_destroy)
{
    fifo_unlink(rt, t);
    rt->lineage_bytes -= t->lineage_bytes;
    for (uint32_t i = 0; i < t->nargs; i++) {
        struct obj *row = t->deps[i].row;
        if (row == NULL)
            continue;
        t->deps[i].row = NULL;
        row->submitted--;
        if (!in_destroy) {
            owner_maybe_free(rt, row);
        } else if (unreachable(rt, row)) {
            if (rt->freelist_len == rt->freelist_cap) {
                uint32_t ncap = rt->freelist_cap ? rt->freelist_cap * 2 : 64;
                struct obj **nl = realloc(rt->freelist, ncap * sizeof(*nl));
                if (nl == NULL)
                    continue; /* leaked, never freed early */
                rt->freelist = nl;
                rt->freelist_cap = ncap;
            }
            rt->freelist[rt->freelist_len++] = row;
        }
    }
    for (uint32_t i = 0; i < t->nrets; i++)
        if (t->retrows[i] && t->retrows[i]->lineage == t)
            t->retrows[i]->lineage = NULL;
    task_free(t);
}

void lineage_keep(struct rt *rt, struct task *t)
{
    for (uint32_t i = 0; i < t->nrets; i++)
        if (t->retrows[i]) {
            t->retrows[i]->lineage = t;
            t->lineage_refs++;
        }
}

void lineage_done(struct rt *rt, struct task *t)
{
    t->finishing = 0;
    t->rerun = 0;
    if (t->lineage_refs == 0) {
        lineage_release(rt, t, 0);
        return;
    }
    if (t->lineage_bytes == 0) { /* newly kept */
        t->lineage_bytes = sizeof(*t) + t->nargs * (sizeof(deed_arg_t) + 64) + 64;
        rt->lineage_bytes += t->lineage_bytes;
        t->lnext = NULL;
        t->lprev = rt->lineage_tail;
        if (rt->lineage_tail)
            rt->lineage_tail->lnext = t;
        else
            rt->lineage_head = t;
        rt->lineage_tail = t;
    }
    while (rt->lineage_bytes > rt->lineage_max && rt->lineage_head &&
           rt->lineage_head != t) {
        struct task *old = rt->lineage_head;
        for (uint32_t i = 0; i < old->nrets; i++)
            if (old->retrows[i]) {
                old->retrows[i]->lineage = NULL;
                old->retrows[i]->lineage_evicted = 1;
                old->retrows[i] = NULL;
            }
        old->lineage_refs = 0;
        rt->st.lineage_evictions++;
        lineage_release(rt, old, 0);
    }
}

void owner_reconstruct(struct rt *rt, struct obj *o, uint32_t dead)
{
    struct task *t = o->lineage;
    if (t == NULL) {
        const char *why = o->lineage_evicted
                              ? "its lineage was evicted (raise DEED_LINEAGE_MAX)"
                              : "it has no lineage to re-create it";
        if (dead == UINT32_MAX)
            owner_set_error(rt, o, err_new(DEED_ERR_OBJECT_LOST, 0,
                                           "object lost: its copies died with their ranks, "
                                           "and %s",
                                           why));
        else
            owner_set_error(rt, o, err_new(DEED_ERR_OBJECT_LOST, 0,
                                           "object lost: its only copy was on rank %u, which "
                                           "died, and %s",
                                           dead, why));
        return;
    }
    for (uint32_t i = 0; i < t->nrets; i++) {
        struct obj *r = t->retrows[i];
        if (r && (r == o || row_lost(r, rt->rank))) {
            r->state = OBJ_PENDING;
            r->where = WHERE_NONE;
            r->creating = 1;
            r->creator = t;
        }
    }
    if (t->rerun)
        return; /* already running again */
    const char *name = deed_task_name(t->fid);
    log_info("re-creating a lost object by re-running task '%s' (its copy died with rank %u)",
             name ? name : "?", dead);
    t->rerun = 1;
    t->err = NULL;
    memset(t->rets, 0, t->nrets * sizeof(*t->rets));
    t->placed = 0;
    t->lease = NULL;
    t->state = TASK_WAITING;
    t->retries_used = 0;
    rt->st.pending++;
    rt->st.reconstructions++;
    task_resolve_deps(rt, t);
}
