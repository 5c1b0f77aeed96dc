/* dripctl.c - the command-line client for dripd: settings, the command
 * line and help; the commands themselves are in commands.c.
 *
 *   dripctl [OPTIONS] COMMAND [ARGS] [OPTIONS]
 *
 * Options go anywhere, before or after the command and among its
 * arguments, as with git subcommands, docker and aws: the global ones
 * (--url, --token, --json, --quiet) and the command's own. `--` ends the
 * options. `dripctl CMD --help` and `dripctl help CMD` print that
 * command's help. A usage error exits 2 with one line saying what is
 * wrong and a pointer to the help.
 *
 * The server and token come from the flags, else DRIPD_URL / DRIPD_TOKEN,
 * else ~/.config/dripctl.yaml (keys url, token, token_file; another key is
 * a warning), else http://127.0.0.1:8080. Exit codes are in client.h,
 * README.md and dripctl(1).
 *
 * Threads: one.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "client.h"
#include "commands.h"
#include "top.h"
#include "dripd/config.h"
#include "dripd/util.h"

/* ---------- the commands ---------- */
enum {
    OPT_CHUNK = 256,
    OPT_LIMIT_RATE,
    OPT_STATE,
    OPT_LIMIT,
    OPT_VARIANT,
    OPT_ALL,
    OPT_EXPIRES,
    OPT_MAX_DOWNLOADS,
    OPT_IF_MATCH,
    OPT_REPLACE,
    OPT_CONFLICT,
    OPT_PARALLEL,
};

#define NO_OPTS                                                                                    \
    {                                                                                              \
        {                                                                                          \
            0, 0, 0, 0                                                                             \
        }                                                                                          \
    }

struct command {
    const char *name;
    const char *synopsis; /* after "dripctl NAME" */
    const char *summary;  /* one line for the overview */
    const char *help;     /* the rest of `dripctl NAME --help` */
    int min_args, max_args;
    int (*run)(struct client *c, const struct args *a);
    const char *shortopts;
    struct option opts[10];
};

