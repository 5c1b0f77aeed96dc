/* redact.h - keeping secrets and server file-system paths out of logs and
 * API answers.
 *
 * URLs (webhook targets, S3 requests) may carry credentials in their
 * userinfo ("https://user:pass@host") and query string ("?api_key=...");
 * whatever logs a URL logs redact_url()'s form. Error strings written by
 * the pipeline name spool, work, cache and object files under data_dir:
 * the log keeps them, while the API shows redact_server_paths()'s form.
 * Pure functions, any thread.
 */
#ifndef DRIPD_REDACT_H
#define DRIPD_REDACT_H

#include <stddef.h>

struct dr_config;

/* out gets url with its userinfo replaced by "***@" (user:pass@host ->
 * ***@host), its query by "?***" and its fragment by "#***"; truncated to
 * outlen - 1 bytes. A NULL url gives "". Returns out. */
char *redact_url(const char *url, char *out, size_t outlen);

/* A copy of text (caller frees) in which every file-system path under one
 * of roots[0..n) (a root, or a root followed by '/' and more) is replaced
 * by "[server path]". A path starts at the beginning of the text or after
 * a blank, quote, bracket, '=' or ','; it ends at the next blank, quote,
 * bracket, ',', ';' or ':'. Roots shorter than two bytes are ignored. */
char *redact_paths(const char *text, const char *const *roots, size_t n);

/* redact_paths() with the server's own roots from cfg: data_dir, the local
 * store's path, the master key's folder, and the real paths of all three.
 * NULL text gives NULL. */
char *redact_server_paths(const char *text, const struct dr_config *cfg);

#endif
