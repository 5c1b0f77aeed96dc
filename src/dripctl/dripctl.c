/* dripctl.c - the command-line client for dripd.
 *
 *   dripctl [--url URL] [--token TOKEN] [--json] [--quiet] COMMAND ...
 *
 * The server and token come from the flags, else DRIPD_URL / DRIPD_TOKEN,
 * else ~/.config/dripctl.yaml (keys url, token, token_file), else
 * http://127.0.0.1:8080. Every command prints human lines, or one JSON
 * document with --json; exit codes are in client.h and dripctl(1).
 */
#include <errno.h>
#include <time.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "client.h"
#include "dripd/util.h"

static void usage(FILE *f)
{
    fputs("usage: dripctl [--url URL] [--token TOKEN] [--json] [--quiet] COMMAND [ARGS]\n"
          "\n"
          "commands:\n"
          "  upload FILE... [--to /folder] [--wait]   resumable (tus) upload; rerun to resume\n"
          "  download ID|PATH [-o FILE]               fetch the plaintext\n"
          "  ls [/folder]                             list a folder\n"
          "  mv ID|PATH NEWPATH                       move or rename\n"
          "  rm ID|PATH                               delete\n"
          "  share ID|PATH USER                       share with another user\n"
          "  jobs [ID] [--state S] [--limit N]        show a job, or list your newest jobs\n"
          "  watch                                    follow job events (SSE)\n"
          "  usage                                    media count and bytes per user (admin)\n"
          "  scrub                                    verify every stored object (admin)\n"
          "\n"
          "environment: DRIPD_URL, DRIPD_TOKEN; file: ~/.config/dripctl.yaml (url, token)\n",
          f);
}

/* A string member of o, or dflt when absent or not a string. */
static const char *jstr(json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : dflt;
}

/* ---------- settings ---------- */
static char *read_first_line(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char line[1024];
    char *r = fgets(line, sizeof line, f) ? xstrdup(line) : NULL;
    fclose(f);
    if (r)
        r[strcspn(r, "\r\n")] = '\0';
    return r;
}

/* A flat YAML mapping of strings: url, token, token_file. */
static void load_rc(char **url, char **token)
{
    const char *home = getenv("HOME");
    const char *xdg = getenv("XDG_CONFIG_HOME");
    char *path = xdg    ? xasprintf("%s/dripctl.yaml", xdg)
                 : home ? xasprintf("%s/.config/dripctl.yaml", home)
                        : NULL;
    FILE *f = path ? fopen(path, "r") : NULL;
    free(path);
    if (f == NULL)
        return;
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    char *key = NULL;
    int depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev))
            break;
        int done = ev.type == YAML_STREAM_END_EVENT;
        if (ev.type == YAML_MAPPING_START_EVENT)
            depth++;
        else if (ev.type == YAML_MAPPING_END_EVENT)
            depth--;
        else if (ev.type == YAML_SCALAR_EVENT && depth == 1) {
            const char *v = (const char *)ev.data.scalar.value;
            if (key == NULL) {
                key = xstrdup(v);
            } else {
                if (strcmp(key, "url") == 0 && *url == NULL)
                    *url = xstrdup(v);
                else if (strcmp(key, "token") == 0 && *token == NULL)
                    *token = xstrdup(v);
                else if (strcmp(key, "token_file") == 0 && *token == NULL)
                    *token = read_first_line(v);
                free(key);
                key = NULL;
            }
        }
        yaml_event_delete(&ev);
        if (done)
            break;
    }
    free(key);
    yaml_parser_delete(&p);
    fclose(f);
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

/* ---------- output ---------- */
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

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_INDENT(2));
    putchar('\n');
}

/* ID or /path -> media id (heap). */
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
            if (strcmp(jstr(m, "name", ""), slash + 1) == 0)
                id = xstrdup(json_string_value(json_object_get(m, "id")));
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

