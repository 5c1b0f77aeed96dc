/* log.c - see log.h. The role is a fixed-size copy set once per process
 * before threads start; the level is a relaxed atomic. */
#include "dripd/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/util.h"

static char log_role[24] = "dripd";
static int log_level = LOG_LVL_INFO;
static int log_journal = -1; /* -1 unknown, 0 no, 1 yes */

void log_set_role(const char *role)
{
    snprintf(log_role, sizeof log_role, "%s", role);
}

void log_set_level(enum log_level lvl)
{
    __atomic_store_n(&log_level, (int)lvl, __ATOMIC_RELAXED);
}

int log_level_parse(const char *s)
{
    if (strcmp(s, "error") == 0)
        return LOG_LVL_ERROR;
    if (strcmp(s, "warn") == 0)
        return LOG_LVL_WARN;
    if (strcmp(s, "info") == 0)
        return LOG_LVL_INFO;
    if (strcmp(s, "debug") == 0)
        return LOG_LVL_DEBUG;
    return -1;
}

static int to_journal(void)
{
    int j = __atomic_load_n(&log_journal, __ATOMIC_RELAXED);
    if (j >= 0)
        return j;
    j = 0;
    const char *e = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long dev, ino;
    if (e && sscanf(e, "%lu:%lu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
        (unsigned long)st.st_dev == dev && (unsigned long)st.st_ino == ino)
        j = 1;
    __atomic_store_n(&log_journal, j, __ATOMIC_RELAXED);
    return j;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if ((int)lvl > __atomic_load_n(&log_level, __ATOMIC_RELAXED))
        return;
    static const char *names[] = {[LOG_LVL_ERROR] = "ERROR",
                                  [LOG_LVL_WARN] = "WARN",
                                  [LOG_LVL_INFO] = "INFO",
                                  [LOG_LVL_DEBUG] = "DEBUG"};
    char line[2048];
    int n;
    if (to_journal()) {
        n = snprintf(line, sizeof line, "<%d>%s %s[%d] ", (int)lvl, names[lvl], log_role,
                     (int)getpid());
    } else {
        char ts[32];
        dr_fmt_time(dr_now_ms(), ts, sizeof ts);
        n = snprintf(line, sizeof line, "%s %s %s[%d] ", ts, names[lvl], log_role, (int)getpid());
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : DR_MIN((size_t)m, sizeof line - (size_t)n - 2));
    line[len++] = '\n';
    (void)dr_write_all(2, line, len);
}
