/* decode_proto.h - the request/response protocol between the pipeline
 * worker and a dripd-decode helper (see decode_proto.c, decode.h).
 *
 * One helper decodes one file. The parent passes the file descriptors at
 * spawn time (never paths): fd 3 is a SOCK_SEQPACKET socket carrying one
 * request message and one response message, fd 4 the input (read-only),
 * fds 5.. one output file per requested variant (write-only, empty), and
 * after them, with DECODE_F_STRIP, the output of the stripped original. Both
 * messages are fixed-layout little-endian records of at most
 * DECODE_MSG_MAX bytes; every count and string is bounded, and a parser
 * refuses anything malformed (fuzz/fuzz_decode_proto.c).
 *
 * Threads: pure functions, no state.
 */
#ifndef DRIPD_DECODE_PROTO_H
#define DRIPD_DECODE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DECODE_MSG_MAX 4096
#define DECODE_MAX_VARIANTS 8
#define DECODE_NAME_LEN 32    /* variant name, NUL included */
#define DECODE_REASON_LEN 200 /* failure reason, NUL included */
#define DECODE_MIME_LEN 80
#define DECODE_TEXT_LEN 64 /* camera model, capture time */

/* The fds a helper finds in place when it starts. */
#define DECODE_FD_CHAN 3
#define DECODE_FD_INPUT 4
#define DECODE_FD_OUT0 5

/* The zygote (`dripd-decode --zygote`, decode.c): a helper exec'd once,
 * its libraries loaded, that makes one child per file. Its fd 3 is a
 * SOCK_SEQPACKET control socket; each message is one decode_fork_req
 * with n descriptors (SCM_RIGHTS), descriptor k going to fd
 * DECODE_FD_CHAN + slot[k] in the child. The answer is an int32: the
 * child's pid (a child of the zygote's parent, CLONE_PARENT), or -errno. */
#define DECODE_FORK_MAGIC 0x6b726f66u /* "fork" */
#define DECODE_FORK_MAX_FDS (2 + DECODE_MAX_VARIANTS + 1)
struct decode_fork_req {
    uint32_t magic;
    uint32_t n;
    uint8_t slot[DECODE_FORK_MAX_FDS];
};

enum decode_format { DECODE_FMT_WEBP = 1, DECODE_FMT_JPEG = 2, DECODE_FMT_PNG = 3 };

/* Request flags. The TEST_ ones are test hooks (processing.test_decoder):
 * they make the helper misbehave on purpose, after its sandbox is up. */
enum {
    DECODE_F_POSTER = 1u << 0,      /* video: make the variants from a poster frame */
    DECODE_F_STRIP = 1u << 1,       /* images: the original without metadata (strip.h) */
    DECODE_F_MOD_HEIF = 1u << 2,    /* load libvips's HEIF module (decode_run adds it: ISO BMFF) */
    DECODE_F_MOD_PDF = 1u << 3,     /* load libvips's PDF module (decode_run adds it: "%PDF-") */
    DECODE_F_TEST_SOCKET = 1u << 8, /* call socket(2): the filter kills it (SIGSYS) */
    DECODE_F_TEST_OPEN = 1u << 9,   /* open /etc/passwd: refused (EACCES), answered */
    DECODE_F_TEST_SEGV = 1u << 10,  /* crash with SIGSEGV inside the decoder */
    DECODE_F_TEST_HANG = 1u << 11,  /* never answer (the wall-clock timeout) */
    DECODE_F_TEST_ALLOC = 1u << 12, /* allocate and touch 2 GiB (RLIMIT_AS) */
};
#define DECODE_F_KNOWN 0x1f0fu

struct decode_variant_req {
    char name[DECODE_NAME_LEN];
    uint32_t max;    /* longest side, px (1..16384) */
    uint8_t format;  /* enum decode_format */
    uint8_t quality; /* 1..100 (lossy formats) */
};

