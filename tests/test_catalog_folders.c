/* test_catalog_folders.c - Check suite for folders as first-class
 * (catalog_folders.c): made folders (listed empty, kept, clashing with
 * files both ways), moving a folder with all below it (files of every
 * state, made folders, folder shares; UTF-8; the length limit; refusals)
 * and deleting one (what is left for the store, variants included), or
 * moving its files to the trash.
 * Every case runs on SQLite and on PostgreSQL (tests/catalog_fixture.h).
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/catalog.h"
#include "dripd/catalog_folders.h"
#include "dripd/catalog_versions.h"
#include "dripd/catalog_shares.h"
#include "dripd/catalog_variants.h"
#include "dripd/path.h"
#include "dripd/config.h"
#include "dripd/util.h"
#include "catalog_fixture.h"

/* A media of owner's at path; its id in id (may be NULL). */
static void add(const char *owner, const char *path, uint64_t size, char *id)
{
    struct dr_intake it = {.owner = owner, .path = path, .size = size, .spool_path = "/s"};
    ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
    ck_assert_int_eq(it.result, 0);
    if (id != NULL)
        memcpy(id, it.media_id, DR_ID_LEN + 1);
}

/* The subfolders of folder as viewer lists them: "name:files:size,..." */
static void subs(const char *viewer, const char *folder, char *out, size_t len)
{
    struct dr_media *files;
    struct dr_folder_entry *dirs;
    size_t nf, nd;
    ck_assert_int_eq(catalog_media_list(cat, viewer, folder, &files, &nf, &dirs, &nd), 0);
    out[0] = '\0';
    for (size_t i = 0; i < nd; i++) {
        size_t at = strlen(out);
        snprintf(out + at, len - at, "%s%s:%llu:%llu", i ? "," : "", dirs[i].name,
                 (unsigned long long)dirs[i].files, (unsigned long long)dirs[i].size);
    }
    catalog_media_list_free(files, nf, dirs, nd);
}

static char *path_of(const char *id)
{
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, id, NULL, &m), 0);
    char *p = xstrdup(m.path);
    dr_media_clear(&m);
    return p;
}

START_TEST(test_make_folders)
{
    char buf[256];
    bool created = false;
    int clash = -1;
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/a/b/c", &created, &clash), 0);
    ck_assert(created);
    ck_assert_int_eq(clash, 0);
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/a/b/c", &created, NULL), 0);
    ck_assert(!created);
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/a", &created, NULL), 0);
    ck_assert(!created); /* it is there through /a/b/c */
    subs("alice", "/", buf, sizeof buf);
    ck_assert_str_eq(buf, "a:0:0");
    subs("alice", "/a", buf, sizeof buf);
    ck_assert_str_eq(buf, "b:0:0");
    subs("bob", "/", buf, sizeof buf);
    ck_assert_str_eq(buf, "");
    /* files count where they are; a made folder next to them adds none */
    add("alice", "/a/x.txt", 7, NULL);
    add("alice", "/a/b/y.txt", 5, NULL);
    subs("alice", "/", buf, sizeof buf);
    ck_assert_str_eq(buf, "a:2:12");
    subs("alice", "/a", buf, sizeof buf);
    ck_assert_str_eq(buf, "b:1:5");
    /* a file and a folder never share a path */
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/a/b/c"), DR_PATH_FOLDER);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/a/b"), DR_PATH_FOLDER);
    struct dr_intake it = {.owner = "alice", .path = "/a/b/c", .size = 1, .spool_path = "/s"};
    ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
    ck_assert_int_eq(it.result, -EEXIST);
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/a/x.txt", NULL, &clash), -EEXIST);
    ck_assert_int_eq(clash, DR_PATH_FILE);
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/a/x.txt/in", NULL, &clash), -EEXIST);
    ck_assert_int_eq(clash, DR_PATH_UNDER_FILE);
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/", NULL, NULL), -EINVAL);
    /* bob may use the same names */
    ck_assert_int_eq(catalog_folder_create(cat, "bob", "/a/x.txt", &created, NULL), 0);
    ck_assert(created);
    /* a made folder can be shared, and bob sees it listed under alice's */
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/pics/2026", NULL, NULL), 0);
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/pics", "carol", NULL), 0);
    subs("carol", "/pics", buf, sizeof buf);
    ck_assert_str_eq(buf, "2026:0:0");
}
END_TEST

