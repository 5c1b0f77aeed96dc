/* lossyfs - a FUSE file system that forgets whatever was not made durable
 * (issue 19; the idea is LazyFS's, "When Amnesia Strikes", VLDB 2024).
 *
 *   lossyfs [--ext4] --control FIFO BACKING MOUNTPOINT
 *
 * What: MOUNTPOINT shows BACKING, but every change is kept in memory until
 * it is made durable, and BACKING only ever holds the durable state:
 *   - file data (and size, mode, owner, times) written since the last
 *     fsync/fdatasync of that file;
 *   - creates, links, unlinks, renames, mkdirs and rmdirs in a directory
 *     since the last fsync of that directory (POSIX-strict). With --ext4
 *     a file's fsync also makes its own names durable (what ext4 does in
 *     practice: the fsync commits the journal holding the create/rename),
 *     and those of its new parent directories.
 *   - `sync` on the control FIFO (or a syncfs of the mount through the
 *     LD_PRELOAD shim, preload.c) makes everything durable.
 * `crash` forgets everything else: nothing more is written to BACKING, the
 * kernel's FUSE connection is aborted (every process inside, frozen or
 * not, gets an error at once, ECONNABORTED or ENOTCONN), the file system
 * is unmounted (lazily if still in use) and lossyfs exits, all before it
 * answers "ok crashed" but the exit itself. Mounting BACKING again shows
 * what survived the "power cut". A clean unmount (umount, SIGTERM) is a
 * sync.
 *
 * Control FIFO, one command a line (created 0600 if missing); REPLY is an
 * optional FIFO the answer ("ok ...", "frozen ...", "error ...") is
 * written to (opened non-blocking: the asker opens it for reading first):
 *   sync [REPLY]      make everything durable
 *   crash [REPLY]     forget everything not durable, unmount, exit
 *   freeze [REPLY]    stop answering file operations (the power is off;
 *                     follow with crash)
 *   arm op=OP n=N [when=before|after] [match=SUBSTRING] [reply=REPLY]
 *                     freeze at the N-th operation OP (write, fsync,
 *                     fsyncdir, create, mkdir, rename, link, unlink,
 *                     rmdir, truncate, any) whose path contains SUBSTRING,
 *                     before it takes effect or after it took effect but
 *                     before its caller is answered; REPLY gets
 *                     "frozen OP PATH" then
 *   stats [REPLY]     "ok ops=N dirty_files=N dirty_bytes=N nodes=N"
 *
 * Model: one node per inode, with its volatile names (vl: what the mount
 * shows) and its durable names (dl: what BACKING holds); a directory has a
 * volatile map (v) and a durable map (d) of its entries. Every live file
 * has a backing inode: a new one is created in BACKING/.lossyfs-orphans/
 * (invisible through the mount, removed at start, crash and exit: the
 * orphans a real file system frees after a crash), and a durable name is
 * a hard link to it. A new directory lives there until its name becomes
 * durable. File data: the backing file holds the durable bytes; writes
 * go to 64 KiB pages in memory over it (blen: how much of the backing
 * file is still visible after truncations). A file's fsync writes its
 * pages to its backing file; a directory's fsync makes d equal v by
 * links, unlinks and renames in BACKING. BACKING's own durability is not
 * lossyfs's business (nothing is fsynced there).
 *
 * Threads: the FUSE session loop (single-threaded: one operation at a
 * time) and the control thread; one mutex (G.mu) covers all state, and a
 * frozen file system holds every operation at its start (or, for an
 * armed "after", just before its reply) until crash.
 */
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define ORPHANS ".lossyfs-orphans"
#define PG_SHIFT 16
#define PG ((uint64_t)1 << PG_SHIFT)
#define TIMEOUT 1.0

/* ------------------------------------------------------------- helpers */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lossyfs: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n ? n : 1, s ? s : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        die("out of memory");
    return p;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* --------------------------------------------------------------- nodes */

struct node;

struct link {
    struct node *parent;
    char *name;
};

struct ent {
    struct ent *next;
    char *name;
    struct node *node;
};

struct map { /* name -> node, chained */
    struct ent **b;
    size_t nb, n;
};

struct node {
    uint64_t ino;
    struct node *hnext, *bnext; /* by ino, by backing inode */
    mode_t mode;
    uid_t uid;
    gid_t gid;
    dev_t rdev;
    struct timespec atime, mtime, ctime;
    uint64_t nlookup;
    unsigned nopen;
    struct link *vl, *dl;
    size_t nvl, ndl;
    bool orphan; /* BACKING/.lossyfs-orphans/<ino> exists */
    int bfd;
    ino_t bino;
    /* directories */
    bool loaded;
    struct map v, d;
    /* regular files */
    uint64_t size, blen, bsize;
    uint8_t **pg;
    size_t npg;
    bool dirty;
    struct node *dnext, *dprev;
    /* symlinks */
    char *target;
};

enum op {
    OP_ANY,
    OP_WRITE,
    OP_FSYNC,
    OP_FSYNCDIR,
    OP_CREATE,
    OP_MKDIR,
    OP_RENAME,
    OP_LINK,
    OP_UNLINK,
    OP_RMDIR,
    OP_TRUNCATE,
    OP_N
};
static const char *const op_names[OP_N] = {"any",    "write", "fsync",   "fsyncdir",
                                           "create", "mkdir", "rename",  "link",
                                           "unlink", "rmdir", "truncate"};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ext4, crashed, frozen;
    const char *backing, *mountpoint, *control;
    dev_t dev; /* the mount's (mount_dev) */
    int orphfd;
    struct fuse_session *se;
    struct node *root;
    struct node **ih; /* by ino */
    struct node **bh; /* by backing inode */
    size_t nh, nnodes;
    uint64_t next_ino, ops;
    struct node dirty; /* list head */
    struct {
        bool on;
        enum op op;
        uint64_t n, seen;
        bool after;
        char match[256], reply[PATH_MAX];
    } arm;
} G = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void map_init(struct map *m)
{
    m->nb = 16;
    m->n = 0;
    m->b = xcalloc(m->nb, sizeof *m->b);
}

static struct ent *map_find(const struct map *m, const char *name)
{
    if (m->b == NULL)
        return NULL;
    for (struct ent *e = m->b[hash_str(name) % m->nb]; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static struct node *map_get(const struct map *m, const char *name)
{
    struct ent *e = map_find(m, name);
    return e ? e->node : NULL;
}

static void map_put(struct map *m, const char *name, struct node *n)
{
    if (m->b == NULL)
        map_init(m);
    struct ent *e = map_find(m, name);
    if (e) {
        e->node = n;
        return;
    }
    if (m->n >= m->nb) {
        size_t nb = m->nb * 2;
        struct ent **b = xcalloc(nb, sizeof *b);
        for (size_t i = 0; i < m->nb; i++)
            for (struct ent *x = m->b[i], *next; x; x = next) {
                next = x->next;
                size_t k = hash_str(x->name) % nb;
                x->next = b[k];
                b[k] = x;
            }
        free(m->b);
        m->b = b;
        m->nb = nb;
    }
    e = xcalloc(1, sizeof *e);
    e->name = xstrdup(name);
    e->node = n;
    size_t k = hash_str(name) % m->nb;
    e->next = m->b[k];
    m->b[k] = e;
    m->n++;
}

static void map_del(struct map *m, const char *name)
{
    if (m->b == NULL)
        return;
    for (struct ent **pp = &m->b[hash_str(name) % m->nb]; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->name, name) == 0) {
            struct ent *e = *pp;
            *pp = e->next;
            free(e->name);
            free(e);
            m->n--;
            return;
        }
}

/* A snapshot of a map's entries (the maps change while we walk them). */
static struct link *map_list(const struct map *m, size_t *n)
{
    struct link *l = xcalloc(m->n, sizeof *l);
    size_t k = 0;
    for (size_t i = 0; m->b && i < m->nb; i++)
        for (struct ent *e = m->b[i]; e; e = e->next) {
            l[k].name = xstrdup(e->name);
            l[k].parent = e->node; /* here: the entry's node */
            k++;
        }
    *n = k;
    return l;
}

static void list_free(struct link *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i].name);
    free(l);
}

