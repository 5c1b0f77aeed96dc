/* progress.c - dripctl's progress display (see progress.h).
 *
 * What it shows: on a terminal one line redrawn in place,
 *     cat.jpg  [#########           ]  31%  12.3 MiB/s  ETA 0:07
 * and otherwise (logs, pipes) one plain line every 2 s. The rate is bytes
 * moved in the last ~5 s divided by the time they took (a sliding window
 * of samples), so it follows the link; the ETA is what is left at that
 * rate. Bytes that were already on the server when a resumed upload began
 * never count as moved. The closing line gives the size, the wall time
 * and the average rate of this run.
 *
 * Threads: dripctl's only thread (libcurl's progress callback runs on it).
 * Output goes to stderr only, so stdout stays clean for --json and
 * `download -o -`.
 */
#include "progress.h"

#include <stdio.h>
#include <string.h>

#include "dripd/util.h"

#define WINDOW_MS 5000
#define SAMPLE_MS 200
#define DRAW_MS 200
#define LINE_MS 2000
#define BAR 24

void human_size(double v, char *out, size_t n)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    while (v >= 1024 && i < 5) {
        v /= 1024;
        i++;
    }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

void human_duration(uint64_t s, char *out, size_t n)
{
    if (s < 60)
        snprintf(out, n, "%llu s", (unsigned long long)s);
    else if (s < 3600)
        snprintf(out, n, "%llu:%02llu", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
    else
        snprintf(out, n, "%llu:%02llu:%02llu", (unsigned long long)(s / 3600),
                 (unsigned long long)(s / 60 % 60), (unsigned long long)(s % 60));
}

static uint64_t now_ms(void)
{
    return (uint64_t)dr_mono_ms();
}

void progress_begin(struct progress *p, bool on, bool tty, const char *label, uint64_t total,
                    uint64_t start)
{
    memset(p, 0, sizeof *p);
    p->on = on;
    p->tty = tty;
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->start = p->done = start;
    p->t0_ms = now_ms();
    p->s[0].ms = p->t0_ms;
    p->s[0].done = start;
    p->ns = 1;
    p->head = 1;
}

double progress_rate(const struct progress *p, uint64_t now)
{
    if (now <= p->t0_ms || p->done <= p->start)
        return 0;
    if (now - p->t0_ms < 1000)
        return (double)(p->done - p->start) * 1000.0 / (double)(now - p->t0_ms);
    /* The oldest sample still inside the window. */
    int best = -1;
    for (int i = 0; i < p->ns; i++) {
        int k = (p->head - 1 - i + PROGRESS_SAMPLES) % PROGRESS_SAMPLES;
        if (now - p->s[k].ms > WINDOW_MS)
            break;
        best = k;
    }
    if (best < 0 || now == p->s[best].ms) /* nothing moved for a whole window */
        return 0;
    return (double)(p->done - p->s[best].done) * 1000.0 / (double)(now - p->s[best].ms);
}

static void draw(struct progress *p, uint64_t now)
{
    double rate = progress_rate(p, now);
    char r[32], d[32], tot[32], eta[32] = "--";
    human_size(rate, r, sizeof r);
    human_size((double)p->done, d, sizeof d);
    human_size((double)p->total, tot, sizeof tot);
    int pct = p->total ? (int)(p->done * 100 / p->total) : 100;
    if (rate > 0 && p->total >= p->done)
        human_duration((uint64_t)((double)(p->total - p->done) / rate + 0.5), eta, sizeof eta);
    if (p->tty) {
        char bar[BAR + 1];
        int fill = pct * BAR / 100;
        for (int i = 0; i < BAR; i++)
            bar[i] = i < fill ? '#' : ' ';
        bar[BAR] = '\0';
        /* \033[K clears what a longer previous line left behind. */
        fprintf(stderr, "\r%-20.20s [%s] %3d%% %10s/s  ETA %s\033[K", p->label, bar, pct, r, eta);
        p->open = true;
    } else {
        fprintf(stderr, "%s: %s of %s (%d%%) at %s/s, ETA %s\n", p->label, d, tot, pct, r, eta);
    }
    fflush(stderr);
}

void progress_update(struct progress *p, uint64_t done)
{
    if (done < p->done) /* a retry rewound to the server's offset */
        p->start = p->start > done ? done : p->start;
    p->done = done;
    uint64_t now = now_ms();
    int last = (p->head - 1 + PROGRESS_SAMPLES) % PROGRESS_SAMPLES;
    if (now - p->s[last].ms >= SAMPLE_MS) {
        p->s[p->head].ms = now;
        p->s[p->head].done = done;
        p->head = (p->head + 1) % PROGRESS_SAMPLES;
        if (p->ns < PROGRESS_SAMPLES)
            p->ns++;
    }
    if (!p->on)
        return;
    if (p->tty ? now - p->last_draw_ms >= DRAW_MS : now - p->last_line_ms >= LINE_MS) {
        if (p->last_line_ms == 0 && !p->tty) { /* no line in the first 2 s */
            p->last_line_ms = now;
            return;
        }
        p->last_draw_ms = p->last_line_ms = now;
        draw(p, now);
    }
}

void progress_break(struct progress *p)
{
    if (p->open) {
        fputc('\n', stderr);
        fflush(stderr);
        p->open = false;
    }
}

void progress_end(struct progress *p)
{
    if (!p->on)
        return;
    uint64_t now = now_ms();
    uint64_t ms = now > p->t0_ms ? now - p->t0_ms : 0;
    char d[32], r[32];
    human_size((double)p->done, d, sizeof d);
    double avg = ms ? (double)(p->done - p->start) * 1000.0 / (double)ms : 0;
    human_size(avg, r, sizeof r);
    if (p->tty)
        fputs("\r\033[K", stderr);
    p->open = false;
    fprintf(stderr, "%s: %s in %.1f s (%s/s)%s\n", p->label, d, (double)ms / 1000.0, r,
            p->start ? " after a resume" : "");
    fflush(stderr);
}
