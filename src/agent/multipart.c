/*
 * multipart: streaming multipart/form-data parser (see multipart.h).
 *
 * The body is scanned for the delimiter "\r\n--<boundary>". The first
 * delimiter may open the body without the CRLF, so the scan starts as if
 * a CRLF had been seen. Bytes that cannot be part of a delimiter are
 * handed to part_data at once; up to delimiter-length - 1 trailing bytes
 * are kept until the next piece shows whether they start one.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "multipart.h"
#include "xmalloc.h"

enum multipart_state {
	MP_PREAMBLE,	/* before the first delimiter */
	MP_AFTER_DELIM, /* right after a delimiter: "--" or CRLF follows */
	MP_HEADERS,	/* a part's header block */
	MP_BODY,	/* a part's data */
	MP_EPILOGUE,	/* after the close delimiter */
	MP_FAILED
};

struct multipart {
	const struct multipart_cbs *cbs;
	void *arg;
	enum multipart_state state;
	char *delim; /* "\r\n--" boundary */
	size_t dlen;
	char *buf; /* unconsumed bytes */
	size_t len, cap;
	size_t parts;
	int in_part;
};

/* Extracts the boundary parameter. */
char *
multipart_boundary(const char *ct)
{
	const char *p, *start;
	char *out;
	size_t n;

	if (ct == NULL)
		return NULL;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, "multipart/form-data", 19) != 0)
		return NULL;
	p = ct + 19;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		if (strncasecmp(p, "boundary=", 9) == 0) {
			p += 9;
			if (*p == '"') {
				start = ++p;
				while (*p != '\0' && *p != '"')
					p++;
				if (*p != '"')
					return NULL;
				n = (size_t)(p - start);
			} else {
				start = p;
				while (*p != '\0' && *p != ';' && *p != ' ' &&
				    *p != '\t')
					p++;
				n = (size_t)(p - start);
			}
			if (n == 0 || n > MULTIPART_MAX_BOUNDARY)
				return NULL;
			out = xstrndup(start, n);
			if (strchr(out, '\r') != NULL ||
			    strchr(out, '\n') != NULL) {
				free(out);
				return NULL;
			}
			return out;
		}
		while (*p != '\0' && *p != ';')
			p++;
	}
	return NULL;
}

/* Makes a parser. */
struct multipart *
multipart_new(const char *boundary, const struct multipart_cbs *cbs, void *arg)
{
	struct multipart *mp;

	mp = xcalloc(1, sizeof *mp);
	mp->cbs = cbs;
	mp->arg = arg;
	mp->dlen = xasprintf(&mp->delim, "\r\n--%s", boundary);
	/* The body may open with the delimiter without its CRLF. */
	mp->cap = 4096;
	mp->buf = xmalloc(mp->cap);
	memcpy(mp->buf, "\r\n", 2);
	mp->len = 2;
	mp->state = MP_PREAMBLE;
	return mp;
}

/* Frees a parser. */
void
multipart_free(struct multipart *mp)
{
	if (mp == NULL)
		return;
	free(mp->delim);
	free(mp->buf);
	free(mp);
}

/* Fails the parse with a message. */
static int
multipart_fail(struct multipart *mp, char **cause, const char *msg)
{
	mp->state = MP_FAILED;
	*cause = xstrdup(msg);
	return -1;
}

/* Drops the first n buffered bytes. */
static void
multipart_consume(struct multipart *mp, size_t n)
{
	memmove(mp->buf, mp->buf + n, mp->len - n);
	mp->len -= n;
}

/* Finds needle in the buffer; its offset or -1. */
static long
multipart_find(struct multipart *mp, const char *needle, size_t nlen)
{
	const char *hit;

	hit = memmem(mp->buf, mp->len, needle, nlen);
	return hit != NULL ? (long)(hit - mp->buf) : -1;
}

/*
 * Reads a header parameter value at p (quoted or a token) into a new
 * string; *end is set past it.
 */
