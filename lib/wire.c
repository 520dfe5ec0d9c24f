/*
 * wire.c — the wire codec (see wire.h for the layout). Pure functions over buffers.
 */
#include "wire.h"

#include <stdlib.h>

void wbuf_init(struct wbuf *b)
{
    memset(b, 0, sizeof(*b));
}

void wbuf_free(struct wbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void wbuf_reset(struct wbuf *b)
{
    b->len = 0;
    b->oom = 0;
    b->count = 0;
    b->msg_start = 0;
}

void wbuf_put_slow(struct wbuf *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n)
            ncap *= 2;
        uint8_t *nd = realloc(b->data, ncap);
        if (nd == NULL) {
            b->oom = 1;
            return;
        }
        b->data = nd;
        b->cap = ncap;
    }
    if (n && p)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

void wbuf_ref(struct wbuf *b, deed_ref_t r)
{
    wbuf_u64(b, r.id_hi);
    wbuf_u64(b, r.id_lo);
    wbuf_u32(b, r.index);
    wbuf_u32(b, r.owner);
}

void wbuf_blob(struct wbuf *b, const void *p, uint32_t n)
{
    wbuf_u32(b, n);
    wbuf_put(b, p, n);
}

static void patch_u16(struct wbuf *b, size_t off, uint16_t v)
{
    if (!b->oom && off + 2 <= b->len) {
        b->data[off] = (uint8_t)v;
        b->data[off + 1] = (uint8_t)(v >> 8);
    }
}

static void patch_u32(struct wbuf *b, size_t off, uint32_t v)
{
    if (!b->oom && off + 4 <= b->len)
        for (int i = 0; i < 4; i++)
            b->data[off + (size_t)i] = (uint8_t)(v >> (8 * i));
}

void wire_batch_begin(struct wbuf *b, uint32_t src, uint32_t epoch)
{
    wbuf_reset(b);
    wbuf_u32(b, WIRE_MAGIC);
    wbuf_u8(b, WIRE_VERSION);
    wbuf_u8(b, 0);
    wbuf_u16(b, 0); /* count, patched */
    wbuf_u32(b, src);
    wbuf_u32(b, epoch);
    wbuf_u32(b, 0); /* load, patched */
    wbuf_u16(b, 0);
    wbuf_u16(b, 0);
}


void wire_batch_end(struct wbuf *b, uint32_t load_queued, uint16_t load_free)
{
    patch_u16(b, 6, b->count);
    patch_u32(b, 16, load_queued);
    patch_u16(b, 20, load_free);
}

deed_ref_t rbuf_ref(struct rbuf *r)
{
    deed_ref_t x;
    x.id_hi = rbuf_u64(r);
    x.id_lo = rbuf_u64(r);
    x.index = rbuf_u32(r);
    x.owner = rbuf_u32(r);
    return x;
}

const void *rbuf_blob(struct rbuf *r, uint32_t *n, uint32_t max)
{
    uint32_t len = rbuf_u32(r);
    if (r->err || len > max) {
        r->err = 1;
        *n = 0;
        return NULL;
    }
    const void *p = rbuf_take(r, len);
    *n = p ? len : 0;
    return p;
}

int wire_batch_open(struct rbuf *r, const void *data, size_t len, struct wire_batch_hdr *h)
{
    rbuf_init(r, data, len);
    if (rbuf_u32(r) != WIRE_MAGIC)
        return -1;
    h->version = rbuf_u8(r);
    h->flags = rbuf_u8(r);
    h->count = rbuf_u16(r);
    h->src = rbuf_u32(r);
    h->epoch = rbuf_u32(r);
    h->load_queued = rbuf_u32(r);
    h->load_free = rbuf_u16(r);
    (void)rbuf_u16(r);
    if (r->err || h->version != WIRE_VERSION)
        return -1;
    return 0;
}

int wire_batch_next(struct rbuf *r, uint16_t *type, struct rbuf *body)
{
    if (rbuf_left(r) == 0)
        return 0;
    *type = rbuf_u16(r);
    uint32_t len = rbuf_u32(r);
    const uint8_t *p = rbuf_take(r, len);
    if (r->err || p == NULL)
        return -1;
    rbuf_init(body, p, len);
    return 1;
}
