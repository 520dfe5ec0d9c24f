/*
 * boot_slurm.c — the bootstraps of a Slurm step (see bootstrap.h and docs/slurm.md):
 *
 *   "slurm": srun without PMIx. rank = SLURM_PROCID, nranks = SLURM_STEP_NUM_TASKS (or
 *   SLURM_NTASKS). Rank 0 hosts the rendezvous server (rendezvous.c) in a background thread,
 *   listening on DEED_SLURM_PORT (default 20000 + (jobid * 16 + stepid) % 20000) on every
 *   address of its host; every rank, rank 0 included, is a "tcp" client (boot_tcp_client) of
 *   <first host of SLURM_STEP_NODELIST>:<port>. DEED_JOB_KEY is required: the server refuses
 *   a rank that presents another key. Rank 0's finalize keeps the server up until every rank
 *   said goodbye or failed (at most the boot timeout), so late ranks can still finalize.
 *
 *   "pmix": a process started by a PMIx server (srun --mpi=pmix, mpirun). PMIx_Init gives the
 *   rank, PMIX_JOB_SIZE the size; an all-gather round is PMIx_Put("deed.ag.<round>") +
 *   PMIx_Commit + PMIx_Fence + one PMIx_Get per rank; a barrier is a fence. libpmix is loaded
 *   with dlopen when first needed (DEED_PMIX_LIB, else libpmix.so.2, else libpmix.so), so
 *   libdeed does not depend on it; the few PMIx types used are declared below (dpmix_*) and
 *   checked against the real pmix.h at build time when meson finds PMIx (lib/mpi/meson.build
 *   compiles this file with -DDEED_PMIX_ABI_CHECK). The non-blocking calls are used and
 *   waited for with a deadline, so a fence that never completes fails after the boot timeout
 *   instead of hanging. When libpmix cannot be loaded and the Slurm variables are there,
 *   "pmix" falls back to "slurm".
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap.h"
#include "deed.h"
#include "log.h"
#include "rendezvous.h"

/* ---- Slurm environment helpers ------------------------------------------------------ */

static int parse_u64(const char *s, unsigned long long *out)
{
    char *end;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno || *end ? -1 : 0;
}

int boot_slurm_first_host(const char *list, char *out, size_t len)
{
    size_t n = 0;
    const char *p = list;

    if (!list || !out || len == 0)
        return -1;
    while (*p && *p != ',') {
        if (*p == '[') {
            /* the first value of the group: digits up to '-', ',' or ']' */
            const char *q = ++p;
            while (*q >= '0' && *q <= '9')
                q++;
            if (q == p || (*q != '-' && *q != ',' && *q != ']'))
                return -1;
            if (n + (size_t)(q - p) >= len)
                return -1;
            memcpy(out + n, p, (size_t)(q - p));
            n += (size_t)(q - p);
            p = strchr(q, ']');
            if (!p)
                return -1;
            p++;
            continue;
        }
        if (*p == ']' || (unsigned char)*p <= ' ')
            return -1;
        if (n + 1 >= len)
            return -1;
        out[n++] = *p++;
    }
    if (n == 0)
        return -1;
    out[n] = '\0';
    return 0;
}

int boot_slurm_port(const char *port_env, const char *jobid, const char *stepid,
                    uint16_t *port)
{
    unsigned long long v, job, step = 0;

    if (!port)
        return -1;
    if (port_env && *port_env) {
        if (parse_u64(port_env, &v) != 0 || v == 0 || v > 65535)
            return -1;
        *port = (uint16_t)v;
        return 0;
    }
    if (parse_u64(jobid, &job) != 0)
        return -1;
    if (stepid && *stepid && parse_u64(stepid, &step) != 0)
        step = 0xffff; /* "batch", "extern", ... */
    *port = (uint16_t)(20000u + (job * 16u + step) % 20000u);
    return 0;
}

