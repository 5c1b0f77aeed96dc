/* redact.c - secrets and server paths out of logs and API answers (see
 * redact.h). No state, no locks: any thread. */
#include "dripd/redact.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/config.h"
#include "dripd/util.h"

#define REDACTED_PATH "[server path]"
#define ROOTS_MAX 6

/* Append s[0..n) to out at *len, keeping the NUL; truncates. */
static void put(char *out, size_t outlen, size_t *len, const char *s, size_t n)
{
    if (*len + 1 >= outlen)
        return;
    size_t room = outlen - 1 - *len;
    if (n > room)
        n = room;
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

char *redact_url(const char *url, char *out, size_t outlen)
{
    size_t len = 0;
    if (outlen == 0)
        return out;
    out[0] = '\0';
    if (url == NULL)
        return out;
    const char *auth = strstr(url, "://");
    const char *p = url;
    if (auth != NULL && strcspn(url, "/?#") > (size_t)(auth - url)) {
        auth += 3;
        put(out, outlen, &len, url, (size_t)(auth - url));
        size_t alen = strcspn(auth, "/?#");
        const char *at = NULL;
        for (size_t i = 0; i < alen; i++)
            if (auth[i] == '@')
                at = auth + i;
        if (at != NULL) {
            put(out, outlen, &len, "***@", 4);
            put(out, outlen, &len, at + 1, (size_t)(auth + alen - at - 1));
        } else {
            put(out, outlen, &len, auth, alen);
        }
        p = auth + alen;
    }
    size_t plen = strcspn(p, "?#");
    put(out, outlen, &len, p, plen);
    p += plen;
    if (*p == '?') {
        put(out, outlen, &len, "?***", 4);
        p += strcspn(p, "#");
    }
    if (*p == '#')
        put(out, outlen, &len, "#***", 4);
    return out;
}

static bool starts_path(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '"' || c == '\'' || c == '(' || c == '[' ||
           c == '<' || c == '=' || c == ',';
}

static bool ends_path(char c)
{
    return c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '"' || c == '\'' || c == ')' ||
           c == ']' || c == '>' || c == ',' || c == ';' || c == ':';
}

/* Length of the root at s, or 0 when no root starts a path there. */
static size_t root_at(const char *s, const char *const *roots, size_t n)
{
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        const char *r = roots[i];
        size_t rl = r ? strlen(r) : 0;
        while (rl > 1 && r[rl - 1] == '/')
            rl--; /* "var/" matches like "var" */
        if (rl < 2 || strncmp(s, r, rl) != 0)
            continue;
        if ((s[rl] == '/' || ends_path(s[rl])) && rl > best)
            best = rl;
    }
    return best;
}

char *redact_paths(const char *text, const char *const *roots, size_t n)
{
    if (text == NULL)
        return NULL;
    size_t tl = strlen(text);
    /* each replacement is at most this much longer than what it replaces */
    size_t cap = tl + 1 + (tl / 2 + 1) * sizeof REDACTED_PATH;
    char *out = xmalloc(cap);
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < tl;) {
        size_t rl = (i == 0 || starts_path(text[i - 1])) ? root_at(text + i, roots, n) : 0;
        if (rl == 0) {
            put(out, cap, &len, text + i, 1);
            i++;
            continue;
        }
        size_t j = i + rl;
        while (!ends_path(text[j]))
            j++;
        put(out, cap, &len, REDACTED_PATH, sizeof REDACTED_PATH - 1);
        i = j;
    }
    return out;
}

char *redact_server_paths(const char *text, const struct dr_config *cfg)
{
    if (text == NULL)
        return NULL;
    char *owned[ROOTS_MAX] = {0};
    const char *roots[ROOTS_MAX];
    size_t n = 0;
    char *keydir = NULL;
    if (cfg->encryption.key_file != NULL) {
        keydir = xstrdup(cfg->encryption.key_file);
        char *slash = strrchr(keydir, '/');
        if (slash != NULL)
            *slash = '\0';
        else
            keydir[0] = '\0';
    }
    const char *given[3] = {cfg->data_dir, cfg->storage.local.path, keydir};
    for (size_t i = 0; i < 3; i++) {
        if (given[i] == NULL || given[i][0] == '\0')
            continue;
        roots[n++] = given[i];
        char *real = realpath(given[i], NULL);
        if (real != NULL && strcmp(real, given[i]) != 0)
            roots[n++] = owned[i] = real;
        else
            free(real);
    }
    char *out = redact_paths(text, roots, n);
    for (size_t i = 0; i < ROOTS_MAX; i++)
        free(owned[i]);
    free(keydir);
    return out;
}