static char *
multipart_param_value(const char *p, const char **end)
{
	char *out, *o;

	if (*p == '"') {
		p++;
		out = o = xmalloc(strlen(p) + 1);
		while (*p != '\0' && *p != '"') {
			if (*p == '\\' && p[1] != '\0')
				p++;
			*o++ = *p++;
		}
		*o = '\0';
		if (*p == '"')
			p++;
	} else {
		const char *s = p;

		while (*p != '\0' && *p != ';' && *p != ' ' && *p != '\t')
			p++;
		out = xstrndup(s, (size_t)(p - s));
	}
	*end = p;
	return out;
}

/* Decodes an RFC 8187 ext-value (charset'lang'pct-encoded) in place. */
static void
multipart_ext_value(char *v)
{
	char *q = strchr(v, '\''), *o, hex[3] = {0};

	if (q == NULL || (q = strchr(q + 1, '\'')) == NULL)
		return;
	q++;
	for (o = v; *q != '\0'; q++) {
		if (*q == '%' && isxdigit((unsigned char)q[1]) &&
		    isxdigit((unsigned char)q[2])) {
			hex[0] = q[1];
			hex[1] = q[2];
			*o++ = (char)strtol(hex, NULL, 16);
			q += 2;
		} else
			*o++ = *q;
	}
	*o = '\0';
}

/* Parses a part's header block (NUL-terminated, CRLF lines). */
static int
multipart_headers(struct multipart *mp, char *block, char **cause)
{
	struct multipart_part part = {"", NULL, NULL};
	char *line, *next, *v, *name = NULL, *filename = NULL, *fn_ext = NULL;
	char *ctype = NULL, *param;
	const char *p;
	int r = 0;

	for (line = block; line != NULL && *line != '\0'; line = next) {
		if ((next = strstr(line, "\r\n")) != NULL) {
			*next = '\0';
			next += 2;
		}
		if ((v = strchr(line, ':')) == NULL)
			continue;
		*v++ = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		if (strcasecmp(line, "Content-Type") == 0) {
			free(ctype);
			ctype = xstrdup(v);
			continue;
		}
		if (strcasecmp(line, "Content-Disposition") != 0)
			continue;
		for (p = v; *p != '\0';) {
			while (*p == ' ' || *p == '\t' || *p == ';')
				p++;
			if (strncasecmp(p, "name=", 5) == 0) {
				free(name);
				name = multipart_param_value(p + 5, &p);
			} else if (strncasecmp(p, "filename=", 9) == 0) {
				free(filename);
				filename = multipart_param_value(p + 9, &p);
			} else if (strncasecmp(p, "filename*=", 10) == 0) {
				free(fn_ext);
				fn_ext = multipart_param_value(p + 10, &p);
				multipart_ext_value(fn_ext);
			} else {
				param = multipart_param_value(p, &p);
				free(param);
				if (p == v)
					break;
			}
		}
	}
	part.name = name != NULL ? name : "";
	part.filename = fn_ext != NULL ? fn_ext : filename;
	part.content_type = ctype;
	if (mp->cbs->part_begin(&part, mp->arg) == -1) {
		*cause = xstrdup("upload refused");
		r = -1;
	}
	free(name);
	free(filename);
	free(fn_ext);
	free(ctype);
	return r;
}

