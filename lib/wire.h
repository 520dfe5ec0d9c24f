/*
 * wire.h — the wire codec: how messages between ranks are laid out, written and read.
 *
 * Every message travels inside a batch (one transport active message per destination per
 * loop pass):
 *
 *   batch  := magic u32 ("DEED") | version u8 | flags u8 | count u16 | src u32 | epoch u32
 *             | load_queued u32 | load_free u16 | pad u16 | message*count
 *   message:= type u16 | len u32 | body[len]
 *
 * All integers little-endian. Readers never trust a length: every read is bounds-checked
 * against the batch, a short or malformed message sets the reader's error flag and the
 * whole message is dropped (and logged by the caller); decoding then continues with the
 * next message, whose position is known from len. Fuzzed by tests/unit/test_wire.c.
 */
#ifndef DEED_WIRE_H
#define DEED_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "deed.h"

#define WIRE_MAGIC 0x44454544u /* "DEED" */
#define WIRE_VERSION 1
#define WIRE_BATCH_HDR 24
#define WIRE_MSG_HDR 6
#define WIRE_MAX_MSG (1u << 30)

struct wire_batch_hdr {
    uint8_t version, flags;
    uint16_t count;
    uint32_t src, epoch;
    uint32_t load_queued;
    uint16_t load_free;
};

/* ---- writer: a growable buffer --------------------------------------------------------- */

struct wbuf {
    uint8_t *data;
    size_t len, cap;
    int oom;          /* an allocation failed: the buffer content is invalid */
    size_t msg_start; /* offset of the open message's header */
    uint16_t count;   /* messages in the batch */
};

void wbuf_init(struct wbuf *b);
void wbuf_free(struct wbuf *b);
void wbuf_reset(struct wbuf *b);
/* Out of line: grows the buffer (or records oom), then appends (p NULL: only reserves). */
void wbuf_put_slow(struct wbuf *b, const void *p, size_t n);
/* Append n bytes. Inline: with a constant n the common case is one store (encoding a task
 * push or reply writes ~30 fields; a call per field was ~10% of a remote task's
 * instructions). */
static inline void wbuf_put(struct wbuf *b, const void *p, size_t n)
{
    if (__builtin_expect(b->len + n <= b->cap && !b->oom, 1)) {
        if (n)
            memcpy(b->data + b->len, p, n);
        b->len += n;
        return;
    }
    wbuf_put_slow(b, p, n);
}
static inline void wbuf_u8(struct wbuf *b, uint8_t v) { wbuf_put(b, &v, 1); }
static inline void wbuf_u16(struct wbuf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    wbuf_put(b, x, 2);
}
static inline void wbuf_u32(struct wbuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wbuf_put(b, x, 4);
}
static inline void wbuf_u64(struct wbuf *b, uint64_t v)
{
    wbuf_u32(b, (uint32_t)v);
    wbuf_u32(b, (uint32_t)(v >> 32));
}
void wbuf_ref(struct wbuf *b, deed_ref_t r);
/* len u32 + bytes */
void wbuf_blob(struct wbuf *b, const void *p, uint32_t n);

/* Batches: begin (writes the header), open a message, close it (patches its length). */
void wire_batch_begin(struct wbuf *b, uint32_t src, uint32_t epoch);
/* Reserve n bytes at the end and return where to write them (the caller fills all n), or
 * NULL when the buffer cannot grow (then oom is set). For fixed-size parts of a message:
 * one capacity check instead of one per field. */
static inline uint8_t *wbuf_reserve(struct wbuf *b, size_t n)
{
    if (__builtin_expect(b->len + n > b->cap || b->oom, 0)) {
        wbuf_put_slow(b, NULL, n); /* grows, and counts the n bytes */
        return b->oom ? NULL : b->data + b->len - n;
    }
    uint8_t *q = b->data + b->len;
    b->len += n;
    return q;
}
static inline void wire_put16(uint8_t *q, uint16_t v)
{
    q[0] = (uint8_t)v;
    q[1] = (uint8_t)(v >> 8);
}
static inline void wire_put32(uint8_t *q, uint32_t v)
{
    wire_put16(q, (uint16_t)v);
    wire_put16(q + 2, (uint16_t)(v >> 16));
}
static inline void wire_put64(uint8_t *q, uint64_t v)
{
    wire_put32(q, (uint32_t)v);
    wire_put32(q + 4, (uint32_t)(v >> 32));
}
/* A message: type u16 | length u32 (of the body, patched by wire_msg_end) | body. */
static inline void wire_msg_begin(struct wbuf *b, uint16_t type)
{
    b->msg_start = b->len;
    uint8_t *q = wbuf_reserve(b, WIRE_MSG_HDR);
    if (q) {
        wire_put16(q, type);
        wire_put32(q + 2, 0);
    }
}
static inline void wire_msg_end(struct wbuf *b)
{
    if (!b->oom && b->msg_start + WIRE_MSG_HDR <= b->len)
        wire_put32(b->data + b->msg_start + 2,
                   (uint32_t)(b->len - b->msg_start - WIRE_MSG_HDR));
    b->count++;
}
/* Patch count and load into the header before sending. */
void wire_batch_end(struct wbuf *b, uint32_t load_queued, uint16_t load_free);

/* ---- reader --------------------------------------------------------------------------- */

struct rbuf {
    const uint8_t *p, *end;
    int err; /* set by any out-of-bounds or invalid read; values read after are zero */
};

static inline void rbuf_init(struct rbuf *r, const void *p, size_t n)
{
    r->p = p;
    r->end = r->p + n;
    r->err = 0;
}
static inline size_t rbuf_left(const struct rbuf *r) { return (size_t)(r->end - r->p); }
static inline const uint8_t *rbuf_take(struct rbuf *r, size_t n)
{
    if (r->err || rbuf_left(r) < n) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *q = r->p;
    r->p += n;
    return q;
}
static inline uint8_t rbuf_u8(struct rbuf *r)
{
    const uint8_t *q = rbuf_take(r, 1);
    return q ? q[0] : 0;
}
static inline uint16_t rbuf_u16(struct rbuf *r)
{
    const uint8_t *q = rbuf_take(r, 2);
    return q ? (uint16_t)(q[0] | q[1] << 8) : 0;
}
static inline uint32_t rbuf_u32(struct rbuf *r)
{
    const uint8_t *q = rbuf_take(r, 4);
    return q ? (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                   (uint32_t)q[3] << 24
             : 0;
}
static inline uint64_t rbuf_u64(struct rbuf *r)
{
    uint64_t lo = rbuf_u32(r);
    return lo | (uint64_t)rbuf_u32(r) << 32;
}
deed_ref_t rbuf_ref(struct rbuf *r);
/* len u32 + bytes: returns a pointer into the batch (not copied) or NULL; *n its length.
 * max bounds the accepted length. */
const void *rbuf_blob(struct rbuf *r, uint32_t *n, uint32_t max);

/* Iterate a batch: wire_batch_open validates the header; wire_batch_next yields each
 * message's type and body (a sub-reader). Returns 1 per message, 0 at the end, -1 when the
 * batch is malformed past recovery (a message length overruns the batch). */
int wire_batch_open(struct rbuf *r, const void *data, size_t len, struct wire_batch_hdr *h);
int wire_batch_next(struct rbuf *r, uint16_t *type, struct rbuf *body);

#endif /* DEED_WIRE_H */