static void map_free(struct map *m)
{
    for (size_t i = 0; m->b && i < m->nb; i++)
        for (struct ent *e = m->b[i], *next; e; e = next) {
            next = e->next;
            free(e->name);
            free(e);
        }
    free(m->b);
    m->b = NULL;
    m->n = m->nb = 0;
}

static void link_add(struct link **l, size_t *n, struct node *parent, const char *name)
{
    *l = xrealloc(*l, (*n + 1) * sizeof **l);
    (*l)[*n].parent = parent;
    (*l)[*n].name = xstrdup(name);
    (*n)++;
}

static void link_del(struct link **l, size_t *n, struct node *parent, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if ((*l)[i].parent == parent && strcmp((*l)[i].name, name) == 0) {
            free((*l)[i].name);
            (*l)[i] = (*l)[*n - 1];
            (*n)--;
            return;
        }
}

#define NH 65536
static struct node *node_by_ino(uint64_t ino)
{
    for (struct node *n = G.ih[ino % NH]; n; n = n->hnext)
        if (n->ino == ino)
            return n;
    return NULL;
}

static struct node *node_by_bino(ino_t b)
{
    for (struct node *n = G.bh[b % NH]; n; n = n->bnext)
        if (n->bino == b)
            return n;
    return NULL;
}

static void bindex(struct node *n, ino_t b)
{
    n->bino = b;
    n->bnext = G.bh[b % NH];
    G.bh[b % NH] = n;
}

static void unindex(struct node **h, struct node *n, bool by_b)
{
    size_t k = by_b ? n->bino % NH : n->ino % NH;
    for (struct node **pp = &h[k]; *pp; pp = by_b ? &(*pp)->bnext : &(*pp)->hnext)
        if (*pp == n) {
            *pp = by_b ? n->bnext : n->hnext;
            return;
        }
}

static struct timespec now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t;
}

static struct node *node_new(mode_t mode, uid_t uid, gid_t gid)
{
    struct node *n = xcalloc(1, sizeof *n);
    n->ino = G.next_ino++;
    n->mode = mode;
    n->uid = uid;
    n->gid = gid;
    n->atime = n->mtime = n->ctime = now();
    n->bfd = -1;
    n->hnext = G.ih[n->ino % NH];
    G.ih[n->ino % NH] = n;
    G.nnodes++;
    return n;
}

static void orphan_name(const struct node *n, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIu64, n->ino);
}

static const char *path_of(const struct node *n, char *buf, size_t len)
{
    /* walk the volatile names up to the root */
    const char *parts[128];
    size_t k = 0;
    while (n != G.root && n->nvl > 0 && k < 128) {
        parts[k++] = n->vl[0].name;
        n = n->vl[0].parent;
    }
    size_t at = 0;
    buf[0] = '\0';
    if (n != G.root)
        at += (size_t)snprintf(buf, len, "(unlinked)");
    while (k > 0 && at < len)
        at += (size_t)snprintf(buf + at, len - at, "/%s", parts[--k]);
    if (buf[0] == '\0')
        snprintf(buf, len, "/");
    return buf;
}

static void dirty_mark(struct node *n)
{
    if (n->dirty)
        return;
    n->dirty = true;
    n->dnext = G.dirty.dnext;
    n->dprev = &G.dirty;
    G.dirty.dnext->dprev = n;
    G.dirty.dnext = n;
}

static void dirty_clear(struct node *n)
{
    if (!n->dirty)
        return;
    n->dirty = false;
    n->dprev->dnext = n->dnext;
    n->dnext->dprev = n->dprev;
}

static void pages_free(struct node *n)
{
    for (size_t i = 0; i < n->npg; i++)
        free(n->pg[i]);
    free(n->pg);
    n->pg = NULL;
    n->npg = 0;
}

static int rm_rf_at(int dirfd, const char *name)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -errno;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            rm_rf_at(fd, e->d_name);
    closedir(d);
    return unlinkat(dirfd, name, AT_REMOVEDIR) == 0 ? 0 : -errno;
}

static void node_drop_dlink(struct node *n, struct node *parent, const char *name);

/* Free a node nobody can reach any more: no kernel reference, no open
 * file, no volatile and no durable name. */
static void maybe_free(struct node *n)
{
    if (n == G.root || n->nlookup > 0 || n->nopen > 0 || n->nvl > 0 || n->ndl > 0)
        return;
    char on[32];
    orphan_name(n, on, sizeof on);
    if (S_ISDIR(n->mode)) {
        /* it lives in the orphan area; its durable entries go with it */
        size_t k;
        struct link *l = map_list(&n->d, &k);
        map_free(&n->d);
        for (size_t i = 0; i < k; i++)
            node_drop_dlink(l[i].parent, n, l[i].name);
        list_free(l, k);
        map_free(&n->v);
        if (n->orphan)
            rm_rf_at(G.orphfd, on);
    } else if (n->orphan) {
        unlinkat(G.orphfd, on, 0);
    }
    if (n->bfd >= 0)
        close(n->bfd);
    unindex(G.ih, n, false);
    if (n->bino)
        unindex(G.bh, n, true);
    dirty_clear(n);
    pages_free(n);
    free(n->vl);
    free(n->dl);
    free(n->target);
    free(n);
    G.nnodes--;
}

static void node_drop_dlink(struct node *n, struct node *parent, const char *name)
{
    link_del(&n->dl, &n->ndl, parent, name);
    maybe_free(n);
}

