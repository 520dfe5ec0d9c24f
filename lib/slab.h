/*
 * slab.h — process-wide caches of fixed-size blocks for the task path: task specs (up to
 * SLAB_TASK_SIZE bytes) and small inline values (up to SLAB_SMALL_SIZE bytes).
 *
 * Both are made by one thread and freed by another (a driver submits, the loop frees; a
 * worker returns a value, the loop frees it), tens of thousands in flight at once. Through
 * malloc they took glibc's slow paths and its heap trimming after each wave of tasks (the
 * next wave page-faulted the memory back). A freed block is pushed on the class's
 * lock-free stack (push-only CAS, take-all exchange: no ABA); an allocating thread takes
 * the whole stack into a list of its own when that list is empty. At most ~max blocks wait
 * on a stack (more go back to free()), a thread's list is freed when the thread exits.
 * Blocks are plain malloc() blocks of the class size: slab_free of any block with at least
 * that many usable bytes is safe. AddressSanitizer builds bypass the caches (a recycled
 * block would hide a use-after-free).
 */
#ifndef DEED_SLAB_H
#define DEED_SLAB_H

#include <stddef.h>

enum slab_class { SLAB_TASK, SLAB_SMALL, SLAB_NCLASSES };

#define SLAB_TASK_SIZE 512
#define SLAB_SMALL_SIZE 64

/* A block of the class's size (malloc'd when the cache is empty), or NULL. */
void *slab_alloc(enum slab_class c);
/* Give back a block of at least the class's size (from slab_alloc or malloc). */
void slab_free(enum slab_class c, void *p);

#endif /* DEED_SLAB_H */
