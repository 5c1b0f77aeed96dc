/* commands.c - what each dripctl command does (see commands.h).
 *
 * Output: human lines on stdout (messages and progress on stderr), or with
 * --json one JSON document on stdout per command, errors included. Sizes
 * are human-readable in the human output and bytes in JSON.
 *
 * Decisions a user can see:
 *   - upload of several files goes on past a failure, then prints a
 *     summary and exits with the first failure's code; Ctrl-C stops at
 *     once and says how to resume;
 *   - download without -o never writes a server-supplied name that starts
 *     with a dot, and never replaces an existing file without --force
 *     (the file is linked into place, so a race cannot clobber one
 *     either); `-o -` writes to stdout;
 *   - mv follows mv(1): a destination that ends in '/' or names an
 *     existing folder receives the file under its own name;
 *   - watch reconnects for ever (until Ctrl-C or an auth error), sending
 *     Last-Event-ID so no event is lost across a server restart.
 *
 * Threads: one, dripctl's.
 */
#include "commands.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "dripd/config.h"
#include "dripd/util.h"
#include "progress.h"

const char *const job_states[] = {"queued", "running", "done", "failed", NULL};

/* A string member of o, or dflt when absent or not a string. */
static const char *jstr(json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : dflt;
}

static long long jint(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static bool human_out(const struct client *c)
{
    return !c->json && !c->quiet;
}

/* Report the last error about `what`; returns its exit code. */
static int fail(struct client *c, const char *what)
{
    int code = client_exit_code(c);
    if (c->json) {
        json_t *o = json_pack("{s:b,s:s,s:i,s:s}", "ok", 0, "error", c->err, "status",
                              (int)c->status, "what", what);
        json_dumpf(o, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(o);
    } else {
        fprintf(stderr, "dripctl: %s: %s\n", what, c->err);
    }
    return code;
}

/* Like fail(), for one item of a list: in JSON the error goes into the
 * item, not into a document of its own. */
static int fail_item(struct client *c, const char *what)
{
    if (!c->json)
        fprintf(stderr, "dripctl: %s: %s\n", what, c->err);
    return client_exit_code(c);
}

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_INDENT(2));
    putchar('\n');
}

static char *state_file(void)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    if (xdg)
        return xasprintf("%s/dripctl/uploads.json", xdg);
    if (home)
        return xasprintf("%s/.local/state/dripctl/uploads.json", home);
    return xstrdup(".dripctl-uploads.json");
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ID or /path -> media id (heap); NULL with c->err set. */
static char *resolve(struct client *c, const char *arg)
{
    if (arg[0] != '/')
        return xstrdup(arg);
    const char *slash = strrchr(arg, '/');
    char *folder = slash == arg ? xstrdup("/") : xstrndup(arg, (size_t)(slash - arg));
    char *ef = client_escape(c, folder);
    char *path = xasprintf("/v1/media?folder=%s", ef);
    json_t *doc = NULL;
    char *id = NULL;
    if (client_json(c, "GET", path, NULL, &doc) == 0) {
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(doc, "files"), i, m)
        {
            if (id == NULL && strcmp(jstr(m, "name", ""), slash + 1) == 0)
                id = xstrdup(jstr(m, "id", ""));
        }
        if (id == NULL) {
            c->status = 404;
            snprintf(c->err, sizeof c->err, "no file at %s", arg);
        }
    }
    json_decref(doc);
    free(path);
    free(ef);
    free(folder);
    return id;
}

/* Poll a job until it is done or failed (bounded: 10 minutes). */
static int wait_job(struct client *c, const char *job, json_t **out)
{
    char *path = xasprintf("/v1/jobs/%s", job);
    int rc = -1;
    for (int i = 0; i < 6000; i++) {
        json_t *doc = NULL;
        if (client_json(c, "GET", path, NULL, &doc) < 0)
            break;
        const char *st = jstr(doc, "state", "");
        if (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0) {
            *out = doc;
            rc = 0;
            break;
        }
        json_decref(doc);
        client_sleep_ms(100);
        if (client_interrupted()) {
            client_local_error(c, EXIT_INTERRUPTED, "interrupted while waiting for job %s", job);
            break;
        }
    }
    if (rc < 0 && c->err[0] == '\0')
        client_local_error(c, EXIT_FAIL, "job %s did not finish within 10 minutes", job);
    free(path);
    return rc;
}

/* ---------- upload ---------- */

