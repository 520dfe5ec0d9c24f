/*
 * rt.h — the rank runtime's shared structures: the object row (ownership table entry), the
 * task spec, the messages API threads post to the loop, and struct rt itself.
 *
 * Ownership rules (the invariant that keeps the core lock-free):
 *   - rows (struct obj), the object table, the task table and all counts are touched ONLY by
 *     the event-loop thread;
 *   - a struct task belongs to its submitter until posted, to the loop until it is pushed to
 *     the ready ring, to one worker while its body runs, then to the loop again (MSG_DONE);
 *   - API threads talk to the loop only through messages (rt->inbox) and completions.
 *   - the store and the sched counters are the only state shared directly between threads
 *     (store: its own lock; sched: atomics).
 */
#ifndef DEED_RT_H
#define DEED_RT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "deed.h"
#include "ids.h"
#include "mpsc.h"
#include "objtab.h"
#include "net.h"
#include "ring.h"
#include "store.h"
#include "topo.h"
#include "waiter.h"

struct rt;
struct task;
struct worker;

/* ---- error objects ------------------------------------------------------------------- */

/* Shared, refcounted by the loop: one failure propagates to dependents as the same err. */
struct err {
    uint32_t refs;
    int status;       /* deed_status_t returned by get */
    int user_code;    /* for DEED_ERR_TASK_FAILED: what the task returned */
    char msg[];
};

/* ---- waiters: what can wait on a pending row ------------------------------------------ */

enum waiter_kind { W_TASKDEP = 1, W_GET, W_WAITN, W_REMOTE };

struct waiter {
    struct waiter *prev, *next;
    uint8_t kind;
    uint64_t stamp; /* the wake during which it was linked (see owner_wake) */
};

struct wlist {
    struct waiter *head;
};

/* ---- ownership table row -------------------------------------------------------------- */

enum obj_state { OBJ_PENDING = 0, OBJ_READY, OBJ_ERROR };
/* Where this rank has the bytes. WHERE_REMOTE: the value exists (state READY) but only in
 * other ranks' stores (locs); a local reader pulls it first. */
enum obj_where { WHERE_NONE = 0, WHERE_INLINE, WHERE_STORE, WHERE_REMOTE };

/* One copy of a large object in some rank's store. */
struct loc {
    uint32_t rank;
    uint32_t segment;
    uint64_t offset;
    uint64_t len;
};

struct obj {
    objid_t id;
    uint8_t state;
    uint8_t where;
    uint8_t creating;      /* the creating task has not finished */
    uint32_t local_refs;   /* ref values held by code on this rank */
    uint32_t submitted;    /* pending tasks that take it as an argument */
    uint32_t contained;    /* live outer objects that hold a ref to it */
    uint32_t pins;         /* views and in-flight copies */
    void *data;
    uint64_t size;
    deed_ref_t *refs;      /* refs contained in this object (each counted in its row) */
    uint32_t nrefs;
    struct err *err;
    struct wlist waiters;
    struct task *creator;  /* the creating task while it is queued or running */
    /* multi-rank (design §6, §7) */
    uint32_t owner;        /* rank that owns the row's metadata (== rt->rank: owned row) */
    struct loc *locs;      /* owned: copies in other ranks' stores (primary first) */
    uint32_t nlocs;
    uint32_t *ranks;       /* owned: borrower ranks; borrowed: borrowers we created */
    uint32_t nranks;
    uint8_t pulling;       /* a pull of the bytes into this rank's store is in flight */
    uint8_t locating;      /* borrowed: LOCATE sent to the owner, answer pending */
    uint8_t owner_waits;   /* borrowed: the owner asked for BORROW_DONE */
    uint8_t expect_wait;   /* borrowed: we reported ourselves as a borrower; a BORROW_WAIT
                              is on its way, keep the row until it arrives */
    uint8_t copy_pinned;   /* borrowed: our store copy was published to the owner; keep it
                              until the owner's COPY_FREE */
    uint8_t lineage_evicted; /* owned: its lineage was dropped to bound lineage memory */
    struct task *lineage;  /* owned: the finished task that can re-create it (design §4) */
};

/* ---- messages -------------------------------------------------------------------------- */

enum msg_type {
    MSG_SUBMIT = 1, /* struct task */
    MSG_DONE,       /* struct task, body finished */
    MSG_PUT,        /* struct put_msg */
    MSG_RELEASE,    /* struct ref_msg */
    MSG_RELEASE_N,  /* struct release_msg */
    MSG_HOLD,       /* struct ref_msg: +1 local count, ahead of a contained-ref return */
    MSG_DUP,        /* struct req */
    MSG_GET,        /* struct req */
    MSG_WAIT,       /* struct req */
    MSG_CANCEL,     /* struct req (via cancel_msg) */
    MSG_UNPIN,      /* struct ref_msg with row */
    MSG_STATS,      /* struct req */
    MSG_QUIESCE,    /* struct req: answered when no task is pending */
    MSG_FIN,        /* struct req: finalize round r->n across the live ranks */
};