/* Runs the state machine over the buffer as far as it can go. */
static int
multipart_run(struct multipart *mp, char **cause)
{
	long at;
	size_t n;
	char *block;

	for (;;) {
		switch (mp->state) {
		case MP_PREAMBLE:
			if ((at = multipart_find(mp, mp->delim, mp->dlen)) ==
			    -1) {
				/* Keep a possible delimiter start. */
				if (mp->len >= mp->dlen)
					multipart_consume(
					    mp, mp->len - (mp->dlen - 1));
				return 0;
			}
			multipart_consume(mp, (size_t)at + mp->dlen);
			mp->state = MP_AFTER_DELIM;
			break;
		case MP_AFTER_DELIM:
			if (mp->len < 2)
				return 0;
			if (memcmp(mp->buf, "--", 2) == 0) {
				multipart_consume(mp, 2);
				mp->state = MP_EPILOGUE;
				break;
			}
			/* Transport padding, then CRLF. */
			for (n = 0; n < mp->len &&
			     (mp->buf[n] == ' ' || mp->buf[n] == '\t');
			     n++)
				;
			if (n + 2 > mp->len) {
				if (n > 256)
					return multipart_fail(mp, cause,
					    "malformed multipart delimiter");
				return 0;
			}
			if (mp->buf[n] != '\r' || mp->buf[n + 1] != '\n')
				return multipart_fail(
				    mp, cause, "malformed multipart delimiter");
			multipart_consume(mp, n + 2);
			if (++mp->parts > MULTIPART_MAX_PARTS)
				return multipart_fail(
				    mp, cause, "too many multipart parts");
			mp->state = MP_HEADERS;
			break;
		case MP_HEADERS:
			/* An empty header block is just CRLF. */
			if (mp->len >= 2 && memcmp(mp->buf, "\r\n", 2) == 0)
				at = 0;
			else if ((at = multipart_find(mp, "\r\n\r\n", 4)) != -1)
				at += 2;
			if (at == -1) {
				if (mp->len > MULTIPART_MAX_HEADERS)
					return multipart_fail(mp, cause,
					    "multipart part headers too large");
				return 0;
			}
			if ((size_t)at > MULTIPART_MAX_HEADERS)
				return multipart_fail(mp, cause,
				    "multipart part headers too large");
			block = xstrndup(mp->buf, (size_t)at);
			multipart_consume(mp, (size_t)at + 2);
			if (multipart_headers(mp, block, cause) == -1) {
				free(block);
				mp->state = MP_FAILED;
				return -1;
			}
			free(block);
			mp->in_part = 1;
			mp->state = MP_BODY;
			break;
		case MP_BODY:
			at = multipart_find(mp, mp->delim, mp->dlen);
			if (at == -1) {
				if (mp->len < mp->dlen)
					return 0;
				n = mp->len - (mp->dlen - 1);
				if (mp->cbs->part_data(mp->buf, n, mp->arg) ==
				    -1)
					return multipart_fail(
					    mp, cause, "upload failed");
				multipart_consume(mp, n);
				return 0;
			}
			if (at > 0 &&
			    mp->cbs->part_data(mp->buf, (size_t)at, mp->arg) ==
				-1)
				return multipart_fail(
				    mp, cause, "upload failed");
			multipart_consume(mp, (size_t)at + mp->dlen);
			mp->in_part = 0;
			if (mp->cbs->part_end(mp->arg) == -1)
				return multipart_fail(
				    mp, cause, "upload failed");
			mp->state = MP_AFTER_DELIM;
			break;
		case MP_EPILOGUE:
			mp->len = 0;
			return 0;
		case MP_FAILED:
			*cause = xstrdup("multipart parse already failed");
			return -1;
		}
	}
}

/* Feeds bytes to the parser. */
int
multipart_feed(struct multipart *mp, const char *p, size_t n, char **cause)
{
	size_t take;

	*cause = NULL;
	while (n > 0) {
		if (mp->state == MP_FAILED) {
			*cause = xstrdup("multipart parse already failed");
			return -1;
		}
		if (mp->state == MP_EPILOGUE)
			return 0;
		/* Bounded: at most one 64 KiB step past what is kept. */
		take = n < 65536 ? n : 65536;
		if (mp->len + take > mp->cap) {
			while (mp->cap < mp->len + take)
				mp->cap *= 2;
			mp->buf = xreallocarray(mp->buf, 1, mp->cap);
		}
		memcpy(mp->buf + mp->len, p, take);
		mp->len += take;
		p += take;
		n -= take;
		if (multipart_run(mp, cause) == -1)
			return -1;
	}
	return 0;
}

/* Checks that the body ended with the close delimiter. */
int
multipart_finish(struct multipart *mp, char **cause)
{
	*cause = NULL;
	if (mp->state == MP_EPILOGUE)
		return 0;
	if (mp->state == MP_FAILED)
		*cause = xstrdup("multipart parse failed");
	else
		*cause = xstrdup("multipart body ended before its close "
				 "delimiter");
	return -1;
}
