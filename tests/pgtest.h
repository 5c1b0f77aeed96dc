/* pgtest.h - PostgreSQL for the unit tests: one throw-away server per test
 * run and a fresh database per test.
 *
 * The server is DRIPD_TEST_PG_DSN when set (scripts/run-unit.sh starts one
 * for the whole run, outside valgrind), else one this binary starts with
 * scripts/pgtest.sh and stops at exit. A server that cannot be had fails
 * the test binary: never a skip. Header-only: each test file that runs
 * against PostgreSQL includes it.
 */
#ifndef DRIPD_TESTS_PGTEST_H
#define DRIPD_TESTS_PGTEST_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char pgt_base[256]; /* "host=... port=... user=postgres" */
static char pgt_dir[256];
static pid_t pgt_owner;

static void pgt_stop(void)
{
    if (pgt_dir[0] == '\0' || getpid() != pgt_owner)
        return; /* only the process that started it (not a forked test) */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "sh scripts/pgtest.sh stop %s; rm -rf %s", pgt_dir, pgt_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "pgtest: stopping %s failed\n", pgt_dir);
}

/* The base DSN (no dbname) of a running server; exits the binary with a
 * failure if there is none. Call from main(), before the suites run. */
static const char *pgtest_server(void)
{
    if (pgt_base[0] != '\0')
        return pgt_base;
    const char *env = getenv("DRIPD_TEST_PG_DSN");
    if (env != NULL && env[0] != '\0') {
        snprintf(pgt_base, sizeof pgt_base, "%s", env);
        return pgt_base;
    }
    snprintf(pgt_dir, sizeof pgt_dir, "/tmp/dripd-pgtest.XXXXXX");
    if (mkdtemp(pgt_dir) == NULL) {
        perror("pgtest: mkdtemp");
        exit(EXIT_FAILURE);
    }
    pgt_owner = getpid();
    atexit(pgt_stop);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "sh scripts/pgtest.sh start %s", pgt_dir);
    FILE *p = popen(cmd, "r");
    if (p == NULL || fgets(pgt_base, sizeof pgt_base, p) == NULL) {
        fprintf(stderr, "pgtest: no PostgreSQL server (scripts/pgtest.sh start failed)\n");
        if (p != NULL)
            pclose(p);
        exit(EXIT_FAILURE);
    }
    pclose(p);
    pgt_base[strcspn(pgt_base, "\n")] = '\0';
    return pgt_base;
}

static int pgt_admin(const char *sql)
{
    char dsn[320];
    snprintf(dsn, sizeof dsn, "%s dbname=postgres", pgtest_server());
    PGconn *c = PQconnectdb(dsn);
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "pgtest: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "pgtest: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok ? 0 : -1;
}

/* A fresh, empty database: its DSN into dsn. 0 / -1. */
static int pgtest_createdb(char *dsn, size_t len)
{
    static unsigned n;
    char name[64], sql[128];
    snprintf(name, sizeof name, "t_%d_%u", (int)getpid(), n++);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (pgt_admin(sql) < 0)
        return -1;
    snprintf(dsn, len, "%s dbname=%s", pgtest_server(), name);
    return 0;
}

/* Drop the database of dsn (made by pgtest_createdb), whoever is on it. */
static void pgtest_dropdb(const char *dsn)
{
    const char *p = strstr(dsn, "dbname=");
    if (p == NULL)
        return;
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", p + 7);
    (void)pgt_admin(sql);
}

#endif
