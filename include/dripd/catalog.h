/* catalog.h - the shared catalog and durable job queue.
 *
 * This is the "shared state" interface: media, shares, users, jobs, events
 * and tus sessions. It is implemented in src/catalog/ (split by table, all
 * SQL through the database layer src/catalog/db.h) on SQLite (WAL,
 * synchronous=FULL) in <data_dir>/catalog.db; a PostgreSQL backend of the
 * same layer (jobs claimed with SELECT ... FOR UPDATE SKIP LOCKED, events
 * via LISTEN/NOTIFY) is how several nodes will share one catalog.
 * Nothing here knows about HTTP, files or encryption. docs/CATALOG.md has
 * the schema and the semantics.
 *
 * Threads: a `struct catalog` is one connection and belongs to ONE thread
 * at a time; each thread that needs the catalog opens its own handle.
 * Processes: any number may open the same catalog concurrently; writers
 * serialise on SQLite's lock with a busy timeout (5 s).
 *
 * Durability: every function that changes state commits before returning
 * 0, so a 0 from catalog_intake_uploads() means the job is durable.
 *
 * Errors: 0 / -errno. -ENOENT absent or not visible to that user,
 * -EEXIST path taken, -EBUSY database locked past the timeout (transient),
 * -EIO anything else (the database's message is logged).
 *
 * Strings in returned structs are heap copies owned by the caller; release
 * them with the matching *_clear() (which accepts a zeroed struct).
 *
 * Paths: a media path is absolute, normalised ("/photos/cat.jpg"), never
 * ends in '/', and its folder is everything before the last '/' ("/photos",
 * or "/" for top-level files). Validation lives in path.h; the catalog
 * assumes it was done.
 *
 * States. media.state: "queued" (accepted, not yet stored) -> "available";
 * or "failed". job.state: "queued" -> "running" -> "done" | "failed";
 * a job waiting for its retry backoff is "queued" with not_before > now.
 * job.stage names the step still to do: upload jobs go
 * "encrypt" -> "store" -> "notify"; download jobs "fetch" -> "decrypt" ->
 * "notify"; a finished job keeps its last stage.
 */
#ifndef DRIPD_CATALOG_H
#define DRIPD_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/id.h"

struct catalog;
struct dr_config;

struct dr_media {
    char id[DR_ID_LEN + 1];
    char *owner;
    char *path;           /* "/photos/cat.jpg" */
    char *name;           /* "cat.jpg" */
    char *folder;         /* "/photos" */
    uint64_t size;        /* plaintext bytes */
    char sha256[65];      /* hex, "" until encrypted */
    char *content_type;   /* may be NULL */
    char *state;          /* "queued" | "available" | "failed" */
    char *storage_key;    /* object key in the store; NULL until stored */
    uint8_t *wrapped_key; /* data key wrapped by the master key; NULL until encrypted */
    size_t wrapped_key_len;
    int64_t created_at;  /* ms since epoch */
    int64_t uploaded_at; /* ms; 0 until stored */
    char *metadata;      /* JSON object the process stage found (catalog_variants.h); NULL none */
    /* versions and the trash (catalog_versions.h) */
    char file_id[DR_ID_LEN + 1]; /* the file this is a version of: its first version's id */
    int64_t version;             /* 1 for a file's first upload, then one more per replacement */
    char retired[16];            /* "": holds its path; "pending", "version", "trash" or "purge" */
    int64_t retired_at;          /* ms it stopped holding its path; 0 while it does */
};

