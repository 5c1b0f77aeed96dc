/* config.c - defaults and helpers. STUB LOADER: the YAML loader is being
 * written; config_load() below only returns the defaults. */
#include "dripd/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/util.h"

struct dr_config *config_defaults(void)
{
    struct dr_config *c = xcalloc(1, sizeof *c);
    c->path = xstrdup("<defaults>");
    c->listen = xcalloc(1, sizeof(char *));
    c->listen[0] = xstrdup("127.0.0.1:8080");
    c->n_listen = 1;
    c->data_dir = xstrdup("./var");
    c->storage.backend = DR_STORE_LOCAL;
    c->storage.s3.region = xstrdup("us-east-1");
    c->storage.s3.path_style = true;
    c->storage.s3.verify_tls = true;
    c->storage.s3.part_size = 16ull << 20;
    c->storage.s3.parallel_parts = 4;
    c->storage.s3.connect_timeout = 5000;
    c->storage.s3.idle_timeout = 30000;
    c->storage.s3.timeout = 3600000;
    c->pipeline.queue_limit = 10000;
    c->pipeline.upload.encrypt = (struct dr_stage_cfg){2, 10, 1};
    c->pipeline.upload.store = (struct dr_stage_cfg){4, 10, 1};
    c->pipeline.download.fetch = (struct dr_stage_cfg){4, 10, 1};
    c->pipeline.download.decrypt = (struct dr_stage_cfg){2, 10, 1};
    c->pipeline.retry.attempts = 5;
    c->pipeline.retry.backoff = 1000;
    c->pipeline.retry.max_backoff = 60000;
    c->pipeline.segment_size = 64 << 10;
    c->cache.max_size = 1ull << 30;
    c->cache.ttl = 2 * 3600 * 1000;
    c->limits.max_upload_size = 10ull << 30;
    c->limits.header_timeout = 10000;
    c->limits.body_timeout = 60000;
    c->limits.keepalive_timeout = 75000;
    c->limits.max_connections = 10000;
    c->limits.max_header_size = 16 << 10;
    c->limits.max_headers = 100;
    c->tus.expiration = 24ull * 3600 * 1000;
    c->supervisor.max_restarts = 5;
    c->supervisor.max_seconds = 10000;
    c->supervisor.heartbeat_interval = 1000;
    c->supervisor.heartbeat_timeout = 10000;
    c->supervisor.drain_timeout = 30000;
    c->health.min_free_disk = 256ull << 20;
    c->scrub.rate_limit = 50ull << 20;
    c->log.level = xstrdup("info");
    config_finish(c);
    return c;
}

void config_finish(struct dr_config *c)
{
    if (c->storage.local.path == NULL)
        c->storage.local.path = xasprintf("%s/objects", c->data_dir);
    if (c->encryption.key_file == NULL)
        c->encryption.key_file = xasprintf("%s/master.key", c->data_dir);
}

int config_load(const char *path, struct dr_config **out, struct dr_config_errors *errs)
{
    (void)errs;
    *out = config_defaults();
    free((*out)->path);
    (*out)->path = xstrdup(path);
    return 0;
}

void config_free(struct dr_config *c)
{
    if (c == NULL)
        return;
    free(c->path);
    for (size_t i = 0; i < c->n_listen; i++)
        free(c->listen[i]);
    free(c->listen);
    free(c->data_dir);
    for (size_t i = 0; i < c->n_users; i++) {
        free(c->users[i].name);
        free(c->users[i].token);
    }
    free(c->users);
    free(c->storage.local.path);
    free(c->storage.s3.endpoint);
    free(c->storage.s3.bucket);
    free(c->storage.s3.region);
    free(c->storage.s3.access_key_id);
    free(c->storage.s3.secret_access_key);
    free(c->storage.s3.session_token);
    free(c->encryption.key_file);
    free(c->log.level);
    for (size_t i = 0; i < c->n_webhooks; i++) {
        free(c->webhooks[i].url);
        free(c->webhooks[i].secret);
    }
    free(c->webhooks);
    free(c);
}

void config_errors_free(struct dr_config_errors *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
    (void)s;
    (void)out;
    return -EINVAL;
}

int config_parse_duration(const char *s, uint64_t *out_ms)
{
    (void)s;
    (void)out_ms;
    return -EINVAL;
}

const struct dr_user *config_find_token(const struct dr_config *cfg, const char *token, size_t len)
{
    const struct dr_user *found = NULL;
    for (size_t i = 0; i < cfg->n_users; i++) {
        const char *t = cfg->users[i].token;
        if (t && dr_consttime_eq(t, strlen(t), token, len) && found == NULL)
            found = &cfg->users[i];
    }
    return found;
}