struct msg {
    struct mpsc_node node;
    uint16_t type;
};

struct ref_msg {
    struct msg h;
    deed_ref_t ref;
    struct obj *row; /* MSG_UNPIN */
};

/* MSG_RELEASE_N: deed_ref_release_n's refs in one message (one post, one allocation) */
struct release_msg {
    struct msg h;
    uint32_t n;
    deed_ref_t refs[];
};

struct put_msg {
    struct msg h;
    objid_t id;
    void *data;       /* malloc'd inline copy, or store block */
    uint64_t size;
    uint8_t where;
    uint32_t nrefs;
    deed_ref_t *refs; /* malloc'd contained refs; the row takes them */
};

/* A synchronous request; lives on the caller's stack until the loop completes it. */
struct wait_node {
    struct waiter w;
    struct req *req;
    struct obj *row;     /* linked into row->waiters while non-NULL */
    uint32_t i;
};

struct req {
    struct msg h;
    struct msg cancel;   /* MSG_CANCEL, posted on timeout */
    struct waiter w;     /* MSG_GET: linked into the row's waiters while pending */
    struct completion done;
    int status;
    uint8_t registered;  /* linked as a waiter */
    uint8_t timed;       /* has a timeout (0 = poll or forever) */
    int64_t timeout_us;
    deed_ref_t ref;
    /* MSG_GET results */
    struct obj *row;     /* pinned row, if any */
    const void *data;
    uint64_t size;
    const deed_ref_t *refs;
    uint32_t nrefs;
    struct err *err;
    void *copy_buf;      /* get_copy: loop copies small objects straight here */
    uint64_t copy_cap;
    struct task *_Atomic inline_task; /* GET: the queued producer, offered to the waiter */
    /* MSG_WAIT */
    const deed_ref_t *wrefs;
    struct wait_node *nodes;
    uint8_t *ready;
    uint32_t n, k, nready;
    /* MSG_STATS */
    deed_stats_t *stats;
};

/* ---- tasks ----------------------------------------------------------------------------- */

enum task_state { TASK_WAITING = 0, TASK_READY, TASK_RUNNING, TASK_DONE };

struct task_dep {
    struct waiter w;     /* linked into the arg row's waiters while pending */
    struct task *task;
    struct obj *row;     /* resolved row (REF/FUTURE) */
    uint32_t i;
    uint8_t linked;      /* w is in row->waiters */
};

struct task_ret {
    void *data;
    uint64_t size;
    uint8_t where;       /* WHERE_REMOTE: the bytes stay at loc (a remote task's return) */
    uint32_t nrefs;
    deed_ref_t *refs;    /* malloc'd */
    struct loc loc;
    uint8_t refs_counted; /* refs already counted as contained (a remote reply) */
};

struct task {
    struct msg h;
    struct task *qnext;  /* loop-owned queues */
    struct rt *rt;
    taskid_t id;
    deed_task_id_t fid;
    deed_task_fn_t fn;
    uint32_t nargs, nrets;
    uint32_t deps_pending;
    uint8_t state;
    uint8_t queued;      /* handed to the scheduler: refs/claimed are live */
    _Atomic uint32_t refs;    /* once queued: the ring's ref + the loop's ref (+ inliners) */
    _Atomic uint32_t claimed; /* the thread that sets it runs the body */
    int32_t max_retries;
    uint64_t nchildren;  /* nested submits made by the body */
    uint64_t nputs;      /* puts made by the body */
    deed_arg_t *uargs;   /* what the body sees */
    struct task_dep *deps;
    struct obj **retrows;
    struct task_ret *rets;
    struct err *err;     /* failure: own or propagated */
    char *fail_msg;
    /* multi-rank */
    uint8_t remote;      /* executor side: pushed here by owner_rank */
    uint8_t placed;      /* owner side: placement decided */
    uint32_t owner_rank; /* executor side: who to reply to */
    uint32_t exec_rank;  /* owner side: where it runs */
    int32_t want_rank;   /* placement hint from deed_submit_opts, -1 = anywhere */
    int32_t retries_used;
    uint8_t fetching;    /* fetch_linked holds one pending count */
    /* lineage: a finished task kept so its lost returns can be re-created */
    uint32_t lineage_refs; /* return rows that point at it */
    uint8_t rerun;         /* being re-executed to re-create lost returns */
    uint8_t finishing;
    uint64_t lineage_bytes;
    struct task *lprev, *lnext; /* lineage FIFO (oldest first) */
    uint8_t nested;      /* submitted by a running task (it will likely get the result) */
    uint8_t slab;        /* allocated from the task cache (task.c) */
    struct task *hnext;  /* owner side: remote-pending table chain */
    struct lease *lease; /* owner side: the lease it runs under */
    struct obj **held;   /* executor side: rows of refs inside by-ref arguments */
    uint32_t nheld;
};