struct decode_req {
    uint32_t flags;
    uint64_t max_pixels; /* refuse larger images from their header */
    uint64_t memory;     /* RLIMIT_AS in bytes; 0: not set */
    uint32_t timeout_ms; /* the parent kills at this; the helper also limits its CPU */
    uint32_t n_variants;
    struct decode_variant_req v[DECODE_MAX_VARIANTS];
};

enum decode_kind {
    DECODE_KIND_OTHER = 0,
    DECODE_KIND_IMAGE = 1,
    DECODE_KIND_VIDEO = 2,
    DECODE_KIND_AUDIO = 3,
    DECODE_KIND_PDF = 4,
};

/* Which metadata fields are present (decode_resp.have). */
enum {
    DECODE_HAVE_SIZE = 1u << 0,     /* width, height (as displayed) */
    DECODE_HAVE_DURATION = 1u << 1, /* duration_ms */
    DECODE_HAVE_PAGES = 1u << 2,    /* pages */
    DECODE_HAVE_TAKEN = 1u << 3,    /* taken */
    DECODE_HAVE_CAMERA = 1u << 4,   /* camera */
    DECODE_HAVE_FRAMES = 1u << 5,   /* frames (animated images) */
};

/* What became of the original with DECODE_F_STRIP (decode_resp.strip). */
enum decode_strip {
    DECODE_STRIP_NONE = 0,   /* not asked, or not an image */
    DECODE_STRIP_DONE = 1,   /* written to the strip output: strip_size bytes */
    DECODE_STRIP_CLEAN = 2,  /* nothing to remove: nothing written */
    DECODE_STRIP_FAILED = 3, /* cannot (format, malformed file): strip_reason */
};

struct decode_variant_resp {
    int32_t status; /* 0 made, -errno failed (reason says why) */
    char reason[DECODE_REASON_LEN];
    uint32_t width, height;
    uint64_t size; /* bytes written to its output fd */
};

struct decode_resp {
    int32_t status; /* 0: the file was examined (variants may still fail); -errno */
    char reason[DECODE_REASON_LEN];
    char mime[DECODE_MIME_LEN]; /* libmagic's type of the bytes */
    uint32_t kind;              /* enum decode_kind */
    uint32_t have;              /* DECODE_HAVE_* */
    uint32_t width, height;
    uint64_t duration_ms;
    uint32_t pages;
    uint32_t frames;
    char taken[DECODE_TEXT_LEN];  /* "2024-05-01T12:34:56" (EXIF local time) */
    char camera[DECODE_TEXT_LEN]; /* "Pixel 7" */
    uint32_t n_variants;          /* == the request's */
    struct decode_variant_resp v[DECODE_MAX_VARIANTS];
    uint32_t strip; /* enum decode_strip */
    uint64_t strip_size;
    char strip_reason[DECODE_REASON_LEN];
    /* Not on the wire: filled in by decode_run() from wait4(). */
    uint64_t peak_rss_kib; /* the helper's peak resident set */
    uint64_t wall_ms;      /* spawn to exit */
    uint64_t cpu_ms;       /* user + system */
};

/* Encode into buf (>= DECODE_MSG_MAX); returns the length, or -EINVAL
 * when the struct is out of its bounds. */
int decode_req_encode(const struct decode_req *r, uint8_t *buf, size_t cap);
int decode_resp_encode(const struct decode_resp *r, uint8_t *buf, size_t cap);
/* Parse len bytes into *out. 0, or -EBADMSG for anything malformed (bad
 * magic or version, counts out of range, strings without their NUL or
 * with control characters, a short or long message). */
int decode_req_parse(const uint8_t *buf, size_t len, struct decode_req *out);
int decode_resp_parse(const uint8_t *buf, size_t len, struct decode_resp *out);

/* "image/webp" | "image/jpeg" | "image/png", or NULL for an unknown format. */
const char *decode_format_mime(int format);
/* A variant name is 1..31 of [a-z0-9_-]. */
bool decode_name_ok(const char *name);

#endif