struct dr_job {
    char id[DR_ID_LEN + 1];
    char kind[16]; /* "upload" | "download" */
    char media_id[DR_ID_LEN + 1];
    char *owner;    /* the user who caused the job */
    char state[16]; /* "queued" | "running" | "done" | "failed" */
    char stage[16];
    char variant[32];   /* download: the variant to fetch ("thumb"); "" the original */
    int attempts;       /* failed attempts so far */
    char *error;        /* last error, NULL if none */
    char *spool_path;   /* upload: plaintext spool file; NULL otherwise */
    char *work_path;    /* stage scratch file (e.g. sealed file), NULL if none */
    char *staged;       /* upload, cluster: the staged body it reads (catalog_staged_parts);
                         * NULL: only spool_path has its bytes */
    int64_t not_before; /* ms; retry backoff */
    int64_t created_at, updated_at;
    void *body; /* upload, claimed (catalog_jobs_claim*): its inline body (job_bodies,
                 * heap), NULL when its bytes are in a file (spool_path, staged) */
    size_t body_len;
};

struct dr_event {
    int64_t seq;   /* strictly increasing */
    char *user;    /* whom it is for */
    char type[24]; /* "job.created" | "job.stage" | "job.done" | "job.failed" */
    char job_id[DR_ID_LEN + 1];
    char media_id[DR_ID_LEN + 1];
    char *data; /* JSON object text (the job as GET /v1/jobs/{id} shows it) */
    int64_t created_at;
};

struct dr_folder_entry { /* an immediate subfolder, summed over everything below it */
    char *name;
    uint64_t files;
    uint64_t size;
};

struct dr_tus {
    char id[DR_ID_LEN + 1];
    char *owner;
    int64_t length; /* -1 while deferred */
    uint64_t offset;
    char *path;     /* target media path, from metadata filename/folder */
    char *metadata; /* raw Upload-Metadata header, for HEAD */
    char *content_type;
    char *spool_path;
    int64_t expires_at; /* ms */
    int64_t created_at;
    char job_id[DR_ID_LEN + 1];   /* "" until finished */
    char media_id[DR_ID_LEN + 1]; /* "" until finished */
    char *if_match;               /* as dr_intake.if_match, for the finishing intake; NULL */
    bool rename;                  /* as dr_intake.rename */
};

/* ---- lifecycle ---- */
/* The catalog is where cfg says: catalog.backend sqlite (the default) is
 * <data_dir>/catalog.db; postgres is the database of catalog.postgres.dsn,
 * reached through a per-process pool of catalog.postgres.pool
 * connections. */
/* Create or upgrade the schema. Run once by the supervisor before it
 * forks; idempotent, and safe with concurrent migrators (other nodes).
 * For PostgreSQL this is where an unreachable server or a bad DSN shows
 * (-EBUSY / -EIO, logged). */
int catalog_migrate(const struct dr_config *cfg);
/* SQLite: the write transactions of this process and of the workers it
 * forks from now on queue on one lock in shared memory (a futex wait),
 * instead of polling SQLite's file lock across processes. Called by the
 * supervisor before it forks; a no-op for PostgreSQL. 0 or -errno. */
int catalog_share_writer(const struct dr_config *cfg);
/* What the catalog's one writer (SQLite) was busy with: each kind of
 * write transaction's count, and the time its threads spent waiting for
 * the write lock, holding it, fsyncing the WAL after it, and in WAL
 * checkpoints, which run inside the held time (db_sqlite.c).
 * Summed over every process sharing the writer (catalog_share_writer),
 * for GET /metrics; all zero with PostgreSQL, whose writers do not queue
 * on one lock. */
enum dr_writer_kind {
    DR_WRITER_OTHER,  /* anything not below: API writes, recovery, deletes */
    DR_WRITER_INTAKE, /* dripd-http's group commits of accepted uploads */
    DR_WRITER_STEPS,  /* the pipelines' group commits of job steps */
    DR_WRITER_CLAIMS, /* the pipelines' job claims */
    DR_WRITER_KINDS
};
struct dr_writer_stats {
    uint64_t transactions;
    uint64_t wait_ns, held_ns, sync_ns, ckpt_ns;
};
extern const char *const dr_writer_kind_names[DR_WRITER_KINDS];
void catalog_writer_stats(struct dr_writer_stats out[DR_WRITER_KINDS]);
/* A handle for one thread. A PostgreSQL handle connects lazily, so it
 * opens while the server is down; its calls then fail with -EBUSY until
 * the server is back. cfg must outlive the handle. */
