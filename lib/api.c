/*
 * api.c — the object and task API (submit, put, get, wait, refs): argument validation and
 * id derivation on the calling thread, then a message to the loop; plus the loop-side
 * handlers of those messages (req_on_*, put_on_msg).
 *
 * Synchronous calls (get, wait, dup) put a struct req on the caller's stack and wait on its
 * completion. On timeout the caller posts a cancel and waits for the loop to acknowledge
 * it, so the loop never touches a request after its caller returned. A task body that
 * blocks gives its worker slot away for the duration (sched_block).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "registry.h"
#include "rt.h"

#define GET_COPY_IN_LOOP 4096 /* get_copy: objects up to this size are copied by the loop */
#define STORE_WAIT_NS (10ull * 1000000000ull)

static inline struct task *current_task(struct rt *rt)
{
    struct task *t = tl_task;
    return (t && t->rt == rt) ? t : NULL;
}

/* ---- values ---------------------------------------------------------------------------- */

deed_status_t value_alloc(struct rt *rt, uint64_t size, void **data, uint8_t *where)
{
    if (size == 0) {
        *data = NULL;
        *where = WHERE_NONE;
        return DEED_OK;
    }
    if (size <= rt->inline_max) {
        *data = value_inline_alloc(size);
        *where = WHERE_INLINE;
        return *data ? DEED_OK : DEED_ERR_NO_MEMORY;
    }
    uint64_t used, total;
    store_usage(rt->store, &used, &total);
    if (size > total) {
        log_error("object of %llu bytes is larger than the whole store (%llu bytes); raise "
                  "DEED_STORE_SIZE",
                  (unsigned long long)size, (unsigned long long)total);
        return DEED_ERR_STORE_FULL;
    }
    struct store_loc loc;
    uint64_t deadline = 0;
    int blocked = 0;
    deed_status_t rc;
    while ((rc = store_alloc(rt->store, size, &loc)) == DEED_ERR_STORE_FULL) {
        /* back-pressure: wait for objects to be freed */
        uint64_t t = now_ns();
        if (deadline == 0) {
            deadline = t + STORE_WAIT_NS;
            if (current_task(rt)) {
                sched_block(rt);
                blocked = 1;
            }
        } else if (t >= deadline) {
            log_error("store full: no room for %llu bytes after waiting %llu s (store size "
                      "%llu bytes, DEED_STORE_SIZE)",
                      (unsigned long long)size, STORE_WAIT_NS / 1000000000ull,
                      (unsigned long long)total);
            break;
        }
        usleep(100);
    }
    if (blocked)
        sched_unblock(rt);
    if (rc != DEED_OK)
        return rc;
    *data = loc.addr;
    *where = WHERE_STORE;
    return DEED_OK;
}

/* ---- waiting for the loop --------------------------------------------------------------- */

static void req_init(struct req *r, uint16_t type)
{
    memset(r, 0, sizeof(*r));
    r->h.type = type;
    r->cancel.type = MSG_CANCEL;
    completion_init(&r->done);
}

/* Post r and wait for its answer (or its timeout, then the cancel's acknowledgement). */
static void req_call(struct rt *rt, struct req *r, int64_t timeout_us)
{
    uint64_t deadline = timeout_us > 0 ? now_ns() + (uint64_t)timeout_us * 1000ull : 0;
    int blocked = 0;

    r->timeout_us = timeout_us;
    loop_post(rt, &r->h);
    /* The object's producer is still queued: run it here rather than wait for a worker
     * (no hand-off; and a nested task does not need a thread of its own). Safe from
     * deadlock: the producer cannot depend on the waiter's continuation. */
    struct task *t = atomic_exchange_explicit(&r->inline_task, NULL, memory_order_acquire);
    if (t) {
        if (!atomic_exchange_explicit(&t->claimed, 1, memory_order_acq_rel))
            task_run(rt, t);
        task_unref(t);
    }
    if (current_task(rt)) {
        uint64_t shortwait = now_ns() + 5000;
        if (deadline && deadline < shortwait)
            shortwait = deadline;
        if (completion_wait_poll(&r->done, 1, shortwait, 5000,
                                 rt->nranks > 1 ? loop_poll : NULL,
                                 rt->nranks > 1 ? loop_rest : NULL, rt) != 0) {
            sched_block(rt);
            blocked = 1;
        }
    }
    if (completion_wait_poll(&r->done, 1, deadline, rt->spin_ns,
                             rt->nranks > 1 ? loop_poll : NULL,
                             rt->nranks > 1 ? loop_rest : NULL, rt) != 0) {
        loop_post(rt, &r->cancel);
        completion_wait(&r->done, 2, 0, rt->spin_ns);
    }
    if (blocked)
        sched_unblock(rt);
    if ((t = atomic_exchange_explicit(&r->inline_task, NULL, memory_order_acquire)) != NULL)
        task_unref(t); /* offered after we stopped looking */
}

