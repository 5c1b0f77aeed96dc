#!/usr/bin/env bash
# bench/s3.sh: the S3 store stage's throughput to s3rver (loopback), side by
# side with `aws s3 cp` of the same file to the same s3rver.
#
#   RUNS=5 (default)     runs per client, alternating, order rotated (A B C, B C A, ...)
#   SIZE=1073741824      file size in bytes (1 GiB)
#   PART=16MiB PAR=4     storage.s3.part_size / parallel_parts (awscli gets the same
#                        multipart_chunksize / max_concurrent_requests)
#   SKIP="threads get"   clients/phases to skip: threads get
#
# Clients, each uploading the same file to its own key, then deleted:
#   store    dripd's store_s3 put (libdripd.a): one thread, parts over a curl multi handle
#   threads  the same multipart upload with one thread and one easy handle per
#            part in flight (curl_easy_perform), the design store_s3 did not pick
#   aws      aws s3 cp (awscli 1.x, python, threads)
# and the download phase: store_s3 get (with its fsync) vs aws s3 cp back.
#
# Output: medians (MB/s, 1 MB = 1e6 bytes) and ratios of medians on stdout,
# every run on stderr, bench/results/s3.json. Needs `make` first and
# `sh scripts/node-deps.sh` (s3rver). No root needed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-5}
SIZE=${SIZE:-$GIB}
PART=${PART:-16MiB}
PAR=${PAR:-4}
SKIP=${SKIP:-}
QUIET_WAIT=${QUIET_WAIT:-20}
skip() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }
W=$ANCHOR/s3bench
SRC=$ANCHOR/src-s3-$SIZE.bin
S3RVER_JS=$ROOT/tests/node/node_modules/s3rver/bin/s3rver.js

[ -f "$ROOT/build/libdripd.a" ] || die "build first: make"
sh "$ROOT/scripts/node-deps.sh" >/dev/null
[ -f "$S3RVER_JS" ] || die "s3rver missing: sh scripts/node-deps.sh"
command -v aws >/dev/null || die "awscli missing (apt-get install awscli)"
rm -rf "$W"; mkdir -p "$W/s3rver" "$ROOT/bench/results"
mkrand "$SRC" "$SIZE"

# ---- the C driver: store_s3 (multi) and the per-thread easy-handle variant ----
cat > "$W/drv.c" <<'EOF'
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/s3xml.h"
#include "dripd/store.h"
#include "dripd/util.h"

static struct dr_config *cfg;

/* ---- per-thread easy handles (bench-only comparison) ---- */
struct tpart { const char *url; int fd; uint64_t off, len, pos; char etag[128]; int rc; };
struct tjob { pthread_mutex_t mu; int next, n; struct tpart *parts; };

