/* catalog_variants.c - the variants table and the media's metadata
 * (include/dripd/catalog_variants.h; docs/PROCESSING.md).
 *
 * What: one row per (media, variant name), written by the process stage
 * and reprocess (catalog_media_set_processed: the metadata JSON and the
 * whole set of variants in one transaction), read by the media API, scrub
 * and the variants route, inserted one by one by --rebuild-catalog
 * (which also puts back the metadata: catalog_media_restore_metadata). Rows
 * go with their media (ON DELETE CASCADE): whoever deletes a media first
 * lists its variants' storage keys to delete the objects.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees: set_processed is one transaction that also reports, from
 * the same snapshot, which objects became unreferenced; list and get are
 * one statement each.
 */
#include "dripd/catalog_variants.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "catalog_media.h"
#include "db.h"
#include "dripd/util.h"

#define COLS                                                                                       \
    "media_id, name, state, content_type, width, height, size, sha256, wrapped_key, storage_key, " \
    "error, created_at"

static const struct db_sql q_media_exists = {"SELECT 1 FROM media WHERE id = $1", NULL};
static const struct db_sql q_set_meta = {"UPDATE media SET metadata = $2 WHERE id = $1", NULL};
static const struct db_sql q_restore_meta = {
    "UPDATE media SET metadata = $2 WHERE id = $1 AND metadata IS NULL", NULL};
static const struct db_sql q_old_keys = {
    "SELECT storage_key FROM variants WHERE media_id = $1 AND storage_key IS NOT NULL", NULL};
static const struct db_sql q_delete_all = {"DELETE FROM variants WHERE media_id = $1", NULL};
static const struct db_sql q_insert = {"INSERT INTO variants(" COLS ") "
                                       "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                                       NULL};
static const struct db_sql q_list = {"SELECT " COLS " FROM variants WHERE media_id = $1 "
                                     "ORDER BY name",
                                     NULL};
static const struct db_sql q_get = {"SELECT " COLS " FROM variants WHERE media_id = $1 "
                                    "AND name = $2",
                                    NULL};
static const struct db_sql q_foreach = {"SELECT " COLS " FROM variants WHERE state = 'available' "
                                        "ORDER BY created_at, media_id, name",
                                        NULL};

void dr_variant_clear(struct dr_variant *v)
{
    if (v == NULL)
        return;
    free(v->content_type);
    free(v->wrapped_key);
    free(v->storage_key);
    free(v->error);
    memset(v, 0, sizeof *v);
}

void catalog_variants_free(struct dr_variant *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        dr_variant_clear(&v[i]);
    free(v);
}

static void bind_variant(struct db_stmt *s, const struct dr_variant *v)
{
    db_bind_text(s, 1, v->media_id);
    db_bind_text(s, 2, v->name);
    db_bind_text(s, 3, v->state);
    db_bind_text(s, 4, v->content_type);
    db_bind_i64(s, 5, v->width);
    db_bind_i64(s, 6, v->height);
    db_bind_i64(s, 7, (int64_t)v->size);
    db_bind_text(s, 8, v->sha256);
    db_bind_blob(s, 9, v->wrapped_key, v->wrapped_key_len);
    db_bind_text(s, 10, v->storage_key);
    db_bind_text(s, 11, v->error);
    db_bind_i64(s, 12, v->created_at);
}

static void read_variant(struct db_stmt *s, struct dr_variant *v)
{
    memset(v, 0, sizeof *v);
    db_col_copy(s, 0, v->media_id, sizeof v->media_id);
    db_col_copy(s, 1, v->name, sizeof v->name);
    db_col_copy(s, 2, v->state, sizeof v->state);
    v->content_type = db_col_strdup(s, 3);
    v->width = (uint32_t)db_col_i64(s, 4);
    v->height = (uint32_t)db_col_i64(s, 5);
    v->size = (uint64_t)db_col_i64(s, 6);
    db_col_copy(s, 7, v->sha256, sizeof v->sha256);
    size_t kl = 0;
    const void *k = db_col_blob(s, 8, &kl);
    if (k != NULL && kl > 0) {
        v->wrapped_key = xmalloc(kl);
        memcpy(v->wrapped_key, k, kl);
        v->wrapped_key_len = kl;
    }
    v->storage_key = db_col_strdup(s, 9);
    v->error = db_col_strdup(s, 10);
    v->created_at = db_col_i64(s, 11);
}

static int media_exists(struct db *db, const char *id)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_media_exists, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    rc = db_step(s, "variants: media");
    db_reset(s);
    if (rc < 0)
        return rc;
    return rc == DB_ROW ? 0 : -ENOENT;
}

static bool key_kept(const char *key, const struct dr_variant *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].storage_key && strcmp(v[i].storage_key, key) == 0)
            return true;
    return false;
}