/* ---- loop side ------------------------------------------------------------------------- */

void req_get_fire(struct rt *rt, struct req *r, struct obj *row)
{
    r->registered = 0;
    r->row = NULL;
    if (row->state == OBJ_ERROR) {
        r->status = row->err->status;
        if (r->copy_buf == NULL) {
            r->err = row->err;
            row->pins++;
            r->row = row;
        }
    } else if (r->copy_buf && row->size > r->copy_cap) {
        r->size = row->size;
        r->status = DEED_ERR_TOO_SMALL;
    } else if (r->copy_buf && row->size <= GET_COPY_IN_LOOP) {
        if (row->size)
            memcpy(r->copy_buf, row->data, row->size);
        r->size = row->size;
        r->status = DEED_OK;
    } else {
        row->pins++;
        r->row = row;
        r->data = row->data;
        r->size = row->size;
        r->refs = row->refs;
        r->nrefs = row->nrefs;
        r->status = DEED_OK;
    }
    completion_signal(&r->done);
}

void req_on_get(struct rt *rt, struct req *r)
{
    rt->st.gets++;
    struct obj *row = owner_find(rt, r->ref);
    if (row == NULL) {
        r->status = DEED_ERR_INVALID_REF;
        completion_signal(&r->done);
    } else if (row_has_bytes(row)) {
        req_get_fire(rt, r, row);
    } else if (r->timeout_us == 0) {
        if (row->owner != rt->rank || row->state == OBJ_READY)
            remote_fetch(rt, row); /* so that a later poll finds the bytes here */
        r->status = DEED_ERR_TIMEOUT;
        completion_signal(&r->done);
    } else {
        r->w.kind = W_GET;
        wlist_add(&row->waiters, &r->w);
        r->row = row;
        r->registered = 1;
        /* after linking: a pull may complete inside this call (shared memory) */
        if (row->owner != rt->rank || row->state == OBJ_READY)
            remote_fetch(rt, row);
        struct task *t = row->creator;
        /* only a wait without deadline may run the producer: its body could outlast one */
        if (t && r->timeout_us < 0 && t->queued &&
            !atomic_load_explicit(&t->claimed, memory_order_relaxed)) {
            /* offer the queued producer to the waiter: it may run it instead of waiting */
            atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
            atomic_store_explicit(&r->inline_task, t, memory_order_release);
        }
    }
}

static void wait_unlink(struct req *r)
{
    for (uint32_t i = 0; i < r->n; i++) {
        struct wait_node *nd = &r->nodes[i];
        if (nd->row) {
            wlist_del(&nd->row->waiters, &nd->w);
            nd->row = NULL;
        }
    }
    r->registered = 0;
}

void req_wait_fire(struct rt *rt, struct wait_node *nd)
{
    struct req *r = nd->req;
    nd->row = NULL; /* already unlinked by the row */
    r->ready[nd->i] = 1;
    if (++r->nready == r->k) {
        wait_unlink(r);
        r->status = DEED_OK;
        completion_signal(&r->done);
    }
}

