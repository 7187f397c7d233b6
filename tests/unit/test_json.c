/*
 * Unit tests for src/json.c: depth-bounded parsing, member lookups and
 * generation helpers.
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tap.h"
#include "xmalloc.h"

/* Parses text and reports whether it was accepted. */
static int
parses(const char *text)
{
	char *cause = NULL;
	yajl_val v = json_parse(text, strlen(text), &cause);

	free(cause);
	if (v == NULL)
		return 0;
	yajl_tree_free(v);
	return 1;
}

int
main(void)
{
	char *cause = NULL, *out, deep[JSON_MAX_DEPTH * 2 + 8];
	const char *raw = "{\"a\":[1,2.5,\"x\",true,null,{\"b\":{}}]}";
	yajl_val v;
	long long n;
	size_t len;
	int b, i;
	yajl_gen g;

	ok(parses("{\"a\":1}"), "object parses");
	ok(!parses("{\"a\":"), "truncated JSON is refused");
	ok(!parses(""), "empty text is refused");

	v = json_parse("{\"a\"", 4, &cause);
	ok(v == NULL && cause != NULL &&
		strncmp(cause, "invalid JSON", 12) == 0,
	    "a parse error says invalid JSON (%s)", cause ? cause : "");
	free(cause);

	for (i = 0; i < JSON_MAX_DEPTH; i++)
		deep[i] = '[';
	for (i = 0; i < JSON_MAX_DEPTH; i++)
		deep[JSON_MAX_DEPTH + i] = ']';
	deep[2 * JSON_MAX_DEPTH] = '\0';
	ok(parses(deep), "nesting of exactly %d levels is accepted",
	    JSON_MAX_DEPTH);
	memmove(deep + 1, deep, strlen(deep) + 1);
	deep[0] = '[';
	strcat(deep, "]");
	v = json_parse(deep, strlen(deep), &cause);
	ok(v == NULL && cause != NULL && strstr(cause, "nested") != NULL,
	    "nesting deeper than the limit is refused");
	free(cause);
	ok(parses(
	       "[\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
	       "[[[[[[[[[[[[[[[\"]"),
	    "brackets inside strings do not count");
	/* yajl's tree would cut "x\u0000y" to "x": refused, not truncated. */
	v = json_parse("{\"a\":\"x\\u0000\"}", 15, &cause);
	ok(v == NULL && cause != NULL && strstr(cause, "NUL") != NULL,
	    "escaped NUL inside a string is refused");
	free(cause);
	v = json_parse("{\"a\":\"x\\\\u0000\"}", 16, &cause);
	ok(v != NULL, "an escaped backslash before u0000 is no NUL");
	yajl_tree_free(v);
	v = json_parse("{\"a\":1}\0", 8, &cause);
	ok(v == NULL, "a raw NUL byte is refused");
	free(cause);

	v = json_parse(
	    "{\"s\":\"hi\",\"n\":42,\"t\":true,\"f\":1.5}", 34, &cause);
	is_str(json_get_str(v, "s"), "hi", "json_get_str finds a string");
	ok(json_get_str(v, "n") == NULL, "json_get_str refuses a number");
	ok(json_get_int(v, "n", &n) == 0 && n == 42, "json_get_int");
	ok(json_get_int(v, "f", &n) == -1, "json_get_int refuses a double");
	ok(json_get_bool(v, "t", &b) == 0 && b == 1, "json_get_bool");
	ok(json_get(v, "missing") == NULL, "json_get of a missing key");
	yajl_tree_free(v);

	g = json_gen_new();
	ok(json_gen_raw(g, raw, strlen(raw)) == 0, "json_gen_raw accepts JSON");
	out = json_gen_done(g, &len);
	is_str(out, raw, "json_gen_raw round-trips");
	free(out);

	g = json_gen_new();
	ok(json_gen_raw(g, "nope", 4) == -1, "json_gen_raw refuses non-JSON");
	yajl_gen_free(g);

	g = json_gen_new();
	yajl_gen_array_open(g);
	json_gen_strn(g,
	    "a\xff"
	    "b",
	    3);
	json_gen_double(g, 1.5);
	json_gen_double(g, 2.0);
	json_gen_str(g, NULL);
	yajl_gen_array_close(g);
	out = json_gen_done(g, NULL);
	is_str(out,
	    "[\"a\xef\xbf\xbd"
	    "b\",1.5,2.0,null]",
	    "invalid UTF-8 becomes U+FFFD; doubles print plainly");
	free(out);

	/* inf and huge values (fuzz_sandbox_json) stay valid JSON. */
	g = json_gen_new();
	yajl_gen_array_open(g);
	json_gen_double(g, 1.0 / 0.0);
	json_gen_double(g, -1.0 / 0.0);
	json_gen_double(g, 0.0 / 0.0);
	json_gen_double(g, 1e300);
	yajl_gen_array_close(g);
	out = json_gen_done(g, &len);
	is_str(out, "[null,null,null,1.0000000000000001e+300]",
	    "non-finite doubles are null, a huge one fits");
	ok(parses(out), "and it parses");
	free(out);

	out = json_detail("Not Found", &len);
	is_str(out, "{\"detail\":\"Not Found\"}", "json_detail");
	free(out);
	return tap_done();
}