/* ---- the runtime ----------------------------------------------------------------------- */

struct sched {
    struct ring ready;               /* loop -> workers */
    struct task *overflow_head, *overflow_tail; /* loop-owned, when the ring is full */
    uint32_t nslots;                 /* W */
    uint32_t max_threads;
    _Atomic uint32_t running;        /* threads inside a task body, not blocked */
    _Atomic uint32_t nthreads;
    _Atomic uint32_t blocked;
    _Atomic uint32_t nidle;          /* threads looking for work (at most nslots) */
    _Atomic uint32_t nspare;         /* parked spare threads, beyond the W idle ones */
    _Atomic uint32_t spare_wanted;   /* spares asked to become idle threads */
    struct eventcount spare;         /* spare threads sleep here */
    _Atomic int stopping;
    uint32_t pushed;                 /* loop-owned: pushed since the last notify */
    struct eventcount idle;          /* idle worker threads sleep here */
    pthread_mutex_t threads_lock;    /* guards threads[] growth */
    struct worker **threads;
    uint32_t threads_cap;
    struct topo_plan plan;
    int pinned;
};

struct loop_stats {
    uint64_t submitted, run, failed, pending, puts, gets, misuse;
    uint64_t inline_objs, store_objs, inline_bytes;
    uint64_t batches_sent, msgs_dropped, remote_in, pulls, pull_bytes;
    uint64_t retries, reconstructions, lineage_evictions;
};

struct rt {
    struct deed_ctx *ctx;
    deed_config_t cfg;
    uint32_t rank, nranks;
    uint64_t inline_max;
    uint64_t spin_ns;
    taskid_t root;                   /* driver's root task id */
    _Atomic uint64_t driver_children;
    _Atomic uint64_t driver_puts;

    /* loop: the state machine runs on whichever thread holds `combiner` (flat combining) */
    struct mpsc inbox;
    _Atomic int combiner;            /* 1 while some thread runs the loop's handlers */
    _Atomic int loop_sleeping;
    _Atomic int net_deferred;        /* a pass left its batches unsent (see loop.c) */
    _Atomic uint64_t passes;         /* passes made by threads other than the loop thread */
    _Atomic uint64_t rests;          /* loop_rest calls (a driving thread went to sleep) */
    uint64_t rests_seen;             /* loop thread only */
    uint64_t net_defer_since;        /* loop-owned: when the first pass left them */
    uint32_t net_defer_passes;       /* loop-owned: passes since */
    uint32_t light_passes;           /* loop-owned: deferring passes (loop.c: combine) */
    int efd, epfd;
    pthread_t loop_thread;
    _Atomic int stop_loop;
    struct objtab objs;              /* loop-owned */
    struct loop_stats st;            /* loop-owned */
    struct req *quiesce;             /* waiting for pending == 0 */
    struct obj **freelist;           /* loop-owned worklist for cascading frees */
    uint32_t freelist_len, freelist_cap;
    uint64_t now_coarse;             /* loop-owned: now_coarse_ns() at the start of the pass */
    struct obj *row_cache;           /* loop-owned: freed rows for reuse (owner.c) */
    uint32_t row_cache_len;

    struct sched sched;
    struct store *store;
    struct topo topo;
    int topo_ok;
    const struct tp_ops *tp_ops;
    struct tp *tp;

    /* multi-rank: peers, batching (net.c), remote tasks and copies (remote.c) */
    struct peer *peers;
    uint32_t *net_dirty;
    uint32_t net_ndirty;
    struct remote *remote;
    struct boot *boot;
    struct leases *leases;
    struct member *member;
    uint32_t heartbeat_ms, heartbeat_timeout_ms;
    int32_t default_retries;         /* re-runs after a rank failure when a submit says -1 */
    uint64_t fault_kill_after;       /* DEED_FAULT_KILL_AFTER_TASKS (tests): 0 = off */
    int32_t fault_kill_fin;          /* DEED_FAULT_KILL_IN_FINALIZE (tests): rank, or -1 */
    struct task *lineage_head, *lineage_tail;
    uint64_t lineage_bytes, lineage_max;
    _Atomic int finalizing;          /* past the finalize barriers */
    uint32_t lease_depth;            /* tasks in flight per lease */
    uint32_t lease_idle_us;          /* idle leases are returned after this */
    uint64_t local_load;             /* tasks handed to this rank's workers, not yet done */
    uint32_t place_rr;               /* placement round-robin cursor */
};