int catalog_open(const struct dr_config *cfg, struct catalog **out);
void catalog_close(struct catalog *cat); /* NULL ok */
/* One round trip: 0 if the database answers, else -errno (-EBUSY while
 * PostgreSQL is unreachable). For health probes. */
int catalog_ping(struct catalog *cat);
/* Insert/refresh the users of the config (name, admin). */
int catalog_sync_users(struct catalog *cat, const struct dr_config *cfg);
/* Connection settings as the database reports them (tests, diagnostics). */
struct dr_catalog_info {
    char journal_mode[16]; /* "wal" */
    int synchronous;       /* 2 = FULL */
    bool foreign_keys;
    int busy_timeout_ms; /* 5000 */
    int schema_version;  /* PRAGMA user_version */
    int secure_delete;   /* SQLite: 2 = FAST (docs/CATALOG.md); PostgreSQL: 0 */
};
int catalog_info(struct catalog *cat, struct dr_catalog_info *out);
/* Housekeeping, in one transaction: delete events created before before_ms,
 * done/failed jobs last updated before before_ms, and finished tus rows
 * that expired before before_ms. Never touches queued/running jobs, media
 * or unfinished tus sessions. Event seqs are never reused after pruning.
 * *removed (may be NULL) gets the number of rows deleted. */
int catalog_prune(struct catalog *cat, int64_t before_ms, uint64_t *removed);

/* ---- upload intake (http worker) ---- */
struct dr_intake {
    /* in */
    const char *owner;
    const char *path; /* normalised media path */
    uint64_t size;
    const char *content_type; /* may be NULL */
    const char *spool_path;   /* fsynced plaintext file, or NULL with body */
    /* or the bytes themselves (1..INGEST_INLINE_MAX of them, SQLite only):
     * committed with the job (table job_bodies) in the intake, so the
     * commit's WAL fsync makes them durable; no spool file */
    const void *body;
    size_t body_len;
    const char *stage; /* the job's first stage: "process" (NULL) or "encrypt" */
    /* overwrite (catalog_versions.h): NULL, or replace the file at path if
     * its ETag (its sha256) is in this list: "*" (any file), or sha256 hex
     * values separated by ',' (the route parses If-Match into this) */
    const char *if_match;
    bool rename; /* a taken path: the first free "name (n).ext" instead */
    /* tus (both optional): create this session row first (alone: no media,
     * no job); finish the session of this id as catalog_tus_finish does
     * (path, content type and spool path NULL: the row's) */
    const struct dr_tus *tus_new;
    const char *tus_id;
    /* Cluster: the body is staged in the bucket (docs/CLUSTER.md). staged
     * names it (jobs.staged); a non-NULL staged_part is recorded with the
     * intake as its part [staged_off, size) (a PUT: its only part, at 0;
     * a tus upload's last PATCH: the last one). */
    const char *staged;
    const char *staged_part;
    uint64_t staged_off;
    /* out */
    char media_id[DR_ID_LEN + 1];
    char job_id[DR_ID_LEN + 1];
    int result;         /* 0, -EEXIST (path taken), -ESTALE (if_match: no file, or ETag moved on) */
    int64_t created_at; /* ms, the media's created_at as committed */
    char *renamed;      /* rename: the path it got instead (heap; caller frees), NULL its own */
    char replaced[DR_ID_LEN + 1]; /* if_match: the media it replaced */
    int64_t version;              /* the new media's version of its file (1: a new file) */
};
/* In ONE transaction, for each item: insert the media row (state "queued"),
 * an upload job (stage it->stage, "process" by default; state "queued") and a "job.created"
 * event, and its staged part if any; with if_match, the file it replaces
 * is retired in the same transaction (catalog_versions.h). Items whose
 * path is taken get result -EEXIST, items whose if_match fails -ESTALE,
 * and are skipped; the others are committed. A tus item (tus_new, tus_id)
 * is undone alone when it cannot apply: result -EEXIST (session id or path
 * taken: for a finish nothing was written, the session stays open),
 * -ESTALE (its If-Match failed), -ENOENT (no such session) or -ECANCELED
 * (a staged last part whose offset moved meanwhile); a finished one gives
 * the same ids again. Returns 0 when the transaction committed (check
 * each item's result), else -errno and nothing is committed, except
 * -ENOTCONN (PostgreSQL): the connection broke during the COMMIT and no
 * server answered within 30 s whether it committed (a commit whose
 * outcome can be looked up is reported as it turned out). */