/* The backing fd of a regular file (opened on first use). */
static int file_bfd(struct node *n)
{
    if (n->bfd >= 0)
        return n->bfd;
    char on[32];
    orphan_name(n, on, sizeof on);
    if (n->orphan)
        n->bfd = openat(G.orphfd, on, O_RDWR | O_CLOEXEC);
    else if (n->ndl > 0)
        n->bfd = openat(n->dl[0].parent->bfd, n->dl[0].name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    else
        errno = ESTALE;
    return n->bfd >= 0 ? n->bfd : -errno;
}

/* Read the directory's entries from BACKING (once): both maps equal. */
static int dir_load(struct node *p)
{
    if (p->loaded)
        return 0;
    int fd = dup(p->bfd);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -errno;
    }
    rewinddir(d);
    if (p->v.b == NULL)
        map_init(&p->v);
    if (p->d.b == NULL)
        map_init(&p->d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (p == G.root && strcmp(name, ORPHANS) == 0)
            continue;
        struct stat st;
        if (fstatat(p->bfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        struct node *n = S_ISREG(st.st_mode) ? node_by_bino(st.st_ino) : NULL;
        if (n == NULL) {
            n = node_new(st.st_mode, st.st_uid, st.st_gid);
            n->rdev = st.st_rdev;
            n->atime = st.st_atim;
            n->mtime = st.st_mtim;
            n->ctime = st.st_ctim;
            if (S_ISREG(st.st_mode)) {
                bindex(n, st.st_ino);
                n->size = n->blen = n->bsize = (uint64_t)st.st_size;
            } else if (S_ISDIR(st.st_mode)) {
                n->bfd = openat(p->bfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (n->bfd < 0) {
                    fprintf(stderr, "lossyfs: cannot open %s: %s\n", name, strerror(errno));
                }
            } else if (S_ISLNK(st.st_mode)) {
                char t[PATH_MAX];
                ssize_t k = readlinkat(p->bfd, name, t, sizeof t - 1);
                t[k > 0 ? k : 0] = '\0';
                n->target = xstrdup(t);
            }
        }
        link_add(&n->vl, &n->nvl, p, name);
        link_add(&n->dl, &n->ndl, p, name);
        map_put(&p->v, name, n);
        map_put(&p->d, name, n);
    }
    closedir(d);
    p->loaded = true;
    return 0;
}

/* ---------------------------------------------------------- file data */

static int pages_need(struct node *n, size_t idx)
{
    if (idx < n->npg)
        return 0;
    size_t np = n->npg ? n->npg : 16;
    while (np <= idx)
        np *= 2;
    n->pg = xrealloc(n->pg, np * sizeof *n->pg);
    memset(n->pg + n->npg, 0, (np - n->npg) * sizeof *n->pg);
    n->npg = np;
    return 0;
}

/* Bytes [off, off+len) of the file as it is now, into buf (len within size). */
static int file_read(struct node *n, char *buf, uint64_t off, size_t len)
{
    while (len > 0) {
        size_t idx = (size_t)(off >> PG_SHIFT);
        uint64_t in = off & (PG - 1);
        size_t chunk = (size_t)(PG - in) < len ? (size_t)(PG - in) : len;
        if (idx < n->npg && n->pg[idx] != NULL) {
            memcpy(buf, n->pg[idx] + in, chunk);
        } else {
            size_t from_b = off < n->blen ? (size_t)(n->blen - off) : 0;
            if (from_b > chunk)
                from_b = chunk;
            if (from_b > 0) {
                int fd = file_bfd(n);
                if (fd < 0)
                    return fd;
                size_t got = 0;
                while (got < from_b) {
                    ssize_t r = pread(fd, buf + got, from_b - got, (off_t)(off + got));
                    if (r < 0)
                        return -errno;
                    if (r == 0)
                        break;
                    got += (size_t)r;
                }
                memset(buf + got, 0, from_b - got);
            }
            memset(buf + from_b, 0, chunk - from_b);
        }
        buf += chunk;
        off += chunk;
        len -= chunk;
    }
    return 0;
}

static int file_write(struct node *n, const char *buf, uint64_t off, size_t len)
{
    while (len > 0) {
        size_t idx = (size_t)(off >> PG_SHIFT);
        uint64_t in = off & (PG - 1);
        size_t chunk = (size_t)(PG - in) < len ? (size_t)(PG - in) : len;
        pages_need(n, idx);
        if (n->pg[idx] == NULL) {
            uint8_t *p = malloc(PG);
            if (p == NULL)
                return -ENOMEM;
            uint64_t start = (uint64_t)idx << PG_SHIFT;
            uint64_t vis = n->size < start ? 0 : n->size - start; /* bytes of it in the file */
            if (vis > PG)
                vis = PG;
            /* keep what the write does not cover */
            if (in > 0 || chunk < PG) {
                int rc = file_read(n, (char *)p, start, (size_t)vis);
                if (rc < 0) {
                    free(p);
                    return rc;
                }
            }
            memset(p + vis, 0, (size_t)(PG - vis));
            n->pg[idx] = p;
        }
        memcpy(n->pg[idx] + in, buf, chunk);
        buf += chunk;
        off += chunk;
        len -= chunk;
        if (off > n->size)
            n->size = off;
    }
    dirty_mark(n);
    return 0;
}

static void file_truncate(struct node *n, uint64_t size)
{
    if (size < n->size) {
        for (size_t i = 0; i < n->npg; i++) {
            uint64_t start = (uint64_t)i << PG_SHIFT;
            if (n->pg[i] == NULL)
                continue;
            if (start >= size) {
                free(n->pg[i]);
                n->pg[i] = NULL;
            } else if (start + PG > size) {
                memset(n->pg[i] + (size - start), 0, (size_t)(start + PG - size));
            }
        }
        if (n->blen > size)
            n->blen = size;
    }
    n->size = size;
    dirty_mark(n);
}

static void meta_apply(int fd, const struct node *n)
{
    if (fd < 0)
        return;
    (void)fchown(fd, n->uid, n->gid);
    (void)fchmod(fd, n->mode & 07777);
    struct timespec ts[2] = {n->atime, n->mtime};
    (void)futimens(fd, ts);
}

/* fsync of a file: its bytes, size and attributes become the backing's. */
static int file_flush(struct node *n)
{
    if (!n->dirty)
        return 0;
    if (!S_ISREG(n->mode)) {
        dirty_clear(n);
        return 0;
    }
    int fd = file_bfd(n);
    if (fd < 0)
        return fd;
    if (n->bsize > n->blen && ftruncate(fd, (off_t)n->blen) != 0)
        return -errno;
    for (size_t i = 0; i < n->npg; i++) {
        if (n->pg[i] == NULL)
            continue;
        uint64_t start = (uint64_t)i << PG_SHIFT;
        if (start >= n->size)
            continue;
        size_t len = n->size - start < PG ? (size_t)(n->size - start) : (size_t)PG;
        size_t done = 0;
        while (done < len) {
            ssize_t w = pwrite(fd, n->pg[i] + done, len - done, (off_t)(start + done));
            if (w < 0)
                return -errno;
            done += (size_t)w;
        }
    }
    if (ftruncate(fd, (off_t)n->size) != 0)
        return -errno;
    meta_apply(fd, n);
    pages_free(n);
    n->bsize = n->blen = n->size;
    dirty_clear(n);
    return 0;
}

/* --------------------------------------------------- durable namespace */

static int d_remove(struct node *p, const char *name, struct node *x)
{
    char on[32];
    orphan_name(x, on, sizeof on);
    if (S_ISDIR(x->mode)) {
        if (renameat(p->bfd, name, G.orphfd, on) != 0)
            return -errno;
        x->orphan = true;
    } else {
        if (S_ISREG(x->mode) && x->ndl == 1 && !x->orphan) {
            if (linkat(p->bfd, name, G.orphfd, on, 0) != 0)
                return -errno;
            x->orphan = true;
        }
        if (unlinkat(p->bfd, name, 0) != 0)
            return -errno;
    }
    map_del(&p->d, name);
    node_drop_dlink(x, p, name);
    return 0;
}

static int d_add(struct node *p, const char *name, struct node *x)
{
    char on[32];
    orphan_name(x, on, sizeof on);
    if (S_ISDIR(x->mode)) {
        if (x->ndl > 0) { /* durable elsewhere: the rename is atomic */
            struct node *q = x->dl[0].parent;
            char *qn = xstrdup(x->dl[0].name);
            int rc = renameat(q->bfd, qn, p->bfd, name) == 0 ? 0 : -errno;
            if (rc == 0) {
                map_del(&q->d, qn);
                link_del(&x->dl, &x->ndl, q, qn);
            }
            free(qn);
            if (rc < 0)
                return rc;
        } else {
            if (renameat(G.orphfd, on, p->bfd, name) != 0)
                return -errno;
            x->orphan = false;
        }
        meta_apply(x->bfd, x);
    } else if (S_ISREG(x->mode)) {
        int rc;
        if (x->orphan)
            rc = linkat(G.orphfd, on, p->bfd, name, 0);
        else if (x->ndl > 0)
            rc = linkat(x->dl[0].parent->bfd, x->dl[0].name, p->bfd, name, 0);
        else
            return -ESTALE;
        if (rc != 0)
            return -errno;
    } else if (S_ISLNK(x->mode)) {
        if (symlinkat(x->target, p->bfd, name) != 0)
            return -errno;
    } else {
        if (mknodat(p->bfd, name, x->mode, x->rdev) != 0)
            return -errno;
    }
    map_put(&p->d, name, x);
    link_add(&x->dl, &x->ndl, p, name);
    return 0;
}

/* Make one durable entry of p what the volatile one is (x, or none). */
static int d_set(struct node *p, const char *name, struct node *x)
{
    struct node *old = map_get(&p->d, name);
    if (old == x)
        return 0;
    int rc = 0;
    if (old != NULL)
        rc = d_remove(p, name, old);
    if (rc == 0 && x != NULL)
        rc = d_add(p, name, x);
    return rc;
}

/* fsync of a directory: its durable entries become the volatile ones. */
static int dir_sync(struct node *p)
{
    if (!p->loaded)
        return 0;
    int rc = 0, r;
    size_t k;
    struct link *l = map_list(&p->d, &k);
    for (size_t i = 0; i < k; i++)
        if (map_get(&p->v, l[i].name) != l[i].parent && (r = d_set(p, l[i].name, NULL)) < 0)
            rc = r;
    list_free(l, k);
    l = map_list(&p->v, &k);
    for (size_t i = 0; i < k; i++)
        if ((r = d_set(p, l[i].name, l[i].parent)) < 0)
            rc = r;
    list_free(l, k);
    meta_apply(p->bfd, p);
    return rc;
}

/* --ext4: a file's fsync also makes its names durable (and its new
 * parents'), and drops its names that are gone (a rename's source). */
static int ext4_names(struct node *x)
{
    int rc = 0;
    for (size_t i = 0; i < x->nvl && rc == 0; i++) {
        struct node *p = x->vl[i].parent;
        if (p != G.root && p->ndl == 0 && p->nvl > 0)
            rc = ext4_names(p);
        if (rc == 0)
            rc = d_set(p, x->vl[i].name, x);
    }
    for (size_t i = 0; i < x->ndl && rc == 0;) {
        struct node *p = x->dl[i].parent;
        if (map_get(&p->v, x->dl[i].name) != x) {
            char *name = xstrdup(x->dl[i].name);
            rc = d_set(p, name, map_get(&p->v, name));
            free(name);
            i = 0; /* the list changed */
        } else {
            i++;
        }
    }
    return rc;
}

static int sync_all(void)
{
    int rc = 0, r;
    while (G.dirty.dnext != &G.dirty)
        if ((r = file_flush(G.dirty.dnext)) < 0) {
            rc = r;
            dirty_clear(G.dirty.dnext);
        }
    /* every loaded directory (a snapshot: syncing frees nodes) */
    size_t n = 0, cap = 64;
    uint64_t *dirs = xcalloc(cap, sizeof *dirs);
    for (size_t i = 0; i < NH; i++)
        for (struct node *x = G.ih[i]; x; x = x->hnext)
            if (S_ISDIR(x->mode) && x->loaded) {
                if (n == cap)
                    dirs = xrealloc(dirs, (cap *= 2) * sizeof *dirs);
                dirs[n++] = x->ino;
            }
    for (size_t i = 0; i < n; i++) {
        struct node *x = node_by_ino(dirs[i]);
        if (x && (r = dir_sync(x)) < 0)
            rc = r;
    }
    free(dirs);
    return rc;
}

/* --------------------------------------------------- freeze and arming */

static void reply_to(const char *path, const char *fmt, ...)
{
    if (path == NULL || path[0] == '\0')
        return;
    char buf[PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len > sizeof buf - 2)
        len = (int)sizeof buf - 2;
    buf[len++] = '\n';
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return; /* the asker is gone */
    (void)!write(fd, buf, (size_t)len);
    close(fd);
}

/* Called with G.mu held at the start of every operation. */
static void op_enter(void)
{
    while (G.frozen)
        pthread_cond_wait(&G.cv, &G.mu);
    G.ops++;
}

static void freeze_here(enum op op, const char *path)
{
    G.frozen = true;
    G.arm.on = false;
    fprintf(stderr, "lossyfs: frozen at %s %s (#%" PRIu64 ")\n", op_names[op], path, G.arm.seen);
    reply_to(G.arm.reply, "frozen %s %s", op_names[op], path);
    while (G.frozen)
        pthread_cond_wait(&G.cv, &G.mu);
}

/* Is this operation the armed one? (counts it) */
static bool arm_hit(enum op op, const char *path, const char *path2)
{
    if (!G.arm.on || (G.arm.op != OP_ANY && G.arm.op != op))
        return false;
    if (G.arm.match[0] && strstr(path, G.arm.match) == NULL &&
        (path2 == NULL || strstr(path2, G.arm.match) == NULL))
        return false;
    return ++G.arm.seen == G.arm.n;
}

/* The armed check of an operation on name in p (or on node x). */
struct trip {
    bool hit;
    enum op op;
    char path[PATH_MAX];
};

static void trip_before(struct trip *t, enum op op, struct node *x, struct node *p,
                        const char *name, struct node *p2, const char *name2)
{
    t->hit = false;
    t->op = op;
    if (!G.arm.on)
        return;
    char a[PATH_MAX], b[PATH_MAX] = "";
    if (x != NULL)
        path_of(x, a, sizeof a);
    else {
        path_of(p, a, sizeof a);
        size_t l = strlen(a);
        snprintf(a + l, sizeof a - l, "%s%s", l > 1 ? "/" : "", name);
    }
    if (p2 != NULL) {
        path_of(p2, b, sizeof b);
        size_t l = strlen(b);
        snprintf(b + l, sizeof b - l, "%s%s", l > 1 ? "/" : "", name2);
    }
    if (!arm_hit(op, a, p2 ? b : NULL))
        return;
    snprintf(t->path, sizeof t->path, "%s%s%s", a, p2 ? " -> " : "", p2 ? b : "");
    t->hit = true;
    if (!G.arm.after)
        freeze_here(op, t->path);
}

static void trip_after(struct trip *t)
{
    if (t->hit && G.arm.after)
        freeze_here(t->op, t->path);
}

/* ------------------------------------------------------ FUSE plumbing */

#define LOCK()                                                                                     \
    do {                                                                                           \
        pthread_mutex_lock(&G.mu);                                                                 \
        op_enter();                                                                                \
    } while (0)
#define UNLOCK() pthread_mutex_unlock(&G.mu)

/* Lock, and the node of ino; NULL (answered ESTALE, unlocked) if none. */
static struct node *lock_node(fuse_req_t req, fuse_ino_t ino)
{
    LOCK();
    struct node *n = node_by_ino(ino);
    if (n == NULL) {
        fuse_reply_err(req, ESTALE);
        UNLOCK();
    }
    return n;
}

static void fill_attr(const struct node *n, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = n->ino;
    st->st_mode = n->mode;
    st->st_nlink = S_ISDIR(n->mode) ? 2 : n->nvl;
    st->st_uid = n->uid;
    st->st_gid = n->gid;
    st->st_rdev = n->rdev;
    st->st_size = S_ISREG(n->mode)   ? (off_t)n->size
                  : S_ISLNK(n->mode) ? (off_t)strlen(n->target)
                                     : 4096;
    st->st_blksize = 4096;
    st->st_blocks = (st->st_size + 511) / 512;
    st->st_atim = n->atime;
    st->st_mtim = n->mtime;
    st->st_ctim = n->ctime;
}

static void reply_entry(fuse_req_t req, struct node *n)
{
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = n->ino;
    e.attr_timeout = TIMEOUT;
    e.entry_timeout = TIMEOUT;
    fill_attr(n, &e.attr);
    n->nlookup++;
    fuse_reply_entry(req, &e);
}

static struct node *dir_node(fuse_ino_t ino, int *err)
{
    struct node *p = node_by_ino(ino);
    if (p == NULL) {
        *err = ESTALE;
        return NULL;
    }
    if (!S_ISDIR(p->mode)) {
        *err = ENOTDIR;
        return NULL;
    }
    int rc = dir_load(p);
    if (rc < 0) {
        *err = -rc;
        return NULL;
    }
    return p;
}

static bool hidden(const struct node *p, const char *name)
{
    return p == G.root && strcmp(name, ORPHANS) == 0;
}

static void touch_dir(struct node *p)
{
    p->mtime = p->ctime = now();
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    LOCK();
    int err = 0;
    struct node *p = dir_node(parent, &err), *n = NULL;
    if (p != NULL && !hidden(p, name))
        n = map_get(&p->v, name);
    if (n != NULL)
        reply_entry(req, n);
    else
        fuse_reply_err(req, err ? err : ENOENT);
    UNLOCK();
}

static void forget_one(fuse_ino_t ino, uint64_t nlookup)
{
    struct node *n = node_by_ino(ino);
    if (n == NULL)
        return;
    n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
    if (n->nlookup == 0 && n->nopen == 0 && S_ISREG(n->mode) && !n->dirty && n->bfd >= 0) {
        close(n->bfd); /* bounds our fds: reopened on the next use */
        n->bfd = -1;
    }
    maybe_free(n);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    pthread_mutex_lock(&G.mu); /* never held back by a freeze: nothing changes */
    if (!G.crashed)
        forget_one(ino, nlookup);
    pthread_mutex_unlock(&G.mu);
    fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
    pthread_mutex_lock(&G.mu);
    for (size_t i = 0; i < count && !G.crashed; i++)
        forget_one(f[i].ino, f[i].nlookup);
    pthread_mutex_unlock(&G.mu);
    fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    LOCK();
    struct node *n = node_by_ino(ino);
    if (n == NULL) {
        fuse_reply_err(req, ESTALE);
    } else {
        struct stat st;
        fill_attr(n, &st);
        fuse_reply_attr(req, &st, TIMEOUT);
    }
    UNLOCK();
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    (void)fi;
    struct node *n = lock_node(req, ino);
    if (n == NULL)
        return;
    struct trip t = {0};
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (!S_ISREG(n->mode)) {
            fuse_reply_err(req, S_ISDIR(n->mode) ? EISDIR : EINVAL);
            UNLOCK();
            return;
        }
        trip_before(&t, OP_TRUNCATE, n, NULL, NULL, NULL, NULL);
        file_truncate(n, (uint64_t)attr->st_size);
        n->mtime = now();
    }
    if (to_set & FUSE_SET_ATTR_MODE)
        n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
    if (to_set & FUSE_SET_ATTR_UID)
        n->uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID)
        n->gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_ATIME)
        n->atime = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
        n->atime = now();
    if (to_set & FUSE_SET_ATTR_MTIME)
        n->mtime = attr->st_mtim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
        n->mtime = now();
    n->ctime = now();
    if (S_ISREG(n->mode))
        dirty_mark(n);
    trip_after(&t);
    struct stat st;
    fill_attr(n, &st);
    fuse_reply_attr(req, &st, TIMEOUT);
    UNLOCK();
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino)
{
    LOCK();
    struct node *n = node_by_ino(ino);
    if (n == NULL || !S_ISLNK(n->mode))
        fuse_reply_err(req, n ? EINVAL : ESTALE);
    else
        fuse_reply_readlink(req, n->target);
    UNLOCK();
}

