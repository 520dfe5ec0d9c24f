/*
 * test_config.c — deed_config_default, config_parse_size / config_parse_bool,
 * config_validate, and the DEED_* environment overlay (good and bad values).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "testutil.h"

static void quiet(void)
{
    tu_clear_env();
    deed__log_level = -1; /* the rejected values below each log an error */
}

START_TEST(defaults_match_the_table)
{
    deed_config_t c;
    memset(&c, 0xAB, sizeof(c));
    ck_assert_int_eq(deed_config_default(&c), DEED_OK);
    ck_assert_uint_eq(c.size, sizeof(deed_config_t));
    ck_assert_uint_eq(c.num_workers, 0);
    ck_assert_uint_eq(c.max_threads, 4096);
    ck_assert_uint_eq(c.spin_us, 50);
    ck_assert_uint_eq(c.store_size, 256ull << 20);
    ck_assert_uint_eq(c.inline_max, 0); /* auto: the transport's eager limit */
    ck_assert_uint_eq(c.stack_size, 8ull << 20);
    ck_assert_int_eq(c.pin_workers, 1);
    ck_assert_int_eq(c.log_level, DEED_LOG_WARN);
    ck_assert_str_eq(c.transport, "auto"); /* deed.h: local for one rank, ucx for more */
    ck_assert_int_eq(config_validate(&c), DEED_OK);
    ck_assert_int_eq(deed_config_default(NULL), DEED_ERR_INVALID_ARG);
    /* "local" and "auto" are always built in */
    strcpy(c.transport, "local");
    ck_assert_int_eq(config_validate(&c), DEED_OK);
}
END_TEST

START_TEST(parse_size_good)
{
    struct { const char *s; uint64_t v; } good[] = {
        {"0", 0}, {"1", 1}, {"4096", 4096}, {"1K", 1024}, {"1k", 1024}, {"64K", 65536},
        {"1M", 1 << 20}, {"256M", 256ull << 20}, {"4G", 4ull << 30}, {"1T", 1ull << 40},
        {"2KB", 2048}, {"2KiB", 2048}, {"3mb", 3ull << 20}, {"5gib", 5ull << 30},
        {"18446744073709551615", ~0ull}, {"16777215T", 16777215ull << 40},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 12345;
        ck_assert_msg(config_parse_size(good[i].s, &v) == 0, "'%s' rejected", good[i].s);
        ck_assert_msg(v == good[i].v, "'%s' -> %llu", good[i].s, (unsigned long long)v);
    }
}
END_TEST

START_TEST(parse_size_bad)
{
    const char *bad[] = {"", "12Q", "K", "-1", " 1", "1 ", "1.5M", "1MM", "1KBB",
                         "abc", "0x10", "+5", "18446744073709551616", "16777216T",
                         "17179869184G", "1M1", "1B"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 777;
        ck_assert_msg(config_parse_size(bad[i], &v) != 0, "'%s' accepted", bad[i]);
        ck_assert_msg(v == 777, "'%s' changed the output", bad[i]);
    }
    uint64_t v = 777;
    ck_assert_int_ne(config_parse_size(NULL, &v), 0);
}
END_TEST

START_TEST(parse_bool)
{
    const char *yes[] = {"1", "yes", "true", "on", "YES", "True", "ON"};
    const char *no[] = {"0", "no", "false", "off", "NO", "False", "Off"};
    const char *bad[] = {"", "2", "y", "n", "maybe", "10", "truee", " on"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        int b = -5;
        ck_assert_int_eq(config_parse_bool(yes[i], &b), 0);
        ck_assert_int_eq(b, 1);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        int b = -5;
        ck_assert_int_eq(config_parse_bool(no[i], &b), 0);
        ck_assert_int_eq(b, 0);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int b = -5;
        ck_assert_msg(config_parse_bool(bad[i], &b) != 0, "'%s' accepted", bad[i]);
        ck_assert_int_eq(b, -5);
    }
}
END_TEST

