/*
 * test_status.c — deed_strerror(): every code of DEED_STATUS_LIST has its own non-empty
 * text (the one in the list), and anything else gives "unknown status code".
 */
#include <check.h>
#include <limits.h>
#include <string.h>

#include "deed.h"
#include "testutil.h"

struct code { int value; const char *name, *text; };
#define ROW(n, v, t) {v, #n, t},
static const struct code codes[] = {DEED_STATUS_LIST(ROW)};
#undef ROW
#define NCODES (sizeof(codes) / sizeof(codes[0]))

START_TEST(every_code_has_its_text)
{
    for (size_t i = 0; i < NCODES; i++) {
        const char *s = deed_strerror(codes[i].value);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(s[0] != 0, "%s has empty text", codes[i].name);
        ck_assert_str_eq(s, codes[i].text);
        ck_assert_msg(strcmp(s, "unknown status code") != 0, "%s reported unknown",
                      codes[i].name);
    }
}
END_TEST

START_TEST(texts_and_values_are_distinct)
{
    for (size_t i = 0; i < NCODES; i++)
        for (size_t j = i + 1; j < NCODES; j++) {
            ck_assert_msg(codes[i].value != codes[j].value, "%s and %s share value %d",
                          codes[i].name, codes[j].name, codes[i].value);
            ck_assert_msg(strcmp(deed_strerror(codes[i].value), deed_strerror(codes[j].value)),
                          "%s and %s share text", codes[i].name, codes[j].name);
        }
}
END_TEST

START_TEST(codes_are_zero_then_negative_and_dense)
{
    ck_assert_int_eq(DEED_OK, 0);
    for (size_t i = 0; i < NCODES; i++)
        ck_assert_int_eq(codes[i].value, -(int)i);
}
END_TEST

START_TEST(unknown_codes)
{
    int lowest = 0;
    for (size_t i = 0; i < NCODES; i++)
        if (codes[i].value < lowest)
            lowest = codes[i].value;
    int bad[] = {1, 2, 42, lowest - 1, lowest - 2, -1000, INT_MIN, INT_MAX, 1000000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *s = deed_strerror(bad[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(s, "unknown status code");
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("strerror");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, every_code_has_its_text);
    tcase_add_test(tc, texts_and_values_are_distinct);
    tcase_add_test(tc, codes_are_zero_then_negative_and_dense);
    tcase_add_test(tc, unknown_codes);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
