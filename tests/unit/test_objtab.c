/*
 * test_objtab.c — the ownership table's index: insert / find / remove of random rows checked
 * against a shadow model, with tables small enough (and ids crafted) to exercise wrap-around
 * probe chains and backward-shift deletion; the sequence ring (the driver's ids) with a ring
 * small enough that most rows overflow into the hash part.
 */
#include <check.h>
#include <stdlib.h>

#include "objtab.h"
#include "rt.h"
#include "testutil.h"

struct model {
    struct obj *rows;
    uint8_t *in;
    size_t n, live;
};

#define SEQ_HI 0x5e05e05e0ull
#define SEQ_LO 0xfffffffffffff000ull /* c = lo - SEQ_LO wraps past 2^64: must still work */

static void model_init(struct model *m, size_t n, uint64_t seed, int narrow)
{
    m->rows = calloc(n, sizeof(*m->rows));
    m->in = calloc(n, 1);
    m->n = n;
    m->live = 0;
    for (size_t i = 0; i < n; i++) {
        /* narrow == 2: the driver's sequence ids (objtab_set_seq), with every 5th row a
         * random id and every 7th a sequence id's second return (neither goes to the ring) */
        if (narrow == 2) {
            m->rows[i].id.hi = i % 5 == 4 ? tu_rnd(&seed) : SEQ_HI;
            m->rows[i].id.lo = i % 5 == 4 ? tu_rnd(&seed) : SEQ_LO + 1 + i;
            m->rows[i].id.index = i % 7 == 6 ? 1 : 0;
            continue;
        }
        /* narrow: few distinct (hi, lo), many indices -> ids that differ in one field only */
        if (narrow) {
            m->rows[i].id.hi = 42 + i / 1000;
            m->rows[i].id.lo = 7;
            m->rows[i].id.index = (uint32_t)(i % 1000);
        } else {
            m->rows[i].id.hi = tu_rnd(&seed);
            m->rows[i].id.lo = tu_rnd(&seed);
            m->rows[i].id.index = (uint32_t)tu_rnd(&seed);
        }
    }
}

static void model_free(struct model *m)
{
    free(m->rows);
    free(m->in);
}

static void check_all(struct objtab *t, struct model *m)
{
    ck_assert_uint_eq(t->count, m->live);
    for (size_t i = 0; i < m->n; i++) {
        struct obj *r = &m->rows[i];
        struct obj *f = objtab_find(t, r->id.hi, r->id.lo, r->id.index);
        if (m->in[i])
            ck_assert_msg(f == r, "row %zu lost", i);
        else
            ck_assert_msg(f == NULL, "removed row %zu still found", i);
    }
    /* iteration visits exactly the live rows */
    uint64_t it = 0;
    size_t seen = 0;
    struct obj *o;
    while ((o = objtab_next(t, &it)) != NULL) {
        size_t i = (size_t)(o - m->rows);
        ck_assert_uint_lt(i, m->n);
        ck_assert(m->in[i]);
        seen++;
    }
    ck_assert_uint_eq(seen, m->live);
    /* load factor of the hash part stays at most 50% */
    ck_assert_uint_le(t->hcount * 2, t->mask + 1);
    uint64_t inring = 0;
    for (uint64_t i = 0; t->ring && i <= t->rmask; i++)
        inring += t->ring[i] != NULL;
    ck_assert_uint_eq(t->count, t->hcount + inring);
}

