/*
 * deed.h — public API of deed, a library of distributed futures with ownership.
 *
 * This header is the whole public surface of the core library. Everything hangs off an
 * explicit context (deed_ctx_t); there is no global runtime state besides the process-wide
 * task registry, which is filled at load time so every rank of a job agrees on it.
 *
 * Threading: every function may be called from any thread (the application's threads and
 * running task bodies alike) unless its documentation says otherwise. API calls are posted
 * to the rank's event-loop thread, which owns all runtime state.
 *
 * Errors: every function that can fail returns a deed_status_t (0 = DEED_OK, negative =
 * error); deed_strerror() gives the text for every code.
 */
#ifndef DEED_H
#define DEED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks the functions exported by libdeed. */
#if defined(__GNUC__)
#define DEED_API __attribute__((visibility("default")))
#else
#define DEED_API
#endif

#define DEED_VERSION_MAJOR 0
#define DEED_VERSION_MINOR 1
#define DEED_VERSION_PATCH 0

/* ------------------------------------------------------------------------------------------ */
/* Status codes                                                                               */
/* ------------------------------------------------------------------------------------------ */

/**
 * The one list of status codes: X(name, value, text). deed_status_t and deed_strerror() are
 * both generated from it, so they cannot drift apart.
 */
#define DEED_STATUS_LIST(X)                                                                      \
    X(DEED_OK, 0, "success")                                                                     \
    X(DEED_ERR_INVALID_ARG, -1, "invalid argument (NULL pointer, bad size or bad count)")        \
    X(DEED_ERR_NO_MEMORY, -2, "out of memory")                                                   \
    X(DEED_ERR_INVALID_REF, -3, "reference is null, released or unknown to this rank")           \
    X(DEED_ERR_UNKNOWN_TASK, -4, "no task registered under that name or id")                     \
    X(DEED_ERR_TIMEOUT, -5, "timed out")                                                         \
    X(DEED_ERR_TASK_FAILED, -6, "the task that produces this object failed")                     \
    X(DEED_ERR_TOO_SMALL, -7, "buffer too small for the object")                                 \
    X(DEED_ERR_FINALIZED, -8, "context is finalized or was never initialized")                   \
    X(DEED_ERR_CONFIG, -9, "invalid configuration value")                                        \
    X(DEED_ERR_STORE_FULL, -10, "object store is full")                                          \
    X(DEED_ERR_EXISTS, -11, "already exists (task name or id registered twice)")                 \
    X(DEED_ERR_NOT_IN_TASK, -12, "call is only valid inside a running task")                     \
    X(DEED_ERR_IN_TASK, -13, "call is not allowed inside a running task")                        \
    X(DEED_ERR_TRANSPORT, -14, "transport error")                                                \
    X(DEED_ERR_OWNER_DIED, -15, "the owner of this object died")                                 \
    X(DEED_ERR_OBJECT_LOST, -16, "object lost and cannot be reconstructed")                      \
    X(DEED_ERR_TOO_MANY, -17, "too many contexts, threads, arguments or returns")                \
    X(DEED_ERR_INTERNAL, -18, "internal error (a bug in deed; please report it)")                \
    X(DEED_ERR_UNSUPPORTED, -19, "not supported by this build or transport")                     \
    X(DEED_ERR_NOT_READY, -20, "object not ready yet")                                           \
    X(DEED_ERR_BOOTSTRAP, -21, "bootstrap failed")

#define DEED__STATUS_ENUM(name, value, text) name = value,
/** Status codes returned by every fallible call (0 = success, negative = error). */
typedef enum deed_status { DEED_STATUS_LIST(DEED__STATUS_ENUM) DEED__STATUS_LAST } deed_status_t;
#undef DEED__STATUS_ENUM

/**
 * Text for a status code.
 * @param status any value; unknown values give "unknown status code".
 * @return a static string, never NULL.
 */
DEED_API const char *deed_strerror(int status);