/* Upload one file; its JSON result (ok or not) into *res. 0 / exit code. */
static int upload_one(struct client *c, const struct args *a, const char *file, const char *sf,
                      json_t **res)
{
    char job[64] = "", media[64] = "";
    uint64_t resumed = 0;
    c->err[0] = '\0';
    struct tus_opts o = {.chunk = a->chunk,
                         .limit_rate = a->limit_rate,
                         .if_match = a->if_match,
                         .replace = a->replace,
                         .rename = a->rename,
                         .parallel = a->parallel};
    if (client_tus_upload(c, file, a->to, sf, &o, job, media, &resumed) < 0) {
        *res = json_pack("{s:s,s:b,s:s,s:i}", "file", file, "ok", 0, "error", c->err, "status",
                         (int)c->status);
        return fail_item(c, file);
    }
    if (resumed && human_out(c))
        fprintf(stderr, "%s: resumed at byte %llu\n", file, (unsigned long long)resumed);
    json_t *r = json_pack("{s:s,s:b,s:s,s:s,s:s,s:I}", "file", file, "ok", 1, "folder", a->to,
                          "job_id", job, "media_id", media, "resumed_at", (json_int_t)resumed);
    *res = r;
    if (a->wait && job[0]) {
        json_t *j = NULL;
        if (wait_job(c, job, &j) < 0) {
            json_object_set_new(r, "ok", json_false());
            json_object_set_new(r, "error", json_string(c->err));
            return fail_item(c, file);
        }
        json_object_set_new(r, "job", j);
        if (strcmp(jstr(j, "state", ""), "failed") == 0) {
            client_local_error(c, EXIT_FAIL, "job %s failed: %s", job, jstr(j, "error", "?"));
            json_object_set_new(r, "ok", json_false());
            json_object_set_new(r, "error", json_string(c->err));
            return fail_item(c, file);
        }
    }
    /* where it went: its own name, or (--conflict=rename) a free one */
    char *dest =
        xasprintf("%s%s%s", a->to, a->to[strlen(a->to) - 1] == '/' ? "" : "/", base_name(file));
    if (a->rename && media[0]) {
        char *mp = xasprintf("/v1/media/%s", media);
        json_t *m = NULL;
        if (client_json(c, "GET", mp, NULL, &m) == 0 &&
            json_is_string(json_object_get(m, "path"))) {
            free(dest);
            dest = xstrdup(jstr(m, "path", ""));
        }
        c->err[0] = '\0'; /* the upload is done either way */
        json_decref(m);
        free(mp);
    }
    json_object_set_new(r, "path", json_string(dest));
    if (human_out(c))
        printf("%s -> %s (media %s, job %s)\n", file, dest, media, job);
    free(dest);
    return EXIT_OK;
}

int cmd_upload(struct client *c, const struct args *a)
{
    char *sf = state_file();
    json_t *all = json_array();
    int code = EXIT_OK, done = 0, failed = 0, i;
    char names[512] = "";
    for (i = 0; i < a->argc && !client_interrupted(); i++) {
        json_t *res = NULL;
        int rc = upload_one(c, a, a->argv[i], sf, &res);
        json_array_append_new(all, res);
        if (rc == EXIT_OK) {
            done++;
            continue;
        }
        failed++;
        if (code == EXIT_OK)
            code = rc;
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", base_name(a->argv[i]));
        if (rc == EXIT_INTERRUPTED) {
            code = EXIT_INTERRUPTED;
            i++;
            break;
        }
    }
    if (c->json)
        print_json(all);
    if (a->argc > 1 && !c->json && (!c->quiet || failed)) {
        fprintf(stderr, "upload: %d of %d files uploaded", done, a->argc);
        if (failed)
            fprintf(stderr, "; failed: %s", names);
        if (i < a->argc)
            fprintf(stderr, "; not started: %d", a->argc - i);
        fputc('\n', stderr);
    }
    json_decref(all);
    free(sf);
    return code;
}

/* ---------- download ---------- */

/* Where a download without -o (or into a directory) may go: the server's
 * name, as a plain file name that is not hidden. NULL with c->err set. */
static char *safe_name(struct client *c, const char *dir, const char *name, bool force)
{
    const char *b = base_name(name ? name : "");
    if (b[0] == '\0' || b[0] == '.') {
        client_local_error(c, EXIT_FAIL,
                           "refusing to save as \"%s\": the server's name is empty or starts "
                           "with a dot; name the file with -o FILE",
                           b);
        return NULL;
    }
    char *dst = dir ? xasprintf("%s/%s", dir, b) : xstrdup(b);
    if (!force && access(dst, F_OK) == 0) {
        client_local_error(c, EXIT_FAIL,
                           "%s exists; use --force to replace it, or -o FILE to save elsewhere",
                           dst);
        free(dst);
        return NULL;
    }
    return dst;
}

/* Download into dst through dst.part; an existing dst is replaced only
 * when replace is set. 0 / -1 with c->err. */
