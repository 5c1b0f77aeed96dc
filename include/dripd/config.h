/* config.h - dripd's typed configuration and its YAML loader.
 *
 * The supervisor loads and validates the file (config_load), keeps the
 * struct, and every worker inherits it by fork. A reload loads a new struct
 * and starts new workers with it; a struct is never mutated after load, so
 * any thread may read it without locks.
 *
 * Sizes are bytes (uint64_t), durations are milliseconds (uint64_t).
 * Every field has a default (config_defaults) except users, which a file
 * must give (the embedded defaults used without -c generate one admin).
 */
#ifndef DRIPD_CONFIG_H
#define DRIPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dr_user {
    char *name;
    char *token; /* from token: or read from token_file: */
    bool admin;
};

/* Threads of each pipeline's notify stage (not configurable: it is short,
 * but two keep its commits off the critical path of small jobs). */
#define DR_NOTIFY_STAGE_THREADS 2

struct dr_stage_cfg {
    int concurrency; /* threads */
    int max_demand;
    int min_demand;
};

struct dr_webhook {
    char *url;
    char *secret; /* HMAC-SHA256 key for X-Dripd-Signature */
};

enum dr_store_backend { DR_STORE_LOCAL = 0, DR_STORE_S3 = 1 };
enum dr_catalog_backend { DR_CATALOG_SQLITE = 0, DR_CATALOG_POSTGRES = 1 };

/* One user's limits (config `quotas:`); 0 means no limit. */
struct dr_quota {
    uint64_t max_bytes;            /* bytes stored (live media, open tus uploads); over: 507 */
    uint64_t max_inflight_uploads; /* files being received at once (a multipart part is one); 429 */
    uint64_t max_queued_jobs;      /* jobs queued or running; 429 */
    uint64_t max_event_streams;    /* open GET /v1/events streams; 429 */
};
#define DR_QUOTA_UNSET UINT64_MAX /* in quotas.users entries: inherit quotas.default */

struct dr_quota_user {
    char *name;
    struct dr_quota q; /* DR_QUOTA_UNSET where the entry does not say */
};

/* processing.variants[i]: an image the process stage makes from a photo,
 * a video's poster frame or a PDF's first page. */
struct dr_variant_cfg {
    char *name;   /* 1-31 of [a-z0-9_-], unique */
    int max;      /* longest side in px, 1..16384; never enlarged */
    char *format; /* "webp" | "jpeg" | "png" */
    int quality;  /* 1..100; default 80 */
};
#define DR_MAX_VARIANTS 8

struct dr_config {
    char *path; /* file it came from; "<defaults>" if none */

    char **listen; /* "host:port", "[v6]:port" or "unix:/path" */
    size_t n_listen;
    char *data_dir; /* node-local: spool/, cache/, run/, catalog.db */

    struct dr_user *users;
    size_t n_users;

    struct {
        enum dr_store_backend backend;
        struct {
            char *path; /* default <data_dir>/objects */
        } local;
        struct {
            char *endpoint; /* http(s)://host:port */
            char *bucket;
            char *region; /* default us-east-1 */
            char *access_key_id;
            char *secret_access_key;  /* or secret_access_key_file */
            char *session_token;      /* optional */
            bool path_style;          /* default true */
            bool verify_tls;          /* default true */
            uint64_t part_size;       /* multipart part size, >= 5MiB, default 16MiB */
            int parallel_parts;       /* parts in flight per object, default 4 */
            uint64_t connect_timeout; /* default 5s */
            uint64_t idle_timeout;    /* no bytes moving for this long: abort; default 30s */
            uint64_t timeout;         /* whole transfer; default 1h */
        } s3;
    } storage;

    struct {
        char *key_file; /* default <data_dir>/master.key, created if absent */
    } encryption;

    struct {
        enum dr_catalog_backend backend; /* default sqlite: <data_dir>/catalog.db */
        struct {
            char *dsn; /* libpq connection string (or read from dsn_file); required for postgres */
            int pool;  /* connections per process, default 8 */
        } postgres;
    } catalog;

    struct {
        char *id; /* this node's name in a cluster; default: the host name */
    } node;

    struct {
        uint64_t queue_limit; /* accepted jobs waiting; then 503 */
        struct {
            struct dr_stage_cfg process, encrypt, store;
        } upload;
        struct {
            struct dr_stage_cfg fetch, decrypt;
        } download;
        struct {
            int attempts;
            uint64_t backoff;
            uint64_t max_backoff;
        } retry;
        uint64_t segment_size; /* AEAD segment, default 64KiB */
        /* jobs of at least this many bytes commit (and announce) every
         * stage; smaller ones commit once, when done; default 1MiB */
        uint64_t stage_commit_size;
        uint64_t retention; /* ms finished jobs and events are kept; 0 = forever; default 7d */
        uint64_t test_store_delay;  /* test hook: store stage sleeps this long per job; default 0 */
        uint64_t test_notify_delay; /* test hook: the same in the upload notify stage */
    } pipeline;

    struct {
        uint64_t max_size;
        uint64_t ttl;
    } cache;

    struct {
        uint64_t max_upload_size;
        uint64_t header_timeout;
        uint64_t body_timeout;
        uint64_t keepalive_timeout; /* default 75s */
        int max_connections;
        uint64_t max_header_size;    /* default 16KiB */
        uint64_t max_buffered_input; /* upload bodies' read buffers, all together; default 64MiB */
        int max_headers;             /* default 100 */
    } limits;

    struct {
        int threads; /* event-loop threads in the http worker; 0 = one per core */
    } http;

    struct {
        uint64_t expiration; /* unfinished tus uploads expire after; default 24h */
    } tus;

