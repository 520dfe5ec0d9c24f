/*
 * local.c — the "local" transport (see local.h): for one-rank jobs, where there is no peer to
 * talk to. Owns the list of registered regions; nothing else.
 *
 * Registration is bookkeeping only (the memory is already ours); a packed rkey is the
 * region's {addr, len} as two uint64_t in host byte order (it never leaves
 * the process). A get from rank 0 copies the bytes when the rkey names a region that is still
 * registered and the range lies inside it, then calls the completion callback synchronously,
 * before get returns: callers must not hold state the callback changes across the call.
 *
 * Active messages and connections do not exist here (DEED_ERR_UNSUPPORTED); progress never
 * has anything to do.
 */
#include "local.h"

#include <stdlib.h>
#include <string.h>

#include "deed.h"
#include "log.h"

#define LOCAL_EAGER_LIMIT (64u * 1024u)
#define LOCAL_RKEY_LEN (2 * sizeof(uint64_t))

struct tp_mem {
    void *addr;
    size_t len;
    struct tp_mem *next;
};

struct tp {
    struct tp_params params;
    struct tp_mem *regions; /* registered regions, newest first */
};

static int local_init(const struct tp_params *params, struct tp **out)
{
    struct tp *tp;

    if (!params || !out) {
        log_error("local transport: init with a NULL argument");
        return DEED_ERR_INVALID_ARG;
    }
    if (params->nranks != 1) {
        log_error("local transport: supports one-rank jobs only, but the job has %u ranks "
                  "(use a network transport such as ucx)",
                  params->nranks);
        return DEED_ERR_UNSUPPORTED;
    }
    if (params->rank != 0) {
        log_error("local transport: rank %u out of range in a one-rank job", params->rank);
        return DEED_ERR_INVALID_ARG;
    }
    tp = calloc(1, sizeof(*tp));
    if (!tp) {
        log_error("local transport: out of memory");
        return DEED_ERR_NO_MEMORY;
    }
    tp->params = *params;
    *out = tp;
    return DEED_OK;
}

static void local_fini(struct tp *tp)
{
    struct tp_mem *m, *next;

    if (!tp)
        return;
    for (m = tp->regions; m; m = next) {
        next = m->next;
        log_debug("local transport: region %p+%zu still registered at fini", m->addr, m->len);
        free(m);
    }
    free(tp);
}

static uint32_t local_caps(struct tp *tp)
{
    return TP_CAP_MEM_REG;
}

static size_t local_eager_limit(struct tp *tp)
{
    return LOCAL_EAGER_LIMIT;
}

static int local_address(struct tp *tp, const void **addr, size_t *len)
{
    static const char empty[1];

    if (!addr || !len)
        return DEED_ERR_INVALID_ARG;
    *addr = empty;
    *len = 0;
    return DEED_OK;
}

static int local_connect(struct tp *tp, uint32_t rank, const void *addr, size_t len)
{
    return DEED_ERR_UNSUPPORTED;
}

static int local_am_send(struct tp *tp, uint32_t rank, const struct iovec *iov, int iovcnt)
{
    return DEED_ERR_UNSUPPORTED;
}

static int local_progress(struct tp *tp)
{
    return 0;
}

static int local_event_fd(struct tp *tp)
{
    return -1;
}

static int local_arm(struct tp *tp)
{
    return 0;
}

static int local_mem_map(struct tp *tp, void **addr, size_t len, unsigned flags,
                         struct tp_mem **mem)
{
    struct tp_mem *m;

    if (flags & TP_MEM_ALLOCATE)
        return DEED_ERR_UNSUPPORTED; /* the caller allocates and registers */
    if (!tp || !addr || !*addr || len == 0 || !mem) {
        log_error("local transport: mem_map with a NULL address, NULL argument or length 0");
        return DEED_ERR_INVALID_ARG;
    }
    m = malloc(sizeof(*m));
    if (!m) {
        log_error("local transport: out of memory");
        return DEED_ERR_NO_MEMORY;
    }
    m->addr = *addr;
    m->len = len;
    m->next = tp->regions;
    tp->regions = m;
    *mem = m;
    return DEED_OK;
}