static const struct command commands[] = {
    {"upload",
     "FILE... [--to /folder] [--wait] [--parallel N] [--replace | --if-match ETAG | "
     "--conflict=rename]",
     "resumable (tus) upload; rerun to resume",
     "Upload files into a folder (default /), each under its own name. An\n"
     "interrupted upload (Ctrl-C, a lost connection) resumes where the server's\n"
     "durable offset stands when the same command runs again. With several\n"
     "files a failure does not stop the others: a summary follows and the exit\n"
     "code is the first failure's. A name that is taken is a conflict (exit 5)\n"
     "unless one of --replace, --if-match or --conflict says otherwise; a\n"
     "replaced file's previous version is kept when the server keeps versions.\n"
     "\n"
     "  -t, --to FOLDER     the folder to upload into (default /)\n"
     "  -w, --wait          wait until each upload's job is done (or failed)\n"
     "      --replace       replace a file of the same name, whatever its content\n"
     "      --if-match ETAG replace the file only while its ETag is ETAG (exit 5\n"
     "                      when it changed meanwhile, or there is none)\n"
     "      --conflict=rename  keep both: a taken name gets a free one (cat (1).jpg)\n"
     "      --parallel N    send each file as N parts at once (2 to 16; tus\n"
     "                      concatenation), joined on the server; rerun resumes\n"
     "                      each part\n"
     "      --chunk-size N  bytes per PATCH request (default 8M; K, M, G suffixes)\n"
     "      --limit-rate N  at most N bytes/s (K, M, G suffixes; per part)\n",
     1,
     -1,
     cmd_upload,
     "t:w",
     {{"to", required_argument, 0, 't'},
      {"wait", no_argument, 0, 'w'},
      {"chunk-size", required_argument, 0, OPT_CHUNK},
      {"limit-rate", required_argument, 0, OPT_LIMIT_RATE},
      {"replace", no_argument, 0, OPT_REPLACE},
      {"if-match", required_argument, 0, OPT_IF_MATCH},
      {"conflict", required_argument, 0, OPT_CONFLICT},
      {"parallel", required_argument, 0, OPT_PARALLEL},
      {0, 0, 0, 0}}},
    {"download",
     "ID|PATH [-o FILE|DIR|-] [--force] [--variant NAME]",
     "fetch the plaintext (or a thumbnail, preview, poster)",
     "Save a file's plaintext. Without -o it goes into the current directory\n"
     "under the file's name, but never over an existing file (unless --force)\n"
     "and never as a hidden file (a name starting with a dot).\n"
     "\n"
     "  -o, --output FILE   save as FILE (replaced if it exists); a directory\n"
     "                      keeps the file's name; - writes to stdout\n"
     "  -f, --force         replace an existing file of the same name\n"
     "      --variant NAME  a processed variant instead (thumb, preview, ...: the\n"
     "                      server's processing.variants), saved as\n"
     "                      NAME.VARIANT.EXT; exit 4 if it does not exist or\n"
     "                      failed, 5 while it is still being made\n",
     1,
     1,
     cmd_download,
     "o:f",
     {{"output", required_argument, 0, 'o'},
      {"force", no_argument, 0, 'f'},
      {"variant", required_argument, 0, OPT_VARIANT},
      {0, 0, 0, 0}}},
    {"ls", "[/folder]", "list a folder",
     "List a folder's subfolders (with the number of files and the size of\n"
     "everything below them) and files (id, size, state, name; the width x\n"
     "height of photos, videos and PDFs, a video's or a song's duration;\n"
     "files shared with you say by whom).\n",
     0, 1, cmd_ls, "", NO_OPTS},
    {"mkdir", "/FOLDER", "make a folder",
     "Make a folder (its parents need not exist). It stays, empty or not,\n"
     "until it is deleted; making one that exists is no error.\n",
     1, 1, cmd_mkdir, "", NO_OPTS},
    {"mv", "ID|PATH|FOLDER NEWPATH", "move or rename a file or a folder",
     "Move or rename a file, or a folder with everything in it (a path that\n"
     "ends in / or names one of your folders; one transaction on the server),\n"
     "as mv(1) does: a NEWPATH that ends in / or names an existing folder\n"
     "receives it under its own name; any other NEWPATH is its new full path.\n",
     2, 2, cmd_mv, "", NO_OPTS},
    {"rm",
     "ID|PATH [-r FOLDER]",
     "delete a file, or a folder with -r",
     "Delete a file (its stored objects go too). With -r, delete a folder with\n"
     "everything in it. Only the owner may.\n"
     "\n"
     "  -r, --recursive   PATH is a folder: delete it and all that is in it\n",
     1,
     1,
     cmd_rm,
     "r",
     {{"recursive", no_argument, 0, 'r'}, {0, 0, 0, 0}}},
    {"share", "ID|PATH|FOLDER USER", "share a file or a folder with another user",
     "Let another user see and download a file, or everything in a folder (a\n"
     "path that ends in / or names one of your folders). A folder share covers\n"
     "the files put there later too, and no longer those moved out; `unshare`\n"
     "takes it back. Only the owner may.\n",
     2, 2, cmd_share, "", NO_OPTS},
    {"unshare", "ID|PATH|FOLDER USER", "stop sharing a file or a folder",
     "Take back a share made with `share`: of one file, or of a folder (a path\n"
     "that ends in / or names one of your folders). A file that is also inside\n"
     "a shared folder stays visible until that folder is unshared too.\n",
     2, 2, cmd_unshare, "", NO_OPTS},
    {"shares", "[ID|PATH|FOLDER]", "who a file is shared with; your folder shares",
     "For a file: the users it is shared with, on its own or through a shared\n"
     "folder (which one). For a folder, or with no argument: your folder\n"
     "shares (of that folder only).\n",
     0, 1, cmd_shares, "", NO_OPTS},
    {"link",
     "ID|PATH [--expires D] [--max-downloads N]",
     "make a public link (no token needed to download)",
     "Make a public link to a file: a URL anyone may download it from, without\n"
     "a token, until it expires, has been used N times, or is revoked\n"
     "(`links` lists them, `revoke` takes one back). Prints the URL.\n"
     "\n"
     "  --expires D         valid for D: seconds, or 30m, 12h, 7d (default: no expiry)\n"
     "  --max-downloads N   at most N downloads (a resumed download counts once)\n",
     1,
     1,
     cmd_link,
     "",
     {{"expires", required_argument, 0, OPT_EXPIRES},
      {"max-downloads", required_argument, 0, OPT_MAX_DOWNLOADS},
      {0, 0, 0, 0}}},
    {"links", "[ID|PATH]", "list your public links",
     "List your public links, newest first (of one file with an argument): id,\n"
     "state (active, expired, used up), downloads, expiry, path and URL.\n",
     0, 1, cmd_links, "", NO_OPTS},
    {"revoke", "LINK_ID", "revoke a public link",
     "Revoke a public link (its id is in `links`): its URL stops working at\n"
     "once. Other links to the same file are not affected.\n",
     1, 1, cmd_revoke, "", NO_OPTS},
    {"versions", "ID|PATH", "list a file's versions",
     "List a file's versions, the current one first, then the earlier ones the\n"
     "server keeps (versions.keep), newest first: version, id, size, when it\n"
     "was uploaded. An upload with If-Match makes a new version.\n",
     1, 1, cmd_versions, "", NO_OPTS},
    {"restore", "ID|PATH N", "make version N the file again",
     "Make version N of a file (see `versions`) the current one, at the file's\n"
     "path; the version it replaces is kept as an earlier version.\n",
     2, 2, cmd_restore, "", NO_OPTS},
    {"trash", "", "list your trash",
     "List the files you deleted that are still in the trash (trash.ttl):\n"
     "id, size, when deleted, when they go for good, path. `untrash` restores\n"
     "one; `rm ID` on one deletes it for good.\n",
     0, 0, cmd_trash, "", NO_OPTS},
    {"untrash", "ID", "restore a file from the trash",
     "Put a file from the trash (its id is in `trash`) back at its path; fails\n"
     "if that path is taken meanwhile.\n",
     1, 1, cmd_untrash, "", NO_OPTS},
    {"jobs",
     "[ID] [--state S] [--limit N]",
     "show a job, or list your newest jobs",
     "Show one job, or list your newest jobs.\n"
     "\n"
     "  --state S   only jobs in state S: queued, running, done or failed\n"
     "  --limit N   at most N jobs, 1 to 1000 (default 50)\n",
     0,
     1,
     cmd_jobs,
     "",
     {{"state", required_argument, 0, OPT_STATE},
      {"limit", required_argument, 0, OPT_LIMIT},
      {0, 0, 0, 0}}},
    {"watch", "", "follow job events as they happen",
     "Print your job events as they happen (Server-Sent Events). When the\n"
     "connection drops or the server restarts, reconnect and carry on from the\n"
     "last event seen (Last-Event-ID), so none is missed. Runs until Ctrl-C.\n",
     0, 0, cmd_watch, "", NO_OPTS},
    {"top",
     "[-n N]",
     "the pipeline live: stages, queues, rates, errors (admin)",
     "Show the pipeline as it runs, like top(1): each stage of the upload and\n"
     "download pipelines with its queue, jobs in flight, threads, jobs/s, busy\n"
     "share, p50/p99 and its queue over the last minutes; the bottleneck; the\n"
     "front end's intake; retries, failures and the last errors with their\n"
     "jobs; worker restarts (admin). On a terminal it redraws in place every\n"
     "second; otherwise it prints plain text, one block per second; with --json\n"
     "one JSON line per snapshot (GET /v1/admin/pipeline's document).\n"
     "\n"
     "  -n N   stop after N snapshots (default: until Ctrl-C)\n",
     0,
     0,
     cmd_top,
     "n:",
     {{"iterations", required_argument, 0, 'n'}, {0, 0, 0, 0}}},
    {"usage", "", "media count and size per user (admin)",
     "Rank users by the bytes they store, with their file counts (admin).\n", 0, 0, cmd_usage, "",
     NO_OPTS},
    {"reprocess",
     "[PATH|--all]",
     "make thumbnails, previews and metadata again (admin)",
     "Make the variants and metadata of stored files again, e.g. after a change\n"
     "of processing.variants or for files stored before processing existed: the\n"
     "file at PATH, everything under the folder PATH, or --all. A rate-limited\n"
     "batch on the server (processing.rate_limit); progress is shown, and the\n"
     "exit code is 1 if any file failed (admin).\n"
     "\n"
     "  --all   every stored file\n",
     0,
     1,
     cmd_reprocess,
     "",
     {{"all", no_argument, 0, OPT_ALL}, {0, 0, 0, 0}}},
    {"scrub", "", "verify every stored object (admin)",
     "Re-verify every stored object (tags and SHA-256) with progress; list what\n"
     "is corrupt or missing and exit 1 if anything is (admin).\n",
     0, 0, cmd_scrub, "", NO_OPTS},
};

