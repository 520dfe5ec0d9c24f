/*
 * test_topo.c — unit tests for lib/topo.c: worker placement on synthetic topologies (spread
 * over distinct cores, SMT siblings kept together, NUMA order and the store's NUMA node for
 * restricted cpusets) and opening, planning and pinning on the real machine.
 */
#include <check.h>
#include <stdlib.h>

#include "deed.h"
#include "log.h"
#include "topo.h"

#define TWO_PACK "pack:2 numa:1 core:4 pu:2"  /* 2 NUMA nodes x 4 cores x 2 PUs */
#define FOUR_NUMA "pack:1 numa:4 core:2 pu:1" /* 4 NUMA nodes x 2 cores x 1 PU */

static hwloc_obj_t numa_node(const struct topo *t, unsigned os_index)
{
    hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(t->topology, os_index);

    ck_assert_ptr_nonnull(node);
    return node;
}

/* The core whose PUs include all of set (NULL if set spans several cores). */
static hwloc_obj_t core_of(const struct topo *t, hwloc_const_cpuset_t set)
{
    hwloc_obj_t core = NULL;

    while ((core = hwloc_get_next_obj_by_type(t->topology, HWLOC_OBJ_CORE, core)))
        if (hwloc_bitmap_isincluded(set, core->cpuset))
            return core;
    return NULL;
}

START_TEST(synthetic_open_and_count_cores)
{
    struct topo t;

    ck_assert_int_eq(topo_open_synthetic(&t, TWO_PACK, NULL), DEED_OK);
    ck_assert_ptr_nonnull(t.topology);
    ck_assert_int_eq(hwloc_bitmap_weight(t.cpuset), 16);
    ck_assert_uint_eq(topo_ncores(&t), 8);
    topo_close(&t);
    ck_assert_ptr_null(t.topology);
    ck_assert_ptr_null(t.cpuset);

    ck_assert_int_eq(topo_open_synthetic(&t, FOUR_NUMA, NULL), DEED_OK);
    ck_assert_uint_eq(topo_ncores(&t), 8);
    topo_close(&t);
    topo_close(&t); /* twice is harmless */
}
END_TEST

START_TEST(bad_synthetic_description_fails_cleanly)
{
    struct topo t;
    int level = deed__log_level;

    deed__log_level = -1;
    ck_assert_int_eq(topo_open_synthetic(&t, "this is not a topology", NULL), DEED_ERR_INVALID_ARG);
    deed__log_level = level;
    ck_assert_ptr_null(t.topology);
    ck_assert_ptr_null(t.cpuset);
}
END_TEST

START_TEST(plan_spreads_workers_over_distinct_cores_with_smt_grouped)
{
    struct topo t;
    struct topo_plan plan;
    hwloc_bitmap_t all = hwloc_bitmap_alloc();

    ck_assert_int_eq(topo_open_synthetic(&t, TWO_PACK, NULL), DEED_OK);
    ck_assert_int_eq(topo_plan_workers(&t, 8, &plan), DEED_OK);
    ck_assert_uint_eq(plan.nworkers, 8);
    for (uint32_t i = 0; i < 8; i++) {
        hwloc_obj_t core = core_of(&t, plan.cpusets[i]);
        ck_assert_ptr_nonnull(core);                                    /* one core ... */
        ck_assert(hwloc_bitmap_isequal(plan.cpusets[i], core->cpuset)); /* ... all its PUs */
        ck_assert_int_eq(hwloc_bitmap_weight(plan.cpusets[i]), 2);
        ck_assert(!hwloc_bitmap_intersects(all, plan.cpusets[i])); /* distinct cores */
        hwloc_bitmap_or(all, all, plan.cpusets[i]);
    }
    ck_assert(hwloc_bitmap_isequal(all, t.cpuset));
    /* NUMA node by NUMA node: the first four workers on node 0, the next four on node 1. */
    for (uint32_t i = 0; i < 8; i++)
        ck_assert(hwloc_bitmap_isincluded(plan.cpusets[i], numa_node(&t, i < 4 ? 0 : 1)->cpuset));
    ck_assert_int_eq(plan.numa_node, 0); /* a tie goes to the first node */
    topo_plan_free(&plan);
    ck_assert_ptr_null(plan.cpusets);

    /* More workers than cores: wrap around, worker i and i + 8 share a core. */
    ck_assert_int_eq(topo_plan_workers(&t, 20, &plan), DEED_OK);
    for (uint32_t i = 0; i + 8 < 20; i++)
        ck_assert(hwloc_bitmap_isequal(plan.cpusets[i], plan.cpusets[i + 8]));
    ck_assert(!hwloc_bitmap_isequal(plan.cpusets[0], plan.cpusets[1]));
    topo_plan_free(&plan);
    topo_close(&t);
    hwloc_bitmap_free(all);
}
END_TEST

