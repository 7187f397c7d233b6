/*
 * result: the CallToolResult JSON every tool of the agent answers with,
 * and the capped buffers its tools capture output in.
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "result.h"
#include "xmalloc.h"

/* Starts a result. */
yajl_gen
result_open(void)
{
	yajl_gen g = json_gen_new();

	yajl_gen_map_open(g);
	json_gen_str(g, "meta");
	json_gen_null(g);
	json_gen_str(g, "content");
	yajl_gen_array_open(g);
	return g;
}

/* Adds a text item. */
void
result_text(yajl_gen g, const char *text, size_t len, const char *desc)
{
	yajl_gen_map_open(g);
	json_gen_str(g, "type");
	json_gen_str(g, "text");
	json_gen_str(g, "text");
	json_gen_strn(g, text, len);
	json_gen_str(g, "annotations");
	json_gen_null(g);
	if (desc != NULL) {
		json_gen_str(g, "description");
		json_gen_str(g, desc);
	}
	yajl_gen_map_close(g);
}

/* Closes the result. */
char *
result_close(yajl_gen g, int is_error, size_t *len)
{
	yajl_gen_array_close(g);
	json_gen_str(g, "isError");
	json_gen_bool(g, is_error);
	yajl_gen_map_close(g);
	return json_gen_done(g, len);
}

/* One text item. */
char *
result_one(const char *text, int is_error, size_t *len)
{
	yajl_gen g = result_open();

	result_text(g, text, strlen(text), NULL);
	return result_close(g, is_error, len);
}

void
result_buf_add(struct result_buf *b, const char *p, size_t n, size_t max)
{
	size_t room = b->len < max ? max - b->len : 0,
	       take = n < room ? n : room;
	size_t cap;

	b->dropped += n - take;
	if (take == 0)
		return;
	if (b->len + take > b->cap) {
		cap = b->cap == 0 ? 4096 : b->cap;
		while (cap < b->len + take)
			cap *= 2;
		if (cap > max)
			cap = max;
		b->buf = xreallocarray(b->buf, 1, cap);
		b->cap = cap;
	}
	memcpy(b->buf + b->len, p, take);
	b->len += take;
}

void
result_buf_reset(struct result_buf *b)
{
	free(b->buf);
	memset(b, 0, sizeof *b);
}
