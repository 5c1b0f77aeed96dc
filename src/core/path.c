/* path.c - validation of user-supplied media paths (see path.h).
 *
 * Pure functions over NUL-terminated strings: no state, no locks, callable
 * from any thread. "Normalise" here means "accept or refuse": a path is
 * never rewritten into a different path (no "a/../b" resolution, no case
 * folding), so what the user sent is what the catalog stores. The only
 * rewrite is for folders: "" and "/" mean the root, and one trailing '/'
 * on a folder ("/photos/") is dropped.
 *
 * UTF-8 is checked strictly (RFC 3629): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF.
 */
#include "dripd/path.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/util.h"

static int fail(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return -EINVAL;
}

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 if invalid.
 * s[0] is known to be >= 0x80. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c >= 0xC2 && c <= 0xDF)
        return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        if (c == 0xED)
            hi = 0x9F; /* surrogates */
        if (s[1] < lo || s[1] > hi)
            return 0;
        return (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
        if (s[1] < lo || s[1] > hi)
            return 0;
        if ((s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0; /* continuation byte, C0/C1, F5..FF */
}

/* Check one segment s[0..len): not empty, not "." or "..", no '/', no
 * control characters, valid UTF-8, at most DR_SEGMENT_MAX bytes. */
static int check_segment(const char *s, size_t len, char *err, size_t errlen)
{
    if (len == 0)
        return fail(err, errlen, "empty path segment ('//' or trailing '/') is not allowed");
    if (len > DR_SEGMENT_MAX)
        return fail(err, errlen, "path segment longer than 255 bytes");
    if (len == 1 && s[0] == '.')
        return fail(err, errlen, "path segment '.' is not allowed");
    if (len == 2 && s[0] == '.' && s[1] == '.')
        return fail(err, errlen, "path segment '..' is not allowed");
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c < 0x20 || c == 0x7f)
            return fail(err, errlen, "control characters are not allowed in paths");
        if (c == '/')
            return fail(err, errlen, "'/' is not allowed in a name");
        if (c < 0x80) {
            i++;
            continue;
        }
        /* utf8_seq may look at up to 3 bytes past i; the string is
         * NUL-terminated and NUL is never a continuation byte, so it stops
         * at the terminator at the latest. Bound it by len as well. */
        size_t n = utf8_seq(u + i);
        if (n == 0 || i + n > len)
            return fail(err, errlen, "path is not valid UTF-8");
        i += n;
    }
    return 0;
}

/* Validate an absolute path with at least one segment. */
static int check_path(const char *in, size_t len, char *err, size_t errlen)
{
    if (len == 0 || in[0] != '/')
        return fail(err, errlen, "path must start with '/'");
    if (len > DR_PATH_MAX)
        return fail(err, errlen, "path longer than 1024 bytes");
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i == len || in[i] == '/') {
            int rc = check_segment(in + start, i - start, err, errlen);
            if (rc < 0)
                return rc;
            start = i + 1;
        }
    }
    return 0;
}

int path_normalize_file(const char *in, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (in == NULL)
        return fail(err, errlen, "path is missing");
    size_t len = strlen(in);
    if (len == 1 && in[0] == '/')
        return fail(err, errlen, "a file path needs a name after '/'");
    int rc = check_path(in, len, err, errlen);
    if (rc < 0)
        return rc;
    *out = xstrndup(in, len);
    return 0;
}

int path_normalize_folder(const char *in, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (in == NULL)
        return fail(err, errlen, "folder is missing");
    size_t len = strlen(in);
    if (len == 0 || (len == 1 && in[0] == '/')) {
        *out = xstrdup("/");
        return 0;
    }
    if (in[len - 1] == '/' && len > 1 && in[len - 2] != '/')
        len--; /* "/photos/" -> "/photos" */
    int rc = check_path(in, len, err, errlen);
    if (rc < 0)
        return rc;
    *out = xstrndup(in, len);
    return 0;
}

int path_join(const char *folder, const char *name, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (name == NULL)
        return fail(err, errlen, "file name is missing");
    char *f = NULL;
    int rc = path_normalize_folder(folder, &f, err, errlen);
    if (rc < 0)
        return rc;
    rc = check_segment(name, strlen(name), err, errlen);
    if (rc < 0) {
        free(f);
        return rc;
    }
    char *p = strcmp(f, "/") == 0 ? xasprintf("/%s", name) : xasprintf("%s/%s", f, name);
    free(f);
    if (strlen(p) > DR_PATH_MAX) {
        free(p);
        return fail(err, errlen, "path longer than 1024 bytes");
    }
    *out = p;
    return 0;
}

void path_split(const char *path, char **folder, char **name)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        *folder = xstrdup("/");
        *name = xstrdup(path);
        return;
    }
    *folder = slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
    *name = xstrdup(slash + 1);
}