START_TEST(plan_is_pure_and_repeatable)
{
    struct topo t;
    struct topo_plan a, b;

    ck_assert_int_eq(topo_open_synthetic(&t, FOUR_NUMA, NULL), DEED_OK);
    ck_assert_int_eq(topo_plan_workers(&t, 5, &a), DEED_OK);
    ck_assert_int_eq(topo_plan_workers(&t, 5, &b), DEED_OK);
    ck_assert_int_eq(a.numa_node, b.numa_node);
    for (uint32_t i = 0; i < 5; i++)
        ck_assert(hwloc_bitmap_isequal(a.cpusets[i], b.cpusets[i]));
    topo_plan_free(&a);
    topo_plan_free(&b);
    topo_close(&t);
}
END_TEST

START_TEST(cpuset_on_one_numa_node_picks_that_node)
{
    struct topo t, whole;
    struct topo_plan plan;

    ck_assert_int_eq(topo_open_synthetic(&whole, FOUR_NUMA, NULL), DEED_OK);
    for (unsigned n = 0; n < 4; n++) {
        hwloc_const_cpuset_t node_set = numa_node(&whole, n)->cpuset;
        ck_assert_int_eq(topo_open_synthetic(&t, FOUR_NUMA, node_set), DEED_OK);
        ck_assert_uint_eq(topo_ncores(&t), 2);
        ck_assert_int_eq(topo_plan_workers(&t, 4, &plan), DEED_OK);
        ck_assert_int_eq(plan.numa_node, (int)n);
        for (uint32_t i = 0; i < 4; i++) {
            ck_assert(hwloc_bitmap_isincluded(plan.cpusets[i], node_set));
            ck_assert_int_eq(hwloc_bitmap_weight(plan.cpusets[i]), 1);
        }
        ck_assert(!hwloc_bitmap_isequal(plan.cpusets[0], plan.cpusets[1]));
        ck_assert(hwloc_bitmap_isequal(plan.cpusets[0], plan.cpusets[2]));
        topo_plan_free(&plan);
        topo_close(&t);
    }
    topo_close(&whole);
}
END_TEST

START_TEST(cpuset_mostly_on_one_node_picks_the_majority)
{
    struct topo t, whole;
    struct topo_plan plan;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();

    /* All of node 2 (PUs 4-5) plus one PU of node 3 (PU 6). */
    ck_assert_int_eq(topo_open_synthetic(&whole, FOUR_NUMA, NULL), DEED_OK);
    hwloc_bitmap_copy(set, numa_node(&whole, 2)->cpuset);
    hwloc_bitmap_set(set, hwloc_bitmap_first(numa_node(&whole, 3)->cpuset));
    ck_assert_int_eq(hwloc_bitmap_weight(set), 3);
    ck_assert_int_eq(topo_open_synthetic(&t, FOUR_NUMA, set), DEED_OK);
    ck_assert_uint_eq(topo_ncores(&t), 3);
    ck_assert_int_eq(topo_plan_workers(&t, 3, &plan), DEED_OK);
    ck_assert_int_eq(plan.numa_node, 2);
    /* Node 2's cores come first, then node 3's. */
    ck_assert(hwloc_bitmap_isincluded(plan.cpusets[0], numa_node(&whole, 2)->cpuset));
    ck_assert(hwloc_bitmap_isincluded(plan.cpusets[1], numa_node(&whole, 2)->cpuset));
    ck_assert(hwloc_bitmap_isincluded(plan.cpusets[2], numa_node(&whole, 3)->cpuset));
    topo_plan_free(&plan);
    topo_close(&t);
    topo_close(&whole);
    hwloc_bitmap_free(set);
}
END_TEST

START_TEST(cpuset_with_one_pu_per_core_restricts_each_worker)
{
    struct topo t;
    struct topo_plan plan;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();

    /* Only the first PU of each core of package 1 (PUs 8, 10, 12, 14), plus PU 1 of core 0. */
    for (int pu = 8; pu < 16; pu += 2)
        hwloc_bitmap_set(set, (unsigned)pu);
    hwloc_bitmap_set(set, 1);
    ck_assert_int_eq(topo_open_synthetic(&t, TWO_PACK, set), DEED_OK);
    ck_assert_uint_eq(topo_ncores(&t), 5);
    ck_assert_int_eq(topo_plan_workers(&t, 5, &plan), DEED_OK);
    ck_assert_int_eq(plan.numa_node, 1);
    ck_assert_int_eq(hwloc_bitmap_weight(plan.cpusets[0]), 1);
    ck_assert(hwloc_bitmap_isset(plan.cpusets[0], 1)); /* node 0's only core comes first */
    for (uint32_t i = 0; i < 5; i++) {
        ck_assert_int_eq(hwloc_bitmap_weight(plan.cpusets[i]), 1);
        ck_assert(hwloc_bitmap_isincluded(plan.cpusets[i], set));
    }
    topo_plan_free(&plan);
    topo_close(&t);
    hwloc_bitmap_free(set);
}
END_TEST

