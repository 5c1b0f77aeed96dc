/* rebuild.c - disaster recovery: recreate the catalog's media rows from the
 * self-describing sealed objects in the store (dripd --rebuild-catalog).
 *
 * What: lists every object of the configured store (local or s3: only the
 * store.h interface is used), reads the start of each with get_range,
 * parses and authenticates its header with the master key
 * (seal_read_header: media id, owner, path, size, SHA-256, content type,
 * created_at, wrapped data key) and inserts the media rows the catalog
 * lacks, state "available", storage_key = the object key. Variant objects
 * (thumbnails, previews: key "<media id>~<name>.<ext>", content type
 * "image/webp; width=W; height=H" in their header; docs/PROCESSING.md)
 * get their variant rows back, in a second pass once the originals are
 * in. A third pass reads the metadata objects ("<media id>.meta", small
 * sealed JSON documents the process stage writes, store.h): each is read
 * whole and unsealed (every tag checked), and gives its media back its
 * metadata (dimensions, capture time, camera, duration...) and the rows
 * of its failed variants (with their reasons). So a rebuilt catalog
 * answers GET /v1/media/{id} as before once the rebuild returns; no
 * reprocess is needed. Media processed before metadata objects existed
 * have none: a reprocess makes their metadata again. The originals'
 * bodies are not read: every download verifies them anyway (unseal), and
 * scrub exists for a full check.
 *
 * Versions: the originals of one owner and path are one file's versions
 * (an If-Match replacement keeps the path): all their headers are read
 * first, then the newest becomes the file and the older ones its earlier
 * versions (numbered by created_at, the first one's id as the file's).
 * The trash: a media with a trash mark ("<id>.trash", store.h) comes back
 * in the trash (its expiry counted from the rebuild), and ends its file:
 * a newer object at its path is another file.
 *
 * What it cannot restore: shares (only the owner's link is recreated),
 * jobs, events and tus sessions, none of which the objects carry; moves
 * and renames (the header's path is the upload's), which version was
 * restored as current (the newest object is); an upload whose object
 * never reached the store is gone with its catalog.
 *
 * Safe to run again: rows whose id is already present are left alone, so
 * a rebuild interrupted by a store outage is finished by running it again.
 *
 * Threads: runs in the supervisor before any worker starts, on the calling
 * thread only. Never deletes or changes an object.
 */
#include "rebuild.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>

#include "dripd/catalog.h"
#include "dripd/catalog_variants.h"
#include "dripd/config.h"
#include "dripd/keys.h"
#include "dripd/log.h"
#include "dripd/path.h"
#include "dripd/seal.h"
#include "dripd/staging.h"
#include "dripd/store.h"
#include "dripd/util.h"

#define READ_TRIES 4        /* per object, on transient store errors */
#define META_MAX (1u << 20) /* a metadata object is a few hundred bytes */

enum skip_reason {                   /* > 0: 0 means restored */
                   SKIP_PRESENT = 1, /* the catalog already has this media id */
                   SKIP_FOREIGN,     /* does not start with the dripd magic */
                   SKIP_BADHDR,      /* header does not verify: corrupt, or another master key */
                   SKIP_SIZE,        /* object size differs from what its header says (truncated) */
                   SKIP_PATHTAKEN,   /* the owner already has another media at that path */
                   SKIP_INVALID,     /* the catalog refused the row (bad path in header) */
                   SKIP_UNREADABLE,  /* the store would not give the header (after retries) */
                   SKIP_ORPHAN,      /* a variant whose media is not in the catalog */
                   SKIP_BADMETA,     /* a metadata object that does not unseal or parse */
                   SKIP_COUNT
};

static const char *const skip_names[SKIP_COUNT] = {
    "",
    "already in the catalog",
    "not dripd objects",
    "header not verifiable (corrupt or another master key)",
    "truncated",
    "path taken by another media",
    "refused by the catalog",
    "unreadable (store errors)",
    "variants or metadata of a media not in the catalog",
    "metadata objects not readable",
};

