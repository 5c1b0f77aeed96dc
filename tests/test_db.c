/* test_db.c - Check suite for the catalog's database layer (catalog/db.h):
 * the statement cache, numbered placeholders, typed binds and columns,
 * transactions and savepoints, and the error mapping.
 *
 * Each test gets a fresh SQLite database in a temporary directory with a
 * small table t. (The catalog's own semantics are test_catalog.c's.)
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/db.h"
#include "dripd/util.h"

static char tmpdir[256];
static struct db *db;

static const struct db_sql q_insert = {"INSERT INTO t(k, n, s, b) VALUES ($1, $2, $3, $4)", NULL};
static const struct db_sql q_insert_quiet = {
    "INSERT INTO t(k, n, s, b) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", NULL};
static const struct db_sql q_get = {"SELECT k, n, s, b FROM t WHERE k = $1", NULL};
static const struct db_sql q_count = {"SELECT count(*) FROM t", NULL};

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_db.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    char *path = xasprintf("%s/t.db", tmpdir);
    ck_assert_int_eq(db_sqlite_open(path, &db), 0);
    free(path);
    ck_assert_int_eq(db_script(db,
                               "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL "
                               "CHECK (n >= -9223372036854775807 - 1), s TEXT, b BLOB,"
                               " CHECK (n <> 42));",
                               "create"),
                     0);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void teardown(void)
{
    db_close(db);
    db = NULL;
    nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static int insert(const char *k, int64_t n, const char *s, const void *b, size_t blen)
{
    struct db_stmt *st;
    ck_assert_int_eq(db_prepare(db, &q_insert, &st), 0);
    db_bind_text(st, 1, k);
    db_bind_i64(st, 2, n);
    db_bind_text(st, 3, s);
    db_bind_blob(st, 4, b, blen);
    return db_exec(st, "insert");
}

static int64_t count(void)
{
    struct db_stmt *st;
    ck_assert_int_eq(db_prepare(db, &q_count, &st), 0);
    ck_assert_int_eq(db_step(st, "count"), DB_ROW);
    int64_t n = db_col_i64(st, 0);
    ck_assert_int_eq(db_step(st, "count"), DB_DONE);
    db_reset(st);
    return n;
}

START_TEST(test_cache_returns_one_statement_per_sql)
{
    ck_assert_int_eq(db_dialect(db), DB_SQLITE);
    struct db_stmt *a, *b, *c;
    ck_assert_int_eq(db_prepare(db, &q_get, &a), 0);
    ck_assert_int_eq(db_prepare(db, &q_get, &b), 0);
    ck_assert_ptr_eq(a, b);
    ck_assert_int_eq(db_prepare(db, &q_count, &c), 0);
    ck_assert_ptr_ne(a, c);
    /* Many statements: the cache grows and keeps every one. */
    enum { N = 200 };
    static struct db_sql many[N];
    static char text[N][64];
    struct db_stmt *first[N];
    for (int i = 0; i < N; i++) {
        snprintf(text[i], sizeof text[i], "SELECT %d + $1", i);
        many[i].sql = text[i];
        ck_assert_int_eq(db_prepare(db, &many[i], &first[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        struct db_stmt *again;
        ck_assert_int_eq(db_prepare(db, &many[i], &again), 0);
        ck_assert_ptr_eq(again, first[i]);
        db_bind_i64(again, 1, 1000);
        ck_assert_int_eq(db_step(again, "many"), DB_ROW);
        ck_assert_int_eq(db_col_i64(again, 0), 1000 + i);
        db_reset(again);
    }
    ck_assert_int_eq(db_prepare(db, &q_get, &b), 0);
    ck_assert_ptr_eq(a, b);
}
END_TEST

START_TEST(test_placeholders_repeat_and_any_order)
{
    static const struct db_sql q = {"SELECT $2 || '-' || $1 || '-' || $2 || '-$1'", NULL};
    struct db_stmt *s;
    ck_assert_int_eq(db_prepare(db, &q, &s), 0);
    db_bind_text(s, 1, "a");
    db_bind_text(s, 2, "b");
    ck_assert_int_eq(db_step(s, "placeholders"), DB_ROW);
    ck_assert_str_eq(db_col_text(s, 0), "b-a-b-$1"); /* quoted text is left alone */
    db_reset(s);
}
END_TEST

START_TEST(test_typed_binds_and_columns)
{
    const uint8_t blob[] = {0, 1, 0, 255, 7};
    ck_assert_int_eq(insert("max", INT64_MAX, "text é", blob, sizeof blob), 1);
    ck_assert_int_eq(insert("min", INT64_MIN, NULL, NULL, 0), 1);
    ck_assert_int_eq(insert("empty", 0, "", blob, 0), 1); /* a 0-byte blob binds NULL */
    struct db_stmt *s;
    ck_assert_int_eq(db_prepare(db, &q_get, &s), 0);
    db_bind_text(s, 1, "max");
    ck_assert_int_eq(db_step(s, "get"), DB_ROW);
    ck_assert_str_eq(db_col_text(s, 0), "max");
    ck_assert(db_col_i64(s, 1) == INT64_MAX);
    ck_assert_str_eq(db_col_text(s, 2), "text é");
    size_t len = 0;
    const void *p = db_col_blob(s, 3, &len);
    ck_assert_int_eq((int)len, (int)sizeof blob);
    ck_assert_mem_eq(p, blob, sizeof blob);
    char *dup = db_col_strdup(s, 2);
    ck_assert_str_eq(dup, "text é");
    free(dup);
    char small[5];
    db_col_copy(s, 2, small, sizeof small); /* truncated, terminated */
    ck_assert_str_eq(small, "text");
    ck_assert_int_eq(db_step(s, "get"), DB_DONE);
    db_reset(s);

    db_bind_text(s, 1, "min");
    ck_assert_int_eq(db_step(s, "get"), DB_ROW);
    ck_assert(db_col_i64(s, 1) == INT64_MIN);
    ck_assert_ptr_null(db_col_text(s, 2));
    ck_assert_ptr_null(db_col_strdup(s, 2));
    db_col_copy(s, 2, small, sizeof small);
    ck_assert_str_eq(small, "");
    ck_assert_ptr_null(db_col_blob(s, 3, &len));
    ck_assert_int_eq((int)len, 0);
    db_reset(s);

    /* db_reset dropped the binds: $1 is NULL, which matches nothing. */
    ck_assert_int_eq(db_step(s, "get"), DB_DONE);
    db_reset(s);
    db_bind_text(s, 1, "empty");
    ck_assert_int_eq(db_step(s, "get"), DB_ROW);
    ck_assert_ptr_null(db_col_blob(s, 3, &len));
    db_reset(s);

    static const struct db_sql q_null = {"SELECT $1 IS NULL, $2 IS NULL", NULL};
    ck_assert_int_eq(db_prepare(db, &q_null, &s), 0);
    db_bind_null(s, 1);
    db_bind_i64(s, 2, 0);
    ck_assert_int_eq(db_step(s, "null"), DB_ROW);
    ck_assert_int_eq(db_col_i64(s, 0), 1);
    ck_assert_int_eq(db_col_i64(s, 1), 0);
    db_reset(s);
}
END_TEST

START_TEST(test_error_mapping)
{
    ck_assert_int_eq(insert("a", 1, NULL, NULL, 0), 1);
    /* A uniqueness conflict: -EEXIST; ON CONFLICT DO NOTHING: 0 rows. */
    ck_assert_int_eq(insert("a", 2, NULL, NULL, 0), -EEXIST);
    struct db_stmt *s;
    ck_assert_int_eq(db_prepare(db, &q_insert_quiet, &s), 0);
    db_bind_text(s, 1, "a");
    db_bind_i64(s, 2, 3);
    db_bind_text(s, 3, NULL);
    db_bind_blob(s, 4, NULL, 0);
    ck_assert_int_eq(db_exec(s, "insert quiet"), 0);
    /* A CHECK constraint: -EINVAL. NOT NULL: -EIO. */
    ck_assert_int_eq(insert("b", 42, NULL, NULL, 0), -EINVAL);
    static const struct db_sql q_notnull = {"INSERT INTO t(k, n) VALUES ('c', $1)", NULL};
    ck_assert_int_eq(db_prepare(db, &q_notnull, &s), 0);
    db_bind_null(s, 1);
    ck_assert_int_eq(db_exec(s, "not null"), -EIO);
    /* Bad SQL fails at prepare (-EIO) and is not cached. */
    static const struct db_sql q_bad = {"SELEC nonsense", NULL};
    ck_assert_int_eq(db_prepare(db, &q_bad, &s), -EIO);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(db_prepare(db, &q_bad, &s), -EIO);
    ck_assert_int_eq(db_script(db, "CREATE TABLE t (x);", "script"), -EIO);
    ck_assert_int_eq(count(), 1);
}
END_TEST

START_TEST(test_transactions_and_savepoints)
{
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(insert("a", 1, NULL, NULL, 0), 1);
    db_rollback(db);
    ck_assert_int_eq(count(), 0);
    db_rollback(db); /* outside a transaction: nothing */

    ck_assert_int_eq(db_begin(db, DB_BEGIN_POLL), 0);
    ck_assert_int_eq(insert("a", 1, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_savepoint(db), 0);
    ck_assert_int_eq(insert("b", 2, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_savepoint_rollback(db), 0);
    ck_assert_int_eq(db_savepoint_release(db), 0);
    ck_assert_int_eq(db_savepoint(db), 0);
    ck_assert_int_eq(insert("c", 3, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_savepoint_release(db), 0);
    /* A failed statement inside the transaction does not end it. */
    ck_assert_int_eq(insert("a", 9, NULL, NULL, 0), -EEXIST);
    ck_assert_int_eq(db_end(db, 0), 0);
    ck_assert_int_eq(count(), 2); /* a and c */

    /* db_end with an error rolls back and hands the error on. */
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(insert("d", 4, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_end(db, -ENOENT), -ENOENT);
    ck_assert_int_eq(count(), 2);
}
END_TEST

START_TEST(test_busy_is_ebusy)
{
    /* A second connection holds the write lock past the 5 s timeout. */
    char *path = xasprintf("%s/t.db", tmpdir);
    struct db *other;
    ck_assert_int_eq(db_sqlite_open(path, &other), 0);
    free(path);
    ck_assert_int_eq(db_begin(other, 0), 0);
    int64_t t0 = dr_mono_ms();
    ck_assert_int_eq(db_begin(db, DB_BEGIN_POLL), -EBUSY);
    ck_assert_int_ge(dr_mono_ms() - t0, 4500);
    ck_assert_int_eq(count(), 0); /* readers still read */
    db_rollback(other);
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(db_end(db, 0), 0);
    db_close(other);
    db_close(NULL);
}
END_TEST

START_TEST(test_open_missing_directory)
{
    struct db *d = (struct db *)1;
    ck_assert_int_eq(db_sqlite_open("/nonexistent/dir/for/dripd/t.db", &d), -ENOENT);
    ck_assert_ptr_null(d);
}
END_TEST

static Suite *db_suite(void)
{
    Suite *s = suite_create("db");
    TCase *tc = tcase_create("sqlite");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_cache_returns_one_statement_per_sql);
    tcase_add_test(tc, test_placeholders_repeat_and_any_order);
    tcase_add_test(tc, test_typed_binds_and_columns);
    tcase_add_test(tc, test_error_mapping);
    tcase_add_test(tc, test_transactions_and_savepoints);
    tcase_add_test(tc, test_busy_is_ebusy);
    tcase_add_test(tc, test_open_missing_directory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(db_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
