/*
 * worker.c — worker threads and the API a running task body uses (deed_task_*).
 *
 * A worker takes a ready task from the scheduler, runs its body with tl_task set (so nested
 * submits and puts derive their ids from the running task), turns a non-zero return into an
 * error object, and posts the spec back to the loop as MSG_DONE. It touches no loop state.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry.h"
#include "rt.h"
#include "worker.h"

DEED_TLS struct task *tl_task;
DEED_TLS struct worker *tl_worker;

void task_run(struct rt *rt, struct task *t)
{
    struct task *outer = tl_task;
    tl_task = t;
    t->state = TASK_RUNNING;
    int rc = t->fn((deed_task_t *)t, t->uargs, t->nargs);
    tl_task = outer;
    if (rc != 0) {
        const char *name = deed_task_name(t->fid);
        if (t->fail_msg)
            t->err = err_new(DEED_ERR_TASK_FAILED, rc, "%s", t->fail_msg);
        else
            t->err = err_new(DEED_ERR_TASK_FAILED, rc, "task '%s' failed with code %d",
                             name ? name : "?", rc);
    }
    t->state = TASK_DONE;
    t->h.type = MSG_DONE;
    if (ring_nonempty(&rt->sched.ready))
        loop_post_defer(rt, &t->h); /* this worker reports again soon */
    else
        loop_post(rt, &t->h);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct rt *rt = w->rt;
    struct sched *s = &rt->sched;
    int holding = 0;

    tl_worker = w;
    if (s->pinned)
        topo_bind_thread(&rt->topo, s->plan.cpusets[w->index % s->nslots]);
    while (!atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
        struct task *t = sched_take(rt, &holding);
        if (t) {
            /* a waiter may have claimed it to run inline; the ring's ref is ours to drop */
            int mine = !atomic_exchange_explicit(&t->claimed, 1, memory_order_acq_rel);
            if (mine) {
                task_unref(t); /* cannot free: the loop's ref lives until MSG_DONE */
                task_run(rt, t);
            } else {
                task_unref(t);
            }
            continue;
        }
        sched_idle_wait(rt);
    }
    if (holding)
        atomic_fetch_sub(&s->running, 1);
    return NULL;
}

int worker_spawn(struct rt *rt)
{
    struct sched *s = &rt->sched;
    pthread_attr_t attr;
    int rc = DEED_OK;

    pthread_mutex_lock(&s->threads_lock);
    uint32_t n = atomic_load(&s->nthreads);
    if (n >= s->max_threads) {
        rc = DEED_ERR_TOO_MANY;
        goto out;
    }
    if (n == s->threads_cap) {
        uint32_t ncap = s->threads_cap * 2;
        struct worker **nt = realloc(s->threads, ncap * sizeof(*nt));
        if (nt == NULL) {
            rc = DEED_ERR_NO_MEMORY;
            goto out;
        }
        s->threads = nt;
        s->threads_cap = ncap;
    }
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        rc = DEED_ERR_NO_MEMORY;
        goto out;
    }
    w->rt = rt;
    w->index = n;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, rt->cfg.stack_size);
    int e = pthread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        log_error("cannot start worker thread %u: %s", n, strerror(e));
        free(w);
        rc = DEED_ERR_NO_MEMORY;
        goto out;
    }
    s->threads[n] = w;
    atomic_store(&s->nthreads, n + 1);
out:
    pthread_mutex_unlock(&s->threads_lock);
    return rc;
}

/* ---- the API of a running task --------------------------------------------------------- */

static struct task *running_task(deed_task_t *task)
{
    struct task *t = (struct task *)task;
    if (t == NULL || t != tl_task) {
        log_error("deed_task_*: the task handle is NULL or not the task running on this "
                  "thread");
        return NULL;
    }
    return t;
}

DEED_API deed_ctx_t *deed_task_ctx(deed_task_t *task)
{
    struct task *t = running_task(task);
    return t ? (deed_ctx_t *)t->rt->ctx : NULL;
}