struct keylist {
    char **keys;
    uint64_t *sizes;
    size_t n, cap;
};

static int collect(const char *key, uint64_t size, void *arg)
{
    struct keylist *l = arg;
    if (staging_key_is(key))
        return 0; /* a staged upload body (cluster), not a media object */
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->keys = xrealloc(l->keys, l->cap * sizeof *l->keys);
        l->sizes = xrealloc(l->sizes, l->cap * sizeof *l->sizes);
    }
    l->keys[l->n] = xstrdup(key);
    l->sizes[l->n] = size;
    l->n++;
    return 0;
}

/* get_range with a few retries on -EAGAIN (short backoff). */
static long read_range(struct dr_store *st, const char *key, void *buf, size_t len, char *err,
                       size_t errlen)
{
    long n = -EAGAIN;
    for (int t = 0; t < READ_TRIES && n == -EAGAIN; t++) {
        if (t > 0)
            usleep((useconds_t)(200000u << (t - 1)));
        n = store_get_range(st, key, 0, buf, len, err, errlen);
    }
    return n;
}

/* Read and verify the header of one object. 0 and *h filled, or a skip
 * reason (> 0) with why in err, or -errno for a store failure. */
static int read_header(struct dr_store *st, const char *key, uint64_t size,
                       const uint8_t master[DR_KEY_LEN], struct seal_header *h, char *err,
                       size_t errlen)
{
    size_t want = SEAL_HEADER_READ;
    uint8_t *buf = NULL;
    int rc;
    for (int round = 0; round < 2; round++) {
        free(buf);
        buf = xmalloc(want);
        long n = read_range(st, key, buf, want, err, errlen);
        if (n < 0) {
            rc = (int)n;
            goto out;
        }
        if ((size_t)n < sizeof SEAL_MAGIC - 1 ||
            memcmp(buf, SEAL_MAGIC, sizeof SEAL_MAGIC - 1) != 0) {
            snprintf(err, errlen, "does not start with %s", SEAL_MAGIC);
            rc = SKIP_FOREIGN;
            goto out;
        }
        memset(h, 0, sizeof *h);
        rc = seal_read_header(buf, (size_t)n, master, h, err, errlen);
        if (rc == -EMSGSIZE && round == 0 && (size_t)n == want) {
            /* A long header: read exactly what it says it needs. */
            want = h->header_len ? h->header_len : SEAL_HEADER_MAX;
            seal_header_clear(h);
            continue;
        }
        break;
    }
    if (rc == -EMSGSIZE || rc == -EBADMSG) {
        seal_header_clear(h);
        rc = rc == -EMSGSIZE ? SKIP_SIZE : SKIP_BADHDR;
        goto out;
    }
    if (rc < 0) {
        seal_header_clear(h);
        goto out;
    }
    if (h->object_size != size) {
        snprintf(err, errlen, "object is %llu bytes, its header says %llu",
                 (unsigned long long)size, (unsigned long long)h->object_size);
        seal_header_clear(h);
        rc = SKIP_SIZE;
    }
out:
    free(buf);
    return rc;
}

/* What place an original takes among the versions of its file (the
 * objects of one owner and path: an If-Match replacement keeps the path). */
struct place {
    const char *file_id; /* the file's first version's id */
    int64_t version;     /* 1, 2, ... by created_at */
    const char *retired; /* "": the file; "version": an earlier one; "trash" */
    int64_t retired_at;  /* when it stopped being the file (trash: the rebuild's time) */
};