START_TEST(validate_ranges)
{
    quiet();
    deed_config_t d, c;
    deed_config_default(&d);
#define BAD(stmt)                                                                            \
    do {                                                                                     \
        c = d;                                                                               \
        stmt;                                                                                \
        ck_assert_msg(config_validate(&c) == DEED_ERR_CONFIG, "accepted: %s", #stmt);        \
    } while (0)
#define GOOD(stmt)                                                                           \
    do {                                                                                     \
        c = d;                                                                               \
        stmt;                                                                                \
        ck_assert_msg(config_validate(&c) == DEED_OK, "rejected: %s", #stmt);                \
    } while (0)
    BAD(c.size = 0);
    BAD(c.size = sizeof(c) + 8);
    BAD(c.num_workers = 1025);
    BAD(c.max_threads = 0);
    BAD(c.max_threads = 65537);
    BAD((c.num_workers = 8, c.max_threads = 4));
    BAD(c.spin_us = 1000001);
    BAD(c.store_size = (1 << 20) - 1);
    BAD(c.store_size = (1ull << 40) + 1);
    BAD(c.inline_max = (1 << 20) + 1);
    BAD(c.stack_size = (64 << 10) - 1);
    BAD(c.stack_size = (1ull << 30) + 1);
    BAD(c.pin_workers = 2);
    BAD(c.pin_workers = -1);
    BAD(c.log_level = (deed_log_level_t)4);
    BAD(c.log_level = (deed_log_level_t)-1);
    BAD(strcpy(c.transport, "nope"));
    BAD(strcpy(c.transport, ""));
    BAD(memset(c.transport, 'a', sizeof(c.transport))); /* not terminated */
    GOOD(c.num_workers = 1024);
    GOOD((c.num_workers = 8, c.max_threads = 8));
    GOOD(c.spin_us = 0);
    GOOD(c.store_size = 1 << 20);
    GOOD(c.store_size = 1ull << 40);
    GOOD(c.inline_max = 0);
    GOOD(c.inline_max = 1 << 20);
    GOOD(c.stack_size = 64 << 10);
    GOOD(c.pin_workers = 0);
    GOOD(c.log_level = DEED_LOG_DEBUG);
#undef BAD
#undef GOOD
}
END_TEST

START_TEST(env_overlay_good)
{
    tu_clear_env();
    deed_config_t c;
    deed_config_default(&c);
    ck_assert_int_eq(deed_config_from_env(&c), DEED_OK); /* empty environment: unchanged */
    deed_config_t d;
    deed_config_default(&d);
    ck_assert_int_eq(memcmp(&c, &d, sizeof(c)), 0);

    setenv("DEED_WORKERS", "3", 1);
    setenv("DEED_MAX_THREADS", "77", 1);
    setenv("DEED_SPIN_US", "0", 1);
    setenv("DEED_STORE_SIZE", "32M", 1);
    setenv("DEED_INLINE_MAX", "1K", 1);
    setenv("DEED_STACK_SIZE", "1M", 1);
    setenv("DEED_PIN", "off", 1);
    setenv("DEED_LOG", "DEBUG", 1);
    setenv("DEED_TRANSPORT", "local", 1);
    ck_assert_int_eq(deed_config_from_env(&c), DEED_OK);
    ck_assert_uint_eq(c.num_workers, 3);
    ck_assert_uint_eq(c.max_threads, 77);
    ck_assert_uint_eq(c.spin_us, 0);
    ck_assert_uint_eq(c.store_size, 32ull << 20);
    ck_assert_uint_eq(c.inline_max, 1024);
    ck_assert_uint_eq(c.stack_size, 1ull << 20);
    ck_assert_int_eq(c.pin_workers, 0);
    ck_assert_int_eq(c.log_level, DEED_LOG_DEBUG);
    ck_assert_str_eq(c.transport, "local");
    ck_assert_int_eq(config_validate(&c), DEED_OK);
}
END_TEST

START_TEST(env_overlay_bad)
{
    quiet();
    struct { const char *var, *val; } bad[] = {
        {"DEED_WORKERS", "abc"}, {"DEED_WORKERS", "1025"}, {"DEED_WORKERS", "-1"},
        {"DEED_WORKERS", "4x"}, {"DEED_WORKERS", ""}, {"DEED_MAX_THREADS", "0"},
        {"DEED_MAX_THREADS", "70000"}, {"DEED_SPIN_US", "2000000"},
        {"DEED_STORE_SIZE", "12Q"}, {"DEED_STORE_SIZE", "512K"}, {"DEED_STORE_SIZE", "2T"},
        {"DEED_STORE_SIZE", ""}, {"DEED_INLINE_MAX", "2M"}, {"DEED_STACK_SIZE", "1K"},
        {"DEED_STACK_SIZE", "2G"}, {"DEED_PIN", "maybe"}, {"DEED_LOG", "loud"},
        {"DEED_LOG", ""}, {"DEED_TRANSPORT", "nope"}, {"DEED_TRANSPORT", ""},
        {"DEED_TRANSPORT", "a-very-long-transport-name-over-32-bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tu_clear_env();
        setenv("DEED_WORKERS", "2", 1); /* a good value first: must not leak into cfg */
        setenv(bad[i].var, bad[i].val, 1);
        if (strcmp(bad[i].var, "DEED_WORKERS") == 0)
            setenv("DEED_LOG", "error", 1);
        deed_config_t c, d;
        deed_config_default(&c);
        d = c;
        ck_assert_msg(deed_config_from_env(&c) == DEED_ERR_CONFIG, "%s='%s' accepted",
                      bad[i].var, bad[i].val);
        ck_assert_msg(memcmp(&c, &d, sizeof(c)) == 0, "%s='%s' changed the config",
                      bad[i].var, bad[i].val);
        /* deed_init(NULL) reads the same environment */
        deed_ctx_t *ctx = (deed_ctx_t *)0x1;
        ck_assert_msg(deed_init(NULL, &ctx) == DEED_ERR_CONFIG, "init with %s='%s'",
                      bad[i].var, bad[i].val);
        ck_assert_ptr_null(ctx);
    }
    /* max_threads below workers, both from the environment */
    tu_clear_env();
    setenv("DEED_WORKERS", "8", 1);
    setenv("DEED_MAX_THREADS", "4", 1);
    deed_config_t c;
    deed_config_default(&c);
    ck_assert_int_eq(deed_config_from_env(&c), DEED_ERR_CONFIG);
    ck_assert_uint_eq(c.num_workers, 0);
}
END_TEST

START_TEST(env_overlay_arg_checks)
{
    quiet();
    ck_assert_int_eq(deed_config_from_env(NULL), DEED_ERR_INVALID_ARG);
    deed_config_t c;
    deed_config_default(&c);
    c.size = 3;
    ck_assert_int_ne(deed_config_from_env(&c), DEED_OK);
    ck_assert_uint_eq(c.size, 3);
}
END_TEST

START_TEST(init_with_env_config)
{
    tu_clear_env();
    setenv("DEED_WORKERS", "3", 1);
    setenv("DEED_STORE_SIZE", "16M", 1);
    setenv("DEED_PIN", "0", 1);
    setenv("DEED_LOG", "error", 1);
    deed_ctx_t *ctx = NULL;
    ck_assert_int_eq(deed_init(NULL, &ctx), DEED_OK);
    deed_stats_t s = tu_stats(ctx);
    ck_assert_uint_eq(s.workers, 3);
    ck_assert_uint_eq(s.store_bytes_total, 16ull << 20);
    ck_assert_int_eq(deed_rank(ctx), 0);
    ck_assert_int_eq(deed_nranks(ctx), 1);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);

    /* an explicit cfg ignores the environment */
    deed_config_t c;
    deed_config_default(&c);
    c.num_workers = 2;
    c.store_size = 8ull << 20;
    c.pin_workers = 0;
    ck_assert_int_eq(deed_init(&c, &ctx), DEED_OK);
    s = tu_stats(ctx);
    ck_assert_uint_eq(s.workers, 2);
    ck_assert_uint_eq(s.store_bytes_total, 8ull << 20);
    ck_assert_int_eq(deed_finalize(ctx), DEED_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, defaults_match_the_table);
    tcase_add_test(tc, parse_size_good);
    tcase_add_test(tc, parse_size_bad);
    tcase_add_test(tc, parse_bool);
    tcase_add_test(tc, validate_ranges);
    tcase_add_test(tc, env_overlay_good);
    tcase_add_test(tc, env_overlay_bad);
    tcase_add_test(tc, env_overlay_arg_checks);
    tcase_add_test(tc, init_with_env_config);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
