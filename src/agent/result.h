/*
 * result: builds the JSON of an MCP CallToolResult as the upstream runtime
 * dumps it (spec 6.4): {"meta":null,"content":[items],"isError":bool},
 * text items {"type":"text","text":...,"annotations":null} plus an
 * optional "description".
 */
#ifndef SANDPOOL_RESULT_H
#define SANDPOOL_RESULT_H

#include <stddef.h>
#include <yajl/yajl_gen.h>

/* Starts a result: the generator is inside the content array. */
yajl_gen result_open(void);
/* Adds a text item; desc NULL leaves "description" out. */
void result_text(yajl_gen, const char *text, size_t len, const char *desc);
/* Closes the result and returns its text (caller frees). */
char *result_close(yajl_gen, int is_error, size_t *len);
/* A result with one text item and no description. */
char *result_one(const char *text, int is_error, size_t *len);

/* A tool's output captured up to a cap: beyond it, bytes are counted only. */
struct result_buf {
	char *buf;
	size_t len, cap, dropped;
};
/* Appends n bytes of p, keeping at most max in all. */
void result_buf_add(struct result_buf *, const char *p, size_t n, size_t max);
/* Frees the bytes and empties the buffer. */
void result_buf_reset(struct result_buf *);

#endif
