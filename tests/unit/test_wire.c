/*
 * test_wire.c — the wire codec: round trips, and hostile input (every truncation of a valid
 * batch, random bytes, lengths that lie) never reads out of bounds (run under ASan) and is
 * reported as an error rather than trusted.
 */
#include <check.h>
#include <stdlib.h>

#include "wire.h"

static void build_sample(struct wbuf *b)
{
    deed_ref_t r = {0x1122334455667788ull, 0x99aabbccddeeff00ull, 7, 3};
    wire_batch_begin(b, 5, 9);
    wire_msg_begin(b, 1);
    wbuf_u8(b, 0xab);
    wbuf_u16(b, 0xbeef);
    wbuf_u32(b, 0xdeadbeef);
    wbuf_u64(b, 0x0123456789abcdefull);
    wbuf_ref(b, r);
    wbuf_blob(b, "hello", 5);
    wire_msg_end(b);
    wire_msg_begin(b, 2);
    wire_msg_end(b); /* empty body */
    wire_msg_begin(b, 3);
    wbuf_blob(b, NULL, 0);
    wire_msg_end(b);
    wire_batch_end(b, 42, 2);
}

START_TEST(batch_round_trip_preserves_every_field)
{
    struct wbuf b;
    wbuf_init(&b);
    build_sample(&b);
    ck_assert(!b.oom);
    struct rbuf r, body;
    struct wire_batch_hdr h;
    ck_assert_int_eq(wire_batch_open(&r, b.data, b.len, &h), 0);
    ck_assert_uint_eq(h.count, 3);
    ck_assert_uint_eq(h.src, 5);
    ck_assert_uint_eq(h.epoch, 9);
    ck_assert_uint_eq(h.load_queued, 42);
    ck_assert_uint_eq(h.load_free, 2);
    uint16_t type;
    ck_assert_int_eq(wire_batch_next(&r, &type, &body), 1);
    ck_assert_uint_eq(type, 1);
    ck_assert_uint_eq(rbuf_u8(&body), 0xab);
    ck_assert_uint_eq(rbuf_u16(&body), 0xbeef);
    ck_assert_uint_eq(rbuf_u32(&body), 0xdeadbeef);
    ck_assert(rbuf_u64(&body) == 0x0123456789abcdefull);
    deed_ref_t ref = rbuf_ref(&body);
    ck_assert(ref.id_hi == 0x1122334455667788ull && ref.id_lo == 0x99aabbccddeeff00ull);
    ck_assert_uint_eq(ref.index, 7);
    ck_assert_uint_eq(ref.owner, 3);
    uint32_t n;
    const char *s = rbuf_blob(&body, &n, 100);
    ck_assert_uint_eq(n, 5);
    ck_assert(memcmp(s, "hello", 5) == 0);
    ck_assert_int_eq(body.err, 0);
    ck_assert_uint_eq(rbuf_left(&body), 0);
    ck_assert_int_eq(wire_batch_next(&r, &type, &body), 1);
    ck_assert_uint_eq(type, 2);
    ck_assert_uint_eq(rbuf_left(&body), 0);
    ck_assert_int_eq(wire_batch_next(&r, &type, &body), 1);
    ck_assert_uint_eq(type, 3);
    rbuf_blob(&body, &n, 100);
    ck_assert_int_eq(body.err, 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(wire_batch_next(&r, &type, &body), 0);
    wbuf_free(&b);
}
END_TEST

START_TEST(reads_past_the_end_set_err_and_return_zero)
{
    uint8_t two[2] = {1, 2};
    struct rbuf r;
    rbuf_init(&r, two, 2);
    ck_assert_uint_eq(rbuf_u32(&r), 0);
    ck_assert_int_eq(r.err, 1);
    ck_assert_uint_eq(rbuf_u8(&r), 0); /* sticky */
    rbuf_init(&r, two, 2);
    ck_assert_uint_eq(rbuf_u16(&r), 0x0201);
    ck_assert_int_eq(r.err, 0);
}
END_TEST

START_TEST(blob_longer_than_allowed_is_rejected)
{
    struct wbuf b;
    wbuf_init(&b);
    wbuf_blob(&b, "0123456789", 10);
    struct rbuf r;
    uint32_t n;
    rbuf_init(&r, b.data, b.len);
    ck_assert_ptr_null(rbuf_blob(&r, &n, 9));
    ck_assert_int_eq(r.err, 1);
    /* a length field that lies about the bytes present */
    b.data[0] = 200;
    rbuf_init(&r, b.data, b.len);
    ck_assert_ptr_null(rbuf_blob(&r, &n, 1000));
    ck_assert_int_eq(r.err, 1);
    wbuf_free(&b);
}
END_TEST

/* Walk a batch the way the runtime does; returns messages seen, -1 on a broken batch. */
static int walk(const uint8_t *p, size_t n)
{
    struct rbuf r, body;
    struct wire_batch_hdr h;
    uint16_t type;
    int k = 0, rc;
    if (wire_batch_open(&r, p, n, &h) != 0)
        return -1;
    while ((rc = wire_batch_next(&r, &type, &body)) == 1) {
        /* decode greedily like a handler would */
        while (!body.err && rbuf_left(&body) > 0) {
            uint32_t len;
            rbuf_blob(&body, &len, 1 << 20);
            (void)rbuf_ref(&body);
        }
        k++;
    }
    return rc < 0 ? -1 : k;
}

START_TEST(every_truncation_of_a_batch_is_detected)
{
    struct wbuf b;
    wbuf_init(&b);
    build_sample(&b);
    ck_assert_int_eq(walk(b.data, b.len), 3);
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan catches any overread */
        memcpy(copy, b.data, n);
        int k = walk(copy, n);
        ck_assert_msg(k < 3, "truncated batch of %zu bytes decoded fully", n);
        free(copy);
    }
    wbuf_free(&b);
}
END_TEST