/* ------------------------------------------------------------------------------------------ */
/* Context and configuration                                                                  */
/* ------------------------------------------------------------------------------------------ */

/** A rank's runtime. Opaque; created by deed_init(), destroyed by deed_finalize(). */
typedef struct deed_ctx deed_ctx_t;

/** Log levels for deed_config_t::log_level and DEED_LOG. */
typedef enum deed_log_level {
    DEED_LOG_ERROR = 0,
    DEED_LOG_WARN = 1,
    DEED_LOG_INFO = 2,
    DEED_LOG_DEBUG = 3
} deed_log_level_t;

/**
 * Runtime configuration. Fill with deed_config_default(), optionally overlay the DEED_*
 * environment with deed_config_from_env(), change fields, pass to deed_init().
 *
 * | field         | variable            | allowed values                       | default          |
 * |---------------|---------------------|--------------------------------------|------------------|
 * | num_workers   | DEED_WORKERS        | 0 (one per core of the cpuset), 1-1024 | 0              |
 * | max_threads   | DEED_MAX_THREADS    | num_workers..65536                   | 4096             |
 * | store_size    | DEED_STORE_SIZE     | 1M..1T, suffix K/M/G/T (binary)      | 256M             |
 * | inline_max    | DEED_INLINE_MAX     | 0 (auto), 1..1M, suffix K/M          | 0 (auto)         |
 * | pin_workers   | DEED_PIN            | 0/1, yes/no, true/false, on/off      | 1                |
 * | spin_us       | DEED_SPIN_US        | 0..1000000                           | 50               |
 * | stack_size    | DEED_STACK_SIZE     | 64K..1G                              | 8M               |
 * | log_level     | DEED_LOG            | error, warn, info, debug             | warn             |
 * | transport     | DEED_TRANSPORT      | auto, local, ucx (as built)          | auto             |
 * | heartbeat_ms  | DEED_HEARTBEAT_MS   | 10..60000                            | 200              |
 * | heartbeat_timeout_ms | DEED_HEARTBEAT_TIMEOUT_MS | 0 (off), 100..3600000 | 30000        |
 * | max_retries   | DEED_MAX_RETRIES    | 0..1000 (re-runs after a rank died)  | 3                |
 * | lineage_max   | DEED_LINEAGE_MAX    | 0 (no lineage)..1T, suffix K/M/G/T   | 256M             |
 */
typedef struct deed_config {
    uint32_t size;          /**< sizeof(deed_config_t); set by deed_config_default() */
    uint32_t num_workers;   /**< worker threads running task bodies; 0 = one per core */
    uint32_t max_threads;   /**< cap on worker threads incl. spares for tasks blocked in get */
    uint32_t spin_us;       /**< how long idle threads spin before sleeping */
    uint64_t store_size;    /**< bytes of pinned store per rank */
    uint64_t inline_max;    /**< objects up to this size live inline in the owner's table;
                                 0 = the transport's eager limit (64 KiB for one rank) */
    uint64_t stack_size;    /**< stack size of worker threads */
    int pin_workers;        /**< pin each worker to one core of the rank's cpuset (hwloc) */
    deed_log_level_t log_level; /**< messages at or below this level go to stderr */
    char transport[32];     /**< transport name; "auto": local for one rank, ucx for more */
    uint32_t heartbeat_ms;  /**< multi-rank: heartbeat period to and from rank 0 */
    uint32_t heartbeat_timeout_ms; /**< silence after which a rank is suspected; 0 = off */
    uint32_t max_retries;   /**< default re-runs of a task whose executor died */
    uint32_t pad_;
    uint64_t lineage_max;   /**< bytes of task specs kept to re-create lost objects */
} deed_config_t;

/**
 * Fill @p cfg with the defaults (no environment).
 * @return DEED_OK, or DEED_ERR_INVALID_ARG if @p cfg is NULL.
 */
DEED_API deed_status_t deed_config_default(deed_config_t *cfg);