START_TEST(cpuset_outside_the_machine_is_rejected)
{
    struct topo t;
    struct topo_plan plan;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    int level = deed__log_level;

    hwloc_bitmap_set(set, 100);
    ck_assert_int_eq(topo_open_synthetic(&t, TWO_PACK, set), DEED_OK);
    ck_assert_uint_eq(topo_ncores(&t), 0);
    deed__log_level = -1;
    ck_assert_int_eq(topo_plan_workers(&t, 2, &plan), DEED_ERR_INVALID_ARG);
    deed__log_level = level;
    ck_assert_ptr_null(plan.cpusets);
    topo_close(&t);
    hwloc_bitmap_free(set);
}
END_TEST

START_TEST(real_machine_open_plan_and_bind)
{
    struct topo t;
    struct topo_plan plan;
    hwloc_bitmap_t now = hwloc_bitmap_alloc();
    hwloc_bitmap_t saved = hwloc_bitmap_alloc();
    uint32_t ncores;

    ck_assert_int_eq(topo_open(&t), DEED_OK);
    ck_assert_ptr_nonnull(t.topology);
    ck_assert(!hwloc_bitmap_iszero(t.cpuset));
    ck_assert(hwloc_bitmap_isincluded(t.cpuset, hwloc_topology_get_allowed_cpuset(t.topology)));
    ncores = topo_ncores(&t);
    ck_assert_uint_ge(ncores, 1);
    ck_assert_int_eq(topo_plan_workers(&t, ncores + 1, &plan), DEED_OK);
    ck_assert_uint_eq(plan.nworkers, ncores + 1);
    for (uint32_t i = 0; i < plan.nworkers; i++) {
        ck_assert(!hwloc_bitmap_iszero(plan.cpusets[i]));
        ck_assert(hwloc_bitmap_isincluded(plan.cpusets[i], t.cpuset));
    }
    ck_assert(hwloc_bitmap_isequal(plan.cpusets[0], plan.cpusets[ncores]));
    if (hwloc_get_nbobjs_by_type(t.topology, HWLOC_OBJ_NUMANODE) > 0)
        ck_assert_int_ge(plan.numa_node, 0);

    ck_assert_int_eq(hwloc_get_cpubind(t.topology, saved, HWLOC_CPUBIND_THREAD), 0);
    ck_assert_int_eq(topo_bind_thread(&t, plan.cpusets[0]), DEED_OK);
    ck_assert_int_eq(hwloc_get_cpubind(t.topology, now, HWLOC_CPUBIND_THREAD), 0);
    ck_assert(hwloc_bitmap_isequal(now, plan.cpusets[0]));
    ck_assert_int_eq(topo_bind_thread(&t, saved), DEED_OK);

    topo_plan_free(&plan);
    topo_close(&t);
    ck_assert_ptr_null(t.topology);
    hwloc_bitmap_free(now);
    hwloc_bitmap_free(saved);
}
END_TEST

START_TEST(bind_to_an_impossible_cpuset_is_not_fatal)
{
    struct topo t;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();

    ck_assert_int_eq(topo_open(&t), DEED_OK);
    hwloc_bitmap_set(set, 100000); /* no such PU */
    ck_assert_int_eq(topo_bind_thread(&t, set), DEED_ERR_UNSUPPORTED);
    ck_assert_int_eq(topo_bind_thread(&t, NULL), DEED_ERR_UNSUPPORTED);
    topo_close(&t);
    hwloc_bitmap_free(set);
}
END_TEST

static Suite *topo_suite(void)
{
    Suite *su = suite_create("topo");
    TCase *tc = tcase_create("topo");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, synthetic_open_and_count_cores);
    tcase_add_test(tc, bad_synthetic_description_fails_cleanly);
    tcase_add_test(tc, plan_spreads_workers_over_distinct_cores_with_smt_grouped);
    tcase_add_test(tc, plan_is_pure_and_repeatable);
    tcase_add_test(tc, cpuset_on_one_numa_node_picks_that_node);
    tcase_add_test(tc, cpuset_mostly_on_one_node_picks_the_majority);
    tcase_add_test(tc, cpuset_with_one_pu_per_core_restricts_each_worker);
    tcase_add_test(tc, cpuset_outside_the_machine_is_rejected);
    tcase_add_test(tc, real_machine_open_plan_and_bind);
    tcase_add_test(tc, bind_to_an_impossible_cpuset_is_not_fatal);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(topo_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