static const char *const global_help =
    "options (anywhere on the line):\n"
    "  --url URL       the server (default $DRIPD_URL, the config file, then\n"
    "                  http://127.0.0.1:8080)\n"
    "  --token TOKEN   bearer token (default $DRIPD_TOKEN, then the config file)\n"
    "  --cacert FILE   trust the CA certificates in FILE (PEM) for an https://\n"
    "                  server (default $DRIPD_CACERT, then the system's CAs)\n"
    "  -j, --json      print one JSON document, errors included\n"
    "  -q, --quiet     no progress or summary output\n"
    "  -h, --help      this help; `dripctl help COMMAND` for a command's\n"
    "      --version\n"
    "\n"
    "config file: ~/.config/dripctl.yaml (url:, token: or token_file:)\n"
    "exit codes: 0 ok, 1 failure, 2 usage, 3 auth (401/403), 4 not found,\n"
    "            5 conflict (409), 6 busy (503), 130 interrupted (Ctrl-C)\n";

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < DR_ARRAY_LEN(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void overview(FILE *f)
{
    fputs("usage: dripctl [OPTIONS] COMMAND [ARGS]\n\ncommands:\n", f);
    for (size_t i = 0; i < DR_ARRAY_LEN(commands); i++) {
        char *head = xasprintf("%s %s", commands[i].name, commands[i].synopsis);
        fprintf(f, "  %-44s %s\n", head, commands[i].summary);
        free(head);
    }
    fputc('\n', f);
    fputs(global_help, f);
}

static void command_help(const struct command *cmd, FILE *f)
{
    fprintf(f, "usage: dripctl %s %s\n\n%s\n%s", cmd->name, cmd->synopsis, cmd->help, global_help);
}

static int usage_error(const struct command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One line saying what is wrong, then where the help is; EXIT_USAGE. */
static int usage_error(const struct command *cmd, const char *fmt, ...)
{
    fprintf(stderr, "dripctl%s%s: ", cmd ? " " : "", cmd ? cmd->name : "");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nusage: dripctl %s %s\n(dripctl %s --help for more)\n", cmd->name,
                cmd->synopsis, cmd->name);
    else
        fputs("\n(dripctl --help for the commands)\n", stderr);
    return EXIT_USAGE;
}

/* "8M", "512k", "1G", "4096" -> bytes; false when not a positive size. */
static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return false;
    uint64_t mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1024;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1024 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1024ull * 1024 * 1024;
        end++;
        break;
    }
    if (*end == 'i' || *end == 'B') /* KiB, MB... */
        end += *end == 'i' && end[1] == 'B' ? 2 : 1;
    if (*end != '\0' || v == 0 || v > UINT64_MAX / mul)
        return false;
    *out = v * mul;
    return true;
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