/* ---------- commands ---------- */
static int wait_job(struct client *c, const char *job, json_t **out)
{
    char *path = xasprintf("/v1/jobs/%s", job);
    int rc = -1;
    for (int i = 0; i < 6000; i++) { /* bounded: 10 minutes */
        json_t *doc = NULL;
        if (client_json(c, "GET", path, NULL, &doc) < 0)
            break;
        const char *st = json_string_value(json_object_get(doc, "state"));
        if (st && (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0)) {
            *out = doc;
            rc = 0;
            break;
        }
        json_decref(doc);
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
    free(path);
    return rc;
}

static int cmd_upload(struct client *c, int argc, char **argv)
{
    const char *to = "/";
    int wait = 0;
    uint64_t chunk = 8u << 20, limit = 0;
    static const struct option opts[] = {{"to", required_argument, 0, 't'},
                                         {"wait", no_argument, 0, 'w'},
                                         {"chunk-size", required_argument, 0, 'c'},
                                         {"limit-rate", required_argument, 0, 'l'},
                                         {0, 0, 0, 0}};
    optind = 0; /* glibc: 0 re-initialises getopt after the "+" pass in main */
    int o;
    while ((o = getopt_long(argc, argv, "t:w", opts, NULL)) != -1) {
        if (o == 't')
            to = optarg;
        else if (o == 'w')
            wait = 1;
        else if (o == 'c')
            chunk = strtoull(optarg, NULL, 10);
        else if (o == 'l')
            limit = strtoull(optarg, NULL, 10);
        else
            return EXIT_USAGE;
    }
    if (optind >= argc || chunk == 0) {
        fprintf(stderr, "usage: dripctl upload FILE... [--to /folder] [--wait]\n");
        return EXIT_USAGE;
    }
    char *sf = state_file();
    json_t *all = json_array();
    int code = EXIT_OK;
    for (int i = optind; i < argc; i++) {
        char job[64] = "", media[64] = "";
        uint64_t resumed = 0;
        if (client_tus_upload(c, argv[i], to, sf, chunk, limit, job, media, &resumed) < 0) {
            code = fail(c, argv[i]);
            break;
        }
        if (resumed && !c->json && !c->quiet)
            fprintf(stderr, "%s: resumed at byte %llu\n", argv[i], (unsigned long long)resumed);
        json_t *r = json_pack("{s:s,s:s,s:s,s:s,s:I}", "file", argv[i], "folder", to, "job_id", job,
                              "media_id", media, "resumed_at", (json_int_t)resumed);
        if (wait && job[0]) {
            json_t *j = NULL;
            if (wait_job(c, job, &j) == 0) {
                json_object_set(r, "job", j);
                const char *st = json_string_value(json_object_get(j, "state"));
                if (st && strcmp(st, "failed") == 0) {
                    snprintf(c->err, sizeof c->err, "job %s failed: %s", job,
                             jstr(j, "error", "?"));
                    c->status = 0;
                    code = fail(c, argv[i]);
                }
                json_decref(j);
            }
        }
        if (!c->json && !c->quiet)
            printf("%s -> %s (media %s, job %s)\n", argv[i], to, media, job);
        json_array_append_new(all, r);
        if (code != EXIT_OK)
            break;
    }
    if (c->json && code == EXIT_OK)
        print_json(all);
    json_decref(all);
    free(sf);
    return code;
}

static int cmd_download(struct client *c, int argc, char **argv)
{
    const char *out = NULL;
    optind = 0; /* glibc: 0 re-initialises getopt after the "+" pass in main */
    int o;
    while ((o = getopt(argc, argv, "o:")) != -1) {
        if (o == 'o')
            out = optarg;
        else
            return EXIT_USAGE;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: dripctl download ID|PATH [-o FILE]\n");
        return EXIT_USAGE;
    }
    char *id = resolve(c, argv[optind]);
    if (id == NULL)
        return fail(c, argv[optind]);
    char *path = xasprintf("/v1/media/%s", id);
    json_t *m = NULL;
    int code = EXIT_OK;
    if (client_json(c, "GET", path, NULL, &m) < 0) {
        code = fail(c, argv[optind]);
        goto out;
    }
    const char *name = json_string_value(json_object_get(m, "name"));
    const char *dst = out ? out : name ? name : id;
    char *cpath = xasprintf("/v1/media/%s/content", id);
    if (client_download(c, cpath, dst, name ? name : id) < 0)
        code = fail(c, argv[optind]);
    else if (c->json) {
        json_object_set_new(m, "saved_to", json_string(dst));
        print_json(m);
    } else if (!c->quiet)
        printf("%s -> %s\n", argv[optind], dst);
    free(cpath);
out:
    json_decref(m);
    free(path);
    free(id);
    return code;
}

static int cmd_ls(struct client *c, int argc, char **argv)
{
    const char *folder = argc > 1 ? argv[1] : "/";
    char *ef = client_escape(c, folder);
    char *path = xasprintf("/v1/media?folder=%s", ef);
    json_t *doc = NULL;
    int code = EXIT_OK;
    if (client_json(c, "GET", path, NULL, &doc) < 0)
        code = fail(c, folder);
    else if (c->json)
        print_json(doc);
    else {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(doc, "folders"), i, e)
        {
            printf("%-28s  %12lld  %lld files\n", json_string_value(json_object_get(e, "name")),
                   (long long)json_integer_value(json_object_get(e, "size")),
                   (long long)json_integer_value(json_object_get(e, "files")));
        }
        json_array_foreach(json_object_get(doc, "files"), i, e)
        {
            printf("%-26s  %12lld  %-10s %s\n", json_string_value(json_object_get(e, "id")),
                   (long long)json_integer_value(json_object_get(e, "size")), jstr(e, "state", ""),
                   jstr(e, "name", ""));
        }
    }
    json_decref(doc);
    free(path);
    free(ef);
    return code;
}

