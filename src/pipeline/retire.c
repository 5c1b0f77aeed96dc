/* retire.c - the retire sweep (retire.h): expire the trash, delete
 * replaced versions and their objects.
 *
 * Threads: runs on the upload starter's thread with its catalog handle;
 * opens a store only when there is something to delete, and closes it
 * before returning. Its one piece of state: the versions.keep it last
 * trimmed every file's versions to (that thread's alone).
 *
 * Guarantees: once per cluster (lease "retire", RETIRE_LEASE_MS, taken
 * over when its holder stops renewing); a row goes before its objects
 * (catalog_media_delete, NULL owner), so a crash between the two leaves
 * only an orphan object, which scrub reports; a row whose upload is still
 * running (state "queued") waits for its job (catalog_retired_purgeable).
 */
#include "retire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/catalog.h"
#include "dripd/catalog_variants.h"
#include "dripd/catalog_versions.h"
#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/store.h"
#include "dripd/util.h"

#define RETIRE_BATCH 64
#define RETIRE_LEASE_MS 60000

/* the versions.keep every file's versions were last trimmed to (-1: not
 * yet in this process); only the upload starter's thread touches it */
static int g_trimmed_for = -1;

/* Delete one purge row and its objects; 0 / -errno (-ENOENT: gone already). */
static int purge_one(const struct dr_config *cfg, struct catalog *cat, struct dr_store **st,
                     const char *id)
{
    struct dr_variant *v = NULL;
    size_t nv = 0;
    if (catalog_variants_list(cat, id, NULL, &v, &nv) < 0)
        nv = 0;
    char *key = NULL;
    int rc = catalog_media_delete(cat, id, NULL, &key);
    if (rc < 0) {
        catalog_variants_free(v, nv);
        return rc;
    }
    char **names = xcalloc(nv + 1, sizeof *names), **keys = xcalloc(nv + 1, sizeof *keys);
    for (size_t i = 0; i < nv; i++) {
        names[i] = v[i].name;
        keys[i] = v[i].storage_key;
    }
    char err[256] = "";
    if (*st == NULL && store_open(cfg, st, err, sizeof err) < 0) {
        log_warn("retire: media %s: no store to delete its objects from (%s); they are orphans "
                 "for scrub",
                 id, err);
        *st = NULL;
    }
    if (*st != NULL)
        store_forget(*st, cfg->data_dir, id, key, names, keys, nv);
    free(names);
    free(keys);
    catalog_variants_free(v, nv);
    free(key);
    return 0;
}

bool retire_sweep(const struct dr_config *cfg, struct catalog *cat)
{
    int rc = catalog_lease(cat, "retire", RETIRE_LEASE_MS, NULL);
    if (rc <= 0) {
        if (rc < 0)
            log_warn("retire: lease: catalog: %s", strerror(-rc));
        return false;
    }
    uint64_t ttl = cfg->trash.ttl, marked = 0;
    /* versions.keep lowered since versions were kept: trim every file's
     * once, at the first sweep of this process and after a reload changed
     * it, not only at the file's next replace */
    if (cfg->versions.keep != g_trimmed_for) {
        uint64_t trimmed = 0;
        rc = catalog_versions_trim_all(cat, cfg->versions.keep, &trimmed);
        if (rc < 0) {
            log_warn("retire: trimming versions to versions.keep: catalog: %s", strerror(-rc));
            return false;
        }
        g_trimmed_for = cfg->versions.keep;
        if (trimmed > 0)
            log_info("retire: %" PRIu64 " earlier versions beyond versions.keep %d to delete",
                     trimmed, cfg->versions.keep);
    }
    int64_t now = dr_now_ms();
    int64_t before = ttl >= (uint64_t)now ? 0 : now - (int64_t)ttl;
    rc = catalog_retired_expire(cat, before, &marked);
    if (rc < 0) {
        log_warn("retire: expiring the trash: catalog: %s", strerror(-rc));
        return false;
    }
    char(*ids)[DR_ID_LEN + 1] = xcalloc(RETIRE_BATCH, sizeof *ids);
    size_t n = 0, done = 0;
    rc = catalog_retired_purgeable(cat, RETIRE_BATCH, ids, &n);
    if (rc < 0)
        log_warn("retire: catalog: %s", strerror(-rc));
    struct dr_store *st = NULL;
    for (size_t i = 0; i < n; i++) {
        int r = purge_one(cfg, cat, &st, ids[i]);
        if (r == 0)
            done++;
        else if (r != -ENOENT) {
            log_warn("retire: media %s: catalog: %s", ids[i], strerror(-r));
            break;
        }
    }
    store_close(st);
    free(ids);
    if (done > 0 || marked > 0)
        log_info("retire: %" PRIu64 " expired from the trash or left without their file; %zu "
                 "deleted with their objects",
                 marked, done);
    return n == RETIRE_BATCH;
}