static int local_mem_unmap(struct tp *tp, struct tp_mem *mem)
{
    struct tp_mem **pp;

    if (!tp || !mem)
        return DEED_ERR_INVALID_ARG;
    for (pp = &tp->regions; *pp; pp = &(*pp)->next) {
        if (*pp == mem) {
            *pp = mem->next;
            free(mem);
            return DEED_OK;
        }
    }
    log_error("local transport: mem_unmap of a region that is not registered");
    return DEED_ERR_INVALID_ARG;
}

static int local_rkey_pack(struct tp *tp, struct tp_mem *mem, void **buf, size_t *len)
{
    uint64_t desc[2];

    if (!mem || !buf || !len)
        return DEED_ERR_INVALID_ARG;
    desc[0] = (uint64_t)(uintptr_t)mem->addr;
    desc[1] = (uint64_t)mem->len;
    *buf = malloc(LOCAL_RKEY_LEN);
    if (!*buf) {
        log_error("local transport: out of memory");
        return DEED_ERR_NO_MEMORY;
    }
    memcpy(*buf, desc, LOCAL_RKEY_LEN);
    *len = LOCAL_RKEY_LEN;
    return DEED_OK;
}

static void local_rkey_buf_free(struct tp *tp, void *buf)
{
    free(buf);
}

/* The registered region an rkey describes, or NULL (stale or forged rkey). */
static struct tp_mem *local_region_of(struct tp *tp, const void *rkey, size_t rkey_len)
{
    uint64_t desc[2];

    if (!rkey || rkey_len != LOCAL_RKEY_LEN)
        return NULL;
    memcpy(desc, rkey, LOCAL_RKEY_LEN);
    for (struct tp_mem *m = tp->regions; m; m = m->next) {
        if ((uint64_t)(uintptr_t)m->addr == desc[0] && (uint64_t)m->len == desc[1])
            return m;
    }
    return NULL;
}

/* 1 if [addr, addr+len) lies inside region m. */
static int local_inside(const struct tp_mem *m, uint64_t addr, size_t len)
{
    uint64_t base = (uint64_t)(uintptr_t)m->addr;

    return addr >= base && addr - base <= m->len && len <= m->len - (addr - base);
}

static int local_get(struct tp *tp, uint32_t rank, void *local, struct tp_mem *local_mem,
                     uint64_t remote_addr, const void *rkey, size_t rkey_len, size_t len,
                     tp_get_cb_t cb, void *cb_arg)
{
    struct tp_mem *region;

    if (!tp || rank != 0 || (!local && len > 0)) {
        log_error("local transport: get from rank %u (only rank 0 exists) or into NULL", rank);
        return DEED_ERR_INVALID_ARG;
    }
    region = local_region_of(tp, rkey, rkey_len);
    if (!region || !local_inside(region, remote_addr, len)) {
        log_error("local transport: get of %zu bytes at 0x%llx is outside every registered "
                  "region named by the rkey",
                  len, (unsigned long long)remote_addr);
        return DEED_ERR_INVALID_ARG;
    }
    if (local_mem && !local_inside(local_mem, (uint64_t)(uintptr_t)local, len)) {
        log_error("local transport: get destination %p+%zu is outside its region", local, len);
        return DEED_ERR_INVALID_ARG;
    }
    /* memmove: source and destination are in one address space and could overlap. */
    if (len > 0)
        memmove(local, (const void *)(uintptr_t)remote_addr, len);
    if (cb)
        cb(cb_arg, 0);
    return DEED_OK;
}

const struct tp_ops tp_local_ops = {
    .size = sizeof(struct tp_ops),
    .name = "local",
    .init = local_init,
    .fini = local_fini,
    .caps = local_caps,
    .eager_limit = local_eager_limit,
    .address = local_address,
    .connect = local_connect,
    .am_send = local_am_send,
    .progress = local_progress,
    .event_fd = local_event_fd,
    .arm = local_arm,
    .mem_map = local_mem_map,
    .mem_unmap = local_mem_unmap,
    .rkey_pack = local_rkey_pack,
    .rkey_buf_free = local_rkey_buf_free,
    .get = local_get,
};