static void random_ops(size_t nrows, size_t nops, uint64_t seed, int narrow, int check_every)
{
    struct objtab t;
    struct model m;
    ck_assert_int_eq(objtab_init(&t, 1), 0);
    ck_assert_uint_eq(t.mask + 1, 64);
    if (narrow == 2) /* a ring of 64 for 2,000 rows: most slots are contended */
        ck_assert_int_eq(objtab_set_seq(&t, SEQ_HI, SEQ_LO, 6), 0);
    model_init(&m, nrows, seed ^ 0x55, narrow);
    for (size_t op = 0; op < nops; op++) {
        size_t i = tu_rnd(&seed) % nrows;
        struct obj *r = &m.rows[i];
        if (!m.in[i] && (tu_rnd(&seed) % 100) < 60) {
            ck_assert_int_eq(objtab_insert(&t, r), 0);
            m.in[i] = 1;
            m.live++;
        } else if (m.in[i]) {
            objtab_remove(&t, r);
            m.in[i] = 0;
            m.live--;
        }
        /* spot check the touched row and a random other row every op */
        ck_assert(objtab_find(&t, r->id.hi, r->id.lo, r->id.index) == (m.in[i] ? r : NULL));
        size_t j = tu_rnd(&seed) % nrows;
        ck_assert(objtab_find(&t, m.rows[j].id.hi, m.rows[j].id.lo, m.rows[j].id.index) ==
                  (m.in[j] ? &m.rows[j] : NULL));
        if (check_every && op % check_every == 0)
            check_all(&t, &m);
    }
    check_all(&t, &m);
    /* remove everything; the table must end empty */
    for (size_t i = 0; i < nrows; i++)
        if (m.in[i]) {
            objtab_remove(&t, &m.rows[i]);
            m.in[i] = 0;
            m.live--;
        }
    check_all(&t, &m);
    ck_assert_uint_eq(t.count, 0);
    ck_assert_uint_eq(t.seq_in_hash, 0);
    for (uint64_t i = 0; i <= t.mask; i++)
        ck_assert(t.slots[i].hash == 0 && t.slots[i].row == NULL);
    objtab_fini(&t);
    model_free(&m);
}

START_TEST(random_100k_vs_model)
{
    random_ops(20000, 100000, 0x1234567ull, 0, 25000);
}
END_TEST

START_TEST(random_small_full_checks)
{
    /* few rows: the table stays small, chains wrap, every op is fully checked */
    random_ops(40, 4000, 0xabcdefull, 0, 1);
}
END_TEST

START_TEST(narrow_ids)
{
    random_ops(5000, 30000, 0x77ull, 1, 10000);
}
END_TEST

START_TEST(sequence_ring_vs_model)
{
    /* the driver's ids in a ring of 64 slots, overflowing into the hash part and back */
    random_ops(2000, 60000, 0x5e9ull, 2, 2000);
    random_ops(70, 20000, 0x5eaull, 2, 1);
}
END_TEST

START_TEST(sequence_ids_are_not_inserted_twice)
{
    struct objtab t;
    static struct obj a[200], dup;
    ck_assert_int_eq(objtab_init(&t, 1), 0);
    ck_assert_int_eq(objtab_set_seq(&t, SEQ_HI, SEQ_LO, 6), 0);
    for (int i = 0; i < 200; i++) { /* 64 in the ring, the rest in the hash part */
        a[i].id.hi = SEQ_HI;
        a[i].id.lo = SEQ_LO + 1 + (uint64_t)i;
        ck_assert_int_eq(objtab_insert_new(&t, &a[i]), 0);
    }
    ck_assert_uint_eq(t.count, 200);
    ck_assert_uint_eq(t.seq_in_hash, 200 - 64);
    /* free the ring slot of a hash-resident id: inserting that id again must still see it */
    objtab_remove(&t, &a[70 - 64]);
    dup = a[70];
    ck_assert_int_eq(objtab_insert_new(&t, &dup), 1);
    dup = a[3]; /* in the ring */
    ck_assert_int_eq(objtab_insert_new(&t, &dup), 1);
    ck_assert_ptr_eq(objtab_find(&t, SEQ_HI, SEQ_LO + 71, 0), &a[70]);
    ck_assert_ptr_null(objtab_find(&t, SEQ_HI, SEQ_LO + 7, 0)); /* a[6] was removed */
    ck_assert_ptr_null(objtab_find(&t, SEQ_HI, SEQ_LO + 1000, 0));
    objtab_fini(&t);
}
END_TEST

