/* tus.c - the tus 1.0.0 endpoint: /v1/uploads (routes.h, docs/UPLOADS.md).
 *
 * Core protocol plus the extensions creation, creation-with-upload,
 * creation-defer-length, termination, checksum (sha1, sha256),
 * expiration and concatenation. A finished upload becomes an upload job
 * (catalog_tus_finish) whose id the last PATCH returns in the Upload-Job
 * header. The header grammar lives in tus_header.h.
 *
 * Concatenation: a partial upload (Upload-Concat: partial) is a session
 * row whose path is "" (no column of its own: the marker cannot be a
 * media path); it is written like any upload but never finishes. A final
 * upload (Upload-Concat: final;<URLs>) busy-marks its parts, joins their
 * spool files into its own with copy_file_range on a pool thread, then
 * goes the way of a creation that completes (fsync, row, finish: one
 * job), and deletes the spent parts after the finish committed (a crash
 * in between leaves them to the expiry sweep). Its metadata column keeps
 * the parts' ids after its Upload-Metadata (final_metadata), for HEAD's
 * Upload-Concat: final;<URLs>; a PATCH on it is 403 (never modified).
 *
 * What: OPTIONS (no auth) advertises the protocol; POST creates an upload
 * (optionally with its first bytes; the pre-upload hook, upload_hook.h,
 * is asked first, once per upload, partial and final ones included:
 * PATCHes are not asked again), HEAD reports the durable offset,
 * PATCH appends at that offset, DELETE terminates. Session rows live in
 * the shared catalog (catalog_tus_*), bodies in node-local spool files.
 *
 * Cluster mode (stager.h: a PostgreSQL catalog; docs/CLUSTER.md): any
 * node takes any request of an upload. Each request's bytes go to a spool
 * file of their own (<part id>.part), are sealed into the shared store as
 * one part of the upload's staged body (stager_put) and recorded together
 * with the offset they move (catalog_tus_add_part, compare and set: a
 * request that lost the race to the offset, on this node or another, is
 * answered 409 and its part deleted). The local file then goes, except a
 * part that is the whole upload (a one-request upload): that one is the
 * job's spool file, so the common case fetches nothing. The job reads the
 * staged body (jobs.staged = the upload id). A request cut short hands
 * what it received to the saver thread (stager_save_later).
 * Concatenation there: a partial upload's bytes are staged parts of its
 * own body like any upload's (any node takes its requests); the final
 * upload joins no files but claims the partials in one catalog
 * transaction (join_staged, catalog_tus_join): their rows are taken
 * (deleted: of two finals racing for a partial on two nodes, the second
 * finds it gone), their staged part rows re-pointed to the final's body
 * at their place in it (the objects keep their names: no byte is copied
 * or moved), and the final's row created and finished with its job, so
 * the partials stay whole if anything fails. The job reads the parts
 * from the bucket on whichever node runs it.
 *
 * Threads: handlers run on the connection's loop thread. Body bytes are
 * written to the spool file there (page cache writes; every 8 MiB the
 * written window is handed to writeback and the one 16 MiB behind waited
 * for and dropped, spool_writeback, so the fsync at the end of a PATCH
 * finds little left to flush). A creation without
 * bytes makes no spool file (the first PATCH makes it: open_spool) and
 * its session row commits lazily (ingest_submit_lazy: with the next batch,
 * waiting for nobody's sync, no WAL fsync of its own: a 201 promises no
 * durability, see below), and the 201 does not wait for that commit: a
 * HEAD/PATCH/DELETE of the upload that comes before it waits for it
 * ("creations in flight" below), except a PATCH that completes the upload
 * at once (offset 0, the whole length): it goes on with a copy of the row,
 * and ingest commits the creations queued before its finish in front of
 * it (one group commit round covers a small upload's POST + PATCH). A creation with bytes and the
 * finish (the request that completes an upload) go through ingest's group commit (ingest.h), as PUT
 * bodies do: the spool file is synced with the other uploads' of the batch (one syncfs and one
 * fsync of spool/), the row or the finish (media, job) commits in their transaction. The rest that
 * is slow goes through http_defer(): fsync + recording a partial offset, a new length, a creation
 * that also completes, termination. Two short things run on the loop thread's own catalog
 * connection: the session lookup of HEAD/PATCH (a read), and - rarely - the expiry sweep and the
 * save of an interrupted PATCH (see below).
 *
 * Small uploads inline (issue 15; ingest.h): the request that carries a
 * whole upload of at most INGEST_INLINE_MAX bytes in one go (a PATCH at
 * offset 0 whose Content-Length is the Upload-Length, or a creation with
 * all of it) keeps the bytes in memory instead of the spool file, and its
 * finish commits them with its job (job_bodies): no file to write or sync, no wait
 * for the sync thread. SQLite catalogs only, within ingest's inline
 * budget. Should the bytes have to go to the file after all (the PATCH
 * is cut short and what arrived is saved; the group commit is full and
 * the pool thread finishes it), they are written there first (spill).
 *
 * Guarantees:
 *  - the offset a client is told (PATCH 204, HEAD) is durable: the bytes
 *    up to it were fdatasync'ed (and a new spool file's name fsynced)
 *    before the catalog recorded it. (One window: a HEAD that reads the
 *    row while another request's commit of it awaits its WAL fsync,
 *    db_sqlite.c, may report that offset ~1 fsync early; should the power
 *    fail in that window, the client's next PATCH from there gets 409
 *    and it asks again, as tus clients do);
 *  - a creation without bytes (201, offset 0) is not durable by itself,
 *    as with tusd's stores: a power cut before the next durable commit
 *    (any upload's: the WAL keeps the order) may take it, and its HEAD or
 *    PATCH then answers 404, so the client creates the upload again (so
 *    does a commit that fails after the 201, or a worker killed first). It
 *    never takes more: the first 204 with an offset makes the row
 *    durable; a row left without its file restarts at offset 0;
 *  - a PATCH cut short (client gone, timeout) keeps what arrived: on_abort
 *    fsyncs and records the partial offset, synchronously, so a HEAD that
 *    follows sees it. Not with Upload-Checksum: unverifiable bytes are
 *    dropped (the offset stays);
 *  - bytes past the recorded offset are never trusted: a refused chunk
 *    (413, 460, an unverifiable cut) is truncated away at once,
 *    spool_reopen() truncates to the offset before the next PATCH writes,
 *    and the request that finishes an upload truncates the file to its
 *    final offset before the fsync, so the job never sees stray bytes;
 *  - an upload reports offset == length only together with its job: the
 *    completing request records the final offset inside
 *    catalog_tus_finish(); and should bytes ever be saved up to the
 *    length without a finish (a cut last request), the next HEAD finishes
 *    it before answering;
 *  - a user only ever sees their own uploads (404 otherwise);
 *  - one request at a time per upload in this process: PATCH/DELETE take
 *    the upload's busy mark (423 Locked while another holds it), and the
 *    expiry sweep skips (and so never deletes) a busy upload.
 *
 * Locks: g_busy.mu only guards the busy set, g_creating.mu the creations
 * in flight; each is a leaf (nothing is called while holding it but
 * http_ex_hold, a counter of the caller's own exchange).
 */
#include "routes.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api_req.h"
#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/id.h"
#include "ingest.h"
#include "dripd/log.h"
#include "dripd/path.h"
#include "dripd/router.h"
#include "quota.h"
#include "upload_hook.h"
#include "spool.h"
#include "stager.h"
#include "dripd/tus_header.h"
#include "dripd/util.h"
#include "dripd/worker.h"

#define TUS_PREFIX "/v1/uploads"
#define TUS_VERSION "1.0.0"
#define TUS_EXTENSIONS                                                                             \
    "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,"         \
    "concatenation"
/* What a partial upload's staged parts name as their path in their sealed
 * header (seal.h wants one; a partial has none of its own) */
#define TUS_PARTIAL_SEAL_PATH "(tus partial upload)"
#define TUS_OCTET "application/offset+octet-stream"
#define TUS_CT_MAX 255
#define TUS_SWEEP_BATCH 64
#define TUS_CONCAT_MAX 64         /* partial uploads one final upload may join */
#define TUS_COPY_STEP (64u << 20) /* bytes per copy_file_range call when joining */

enum tus_op { OP_CREATE, OP_HEAD, OP_PATCH, OP_DELETE };

/* One exchange's state. */
struct tus_req {
    enum tus_op op;
    struct http_exchange *ex;
    const struct dr_config *cfg;
    struct dr_worker_ctx *wctx;
    char *owner;
    char id[DR_ID_LEN + 1];
    bool busy;         /* holds the busy mark of id */
    struct dr_tus row; /* the session (PATCH, DELETE; POST fills it) */

    /* body streaming (PATCH, POST with upload) */
    int fd;
    uint8_t *buf;             /* inline body (tus_inline): the whole upload, in memory; else NULL */
    uint64_t inline_len;      /* its length, reserved in ingest's inline budget; 0 none */
    uint64_t start;           /* offset the body is written at */
    uint64_t fbase;           /* where in the file the body starts (start; 0 for a part file) */
    bool cluster;             /* stager_on: the body goes to a part file and the store */
    char part[DR_ID_LEN + 1]; /* cluster: the part's id */
    char *part_path;          /* cluster: its spool file; NULL none */
    bool part_kept;           /* cluster: the part file is the job's spool file now */
    uint64_t received;
    uint64_t writeback_at; /* bytes of this body already handed to writeback */
    int64_t length;        /* the upload's length, -1 while deferred */
    int64_t new_length;    /* Upload-Length given on PATCH for a deferred upload, else -1 */
    bool streaming;        /* body accepted, bytes may be in the file */
    bool with_upload;      /* POST: creation-with-upload */
    uint64_t declared;     /* POST: bytes announced to the quotas (0: unknown) */
    bool finishes;         /* POST: this request completes the upload */
    bool partial;          /* Upload-Concat: partial (the row's path is "") */
    /* POST with Upload-Concat: final: the partial uploads it joins, in
     * order, each busy-marked by this request until it ends */
    struct tus_part {
        char id[DR_ID_LEN + 1];
        char *spool_path;
        uint64_t length;
        bool busy;
    } * parts;
    size_t n_parts;
    struct quota_hold hold;
    bool committed;     /* the commit work ran (nothing left to save) */
    bool committed_row; /* POST: the session row exists */
    bool responded;
    EVP_MD_CTX *md;
    struct tus_checksum ck;