static int download_to_file(struct client *c, const char *cpath, const char *dst, bool replace,
                            const char *label)
{
    char *tmp = xasprintf("%s.part", dst);
    int ret = -1;
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        client_local_error(c, EXIT_FAIL, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = client_download(c, cpath, f, label);
    if (fclose(f) != 0 && rc == 0) {
        client_local_error(c, EXIT_FAIL, "%s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0) {
        /* link() never replaces: an existing file makes it fail. */
        int r = replace ? rename(tmp, dst) : link(tmp, dst);
        if (r == 0)
            ret = 0;
        else if (errno == EEXIST)
            client_local_error(c, EXIT_FAIL, "%s exists; use --force to replace it", dst);
        else
            client_local_error(c, EXIT_FAIL, "%s: %s", dst, strerror(errno));
    }
    if (!(ret == 0 && replace))
        unlink(tmp);
    free(tmp);
    return ret;
}

int cmd_download(struct client *c, const struct args *a)
{
    const char *what = a->argv[0];
    bool to_stdout = a->output && strcmp(a->output, "-") == 0;
    if (to_stdout && c->json) {
        fprintf(stderr, "dripctl download: --json and -o - would both write to stdout\n");
        return EXIT_USAGE;
    }
    char *id = resolve(c, what);
    if (id == NULL)
        return fail(c, what);
    char *path = xasprintf("/v1/media/%s", id);
    char *cpath = NULL, *vname = NULL;
    char *dst = NULL;
    json_t *m = NULL;
    int code = EXIT_OK;
    if (a->variant) {
        char *ev = client_escape(c, a->variant);
        cpath = xasprintf("/v1/media/%s/variants/%s", id, ev);
        free(ev);
    } else {
        cpath = xasprintf("/v1/media/%s/content", id);
    }
    if (client_json(c, "GET", path, NULL, &m) < 0) {
        code = fail(c, what);
        goto out;
    }
    const char *name = jstr(m, "name", id);
    if (a->variant) {
        /* "cat.jpg" -> "cat.thumb.webp", from the variant's own type */
        size_t i;
        json_t *v;
        const char *ct = NULL;
        json_array_foreach(json_object_get(m, "variants"), i, v)
        {
            if (strcmp(jstr(v, "name", ""), a->variant) == 0)
                ct = jstr(v, "content_type", NULL);
        }
        const char *ext = ct && strstr(ct, "webp")  ? "webp"
                          : ct && strstr(ct, "png") ? "png"
                                                    : "jpg";
        const char *dot = strrchr(name, '.');
        int base = dot && dot != name ? (int)(dot - name) : (int)strlen(name);
        vname = xasprintf("%.*s.%s.%s", base, name, a->variant, ext);
        name = vname;
    }
    struct stat st;
    if (to_stdout) {
        if (client_download(c, cpath, stdout, name) < 0 || fflush(stdout) != 0) {
            if (c->err[0] == '\0' || ferror(stdout))
                client_local_error(c, EXIT_FAIL, "writing to stdout: %s", strerror(errno));
            code = fail(c, what);
        }
        goto out;
    }
    bool replace = a->force;
    if (a->output && !(stat(a->output, &st) == 0 && S_ISDIR(st.st_mode))) {
        dst = xstrdup(a->output); /* a name the user chose: like curl -o */
        replace = true;
    } else {
        dst = safe_name(c, a->output, name, a->force);
    }
    if (dst == NULL || download_to_file(c, cpath, dst, replace, name) < 0) {
        code = fail(c, what);
        goto out;
    }
    if (c->json) {
        json_object_set_new(m, "saved_to", json_string(dst));
        print_json(m);
    } else if (!c->quiet) {
        printf("%s -> %s\n", what, dst);
    }
out:
    json_decref(m);
    free(dst);
    free(cpath);
    free(vname);
    free(path);
    free(id);
    return code;
}

/* ---------- ls ---------- */

/* "3000x4000", "0:03", "3000x4000 1:02:03", "12 pages" from a file's
 * metadata (processing); "" when there is nothing to say. */
static void media_facts(json_t *meta, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t o = 0;
    long long w = jint(meta, "width"), h = jint(meta, "height");
    if (w > 0 && h > 0)
        o += (size_t)snprintf(out + o, outlen - o, "%lldx%lld", w, h);
    json_t *d = json_object_get(meta, "duration_ms");
    if (json_is_integer(d) && o < outlen) {
        long long s = (json_integer_value(d) + 500) / 1000;
        if (s >= 3600)
            o += (size_t)snprintf(out + o, outlen - o, "%s%lld:%02lld:%02lld", o ? " " : "",
                                  s / 3600, s / 60 % 60, s % 60);
        else
            o += (size_t)snprintf(out + o, outlen - o, "%s%lld:%02lld", o ? " " : "", s / 60,
                                  s % 60);
    }
    long long pages = jint(meta, "pages");
    if (pages > 0 && o < outlen)
        snprintf(out + o, outlen - o, "%s%lld page%s", o ? " " : "", pages, pages == 1 ? "" : "s");
}
int cmd_ls(struct client *c, const struct args *a)
{
    const char *folder = a->argc > 0 ? a->argv[0] : "/";
    char *ef = client_escape(c, folder);
    char *path = xasprintf("/v1/media?folder=%s", ef);
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "GET", path, NULL, &doc) < 0) {
        code = fail(c, folder);
    } else if (c->json) {
        print_json(doc);
    } else {
        size_t i;
        json_t *e;
        char sz[32];
        json_array_foreach(json_object_get(doc, "folders"), i, e)
        {
            char *n = xasprintf("%s/", jstr(e, "name", "?"));
            human_size((double)jint(e, "size"), sz, sizeof sz);
            printf("%-26s  %10s  %-9s %lld file%s\n", n, sz, "folder", jint(e, "files"),
                   jint(e, "files") == 1 ? "" : "s");
            free(n);
        }
        json_array_foreach(json_object_get(doc, "files"), i, e)
        {
            human_size((double)jint(e, "size"), sz, sizeof sz);
            const char *owner = jstr(e, "owner", "");
            bool shared = json_is_true(json_object_get(e, "shared"));
            char facts[64];
            media_facts(json_object_get(e, "metadata"), facts, sizeof facts);
            printf("%-26s  %10s  %-9s %s%s%s%s%s%s%s\n", jstr(e, "id", "?"), sz,
                   jstr(e, "state", ""), jstr(e, "name", ""), facts[0] ? "  (" : "", facts,
                   facts[0] ? ")" : "", shared ? "  (shared by " : "", shared ? owner : "",
                   shared ? ")" : "");
        }
    }
    json_decref(doc);
    free(path);
    free(ef);
    return code;
}

/* ---------- mv, rm, share ---------- */