int catalog_intake_uploads(struct catalog *cat, struct dr_intake *items, size_t n);
/* The same, except that the commit is not yet durable when it returns
 * 0 (SQLite; PostgreSQL's is): the caller makes it so with
 * catalog_make_durable, on any handle, before it tells anybody. So the
 * intake's next transaction runs while this one's fsync does (ingest.c,
 * issue 15). A power cut before that loses the batch, never anything
 * committed after it without it. */
int catalog_intake_uploads_deferred(struct catalog *cat, struct dr_intake *items, size_t n);
/* Make every commit so far, of every handle, durable (SQLite: one fsync
 * of the WAL, timed as kind's in catalog_writer_stats; PostgreSQL:
 * nothing to do). 0, or -EIO: the commits stand, but their durability is
 * unknown. */
int catalog_make_durable(struct catalog *cat, enum dr_writer_kind kind);
/* The same for tus creations alone (every item has tus_new and no tus_id,
 * else -EINVAL), but lazily (db.h DB_BEGIN_LAZY): the rows are there for
 * every connection when it returns, durable only with the next durable
 * commit (of any connection); a power cut before that loses them, never
 * anything committed after them. A tus 201 promises no durability
 * (docs/UPLOADS.md, "Create"): a lost creation is a 404 and the client
 * creates the upload again. */
int catalog_intake_creations(struct catalog *cat, struct dr_intake *items, size_t n);
/* Whether owner may put a new file at path. A file and a folder never
 * share a path, so besides a file at path (DR_PATH_FILE) a folder there
 * (owner has files below path: DR_PATH_FOLDER) and a file at a folder
 * above it ("/a.txt" for "/a.txt/b": DR_PATH_UNDER_FILE) take it too.
 * 0 when it is free, one of those (> 0), or -errno. Inserts and moves
 * check the same inside their transaction and answer -EEXIST. */
#define DR_PATH_FILE 1
#define DR_PATH_FOLDER 2
#define DR_PATH_UNDER_FILE 3
int catalog_path_exists(struct catalog *cat, const char *owner, const char *path);
/* "already exists", "is a folder (...)", ...: what a clash from
 * catalog_path_exists means, to follow the path in a message. */
const char *catalog_path_clash_text(int clash);
/* Jobs not yet done or failed (the queue depth that queue_limit bounds). */
int catalog_queue_depth(struct catalog *cat, uint64_t *out);

/* ---- media API (http worker) ---- */
/* viewer sees media it owns, that was shared with it, or that is below a
 * folder of its owner's shared with it (catalog_shares.h); NULL viewer =
 * admin/internal. */
int catalog_media_get(struct catalog *cat, const char *id, const char *viewer,
                      struct dr_media *out);
int catalog_media_by_path(struct catalog *cat, const char *owner, const char *path,
                          struct dr_media *out);
/* Files directly in folder and its immediate subfolders (prefix-safe:
 * "/ab" never matches "/abc"). Arrays are caller-owned; free with
 * catalog_media_list_free. */
int catalog_media_list(struct catalog *cat, const char *viewer, const char *folder,
                       struct dr_media **files, size_t *n_files, struct dr_folder_entry **folders,
                       size_t *n_folders);
void catalog_media_list_free(struct dr_media *files, size_t n_files,
                             struct dr_folder_entry *folders, size_t n_folders);
/* Move/rename; only the owner. -ENOENT not owner's, -EEXIST taken. */
int catalog_media_move(struct catalog *cat, const char *id, const char *owner,
                       const char *new_path);
