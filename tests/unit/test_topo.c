/*
 * test_topo.c — unit tests for lib/topo.c and lib/topo_place.c: the placement function on
 * synthetic topologies (2 and 4 NUMA nodes, SMT, more workers than cores, 1/2/4 ranks per
 * node in deedrun's core and numa modes), the store's NUMA node next to the NIC on an XML
 * topology with PCI devices, the NIC named by the environment, the store's segments really
 * bound to their node (heap and UCX-allocated), and opening, planning and pinning on the
 * real machine.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deed.h"
#include "log.h"
#include "store.h"
#include "topo.h"
#include "transport.h"

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

    /* More workers than cores: one PU each, the SMT siblings in the second round (worker i
     * and i + 8 on the two PUs of one core), then around again (i + 16 = i). */
    ck_assert_int_eq(topo_plan_workers(&t, 20, &plan), DEED_OK);
    for (uint32_t i = 0; i < 20; i++)
        ck_assert_int_eq(hwloc_bitmap_weight(plan.cpusets[i]), 1);
    for (uint32_t i = 0; i < 8; i++) {
        ck_assert_ptr_eq(core_of(&t, plan.cpusets[i]), core_of(&t, plan.cpusets[i + 8]));
        ck_assert(!hwloc_bitmap_isequal(plan.cpusets[i], plan.cpusets[i + 8]));
    }
    for (uint32_t i = 16; i < 20; i++)
        ck_assert(hwloc_bitmap_isequal(plan.cpusets[i], plan.cpusets[i - 16]));
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
    ck_assert(hwloc_bitmap_isset(plan.cpusets[0], 8)); /* the store's node (1) comes first */
    ck_assert(hwloc_bitmap_isset(plan.cpusets[4], 1)); /* then node 0's only core */
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
    /* the extra worker shares core 0 (a sibling PU of it where the machine has SMT) */
    ck_assert_ptr_eq(hwloc_get_next_obj_covering_cpuset_by_type(t.topology, plan.cpusets[0],
                                                                HWLOC_OBJ_CORE, NULL),
                     hwloc_get_next_obj_covering_cpuset_by_type(t.topology, plan.cpusets[ncores],
                                                                HWLOC_OBJ_CORE, NULL));
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