/* A flat YAML mapping of strings: url, token, token_file. Anything else,
 * and a file that does not parse, is a warning on stderr
 * (FILE:LINE:COL: ...), never silence and never fatal. */
static void load_rc(char **url, char **token)
{
    const char *home = getenv("HOME");
    const char *xdg = getenv("XDG_CONFIG_HOME");
    char *path = xdg    ? xasprintf("%s/dripctl.yaml", xdg)
                 : home ? xasprintf("%s/.config/dripctl.yaml", home)
                        : NULL;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f == NULL) {
        free(path);
        return;
    }
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    char *key = NULL;
    int depth = 0, seq = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            fprintf(stderr, "dripctl: warning: %s:%zu:%zu: %s; the file is ignored from there\n",
                    path, p.problem_mark.line + 1, p.problem_mark.column + 1,
                    p.problem ? p.problem : "cannot parse");
            break;
        }
        int done = ev.type == YAML_STREAM_END_EVENT;
        size_t line = ev.start_mark.line + 1, col = ev.start_mark.column + 1;
        if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT) {
            if (depth == 1 && key) { /* a key whose value is not a string */
                fprintf(stderr, "dripctl: warning: %s:%zu:%zu: %s: want a string; ignored\n", path,
                        line, col, key);
                free(key);
                key = NULL;
            }
            depth++;
            seq += ev.type == YAML_SEQUENCE_START_EVENT;
        } else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            depth--;
        } else if (ev.type == YAML_SCALAR_EVENT && depth == 1 && seq == 0) {
            const char *v = (const char *)ev.data.scalar.value;
            if (key == NULL) {
                if (strcmp(v, "url") != 0 && strcmp(v, "token") != 0 &&
                    strcmp(v, "token_file") != 0)
                    fprintf(stderr,
                            "dripctl: warning: %s:%zu:%zu: unknown key \"%s\" (known: url, "
                            "token, token_file); ignored\n",
                            path, line, col, v);
                key = xstrdup(v);
            } else {
                if (strcmp(key, "url") == 0 && *url == NULL) {
                    *url = xstrdup(v);
                } else if (strcmp(key, "token") == 0 && *token == NULL) {
                    *token = xstrdup(v);
                } else if (strcmp(key, "token_file") == 0 && *token == NULL) {
                    *token = read_first_line(v);
                    if (*token == NULL)
                        fprintf(stderr, "dripctl: warning: %s:%zu:%zu: token_file %s: %s\n", path,
                                line, col, v, strerror(errno));
                }
                free(key);
                key = NULL;
            }
        } else if (ev.type == YAML_SCALAR_EVENT && depth == 0) {
            fprintf(stderr,
                    "dripctl: warning: %s:%zu:%zu: want a mapping (url: ..., token: ...); "
                    "ignored\n",
                    path, line, col);
        }
        yaml_event_delete(&ev);
        if (done)
            break;
    }
    free(key);
    yaml_parser_delete(&p);
    fclose(f);
    free(path);
}

