/*
 * test_transport.c — unit tests for transports/transport.c (lookup by name) and the "local"
 * transport (one-rank jobs: registration, rkeys and gets as memcpy), including a store whose
 * segments are registered with it.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "deed.h"
#include "log.h"
#include "store.h"
#include "transport.h"

static const struct tp_params one_rank = {.rank = 0, .nranks = 1};

struct get_done {
    int calls;
    int status;
};

static void get_cb(void *arg, int status)
{
    struct get_done *d = arg;

    d->calls++;
    d->status = status;
}

static struct tp *local_open(const struct tp_ops **ops)
{
    struct tp *tp = NULL;

    *ops = tp_find("local");
    ck_assert_ptr_nonnull(*ops);
    ck_assert_int_eq((*ops)->init(&one_rank, &tp), DEED_OK);
    ck_assert_ptr_nonnull(tp);
    return tp;
}

/* Quiet the error log around calls that are expected to fail. */
static int quiet(void)
{
    int level = deed__log_level;

    deed__log_level = -1;
    return level;
}

START_TEST(find_by_name)
{
    const struct tp_ops *ops = tp_find("local");

    ck_assert_ptr_nonnull(ops);
    ck_assert_str_eq(ops->name, "local");
    ck_assert_uint_eq(ops->size, sizeof(struct tp_ops));
    ck_assert_ptr_null(tp_find("nope"));
    ck_assert_ptr_null(tp_find(""));
    ck_assert_ptr_null(tp_find("loca"));
    ck_assert_ptr_null(tp_find(NULL));
    ck_assert_ptr_nonnull(strstr(tp_names(), "local"));
}
END_TEST

START_TEST(local_ops_are_complete)
{
    const struct tp_ops *ops = tp_find("local");

    ck_assert_ptr_nonnull(ops->init);
    ck_assert_ptr_nonnull(ops->fini);
    ck_assert_ptr_nonnull(ops->caps);
    ck_assert_ptr_nonnull(ops->eager_limit);
    ck_assert_ptr_nonnull(ops->address);
    ck_assert_ptr_nonnull(ops->connect);
    ck_assert_ptr_nonnull(ops->am_send);
    ck_assert_ptr_nonnull(ops->progress);
    ck_assert_ptr_nonnull(ops->event_fd);
    ck_assert_ptr_nonnull(ops->arm);
    ck_assert_ptr_nonnull(ops->mem_map);
    ck_assert_ptr_nonnull(ops->mem_unmap);
    ck_assert_ptr_nonnull(ops->rkey_pack);
    ck_assert_ptr_nonnull(ops->rkey_buf_free);
    ck_assert_ptr_nonnull(ops->get);
}
END_TEST

START_TEST(local_init_requires_one_rank)
{
    const struct tp_ops *ops = tp_find("local");
    struct tp_params two = {.rank = 0, .nranks = 2};
    struct tp_params bad_rank = {.rank = 1, .nranks = 1};
    struct tp *tp = NULL;
    int level = quiet();

    ck_assert_int_eq(ops->init(&two, &tp), DEED_ERR_UNSUPPORTED);
    ck_assert_ptr_null(tp);
    ck_assert_int_eq(ops->init(&bad_rank, &tp), DEED_ERR_INVALID_ARG);
    ck_assert_ptr_null(tp);
    ck_assert_int_eq(ops->init(NULL, &tp), DEED_ERR_INVALID_ARG);
    deed__log_level = level;
}
END_TEST