/* Is there a folder at path (absolute, no trailing slash)? 1, 0, or -1
 * with c->err. */
static int is_folder(struct client *c, const char *path)
{
    if (strcmp(path, "/") == 0)
        return 1;
    const char *slash = strrchr(path, '/');
    char *parent = slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
    char *ep = client_escape(c, parent);
    char *q = xasprintf("/v1/media?folder=%s", ep);
    json_t *doc = NULL;
    int r = -1;
    if (client_json(c, "GET", q, NULL, &doc) == 0) {
        size_t i;
        json_t *e;
        r = 0;
        json_array_foreach(json_object_get(doc, "folders"), i, e)
        {
            if (strcmp(jstr(e, "name", ""), slash + 1) == 0)
                r = 1;
        }
    }
    json_decref(doc);
    free(q);
    free(ep);
    free(parent);
    return r;
}

/* Does arg name a folder of the caller's (ends in '/', or "/x" is one)?
 * 1 with *folder its normalised path (heap), 0 for a file or an id, -1
 * with c->err. */
static int folder_arg(struct client *c, const char *arg, char **folder)
{
    *folder = NULL;
    if (arg[0] != '/')
        return 0;
    char *p = xstrdup(arg);
    size_t n = strlen(p);
    bool slash = n > 1 && p[n - 1] == '/';
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    int f = slash || strcmp(p, "/") == 0 ? 1 : is_folder(c, p);
    if (f == 1)
        *folder = p;
    else
        free(p);
    return f;
}

/* "ok" output of a command that changed something: the server's JSON
 * (or {"ok":true}) with --json, else line. */
static void print_ok(struct client *c, json_t *doc, const char *line)
{
    if (c->json) {
        json_t *o = doc ? json_incref(doc) : json_pack("{s:b}", "ok", 1);
        print_json(o);
        json_decref(o);
    } else if (!c->quiet) {
        printf("%s\n", line);
    }
}

/* mv of a folder: PATCH /v1/folders; dest as mv(1) takes it. */
static int mv_folder(struct client *c, const char *src, const char *from, const char *dest)
{
    size_t dl = strlen(dest);
    char *to = NULL;
    if (dest[dl - 1] == '/') {
        to = xstrdup(dest);
    } else {
        int f = is_folder(c, dest);
        if (f < 0)
            return fail(c, dest);
        to = f ? xasprintf("%s/", dest) : xstrdup(dest);
    }
    json_t *body = json_pack("{s:s,s:s}", "from", from, "to", to), *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "PATCH", "/v1/folders", body, &doc) < 0) {
        code = fail(c, src);
    } else {
        char *line =
            xasprintf("%s/ -> %s/ (%lld files)", from, jstr(doc, "to", to), jint(doc, "files"));
        print_ok(c, doc, line);
        free(line);
    }
    json_decref(doc);
    json_decref(body);
    free(to);
    return code;
}

int cmd_mkdir(struct client *c, const struct args *a)
{
    const char *path = a->argv[0];
    if (path[0] != '/') {
        fprintf(stderr, "dripctl mkdir: FOLDER must be absolute (start with /): %s\n", path);
        return EXIT_USAGE;
    }
    json_t *body = json_pack("{s:s}", "path", path), *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "POST", "/v1/folders", body, &doc) < 0) {
        code = fail(c, path);
    } else {
        char *line =
            xasprintf("mkdir %s: %s", jstr(doc, "path", path),
                      json_is_true(json_object_get(doc, "created")) ? "ok" : "ok, it was there");
        print_ok(c, doc, line);
        free(line);
    }
    json_decref(doc);
    json_decref(body);
    return code;
}

int cmd_mv(struct client *c, const struct args *a)
{
    const char *src = a->argv[0], *dest = a->argv[1];
    if (dest[0] != '/') {
        fprintf(stderr, "dripctl mv: NEWPATH must be absolute (start with /): %s\n", dest);
        return EXIT_USAGE;
    }
    char *from;
    int isdir = folder_arg(c, src, &from);
    if (isdir < 0)
        return fail(c, src);
    if (isdir) {
        int code = mv_folder(c, src, from, dest);
        free(from);
        return code;
    }
    char *id = resolve(c, src);
    if (id == NULL)
        return fail(c, src);
    int code = EXIT_OK;
    char *name = NULL, *target = NULL, *path = xasprintf("/v1/media/%s", id);
    json_t *m = NULL, *body = NULL, *doc = NULL;
    if (src[0] == '/') {
        name = xstrdup(base_name(src));
    } else if (client_json(c, "GET", path, NULL, &m) == 0) {
        name = xstrdup(jstr(m, "name", ""));
    } else {
        code = fail(c, src);
        goto out;
    }
    size_t dl = strlen(dest);
    if (dest[dl - 1] == '/') {
        target = xasprintf("%s%s", dest, name);
    } else {
        int f = is_folder(c, dest);
        if (f < 0) {
            code = fail(c, dest);
            goto out;
        }
        target = f ? xasprintf("%s/%s", dest, name) : xstrdup(dest);
    }
    body = json_pack("{s:s}", "path", target);
    if (client_json(c, "PATCH", path, body, &doc) < 0) {
        code = fail(c, src);
    } else if (c->json) {
        print_json(doc);
    } else if (!c->quiet) {
        printf("%s -> %s\n", src, jstr(doc, "path", target));
    }
out:
    json_decref(doc);
    json_decref(body);
    json_decref(m);
    free(target);
    free(name);
    free(path);
    free(id);
    return code;
}