/* ---------- the command line ---------- */
static const struct option global_opts[] = {
    {"url", required_argument, 0, 'u'},    {"token", required_argument, 0, 'T'},
    {"cacert", required_argument, 0, 'C'}, {"json", no_argument, 0, 'j'},
    {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, 'V'},
};
#define GLOBAL_SHORT "jqh"

/* The command word: the first argument that is not an option (nor the
 * value of a global option that takes one). NULL when there is none. */
static const char *find_command_word(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            return i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' || a[1] == '\0')
            return a;
        if ((strcmp(a, "--url") == 0 || strcmp(a, "--token") == 0 || strcmp(a, "--cacert") == 0) &&
            i + 1 < argc)
            i++;
    }
    return NULL;
}

struct globals {
    char *url, *token, *cacert;
    bool json, quiet, help, version;
};

/* Parse every option of the whole line (global and cmd's own; cmd may be
 * NULL) into g and a; the positional arguments, command word first, end
 * up in argv[*first..argc). EXIT_OK, or EXIT_USAGE after a message. */
static int parse(int argc, char **argv, const struct command *cmd, struct globals *g,
                 struct args *a, int *first)
{
    struct option opts[DR_ARRAY_LEN(global_opts) + DR_ARRAY_LEN(((struct command *)NULL)->opts)];
    size_t n = 0;
    for (size_t i = 0; i < DR_ARRAY_LEN(global_opts); i++)
        opts[n++] = global_opts[i];
    for (size_t i = 0; cmd && cmd->opts[i].name; i++)
        opts[n++] = cmd->opts[i];
    opts[n] = (struct option){0, 0, 0, 0};
    /* ":" first: a missing value is ':' rather than '?'; "+" never, so
     * options and arguments mix in any order. */
    char *shortopts = xasprintf(":%s%s", GLOBAL_SHORT, cmd ? cmd->shortopts : "");
    opterr = 0;
    optind = 0; /* glibc: a full re-initialisation */
    int o, rc = EXIT_OK;
    while (rc == EXIT_OK && (o = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
        switch (o) {
        case 'u':
            free(g->url);
            g->url = xstrdup(optarg);
            break;
        case 'T':
            free(g->token);
            g->token = xstrdup(optarg);
            break;
        case 'C':
            free(g->cacert);
            g->cacert = xstrdup(optarg);
            break;
        case 'j':
            g->json = true;
            break;
        case 'q':
            g->quiet = true;
            break;
        case 'h':
            g->help = true;
            break;
        case 'V':
            g->version = true;
            break;
        case 't':
            a->to = optarg;
            break;
        case 'w':
            a->wait = true;
            break;
        case 'o':
            a->output = optarg;
            break;
        case 'f':
            a->force = true;
            break;
        case 'r':
            a->recursive = true;
            break;
        case 'n': {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || v < 1 || v > 1000000)
                rc = usage_error(cmd, "-n wants a count of snapshots, 1 or more: %s", optarg);
            else
                a->count = v;
            break;
        }
        case OPT_CHUNK:
            if (!parse_size(optarg, &a->chunk))
                rc = usage_error(cmd, "--chunk-size wants a size in bytes (8M, 512K): %s", optarg);
            break;
        case OPT_LIMIT_RATE:
            if (!parse_size(optarg, &a->limit_rate))
                rc = usage_error(cmd, "--limit-rate wants bytes per second (1M, 500K): %s", optarg);
            break;
        case OPT_STATE:
            a->state = optarg;
            break;
        case OPT_LIMIT:
            a->limit = optarg;
            break;
        case OPT_VARIANT:
            a->variant = optarg;
            break;
        case OPT_ALL:
            a->all = true;
            break;
        case OPT_EXPIRES:
            a->expires = optarg;
            break;
        case OPT_MAX_DOWNLOADS:
            a->max_downloads = optarg;
            break;
        case OPT_IF_MATCH:
            if (optarg[0] == '\0')
                rc = usage_error(cmd, "--if-match wants the file's ETag (dripctl ls --json)");
            a->if_match = optarg;
            break;
        case OPT_REPLACE:
            a->replace = true;
            break;
        case OPT_PARALLEL: {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || v < 1 || v > 16)
                rc = usage_error(cmd, "--parallel wants a number of parts, 1 to 16: %s", optarg);
            else
                a->parallel = (unsigned)v;
            break;
        }
        case OPT_CONFLICT:
            if (strcmp(optarg, "rename") != 0)
                rc = usage_error(cmd, "--conflict wants rename (keep both): %s", optarg);
            a->rename = true;
            break;
        case ':':
            if (optopt > 0 && optopt < 256)
                rc = usage_error(cmd, "option -%c needs a value", optopt);
            else
                rc = usage_error(cmd, "option %s needs a value", argv[optind - 1]);
            break;
        default:
            if (optopt > 0 && optopt < 256)
                rc = usage_error(cmd, "unknown option -%c", optopt);
            else
                rc = usage_error(cmd, "unknown option %s", argv[optind - 1]);
            break;
        }
    }
    free(shortopts);
    *first = optind;
    return rc;
}