/**
 * Overlay the DEED_* environment variables on @p cfg. A bad value is logged with the
 * variable's name and the allowed values, and @p cfg is left unchanged.
 * @return DEED_OK, DEED_ERR_INVALID_ARG (NULL), or DEED_ERR_CONFIG.
 */
DEED_API deed_status_t deed_config_from_env(deed_config_t *cfg);

/**
 * Start this rank's runtime: event loop, worker threads, store.
 * @param cfg the configuration, or NULL for defaults overlaid with the environment.
 *        A non-NULL @p cfg is used as given (call deed_config_from_env() yourself to
 *        honour the environment).
 * @param ctx receives the new context.
 * @return DEED_OK, DEED_ERR_INVALID_ARG, DEED_ERR_CONFIG (the log names the field or
 *         variable and the allowed values), DEED_ERR_NO_MEMORY, DEED_ERR_TOO_MANY
 *         (too many live contexts in this process), DEED_ERR_TRANSPORT.
 */
DEED_API deed_status_t deed_init(const deed_config_t *cfg, deed_ctx_t **ctx);

/**
 * Wait for every submitted task to finish, then stop the runtime and free everything it
 * holds. Every later call on @p ctx returns DEED_ERR_FINALIZED (also a second finalize).
 * Must not be called from inside a task (DEED_ERR_IN_TASK).
 */
DEED_API deed_status_t deed_finalize(deed_ctx_t *ctx);

/** This rank's number (0 for a one-rank job); negative status on error. */
DEED_API int deed_rank(deed_ctx_t *ctx);
/** Number of ranks of the job; negative status on error. */
DEED_API int deed_nranks(deed_ctx_t *ctx);

/* ------------------------------------------------------------------------------------------ */
/* References (futures)                                                                       */
/* ------------------------------------------------------------------------------------------ */

/**
 * A reference to an object that may not exist yet (a future). It is a plain value of
 * 24 bytes that carries the object's id and its owner rank, so submit returns it without
 * waiting for the runtime. Every ref value the API hands out counts once: release it with
 * deed_ref_release() (or pass ownership of the count where a function says so); copy a
 * counted ref with deed_ref_dup(). Refs seen inside a deed_view_t or a task's arguments
 * are borrowed: valid while the view or the task lasts, dup them to keep them.
 */
typedef struct deed_ref {
    uint64_t id_hi;   /**< creating task id, high word (opaque) */
    uint64_t id_lo;   /**< creating task id, low word (opaque) */
    uint32_t index;   /**< return index (puts use indices after the returns) */
    uint32_t owner;   /**< rank that owns the object's metadata */
} deed_ref_t;

/** The null ref (all zero); never names an object. */
#define DEED_REF_NULL ((deed_ref_t){0, 0, 0, 0})

/** 1 if @p r is the null ref. */
static inline int deed_ref_is_null(deed_ref_t r)
{
    return (r.id_hi | r.id_lo) == 0;
}

/** 1 if @p a and @p b name the same object. */
static inline int deed_ref_equal(deed_ref_t a, deed_ref_t b)
{
    return a.id_hi == b.id_hi && a.id_lo == b.id_lo && a.index == b.index &&
           a.owner == b.owner;
}

/**
 * Count one more holder of @p ref; @p out receives a ref to release separately (the same
 * value). @return DEED_OK, DEED_ERR_INVALID_REF (null, released or unknown),
 * DEED_ERR_FINALIZED, DEED_ERR_INVALID_ARG.
 */
DEED_API deed_status_t deed_ref_dup(deed_ctx_t *ctx, deed_ref_t ref, deed_ref_t *out);

/**
 * Drop one count of @p ref. When the last holder anywhere drops it (and no task, view or
 * outer object still needs it), the object and its store bytes are freed.
 * The release is asynchronous: a null ref or a finalized context is reported here; a ref
 * that was already released is logged as misuse and counted in deed_stats_t::misuse.
 */