/* A new node named name in parent (the caller checked the name is free). */
static int make_node(fuse_req_t req, struct node *p, const char *name, mode_t mode,
                     const char *target, dev_t rdev, struct node **out)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    gid_t gid = (p->mode & S_ISGID) ? p->gid : ctx->gid;
    if (S_ISDIR(mode) && (p->mode & S_ISGID))
        mode |= S_ISGID;
    struct node *n = node_new(mode, ctx->uid, gid);
    char on[32];
    orphan_name(n, on, sizeof on);
    int rc = 0;
    if (S_ISREG(mode)) {
        n->bfd = openat(G.orphfd, on, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        struct stat st;
        if (n->bfd < 0 || fstat(n->bfd, &st) != 0)
            rc = -errno;
        else {
            bindex(n, st.st_ino);
            n->orphan = true;
            meta_apply(n->bfd, n);
        }
    } else if (S_ISDIR(mode)) {
        if (mkdirat(G.orphfd, on, 0700) != 0)
            rc = -errno;
        else {
            n->orphan = true;
            n->bfd = openat(G.orphfd, on, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (n->bfd < 0)
                rc = -errno;
            map_init(&n->v);
            map_init(&n->d);
            n->loaded = true;
            meta_apply(n->bfd, n);
        }
    } else if (S_ISLNK(mode)) {
        n->target = xstrdup(target);
    } else {
        n->rdev = rdev;
    }
    if (rc < 0) {
        maybe_free(n);
        return rc;
    }
    link_add(&n->vl, &n->nvl, p, name);
    map_put(&p->v, name, n);
    touch_dir(p);
    *out = n;
    return 0;
}

static void create_common(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                          const char *target, dev_t rdev, struct fuse_file_info *fi)
{
    LOCK();
    int err = 0;
    struct node *p = dir_node(parent, &err), *n = NULL;
    if (p == NULL) {
        fuse_reply_err(req, err);
        UNLOCK();
        return;
    }
    if (hidden(p, name)) {
        fuse_reply_err(req, EACCES);
        UNLOCK();
        return;
    }
    if (map_get(&p->v, name) != NULL) {
        fuse_reply_err(req, EEXIST);
        UNLOCK();
        return;
    }
    struct trip t;
    trip_before(&t, S_ISDIR(mode) ? OP_MKDIR : OP_CREATE, NULL, p, name, NULL, NULL);
    int rc = make_node(req, p, name, mode, target, rdev, &n);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        UNLOCK();
        return;
    }
    trip_after(&t);
    if (fi != NULL) {
        struct fuse_entry_param e;
        memset(&e, 0, sizeof e);
        e.ino = n->ino;
        e.attr_timeout = TIMEOUT;
        e.entry_timeout = TIMEOUT;
        fill_attr(n, &e.attr);
        n->nlookup++;
        n->nopen++;
        fi->keep_cache = 1;
        fuse_reply_create(req, &e, fi);
    } else {
        reply_entry(req, n);
    }
    UNLOCK();
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    create_common(req, parent, name, mode, NULL, rdev, NULL);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    create_common(req, parent, name, S_IFDIR | (mode & 07777), NULL, 0, NULL);
}