/* Insert the row one header describes. 0, or a skip reason (> 0), or -errno. */
static int restore_one(struct catalog *cat, const char *key, const struct seal_header *h,
                       const struct place *pl, char *err, size_t errlen)
{
    struct dr_media have;
    memset(&have, 0, sizeof have);
    int rc = catalog_media_get(cat, h->media_id, NULL, &have);
    dr_media_clear(&have);
    if (rc == 0)
        return SKIP_PRESENT;
    if (rc != -ENOENT) {
        snprintf(err, errlen, "catalog lookup of %s failed: %s", h->media_id, strerror(-rc));
        return rc;
    }
    struct dr_media m;
    memset(&m, 0, sizeof m);
    snprintf(m.id, sizeof m.id, "%s", h->media_id);
    m.owner = h->owner;
    m.path = h->path;
    path_split(h->path, &m.folder, &m.name);
    m.size = h->size;
    memcpy(m.sha256, h->sha256_hex, sizeof m.sha256);
    m.content_type = h->content_type;
    m.state = (char *)"available";
    m.storage_key = (char *)key;
    m.wrapped_key = (uint8_t *)h->wrapped_key;
    m.wrapped_key_len = DR_WRAPPED_KEY_LEN;
    m.created_at = h->created_at;
    m.uploaded_at = h->created_at; /* the store keeps no upload time dripd can read */
    snprintf(m.file_id, sizeof m.file_id, "%s", pl->file_id);
    m.version = pl->version;
    if (pl->retired[0] != '\0') { /* an earlier version or the trash: holds no path */
        snprintf(m.retired, sizeof m.retired, "%s", pl->retired);
        m.retired_at = pl->retired_at;
    }
    rc = catalog_media_insert(cat, &m);
    free(m.folder);
    free(m.name);
    if (rc == -EEXIST) {
        snprintf(err, errlen, "%s already has a media at %s", h->owner, h->path);
        return SKIP_PATHTAKEN;
    }
    if (rc == -EINVAL) {
        snprintf(err, errlen, "the catalog refused path %s of owner %s", h->path, h->owner);
        return SKIP_INVALID;
    }
    if (rc < 0)
        snprintf(err, errlen, "inserting media %s failed: %s", h->media_id, strerror(-rc));
    return rc;
}

/* "<media id>~<name>.<ext>": a variant's key (originals have no '~'). */
static bool variant_key(const char *key, char *name, size_t namelen)
{
    const char *t = strchr(key, '~');
    if (t == NULL)
        return false;
    const char *dot = strrchr(t, '.');
    size_t n = dot ? (size_t)(dot - t - 1) : strlen(t + 1);
    if (n == 0 || n >= namelen)
        return false;
    memcpy(name, t + 1, n);
    name[n] = '\0';
    return true;
}

/* The unsigned value of "; key=N" in a content type, 0 if absent. */
static uint32_t ct_param(const char *ct, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "; %s=", key);
    const char *p = ct ? strstr(ct, pat) : NULL;
    return p ? (uint32_t)strtoul(p + strlen(pat), NULL, 10) : 0;
}

/* Insert the variant row one header describes. 0, a skip reason, -errno. */
static int restore_variant(struct catalog *cat, const char *key, const char *name,
                           const struct seal_header *h, char *err, size_t errlen)
{
    struct dr_variant v;
    memset(&v, 0, sizeof v);
    snprintf(v.media_id, sizeof v.media_id, "%s", h->media_id);
    snprintf(v.name, sizeof v.name, "%s", name);
    snprintf(v.state, sizeof v.state, "available");
    const char *ct = h->content_type ? h->content_type : "";
    size_t tl = strcspn(ct, ";");
    v.content_type = xstrndup(ct, tl);
    v.width = ct_param(ct, "width");
    v.height = ct_param(ct, "height");
    v.size = h->size;
    memcpy(v.sha256, h->sha256_hex, sizeof v.sha256);
    v.wrapped_key = (uint8_t *)h->wrapped_key;
    v.wrapped_key_len = DR_WRAPPED_KEY_LEN;
    v.storage_key = (char *)key;
    v.created_at = h->created_at;
    int rc = catalog_variant_insert(cat, &v);
    free(v.content_type);
    if (rc == -EEXIST)
        return SKIP_PRESENT;
    if (rc == -ENOENT) {
        snprintf(err, errlen, "media %s is not in the catalog", h->media_id);
        return SKIP_ORPHAN;
    }
    if (rc < 0)
        snprintf(err, errlen, "inserting variant %s of %s failed: %s", name, h->media_id,
                 strerror(-rc));
    return rc;
}

