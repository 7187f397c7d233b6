/*
 * json: depth-bounded parsing and generation helpers over yajl.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "xmalloc.h"

/*
 * Skips a string whose opening quote is behind p: returns what follows its
 * closing quote, or NULL with *err set for a NUL byte or a \u0000 escape
 * (yajl's tree keeps strings NUL-terminated, so "a\u0000b" would quietly
 * become "a"). An unterminated string ends the text (yajl reports it).
 */
static const char *
json_skip_string(const char *p, const char *end, const char **err)
{
	const char *q;

	for (;;) {
		if ((q = memchr(p, '"', (size_t)(end - p))) == NULL)
			return end;
		/* The common case: no escape and no NUL before the quote. */
		if (memchr(p, '\\', (size_t)(q - p)) == NULL &&
		    memchr(p, '\0', (size_t)(q - p)) == NULL)
			return q + 1;
		for (; p < end; p++) {
			if (*p == '"')
				return p + 1;
			if (*p == '\0') {
				*err = "JSON text contains a NUL byte";
				return NULL;
			}
			if (*p != '\\')
				continue;
			if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0) {
				*err = "a JSON string holds a NUL (\\u0000), "
				       "which "
				       "is not supported";
				return NULL;
			}
			if (++p == end)
				return end;
		}
		return end;
	}
}

/*
 * One pass over the text before yajl sees it: refuses NUL bytes, \u0000
 * escapes, and arrays and objects nested deeper than JSON_MAX_DEPTH (so
 * that yajl's recursive tree code never runs out of stack on hostile
 * input). Returns NULL, or why the text is refused.
 */
static const char *
json_prescan(const char *buf, size_t len, int *too_deep)
{
	const char *p = buf, *end = buf + len, *err = NULL;
	int depth = 0, counting = 1;

	while (p < end) {
		switch (*p++) {
		case '"':
			if ((p = json_skip_string(p, end, &err)) == NULL)
				return err;
			break;
		case '\0':
			return "JSON text contains a NUL byte";
		case '[':
		case '{':
			if (counting && ++depth > JSON_MAX_DEPTH) {
				*too_deep = 1;
				return "too deep";
			}
			break;
		case ']':
		case '}':
			/* More closed than opened: not JSON (yajl says so). */
			if (counting && --depth < 0)
				counting = 0;
			break;
		}
	}
	return NULL;
}

/* The pre-scan alone, for parsers that do not build a tree. */
int
json_check(const char *buf, size_t len, char **cause)
{
	const char *why;
	int too_deep = 0;

	*cause = NULL;
	if ((why = json_prescan(buf, len, &too_deep)) == NULL)
		return 0;
	if (too_deep)
		xasprintf(
		    cause, "JSON nested deeper than %d levels", JSON_MAX_DEPTH);
	else
		*cause = xstrdup(why);
	return -1;
}

/* Parses JSON text into a tree, refusing too deep nesting. */
yajl_val
json_parse(const char *buf, size_t len, char **cause)
{
	char err[256], small[4096], *text;
	yajl_val v;
	size_t n;

	if (json_check(buf, len, cause) != 0)
		return NULL;
	/* yajl wants a C string; most texts fit on the stack. */
	text = len < sizeof small ? small : xmalloc(len + 1);
	memcpy(text, buf, len);
	text[len] = '\0';
	err[0] = '\0';
	v = yajl_tree_parse(text, err, sizeof err);
	if (text != small)
		free(text);
	if (v == NULL) {
		n = strcspn(err, "\n");
		err[n] = '\0';
		xasprintf(cause, "invalid JSON: %s",
		    err[0] != '\0' ? err : "parse error");
	}
	return v;
}

/* Looks a key up in an object. */
yajl_val
json_get(yajl_val obj, const char *key)
{
	size_t i;

	if (obj == NULL || !YAJL_IS_OBJECT(obj))
		return NULL;
	for (i = 0; i < obj->u.object.len; i++)
		if (strcmp(obj->u.object.keys[i], key) == 0)
			return obj->u.object.values[i];
	return NULL;
}

/* Looks a string member up. */
const char *
json_get_str(yajl_val obj, const char *key)
{
	yajl_val v = json_get(obj, key);

	return v != NULL && YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;
}

/* Looks an integer member up. */
int
json_get_int(yajl_val obj, const char *key, long long *out)
{
	yajl_val v = json_get(obj, key);

	if (v == NULL || !YAJL_IS_INTEGER(v))
		return -1;
	*out = YAJL_GET_INTEGER(v);
	return 0;
}

/* Looks a boolean member up. */
int
json_get_bool(yajl_val obj, const char *key, int *out)
{
	yajl_val v = json_get(obj, key);

	if (v == NULL || !(YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)))
		return -1;
	*out = YAJL_IS_TRUE(v);
	return 0;
}

/* Makes a compact generator that validates UTF-8. */
yajl_gen
json_gen_new(void)
{
	yajl_gen g;

	if ((g = yajl_gen_alloc(NULL)) == NULL)
		abort();
	yajl_gen_config(g, yajl_gen_validate_utf8, 1);
	return g;
}

/* Emits a string or null. */
void
json_gen_str(yajl_gen g, const char *s)
{
	if (s == NULL)
		yajl_gen_null(g);
	else
		json_gen_strn(g, s, strlen(s));
}

/*
 * Emits a string of len bytes. Invalid UTF-8 (a command's binary output,
 * say) is replaced byte by byte with U+FFFD rather than failing the reply.
 */