static void ll_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
    create_common(req, parent, name, S_IFLNK | 0777, target, 0, NULL);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    create_common(req, parent, name, S_IFREG | (mode & 07777), NULL, 0, fi);
}

/* Drop the volatile name p/name of n. */
static void v_unlink(struct node *p, const char *name, struct node *n)
{
    map_del(&p->v, name);
    link_del(&n->vl, &n->nvl, p, name);
    n->ctime = now();
    touch_dir(p);
    maybe_free(n);
}

static void remove_common(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
    LOCK();
    int err = 0;
    struct node *p = dir_node(parent, &err), *n = NULL;
    if (p != NULL && !hidden(p, name))
        n = map_get(&p->v, name);
    if (n == NULL) {
        fuse_reply_err(req, err ? err : ENOENT);
        UNLOCK();
        return;
    }
    if (dir && !S_ISDIR(n->mode))
        err = ENOTDIR;
    else if (!dir && S_ISDIR(n->mode))
        err = EISDIR;
    else if (dir && (dir_load(n) < 0 || n->v.n > 0))
        err = ENOTEMPTY;
    if (err) {
        fuse_reply_err(req, err);
        UNLOCK();
        return;
    }
    struct trip t;
    trip_before(&t, dir ? OP_RMDIR : OP_UNLINK, NULL, p, name, NULL, NULL);
    v_unlink(p, name, n);
    trip_after(&t);
    fuse_reply_err(req, 0);
    UNLOCK();
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_common(req, parent, name, false);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_common(req, parent, name, true);
}