/* Unseal the whole object buf[0..len) (every tag, the length and the
 * SHA-256 checked) into a heap string. 0, SKIP_BADMETA, or -errno. */
static int unseal_small(const uint8_t *buf, size_t len, const uint8_t master[DR_KEY_LEN],
                        struct seal_header *h, char **out, char *err, size_t errlen)
{
    int in = memfd_create("rebuild-in", MFD_CLOEXEC),
        plain = memfd_create("rebuild-out", MFD_CLOEXEC);
    int rc = in < 0 || plain < 0 ? -errno : 0;
    if (rc == 0)
        rc = dr_write_all(in, buf, len);
    if (rc < 0) {
        snprintf(err, errlen, "memfd: %s", strerror(-rc));
    } else if (unseal_fd(in, plain, master, NULL, h, err, errlen) != 0) {
        rc = SKIP_BADMETA;
    } else {
        off_t n = lseek(plain, 0, SEEK_END);
        char *text = n >= 0 && (size_t)n < META_MAX ? xmalloc((size_t)n + 1) : NULL;
        ssize_t got = text ? dr_pread_full(plain, text, (size_t)n, 0) : -1;
        if (text == NULL || got != n) { /* lseek -1: got == n == -1 without a buffer */
            free(text);
            snprintf(err, errlen, "cannot read its plaintext back");
            rc = SKIP_BADMETA;
        } else {
            text[n] = '\0';
            *out = text;
        }
    }
    if (in >= 0)
        close(in);
    if (plain >= 0)
        close(plain);
    return rc;
}

/* Restore what the metadata object key (of media id, size bytes) says:
 * the media's metadata, if it has none, and its failed variants' rows.
 * 0, a skip reason (> 0), or -errno (a catalog error). */
static int restore_meta(struct dr_store *st, struct catalog *cat, const char *key, const char *id,
                        uint64_t size, const uint8_t master[DR_KEY_LEN], char *err, size_t errlen)
{
    if (size > META_MAX) {
        snprintf(err, errlen, "%llu bytes, more than a metadata object has",
                 (unsigned long long)size);
        return SKIP_BADMETA;
    }
    uint8_t *buf = xmalloc(size ? size : 1);
    long n = read_range(st, key, buf, size, err, errlen);
    int rc = n < 0 ? (int)n : 0;
    if (rc == 0 && (uint64_t)n != size) {
        snprintf(err, errlen, "read %ld of its %llu bytes", n, (unsigned long long)size);
        rc = SKIP_SIZE;
    }
    struct seal_header h;
    memset(&h, 0, sizeof h);
    char *text = NULL;
    if (rc == 0 &&
        (size < sizeof SEAL_MAGIC - 1 || memcmp(buf, SEAL_MAGIC, sizeof SEAL_MAGIC - 1))) {
        snprintf(err, errlen, "does not start with %s", SEAL_MAGIC);
        rc = SKIP_FOREIGN;
    }
    if (rc == 0)
        rc = unseal_small(buf, size, master, &h, &text, err, errlen);
    free(buf);
    if (rc < 0) {
        seal_header_clear(&h);
        return -EAGAIN; /* counted as unreadable: run the rebuild again */
    }
    if (rc == 0 && (strcmp(h.media_id, id) != 0 || h.content_type == NULL ||
                    strcmp(h.content_type, STORE_META_TYPE) != 0)) {
        snprintf(err, errlen, "its header names media %s, content type %s", h.media_id,
                 h.content_type ? h.content_type : "none");
        rc = SKIP_BADMETA;
    }
    seal_header_clear(&h);
    json_t *doc = rc == 0 ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_t *meta = json_object_get(doc, "metadata");
    json_t *failed = json_object_get(doc, "failed");
    if (rc == 0 && (!json_is_object(meta) || !json_is_array(failed))) {
        snprintf(err, errlen, "not a metadata document");
        rc = SKIP_BADMETA;
    }
    char *mtext = rc == 0 ? json_dumps(meta, JSON_COMPACT) : NULL;
    if (rc == 0)
        rc = catalog_media_restore_metadata(cat, id, mtext);
    free(mtext);
    if (rc == -EEXIST) {
        rc = SKIP_PRESENT; /* the media kept its metadata: leave its variants alone too */
    } else if (rc == -ENOENT) {
        snprintf(err, errlen, "media %s is not in the catalog", id);
        rc = SKIP_ORPHAN;
    } else if (rc < 0) {
        snprintf(err, errlen, "restoring the metadata of %s failed: %s", id, strerror(-rc));
    }
    size_t i;
    json_t *f;
    json_array_foreach(rc == 0 ? failed : NULL, i, f)
    {
        const char *name = json_string_value(json_object_get(f, "name"));
        if (name == NULL || strlen(name) >= DR_VARIANT_NAME_LEN)
            continue;
        struct dr_variant v;
        memset(&v, 0, sizeof v);
        snprintf(v.media_id, sizeof v.media_id, "%s", id);
        snprintf(v.name, sizeof v.name, "%s", name);
        snprintf(v.state, sizeof v.state, "failed");
        v.error = (char *)json_string_value(json_object_get(f, "error"));
        v.created_at = (int64_t)json_integer_value(json_object_get(f, "created_at"));
        int r = catalog_variant_insert(cat, &v);
        if (r < 0 && r != -EEXIST) { /* EEXIST: an object of that name was restored */
            snprintf(err, errlen, "inserting variant %s of %s failed: %s", name, id, strerror(-r));
            rc = r;
            break;
        }
    }
    json_decref(doc);
    return rc;
}