START_TEST(random_bytes_never_crash_the_decoder)
{
    srand(12345);
    int opened = 0;
    for (int i = 0; i < 200000; i++) {
        size_t n = (size_t)(rand() % 96);
        uint8_t *p = malloc(n ? n : 1);
        for (size_t j = 0; j < n; j++)
            p[j] = (uint8_t)rand();
        if (n >= 5 && (i & 1)) { /* half of them get a valid magic and version */
            p[0] = 0x44, p[1] = 0x45, p[2] = 0x45, p[3] = 0x44, p[4] = WIRE_VERSION;
        }
        if (walk(p, n) >= 0)
            opened++;
        free(p);
    }
    ck_assert_int_gt(opened, 0); /* the valid-header half does get decoded */
}
END_TEST

START_TEST(writer_grows_for_large_messages)
{
    struct wbuf b;
    wbuf_init(&b);
    size_t big = 8 << 20;
    uint8_t *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 31);
    wire_batch_begin(&b, 1, 0);
    wire_msg_begin(&b, 7);
    wbuf_blob(&b, data, (uint32_t)big);
    wire_msg_end(&b);
    wire_batch_end(&b, 0, 0);
    struct rbuf r, body;
    struct wire_batch_hdr h;
    uint16_t type;
    ck_assert_int_eq(wire_batch_open(&r, b.data, b.len, &h), 0);
    ck_assert_int_eq(wire_batch_next(&r, &type, &body), 1);
    uint32_t n;
    const uint8_t *q = rbuf_blob(&body, &n, WIRE_MAX_MSG);
    ck_assert_uint_eq(n, big);
    ck_assert(memcmp(q, data, big) == 0);
    free(data);
    wbuf_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, batch_round_trip_preserves_every_field);
    tcase_add_test(tc, reads_past_the_end_set_err_and_return_zero);
    tcase_add_test(tc, blob_longer_than_allowed_is_rejected);
    tcase_add_test(tc, every_truncation_of_a_batch_is_detected);
    tcase_add_test(tc, random_bytes_never_crash_the_decoder);
    tcase_add_test(tc, writer_grows_for_large_messages);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