static bool is_ancestor(const struct node *a, const struct node *n)
{
    for (; n != NULL; n = n->nvl > 0 ? n->vl[0].parent : NULL)
        if (n == a)
            return true;
    return false;
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    LOCK();
    int err = 0;
    struct node *p = dir_node(parent, &err), *np = p ? dir_node(newparent, &err) : NULL;
    struct node *n = NULL, *old = NULL;
    if (np != NULL && !hidden(p, name) && !hidden(np, newname)) {
        n = map_get(&p->v, name);
        old = map_get(&np->v, newname);
    }
    if (n == NULL)
        err = err ? err : (hidden(np, newname) ? EACCES : ENOENT);
    else if (flags & ~RENAME_NOREPLACE)
        err = EINVAL;
    else if (old != NULL && (flags & RENAME_NOREPLACE))
        err = EEXIST;
    else if (old == n)
        err = 0;
    else if (S_ISDIR(n->mode) && is_ancestor(n, np))
        err = EINVAL;
    else if (old != NULL && S_ISDIR(old->mode) && !S_ISDIR(n->mode))
        err = EISDIR;
    else if (old != NULL && !S_ISDIR(old->mode) && S_ISDIR(n->mode))
        err = ENOTDIR;
    else if (old != NULL && S_ISDIR(old->mode) && (dir_load(old) < 0 || old->v.n > 0))
        err = ENOTEMPTY;
    if (err || old == n) {
        fuse_reply_err(req, err);
        UNLOCK();
        return;
    }
    struct trip t;
    trip_before(&t, OP_RENAME, NULL, p, name, np, newname);
    if (old != NULL)
        v_unlink(np, newname, old);
    map_del(&p->v, name);
    link_del(&n->vl, &n->nvl, p, name);
    map_put(&np->v, newname, n);
    link_add(&n->vl, &n->nvl, np, newname);
    n->ctime = now();
    touch_dir(p);
    touch_dir(np);
    trip_after(&t);
    fuse_reply_err(req, 0);
    UNLOCK();
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    LOCK();
    int err = 0;
    struct node *n = node_by_ino(ino), *np = dir_node(newparent, &err);
    if (n == NULL || np == NULL)
        err = err ? err : ESTALE;
    else if (S_ISDIR(n->mode))
        err = EPERM;
    else if (hidden(np, newname) || map_get(&np->v, newname) != NULL)
        err = EEXIST;
    if (err) {
        fuse_reply_err(req, err);
        UNLOCK();
        return;
    }
    struct trip t;
    trip_before(&t, OP_LINK, NULL, np, newname, NULL, NULL);
    map_put(&np->v, newname, n);
    link_add(&n->vl, &n->nvl, np, newname);
    n->ctime = now();
    touch_dir(np);
    trip_after(&t);
    reply_entry(req, n);
    UNLOCK();
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    LOCK();
    struct node *n = node_by_ino(ino);
    if (n == NULL || !S_ISREG(n->mode)) {
        fuse_reply_err(req, n ? EISDIR : ESTALE);
        UNLOCK();
        return;
    }
    if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY && n->size > 0) {
        file_truncate(n, 0);
        n->mtime = n->ctime = now();
    }
    n->nopen++;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
    UNLOCK();
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)fi;
    struct node *n = lock_node(req, ino);
    if (n == NULL)
        return;
    if ((uint64_t)off >= n->size)
        size = 0;
    else if (size > n->size - (uint64_t)off)
        size = (size_t)(n->size - (uint64_t)off);
    char *buf = malloc(size ? size : 1);
    int rc = buf ? file_read(n, buf, (uint64_t)off, size) : -ENOMEM;
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_buf(req, buf, size);
    free(buf);
    UNLOCK();
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)fi;
    struct node *n = lock_node(req, ino);
    if (n == NULL)
        return;
    struct trip t;
    trip_before(&t, OP_WRITE, n, NULL, NULL, NULL, NULL);
    int rc = file_write(n, buf, (uint64_t)off, size);
    n->mtime = n->ctime = now();
    trip_after(&t);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
    UNLOCK();
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    (void)fi;
    fuse_reply_err(req, 0);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    pthread_mutex_lock(&G.mu); /* never held back by a freeze */
    struct node *n = G.crashed ? NULL : node_by_ino(ino);
    if (n != NULL) {
        if (n->nopen > 0)
            n->nopen--;
        maybe_free(n);
    }
    pthread_mutex_unlock(&G.mu);
    fuse_reply_err(req, 0);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)datasync;
    (void)fi;
    struct node *n = lock_node(req, ino);
    if (n == NULL)
        return;
    struct trip t;
    trip_before(&t, OP_FSYNC, n, NULL, NULL, NULL, NULL);
    int rc = file_flush(n);
    if (rc == 0 && G.ext4)
        rc = ext4_names(n);
    trip_after(&t);
    fuse_reply_err(req, rc < 0 ? -rc : 0);
    UNLOCK();
}

