/* test_id.c - ULIDs: format, validity, and monotonic order within a process. */
#include <check.h>
#include <string.h>

#include "dripd/id.h"

START_TEST(test_format_and_order)
{
    char prev[DR_ID_LEN + 1] = "";
    for (int i = 0; i < 10000; i++) {
        char id[DR_ID_LEN + 1];
        dr_id_new(id);
        ck_assert_uint_eq(strlen(id), DR_ID_LEN);
        ck_assert(dr_id_valid(id));
        ck_assert_msg(strcmp(prev, id) < 0, "%s !< %s", prev, id);
        memcpy(prev, id, sizeof id);
    }
}
END_TEST

START_TEST(test_invalid)
{
    ck_assert(!dr_id_valid(NULL));
    ck_assert(!dr_id_valid(""));
    ck_assert(!dr_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FA"));   /* 25 chars */
    ck_assert(!dr_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FAVX")); /* 27 chars */
    ck_assert(!dr_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FAI"));  /* I is not Crockford */
    ck_assert(!dr_id_valid("81ARZ3NDEKTSV4RRFFQ69G5FAV"));  /* overflows 128 bits */
    ck_assert(!dr_id_valid("../../../../../etc/passwd00"));
    ck_assert(dr_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("id");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_format_and_order);
    tcase_add_test(tc, test_invalid);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
