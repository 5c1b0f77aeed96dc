/* catalog_fixture.h - the fixture of the catalog suites that run every
 * case on SQLite and on PostgreSQL (test_catalog_folders.c,
 * test_catalog_shares.c, test_catalog_variants.c): per test a fresh
 * data_dir under /tmp (and a fresh PostgreSQL database, tests/pgtest.h),
 * the catalog migrated and opened in `cat`, and the users alice (admin),
 * bob and carol; catalog_fixture_main() runs the suite's cases once per
 * backend. Header-only, like pgtest.h: a suite includes it once.
 */
#ifndef DRIPD_TESTS_CATALOG_FIXTURE_H
#define DRIPD_TESTS_CATALOG_FIXTURE_H

#include <check.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/util.h"
#include "pgtest.h"

static char tmpdir[256];
static struct catalog *cat;
static struct dr_config tcfg;
static bool use_pg;
static char pgdsn[320];
static const char *fixture_suite; /* names the temporary directories */

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_%s.XXXXXX", fixture_suite);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    memset(&tcfg, 0, sizeof tcfg);
    tcfg.data_dir = tmpdir;
    if (use_pg) {
        ck_assert_int_eq(pgtest_createdb(pgdsn, sizeof pgdsn), 0);
        tcfg.catalog.backend = DR_CATALOG_POSTGRES;
        tcfg.catalog.postgres.dsn = pgdsn;
        tcfg.catalog.postgres.pool = 8;
    }
    ck_assert_int_eq(catalog_migrate(&tcfg), 0);
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    struct dr_user users[] = {{.name = (char *)"alice", .token = (char *)"a", .admin = true},
                              {.name = (char *)"bob", .token = (char *)"b", .admin = false},
                              {.name = (char *)"carol", .token = (char *)"c", .admin = false}};
    struct dr_config cfg = {0};
    cfg.users = users;
    cfg.n_users = 3;
    ck_assert_int_eq(catalog_sync_users(cat, &cfg), 0);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void setup_sqlite(void)
{
    use_pg = false;
    setup();
}

static void setup_pg(void)
{
    use_pg = true;
    setup();
}

static void teardown(void)
{
    catalog_close(cat);
    if (use_pg)
        pgtest_dropdb(pgdsn);
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* main() of a suite: tests[0..n) as suite `name`, once per backend (a
 * TCase "sqlite" and one "postgres", timeout seconds per test). */
static int catalog_fixture_main(const char *name, double timeout, const TTest *const *tests,
                                size_t n)
{
    fixture_suite = name;
    pgtest_server();
    Suite *s = suite_create(name);
    struct {
        const char *name;
        void (*fixture)(void);
    } backends[] = {{"sqlite", setup_sqlite}, {"postgres", setup_pg}};
    for (size_t i = 0; i < DR_ARRAY_LEN(backends); i++) {
        TCase *tc = tcase_create(backends[i].name);
        tcase_add_checked_fixture(tc, backends[i].fixture, teardown);
        tcase_set_timeout(tc, timeout);
        for (size_t k = 0; k < n; k++)
            tcase_add_test(tc, tests[k]);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
