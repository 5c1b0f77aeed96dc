/* listen.c - parse `listen:` entries, open listening sockets, adopt the
 * ones systemd passes (socket activation), publish the bound addresses.
 *
 * Threads: the supervisor's single thread only; nothing here is called
 * by a worker. Workers get the fds by inheritance across fork().
 *
 * Guarantees: run/listen is replaced atomically (tmp + fsync + rename), so
 * a reader sees the old list or the new one, never a partial file. A reload
 * (listen_set_open with reuse) never rebinds an unchanged entry, so its
 * port and its queue of not-yet-accepted connections survive.
 *
 * Never: exec, threads, blocking I/O on the sockets.
 */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dripd/util.h"

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int parse_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5)
        return -EINVAL;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

int listen_parse(const char *spec, struct dr_listen_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (spec == NULL || spec[0] == '\0')
        return fail(err, errlen, -EINVAL, "listen: empty address");

    if (strncmp(spec, "unix:", 5) == 0) {
        const char *p = spec + 5;
        size_t n = strlen(p);
        out->kind = DR_LISTEN_UNIX;
        if (n == 0 || (n == 1 && p[0] == '@'))
            return fail(err, errlen, -EINVAL, "listen %s: empty socket path", spec);
        if (n >= sizeof out->path)
            return fail(err, errlen, -EINVAL, "listen %s: socket path longer than %zu bytes", spec,
                        sizeof out->path - 1);
        memcpy(out->path, p, n + 1);
        return 0;
    }

    out->kind = DR_LISTEN_TCP;
    const char *colon;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL)
            return fail(err, errlen, -EINVAL, "listen %s: missing ']'", spec);
        size_t hn = (size_t)(close - spec - 1);
        if (hn == 0 || hn >= sizeof out->host)
            return fail(err, errlen, -EINVAL, "listen %s: bad IPv6 address", spec);
        memcpy(out->host, spec + 1, hn);
        out->host[hn] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1)
            return fail(err, errlen, -EINVAL, "listen %s: bad IPv6 address", spec);
        out->ipv6 = true;
        if (close[1] != ':')
            return fail(err, errlen, -EINVAL, "listen %s: missing ':port' after ']'", spec);
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL)
            return fail(err, errlen, -EINVAL, "listen %s: expected host:port", spec);
        if (memchr(spec, ':', (size_t)(colon - spec)) != NULL)
            return fail(err, errlen, -EINVAL,
                        "listen %s: an IPv6 address needs brackets, e.g. [::1]:8080", spec);
        size_t hn = (size_t)(colon - spec);
        if (hn >= sizeof out->host)
            return fail(err, errlen, -EINVAL, "listen %s: host name too long", spec);
        memcpy(out->host, spec, hn);
        out->host[hn] = '\0';
        if (strcmp(out->host, "*") == 0)
            out->host[0] = '\0';
        for (size_t i = 0; out->host[i] != '\0'; i++)
            if (!host_char_ok(out->host[i]))
                return fail(err, errlen, -EINVAL, "listen %s: bad character in host", spec);
    }
    if (parse_port(colon + 1, &out->port) < 0)
        return fail(err, errlen, -EINVAL, "listen %s: port must be a number 0-65535", spec);
    return 0;
}

static int set_listen_opts(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

/* A unix socket file nobody accepts on is left over from a dead process. */
static void unlink_stale_unix(const struct sockaddr_un *sa, socklen_t salen)
{
    struct stat st;
    if (sa->sun_path[0] == '\0' || lstat(sa->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (const struct sockaddr *)sa, salen) < 0 && errno == ECONNREFUSED)
        unlink(sa->sun_path);
    close(fd);
}

static int open_unix(const struct dr_listen_addr *a, int *fdp, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(a->path);
    memcpy(sa.sun_path, a->path, n);
    if (a->path[0] == '@')
        sa.sun_path[0] = '\0';
    socklen_t salen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (a->path[0] == '@' ? 0 : 1));
    unlink_stale_unix(&sa, salen);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(err, errlen, -errno, "listen unix:%s: socket: %s", a->path, strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, salen) < 0 || listen(fd, DR_LISTEN_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        return fail(err, errlen, -e, "listen unix:%s: %s", a->path, strerror(e));
    }
    *fdp = fd;
    return 0;
}