/* rm / share: one request on a resolved media id. */
static int media_op(struct client *c, const char *what, const char *method, const char *suffix,
                    json_t *body)
{
    char *id = resolve(c, what);
    if (id == NULL)
        return fail(c, what);
    char *path = xasprintf("/v1/media/%s%s", id, suffix);
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, method, path, body, &doc) < 0) {
        code = fail(c, what);
    } else if (c->json) {
        json_t *o = doc ? json_incref(doc) : json_pack("{s:b,s:s}", "ok", 1, "id", id);
        print_json(o);
        json_decref(o);
    } else if (!c->quiet) {
        printf("%s %s: ok\n", body ? "share" : "rm", what);
    }
    json_decref(doc);
    free(path);
    free(id);
    return code;
}

int cmd_rm(struct client *c, const struct args *a)
{
    const char *what = a->argv[0];
    char *folder;
    int f = folder_arg(c, what, &folder);
    if (f < 0)
        return fail(c, what);
    if (f == 0 && !a->recursive)
        return media_op(c, what, "DELETE", "", NULL);
    if (f == 0 || !a->recursive) {
        free(folder);
        fprintf(stderr, "dripctl rm: %s %s\n", what,
                f ? "is a folder: rm -r deletes it with everything in it"
                  : "is not one of your folders (rm without -r deletes a file)");
        return EXIT_USAGE;
    }
    char *ef = client_escape(c, folder), *path = xasprintf("/v1/folders?path=%s", ef);
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "DELETE", path, NULL, &doc) < 0) {
        code = fail(c, what);
    } else {
        bool trash = json_is_true(json_object_get(doc, "trash"));
        char *line = xasprintf("rm -r %s: ok (%lld files%s)", folder, jint(doc, "files"),
                               trash ? " moved to the trash; dripctl trash lists them" : "");
        print_ok(c, doc, line);
        free(line);
    }
    json_decref(doc);
    free(path);
    free(ef);
    free(folder);
    return code;
}

int cmd_share(struct client *c, const struct args *a)
{
    const char *what = a->argv[0], *user = a->argv[1];
    char *folder;
    int f = folder_arg(c, what, &folder);
    if (f < 0)
        return fail(c, what);
    if (f == 0) {
        json_t *body = json_pack("{s:s}", "user", user);
        int code = media_op(c, what, "POST", "/shares", body);
        json_decref(body);
        return code;
    }
    json_t *body = json_pack("{s:s,s:s}", "path", folder, "user", user), *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "POST", "/v1/folders/shares", body, &doc) < 0) {
        code = fail(c, what);
    } else {
        char *line = xasprintf("share %s/ with %s: ok%s (and what is put there later)",
                               strcmp(folder, "/") == 0 ? "" : folder, user,
                               json_is_true(json_object_get(doc, "created")) ? "" : ", already");
        print_ok(c, doc, line);
        free(line);
    }
    json_decref(doc);
    json_decref(body);
    free(folder);
    return code;
}

int cmd_unshare(struct client *c, const struct args *a)
{
    const char *what = a->argv[0], *user = a->argv[1];
    char *folder;
    int f = folder_arg(c, what, &folder);
    if (f < 0)
        return fail(c, what);
    char *eu = client_escape(c, user), *path = NULL;
    if (f == 1) {
        char *ef = client_escape(c, folder);
        path = xasprintf("/v1/folders/shares?path=%s&user=%s", ef, eu);
        free(ef);
    } else {
        char *id = resolve(c, what);
        if (id == NULL) {
            free(eu);
            return fail(c, what);
        }
        path = xasprintf("/v1/media/%s/shares/%s", id, eu);
        free(id);
    }
    int code = EXIT_OK;
    if (client_json(c, "DELETE", path, NULL, NULL) < 0) {
        code = fail(c, what);
    } else {
        char *line = xasprintf("unshare %s from %s: ok", what, user);
        print_ok(c, NULL, line);
        free(line);
    }
    free(path);
    free(eu);
    free(folder);
    return code;
}

int cmd_shares(struct client *c, const struct args *a)
{
    const char *what = a->argc > 0 ? a->argv[0] : NULL;
    char *folder = NULL, *path = NULL;
    int f = what ? folder_arg(c, what, &folder) : 1;
    if (f < 0)
        return fail(c, what);
    if (f == 0) {
        char *id = resolve(c, what);
        if (id == NULL)
            return fail(c, what);
        path = xasprintf("/v1/media/%s/shares", id);
        free(id);
    } else if (folder) {
        char *ef = client_escape(c, folder);
        path = xasprintf("/v1/folders/shares?path=%s", ef);
        free(ef);
    } else {
        path = xstrdup("/v1/folders/shares");
    }
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "GET", path, NULL, &doc) < 0) {
        code = fail(c, what ? what : "shares");
    } else if (c->json) {
        print_json(doc);
    } else {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(doc, "shares"), i, e)
        {
            const char *via = jstr(e, "folder", NULL);
            if (f == 0)
                printf("%-20s %s%s\n", jstr(e, "user", "?"), via ? "through folder " : "this file",
                       via ? via : "");
            else
                printf("%-40s %s\n", jstr(e, "path", "?"), jstr(e, "user", "?"));
        }
        if (json_array_size(json_object_get(doc, "shares")) == 0 && !c->quiet)
            fprintf(stderr, "dripctl: %s\n", f == 0 ? "shared with no one" : "no folder shares");
    }
    json_decref(doc);
    free(path);
    free(folder);
    return code;
}