/* Delete the row (and its shares and public links) for good; only the
 * owner (NULL: anyone). When it held its path or was in the trash, the
 * file's earlier versions become "purge" (catalog_versions.h). On
 * success copies the storage key (may be NULL) into *storage_key_out (caller frees) so the
 * caller can remove the object. */
int catalog_media_delete(struct catalog *cat, const char *id, const char *owner,
                         char **storage_key_out);
/* Share with user; only the owner. -ENOENT media not owner's or user unknown. */
int catalog_media_share(struct catalog *cat, const char *id, const char *owner, const char *user);
/* Every media row (for scrub/usage/rebuild); callback returns non-zero to stop. */
int catalog_media_foreach(struct catalog *cat, int (*fn)(const struct dr_media *m, void *arg),
                          void *arg);
/* Insert a complete media row as found in a self-describing object
 * (rebuild-catalog). -EEXIST if the id is already there. */
int catalog_media_insert(struct catalog *cat, const struct dr_media *m);
void dr_media_clear(struct dr_media *m);

/* ---- jobs (pipeline worker, and GET /v1/jobs) ---- */
int catalog_job_get(struct catalog *cat, const char *id, const char *viewer, struct dr_job *out);
/* owner's newest jobs first, at most max, only those in state unless NULL.
 * Free with catalog_jobs_list_free. */
int catalog_jobs_list(struct catalog *cat, const char *owner, const char *state, int max,
                      struct dr_job **out, size_t *n_out);
void catalog_jobs_list_free(struct dr_job *jobs, size_t n);
/* Create a download job for media (visible to viewer) + "job.created" event. */
int catalog_enqueue_download(struct catalog *cat, const char *media_id, const char *viewer,
                             char job_id_out[DR_ID_LEN + 1]);
/* Claim up to max queued jobs of kind with not_before <= now, oldest first:
 * state -> "running", claimed_by = claimer. *n_out jobs are written to out.
 * Never returns a job to two claimers. */
int catalog_jobs_claim(struct catalog *cat, const char *kind, int max, const char *claimer,
                       struct dr_job *out, int *n_out);
/* catalog_jobs_claim, and each claimed job's media row read with the claim
 * (SQLite: in a read transaction right after it commits, outside the write
 * lock; PostgreSQL: in its transaction), so the caller needs no read
 * transaction of its own later: media[i] is out[i]'s
 * row, on the heap (the caller owns it: dr_media_clear, then free), or
 * NULL when it is gone. On failure nothing is written to out or media
 * (and a claim whose reads failed has put its jobs back). */
int catalog_jobs_claim_media(struct catalog *cat, const char *kind, int max, const char *claimer,
                             struct dr_job *out, struct dr_media **media, int *n_out);
/* Commit that job finished its current stage and moves to next_stage
 * (still "running"), with a "job.stage" event. work_path may be NULL. */
int catalog_job_advance(struct catalog *cat, const char *job_id, const char *next_stage,
                        const char *work_path);
/* Transient failure: attempts++, error kept, state "queued",
 * not_before = now + delay_ms (the stage stays, so it resumes there). */
int catalog_job_retry(struct catalog *cat, const char *job_id, const char *error, int64_t delay_ms);
/* Permanent failure: state "failed", error kept, media state "failed" for
 * uploads, "job.failed" event. stage: where it failed, when that is past
 * its committed stage (a job that commits once, when done), else NULL. */
int catalog_job_fail(struct catalog *cat, const char *job_id, const char *stage, const char *error);
/* One finished stage of one job, for catalog_jobs_step: the media fields
 * the stage filled in and the job's next stage, committed together. */