void req_on_wait(struct rt *rt, struct req *r)
{
    r->nready = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        struct obj *row = owner_find(rt, r->wrefs[i]);
        if (row == NULL) {
            for (uint32_t j = 0; j < i; j++)
                r->nodes[j].row = NULL;
            r->status = DEED_ERR_INVALID_REF;
            completion_signal(&r->done);
            return;
        }
        r->nodes[i].row = row; /* not linked yet: kept for the loop below (one lookup) */
        r->ready[i] = row->state != OBJ_PENDING;
        if (!r->ready[i] && row->owner != rt->rank)
            remote_fetch(rt, row); /* a borrowed ref: ask its owner */
        r->nready += r->ready[i];
    }
    if (r->nready >= r->k || r->timeout_us == 0) {
        for (uint32_t i = 0; i < r->n; i++)
            r->nodes[i].row = NULL;
        r->status = r->nready >= r->k ? DEED_OK : DEED_ERR_TIMEOUT;
        completion_signal(&r->done);
        return;
    }
    for (uint32_t i = 0; i < r->n; i++) {
        struct wait_node *nd = &r->nodes[i];
        if (r->ready[i]) {
            nd->row = NULL;
            continue;
        }
        nd->req = r;
        nd->i = i;
        nd->w.kind = W_WAITN;
        wlist_add(&nd->row->waiters, &nd->w);
    }
    r->registered = 1;
}

void req_on_cancel(struct rt *rt, struct req *r)
{
    if (r->registered) {
        if (r->h.type == MSG_GET) {
            wlist_del(&r->row->waiters, &r->w);
            r->row = NULL;
            r->registered = 0;
        } else {
            wait_unlink(r);
        }
        r->status = DEED_ERR_TIMEOUT;
        completion_signal(&r->done);
    }
    completion_signal(&r->done); /* the acknowledgement */
}

void put_on_msg(struct rt *rt, struct put_msg *m)
{
    rt->st.puts++;
    struct obj *row = owner_create(rt, m->id);
    if (row == NULL) {
        log_error("put: cannot create the object row; the object is lost");
        value_free(rt, m->data, m->size, m->where);
        free(m->refs);
        free(m);
        return;
    }
    row->local_refs = 1;
    uint32_t ok = 0, bad = 0;
    for (uint32_t i = 0; i < m->nrefs; i++) {
        struct obj *inner = owner_find(rt, m->refs[i]);
        if (inner == NULL) {
            bad++;
            continue;
        }
        inner->contained++;
        m->refs[ok++] = m->refs[i];
    }
    row->refs = m->refs;
    row->nrefs = ok;
    if (bad) {
        value_free(rt, m->data, m->size, m->where);
        owner_set_error(rt, row,
                        err_new(DEED_ERR_INVALID_REF, 0,
                                "put object contains %u released or unknown ref(s)", bad));
    } else {
        owner_set_value(rt, row, m->data, m->size, m->where);
    }
    free(m);
}

/* ---- public API -------------------------------------------------------------------------- */

#define RT_OR_RETURN(ctx, rt)                                                                 \
    deed_status_t rc_;                                                                        \
    struct rt *rt = ctx_rt((ctx), &rc_);                                                      \
    if (rt == NULL)                                                                           \
    return rc_