    /* deferred work results */
    int rc;
    int status; /* the answer to rc when not status_for(rc); 0: status_for */
    char detail[200];
    struct dr_intake intake;
    bool finished;
    bool grouped;   /* committed through ingest's group commit */
    bool made_file; /* this request made the spool file (open_spool): sync its name too */
    int sync_fd;    /* the fd ingest syncs: st->fd, or -1 (test hook "tus") */
    struct tus_req *wait_next; /* HEAD/PATCH/DELETE waiting for its creation */
    bool row_loaded;           /* PATCH: row copied from its creation in flight */
};

/* ---- the busy set ---- */

static struct {
    pthread_mutex_t mu;
    char (*ids)[DR_ID_LEN + 1];
    size_t n, cap;
} g_busy = {.mu = PTHREAD_MUTEX_INITIALIZER};

static bool busy_take(const char *id)
{
    bool ok = true;
    pthread_mutex_lock(&g_busy.mu);
    for (size_t i = 0; i < g_busy.n; i++) {
        if (strcmp(g_busy.ids[i], id) == 0) {
            ok = false;
            break;
        }
    }
    if (ok) {
        if (g_busy.n == g_busy.cap) {
            g_busy.cap = g_busy.cap ? g_busy.cap * 2 : 16;
            g_busy.ids = xrealloc(g_busy.ids, g_busy.cap * sizeof(*g_busy.ids));
        }
        memcpy(g_busy.ids[g_busy.n++], id, DR_ID_LEN + 1);
    }
    pthread_mutex_unlock(&g_busy.mu);
    return ok;
}

static void busy_release(const char *id)
{
    pthread_mutex_lock(&g_busy.mu);
    for (size_t i = 0; i < g_busy.n; i++) {
        if (strcmp(g_busy.ids[i], id) == 0) {
            memcpy(g_busy.ids[i], g_busy.ids[--g_busy.n], DR_ID_LEN + 1);
            break;
        }
    }
    pthread_mutex_unlock(&g_busy.mu);
}

/* ---- the expiry sweep ---- */

/* ---- creations in flight ----
 *
 * A creation without bytes answers 201 as soon as its row is queued for
 * the lazy commit (ingest_submit_lazy), without waiting for it: the
 * client's next request (its PATCH, 1-3 ms later) and the commit overlap.
 * Until the row is committed its id is here, and a HEAD, PATCH or DELETE
 * of it waits (its exchange held, its body unread) and goes on once the
 * commit ran, on its own loop thread (http_thread_post): it then finds
 * the row, or 404 if the commit failed (a 201 promises no durability).
 * A PATCH that completes the upload does not wait (completes_creation):
 * it goes the group commit's way, whose round commits the creations
 * queued before it first; should the creation fail, so does its finish
 * (404), and the spool file it made is an orphan for spool_sweep.
 * Bounded by ingest's queue (INGEST_QUEUE_MAX requests in flight).
 * Locks: g_creating.mu is a leaf. */
struct creation {
    struct creation *next;
    struct dr_tus row; /* the session row being committed */
    char *owner;
    struct dr_intake intake;
    struct quota_hold hold;  /* the bytes it announced, until its row counts */
    struct tus_req *waiters; /* through wait_next; each exchange held */
};

static struct {
    pthread_mutex_t mu;
    struct creation *head;
} g_creating = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void tus_dispatch(struct tus_req *st);

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

/* Whether st is a PATCH that completes the upload row c is creating, by
 * its head alone: offset 0, the whole length as its Content-Length, no
 * Upload-Length of its own. Such a PATCH ends in ingest's group commit
 * (begin_group_commit), which commits the creations queued before it in
 * front of it (ingest.c, commit_main), so it need not wait for the row. */
static bool completes_creation(const struct tus_req *st, const struct creation *c)
{
    const struct http_request *rq = http_req(st->ex);
    uint64_t off;
    return st->op == OP_PATCH && !st->cluster && c->row.length > 0 && c->row.path != NULL &&
           c->row.path[0] != '\0' && rq->has_length && !rq->chunked &&
           rq->content_length == (uint64_t)c->row.length &&
           tus_parse_uint(http_header(st->ex, "Upload-Offset"), &off) == 0 && off == 0 &&
           http_header(st->ex, "Upload-Length") == NULL;
}

/* Whether st's upload is being created: then st waits for it (true;
 * creation_committed resumes it), unless st completes it at once
 * (completes_creation): then st takes a copy of the row being committed
 * (row_loaded) and goes on (false). Loop thread. */
static bool creation_wait(struct tus_req *st)
{
    bool wait = false;
    pthread_mutex_lock(&g_creating.mu);
    for (struct creation *c = g_creating.head; c != NULL; c = c->next) {
        if (strcmp(c->row.id, st->id) != 0)
            continue;
        if (completes_creation(st, c)) {
            st->row = c->row;
            st->row.owner = dup_or_null(c->row.owner);
            st->row.path = dup_or_null(c->row.path);
            st->row.metadata = dup_or_null(c->row.metadata);
            st->row.content_type = dup_or_null(c->row.content_type);
            st->row.spool_path = dup_or_null(c->row.spool_path);
            st->row.if_match = dup_or_null(c->row.if_match);
            st->row_loaded = true;
        } else {
            st->wait_next = c->waiters;
            c->waiters = st;
            http_ex_hold(st->ex); /* this thread's own counter: no I/O */
            wait = true;
        }
        break;
    }
    pthread_mutex_unlock(&g_creating.mu);
    return wait;
}

/* Back on a waiter's loop thread: the row is committed (or not). */
static void creation_resume(struct http_thread *t, void *arg)
{
    (void)t;
    struct tus_req *st = arg;
    struct http_exchange *ex = st->ex;
    if (!http_ex_closed(ex))
        tus_dispatch(st);
    http_ex_release(ex); /* a client gone meanwhile: on_abort frees st */
}

/* ingest's completion of a lazy creation (the POST's loop thread; its
 * exchange may be long gone: ex is NULL). */
static void creation_committed(struct http_exchange *ex, struct dr_intake *items, size_t n, int rc,
                               void *arg)
{
    (void)ex, (void)n;
    struct creation *c = arg;
    int r = rc < 0 ? rc : items[0].result;
    pthread_mutex_lock(&g_creating.mu);
    for (struct creation **pp = &g_creating.head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    struct tus_req *w = c->waiters;
    pthread_mutex_unlock(&g_creating.mu);
    if (r < 0)
        log_warn("tus: upload %s of %s answered 201 but its row was not recorded: %s (the "
                 "client gets 404 and creates it again)",
                 c->row.id, c->owner, strerror(-r));
    quota_release(&c->hold, r == 0 ? c->hold.reserved : 0, 0);
    while (w != NULL) {
        struct tus_req *next = w->wait_next;
        w->wait_next = NULL;
        (void)http_thread_post(http_ex_thread(w->ex), creation_resume, w);
        w = next;
    }
    dr_tus_clear(&c->row);
    free(c->owner);
    free(c->intake.renamed);
    free(c);
}

/* A creation without bytes: its row goes to the lazy commit, owned by a
 * struct creation (st's row keeps only its numbers: the answer needs
 * them), and the 201 goes out at once. 0, or -errno (nothing queued,
 * st as it was). Loop thread. */
static int begin_lazy_creation(struct tus_req *st)
{
    struct creation *c = xcalloc(1, sizeof *c);
    c->row = st->row; /* takes its strings */
    c->row.offset = 0;
    c->owner = xstrdup(st->owner);
    c->intake.owner = c->owner;
    c->intake.spool_path = c->row.spool_path;
    c->intake.tus_new = &c->row;
    int rc = ingest_submit_lazy(st->ex, &c->intake, 1, creation_committed, c);
    if (rc < 0) {
        free(c->owner);
        free(c);
        return rc;
    }
    /* its completion runs on this thread, after this returns */
    c->hold = st->hold;
    st->hold = (struct quota_hold)QUOTA_HOLD_INIT;
    pthread_mutex_lock(&g_creating.mu);
    c->next = g_creating.head;
    g_creating.head = c;
    pthread_mutex_unlock(&g_creating.mu);
    st->row.owner = st->row.path = st->row.metadata = st->row.content_type = NULL;
    st->row.spool_path = st->row.if_match = NULL;
    st->row.offset = 0;
    st->committed = st->committed_row = true;
    st->rc = 0;
    return 0;
}

static struct http_timer *g_sweep; /* loop 0's; set before the server runs */
static int64_t g_sweep_every;      /* ms between sweeps */
#define SWEEP_LEASE_SWEEPS 3

static void sweep(void *arg)
{
    struct http_thread *t = arg;
    struct catalog *cat = http_thread_catalog(t);
    if (cat == NULL)
        return;
    /* Once per cluster: the node holding the "tus-expiry" lease sweeps
     * (renewed every sweep; another node takes over when its holder has
     * been silent for SWEEP_LEASE_SWEEPS sweeps). A single node always
     * holds it. */
    int held = catalog_lease(cat, "tus-expiry", SWEEP_LEASE_SWEEPS * g_sweep_every, NULL);
    if (held != 1) {
        if (held < 0)
            log_warn("tus: expiry sweep: lease: %s", strerror(-held));
        return;
    }
    struct dr_tus *rows = NULL;
    size_t n = 0;
    int rc = catalog_tus_expired(cat, dr_now_ms(), &rows, &n);
    if (rc < 0) {
        log_warn("tus: expiry sweep: %s", strerror(-rc));
        return;
    }
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        if (done < TUS_SWEEP_BATCH && busy_take(rows[i].id)) {
            rc = catalog_tus_delete(cat, rows[i].id, NULL);
            if (rc == 0) {
                spool_remove(rows[i].spool_path);
                log_info("tus: upload %s of %s expired; removed %s at offset %" PRIu64, rows[i].id,
                         rows[i].owner, rows[i].path, rows[i].offset);
                done++;
            } else if (rc != -ENOENT) {
                log_warn("tus: removing expired upload %s: %s", rows[i].id, strerror(-rc));
            }
            busy_release(rows[i].id);
        }
        dr_tus_clear(&rows[i]);
    }
    free(rows);
}

void tus_sweep_start(struct http_thread *t, const struct dr_config *cfg)
{
    if (g_sweep != NULL)
        return;
    uint64_t every = cfg->tus.expiration / 4;
    every = DR_MAX(every, 100);
    every = DR_MIN(every, 30000);
    g_sweep_every = (int64_t)every;
    g_sweep = http_timer_start(t, every, true, sweep, t);
    log_debug("tus: expiry sweep every %" PRIu64 " ms", every);
}

void tus_sweep_stop(void)
{
    http_timer_stop(g_sweep);
    g_sweep = NULL;
}

/* ---- helpers ---- */

static bool media_type_is(const char *v, const char *want)
{
    if (v == NULL)
        return false;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(want);
    return strncasecmp(v, want, n) == 0 &&
           (v[n] == '\0' || v[n] == ';' || v[n] == ' ' || v[n] == '\t');
}

