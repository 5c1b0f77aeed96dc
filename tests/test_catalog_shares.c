/* test_catalog_shares.c - Check suite for sharing that can be taken back
 * (catalog_shares.c) and public links (catalog_links.c): the shares of a
 * media, unsharing, folder shares as a rule (later files, moves, prefix
 * safety, the root, listings and their sums), and links: ownership, the
 * counted use with its expiry and limit (also from several threads at
 * once), revocation, and links going with their media. Every case runs
 * on SQLite and on PostgreSQL (tests/catalog_fixture.h).
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/catalog.h"
#include "dripd/catalog_links.h"
#include "dripd/catalog_shares.h"
#include "dripd/config.h"
#include "dripd/util.h"
#include "catalog_fixture.h"

/* A media of owner's at path, of size bytes; its id in id. */
static void add(const char *owner, const char *path, uint64_t size, char id[DR_ID_LEN + 1])
{
    struct dr_intake it = {.owner = owner, .path = path, .size = size, .spool_path = "/s"};
    ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
    ck_assert_int_eq(it.result, 0);
    memcpy(id, it.media_id, DR_ID_LEN + 1);
}

static bool sees(const char *user, const char *id)
{
    struct dr_media m;
    int rc = catalog_media_get(cat, id, user, &m);
    dr_media_clear(&m);
    ck_assert(rc == 0 || rc == -ENOENT);
    return rc == 0;
}

