/* top.c - `dripctl top`: the pipeline view in a terminal (top.h).
 *
 * Follows GET /v1/admin/pipeline/stream (admins; others get exit 3) and
 * shows each snapshot: the front end, the queue, jobs, each stage of the
 * upload and download pipelines (queue, in flight, threads, jobs/s, busy,
 * p50/p99, the queue's recent history), the bottleneck, restarts and the
 * last errors.
 *
 * Output: on a terminal, each snapshot redraws the screen in place (the
 * alternate screen, as top(1); restored at exit). Not on a terminal:
 * plain ASCII, one block per snapshot, separated by a blank line. With
 * --json: each snapshot as one compact JSON line. -n N stops after N
 * snapshots; otherwise it runs until Ctrl-C, reconnecting like `watch`.
 *
 * Threads: one, dripctl's.
 */
#include "top.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "dripd/util.h"
#include "progress.h"

struct top {
    struct client *c;
    long left; /* snapshots still to show; < 0: no limit */
    bool done, tty, started;
};

static double jnum(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static long long jll(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static const char *js(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "?";
}

/* A duration in ms as "0.5ms", "12ms", "1.75s"; "-" for null. */
static void dur(json_t *v, char *buf, size_t len)
{
    if (!json_is_number(v)) {
        snprintf(buf, len, "-");
        return;
    }
    double ms = json_number_value(v);
    if (ms < 10)
        snprintf(buf, len, "%.1fms", ms);
    else if (ms < 1000)
        snprintf(buf, len, "%.0fms", ms);
    else
        snprintf(buf, len, "%.2fs", ms / 1000);
}

/* The last `width` values of arr scaled to their maximum. */
static void spark(json_t *arr, int width, bool tty, FILE *out)
{
    static const char *const blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                         "\u2585", "\u2586", "\u2587", "\u2588"};
    static const char ascii[] = "_.-=+*#@";
    size_t n = json_array_size(arr), from = n > (size_t)width ? n - (size_t)width : 0;
    double max = 0;
    for (size_t i = from; i < n; i++)
        max = DR_MAX(max, json_number_value(json_array_get(arr, i)));
    for (size_t i = from; i < n; i++) {
        double v = json_number_value(json_array_get(arr, i));
        int k = max > 0 ? (int)(v / max * 7 + 0.5) : 0;
        if (tty)
            fputs(blocks[k], out);
        else
            fputc(ascii[k], out);
    }
}

void top_render(json_t *snap, bool tty, int width, FILE *out)
{
    json_t *front = json_object_get(snap, "front"), *queue = json_object_get(snap, "queue");
    json_t *jobs = json_object_get(snap, "jobs"), *rs = json_object_get(snap, "restarts");
    const char *bold = tty ? "\033[1m" : "", *rev = tty ? "\033[7m" : "",
               *off = tty ? "\033[0m" : "";
    char rate[32];
    human_size(jnum(front, "received_bytes_per_s"), rate, sizeof rate);
    fprintf(out, "%sdripd pipeline%s  %s  queue %lld/%lld  restarts: http %lld, pipeline %lld\n",
            bold, off, js(snap, "time"), jll(queue, "depth"), jll(queue, "limit"), jll(rs, "http"),
            jll(rs, "pipeline"));
    fprintf(out,
            "front: %.2f uploads/s, %.2f requests/s, %s/s in, %lld connections, %lld "
            "uploading\n",
            jnum(front, "intake_per_s"), jnum(front, "requests_per_s"), rate,
            jll(front, "open_connections"), jll(front, "uploads_in_progress"));
    fprintf(out, "jobs:  %lld done (%.2f/s), %lld failed (%.2f/s), %lld retries (%.2f/s)\n",
            jll(jobs, "completed"), jnum(jobs, "completed_per_s"), jll(jobs, "failed"),
            jnum(jobs, "failed_per_s"), jll(jobs, "retries"), jnum(jobs, "retries_per_s"));
    int sw = DR_MAX(8, DR_MIN(40, width - 76));
    size_t i, k;
    json_t *p, *s;
    json_array_foreach(json_object_get(snap, "pipelines"), i, p)
    {
        fprintf(out, "\n%s%-10s %7s %7s %4s %8s %5s %8s %8s  queue, last %ds%s\n", bold,
                js(p, "name"), "queued", "flight", "thr", "jobs/s", "busy", "p50", "p99",
                sw * (int)jll(snap, "history_step_s"), off);
        json_array_foreach(json_object_get(p, "stages"), k, s)
        {
            bool hot = json_is_true(json_object_get(s, "bottleneck"));
            char p50[16], p99[16];
            dur(json_object_get(s, "p50_ms"), p50, sizeof p50);
            dur(json_object_get(s, "p99_ms"), p99, sizeof p99);
            fprintf(out, "%s%s %-8s %7lld %7lld %4lld %8.2f %4.0f%% %8s %8s%s  ", hot ? rev : "",
                    hot ? ">" : " ", js(s, "name"), jll(s, "queued"), jll(s, "in_flight"),
                    jll(s, "threads"), jnum(s, "jobs_per_s"), jnum(s, "busy") * 100, p50, p99,
                    hot ? off : "");
            spark(json_object_get(json_object_get(s, "history"), "queued"), sw, tty, out);
            fprintf(out, "%s\n", hot ? "  <- bottleneck" : "");
        }
    }
    json_t *b = json_object_get(snap, "bottleneck");
    if (json_is_object(b))
        fprintf(out, "\n%sbottleneck: %s/%s%s: %s\n", bold, js(b, "pipeline"), js(b, "stage"), off,
                js(b, "why"));
    else
        fprintf(out, "\nbottleneck: none\n");
    json_t *errs = json_object_get(snap, "errors");
    if (json_array_size(errs) > 0) {
        fprintf(out, "last errors:\n");
        json_t *e;
        json_array_foreach(errs, i, e)
        {
            if (i >= 5)
                break;
            const char *t = js(e, "time");
            fprintf(out, "  %.8s %s/%s job %s attempt %lld %s: %.*s\n",
                    strlen(t) >= 19 ? t + 11 : t, js(e, "pipeline"), js(e, "stage"),
                    js(e, "job_id"), jll(e, "attempt"),
                    json_is_true(json_object_get(e, "final")) ? "failed" : "retried",
                    DR_MAX(20, width - 70), js(e, "error"));
        }
    }
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 100;
}

static int on_event(const char *id, const char *type, const char *data, void *arg)
{
    (void)id;
    struct top *t = arg;
    if (strcmp(type, "pipeline") != 0)
        return 0;
    if (t->c->json) {
        fputs(data, stdout);
        putchar('\n');
    } else {
        json_t *snap = json_loads(data, 0, NULL);
        if (snap == NULL)
            return 0;
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (f == NULL) {
            json_decref(snap);
            return 0;
        }
        top_render(snap, t->tty, t->tty ? term_width() : 100, f);
        fclose(f);
        json_decref(snap);
        if (t->tty) {
            /* home, then each line cleared to its end, then the rest */
            fputs(t->started ? "\033[H" : "\033[?1049h\033[?25l\033[H", stdout);
            for (char *line = buf, *nl; *line; line = nl + 1) {
                nl = strchr(line, '\n');
                if (nl == NULL)
                    nl = line + strlen(line) - 1;
                fwrite(line, 1, (size_t)(nl - line), stdout);
                fputs("\033[K\n", stdout);
            }
            fputs("\033[J", stdout);
        } else {
            if (t->started)
                putchar('\n');
            fwrite(buf, 1, len, stdout);
        }
        free(buf);
        t->started = true;
    }
    fflush(stdout);
    if (t->left > 0 && --t->left == 0) {
        t->done = true;
        return 1;
    }
    return 0;
}

int cmd_top(struct client *c, const struct args *a)
{
    struct top t = {.c = c, .left = a->count > 0 ? a->count : -1};
    t.tty = !c->json && isatty(STDOUT_FILENO);
    int rc = cmd_follow(c, "/v1/admin/pipeline/stream", "top", on_event, &t, &t.done);
    if (t.tty && t.started) {
        fputs("\033[?25h\033[?1049l", stdout);
        fflush(stdout);
    }
    return rc;
}
