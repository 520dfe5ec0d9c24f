/*
 * task.c — the task table side of the loop (design §5): a submitted spec becomes return rows
 * plus counts on its arguments; it waits for its by-ref arguments, is handed to the
 * scheduler when they exist, and on completion publishes its returns and drops its argument
 * counts. Failures are values: an argument that failed (or is unknown) fails the task
 * without running it, with the same error.
 *
 * The spec is one allocation (task_new): header, user-visible args, dependency nodes,
 * return rows, return values, then the by-value argument bytes.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry.h"
#include "rt.h"
#include "slab.h"

struct task *task_new(uint32_t nargs, uint32_t nrets, uint64_t payload)
{
    /* the payload (by-value bytes) starts 16-byte aligned: header and arrays are padded */
    size_t head = sizeof(struct task) + nargs * (sizeof(deed_arg_t) + sizeof(struct task_dep)) +
                  nrets * (sizeof(struct obj *) + sizeof(struct task_ret));
    size_t sz = ((head + 15) & ~(size_t)15) + payload;
    int slab = sz <= SLAB_TASK_SIZE; /* the common case: a spec from the cache (slab.h) */
    struct task *t = slab ? slab_alloc(SLAB_TASK) : malloc(sz);
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof(*t));
    t->slab = (uint8_t)slab;
    char *p = (char *)(t + 1);
    t->uargs = (deed_arg_t *)p;
    p += nargs * sizeof(deed_arg_t);
    t->deps = (struct task_dep *)p;
    p += nargs * sizeof(struct task_dep);
    t->retrows = (struct obj **)p;
    p += nrets * sizeof(struct obj *);
    t->rets = (struct task_ret *)p;
    memset(t->rets, 0, nrets * sizeof(struct task_ret));
    memset(t->retrows, 0, nrets * sizeof(struct obj *));
    t->nargs = nargs;
    t->nrets = nrets;
    return t;
}

void task_free(struct task *t)
{
    free(t->held);
    free(t->fail_msg);
    if (t->slab)
        slab_free(SLAB_TASK, t);
    else
        free(t);
}

void task_unref(struct task *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        task_free(t);
}

static const char *task_name(struct task *t)
{
    const char *n = deed_task_name(t->fid);
    return n ? n : "?";
}

static void release_contained(struct rt *rt, deed_ref_t *refs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct obj *o = owner_find(rt, refs[i]);
        if (o && o->local_refs) {
            o->local_refs--;
            owner_maybe_free(rt, o);
        }
    }
}

void task_drop_returns(struct rt *rt, struct task *t, int loop_thread)
{
    for (uint32_t i = 0; i < t->nrets; i++) {
        struct task_ret *r = &t->rets[i];
        value_free(rt, r->data, r->size, r->where);
        if (loop_thread)
            release_contained(rt, r->refs, r->nrefs);
        free(r->refs);
        memset(r, 0, sizeof(*r));
    }
}

