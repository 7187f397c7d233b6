/*
 * json: small helpers over yajl for parsing outside input (depth-bounded)
 * and for generating JSON with yajl_gen. yajl trees are used inside one
 * function and copied into typed structs; they never cross a module
 * boundary except through this module's helpers.
 */
#ifndef SANDPOOL_JSON_H
#define SANDPOOL_JSON_H

#include <stddef.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* Deepest nesting of arrays and objects accepted from outside input. */
#define JSON_MAX_DEPTH 64

/*
 * Parses len bytes of JSON text (need not be NUL-terminated). Returns the
 * tree (free it with yajl_tree_free) or NULL with *cause set (caller frees).
 */
yajl_val json_parse(const char *buf, size_t len, char **cause);

/*
 * The checks json_parse makes before parsing (no NUL byte, no \u0000
 * escape, nesting at most JSON_MAX_DEPTH), for event parsers: 0, or -1
 * with *cause set (caller frees).
 */
int json_check(const char *buf, size_t len, char **cause);

/* Member of an object, or NULL if obj is no object or has no such key. */
yajl_val json_get(yajl_val obj, const char *key);
/* String member, or NULL if missing or not a string. */
const char *json_get_str(yajl_val obj, const char *key);
/* Integer member into *out: 0, or -1 if missing or not an integer. */
int json_get_int(yajl_val obj, const char *key, long long *out);
/* Boolean member into *out: 0, or -1 if missing or not a boolean. */
int json_get_bool(yajl_val obj, const char *key, int *out);

/* A new generator (no beautify, UTF-8 validated). */
yajl_gen json_gen_new(void);
/* Emits a string, or null for NULL. */
void json_gen_str(yajl_gen, const char *);
/* Emits a string of len bytes. */
void json_gen_strn(yajl_gen, const char *, size_t);
void json_gen_int(yajl_gen, long long);
void json_gen_bool(yajl_gen, int);
void json_gen_null(yajl_gen);
/* Emits a double with up to 6 decimals (no exponent noise). */
void json_gen_double(yajl_gen, double);
/* Emits a copy of a parsed value. */
void json_gen_tree(yajl_gen, yajl_val);
/* Emits JSON text after checking it parses; -1 (nothing emitted) if not. */
int json_gen_raw(yajl_gen, const char *text, size_t len);
/* Frees g and returns its output as a NUL-terminated string (caller's). */
char *json_gen_done(yajl_gen g, size_t *len);

/* One-shot: {"detail": msg} */
char *json_detail(const char *msg, size_t *len);

/*
 * One list_tools entry (spec 6.3), for the manager's built-in tools and
 * the agent's: json_gen_tool_begin emits name: {"name", "json_schema":
 * {"type": "function", "function": {"name", "description", "parameters":
 * {"type": "object", "properties": and the caller emits the properties
 * value and "required"; json_gen_tool_end closes the rest.
 */
void json_gen_tool_begin(yajl_gen, const char *name, const char *description);
void json_gen_tool_end(yajl_gen);

#endif
