/* api_req.h - what the JSON routes of the API share: small JSON request
 * bodies, the common answers, the media object, query parameters, and
 * handing work to the pool (api_media.c, api_shares.c, api_links.c,
 * api_folders.c, api_versions.c).
 *
 * Bodies: a route that takes a JSON body makes its exchange data (the
 * struct given to http_set_data) begin with a struct api_body, calls
 * api_body_start() in on_head, uses api_body_append as on_body, and reads
 * the document with api_body_object() in on_end. Bodies are bounded by
 * API_BODY_MAX (413 beyond).
 *
 * Threads: everything here runs on the exchange's loop thread, except
 * api_media_json() and the time/str helpers, which any thread may call.
 */
#ifndef DRIPD_API_REQ_H
#define DRIPD_API_REQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/http.h"

struct dr_store;

/* Largest JSON request body (PATCH, shares, links, folders). */
#define API_BODY_MAX (64 * 1024)

struct api_body {
    char *buf; /* NUL-terminated; NULL while empty */
    size_t len;
};

/* Start taking a JSON body; false after answering 413 (a Content-Length
 * over API_BODY_MAX). */
bool api_body_start(struct http_exchange *ex);
/* The on_body callback: appends to the api_body at the start of the
 * exchange's data; -EFBIG after answering 413. */
int api_body_append(struct http_exchange *ex, const char *data, size_t len);
void api_body_free(struct api_body *b); /* frees the buffer, not b */
/* The body as a JSON object (new reference, caller decrefs); an empty
 * body is {} when empty_ok. NULL after answering 400. */
json_t *api_body_object(struct http_exchange *ex, bool empty_ok);
/* doc's member key as a non-empty string without NUL bytes, or NULL
 * after answering 400 "body needs a non-empty string "key"". */
const char *api_json_string(struct http_exchange *ex, json_t *doc, const char *key);

/* JSON values: a string or null for NULL/""; an RFC 3339 time or null
 * for ms <= 0 (new references). */
json_t *api_str_or_null(const char *s);
json_t *api_time_or_null(int64_t ms);
/* A media as the API shows it to viewer (new reference):
 * {"id","path","name","folder","size","sha256","content_type","state",
 *  "owner","created_at","uploaded_at","shared","metadata"}. */
json_t *api_media_json(const struct dr_media *m, const char *viewer);

/* 0 for an admin user (config `admin: true`); otherwise answers 403
 * problem+json and returns -1. */
int api_require_admin(struct http_exchange *ex);

/* 503 + Retry-After: 1, "WHAT: the catalog is busy, retry shortly". */
void api_respond_busy(struct http_exchange *ex, const char *what);
/* A catalog error the caller has no better answer for: -ENOENT 404 "no
 * such media", -EBUSY 503, anything else 500. */
void api_respond_catalog_error(struct http_exchange *ex, int rc, const char *what);
/* The loop thread's catalog, or NULL after answering 503. */
struct catalog *api_loop_catalog(struct http_exchange *ex);
/* http_defer(), answering 503 + Retry-After when the pool is full
 * (then -EAGAIN and nothing will run). */
int api_defer(struct http_exchange *ex, void (*work)(void *),
              void (*done)(struct http_exchange *, void *), void *arg);

/* The calling pool thread's own store handle (opened on first use,
 * closed when the thread exits), or NULL + err. Pool threads only. */
struct dr_store *api_pool_store(const struct dr_config *cfg, char *err, size_t errlen);

/* After the catalog moved ids[0..n) into the trash (in_trash, at ms) or
 * out of it: their trash marks in the store (store_mark_trash), so a
 * rebuilt catalog knows them. Best effort, logged. Pool threads only. */
void api_trash_marks(const struct dr_config *cfg, const char (*ids)[DR_ID_LEN + 1], size_t n,
                     bool in_trash, int64_t at);

/* Is key present in the raw query (http_query_param() also says NULL
 * for a value that does not percent-decode)? */
bool api_query_has(const struct http_exchange *ex, const char *key);
/* Integer query parameter name in lo..hi, *out = dflt when absent; false
 * after answering 400 "bad NAME: want lo..hi". */
bool api_query_long(struct http_exchange *ex, const char *name, long lo, long hi, long dflt,
                    long *out);
/* How an upload treats a taken path (docs/API.md, "Overwrite"): the
 * If-Match header and ?conflict=rename. */
struct api_overwrite {
    char *if_match; /* NULL, or as dr_intake.if_match: "*" or sha256 hex values joined by ',' */
    bool rename;    /* ?conflict=rename */
};
/* Read both from the request; false after answering 400 (a malformed
 * If-Match, ?conflict other than rename, or both at once). Free with
 * api_overwrite_free. Weak tags match nothing (If-Match compares
 * strongly), so "W/\"x\"" alone gives "" (no ETag matches). */
bool api_overwrite_read(struct http_exchange *ex, struct api_overwrite *ow);
void api_overwrite_free(struct api_overwrite *ow);
/* Before an upload's body: may owner's upload go to path, as ow says?
 * 0 yes; 1 after answering 409 (taken; the detail says what to send) or
 * 412 (If-Match: no file there, or another ETag); -errno when the catalog
 * cannot tell (nothing answered). The commit checks again, atomically. */
int api_overwrite_check(struct http_exchange *ex, struct catalog *cat, const char *owner,
                        const char *path, const struct api_overwrite *ow);
/* Does the ETag of m (its sha256) satisfy ow->if_match? */
bool api_overwrite_matches(const struct api_overwrite *ow, const struct dr_media *m);
/* The id in PREFIX + "<id>[/<rest>]" of the request path: *rest is "" or
 * what follows the id's slash. False when there is no well-formed id. */
bool api_path_id(const struct http_exchange *ex, const char *prefix, char id[DR_ID_LEN + 1],
                 const char **rest);

#endif
