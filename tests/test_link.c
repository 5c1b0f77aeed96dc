/* test_link.c - signed download links: the documented MAC, and every way a
 * link can be wrong (tampered, expired, unknown user, malformed). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/link.h"

#define MID "01ARZ3NDEKTSV4RRFFQ69G5FAV"

static struct dr_user users[] = {
    {.name = "alice", .token = "alice-secret-token", .admin = false},
    {.name = "bob", .token = "bob-secret-token-x", .admin = true},
};
static struct dr_config cfg = {.users = users, .n_users = 2};

/* Split a link made by link_make into its query values. */
static void parse(const char *url, char *user, char *exp, char *sig)
{
    const char *q = strchr(url, '?');
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(sscanf(q, "?user=%63[^&]&expires=%31[^&]&sig=%64s", user, exp, sig), 3);
}

START_TEST(test_round_trip_and_known_answer)
{
    char *url = link_make(&users[0], MID, 2000000000);
    /* HMAC-SHA256(key "alice-secret-token",
     * "dripd-link-v1\n01ARZ3NDEKTSV4RRFFQ69G5FAV\nalice\n2000000000"), from
     * python3 hmac: pins the format docs/API.md documents. */
    ck_assert_str_eq(url, "/v1/media/" MID "/content?user=alice&expires=2000000000&sig="
                          "a51d952a8cd542d07d915622af878a57d5beed4453a425e309e6e048450983a0");
    char user[64], exp[32], sig[65];
    parse(url, user, exp, sig);
    const struct dr_user *u = NULL;
    ck_assert_int_eq(link_check(&cfg, MID, user, exp, sig, 1999999999, &u), LINK_OK);
    ck_assert_ptr_eq(u, &users[0]);
    free(url);
}
END_TEST

START_TEST(test_rejections)
{
    char *url = link_make(&users[0], MID, 1000);
    char user[64], exp[32], sig[65];
    parse(url, user, exp, sig);
    free(url);
    const struct dr_user *u = &users[1];
    /* genuine but past its time; exactly at its time still good */
    ck_assert_int_eq(link_check(&cfg, MID, user, exp, sig, 1001, &u), LINK_EXPIRED);
    ck_assert_ptr_null(u);
    ck_assert_int_eq(link_check(&cfg, MID, user, exp, sig, 1000, &u), LINK_OK);
    /* another media, user, expiry; a flipped hex digit; upper-case hex */
    ck_assert_int_eq(link_check(&cfg, "01ARZ3NDEKTSV4RRFFQ69G5FAW", user, exp, sig, 0, &u),
                     LINK_BAD);
    ck_assert_int_eq(link_check(&cfg, MID, "bob", exp, sig, 0, &u), LINK_BAD);
    ck_assert_int_eq(link_check(&cfg, MID, user, "1001", sig, 0, &u), LINK_BAD);
    char bad[65];
    memcpy(bad, sig, sizeof bad);
    bad[10] = bad[10] == '0' ? '1' : '0';
    ck_assert_int_eq(link_check(&cfg, MID, user, exp, bad, 0, &u), LINK_BAD);
    /* unknown user; malformed expiry and signature; missing values */
    ck_assert_int_eq(link_check(&cfg, MID, "carol", exp, sig, 0, &u), LINK_BAD);
    ck_assert_int_eq(link_check(&cfg, MID, user, "10x", sig, 0, &u), LINK_BAD);
    ck_assert_int_eq(link_check(&cfg, MID, user, "-5", sig, 0, &u), LINK_BAD);
    ck_assert_int_eq(link_check(&cfg, MID, user, "", sig, 0, &u), LINK_BAD);
    ck_assert_int_eq(link_check(&cfg, MID, user, "99999999999999999999", sig, 0, &u), LINK_BAD);
    ck_assert_int_eq(link_check(&cfg, MID, user, exp, "abc", 0, &u), LINK_BAD);
    ck_assert_int_eq(link_check(&cfg, MID, NULL, exp, sig, 0, &u), LINK_BAD);
    ck_assert_int_eq(link_check(&cfg, MID, user, exp, NULL, 0, &u), LINK_BAD);
    /* a message too long to sign is refused, never signed cut short */
    char longid[600];
    memset(longid, 'A', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    ck_assert_int_eq(link_check(&cfg, longid, user, exp, sig, 0, &u), LINK_BAD);
    /* a token change revokes every link made with the old one */
    users[0].token = "alice-new-token-1";
    ck_assert_int_eq(link_check(&cfg, MID, user, exp, sig, 0, &u), LINK_BAD);
    users[0].token = "alice-secret-token";
}
END_TEST

/* Public link tokens: the id, then the unpadded base64url
 * HMAC-SHA256(owner's token, "dripd-public-link-v1\n" id), from python3
 * hmac + base64.urlsafe_b64encode: pins what docs/API.md documents. */
START_TEST(test_public_token)
{
    char tok[DR_PUBLIC_TOKEN_LEN + 1], id[DR_ID_LEN + 1];
    link_public_token(&users[0], MID, tok);
    ck_assert_str_eq(tok, MID "Om7Bq0SLoteuRG8aWdIUI7bLStUFif8bIxIwYRCm3ZM");
    ck_assert(link_public_id(tok, id));
    ck_assert_str_eq(id, MID);
    ck_assert(link_public_verify(&users[0], tok));
    ck_assert(!link_public_verify(&users[1], tok)); /* another owner's key */
    char bad[DR_PUBLIC_TOKEN_LEN + 1];
    memcpy(bad, tok, sizeof bad);
    bad[DR_PUBLIC_TOKEN_LEN - 1] = bad[DR_PUBLIC_TOKEN_LEN - 1] == 'M' ? 'N' : 'M';
    ck_assert(!link_public_verify(&users[0], bad));
    memcpy(bad, tok, sizeof bad);
    bad[0] = 'I'; /* not a ULID character */
    ck_assert(!link_public_id(bad, id));
    ck_assert(!link_public_verify(&users[0], bad));
    tok[DR_PUBLIC_TOKEN_LEN - 1] = '\0';
    ck_assert(!link_public_id(tok, id));
    ck_assert(!link_public_verify(&users[0], tok));
    ck_assert(!link_public_id(NULL, id));
    ck_assert(!link_public_verify(NULL, MID));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("link");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_round_trip_and_known_answer);
    tcase_add_test(tc, test_rejections);
    tcase_add_test(tc, test_public_token);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