/* What the command's options need beyond their syntax. */
static int check_args(const struct command *cmd, struct args *a)
{
    if (a->argc < cmd->min_args)
        return usage_error(cmd, "%s", a->argc ? "too few arguments" : "missing arguments");
    if (cmd->max_args >= 0 && a->argc > cmd->max_args)
        return usage_error(cmd, "unexpected argument %s", a->argv[cmd->max_args]);
    if ((a->if_match != NULL) + a->replace + a->rename > 1)
        return usage_error(cmd, "--replace, --if-match and --conflict=rename exclude each other");
    if (a->to && a->to[0] != '/')
        return usage_error(cmd, "--to wants an absolute folder (/photos): %s", a->to);
    if (a->state) {
        bool known = false;
        for (int i = 0; job_states[i]; i++)
            known |= strcmp(job_states[i], a->state) == 0;
        if (!known)
            return usage_error(cmd, "--state wants queued, running, done or failed, not %s",
                               a->state);
    }
    if (a->limit) {
        char *end;
        long v = strtol(a->limit, &end, 10);
        if (*end != '\0' || end == a->limit || v < 1 || v > 1000)
            return usage_error(cmd, "--limit wants a number from 1 to 1000, not %s", a->limit);
    }
    if (a->expires) {
        uint64_t ms = 0;
        if (config_parse_duration(a->expires, &ms) < 0 || ms < 1000)
            return usage_error(cmd, "--expires wants seconds or a duration (30m, 12h, 7d), not %s",
                               a->expires);
    }
    if (a->max_downloads) {
        char *end;
        long v = strtol(a->max_downloads, &end, 10);
        if (*end != '\0' || end == a->max_downloads || v < 1 || v > INT32_MAX)
            return usage_error(cmd, "--max-downloads wants a positive number, not %s",
                               a->max_downloads);
    }
    if (a->argc > 0 && (a->state || a->limit) && cmd->run == cmd_jobs)
        return usage_error(cmd, "%s", "--state and --limit list jobs; give them without an ID");
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    struct client c = {0};
    struct globals g = {0};
    struct args a = {.to = "/", .chunk = 8u << 20};
    const char *word = find_command_word(argc, argv);
    const struct command *cmd = word ? find_command(word) : NULL;
    bool help_cmd = word && strcmp(word, "help") == 0;
    int first = argc, code;
    if (word && !cmd && !help_cmd) {
        code = usage_error(NULL, "unknown command \"%s\"", word);
        goto out;
    }
    code = parse(argc, argv, cmd, &g, &a, &first);
    if (code != EXIT_OK)
        goto out;
    /* argv[first] is the command word; its arguments follow. */
    a.argc = argc - first - (word ? 1 : 0);
    a.argv = argv + first + (word ? 1 : 0);
    if (g.version) {
        printf("dripctl %s\n", DRIPD_VERSION);
        goto out;
    }
    if (help_cmd) {
        const struct command *about = a.argc > 0 ? find_command(a.argv[0]) : NULL;
        if (a.argc > 0 && about == NULL) {
            code = usage_error(NULL, "no command \"%s\"", a.argv[0]);
        } else if (about) {
            command_help(about, stdout);
        } else {
            overview(stdout);
        }
        goto out;
    }
    if (g.help) {
        if (cmd)
            command_help(cmd, stdout);
        else
            overview(stdout);
        goto out;
    }
    if (cmd == NULL) {
        overview(stderr);
        code = EXIT_USAGE;
        goto out;
    }
    code = check_args(cmd, &a);
    if (code != EXIT_OK)
        goto out;

    if (g.url == NULL && getenv("DRIPD_URL"))
        g.url = xstrdup(getenv("DRIPD_URL"));
    if (g.token == NULL && getenv("DRIPD_TOKEN"))
        g.token = xstrdup(getenv("DRIPD_TOKEN"));
    if (g.cacert == NULL && getenv("DRIPD_CACERT"))
        g.cacert = xstrdup(getenv("DRIPD_CACERT"));
    load_rc(&g.url, &g.token);
    if (g.url == NULL)
        g.url = xstrdup("http://127.0.0.1:8080");
    size_t ul = strlen(g.url);
    while (ul > 0 && g.url[ul - 1] == '/')
        g.url[--ul] = '\0';
    c.url = g.url;
    c.token = g.token;
    c.cacert = g.cacert;
    c.json = g.json;
    c.quiet = g.quiet;
    if (client_init(&c) < 0) {
        fprintf(stderr, "dripctl: cannot initialise libcurl\n");
        code = EXIT_FAIL;
        goto out;
    }
    client_catch_interrupt();
    code = cmd->run(&c, &a);
    client_cleanup(&c);
out:
    free(g.url);
    free(g.token);
    free(g.cacert);
    return code;
}