struct dr_job_step {
    /* in (strings are borrowed for the call) */
    const char *job_id;
    const char *next_stage; /* as catalog_job_advance; NULL: the job is done ("done") */
    const char *work_path;  /* recorded with next_stage; may be NULL */
    const char *media_id;   /* needed when any media field below is set */
    const char *sha256_hex; /* non-NULL: the media's hash (and wrapped key) are set */
    const uint8_t *wrapped_key;
    size_t wrapped_key_len;
    const char *storage_key; /* non-NULL: the media's storage key is set */
    bool set_size;           /* the media's size becomes size (a stripped original) */
    uint64_t size;
    bool available;      /* the media becomes "available", uploaded_at = now */
    bool media_optional; /* a missing media row is no reason to refuse the step */
    int keep_versions;   /* with available: versions.keep, for a replacing upload */
    /* out */
    int result;      /* 0 applied; -ENOENT not applied: the job is not running, or
                      * (media_gone) its media row is missing and not optional */
    bool media_gone; /* the media row was not there */
};
/* In ONE transaction (one fsync), for each step: the job's advance to
 * next_stage (or done) with its "job.stage" ("job.done") event, and the
 * media updates asked for. A step that cannot apply (see result) is undone
 * alone; the others commit. Returns 0 when the transaction committed
 * (check each result; *last_seq, may be NULL, gets the seq of the newest
 * event it wrote, or 0 if none), else -errno: nothing was committed and
 * every result is that -errno. The pipeline's stages commit this way
 * (pipeline_commit.c), the stages of several jobs in one transaction. */
int catalog_jobs_step(struct catalog *cat, struct dr_job_step *steps, size_t n, int64_t *last_seq);
/* The same, except that the commit is not yet durable when it returns 0
 * (SQLite; PostgreSQL's is): the caller makes it so with
 * catalog_make_durable before it acts on it or tells anybody, so that the
 * next group commit's transaction runs while this one's fsync does
 * (pipeline_commit.c, issue 15). */
int catalog_jobs_step_deferred(struct catalog *cat, struct dr_job_step *steps, size_t n,
                               int64_t *last_seq);
/* Put "running" jobs whose claimer is not alive back to "queued", keeping
 * their stage. alive(claimer) decides; returns how many were released. */
int catalog_jobs_recover(struct catalog *cat, bool (*alive)(const char *claimer, void *arg),
                         void *arg, int *released);
void dr_job_clear(struct dr_job *j);

/* ---- events (SSE and webhooks) ---- */
/* Events with seq > after_seq, for user (NULL = all users), oldest first,
 * at most max. Caller frees with catalog_events_free. */
int catalog_events_since(struct catalog *cat, const char *user, int64_t after_seq, int max,
                         struct dr_event **out, size_t *n_out);
void catalog_events_free(struct dr_event *ev, size_t n);
int catalog_events_last_seq(struct catalog *cat, int64_t *out);

/* ---- tus sessions (http worker; node-local spool, shared row) ---- */
int catalog_tus_create(struct catalog *cat, const struct dr_tus *t);
int catalog_tus_get(struct catalog *cat, const char *id, const char *owner, struct dr_tus *out);
int catalog_tus_set_offset(struct catalog *cat, const char *id, uint64_t offset);
int catalog_tus_set_length(struct catalog *cat, const char *id, int64_t length);
/* The last PATCH: in ONE transaction, media + upload job + event (as
 * catalog_intake_uploads) and the tus row marked finished with their ids.
 * With intake->staged_part (cluster) only if the session's offset is
 * still intake->staged_off, else -ECANCELED and nothing is written (another
 * request moved it, or finished it: read the row again). */
int catalog_tus_finish(struct catalog *cat, const char *id, struct dr_intake *intake);
/* Cluster: a PATCH's bytes [off, off + len) were staged as part (its
 * object staging-<id>-<part>): in ONE transaction the part is recorded and
 * the unfinished session's offset moves to off + len (and its length to
 * new_length when >= 0), only if the offset is still off: else -ECANCELED,
 * nothing written (-ENOENT: no unfinished session). */
int catalog_tus_add_part(struct catalog *cat, const char *id, const char *part, uint64_t off,
                         uint64_t len, int64_t new_length);