int listen_open(const struct dr_listen_addr *a, int *fdp, char *err, size_t errlen)
{
    *fdp = -1;
    if (a->kind == DR_LISTEN_UNIX)
        return open_unix(a, fdp, err, errlen);

    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)a->port);
    const char *shown = a->host[0] ? a->host : "*";
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_family = a->ipv6 ? AF_INET6 : (a->host[0] ? AF_UNSPEC : AF_INET);
    if (a->ipv6)
        hints.ai_flags |= AI_NUMERICHOST;
    int g = getaddrinfo(a->host[0] ? a->host : NULL, port, &hints, &res);
    if (g != 0)
        return fail(err, errlen, -EADDRNOTAVAIL, "listen %s:%s: %s", shown, port, gai_strerror(g));
    int rc = 0, fd = -1;
    /* The first address that binds wins ("localhost" may give ::1 first). */
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, DR_LISTEN_BACKLOG) == 0) {
            rc = 0;
            break;
        }
        rc = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (rc == 0)
            rc = -EADDRNOTAVAIL;
        if (a->ipv6)
            return fail(err, errlen, rc, "listen [%s]:%s: %s", a->host, port, strerror(-rc));
        return fail(err, errlen, rc, "listen %s:%s: %s", shown, port, strerror(-rc));
    }
    *fdp = fd;
    return 0;
}

int listen_bound_name(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -errno;
    char host[INET6_ADDRSTRLEN];
    int n;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        n = snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(s4->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        n = snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(s6->sin6_port));
    } else if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *su = (const struct sockaddr_un *)&ss;
        size_t pl = sl > offsetof(struct sockaddr_un, sun_path)
                        ? sl - offsetof(struct sockaddr_un, sun_path)
                        : 0;
        char path[sizeof su->sun_path + 1];
        memcpy(path, su->sun_path, pl);
        path[pl] = '\0';
        if (pl > 0 && path[0] == '\0')
            path[0] = '@';
        n = snprintf(buf, len, "unix:%s", path);
    } else {
        return -EAFNOSUPPORT;
    }
    if (n < 0 || (size_t)n >= len)
        return -ENAMETOOLONG;
    return 0;
}

static void add_listener(struct dr_listen_set *s, const char *spec, int fd, const char *unix_path)
{
    char name[160];
    if (listen_bound_name(fd, name, sizeof name) < 0)
        snprintf(name, sizeof name, "%s", spec);
    s->v = xrealloc(s->v, (s->n + 1) * sizeof *s->v);
    s->v[s->n].spec = xstrdup(spec);
    s->v[s->n].name = xstrdup(name);
    s->v[s->n].unix_path = xstrdup(unix_path);
    s->v[s->n].fd = fd;
    s->n++;
}

static int check_listening_socket(int fd, const char *name, char *err, size_t errlen)
{
    int type = 0, acc = 0;
    socklen_t l1 = sizeof type, l2 = sizeof acc;
    if (fcntl(fd, F_GETFD) < 0)
        return fail(err, errlen, -EBADF, "LISTEN_FDS: fd %d (%s) is not open", fd, name);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l2) < 0 || type != SOCK_STREAM || !acc)
        return fail(err, errlen, -ENOTSOCK,
                    "LISTEN_FDS: fd %d (%s) is not a listening stream socket", fd, name);
    int r = set_listen_opts(fd);
    if (r < 0)
        return fail(err, errlen, r, "LISTEN_FDS: fd %d (%s): %s", fd, name, strerror(-r));
    return 0;
}