/* mv / rm / share: one request on a resolved media id. */
static int cmd_media_op(struct client *c, const char *cmd, int argc, char **argv)
{
    int need = strcmp(cmd, "rm") == 0 ? 2 : 3;
    if (argc != need) {
        fprintf(stderr, "usage: dripctl %s ID|PATH%s\n", cmd,
                need == 2                ? ""
                : strcmp(cmd, "mv") == 0 ? " NEWPATH"
                                         : " USER");
        return EXIT_USAGE;
    }
    char *id = resolve(c, argv[1]);
    if (id == NULL)
        return fail(c, argv[1]);
    char *path = NULL;
    json_t *body = NULL, *doc = NULL;
    const char *method;
    if (strcmp(cmd, "mv") == 0) {
        method = "PATCH";
        path = xasprintf("/v1/media/%s", id);
        body = json_pack("{s:s}", "path", argv[2]);
    } else if (strcmp(cmd, "rm") == 0) {
        method = "DELETE";
        path = xasprintf("/v1/media/%s", id);
    } else {
        method = "POST";
        path = xasprintf("/v1/media/%s/shares", id);
        body = json_pack("{s:s}", "user", argv[2]);
    }
    int code = EXIT_OK;
    if (client_json(c, method, path, body, &doc) < 0)
        code = fail(c, argv[1]);
    else if (c->json) {
        json_t *o = doc ? json_incref(doc) : json_pack("{s:b,s:s}", "ok", 1, "id", id);
        print_json(o);
        json_decref(o);
    } else if (!c->quiet)
        printf("%s %s: ok\n", cmd, argv[1]);
    json_decref(doc);
    json_decref(body);
    free(path);
    free(id);
    return code;
}

static int cmd_get(struct client *c, const char *path, const char *what)
{
    json_t *doc = NULL;
    if (client_json(c, "GET", path, NULL, &doc) < 0)
        return fail(c, what);
    print_json(doc);
    json_decref(doc);
    return EXIT_OK;
}