/* Tus concatenation in a cluster (the bytes are staged parts): in ONE
 * transaction, the partial uploads parts[0..n) of final->owner are taken
 * (each must be unfinished, unexpired, a partial - path "" - and
 * complete: its rows are deleted, so exactly one final upload can take
 * it), their staged parts become the parts of final->id's body at their
 * place in it (catalog_staged_move: rows move, no byte does), and the
 * final upload's session row final is created and finished as
 * catalog_tus_finish does (intake: media, an upload job reading the
 * staged body intake->staged, event). *bad (may be NULL) gets the index
 * of the partial that failed: -ENOENT (gone: joined by another final
 * upload, expired, terminated), -EINVAL (not a complete partial upload).
 * -EEXIST / -ESTALE: the path is taken / If-Match failed (intake->result
 * too). On any error nothing is written: the partial uploads stay. */
int catalog_tus_join(struct catalog *cat, const struct dr_tus *final, const char *const *parts,
                     size_t n, struct dr_intake *intake, size_t *bad);
int catalog_tus_delete(struct catalog *cat, const char *id, const char *owner);
/* Unfinished sessions with expires_at < now_ms; caller frees with dr_tus_clear each. */
int catalog_tus_expired(struct catalog *cat, int64_t now_ms, struct dr_tus **out, size_t *n_out);
/* Every spool file something still needs (a queued or running job's body,
 * any tus session's bytes), as stored. Caller frees with dr_strv_free. */
int catalog_spool_refs(struct catalog *cat, char ***out, size_t *n_out);
void dr_tus_clear(struct dr_tus *t);

/* ---- staged upload bodies (cluster; catalog_staged.c) ---- */
/* With PostgreSQL the bytes of an upload are in the bucket before it is
 * acknowledged (docs/CLUSTER.md, "Staged bodies"): a body is one or more
 * parts, each a sealed object staging-<body>-<part> (staging.h) holding
 * the bytes [off, off + len). A PUT's body is one part; a tus upload's
 * body (its id) has a part per PATCH. The parts of a body tile
 * [0, size) in order of off. With SQLite nothing is staged: no parts.
 * A part's object is named after src, the body it was staged for: body,
 * unless a final tus upload took the part over from its partial upload
 * (catalog_tus_join), which moves rows, never objects. */
struct dr_staged_part {
    char body[DR_ID_LEN + 1];
    char part[DR_ID_LEN + 1];
    char src[DR_ID_LEN + 1]; /* its object: staging-<src>-<part> */
    uint64_t off, len;
};
/* The parts of body in order of off; caller frees *out. */
int catalog_staged_parts(struct catalog *cat, const char *body, struct dr_staged_part **out,
                         size_t *n_out);
/* At most max parts (oldest first) nothing needs any more: no queued or
 * running job reads their body, and no unfinished tus session owns it.
 * Delete each one's object, then catalog_staged_forget it. */
int catalog_staged_garbage(struct catalog *cat, int max, struct dr_staged_part **out,
                           size_t *n_out);
/* The part's row goes (its object is gone). Absent is fine. */
int catalog_staged_forget(struct catalog *cat, const char *body, uint64_t off);
/* 1 if a row records part of body, 0 if none does (its object is an
 * orphan once it is older than any put that may still record it), -errno. */
int catalog_staged_known(struct catalog *cat, const char *body, const char *part);
/* Upload jobs with a staged body whose node has been silent for lease_ms
 * become this node's (at most max per call; queued ones: recovery
 * releases a dead node's running jobs first), so that a node lost with
 * its disk loses nothing acknowledged. *adopted (may be NULL) counts them. */
int catalog_staged_adopt(struct catalog *cat, int64_t lease_ms, int max, int *adopted);

/* ---- wake-ups across nodes (catalog_watch.c) ---- */
/* With catalog.backend postgres, other nodes (and this node's other
 * process) enqueue jobs and write events: a watch thread hears of them
 * through PostgreSQL LISTEN/NOTIFY and pings the server every probe_ms.
 * wake(what, arg) and state(up, arg) run on that thread: quick and
 * thread-safe only. After each (re)connection wake gets both bits once
 * (notifications may have been missed); keep a slow safety poll anyway.
 * With SQLite there is nothing to watch: 0 and *out = NULL. */