static size_t rd(char *b, size_t s, size_t n, void *ud)
{
    struct tpart *p = ud;
    size_t want = s * n, left = (size_t)(p->len - p->pos);
    if (want > left) want = left;
    ssize_t got = dr_pread_full(p->fd, b, want, p->off + p->pos);
    if (got < 0) return CURL_READFUNC_ABORT;
    p->pos += (uint64_t)got;
    return (size_t)got;
}
static size_t hd(char *d, size_t s, size_t n, void *ud)
{
    struct tpart *p = ud;
    size_t len = s * n;
    if (len > 5 && strncasecmp(d, "etag:", 5) == 0) {
        const char *v = d + 5; while (*v == ' ') v++;
        size_t l = strcspn(v, "\r\n"); if (l > 127) l = 127;
        memcpy(p->etag, v, l); p->etag[l] = 0;
    }
    return len;
}
static size_t sink(char *d, size_t s, size_t n, void *ud) { (void)d; (void)ud; return s * n; }
static struct buf { char *p; size_t n; } rbuf;
static size_t keep(char *d, size_t s, size_t n, void *ud)
{
    struct buf *b = ud; b->p = realloc(b->p, b->n + s * n + 1);
    memcpy(b->p + b->n, d, s * n); b->n += s * n; b->p[b->n] = 0; return s * n;
}
static CURL *mk(const char *url, struct curl_slist **h)
{
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
    curl_easy_setopt(e, CURLOPT_USERNAME, "S3RVER");
    curl_easy_setopt(e, CURLOPT_PASSWORD, "S3RVER");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 256L << 10);
    *h = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, *h);
    return e;
}
static void *worker(void *arg)
{
    struct tjob *j = arg;
    CURL *e = NULL; struct curl_slist *h = NULL;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int i = j->next < j->n ? j->next++ : -1;
        pthread_mutex_unlock(&j->mu);
        if (i < 0) break;
        struct tpart *p = &j->parts[i];
        if (e == NULL) e = mk(p->url, &h); else curl_easy_setopt(e, CURLOPT_URL, p->url);
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)p->len);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, rd);
        curl_easy_setopt(e, CURLOPT_READDATA, p);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, hd);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, p);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
        long st = 0;
        p->rc = curl_easy_perform(e) != CURLE_OK;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &st);
        if (st != 200 || !p->etag[0]) p->rc = 1;
    }
    if (e) curl_easy_cleanup(e);
    curl_slist_free_all(h);
    return NULL;
}
static int put_threads(const char *base, const char *key, const char *path, uint64_t part, int par)
{
    int fd = open(path, O_RDONLY); struct stat sb; fstat(fd, &sb);
    uint64_t size = (uint64_t)sb.st_size;
    char *url = xasprintf("%s/%s?uploads=", base, key);
    struct curl_slist *h; CURL *e = mk(url, &h);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &rbuf);
    rbuf.n = 0;
    if (curl_easy_perform(e) != CURLE_OK) return 1;
    char *id = NULL;
    if (s3xml_parse_initiate(rbuf.p, rbuf.n, &id, NULL) < 0) return 1;
    struct tjob j = {PTHREAD_MUTEX_INITIALIZER, 0, (int)((size + part - 1) / part), NULL};
    j.parts = calloc((size_t)j.n, sizeof *j.parts);
    for (int i = 0; i < j.n; i++) {
        j.parts[i].url = xasprintf("%s/%s?partNumber=%d&uploadId=%s", base, key, i + 1, id);
        j.parts[i].fd = fd; j.parts[i].off = (uint64_t)i * part;
        j.parts[i].len = size - j.parts[i].off < part ? size - j.parts[i].off : part;
    }
    pthread_t t[64];
    for (int i = 0; i < par; i++) pthread_create(&t[i], NULL, worker, &j);
    for (int i = 0; i < par; i++) pthread_join(t[i], NULL);
    struct s3xml_part *ps = calloc((size_t)j.n, sizeof *ps);
    for (int i = 0; i < j.n; i++) { if (j.parts[i].rc) return 1; ps[i] = (struct s3xml_part){i + 1, j.parts[i].etag}; }
    char *body = s3xml_complete_body(ps, (size_t)j.n);
    char *curl_ = xasprintf("%s/%s?uploadId=%s", base, key, id);
    curl_easy_setopt(e, CURLOPT_URL, curl_);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    rbuf.n = 0;
    char *etag = NULL;
    int rc = curl_easy_perform(e) != CURLE_OK || s3xml_parse_complete(rbuf.p, rbuf.n, &etag, NULL) < 0;
    close(fd);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 5) { fprintf(stderr, "usage: drv ENDPOINT store-put|threads-put|store-get|del KEY FILE\n"); return 2; }
    cfg = config_defaults();
    cfg->storage.backend = DR_STORE_S3;
    cfg->storage.s3.endpoint = xstrdup(argv[1]);
    cfg->storage.s3.bucket = xstrdup("media");
    cfg->storage.s3.access_key_id = xstrdup("S3RVER");
    cfg->storage.s3.secret_access_key = xstrdup("S3RVER");
    config_parse_size(getenv("PART"), &cfg->storage.s3.part_size);
    cfg->storage.s3.parallel_parts = atoi(getenv("PAR"));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct dr_store *st; char err[512];
    if (store_s3_open(cfg, &st, err, sizeof err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
    const char *op = argv[2];
    uint64_t t0 = dr_mono_ns();
    int rc;
    if (!strcmp(op, "store-put")) rc = st->ops->put(st, argv[3], argv[4], err, sizeof err);
    else if (!strcmp(op, "store-get")) rc = st->ops->get(st, argv[3], argv[4], err, sizeof err);
    else if (!strcmp(op, "del")) rc = st->ops->del(st, argv[3], err, sizeof err);
    else {
        char *base = xasprintf("%s/media", argv[1]);
        rc = put_threads(base, argv[3], argv[4], cfg->storage.s3.part_size, cfg->storage.s3.parallel_parts);
        snprintf(err, sizeof err, "threads-put failed");
    }
    double s = (double)(dr_mono_ns() - t0) / 1e9;
    if (rc != 0) { fprintf(stderr, "%s: %s\n", op, err); return 1; }
    printf("%.4f\n", s);
    st->ops->close(st);
    return 0;
}
EOF
cc -std=c11 -D_GNU_SOURCE -O2 -I"$ROOT/include" "$W/drv.c" "$ROOT/build/libdripd.a" -o "$W/drv" \
  $(pkg-config --libs libcurl libcrypto expat jansson yaml-0.1 sqlite3 libevent) -lhttp_parser -pthread -lm \
  || die "driver did not build"

# ---- s3rver on a free loopback port ----
NODE_OPTIONS=--openssl-legacy-provider node "$S3RVER_JS" -d "$W/s3rver" -a 127.0.0.1 -p 0 \
  --no-vhost-buckets --configure-bucket media --silent > "$W/s3rver.log" 2>&1 &
S3P=$!
cleanup() { stop_pid $S3P s3rver; rm -rf "$W/s3rver" "$W"/out-*; }
trap cleanup EXIT; trap 'exit 143' INT TERM
for i in $(seq 1 200); do
  PORT=$(sed -n 's/.*S3rver listening on [0-9.]*:\([0-9]*\).*/\1/p' "$W/s3rver.log")
  [ -n "$PORT" ] && break; sleep 0.05
done
[ -n "${PORT:-}" ] || die "s3rver did not start: $(cat "$W/s3rver.log")"
EP=http://127.0.0.1:$PORT
wait_http "$EP/media" || die "s3rver does not answer"

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$W/aws.cfg
PART_MB=$(( $(printf '%s' "$PART" | sed 's/MiB//') ))
cat > "$AWS_CONFIG_FILE" <<EOF
[default]
s3 =
  multipart_threshold = ${PART_MB}MB
  multipart_chunksize = ${PART_MB}MB
  max_concurrent_requests = $PAR
EOF
export PART PAR
drv() { "$W/drv" "$EP" "$@"; }
now() { date +%s.%N; }
mbps() { awk -v b="$SIZE" -v t="$1" 'BEGIN{printf "%.1f", b/t/1e6}'; }

declare -A R
run_one() {  # run_one CLIENT RUN -> seconds on stdout
  local c=$1 k="bench-$1-$2" t0 s
  case $c in
    store)   s=$(drv store-put "$k" "$SRC") ;;
    threads) s=$(drv threads-put "$k" "$SRC") ;;
    aws)     t0=$(now); aws --endpoint-url "$EP" s3 cp --only-show-errors "$SRC" "s3://media/$k" >&2
             s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.4f", b-a}') ;;
    store-get) s=$(drv store-get "bench-get" "$W/out-store") ;;
    aws-get) t0=$(now); aws --endpoint-url "$EP" s3 cp --only-show-errors "s3://media/bench-get" "$W/out-aws" >&2
             s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.4f", b-a}') ;;
  esac
  echo "$s"
}