/* jobs [ID] [--state S] [--limit N]: one job, or the caller's newest. */
static int cmd_jobs(struct client *c, int argc, char **argv)
{
    const char *id = NULL, *state = NULL, *limit = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--state") == 0 && i + 1 < argc)
            state = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
            limit = argv[++i];
        else if (argv[i][0] != '-' && id == NULL)
            id = argv[i];
        else {
            fprintf(stderr, "usage: dripctl jobs [ID] [--state S] [--limit N]\n");
            return EXIT_USAGE;
        }
    }
    if (id != NULL) {
        char *p = xasprintf("/v1/jobs/%s", id);
        int code = cmd_get(c, p, id);
        free(p);
        return code;
    }
    char *es = state ? client_escape(c, state) : NULL, *el = limit ? client_escape(c, limit) : NULL;
    char *path = xasprintf("/v1/jobs?%s%s%s%s%s", es ? "state=" : "", es ? es : "",
                           es && el ? "&" : "", el ? "limit=" : "", el ? el : "");
    free(es);
    free(el);
    json_t *doc = NULL;
    int rc = client_json(c, "GET", path, NULL, &doc);
    free(path);
    if (rc < 0)
        return fail(c, "jobs");
    if (c->json)
        print_json(doc);
    else {
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

static int cmd_usage(struct client *c)
{
    json_t *doc = NULL;
    if (client_json(c, "GET", "/v1/admin/usage", NULL, &doc) < 0)
        return fail(c, "usage");
    if (c->json)
        print_json(doc);
    else {
        size_t i;
        json_t *u;
        printf("%-4s %-20s %10s %16s\n", "rank", "user", "files", "bytes");
        json_array_foreach(json_object_get(doc, "users"), i, u)
        {
            printf("%-4zu %-20s %10lld %16lld\n", i + 1,
                   json_string_value(json_object_get(u, "user")),
                   (long long)json_integer_value(json_object_get(u, "files")),
                   (long long)json_integer_value(json_object_get(u, "bytes")));
        }
    }
    json_decref(doc);
    return EXIT_OK;
}

static int cmd_scrub(struct client *c)
{
    json_t *doc = NULL;
    if (client_json(c, "POST", "/v1/admin/scrub", NULL, &doc) < 0)
        return fail(c, "scrub");
    json_decref(doc);
    for (int i = 0; i < 36000; i++) { /* bounded: one hour */
        doc = NULL;
        if (client_json(c, "GET", "/v1/admin/scrub", NULL, &doc) < 0)
            return fail(c, "scrub");
        const char *st = json_string_value(json_object_get(doc, "state"));
        long long done = json_integer_value(json_object_get(doc, "checked"));
        long long total = json_integer_value(json_object_get(doc, "total"));
        if (!c->json && !c->quiet)
            fprintf(stderr, c->tty ? "\rscrub: %lld/%lld objects" : "scrub: %lld/%lld objects\n",
                    done, total);
        if (st && strcmp(st, "running") != 0 && strcmp(st, "requested") != 0) {
            if (c->tty && !c->json && !c->quiet)
                fputc('\n', stderr);
            long long bad = json_array_size(json_object_get(doc, "corrupt")) +
                            json_array_size(json_object_get(doc, "missing"));
            if (c->json)
                print_json(doc);
            else {
                size_t k;
                json_t *e;
                json_array_foreach(json_object_get(doc, "corrupt"), k, e)
                    printf("corrupt %s: %s\n", json_string_value(json_object_get(e, "id")),
                           jstr(e, "error", ""));
                json_array_foreach(json_object_get(doc, "missing"), k, e)
                    printf("missing %s\n", json_string_value(json_object_get(e, "id")));
                printf("scrub: %lld objects checked, %lld bad\n", done, bad);
            }
            json_decref(doc);
            return bad ? EXIT_FAIL : EXIT_OK;
        }
        json_decref(doc);
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
    snprintf(c->err, sizeof c->err, "scrub did not finish within an hour");
    return fail(c, "scrub");
}

static int print_event(const char *type, const char *data, void *arg)
{
    struct client *c = arg;
    if (c->json)
        printf("{\"event\":\"%s\",\"data\":%s}\n", type, data);
    else {
        json_t *j = json_loads(data, 0, NULL);
        printf("%-11s job %s %s/%s %s%s\n", type, jstr(j, "id", "?"), jstr(j, "kind", ""),
               jstr(j, "stage", ""), jstr(j, "path", ""),
               json_string_value(json_object_get(j, "error")) ? " error" : "");
        json_decref(j);
    }
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    struct client c = {0};
    char *url = NULL, *token = NULL;
    static const struct option opts[] = {{"url", required_argument, 0, 'u'},
                                         {"token", required_argument, 0, 'T'},
                                         {"json", no_argument, 0, 'j'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {0, 0, 0, 0}};
    int o;
    /* "+": stop at the command, whose own options are parsed by it. */
    while ((o = getopt_long(argc, argv, "+u:T:jqh", opts, NULL)) != -1) {
        switch (o) {
        case 'u':
            url = xstrdup(optarg);
            break;
        case 'T':
            token = xstrdup(optarg);
            break;
        case 'j':
            c.json = true;
            break;
        case 'q':
            c.quiet = true;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case 'V':
            printf("dripctl %s\n", DRIPD_VERSION);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (url == NULL && getenv("DRIPD_URL"))
        url = xstrdup(getenv("DRIPD_URL"));
    if (token == NULL && getenv("DRIPD_TOKEN"))
        token = xstrdup(getenv("DRIPD_TOKEN"));
    load_rc(&url, &token);
    if (url == NULL)
        url = xstrdup("http://127.0.0.1:8080");
    size_t ul = strlen(url);
    while (ul > 0 && url[ul - 1] == '/')
        url[--ul] = '\0';
    c.url = url;
    c.token = token;
    if (client_init(&c) < 0) {
        fprintf(stderr, "dripctl: cannot initialise libcurl\n");
        return EXIT_FAIL;
    }
    const char *cmd = argv[optind];
    int cargc = argc - optind;
    char **cargv = argv + optind;
    int code;
    if (strcmp(cmd, "upload") == 0)
        code = cmd_upload(&c, cargc, cargv);
    else if (strcmp(cmd, "download") == 0)
        code = cmd_download(&c, cargc, cargv);
    else if (strcmp(cmd, "ls") == 0)
        code = cmd_ls(&c, cargc, cargv);
    else if (strcmp(cmd, "mv") == 0 || strcmp(cmd, "rm") == 0 || strcmp(cmd, "share") == 0)
        code = cmd_media_op(&c, cmd, cargc, cargv);
    else if (strcmp(cmd, "jobs") == 0)
        code = cmd_jobs(&c, cargc, cargv);
    else if (strcmp(cmd, "watch") == 0)
        code = client_sse(&c, "/v1/events", print_event, &c) < 0 ? fail(&c, "watch") : EXIT_OK;
    else if (strcmp(cmd, "usage") == 0)
        code = cmd_usage(&c);
    else if (strcmp(cmd, "scrub") == 0)
        code = cmd_scrub(&c);
    else {
        fprintf(stderr, "dripctl: unknown command '%s'\n", cmd);
        usage(stderr);
        code = EXIT_USAGE;
    }
    client_cleanup(&c);
    free(url);
    free(token);
    return code;
}