DEED_API deed_status_t deed_ref_release(deed_ctx_t *ctx, deed_ref_t ref);

/** Release @p n refs (same semantics as deed_ref_release). */
DEED_API deed_status_t deed_ref_release_n(deed_ctx_t *ctx, const deed_ref_t *refs, uint32_t n);

/* ------------------------------------------------------------------------------------------ */
/* Tasks                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/** Task identifier: a 64-bit hash of the task's name, equal on every rank. Never 0. */
typedef uint64_t deed_task_id_t;

/** How an argument is passed to a task. */
typedef enum deed_arg_kind {
    DEED_ARG_VALUE = 1,  /**< bytes copied at submit */
    DEED_ARG_REF = 2,    /**< the task receives the referenced object's bytes (and its refs) */
    DEED_ARG_FUTURE = 3  /**< the task receives the ref itself and may get() it (borrower) */
} deed_arg_kind_t;

/** One argument given to deed_submit(). Build it with DEED_VAL / DEED_REF / DEED_FUT. */
typedef struct deed_arg_in {
    deed_arg_kind_t kind;
    const void *data;  /**< DEED_ARG_VALUE: bytes to copy */
    size_t size;       /**< DEED_ARG_VALUE: number of bytes */
    deed_ref_t ref;    /**< DEED_ARG_REF / DEED_ARG_FUTURE: the ref (not consumed) */
} deed_arg_in_t;

/** Pass @p size bytes at @p ptr by value. */
#define DEED_VAL(ptr, sz) ((deed_arg_in_t){DEED_ARG_VALUE, (ptr), (sz), DEED_REF_NULL})
/** Pass the object behind @p r: the task sees its bytes. */
#define DEED_REF(r) ((deed_arg_in_t){DEED_ARG_REF, NULL, 0, (r)})
/** Pass @p r itself: the task sees the ref and becomes a borrower. */
#define DEED_FUT(r) ((deed_arg_in_t){DEED_ARG_FUTURE, NULL, 0, (r)})

/** One argument as a running task sees it. Valid until the task body returns. */
typedef struct deed_arg {
    deed_arg_kind_t kind;
    const void *data;        /**< VALUE and REF: the bytes (zero-copy for REF) */
    size_t size;             /**< VALUE and REF: number of bytes */
    const deed_ref_t *refs;  /**< REF: refs contained in the object (borrowed) */
    uint32_t nrefs;          /**< REF: number of contained refs */
    deed_ref_t ref;          /**< REF and FUTURE: the ref (borrowed; dup to keep it) */
} deed_arg_t;

/** A running task, as its body sees it. Opaque. */
typedef struct deed_task deed_task_t;

/**
 * A task body. Returns 0 on success; any other value fails the task: all its returns become
 * error objects (get returns DEED_ERR_TASK_FAILED with this value as the error code and the
 * message set with deed_task_fail(), or a default one).
 */
typedef int (*deed_task_fn_t)(deed_task_t *task, const deed_arg_t *args, uint32_t nargs);

/**
 * Register @p fn under @p name, process-wide. Normally called at load time by
 * DEED_REGISTER(), so every rank of a job built from the same binary has the same table.
 * @param id receives the task id (may be NULL).
 * @return DEED_OK, DEED_ERR_INVALID_ARG (NULL, empty or over 255 bytes), DEED_ERR_EXISTS
 *         (name taken by another function, or a hash collision), DEED_ERR_TOO_MANY.
 *         Registering the same name with the same function twice is DEED_OK.
 */
DEED_API deed_status_t deed_task_register(const char *name, deed_task_fn_t fn, deed_task_id_t *id);

/**
 * Look up a registered task by name.
 * @return the task id, or 0 if no task has that name (or @p name is NULL).
 */
DEED_API deed_task_id_t deed_task_id(const char *name);

/** Name of a registered task, or NULL. */
DEED_API const char *deed_task_name(deed_task_id_t id);