int catalog_media_set_processed(struct catalog *cat, const char *media_id, const char *metadata,
                                const struct dr_variant *v, size_t n, char ***stale,
                                size_t *n_stale)
{
    char **old = NULL;
    size_t n_old = 0, cap = 0;
    if (stale)
        *stale = NULL;
    if (n_stale)
        *n_stale = 0;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    rc = media_exists(cat->db, media_id);
    struct db_stmt *s = NULL;
    if (rc == 0 && metadata != NULL && (rc = db_prepare(cat->db, &q_set_meta, &s)) == 0) {
        db_bind_text(s, 1, media_id);
        db_bind_text(s, 2, metadata);
        rc = db_exec(s, "variants: metadata");
        rc = rc < 0 ? rc : 0;
    }
    if (rc == 0 && (rc = db_prepare(cat->db, &q_old_keys, &s)) == 0) {
        db_bind_text(s, 1, media_id);
        while ((rc = db_step(s, "variants: old keys")) == DB_ROW) {
            const char *k = db_col_text(s, 0);
            if (k == NULL || key_kept(k, v, n))
                continue;
            if (n_old == cap) {
                cap = cap ? 2 * cap : 8;
                old = xrealloc(old, cap * sizeof *old);
            }
            old[n_old++] = xstrdup(k);
        }
        db_reset(s);
        rc = rc < 0 ? rc : 0;
    }
    if (rc == 0 && (rc = db_prepare(cat->db, &q_delete_all, &s)) == 0) {
        db_bind_text(s, 1, media_id);
        rc = db_exec(s, "variants: replace");
        rc = rc < 0 ? rc : 0;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((rc = db_prepare(cat->db, &q_insert, &s)) < 0)
            break;
        bind_variant(s, &v[i]);
        rc = db_exec(s, "variants: insert");
        rc = rc < 0 ? rc : 0;
    }
    rc = db_end(cat->db, rc);
    if (rc == 0 && stale != NULL && n_stale != NULL) {
        *stale = old;
        *n_stale = n_old;
        old = NULL;
        n_old = 0;
    }
    for (size_t i = 0; i < n_old; i++)
        free(old[i]);
    free(old);
    return rc;
}

/* Rows of q for media_id (and name), when viewer may see the media. */
static int read_rows(struct catalog *cat, const struct db_sql *q, const char *media_id,
                     const char *name, const char *viewer, struct dr_variant **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    char *owner = NULL;
    int rc = catalog_media_owner_for(cat->db, media_id, viewer, &owner);
    free(owner);
    if (rc < 0)
        return rc;
    struct db_stmt *s;
    if ((rc = db_prepare(cat->db, q, &s)) < 0)
        return rc;
    db_bind_text(s, 1, media_id);
    if (name)
        db_bind_text(s, 2, name);
    struct dr_variant *v = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "variants: read")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4;
            v = xrealloc(v, cap * sizeof *v);
        }
        read_variant(s, &v[n++]);
    }
    db_reset(s);
    if (rc < 0) {
        catalog_variants_free(v, n);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

int catalog_variants_list(struct catalog *cat, const char *media_id, const char *viewer,
                          struct dr_variant **out, size_t *n_out)
{
    return read_rows(cat, &q_list, media_id, NULL, viewer, out, n_out);
}

int catalog_variant_get(struct catalog *cat, const char *media_id, const char *name,
                        const char *viewer, struct dr_variant *out)
{
    struct dr_variant *v = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    int rc = read_rows(cat, &q_get, media_id, name, viewer, &v, &n);
    if (rc == 0 && n == 0)
        rc = -ENOENT;
    if (rc == 0) {
        *out = v[0];
        memset(&v[0], 0, sizeof v[0]);
    }
    catalog_variants_free(v, n);
    return rc;
}

int catalog_variants_foreach(struct catalog *cat, int (*fn)(const struct dr_variant *v, void *arg),
                             void *arg)
{
    /* rows are copied out first: the callback may use the catalog */
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_foreach, &s);
    if (rc < 0)
        return rc;
    struct dr_variant *v = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "variants: all")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            v = xrealloc(v, cap * sizeof *v);
        }
        read_variant(s, &v[n++]);
    }
    db_reset(s);
    for (size_t i = 0; rc >= 0 && i < n; i++)
        if (fn(&v[i], arg) != 0)
            break;
    catalog_variants_free(v, n);
    return rc < 0 ? rc : 0;
}

int catalog_variant_insert(struct catalog *cat, const struct dr_variant *v)
{
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    rc = media_exists(cat->db, v->media_id);
    struct db_stmt *s;
    if (rc == 0 && (rc = db_prepare(cat->db, &q_insert, &s)) == 0) {
        bind_variant(s, v);
        rc = db_exec(s, "variants: rebuild");
        rc = rc < 0 ? rc : 0;
    }
    return db_end(cat->db, rc);
}

int catalog_media_restore_metadata(struct catalog *cat, const char *media_id, const char *metadata)
{
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    rc = media_exists(cat->db, media_id);
    struct db_stmt *s;
    if (rc == 0 && (rc = db_prepare(cat->db, &q_restore_meta, &s)) == 0) {
        db_bind_text(s, 1, media_id);
        db_bind_text(s, 2, metadata);
        rc = db_exec(s, "variants: restore metadata");
        rc = rc < 0 ? rc : rc == 0 ? -EEXIST : 0;
    }
    return db_end(cat->db, rc);
}