int listen_set_from_systemd(struct dr_listen_set *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *pid_s = getenv("LISTEN_PID");
    const char *fds_s = getenv("LISTEN_FDS");
    const char *names_s = getenv("LISTEN_FDNAMES");
    char *names = NULL;
    int rc = 0;
    if (pid_s == NULL || fds_s == NULL)
        goto out;
    char *end;
    errno = 0;
    long pid = strtol(pid_s, &end, 10);
    if (errno != 0 || *end != '\0' || pid <= 0) {
        rc = fail(err, errlen, -EINVAL, "LISTEN_PID=%s is not a pid", pid_s);
        goto out;
    }
    if ((pid_t)pid != getpid())
        goto out; /* meant for a parent that exec'd us: not ours */
    errno = 0;
    long n = strtol(fds_s, &end, 10);
    if (errno != 0 || *end != '\0' || n < 0 || n > DR_LISTEN_MAX) {
        rc = fail(err, errlen, -EINVAL, "LISTEN_FDS=%s: expected 0..%d", fds_s, DR_LISTEN_MAX);
        goto out;
    }
    if (n == 0)
        goto out;
    names = xstrdup(names_s ? names_s : "");
    char *save = NULL, *tok = strtok_r(names, ":", &save);
    for (long i = 0; i < n; i++) {
        int fd = 3 + (int)i;
        char spec[96];
        snprintf(spec, sizeof spec, "systemd:%s", tok && tok[0] ? tok : "unknown");
        rc = check_listening_socket(fd, spec, err, errlen);
        if (rc < 0)
            break;
        add_listener(out, spec, fd, NULL);
        tok = tok ? strtok_r(NULL, ":", &save) : NULL;
    }
    if (rc < 0) {
        /* the fds stay open (they are systemd's); only forget them */
        for (size_t i = 0; i < out->n; i++)
            out->v[i].fd = -1;
        listen_set_close(out, NULL);
        goto out;
    }
    out->from_systemd = true;
    rc = 1;
out:
    free(names);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return rc;
}

static bool holds_fd(const struct dr_listen_set *s, int fd)
{
    for (size_t i = 0; s != NULL && i < s->n; i++)
        if (s->v[i].fd == fd)
            return true;
    return false;
}

int listen_set_open(struct dr_listen_set *out, char *const *specs, size_t n,
                    const struct dr_listen_set *reuse, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (n > DR_LISTEN_MAX)
        return fail(err, errlen, -EINVAL, "listen: more than %d addresses", DR_LISTEN_MAX);
    size_t nr = reuse ? reuse->n : 0;
    /* which old listener each entry takes (-1: open a new one); an old one
     * is taken at most once. Exact bound addresses ("127.0.0.1:41234")
     * claim first, so an entry "127.0.0.1:0" next to it gets a new port. */
    int take[DR_LISTEN_MAX];
    bool taken[DR_LISTEN_MAX + 1] = {false};
    bool dup[DR_LISTEN_MAX] = {false};
    for (size_t i = 0; i < n; i++) {
        take[i] = -1;
        for (size_t j = 0; j < i && !dup[i]; j++)
            dup[i] = strcmp(specs[i], specs[j]) == 0; /* listed twice: one socket */
    }
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < nr && j < DR_LISTEN_MAX && !dup[i] && take[i] < 0; j++) {
                const char *have = pass == 0 ? reuse->v[j].name : reuse->v[j].spec;
                if (!taken[j] && strcmp(have, specs[i]) == 0) {
                    take[i] = (int)j;
                    taken[j] = true;
                }
            }
    for (size_t i = 0; i < n; i++) {
        if (dup[i])
            continue;
        if (take[i] >= 0) {
            const struct dr_listener *old = &reuse->v[take[i]];
            add_listener(out, specs[i], old->fd, old->unix_path);
            continue;
        }
        struct dr_listen_addr a;
        int fd = -1, r = listen_parse(specs[i], &a, err, errlen);
        if (r == 0)
            r = listen_open(&a, &fd, err, errlen);
        if (r < 0) {
            listen_set_close(out, reuse);
            return r;
        }
        add_listener(out, specs[i], fd,
                     a.kind == DR_LISTEN_UNIX && a.path[0] != '@' ? a.path : NULL);
    }
    return 0;
}

void listen_set_close(struct dr_listen_set *s, const struct dr_listen_set *keep)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        struct dr_listener *l = &s->v[i];
        if (l->fd >= 0 && !holds_fd(keep, l->fd)) {
            close(l->fd);
            if (l->unix_path != NULL)
                unlink(l->unix_path);
        }
        free(l->spec);
        free(l->name);
        free(l->unix_path);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

int listen_write_file(const struct dr_listen_set *s, const char *path)
{
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        char *line = xasprintf("%s\n", s->v[i].name);
        rc = dr_write_all(fd, line, strlen(line));
        free(line);
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
out:
    free(tmp);
    return rc;
}