void
json_gen_strn(yajl_gen g, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	char *fixed;
	size_t i, o, need;

	if (yajl_gen_string(g, p, len) != yajl_gen_invalid_string)
		return;
	fixed = xmalloc(len * 3 + 1);
	for (i = 0, o = 0; i < len;) {
		need = 0;
		if (p[i] < 0x80)
			need = 1;
		else if ((p[i] & 0xe0) == 0xc0 && p[i] >= 0xc2)
			need = 2;
		else if ((p[i] & 0xf0) == 0xe0)
			need = 3;
		else if ((p[i] & 0xf8) == 0xf0 && p[i] <= 0xf4)
			need = 4;
		if (need > 1 && i + need <= len) {
			size_t k;

			for (k = 1; k < need; k++)
				if ((p[i + k] & 0xc0) != 0x80)
					break;
			if (k != need)
				need = 0;
		} else if (need > 1)
			need = 0;
		if (need == 0) {
			memcpy(fixed + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(fixed + o, p + i, need);
			o += need;
			i += need;
		}
	}
	if (yajl_gen_string(g, (unsigned char *)fixed, o) != yajl_gen_status_ok)
		yajl_gen_string(g, (const unsigned char *)"", 0);
	free(fixed);
}

/* Emits an integer. */
void
json_gen_int(yajl_gen g, long long v)
{
	yajl_gen_integer(g, v);
}

/* Emits a boolean. */
void
json_gen_bool(yajl_gen g, int v)
{
	yajl_gen_bool(g, v != 0);
}

/* Emits null. */
void
json_gen_null(yajl_gen g)
{
	yajl_gen_null(g);
}

/* Emits a double with at most six decimals. */
void
json_gen_double(yajl_gen g, double v)
{
	char buf[64];
	int n;

	/* JSON has no inf or nan; a huge value would not fit "%.6f". */
	if (!isfinite(v)) {
		yajl_gen_null(g);
		return;
	}
	n = snprintf(buf, sizeof buf, "%.6f", v);
	if (n < 0 || (size_t)n >= sizeof buf)
		n = snprintf(buf, sizeof buf, "%.17g", v);
	else
		while (n > 1 && buf[n - 1] == '0' && buf[n - 2] != '.')
			buf[--n] = '\0';
	yajl_gen_number(g, buf, n);
}

/* Emits a copy of a parsed tree. */
void
json_gen_tree(yajl_gen g, yajl_val v)
{
	size_t i;

	if (v == NULL) {
		yajl_gen_null(g);
		return;
	}
	switch (v->type) {
	case yajl_t_string:
		json_gen_str(g, v->u.string);
		break;
	case yajl_t_number:
		yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
		break;
	case yajl_t_object:
		yajl_gen_map_open(g);
		for (i = 0; i < v->u.object.len; i++) {
			json_gen_str(g, v->u.object.keys[i]);
			json_gen_tree(g, v->u.object.values[i]);
		}
		yajl_gen_map_close(g);
		break;
	case yajl_t_array:
		yajl_gen_array_open(g);
		for (i = 0; i < v->u.array.len; i++)
			json_gen_tree(g, v->u.array.values[i]);
		yajl_gen_array_close(g);
		break;
	case yajl_t_true:
		yajl_gen_bool(g, 1);
		break;
	case yajl_t_false:
		yajl_gen_bool(g, 0);
		break;
	default:
		yajl_gen_null(g);
		break;
	}
}

/* Emits already-serialised JSON, re-generated so the output stays valid. */
int
json_gen_raw(yajl_gen g, const char *text, size_t len)
{
	char *cause;
	yajl_val v;

	if ((v = json_parse(text, len, &cause)) == NULL) {
		free(cause);
		return -1;
	}
	json_gen_tree(g, v);
	yajl_tree_free(v);
	return 0;
}

/* Returns the generated text and frees the generator. */
char *
json_gen_done(yajl_gen g, size_t *lenp)
{
	const unsigned char *buf;
	size_t len;
	char *out;

	yajl_gen_get_buf(g, &buf, &len);
	out = xmalloc(len + 1);
	memcpy(out, buf, len);
	out[len] = '\0';
	yajl_gen_free(g);
	if (lenp != NULL)
		*lenp = len;
	return out;
}

/* Builds {"detail": msg}. */
char *
json_detail(const char *msg, size_t *len)
{
	yajl_gen g = json_gen_new();

	yajl_gen_map_open(g);
	json_gen_str(g, "detail");
	json_gen_str(g, msg);
	yajl_gen_map_close(g);
	return json_gen_done(g, len);
}

/*
 * Opens one list_tools entry (spec 6.3) up to the "properties" key:
 * name: {"name", "json_schema": {"type": "function", "function": {"name",
 * "description", "parameters": {"type": "object", "properties": ...
 * The caller emits the properties value and "required", then calls
 * json_gen_tool_end.
 */
void
json_gen_tool_begin(yajl_gen g, const char *name, const char *description)
{
	json_gen_str(g, name);
	yajl_gen_map_open(g);
	json_gen_str(g, "name");
	json_gen_str(g, name);
	json_gen_str(g, "json_schema");
	yajl_gen_map_open(g);
	json_gen_str(g, "type");
	json_gen_str(g, "function");
	json_gen_str(g, "function");
	yajl_gen_map_open(g);
	json_gen_str(g, "name");
	json_gen_str(g, name);
	json_gen_str(g, "description");
	json_gen_str(g, description);
	json_gen_str(g, "parameters");
	yajl_gen_map_open(g);
	json_gen_str(g, "type");
	json_gen_str(g, "object");
	json_gen_str(g, "properties");
}

/* Closes what json_gen_tool_begin opened. */
void
json_gen_tool_end(yajl_gen g)
{
	yajl_gen_map_close(g); /* parameters */
	yajl_gen_map_close(g); /* function */
	yajl_gen_map_close(g); /* json_schema */
	yajl_gen_map_close(g); /* the entry */
}