START_TEST(remove_absent_is_harmless)
{
    struct objtab t;
    struct model m;
    ck_assert_int_eq(objtab_init(&t, 100), 0);
    ck_assert_uint_eq(t.mask + 1, 128);
    model_init(&m, 60, 99, 0);
    for (size_t i = 0; i < 30; i++) {
        ck_assert_int_eq(objtab_insert(&t, &m.rows[i]), 0);
        m.in[i] = 1;
        m.live++;
    }
    for (size_t i = 30; i < 60; i++)
        objtab_remove(&t, &m.rows[i]); /* never inserted */
    check_all(&t, &m);
    objtab_fini(&t);
    model_free(&m);
}
END_TEST

/* Rows whose hashes all land in the last few slots of a 64-slot table, so their probe
 * chain wraps around to slot 0 and deletions must shift entries across the wrap. */
START_TEST(wrapping_cluster)
{
    struct objtab t;
    ck_assert_int_eq(objtab_init(&t, 64), 0);
    ck_assert_uint_eq(t.mask, 63);
    enum { N = 24 };
    static struct obj rows[N];
    uint64_t seed = 5;
    int n = 0;
    while (n < N) {
        struct obj *r = &rows[n];
        r->id.hi = tu_rnd(&seed);
        r->id.lo = tu_rnd(&seed);
        r->id.index = 0;
        uint64_t h = ids_obj_hash(r->id.hi, r->id.lo, 0);
        h = h ? h : 1;
        /* home slots 60..63 for most, 0..2 for some */
        uint64_t home = h & 63;
        if ((n < 18 && home >= 60) || (n >= 18 && home <= 2))
            n++;
    }
    /* insert without triggering growth: 24 rows fit under 50% of 64 */
    struct model m = {rows, calloc(N, 1), N, 0};
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(objtab_insert(&t, &rows[i]), 0);
        m.in[i] = 1;
        m.live++;
    }
    ck_assert_uint_eq(t.mask, 63);
    check_all(&t, &m);
    /* delete in an order that empties the front of the cluster first */
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(tu_rnd(&seed) % (uint64_t)(i + 1));
        int x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    for (int k = 0; k < N; k++) {
        objtab_remove(&t, &rows[order[k]]);
        m.in[order[k]] = 0;
        m.live--;
        check_all(&t, &m);
        /* re-insert half of them once, to mix inserts into a shifted table */
        if (k % 4 == 1) {
            ck_assert_int_eq(objtab_insert(&t, &rows[order[k]]), 0);
            m.in[order[k]] = 1;
            m.live++;
            check_all(&t, &m);
            objtab_remove(&t, &rows[order[k]]);
            m.in[order[k]] = 0;
            m.live--;
            check_all(&t, &m);
        }
    }
    free(m.in);
    objtab_fini(&t);
}
END_TEST

START_TEST(growth_keeps_rows)
{
    struct objtab t;
    struct model m;
    ck_assert_int_eq(objtab_init(&t, 0), 0);
    model_init(&m, 40000, 3, 0);
    for (size_t i = 0; i < m.n; i++) {
        ck_assert_int_eq(objtab_insert(&t, &m.rows[i]), 0);
        m.in[i] = 1;
        m.live++;
    }
    ck_assert_uint_ge(t.mask + 1, 80000);
    check_all(&t, &m);
    for (size_t i = 0; i < m.n; i += 2) {
        objtab_remove(&t, &m.rows[i]);
        m.in[i] = 0;
        m.live--;
    }
    check_all(&t, &m);
    objtab_fini(&t);
    model_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("objtab");
    TCase *tc = tcase_create("objtab");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, random_100k_vs_model);
    tcase_add_test(tc, random_small_full_checks);
    tcase_add_test(tc, narrow_ids);
    tcase_add_test(tc, remove_absent_is_harmless);
    tcase_add_test(tc, sequence_ring_vs_model);
    tcase_add_test(tc, sequence_ids_are_not_inserted_twice);
    tcase_add_test(tc, wrapping_cluster);
    tcase_add_test(tc, growth_keeps_rows);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
