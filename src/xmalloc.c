/*
 * xmalloc: allocation wrappers that abort on out-of-memory.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

/* Reports an allocation failure and aborts. */
static void __attribute__((__noreturn__))
xmalloc_die(const char *what, size_t n)
{
	fprintf(stderr, "fatal: %s: out of memory (%zu bytes)\n", what, n);
	abort();
}

/* Allocates size bytes or aborts. */
void *
xmalloc(size_t size)
{
	void *p;

	if (size == 0)
		size = 1;
	if ((p = malloc(size)) == NULL)
		xmalloc_die("xmalloc", size);
	return p;
}

/* Allocates nmemb zeroed members of size bytes or aborts. */
void *
xcalloc(size_t nmemb, size_t size)
{
	void *p;

	if (nmemb == 0 || size == 0)
		nmemb = size = 1;
	if ((p = calloc(nmemb, size)) == NULL)
		xmalloc_die("xcalloc", nmemb * size);
	return p;
}

/* Resizes p to nmemb members of size bytes, checking for overflow. */
void *
xreallocarray(void *p, size_t nmemb, size_t size)
{
	void *np;

	if (size != 0 && nmemb > SIZE_MAX / size)
		xmalloc_die("xreallocarray", SIZE_MAX);
	if (nmemb == 0 || size == 0)
		nmemb = size = 1;
	if ((np = realloc(p, nmemb * size)) == NULL)
		xmalloc_die("xreallocarray", nmemb * size);
	return np;
}

/* Copies s or aborts. */
char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		xmalloc_die("xstrdup", strlen(s));
	return p;
}

/* Copies at most n bytes of s, always NUL-terminated. */
char *
xstrndup(const char *s, size_t n)
{
	char *p;

	if ((p = strndup(s, n)) == NULL)
		xmalloc_die("xstrndup", n);
	return p;
}

/* Copies s, or returns NULL for NULL. */
char *
xstrdup0(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

/* Formats into a new string or aborts; returns its length. */
int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(ret, fmt, ap);
	va_end(ap);
	if (n < 0)
		xmalloc_die("xasprintf", 0);
	return n;
}

/* Replaces the string *p by a copy of s. */
void
xstrset(char **p, const char *s)
{
	char *n = xstrdup0(s);

	free(*p);
	*p = n;
}

char **
xstrv_dup(const char *const *v)
{
	size_t i, n = 0;
	char **out;

	while (v != NULL && v[n] != NULL)
		n++;
	out = xcalloc(n + 1, sizeof *out);
	for (i = 0; i < n; i++)
		out[i] = xstrdup(v[i]);
	return out;
}

void
xstrv_free(char **v)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}