struct dirbuf {
    size_t n;
    struct {
        char *name;
        fuse_ino_t ino;
        mode_t mode;
    } * e;
};

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    LOCK();
    int err = 0;
    struct node *p = dir_node(ino, &err);
    if (p == NULL) {
        fuse_reply_err(req, err);
        UNLOCK();
        return;
    }
    size_t k;
    struct link *l = map_list(&p->v, &k);
    struct dirbuf *db = xcalloc(1, sizeof *db);
    db->e = xcalloc(k + 2, sizeof *db->e);
    db->e[0].name = xstrdup(".");
    db->e[0].ino = p->ino;
    db->e[0].mode = S_IFDIR;
    db->e[1].name = xstrdup("..");
    db->e[1].ino = p->nvl ? p->vl[0].parent->ino : p->ino;
    db->e[1].mode = S_IFDIR;
    db->n = 2;
    for (size_t i = 0; i < k; i++) {
        db->e[db->n].name = l[i].name;
        l[i].name = NULL;
        db->e[db->n].ino = l[i].parent->ino;
        db->e[db->n].mode = l[i].parent->mode;
        db->n++;
    }
    free(l);
    fi->fh = (uint64_t)(uintptr_t)db;
    fuse_reply_open(req, fi);
    UNLOCK();
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    (void)ino;
    struct dirbuf *db = (struct dirbuf *)(uintptr_t)fi->fh;
    char *buf = xcalloc(1, size);
    size_t used = 0;
    for (size_t i = (size_t)off; i < db->n; i++) {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = db->e[i].ino;
        st.st_mode = db->e[i].mode;
        size_t need =
            fuse_add_direntry(req, buf + used, size - used, db->e[i].name, &st, (off_t)(i + 1));
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    struct dirbuf *db = (struct dirbuf *)(uintptr_t)fi->fh;
    for (size_t i = 0; i < db->n; i++)
        free(db->e[i].name);
    free(db->e);
    free(db);
    fuse_reply_err(req, 0);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)datasync;
    (void)fi;
    struct node *p = lock_node(req, ino);
    if (p == NULL)
        return;
    struct trip t;
    trip_before(&t, OP_FSYNCDIR, p, NULL, NULL, NULL, NULL);
    int rc = dir_sync(p);
    trip_after(&t);
    fuse_reply_err(req, rc < 0 ? -rc : 0);
    UNLOCK();
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    struct statvfs sv;
    if (fstatvfs(G.root->bfd, &sv) != 0)
        fuse_reply_err(req, errno);
    else
        fuse_reply_statfs(req, &sv);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
    (void)fi;
    LOCK();
    struct node *n = node_by_ino(ino);
    int err = 0;
    if (n == NULL)
        err = ESTALE;
    else if (mode != 0)
        err = EOPNOTSUPP;
    else if ((uint64_t)(off + len) > n->size) {
        file_truncate(n, (uint64_t)(off + len));
        n->mtime = n->ctime = now();
    }
    fuse_reply_err(req, err);
    UNLOCK();
}

static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    conn->max_write = 1u << 20;
    conn->want &= ~(unsigned)FUSE_CAP_ATOMIC_O_TRUNC;
}

static const struct fuse_lowlevel_ops ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .readlink = ll_readlink,
    .mknod = ll_mknod,
    .mkdir = ll_mkdir,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_link,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .release = ll_release,
    .fsync = ll_fsync,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .releasedir = ll_releasedir,
    .fsyncdir = ll_fsyncdir,
    .statfs = ll_statfs,
    .create = ll_create,
    .fallocate = ll_fallocate,
};

/* --------------------------------------------------------- control FIFO */

static uint64_t dirty_bytes(void)
{
    uint64_t b = 0;
    for (struct node *n = G.dirty.dnext; n != &G.dirty; n = n->dnext)
        for (size_t i = 0; i < n->npg; i++)
            b += n->pg[i] ? PG : 0;
    return b;
}

/* The mount's device (major:minor, from /proc/self/mountinfo): its minor
 * names the kernel's FUSE connection, /sys/fs/fuse/connections/<minor>.
 * Read once the file system is mounted: a stat() of the mount point would
 * ask ourselves. 0 when not found. */
static dev_t mount_dev(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return 0;
    char line[8192];
    dev_t dev = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..."; the last match wins
         * (a mount over ours would hide it) */
        unsigned maj, min;
        char mp[PATH_MAX];
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mp) != 3)
            continue;
        /* space, tab, newline and backslash come as \ooo */
        char *o = mp;
        for (const char *i = mp; *i; o++)
            if (i[0] == '\\' && i[1] >= '0' && i[1] <= '3' && i[2] >= '0' && i[2] <= '7' &&
                i[3] >= '0' && i[3] <= '7') {
                *o = (char)((i[1] - '0') * 64 + (i[2] - '0') * 8 + (i[3] - '0'));
                i += 4;
            } else {
                *o = *i++;
            }
        *o = '\0';
        if (strcmp(mp, G.mountpoint) == 0)
            dev = makedev(maj, min);
    }
    fclose(f);
    return dev;
}

/* Abort our kernel FUSE connection: every request queued or in flight
 * ends with an error at once (processes held by a freeze, killed or not,
 * get out, and none of our threads can be left waiting on the mount),
 * and nothing more reaches us. Through the fusectl file system if it is
 * mounted, else through a forced unmount (whose umount_begin is that
 * abort; it also unmounts if nothing uses the mount any more). */
static void abort_conn(void)
{
    if (G.dev != 0) {
        char path[96];
        snprintf(path, sizeof path, "/sys/fs/fuse/connections/%u/abort", minor(G.dev));
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t w = write(fd, "1", 1);
            close(fd);
            if (w == 1)
                return;
        }
    }
    if (mount_dev() != G.dev)
        return; /* not our mount there (any more): do not touch it */
    if (umount2(G.mountpoint, MNT_FORCE) != 0 && errno != EBUSY)
        fprintf(stderr, "lossyfs: cannot abort the connection (no fusectl, umount -f: %s)\n",
                strerror(errno));
}

/* Forget everything not durable: under G.mu, no operation runs (a frozen
 * one waits on G.cv and never returns); nothing more reaches BACKING but
 * the removal of the orphans, which a real file system frees too. The
 * connection is aborted first, so that the exit that follows waits for
 * nothing (see abort_conn), then the mount is detached. */
static void do_crash(const char *reply)
{
    G.crashed = true;
    abort_conn();
    if (mount_dev() == G.dev && umount2(G.mountpoint, MNT_DETACH) != 0) {
        if (errno == EPERM)
            fuse_session_unmount(G.se); /* not root: fusermount3 -u -z */
        else
            fprintf(stderr, "lossyfs: umount %s: %s\n", G.mountpoint, strerror(errno));
    }
    rm_rf_at(G.root->bfd, ORPHANS);
    fprintf(stderr, "lossyfs: crashed after %" PRIu64 " operations\n", G.ops);
    reply_to(reply, "ok crashed");
    _exit(0);
}

static enum op op_parse(const char *s)
{
    for (int i = 0; i < OP_N; i++)
        if (strcmp(s, op_names[i]) == 0)
            return (enum op)i;
    return OP_N;
}

