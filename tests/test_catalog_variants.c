/* test_catalog_variants.c - Check suite for the variants table and the
 * media metadata (catalog_variants.c): replace-all with stale keys, reads
 * with the viewer's visibility, the rows going with their media, the scrub
 * walk, rebuild inserts (rows and metadata) and download jobs that name
 * a variant. Every case runs on SQLite and on PostgreSQL
 * (tests/catalog_fixture.h).
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/catalog.h"
#include "dripd/catalog_variants.h"
#include "dripd/config.h"
#include "dripd/util.h"
#include "catalog_fixture.h"

/* A media of alice's at path; its id in id. */
static void add_media(const char *path, char id[DR_ID_LEN + 1])
{
    struct dr_intake it = {.owner = "alice", .path = path, .size = 10, .spool_path = "/s"};
    ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
    ck_assert_int_eq(it.result, 0);
    memcpy(id, it.media_id, DR_ID_LEN + 1);
}

static struct dr_variant available(const char *mid, const char *name, const char *key)
{
    static uint8_t wk[60];
    struct dr_variant v;
    memset(&v, 0, sizeof v);
    snprintf(v.media_id, sizeof v.media_id, "%s", mid);
    snprintf(v.name, sizeof v.name, "%s", name);
    snprintf(v.state, sizeof v.state, "available");
    v.content_type = (char *)"image/webp";
    v.width = 192, v.height = 256, v.size = 1234;
    snprintf(v.sha256, sizeof v.sha256, "%064d", 7);
    v.wrapped_key = wk;
    v.wrapped_key_len = sizeof wk;
    v.storage_key = (char *)key;
    v.created_at = 1;
    return v;
}

