/* progress.h - dripctl's transfer progress: a redrawn bar on a terminal,
 * plain lines otherwise, with a rate and an ETA that mean what they say.
 * Single-threaded; all output goes to stderr. */
#ifndef DRIPCTL_PROGRESS_H
#define DRIPCTL_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROGRESS_SAMPLES 32

struct progress {
    bool on;  /* draw anything at all (not --quiet, not --json) */
    bool tty; /* redraw one line with \r; else a line every 2 s */
    char label[64];
    uint64_t total; /* bytes of the whole file */
    uint64_t start; /* bytes already there when this run began (a resume) */
    uint64_t done;  /* bytes there now */
    uint64_t t0_ms, last_draw_ms, last_line_ms;
    /* (time, done) samples of the last few seconds: the rate shown is over
     * this window, so it follows the link, not the whole run's average. */
    struct {
        uint64_t ms, done;
    } s[PROGRESS_SAMPLES];
    int ns, head;
    bool open; /* a bar is on screen without its newline */
};

/* Start a transfer of total bytes of which start are already done. */
void progress_begin(struct progress *p, bool on, bool tty, const char *label, uint64_t total,
                    uint64_t start);
/* New position; draws at most every 200 ms (tty) or 2 s (lines). */
void progress_update(struct progress *p, uint64_t done);
/* The closing line: "label: 300.0 MiB in 2.3 s (130.4 MiB/s)". */
void progress_end(struct progress *p);
/* End a bar that is on screen with a newline, so a message can follow on
 * a line of its own. Safe to call at any time. */
void progress_break(struct progress *p);

/* Bytes per second over the window (or since the start when the window
 * is younger than a second); 0 before any byte moved. */
double progress_rate(const struct progress *p, uint64_t now_ms);

/* "999 B", "1.5 KiB", "12.3 MiB"... into out. */
void human_size(double bytes, char *out, size_t n);
/* "42 s", "3:07", "1:02:03" into out. */
void human_duration(uint64_t secs, char *out, size_t n);

#endif
