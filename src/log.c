/*
 * log: OpenBSD-style logging to stderr with a level filter.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_progname = "sandpool";
static enum log_level log_level = LOG_LEVEL_INFO;

static const char *const log_names[] = {
    "crit", "error", "warning", "info", "debug"};

/* Sets the program name and level. */
void
log_init(const char *progname, enum log_level level)
{
	log_progname = progname;
	log_level = level;
}

/* Changes the level. */
void
log_setlevel(enum log_level level)
{
	log_level = level;
}

/* Returns the level. */
enum log_level
log_getlevel(void)
{
	return log_level;
}

/* Parses a level name as the Python server's --log-level takes it. */
int
log_level_parse(const char *s)
{
	if (strcasecmp(s, "debug") == 0)
		return LOG_LEVEL_DEBUG;
	if (strcasecmp(s, "info") == 0)
		return LOG_LEVEL_INFO;
	if (strcasecmp(s, "warning") == 0 || strcasecmp(s, "warn") == 0)
		return LOG_LEVEL_WARN;
	if (strcasecmp(s, "error") == 0)
		return LOG_LEVEL_ERROR;
	if (strcasecmp(s, "critical") == 0 || strcasecmp(s, "crit") == 0)
		return LOG_LEVEL_CRIT;
	return -1;
}

/* Writes one line if the level passes the filter. */
static void
log_vwrite(enum log_level level, const char *fmt, va_list ap, int with_errno)
{
	int saved = errno;
	struct timeval tv;
	struct tm tm;
	char ts[32], msg[2048];

	if (level > log_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (with_errno)
		fprintf(stderr, "%s.%03ldZ %s[%ld] %s: %s: %s\n", ts,
		    (long)tv.tv_usec / 1000, log_progname, (long)getpid(),
		    log_names[level], msg, strerror(saved));
	else
		fprintf(stderr, "%s.%03ldZ %s[%ld] %s: %s\n", ts,
		    (long)tv.tv_usec / 1000, log_progname, (long)getpid(),
		    log_names[level], msg);
	errno = saved;
}

#define LOG_BODY(level, with_errno)                                            \
	do {                                                                   \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		log_vwrite(level, fmt, ap, with_errno);                        \
		va_end(ap);                                                    \
	} while (0)

/* Logs a warning with strerror(errno). */
void
log_warn(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_WARN, 1);
}

/* Logs a warning. */
void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_WARN, 0);
}

/* Logs an error. */
void
log_error(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_ERROR, 0);
}

/* Logs an informational line. */
void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_INFO, 0);
}

/* Logs a debug line. */
void
log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_DEBUG, 0);
}

/* Logs with strerror(errno) and exits. */
void
fatal(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_CRIT, 1);
	exit(1);
}

/* Logs and exits. */
void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_CRIT, 0);
	exit(1);
}

const char *
log_show(const char *s, size_t max, char *buf, size_t size)
{
	size_t i, n = strlen(s);

	for (i = 0; i < n && i + 4 < size && i < max; i++)
		buf[i] = iscntrl((unsigned char)s[i]) ? '?' : s[i];
	if (i < n) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}
