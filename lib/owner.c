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
#include <string.h>

#include "log.h"
#include "rt.h"

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

void wlist_add(struct wlist *l, struct waiter *w)
{
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

struct obj *owner_create(struct rt *rt, objid_t id)
{
    if (objtab_find(&rt->objs, id.hi, id.lo, id.index)) {
        log_error("object id %016llx%016llx:%u already exists (id collision)",
                  (unsigned long long)id.hi, (unsigned long long)id.lo, id.index);
        return NULL;
    }
    struct obj *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->id = id;
    o->owner = rt->rank;
    if (objtab_insert(&rt->objs, o) != 0) {
        free(o);
        return NULL;
    }
    return o;
}

struct obj *owner_find(struct rt *rt, deed_ref_t ref)
{
    struct obj *o = objtab_find(&rt->objs, ref.id_hi, ref.id_lo, ref.index);
    return (o && o->owner == ref.owner) ? o : NULL;
}

void value_free(struct rt *rt, void *data, uint8_t where)
{
    if (where == WHERE_INLINE)
        free(data);
    else if (where == WHERE_STORE)
        store_free(rt->store, data);
}

/* Fire the waiters a state change satisfies. A getter needs the bytes on this rank: while
 * the value only exists elsewhere (WHERE_REMOTE) it stays linked and a fetch starts. */
void owner_wake(struct rt *rt, struct obj *o)
{
    struct waiter *w;
    struct wlist keep = {NULL};
    int need_fetch = 0;
    if (o->state == OBJ_PENDING)
        return;
    while ((w = o->waiters.head) != NULL) {
        wlist_del(&o->waiters, w);
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
    while ((w = keep.head) != NULL) {
        wlist_del(&keep, w);
        wlist_add(&o->waiters, w);
    }
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

static void row_destroy(struct rt *rt, struct obj *o)
{
    objtab_remove(&rt->objs, o);
    if (rt->nranks > 1)
        remote_row_freed(rt, o);
    if (o->where == WHERE_INLINE) {
        rt->st.inline_objs--;
        rt->st.inline_bytes -= o->size;
    } else if (o->where == WHERE_STORE) {
        rt->st.store_objs--;
    }
    value_free(rt, o->data, o->where);
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
    free(o);
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
    struct obj **all = malloc(sizeof(*all) * (rt->objs.count + 1));
    if (all == NULL)
        return;
    while ((o = objtab_next(&rt->objs, &i)) != NULL)
        all[n++] = o;
    if (n)
        log_debug("finalize: freeing %llu objects still referenced", (unsigned long long)n);
    for (uint64_t j = 0; j < n; j++) {
        value_free(rt, all[j]->data, all[j]->where);
        err_unref(all[j]->err);
        free(all[j]->refs);
        free(all[j]->locs);
        free(all[j]->ranks);
        free(all[j]);
    }
    free(all);
    objtab_fini(&rt->objs);
}