START_TEST(test_move_folders)
{
    char a[DR_ID_LEN + 1], b[DR_ID_LEN + 1], f[DR_ID_LEN + 1], x[DR_ID_LEN + 1];
    add("alice", "/src/a.txt", 1, a);
    add("alice", "/src/in/b.txt", 2, b);
    add("alice", "/src/in/failed.txt", 3, f);
    add("alice", "/srcx/x.txt", 4, x); /* never "/src" */
    /* fail f's upload: failed media move with their folder */
    int n = 0;
    struct dr_job claimed[8];
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 8, "t:1", claimed, &n), 0);
    for (int i = 0; i < n; i++) {
        if (strcmp(claimed[i].media_id, f) == 0)
            ck_assert_int_eq(catalog_job_fail(cat, claimed[i].id, NULL, "boom"), 0);
        dr_job_clear(&claimed[i]);
    }
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/src/empty", NULL, NULL), 0);
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/src/in", "bob", NULL), 0);
    uint64_t moved = 99;
    int clash = 0;
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/src", "/dst/é", &moved, &clash), 0);
    ck_assert_int_eq((int)moved, 3);
    char *p = path_of(a);
    ck_assert_str_eq(p, "/dst/é/a.txt");
    free(p);
    p = path_of(b);
    ck_assert_str_eq(p, "/dst/é/in/b.txt");
    free(p);
    p = path_of(f);
    ck_assert_str_eq(p, "/dst/é/in/failed.txt");
    free(p);
    p = path_of(x);
    ck_assert_str_eq(p, "/srcx/x.txt");
    free(p);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, b, NULL, &m), 0);
    ck_assert_str_eq(m.folder, "/dst/é/in");
    ck_assert_str_eq(m.name, "b.txt");
    dr_media_clear(&m);
    char buf[256];
    subs("alice", "/dst/é", buf, sizeof buf);
    ck_assert_str_eq(buf, "empty:0:0,in:2:5");
    subs("alice", "/", buf, sizeof buf);
    ck_assert_str_eq(buf, "dst:3:6,srcx:1:4");
    /* the folder share moved: b is bob's to see at its new place */
    ck_assert_int_eq(catalog_media_get(cat, b, "bob", &m), 0);
    dr_media_clear(&m);
    struct dr_folder_share *fs;
    size_t nfs;
    ck_assert_int_eq(catalog_folder_shares_list(cat, "alice", NULL, &fs, &nfs), 0);
    ck_assert_int_eq((int)nfs, 1);
    ck_assert_str_eq(fs[0].path, "/dst/é/in");
    catalog_folder_shares_free(fs, nfs);
    char later[DR_ID_LEN + 1];
    add("alice", "/dst/é/in/later.txt", 1, later);
    ck_assert_int_eq(catalog_media_get(cat, later, "bob", &m), 0);
    dr_media_clear(&m);

    /* refusals */
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/src", "/y", NULL, NULL), -ENOENT);
    ck_assert_int_eq(catalog_folder_move(cat, "bob", "/dst", "/y", NULL, NULL), -ENOENT);
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/srcx/x.txt", "/y", NULL, NULL), -ENOENT);
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/dst", "/srcx", NULL, &clash), -EEXIST);
    ck_assert_int_eq(clash, DR_PATH_FOLDER);
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/dst", "/srcx/x.txt", NULL, &clash),
                     -EEXIST);
    ck_assert_int_eq(clash, DR_PATH_FILE);
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/dst", "/srcx/x.txt/y", NULL, &clash),
                     -EEXIST);
    ck_assert_int_eq(clash, DR_PATH_UNDER_FILE);
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/dst", "/dst/é/deeper", NULL, NULL),
                     -EINVAL);
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/dst", "/", NULL, NULL), -EINVAL);
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/", "/z", NULL, NULL), -EINVAL);
    char longp[DR_PATH_MAX + 8];
    memset(longp, 'l', sizeof longp);
    longp[0] = '/';
    longp[DR_PATH_MAX - 10] = '\0';
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/dst", longp, NULL, NULL), -ENAMETOOLONG);
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/dst", "/dst", &moved, NULL), 0);
    ck_assert_int_eq((int)moved, 0);
    /* a folder of failed uploads only is listed, so it moves */
    ck_assert_int_eq(catalog_folder_move(cat, "alice", "/dst/é/in", "/other/in", &moved, NULL), 0);
    ck_assert_int_eq((int)moved, 3);
}
END_TEST