CLIENTS="store aws"; skip threads || CLIENTS="store threads aws"
log "s3rver $EP (pid $S3P), file $SRC ($SIZE bytes), part $PART, $PAR in flight, $RUNS runs"
# The order rotates every run (A B C, B C A, C A B, ...): whoever runs right
# after another client's 1 GiB (s3rver still writing it back) would
# otherwise always pay for it. sync before each run for the same reason.
rotate() { local n=$1; shift; local a=("$@"); local i; for i in "${!a[@]}"; do echo "${a[$(( (i + n) % ${#a[@]} ))]}"; done; }
for r in $(seq 1 "$RUNS"); do
  for c in $(rotate "$r" $CLIENTS); do
    sync; quiet
    s=$(run_one "$c" "$r")
    R[$c]="${R[$c]:-} $s"
    log "put run $r $c: ${s}s = $(mbps "$s") MB/s"
    drv del "bench-$c-$r" "-" >/dev/null
  done
done
if ! skip get; then
  drv store-put bench-get "$SRC" >/dev/null
  for r in $(seq 1 "$RUNS"); do
    for c in $(rotate "$r" store-get aws-get); do
      sync; quiet
      s=$(run_one "$c" "$r"); R[$c]="${R[$c]:-} $s"
      log "get run $r $c: ${s}s = $(mbps "$s") MB/s"
      cmp -s "$SRC" "$W/out-${c%-get}" || die "$c: downloaded file differs"
      rm -f "$W/out-${c%-get}"
    done
  done
fi

med() { echo "$1" | tr ' ' '\n' | grep . | stats | sed 's/.*median=\([0-9.]*\).*/\1/'; }
echo "S3 store throughput to s3rver 3.7.1 on loopback, $((SIZE >> 20)) MiB, part $PART, $PAR in flight, $RUNS runs (median s, MB/s)"
json="{\"size\":$SIZE,\"part\":\"$PART\",\"parallel\":$PAR,\"runs\":$RUNS"
for c in $CLIENTS $(skip get || echo store-get aws-get); do
  m=$(med "${R[$c]}")
  printf '  %-10s median %7.2fs  %8s MB/s   (%s)\n' "$c" "$m" "$(mbps "$m")" "$(echo "${R[$c]}" | tr ' ' '\n' | grep . | stats)"
  json="$json,\"$c\":{\"median_s\":$m,\"runs_s\":[$(echo ${R[$c]} | tr ' ' ',')]}"
done
ratio() { awk -v a="$(med "${R[$1]}")" -v b="$(med "${R[$2]}")" 'BEGIN{printf "%.2f", b/a}'; }
echo "  put: store / aws throughput ratio = $(ratio store aws)"
skip threads || echo "  put: store (multi handle) / threads (easy per thread) = $(ratio store threads)"
skip get || echo "  get: store / aws throughput ratio = $(ratio store-get aws-get) (store fsyncs, aws does not)"
echo "$json}" > "$ROOT/bench/results/s3.json"