DEED_API uint32_t deed_task_nreturns(deed_task_t *task)
{
    struct task *t = running_task(task);
    return t ? t->nrets : 0;
}

/* Drop what return i held (HOLDs on contained refs are released through the loop). */
static void ret_clear(struct rt *rt, struct task_ret *r)
{
    value_free(rt, r->data, r->size, r->where);
    if (r->nrefs)
        deed_ref_release_n((deed_ctx_t *)rt->ctx, r->refs, r->nrefs);
    free(r->refs);
    memset(r, 0, sizeof(*r));
}

static deed_status_t ret_set(deed_task_t *task, uint32_t i, const void *data, size_t size,
                             const deed_ref_t *refs, uint32_t nrefs, void **buf)
{
    struct task *t = running_task(task);
    if (t == NULL)
        return DEED_ERR_NOT_IN_TASK;
    if (i >= t->nrets) {
        log_error("deed_task_return: index %u out of range (task has %u returns)", i,
                  t->nrets);
        return DEED_ERR_INVALID_ARG;
    }
    if ((data == NULL && size > 0 && buf == NULL) || (refs == NULL && nrefs > 0)) {
        log_error("deed_task_return: NULL data or refs with a non-zero size or count");
        return DEED_ERR_INVALID_ARG;
    }
    struct rt *rt = t->rt;
    struct task_ret nr = {0};
    for (uint32_t j = 0; j < nrefs; j++)
        if (deed_ref_is_null(refs[j])) {
            log_error("deed_task_return_refs: ref %u is null", j);
            return DEED_ERR_INVALID_REF;
        }
    deed_status_t rc = value_alloc(rt, size, &nr.data, &nr.where);
    if (rc != DEED_OK)
        return rc;
    if (size && data)
        memcpy(nr.data, data, size);
    nr.size = size;
    if (nrefs) {
        nr.refs = malloc(nrefs * sizeof(*refs));
        if (nr.refs == NULL) {
            value_free(rt, nr.data, nr.size, nr.where);
            return DEED_ERR_NO_MEMORY;
        }
        memcpy(nr.refs, refs, nrefs * sizeof(*refs));
        nr.nrefs = nrefs;
        /* count the inner objects now, before the body can release its own refs */
        for (uint32_t j = 0; j < nrefs; j++) {
            struct ref_msg *m = malloc(sizeof(*m));
            if (m == NULL) {
                log_error("deed_task_return_refs: out of memory");
                return DEED_ERR_NO_MEMORY;
            }
            m->h.type = MSG_HOLD;
            m->ref = refs[j];
            loop_post(rt, &m->h);
        }
    }
    ret_clear(rt, &t->rets[i]);
    t->rets[i] = nr;
    if (buf)
        *buf = nr.data;
    return DEED_OK;
}

DEED_API deed_status_t deed_task_return(deed_task_t *task, uint32_t i, const void *data,
                                        size_t size)
{
    return ret_set(task, i, data, size, NULL, 0, NULL);
}

DEED_API deed_status_t deed_task_return_alloc(deed_task_t *task, uint32_t i, size_t size,
                                              void **buf)
{
    if (buf == NULL)
        return DEED_ERR_INVALID_ARG;
    return ret_set(task, i, NULL, size, NULL, 0, buf);
}

DEED_API deed_status_t deed_task_return_refs(deed_task_t *task, uint32_t i, const void *data,
                                             size_t size, const deed_ref_t *refs,
                                             uint32_t nrefs)
{
    return ret_set(task, i, data, size, refs, nrefs, NULL);
}

DEED_API int deed_task_fail(deed_task_t *task, int code, const char *fmt, ...)
{
    struct task *t = running_task(task);
    if (t == NULL)
        return code ? code : -1;
    if (code == 0) {
        log_error("deed_task_fail: code 0 means success; using -1");
        code = -1;
    }
    if (fmt) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        free(t->fail_msg);
        t->fail_msg = strdup(buf);
    }
    return code;
}
