/*
 * registry.h — the process-wide task table: name -> function, keyed by the 64-bit hash of the
 * name (the task id), so every rank built from the same binary agrees without talking.
 * Filled at load time by DEED_REGISTER constructors; lookups are lock-free reads of an
 * append-only open-addressing table (entries are published with release stores).
 */
#ifndef DEED_REGISTRY_H
#define DEED_REGISTRY_H

#include "deed.h"

struct registry_entry {
    deed_task_id_t id;
    deed_task_fn_t fn;
    char name[256];
};

const struct registry_entry *registry_find(deed_task_id_t id);
/* Number of tasks and an order-independent digest of the table (for multi-rank checks). */
uint32_t registry_count(void);
uint64_t registry_digest(void);

#endif /* DEED_REGISTRY_H */