enum { CATALOG_WAKE_JOBS = 1u << 0, CATALOG_WAKE_EVENTS = 1u << 1 };
struct catalog_watch;
struct catalog_watch_ops {
    void (*wake)(unsigned what, void *arg);
    void (*state)(bool up, void *arg); /* reachability changed; may be NULL */
};
int catalog_watch_start(const struct dr_config *cfg, uint64_t probe_ms,
                        const struct catalog_watch_ops *ops, void *arg, struct catalog_watch **out);
void catalog_watch_stop(struct catalog_watch *w); /* NULL ok; joins the thread */

/* ---- a cluster's nodes and once-per-cluster work (catalog_nodes.c) ---- */
/* With PostgreSQL every node's pipeline worker refreshes its heartbeat,
 * and work that must run on one node at a time holds a named lease,
 * renewed by its holder, taken over by another node once it expired (its
 * holder died). With SQLite (one node) these are no-ops: every node is
 * alive and every lease is this node's. Times are the database's clock. */
int catalog_node_beat(struct catalog *cat); /* this node (node.id) is alive */
/* 1 if node beat within lease_ms, 0 if not (or never), -errno. */
int catalog_node_alive(struct catalog *cat, const char *node, int64_t lease_ms);
/* Download jobs of nodes silent for lease_ms fail ("node ... is gone"):
 * they would fill a cache nobody reads. *failed (may be NULL) counts them. */
int catalog_nodes_reap(struct catalog *cat, int64_t lease_ms, int *failed);
/* Take or renew the lease name for this node until now + ttl_ms: 1 held
 * by this node now, 0 another node holds it, -errno. *cursor (may be
 * NULL) gets the position the holders saved with catalog_lease_save (0 at
 * first), so a new holder resumes where a dead one stopped. */
int catalog_lease(struct catalog *cat, const char *name, int64_t ttl_ms, int64_t *cursor);
/* Save the lease's cursor: 0, or -ENOENT if this node no longer holds it. */
int catalog_lease_save(struct catalog *cat, const char *name, int64_t cursor);
/* Give the lease up now (drain), so another node takes over at once. */
int catalog_lease_drop(struct catalog *cat, const char *name);

/* ---- moving between backends (catalog_copy.c) ---- */
/* Copy every row of from's catalog into to's (dripd --migrate-catalog):
 * users, media, variants, shares, jobs (each now this node's: to's node.id), events
 * (seqs and the high-water mark kept) and tus sessions, in ONE transaction
 * of the target, then verify: per table the row count and a SHA-256 over
 * every column of every row, read back from both sides, must agree. The
 * target must hold no media, variants, shares, jobs, events or tus (-EEXIST); its
 * users are replaced. out[] gets each table's name, rows and digest. Stop
 * the node first: nothing may write the source meanwhile. 0 / -errno, with
 * one line in err. */
#define CATALOG_COPY_TABLES 11
struct dr_catalog_copy {
    const char *table; /* static */
    uint64_t rows;
    char sha256[65];
};
int catalog_copy(const struct dr_config *from, const struct dr_config *to,
                 struct dr_catalog_copy out[CATALOG_COPY_TABLES], char *err, size_t errlen);

/* ---- usage ---- */
struct dr_usage {
    char *user;
    uint64_t files;
    uint64_t bytes;
};
/* Users ranked by bytes desc; free with catalog_usage_free. */
int catalog_usage(struct catalog *cat, struct dr_usage **out, size_t *n_out);
void catalog_usage_free(struct dr_usage *u, size_t n);
/* What counts against one user's quotas (config quotas): bytes of their
 * live media plus what their unfinished tus uploads announced (the length,
 * or the offset while it is deferred), and their jobs queued or running. */
struct dr_user_load {
    uint64_t bytes;
    uint64_t pending_jobs;
};
int catalog_user_load(struct catalog *cat, const char *user, struct dr_user_load *out);

#endif