START_TEST(test_delete_folders)
{
    char a[DR_ID_LEN + 1], b[DR_ID_LEN + 1], keep[DR_ID_LEN + 1];
    add("alice", "/del/a.jpg", 1, a);
    add("alice", "/del/sub/b.jpg", 2, b);
    add("alice", "/delx/keep.jpg", 3, keep);
    struct dr_job_step st = {0};
    struct dr_job claimed[8];
    int n = 0;
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 8, "t:1", claimed, &n), 0);
    for (int i = 0; i < n; i++) {
        if (strcmp(claimed[i].media_id, a) == 0) {
            st = (struct dr_job_step){
                .job_id = claimed[i].id, .media_id = a, .storage_key = "KA", .available = true};
            ck_assert_int_eq(catalog_jobs_step(cat, &st, 1, NULL), 0);
        }
        dr_job_clear(&claimed[i]);
    }
    struct dr_variant v = {.state = "available",
                           .content_type = (char *)"image/webp",
                           .size = 1,
                           .sha256 = "ab",
                           .storage_key = (char *)"KA~thumb",
                           .created_at = 1};
    memcpy(v.media_id, a, sizeof v.media_id);
    snprintf(v.name, sizeof v.name, "thumb");
    ck_assert_int_eq(catalog_media_set_processed(cat, a, NULL, &v, 1, NULL, NULL), 0);
    ck_assert_int_eq(catalog_media_share(cat, a, "alice", "bob"), 0);
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/del/sub/empty", NULL, NULL), 0);
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/del", "carol", NULL), 0);

    struct dr_gone *g;
    size_t ng;
    ck_assert_int_eq(catalog_folder_delete(cat, "bob", "/del", &g, &ng), -ENOENT);
    ck_assert_int_eq(catalog_folder_delete(cat, "alice", "/", &g, &ng), -EINVAL);
    ck_assert_int_eq(catalog_folder_delete(cat, "alice", "/delx/keep.jpg", &g, &ng), -ENOENT);
    ck_assert_int_eq(catalog_folder_delete(cat, "alice", "/del", &g, &ng), 0);
    ck_assert_int_eq((int)ng, 2);
    bool saw_a = false;
    for (size_t i = 0; i < ng; i++) {
        if (strcmp(g[i].id, a) == 0) {
            saw_a = true;
            ck_assert_str_eq(g[i].storage_key, "KA");
            ck_assert_int_eq((int)g[i].n_variants, 1);
            ck_assert_str_eq(g[i].variant_names[0], "thumb");
            ck_assert_str_eq(g[i].variant_keys[0], "KA~thumb");
        } else {
            ck_assert_str_eq(g[i].id, b);
            ck_assert_ptr_null(g[i].storage_key); /* never stored */
            ck_assert_int_eq((int)g[i].n_variants, 0);
        }
    }
    ck_assert(saw_a);
    catalog_gone_free(g, ng);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, a, NULL, &m), -ENOENT);
    ck_assert_int_eq(catalog_media_get(cat, keep, NULL, &m), 0);
    dr_media_clear(&m);
    char buf[256];
    subs("alice", "/", buf, sizeof buf);
    ck_assert_str_eq(buf, "delx:1:3");
    struct dr_folder_share *fs;
    size_t nfs;
    ck_assert_int_eq(catalog_folder_shares_list(cat, "alice", NULL, &fs, &nfs), 0);
    ck_assert_int_eq((int)nfs, 0);
    catalog_folder_shares_free(fs, nfs);
    ck_assert_int_eq(catalog_folder_delete(cat, "alice", "/del", &g, &ng), -ENOENT);
    /* an empty made folder */
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/e/f", NULL, NULL), 0);
    ck_assert_int_eq(catalog_folder_delete(cat, "alice", "/e", &g, &ng), 0);
    ck_assert_int_eq((int)ng, 0);
    catalog_gone_free(g, ng);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/e"), 0);
}
END_TEST

