/* pipeline.c - the helpers every pipeline step uses (pipeline.h): the
 * scratch path of a job, the *at calls relative to the work/ and spool/
 * directory fds (pl_at), which errors are worth a retry, the job's media
 * row, the stage thread's lazily opened store handle, the interruptible
 * sleep of the stop protocol, and the run/ files of the admin runs
 * (scrub, reprocess).
 *
 * Threads: any stage thread. pl_tls_store() touches only the calling
 * thread's struct pl_tls; pl_sleep()/pl_ctx_stop() meet under pc->stop_mu
 * (a leaf lock) and pc->stop_cv (CLOCK_MONOTONIC, dr_cond_init_mono).
 */
#include "pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dripd/store.h"
#include "dripd/util.h"

char *pl_work_path(const struct pl_ctx *pc, const char *job_id)
{
    return xasprintf("%s/%s.sealed", pc->work_dir, job_id);
}

char *pl_plain_path(const struct pl_ctx *pc, const char *job_id)
{
    return xasprintf("%s/%s.plain", pc->work_dir, job_id);
}

/* path's last component if it is a file directly in dir, else NULL */
static const char *name_in(const char *dir, const char *path)
{
    size_t n = dir != NULL ? strlen(dir) : 0;
    if (n == 0 || strncmp(path, dir, n) != 0 || path[n] != '/')
        return NULL;
    const char *name = path + n + 1;
    return *name != '\0' && strchr(name, '/') == NULL ? name : NULL;
}

int pl_at(const struct pl_ctx *pc, const char *path, const char **name)
{
    const char *s;
    if (pc->work_fd >= 0 && (s = name_in(pc->work_dir, path)) != NULL) {
        *name = s;
        return pc->work_fd;
    }
    if (pc->spool_fd >= 0 && (s = name_in(pc->spool_dir, path)) != NULL) {
        *name = s;
        return pc->spool_fd;
    }
    *name = path;
    return AT_FDCWD;
}

int pl_open(const struct pl_ctx *pc, const char *path, int flags)
{
    const char *name;
    int dfd = pl_at(pc, path, &name);
    int fd = openat(dfd, name, flags | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && dfd >= 0 && dfd == pc->spool_fd)
        fd = open(path, flags | O_CLOEXEC);
    return fd;
}

int pl_unlink(const struct pl_ctx *pc, const char *path)
{
    const char *name;
    int dfd = pl_at(pc, path, &name);
    int rc = unlinkat(dfd, name, 0);
    if (rc != 0 && errno == ENOENT && dfd >= 0 && dfd == pc->spool_fd)
        rc = unlink(path);
    return rc;
}

bool pl_is_transient(int rc)
{
    switch (-rc) {
    case EAGAIN:
    case EIO:
    case ENOSPC:
    case EDQUOT:
    case EBUSY:
    case ETIMEDOUT:
    case ECONNREFUSED:
    case ECONNRESET:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EINTR:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
        return true;
    default:
        return false;
    }
}

int pl_read_media(struct pl_tls *t, const char *id, struct dr_media *m, char *err, size_t errlen)
{
    int rc = catalog_media_get(t->cat, id, NULL, m);
    if (rc == -ENOENT)
        snprintf(err, errlen, "media %s no longer exists", id);
    else if (rc != 0)
        snprintf(err, errlen, "catalog: cannot read media %s: %s", id, strerror(-rc));
    return rc;
}

int pl_load_media(struct pl_tls *t, struct pl_job *j, const struct dr_media **m, char *err,
                  size_t errlen)
{
    if (j->media == NULL) {
        struct dr_media *got = xcalloc(1, sizeof *got);
        int rc = pl_read_media(t, j->job.media_id, got, err, errlen);
        if (rc != 0) {
            free(got);
            return rc;
        }
        j->media = got;
    }
    *m = j->media;
    return 0;
}

int pl_tls_store(struct pl_tls *t, char *err, size_t errlen)
{
    if (t->store)
        return 0;
    return store_open(t->pc->cfg, &t->store, err, errlen); /* -EAGAIN: retried */
}

bool pl_sleep(struct pl_ctx *pc, uint64_t ms)
{
    struct timespec ts;
    dr_mono_timespec(&ts, dr_mono_ms() + (int64_t)ms);
    pthread_mutex_lock(&pc->stop_mu);
    while (!pc->stopping)
        if (pthread_cond_timedwait(&pc->stop_cv, &pc->stop_mu, &ts) == ETIMEDOUT)
            break;
    bool ok = !pc->stopping;
    pthread_mutex_unlock(&pc->stop_mu);
    return ok;
}

void pl_ctx_stop(struct pl_ctx *pc)
{
    pthread_mutex_lock(&pc->stop_mu);
    __atomic_store_n(&pc->stopping, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&pc->stop_cv);
    pthread_mutex_unlock(&pc->stop_mu);
}

bool pl_stopping(struct pl_ctx *pc)
{
    return __atomic_load_n(&pc->stopping, __ATOMIC_RELAXED) != 0;
}

static char *run_file(const char *data_dir, const char *what, const char *ext)
{
    return xasprintf("%s/run/%s.%s", data_dir, what, ext);
}

bool pl_run_requested(const char *data_dir, const char *what)
{
    char *req = run_file(data_dir, what, "request");
    struct stat st;
    bool yes = stat(req, &st) == 0;
    free(req);
    return yes;
}

json_t *pl_run_take(const char *data_dir, const char *what)
{
    char *req = run_file(data_dir, what, "request");
    json_t *doc = json_load_file(req, 0, NULL);
    unlink(req);
    free(req);
    return doc;
}

void pl_run_status(const char *data_dir, const char *what, json_t *doc, const char *state,
                   int64_t started_ms)
{
    char ts[32];
    dr_fmt_time(started_ms, ts, sizeof ts);
    json_object_set_new(doc, "state", json_string(state));
    json_object_set_new(doc, "started_at", json_string(ts));
    if (strcmp(state, "running") != 0) {
        dr_fmt_time(dr_now_ms(), ts, sizeof ts);
        json_object_set_new(doc, "finished_at", json_string(ts));
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    char *path = run_file(data_dir, what, "json");
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0 && text && dr_write_all(fd, text, strlen(text)) == 0 && close(fd) == 0) {
        rename(tmp, path);
    } else {
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
    free(tmp);
    free(path);
    free(text);
}
