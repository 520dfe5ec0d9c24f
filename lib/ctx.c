/*
 * ctx.c — context lifetime: deed_init / deed_finalize and the table of context slots.
 *
 * A deed_ctx_t* points into a static array of slots that is never freed, so a call made
 * with a finalized context finds the slot marked dead and returns DEED_ERR_FINALIZED
 * instead of touching freed memory. A freed slot is reused only after every other slot has
 * been used once since (least recently finalized first), so a stale pointer keeps reporting
 * DEED_ERR_FINALIZED for as long as possible.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap.h"
#include "config.h"
#include "log.h"
#include "registry.h"
#include "rt.h"
#include "transport.h"
#include "worker.h"

#define MAX_CTX 256

enum { SLOT_FREE = 0, SLOT_RUNNING, SLOT_DEAD };

struct deed_ctx {
    _Atomic int state;
    struct rt *rt;
    uint64_t freed_serial;
};

static struct deed_ctx slots[MAX_CTX];
static uint64_t free_serial;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

struct rt *ctx_rt(deed_ctx_t *ctx, deed_status_t *rc)
{
    if (ctx == NULL) {
        *rc = DEED_ERR_INVALID_ARG;
        return NULL;
    }
    if (ctx < slots || ctx >= slots + MAX_CTX ||
        ((uintptr_t)ctx - (uintptr_t)slots) % sizeof(struct deed_ctx) != 0) {
        log_error("deed: the context pointer %p did not come from deed_init", (void *)ctx);
        *rc = DEED_ERR_INVALID_ARG;
        return NULL;
    }
    if (atomic_load_explicit(&ctx->state, memory_order_acquire) != SLOT_RUNNING) {
        *rc = DEED_ERR_FINALIZED;
        return NULL;
    }
    return ctx->rt;
}

static struct deed_ctx *slot_take(void)
{
    struct deed_ctx *best = NULL;
    pthread_mutex_lock(&slots_lock);
    for (int i = 0; i < MAX_CTX; i++) {
        struct deed_ctx *s = &slots[i];
        int st = atomic_load(&s->state);
        if (st == SLOT_FREE) {
            best = s;
            break;
        }
        if (st == SLOT_DEAD && (best == NULL || s->freed_serial < best->freed_serial))
            best = s;
    }
    if (best)
        atomic_store(&best->state, SLOT_FREE + 3); /* reserved */
    pthread_mutex_unlock(&slots_lock);
    return best;
}