DEED_API deed_status_t deed_submit_opts(deed_ctx_t *ctx, deed_task_id_t task,
                                        const deed_arg_in_t *args, uint32_t nargs,
                                        deed_ref_t *rets, uint32_t nrets,
                                        const deed_submit_opts_t *opts)
{
    RT_OR_RETURN(ctx, rt);
    if ((args == NULL && nargs) || (rets == NULL && nrets)) {
        log_error("deed_submit: NULL args or rets with a non-zero count");
        return DEED_ERR_INVALID_ARG;
    }
    if (nargs > 65535 || nrets > 255) {
        log_error("deed_submit: %u args / %u returns; limits are 65535 / 255", nargs, nrets);
        return DEED_ERR_TOO_MANY;
    }
    if (opts && opts->size != sizeof(*opts)) {
        log_error("deed_submit_opts: opts->size must be sizeof(deed_submit_opts_t)");
        return DEED_ERR_INVALID_ARG;
    }
    if (opts && (opts->rank < -1 || (opts->rank >= 0 && (uint32_t)opts->rank >= rt->nranks))) {
        log_error("deed_submit_opts: rank %d is out of range (job has %u ranks)", opts->rank,
                  rt->nranks);
        return DEED_ERR_INVALID_ARG;
    }
    const struct registry_entry *e = registry_find(task);
    if (e == NULL) {
        log_error("deed_submit: no task registered with id %016llx", (unsigned long long)task);
        return DEED_ERR_UNKNOWN_TASK;
    }
    uint64_t payload = 0;
    for (uint32_t i = 0; i < nargs; i++) {
        const deed_arg_in_t *a = &args[i];
        if (a->kind == DEED_ARG_VALUE) {
            if (a->data == NULL && a->size) {
                log_error("deed_submit: argument %u: NULL data with size %zu", i, a->size);
                return DEED_ERR_INVALID_ARG;
            }
            payload += (a->size + 15) & ~(size_t)15; /* each argument 16-byte aligned */
        } else if (a->kind == DEED_ARG_REF || a->kind == DEED_ARG_FUTURE) {
            if (deed_ref_is_null(a->ref)) {
                log_error("deed_submit: argument %u is a null ref", i);
                return DEED_ERR_INVALID_REF;
            }
        } else {
            log_error("deed_submit: argument %u has invalid kind %d", i, (int)a->kind);
            return DEED_ERR_INVALID_ARG;
        }
    }
    struct task *t = task_new(nargs, nrets, payload);
    if (t == NULL)
        return DEED_ERR_NO_MEMORY;
    char *p = task_payload(t);
    for (uint32_t i = 0; i < nargs; i++) {
        const deed_arg_in_t *a = &args[i];
        deed_arg_t *u = &t->uargs[i];
        memset(u, 0, sizeof(*u));
        u->kind = a->kind;
        if (a->kind == DEED_ARG_VALUE) {
            if (a->size) {
                memcpy(p, a->data, a->size);
                u->data = p;
                p += (a->size + 15) & ~(size_t)15;
            }
            u->size = a->size;
        } else {
            u->ref = a->ref;
        }
    }
    t->rt = rt;
    t->fid = task;
    t->fn = e->fn;
    t->max_retries = opts ? opts->max_retries : -1;
    t->want_rank = opts ? opts->rank : -1;
    struct task *parent = current_task(rt);
    t->nested = parent != NULL;
    if (parent)
        t->id = ids_child(parent->id, parent->nchildren++);
    else
        t->id = ids_root_child(rt->root, atomic_fetch_add_explicit(&rt->driver_children, 1,
                                                                   memory_order_relaxed));
    for (uint32_t i = 0; i < nrets; i++) {
        objid_t o = {t->id.hi, t->id.lo, i};
        rets[i] = ids_ref(o, rt->rank);
    }
    t->h.type = MSG_SUBMIT;
    loop_post_defer(rt, &t->h); /* t belongs to the loop from here on */
    return DEED_OK;
}

DEED_API deed_status_t deed_submit(deed_ctx_t *ctx, deed_task_id_t task,
                                   const deed_arg_in_t *args, uint32_t nargs, deed_ref_t *rets,
                                   uint32_t nrets)
{
    return deed_submit_opts(ctx, task, args, nargs, rets, nrets, NULL);
}

DEED_API deed_status_t deed_submit_name(deed_ctx_t *ctx, const char *name,
                                        const deed_arg_in_t *args, uint32_t nargs,
                                        deed_ref_t *rets, uint32_t nrets)
{
    if (name == NULL)
        return DEED_ERR_INVALID_ARG;
    deed_task_id_t id = deed_task_id(name);
    if (id == 0) {
        RT_OR_RETURN(ctx, rt);
        (void)rt;
        log_error("deed_submit_name: no task registered as '%s'", name);
        return DEED_ERR_UNKNOWN_TASK;
    }
    return deed_submit_opts(ctx, id, args, nargs, rets, nrets, NULL);
}

