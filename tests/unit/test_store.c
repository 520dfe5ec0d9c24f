/*
 * test_store.c — unit tests for lib/store.c: the object store's segments and its O(1)
 * allocator (alignment, splitting and coalescing, full-store behaviour, usage accounting,
 * bad frees, and a randomized run against a shadow model), single- and multi-threaded.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deed.h"
#include "log.h"
#include "store.h"
#include "transport.h"

#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

static struct store *make_store(uint64_t size)
{
    struct store_params p = {.size = size, .numa_node = -1, .pin = 0};
    struct store *s = NULL;

    ck_assert_int_eq(store_create(&p, &s), DEED_OK);
    ck_assert_ptr_nonnull(s);
    return s;
}

static uint64_t used_of(struct store *s)
{
    uint64_t used = ~0ull, total = 0;

    store_usage(s, &used, &total);
    ck_assert_uint_le(used, total);
    return used;
}

/* The largest size that can be allocated right now (binary search; leaves nothing
 * allocated). */
static uint64_t max_alloc(struct store *s)
{
    uint64_t total, lo = 0, hi;
    struct store_loc loc;

    int level = deed__log_level;

    deed__log_level = -1; /* the oversize probes would each log an error */
    store_usage(s, NULL, &total);
    hi = total;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if (store_alloc(s, mid, &loc) == DEED_OK) {
            store_free(s, loc.addr);
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    deed__log_level = level;
    return lo;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 0x2545f4914f6cdd1dull;
}

static void shuffle(void **v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd() % i;
        void *t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

START_TEST(create_rejects_bad_params)
{
    struct store_params p = {.size = 0, .numa_node = -1};
    struct store *s = NULL;

    ck_assert_int_eq(store_create(&p, &s), DEED_ERR_INVALID_ARG);
    ck_assert_ptr_null(s);
    p.size = MiB;
    ck_assert_int_eq(store_create(NULL, &s), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(store_create(&p, NULL), DEED_ERR_INVALID_ARG);
}
END_TEST

START_TEST(size_rounds_up_to_pages_and_one_segment)
{
    struct store *s = make_store(MiB + 1);
    uint64_t used, total, len;
    void *base;
    struct tp_mem *mem = (struct tp_mem *)1;

    store_usage(s, &used, &total);
    ck_assert_uint_eq(used, 0);
    ck_assert_uint_ge(total, MiB + 1);
    ck_assert_uint_le(total, MiB + 64 * 1024);
    ck_assert_uint_eq(store_nsegments(s), 1);
    store_segment(s, 0, &base, &len, &mem);
    ck_assert_ptr_nonnull(base);
    ck_assert_uint_eq(len, total);
    ck_assert_ptr_null(mem); /* no transport */
    ck_assert(store_contains(s, base, len));
    ck_assert(!store_contains(s, base, len + 1));
    ck_assert(!store_contains(s, (char *)base - 1, 1));
    store_destroy(s);
}
END_TEST

START_TEST(alloc_is_aligned_and_inside_its_segment)
{
    struct store *s = make_store(4 * MiB);
    static const uint64_t sizes[] = {1,    7,    31,   32,    33,     63,     64,
                                     65,   100,  127,  128,   1000,   2047,   2048,
                                     2049, 4095, 4096, 65536, 100000, 1 << 20};
    struct store_loc locs[sizeof(sizes) / sizeof(sizes[0])];

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        void *base;
        uint64_t len;

        ck_assert_int_eq(store_alloc(s, sizes[i], &locs[i]), DEED_OK);
        ck_assert_uint_eq((uintptr_t)locs[i].addr % 64, 0);
        ck_assert_uint_ge(locs[i].len, sizes[i]);
        ck_assert_uint_lt(locs[i].len, sizes[i] + 128); /* no gross waste */
        ck_assert(store_contains(s, locs[i].addr, locs[i].len));
        store_segment(s, locs[i].segment, &base, &len, NULL);
        ck_assert_ptr_eq((char *)base + locs[i].offset, locs[i].addr);
        ck_assert_uint_le(locs[i].offset + locs[i].len, len);
        memset(locs[i].addr, 0xa5, locs[i].len); /* must not damage any other block */
    }
    ck_assert_uint_gt(used_of(s), 0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (uint64_t k = 0; k < locs[i].len; k++)
            ck_assert_uint_eq(((unsigned char *)locs[i].addr)[k], 0xa5);
        store_free(s, locs[i].addr);
    }
    ck_assert_uint_eq(used_of(s), 0);
    store_destroy(s);
}
END_TEST

START_TEST(size_zero_and_oversize_are_rejected)
{
    struct store *s = make_store(MiB);
    struct store_loc loc;
    uint64_t total;

    store_usage(s, NULL, &total);
    ck_assert_int_eq(store_alloc(s, 0, &loc), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(store_alloc(s, total + 1, &loc), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(store_alloc(s, UINT64_MAX, &loc), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(store_alloc(s, UINT64_MAX - 63, &loc), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(store_alloc(s, 64, NULL), DEED_ERR_INVALID_ARG);
    ck_assert_uint_eq(used_of(s), 0);
    store_destroy(s);
}
END_TEST

START_TEST(usage_counts_headers_and_returns_to_zero)
{
    struct store *s = make_store(MiB);
    struct store_loc a, b;
    uint64_t u1, u2;

    ck_assert_int_eq(store_alloc(s, 100, &a), DEED_OK);
    u1 = used_of(s);
    ck_assert_uint_gt(u1, 100); /* usable bytes plus the header */
    ck_assert_uint_ge(u1, a.len);
    ck_assert_int_eq(store_alloc(s, 5000, &b), DEED_OK);
    u2 = used_of(s);
    ck_assert_uint_gt(u2, u1 + 5000);
    store_free(s, a.addr);
    ck_assert_uint_eq(used_of(s), u2 - u1);
    store_free(s, b.addr);
    ck_assert_uint_eq(used_of(s), 0);
    store_destroy(s);
}
END_TEST

START_TEST(full_store_reports_store_full_until_a_free)
{
    struct store *s = make_store(MiB);
    struct store_loc *locs = calloc(1024, sizeof(*locs));
    struct store_loc loc;
    size_t n = 0;
    int rc;

    while ((rc = store_alloc(s, 4000, &locs[n])) == DEED_OK)
        n++;
    ck_assert_int_eq(rc, DEED_ERR_STORE_FULL);
    ck_assert_uint_ge(n, 240); /* 1 MiB / 4 KiB blocks, minus overhead */
    ck_assert_uint_le(n, 1024 * 1024 / 4000);
    ck_assert_int_eq(store_alloc(s, 4000, &loc), DEED_ERR_STORE_FULL);
    store_free(s, locs[n / 2].addr);
    ck_assert_int_eq(store_alloc(s, 4000, &loc), DEED_OK);
    ck_assert_ptr_eq(loc.addr, locs[n / 2].addr); /* the only hole */
    locs[n / 2] = loc;
    ck_assert_int_eq(store_alloc(s, 4000, &loc), DEED_ERR_STORE_FULL);
    for (size_t i = 0; i < n; i++)
        store_free(s, locs[i].addr);
    ck_assert_uint_eq(used_of(s), 0);
    free(locs);
    store_destroy(s);
}
END_TEST

START_TEST(random_frees_coalesce_back_to_one_block)
{
    struct store *s = make_store(8 * MiB);
    uint64_t total, full = max_alloc(s);
    enum { MAXPTRS = 200000 };
    void **ptrs = calloc(MAXPTRS, sizeof(*ptrs));
    struct store_loc loc;
    size_t n = 0;

    store_usage(s, NULL, &total);
    ck_assert_uint_ge(full, total - 4096); /* one segment, one block: little lost */
    ck_assert_int_eq(store_alloc(s, full + 1, &loc), DEED_ERR_INVALID_ARG);
    for (int round = 0; round < 5; round++) {
        /* Fill the store with blocks of mixed sizes, then free them in random order. */
        while (n < MAXPTRS) {
            uint64_t size = 1 + rnd() % (rnd() % 4 == 0 ? 64 * 1024 : 512);
            if (store_alloc(s, size, &loc) != DEED_OK)
                break;
            ptrs[n++] = loc.addr;
        }
        ck_assert_uint_gt(n, 100);
        ck_assert_int_eq(store_alloc(s, full, &loc), DEED_ERR_STORE_FULL);
        shuffle(ptrs, n);
        for (size_t i = 0; i < n; i++)
            store_free(s, ptrs[i]);
        n = 0;
        ck_assert_uint_eq(used_of(s), 0);
        ck_assert_int_eq(store_alloc(s, full, &loc), DEED_OK);
        store_free(s, loc.addr);
    }
    ck_assert_uint_eq(max_alloc(s), full);
    free(ptrs);
    store_destroy(s);
}
END_TEST

START_TEST(split_neighbours_merge_in_any_order)
{
    struct store *s = make_store(MiB);
    uint64_t full = max_alloc(s);
    struct store_loc a, b, c, d, loc;

    /* Free the middle blocks first, then the outer ones: merges with prev, next and both. */
    ck_assert_int_eq(store_alloc(s, 1000, &a), DEED_OK);
    ck_assert_int_eq(store_alloc(s, 2000, &b), DEED_OK);
    ck_assert_int_eq(store_alloc(s, 3000, &c), DEED_OK);
    ck_assert_int_eq(store_alloc(s, 4000, &d), DEED_OK);
    ck_assert_int_eq(store_alloc(s, full, &loc), DEED_ERR_STORE_FULL);
    store_free(s, b.addr);
    store_free(s, c.addr);
    ck_assert_int_eq(store_alloc(s, 4900, &loc), DEED_OK); /* b+c merged into one hole */
    ck_assert_ptr_eq(loc.addr, b.addr);
    store_free(s, loc.addr);
    store_free(s, a.addr);
    store_free(s, d.addr);
    ck_assert_uint_eq(used_of(s), 0);
    ck_assert_int_eq(store_alloc(s, full, &loc), DEED_OK);
    store_free(s, loc.addr);
    store_destroy(s);
}
END_TEST

START_TEST(bad_free_is_detected_without_damage)
{
    struct store *s = make_store(MiB);
    uint64_t full = max_alloc(s), u;
    struct store_loc a, b, loc;
    char *foreign = malloc(256);

    ck_assert_int_eq(store_alloc(s, 1000, &a), DEED_OK);
    ck_assert_int_eq(store_alloc(s, 1000, &b), DEED_OK);
    memset(a.addr, 0, a.len);
    u = used_of(s);
    store_free(s, foreign + 64);        /* not store memory */
    store_free(s, (char *)a.addr + 64); /* inside a block */
    store_free(s, (char *)a.addr + 8);  /* misaligned */
    store_free(s, NULL);                /* ignored */
    ck_assert_uint_eq(used_of(s), u);
    store_free(s, a.addr);
    ck_assert_uint_eq(used_of(s), u / 2);
    store_free(s, a.addr); /* double free */
    ck_assert_uint_eq(used_of(s), u / 2);
    store_free(s, b.addr);
    ck_assert_uint_eq(used_of(s), 0);
    store_free(s, b.addr); /* double free of a block merged into its neighbour */
    ck_assert_uint_eq(used_of(s), 0);
    ck_assert_int_eq(store_alloc(s, full, &loc), DEED_OK);
    store_free(s, loc.addr);
    ck_assert_uint_eq(used_of(s), 0);
    free(foreign);
    store_destroy(s);
}
END_TEST

/* Live blocks of the shadow model, sorted by address. */
struct live {
    unsigned char *addr;
    uint64_t len;
    uint64_t tag;
};

static size_t live_find(const struct live *v, size_t n, const void *addr)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((const unsigned char *)v[mid].addr < (const unsigned char *)addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void live_check_tag(const struct live *l)
{
    uint64_t head, tail;

    memcpy(&head, l->addr, sizeof(head));
    memcpy(&tail, l->addr + l->len - sizeof(tail), sizeof(tail));
    ck_assert_uint_eq(head, l->tag);
    ck_assert_uint_eq(tail, ~l->tag);
}

START_TEST(random_ops_against_shadow_model)
{
    enum { NOPS = 100000, MAXLIVE = 20000 };
    struct store *s = make_store(16 * MiB);
    struct live *v = calloc(MAXLIVE, sizeof(*v));
    uint64_t full = max_alloc(s), live_bytes = 0;
    size_t n = 0, nfull = 0;
    struct store_loc loc;

    for (uint64_t op = 0; op < NOPS; op++) {
        int do_alloc = n == 0 || (n < MAXLIVE && rnd() % 100 < 55);
        if (do_alloc) {
            uint64_t r = rnd() % 100;
            uint64_t size = r < 70   ? 16 + rnd() % 2048
                            : r < 97 ? 2048 + rnd() % 65536
                                     : 65536 + rnd() % MiB;
            int rc = store_alloc(s, size, &loc);
            if (rc == DEED_ERR_STORE_FULL) {
                nfull++;
                continue;
            }
            ck_assert_int_eq(rc, DEED_OK);
            ck_assert_uint_eq((uintptr_t)loc.addr % 64, 0);
            ck_assert_uint_ge(loc.len, size);
            ck_assert(store_contains(s, loc.addr, loc.len));
            size_t i = live_find(v, n, loc.addr);
            if (i > 0)
                ck_assert_uint_le((uintptr_t)(v[i - 1].addr + v[i - 1].len), (uintptr_t)loc.addr);
            if (i < n)
                ck_assert_uint_le((uintptr_t)loc.addr + loc.len, (uintptr_t)v[i].addr);
            memmove(&v[i + 1], &v[i], (n - i) * sizeof(*v));
            v[i] = (struct live){loc.addr, loc.len, rnd()};
            memcpy(v[i].addr, &v[i].tag, sizeof(uint64_t));
            uint64_t ntag = ~v[i].tag;
            memcpy(v[i].addr + v[i].len - sizeof(ntag), &ntag, sizeof(ntag));
            n++;
            live_bytes += loc.len;
        } else {
            size_t i = rnd() % n;
            live_check_tag(&v[i]);
            live_bytes -= v[i].len;
            store_free(s, v[i].addr);
            memmove(&v[i], &v[i + 1], (n - i - 1) * sizeof(*v));
            n--;
        }
        if (op % 1000 == 0) {
            uint64_t used = used_of(s);
            ck_assert_uint_ge(used, live_bytes);
            ck_assert_uint_le(used, live_bytes + 64 * n); /* at most one granule per block */
        }
    }
    ck_assert_uint_gt(nfull, 0); /* the sizes were chosen to reach a full store */
    for (size_t i = 0; i < n; i++) {
        live_check_tag(&v[i]);
        store_free(s, v[i].addr);
    }
    ck_assert_uint_eq(used_of(s), 0);
    ck_assert_uint_eq(max_alloc(s), full);
    free(v);
    store_destroy(s);
}
END_TEST

START_TEST(large_store_uses_several_segments)
{
    /* Address space only (MAP_NORESERVE): only block headers are ever touched. */
    struct store *s = make_store(2 * GiB + GiB / 2);
    struct store_loc loc[3], extra;
    uint64_t total;

    store_usage(s, NULL, &total);
    ck_assert_uint_eq(total, 2 * GiB + GiB / 2);
    ck_assert_uint_eq(store_nsegments(s), 3);
    for (uint32_t i = 0; i < 3; i++) {
        void *base;
        uint64_t len;
        store_segment(s, i, &base, &len, NULL);
        ck_assert_uint_le(len, GiB);
        ck_assert(store_contains(s, base, len));
    }
    /* A block never spans segments: 1.5 GiB fits nowhere. */
    ck_assert_int_eq(store_alloc(s, GiB + GiB / 2, &extra), DEED_ERR_INVALID_ARG);
    /* 600 + 600 + 500 MiB: only one segment at a time can hold each. */
    ck_assert_int_eq(store_alloc(s, 600 * MiB, &loc[0]), DEED_OK);
    ck_assert_int_eq(store_alloc(s, 600 * MiB, &loc[1]), DEED_OK);
    ck_assert_int_eq(store_alloc(s, 500 * MiB, &loc[2]), DEED_OK);
    for (int i = 0; i < 3; i++)
        ck_assert(store_contains(s, loc[i].addr, loc[i].len));
    ck_assert_uint_ne(loc[0].segment, loc[1].segment);
    ck_assert_uint_ne(loc[1].segment, loc[2].segment);
    ck_assert_uint_ne(loc[0].segment, loc[2].segment);
    ck_assert_int_eq(store_alloc(s, 300 * MiB, &extra), DEED_OK); /* a 1 GiB segment's rest */
    ck_assert_uint_ne(extra.segment, loc[2].segment);
    store_free(s, extra.addr);
    ck_assert_int_eq(store_alloc(s, 700 * MiB, &extra), DEED_ERR_STORE_FULL);
    for (int i = 0; i < 3; i++)
        store_free(s, loc[i].addr);
    ck_assert_int_eq(store_alloc(s, GiB - 4096, &loc[0]), DEED_OK); /* coalesced again */
    store_free(s, loc[0].addr);
    ck_assert_uint_eq(used_of(s), 0);
    store_destroy(s);

    s = make_store(6 * GiB); /* more than 4 x 1 GiB: 4 larger segments */
    ck_assert_uint_eq(store_nsegments(s), 4);
    ck_assert_int_eq(store_alloc(s, GiB + GiB / 4, &loc[0]), DEED_OK);
    store_free(s, loc[0].addr);
    store_destroy(s);
}
END_TEST

START_TEST(pin_and_numa_binding_do_not_fail_creation)
{
    struct store_params p = {.size = 256 * 1024, .numa_node = 0, .pin = 1};
    struct store *s = NULL;
    struct store_loc loc;

    ck_assert_int_eq(store_create(&p, &s), DEED_OK);
    ck_assert_int_eq(store_alloc(s, 1000, &loc), DEED_OK);
    memset(loc.addr, 1, loc.len);
    store_free(s, loc.addr);
    store_destroy(s);
    p.numa_node = 4095; /* no such node: logged, not fatal */
    p.pin = 0;
    ck_assert_int_eq(store_create(&p, &s), DEED_OK);
    store_destroy(s);
}
END_TEST

struct thr_arg {
    struct store *s;
    uint64_t seed;
    int errors;
};

static void *thr_main(void *argp)
{
    struct thr_arg *a = argp;
    struct store_loc held[64];
    int nheld = 0;

    for (int i = 0; i < 20000; i++) {
        a->seed = a->seed * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t r = a->seed >> 33;
        if (nheld < 64 && (nheld == 0 || r % 2)) {
            struct store_loc loc;
            uint64_t size = 64 + r % 8192;
            int rc = store_alloc(a->s, size, &loc);
            if (rc == DEED_OK) {
                memset(loc.addr, (int)(r & 0xff), 64);
                ((unsigned char *)loc.addr)[loc.len - 1] = (unsigned char)(r & 0xff);
                held[nheld++] = loc;
            } else if (rc != DEED_ERR_STORE_FULL) {
                a->errors++;
            }
        } else {
            int k = (int)(r % (uint64_t)nheld);
            unsigned char *p = held[k].addr;
            if (p[0] != p[63] || p[0] != p[held[k].len - 1])
                a->errors++;
            store_free(a->s, held[k].addr);
            held[k] = held[--nheld];
        }
    }
    while (nheld > 0)
        store_free(a->s, held[--nheld].addr);
    return NULL;
}

START_TEST(concurrent_alloc_free_from_threads)
{
    enum { NTHR = 4 };
    struct store *s = make_store(2 * MiB);
    uint64_t full = max_alloc(s);
    pthread_t th[NTHR];
    struct thr_arg args[NTHR];

    for (int i = 0; i < NTHR; i++) {
        args[i] = (struct thr_arg){.s = s, .seed = (uint64_t)i * 7919 + 1};
        ck_assert_int_eq(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
    }
    for (int i = 0; i < NTHR; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(args[i].errors, 0);
    }
    ck_assert_uint_eq(used_of(s), 0);
    ck_assert_uint_eq(max_alloc(s), full);
    store_destroy(s);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *su = suite_create("store");
    TCase *tc = tcase_create("store");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, create_rejects_bad_params);
    tcase_add_test(tc, size_rounds_up_to_pages_and_one_segment);
    tcase_add_test(tc, alloc_is_aligned_and_inside_its_segment);
    tcase_add_test(tc, size_zero_and_oversize_are_rejected);
    tcase_add_test(tc, usage_counts_headers_and_returns_to_zero);
    tcase_add_test(tc, full_store_reports_store_full_until_a_free);
    tcase_add_test(tc, random_frees_coalesce_back_to_one_block);
    tcase_add_test(tc, split_neighbours_merge_in_any_order);
    tcase_add_test(tc, bad_free_is_detected_without_damage);
    tcase_add_test(tc, random_ops_against_shadow_model);
    tcase_add_test(tc, large_store_uses_several_segments);
    tcase_add_test(tc, pin_and_numa_binding_do_not_fail_creation);
    tcase_add_test(tc, concurrent_alloc_free_from_threads);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
