/*
 * log: OpenBSD-style logging to stderr. Lines start with a timestamp, the
 * level, then whatever the caller says (by convention "module: object: ...").
 */
#ifndef SANDPOOL_LOG_H
#define SANDPOOL_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_LEVEL_CRIT = 0,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG
};

/* Sets the name printed in each line and the most verbose level shown. */
void log_init(const char *progname, enum log_level);
void log_setlevel(enum log_level);
enum log_level log_getlevel(void);
/* Parses DEBUG, INFO, WARNING, ERROR, CRITICAL (any case); -1 if unknown. */
int log_level_parse(const char *);

/*
 * Copies outside text (a client's identity, a config value) for a message
 * or the log: at most max bytes of it, control characters as '?', "..."
 * when cut; buf must hold max + 4 bytes. Returns buf.
 */
const char *log_show(const char *s, size_t max, char *buf, size_t size);

#define LOG_PRINTF(a, b) __attribute__((__format__(printf, a, b)))
void log_warn(const char *, ...) LOG_PRINTF(1, 2); /* adds strerror(errno) */
void log_warnx(const char *, ...) LOG_PRINTF(1, 2);
void log_error(const char *, ...) LOG_PRINTF(1, 2);
void log_info(const char *, ...) LOG_PRINTF(1, 2);
void log_debug(const char *, ...) LOG_PRINTF(1, 2);
void fatal(const char *, ...) LOG_PRINTF(1, 2) __attribute__((__noreturn__));
void fatalx(const char *, ...) LOG_PRINTF(1, 2) __attribute__((__noreturn__));

#endif