static void job_key(uint64_t key[2])
{
    const char *s = getenv("DEED_JOB_KEY");
    if (s && *s) {
        /* any string: hashed into 128 bits */
        key[0] = 0xcbf29ce484222325ull;
        key[1] = 0x84222325cbf29ce4ull;
        for (; *s; s++) {
            key[0] = (key[0] ^ (unsigned char)*s) * 0x100000001b3ull;
            key[1] = (key[1] ^ (unsigned char)*s) * 0x100000001b3ull + key[0];
        }
        return;
    }
    if (getrandom(key, 2 * sizeof(uint64_t), 0) != 2 * sizeof(uint64_t)) {
        key[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        key[1] = (uint64_t)(uintptr_t)key ^ (uint64_t)clock();
    }
}

static void on_peer_failure(void *arg, uint32_t rank)
{
    struct rt *rt = arg;
    if (rank < rt->nranks && !rt->peers[rank].dead) {
        rt->peers[rank].dead = 1;
        if (atomic_load(&rt->finalizing))
            log_debug("rank %u closed its connection (job finalizing)", rank);
        else
            member_suspect_async(rt, rank);
    }
}

/* Multi-rank start: exchange transport addresses, connect, and check that every rank has
 * the same task table (the same binary). */
static deed_status_t join_job(struct rt *rt)
{
    const void *addr;
    size_t alen, *lens = NULL;
    void *all = NULL;
    deed_status_t rc;

    if ((rc = rt->tp_ops->address(rt->tp, &addr, &alen)) != DEED_OK)
        return rc;
    if ((rc = rt->boot->ops->allgatherv(rt->boot, addr, alen, &all, &lens)) != DEED_OK) {
        log_error("deed_init: exchanging transport addresses failed");
        return DEED_ERR_BOOTSTRAP;
    }
    /* Fault-tolerant bootstrap: a rank that died before contributing is left out of every
     * later round (empty contribution); the job starts with it dead (all ranks see the same
     * contributions, so they agree without talking). */
    uint8_t *gone = calloc(rt->nranks, 1);
    if (gone == NULL) {
        free(all);
        free(lens);
        return DEED_ERR_NO_MEMORY;
    }
    const char *p = all;
    for (uint32_t r = 0; r < rt->nranks; r++) {
        if (r != rt->rank && lens[r] == 0) {
            gone[r] = 1;
        } else if (r != rt->rank &&
                   (rc = rt->tp_ops->connect(rt->tp, r, p, lens[r])) != DEED_OK) {
            log_error("deed_init: cannot connect to rank %u: %s", r, deed_strerror(rc));
            break;
        }
        p += lens[r];
    }
    free(all);
    free(lens);
    if (rc != DEED_OK)
        goto out;
    /* process ids and hosts: same-host peers are watched through pidfds */
    struct {
        uint64_t host;
        uint32_t pid, pad;
    } me = {0, (uint32_t)getpid(), 0};
    char hn[256] = "";
    gethostname(hn, sizeof(hn) - 1);
    me.host = 0xcbf29ce484222325ull;
    for (const char *c = hn; *c; c++)
        me.host = (me.host ^ (unsigned char)*c) * 0x100000001b3ull;
    if ((rc = rt->boot->ops->allgatherv(rt->boot, &me, sizeof(me), &all, &lens)) != DEED_OK) {
        rc = DEED_ERR_BOOTSTRAP;
        goto out;
    }
    {
        uint32_t *pids = calloc(rt->nranks, sizeof(*pids));
        uint64_t *hosts = calloc(rt->nranks, sizeof(*hosts));
        const char *q = all;
        for (uint32_t r = 0; pids && hosts && r < rt->nranks; r++) {
            if (lens[r] == sizeof(me)) {
                memcpy(&hosts[r], q, 8);
                memcpy(&pids[r], q + 8, 4);
            } else if (r != rt->rank) {
                gone[r] = 1;
            }
            q += lens[r];
        }
        rc = (pids && hosts) ? member_init(rt, pids, hosts) : DEED_ERR_NO_MEMORY;
        free(pids);
        free(hosts);
        free(all);
        free(lens);
        if (rc != DEED_OK)
            goto out;
    }
    uint64_t mine[2] = {registry_count(), registry_digest()};
    if ((rc = rt->boot->ops->allgatherv(rt->boot, mine, sizeof(mine), &all, &lens)) != DEED_OK) {
        rc = DEED_ERR_BOOTSTRAP;
        goto out;
    }
    /* contributions are packed: an empty one (a rank gone) takes no room */
    const uint64_t *tabs = all, *t0 = NULL;
    for (uint32_t r = 0, off = 0; r < rt->nranks; r++) {
        if (lens[r] == 0 && r != rt->rank) {
            gone[r] = 1;
            continue;
        }
        const uint64_t *tr = tabs + off;
        off += 2;
        if (t0 == NULL)
            t0 = tr;
        if (lens[r] != sizeof(mine) || tr[0] != t0[0] || tr[1] != t0[1]) {
            log_error("deed_init: rank %u has a different task table (%llu tasks, digest "
                      "%016llx) than rank 0 (%llu tasks, digest %016llx): were the ranks "
                      "built from different binaries?",
                      r, (unsigned long long)tr[0], (unsigned long long)tr[1],
                      (unsigned long long)t0[0], (unsigned long long)t0[1]);
            rc = DEED_ERR_BOOTSTRAP;
            break;
        }
    }
    free(all);
    free(lens);
    if (rc == DEED_OK && gone[0]) {
        log_error("deed_init: rank 0 left during start-up: the job cannot start without it");
        rc = DEED_ERR_BOOTSTRAP;
    }
    for (uint32_t r = 0; rc == DEED_OK && r < rt->nranks; r++) {
        if (!gone[r])
            continue;
        log_warn("deed_init: rank %u left during start-up (died?): the job starts without it",
                 r);
        member_mark_dead(rt, r);
        rt->peers[r].dead = 1;
    }
out:
    free(gone);
    return rc;
}

static void rt_destroy(struct rt *rt)
{
    if (rt->store)
        store_destroy(rt->store);
    remote_fini(rt);
    lease_fini(rt);
    if (rt->tp)
        rt->tp_ops->fini(rt->tp);
    net_fini(rt);
    member_fini(rt);
    if (rt->boot)
        rt->boot->ops->fini(rt->boot);
    if (rt->topo_ok)
        topo_close(&rt->topo);
    free(rt->freelist);
    free(rt);
}

DEED_API deed_status_t deed_init(const deed_config_t *cfg_in, deed_ctx_t **ctx_out)
{
    deed_config_t cfg;
    deed_status_t rc;
    struct rt *rt = NULL;
    struct deed_ctx *slot = NULL;
    int loop_started = 0;

    if (ctx_out == NULL)
        return DEED_ERR_INVALID_ARG;
    *ctx_out = NULL;
    if (cfg_in) {
        if (cfg_in->size != sizeof(cfg)) {
            log_error("deed_init: cfg->size is %u, expected %zu (use deed_config_default)",
                      cfg_in->size, sizeof(cfg));
            return DEED_ERR_CONFIG;
        }
        cfg = *cfg_in;
    } else {
        deed_config_default(&cfg);
        if ((rc = deed_config_from_env(&cfg)) != DEED_OK)
            return rc;
    }
    if ((rc = config_validate(&cfg)) != DEED_OK)
        return rc;
    log_set_level(cfg.log_level);

    slot = slot_take();
    if (slot == NULL) {
        log_error("deed_init: more than %d live contexts in this process", MAX_CTX);
        return DEED_ERR_TOO_MANY;
    }
    rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        rc = DEED_ERR_NO_MEMORY;
        goto err;
    }
    rt->ctx = slot;
    rt->cfg = cfg;
    const struct boot_ops *bops = boot_select();
    if ((rc = bops->init(0, &rt->boot, &rt->rank, &rt->nranks)) != DEED_OK) {
        log_error("deed_init: bootstrap '%s' failed: %s", bops->name, deed_strerror(rc));
        rt->boot = NULL;
        rc = DEED_ERR_BOOTSTRAP;
        goto err;
    }
    log_set_rank(rt->nranks > 1 ? (int)rt->rank : -1);
    if (strcmp(cfg.transport, "auto") == 0)
        strcpy(cfg.transport, rt->nranks > 1 ? "ucx" : "local");
    rt->cfg = cfg;
    rt->inline_max = cfg.inline_max; /* 0 (auto): set from the transport below */
    rt->spin_ns = (uint64_t)cfg.spin_us * 1000ull;
    uint64_t key[2];
    job_key(key);
    rt->root = ids_root(key[0], key[1], rt->rank);
    if (objtab_init(&rt->objs, 1024) != 0) {
        rc = DEED_ERR_NO_MEMORY;
        goto err;
    }
    /* the driver's tasks' first returns: a ring of 16,384 (128 KiB), see objtab.h */
    if (objtab_set_seq(&rt->objs, rt->root.hi, rt->root.lo, 14) != 0)
        log_debug("deed_init: no memory for the object table's sequence ring; hash only");
    rt->topo_ok = topo_open(&rt->topo) == DEED_OK;
    if (!rt->topo_ok)
        log_warn("deed_init: hwloc topology unavailable; workers are not pinned");

    rt->tp_ops = tp_find(cfg.transport);
    if (rt->tp_ops == NULL) {
        log_error("deed_init: a %u-rank job needs a network transport; this build has: %s",
                  rt->nranks, tp_names());
        rc = DEED_ERR_CONFIG;
        goto err;
    }
    rt->lease_depth = 32;
    rt->lease_idle_us = 2000;
    rt->heartbeat_ms = cfg.heartbeat_ms;
    rt->heartbeat_timeout_ms = cfg.heartbeat_timeout_ms;
    rt->default_retries = (int32_t)cfg.max_retries;
    rt->lineage_max = cfg.lineage_max;
    const char *fk = getenv("DEED_FAULT_KILL_AFTER_TASKS");
    rt->fault_kill_after = fk ? strtoull(fk, NULL, 10) : 0;
    fk = getenv("DEED_FAULT_KILL_IN_FINALIZE"); /* tests: this rank dies between the rounds */
    rt->fault_kill_fin = fk ? (int32_t)strtol(fk, NULL, 10) : -1;
    if (rt->nranks > 1 && ((rc = net_init(rt)) != DEED_OK || (rc = remote_init(rt)) != DEED_OK ||
                           (rc = lease_init(rt)) != DEED_OK))
        goto err;
    struct tp_params tpp = {.rank = rt->rank,
                            .nranks = rt->nranks,
                            .am_cb = net_on_am,
                            .failure_cb = on_peer_failure,
                            .cb_arg = rt};
    if ((rc = rt->tp_ops->init(&tpp, &rt->tp)) != DEED_OK) {
        log_error("deed_init: transport '%s' failed to start: %s", cfg.transport,
                  deed_strerror(rc));
        rt->tp = NULL;
        goto err;
    }
    if (rt->inline_max == 0)
        rt->inline_max = rt->tp_ops->eager_limit(rt->tp);
    struct store_params sp = {
        .size = cfg.store_size,
        .numa_node = -1,
        .topology = rt->topo_ok ? rt->topo.topology : NULL,
        .pin = 1,
        .tp_ops = rt->tp_ops,
        .tp = rt->tp,
    };
    if (rt->topo_ok) {
        struct topo_plan plan;
        if (topo_plan_workers(&rt->topo, 1, &plan) == DEED_OK) {
            sp.numa_node = plan.numa_node;
            topo_plan_free(&plan);
        }
    }
    if ((rc = store_create(&sp, &rt->store)) != DEED_OK) {
        log_error("deed_init: cannot create the %llu-byte store (DEED_STORE_SIZE)",
                  (unsigned long long)cfg.store_size);
        rt->store = NULL;
        goto err;
    }
    if (rt->nranks > 1 && (rc = join_job(rt)) != DEED_OK)
        goto err;
    if ((rc = loop_start(rt)) != DEED_OK)
        goto err;
    loop_started = 1;
    slot->rt = rt;
    if ((rc = sched_init(rt)) != DEED_OK)
        goto err;
    atomic_store_explicit(&slot->state, SLOT_RUNNING, memory_order_release);
    if (rt->nranks > 1 && rt->boot->ops->barrier(rt->boot) != DEED_OK) {
        log_error("deed_init: the start barrier failed (another rank failed to start?)");
        /* running already: finalize tears it down */
        deed_finalize(slot);
        return DEED_ERR_BOOTSTRAP;
    }
    log_info("deed_init: rank %u of %u, %u workers, store %llu MiB, transport %s", rt->rank,
             rt->nranks, rt->sched.nslots, (unsigned long long)(cfg.store_size >> 20),
             cfg.transport);
    *ctx_out = slot;
    return DEED_OK;
err:
    if (rt) {
        if (rt->sched.threads) {
            sched_stop(rt);
            sched_fini(rt);
        }
        if (loop_started)
            loop_join(rt);
        owner_free_all(rt);
        rt_destroy(rt);
    }
    pthread_mutex_lock(&slots_lock);
    slot->rt = NULL;
    slot->freed_serial = ++free_serial;
    atomic_store(&slot->state, SLOT_DEAD);
    pthread_mutex_unlock(&slots_lock);
    return rc;
}

