/*
 * multipart: a streaming parser of multipart/form-data bodies (RFC 7578).
 * It is fed the body in pieces of any size and calls back at each part's
 * start (with its field name, file name and content type), with the part's
 * data as it comes, and at its end; it never holds more than one piece
 * plus the length of the delimiter, whatever the size of a part. Part
 * header blocks are bounded. Hand-written: Debian has no maintained C
 * library for this.
 */
#ifndef SANDPOOL_MULTIPART_H
#define SANDPOOL_MULTIPART_H

#include <stddef.h>

/* Longest boundary accepted (RFC 2046 allows 70). */
#define MULTIPART_MAX_BOUNDARY 200
/* Largest header block of one part. */
#define MULTIPART_MAX_HEADERS 8192
/* Most parts in one body. */
#define MULTIPART_MAX_PARTS 10000

/* A part's description, borrowed for the duration of the callback. */
struct multipart_part {
	const char *name;	  /* form field name, "" if absent */
	const char *filename;	  /* file name, or NULL if none was given */
	const char *content_type; /* or NULL */
};

struct multipart_cbs {
	/* Each returns 0, or -1 to stop the parse (an error). */
	int (*part_begin)(const struct multipart_part *, void *arg);
	int (*part_data)(const char *, size_t, void *arg);
	int (*part_end)(void *arg);
};

struct multipart;

/*
 * The boundary parameter of a Content-Type value (caller frees), or NULL
 * if it is not multipart/form-data with a usable boundary.
 */
char *multipart_boundary(const char *content_type);
/* A parser for bodies with that boundary; the callbacks get arg. */
struct multipart *multipart_new(
    const char *boundary, const struct multipart_cbs *cbs, void *arg);
/*
 * Parses n more bytes. 0, or -1 with *cause (caller frees) when the body
 * is malformed or a callback stopped it; the parser is then unusable.
 */
int multipart_feed(struct multipart *, const char *p, size_t n, char **cause);
/* The body ended: 0 if it was complete, or -1 with *cause. */
int multipart_finish(struct multipart *, char **cause);
void multipart_free(struct multipart *);

#endif
