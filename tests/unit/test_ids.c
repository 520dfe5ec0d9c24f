/*
 * test_ids.c — deterministic identities (lib/ids.c): children, puts, roots, name hashes.
 */
#include <check.h>
#include <stdlib.h>

#include "ids.h"
#include "testutil.h"

static int eq_t(taskid_t a, taskid_t b) { return a.hi == b.hi && a.lo == b.lo; }

START_TEST(child_is_deterministic)
{
    taskid_t root = ids_root(0x1234, 0x5678, 0);
    for (uint64_t i = 0; i < 1000; i++) {
        taskid_t a = ids_child(root, i), b = ids_child(root, i);
        ck_assert(eq_t(a, b));
        ck_assert(a.hi | a.lo);
        ck_assert(!eq_t(a, root));
    }
    /* same inputs from a recomputed root give the same child (re-execution) */
    taskid_t root2 = ids_root(0x1234, 0x5678, 0);
    ck_assert(eq_t(root, root2));
    ck_assert(eq_t(ids_child(ids_child(root, 3), 7), ids_child(ids_child(root2, 3), 7)));
}
END_TEST

START_TEST(child_inputs_matter)
{
    taskid_t root = ids_root(1, 2, 0);
    ck_assert(!eq_t(ids_child(root, 0), ids_child(root, 1)));
    ck_assert(!eq_t(ids_child(root, 1), ids_child(root, 1ull << 32)));
    taskid_t other = ids_root(1, 2, 1); /* other rank */
    ck_assert(!eq_t(root, other));
    ck_assert(!eq_t(ids_child(root, 5), ids_child(other, 5)));
    ck_assert(!eq_t(ids_root(1, 3, 0), root));
    ck_assert(!eq_t(ids_root(2, 2, 0), root));
    /* the grandchild (0,1) differs from (1,0) */
    ck_assert(!eq_t(ids_child(ids_child(root, 0), 1), ids_child(ids_child(root, 1), 0)));
}
END_TEST

static int cmp_t(const void *a, const void *b)
{
    const taskid_t *x = a, *y = b;
    if (x->hi != y->hi)
        return x->hi < y->hi ? -1 : 1;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return 0;
}

START_TEST(no_collisions_among_a_million_children)
{
    const size_t n = 1000000;
    taskid_t *v = malloc(n * sizeof(*v));
    ck_assert_ptr_nonnull(v);
    taskid_t root = ids_root(0xdeadbeef, 0xfeedface, 0);
    for (size_t i = 0; i < n; i++)
        v[i] = ids_child(root, i);
    qsort(v, n, sizeof(*v), cmp_t);
    size_t dups = 0, hi_dups = 0;
    for (size_t i = 1; i < n; i++) {
        dups += eq_t(v[i], v[i - 1]);
        hi_dups += v[i].hi == v[i - 1].hi;
        ck_assert(v[i].hi | v[i].lo);
    }
    ck_assert_uint_eq(dups, 0);
    ck_assert_uint_le(hi_dups, 1); /* 64-bit halves alone should not collide either */
    free(v);
}
END_TEST

START_TEST(chain_of_children_does_not_cycle)
{
    /* depth: a task's first child's first child... stays distinct */
    const size_t n = 20000;
    taskid_t *v = malloc(n * sizeof(*v));
    taskid_t t = ids_root(7, 7, 0);
    for (size_t i = 0; i < n; i++)
        v[i] = t = ids_child(t, 0);
    qsort(v, n, sizeof(*v), cmp_t);
    for (size_t i = 1; i < n; i++)
        ck_assert(!eq_t(v[i], v[i - 1]));
    free(v);
}
END_TEST

START_TEST(put_indices_follow_returns)
{
    taskid_t t = ids_child(ids_root(9, 9, 0), 4);
    for (uint32_t nrets = 0; nrets < 300; nrets += 37)
        for (uint64_t k = 0; k < 100; k++) {
            objid_t o = ids_put(t, nrets, k);
            ck_assert_uint_eq(o.hi, t.hi);
            ck_assert_uint_eq(o.lo, t.lo);
            ck_assert_uint_eq(o.index, nrets + k);
            ck_assert_uint_ge(o.index, nrets); /* never aliases a return */
        }
    /* determinism */
    objid_t a = ids_put(t, 3, 12345), b = ids_put(t, 3, 12345);
    ck_assert(a.hi == b.hi && a.lo == b.lo && a.index == b.index);
    /* beyond 2^30 puts: a fresh id, so the index never wraps onto the returns */
    const uint64_t span = 1ull << 30;
    objid_t big = ids_put(t, 3, span), big2 = ids_put(t, 3, span + 1), big3 = ids_put(t, 3, 2 * span);
    ck_assert(!(big.hi == t.hi && big.lo == t.lo));
    ck_assert(big.hi == big2.hi && big.lo == big2.lo && big.index != big2.index);
    ck_assert(!(big3.hi == big.hi && big3.lo == big.lo));
    /* the last put below the span keeps the task id */
    objid_t last = ids_put(t, 0, span - 1);
    ck_assert(last.hi == t.hi && last.lo == t.lo && last.index == span - 1);
}
END_TEST

START_TEST(name_hash)
{
    ck_assert_uint_eq(ids_name_hash("fib"), ids_name_hash("fib"));
    ck_assert_uint_ne(ids_name_hash("fib"), ids_name_hash("fic"));
    ck_assert_uint_ne(ids_name_hash("ab"), ids_name_hash("ba"));
    ck_assert_uint_ne(ids_name_hash(""), 0);
    char name[16];
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        ck_assert_uint_ne(ids_name_hash(name), 0);
    }
}
END_TEST

START_TEST(obj_hash_depends_on_every_field)
{
    uint64_t h = ids_obj_hash(1, 2, 0);
    ck_assert_uint_eq(h, ids_obj_hash(1, 2, 0));
    ck_assert_uint_ne(h, ids_obj_hash(1, 2, 1));
    ck_assert_uint_ne(h, ids_obj_hash(1, 3, 0));
    ck_assert_uint_ne(h, ids_obj_hash(2, 2, 0));
    objid_t o = {5, 6, 7};
    deed_ref_t r = ids_ref(o, 3);
    ck_assert(r.id_hi == 5 && r.id_lo == 6 && r.index == 7 && r.owner == 3);
    ck_assert_uint_eq(sizeof(deed_ref_t), 24);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ids");
    TCase *tc = tcase_create("ids");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, child_is_deterministic);
    tcase_add_test(tc, child_inputs_matter);
    tcase_add_test(tc, no_collisions_among_a_million_children);
    tcase_add_test(tc, chain_of_children_does_not_cycle);
    tcase_add_test(tc, put_indices_follow_returns);
    tcase_add_test(tc, name_hash);
    tcase_add_test(tc, obj_hash_depends_on_every_field);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
