/* fuzz_config.c - libFuzzer target for the YAML config loader (config.c).
 *
 * The input is a whole config file, loaded in memory with
 * config_load_buffer(). Checks that the loader never crashes, never leaks
 * (ASan's leak check), that failure always comes with at least one
 * "NAME:LINE:COL: " message and no config, and that success comes with no
 * message and a config whose invariants hold. The input, as a C string, is
 * also fed to the size and duration parsers.
 *
 *   sh scripts/build-fuzz.sh
 *   build/fuzz/fuzz_config -dict=fuzz/fuzz_config.dict -max_total_time=60 \
 *       /tmp/work-corpus fuzz/corpus/config
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dr_config *cfg = NULL;
    struct dr_config_errors errs = {NULL, 0};
    int rc = config_load_buffer("fuzz.yaml", (const char *)data, size, &cfg, &errs);

    if (rc == 0) {
        check(cfg != NULL && errs.n == 0);
        check(cfg->n_users >= 1 && cfg->data_dir && cfg->storage.local.path &&
              cfg->encryption.key_file && cfg->log.level);
        for (size_t i = 0; i < cfg->n_users; i++) {
            check(cfg->users[i].name && cfg->users[i].token && strlen(cfg->users[i].token) >= 8);
            check(config_find_token(cfg, cfg->users[i].token, strlen(cfg->users[i].token)) ==
                  &cfg->users[i]);
        }
        for (size_t i = 0; i < cfg->n_webhooks; i++)
            check(cfg->webhooks[i].url && cfg->webhooks[i].secret);
        check(cfg->pipeline.upload.encrypt.min_demand <= cfg->pipeline.upload.encrypt.max_demand);
        if (cfg->storage.backend == DR_STORE_S3)
            check(cfg->storage.s3.endpoint && cfg->storage.s3.bucket &&
                  cfg->storage.s3.access_key_id && cfg->storage.s3.secret_access_key);
    } else {
        check(rc == -EINVAL && cfg == NULL && errs.n >= 1);
        for (size_t i = 0; i < errs.n; i++)
            check(strncmp(errs.msgs[i], "fuzz.yaml:", 10) == 0);
    }
    config_destroy(cfg);
    config_errors_clear(&errs);

    char *s = malloc(size + 1);
    uint64_t v;
    memcpy(s, data, size);
    s[size] = '\0';
    (void)config_parse_size(s, &v);
    (void)config_parse_duration(s, &v);
    free(s);
    return 0;
}