DEED_API deed_status_t deed_finalize(deed_ctx_t *ctx)
{
    deed_status_t rc;
    struct rt *rt = ctx_rt(ctx, &rc);
    if (rt == NULL)
        return rc;
    if (tl_worker != NULL || tl_task != NULL) {
        log_error("deed_finalize: called from inside a task");
        return DEED_ERR_IN_TASK;
    }
    /* 1. let every submitted task finish */
    struct req q;
    memset(&q, 0, sizeof(q));
    completion_init(&q.done);
    q.h.type = MSG_QUIESCE;
    loop_post(rt, &q.h);
    completion_wait(&q.done, 1, 0, rt->spin_ns);
    if (rt->nranks > 1) {
        /* every rank's own tasks are done: nobody submits any more; the loop thread keeps
         * serving peers until every live rank got here (a barrier over the transport, run
         * by rank 0's membership: no timeout, and dead ranks do not hold it up), then once
         * more for trailing messages */
        for (uint32_t round = 1; round <= 2; round++) {
            struct req f;
            memset(&f, 0, sizeof(f));
            completion_init(&f.done);
            f.h.type = MSG_FIN;
            f.n = round;
            loop_post(rt, &f.h);
            completion_wait(&f.done, 1, 0, rt->spin_ns);
            atomic_store(&rt->finalizing, 1); /* peers leaving from now on is expected */
            if (round == 1 && rt->fault_kill_fin == (int32_t)rt->rank) {
                log_warn("deed_finalize: killing this rank between the finalize rounds "
                         "(DEED_FAULT_KILL_IN_FINALIZE)");
                raise(SIGKILL);
            }
        }
    }
    /* 2. no more calls */
    int expected = SLOT_RUNNING;
    if (!atomic_compare_exchange_strong(&ctx->state, &expected, SLOT_FREE + 4))
        return DEED_ERR_FINALIZED; /* another thread finalized meanwhile */
    /* 3. stop workers, then the loop; free everything */
    sched_stop(rt);
    loop_join(rt);
    /* messages posted after the loop's last drain (e.g. releases) */
    struct mpsc_node *n;
    while ((n = mpsc_pop(&rt->inbox)) != NULL) {
        struct msg *m = (struct msg *)n;
        if (m->type == MSG_RELEASE || m->type == MSG_RELEASE_N || m->type == MSG_HOLD ||
            m->type == MSG_UNPIN)
            free(m);
    }
    sched_fini(rt);
    owner_free_all(rt);
    rt_destroy(rt);
    pthread_mutex_lock(&slots_lock);
    ctx->rt = NULL;
    ctx->freed_serial = ++free_serial;
    atomic_store(&ctx->state, SLOT_DEAD);
    pthread_mutex_unlock(&slots_lock);
    return DEED_OK;
}

DEED_API int deed_rank(deed_ctx_t *ctx)
{
    deed_status_t rc = DEED_OK;
    struct rt *rt = ctx_rt(ctx, &rc);
    return rt ? (int)rt->rank : rc;
}

DEED_API int deed_nranks(deed_ctx_t *ctx)
{
    deed_status_t rc = DEED_OK;
    struct rt *rt = ctx_rt(ctx, &rc);
    return rt ? (int)rt->nranks : rc;
}
