/*
 * xmalloc: allocation wrappers that abort on out-of-memory, so that callers
 * never handle allocation failure themselves.
 */
#ifndef SANDPOOL_XMALLOC_H
#define SANDPOOL_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
/* xstrdup, but NULL stays NULL. */
char *xstrdup0(const char *);
int xasprintf(char **, const char *, ...)
    __attribute__((__format__(printf, 2, 3)));
/* Frees *p and sets it to a copy of s (or NULL). */
void xstrset(char **p, const char *s);
/* Copies a NULL-terminated string vector (NULL gives an empty one). */
char **xstrv_dup(const char *const *);
/* Frees a NULL-terminated string vector (NULL is fine). */
void xstrv_free(char **);

#endif