DEED_API deed_status_t deed_put_refs(deed_ctx_t *ctx, const void *data, size_t size,
                                     const deed_ref_t *refs, uint32_t nrefs, deed_ref_t *ref)
{
    RT_OR_RETURN(ctx, rt);
    if (ref == NULL || (data == NULL && size) || (refs == NULL && nrefs)) {
        log_error("deed_put: NULL ref output, or NULL data/refs with a non-zero size/count");
        return DEED_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < nrefs; i++)
        if (deed_ref_is_null(refs[i])) {
            log_error("deed_put_refs: contained ref %u is null", i);
            return DEED_ERR_INVALID_REF;
        }
    struct put_msg *m = malloc(sizeof(*m));
    if (m == NULL)
        return DEED_ERR_NO_MEMORY;
    m->refs = NULL;
    if (nrefs) {
        m->refs = malloc(nrefs * sizeof(*refs));
        if (m->refs == NULL) {
            free(m);
            return DEED_ERR_NO_MEMORY;
        }
        memcpy(m->refs, refs, nrefs * sizeof(*refs));
    }
    deed_status_t rc = value_alloc(rt, size, &m->data, &m->where);
    if (rc != DEED_OK) {
        free(m->refs);
        free(m);
        return rc;
    }
    if (size)
        memcpy(m->data, data, size);
    m->size = size;
    m->nrefs = nrefs;
    struct task *cur = current_task(rt);
    if (cur)
        m->id = ids_put(cur->id, cur->nrets, cur->nputs++);
    else
        m->id = ids_put(rt->root, 0,
                        atomic_fetch_add_explicit(&rt->driver_puts, 1, memory_order_relaxed));
    *ref = ids_ref(m->id, rt->rank);
    m->h.type = MSG_PUT;
    loop_post(rt, &m->h);
    return DEED_OK;
}

DEED_API deed_status_t deed_put(deed_ctx_t *ctx, const void *data, size_t size, deed_ref_t *ref)
{
    return deed_put_refs(ctx, data, size, NULL, 0, ref);
}

DEED_API deed_status_t deed_get(deed_ctx_t *ctx, deed_ref_t ref, deed_view_t *view,
                                int64_t timeout_us)
{
    RT_OR_RETURN(ctx, rt);
    if (view == NULL) {
        log_error("deed_get: view is NULL");
        return DEED_ERR_INVALID_ARG;
    }
    memset(view, 0, sizeof(*view));
    if (deed_ref_is_null(ref))
        return DEED_ERR_INVALID_REF;
    struct req r;
    req_init(&r, MSG_GET);
    r.ref = ref;
    req_call(rt, &r, timeout_us);
    if (r.row) {
        view->data = r.data;
        view->size = r.size;
        view->refs = r.refs;
        view->nrefs = r.nrefs;
        if (r.err) {
            view->error_code = r.err->user_code;
            view->error_msg = r.err->msg;
        }
        view->priv = r.row;
    }
    return r.status;
}

DEED_API deed_status_t deed_view_release(deed_ctx_t *ctx, deed_view_t *view)
{
    RT_OR_RETURN(ctx, rt);
    if (view == NULL || view->priv == NULL) {
        log_error("deed_view_release: view is NULL, empty or already released");
        return DEED_ERR_INVALID_ARG;
    }
    struct ref_msg *m = malloc(sizeof(*m));
    if (m == NULL)
        return DEED_ERR_NO_MEMORY;
    m->h.type = MSG_UNPIN;
    m->row = view->priv;
    memset(view, 0, sizeof(*view));
    loop_post(rt, &m->h);
    return DEED_OK;
}

DEED_API deed_status_t deed_get_copy(deed_ctx_t *ctx, deed_ref_t ref, void *buf, size_t cap,
                                     size_t *size, int64_t timeout_us)
{
    RT_OR_RETURN(ctx, rt);
    if (buf == NULL && cap) {
        log_error("deed_get_copy: NULL buffer with capacity %zu", cap);
        return DEED_ERR_INVALID_ARG;
    }
    if (deed_ref_is_null(ref))
        return DEED_ERR_INVALID_REF;
    struct req r;
    static char dummy;
    req_init(&r, MSG_GET);
    r.ref = ref;
    r.copy_buf = buf ? buf : &dummy;
    r.copy_cap = cap;
    req_call(rt, &r, timeout_us);
    if (r.row) { /* pinned: copy here, then unpin */
        if (r.size)
            memcpy(buf, r.data, r.size);
        struct ref_msg *m = malloc(sizeof(*m));
        if (m == NULL)
            return DEED_ERR_NO_MEMORY; /* the row stays pinned: leaked, never corrupt */
        m->h.type = MSG_UNPIN;
        m->row = r.row;
        loop_post(rt, &m->h);
    }
    if (size && (r.status == DEED_OK || r.status == DEED_ERR_TOO_SMALL))
        *size = r.size;
    return r.status;
}

