/* test_config.c - the YAML config loader: defaults, valid files (block and
 * flow style, the shipped example), every kind of problem with its exact
 * FILE:LINE:COL prefix and dotted key, sizes/durations, secrets from files,
 * token lookup. Runs from the repository root (make unit). */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/config.h"

/* A minimal valid document; tests append keys to it. */
#define USERS_OK "users: [{name: alice, token: alice-secret-token}]\n"

/* ---- helpers ---- */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, f);
    ck_assert_int_ge(vasprintf(&s, f, ap), 0);
    va_end(ap);
    return s;
}

/* Writes text to a fresh temp file; returns its path (caller frees and unlinks). */
static char *temp_file(const char *text)
{
    char *path = strdup("/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t n = strlen(text);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static void dump(const struct dr_config_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "  | %s\n", e->msgs[i]);
}

/* Loads text as "t.yaml" and expects success. */
static struct dr_config *load_ok(const char *text)
{
    struct dr_config *c = (struct dr_config *)1;
    struct dr_config_errors e = {NULL, 0};
    int rc = config_load_buffer("t.yaml", text, strlen(text), &c, &e);
    if (rc != 0)
        dump(&e);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(e.n, 0);
    ck_assert_ptr_nonnull(c);
    config_errors_clear(&e);
    return c;
}

/* Loads text as "t.yaml" and expects failure; caller frees errs. */
static void load_bad(const char *text, struct dr_config_errors *e)
{
    struct dr_config *c = (struct dr_config *)1;
    int rc = config_load_buffer("t.yaml", text, strlen(text), &c, e);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_uint_gt(e->n, 0);
}

/* Index of the message that starts with "t.yaml:LINE:COL: " + body, or -1. */
static int find_msg(const struct dr_config_errors *e, int line, int col, const char *body)
{
    char *want = fmt("t.yaml:%d:%d: %s", line, col, body);
    int at = -1;
    for (size_t i = 0; i < e->n && at < 0; i++)
        if (strncmp(e->msgs[i], want, strlen(want)) == 0)
            at = (int)i;
    free(want);
    return at;
}

/* Exactly one problem, and it is this one. */
static void expect_one(const char *text, int line, int col, const char *body)
{
    struct dr_config_errors e = {NULL, 0};
    load_bad(text, &e);
    if (e.n != 1 || find_msg(&e, line, col, body) != 0) {
        fprintf(stderr, "want t.yaml:%d:%d: %s\n", line, col, body);
        dump(&e);
    }
    ck_assert_uint_eq(e.n, 1);
    ck_assert_int_eq(find_msg(&e, line, col, body), 0);
    config_errors_clear(&e);
}

/* ---- defaults and valid files ---- */

START_TEST(test_defaults)
{
    struct dr_config *c = config_defaults();
    ck_assert_str_eq(c->path, "<defaults>");
    ck_assert_uint_eq(c->n_listen, 1);
    ck_assert_str_eq(c->listen[0], "127.0.0.1:8080");
    ck_assert_str_eq(c->data_dir, "./var");
    ck_assert_uint_eq(c->n_users, 0);
    ck_assert_int_eq(c->storage.backend, DR_STORE_LOCAL);
    ck_assert_str_eq(c->storage.local.path, "./var/objects");
    ck_assert_str_eq(c->encryption.key_file, "./var/master.key");
    ck_assert_str_eq(c->storage.s3.region, "us-east-1");
    ck_assert(c->storage.s3.path_style);
    ck_assert(c->storage.s3.verify_tls);
    ck_assert_uint_eq(c->storage.s3.part_size, 16u << 20);
    ck_assert_int_eq(c->storage.s3.parallel_parts, 4);
    ck_assert_uint_eq(c->storage.s3.connect_timeout, 5000);
    ck_assert_uint_eq(c->storage.s3.idle_timeout, 30000);
    ck_assert_uint_eq(c->storage.s3.timeout, 3600000);
    ck_assert_uint_eq(c->pipeline.queue_limit, 10000);
    ck_assert_int_eq(c->pipeline.upload.encrypt.concurrency, 2);
    ck_assert_int_eq(c->pipeline.upload.store.concurrency, 4);
    ck_assert_int_eq(c->pipeline.upload.encrypt.max_demand, 64);
    ck_assert_int_eq(c->pipeline.upload.encrypt.min_demand, 16);
    ck_assert_int_eq(c->pipeline.download.fetch.concurrency, 4);
    ck_assert_int_eq(c->pipeline.download.decrypt.concurrency, 2);
    ck_assert_int_eq(c->pipeline.retry.attempts, 5);
    ck_assert_uint_eq(c->pipeline.retry.backoff, 1000);
    ck_assert_uint_eq(c->pipeline.retry.max_backoff, 60000);
    ck_assert_uint_eq(c->pipeline.segment_size, 65536);
    ck_assert_uint_eq(c->pipeline.stage_commit_size, 1u << 20);
    ck_assert_uint_eq(c->pipeline.test_store_delay, 0);
    ck_assert_uint_eq(c->cache.max_size, 1ull << 30);
    ck_assert_uint_eq(c->cache.ttl, 7200000);
    ck_assert_uint_eq(c->limits.max_upload_size, 10ull << 30);
    ck_assert_uint_eq(c->limits.header_timeout, 10000);
    ck_assert_uint_eq(c->limits.body_timeout, 60000);
    ck_assert_uint_eq(c->limits.keepalive_timeout, 75000);
    ck_assert_int_eq(c->limits.max_connections, 10000);
    ck_assert_uint_eq(c->limits.max_header_size, 16384);
    ck_assert_int_eq(c->limits.max_headers, 100);
    ck_assert_int_eq(c->http.threads, 0);
    ck_assert_uint_eq(c->tus.expiration, 86400000);
    ck_assert_int_eq(c->supervisor.max_restarts, 5);
    ck_assert_uint_eq(c->supervisor.max_seconds, 10000);
    ck_assert_uint_eq(c->supervisor.heartbeat_interval, 1000);
    ck_assert_uint_eq(c->supervisor.heartbeat_timeout, 10000);
    ck_assert_uint_eq(c->supervisor.drain_timeout, 30000);
    ck_assert_uint_eq(c->health.min_free_disk, 256u << 20);
    ck_assert_uint_eq(c->scrub.rate_limit, 50u << 20);
    ck_assert_str_eq(c->log.level, "info");
    ck_assert_uint_eq(c->n_webhooks, 0);
    config_destroy(c);
    config_destroy(NULL);
}
END_TEST

/* Every key in block style, none at its default. */
static const char full_yaml[] = "# every key\n"
                                "listen:\n"
                                "  - 127.0.0.1:0\n"
                                "  - \"[::1]:9000\"\n"
                                "  - unix:/tmp/dripd.sock\n"
                                "data_dir: /srv/dripd\n"
                                "users:\n"
                                "  - name: alice\n"
                                "    token: \"alice-secret\"\n"
                                "    admin: yes\n"
                                "  - name: bob.smith-2_x\n"
                                "    token: bob-secret-token\n"
                                "storage:\n"
                                "  backend: s3\n"
                                "  local: { path: /srv/objects }\n"
                                "  s3:\n"
                                "    endpoint: https://s3.example.com:9000\n"
                                "    bucket: media\n"
                                "    region: eu-west-3\n"
                                "    access_key_id: AKID\n"
                                "    secret_access_key: SECRET\n"
                                "    session_token: SESSION\n"
                                "    path_style: false\n"
                                "    verify_tls: no\n"
                                "    part_size: 8MiB\n"
                                "    parallel_parts: 8\n"
                                "    connect_timeout: 2s\n"
                                "    idle_timeout: 45s\n"
                                "    timeout: 2h\n"
                                "encryption:\n"
                                "  key_file: /etc/dripd/master.key\n"
                                "pipeline:\n"
                                "  queue_limit: 42\n"
                                "  upload:\n"
                                "    encrypt: { concurrency: 3, max_demand: 20, min_demand: 2 }\n"
                                "    store:   { concurrency: 5, max_demand: 30, min_demand: 3 }\n"
                                "  download:\n"
                                "    fetch:   { concurrency: 6, max_demand: 7, min_demand: 4 }\n"
                                "    decrypt: { concurrency: 1 }\n"
                                "  retry: { attempts: 9, backoff: 250ms, max_backoff: 2m }\n"
                                "  segment_size: 128KiB\n"
                                "  stage_commit_size: 0\n"
                                "  test_store_delay: 1.5s\n"
                                "cache: { max_size: 2GB, ttl: 1d }\n"
                                "limits:\n"
                                "  max_upload_size: 1 TiB\n"
                                "  header_timeout: 3s\n"
                                "  body_timeout: 4s\n"
                                "  keepalive_timeout: 0\n"
                                "  max_connections: 77\n"
                                "  max_header_size: 32KiB\n"
                                "  max_headers: 50\n"
                                "http: { threads: 3 }\n"
                                "tus: { expiration: 36h }\n"
                                "supervisor:\n"
                                "  max_restarts: 0\n"
                                "  max_seconds: 60\n"
                                "  heartbeat_interval: 200ms\n"
                                "  heartbeat_timeout: 3s\n"
                                "  drain_timeout: 15s\n"
                                "health: { min_free_disk: 1GiB }\n"
                                "scrub: { rate_limit: 10MB }\n"
                                "log: { level: debug }\n"
                                "webhooks:\n"
                                "  - url: http://127.0.0.1:9000/hook\n"
                                "    secret: s\n"
                                "  - { url: \"https://hooks.example.com/x\", secret: \"t\" }\n";

START_TEST(test_full_file)
{
    char *path = temp_file(full_yaml);
    struct dr_config *c = NULL;
    struct dr_config_errors e = {NULL, 0};
    int rc = config_load(path, &c, &e);
    if (rc != 0)
        dump(&e);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(e.n, 0);
    ck_assert_str_eq(c->path, path);
    ck_assert_uint_eq(c->n_listen, 3);
    ck_assert_str_eq(c->listen[0], "127.0.0.1:0");
    ck_assert_str_eq(c->listen[1], "[::1]:9000");
    ck_assert_str_eq(c->listen[2], "unix:/tmp/dripd.sock");
    ck_assert_str_eq(c->data_dir, "/srv/dripd");
    ck_assert_uint_eq(c->n_users, 2);
    ck_assert_str_eq(c->users[0].name, "alice");
    ck_assert_str_eq(c->users[0].token, "alice-secret");
    ck_assert(c->users[0].admin);
    ck_assert_str_eq(c->users[1].name, "bob.smith-2_x");
    ck_assert(!c->users[1].admin);
    ck_assert_int_eq(c->storage.backend, DR_STORE_S3);
    ck_assert_str_eq(c->storage.local.path, "/srv/objects");
    ck_assert_str_eq(c->storage.s3.endpoint, "https://s3.example.com:9000");
    ck_assert_str_eq(c->storage.s3.bucket, "media");
    ck_assert_str_eq(c->storage.s3.region, "eu-west-3");
    ck_assert_str_eq(c->storage.s3.access_key_id, "AKID");
    ck_assert_str_eq(c->storage.s3.secret_access_key, "SECRET");
    ck_assert_str_eq(c->storage.s3.session_token, "SESSION");
    ck_assert(!c->storage.s3.path_style);
    ck_assert(!c->storage.s3.verify_tls);
    ck_assert_uint_eq(c->storage.s3.part_size, 8u << 20);
    ck_assert_int_eq(c->storage.s3.parallel_parts, 8);
    ck_assert_uint_eq(c->storage.s3.connect_timeout, 2000);
    ck_assert_uint_eq(c->storage.s3.idle_timeout, 45000);
    ck_assert_uint_eq(c->storage.s3.timeout, 7200000);
    ck_assert_str_eq(c->encryption.key_file, "/etc/dripd/master.key");
    ck_assert_uint_eq(c->pipeline.queue_limit, 42);
    ck_assert_int_eq(c->pipeline.upload.encrypt.concurrency, 3);
    ck_assert_int_eq(c->pipeline.upload.encrypt.max_demand, 20);
    ck_assert_int_eq(c->pipeline.upload.encrypt.min_demand, 2);
    ck_assert_int_eq(c->pipeline.upload.store.concurrency, 5);
    ck_assert_int_eq(c->pipeline.upload.store.max_demand, 30);
    ck_assert_int_eq(c->pipeline.upload.store.min_demand, 3);
    ck_assert_int_eq(c->pipeline.download.fetch.concurrency, 6);
    ck_assert_int_eq(c->pipeline.download.fetch.max_demand, 7);
    ck_assert_int_eq(c->pipeline.download.fetch.min_demand, 4);
    ck_assert_int_eq(c->pipeline.download.decrypt.concurrency, 1);
    ck_assert_int_eq(c->pipeline.retry.attempts, 9);
    ck_assert_uint_eq(c->pipeline.retry.backoff, 250);
    ck_assert_uint_eq(c->pipeline.retry.max_backoff, 120000);
    ck_assert_uint_eq(c->pipeline.segment_size, 128u << 10);
    ck_assert_uint_eq(c->pipeline.stage_commit_size, 0);
    ck_assert_uint_eq(c->pipeline.test_store_delay, 1500);
    ck_assert_uint_eq(c->cache.max_size, 2000000000ull);
    ck_assert_uint_eq(c->cache.ttl, 86400000);
    ck_assert_uint_eq(c->limits.max_upload_size, 1ull << 40);
    ck_assert_uint_eq(c->limits.header_timeout, 3000);
    ck_assert_uint_eq(c->limits.body_timeout, 4000);
    ck_assert_uint_eq(c->limits.keepalive_timeout, 0);
    ck_assert_int_eq(c->limits.max_connections, 77);
    ck_assert_uint_eq(c->limits.max_header_size, 32u << 10);
    ck_assert_int_eq(c->limits.max_headers, 50);
    ck_assert_int_eq(c->http.threads, 3);
    ck_assert_uint_eq(c->tus.expiration, 36ull * 3600000);
    ck_assert_int_eq(c->supervisor.max_restarts, 0);
    ck_assert_uint_eq(c->supervisor.max_seconds, 60000);
    ck_assert_uint_eq(c->supervisor.heartbeat_interval, 200);
    ck_assert_uint_eq(c->supervisor.heartbeat_timeout, 3000);
    ck_assert_uint_eq(c->supervisor.drain_timeout, 15000);
    ck_assert_uint_eq(c->health.min_free_disk, 1ull << 30);
    ck_assert_uint_eq(c->scrub.rate_limit, 10000000);
    ck_assert_str_eq(c->log.level, "debug");
    ck_assert_uint_eq(c->n_webhooks, 2);
    ck_assert_str_eq(c->webhooks[0].url, "http://127.0.0.1:9000/hook");
    ck_assert_str_eq(c->webhooks[0].secret, "s");
    ck_assert_str_eq(c->webhooks[1].url, "https://hooks.example.com/x");
    ck_assert_str_eq(c->webhooks[1].secret, "t");
    config_destroy(c);
    unlink(path);
    free(path);
}
END_TEST

/* The shipped example must load as is (tests run from the repo root). */
START_TEST(test_example_file)
{
    struct dr_config *c = NULL;
    struct dr_config_errors e = {NULL, 0};
    int rc = config_load("config/dripd.yaml", &c, &e);
    if (rc != 0)
        dump(&e);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(e.n, 0);
    ck_assert_int_eq(c->storage.backend, DR_STORE_LOCAL);
    ck_assert_uint_eq(c->n_users, 1);
    ck_assert_str_eq(c->users[0].name, "alice");
    ck_assert_uint_eq(c->n_webhooks, 0);
    ck_assert_str_eq(c->listen[0], "127.0.0.1:8080");
    config_destroy(c);
}
END_TEST

/* What the black-box harness writes: JSON, i.e. flow-style YAML. */
START_TEST(test_flow_json)
{
    static const char json[] =
        "{\n"
        "  \"listen\": [\"127.0.0.1:0\"],\n"
        "  \"data_dir\": \"/tmp/x/var\",\n"
        "  \"users\": [\n"
        "    {\"name\": \"alice\", \"token\": \"alice-secret-token\", \"admin\": true},\n"
        "    {\"name\": \"bob\", \"token\": \"bob-secret-token\", \"admin\": false}\n"
        "  ],\n"
        "  \"supervisor\": {\"max_restarts\": 5, \"max_seconds\": \"10s\",\n"
        "                 \"heartbeat_interval\": \"200ms\", \"heartbeat_timeout\": \"3s\",\n"
        "                 \"drain_timeout\": \"10s\"},\n"
        "  \"pipeline\": {\"retry\": {\"attempts\": 5, \"backoff\": \"100ms\", \"max_backoff\": "
        "\"1s\"},\n"
        "               \"queue_limit\": 2, \"test_store_delay\": \"300ms\"},\n"
        "  \"limits\": {\"max_upload_size\": 1048576},\n"
        "  \"log\": {\"level\": \"debug\"}\n"
        "}\n";
    struct dr_config *c = load_ok(json);
    ck_assert_str_eq(c->listen[0], "127.0.0.1:0");
    ck_assert_str_eq(c->data_dir, "/tmp/x/var");
    ck_assert_str_eq(c->storage.local.path, "/tmp/x/var/objects");
    ck_assert_str_eq(c->encryption.key_file, "/tmp/x/var/master.key");
    ck_assert_uint_eq(c->n_users, 2);
    ck_assert(c->users[0].admin);
    ck_assert(!c->users[1].admin);
    ck_assert_str_eq(c->users[1].token, "bob-secret-token");
    ck_assert_uint_eq(c->supervisor.max_seconds, 10000);
    ck_assert_uint_eq(c->supervisor.heartbeat_interval, 200);
    ck_assert_uint_eq(c->pipeline.retry.backoff, 100);
    ck_assert_uint_eq(c->pipeline.queue_limit, 2);
    ck_assert_uint_eq(c->pipeline.test_store_delay, 300);
    ck_assert_uint_eq(c->limits.max_upload_size, 1048576);
    ck_assert_str_eq(c->path, "t.yaml");
    config_destroy(c);
}
END_TEST

START_TEST(test_derived_paths)
{
    struct dr_config *c = load_ok(USERS_OK "data_dir: /srv/d/\n");
    ck_assert_str_eq(c->storage.local.path, "/srv/d/objects");
    ck_assert_str_eq(c->encryption.key_file, "/srv/d/master.key");
    config_destroy(c);
    c = load_ok(USERS_OK "data_dir: /\n");
    ck_assert_str_eq(c->storage.local.path, "/objects");
    config_destroy(c);
    /* explicit values win */
    c = load_ok(USERS_OK "data_dir: d\nstorage: {local: {path: o}}\nencryption: {key_file: k}\n");
    ck_assert_str_eq(c->storage.local.path, "o");
    ck_assert_str_eq(c->encryption.key_file, "k");
    config_destroy(c);
}
END_TEST

START_TEST(test_aliases)
{
    struct dr_config *c = load_ok(USERS_OK "pipeline:\n"
                                           "  upload:\n"
                                           "    encrypt: &st {concurrency: 7}\n"
                                           "    store: *st\n");
    ck_assert_int_eq(c->pipeline.upload.encrypt.concurrency, 7);
    ck_assert_int_eq(c->pipeline.upload.store.concurrency, 7);
    config_destroy(c);
    /* a collection containing itself neither hangs nor crashes */
    struct dr_config_errors e = {NULL, 0};
    load_bad(USERS_OK "storage: &a {s3: *a}\n", &e);
    ck_assert_int_ge(find_msg(&e, 2, 14, "storage.s3.s3: unknown key"), 0);
    config_errors_clear(&e);
}
END_TEST

/* ---- problems, one kind per test, exact FILE:LINE:COL ---- */

START_TEST(test_bad_integer)
{
    expect_one(USERS_OK "pipeline:\n"
                        "  upload:\n"
                        "    encrypt:\n"
                        "      max_demand: ten\n",
               5, 19, "pipeline.upload.encrypt.max_demand: expected an integer >= 1, got \"ten\"");
    expect_one(USERS_OK "pipeline: {queue_limit: 0}\n", 2, 25,
               "pipeline.queue_limit: expected an integer >= 1, got \"0\"");
    expect_one(USERS_OK "supervisor: {max_restarts: -1}\n", 2, 28,
               "supervisor.max_restarts: expected an integer >= 0, got \"-1\"");
    expect_one(
        USERS_OK "pipeline: {upload: {store: {concurrency: 257}}}\n", 2, 42,
        "pipeline.upload.store.concurrency: expected an integer between 1 and 256, got \"257\"");
    expect_one(USERS_OK "limits: {max_connections: 99999999999999999999999}\n", 2, 27,
               "limits.max_connections: expected an integer >= 1, got \"99999999999999999999999\"");
    expect_one(USERS_OK "http: {threads: 1.5}\n", 2, 17,
               "http.threads: expected an integer between 0 and 256, got \"1.5\"");
}
END_TEST

START_TEST(test_bad_size_duration)
{
    expect_one(USERS_OK "limits:\n  max_upload_size: 10 apples\n", 3, 20,
               "limits.max_upload_size: expected a size (e.g. 10MiB) >= 1B, got \"10 apples\"");
    expect_one(USERS_OK "storage: {s3: {part_size: 4MiB}}\n", 2, 27,
               "storage.s3.part_size: expected a size (e.g. 10MiB) between 5MiB and 5GiB, got "
               "\"4MiB\"");
    expect_one(USERS_OK "cache: {ttl: -5s}\n", 2, 14,
               "cache.ttl: expected a duration (e.g. 30s), got \"-5s\"");
    expect_one(USERS_OK "supervisor: {drain_timeout: 10 seconds}\n", 2, 29,
               "supervisor.drain_timeout: expected a duration (e.g. 30s), got \"10 seconds\"");
    expect_one(USERS_OK "limits: {header_timeout: 0}\n", 2, 26,
               "limits.header_timeout: expected a duration (e.g. 30s) >= 1ms, got \"0\"");
}
END_TEST

START_TEST(test_wrong_types)
{
    expect_one(USERS_OK "storage: local\n", 2, 10, "storage: expected a mapping, got \"local\"");
    expect_one(USERS_OK "data_dir: [a, b]\n", 2, 11, "data_dir: expected a string, got a sequence");
    expect_one(USERS_OK "listen: {a: 1}\n", 2, 9,
               "listen: expected a sequence of strings, got a mapping");
    expect_one(USERS_OK "listen: \"127.0.0.1:80\"\n", 2, 9,
               "listen: expected a sequence of strings, got \"127.0.0.1:80\"");
    expect_one(USERS_OK "listen: [[a]]\n", 2, 10, "listen[0]: expected a string, got a sequence");
    expect_one(USERS_OK "webhooks: {url: x}\n", 2, 11,
               "webhooks: expected a sequence of mappings, got a mapping");
    expect_one(USERS_OK "webhooks: [http://x]\n", 2, 12,
               "webhooks[0]: expected a mapping, got \"http://x\"");
    expect_one(USERS_OK "log: {level: {a: b}}\n", 2, 14,
               "log.level: expected a string, got a mapping");
    expect_one(USERS_OK "pipeline: {queue_limit: [1]}\n", 2, 25,
               "pipeline.queue_limit: expected an integer >= 1, got a sequence");
    expect_one("[1, 2]\n", 1, 1, "expected a mapping of keys at the top level, got a sequence");
    expect_one("just text\n", 1, 1,
               "expected a mapping of keys at the top level, got \"just text\"");
}
END_TEST

START_TEST(test_null_and_empty_values)
{
    expect_one(USERS_OK "data_dir:\n", 2, 10, "data_dir: expected a string, got null");
    expect_one(USERS_OK "log: {level: ~}\n", 2, 14, "log.level: expected a string, got null");
    expect_one(USERS_OK "data_dir: \"\"\n", 2, 11, "data_dir: must not be empty");
    expect_one(USERS_OK "data_dir: \"a\\0b\"\n", 2, 11, "data_dir: contains a NUL byte");
}
END_TEST

START_TEST(test_duplicate_key)
{
    expect_one(USERS_OK "log:\n  level: info\n  level: warn\n", 4, 3,
               "log.level: duplicate key (first given at 3:3)");
    expect_one("users: [{name: a, token: aaaaaaaa, name: b}]\n", 1, 36,
               "users[0].name: duplicate key (first given at 1:10)");
    expect_one("{\"users\": [{\"name\": \"a\", \"token\": \"aaaaaaaa\"}], \"log\": {},\n"
               " \"log\": {}}\n",
               2, 2, "log: duplicate key (first given at 1:49)");
}
END_TEST

START_TEST(test_bad_boolean)
{
    expect_one("users: [{name: a, token: aaaaaaaa, admin: maybe}]\n", 1, 43,
               "users[0].admin: expected a boolean (true/false/yes/no), got \"maybe\"");
    expect_one(USERS_OK "storage:\n  s3:\n    verify_tls: 1\n", 4, 17,
               "storage.s3.verify_tls: expected a boolean (true/false/yes/no), got \"1\"");
    struct dr_config *c = load_ok(USERS_OK "storage: {s3: {verify_tls: No, path_style: TRUE}}\n");
    ck_assert(!c->storage.s3.verify_tls);
    ck_assert(c->storage.s3.path_style);
    config_destroy(c);
}
END_TEST

START_TEST(test_unknown_keys)
{
    expect_one(USERS_OK "pipline: {}\n", 2, 1, "pipline: unknown key, did you mean 'pipeline'?");
    expect_one(USERS_OK "pipeline:\n  upload:\n    encrpyt: {}\n", 4, 5,
               "pipeline.upload.encrpyt: unknown key, did you mean 'encrypt'?");
    expect_one(USERS_OK "pipeline: {upload: {encrypt: {max_demnd: 3}}}\n", 2, 31,
               "pipeline.upload.encrypt.max_demnd: unknown key, did you mean 'max_demand'?");
    /* a prefix of a known key */
    expect_one(USERS_OK "supervisor: {heartbeat: 1s}\n", 2, 14,
               "supervisor.heartbeat: unknown key, did you mean 'heartbeat_interval'?");
    /* a known key with junk after it */
    expect_one(
        USERS_OK "pipeline: {upload: {encrypt: {concurrency_limit: 3}}}\n", 2, 31,
        "pipeline.upload.encrypt.concurrency_limit: unknown key, did you mean 'concurrency'?");
    /* nothing close */
    struct dr_config_errors e = {NULL, 0};
    load_bad(USERS_OK "frobnicate: 1\n", &e);
    ck_assert_uint_eq(e.n, 1);
    ck_assert_str_eq(e.msgs[0], "t.yaml:2:1: frobnicate: unknown key");
    config_errors_clear(&e);
    /* the suggestion comes from the siblings, not from elsewhere */
    load_bad(USERS_OK "log: {levle: info, bucket: x}\n", &e);
    ck_assert_int_ge(find_msg(&e, 2, 7, "log.levle: unknown key, did you mean 'level'?"), 0);
    ck_assert_int_ge(find_msg(&e, 2, 20, "log.bucket: unknown key"), 0);
    ck_assert(strstr(e.msgs[1], "did you mean") == NULL);
    config_errors_clear(&e);
    expect_one("{users: [{name: a, token: aaaaaaaa}], [a]: 1}\n", 1, 39,
               "keys must be plain strings, got a sequence");
}
END_TEST

START_TEST(test_syntax_errors)
{
    expect_one(USERS_OK "log: {level: info\n", 3, 1,
               "YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping "
               "at 2:6)");
    expect_one("users:\n  - name: a\n   token: b\n", 3, 4,
               "YAML syntax error: did not find expected '-' indicator (while parsing a block "
               "collection at 2:3)");
    expect_one("a: \"unterminated\n", 2, 1,
               "YAML syntax error: found unexpected end of stream (while scanning a quoted scalar "
               "at 1:4)");
    expect_one("a: *nope\n", 1, 4, "YAML syntax error: found undefined alias");
    expect_one("a: 1\n\tb: 2\n", 2, 1,
               "YAML syntax error: found a tab character that violates indentation (while "
               "scanning a plain scalar at 1:4)");
    /* invalid UTF-8: position computed from the byte offset */
    expect_one(USERS_OK "log: {level: \"\xff\"}\n", 2, 15,
               "YAML error: invalid leading UTF-8 octet");
    expect_one(USERS_OK "---\nlog: {}\n", 3, 1, "only one YAML document is allowed");
}
END_TEST

START_TEST(test_empty_file)
{
    expect_one("", 1, 1, "empty config file");
    expect_one("# only a comment\n\n", 1, 1, "empty config file");
    expect_one("---\n", 2, 1, "empty config file");
    struct dr_config_errors e = {NULL, 0};
    char *path = temp_file("");
    struct dr_config *c = NULL;
    ck_assert_int_eq(config_load(path, &c, &e), -EINVAL);
    ck_assert_uint_eq(e.n, 1);
    char *want = fmt("%s:1:1: empty config file", path);
    ck_assert_str_eq(e.msgs[0], want);
    free(want);
    config_errors_clear(&e);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(test_missing_file)
{
    struct dr_config *c = (struct dr_config *)1;
    struct dr_config_errors e = {NULL, 0};
    ck_assert_int_eq(config_load("/nonexistent/dripd.yaml", &c, &e), -ENOENT);
    ck_assert_ptr_null(c);
    ck_assert_uint_eq(e.n, 1);
    ck_assert_str_eq(
        e.msgs[0],
        "/nonexistent/dripd.yaml:1:1: cannot open config file: No such file or directory");
    config_errors_clear(&e);
    /* errs may be NULL */
    ck_assert_int_eq(config_load("/nonexistent/dripd.yaml", &c, NULL), -ENOENT);
    ck_assert_int_eq(config_load_buffer("x", "a: 1", 4, &c, NULL), -EINVAL);
    ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_users)
{
    expect_one("listen: []\n", 1, 1, "users: at least one user is required");
    expect_one("users: []\n", 1, 8, "users: at least one user is required");
    expect_one("users:\n  - token: abcdefgh\n", 2, 5, "users[0].name: required");
    expect_one("users:\n  - name: a\n", 2, 5, "users[0]: needs token or token_file");
    char *tf = temp_file("abcdefghijk\n");
    char *both = fmt("users:\n  - name: a\n    token: abcdefgh\n    token_file: %s\n", tf);
    expect_one(both, 4, 17, "users[0].token_file: give either token or token_file, not both");
    unlink(tf);
    free(tf);
    free(both);
    expect_one("users: [{name: a, token: abcdefgh}, {name: a, token: bcdefghi}]\n", 1, 44,
               "users[1].name: duplicate user name \"a\" (also users[0])");
    expect_one("users: [{name: a, token: abcdefgh}, {name: b, token: abcdefgh}]\n", 1, 54,
               "users[1].token: same token as users[0]");
    expect_one("users: [{name: a, token: short}]\n", 1, 26,
               "users[0].token: expected a token of at least 8 characters");
    expect_one("users: [{name: a, token: \"has space\"}]\n", 1, 26,
               "users[0].token: expected a token of printable ASCII without spaces");
    expect_one(
        "users: [{name: \"a b\", token: abcdefgh}]\n", 1, 16,
        "users[0].name: expected a name of 1-64 characters from A-Z a-z 0-9 _ . -, got \"a b\"");
    char name65[200];
    memset(name65, 'n', 65);
    name65[65] = '\0';
    char *doc = fmt("users: [{name: %s, token: abcdefgh}]\n", name65);
    struct dr_config_errors e = {NULL, 0};
    load_bad(doc, &e);
    ck_assert_uint_eq(e.n, 1);
    ck_assert_int_eq(find_msg(&e, 1, 16, "users[0].name: expected a name of 1-64"), 0);
    config_errors_clear(&e);
    free(doc);
    memset(name65, 'n', 64);
    name65[64] = '\0';
    doc = fmt("users: [{name: %s, token: abcdefgh}]\n", name65);
    config_destroy(load_ok(doc));
    free(doc);
    /* the secret is never echoed */
    load_bad("users: [{name: a, token: [hunter2hunter2]}]\n", &e);
    ck_assert_int_eq(find_msg(&e, 1, 26, "users[0].token: expected a string, got a sequence"), 0);
    config_errors_clear(&e);
    load_bad("users: [{name: a, token: \"hunter2 x\"}]\n", &e);
    ck_assert(strstr(e.msgs[0], "hunter2") == NULL);
    config_errors_clear(&e);
}
END_TEST

START_TEST(test_listen)
{
    expect_one(
        USERS_OK "listen: [\"localhost\"]\n", 2, 10,
        "listen[0]: expected an address host:port, [v6]:port or unix:/path, got \"localhost\"");
    expect_one(USERS_OK "listen: [\"127.0.0.1:65536\"]\n", 2, 10,
               "listen[0]: expected an address whose port is 0-65535, got \"127.0.0.1:65536\"");
    expect_one(USERS_OK "listen: [\"127.0.0.1:http\"]\n", 2, 10,
               "listen[0]: expected an address whose port is 0-65535");
    expect_one(USERS_OK "listen: [\"[::g]:80\"]\n", 2, 10,
               "listen[0]: expected an address with a valid IPv6 literal in [ ]");
    expect_one(USERS_OK "listen: [\"::1:80\"]\n", 2, 10,
               "listen[0]: expected an address host:port, [v6]:port or unix:/path");
    expect_one(USERS_OK "listen: [\"unix:\"]\n", 2, 10,
               "listen[0]: expected unix:PATH with a path of 1-107 bytes");
    expect_one(USERS_OK "listen: [\":80\"]\n", 2, 10,
               "listen[0]: expected an address host:port, [v6]:port or unix:/path");
    struct dr_config *c =
        load_ok(USERS_OK "listen: [\"0.0.0.0:65535\", \"[::]:0\", \"my-host.example:80\", "
                         "\"unix:./rel.sock\"]\n");
    ck_assert_uint_eq(c->n_listen, 4);
    ck_assert_str_eq(c->listen[3], "unix:./rel.sock");
    config_destroy(c);
    /* an empty list: only sockets inherited from systemd */
    c = load_ok(USERS_OK "listen: []\n");
    ck_assert_uint_eq(c->n_listen, 0);
    config_destroy(c);
}
END_TEST

START_TEST(test_proxies_and_cors)
{
    expect_one(USERS_OK "trusted_proxies: [\"10.0.0.1/8\"]\n", 2, 19,
               "trusted_proxies[0]: expected a block whose address has no bits set past the "
               "prefix");
    expect_one(USERS_OK "trusted_proxies: [\"10.0.0.0/8\", \"localhost\"]\n", 2, 33,
               "trusted_proxies[1]: expected an IP address or CIDR block");
    expect_one(USERS_OK "trusted_proxies: [\"::/129\"]\n", 2, 19,
               "trusted_proxies[0]: expected a prefix length of 0-128 for IPv6");
    expect_one(USERS_OK "trusted_proxies: \"127.0.0.1\"\n", 2, 18,
               "trusted_proxies: expected a sequence of strings");
    expect_one(USERS_OK "cors: {origins: [\"https://app.example/\"]}\n", 2, 18,
               "cors.origins[0]: expected an origin like https://app.example");
    expect_one(USERS_OK "cors: {origins: [\"app.example\"]}\n", 2, 18,
               "cors.origins[0]: expected an origin like");
    expect_one(USERS_OK "cors: {origins: [\"http://a.example:70000\"]}\n", 2, 18,
               "cors.origins[0]: expected an origin like");
    expect_one(USERS_OK "cors: {origin: [\"*\"]}\n", 2, 8,
               "cors.origin: unknown key, did you mean 'origins'?");
    struct dr_config *c = load_ok(USERS_OK "trusted_proxies: [\"127.0.0.1\", \"10.0.0.0/8\", "
                                           "\"::1/128\", \"unix:\"]\n"
                                           "cors: {origins: [\"https://app.example\", "
                                           "\"http://[::1]:3000\", \"*\"]}\n");
    ck_assert_uint_eq(c->n_trusted_proxies, 4);
    ck_assert_str_eq(c->trusted_proxies[3], "unix:");
    ck_assert_uint_eq(c->cors.n_origins, 3);
    ck_assert_str_eq(c->cors.origins[1], "http://[::1]:3000");
    config_destroy(c);
    c = load_ok(USERS_OK);
    ck_assert_uint_eq(c->n_trusted_proxies, 0);
    ck_assert_uint_eq(c->cors.n_origins, 0);
    config_destroy(c);
}
END_TEST

START_TEST(test_versions_and_trash)
{
    struct dr_config *c = load_ok(USERS_OK);
    ck_assert_int_eq(c->versions.keep, 0); /* defaults: no versions, no trash */
    ck_assert_uint_eq(c->trash.ttl, 0);
    config_destroy(c);
    c = load_ok(USERS_OK "versions: {keep: 5}\ntrash: {ttl: 30d}\n");
    ck_assert_int_eq(c->versions.keep, 5);
    ck_assert_uint_eq(c->trash.ttl, 30ull * 24 * 3600 * 1000);
    config_destroy(c);
    expect_one(USERS_OK "versions: {keep: -1}\n", 2, 18, "versions.keep:");
    expect_one(USERS_OK "versions: {keep: 1001}\n", 2, 18, "versions.keep:");
    expect_one(USERS_OK "trash: {ttl: soon}\n", 2, 14, "trash.ttl:");
    expect_one(USERS_OK "trash: {tll: 1d}\n", 2, 9, "trash.tll: unknown key, did you mean 'ttl'?");
}
END_TEST

START_TEST(test_storage)
{
    expect_one(USERS_OK "storage: {backend: ftp}\n", 2, 20,
               "storage.backend: expected one of local, s3, got \"ftp\"");
    struct dr_config_errors e = {NULL, 0};
    load_bad(USERS_OK "storage:\n  backend: s3\n  s3:\n    region: x\n", &e);
    ck_assert_uint_eq(e.n, 4);
    ck_assert_int_eq(find_msg(&e, 5, 5, "storage.s3.endpoint: required when storage.backend is s3"),
                     0);
    ck_assert_int_eq(find_msg(&e, 5, 5, "storage.s3.bucket: required"), 1);
    ck_assert_int_eq(find_msg(&e, 5, 5, "storage.s3.access_key_id: required"), 2);
    ck_assert_int_eq(find_msg(&e, 5, 5, "storage.s3.secret_access_key: required"), 3);
    config_errors_clear(&e);
    /* no s3 block at all: points at storage */
    load_bad(USERS_OK "storage:\n  backend: s3\n", &e);
    ck_assert_uint_eq(e.n, 4);
    ck_assert_int_eq(find_msg(&e, 3, 3, "storage.s3.endpoint: required"), 0);
    config_errors_clear(&e);
    expect_one(
        USERS_OK "storage: {s3: {endpoint: \"s3.amazonaws.com\"}}\n", 2, 26,
        "storage.s3.endpoint: expected an http:// or https:// URL, got \"s3.amazonaws.com\"");
    expect_one(USERS_OK
               "storage: {s3: {secret_access_key: abc, secret_access_key_file: /etc/hostname}}\n",
               2, 64,
               "storage.s3.secret_access_key_file: give either secret_access_key or "
               "secret_access_key_file, not both");
    expect_one(USERS_OK "storage: {s3: {parallel_parts: 0}}\n", 2, 32,
               "storage.s3.parallel_parts: expected an integer between 1 and 256, got \"0\"");
    /* local backend ignores missing s3 settings */
    struct dr_config *c = load_ok(USERS_OK "storage: {backend: local}\n");
    ck_assert_ptr_null(c->storage.s3.endpoint);
    config_destroy(c);
}
END_TEST

START_TEST(test_pipeline_checks)
{
    expect_one(USERS_OK "pipeline: {upload: {encrypt: {min_demand: 65}}}\n", 2, 43,
               "pipeline.upload.encrypt.min_demand: min_demand (65) must be <= max_demand (64)");
    expect_one(
        USERS_OK "pipeline:\n  download:\n    fetch:\n      max_demand: 2\n      min_demand: 3\n",
        6, 19, "pipeline.download.fetch.min_demand: min_demand (3) must be <= max_demand (2)");
    /* only max given: points at max */
    expect_one(USERS_OK "pipeline: {download: {decrypt: {max_demand: 0}}}\n", 2, 45,
               "pipeline.download.decrypt.max_demand: expected an integer >= 1, got \"0\"");
    /* a bad value does not also trigger the cross check */
    expect_one(USERS_OK "pipeline: {upload: {store: {max_demand: x, min_demand: 20}}}\n", 2, 41,
               "pipeline.upload.store.max_demand: expected an integer >= 1, got \"x\"");
    expect_one(USERS_OK "pipeline: {retry: {backoff: 10s, max_backoff: 5s}}\n", 2, 47,
               "pipeline.retry.max_backoff: max_backoff (5s) must be >= backoff (10s)");
    expect_one(USERS_OK "supervisor: {heartbeat_interval: 5s, heartbeat_timeout: 5s}\n", 2, 57,
               "supervisor.heartbeat_timeout: heartbeat_timeout (5s) must be longer than "
               "heartbeat_interval (5s)");
    expect_one(USERS_OK "log: {level: loud}\n", 2, 14,
               "log.level: expected one of error, warn, info, debug, got \"loud\"");
}
END_TEST

START_TEST(test_processing)
{
    /* defaults: on, thumb + preview, poster, originals untouched */
    struct dr_config *c = load_ok(USERS_OK);
    ck_assert(c->processing.enabled);
    ck_assert_uint_eq(c->processing.n_variants, 2);
    ck_assert_str_eq(c->processing.variants[0].name, "thumb");
    ck_assert_int_eq(c->processing.variants[0].max, 256);
    ck_assert_str_eq(c->processing.variants[0].format, "webp");
    ck_assert_str_eq(c->processing.variants[1].name, "preview");
    ck_assert_int_eq(c->processing.variants[1].quality, 82);
    ck_assert(c->processing.video_poster);
    ck_assert(!c->processing.strip_metadata);
    ck_assert_uint_eq(c->processing.limits.max_pixels, 100000000);
    ck_assert_uint_eq(c->processing.limits.timeout, 30000);
    ck_assert_uint_eq(c->processing.limits.memory, 512ull << 20);
    ck_assert_int_eq(c->pipeline.upload.process.concurrency, 2);
    config_destroy(c);
    /* a list replaces the defaults; quality defaults to 80; [] is none */
    c = load_ok(USERS_OK "processing:\n  variants:\n    - {name: small, max: 64, format: png}\n"
                         "  strip_metadata: true\n  limits: {memory: 1GiB}\n");
    ck_assert_uint_eq(c->processing.n_variants, 1);
    ck_assert_str_eq(c->processing.variants[0].name, "small");
    ck_assert_int_eq(c->processing.variants[0].quality, 80);
    ck_assert(c->processing.strip_metadata);
    ck_assert_uint_eq(c->processing.limits.memory, 1ull << 30);
    config_destroy(c);
    c = load_ok(USERS_OK "processing: {enabled: false, variants: []}\n");
    ck_assert(!c->processing.enabled);
    ck_assert_uint_eq(c->processing.n_variants, 0);
    config_destroy(c);

    expect_one(USERS_OK "processing: {variants: [{name: Big, max: 9, format: webp}]}\n", 2, 32,
               "processing.variants[0].name: expected a name of 1-31 characters from a-z 0-9 _ "
               "-, got \"Big\"");
    expect_one(USERS_OK "processing: {variants: [{name: a, max: 9, format: gif}]}\n", 2, 51,
               "processing.variants[0].format: expected one of webp, jpeg, png, got \"gif\"");
    expect_one(USERS_OK "processing: {variants: [{name: a, max: 20000, format: png}]}\n", 2, 40,
               "processing.variants[0].max: expected an integer between 1 and 16384, got "
               "\"20000\"");
    expect_one(USERS_OK "processing: {variants: [{name: a, format: png}]}\n", 2, 25,
               "processing.variants[0].max: required");
    expect_one(USERS_OK "processing:\n  variants:\n    - {name: a, max: 9, format: png}\n"
                        "    - {name: a, max: 8, format: png}\n",
               5, 14,
               "processing.variants[1].name: duplicate variant name 'a' (also "
               "processing.variants[0])");
    expect_one(USERS_OK "processing: {limits: {timeout: 5ms}}\n", 2, 32,
               "processing.limits.timeout: expected a duration (e.g. 30s) between 100ms and 1h, "
               "got \"5ms\"");
    expect_one(USERS_OK "processing: {test_decoder: crash}\n", 2, 28,
               "processing.test_decoder: expected one of socket, open, segv, hang, alloc, got "
               "\"crash\"");
    expect_one(USERS_OK "pipeline: {upload: {process: {min_demand: 65}}}\n", 2, 43,
               "pipeline.upload.process.min_demand: min_demand (65) must be <= max_demand (64)");
}
END_TEST

START_TEST(test_webhooks)
{
    expect_one(USERS_OK "webhooks: [{url: \"ftp://x\", secret: s}]\n", 2, 18,
               "webhooks[0].url: expected an http:// or https:// URL, got \"ftp://x\"");
    expect_one(USERS_OK "webhooks: [{url: \"http://x\"}]\n", 2, 12, "webhooks[0].secret: required");
    expect_one(USERS_OK "webhooks:\n  - secret: s\n", 3, 5, "webhooks[0].url: required");
    expect_one(USERS_OK "webhooks: [{url: \"http://x\", secret: \"\"}]\n", 2, 38,
               "webhooks[0].secret: must not be empty");
}
END_TEST

/* Many problems at once: all reported, in file order. */
START_TEST(test_multiple_errors)
{
    static const char doc[] = "listen: [\"nope\"]\n"                    /* 1 */
                              "users:\n"                                /* 2 */
                              "  - name: alice\n"                       /* 3 */
                              "    token: abc\n"                        /* 4 */
                              "pipeline:\n"                             /* 5 */
                              "  queue_limit: many\n"                   /* 6 */
                              "  upload: {encrypt: {concurrency: 0}}\n" /* 7 */
                              "cache: {max_size: 1XB}\n"                /* 8 */
                              "loq: {level: debug}\n";                  /* 9 */
    struct dr_config_errors e = {NULL, 0};
    e.msgs = malloc(sizeof(char *));
    e.msgs[0] = strdup("earlier message");
    e.n = 1;
    load_bad(doc, &e);
    ck_assert_uint_eq(e.n, 7);
    ck_assert_str_eq(e.msgs[0], "earlier message"); /* appended, not reset */
    ck_assert_int_eq(find_msg(&e, 1, 10, "listen[0]: "), 1);
    ck_assert_int_eq(find_msg(&e, 4, 12, "users[0].token: "), 2);
    ck_assert_int_eq(find_msg(&e, 6, 16, "pipeline.queue_limit: "), 3);
    ck_assert_int_eq(find_msg(&e, 7, 35, "pipeline.upload.encrypt.concurrency: "), 4);
    ck_assert_int_eq(find_msg(&e, 8, 19, "cache.max_size: "), 5);
    ck_assert_int_eq(find_msg(&e, 9, 1, "loq: unknown key, did you mean 'log'?"), 6);
    config_errors_clear(&e);
    /* unknown-key problem counted too (it was the 9th line) */
    load_bad(doc, &e);
    ck_assert_int_eq(find_msg(&e, 9, 1, "loq: unknown key, did you mean 'log'?"), 5);
    config_errors_clear(&e);
}
END_TEST

START_TEST(test_too_many_errors)
{
    size_t cap = 64 + 300 * 16;
    char *doc = malloc(cap), *p = doc;
    p += sprintf(p, "%s", USERS_OK);
    for (int i = 0; i < 300; i++)
        p += sprintf(p, "bad_key_%03d: 1\n", i);
    struct dr_config_errors e = {NULL, 0};
    load_bad(doc, &e);
    ck_assert_uint_eq(e.n, 101);
    ck_assert_str_eq(e.msgs[100], "t.yaml:1:1: too many problems, 200 more not shown");
    config_errors_clear(&e);
    free(doc);
}
END_TEST

/* ---- sizes and durations ---- */

START_TEST(test_parse_size)
{
    static const struct {
        const char *in;
        uint64_t out;
    } ok[] = {
        {"0", 0},
        {"1", 1},
        {"512B", 512},
        {"512 B", 512},
        {"1KiB", 1024},
        {"10MiB", 10u << 20},
        {"10 MiB", 10u << 20},
        {"4GiB", 4ull << 30},
        {"2TiB", 2ull << 40},
        {"1KB", 1000},
        {"3MB", 3000000},
        {"5GB", 5000000000ull},
        {"1TB", 1000000000000ull},
        {"1.5KiB", 1536},
        {"0.5MiB", 512u << 10},
        {"2.0", 2},
        {"9223372036854775807", 9223372036854775807ull},
        {"8388607TiB", 8388607ull << 40},
    };
    static const char *const bad[] = {
        "",
        " 1",
        "-1",
        "+1",
        "1 ",
        "1KiBx",
        "1kib",
        "1K",
        "1k",
        "1 kB",
        "1mb",
        "MiB",
        "1.5",
        "1.5B",
        "1.",
        ".5KiB",
        "1..5KiB",
        "1.1234567MiB",
        "0x10",
        "1e3",
        "10 apples",
        "1  MiB x",
        "9223372036854775808",
        "18446744073709551616",
        "8388608TiB",
        "99999999999999999999999GiB",
        "1,000",
    };
    uint64_t v;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        v = 12345;
        ck_assert_msg(config_parse_size(ok[i].in, &v) == 0, "size %s rejected", ok[i].in);
        ck_assert_msg(v == ok[i].out, "size %s = %llu", ok[i].in, (unsigned long long)v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 12345;
        ck_assert_msg(config_parse_size(bad[i], &v) == -EINVAL, "size \"%s\" accepted", bad[i]);
        ck_assert_uint_eq(v, 12345);
    }
    ck_assert_int_eq(config_parse_size(NULL, &v), -EINVAL);
}
END_TEST

START_TEST(test_parse_duration)
{
    static const struct {
        const char *in;
        uint64_t ms;
    } ok[] = {
        {"0", 0},
        {"10", 10000},
        {"200ms", 200},
        {"200 ms", 200},
        {"30s", 30000},
        {"1.5s", 1500},
        {"0.25s", 250},
        {"0.5", 500},
        {"5m", 300000},
        {"2h", 7200000},
        {"1d", 86400000},
        {"1.5h", 5400000},
        {"9223372036854775807ms", 9223372036854775807ull},
    };
    static const char *const bad[] = {
        "",
        "-1",
        "-5s",
        "1x",
        "10 seconds",
        "1S",
        "1H",
        "1ms2",
        "s",
        "1.5ms",
        "0.0001s",
        "1w",
        "1y",
        "1.s",
        "9223372036854775808ms",
        "9223372036854776s",
        "99999999999999999999d",
        " 1s",
        "1s ",
    };
    uint64_t v;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        v = 12345;
        ck_assert_msg(config_parse_duration(ok[i].in, &v) == 0, "duration %s rejected", ok[i].in);
        ck_assert_msg(v == ok[i].ms, "duration %s = %llu", ok[i].in, (unsigned long long)v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 12345;
        ck_assert_msg(config_parse_duration(bad[i], &v) == -EINVAL, "duration \"%s\" accepted",
                      bad[i]);
        ck_assert_uint_eq(v, 12345);
    }
}
END_TEST

/* ---- secrets from files and token lookup ---- */

START_TEST(test_token_file)
{
    char *tok = temp_file("file-token-1234\n");
    char *tok_crlf = temp_file("crlf-token-5678\r\n");
    char *short_tok = temp_file("short\n");
    char *key = temp_file("s3-secret-from-file\n");
    char *doc = fmt("users:\n"
                    "  - {name: a, token_file: %s}\n"
                    "  - {name: b, token_file: \"%s\"}\n"
                    "storage: {s3: {secret_access_key_file: %s}}\n",
                    tok, tok_crlf, key);
    struct dr_config *c = load_ok(doc);
    ck_assert_str_eq(c->users[0].token, "file-token-1234");
    ck_assert_str_eq(c->users[1].token, "crlf-token-5678");
    ck_assert_str_eq(c->storage.s3.secret_access_key, "s3-secret-from-file");
    ck_assert_ptr_eq(config_find_token(c, "file-token-1234", 15), &c->users[0]);
    config_destroy(c);
    free(doc);

    doc = fmt("users: [{name: a, token_file: %s}]\n", short_tok);
    expect_one(doc, 1, 31, "users[0].token_file: expected a token of at least 8 characters");
    free(doc);
    expect_one("users: [{name: a, token_file: /nonexistent/tok}]\n", 1, 31,
               "users[0].token_file: cannot read \"/nonexistent/tok\": No such file or directory");
    expect_one("users: [{name: a, token_file: /tmp}]\n", 1, 31,
               "users[0].token_file: \"/tmp\" is not a regular file");
    /* same token given inline and from a file */
    doc = fmt("users: [{name: a, token: file-token-1234}, {name: b, token_file: %s}]\n", tok);
    expect_one(doc, 1, 66, "users[1].token_file: same token as users[0]");
    free(doc);

    char *paths[] = {tok, tok_crlf, short_tok, key};
    for (size_t i = 0; i < 4; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
}
END_TEST

START_TEST(test_find_token)
{
    struct dr_config *c = load_ok("users:\n"
                                  "  - {name: alice, token: alice-secret-token, admin: true}\n"
                                  "  - {name: bob, token: bob-secret-token}\n");
    const struct dr_user *u = config_find_token(c, "bob-secret-token", 16);
    ck_assert_ptr_nonnull(u);
    ck_assert_str_eq(u->name, "bob");
    ck_assert(!u->admin);
    u = config_find_token(c, "alice-secret-token", 18);
    ck_assert_str_eq(u->name, "alice");
    ck_assert(u->admin);
    /* length matters: no prefix or extension matches */
    ck_assert_ptr_null(config_find_token(c, "bob-secret-token", 15));
    ck_assert_ptr_null(config_find_token(c, "bob-secret-tokenX", 17));
    ck_assert_ptr_null(config_find_token(c, "", 0));
    ck_assert_ptr_null(config_find_token(c, "nobody-at-all", 13));
    /* not NUL-terminated input */
    char buf[32];
    memcpy(buf, "bob-secret-tokenGARBAGE", 23);
    ck_assert_ptr_eq(config_find_token(c, buf, 16), &c->users[1]);
    ck_assert_ptr_null(config_find_token(NULL, "x", 1));
    config_destroy(c);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_full_file);
    tcase_add_test(tc, test_example_file);
    tcase_add_test(tc, test_flow_json);
    tcase_add_test(tc, test_derived_paths);
    tcase_add_test(tc, test_aliases);
    suite_add_tcase(s, tc);

    tc = tcase_create("problems");
    tcase_add_test(tc, test_bad_integer);
    tcase_add_test(tc, test_bad_size_duration);
    tcase_add_test(tc, test_wrong_types);
    tcase_add_test(tc, test_null_and_empty_values);
    tcase_add_test(tc, test_duplicate_key);
    tcase_add_test(tc, test_bad_boolean);
    tcase_add_test(tc, test_unknown_keys);
    tcase_add_test(tc, test_syntax_errors);
    tcase_add_test(tc, test_empty_file);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_users);
    tcase_add_test(tc, test_listen);
    tcase_add_test(tc, test_proxies_and_cors);
    tcase_add_test(tc, test_storage);
    tcase_add_test(tc, test_versions_and_trash);
    tcase_add_test(tc, test_pipeline_checks);
    tcase_add_test(tc, test_webhooks);
    tcase_add_test(tc, test_multiple_errors);
    tcase_add_test(tc, test_too_many_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("values");
    tcase_add_test(tc, test_parse_size);
    tcase_add_test(tc, test_parse_duration);
    tcase_add_test(tc, test_token_file);
    tcase_add_test(tc, test_find_token);
    tcase_add_test(tc, test_processing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