static const char *env_first(const char *a, const char *b, const char *c)
{
    const char *v = getenv(a);
    if ((!v || !*v) && b)
        v = getenv(b);
    if ((!v || !*v) && c)
        v = getenv(c);
    return v && *v ? v : NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- "slurm": TCP rendezvous hosted by rank 0 --------------------------------------- */

struct slurm {
    struct boot *tcp;         /* this rank's client connection */
    struct rdv *rdv;          /* rank 0: the server */
    pthread_t thread;
    bool thread_started;
    int wake[2];              /* rank 0: wakes the server thread to stop */
    atomic_int stop;          /* ask the server thread to exit */
    atomic_int exited;        /* the server thread has exited */
    uint32_t rank, nranks, timeout_ms;
    bool failed;              /* a round failed: the job is over, finalize need not wait */
    char addr[300];
};

/* Rank 0's server thread: serve until every rank said goodbye or failed, or until asked. */
static void *server_main(void *arg)
{
    struct slurm *s = arg;
    struct pollfd *fds = NULL;
    int cap = 0;

    while (!atomic_load(&s->stop)) {
        int want, n, rc;

        if (rdv_finished(s->rdv) + rdv_failed(s->rdv) >= s->nranks)
            break;
        want = rdv_nfds(s->rdv) + 1;
        if (want > cap) {
            struct pollfd *nf = realloc(fds, (size_t)want * sizeof(*fds));
            if (!nf) {
                log_error("bootstrap: the rendezvous thread is out of memory");
                break;
            }
            fds = nf;
            cap = want;
        }
        fds[0] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
        n = rdv_pollfds(s->rdv, fds + 1, cap - 1);
        rc = poll(fds, (nfds_t)n + 1, 1000);
        if (rc < 0 && errno != EINTR) {
            log_error("bootstrap: the rendezvous thread: poll failed: %s", strerror(errno));
            break;
        }
        if (rc > 0 && rdv_poll(s->rdv, fds + 1, n) < 0) {
            log_error("bootstrap: the rendezvous at %s stopped (its listening socket failed)",
                      s->addr);
            break;
        }
    }
    free(fds);
    atomic_store(&s->exited, 1);
    return NULL;
}

static void slurm_free(struct slurm *s, struct boot *b)
{
    if (s->thread_started) {
        atomic_store(&s->stop, 1);
        if (write(s->wake[1], "x", 1) < 0) {
            /* the thread notices the flag within a second anyway */
        }
        pthread_join(s->thread, NULL);
    }
    if (s->rdv)
        rdv_destroy(s->rdv);
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    free(s);
    free(b);
}

static int slurm_init(uint32_t timeout_ms, struct boot **bp, uint32_t *rank, uint32_t *nranks)
{
    const char *procid = getenv("SLURM_PROCID");
    const char *ntasks = env_first("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", NULL);
    const char *nodes = env_first("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST");
    const char *jobid = env_first("SLURM_JOB_ID", "SLURM_JOBID", NULL);
    const char *stepid = env_first("SLURM_STEP_ID", "SLURM_STEPID", NULL);
    const char *port_env = getenv("DEED_SLURM_PORT");
    const char *keys = getenv("DEED_JOB_KEY");
    const char *me = getenv("SLURMD_NODENAME");
    unsigned long long r, n;
    uint8_t key[RDV_KEY_LEN];
    char host[256], origin[160];
    uint16_t port;
    struct slurm *s;
    struct boot *b;
    int rc;

    if (!bp || !rank || !nranks)
        return DEED_ERR_INVALID_ARG;
    *bp = NULL;
    if (parse_u64(ntasks, &n) != 0 || n == 0 || n > RDV_MAX_NRANKS) {
        log_error("bootstrap: slurm: SLURM_STEP_NUM_TASKS / SLURM_NTASKS='%s' is not a task "
                  "count (is this an srun step?)", ntasks ? ntasks : "");
        return DEED_ERR_BOOTSTRAP;
    }
    if (parse_u64(procid, &r) != 0 || r >= n) {
        log_error("bootstrap: slurm: SLURM_PROCID='%s' is not a rank of a %llu-task step",
                  procid ? procid : "", n);
        return DEED_ERR_BOOTSTRAP;
    }
    if (!keys || !*keys) {
        log_error("bootstrap: slurm: DEED_JOB_KEY is not set: under Slurm every rank needs the "
                  "same job key; export it before srun, e.g. export DEED_JOB_KEY=$(od -An -tx1 "
                  "-N16 /dev/urandom | tr -d ' \\n') (slurm/deed.sbatch does this)");
        return DEED_ERR_BOOTSTRAP;
    }
    if (strlen(keys) != 2 * RDV_KEY_LEN) {
        log_error("bootstrap: slurm: DEED_JOB_KEY is not 32 hex digits (%zu characters)",
                  strlen(keys));
        return DEED_ERR_BOOTSTRAP;
    }
    for (unsigned i = 0; i < RDV_KEY_LEN; i++) {
        int hi = hexval(keys[2 * i]), lo = hexval(keys[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            log_error("bootstrap: slurm: DEED_JOB_KEY is not 32 hex digits");
            return DEED_ERR_BOOTSTRAP;
        }
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    if (!nodes || boot_slurm_first_host(nodes, host, sizeof(host)) != 0) {
        log_error("bootstrap: slurm: cannot find rank 0's host: SLURM_STEP_NODELIST='%s' is not "
                  "a Slurm host list", nodes ? nodes : "");
        return DEED_ERR_BOOTSTRAP;
    }
    if (boot_slurm_port(port_env, jobid, stepid, &port) != 0) {
        if (port_env && *port_env)
            log_error("bootstrap: slurm: DEED_SLURM_PORT='%s' is not a port (1 to 65535)",
                      port_env);
        else
            log_error("bootstrap: slurm: SLURM_JOB_ID='%s' is not a job id (set DEED_SLURM_PORT "
                      "to choose the rendezvous port)", jobid ? jobid : "");
        return DEED_ERR_BOOTSTRAP;
    }

    b = calloc(1, sizeof(*b));
    s = calloc(1, sizeof(*s));
    if (!b || !s) {
        free(b);
        free(s);
        return DEED_ERR_NO_MEMORY;
    }
    b->ops = &boot_slurm_ops;
    b->impl = s;
    s->wake[0] = s->wake[1] = -1;
    s->rank = (uint32_t)r;
    s->nranks = (uint32_t)n;
    s->timeout_ms = timeout_ms ? timeout_ms : boot_default_timeout_ms();
    snprintf(s->addr, sizeof(s->addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
             (unsigned)port);
    snprintf(origin, sizeof(origin), "first host of SLURM_STEP_NODELIST, %s %u",
             port_env && *port_env ? "DEED_SLURM_PORT" : "port from SLURM_JOB_ID/SLURM_STEP_ID",
             (unsigned)port);

    if (s->rank == 0) {
        if (me && *me && strcmp(me, host) != 0) {
            log_error("bootstrap: slurm: rank 0 runs on %s but the first host of the step is %s, "
                      "where the other ranks look for the rendezvous: use the default (block) "
                      "task distribution, or PMIx (srun --mpi=pmix)", me, host);
            rc = DEED_ERR_BOOTSTRAP;
            goto fail;
        }
        rc = rdv_create(NULL, port, s->nranks, key, &s->rdv, NULL);
        if (rc != DEED_OK) {
            log_error("bootstrap: slurm: rank 0 cannot host the rendezvous on port %u of %s "
                      "(another step may hold it: set DEED_SLURM_PORT to a free port)",
                      (unsigned)port, host);
            goto fail;
        }
        if (pipe2(s->wake, O_CLOEXEC) != 0) {
            log_error("bootstrap: slurm: pipe: %s", strerror(errno));
            rc = DEED_ERR_BOOTSTRAP;
            goto fail;
        }
        if (pthread_create(&s->thread, NULL, server_main, s) != 0) {
            log_error("bootstrap: slurm: cannot start the rendezvous thread");
            rc = DEED_ERR_BOOTSTRAP;
            goto fail;
        }
        s->thread_started = true;
        log_debug("bootstrap: slurm: rank 0 hosts the rendezvous of %u ranks on port %u",
                  s->nranks, (unsigned)port);
    }
    memset(key, 0, sizeof(key));
    rc = boot_tcp_client(s->addr, origin, keys, s->rank, s->nranks, s->timeout_ms, &s->tcp);
    if (rc != DEED_OK)
        goto fail;
    *rank = s->rank;
    *nranks = s->nranks;
    *bp = b;
    return DEED_OK;

fail:
    memset(key, 0, sizeof(key));
    slurm_free(s, b);
    return rc;
}

static int slurm_allgatherv(struct boot *b, const void *mine, size_t len, void **all,
                            size_t **lens)
{
    struct slurm *s;

    if (!b)
        return DEED_ERR_INVALID_ARG;
    s = b->impl;
    int rc = s->tcp->ops->allgatherv(s->tcp, mine, len, all, lens);

    if (rc != DEED_OK)
        s->failed = true;
    return rc;
}

static int slurm_barrier(struct boot *b)
{
    struct slurm *s;

    if (!b)
        return DEED_ERR_INVALID_ARG;
    s = b->impl;
    int rc = s->tcp->ops->barrier(s->tcp);

    if (rc != DEED_OK)
        s->failed = true;
    return rc;
}

static void slurm_abort(struct boot *b, const char *msg)
{
    struct slurm *s;

    if (!b)
        return;
    s = b->impl;
    s->failed = true;
    s->tcp->ops->abort(s->tcp, msg);
}

static void slurm_fini(struct boot *b)
{
    struct slurm *s;

    if (!b)
        return;
    s = b->impl;
    if (s->tcp)
        s->tcp->ops->fini(s->tcp);
    s->tcp = NULL;
    if (s->thread_started && !s->failed) {
        /* keep serving until the other ranks said goodbye (or failed) */
        uint64_t deadline = now_ms() + s->timeout_ms;
        while (!atomic_load(&s->exited) && now_ms() < deadline)
            sleep_ms(5);
        if (!atomic_load(&s->exited))
            log_warn("bootstrap: slurm: rank 0 stops the rendezvous at %s after %g s although "
                     "not every rank has finalized", s->addr, s->timeout_ms / 1000.0);
    }
    slurm_free(s, b);
}

const struct boot_ops boot_slurm_ops = {
    .size = sizeof(struct boot_ops),
    .name = "slurm",
    .init = slurm_init,
    .allgatherv = slurm_allgatherv,
    .barrier = slurm_barrier,
    .abort = slurm_abort,
    .fini = slurm_fini,
};

/* ---- "pmix": PMIx client, loaded at run time ---------------------------------------- */

/* The subset of the PMIx ABI (pmix_common.h, PMIx v3/v4/v5) used here. */
#define DPMIX_SUCCESS 0
#define DPMIX_MAX_NSLEN 255
#define DPMIX_MAX_KEYLEN 511
#define DPMIX_RANK_WILDCARD (UINT32_MAX - 1)
#define DPMIX_BOOL 1
#define DPMIX_INT 6
#define DPMIX_UINT32 14
#define DPMIX_BYTE_OBJECT 27
#define DPMIX_GLOBAL 3
#define DPMIX_JOB_SIZE "pmix.job.size"
#define DPMIX_TIMEOUT "pmix.timeout"

typedef struct {
    char nspace[DPMIX_MAX_NSLEN + 1];
    uint32_t rank;
} dpmix_proc_t;

typedef struct {
    char *bytes;
    size_t size;
} dpmix_bo_t;

typedef struct {
    uint16_t type;
    union {
        bool flag;
        int integer;
        uint32_t uint32;
        dpmix_bo_t bo;
        void *ptr;
        char pad_[24]; /* the size of PMIx's union (its largest member, pmix_envar_t) */
    } data;
} dpmix_value_t;

typedef struct {
    char key[DPMIX_MAX_KEYLEN + 1];
    uint32_t flags;
    dpmix_value_t value;
} dpmix_info_t;

typedef void (*dpmix_op_cb)(int status, void *cbdata);
typedef void (*dpmix_value_cb)(int status, dpmix_value_t *kv, void *cbdata);

#ifdef DEED_PMIX_ABI_CHECK
/* Built only by lib/mpi/meson.build when PMIx is found: the declarations above must match. */
#include <pmix.h>
#include <stddef.h>
_Static_assert(sizeof(dpmix_proc_t) == sizeof(pmix_proc_t), "pmix_proc_t");
_Static_assert(offsetof(dpmix_proc_t, rank) == offsetof(pmix_proc_t, rank), "pmix_proc_t.rank");
_Static_assert(sizeof(dpmix_value_t) == sizeof(pmix_value_t), "pmix_value_t");
_Static_assert(offsetof(dpmix_value_t, data) == offsetof(pmix_value_t, data), "pmix_value_t");
_Static_assert(sizeof(dpmix_bo_t) == sizeof(pmix_byte_object_t), "pmix_byte_object_t");
_Static_assert(offsetof(dpmix_bo_t, size) == offsetof(pmix_byte_object_t, size), "bo.size");
_Static_assert(sizeof(dpmix_info_t) == sizeof(pmix_info_t), "pmix_info_t");
_Static_assert(offsetof(dpmix_info_t, flags) == offsetof(pmix_info_t, flags), "info.flags");
_Static_assert(offsetof(dpmix_info_t, value) == offsetof(pmix_info_t, value), "info.value");
_Static_assert(DPMIX_MAX_NSLEN == PMIX_MAX_NSLEN && DPMIX_MAX_KEYLEN == PMIX_MAX_KEYLEN, "len");
_Static_assert(DPMIX_RANK_WILDCARD == PMIX_RANK_WILDCARD, "PMIX_RANK_WILDCARD");
_Static_assert(DPMIX_BOOL == PMIX_BOOL && DPMIX_INT == PMIX_INT && DPMIX_UINT32 == PMIX_UINT32 &&
               DPMIX_BYTE_OBJECT == PMIX_BYTE_OBJECT && DPMIX_GLOBAL == PMIX_GLOBAL, "types");
_Static_assert(DPMIX_SUCCESS == PMIX_SUCCESS, "PMIX_SUCCESS");
#endif

static struct {
    pthread_once_t once;
    void *lib;
    char error[256];
    int (*init)(dpmix_proc_t *, dpmix_info_t *, size_t);
    int (*finalize)(const dpmix_info_t *, size_t);
    int (*abort_)(int, const char *, dpmix_proc_t *, size_t);
    int (*put)(uint8_t, const char *, dpmix_value_t *);
    int (*commit)(void);
    int (*fence_nb)(const dpmix_proc_t *, size_t, const dpmix_info_t *, size_t, dpmix_op_cb,
                    void *);
    int (*get_nb)(const dpmix_proc_t *, const char *, const dpmix_info_t *, size_t,
                  dpmix_value_cb, void *);
    const char *(*error_string)(int);
} px = {.once = PTHREAD_ONCE_INIT};

static void pmix_load(void)
{
    const char *env = getenv("DEED_PMIX_LIB");
    const char *names[] = {env && *env ? env : "libpmix.so.2", "libpmix.so"};

    for (size_t i = 0; i < 2 && !px.lib; i++) {
        /* RTLD_GLOBAL: libpmix's own plugins resolve its symbols */
        px.lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
        if (!px.lib)
            snprintf(px.error, sizeof(px.error), "%s", dlerror());
    }
    if (!px.lib)
        return;
#define SYM(field, name)                                                                        \
    do {                                                                                        \
        *(void **)&px.field = dlsym(px.lib, name);                                              \
        if (!px.field) {                                                                        \
            snprintf(px.error, sizeof(px.error), "libpmix lacks %s", name);                    \
            px.lib = NULL;                                                                      \
            return;                                                                             \
        }                                                                                       \
    } while (0)
    SYM(init, "PMIx_Init");
    SYM(finalize, "PMIx_Finalize");
    SYM(abort_, "PMIx_Abort");
    SYM(put, "PMIx_Put");
    SYM(commit, "PMIx_Commit");
    SYM(fence_nb, "PMIx_Fence_nb");
    SYM(get_nb, "PMIx_Get_nb");
    SYM(error_string, "PMIx_Error_string");
#undef SYM
}

static const char *pmix_err(int rc)
{
    const char *s = px.error_string ? px.error_string(rc) : NULL;
    return s ? s : "unknown PMIx error";
}

/* One non-blocking PMIx call: shared by the caller and the callback; freed by the last of
 * the two (the caller gives up at its deadline; the callback may still come later). */
struct pop {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs, done, status;
    uint16_t type;
    uint32_t u32;
    void *bytes;
    size_t size;
};

static struct pop *pop_new(void)
{
    struct pop *o = calloc(1, sizeof(*o));
    pthread_condattr_t ca;

    if (!o)
        return NULL;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&o->lock, NULL);
    o->refs = 2;
    return o;
}

static void pop_put(struct pop *o)
{
    int last;

    pthread_mutex_lock(&o->lock);
    last = --o->refs == 0;
    pthread_mutex_unlock(&o->lock);
    if (last) {
        pthread_cond_destroy(&o->cond);
        pthread_mutex_destroy(&o->lock);
        free(o->bytes);
        free(o);
    }
}

static void pop_finish(struct pop *o, int status)
{
    pthread_mutex_lock(&o->lock);
    o->status = status;
    o->done = 1;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
    pop_put(o);
}

static void on_op(int status, void *cbdata)
{
    pop_finish(cbdata, status);
}

static void on_value(int status, dpmix_value_t *kv, void *cbdata)
{
    struct pop *o = cbdata;

    if (status == DPMIX_SUCCESS && kv) {
        o->type = kv->type;
        if (kv->type == DPMIX_UINT32)
            o->u32 = kv->data.uint32;
        else if (kv->type == DPMIX_BYTE_OBJECT) {
            o->size = kv->data.bo.size;
            o->bytes = malloc(o->size ? o->size : 1);
            if (!o->bytes)
                status = -1;
            else if (o->size)
                memcpy(o->bytes, kv->data.bo.bytes, o->size);
        }
    }
    pop_finish(o, status);
}

/* Wait for o until deadline: 1 done, 0 timed out. Drops the caller's reference on timeout. */
static int pop_wait(struct pop *o, uint64_t deadline_ms)
{
    struct timespec ts = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000L};
    int done;

    pthread_mutex_lock(&o->lock);
    while (!o->done && pthread_cond_timedwait(&o->cond, &o->lock, &ts) != ETIMEDOUT) {
    }
    done = o->done;
    pthread_mutex_unlock(&o->lock);
    if (!done)
        pop_put(o);
    return done;
}

struct pmixb {
    dpmix_proc_t me;
    uint32_t nranks, round, timeout_ms;
    bool failed;
};

static void pmix_set_timeout(dpmix_info_t *info, uint32_t timeout_ms)
{
    memset(info, 0, sizeof(*info));
    snprintf(info->key, sizeof(info->key), "%s", DPMIX_TIMEOUT);
    info->value.type = DPMIX_INT;
    info->value.data.integer = (int)((timeout_ms + 999) / 1000);
}

/* Get key of rank (DPMIX_RANK_WILDCARD: job data) within the deadline; *op gets the result. */
static int pmix_get(struct pmixb *p, uint32_t rank, const char *key, uint64_t deadline,
                    const char *what, struct pop **op)
{
    dpmix_proc_t proc = p->me;
    dpmix_info_t info;
    struct pop *o = pop_new();
    int rc;

    *op = NULL;
    if (!o)
        return DEED_ERR_NO_MEMORY;
    proc.rank = rank;
    pmix_set_timeout(&info, p->timeout_ms);
    rc = px.get_nb(&proc, key, &info, 1, on_value, o);
    if (rc != DPMIX_SUCCESS) {
        log_error("bootstrap: pmix: PMIx_Get(%s) of rank %u failed: %s", key, rank, pmix_err(rc));
        o->refs = 1;
        pop_put(o);
        return DEED_ERR_BOOTSTRAP;
    }
    if (!pop_wait(o, deadline)) {
        log_error("bootstrap: pmix: no answer from the PMIx server after %g s "
                  "(DEED_BOOT_TIMEOUT) waiting for %s (key %s of rank %u, namespace %s)",
                  p->timeout_ms / 1000.0, what, key, rank, p->me.nspace);
        return DEED_ERR_TIMEOUT;
    }
    if (o->status != DPMIX_SUCCESS) {
        log_error("bootstrap: pmix: PMIx_Get(%s) of rank %u failed while waiting for %s: %s",
                  key, rank, what, pmix_err(o->status));
        pop_put(o);
        return DEED_ERR_BOOTSTRAP;
    }
    *op = o;
    return DEED_OK;
}

static int pmix_fence(struct pmixb *p, const char *what)
{
    dpmix_info_t info;
    struct pop *o = pop_new();
    int rc;

    if (!o)
        return DEED_ERR_NO_MEMORY;
    if (p->failed) {
        o->refs = 1;
        pop_put(o);
        log_error("bootstrap: pmix: %s after the bootstrap failed", what);
        return DEED_ERR_BOOTSTRAP;
    }
    pmix_set_timeout(&info, p->timeout_ms);
    rc = px.fence_nb(NULL, 0, &info, 1, on_op, o);
    if (rc != DPMIX_SUCCESS) {
        log_error("bootstrap: pmix: PMIx_Fence (%s) failed: %s", what, pmix_err(rc));
        o->refs = 1;
        pop_put(o);
        p->failed = true;
        return DEED_ERR_BOOTSTRAP;
    }
    if (!pop_wait(o, now_ms() + p->timeout_ms)) {
        log_error("bootstrap: pmix: the PMIx fence of %s (all %u ranks of namespace %s must "
                  "join it) did not complete after %g s (DEED_BOOT_TIMEOUT)", what, p->nranks,
                  p->me.nspace, p->timeout_ms / 1000.0);
        p->failed = true;
        return DEED_ERR_TIMEOUT;
    }
    rc = o->status;
    pop_put(o);
    if (rc != DPMIX_SUCCESS) {
        log_error("bootstrap: pmix: the PMIx fence of %s failed: %s", what, pmix_err(rc));
        p->failed = true;
        return DEED_ERR_BOOTSTRAP;
    }
    return DEED_OK;
}

static int pmix_init(uint32_t timeout_ms, struct boot **bp, uint32_t *rank, uint32_t *nranks)
{
    struct pmixb *p;
    struct boot *b;
    struct pop *o;
    int rc;

    if (!bp || !rank || !nranks)
        return DEED_ERR_INVALID_ARG;
    *bp = NULL;
    pthread_once(&px.once, pmix_load);
    if (!px.lib) {
        if (getenv("SLURM_PROCID") && getenv("SLURM_STEP_ID") && !getenv("DEED_BOOTSTRAP")) {
            log_warn("bootstrap: pmix: cannot load libpmix (%s); using the slurm bootstrap",
                     px.error);
            return boot_slurm_ops.init(timeout_ms, bp, rank, nranks);
        }
        log_error("bootstrap: pmix: cannot load libpmix (%s; DEED_PMIX_LIB names the library)",
                  px.error);
        return DEED_ERR_BOOTSTRAP;
    }
    b = calloc(1, sizeof(*b));
    p = calloc(1, sizeof(*p));
    if (!b || !p) {
        free(b);
        free(p);
        return DEED_ERR_NO_MEMORY;
    }
    b->ops = &boot_pmix_ops;
    b->impl = p;
    p->timeout_ms = timeout_ms ? timeout_ms : boot_default_timeout_ms();
    rc = px.init(&p->me, NULL, 0);
    if (rc != DPMIX_SUCCESS) {
        log_error("bootstrap: pmix: PMIx_Init failed: %s (no PMIx server: was the step started "
                  "with srun --mpi=pmix?)", pmix_err(rc));
        free(p);
        free(b);
        return DEED_ERR_BOOTSTRAP;
    }
    p->me.nspace[DPMIX_MAX_NSLEN] = '\0';
    rc = pmix_get(p, DPMIX_RANK_WILDCARD, DPMIX_JOB_SIZE, now_ms() + p->timeout_ms,
                  "the job size", &o);
    if (rc == DEED_OK && o->type != DPMIX_UINT32) {
        log_error("bootstrap: pmix: %s has type %u, not uint32", DPMIX_JOB_SIZE, o->type);
        pop_put(o);
        rc = DEED_ERR_BOOTSTRAP;
    }
    if (rc != DEED_OK) {
        px.finalize(NULL, 0);
        free(p);
        free(b);
        return rc;
    }
    p->nranks = o->u32;
    pop_put(o);
    if (p->nranks == 0 || p->me.rank >= p->nranks) {
        log_error("bootstrap: pmix: rank %u of a %u-rank job?", p->me.rank, p->nranks);
        px.finalize(NULL, 0);
        free(p);
        free(b);
        return DEED_ERR_BOOTSTRAP;
    }
    *rank = p->me.rank;
    *nranks = p->nranks;
    *bp = b;
    log_debug("bootstrap: pmix: rank %u of %u (namespace %s)", *rank, *nranks, p->me.nspace);
    return DEED_OK;
}

static int pmix_allgatherv(struct boot *b, const void *mine, size_t len, void **all,
                           size_t **lens)
{
    struct pmixb *p;
    dpmix_value_t v;
    char key[64], what[96];
    uint8_t *buf = NULL;
    size_t total = 0, *sizes = NULL;
    struct pop **res = NULL;
    uint64_t deadline;
    int rc;

    if (!b || !all || !lens || (len && !mine))
        return DEED_ERR_INVALID_ARG;
    *all = NULL;
    *lens = NULL;
    p = b->impl;
    if (p->failed) {
        log_error("bootstrap: pmix: all-gather after the bootstrap failed");
        return DEED_ERR_BOOTSTRAP;
    }
    snprintf(key, sizeof(key), "deed.ag.%u", p->round);
    snprintf(what, sizeof(what), "all-gather round %u", p->round);
    memset(&v, 0, sizeof(v));
    v.type = DPMIX_BYTE_OBJECT;
    v.data.bo.bytes = (char *)(uintptr_t)mine;
    v.data.bo.size = len;
    if ((rc = px.put(DPMIX_GLOBAL, key, &v)) != DPMIX_SUCCESS ||
        (rc = px.commit()) != DPMIX_SUCCESS) {
        log_error("bootstrap: pmix: PMIx_Put/Commit of %s failed: %s", key, pmix_err(rc));
        p->failed = true;
        return DEED_ERR_BOOTSTRAP;
    }
    if ((rc = pmix_fence(p, what)) != DEED_OK)
        return rc;
    res = calloc(p->nranks, sizeof(*res));
    sizes = malloc(p->nranks * sizeof(*sizes));
    if (!res || !sizes) {
        rc = DEED_ERR_NO_MEMORY;
        goto out;
    }
    deadline = now_ms() + p->timeout_ms;
    for (uint32_t r = 0; r < p->nranks; r++) {
        if ((rc = pmix_get(p, r, key, deadline, what, &res[r])) != DEED_OK)
            goto out;
        if (res[r]->type != DPMIX_BYTE_OBJECT) {
            log_error("bootstrap: pmix: %s of rank %u has type %u, not a byte object", key, r,
                      res[r]->type);
            rc = DEED_ERR_BOOTSTRAP;
            goto out;
        }
        sizes[r] = res[r]->size;
        total += res[r]->size;
    }
    buf = malloc(total ? total : 1);
    if (!buf) {
        rc = DEED_ERR_NO_MEMORY;
        goto out;
    }
    total = 0;
    for (uint32_t r = 0; r < p->nranks; r++) {
        if (sizes[r])
            memcpy(buf + total, res[r]->bytes, sizes[r]);
        total += sizes[r];
    }
    *all = buf;
    *lens = sizes;
    sizes = NULL;
    p->round++;
    rc = DEED_OK;
out:
    if (res)
        for (uint32_t r = 0; r < p->nranks; r++)
            if (res[r])
                pop_put(res[r]);
    free(res);
    free(sizes);
    if (rc != DEED_OK)
        p->failed = true;
    return rc;
}

static int pmix_barrier(struct boot *b)
{
    if (!b)
        return DEED_ERR_INVALID_ARG;
    return pmix_fence(b->impl, "a barrier");
}

static void pmix_abort(struct boot *b, const char *msg)
{
    struct pmixb *p;

    if (!b)
        return;
    p = b->impl;
    log_error("bootstrap: rank %u aborts the job: %s", p->me.rank, msg && *msg ? msg : "(no reason)");
    p->failed = true;
    px.abort_(1, msg ? msg : "", NULL, 0);
}

static void pmix_fini(struct boot *b)
{
    if (!b)
        return;
    px.finalize(NULL, 0);
    free(b->impl);
    free(b);
}

const struct boot_ops boot_pmix_ops = {
    .size = sizeof(struct boot_ops),
    .name = "pmix",
    .init = pmix_init,
    .allgatherv = pmix_allgatherv,
    .barrier = pmix_barrier,
    .abort = pmix_abort,
    .fini = pmix_fini,
};