START_TEST(real_machine_loads_nics_when_they_matter)
{
    struct topo all, t;
    hwloc_obj_t dev = NULL;
    char name[TOPO_NIC_MAX] = "";

    unsetenv("DEED_VERBS_DEVICE");
    unsetenv("UCX_NET_DEVICES");
    ck_assert_int_eq(topo_open_all(&all), DEED_OK);
    while ((dev = hwloc_get_next_osdev(all.topology, dev)))
        if (dev->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK ||
            dev->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS)
            break;
    if (!dev) {
        fprintf(stderr, "skipped: hwloc sees no NIC on this machine\n");
        topo_close(&all);
        return;
    }
    snprintf(name, sizeof(name), "%s", dev->name);
    /* configured (UCX's device:port syntax): loaded, and the plan follows it */
    setenv("UCX_NET_DEVICES", name, 1);
    ck_assert_int_eq(topo_open(&t), DEED_OK);
    ck_assert_str_eq(t.nic, name);
    ck_assert_ptr_nonnull(topo_find_nic(t.topology, name));
    topo_close(&t);
    unsetenv("UCX_NET_DEVICES");
    /* not configured: loaded only where an RDMA device could be the only one */
    ck_assert_int_eq(topo_open(&t), DEED_OK);
    ck_assert_str_eq(t.nic, "");
    dev = NULL;
    while ((dev = hwloc_get_next_osdev(all.topology, dev)))
        if (dev->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS)
            break;
    if (dev)
        ck_assert_ptr_nonnull(topo_find_nic(t.topology, name));
    else
        ck_assert_ptr_null(topo_find_nic(t.topology, name)); /* no RDMA device: no I/O load */
    topo_close(&t);
    topo_close(&all);
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

/* ---- topo_place: deedrun's modes, SMT, NICs ------------------------------------------- */

#define FOUR_NUMA_SMT "pack:2 numa:2 core:2 pu:2" /* 4 NUMA nodes x 2 cores x 2 PUs */

static void place_ok(const struct topo *t, enum topo_bind bind, uint32_t r, uint32_t n,
                     uint32_t nworkers, const char *nic, struct topo_placement *p)
{
    struct topo_place_in in = {.cpuset = NULL,
                               .bind = bind,
                               .local_rank = r,
                               .local_nranks = n,
                               .nworkers = nworkers,
                               .nic = nic};

    ck_assert_int_eq(topo_place(t->topology, &in, p), DEED_OK);
    ck_assert_ptr_nonnull(p->rank_cpuset);
    ck_assert(!hwloc_bitmap_iszero(p->rank_cpuset));
    for (uint32_t i = 0; i < p->nworkers; i++)
        ck_assert(hwloc_bitmap_isincluded(p->workers[i], p->rank_cpuset));
}

/* Workers 0..ncores-1 sit on distinct whole cores of the rank. */
static void assert_one_worker_per_core(const struct topo *t, const struct topo_placement *p)
{
    hwloc_bitmap_t seen = hwloc_bitmap_alloc();

    ck_assert_uint_eq(p->nworkers, p->ncores);
    for (uint32_t i = 0; i < p->nworkers; i++) {
        hwloc_obj_t core = core_of(t, p->workers[i]);
        ck_assert_ptr_nonnull(core);
        ck_assert(hwloc_bitmap_isequal(p->workers[i], core->cpuset)); /* all its PUs */
        ck_assert(!hwloc_bitmap_intersects(seen, p->workers[i]));
        hwloc_bitmap_or(seen, seen, p->workers[i]);
    }
    ck_assert(hwloc_bitmap_isequal(seen, p->rank_cpuset));
    hwloc_bitmap_free(seen);
}

START_TEST(core_mode_1_2_4_ranks_on_two_numa_nodes_with_smt)
{
    struct topo t;
    struct topo_placement p;
    const uint32_t ns[] = {1, 2, 4};

    ck_assert_int_eq(topo_open_synthetic(&t, TWO_PACK, NULL), DEED_OK); /* 8 cores, 16 PUs */
    for (size_t k = 0; k < 3; k++) {
        uint32_t n = ns[k];
        hwloc_bitmap_t all = hwloc_bitmap_alloc();
        for (uint32_t r = 0; r < n; r++) {
            place_ok(&t, TOPO_BIND_CORE, r, n, 0, NULL, &p);
            ck_assert_uint_eq(p.ncores, 8 / n);
            ck_assert_int_eq(hwloc_bitmap_weight(p.rank_cpuset), 16 / (int)n);
            ck_assert_int_eq(hwloc_bitmap_first(p.rank_cpuset), (int)(16 / n * r));
            ck_assert(!hwloc_bitmap_intersects(all, p.rank_cpuset)); /* disjoint */
            hwloc_bitmap_or(all, all, p.rank_cpuset);
            assert_one_worker_per_core(&t, &p);
            /* 1 rank spans both nodes (tie: node 0); 2: node r; 4: two ranks per node */
            ck_assert_int_eq(p.store_node, n == 1 ? 0 : (int)(r * 2 / n));
            ck_assert_int_eq(p.store_why, TOPO_STORE_CPUSET);
            ck_assert_str_eq(p.nic, "");
            topo_place_free(&p);
            ck_assert_ptr_null(p.workers);
            ck_assert_ptr_null(p.rank_cpuset);
        }
        ck_assert(hwloc_bitmap_isequal(all, t.cpuset)); /* the whole machine is used */
        hwloc_bitmap_free(all);
    }
    topo_close(&t);
}
END_TEST

START_TEST(numa_mode_1_2_4_ranks_on_four_numa_nodes)
{
    struct topo t;
    struct topo_placement p;

    ck_assert_int_eq(topo_open_synthetic(&t, FOUR_NUMA_SMT, NULL), DEED_OK);
    ck_assert_int_eq(hwloc_get_nbobjs_by_type(t.topology, HWLOC_OBJ_NUMANODE), 4);
    /* 1 rank: the whole machine, its store on node 0 (a tie), workers on all 8 cores */
    place_ok(&t, TOPO_BIND_NUMA, 0, 1, 0, NULL, &p);
    ck_assert(hwloc_bitmap_isequal(p.rank_cpuset, t.cpuset));
    ck_assert_int_eq(p.store_node, 0);
    assert_one_worker_per_core(&t, &p);
    topo_place_free(&p);
    /* 2 ranks: two whole nodes (one package) each, store on the first of them */
    for (uint32_t r = 0; r < 2; r++) {
        hwloc_bitmap_t want = hwloc_bitmap_alloc();
        hwloc_bitmap_or(want, numa_node(&t, 2 * r)->cpuset, numa_node(&t, 2 * r + 1)->cpuset);
        place_ok(&t, TOPO_BIND_NUMA, r, 2, 0, NULL, &p);
        ck_assert(hwloc_bitmap_isequal(p.rank_cpuset, want));
        ck_assert_int_eq(p.store_node, (int)(2 * r));
        ck_assert_uint_eq(p.ncores, 4);
        assert_one_worker_per_core(&t, &p);
        topo_place_free(&p);
        hwloc_bitmap_free(want);
    }
    /* 4 ranks: node r each, the store on it, both cores of it */
    for (uint32_t r = 0; r < 4; r++) {
        place_ok(&t, TOPO_BIND_NUMA, r, 4, 0, NULL, &p);
        ck_assert(hwloc_bitmap_isequal(p.rank_cpuset, numa_node(&t, r)->cpuset));
        ck_assert_int_eq(p.store_node, (int)r);
        ck_assert_uint_eq(p.ncores, 2);
        assert_one_worker_per_core(&t, &p);
        topo_place_free(&p);
    }
    /* 8 ranks: round robin, rank r shares node r mod 4 with rank r + 4 */
    for (uint32_t r = 0; r < 8; r++) {
        place_ok(&t, TOPO_BIND_NUMA, r, 8, 0, NULL, &p);
        ck_assert(hwloc_bitmap_isequal(p.rank_cpuset, numa_node(&t, r % 4)->cpuset));
        ck_assert_int_eq(p.store_node, (int)(r % 4));
        topo_place_free(&p);
    }
    topo_close(&t);
}
END_TEST

START_TEST(core_mode_4_ranks_on_four_numa_nodes_stay_on_their_node)
{
    struct topo t;
    struct topo_placement p;

    ck_assert_int_eq(topo_open_synthetic(&t, FOUR_NUMA, NULL), DEED_OK); /* 4 x 2 cores */
    for (uint32_t r = 0; r < 4; r++) {
        place_ok(&t, TOPO_BIND_CORE, r, 4, 0, NULL, &p);
        ck_assert(hwloc_bitmap_isequal(p.rank_cpuset, numa_node(&t, r)->cpuset));
        ck_assert_int_eq(p.store_node, (int)r);
        assert_one_worker_per_core(&t, &p);
        topo_place_free(&p);
    }
    /* 16 ranks on 8 cores: one core each, core r mod 8 */
    for (uint32_t r = 0; r < 16; r++) {
        place_ok(&t, TOPO_BIND_CORE, r, 16, 0, NULL, &p);
        ck_assert_uint_eq(p.ncores, 1);
        ck_assert_int_eq(hwloc_bitmap_first(p.rank_cpuset), (int)(r % 8));
        ck_assert_int_eq(p.store_node, (int)((r % 8) / 2));
        topo_place_free(&p);
    }
    topo_close(&t);
}
END_TEST

START_TEST(hbm_twins_and_machine_wide_memory_are_not_domains)
{
    struct topo t;
    struct topo_placement p;

    /* HBM beside DRAM: 2 packages, each with 2 NUMA nodes of the same cpuset */
    ck_assert_int_eq(topo_open_synthetic(&t, "pack:2 [numa] [numa] core:2 pu:1", NULL), DEED_OK);
    ck_assert_int_eq(hwloc_get_nbobjs_by_type(t.topology, HWLOC_OBJ_NUMANODE), 4);
    for (uint32_t r = 0; r < 2; r++) { /* 2 ranks, one package each (not one node each) */
        hwloc_obj_t pack = hwloc_get_obj_by_type(t.topology, HWLOC_OBJ_PACKAGE, r);
        place_ok(&t, TOPO_BIND_NUMA, r, 2, 0, NULL, &p);
        ck_assert(hwloc_bitmap_isequal(p.rank_cpuset, pack->cpuset));
        /* the first node of the package (DRAM) */
        ck_assert_int_eq(p.store_node, (int)pack->memory_first_child->os_index);
        topo_place_free(&p);
    }
    place_ok(&t, TOPO_BIND_NUMA, 2, 4, 0, NULL, &p); /* 4 ranks on 2 domains: round robin */
    ck_assert(hwloc_bitmap_isequal(
        p.rank_cpuset, hwloc_get_obj_by_type(t.topology, HWLOC_OBJ_PACKAGE, 0)->cpuset));
    topo_place_free(&p);
    topo_close(&t);

    /* CPU-less memory attached to the whole machine (node 2): never a domain or the store */
    ck_assert_int_eq(topo_open_synthetic(&t, "[numa] pack:2 [numa] core:2 pu:1", NULL), DEED_OK);
    ck_assert_int_eq(hwloc_get_nbobjs_by_type(t.topology, HWLOC_OBJ_NUMANODE), 3);
    place_ok(&t, TOPO_BIND_NONE, 0, 1, 0, NULL, &p); /* the whole machine */
    ck_assert_int_eq(p.store_node, 0);
    topo_place_free(&p);
    for (uint32_t r = 0; r < 2; r++) {
        place_ok(&t, TOPO_BIND_NUMA, r, 2, 0, NULL, &p);
        ck_assert_int_eq(hwloc_bitmap_weight(p.rank_cpuset), 2);
        ck_assert_int_eq(p.store_node, (int)r);
        topo_place_free(&p);
    }
    place_ok(&t, TOPO_BIND_NUMA, 0, 1, 0, NULL, &p); /* 1 rank: both packages */
    ck_assert_int_eq(hwloc_bitmap_weight(p.rank_cpuset), 4);
    topo_place_free(&p);
    topo_close(&t);
}
END_TEST

START_TEST(smt_siblings_only_when_more_workers_than_cores)
{
    struct topo t;
    struct topo_placement p;
    hwloc_bitmap_t seen = hwloc_bitmap_alloc();

    ck_assert_int_eq(topo_open_synthetic(&t, TWO_PACK, NULL), DEED_OK);
    /* rank 1 of 4 in core mode: cores 2 and 3 (PUs 4-7) */
    place_ok(&t, TOPO_BIND_CORE, 1, 4, 2, NULL, &p);
    ck_assert_uint_eq(p.ncores, 2);
    assert_one_worker_per_core(&t, &p);
    topo_place_free(&p);
    /* 4 workers on 2 cores x 2 PUs: one PU each, all four PUs used, siblings last */
    place_ok(&t, TOPO_BIND_CORE, 1, 4, 4, NULL, &p);
    ck_assert_uint_eq(p.nworkers, 4);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_int_eq(hwloc_bitmap_weight(p.workers[i]), 1);
        ck_assert(!hwloc_bitmap_intersects(seen, p.workers[i]));
        hwloc_bitmap_or(seen, seen, p.workers[i]);
    }
    ck_assert(hwloc_bitmap_isequal(seen, p.rank_cpuset));
    ck_assert_int_eq(hwloc_bitmap_first(p.workers[0]), 4); /* first PU of core 2 */
    ck_assert_int_eq(hwloc_bitmap_first(p.workers[1]), 6); /* first PU of core 3 */
    ck_assert_int_eq(hwloc_bitmap_first(p.workers[2]), 5); /* its sibling */
    ck_assert_int_eq(hwloc_bitmap_first(p.workers[3]), 7);
    topo_place_free(&p);
    /* 5 workers: the fifth starts over on core 2's first PU */
    place_ok(&t, TOPO_BIND_CORE, 1, 4, 5, NULL, &p);
    ck_assert(hwloc_bitmap_isequal(p.workers[4], p.workers[0]));
    topo_place_free(&p);
    /* no SMT: more workers than cores wrap around whole cores */
    topo_close(&t);
    ck_assert_int_eq(topo_open_synthetic(&t, FOUR_NUMA, NULL), DEED_OK);
    place_ok(&t, TOPO_BIND_NUMA, 3, 4, 3, NULL, &p);
    ck_assert(hwloc_bitmap_isequal(p.workers[2], p.workers[0]));
    ck_assert(!hwloc_bitmap_isequal(p.workers[1], p.workers[0]));
    topo_place_free(&p);
    topo_close(&t);
    hwloc_bitmap_free(seen);
}
END_TEST