#define DEED__CAT2(a, b) a##b
#define DEED__CAT(a, b) DEED__CAT2(a, b)
/**
 * Register function @p fn under the name @p name (a string) when the program loads.
 * Use at file scope after the function is declared.
 */
#define DEED_REGISTER_AS(fn, name)                                                            \
    __attribute__((constructor)) static void DEED__CAT(deed__register_, fn)(void)          \
    {                                                                                         \
        (void)deed_task_register((name), (fn), NULL);                                         \
    }
/** Register function @p fn under its own name when the program loads. */
#define DEED_REGISTER(fn) DEED_REGISTER_AS(fn, #fn)

/** Per-submit options (pass NULL to deed_submit_opts for the defaults). */
typedef struct deed_submit_opts {
    uint32_t size;        /**< sizeof(deed_submit_opts_t) */
    int32_t max_retries;  /**< re-runs after a rank failure; -1 = runtime default */
    int32_t rank;         /**< run on this rank (placement hint); -1 = anywhere. A rank that
                               is out of range is DEED_ERR_INVALID_ARG at submit */
} deed_submit_opts_t;

/** Default options: anywhere, default retries. */
#define DEED_SUBMIT_OPTS_INIT {sizeof(deed_submit_opts_t), -1, -1}

/**
 * Submit task @p task with @p nargs arguments; @p rets receives @p nrets refs (futures), one
 * per return, each counted once (release them). Returns immediately.
 * A REF or FUTURE argument that is released or unknown makes the task's returns error
 * objects (DEED_ERR_INVALID_REF), as does a REF argument whose object failed (the error is
 * propagated: same code and message, and the task does not run). A FUTURE argument is not
 * waited for: the task runs and sees the failure when it gets the ref.
 * @return DEED_OK, DEED_ERR_INVALID_ARG (NULL arrays with non-zero counts, bad kind, NULL
 *         data with non-zero size), DEED_ERR_INVALID_REF (a null ref argument),
 *         DEED_ERR_UNKNOWN_TASK, DEED_ERR_TOO_MANY (over 65535 args or 255 returns),
 *         DEED_ERR_FINALIZED, DEED_ERR_NO_MEMORY.
 */
DEED_API deed_status_t deed_submit(deed_ctx_t *ctx, deed_task_id_t task, const deed_arg_in_t *args,
                          uint32_t nargs, deed_ref_t *rets, uint32_t nrets);

/** deed_submit() with options. */
DEED_API deed_status_t deed_submit_opts(deed_ctx_t *ctx, deed_task_id_t task, const deed_arg_in_t *args,
                               uint32_t nargs, deed_ref_t *rets, uint32_t nrets,
                               const deed_submit_opts_t *opts);

/** deed_submit() by task name (hashes the name per call; prefer ids on hot paths). */
DEED_API deed_status_t deed_submit_name(deed_ctx_t *ctx, const char *name, const deed_arg_in_t *args,
                               uint32_t nargs, deed_ref_t *rets, uint32_t nrets);

/* ---- called by a running task body ---- */

/** The context the task runs in (to submit nested tasks, put, get). */
DEED_API deed_ctx_t *deed_task_ctx(deed_task_t *task);

/** Number of returns the task was submitted with. */
DEED_API uint32_t deed_task_nreturns(deed_task_t *task);

/**
 * Set return @p i to a copy of @p size bytes at @p data. A return never set is an empty
 * object. Setting a return twice replaces it.
 * @return DEED_OK, DEED_ERR_INVALID_ARG (i out of range, NULL data with size > 0),
 *         DEED_ERR_STORE_FULL, DEED_ERR_NO_MEMORY.
 */
DEED_API deed_status_t deed_task_return(deed_task_t *task, uint32_t i, const void *data, size_t size);

/**
 * Set return @p i to an object of @p size bytes written in place (zero-copy: large objects
 * are allocated straight in the store). @p buf receives the memory to fill before the task
 * body returns.
 */