START_TEST(test_list_and_unshare)
{
    char id[DR_ID_LEN + 1];
    add("alice", "/a.txt", 1, id);
    struct dr_share *s;
    size_t n;
    ck_assert_int_eq(catalog_shares_list(cat, id, "alice", &s, &n), 0);
    ck_assert_uint_eq(n, 0); /* the owner's own link is not a share */
    catalog_shares_free(s, n);
    ck_assert_int_eq(catalog_media_share(cat, id, "alice", "carol"), 0);
    ck_assert_int_eq(catalog_media_share(cat, id, "alice", "bob"), 0);
    ck_assert_int_eq(catalog_shares_list(cat, id, "alice", &s, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(s[0].user, "bob"); /* by user */
    ck_assert_ptr_null(s[0].folder);
    ck_assert_int_gt(s[0].created_at, 0);
    ck_assert_str_eq(s[1].user, "carol");
    catalog_shares_free(s, n);
    /* only the owner lists or unshares */
    ck_assert_int_eq(catalog_shares_list(cat, id, "bob", &s, &n), -ENOENT);
    ck_assert_int_eq(catalog_media_unshare(cat, id, "bob", "carol"), -ENOENT);
    ck_assert_int_eq(catalog_media_unshare(cat, id, "alice", "bob"), 0);
    ck_assert(!sees("bob", id) && sees("carol", id));
    ck_assert_int_eq(catalog_media_unshare(cat, id, "alice", "bob"), -ESRCH);
    ck_assert_int_eq(catalog_media_unshare(cat, id, "alice", "alice"), -ESRCH);
    ck_assert(sees("alice", id));
    ck_assert_int_eq(catalog_media_unshare(cat, "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL, "bob"),
                     -ENOENT);
}
END_TEST

START_TEST(test_folder_share_is_a_rule)
{
    char a[DR_ID_LEN + 1], deep[DR_ID_LEN + 1], x[DR_ID_LEN + 1], dash[DR_ID_LEN + 1];
    char own[DR_ID_LEN + 1];
    add("alice", "/ab/a.txt", 10, a);
    add("alice", "/abc/x.txt", 20, x);     /* "/ab" never matches "/abc" */
    add("alice", "/ab-x/d.txt", 40, dash); /* '-' sorts before '/' */
    add("bob", "/ab/own.txt", 80, own);
    bool created = false;
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/nope", "bob", NULL), -ENOENT);
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/ab/a.txt", "bob", NULL), -ENOENT);
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/ab", "mallory", NULL), -ESRCH);
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/ab", "alice", NULL), -EINVAL);
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/ab", "bob", &created), 0);
    ck_assert(created);
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/ab", "bob", &created), 0);
    ck_assert(!created);
    ck_assert(sees("bob", a) && !sees("bob", x) && !sees("bob", dash) && !sees("carol", a));
    ck_assert(!sees("alice", own)); /* the rule speaks of the owner's files only */

    /* a file added later, at any depth, is covered */
    add("alice", "/ab/c/d/deep.txt", 5, deep);
    ck_assert(sees("bob", deep));
    struct dr_share *s;
    size_t n;
    ck_assert_int_eq(catalog_shares_list(cat, deep, "alice", &s, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(s[0].user, "bob");
    ck_assert_str_eq(s[0].folder, "/ab");
    catalog_shares_free(s, n);

    /* bob's listings: his own and alice's, with sums of what he sees */
    struct dr_media *files;
    struct dr_folder_entry *dirs;
    size_t nf, nd;
    ck_assert_int_eq(catalog_media_list(cat, "bob", "/", &files, &nf, &dirs, &nd), 0);
    ck_assert_uint_eq(nf, 0);
    ck_assert_uint_eq(nd, 1);
    ck_assert_str_eq(dirs[0].name, "ab");
    ck_assert_uint_eq(dirs[0].files, 3);
    ck_assert_uint_eq(dirs[0].size, 10 + 5 + 80);
    catalog_media_list_free(files, nf, dirs, nd);

    /* moved out: no longer shared; back in: shared again */
    ck_assert_int_eq(catalog_media_move(cat, a, "alice", "/elsewhere/a.txt"), 0);
    ck_assert(!sees("bob", a));
    ck_assert_int_eq(catalog_media_move(cat, a, "alice", "/ab/a.txt"), 0);
    ck_assert(sees("bob", a));

    struct dr_folder_share *fs;
    ck_assert_int_eq(catalog_folder_shares_list(cat, "alice", NULL, &fs, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(fs[0].path, "/ab");
    ck_assert_str_eq(fs[0].user, "bob");
    catalog_folder_shares_free(fs, n);
    ck_assert_int_eq(catalog_folder_shares_list(cat, "alice", "/abc", &fs, &n), 0);
    ck_assert_uint_eq(n, 0);
    catalog_folder_shares_free(fs, n);

    /* a single share outlives the folder share */
    ck_assert_int_eq(catalog_media_share(cat, deep, "alice", "bob"), 0);
    ck_assert_int_eq(catalog_folder_unshare(cat, "alice", "/ab", "carol"), -ENOENT);
    ck_assert_int_eq(catalog_folder_unshare(cat, "bob", "/ab", "bob"), -ENOENT);
    ck_assert_int_eq(catalog_folder_unshare(cat, "alice", "/ab", "bob"), 0);
    ck_assert(!sees("bob", a) && sees("bob", deep));

    /* the root covers everything of the owner's */
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/", "carol", &created), 0);
    ck_assert(sees("carol", a) && sees("carol", x) && sees("carol", dash) && sees("carol", deep));
    char top[DR_ID_LEN + 1];
    add("alice", "/top.txt", 1, top);
    ck_assert(sees("carol", top) && !sees("carol", own));
}
END_TEST

START_TEST(test_links)
{
    char id[DR_ID_LEN + 1], other[DR_ID_LEN + 1];
    add("alice", "/l.txt", 3, id);
    add("alice", "/m.txt", 3, other);
    struct dr_link l, l2, got;
    ck_assert_int_eq(catalog_link_create(cat, id, "bob", 0, 0, &l), -ENOENT); /* not bob's */
    ck_assert_int_eq(catalog_media_share(cat, id, "alice", "bob"), 0);
    ck_assert_int_eq(catalog_link_create(cat, id, "bob", 0, 0, &l),
                     -ENOENT); /* shared is not his */
    ck_assert_int_eq(catalog_link_create(cat, id, "alice", 0, 2, &l), 0);
    ck_assert(dr_id_valid(l.id));
    ck_assert_str_eq(l.owner, "alice");
    ck_assert_str_eq(l.media_id, id);
    ck_assert_str_eq(l.path, "/l.txt");
    ck_assert_str_eq(l.state, "queued");
    ck_assert_int_eq(l.max_downloads, 2);
    ck_assert_int_eq(l.downloads, 0);
    ck_assert_int_eq(l.expires_at, 0);
    ck_assert_int_eq(catalog_link_get(cat, l.id, &got), 0);
    ck_assert_str_eq(got.media_id, id);
    dr_link_clear(&got);

    /* the count checks the limit in the same statement */
    int64_t n = 0;
    ck_assert_int_eq(catalog_link_count(cat, l.id, dr_now_ms(), &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(catalog_link_count(cat, l.id, dr_now_ms(), &n), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(catalog_link_count(cat, l.id, dr_now_ms(), &n), -EDQUOT);
    /* and the expiry */
    int64_t now = dr_now_ms();
    ck_assert_int_eq(catalog_link_create(cat, other, "alice", now + 1000, 0, &l2), 0);
    ck_assert_int_eq(catalog_link_count(cat, l2.id, now, NULL), 0);
    ck_assert_int_eq(catalog_link_count(cat, l2.id, now + 1000, NULL), -ETIME);
    ck_assert_int_eq(catalog_link_count(cat, "01ARZ3NDEKTSV4RRFFQ69G5FAV", now, NULL), -ENOENT);

    /* lists: newest first, by media, owner's only */
    struct dr_link *v;
    size_t nv;
    ck_assert_int_eq(catalog_links_list(cat, "alice", NULL, &v, &nv), 0);
    ck_assert_uint_eq(nv, 2);
    ck_assert_str_eq(v[0].id, l2.id);
    ck_assert_str_eq(v[1].id, l.id);
    ck_assert_int_eq(v[1].downloads, 2);
    catalog_links_free(v, nv);
    ck_assert_int_eq(catalog_links_list(cat, "alice", id, &v, &nv), 0);
    ck_assert_uint_eq(nv, 1);
    catalog_links_free(v, nv);
    ck_assert_int_eq(catalog_links_list(cat, "bob", NULL, &v, &nv), 0);
    ck_assert_uint_eq(nv, 0);
    catalog_links_free(v, nv);

    /* follows a move; revoked one by one; goes with its media */
    ck_assert_int_eq(catalog_media_move(cat, id, "alice", "/moved/l.txt"), 0);
    ck_assert_int_eq(catalog_link_get(cat, l.id, &got), 0);
    ck_assert_str_eq(got.path, "/moved/l.txt");
    dr_link_clear(&got);
    ck_assert_int_eq(catalog_link_delete(cat, l.id, "bob"), -ENOENT);
    ck_assert_int_eq(catalog_link_delete(cat, l.id, "alice"), 0);
    ck_assert_int_eq(catalog_link_delete(cat, l.id, "alice"), -ENOENT);
    ck_assert_int_eq(catalog_link_get(cat, l2.id, &got), 0);
    dr_link_clear(&got);
    ck_assert_int_eq(catalog_media_delete(cat, other, "alice", NULL), 0);
    ck_assert_int_eq(catalog_link_get(cat, l2.id, &got), -ENOENT);
    dr_link_clear(&l);
    dr_link_clear(&l2);
}
END_TEST

/* Four threads, each with its own handle, use a link limited to 25
 * downloads 20 times each: exactly 25 uses are counted. */
#define COUNT_THREADS 4
#define COUNT_TRIES 20
static char count_link[DR_ID_LEN + 1];

static void *count_thread(void *arg)
{
    int *ok = arg;
    struct catalog *c;
    ck_assert_int_eq(catalog_open(&tcfg, &c), 0);
    for (int i = 0; i < COUNT_TRIES; i++) {
        int rc = catalog_link_count(c, count_link, dr_now_ms(), NULL);
        ck_assert(rc == 0 || rc == -EDQUOT);
        *ok += rc == 0;
    }
    catalog_close(c);
    return NULL;
}

START_TEST(test_link_count_concurrent)
{
    char id[DR_ID_LEN + 1];
    add("alice", "/c.txt", 1, id);
    struct dr_link l;
    ck_assert_int_eq(catalog_link_create(cat, id, "alice", 0, 25, &l), 0);
    memcpy(count_link, l.id, sizeof count_link);
    pthread_t t[COUNT_THREADS];
    int ok[COUNT_THREADS] = {0};
    for (int i = 0; i < COUNT_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, count_thread, &ok[i]), 0);
    int total = 0;
    for (int i = 0; i < COUNT_THREADS; i++) {
        pthread_join(t[i], NULL);
        total += ok[i];
    }
    ck_assert_int_eq(total, 25);
    struct dr_link got;
    ck_assert_int_eq(catalog_link_get(cat, l.id, &got), 0);
    ck_assert_int_eq(got.downloads, 25);
    dr_link_clear(&got);
    dr_link_clear(&l);
}
END_TEST

int main(void)
{
    const TTest *tests[] = {
        test_list_and_unshare,
        test_folder_share_is_a_rule,
        test_links,
        test_link_count_concurrent,
    };
    return catalog_fixture_main("catalog_shares", 60, tests, DR_ARRAY_LEN(tests));
}