static bool content_type_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TUS_CT_MAX || strchr(s, '/') == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

static int status_for(int rc)
{
    switch (rc) {
    case -ENOENT:
        return 404;
    case -EEXIST:
    case -ECANCELED: /* cluster: another request moved the offset first */
        return 409;
    case -ESTALE:
        return 412;
    case -EFBIG:
        return 413;
    case -EBUSY:
    case -EAGAIN:
    case -EMFILE:
    case -ENFILE:
    case -ENOTCONN: /* the catalog's COMMIT outcome is unknown: HEAD and resume */
        return 503;
    case -ENOSPC:
    case -EDQUOT:
        return 507;
    default:
        return 500;
    }
}

/* What every tus response carries: the protocol version. (CORS headers,
 * Upload-* exposed, come from the router for every route: cors.h.) */
static void common_headers(struct http_exchange *ex)
{
    http_add_header(ex, "Tus-Resumable", TUS_VERSION);
}

/* The answer is out: nothing of this request touches the upload any more,
 * so the next request may take it (the client can send one before this
 * exchange has wound down and on_done ran). */
static void release(struct tus_req *st)
{
    st->responded = true;
    if (st->busy) {
        busy_release(st->id);
        st->busy = false;
    }
}

static void respond_empty(struct tus_req *st, int status)
{
    release(st);
    http_respond(st->ex, status, NULL, NULL, 0);
}

