/* log.h - one line per event to stderr: time, level, role[pid], message.
 *
 * When stderr is connected to journald (JOURNAL_STREAM matches stderr), the
 * line starts with a "<N>" syslog priority instead of a timestamp, so
 * journald records the level and adds its own time. Thread-safe: each line
 * is formatted into a local buffer and written with one write(2).
 */
#ifndef DRIPD_LOG_H
#define DRIPD_LOG_H

enum log_level { LOG_LVL_ERROR = 3, LOG_LVL_WARN = 4, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

/* Sets the role shown in every line ("supervisor", "http", "pipeline").
 * Call in each process after fork; the pid is read at each line. */
void log_set_role(const char *role);
void log_set_level(enum log_level lvl);
/* "error" | "warn" | "info" | "debug" -> level; -1 if unknown. */
int log_level_parse(const char *s);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