static void free_stale(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

START_TEST(test_set_processed_replaces_and_reports_stale_keys)
{
    char mid[DR_ID_LEN + 1];
    add_media("/a.jpg", mid);
    struct dr_variant v[2] = {available(mid, "thumb", "K~thumb.webp"),
                              available(mid, "preview", "K~preview.jpg")};
    char **stale = NULL;
    size_t ns = 9;
    ck_assert_int_eq(catalog_media_set_processed(cat, mid, "{\"width\":3}", v, 2, &stale, &ns), 0);
    ck_assert_uint_eq(ns, 0);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, mid, "alice", &m), 0);
    ck_assert_str_eq(m.metadata, "{\"width\":3}");
    dr_media_clear(&m);
    struct dr_variant *got;
    size_t n;
    ck_assert_int_eq(catalog_variants_list(cat, mid, "alice", &got, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(got[0].name, "preview"); /* by name */
    ck_assert_str_eq(got[1].storage_key, "K~thumb.webp");
    ck_assert_uint_eq(got[1].wrapped_key_len, 60);
    ck_assert_uint_eq(got[1].size, 1234);
    catalog_variants_free(got, n);

    /* a new config: thumb now PNG (new key), preview gone, a failed one */
    struct dr_variant w[2] = {available(mid, "thumb", "K~thumb.png"),
                              available(mid, "small", NULL)};
    snprintf(w[1].state, sizeof w[1].state, "failed");
    w[1].error = (char *)"over the pixel limit";
    w[1].content_type = NULL, w[1].wrapped_key = NULL, w[1].wrapped_key_len = 0;
    ck_assert_int_eq(catalog_media_set_processed(cat, mid, NULL, w, 2, &stale, &ns), 0);
    ck_assert_uint_eq(ns, 2); /* the old thumb and the old preview */
    bool saw_thumb = false, saw_preview = false;
    for (size_t i = 0; i < ns; i++) {
        saw_thumb |= strcmp(stale[i], "K~thumb.webp") == 0;
        saw_preview |= strcmp(stale[i], "K~preview.jpg") == 0;
    }
    ck_assert(saw_thumb && saw_preview);
    free_stale(stale, ns);
    ck_assert_int_eq(catalog_media_get(cat, mid, NULL, &m), 0);
    ck_assert_str_eq(m.metadata, "{\"width\":3}"); /* NULL left it as it was */
    dr_media_clear(&m);
    struct dr_variant one;
    ck_assert_int_eq(catalog_variant_get(cat, mid, "small", NULL, &one), 0);
    ck_assert_str_eq(one.state, "failed");
    ck_assert_str_eq(one.error, "over the pixel limit");
    ck_assert_ptr_null(one.storage_key);
    dr_variant_clear(&one);
    ck_assert_int_eq(catalog_variant_get(cat, mid, "preview", NULL, &one), -ENOENT);
    /* the same set again: nothing stale */
    ck_assert_int_eq(catalog_media_set_processed(cat, mid, NULL, w, 2, &stale, &ns), 0);
    ck_assert_uint_eq(ns, 0);
    free_stale(stale, ns);
    /* a media that is gone */
    char ghost[DR_ID_LEN + 1];
    dr_id_new(ghost);
    ck_assert_int_eq(catalog_media_set_processed(cat, ghost, "{}", w, 1, NULL, NULL), -ENOENT);
}
END_TEST

START_TEST(test_visibility_and_cascade)
{
    char mid[DR_ID_LEN + 1];
    add_media("/b.jpg", mid);
    struct dr_variant v = available(mid, "thumb", "K2~thumb.webp");
    ck_assert_int_eq(catalog_media_set_processed(cat, mid, "{}", &v, 1, NULL, NULL), 0);
    struct dr_variant got;
    ck_assert_int_eq(catalog_variant_get(cat, mid, "thumb", "bob", &got), -ENOENT);
    struct dr_variant *list;
    size_t n;
    ck_assert_int_eq(catalog_variants_list(cat, mid, "bob", &list, &n), -ENOENT);
    ck_assert_int_eq(catalog_media_share(cat, mid, "alice", "bob"), 0);
    ck_assert_int_eq(catalog_variant_get(cat, mid, "thumb", "bob", &got), 0);
    dr_variant_clear(&got);
    char *key = NULL;
    ck_assert_int_eq(catalog_media_delete(cat, mid, "alice", &key), 0);
    free(key);
    ck_assert_int_eq(catalog_variant_get(cat, mid, "thumb", NULL, &got), -ENOENT);
    /* a rebuild may not insert a variant of a media that is not there */
    ck_assert_int_eq(catalog_variant_insert(cat, &v), -ENOENT);
}
END_TEST

static int count_one(const struct dr_variant *v, void *arg)
{
    (void)v;
    (*(int *)arg)++;
    return 0;
}

START_TEST(test_foreach_insert_and_download_jobs)
{
    char m1[DR_ID_LEN + 1], m2[DR_ID_LEN + 1];
    add_media("/c.jpg", m1);
    add_media("/d.jpg", m2);
    struct dr_variant v = available(m1, "thumb", "K3~thumb.webp");
    ck_assert_int_eq(catalog_variant_insert(cat, &v), 0);
    ck_assert_int_eq(catalog_variant_insert(cat, &v), -EEXIST);
    struct dr_variant f = available(m2, "thumb", NULL);
    snprintf(f.state, sizeof f.state, "failed");
    ck_assert_int_eq(catalog_variant_insert(cat, &f), 0);
    int count = 0;
    ck_assert_int_eq(catalog_variants_foreach(cat, count_one, &count), 0);
    ck_assert_int_eq(count, 1); /* available only */

    char jid[DR_ID_LEN + 1];
    ck_assert_int_eq(catalog_enqueue_variant_download(cat, m1, "thumb", "alice", jid), 0);
    struct dr_job j;
    ck_assert_int_eq(catalog_job_get(cat, jid, "alice", &j), 0);
    ck_assert_str_eq(j.kind, "download");
    ck_assert_str_eq(j.variant, "thumb");
    dr_job_clear(&j);
    ck_assert_int_eq(catalog_enqueue_download(cat, m1, "alice", jid), 0);
    ck_assert_int_eq(catalog_job_get(cat, jid, "alice", &j), 0);
    ck_assert_str_eq(j.variant, "");
    dr_job_clear(&j);
    ck_assert_int_eq(catalog_enqueue_variant_download(cat, m1, "thumb", "bob", jid), -ENOENT);

    /* rebuild: the metadata object's, only where the media has none */
    ck_assert_int_eq(catalog_media_restore_metadata(cat, m1, "{\"width\":4}"), 0);
    ck_assert_int_eq(catalog_media_restore_metadata(cat, m1, "{\"width\":5}"), -EEXIST);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, m1, NULL, &m), 0);
    ck_assert_str_eq(m.metadata, "{\"width\":4}");
    dr_media_clear(&m);
    char ghost[DR_ID_LEN + 1];
    dr_id_new(ghost);
    ck_assert_int_eq(catalog_media_restore_metadata(cat, ghost, "{}"), -ENOENT);
}
END_TEST

int main(void)
{
    const TTest *tests[] = {
        test_set_processed_replaces_and_reports_stale_keys,
        test_visibility_and_cascade,
        test_foreach_insert_and_download_jobs,
    };
    return catalog_fixture_main("catalog_variants", 30, tests, DR_ARRAY_LEN(tests));
}