/* One original's header, kept until its file's versions are all known. */
struct orig {
    size_t key; /* index into the key list */
    struct seal_header h;
};

static int id_cmp(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static bool in_trash(char (*trash)[DR_ID_LEN + 1], size_t n, const char *id)
{
    return n > 0 && bsearch(id, trash, n, sizeof *trash, id_cmp) != NULL;
}

/* owner, path, then created_at and id: a file's versions, oldest first */
static int orig_cmp(const void *a, const void *b)
{
    const struct seal_header *x = &((const struct orig *)a)->h, *y = &((const struct orig *)b)->h;
    int c = strcmp(x->owner, y->owner);
    if (c == 0)
        c = strcmp(x->path, y->path);
    if (c == 0)
        c = x->created_at < y->created_at ? -1 : x->created_at > y->created_at;
    return c != 0 ? c : strcmp(x->media_id, y->media_id);
}

/* Pass 0: read every original's header, then restore each owner's path as
 * one file: the newest object is the file, the older ones its earlier
 * versions (versions.keep kept them; each replaced when the next one was
 * made), numbered from 1 with the first one's id as the file's. The
 * headers of all originals are held at once (a few hundred bytes each).
 * 0, or -errno with err set (a catalog error). */
static int restore_originals(struct dr_store *st, struct catalog *cat, const struct keylist *l,
                             const uint8_t master[DR_KEY_LEN], size_t *skipped, size_t *restored,
                             char *err, size_t errlen)
{
    struct orig *o = xcalloc(l->n ? l->n : 1, sizeof *o);
    size_t n = 0;
    int rc = 0;
    char why[DR_ERRLEN];
    /* the trash marks (store_trash_key): which media were in the trash */
    char(*trash)[DR_ID_LEN + 1] = xcalloc(l->n ? l->n : 1, sizeof *trash);
    size_t nt = 0;
    for (size_t i = 0; i < l->n; i++)
        if (store_is_trash_key(l->keys[i], trash[nt], sizeof trash[nt]))
            nt++;
    qsort(trash, nt, sizeof *trash, id_cmp);
    for (size_t i = 0; i < l->n; i++) {
        char vname[DR_VARIANT_NAME_LEN], mid[DR_ID_LEN + 1];
        if (store_is_meta_key(l->keys[i], mid, sizeof mid) ||
            store_is_trash_key(l->keys[i], mid, sizeof mid) ||
            variant_key(l->keys[i], vname, sizeof vname))
            continue;
        why[0] = '\0';
        int r = read_header(st, l->keys[i], l->sizes[i], master, &o[n].h, why, sizeof why);
        if (r < 0) {
            log_warn("rebuild: %s: %s", l->keys[i], why);
            skipped[SKIP_UNREADABLE]++;
        } else if (r > 0) {
            skipped[r]++;
            log_warn("rebuild: %s skipped, %s: %s", l->keys[i], skip_names[r], why);
        } else {
            o[n++].key = i;
        }
    }
    qsort(o, n, sizeof *o, orig_cmp);
    int64_t now = dr_now_ms();
    for (size_t i = 0, first = 0; i < n; i++) {
        bool same_path = i > 0 && strcmp(o[i].h.owner, o[i - 1].h.owner) == 0 &&
                         strcmp(o[i].h.path, o[i - 1].h.path) == 0;
        /* a file ends at a trashed object (a newer one at its path is
         * another file) or at its path's newest object */
        if (!same_path || in_trash(trash, nt, o[i - 1].h.media_id))
            first = i;
        bool trashed = in_trash(trash, nt, o[i].h.media_id);
        bool last = trashed || i + 1 == n || strcmp(o[i].h.owner, o[i + 1].h.owner) != 0 ||
                    strcmp(o[i].h.path, o[i + 1].h.path) != 0;
        struct place pl = {.file_id = o[first].h.media_id,
                           .version = (int64_t)(i - first) + 1,
                           .retired = trashed ? "trash"
                                      : last  ? ""
                                              : "version",
                           .retired_at = trashed ? now
                                         : last  ? 0
                                                 : DR_MAX(o[i + 1].h.created_at, 1)};
        const char *key = l->keys[o[i].key];
        why[0] = '\0';
        int r = restore_one(cat, key, &o[i].h, &pl, why, sizeof why);
        if (r < 0) {
            snprintf(err, errlen, "rebuild: %s: %s", key, why);
            rc = r;
            break;
        }
        if (r == 0) {
            (*restored)++;
            log_debug("rebuild: %s restored%s%s", key, pl.retired[0] ? " as " : "", pl.retired);
        } else {
            skipped[r]++;
            if (r != SKIP_PRESENT)
                log_warn("rebuild: %s skipped, %s: %s", key, skip_names[r], why);
        }
    }
    for (size_t i = 0; i < n; i++)
        seal_header_clear(&o[i].h);
    free(o);
    free(trash);
    return rc;
}

int rebuild_catalog(const struct dr_config *cfg, char *err, size_t errlen)
{
    uint8_t master[DR_KEY_LEN];
    struct catalog *cat = NULL;
    struct dr_store *st = NULL;
    struct keylist l = {0};
    size_t skipped[SKIP_COUNT] = {0};
    size_t restored = 0, restored_variants = 0, restored_meta = 0;
    char why[DR_ERRLEN];
    int rc = keys_load_master(cfg->encryption.key_file, false, master, why, sizeof why);
    if (rc < 0) {
        snprintf(err, errlen, "rebuild: the master key is needed to read the objects: %s", why);
        return rc;
    }
    rc = catalog_migrate(cfg);
    if (rc == 0)
        rc = catalog_open(cfg, &cat);
    if (rc == 0)
        rc = catalog_sync_users(cat, cfg);
    if (rc < 0) {
        snprintf(err, errlen, "rebuild: the catalog: %s", strerror(-rc));
        goto out;
    }
    rc = store_open(cfg, &st, why, sizeof why);
    if (rc < 0) {
        snprintf(err, errlen, "rebuild: %s", why);
        goto out;
    }
    rc = store_list(st, collect, &l, why, sizeof why);
    if (rc < 0) {
        snprintf(err, errlen, "rebuild: listing the %s store: %s", st->ops->name, why);
        goto out;
    }
    log_info("rebuild: %zu objects in the %s store", l.n, st->ops->name);
    /* pass 0: originals, their headers read first so that the objects of
     * one owner and path (a file and its earlier versions) are restored
     * together, in created_at order; pass 1: variants; pass 2: metadata
     * objects (passes 1 and 2 need their media's row) */
    rc = restore_originals(st, cat, &l, master, skipped, &restored, err, errlen);
    if (rc < 0)
        goto out;
    for (size_t k = l.n; l.n > 0 && k < 3 * l.n; k++) {
        size_t i = k % l.n;
        char vname[DR_VARIANT_NAME_LEN], mid[DR_ID_LEN + 1];
        bool is_meta = store_is_meta_key(l.keys[i], mid, sizeof mid);
        bool is_variant = !is_meta && variant_key(l.keys[i], vname, sizeof vname);
        if ((size_t)(is_meta ? 2 : is_variant ? 1 : 0) != k / l.n)
            continue;
        why[0] = '\0';
        int r;
        if (is_meta) {
            r = restore_meta(st, cat, l.keys[i], mid, l.sizes[i], master, why, sizeof why);
            if (r == -EAGAIN) {
                log_warn("rebuild: %s: %s", l.keys[i], why);
                skipped[SKIP_UNREADABLE]++;
                continue;
            }
        } else {
            struct seal_header h;
            memset(&h, 0, sizeof h);
            r = read_header(st, l.keys[i], l.sizes[i], master, &h, why, sizeof why);
            if (r < 0) {
                log_warn("rebuild: %s: %s", l.keys[i], why);
                skipped[SKIP_UNREADABLE]++;
                continue;
            }
            if (r == 0) {
                r = restore_variant(cat, l.keys[i], vname, &h, why, sizeof why);
                seal_header_clear(&h);
            }
        }
        if (r < 0) {
            snprintf(err, errlen, "rebuild: %s: %s", l.keys[i], why);
            rc = r;
            goto out;
        }
        if (r == 0) {
            if (is_meta)
                restored_meta++;
            else
                restored_variants++;
            log_debug("rebuild: %s restored", l.keys[i]);
        } else {
            skipped[r]++;
            if (r != SKIP_PRESENT)
                log_warn("rebuild: %s skipped, %s: %s", l.keys[i], skip_names[r], why);
        }
    }

    /* The summary: "rebuild: N objects, M media restored, K skipped (reasons)". */
    size_t total_skipped = 0;
    char reasons[512] = "";
    size_t at = 0;
    for (int r = 1; r < SKIP_COUNT; r++) {
        if (skipped[r] == 0)
            continue;
        total_skipped += skipped[r];
        int k = snprintf(reasons + at, sizeof reasons - at, "%s%zu %s", at ? ", " : "", skipped[r],
                         skip_names[r]);
        if (k > 0 && (size_t)k < sizeof reasons - at)
            at += (size_t)k;
    }
    fprintf(stderr,
            "rebuild: %zu objects, %zu media restored (and %zu variants, %zu metadata), %zu "
            "skipped%s%s%s\n",
            l.n, restored, restored_variants, restored_meta, total_skipped, at ? " (" : "", reasons,
            at ? ")" : "");
    fprintf(stderr, "rebuild: shares, jobs and events are not in the objects and were not "
                    "restored; owners must share again\n");
    if (skipped[SKIP_UNREADABLE] > 0) {
        snprintf(err, errlen,
                 "rebuild: %zu objects could not be read from the store; run --rebuild-catalog "
                 "again when it is reachable (restored rows are kept)",
                 skipped[SKIP_UNREADABLE]);
        rc = -EAGAIN;
    }
out:
    for (size_t i = 0; i < l.n; i++)
        free(l.keys[i]);
    free(l.keys);
    free(l.sizes);
    store_close(st);
    catalog_close(cat);
    explicit_bzero(master, sizeof master);
    return rc;
}