/* arm op=OP n=N [when=before|after] [match=S] [reply=R] */
static int do_arm(char *args, char *reply, size_t rlen)
{
    enum op op = OP_ANY;
    uint64_t n = 1;
    bool after = false;
    char match[256] = "";
    for (char *save = NULL, *tok = strtok_r(args, " ", &save); tok;
         tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL)
            return -EINVAL;
        *eq++ = '\0';
        if (strcmp(tok, "op") == 0 && (op = op_parse(eq)) == OP_N)
            return -EINVAL;
        else if (strcmp(tok, "n") == 0)
            n = strtoull(eq, NULL, 10);
        else if (strcmp(tok, "when") == 0)
            after = strcmp(eq, "after") == 0;
        else if (strcmp(tok, "match") == 0)
            snprintf(match, sizeof match, "%s", eq);
        else if (strcmp(tok, "reply") == 0)
            snprintf(reply, rlen, "%s", eq);
    }
    if (n == 0)
        return -EINVAL;
    G.arm.op = op;
    G.arm.n = n;
    G.arm.seen = 0;
    G.arm.after = after;
    snprintf(G.arm.match, sizeof G.arm.match, "%s", match);
    snprintf(G.arm.reply, sizeof G.arm.reply, "%s", reply);
    G.arm.on = true;
    return 0;
}

static void command(char *line)
{
    char *sp = strchr(line, ' ');
    char *args = sp ? sp + 1 : line + strlen(line);
    if (sp)
        *sp = '\0';
    char reply[PATH_MAX] = "";
    pthread_mutex_lock(&G.mu);
    if (strcmp(line, "sync") == 0) {
        snprintf(reply, sizeof reply, "%s", args);
        if (!G.frozen) { /* after the power is off nothing becomes durable */
            int rc = sync_all();
            reply_to(reply, rc < 0 ? "error %s" : "ok synced", strerror(-rc));
        }
    } else if (strcmp(line, "crash") == 0) {
        do_crash(args);
    } else if (strcmp(line, "freeze") == 0) {
        G.frozen = true;
        reply_to(args, "frozen");
    } else if (strcmp(line, "thaw") == 0) {
        G.frozen = false;
        G.arm.on = false;
        pthread_cond_broadcast(&G.cv);
        reply_to(args, "ok thawed");
    } else if (strcmp(line, "arm") == 0) {
        int rc = do_arm(args, reply, sizeof reply);
        reply_to(reply, rc < 0 ? "error bad arm command" : "ok armed");
    } else if (strcmp(line, "stats") == 0) {
        size_t nd = 0;
        for (struct node *n = G.dirty.dnext; n != &G.dirty; n = n->dnext)
            nd++;
        reply_to(args,
                 "ok ops=%" PRIu64 " dirty_files=%zu dirty_bytes=%" PRIu64 " nodes=%zu frozen=%d",
                 G.ops, nd, dirty_bytes(), G.nnodes, (int)G.frozen);
    } else if (line[0] != '\0') {
        fprintf(stderr, "lossyfs: unknown command '%s'\n", line);
    }
    pthread_mutex_unlock(&G.mu);
}

static void *control_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[8192];
    size_t have = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            die("control %s: read: %s", G.control, r < 0 ? strerror(errno) : "EOF");
        }
        have += (size_t)r;
        char *nl;
        while ((nl = memchr(buf, '\n', have)) != NULL) {
            *nl = '\0';
            command(buf);
            size_t used = (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, have - used);
            have -= used;
        }
        if (have == sizeof buf - 1)
            have = 0; /* a line too long to be a command */
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: lossyfs [--ext4] [--debug] --control FIFO BACKING MOUNTPOINT\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *control = NULL, *backing = NULL, *mnt = NULL;
    bool debug = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ext4") == 0)
            G.ext4 = true;
        else if (strcmp(argv[i], "--debug") == 0)
            debug = true;
        else if (strcmp(argv[i], "--control") == 0 && i + 1 < argc)
            control = argv[++i];
        else if (argv[i][0] == '-')
            usage();
        else if (backing == NULL)
            backing = argv[i];
        else if (mnt == NULL)
            mnt = argv[i];
        else
            usage();
    }
    if (control == NULL || backing == NULL || mnt == NULL)
        usage();
    G.backing = realpath(backing, NULL);
    G.mountpoint = realpath(mnt, NULL);
    G.control = control;
    if (G.backing == NULL || G.mountpoint == NULL)
        die("%s: %s", G.backing ? mnt : backing, strerror(errno));
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct stat st;
    if (stat(control, &st) != 0) {
        if (mkfifo(control, 0600) != 0)
            die("mkfifo %s: %s", control, strerror(errno));
    } else if (!S_ISFIFO(st.st_mode)) {
        die("%s is not a FIFO", control);
    }

    G.ih = xcalloc(NH, sizeof *G.ih);
    G.bh = xcalloc(NH, sizeof *G.bh);
    G.dirty.dnext = G.dirty.dprev = &G.dirty;
    G.next_ino = FUSE_ROOT_ID;
    int rootfd = open(G.backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0 || fstat(rootfd, &st) != 0)
        die("%s: %s", G.backing, strerror(errno));
    G.root = node_new(st.st_mode, st.st_uid, st.st_gid);
    G.root->bfd = rootfd;
    G.root->atime = st.st_atim;
    G.root->mtime = st.st_mtim;
    G.root->ctime = st.st_ctim;
    /* orphans of an earlier run are garbage (a real fs frees them) */
    rm_rf_at(rootfd, ORPHANS);
    if (mkdirat(rootfd, ORPHANS, 0700) != 0 ||
        (G.orphfd = openat(rootfd, ORPHANS, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        die("%s/%s: %s", G.backing, ORPHANS, strerror(errno));

    char *fargv[] = {argv[0], "-o",
                     "allow_other,default_permissions,fsname=lossyfs,subtype=lossyfs", "-d"};
    struct fuse_args args = FUSE_ARGS_INIT(debug ? 4 : 3, fargv);
    G.se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (G.se == NULL)
        die("cannot create the FUSE session");
    if (fuse_set_signal_handlers(G.se) != 0)
        die("cannot set signal handlers");
    if (fuse_session_mount(G.se, G.mountpoint) != 0)
        die("cannot mount on %s", G.mountpoint);
    if ((G.dev = mount_dev()) == 0)
        die("cannot find the mount on %s in /proc/self/mountinfo", G.mountpoint);
    /* open before we say "mounted": commands may follow at once */
    int cfd = open(G.control, O_RDWR | O_CLOEXEC); /* O_RDWR: never sees EOF */
    if (cfd < 0)
        die("control %s: %s", G.control, strerror(errno));
    pthread_t th;
    if (pthread_create(&th, NULL, control_main, (void *)(intptr_t)cfd) != 0)
        die("cannot start the control thread");
    printf("lossyfs: %s mounted on %s%s\n", G.backing, G.mountpoint, G.ext4 ? " (ext4)" : "");
    fflush(stdout);
    int rc = fuse_session_loop(G.se);
    /* unmounted (or a signal): a clean unmount makes everything durable */
    pthread_mutex_lock(&G.mu);
    if (!G.crashed) {
        G.frozen = false;
        int r = sync_all();
        if (r < 0)
            fprintf(stderr, "lossyfs: final sync: %s\n", strerror(-r));
        rm_rf_at(G.root->bfd, ORPHANS);
        G.crashed = true; /* nothing more */
    }
    pthread_mutex_unlock(&G.mu);
    fuse_session_unmount(G.se);
    fuse_remove_signal_handlers(G.se);
    fuse_session_destroy(G.se);
    return rc < 0 ? 1 : 0;
}