DEED_API deed_status_t deed_wait(deed_ctx_t *ctx, const deed_ref_t *refs, uint32_t n,
                                 uint32_t k, int64_t timeout_us, uint8_t *ready)
{
    RT_OR_RETURN(ctx, rt);
    if ((refs == NULL && n) || k > n) {
        log_error("deed_wait: NULL refs or k (%u) > n (%u)", k, n);
        return DEED_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < n; i++)
        if (deed_ref_is_null(refs[i]))
            return DEED_ERR_INVALID_REF;
    struct req r;
    req_init(&r, MSG_WAIT);
    r.wrefs = refs;
    r.n = n;
    r.k = k;
    r.nodes = calloc(n ? n : 1, sizeof(struct wait_node) + 1);
    if (r.nodes == NULL)
        return DEED_ERR_NO_MEMORY;
    r.ready = (uint8_t *)(r.nodes + n);
    req_call(rt, &r, timeout_us);
    if (ready)
        memcpy(ready, r.ready, n);
    free(r.nodes);
    return r.status;
}

DEED_API deed_status_t deed_ref_dup(deed_ctx_t *ctx, deed_ref_t ref, deed_ref_t *out)
{
    RT_OR_RETURN(ctx, rt);
    if (out == NULL)
        return DEED_ERR_INVALID_ARG;
    if (deed_ref_is_null(ref))
        return DEED_ERR_INVALID_REF;
    struct req r;
    req_init(&r, MSG_DUP);
    r.ref = ref;
    req_call(rt, &r, -1);
    if (r.status == DEED_OK)
        *out = ref;
    return r.status;
}

DEED_API deed_status_t deed_ref_release_n(deed_ctx_t *ctx, const deed_ref_t *refs, uint32_t n)
{
    RT_OR_RETURN(ctx, rt);
    if (refs == NULL && n)
        return DEED_ERR_INVALID_ARG;
    deed_status_t rc = DEED_OK;
    uint32_t good = 0;
    for (uint32_t i = 0; i < n; i++)
        good += !deed_ref_is_null(refs[i]);
    if (good < n)
        rc = DEED_ERR_INVALID_REF; /* the others are still released */
    if (good == 1) {
        struct ref_msg *m = malloc(sizeof(*m));
        if (m == NULL)
            return DEED_ERR_NO_MEMORY;
        m->h.type = MSG_RELEASE;
        for (uint32_t i = 0; i < n; i++)
            if (!deed_ref_is_null(refs[i]))
                m->ref = refs[i];
        loop_post(rt, &m->h);
    } else if (good > 1) {
        /* one message for all: one allocation and one post instead of n */
        struct release_msg *m = malloc(sizeof(*m) + (size_t)good * sizeof(deed_ref_t));
        if (m == NULL)
            return DEED_ERR_NO_MEMORY;
        m->h.type = MSG_RELEASE_N;
        m->n = 0;
        for (uint32_t i = 0; i < n; i++)
            if (!deed_ref_is_null(refs[i]))
                m->refs[m->n++] = refs[i];
        loop_post(rt, &m->h);
    }
    return rc;
}

DEED_API deed_status_t deed_ref_release(deed_ctx_t *ctx, deed_ref_t ref)
{
    return deed_ref_release_n(ctx, &ref, 1);
}

DEED_API deed_status_t deed_stats(deed_ctx_t *ctx, deed_stats_t *stats)
{
    RT_OR_RETURN(ctx, rt);
    uint32_t want = stats ? stats->size : 0;
    if (want == 0)
        want = sizeof(*stats);
    if (stats == NULL || want < offsetof(deed_stats_t, misuse) || want > sizeof(*stats)) {
        log_error("deed_stats: stats is NULL or stats->size (%u) is not the size of a "
                  "deed_stats_t (this library's is %zu)",
                  stats ? stats->size : 0, sizeof(*stats));
        return DEED_ERR_INVALID_ARG;
    }
    deed_stats_t full;
    memset(&full, 0, sizeof(full));
    struct req r;
    req_init(&r, MSG_STATS);
    r.stats = &full;
    req_call(rt, &r, -1);
    full.size = want;
    memcpy(stats, &full, want); /* only the caller's (possibly older) struct */
    return r.status;
}
