/*
 * registry.c — the process-wide task table (see registry.h). Owns the only mutable global
 * of the library besides the context slots. Writers (registration) serialize on a mutex;
 * readers (every submit) do a lock-free probe.
 */
#include "registry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "ids.h"
#include "log.h"

#define REGISTRY_CAP 8192u /* power of two; at most REGISTRY_CAP / 2 tasks */

static struct registry_entry entries[REGISTRY_CAP];
static _Atomic deed_task_id_t slots[REGISTRY_CAP]; /* published id per slot, 0 = empty */
static uint32_t nentries;
static uint64_t digest;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

const struct registry_entry *registry_find(deed_task_id_t id)
{
    if (id == 0)
        return NULL;
    for (uint32_t i = (uint32_t)id & (REGISTRY_CAP - 1);; i = (i + 1) & (REGISTRY_CAP - 1)) {
        deed_task_id_t s = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (s == id)
            return &entries[i];
        if (s == 0)
            return NULL;
    }
}

DEED_API deed_status_t deed_task_register(const char *name, deed_task_fn_t fn,
                                          deed_task_id_t *id_out)
{
    size_t len;
    deed_status_t rc = DEED_OK;

    if (name == NULL || fn == NULL || (len = strlen(name)) == 0 || len > 255) {
        log_error("deed_task_register: %s", name == NULL ? "name is NULL"
                                            : fn == NULL ? "function is NULL"
                                                         : "name must be 1-255 bytes");
        return DEED_ERR_INVALID_ARG;
    }
    deed_task_id_t id = ids_name_hash(name);
    pthread_mutex_lock(&registry_lock);
    uint32_t i = (uint32_t)id & (REGISTRY_CAP - 1);
    for (;; i = (i + 1) & (REGISTRY_CAP - 1)) {
        deed_task_id_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
        if (s == 0)
            break;
        if (s == id) {
            if (strcmp(entries[i].name, name) != 0) {
                log_error("deed_task_register: '%s' collides with '%s' (same 64-bit id)", name,
                          entries[i].name);
                rc = DEED_ERR_EXISTS;
            } else if (entries[i].fn != fn) {
                log_error("deed_task_register: '%s' is already registered to another function",
                          name);
                rc = DEED_ERR_EXISTS;
            }
            goto out;
        }
    }
    if (nentries >= REGISTRY_CAP / 2) {
        log_error("deed_task_register: too many tasks (limit %u)", REGISTRY_CAP / 2);
        rc = DEED_ERR_TOO_MANY;
        goto out;
    }
    entries[i].id = id;
    entries[i].fn = fn;
    memcpy(entries[i].name, name, len + 1);
    nentries++;
    digest += id * 0x9E3779B97F4A7C15ull + (id >> 17);
    atomic_store_explicit(&slots[i], id, memory_order_release);
out:
    pthread_mutex_unlock(&registry_lock);
    if (rc == DEED_OK && id_out)
        *id_out = id;
    return rc;
}

DEED_API deed_task_id_t deed_task_id(const char *name)
{
    if (name == NULL)
        return 0;
    deed_task_id_t id = ids_name_hash(name);
    const struct registry_entry *e = registry_find(id);
    return (e && strcmp(e->name, name) == 0) ? id : 0;
}

DEED_API const char *deed_task_name(deed_task_id_t id)
{
    const struct registry_entry *e = registry_find(id);
    return e ? e->name : NULL;
}

uint32_t registry_count(void)
{
    pthread_mutex_lock(&registry_lock);
    uint32_t n = nentries;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

uint64_t registry_digest(void)
{
    pthread_mutex_lock(&registry_lock);
    uint64_t d = digest;
    pthread_mutex_unlock(&registry_lock);
    return d;
}