/* trash.ttl on: a folder's live files go to the trash (their rows stay,
 * retired), its made folders and folder shares go; restore brings each
 * file and so the folder back. */
START_TEST(test_trash_folders)
{
    char a[DR_ID_LEN + 1], b[DR_ID_LEN + 1], keep[DR_ID_LEN + 1];
    add("alice", "/tr/a.jpg", 3, a);
    add("alice", "/tr/sub/b.jpg", 2, b);
    add("alice", "/trx/keep.jpg", 1, keep);
    ck_assert_int_eq(catalog_folder_create(cat, "alice", "/tr/empty", NULL, NULL), 0);
    ck_assert_int_eq(catalog_folder_share(cat, "alice", "/tr", "carol", NULL), 0);
    char(*ids)[DR_ID_LEN + 1];
    size_t n;
    ck_assert_int_eq(catalog_folder_trash(cat, "bob", "/tr", 1000, &ids, &n), -ENOENT);
    ck_assert_int_eq(catalog_folder_trash(cat, "alice", "/", 1000, &ids, &n), -EINVAL);
    ck_assert_int_eq(catalog_folder_trash(cat, "alice", "/trx/keep.jpg", 1000, &ids, &n), -ENOENT);
    ck_assert_int_eq(catalog_folder_trash(cat, "alice", "/tr", 1000, &ids, &n), 0);
    ck_assert_int_eq((int)n, 2);
    bool got_a = strcmp(ids[0], a) == 0 || strcmp(ids[1], a) == 0;
    bool got_b = strcmp(ids[0], b) == 0 || strcmp(ids[1], b) == 0;
    ck_assert(got_a && got_b);
    free(ids);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, a, NULL, &m), 0);
    ck_assert_str_eq(m.retired, "trash");
    ck_assert_int_eq((int)m.retired_at, 1000);
    dr_media_clear(&m);
    char buf[256];
    subs("alice", "/", buf, sizeof buf);
    ck_assert_str_eq(buf, "trx:1:1");
    struct dr_folder_share *fs;
    size_t nfs;
    ck_assert_int_eq(catalog_folder_shares_list(cat, "alice", NULL, &fs, &nfs), 0);
    ck_assert_int_eq((int)nfs, 0);
    catalog_folder_shares_free(fs, nfs);
    ck_assert_int_eq(catalog_folder_trash(cat, "alice", "/tr", 2000, &ids, &n), -ENOENT);
    ck_assert_int_eq(catalog_trash_restore(cat, b, "alice", NULL, NULL), 0);
    subs("alice", "/", buf, sizeof buf);
    ck_assert_str_eq(buf, "tr:1:2,trx:1:1");
    ck_assert_int_eq(catalog_media_get(cat, keep, NULL, &m), 0);
    ck_assert_str_eq(m.retired, "");
    dr_media_clear(&m);
}
END_TEST

int main(void)
{
    const TTest *tests[] = {
        test_make_folders,
        test_move_folders,
        test_delete_folders,
        test_trash_folders,
    };
    return catalog_fixture_main("catalog_folders", 60, tests, DR_ARRAY_LEN(tests));
}