/* ---------- public links ---------- */

static void print_link(json_t *l)
{
    const char *url = jstr(l, "url", NULL);
    char count[48];
    if (json_is_integer(json_object_get(l, "max_downloads")))
        snprintf(count, sizeof count, "%lld/%lld", jint(l, "downloads"), jint(l, "max_downloads"));
    else
        snprintf(count, sizeof count, "%lld", jint(l, "downloads"));
    printf("%-26s %-8s %9s %-24s %s %s\n", jstr(l, "id", "?"), jstr(l, "state", "?"), count,
           jstr(l, "expires_at", "never"), jstr(l, "path", "?"),
           url ? url : "(no URL: the owner has no token)");
}

int cmd_link(struct client *c, const struct args *a)
{
    char *id = resolve(c, a->argv[0]);
    if (id == NULL)
        return fail(c, a->argv[0]);
    json_t *body = json_object(), *doc = NULL;
    uint64_t ms = 0;
    if (a->expires && config_parse_duration(a->expires, &ms) == 0)
        json_object_set_new(body, "expires_in", json_integer((json_int_t)(ms / 1000)));
    if (a->max_downloads)
        json_object_set_new(body, "max_downloads", json_integer(atoll(a->max_downloads)));
    char *path = xasprintf("/v1/media/%s/public-links", id);
    int code = EXIT_OK;
    if (client_json(c, "POST", path, body, &doc) < 0) {
        code = fail(c, a->argv[0]);
    } else if (c->json) {
        print_json(doc);
    } else {
        printf("%s\n", jstr(doc, "url", ""));
        if (!c->quiet)
            fprintf(stderr, "dripctl: public link %s to %s%s%s%s%s\n", jstr(doc, "id", "?"),
                    jstr(doc, "path", a->argv[0]), a->expires ? ", expires " : "",
                    a->expires ? jstr(doc, "expires_at", "") : "",
                    a->max_downloads ? ", at most downloads: " : "",
                    a->max_downloads ? a->max_downloads : "");
    }
    json_decref(doc);
    json_decref(body);
    free(path);
    free(id);
    return code;
}

int cmd_links(struct client *c, const struct args *a)
{
    char *path;
    if (a->argc > 0) {
        char *id = resolve(c, a->argv[0]);
        if (id == NULL)
            return fail(c, a->argv[0]);
        path = xasprintf("/v1/public-links?media_id=%s", id);
        free(id);
    } else {
        path = xstrdup("/v1/public-links");
    }
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "GET", path, NULL, &doc) < 0) {
        code = fail(c, "links");
    } else if (c->json) {
        print_json(doc);
    } else {
        size_t i;
        json_t *l;
        printf("%-26s %-8s %9s %-24s %s\n", "id", "state", "downloads", "expires", "path and URL");
        json_array_foreach(json_object_get(doc, "links"), i, l) print_link(l);
    }
    json_decref(doc);
    free(path);
    return code;
}

int cmd_revoke(struct client *c, const struct args *a)
{
    char *el = client_escape(c, a->argv[0]);
    char *path = xasprintf("/v1/public-links/%s", el);
    int code = EXIT_OK;
    if (client_json(c, "DELETE", path, NULL, NULL) < 0) {
        code = fail(c, a->argv[0]);
    } else {
        char *line = xasprintf("revoke %s: ok", a->argv[0]);
        print_ok(c, NULL, line);
        free(line);
    }
    free(path);
    free(el);
    return code;
}

/* ---------- versions and the trash ---------- */

int cmd_versions(struct client *c, const struct args *a)
{
    char *id = resolve(c, a->argv[0]);
    if (id == NULL)
        return fail(c, a->argv[0]);
    char *path = xasprintf("/v1/media/%s/versions", id);
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "GET", path, NULL, &doc) < 0) {
        code = fail(c, a->argv[0]);
    } else if (c->json) {
        print_json(doc);
    } else {
        size_t i;
        json_t *v;
        printf("%-8s %-26s %12s %-24s %s\n", "version", "id", "size", "uploaded", "path");
        json_array_foreach(json_object_get(doc, "versions"), i, v)
        {
            const char *r = jstr(v, "retired", NULL);
            printf("%-8lld %-26s %12lld %-24s %s%s%s\n", jint(v, "version"), jstr(v, "id", "?"),
                   jint(v, "size"), jstr(v, "uploaded_at", "-"), jstr(v, "path", "?"),
                   r == NULL                   ? " (current)"
                   : strcmp(r, "pending") == 0 ? " (uploading)"
                                               : "",
                   r != NULL && strcmp(r, "trash") == 0 ? " (in the trash)" : "");
        }
    }
    json_decref(doc);
    free(path);
    free(id);
    return code;
}

