/* decode.h - run a sandboxed dripd-decode helper on one file (decode.c).
 *
 * The pipeline's process stage calls decode_run() from a stage thread:
 * it spawns bin/dripd-decode (posix_spawn: exec, never a bare fork of the
 * threaded worker), hands it the input and one output file per variant
 * as file descriptors, sends the request, and waits for the answer with a
 * wall-clock deadline. A helper that crashes, is killed by its seccomp
 * filter (SIGSYS), exceeds a limit, hangs past the deadline (it is
 * SIGKILLed) or answers garbage costs an error with a reason, never the
 * caller's process.
 *
 * decode_probe() is the cheap check done before any of that: a few
 * leading bytes say whether a file may be an image, video, audio or PDF at
 * all; anything else never reaches a helper.
 *
 * Threads: any thread; no shared state except the helper path (set once,
 * before threads start).
 */
#ifndef DRIPD_DECODE_H
#define DRIPD_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "dripd/decode_proto.h"

/* How many leading bytes decode_probe() looks at. */
#define DECODE_PROBE_LEN 64

/* The kind a file's first bytes suggest (enum decode_kind): OTHER means
 * not worth a decoder. Signatures only; the helper's libmagic decides. */
int decode_probe(const uint8_t *head, size_t len);

/* The helper program: $DRIPD_DECODE_BIN if set, else "dripd-decode" plus
 * the running program's suffix ("dripd-address-undefined" ->
 * "dripd-decode-address-undefined"; but a "-thread" dripd runs the plain
 * helper: TSan reports races inside uninstrumented libvips and glib) in
 * the directory of the running program. A static buffer, computed once;
 * NULL if none is found. */
const char *decode_helper_path(void);

/* Decode input_fd (read only from offset 0) with req, writing variant i
 * into out_fds[i] (an empty, writable file; -1 to skip), and with
 * DECODE_F_STRIP an image's original without metadata into
 * out_fds[req->n_variants] (resp->strip). The helper is
 * killed at req->timeout_ms. Returns 0 when the helper answered (resp
 * filled; resp->status and each resp->v[i].status say what worked), or
 * -errno with err: -ETIMEDOUT (killed at the deadline), -ECHILD (it died:
 * "decoder killed by SIGSEGV", "... by the sandbox (SIGSYS)",
 * "... over its memory limit"), -EPROTO (a malformed answer), -ENOENT (no
 * helper program), or what spawning failed with. Never leaves a helper
 * behind. */
int decode_run(const char *helper, const struct decode_req *req, int input_fd, const int *out_fds,
               struct decode_resp *resp, char *err, size_t errlen);

#endif