START_TEST(place_rejects_bad_arguments)
{
    struct topo t;
    struct topo_placement p;
    struct topo_place_in in = {.local_rank = 0, .local_nranks = 1};
    hwloc_bitmap_t far = hwloc_bitmap_alloc();

    ck_assert_int_eq(topo_open_synthetic(&t, TWO_PACK, NULL), DEED_OK);
    ck_assert_int_eq(topo_place(NULL, &in, &p), DEED_ERR_INVALID_ARG);
    ck_assert_ptr_null(p.rank_cpuset);
    ck_assert_int_eq(topo_place(t.topology, NULL, &p), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(topo_place(t.topology, &in, NULL), DEED_ERR_INVALID_ARG);
    in.local_rank = 1;
    ck_assert_int_eq(topo_place(t.topology, &in, &p), DEED_ERR_INVALID_ARG);
    in.local_rank = 0;
    in.local_nranks = 0;
    ck_assert_int_eq(topo_place(t.topology, &in, &p), DEED_ERR_INVALID_ARG);
    in.local_nranks = 1;
    in.bind = (enum topo_bind)42;
    ck_assert_int_eq(topo_place(t.topology, &in, &p), DEED_ERR_INVALID_ARG);
    in.bind = TOPO_BIND_CORE;
    hwloc_bitmap_set(far, 1000); /* no PU of the machine */
    in.cpuset = far;
    ck_assert_int_eq(topo_place(t.topology, &in, &p), DEED_ERR_INVALID_ARG);
    ck_assert_ptr_null(p.rank_cpuset);
    ck_assert_ptr_null(p.workers);
    ck_assert_int_eq(p.store_node, -1);
    ck_assert_str_eq(topo_bind_str(TOPO_BIND_NUMA), "numa");
    ck_assert_str_eq(topo_bind_str((enum topo_bind)42), "?");
    ck_assert_ptr_nonnull(strstr(topo_store_why_str(TOPO_STORE_NIC), "NIC"));
    topo_close(&t);
    hwloc_bitmap_free(far);
}
END_TEST

/* The machine of tests/unit/data/two_numa_nic.xml: 2 packages, each 1 NUMA node of 2 cores
 * x 2 PUs; eth0 on package 0, an InfiniBand HCA (mlx5_0, with its netdev ib0) behind a PCI
 * bridge on package 1, and eth1 on a host bridge attached to the machine (locality unknown). */
/* clang-format off */
#define SETS(c, n)                                                                             \
    " cpuset=\"" c "\" complete_cpuset=\"" c "\" nodeset=\"" n "\" complete_nodeset=\"" n "\""
#define PU(i, c, n) "<object type=\"PU\" os_index=\"" i "\"" SETS(c, n) "/>"
#define CORE(i, c, n) "<object type=\"Core\" os_index=\"" i "\"" SETS(c, n) ">"
#define NODE(i, c, n)                                                                          \
    "<object type=\"NUMANode\" os_index=\"" i "\"" SETS(c, n) " local_memory=\"4294967296\"/>"
#define PCI(bus, class)                                                                        \
    "<object type=\"Bridge\" bridge_type=\"0-1\" depth=\"0\" bridge_pci=\"0000:[00-00]\">"      \
    "<object type=\"PCIDev\" pci_busid=\"" bus "\" pci_type=\"" class                          \
    " [15b3:101b] [15b3:0007] 00\">"
#define OSDEV(name, type) "<object type=\"OSDev\" name=\"" name "\" osdev_type=\"" type "\"/>"
#define END "</object>"
static const char nic_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n"
    "<topology version=\"2.0\"><object type=\"Machine\" os_index=\"0\"" SETS("0xff", "0x3")
    " allowed_cpuset=\"0xff\" allowed_nodeset=\"0x3\">"
    "<object type=\"Package\" os_index=\"0\"" SETS("0x0f", "0x1") ">" NODE("0", "0x0f", "0x1")
    CORE("0", "0x03", "0x1") PU("0", "0x01", "0x1") PU("1", "0x02", "0x1") END
    CORE("1", "0x0c", "0x1") PU("2", "0x04", "0x1") PU("3", "0x08", "0x1") END
    PCI("0000:00:03.0", "0200") OSDEV("eth0", "2") END END END
    "<object type=\"Package\" os_index=\"1\"" SETS("0xf0", "0x2") ">" NODE("1", "0xf0", "0x2")
    CORE("2", "0x30", "0x2") PU("4", "0x10", "0x2") PU("5", "0x20", "0x2") END
    CORE("3", "0xc0", "0x2") PU("6", "0x40", "0x2") PU("7", "0x80", "0x2") END
    PCI("0000:81:00.0", "0207") OSDEV("mlx5_0", "3") OSDEV("ib0", "2") END END END
    PCI("0001:00:02.0", "0200") OSDEV("eth1", "2") END END
    END "</topology>\n";
/* clang-format on */

START_TEST(store_goes_to_the_numa_node_of_the_nic)
{
    struct topo t;
    struct topo_placement p;

    ck_assert_int_eq(topo_open_xml(&t, NULL, nic_xml, NULL), DEED_OK);
    ck_assert_int_eq(hwloc_get_nbobjs_by_type(t.topology, HWLOC_OBJ_NUMANODE), 2);
    ck_assert_ptr_nonnull(topo_find_nic(t.topology, "mlx5_0"));
    ck_assert_ptr_nonnull(topo_find_nic(t.topology, "ib0"));
    ck_assert_ptr_null(topo_find_nic(t.topology, "mlx5_9"));
    ck_assert_ptr_eq(topo_only_rdma_nic(t.topology), topo_find_nic(t.topology, "mlx5_0"));
    ck_assert_int_eq(topo_nic_numa(t.topology, topo_find_nic(t.topology, "mlx5_0")), 1);
    ck_assert_int_eq(topo_nic_numa(t.topology, topo_find_nic(t.topology, "eth0")), 0);
    ck_assert_int_eq(topo_nic_numa(t.topology, topo_find_nic(t.topology, "eth1")), -1);

    /* one rank on the whole machine, no NIC configured: the only HCA, mlx5_0, decides */
    place_ok(&t, TOPO_BIND_NONE, 0, 1, 0, NULL, &p);
    ck_assert_str_eq(p.nic, "mlx5_0");
    ck_assert_int_eq(p.nic_node, 1);
    ck_assert_int_eq(p.store_node, 1);
    ck_assert_int_eq(p.store_why, TOPO_STORE_NIC);
    ck_assert_uint_eq(p.nworkers, 4);
    /* workers fill the NIC's node first */
    ck_assert(hwloc_bitmap_isincluded(p.workers[0], numa_node(&t, 1)->cpuset));
    ck_assert(hwloc_bitmap_isincluded(p.workers[1], numa_node(&t, 1)->cpuset));
    ck_assert(hwloc_bitmap_isincluded(p.workers[2], numa_node(&t, 0)->cpuset));
    topo_place_free(&p);

    /* configured by name: the HCA's netdev too, and eth0 on the other package */
    place_ok(&t, TOPO_BIND_NONE, 0, 1, 0, "ib0", &p);
    ck_assert_int_eq(p.store_node, 1);
    topo_place_free(&p);
    place_ok(&t, TOPO_BIND_NONE, 0, 1, 0, "eth0", &p);
    ck_assert_str_eq(p.nic, "eth0");
    ck_assert_int_eq(p.store_node, 0);
    ck_assert_int_eq(p.store_why, TOPO_STORE_NIC);
    topo_place_free(&p);
    /* a NIC of unknown locality or not in the topology: the rank's cpuset decides (tie: 0) */
    place_ok(&t, TOPO_BIND_NONE, 0, 1, 0, "eth1", &p);
    ck_assert_str_eq(p.nic, "eth1");
    ck_assert_int_eq(p.nic_node, -1);
    ck_assert_int_eq(p.store_node, 0);
    ck_assert_int_eq(p.store_why, TOPO_STORE_CPUSET);
    topo_place_free(&p);
    place_ok(&t, TOPO_BIND_NONE, 0, 1, 0, "mlx5_9", &p);
    ck_assert_str_eq(p.nic, "");
    ck_assert_int_eq(p.store_node, 0);
    ck_assert_int_eq(p.store_why, TOPO_STORE_CPUSET);
    topo_place_free(&p);

    /* 2 ranks bound per NUMA node: each keeps its own node; only rank 1 is near the HCA */
    place_ok(&t, TOPO_BIND_NUMA, 0, 2, 0, NULL, &p);
    ck_assert_int_eq(p.store_node, 0);
    ck_assert_int_eq(p.store_why, TOPO_STORE_NIC_REMOTE);
    topo_place_free(&p);
    place_ok(&t, TOPO_BIND_NUMA, 1, 2, 0, NULL, &p);
    ck_assert_int_eq(p.store_node, 1);
    ck_assert_int_eq(p.store_why, TOPO_STORE_NIC);
    topo_place_free(&p);
    topo_close(&t);
}
END_TEST

START_TEST(rank_plan_uses_the_nic_from_the_environment)
{
    struct topo t;
    struct topo_plan plan;
    char nic[TOPO_NIC_MAX];

    unsetenv("DEED_VERBS_DEVICE");
    unsetenv("UCX_NET_DEVICES");
    ck_assert_str_eq(topo_env_nic(nic, sizeof(nic)), "");
    setenv("UCX_NET_DEVICES", "all", 1);
    ck_assert_str_eq(topo_env_nic(nic, sizeof(nic)), "");
    setenv("UCX_NET_DEVICES", "eth0,mlx5_0:1", 1);
    ck_assert_str_eq(topo_env_nic(nic, sizeof(nic)), "eth0");
    setenv("UCX_NET_DEVICES", "mlx5_1:1,mlx5_0:1", 1);
    ck_assert_str_eq(topo_env_nic(nic, sizeof(nic)), "mlx5_1");
    setenv("DEED_VERBS_DEVICE", "auto", 1); /* the verbs transport's default: names none */
    ck_assert_str_eq(topo_env_nic(nic, sizeof(nic)), "mlx5_1");
    setenv("DEED_VERBS_DEVICE", "mlx5_2:1", 1); /* wins over UCX_NET_DEVICES */
    ck_assert_str_eq(topo_env_nic(nic, sizeof(nic)), "mlx5_2");
    ck_assert_str_eq(topo_env_nic(nic, 4), "mlx"); /* cut to fit */
    unsetenv("DEED_VERBS_DEVICE");
    unsetenv("UCX_NET_DEVICES");

    /* the running rank's plan (topo_plan_workers) follows t->nic */
    ck_assert_int_eq(topo_open_xml(&t, NULL, nic_xml, NULL), DEED_OK);
    ck_assert_str_eq(t.nic, "");
    ck_assert_int_eq(topo_plan_workers(&t, 1, &plan), DEED_OK);
    ck_assert_int_eq(plan.numa_node, 1); /* the only HCA */
    topo_plan_free(&plan);
    strcpy(t.nic, "eth0");
    ck_assert_int_eq(topo_plan_workers(&t, 0, &plan), DEED_OK);
    ck_assert_int_eq(plan.numa_node, 0);
    ck_assert_uint_eq(plan.nworkers, 0);
    ck_assert_ptr_null(plan.cpusets);
    topo_close(&t);
}
END_TEST

START_TEST(xml_errors_are_clean)
{
    struct topo t;
    int level = deed__log_level;

    deed__log_level = -1;
    ck_assert_int_eq(topo_open_xml(&t, "/nonexistent/topo.xml", NULL, NULL), DEED_ERR_INVALID_ARG);
    ck_assert_ptr_null(t.topology);
    ck_assert_int_eq(topo_open_xml(&t, NULL, "<not a topology>", NULL), DEED_ERR_INVALID_ARG);
    ck_assert_ptr_null(t.topology);
    ck_assert_int_eq(topo_open_xml(&t, NULL, NULL, NULL), DEED_ERR_INVALID_ARG);
    deed__log_level = level;
}
END_TEST

/* The store binds every segment to the node it is given, whoever allocated the memory, with
 * the rank's topology (own) or one it loads itself. */
static void assert_store_bound(const struct tp_ops *ops, struct tp *tp, int own)
{
    struct topo t;
    struct store_params sp = {.size = 1 << 20, .numa_node = 0, .pin = 0, .tp_ops = ops, .tp = tp};
    struct store *s = NULL;
    hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
    hwloc_membind_policy_t policy;
    void *base;
    uint64_t len;
    struct tp_mem *mem;

    ck_assert_int_eq(topo_open(&t), DEED_OK);
    sp.numa_node = (int)hwloc_get_obj_by_type(t.topology, HWLOC_OBJ_NUMANODE, 0)->os_index;
    sp.topology = own ? t.topology : NULL;
    ck_assert_int_eq(store_create(&sp, &s), DEED_OK);
    ck_assert_uint_ge(store_nsegments(s), 1);
    store_segment(s, 0, &base, &len, &mem);
    ck_assert_int_eq(
        hwloc_get_area_membind(t.topology, base, len, nodes, &policy, HWLOC_MEMBIND_BYNODESET), 0);
    ck_assert_int_eq(policy, HWLOC_MEMBIND_BIND);
    ck_assert(hwloc_bitmap_isequal(
        nodes, hwloc_get_numanode_obj_by_os_index(t.topology, (unsigned)sp.numa_node)->nodeset));
    store_destroy(s);
    ck_assert_int_eq(hwloc_get_nbobjs_by_type(t.topology, HWLOC_OBJ_PU) > 0, 1); /* not freed */
    topo_close(&t);
    hwloc_bitmap_free(nodes);
}

START_TEST(store_segments_are_bound_to_the_planned_node)
{
    assert_store_bound(NULL, NULL, 0); /* mmap'ed by the store, its own topology */
    assert_store_bound(NULL, NULL, 1); /* the rank's topology */
}
END_TEST

static void noop_am(void *arg, uint32_t src, const void *data, size_t len)
{
}

START_TEST(ucx_allocated_store_segments_are_bound_too)
{
    const struct tp_ops *ops = tp_find("ucx");
    struct tp_params tpp = {.rank = 0, .nranks = 1, .am_cb = noop_am};
    struct tp *tp = NULL;

    if (!ops) {
        fprintf(stderr, "skipped: this build has no UCX transport\n");
        return;
    }
    ck_assert_int_eq(ops->init(&tpp, &tp), DEED_OK);
    assert_store_bound(ops, tp, 1); /* UCP_MEM_MAP_ALLOCATE, then bound */
    assert_store_bound(ops, tp, 0);
    ops->fini(tp);
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
    tcase_add_test(tc, real_machine_loads_nics_when_they_matter);
    tcase_add_test(tc, core_mode_1_2_4_ranks_on_two_numa_nodes_with_smt);
    tcase_add_test(tc, numa_mode_1_2_4_ranks_on_four_numa_nodes);
    tcase_add_test(tc, core_mode_4_ranks_on_four_numa_nodes_stay_on_their_node);
    tcase_add_test(tc, smt_siblings_only_when_more_workers_than_cores);
    tcase_add_test(tc, hbm_twins_and_machine_wide_memory_are_not_domains);
    tcase_add_test(tc, place_rejects_bad_arguments);
    tcase_add_test(tc, store_goes_to_the_numa_node_of_the_nic);
    tcase_add_test(tc, rank_plan_uses_the_nic_from_the_environment);
    tcase_add_test(tc, xml_errors_are_clean);
    tcase_add_test(tc, store_segments_are_bound_to_the_planned_node);
    tcase_add_test(tc, ucx_allocated_store_segments_are_bound_too);
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