    struct {
        int max_restarts;
        uint64_t max_seconds;        /* window, ms (key is seconds-valued duration) */
        uint64_t heartbeat_interval; /* default 1s */
        uint64_t heartbeat_timeout;  /* silent this long: killed and restarted; default 10s */
        uint64_t drain_timeout;      /* graceful stop/reload; default 30s */
    } supervisor;

    struct {
        uint64_t min_free_disk; /* /readyz fails below; default 256MiB */
        uint64_t
            store_probe_interval; /* how often the store's reachability is checked; default 5s */
    } health;

    struct {
        uint64_t rate_limit; /* bytes/s read by scrub; default 50MiB */
    } scrub;

    struct {
        char *level; /* error|warn|info|debug */
    } log;

    struct dr_webhook *webhooks;
    size_t n_webhooks;

    /* Peers whose X-Forwarded-For/-Proto/-Host and Forwarded headers are
     * believed (CIDR blocks, single addresses, "unix:"); none by default. */
    char **trusted_proxies;
    size_t n_trusted_proxies;

    struct {
        char **origins; /* browser origins allowed cross-origin ("https://app.example", "*") */
        size_t n_origins;
    } cors;

    struct {
        /* PEM files; both or neither. Set: HTTPS on every listen address.
         * config_load checks they load and match (docs/CONFIG.md). */
        char *cert; /* the certificate, then its chain */
        char *key;  /* its private key, unencrypted */
    } tls;

    struct {
        /* hooks.pre_upload: asked before an upload is accepted
         * (src/api/upload_hook.c, docs/API.md "Pre-upload hook") */
        struct {
            char *url;        /* NULL: no hook */
            uint64_t timeout; /* ms; default 2000 */
            char *on_error;   /* "deny" (default) or "allow": when the hook fails */
        } pre_upload;
    } hooks;

    struct {
        bool enabled; /* default true: the process stage runs (docs/PROCESSING.md) */
        struct dr_variant_cfg *variants; /* default thumb 256 webp, preview 1280 jpeg 82 */
        size_t n_variants;               /* <= DR_MAX_VARIANTS */
        bool video_poster;               /* default true: variants of videos from a frame */
        bool strip_metadata;             /* default false: the original stays byte-identical */
        struct {
            uint64_t max_pixels; /* default 100000000 */
            uint64_t timeout;    /* ms, default 30s */
            uint64_t memory;     /* bytes (RLIMIT_AS of a helper), default 512MiB */
        } limits;
        uint64_t rate_limit; /* reprocess: bytes/s of originals read; default 50MiB */
        /* test hook: every helper misbehaves once sandboxed: "socket",
         * "open", "segv", "hang" or "alloc"; NULL none */
        char *test_decoder;
    } processing;

    struct {
        int keep; /* earlier versions kept per file (0, the default: none) */
    } versions;

    struct {
        uint64_t ttl; /* ms a deleted file stays in the trash (0, the default: no trash) */
    } trash;

    struct {
        struct dr_quota def;         /* quotas.default */
        struct dr_quota_user *users; /* quotas.users.<name>: every name is a configured user */
        size_t n_users;
    } quotas;
};

/* A list of problems, each "FILE:LINE:COL: message". */
struct dr_config_errors {
    char **msgs;
    size_t n;
};

/* Embedded defaults (listen 127.0.0.1:8080, data_dir ./var, local store,
 * no users). Caller owns the result; free with config_destroy(). */
struct dr_config *config_defaults(void);

/* Load and validate FILE. On success returns 0 and sets *out (caller owns).
 * On failure returns -EINVAL (or -errno when the file cannot be read),
 * sets *out to NULL and appends every problem found to errs (caller frees
 * with config_errors_clear). Relative paths stay relative to the cwd. */
int config_load(const char *path, struct dr_config **out, struct dr_config_errors *errs);

/* For `dripd --check`, before config_load: a token_file or other secret
 * file under /run/credentials/ (a systemd LoadCredential= that only the
 * running service has) that cannot be read while CREDENTIALS_DIRECTORY is
 * unset is noted on stderr ("FILE:LINE:COL: note: ...") instead of being an
 * error, so the documented check after an install passes. Process-wide;
 * off by default. */
void config_check_mode(bool on);

void config_destroy(struct dr_config *cfg); /* NULL ok */
void config_errors_clear(struct dr_config_errors *errs);

/* "10MiB" -> bytes, "30s" -> ms. 0 / -EINVAL. Exposed for tests and dripctl. */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration(const char *s, uint64_t *out_ms);

/* Find the user whose token matches (constant time per candidate); NULL if none. */
const struct dr_user *config_find_token(const struct dr_config *cfg, const char *token, size_t len);
/* The configured user with that name, or NULL. */
const struct dr_user *config_find_user(const struct dr_config *cfg, const char *name);
/* The limits of user `name`: quotas.default with whatever quotas.users.<name>
 * sets instead. */
struct dr_quota config_user_quota(const struct dr_config *cfg, const char *name);

/* OpenSSL's pem_password_cb that never asks a terminal for a passphrase
 * (returns -1): an encrypted tls.key is refused, the same way by the
 * config check (config.c) and by the TLS front end that loads it
 * (src/http/tls.c). */
int config_no_passphrase(char *buf, int size, int rwflag, void *u);

/* Added by the config loader: load and validate an in-memory YAML text of
 * len bytes (need not be NUL-terminated); name is the file name used in
 * messages (and cfg->path). Same contract as config_load: 0 and *out set
 * (caller owns), or -EINVAL with *out NULL and every problem appended to
 * errs (errs may be NULL to discard them). Used by config_load and the
 * fuzz target. */
int config_load_buffer(const char *name, const char *buf, size_t len, struct dr_config **out,
                       struct dr_config_errors *errs);

#endif