int cmd_restore(struct client *c, const struct args *a)
{
    char *end = NULL;
    long long n = strtoll(a->argv[1], &end, 10);
    if (end == a->argv[1] || *end != '\0' || n <= 0) {
        fprintf(stderr, "dripctl: restore: %s is not a version number (see `versions`)\n",
                a->argv[1]);
        return EXIT_USAGE;
    }
    char *id = resolve(c, a->argv[0]);
    if (id == NULL)
        return fail(c, a->argv[0]);
    char *path = xasprintf("/v1/media/%s/versions/%lld/restore", id, n);
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "POST", path, NULL, &doc) < 0) {
        code = fail(c, a->argv[0]);
    } else {
        char *line = xasprintf("restore %s version %lld: %s is %s again", a->argv[0], n,
                               jstr(doc, "path", "?"), jstr(doc, "id", "?"));
        print_ok(c, doc, line);
        free(line);
    }
    json_decref(doc);
    free(path);
    free(id);
    return code;
}

int cmd_trash(struct client *c, const struct args *a)
{
    (void)a;
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "GET", "/v1/trash", NULL, &doc) < 0) {
        code = fail(c, "trash");
    } else if (c->json) {
        print_json(doc);
    } else {
        size_t i;
        json_t *f;
        printf("%-26s %12s %-24s %-24s %s\n", "id", "size", "deleted", "goes", "path");
        json_array_foreach(json_object_get(doc, "files"), i, f)
            printf("%-26s %12lld %-24s %-24s %s\n", jstr(f, "id", "?"), jint(f, "size"),
                   jstr(f, "retired_at", "?"), jstr(f, "expires_at", "-"), jstr(f, "path", "?"));
        if (json_array_size(json_object_get(doc, "files")) == 0 && !c->quiet)
            fprintf(stderr, "dripctl: the trash is empty\n");
    }
    json_decref(doc);
    return code;
}

int cmd_untrash(struct client *c, const struct args *a)
{
    char *el = client_escape(c, a->argv[0]);
    char *path = xasprintf("/v1/trash/%s/restore", el);
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "POST", path, NULL, &doc) < 0) {
        code = fail(c, a->argv[0]);
    } else {
        char *line = xasprintf("untrash %s: back at %s", a->argv[0], jstr(doc, "path", "?"));
        print_ok(c, doc, line);
        free(line);
    }
    json_decref(doc);
    free(path);
    free(el);
    return code;
}

/* ---------- jobs ---------- */
int cmd_jobs(struct client *c, const struct args *a)
{
    json_t *doc = NULL;
    if (a->argc > 0) {
        char *p = xasprintf("/v1/jobs/%s", a->argv[0]);
        int rc = client_json(c, "GET", p, NULL, &doc);
        free(p);
        if (rc < 0)
            return fail(c, a->argv[0]);
        print_json(doc);
        json_decref(doc);
        return EXIT_OK;
    }
    char *path = xasprintf("/v1/jobs?%s%s%s%s%s", a->state ? "state=" : "",
                           a->state ? a->state : "", a->state && a->limit ? "&" : "",
                           a->limit ? "limit=" : "", a->limit ? a->limit : "");
    int rc = client_json(c, "GET", path, NULL, &doc);
    free(path);
    if (rc < 0)
        return fail(c, "jobs");
    if (c->json) {
        print_json(doc);
    } else {
        size_t i;
        json_t *j;
        printf("%-26s %-8s %-7s %-7s %-26s %s\n", "id", "kind", "state", "stage", "media",
               "updated / error");
        json_array_foreach(json_object_get(doc, "jobs"), i, j)
        {
            const char *err = jstr(j, "error", NULL);
            printf("%-26s %-8s %-7s %-7s %-26s %s\n", jstr(j, "id", "-"), jstr(j, "kind", "-"),
                   jstr(j, "state", "-"), jstr(j, "stage", "-"), jstr(j, "media_id", "-"),
                   err ? err : jstr(j, "updated_at", "-"));
        }
    }
    json_decref(doc);
    return EXIT_OK;
}

