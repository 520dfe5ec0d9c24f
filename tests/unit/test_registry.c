/*
 * test_registry.c — the process-wide task table: load-time registration, lookups by name and
 * id, re-registration rules, argument checks, count and digest.
 */
#include <check.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "registry.h"
#include "testutil.h"

static int reg_a(deed_task_t *t, const deed_arg_t *a, uint32_t n) { (void)t; (void)a; (void)n; return 0; }
static int reg_b(deed_task_t *t, const deed_arg_t *a, uint32_t n) { (void)t; (void)a; (void)n; return 1; }
static int reg_c(deed_task_t *t, const deed_arg_t *a, uint32_t n) { (void)t; (void)a; (void)n; return 2; }
DEED_REGISTER(reg_a)
DEED_REGISTER_AS(reg_b, "custom.name/b")

START_TEST(load_time_registration)
{
    deed_task_id_t a = deed_task_id("reg_a"), b = deed_task_id("custom.name/b");
    ck_assert_uint_ne(a, 0);
    ck_assert_uint_ne(b, 0);
    ck_assert_uint_ne(a, b);
    ck_assert_uint_eq(a, ids_name_hash("reg_a"));
    ck_assert_str_eq(deed_task_name(a), "reg_a");
    ck_assert_str_eq(deed_task_name(b), "custom.name/b");
    ck_assert_uint_eq(deed_task_id("reg_b"), 0); /* registered under its custom name only */
    const struct registry_entry *e = registry_find(a);
    ck_assert_ptr_nonnull(e);
    ck_assert(e->fn == reg_a);
    ck_assert_uint_eq(e->id, a);
    ck_assert(registry_find(b)->fn == reg_b);
}
END_TEST

START_TEST(register_twice)
{
    deed_task_id_t id = 0, id2 = 0;
    uint32_t n0 = registry_count();
    uint64_t d0 = registry_digest();
    ck_assert_int_eq(deed_task_register("reg_c", reg_c, &id), DEED_OK);
    ck_assert_uint_ne(id, 0);
    ck_assert_uint_eq(registry_count(), n0 + 1);
    ck_assert_uint_ne(registry_digest(), d0);
    uint64_t d1 = registry_digest();
    /* same name, same function: OK, same id, no new entry */
    ck_assert_int_eq(deed_task_register("reg_c", reg_c, &id2), DEED_OK);
    ck_assert_uint_eq(id2, id);
    ck_assert_uint_eq(registry_count(), n0 + 1);
    ck_assert_uint_eq(registry_digest(), d1);
    /* same name, another function: EXISTS, and the table is unchanged */
    deed__log_level = -1;
    id2 = 99;
    ck_assert_int_eq(deed_task_register("reg_c", reg_a, &id2), DEED_ERR_EXISTS);
    ck_assert_uint_eq(id2, 99);
    ck_assert(registry_find(id)->fn == reg_c);
    ck_assert_int_eq(deed_task_register("reg_a", reg_b, NULL), DEED_ERR_EXISTS);
    ck_assert(registry_find(deed_task_id("reg_a"))->fn == reg_a);
    ck_assert_uint_eq(registry_count(), n0 + 1);
    /* the same function under another name is fine */
    ck_assert_int_eq(deed_task_register("reg_c_alias", reg_c, NULL), DEED_OK);
    ck_assert_uint_eq(registry_count(), n0 + 2);
}
END_TEST

START_TEST(bad_arguments)
{
    deed__log_level = -1;
    char name[300];
    deed_task_id_t id = 42;
    ck_assert_int_eq(deed_task_register(NULL, reg_a, &id), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_task_register("x", NULL, &id), DEED_ERR_INVALID_ARG);
    ck_assert_int_eq(deed_task_register("", reg_a, &id), DEED_ERR_INVALID_ARG);
    memset(name, 'n', 256);
    name[256] = 0;
    ck_assert_int_eq(deed_task_register(name, reg_a, &id), DEED_ERR_INVALID_ARG);
    ck_assert_uint_eq(id, 42);
    name[255] = 0; /* 255 bytes is the limit */
    ck_assert_int_eq(deed_task_register(name, reg_a, &id), DEED_OK);
    ck_assert_uint_eq(deed_task_id(name), id);
    ck_assert_str_eq(deed_task_name(id), name);
}
END_TEST

START_TEST(unknown_lookups)
{
    ck_assert_uint_eq(deed_task_id(NULL), 0);
    ck_assert_uint_eq(deed_task_id(""), 0);
    ck_assert_uint_eq(deed_task_id("no such task"), 0);
    ck_assert_ptr_null(deed_task_name(0));
    ck_assert_ptr_null(deed_task_name(12345));
    ck_assert_ptr_null(deed_task_name(ids_name_hash("no such task")));
    ck_assert_ptr_null(registry_find(0));
}
END_TEST

START_TEST(many_round_trips)
{
    char name[64];
    uint32_t n0 = registry_count();
    for (int i = 0; i < 3000; i++) {
        deed_task_id_t id = 0;
        snprintf(name, sizeof(name), "bulk.task.%d", i);
        ck_assert_int_eq(deed_task_register(name, (i & 1) ? reg_a : reg_b, &id), DEED_OK);
        ck_assert_uint_ne(id, 0);
    }
    ck_assert_uint_eq(registry_count(), n0 + 3000);
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "bulk.task.%d", i);
        deed_task_id_t id = deed_task_id(name);
        ck_assert_uint_ne(id, 0);
        ck_assert_str_eq(deed_task_name(id), name);
        ck_assert(registry_find(id)->fn == ((i & 1) ? reg_a : reg_b));
    }
    /* the table has a limit: registering far more must fail cleanly, not crash */
    deed__log_level = -1;
    int too_many = 0;
    for (int i = 0; i < 10000 && !too_many; i++) {
        snprintf(name, sizeof(name), "overflow.%d", i);
        deed_status_t rc = deed_task_register(name, reg_a, NULL);
        ck_assert(rc == DEED_OK || rc == DEED_ERR_TOO_MANY);
        too_many = rc == DEED_ERR_TOO_MANY;
    }
    ck_assert(too_many);
    ck_assert_str_eq(deed_task_name(deed_task_id("reg_a")), "reg_a");
}
END_TEST

START_TEST(submit_by_name_and_id)
{
    deed_ctx_t *ctx = tu_init_w(1);
    deed_ref_t r;
    ck_assert_int_eq(deed_submit_name(ctx, "custom.name/b", NULL, 0, &r, 1), DEED_OK);
    deed_view_t v;
    ck_assert_int_eq(deed_get(ctx, r, &v, DEED_WAIT_FOREVER), DEED_ERR_TASK_FAILED);
    ck_assert_int_eq(v.error_code, 1); /* reg_b ran */
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, r);
    ck_assert_int_eq(deed_submit(ctx, deed_task_id("reg_a"), NULL, 0, &r, 1), DEED_OK);
    ck_assert_int_eq(deed_get(ctx, r, &v, DEED_WAIT_FOREVER), DEED_OK);
    deed_view_release(ctx, &v);
    deed_ref_release(ctx, r);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("registry");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, load_time_registration);
    tcase_add_test(tc, register_twice);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, unknown_lookups);
    tcase_add_test(tc, many_round_trips);
    tcase_add_test(tc, submit_by_name_and_id);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