/* Publish the returns (or the error) and drop the task's argument counts. */
void task_finish(struct rt *rt, struct task *t)
{
    int rerun = t->rerun;
    int keep = rerun;
    if (t->err)
        rt->st.failed++;
    /* keep the spec as lineage when a return lives only in another rank's store */
    for (uint32_t i = 0; !keep && !t->err && i < t->nrets; i++)
        keep = t->rets[i].where == WHERE_REMOTE && rt->lineage_max > 0;
    t->finishing = 1;
    if (keep && !rerun)
        lineage_keep(rt, t);
    for (uint32_t i = 0; i < t->nrets; i++) {
        struct obj *row = t->retrows[i];
        struct task_ret *r = &t->rets[i];
        if (row == NULL) {
            /* the row is gone (a re-run whose return was released meanwhile): drop it */
            if (!t->err) {
                value_free(rt, r->data, r->size, r->where);
                if (r->refs_counted)
                    remote_drop_contained(rt, r->refs, r->nrefs);
                else
                    release_contained(rt, r->refs, r->nrefs);
                free(r->refs);
                memset(r, 0, sizeof(*r));
            }
            continue;
        }
        if (rerun && row->state != OBJ_PENDING) {
            /* re-run for a sibling return: this one survived, keep its value */
            if (r->where == WHERE_REMOTE) {
                struct loc *nl = realloc(row->locs, (row->nlocs + 1) * sizeof(*nl));
                if (nl) {
                    nl[row->nlocs++] = r->loc; /* one more copy */
                    row->locs = nl;
                }
            } else {
                value_free(rt, r->data, r->size, r->where);
            }
            if (r->refs_counted)
                remote_drop_contained(rt, r->refs, r->nrefs);
            free(r->refs);
            memset(r, 0, sizeof(*r));
            continue;
        }
        row->creator = NULL;
        if (t->err) {
            owner_set_error(rt, row, err_ref(t->err));
        } else {
            /* contained refs: the HOLD posted when the return was set becomes a contained
             * count, so the inner objects can never be freed in between */
            uint32_t ok = 0, bad = 0;
            if (r->refs_counted)
                ok = r->nrefs; /* counted when the reply was decoded */
            for (uint32_t j = 0; j < r->nrefs && !r->refs_counted; j++) {
                struct obj *inner = owner_find(rt, r->refs[j]);
                if (inner == NULL || inner->local_refs == 0) {
                    bad++;
                    continue;
                }
                inner->local_refs--;
                inner->contained++;
                r->refs[ok++] = r->refs[j];
            }
            row->refs = r->refs;
            row->nrefs = ok;
            r->refs = NULL;
            if (bad) {
                value_free(rt, r->data, r->size, r->where);
                owner_set_error(rt, row,
                                err_new(DEED_ERR_INVALID_REF, 0,
                                        "return %u of task '%s' contains %u released or "
                                        "unknown ref(s)",
                                        i, task_name(t), bad));
            } else if (r->where == WHERE_REMOTE) {
                /* a remote task's large return stays in the executor's store */
                struct loc *l = malloc(sizeof(*l));
                if (l == NULL) {
                    owner_set_error(rt, row, err_new(DEED_ERR_NO_MEMORY, 0, "out of memory"));
                } else {
                    *l = r->loc;
                    free(row->locs);
                    row->locs = l;
                    row->nlocs = 1;
                    owner_set_value(rt, row, NULL, r->size, WHERE_REMOTE);
                }
            } else {
                owner_set_value(rt, row, r->data, r->size, r->where);
            }
            memset(r, 0, sizeof(*r));
        }
        row->creating = 0;
        owner_maybe_free(rt, row);
    }
    if (t->err)
        task_drop_returns(rt, t, 1);
    for (uint32_t i = 0; i < t->nargs; i++) {
        struct task_dep *d = &t->deps[i];
        if (d->row == NULL)
            continue;
        if (d->linked) {
            wlist_del(&d->row->waiters, &d->w);
            d->linked = 0;
        }
        if (keep)
            continue; /* the lineage keeps its arguments */
        d->row->submitted--;
        owner_maybe_free(rt, d->row);
    }
    err_unref(t->err);
    t->err = NULL;
    rt->st.pending--;
    if (rt->quiesce && rt->st.pending == 0) {
        struct req *q = rt->quiesce;
        rt->quiesce = NULL;
        completion_signal(&q->done);
    }
    if (keep) {
        t->state = TASK_DONE;
        lineage_done(rt, t);
        return;
    }
    t->finishing = 0;
    if (t->queued)
        task_unref(t); /* the loop's ref; the ring's goes with whoever popped it */
    else
        task_free(t);
}

/* Every by-ref argument exists (or one failed): run the task here or on another rank, or
 * fail it without running. */
static void task_resolved(struct rt *rt, struct task *t)
{
    if (t->err) {
        if (t->remote)
            remote_task_done(rt, t);
        else
            task_finish(rt, t);
        return;
    }
    if (rt->nranks > 1 && !t->remote && !t->placed) {
        if (lease_enqueue(rt, t) == 0)
            return; /* runs when a lease has room, here or elsewhere */
        t->placed = 1;
        t->exec_rank = rt->rank;
    }
    task_run_here(rt, t);
}

/* Start fetching the rows a task waits on. A fetch can complete inside remote_fetch (an
 * in-place pull) and wake the task: one extra pending count held for the whole loop keeps
 * it from resolving (running, being freed) until every fetch has started. */
static void fetch_linked(struct rt *rt, struct task *t)
{
    t->deps_pending++;
    t->fetching = 1;
    for (uint32_t i = 0; i < t->nargs; i++)
        if (t->deps[i].linked)
            remote_fetch(rt, t->deps[i].row);
    t->fetching = 0;
    if (--t->deps_pending == 0)
        task_resolved(rt, t);
}

void task_run_here(struct rt *rt, struct task *t)
{
    /* running here: every by-ref argument's bytes must be on this rank. Link first, fetch
     * after: a pull can complete inside remote_fetch and wake (and run) the task at once,
     * so nothing may touch the task once the fetches have started. */
    int linked = 0;
    for (uint32_t i = 0; i < t->nargs; i++) {
        struct task_dep *d = &t->deps[i];
        if (t->uargs[i].kind != DEED_ARG_REF || d->row == NULL || row_has_bytes(d->row))
            continue;
        wlist_add(&d->row->waiters, &d->w);
        d->linked = 1;
        t->deps_pending++;
        linked = 1;
    }
    if (linked) {
        fetch_linked(rt, t);
        return;
    }
    for (uint32_t i = 0; i < t->nargs; i++) {
        deed_arg_t *a = &t->uargs[i];
        struct obj *row = t->deps[i].row;
        if (a->kind != DEED_ARG_REF || row == NULL)
            continue;
        a->data = row->data;
        a->size = row->size;
        a->refs = row->refs;
        a->nrefs = row->nrefs;
    }
    rt->local_load++;
    t->state = TASK_READY;
    t->queued = 1;
    atomic_store_explicit(&t->claimed, 0, memory_order_relaxed);
    atomic_store_explicit(&t->refs, 2, memory_order_relaxed);
    sched_push(rt, t);
}