/* ---------- watch ---------- */
static int print_event(const char *id, const char *type, const char *data, void *arg)
{
    struct client *c = arg;
    json_t *j = json_loads(data, 0, NULL);
    if (c->json) {
        json_t *o = json_pack("{s:s,s:s,s:O?}", "id", id, "event", type, "data", j);
        json_dumpf(o, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(o);
    } else {
        printf("%-11s job %s %s/%s %s%s\n", type, jstr(j, "id", "?"), jstr(j, "kind", ""),
               jstr(j, "stage", ""), jstr(j, "path", ""),
               json_string_value(json_object_get(j, "error")) ? " error" : "");
    }
    json_decref(j);
    fflush(stdout);
    return 0;
}

int cmd_follow(struct client *c, const char *path, const char *what,
               int (*fn)(const char *id, const char *type, const char *data, void *arg), void *arg,
               const bool *done)
{
    char last[64] = "";
    long retry_ms = 2000;
    int failures = 0;
    for (;;) {
        int rc = client_sse(c, path, last, sizeof last, &retry_ms, fn, arg);
        if (client_interrupted())
            return EXIT_INTERRUPTED;
        if (done != NULL && *done)
            return EXIT_OK;
        long pause = retry_ms;
        if (rc == 0) {
            failures = 0;
            if (!c->quiet)
                fprintf(stderr, "dripctl: %s: the server ended the stream; reconnecting\n", what);
        } else {
            /* Refused (401/403), wrong URL (404), bad request: final. */
            if (c->status >= 400 && c->status < 500)
                return fail(c, what);
            failures++;
            pause = DR_MIN(retry_ms * failures, 30000L);
            if (!c->quiet)
                fprintf(stderr, "dripctl: %s: %s; reconnecting in %ld s\n", what, c->err,
                        (pause + 999) / 1000);
        }
        client_sleep_ms(pause);
        if (client_interrupted())
            return EXIT_INTERRUPTED;
    }
}

int cmd_watch(struct client *c, const struct args *a)
{
    (void)a;
    return cmd_follow(c, "/v1/events", "watch", print_event, c, NULL);
}

/* ---------- admin ---------- */
int cmd_usage(struct client *c, const struct args *a)
{
    (void)a;
    json_t *doc = NULL;
    if (client_json(c, "GET", "/v1/admin/usage", NULL, &doc) < 0)
        return fail(c, "usage");
    if (c->json) {
        print_json(doc);
    } else {
        size_t i;
        json_t *u;
        char sz[32];
        printf("%-4s %-20s %10s %12s\n", "rank", "user", "files", "size");
        json_array_foreach(json_object_get(doc, "users"), i, u)
        {
            human_size((double)jint(u, "bytes"), sz, sizeof sz);
            printf("%-4zu %-20s %10lld %12s\n", i + 1, jstr(u, "user", "?"), jint(u, "files"), sz);
        }
    }
    json_decref(doc);
    return EXIT_OK;
}

/* Start an admin run (POST path) and follow GET /v1/admin/<what> with
 * progress ("<what>: N/M <unit>") until it ends: 0 and *final (caller
 * decrefs), or the exit code of what went wrong. */
static int follow_run(struct client *c, const char *what, const char *post, const char *unit,
                      json_t **final)
{
    char *get = xasprintf("/v1/admin/%s", what);
    json_t *doc = NULL;
    int code = -1;
    bool drawn = false;
    if (client_json(c, "POST", post, NULL, &doc) < 0)
        code = fail(c, what);
    json_decref(doc);
    for (int i = 0; code < 0 && i < 36000; i++) { /* bounded: one hour */
        doc = NULL;
        if (client_json(c, "GET", get, NULL, &doc) < 0) {
            code = fail(c, what);
            break;
        }
        const char *st = jstr(doc, "state", "");
        long long done = jint(doc, "checked"), total = jint(doc, "total");
        if (human_out(c)) {
            fprintf(stderr, c->tty ? "\r%s: %lld/%lld %s" : "%s: %lld/%lld %s\n", what, done, total,
                    unit);
            drawn = c->tty;
        }
        if (strcmp(st, "running") != 0 && strcmp(st, "requested") != 0) {
            *final = doc;
            code = 0;
            break;
        }
        json_decref(doc);
        client_sleep_ms(100);
        if (client_interrupted()) {
            client_local_error(c, EXIT_INTERRUPTED,
                               "interrupted (the %s goes on on the server; rerun to follow it)",
                               what);
            code = fail(c, what);
        }
    }
    if (drawn)
        fputc('\n', stderr);
    if (code < 0) {
        client_local_error(c, EXIT_FAIL, "%s did not finish within an hour", what);
        code = fail(c, what);
    }
    free(get);
    return code;
}

int cmd_reprocess(struct client *c, const struct args *a)
{
    if ((a->argc > 0) == a->all) {
        fprintf(stderr, "dripctl reprocess: give a PATH or --all\n");
        return EXIT_USAGE;
    }
    char *post = xstrdup("/v1/admin/reprocess");
    if (a->argc > 0) {
        char *ep = client_escape(c, a->argv[0]);
        free(post);
        post = xasprintf("/v1/admin/reprocess?path=%s", ep);
        free(ep);
    }
    json_t *doc = NULL;
    int code = follow_run(c, "reprocess", post, "files", &doc);
    free(post);
    if (code != 0)
        return code;
    long long bad = jint(doc, "failed");
    if (c->json) {
        print_json(doc);
    } else {
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(doc, "errors"), k, e) printf(
            "failed %s (%s): %s\n", jstr(e, "id", "?"), jstr(e, "path", ""), jstr(e, "error", ""));
        printf("reprocess: %lld files, %lld processed, %lld failed\n", jint(doc, "checked"),
               jint(doc, "processed"), bad);
    }
    code = strcmp(jstr(doc, "state", ""), "done") != 0 || bad > 0 ? EXIT_FAIL : EXIT_OK;
    json_decref(doc);
    return code;
}

int cmd_scrub(struct client *c, const struct args *a)
{
    (void)a;
    json_t *doc = NULL;
    int code = follow_run(c, "scrub", "/v1/admin/scrub", "objects", &doc);
    if (code != 0)
        return code;
    long long bad = (long long)(json_array_size(json_object_get(doc, "corrupt")) +
                                json_array_size(json_object_get(doc, "missing")));
    if (c->json) {
        print_json(doc);
    } else {
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(doc, "corrupt"), k, e)
            printf("corrupt %s: %s\n", jstr(e, "id", "?"), jstr(e, "error", ""));
        json_array_foreach(json_object_get(doc, "missing"), k, e)
            printf("missing %s\n", jstr(e, "id", "?"));
        json_array_foreach(json_object_get(doc, "orphans"), k, e)
            printf("orphan %s (no media: garbage a delete left behind)\n", jstr(e, "key", "?"));
        printf("scrub: %lld objects checked, %lld bad\n", jint(doc, "checked"), bad);
    }
    json_decref(doc);
    return bad ? EXIT_FAIL : EXIT_OK;
}