/* Thread-locals of the library: the initial-exec model (an offset from the thread pointer)
 * instead of the shared-library default, a __tls_get_addr call per access (~80 instructions
 * per remote task on the owner). They take a few bytes of the static TLS surplus that glibc
 * keeps for dlopen'ed libraries. */
#define DEED_TLS __thread __attribute__((tls_model("initial-exec")))

/* thread-local: the task running on this thread (NULL on driver threads) */
extern DEED_TLS struct task *tl_task;
extern DEED_TLS struct worker *tl_worker;

/* loop.c */
int loop_start(struct rt *rt);
void loop_join(struct rt *rt);
void loop_post(struct rt *rt, struct msg *m);
/* loop_post from a thread that will post again soon (a submitter, a worker with tasks left
 * in the ready ring): its pass may leave the outgoing batches for a later pass. */
void loop_post_defer(struct rt *rt, struct msg *m);
void loop_poll(void *rt); /* progress the loop if no one else does (multi-rank) */
/* A thread that drove the loop (loop_poll) is about to sleep: a napping loop thread takes
 * over now rather than at the end of its nap (multi-rank). */
void loop_rest(void *rt);

/* owner.c (loop thread only) */
struct obj *owner_create(struct rt *rt, objid_t id);
struct obj *owner_find(struct rt *rt, deed_ref_t ref);
void owner_maybe_free(struct rt *rt, struct obj *o);
void owner_set_value(struct rt *rt, struct obj *o, void *data, uint64_t size, uint8_t where);
void owner_set_error(struct rt *rt, struct obj *o, struct err *e);
void owner_free_all(struct rt *rt);
void owner_wake(struct rt *rt, struct obj *o);
/* lineage (owner.c): keep, detach, re-create */
static inline int row_lost(const struct obj *o, uint32_t me)
{
    return o->owner == me && o->state == OBJ_READY && o->where == WHERE_REMOTE && o->nlocs == 0;
}
void lineage_keep(struct rt *rt, struct task *t);
void lineage_done(struct rt *rt, struct task *t); /* end of a (re)run: keep or release */
/* The row's only copies are gone: re-run its task, or fail it (evicted / put). */
void owner_reconstruct(struct rt *rt, struct obj *o, uint32_t dead);
static inline int row_has_bytes(const struct obj *o)
{
    return o->state == OBJ_ERROR || (o->state == OBJ_READY && o->where != WHERE_REMOTE);
}
struct err *err_new(int status, int user_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void err_unref(struct err *e);
static inline struct err *err_ref(struct err *e)
{
    e->refs++;
    return e;
}
/* Free a value's bytes: an inline value (WHERE_INLINE: from value_inline_alloc, `size` its
 * size) or a store block. */
void value_free(struct rt *rt, void *data, uint64_t size, uint8_t where);
/* The bytes of an inline value of `size` (> 0) bytes: small ones from a cache (slab.h). */
void *value_inline_alloc(uint64_t size);
void wlist_add(struct wlist *l, struct waiter *w);
void wlist_del(struct wlist *l, struct waiter *w);

/* task.c (loop thread) */
void task_on_submit(struct rt *rt, struct task *t);
void task_on_done(struct rt *rt, struct task *t);
void task_dep_ready(struct rt *rt, struct task_dep *d, struct obj *row);
/* Link a task on its pending by-ref arguments; resolve it when none is pending. */
void task_resolve_deps(struct rt *rt, struct task *t);
/* Publish a finished task's returns (or its error) and drop its argument counts; for a
 * remote task, once its reply was decoded into t->rets / t->err. */
void task_finish(struct rt *rt, struct task *t);
void task_free(struct task *t);
/* Where a spec's by-value bytes start (16-byte aligned, after its arrays). */
static inline char *task_payload(struct task *t)
{
    return (char *)(((uintptr_t)(t->rets + t->nrets) + 15) & ~(uintptr_t)15);
}
void task_unref(struct task *t);            /* any thread: drop a ref of a queued task */
void task_run(struct rt *rt, struct task *t); /* run the body, post MSG_DONE */
/* Allocate a task spec with room for nargs args (value bytes: payload) and nrets returns. */
struct task *task_new(uint32_t nargs, uint32_t nrets, uint64_t payload);
/* Release what a task's returns hold (values, contained refs) without publishing them. */
void task_drop_returns(struct rt *rt, struct task *t, int loop_thread);

/* api.c (loop thread) */
void req_on_get(struct rt *rt, struct req *r);
void req_on_wait(struct rt *rt, struct req *r);
void req_on_cancel(struct rt *rt, struct req *r);
void req_get_fire(struct rt *rt, struct req *r, struct obj *row);
void req_wait_fire(struct rt *rt, struct wait_node *n);
void put_on_msg(struct rt *rt, struct put_msg *m);

/* value allocation shared by put and task returns (any thread) */
deed_status_t value_alloc(struct rt *rt, uint64_t size, void **data, uint8_t *where);

/* sched.c */
int sched_init(struct rt *rt);
void sched_fini(struct rt *rt);
void sched_push(struct rt *rt, struct task *t);   /* loop thread */
void sched_flush(struct rt *rt);                  /* loop thread */
void sched_stop(struct rt *rt);
void sched_block(struct rt *rt);                  /* a worker starts waiting in get */
void sched_unblock(struct rt *rt);
struct task *sched_take(struct rt *rt, int *holding); /* worker: next task, slot-limited */
void sched_idle_wait(struct rt *rt);              /* worker: wait for work or stop */

/* member.c (loop thread unless noted) */
int member_init(struct rt *rt, const uint32_t *pids, const uint64_t *hosts);
void member_fini(struct rt *rt);
void member_suspect_async(struct rt *rt, uint32_t r); /* any thread */
int member_is_dead(struct rt *rt, uint32_t r);
void member_mark_dead(struct rt *rt, uint32_t d);
int member_dispatch(struct rt *rt, uint32_t src, uint16_t type, struct rbuf *r);
void member_heard(struct rt *rt, uint32_t src);
void member_sent(struct rt *rt, uint32_t dst);
void member_poll(struct rt *rt);
void member_fin_enter(struct rt *rt, struct req *r);
int member_pidfd(struct rt *rt, uint32_t r);
/* Repair this rank's state after rank d was declared dead. */
void member_apply(struct rt *rt, uint32_t d);

/* task.c: resubmit a task whose executor died (same ids) */
void task_retry(struct rt *rt, struct task *t);

/* lease.c (loop thread) */
void lease_on_death(struct rt *rt, uint32_t d);
int lease_init(struct rt *rt);
void lease_fini(struct rt *rt);
int lease_enqueue(struct rt *rt, struct task *t);
void lease_task_done(struct rt *rt, struct task *t);
void lease_expire(struct rt *rt);
uint32_t lease_free_slots(struct rt *rt);
int lease_held(struct rt *rt);
void lease_stats(struct rt *rt, deed_stats_t *s);
int lease_dispatch_msg(struct rt *rt, uint32_t src, uint16_t type, struct rbuf *body);

/* task.c: run a placed task on this rank (pull missing argument bytes, then the workers) */
void task_run_here(struct rt *rt, struct task *t);

/* remote.c (loop thread) */
/* Push a resolved task to dst; -1 if an argument has no reachable copy any more. */
int remote_push(struct rt *rt, struct task *t, uint32_t dst, uint32_t lease);
int32_t remote_locality(struct rt *rt, struct task *t);
int remote_init(struct rt *rt);
void remote_fini(struct rt *rt);
int remote_dispatch(struct rt *rt, uint32_t src, uint16_t type, struct rbuf *body);
void remote_drop_contained(struct rt *rt, const deed_ref_t *refs, uint32_t n);
/* Make the bytes of a row local (pull or locate); the row's waiters fire when they are. */
void remote_fetch(struct rt *rt, struct obj *o);
/* Executor: a remote task's body finished: reply to its owner and drop it. */
void remote_task_done(struct rt *rt, struct task *t);
/* A locate request from another rank waits on this row. */
void remote_locate_fire(struct rt *rt, struct waiter *w, struct obj *o);
/* Called before a row is freed / when its counts drop: borrower and copy bookkeeping.
 * Returns 1 if the row must stay (protocol state pending). */
int remote_row_hold(struct rt *rt, struct obj *o);
void remote_row_freed(struct rt *rt, struct obj *o);
/* Find or create the row for a ref owned by another rank. */
struct obj *remote_borrow_row(struct rt *rt, deed_ref_t ref);
/* Retry pulls that waited for store space or rkeys. */
void remote_poll(struct rt *rt);

/* ctx.c */
struct rt *ctx_rt(deed_ctx_t *ctx, deed_status_t *rc);

#endif /* DEED_RT_H */