START_TEST(local_basic_properties)
{
    const struct tp_ops *ops;
    struct tp *tp = local_open(&ops);
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    const void *addr = NULL;
    size_t len = 99;

    ck_assert_uint_eq(ops->caps(tp), TP_CAP_MEM_REG);
    ck_assert_uint_eq(ops->eager_limit(tp), 64 * 1024);
    ck_assert_int_eq(ops->address(tp, &addr, &len), DEED_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(ops->connect(tp, 0, addr, len), DEED_ERR_UNSUPPORTED);
    ck_assert_int_eq(ops->am_send(tp, 0, &iov, 1), DEED_ERR_UNSUPPORTED);
    ck_assert_int_eq(ops->progress(tp), 0);
    ck_assert_int_eq(ops->event_fd(tp), -1);
    ck_assert_int_eq(ops->arm(tp), 0);
    ops->fini(tp);
}
END_TEST

START_TEST(local_mem_map_rkey_get_round_trip)
{
    const struct tp_ops *ops;
    struct tp *tp = local_open(&ops);
    enum { N = 4096 };
    unsigned char *src = malloc(N), *dst = calloc(1, N);
    struct tp_mem *smem = NULL, *dmem = NULL, *none = NULL;
    struct get_done done = {0, -1};
    void *addr = NULL, *rkey = NULL;
    size_t rkey_len = 0;

    for (int i = 0; i < N; i++)
        src[i] = (unsigned char)(i * 7 + 3);
    /* The caller allocates: the local transport never does. */
    ck_assert_int_eq(ops->mem_map(tp, &addr, N, TP_MEM_ALLOCATE, &none), DEED_ERR_UNSUPPORTED);
    ck_assert_ptr_null(addr);
    ck_assert_ptr_null(none);

    addr = src;
    ck_assert_int_eq(ops->mem_map(tp, &addr, N, 0, &smem), DEED_OK);
    ck_assert_ptr_nonnull(smem);
    ck_assert_ptr_eq(addr, src);
    addr = dst;
    ck_assert_int_eq(ops->mem_map(tp, &addr, N, 0, &dmem), DEED_OK);
    ck_assert_int_eq(ops->rkey_pack(tp, smem, &rkey, &rkey_len), DEED_OK);
    ck_assert_ptr_nonnull(rkey);
    ck_assert_uint_eq(rkey_len, 16);

    /* A middle range: exactly those bytes arrive, the callback runs before get returns. */
    ck_assert_int_eq(ops->get(tp, 0, dst + 100, dmem, (uint64_t)(uintptr_t)(src + 1000), rkey,
                              rkey_len, 2000, get_cb, &done),
                     DEED_OK);
    ck_assert_int_eq(done.calls, 1);
    ck_assert_int_eq(done.status, 0);
    ck_assert_mem_eq(dst + 100, src + 1000, 2000);
    ck_assert_uint_eq(dst[99], 0);
    ck_assert_uint_eq(dst[2100], 0);

    /* The whole region, without a local registration. */
    memset(dst, 0, N);
    ck_assert_int_eq(
        ops->get(tp, 0, dst, NULL, (uint64_t)(uintptr_t)src, rkey, rkey_len, N, get_cb, &done),
        DEED_OK);
    ck_assert_int_eq(done.calls, 2);
    ck_assert_mem_eq(dst, src, N);

    ops->rkey_buf_free(tp, rkey);
    ck_assert_int_eq(ops->mem_unmap(tp, smem), DEED_OK);
    ck_assert_int_eq(ops->mem_unmap(tp, dmem), DEED_OK);
    ops->fini(tp);
    free(src);
    free(dst);
}
END_TEST

START_TEST(local_get_outside_a_region_is_rejected)
{
    const struct tp_ops *ops;
    struct tp *tp = local_open(&ops);
    enum { N = 1024 };
    unsigned char *src = malloc(N), *dst = malloc(2 * N);
    struct tp_mem *smem = NULL, *dmem = NULL;
    struct get_done done = {0, -1};
    void *addr = src, *rkey = NULL;
    size_t rkey_len = 0;
    uint64_t raddr = (uint64_t)(uintptr_t)src;
    int level;

    memset(src, 1, N);
    ck_assert_int_eq(ops->mem_map(tp, &addr, N, 0, &smem), DEED_OK);
    addr = dst;
    ck_assert_int_eq(ops->mem_map(tp, &addr, N, 0, &dmem), DEED_OK); /* first half only */
    ck_assert_int_eq(ops->rkey_pack(tp, smem, &rkey, &rkey_len), DEED_OK);

    level = quiet();
    /* Past the end, before the start, wrong rank, bad rkey length, local overflow. */
    ck_assert_int_eq(ops->get(tp, 0, dst, NULL, raddr + N - 8, rkey, rkey_len, 16, get_cb, &done),
                     DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(ops->get(tp, 0, dst, NULL, raddr - 8, rkey, rkey_len, 16, get_cb, &done),
                     DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(ops->get(tp, 1, dst, NULL, raddr, rkey, rkey_len, 16, get_cb, &done),
                     DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(ops->get(tp, 0, dst, NULL, raddr, rkey, rkey_len - 1, 16, get_cb, &done),
                     DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(ops->get(tp, 0, dst + N - 8, dmem, raddr, rkey, rkey_len, 16, get_cb, &done),
                     DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(done.calls, 0); /* no completion for a rejected get */

    /* After unmapping, the rkey is stale. */
    ck_assert_int_eq(ops->mem_unmap(tp, smem), DEED_OK);
    ck_assert_int_eq(ops->get(tp, 0, dst, NULL, raddr, rkey, rkey_len, 16, get_cb, &done),
                     DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(ops->mem_unmap(tp, smem), DEED_ERR_INVALID_ARG); /* already gone */
    deed__log_level = level;
    ck_assert_int_eq(done.calls, 0);

    ops->rkey_buf_free(tp, rkey);
    ops->fini(tp); /* frees dmem, still registered */
    free(src);
    free(dst);
}
END_TEST

START_TEST(store_segments_registered_with_local_and_readable)
{
    const struct tp_ops *ops;
    struct tp *tp = local_open(&ops);
    struct store_params p = {.size = 1 << 20, .numa_node = -1, .pin = 0, .tp_ops = ops, .tp = tp};
    struct store *s = NULL;
    struct store_loc a, b;
    struct tp_mem *mem = NULL;
    struct get_done done = {0, -1};
    void *base, *rkey = NULL;
    uint64_t len;
    size_t rkey_len;
    unsigned char buf[16];

    ck_assert_int_eq(store_create(&p, &s), DEED_OK);
    ck_assert_uint_eq(store_nsegments(s), 1);
    store_segment(s, 0, &base, &len, &mem);
    ck_assert_ptr_nonnull(mem);
    ck_assert_int_eq(ops->rkey_pack(tp, mem, &rkey, &rkey_len), DEED_OK);

    ck_assert_int_eq(store_alloc(s, 10000, &a), DEED_OK);
    ck_assert_int_eq(store_alloc(s, 10000, &b), DEED_OK);
    for (int i = 0; i < 10000; i++)
        ((unsigned char *)a.addr)[i] = (unsigned char)(i ^ 0x5a);
    /* Read a's bytes "remotely" into b, as a reader pulls an object into its own store. */
    ck_assert_int_eq(ops->get(tp, 0, b.addr, mem, (uint64_t)(uintptr_t)a.addr, rkey, rkey_len,
                              10000, get_cb, &done),
                     DEED_OK);
    ck_assert_int_eq(done.calls, 1);
    ck_assert_mem_eq(b.addr, a.addr, 10000);

    uint64_t stale = (uint64_t)(uintptr_t)a.addr;
    store_free(s, a.addr);
    store_free(s, b.addr);
    store_destroy(s); /* unregisters the segment: its rkey is now stale */
    int level = quiet();
    ck_assert_int_eq(ops->get(tp, 0, buf, NULL, stale, rkey, rkey_len, 16, get_cb, &done),
                     DEED_ERR_INVALID_ARG);
    deed__log_level = level;
    ck_assert_int_eq(done.calls, 1);
    ops->rkey_buf_free(tp, rkey);
    ops->fini(tp);
}
END_TEST

static Suite *transport_suite(void)
{
    Suite *su = suite_create("transport");
    TCase *tc = tcase_create("transport");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, find_by_name);
    tcase_add_test(tc, local_ops_are_complete);
    tcase_add_test(tc, local_init_requires_one_rank);
    tcase_add_test(tc, local_basic_properties);
    tcase_add_test(tc, local_mem_map_rkey_get_round_trip);
    tcase_add_test(tc, local_get_outside_a_region_is_rejected);
    tcase_add_test(tc, store_segments_registered_with_local_and_readable);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(transport_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