DEED_API deed_status_t deed_task_return_alloc(deed_task_t *task, uint32_t i, size_t size, void **buf);

/**
 * Set return @p i to a copy of @p size bytes plus @p nrefs refs contained in it. The refs are
 * not consumed; the object keeps the inner objects alive as long as it lives.
 */
DEED_API deed_status_t deed_task_return_refs(deed_task_t *task, uint32_t i, const void *data, size_t size,
                                    const deed_ref_t *refs, uint32_t nrefs);

/**
 * Fail the task with @p code (non-zero) and a printf-style message; returns @p code so a
 * body can write `return deed_task_fail(t, 3, "bad input %d", x);`.
 */
DEED_API int deed_task_fail(deed_task_t *task, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------------------------------ */
/* Objects                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/**
 * Create an object from a copy of @p size bytes; @p ref receives its ref (counted once).
 * @return DEED_OK, DEED_ERR_INVALID_ARG, DEED_ERR_STORE_FULL, DEED_ERR_NO_MEMORY,
 *         DEED_ERR_FINALIZED.
 */
DEED_API deed_status_t deed_put(deed_ctx_t *ctx, const void *data, size_t size, deed_ref_t *ref);

/**
 * deed_put() of an object that contains @p nrefs refs. The refs are not consumed; the new
 * object keeps the inner objects alive as long as it lives. A contained ref that is
 * released or unknown is reported by get on the outer object (DEED_ERR_INVALID_REF).
 */
DEED_API deed_status_t deed_put_refs(deed_ctx_t *ctx, const void *data, size_t size,
                            const deed_ref_t *refs, uint32_t nrefs, deed_ref_t *ref);

/** Timeout value: wait forever. */
#define DEED_WAIT_FOREVER (-1)

/**
 * A zero-copy view of an object, filled by deed_get(). Valid (and the object's bytes pinned)
 * until deed_view_release(), even if every ref to the object is released meanwhile.
 */
typedef struct deed_view {
    const void *data;        /**< the bytes (NULL when size is 0) */
    size_t size;             /**< number of bytes */
    const deed_ref_t *refs;  /**< refs contained in the object (borrowed) */
    uint32_t nrefs;          /**< number of contained refs */
    int error_code;          /**< for DEED_ERR_TASK_FAILED: the code the task returned */
    const char *error_msg;   /**< for error objects: the original message, else NULL */
    void *priv;              /**< runtime use */
} deed_view_t;

/**
 * Wait up to @p timeout_us (DEED_WAIT_FOREVER, or 0 to poll) for the object behind @p ref
 * and map it into @p view. A task body may call it; its worker slot is given to other
 * tasks while it waits, so nested tasks cannot deadlock the pool.
 * @return DEED_OK; the object's own error code for an error object (DEED_ERR_TASK_FAILED,
 *         ...; @p view then holds error_code and error_msg and must be released too);
 *         DEED_ERR_TIMEOUT, DEED_ERR_INVALID_REF, DEED_ERR_INVALID_ARG, DEED_ERR_FINALIZED.
 */
DEED_API deed_status_t deed_get(deed_ctx_t *ctx, deed_ref_t ref, deed_view_t *view, int64_t timeout_us);

/** Release a view filled by deed_get(). Releasing twice is DEED_ERR_INVALID_ARG. */
DEED_API deed_status_t deed_view_release(deed_ctx_t *ctx, deed_view_t *view);

/**
 * Wait for the object and copy its bytes into @p buf (capacity @p cap). @p size (may be NULL)
 * receives the object's size; if it exceeds @p cap nothing is copied and
 * DEED_ERR_TOO_SMALL is returned. Error objects return their code as deed_get() does.
 */
DEED_API deed_status_t deed_get_copy(deed_ctx_t *ctx, deed_ref_t ref, void *buf, size_t cap, size_t *size,
                            int64_t timeout_us);

/**
 * Wait until at least @p k of the @p n objects are ready (a value or an error), or the
 * timeout passes. @p ready (may be NULL) receives n flags: 1 if object i is ready.
 * @return DEED_OK when k are ready, DEED_ERR_TIMEOUT otherwise (ready still filled),
 *         DEED_ERR_INVALID_REF if any ref is null, released or unknown,
 *         DEED_ERR_INVALID_ARG (k > n, NULL refs).
 */
DEED_API deed_status_t deed_wait(deed_ctx_t *ctx, const deed_ref_t *refs, uint32_t n, uint32_t k,
                        int64_t timeout_us, uint8_t *ready);

/* ------------------------------------------------------------------------------------------ */
/* Statistics                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/** Per-rank counters. A snapshot taken by the event loop, so the figures are consistent. */
typedef struct deed_stats {
    uint32_t size;             /**< set by the caller to sizeof(deed_stats_t) as it was built
                                    against: the runtime fills only that many bytes, so a
                                    program built against an older, shorter deed_stats_t
                                    stays safe (0 = this header's size) */
    uint32_t rank;
    uint64_t tasks_submitted;  /**< tasks submitted by this rank */
    uint64_t tasks_run;        /**< task bodies run on this rank */
    uint64_t tasks_failed;     /**< tasks whose returns are error objects */
    uint64_t tasks_pending;    /**< submitted and not yet finished */
    uint64_t objects_alive;    /**< rows in the ownership table */
    uint64_t objects_inline;   /**< of which hold an inline value */
    uint64_t objects_in_store; /**< of which hold a value in the store */
    uint64_t puts;             /**< deed_put calls */
    uint64_t gets;             /**< deed_get / get_copy calls */
    uint64_t store_bytes_used; /**< bytes allocated in the store (incl. allocator overhead) */
    uint64_t store_bytes_total;/**< store capacity */
    uint64_t inline_bytes;     /**< bytes of inline values */
    uint32_t workers;          /**< configured worker slots */
    uint32_t threads;          /**< worker threads started (spares for blocked tasks incl.) */
    uint32_t blocked;          /**< tasks currently blocked in get/wait */
    uint32_t pad_;
    uint64_t misuse;           /**< API misuse detected asynchronously (logged) */
    uint64_t tasks_remote_in;  /**< tasks other ranks pushed to this rank */
    uint64_t pulls;            /**< objects pulled from other ranks' stores (one-sided gets) */
    uint64_t pull_bytes;       /**< bytes pulled */
    uint64_t batches_sent;     /**< message batches sent (one per destination per loop pass) */
    uint64_t msgs_dropped;     /**< malformed or fenced messages dropped (logged) */
    uint32_t leases_held;      /**< leases this rank holds on workers (its own or others') */
    uint32_t leases_granted;   /**< leases of this rank's workers held by owners now */
    uint64_t leases_requested; /**< leases this rank asked for (incl. spilled requests) */
    uint64_t leases_spilled;   /**< requests this rank's scheduler spilled to another rank */
    uint64_t tasks_retried;    /**< tasks re-submitted because their executor died */
    uint64_t reconstructions;  /**< lost objects re-created by re-running their task */
    uint64_t lineage_bytes;    /**< memory held by lineage (task specs kept) */
    uint64_t lineage_evictions;/**< lineage dropped to stay under DEED_LINEAGE_MAX */
    uint32_t ranks_dead;       /**< ranks declared dead so far */
    uint32_t leases_held_peak; /**< the most leases this rank held at once (owner side) */
} deed_stats_t;

/**
 * Fill @p stats with a snapshot of this rank's counters.
 * @return DEED_OK, DEED_ERR_INVALID_ARG, DEED_ERR_FINALIZED.
 */
DEED_API deed_status_t deed_stats(deed_ctx_t *ctx, deed_stats_t *stats);

#ifdef __cplusplus
}
#endif
#endif /* DEED_H */
