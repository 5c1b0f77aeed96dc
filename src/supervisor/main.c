/* main.c - dripd's command line; everything else is in supervisor.c.
 *
 *   dripd [-c FILE]                      run (supervisor + workers)
 *   dripd [-c FILE] --check              validate the config, exit 0/1
 *   dripd -c FILE --rebuild-catalog      recreate media rows from the store
 *   dripd -c FILE --migrate-catalog postgres   copy the SQLite catalog into PostgreSQL
 *   dripd --make-token FILE              create a bearer token file once
 *   dripd --version | --help
 *
 * Exit codes: 0 clean stop, 1 bad config or start-up failure, 2 the
 * supervisor gave up (restart intensity exceeded). See docs/OPERATIONS.md.
 *
 * Everything dripd creates is private to it (umask 077): data_dir and all
 * below it, catalog.db with its -wal and -shm, spool, cache and objects.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "dripd/config.h"
#include "dripd/log.h"
#include "migrate.h"
#include "rebuild.h"
#include "supervisor.h"
#include "dripd/util.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: dripd [-c FILE] [--check | --rebuild-catalog | --migrate-catalog postgres]\n"
               "       dripd --make-token FILE\n"
               "       dripd --version | --help\n"
               "\n"
               "  -c, --config FILE    YAML configuration (default: embedded defaults,\n"
               "                       listen 127.0.0.1:8080, data_dir ./var, one admin\n"
               "                       user whose token is kept in ./var/admin.token)\n"
               "      --check          validate the configuration and exit (0 ok, 1 errors)\n"
               "      --rebuild-catalog recreate the catalog's media rows from the stored\n"
               "                       objects, then exit (0 ok, 1 failed)\n"
               "      --migrate-catalog postgres\n"
               "                       copy the SQLite catalog of data_dir into the PostgreSQL\n"
               "                       database of catalog.postgres.dsn and verify it (stop\n"
               "                       the node first)\n"
               "      --make-token FILE create FILE (0600) with a random bearer token unless\n"
               "                       it exists, then exit (0 ok, 1 failed); dripd-token.service\n"
               "                       makes /etc/dripd/admin.token with it at the first start\n"
               "  -V, --version        print the version and exit\n"
               "  -h, --help           print this help and exit\n"
               "\n"
               "Signals: TERM/INT drain and stop, HUP reload the configuration.\n"
               "Exit codes: 0 clean stop, 1 bad config or start-up failure,\n"
               "            2 restart intensity exceeded.\n");
}

enum { OPT_CHECK = 256, OPT_REBUILD, OPT_MAKE_TOKEN, OPT_MIGRATE };

/* --make-token FILE: the token file exists afterwards; says whether it was
 * made now. */
static int make_token(const char *file)
{
    char *token = NULL;
    bool created = false;
    int r = supervisor_token_file(file, &token, &created);
    if (r < 0) {
        fprintf(stderr, "dripd: %s: %s\n", file,
                r == -EINVAL ? "exists but is empty or too short to be a token" : strerror(-r));
        return DR_EXIT_STARTUP;
    }
    printf("%s: %s\n", file, created ? "created a new token" : "exists; kept");
    explicit_bzero(token, strlen(token));
    free(token);
    return DR_EXIT_OK;
}

/* Every connection and every file an upload holds is a descriptor: take
 * the hard limit the system grants (the workers inherit it), and say so
 * when it cannot cover limits.max_connections. Past it, connections wait
 * in the backlog and uploads get 503 + Retry-After. */
static void raise_fd_limit(const struct dr_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    uint64_t want = (uint64_t)cfg->limits.max_connections + 1024;
    if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < want)
        log_warn("the descriptor limit (%llu) is below limits.max_connections + 1024 (%llu): "
                 "raise LimitNOFILE / ulimit -n, or lower limits.max_connections",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, OPT_CHECK},
        {"rebuild-catalog", no_argument, NULL, OPT_REBUILD},
        {"migrate-catalog", required_argument, NULL, OPT_MIGRATE},
        {"make-token", required_argument, NULL, OPT_MAKE_TOKEN},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *token_file = NULL, *migrate = NULL;
    bool check = false, rebuild = false;
    umask(077);
    int c;
    while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case OPT_CHECK:
            check = true;
            break;
        case OPT_REBUILD:
            rebuild = true;
            break;
        case OPT_MAKE_TOKEN:
            token_file = optarg;
            break;
        case OPT_MIGRATE:
            migrate = optarg;
            break;
        case 'V':
            printf("dripd %s\n", DRIPD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return DR_EXIT_STARTUP;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dripd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return DR_EXIT_STARTUP;
    }
    if ((check ? 1 : 0) + (rebuild ? 1 : 0) + (migrate != NULL ? 1 : 0) > 1) {
        fprintf(stderr, "dripd: --check, --rebuild-catalog and --migrate-catalog exclude each "
                        "other\n");
        return DR_EXIT_STARTUP;
    }
    if (migrate != NULL && path == NULL) {
        fprintf(stderr, "dripd: --migrate-catalog needs -c FILE (its data_dir and "
                        "catalog.postgres.dsn)\n");
        return DR_EXIT_STARTUP;
    }
    if (token_file)
        return make_token(token_file);
    config_check_mode(check);

    log_set_role("supervisor"); /* start-up lines (catalog, key) come from this process */
    struct dr_config *cfg = NULL;
    if (path != NULL) {
        struct dr_config_errors errs = {0};
        int r = config_load(path, &cfg, &errs);
        if (r < 0) {
            for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "%s\n", errs.msgs[i]);
            if (errs.n == 0)
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
            config_errors_clear(&errs);
            return DR_EXIT_STARTUP;
        }
        config_errors_clear(&errs);
    } else {
        cfg = config_defaults();
    }
    if (check) {
        printf("ok\n");
        config_destroy(cfg);
        return DR_EXIT_OK;
    }

    char err[DR_ERRLEN] = "";
    if (migrate != NULL) {
        int r = migrate_catalog(cfg, migrate, err, sizeof err);
        if (r < 0)
            log_error("migrate-catalog: %s", err[0] ? err : strerror(-r));
        config_destroy(cfg);
        return r < 0 ? DR_EXIT_STARTUP : DR_EXIT_OK;
    }
    /* before prepare, which records the users in the catalog */
    if (path == NULL && !rebuild && cfg->n_users == 0 &&
        supervisor_default_admin(cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        config_destroy(cfg);
        return DR_EXIT_STARTUP;
    }
    if (supervisor_prepare(cfg, rebuild ? DR_PREP_NO_NEW_KEY : 0, err, sizeof err) < 0) {
        log_error("%s", err);
        config_destroy(cfg);
        return DR_EXIT_STARTUP;
    }
    if (rebuild) {
        int r = rebuild_catalog(cfg, err, sizeof err);
        if (r < 0)
            log_error("rebuild-catalog: %s", err[0] ? err : strerror(-r));
        config_destroy(cfg);
        return r < 0 ? DR_EXIT_STARTUP : DR_EXIT_OK;
    }
    raise_fd_limit(cfg);
    return supervisor_run(cfg, path, NULL);
}