static void fail(struct tus_req *st, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct tus_req *st, int status, const char *fmt, ...)
{
    char detail[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (status == 503)
        http_add_header(st->ex, "Retry-After", "1");
    release(st);
    http_respond_problem(st->ex, status, "%s", detail);
}

static void fail_rc(struct tus_req *st, int rc, const char *what)
{
    int status = status_for(rc);
    if (status == 404)
        fail(st, 404, "no such upload");
    else if (rc == -EMFILE || rc == -ENFILE)
        fail(st, 503, "the server has too many files open (%s); retry", what);
    else if (status == 507)
        fail(st, 507, "%s: no space left on the server", what);
    else
        fail(st, status, "%s: %s", what, strerror(-rc));
}

static void add_expires(struct tus_req *st)
{
    char date[40];
    tus_http_date(st->row.expires_at, date, sizeof(date));
    http_add_header(st->ex, "Upload-Expires", date);
}

static bool body_empty(const struct http_request *rq)
{
    return !rq->chunked && (!rq->has_length || rq->content_length == 0);
}

/* Give the quota back: what a session row or a finish made durable counts
 * until the next catalog read (quota.h). A second call does nothing. */
static void release_quota(struct tus_req *st)
{
    bool kept = st->op == OP_CREATE ? st->committed_row : st->committed && st->rc == 0;
    quota_release(&st->hold, kept ? st->hold.reserved : 0, st->finished ? 1 : 0);
}

static void inline_release(struct tus_req *st);

static void req_free(struct tus_req *st)
{
    if (st == NULL)
        return;
    release_quota(st);
    inline_release(st);
    if (st->fd >= 0)
        close(st->fd);
    if (st->part_path != NULL && !st->part_kept)
        spool_remove(st->part_path); /* in the store now, or not needed */
    free(st->part_path);
    /* A creation that never got its session row leaves no file behind. */
    if (st->op == OP_CREATE && !st->committed_row && st->row.spool_path != NULL)
        spool_remove(st->row.spool_path);
    if (st->busy)
        busy_release(st->id);
    for (size_t i = 0; i < st->n_parts; i++) {
        if (st->parts[i].busy)
            busy_release(st->parts[i].id);
        free(st->parts[i].spool_path);
    }
    free(st->parts);
    EVP_MD_CTX_free(st->md);
    dr_tus_clear(&st->row);
    free(st->intake.renamed);
    free(st->owner);
    free(st);
}

static int start_checksum(struct tus_req *st)
{
    const char *h = http_header(st->ex, "Upload-Checksum");
    if (h == NULL)
        return 0;
    char err[160];
    if (tus_parse_checksum(h, &st->ck, err, sizeof(err)) < 0) {
        fail(st, 400, "%s", err);
        return -EINVAL;
    }
    st->md = EVP_MD_CTX_new();
    const EVP_MD *alg = st->ck.algo == TUS_ALGO_SHA1 ? EVP_sha1() : EVP_sha256();
    if (st->md == NULL || EVP_DigestInit_ex(st->md, alg, NULL) != 1) {
        fail(st, 500, "checksum initialisation failed");
        return -EIO;
    }
    return 0;
}

static void head_respond(struct tus_req *st);

/* Drop the bytes this request wrote past its start offset (a refused or
 * unverifiable chunk): they must not sit in the spool file. */
static void drop_received(struct tus_req *st)
{
    if (st->buf != NULL) {
        st->received = 0; /* never written anywhere */
        return;
    }
    if (st->fd < 0 || st->received == 0)
        return;
    if (ftruncate(st->fd, (off_t)st->fbase) < 0)
        log_warn("tus: upload %s: dropping %" PRIu64 " refused bytes: %s", st->id, st->received,
                 strerror(errno));
    st->received = 0;
}

/* The upload's spool file, open for writing at off (spool_reopen cuts
 * what lies past it). A creation without bytes makes no file
 * (create_admitted), and a power cut may take the file of one that did
 * (its name is synced with its first offset): at offset 0 nothing can be
 * lost, so the file is made here (st->made_file: the commit must then
 * make its name durable). Loop or pool thread. */
static int open_spool(struct tus_req *st, uint64_t off, int *fd)
{
    int rc = spool_reopen(st->row.spool_path, off, fd);
    if (rc == -ENOENT && off == 0) {
        rc = spool_create_at(st->row.spool_path, fd);
        st->made_file = rc == 0;
    }
    return rc;
}

/* The spool file's name must be durable before the catalog records an
 * offset in it, or finishes: a power cut would keep the row and lose the
 * file. A new file's name is synced once, by the request that made it
 * (a creation with bytes, or the first PATCH of one without: made_file). */
static bool syncs_name(const struct tus_req *st)
{
    return st->made_file || (st->op == OP_CREATE && st->fd >= 0);
}

/* May this request's body be inline (see the top)? It must be the whole
 * upload, from offset 0, with its length known up front; reserves its
 * place in the budget (inline_release gives it back). Loop thread. */
static bool inline_take(struct tus_req *st)
{
    const struct http_request *rq = http_req(st->ex);
    if (st->cluster || st->partial || st->n_parts > 0 || st->length <= 0 || st->start != 0 ||
        st->new_length >= 0 || !rq->has_length || rq->chunked ||
        rq->content_length != (uint64_t)st->length ||
        !ingest_inline_take(st->cfg, rq->content_length))
        return false;
    st->inline_len = rq->content_length;
    st->buf = xmalloc(st->inline_len);
    return true;
}

static void inline_release(struct tus_req *st)
{
    free(st->buf);
    st->buf = NULL;
    if (st->inline_len > 0)
        ingest_inline_release(st->inline_len);
    st->inline_len = 0;
}

/* The inline bytes received so far go to the spool file after all
 * (open_spool: made at offset 0 if need be), which then takes the
 * request's further course. 0, or -errno (nothing kept). */
static int spill(struct tus_req *st)
{
    int fd = -1;
    int rc = open_spool(st, st->start, &fd);
    if (rc == 0 && st->received > 0 && (rc = spool_write(fd, st->buf, st->received)) < 0)
        close(fd);
    if (rc < 0) {
        log_warn("tus: upload %s: writing its bytes to the spool file: %s", st->id, strerror(-rc));
    } else {
        st->fd = fd;
        st->fbase = st->start;
    }
    inline_release(st);
    return rc;
}

/* The finishing request: the spool file holds exactly the upload's bytes
 * (whatever an earlier refused or cut request left past the offset is
 * cut off), durably. Pool thread. */
static int trim_for_finish(struct tus_req *st, uint64_t off, bool skip_sync)
{
    int fd = st->fd, rc = 0;
    if (fd < 0) {
        rc = open_spool(st, off, &fd); /* truncates to off */
        if (rc < 0)
            return rc;
    } else if (ftruncate(fd, (off_t)off) < 0) {
        return -errno;
    }
    rc = skip_sync ? 0 : spool_sync(fd);
    if (fd != st->fd)
        close(fd);
    return rc;
}

/* ---- concatenation: joining partial uploads (pool thread) ---- */

/* len bytes of in from its offset 0 to out at out_off, by read and write
 * (where copy_file_range cannot: another file system, an old kernel). */
static int copy_rw(int in, loff_t in_off, int out, loff_t out_off, uint64_t len)
{
    char *buf = xmalloc(1u << 20);
    int rc = 0;
    while (len > 0) {
        ssize_t n = pread(in, buf, (size_t)DR_MIN(len, (uint64_t)(1u << 20)), in_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO; /* a partial's file shorter than its offset */
            break;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = pwrite(out, buf + done, (size_t)(n - done), out_off + done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -errno;
                goto out;
            }
            done += w;
        }
        in_off += n;
        out_off += n;
        len -= (uint64_t)n;
    }
out:
    free(buf);
    return rc;
}

/* The final upload's bytes: each partial's spool file, in order, into
 * st->fd. copy_file_range lets the kernel copy (or the file system share
 * the blocks, where it can reflink) without the bytes passing through
 * this process; read/write where it cannot. Bytes a partial's file holds
 * past its length (a refused chunk) are not copied. 0 / -errno. */
static int join_parts(struct tus_req *st)
{
    loff_t out_off = 0;
    for (size_t i = 0; i < st->n_parts; i++) {
        int in = open(st->parts[i].spool_path, O_RDONLY | O_CLOEXEC);
        if (in < 0)
            return errno == ENOENT ? -EIO : -errno;
        loff_t in_off = 0;
        uint64_t left = st->parts[i].length;
        int rc = 0;
        while (left > 0) {
            ssize_t n = copy_file_range(in, &in_off, st->fd, &out_off,
                                        (size_t)DR_MIN(left, (uint64_t)TUS_COPY_STEP), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 &&
                (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
                rc = copy_rw(in, in_off, st->fd, out_off, left);
                out_off += (loff_t)left;
                break;
            }
            if (n <= 0) {
                rc = n < 0 ? -errno : -EIO;
                break;
            }
            left -= (uint64_t)n;
        }
        close(in);
        if (rc < 0)
            return rc;
    }
    st->start = 0;
    st->received = (uint64_t)out_off;
    return 0;
}

/* ---- commit: fsync, record the offset, maybe finish (pool thread) ---- */

/* Cluster mode: the finish of an upload whose bytes are staged; part is
 * this request's part (NULL: none, the bytes are all recorded). The
 * request lost a race (-ECANCELED) when the offset moved; if another
 * request finished the upload meanwhile, that finish is the answer. */
static int finish_staged(struct tus_req *st, struct catalog *cat, const char *part, uint64_t off)
{
    bool keep = part != NULL && st->start == 0; /* this part is the whole upload */
    free(st->intake.renamed);
    memset(&st->intake, 0, sizeof(st->intake));
    st->intake.owner = st->owner;
    st->intake.size = off;
    st->intake.staged = st->id;
    st->intake.staged_part = part;
    st->intake.staged_off = st->start;
    st->intake.spool_path = keep ? st->part_path : NULL;
    st->intake.stage = ingest_first_stage(st->cfg, -1, keep ? st->part_path : NULL);
    int rc = catalog_tus_finish(cat, st->id, &st->intake);
    if (rc == -ECANCELED) {
        struct dr_tus row = {0};
        if (catalog_tus_get(cat, st->id, st->owner, &row) == 0 && row.job_id[0] != '\0' &&
            row.offset == off) { /* finished by the same bytes sent again */
            memcpy(st->intake.job_id, row.job_id, sizeof(st->intake.job_id));
            memcpy(st->intake.media_id, row.media_id, sizeof(st->intake.media_id));
            rc = 0;
        } else {
            snprintf(st->detail, sizeof(st->detail),
                     "another request moved the upload's offset (now %" PRIu64
                     "); HEAD for it and resume from there",
                     row.offset);
        }
        dr_tus_clear(&row);
        if (part != NULL)
            stager_delete(st->cfg, st->id, part);
        return rc;
    }
    if (rc == -EEXIST || rc == -ESTALE) {
        /* Nobody can ever finish this one: drop it so a retry sees 404
         * (its parts are garbage now, the collector's). */
        (void)catalog_tus_delete(cat, st->id, st->owner);
        if (part != NULL)
            stager_delete(st->cfg, st->id, part);
        snprintf(st->detail, sizeof(st->detail), "%s %s; the upload was terminated", st->row.path,
                 rc == -EEXIST ? "already exists" : "has changed: its ETag is not in If-Match");
        return rc;
    }
    if (rc < 0) {
        /* -ENOTCONN: the finish may have committed with this part; if not,
         * the staged-gc collector's orphan sweep deletes it */
        if (part != NULL && rc != -ENOTCONN)
            stager_delete(st->cfg, st->id, part);
        snprintf(st->detail, sizeof(st->detail), "finishing the upload: %s", strerror(-rc));
        return rc;
    }
    st->part_kept = keep; /* the job's spool file now */
    return 0;
}

/* Cluster mode: the final upload takes its partial uploads and their
 * staged parts in one transaction (catalog_tus_join: rows re-pointed, no
 * byte copied), and is finished: one upload job, which any node runs
 * from the parts. The partial uploads stay if it fails. */
static int join_staged(struct tus_req *st, struct catalog *cat)
{
    const char *ids[TUS_CONCAT_MAX];
    for (size_t i = 0; i < st->n_parts; i++)
        ids[i] = st->parts[i].id;
    free(st->intake.renamed);
    memset(&st->intake, 0, sizeof(st->intake));
    st->intake.owner = st->owner;
    st->intake.size = (uint64_t)st->length;
    st->intake.staged = st->id;
    st->intake.stage = ingest_first_stage(st->cfg, -1, NULL);
    size_t bad = st->n_parts;
    int rc = catalog_tus_join(cat, &st->row, ids, st->n_parts, &st->intake, &bad);
    if (rc == -ENOTCONN) { /* did the COMMIT go through? */
        struct dr_tus row = {0};
        if (catalog_tus_get(cat, st->id, st->owner, &row) == 0 && row.job_id[0] != '\0') {
            memcpy(st->intake.job_id, row.job_id, sizeof(st->intake.job_id));
            memcpy(st->intake.media_id, row.media_id, sizeof(st->intake.media_id));
            rc = 0;
        }
        dr_tus_clear(&row);
    }
    const char *part = bad < st->n_parts ? st->parts[bad].id : "";
    if (rc == -ENOENT && bad < st->n_parts) {
        st->status = 400;
        snprintf(st->detail, sizeof(st->detail),
                 "partial upload %s: no such upload (another final upload took it, or it expired "
                 "or was terminated)",
                 part);
    } else if (rc == -EINVAL && bad < st->n_parts) {
        st->status = 400;
        snprintf(st->detail, sizeof(st->detail), "upload %s is not a complete partial upload",
                 part);
    } else if (rc == -EEXIST || rc == -ESTALE) {
        snprintf(st->detail, sizeof(st->detail), "%s %s; the partial uploads are kept",
                 st->row.path,
                 rc == -EEXIST ? "already exists" : "has changed: its ETag is not in If-Match");
    } else if (rc < 0) {
        snprintf(st->detail, sizeof(st->detail), "joining the partial uploads: %s", strerror(-rc));
    } else {
        st->committed_row = true;
        st->finished = true;
        st->row.offset = (uint64_t)st->length;
        memcpy(st->row.job_id, st->intake.job_id, sizeof(st->row.job_id));
        memcpy(st->row.media_id, st->intake.media_id, sizeof(st->row.media_id));
        log_info("tus: upload %s of %s finished: %s, %" PRId64
                 " bytes joined from %zu partial upload(s), job %s",
                 st->id, st->owner, st->row.path, st->length, st->n_parts, st->intake.job_id);
    }
    return rc;
}

/* The path a staged part's sealed header names: the upload's; a partial
 * upload has none of its own. */
static const char *seal_path(const struct tus_req *st)
{
    return st->row.path[0] != '\0' ? st->row.path : TUS_PARTIAL_SEAL_PATH;
}

/* Cluster mode (see the design comment): stage this request's bytes as a
 * part, then record it with the offset it moves, or finish. */
static void work_commit_staged(struct tus_req *st)
{
    uint64_t off = st->start + st->received;
    /* a partial upload never finishes: a final upload takes its parts */
    bool completes = !st->partial && st->length >= 0 && off == (uint64_t)st->length;
    const char *part = st->part_path != NULL && st->received > 0 ? st->part : NULL;
    int rc = 0;
    st->committed = true;
    struct catalog *cat = http_work_catalog();
    if (cat == NULL) {
        rc = -EAGAIN;
        snprintf(st->detail, sizeof(st->detail), "catalog unavailable");
        goto out;
    }
    if (st->n_parts > 0) {
        rc = join_staged(st, cat);
        goto out;
    }
    /* a one-request upload's file becomes the job's spool file: durable
     * like any (the staged part is the copy that counts, this one saves
     * a fetch) */
    if (part != NULL && completes && st->start == 0 && !dr_test_skip_sync("tus"))
        rc = spool_sync(st->fd);
    if (rc == 0 && part != NULL) {
        struct stager_part p = {.body = st->id,
                                .part = part,
                                .owner = st->owner,
                                .path = seal_path(st),
                                .content_type = st->row.content_type};
        char err[256] = "";
        rc = stager_put(st->cfg, &p, st->part_path, err, sizeof err);
        if (rc < 0) {
            log_error("tus: upload %s: staging %" PRIu64 " bytes at %" PRIu64 ": %s", st->id,
                      st->received, st->start, err);
            rc = rc == -ETIMEDOUT ? -EAGAIN : rc;
            snprintf(st->detail, sizeof(st->detail), "the store did not take the bytes (%.150s)",
                     err);
            goto out;
        }
    }
    if (rc < 0) {
        snprintf(st->detail, sizeof(st->detail), "syncing the upload: %s", strerror(-rc));
        goto out;
    }
    if (st->op == OP_CREATE) {
        st->row.offset = 0;
        rc = catalog_tus_create(cat, &st->row);
        if (rc < 0) {
            snprintf(st->detail, sizeof(st->detail), "creating the upload: %s", strerror(-rc));
            if (part != NULL)
                stager_delete(st->cfg, st->id, part);
            goto out;
        }
        st->committed_row = true;
    } else if (st->new_length >= 0 && (part == NULL || completes)) {
        rc = catalog_tus_set_length(cat, st->id, st->new_length);
        if (rc < 0) {
            snprintf(st->detail, sizeof(st->detail), "recording the length: %s", strerror(-rc));
            if (part != NULL)
                stager_delete(st->cfg, st->id, part);
            goto out;
        }
        st->row.length = st->new_length;
    }
    if (part != NULL && !completes) {
        rc = catalog_tus_add_part(cat, st->id, part, st->start, st->received,
                                  st->op == OP_CREATE ? -1 : st->new_length);
        if (rc < 0) {
            if (rc != -ENOTCONN) /* else maybe recorded: left to the orphan sweep */
                stager_delete(st->cfg, st->id, part);
            if (rc == -ECANCELED)
                snprintf(st->detail, sizeof(st->detail),
                         "another request moved the upload's offset from %" PRIu64
                         "; HEAD for it and resume from there",
                         st->start);
            else
                snprintf(st->detail, sizeof(st->detail), "recording the offset: %s", strerror(-rc));
            goto out;
        }
        if (st->new_length >= 0)
            st->row.length = st->new_length;
    }
    st->row.offset = off;
    if (completes) {
        rc = finish_staged(st, cat, part, off);
        if (rc < 0)
            goto out;
        st->finished = true;
        memcpy(st->row.job_id, st->intake.job_id, sizeof(st->row.job_id));
        memcpy(st->row.media_id, st->intake.media_id, sizeof(st->row.media_id));
        log_info("tus: upload %s of %s finished: %s, %" PRIu64 " bytes, job %s", st->id, st->owner,
                 st->row.path, off, st->intake.job_id);
    }
out:
    st->rc = rc;
}

static void work_commit(void *arg)
{
    struct tus_req *st = arg;
    if (st->cluster) {
        work_commit_staged(st);
        return;
    }
    int rc = 0;
    st->committed = true;
    struct catalog *cat = http_work_catalog();
    if (cat == NULL) {
        rc = -EAGAIN;
        snprintf(st->detail, sizeof(st->detail), "catalog unavailable");
        goto out;
    }
    if (st->n_parts > 0 && (rc = join_parts(st)) < 0) {
        snprintf(st->detail, sizeof(st->detail), "joining the partial uploads: %s", strerror(-rc));
        goto out;
    }
    uint64_t off = st->start + st->received;
    /* a partial upload never finishes: a final upload takes its bytes */
    bool completes = !st->partial && st->length >= 0 && off == (uint64_t)st->length;
    bool skip = dr_test_skip_sync("tus");
    if (completes)
        rc = trim_for_finish(st, off, skip);
    else if (st->fd >= 0 && (st->received > 0 || st->op == OP_CREATE))
        rc = skip ? 0 : spool_sync(st->fd);
    /* a new spool file's name must be durable before the catalog points
     * at it: else a power cut keeps the row, loses the file */
    if (rc == 0 && syncs_name(st) && !skip)
        rc = dr_fsync_parent(st->row.spool_path);
    if (rc < 0) {
        snprintf(st->detail, sizeof(st->detail), "syncing the upload: %s", strerror(-rc));
        goto out;
    }
    if (st->op == OP_CREATE) {
        st->row.offset = off;
        rc = catalog_tus_create(cat, &st->row);
        if (rc < 0) {
            snprintf(st->detail, sizeof(st->detail), "creating the upload: %s", strerror(-rc));
            goto out;
        }
        st->committed_row = true;
    } else {
        if (st->new_length >= 0) {
            rc = catalog_tus_set_length(cat, st->id, st->new_length);
            if (rc < 0) {
                snprintf(st->detail, sizeof(st->detail), "recording the length: %s", strerror(-rc));
                goto out;
            }
            st->row.length = st->new_length;
        }
        /* The request that completes the upload leaves the offset to
         * catalog_tus_finish (same transaction as the job): if that fails,
         * the old offset stands and the client sends the chunk again. */
        if (st->received > 0 && !completes) {
            rc = catalog_tus_set_offset(cat, st->id, off);
            if (rc < 0) {
                snprintf(st->detail, sizeof(st->detail), "recording the offset: %s", strerror(-rc));
                goto out;
            }
        }
        st->row.offset = off;
    }
    if (completes) {
        free(st->intake.renamed);
        memset(&st->intake, 0, sizeof(st->intake));
        st->intake.owner = st->owner;
        st->intake.size = off;
        st->intake.stage = ingest_first_stage(st->cfg, st->fd, st->row.spool_path);
        rc = catalog_tus_finish(cat, st->id, &st->intake);
        if (rc == -EEXIST || rc == -ESTALE) {
            /* Nobody can ever finish this one: drop it so a retry sees 404. */
            (void)catalog_tus_delete(cat, st->id, st->owner);
            spool_remove(st->row.spool_path);
            snprintf(st->detail, sizeof(st->detail), "%s %s; the upload was terminated",
                     st->row.path,
                     rc == -EEXIST ? "already exists" : "has changed: its ETag is not in If-Match");
            goto out;
        }
        if (rc < 0) {
            snprintf(st->detail, sizeof(st->detail), "finishing the upload: %s", strerror(-rc));
            goto out;
        }
        st->finished = true;
        st->row.offset = off;
        memcpy(st->row.job_id, st->intake.job_id, sizeof(st->row.job_id));
        memcpy(st->row.media_id, st->intake.media_id, sizeof(st->row.media_id));
        log_info("tus: upload %s of %s finished: %s, %" PRIu64 " bytes, job %s", st->id, st->owner,
                 st->row.path, off, st->intake.job_id);
        /* the partial uploads it joined are spent (a crash before this
         * leaves them to the expiry sweep) */
        for (size_t i = 0; i < st->n_parts; i++) {
            if (catalog_tus_delete(cat, st->parts[i].id, st->owner) == 0)
                spool_remove(st->parts[i].spool_path);
        }
    }
out:
    st->rc = rc;
}

static void done_commit(struct http_exchange *ex, void *arg)
{
    struct tus_req *st = arg;
    if (st->finished && !st->grouped && st->wctx != NULL) /* ingest wakes it itself */
        (void)worker_send(st->wctx, DR_MSG_JOB_ENQUEUED, 1);
    if (http_ex_closed(ex))
        return; /* on_abort frees st; the state is durable already */
    if (st->rc < 0) {
        int status = st->status != 0 ? st->status : status_for(st->rc);
        fail(st, status, "%s", status == 507 ? "no space left on the server" : st->detail);
        return;
    }
    if (st->op == OP_HEAD) {
        head_respond(st);
        return;
    }
    release_quota(st); /* counted before the client hears the answer */
    http_add_headerf(ex, "Upload-Offset", "%" PRIu64, st->row.offset);
    if (st->finished) {
        http_add_header(ex, "Upload-Job", st->intake.job_id);
        http_add_header(ex, "Upload-Media", st->intake.media_id);
    } else {
        add_expires(st);
    }
    if (st->op == OP_CREATE) {
        char path[sizeof(TUS_PREFIX "/") + DR_ID_LEN];
        snprintf(path, sizeof(path), TUS_PREFIX "/%s", st->id);
        char *url = http_absolute_url(ex, path); /* tusd's form; a trusted proxy's host */
        http_add_header(ex, "Location", url);
        free(url);
    }
    respond_empty(st, st->op == OP_CREATE ? 201 : 204);
}

/* A finish whose path was taken meanwhile: nobody can ever finish this
 * one, so it is dropped and a retry sees 404. Pool thread. */
static void work_terminate_taken(void *arg)
{
    struct tus_req *st = arg;
    struct catalog *cat = http_work_catalog();
    if (cat != NULL)
        (void)catalog_tus_delete(cat, st->id, st->owner);
    spool_remove(st->row.spool_path);
    snprintf(st->detail, sizeof(st->detail), "%s %s; the upload was terminated", st->row.path,
             st->rc == -EEXIST ? "already exists" : "has changed: its ETag is not in If-Match");
}

/* ingest's completion (loop thread): what work_commit would have left. */
static void group_committed(struct http_exchange *ex, struct dr_intake *items, size_t n, int rc,
                            void *arg)
{
    (void)n;
    struct tus_req *st = arg;
    uint64_t off = st->start + st->received;
    int r = rc < 0 ? rc : items[0].result;
    st->rc = r;
    if (r == 0) {
        st->committed_row = st->committed_row || st->op == OP_CREATE;
        st->row.offset = off;
        if (st->intake.tus_id != NULL) {
            st->finished = true;
            memcpy(st->row.job_id, st->intake.job_id, sizeof(st->row.job_id));
            memcpy(st->row.media_id, st->intake.media_id, sizeof(st->row.media_id));
            log_info("tus: upload %s of %s finished: %s, %" PRIu64 " bytes, job %s", st->id,
                     st->owner, st->row.path, off, st->intake.job_id);
        }
    } else if ((r == -EEXIST || r == -ESTALE) && st->intake.tus_id != NULL) {
        if (http_defer(ex, work_terminate_taken, done_commit, st) == 0)
            return;
        st->rc = -EAGAIN;
        snprintf(st->detail, sizeof(st->detail), "server busy, retry later");
    } else {
        snprintf(st->detail, sizeof(st->detail), "%s the upload: %s",
                 st->intake.tus_id != NULL ? "finishing" : "creating", strerror(-r));
    }
    done_commit(ex, st);
}

/* Creation and finish go through ingest's group commit (ingest.h): their
 * spool files synced together with other uploads' (one syncfs, one fsync
 * of spool/), their rows in the same transaction; a creation that also
 * completes (creation-with-upload of the whole file: one round trip per
 * small upload) makes its row and finishes it in one savepoint; a
 * creation without bytes commits lazily and is answered at once
 * (begin_lazy_creation). 0, or
 * -errno: use work_commit. An offset, a length, concatenation take the
 * pool thread, and so does every request in cluster mode
 * (work_commit_staged: its bytes are a staged part recorded with the
 * offset it moves, not a spool file). */
static int begin_group_commit(struct tus_req *st)
{
    uint64_t off = st->start + st->received;
    /* a partial upload never finishes; a final one joins its parts first */
    bool completes = !st->partial && st->length >= 0 && off == (uint64_t)st->length;
    bool inl = st->buf != NULL && completes && st->received == off; /* inline: the whole upload */
    bool lazy = st->op == OP_CREATE && st->fd < 0 && !inl; /* no file, no bytes: nothing to sync */
    if (st->buf != NULL && !inl)
        return -EINVAL; /* (cannot happen: the body was the whole upload) */
    if (st->cluster || (st->op != OP_CREATE && st->op != OP_PATCH) ||
        (st->fd < 0 && !lazy && !inl) || st->new_length >= 0 || st->n_parts > 0 ||
        (st->op == OP_PATCH && !completes) || (lazy && completes))
        return -EINVAL;
    if (st->op == OP_PATCH && !inl && ftruncate(st->fd, (off_t)off) < 0)
        return -errno; /* exactly the upload's bytes; work_commit says why not */
    free(st->intake.renamed);
    memset(&st->intake, 0, sizeof(st->intake));
    st->intake.owner = st->owner;
    st->intake.size = off;
    if (inl) {
        st->intake.body = st->buf; /* committed with the job */
        st->intake.body_len = off;
    } else {
        st->intake.spool_path = st->row.spool_path; /* the directory ingest fsyncs */
    }
    if (st->op == OP_CREATE) {
        st->row.offset = off;
        st->intake.tus_new = &st->row;
    }
    if (completes) /* a creation that completes: row and finish in one savepoint */
        st->intake.tus_id = st->id;
    if (lazy) { /* the 201 goes out now, the commit runs behind it */
        int rc = begin_lazy_creation(st);
        if (rc == 0)
            done_commit(st->ex, st);
        return rc;
    }
    st->sync_fd = dr_test_skip_sync("tus") || inl ? -1 : st->fd;
    st->committed = st->grouped = true;
    int rc = ingest_submit(st->ex, &st->intake, &st->sync_fd, 1, group_committed, st);
    if (rc < 0)
        st->committed = st->grouped = false;
    return rc;
}

static void begin_commit(struct tus_req *st)
{
    if (begin_group_commit(st) == 0)
        return;
    if (st->buf != NULL && spill(st) < 0) { /* work_commit reads the file */
        fail(st, 503, "cannot write the upload's bytes; retry");
        return;
    }
    int rc = http_defer(st->ex, work_commit, done_commit, st);
    if (rc < 0)
        fail(st, 503, "server busy, retry later");
}

/* Cluster mode: a spool file of its own for this request's bytes. */
static int open_part(struct tus_req *st)
{
    dr_id_new(st->part);
    return spool_create(st->cfg->data_dir, st->part, &st->fd, &st->part_path);
}

/* ---- POST: creation (+ creation-with-upload, creation-defer-length) ---- */

static void create_admitted(struct http_exchange *ex, void *arg);

/* The pre-upload hook allowed it: the user's quotas. */
static void create_checked(struct http_exchange *ex, void *arg)
{
    struct tus_req *st = arg;
    quota_admit(ex, st->declared, st->with_upload || st->n_parts > 0 ? 1 : 0, st->finishes,
                &st->hold, create_admitted, st);
}

/* Within the user's quotas: the spool file, then the first bytes or the
 * session row. */
static void create_admitted(struct http_exchange *ex, void *arg)
{
    struct tus_req *st = arg;
    int rc;
    if (st->cluster) { /* no session file: each request's bytes are a part */
        st->row.spool_path = xstrdup("");
        rc = st->with_upload ? open_part(st) : 0;
    } else if (!st->with_upload && !st->partial && st->n_parts == 0 && st->length != 0) {
        /* no bytes yet: the first PATCH makes the file (open_spool), and
         * the row commits lazily (a 201 promises no durability) */
        st->row.spool_path = spool_path_for(st->cfg->data_dir, st->id);
        rc = 0;
    } else if (st->with_upload && inline_take(st)) { /* st->start is 0 */
        /* all of it in this request: in memory, finished with its row */
        st->row.spool_path = spool_path_for(st->cfg->data_dir, st->id);
        rc = 0;
    } else {
        rc = spool_create(st->cfg->data_dir, st->id, &st->fd, &st->row.spool_path);
    }
    if (rc < 0) {
        fail_rc(st, rc, "creating the spool file");
        return;
    }
    if (st->with_upload) {
        if (start_checksum(st) < 0)
            return;
        st->start = 0;
        st->fbase = 0;
        st->streaming = true;
        http_accept_body(ex);
        return;
    }
    begin_commit(st);
}

/* Upload-Concat: final;<URL> <URL>...: the partial uploads, each this
 * user's, complete and not yet joined, busy-marked for this request;
 * st->length is their sum. 0, or answered. Loop thread (catalog reads on
 * its connection, like a HEAD). */
static int load_parts(struct tus_req *st, const char *list)
{
    struct catalog *cat = http_thread_catalog(http_ex_thread(st->ex));
    if (cat == NULL) {
        fail(st, 503, "catalog unavailable");
        return -EAGAIN;
    }
    uint64_t sum = 0, max = st->cfg->limits.max_upload_size;
    st->parts = xcalloc(TUS_CONCAT_MAX, sizeof *st->parts);
    const char *p = list;
    for (;;) {
        p += strspn(p, " ");
        if (*p == '\0')
            break;
        size_t n = strcspn(p, " ");
        /* an absolute URL (tusd's Location, tus-js-client) or a path:
         * what follows the last "/v1/uploads/" is the id */
        const char *id = NULL;
        for (const char *q = p; q < p + n; q++)
            if (strncmp(q, TUS_PREFIX "/", strlen(TUS_PREFIX "/")) == 0)
                id = q + strlen(TUS_PREFIX "/");
        size_t idn = id != NULL ? (size_t)(p + n - id) : 0;
        if (idn != DR_ID_LEN) {
            fail(st, 400, "Upload-Concat: \"%.*s\" is not an upload URL of this server",
                 (int)DR_MIN(n, (size_t)200), p);
            return -EINVAL;
        }
        if (st->n_parts == TUS_CONCAT_MAX) {
            fail(st, 400, "Upload-Concat: more than %d partial uploads", TUS_CONCAT_MAX);
            return -EINVAL;
        }
        struct tus_part *part = &st->parts[st->n_parts];
        memcpy(part->id, id, DR_ID_LEN);
        part->id[DR_ID_LEN] = '\0';
        p += n;
        if (!dr_id_valid(part->id)) {
            fail(st, 400, "Upload-Concat: %s is not an upload id", part->id);
            return -EINVAL;
        }
        for (size_t i = 0; i < st->n_parts; i++) {
            if (strcmp(st->parts[i].id, part->id) == 0) {
                fail(st, 400, "Upload-Concat: %s is listed twice", part->id);
                return -EINVAL;
            }
        }
        if (!busy_take(part->id)) {
            fail(st, 423, "partial upload %s is being written; retry", part->id);
            return -EBUSY;
        }
        part->busy = true;
        st->n_parts++;
        struct dr_tus row = {0};
        int rc = catalog_tus_get(cat, part->id, st->owner, &row);
        if (rc == -ENOENT || (rc == 0 && row.job_id[0] == '\0' && row.expires_at <= dr_now_ms())) {
            fail(st, 400, "partial upload %s: no such upload", part->id);
            rc = -ENOENT;
        } else if (rc < 0) {
            fail_rc(st, rc, "reading a partial upload");
        } else if (row.path[0] != '\0') {
            fail(st, 400, "upload %s is not a partial upload (Upload-Concat: partial)", part->id);
            rc = -EINVAL;
        } else if (row.length < 0 || row.offset != (uint64_t)row.length) {
            fail(st, 400, "partial upload %s is not complete (%" PRIu64 " of %s bytes)", part->id,
                 row.offset, row.length < 0 ? "unknown" : "its");
            rc = -EINVAL;
        } else if ((uint64_t)row.length > max - sum) {
            fail(st, 413, "the partial uploads add up to more than the limit of %" PRIu64 " bytes",
                 max);
            rc = -EFBIG;
        } else {
            part->length = (uint64_t)row.length;
            part->spool_path = row.spool_path;
            row.spool_path = NULL;
            sum += part->length;
        }
        dr_tus_clear(&row);
        if (rc < 0)
            return rc;
    }
    if (st->n_parts == 0) {
        fail(st, 400, "Upload-Concat: final; names no partial upload");
        return -EINVAL;
    }
    st->length = (int64_t)sum;
    return 0;
}

/* A final upload's metadata column: its Upload-Metadata header, then a
 * line "final;<id> <id>..." naming the partial uploads it joined (a
 * header value holds no newline, so the two never mix; no column of its
 * own, like the partial's "" path). HEAD answers Upload-Concat from it. */
static char *final_metadata(const struct tus_req *st, const char *mh)
{
    size_t mlen = mh != NULL ? strlen(mh) : 0;
    size_t cap = mlen + sizeof("\nfinal;") + st->n_parts * (DR_ID_LEN + 1);
    char *s = xmalloc(cap);
    int n = snprintf(s, cap, "%s\nfinal;", mh != NULL ? mh : "");
    for (size_t i = 0; i < st->n_parts; i++)
        n += snprintf(s + n, cap - (size_t)n, "%s%s", i > 0 ? " " : "", st->parts[i].id);
    return s;
}

/* The final upload's "final;<ids>" line in its metadata column, or NULL
 * (final_metadata). */
static const char *final_line(const struct dr_tus *row)
{
    const char *nl = row->metadata != NULL ? strchr(row->metadata, '\n') : NULL;
    return nl != NULL && strncmp(nl + 1, "final;", 6) == 0 ? nl + 1 : NULL;
}

/* The creation got no place in the queue (ingest_admit answered). */
static void create_refused(void *arg)
{
    ((struct tus_req *)arg)->responded = true;
}

static void create_head_admitted(struct http_exchange *ex, void *arg);

/* A creation waits for a place while the queue is at its limit. */
static void create_head(struct tus_req *st)
{
    ingest_admit(st->ex, create_head_admitted, st, create_refused);
}

static void create_head_admitted(struct http_exchange *ex, void *arg)
{
    struct tus_req *st = arg;
    const struct http_request *rq = http_req(ex);
    struct tus_metadata meta = {0};
    char *folder = NULL, *path = NULL;
    const char *ctype = NULL;
    char err[DR_ERRLEN];
    uint64_t len = 0;

    const char *ul = http_header(ex, "Upload-Length");
    const char *dl = http_header(ex, "Upload-Defer-Length");
    const char *uc = http_header(ex, "Upload-Concat");
    bool final = false;
    if (uc != NULL) {
        if (strcmp(uc, "partial") == 0) {
            st->partial = true;
        } else if (strncmp(uc, "final;", 6) == 0) {
            final = true;
        } else {
            fail(st, 400, "Upload-Concat must be \"partial\" or \"final;<upload URLs>\"");
            goto out;
        }
    }
    if (final) {
        if (ul != NULL || dl != NULL) {
            fail(st, 400,
                 "a final upload takes its length from its partial uploads: "
                 "no Upload-Length or Upload-Defer-Length");
            goto out;
        }
        if (!body_empty(rq)) {
            fail(st, 400, "a final upload has no body: its bytes are the partial uploads'");
            goto out;
        }
    } else if (ul != NULL && dl != NULL) {
        fail(st, 400, "Upload-Length and Upload-Defer-Length exclude each other");
        goto out;
    }
    if (!final && ul == NULL && dl == NULL) {
        fail(st, 400, "Upload-Length or Upload-Defer-Length: 1 is required");
        goto out;
    }
    if (dl != NULL && strcmp(dl, "1") != 0) {
        fail(st, 400, "Upload-Defer-Length must be 1");
        goto out;
    }
    if (ul != NULL && tus_parse_uint(ul, &len) < 0) {
        fail(st, 400, "Upload-Length must be a non-negative integer");
        goto out;
    }
    if (ul != NULL && len > st->cfg->limits.max_upload_size) {
        fail(st, 413, "Upload-Length %" PRIu64 " is over the limit of %" PRIu64 " bytes", len,
             st->cfg->limits.max_upload_size);
        goto out;
    }
    st->length = ul != NULL ? (int64_t)len : -1;
    if (final && load_parts(st, uc + 6) < 0)
        goto out;

    const char *mh = http_header(ex, "Upload-Metadata");
    if (tus_parse_metadata(mh, &meta, err, sizeof(err)) < 0) {
        fail(st, 400, "%s", err);
        goto out;
    }
    const char *filename = tus_metadata_str(&meta, "filename");
    if (st->partial) {
        /* a part of an upload: no path of its own ("" marks it), never media */
        path = xstrdup("");
        goto checked;
    }
    if (filename == NULL || filename[0] == '\0') {
        fail(st, 400, "Upload-Metadata must carry a filename");
        goto out;
    }
    const char *fin = "/";
    if (tus_metadata_get(&meta, "folder") != NULL) {
        fin = tus_metadata_str(&meta, "folder");
        if (fin == NULL) {
            fail(st, 400, "bad folder: NUL byte");
            goto out;
        }
    }
    if (path_normalize_folder(fin, &folder, err, sizeof(err)) < 0) {
        fail(st, 400, "bad folder: %s", err);
        goto out;
    }
    if (path_join(folder, filename, &path, err, sizeof(err)) < 0) {
        fail(st, 400, "bad filename: %s", err);
        goto out;
    }
    ctype = tus_metadata_str(&meta, "filetype");
    if (ctype == NULL || ctype[0] == '\0')
        ctype = tus_metadata_str(&meta, "content-type");
    if (ctype != NULL && ctype[0] == '\0')
        ctype = NULL;
    if (ctype != NULL && !content_type_ok(ctype)) {
        fail(st, 400, "bad filetype: not a media type");
        goto out;
    }

    struct catalog *cat = http_thread_catalog(http_ex_thread(ex));
    if (cat == NULL) {
        fail(st, 503, "catalog unavailable");
        goto out;
    }
    struct api_overwrite ow;
    if (!api_overwrite_read(ex, &ow)) {
        st->responded = true;
        goto out;
    }
    int rc = api_overwrite_check(ex, cat, st->owner, path, &ow);
    if (rc != 0) {
        api_overwrite_free(&ow);
        if (rc < 0)
            fail_rc(st, rc, "checking the path");
        else
            st->responded = true;
        goto out;
    }
    st->row.if_match = ow.if_match; /* the finishing intake decides again */
    st->row.rename = ow.rename;

checked:;
    int64_t now = dr_now_ms();
    dr_id_new(st->id);
    memcpy(st->row.id, st->id, sizeof(st->id));
    st->row.owner = xstrdup(st->owner);
    st->row.length = st->length;
    st->row.offset = 0;
    st->row.path = path;
    path = NULL;
    st->row.metadata = final                         ? final_metadata(st, mh)
                       : mh != NULL && mh[0] != '\0' ? xstrdup(mh)
                                                     : NULL;
    st->row.content_type = xstrdup(ctype);
    st->row.created_at = now;
    st->row.expires_at = now + (int64_t)st->cfg->tus.expiration;
    bool with_upload = media_type_is(http_header(ex, "Content-Type"), TUS_OCTET) && !body_empty(rq);
    st->with_upload = with_upload;
    if (with_upload && rq->has_length && st->length >= 0 &&
        rq->content_length > (uint64_t)st->length) {
        fail(st, 413, "the body is longer than Upload-Length");
        goto out;
    }
    /* a final upload's bytes were counted against max_bytes when its
     * parts announced them (unfinished sessions count until the catalog
     * drops them): counting them again would refuse a user at half quota */
    uint64_t declared = final                           ? 0
                        : st->length >= 0               ? (uint64_t)st->length
                        : with_upload && rq->has_length ? rq->content_length
                                                        : 0;
    bool finishes = !st->partial && (st->length == 0 || final ||
                                     (with_upload && st->length > 0 && rq->has_length &&
                                      rq->content_length == (uint64_t)st->length));
    st->declared = declared;
    st->finishes = finishes;
    /* every creation is asked, a partial upload's (no path) and a final
     * upload's (with the parts it joins) too, as tusd's pre-create hook */
    const char *part_ids[TUS_CONCAT_MAX];
    for (size_t i = 0; i < st->n_parts; i++)
        part_ids[i] = st->parts[i].id;
    struct upload_hook_info hi = {.protocol = "tus",
                                  .path = st->partial ? NULL : st->row.path,
                                  .size = st->length,
                                  .content_type = st->row.content_type,
                                  .concat = st->partial ? "partial"
                                            : final     ? "final"
                                                        : NULL,
                                  .parts = part_ids,
                                  .n_parts = st->n_parts};
    upload_hook_check(ex, &hi, create_checked, st);
out:
    tus_metadata_clear(&meta);
    free(folder);
    free(path);
}

/* ---- HEAD ---- */

/* Look the session up for HEAD/PATCH (a read, on the loop thread's
 * connection). 0, or responded. */
static int load_row(struct tus_req *st)
{
    if (st->row_loaded)
        return 0; /* its creation is in flight (creation_wait): a fresh row */
    struct catalog *cat = http_thread_catalog(http_ex_thread(st->ex));
    if (cat == NULL) {
        fail(st, 503, "catalog unavailable");
        return -EAGAIN;
    }
    int rc = catalog_tus_get(cat, st->id, st->owner, &st->row);
    if (rc < 0) {
        fail_rc(st, rc, "reading the upload");
        return rc;
    }
    if (st->row.job_id[0] == '\0' && st->row.expires_at <= dr_now_ms()) {
        fail(st, 404, "no such upload (expired)");
        return -ENOENT;
    }
    return 0;
}

/* Upload-Concat: final;<URL> <URL>... of a final upload (tusd's form:
 * the partial uploads' absolute URLs, in order). ids: "<id> <id>...". */
static void add_final_concat(struct tus_req *st, const char *ids)
{
    char *v = xstrdup("final;");
    for (const char *p = ids; *p != '\0';) {
        size_t n = strcspn(p, " ");
        /* copied, not snprintf'd: GCC's -Wformat-truncation, inlining
         * this into head_respond under -fsanitize, took p for NULL */
        char path[sizeof(TUS_PREFIX "/") + DR_ID_LEN];
        size_t k = DR_MIN(n, (size_t)DR_ID_LEN), pre = sizeof(TUS_PREFIX "/") - 1;
        memcpy(path, TUS_PREFIX "/", pre);
        memcpy(path + pre, p, k);
        path[pre + k] = '\0';
        char *url = http_absolute_url(st->ex, path);
        char *next = xasprintf("%s%s%s", v, p == ids ? "" : " ", url);
        free(url);
        free(v);
        v = next;
        p += n;
        p += strspn(p, " ");
    }
    http_add_header(st->ex, "Upload-Concat", v);
    free(v);
}

static void head_respond(struct tus_req *st)
{
    struct http_exchange *ex = st->ex;
    http_add_headerf(ex, "Upload-Offset", "%" PRIu64, st->row.offset);
    if (st->row.length >= 0)
        http_add_headerf(ex, "Upload-Length", "%" PRId64, st->row.length);
    else
        http_add_header(ex, "Upload-Defer-Length", "1");
    const char *fl = final_line(&st->row);
    size_t mlen = st->row.metadata == NULL ? 0
                  : fl != NULL             ? (size_t)(fl - 1 - st->row.metadata)
                                           : strlen(st->row.metadata);
    if (mlen > 0)
        http_add_headerf(ex, "Upload-Metadata", "%.*s", (int)mlen, st->row.metadata);
    if (st->row.path[0] == '\0')
        http_add_header(ex, "Upload-Concat", "partial");
    if (fl != NULL)
        add_final_concat(st, fl + 6);
    if (st->row.job_id[0] != '\0') {
        http_add_header(ex, "Upload-Job", st->row.job_id);
        http_add_header(ex, "Upload-Media", st->row.media_id);
    } else {
        add_expires(st);
    }
    http_add_header(ex, "Cache-Control", "no-store");
    respond_empty(st, 200);
}

static void head_head(struct tus_req *st)
{
    if (load_row(st) < 0)
        return;
    /* All bytes are there but the upload never became a job (its last
     * request was cut after the bytes were saved): finish it now, or a
     * client that sees offset == length would stop with no job. */
    if (st->row.job_id[0] == '\0' && st->row.path[0] != '\0' && st->row.length >= 0 &&
        st->row.offset == (uint64_t)st->row.length && busy_take(st->id)) {
        st->busy = true;
        st->length = st->row.length;
        st->start = st->row.offset;
        begin_commit(st);
        return;
    }
    head_respond(st);
}

/* ---- PATCH ---- */

static void patch_admitted(struct http_exchange *ex, void *arg);

static void patch_head(struct tus_req *st)
{
    struct http_exchange *ex = st->ex;
    const struct http_request *rq = http_req(ex);
    uint64_t off, ul = 0;

    if (!media_type_is(http_header(ex, "Content-Type"), TUS_OCTET)) {
        fail(st, 415, "PATCH needs Content-Type: " TUS_OCTET);
        return;
    }
    if (tus_parse_uint(http_header(ex, "Upload-Offset"), &off) < 0) {
        fail(st, 400, "Upload-Offset must be a non-negative integer");
        return;
    }
    const char *ulh = http_header(ex, "Upload-Length");
    if (ulh != NULL && tus_parse_uint(ulh, &ul) < 0) {
        fail(st, 400, "Upload-Length must be a non-negative integer");
        return;
    }
    if (!busy_take(st->id)) {
        fail(st, 423, "another request is writing this upload; retry");
        return;
    }
    st->busy = true;
    if (load_row(st) < 0)
        return;
    st->partial = st->row.path[0] == '\0';
    if (final_line(&st->row) != NULL) {
        /* tus concatenation: a final upload is never modified (tusd) */
        fail(st, 403, "a final upload cannot be patched: its bytes are its partial uploads'");
        return;
    }
    if (off != st->row.offset) {
        fail(st, 409, "Upload-Offset %" PRIu64 " does not match the upload's offset %" PRIu64, off,
             st->row.offset);
        return;
    }
    uint64_t max = st->cfg->limits.max_upload_size;
    st->length = st->row.length;
    if (ulh != NULL) {
        if (st->row.length >= 0 && ul != (uint64_t)st->row.length) {
            fail(st, 400, "Upload-Length cannot change once set");
            return;
        }
        if (st->row.length < 0) {
            if (ul < st->row.offset) {
                fail(st, 400, "Upload-Length is below the current offset");
                return;
            }
            if (ul > max) {
                fail(st, 413, "Upload-Length %" PRIu64 " is over the limit of %" PRIu64 " bytes",
                     ul, max);
                return;
            }
            st->new_length = (int64_t)ul;
            st->length = (int64_t)ul;
        }
    }
    uint64_t limit = st->length >= 0 ? (uint64_t)st->length : max;
    if (rq->has_length && !rq->chunked && rq->content_length > limit - off) {
        fail(st, 413, "the body would take the upload past %s (%" PRIu64 " bytes)",
             st->length >= 0 ? "its Upload-Length" : "the size limit", limit);
        return;
    }
    if (st->row.job_id[0] != '\0') {
        /* A retried last PATCH: answer as the first time. */
        http_add_headerf(ex, "Upload-Offset", "%" PRIu64, st->row.offset);
        http_add_header(ex, "Upload-Job", st->row.job_id);
        http_add_header(ex, "Upload-Media", st->row.media_id);
        respond_empty(st, 204);
        return;
    }
    st->start = off;
    /* new bytes against max_bytes: a known length was counted when it
     * was announced; a deferred one counts as it streams (tus_on_body) */
    uint64_t declared = st->new_length >= 0                ? (uint64_t)st->new_length - off
                        : st->length < 0 && rq->has_length ? rq->content_length
                                                           : 0;
    uint64_t body = body_empty(rq) ? 0 : rq->has_length ? rq->content_length : UINT64_MAX;
    bool finishes =
        !st->partial && st->length >= 0 && body != UINT64_MAX && off + body == (uint64_t)st->length;
    quota_admit(ex, declared, body_empty(rq) ? 0 : 1, finishes, &st->hold, patch_admitted, st);
}

/* Within the user's quotas: finish at once, or take the body. */
static void patch_admitted(struct http_exchange *ex, void *arg)
{
    struct tus_req *st = arg;
    if (body_empty(http_req(ex))) {
        begin_commit(st); /* may set the length and finish */
        return;
    }
    st->fbase = st->cluster ? 0 : st->start;
    int rc = st->cluster       ? open_part(st)
             : inline_take(st) ? 0 /* the whole upload in memory: no file */
                               : open_spool(st, st->start, &st->fd);
    if (rc < 0) {
        fail(st, rc == -ENOENT ? 404 : status_for(rc), "the upload's data is %s",
             rc == -ENOENT ? "gone" : "unavailable");
        return;
    }
    if (start_checksum(st) < 0)
        return;
    st->streaming = true;
    http_accept_body(ex);
}

/* ---- DELETE (termination) ---- */

static void work_delete(void *arg)
{
    struct tus_req *st = arg;
    struct catalog *cat = http_work_catalog();
    if (cat == NULL) {
        st->rc = -EAGAIN;
        return;
    }
    st->rc = catalog_tus_get(cat, st->id, st->owner, &st->row);
    if (st->rc < 0)
        return;
    st->rc = catalog_tus_delete(cat, st->id, st->owner);
    if (st->rc < 0)
        return;
    /* A finished upload's spool file belongs to its job now. */
    if (st->row.job_id[0] == '\0')
        spool_remove(st->row.spool_path);
    log_info("tus: upload %s of %s terminated at offset %" PRIu64, st->id, st->owner,
             st->row.offset);
}

static void done_delete(struct http_exchange *ex, void *arg)
{
    struct tus_req *st = arg;
    if (http_ex_closed(ex))
        return;
    if (st->rc < 0) {
        fail_rc(st, st->rc, "terminating the upload");
        return;
    }
    respond_empty(st, 204);
}

static void delete_head(struct tus_req *st)
{
    if (!busy_take(st->id)) {
        fail(st, 423, "another request is writing this upload; retry");
        return;
    }
    st->busy = true;
    if (http_defer(st->ex, work_delete, done_delete, st) < 0)
        fail(st, 503, "server busy, retry later");
}

/* ---- route ops ---- */

static void tus_on_head(struct http_exchange *ex)
{
    const struct http_request *rq = http_req(ex);
    const struct dr_config *cfg = http_cfg(ex);
    struct tus_req *st = xcalloc(1, sizeof(*st));
    st->ex = ex;
    st->cfg = cfg;
    st->wctx = http_worker_ctx(ex);
    st->owner = xstrdup(http_user(ex));
    st->fd = -1;
    st->length = -1;
    st->new_length = -1;
    st->cluster = stager_on(cfg);
    st->hold = (struct quota_hold)QUOTA_HOLD_INIT;
    http_set_data(ex, st);
    common_headers(ex);

    const char *tr = http_header(ex, "Tus-Resumable");
    if (tr == NULL || strcmp(tr, TUS_VERSION) != 0) {
        http_add_header(ex, "Tus-Version", TUS_VERSION);
        fail(st, 412, "this server speaks tus 1.0.0: send Tus-Resumable: 1.0.0");
        return;
    }
    const char *m = rq->method_name;
    if (strcmp(m, "POST") == 0) {
        st->op = OP_CREATE;
        create_head(st);
        return;
    }
    const char *id = rq->path != NULL ? rq->path + strlen(TUS_PREFIX "/") : "";
    if (strcmp(m, "HEAD") != 0 && strcmp(m, "PATCH") != 0 && strcmp(m, "DELETE") != 0) {
        http_add_header(ex, "Allow", "HEAD, PATCH, DELETE, OPTIONS");
        fail(st, 405, "%s is not a tus method", m);
        return;
    }
    if (rq->path == NULL || strncmp(rq->path, TUS_PREFIX "/", strlen(TUS_PREFIX "/")) != 0 ||
        !dr_id_valid(id)) {
        fail(st, 404, "no such upload");
        return;
    }
    memcpy(st->id, id, DR_ID_LEN + 1);
    st->op = strcmp(m, "HEAD") == 0 ? OP_HEAD : strcmp(m, "PATCH") == 0 ? OP_PATCH : OP_DELETE;
    if (creation_wait(st))
        return; /* its row is being committed: creation_resume goes on */
    tus_dispatch(st);
}

/* HEAD, PATCH or DELETE of an upload (st->id) whose row is committed. */
static void tus_dispatch(struct tus_req *st)
{
    if (st->op == OP_HEAD)
        head_head(st);
    else if (st->op == OP_PATCH)
        patch_head(st);
    else
        delete_head(st);
}

static int tus_on_body(struct http_exchange *ex, const char *data, size_t len)
{
    struct tus_req *st = http_get_data(ex);
    if (st == NULL || st->responded || !st->streaming)
        return -ECANCELED;
    uint64_t limit = st->length >= 0 ? (uint64_t)st->length : st->cfg->limits.max_upload_size;
    uint64_t at = st->start + st->received;
    if (st->length < 0 && st->received + len > st->hold.allowance) {
        st->streaming = false;
        drop_received(st);
        fail(st, 507, "the upload would take %s past their quota (quotas.max_bytes)", st->owner);
        return -EDQUOT;
    }
    if (len > limit - at) {
        st->streaming = false; /* the chunk is refused, the offset stays */
        drop_received(st);
        fail(st, 413, "the body would take the upload past %s (%" PRIu64 " bytes)",
             st->length >= 0 ? "its Upload-Length" : "the size limit", limit);
        return -EFBIG;
    }
    if (st->md != NULL && EVP_DigestUpdate(st->md, data, len) != 1) {
        fail(st, 500, "checksum update failed");
        return -EIO;
    }
    if (st->buf != NULL) {
        if (len > st->inline_len - st->received) { /* the parser keeps to Content-Length */
            fail(st, 400, "the body is longer than its Content-Length");
            return -EINVAL;
        }
        memcpy(st->buf + st->received, data, len);
        st->received += len;
        return 0;
    }
    int rc = spool_write(st->fd, data, len);
    if (rc < 0) {
        fail_rc(st, rc, "writing the upload");
        return rc;
    }
    st->received += len;
    spool_writeback(st->fd, st->fbase, st->received, &st->writeback_at);
    return 0;
}

static void tus_on_end(struct http_exchange *ex)
{
    struct tus_req *st = http_get_data(ex);
    if (st == NULL || st->responded)
        return;
    if (st->md != NULL) {
        uint8_t got[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (EVP_DigestFinal_ex(st->md, got, &n) != 1 || n != st->ck.len ||
            CRYPTO_memcmp(got, st->ck.digest, n) != 0) {
            st->streaming = false; /* the chunk is discarded, the offset stays */
            uint64_t dropped = st->received;
            drop_received(st);
            fail(st, 460,
                 "Upload-Checksum does not match the body; %" PRIu64
                 " bytes discarded, the offset is still %" PRIu64,
                 dropped, st->start);
            return;
        }
    }
    begin_commit(st);
}

/* Save what a cut-short PATCH received (see the design comment). */
static void save_partial(struct tus_req *st)
{
    if (!st->streaming || st->committed || st->responded || (st->fd < 0 && st->buf == NULL))
        return;
    if (st->op == OP_PATCH && st->md != NULL) {
        drop_received(st); /* checksum: unverifiable bytes are dropped */
        return;
    }
    if (st->op != OP_PATCH || st->received == 0)
        return; /* creation: no Location was given (req_free removes the file) */
    if (st->buf != NULL && spill(st) < 0)
        return;        /* the offset stays */
    if (st->cluster) { /* staged off the loop thread; the saver removes the file */
        stager_save_later(st->cfg, st->id, st->part, st->owner, seal_path(st), st->row.content_type,
                          st->part_path, st->start, st->received, st->new_length);
        st->part_kept = true;
        return;
    }
    uint64_t off = st->start + st->received;
    int rc = spool_sync(st->fd);
    if (rc == 0 && st->made_file)
        rc = dr_fsync_parent(st->row.spool_path);
    struct catalog *cat = http_thread_catalog(http_ex_thread(st->ex));
    if (rc == 0 && cat == NULL)
        rc = -EAGAIN;
    if (rc == 0 && st->new_length >= 0)
        rc = catalog_tus_set_length(cat, st->id, st->new_length);
    if (rc == 0)
        rc = catalog_tus_set_offset(cat, st->id, off);
    if (rc < 0)
        log_warn("tus: upload %s interrupted; could not save offset %" PRIu64 ": %s", st->id, off,
                 strerror(-rc));
    else
        log_info("tus: upload %s interrupted; saved offset %" PRIu64, st->id, off);
}

static void tus_on_abort(struct http_exchange *ex)
{
    struct tus_req *st = http_get_data(ex);
    if (st == NULL)
        return;
    http_set_data(ex, NULL);
    save_partial(st);
    req_free(st);
}

static void tus_on_done(struct http_exchange *ex)
{
    struct tus_req *st = http_get_data(ex);
    http_set_data(ex, NULL);
    req_free(st);
}

/* OPTIONS: protocol discovery (and the answer to a CORS preflight, whose
 * Access-Control-* headers the router added); no auth, no state. */
static void tus_options(struct http_exchange *ex)
{
    char max[32];
    snprintf(max, sizeof(max), "%" PRIu64, http_cfg(ex)->limits.max_upload_size);
    common_headers(ex);
    http_add_header(ex, "Tus-Version", TUS_VERSION);
    http_add_header(ex, "Tus-Extension", TUS_EXTENSIONS);
    http_add_header(ex, "Tus-Max-Size", max);
    http_add_header(ex, "Tus-Checksum-Algorithm", TUS_CHECKSUM_ALGORITHMS);
    http_respond(ex, 204, NULL, NULL, 0);
}

static const struct http_route_ops tus_ops = {
    .route_class = "tus",
    .on_head = tus_on_head,
    .on_body = tus_on_body,
    .on_end = tus_on_end,
    .on_abort = tus_on_abort,
    .on_done = tus_on_done,
};

static const struct http_route_ops tus_options_ops = {
    .route_class = "tus",
    .on_head = tus_options,
};

void tus_register_routes(void)
{
    router_add("OPTIONS", TUS_PREFIX, false, &tus_options_ops);
    router_add("OPTIONS", TUS_PREFIX "/", false, &tus_options_ops);
    router_add("POST", TUS_PREFIX, true, &tus_ops);
    router_add("GET", TUS_PREFIX "/", true, &tus_ops); /* HEAD; GET itself gets 405 */
    router_add("PATCH", TUS_PREFIX "/", true, &tus_ops);
    router_add("DELETE", TUS_PREFIX "/", true, &tus_ops);
}