void task_dep_ready(struct rt *rt, struct task_dep *d, struct obj *row)
{
    struct task *t = d->task;
    d->linked = 0;
    if (row->state == OBJ_ERROR && t->err == NULL) {
        t->err = err_ref(row->err);
        /* fail fast: stop waiting for the other arguments */
        for (uint32_t i = 0; i < t->nargs; i++) {
            struct task_dep *o = &t->deps[i];
            if (o->linked) {
                wlist_del(&o->row->waiters, &o->w);
                o->linked = 0;
            }
        }
        t->deps_pending = t->fetching; /* fetch_linked's count resolves it after */
        if (t->deps_pending == 0)
            task_resolved(rt, t);
        return;
    }
    if (--t->deps_pending == 0)
        task_resolved(rt, t);
}

void task_on_submit(struct rt *rt, struct task *t)
{
    rt->st.submitted++;
    rt->st.pending++;
    for (uint32_t i = 0; i < t->nrets; i++) {
        objid_t id = {t->id.hi, t->id.lo, i};
        struct obj *row = owner_create(rt, id);
        if (row == NULL) {
            if (t->err == NULL)
                t->err = err_new(DEED_ERR_NO_MEMORY, 0, "cannot create return %u of task '%s'",
                                 i, task_name(t));
            continue;
        }
        row->creating = 1;
        row->creator = t;
        row->local_refs = 1; /* the ref submit returned */
        t->retrows[i] = row;
    }
    t->deps_pending = 0;
    for (uint32_t i = 0; i < t->nargs; i++) {
        deed_arg_t *a = &t->uargs[i];
        struct task_dep *d = &t->deps[i];
        d->task = t;
        d->i = i;
        d->row = NULL;
        d->linked = 0;
        d->w.kind = W_TASKDEP;
        if (a->kind == DEED_ARG_VALUE)
            continue;
        struct obj *row = owner_find(rt, a->ref);
        if (row == NULL) {
            if (t->err == NULL)
                t->err = err_new(DEED_ERR_INVALID_REF, 0,
                                 "argument %u of task '%s' is a released or unknown ref", i,
                                 task_name(t));
            continue;
        }
        row->submitted++;
        d->row = row;
        if (a->kind != DEED_ARG_REF || t->err)
            continue;
        if (row_lost(row, rt->rank))
            owner_reconstruct(rt, row, UINT32_MAX);
        if (row->state == OBJ_PENDING) {
            wlist_add(&row->waiters, &d->w);
            d->linked = 1;
            t->deps_pending++;
        } else if (row->state == OBJ_ERROR) {
            t->err = err_ref(row->err);
        }
    }
    if (t->err) {
        for (uint32_t i = 0; i < t->nargs; i++) {
            struct task_dep *d = &t->deps[i];
            if (d->linked) {
                wlist_del(&d->row->waiters, &d->w);
                d->linked = 0;
            }
        }
        t->deps_pending = 0;
    }
    if (t->deps_pending == 0)
        task_resolved(rt, t);
    else
        fetch_linked(rt, t); /* last: the task may run from inside */
}

void task_retry(struct rt *rt, struct task *t)
{
    t->placed = 0;
    t->lease = NULL;
    t->state = TASK_WAITING;
    task_resolved(rt, t);
}

void task_on_done(struct rt *rt, struct task *t)
{
    rt->st.run++;
    if (rt->fault_kill_after && rt->st.run >= rt->fault_kill_after) {
        log_warn("fault injection: killing this rank after %llu tasks "
                 "(DEED_FAULT_KILL_AFTER_TASKS)",
                 (unsigned long long)rt->st.run);
        raise(SIGKILL);
    }
    rt->local_load--;
    lease_task_done(rt, t);
    if (t->remote)
        remote_task_done(rt, t);
    else
        task_finish(rt, t);
}


void task_resolve_deps(struct rt *rt, struct task *t)
{
    t->deps_pending = 0;
    for (uint32_t i = 0; i < t->nargs && !t->err; i++) {
        struct task_dep *d = &t->deps[i];
        if (t->uargs[i].kind != DEED_ARG_REF || d->row == NULL)
            continue;
        if (row_lost(d->row, rt->rank))
            owner_reconstruct(rt, d->row, UINT32_MAX);
        if (d->row->state == OBJ_ERROR) {
            t->err = err_ref(d->row->err);
        } else if (!row_has_bytes(d->row)) {
            wlist_add(&d->row->waiters, &d->w);
            d->linked = 1;
            t->deps_pending++;
        }
    }
    if (t->err) {
        for (uint32_t i = 0; i < t->nargs; i++) {
            struct task_dep *d = &t->deps[i];
            if (d->linked) {
                wlist_del(&d->row->waiters, &d->w);
                d->linked = 0;
            }
        }
        t->deps_pending = 0;
    }
    if (t->deps_pending == 0)
        task_resolved(rt, t);
    else
        fetch_linked(rt, t); /* borrowed arguments: ask their owners (last: may run t) */
}
