/*
 * fstools: the filesystem MCP tools of spec section 7, natively (see
 * fstools.h). The texts (descriptions, results, errors) follow
 * @modelcontextprotocol/server-filesystem 2025.3.28; paths are resolved
 * with wspace.c, so ".." and symbolic links cannot lead out of the
 * workspace. A failed tool answers a CallToolResult with isError true and
 * the text "Error: <message>", as upstream.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "agent.h"
#include "fstools.h"
#include "json.h"
#include "result.h"
#include "udiff.h"
#include "wspace.h"
#include "xmalloc.h"

/* What a tool produced: text and whether it is an error. */
struct fstools_out {
	struct evbuffer *text;
	int error;
};

typedef void (*fstools_fn)(yajl_val, struct fstools_out *);

/* A tool's argument: name, JSON schema type, and extra schema members. */
struct fstools_arg {
	const char *name;
	const char *schema; /* JSON of the property's schema */
	int required;
};

static void fstools_read_file(yajl_val, struct fstools_out *);
static void fstools_read_multiple(yajl_val, struct fstools_out *);
static void fstools_write_file(yajl_val, struct fstools_out *);
static void fstools_edit_file(yajl_val, struct fstools_out *);
static void fstools_create_directory(yajl_val, struct fstools_out *);
static void fstools_list_directory(yajl_val, struct fstools_out *);
static void fstools_directory_tree(yajl_val, struct fstools_out *);
static void fstools_move_file(yajl_val, struct fstools_out *);
static void fstools_search_files(yajl_val, struct fstools_out *);
static void fstools_get_file_info(yajl_val, struct fstools_out *);
static void fstools_list_allowed(yajl_val, struct fstools_out *);

#define FSTOOLS_STR "{\"type\":\"string\"}"
#define FSTOOLS_STRS "{\"type\":\"array\",\"items\":{\"type\":\"string\"}}"

/* clang-format off */
static const struct fstools_tool {
	const char		*name;
	const char		*description;
	struct fstools_arg	 args[3];
	fstools_fn		 fn;
} fstools_tools[] = {
	{ "read_file",
	  "Read the complete contents of a file from the file system. "
	  "Handles various text encodings and provides detailed error messages "
	  "if the file cannot be read. Use this tool when you need to examine "
	  "the contents of a single file. Only works within allowed directories.",
	  { { "path", FSTOOLS_STR, 1 } }, fstools_read_file },
	{ "read_multiple_files",
	  "Read the contents of multiple files simultaneously. This is more "
	  "efficient than reading files one by one when you need to analyze "
	  "or compare multiple files. Each file's content is returned with its "
	  "path as a reference. Failed reads for individual files won't stop "
	  "the entire operation. Only works within allowed directories.",
	  { { "paths", FSTOOLS_STRS, 1 } }, fstools_read_multiple },
	{ "write_file",
	  "Create a new file or completely overwrite an existing file with new "
	  "content. Use with caution as it will overwrite existing files "
	  "without warning. Handles text content with proper encoding. Only "
	  "works within allowed directories.",
	  { { "path", FSTOOLS_STR, 1 }, { "content", FSTOOLS_STR, 1 } },
	  fstools_write_file },
	{ "edit_file",
	  "Make line-based edits to a text file. Each edit replaces exact line "
	  "sequences with new content. Returns a git-style diff showing the "
	  "changes made. Only works within allowed directories.",
	  { { "path", FSTOOLS_STR, 1 },
	    { "edits", "{\"type\":\"array\",\"items\":{\"type\":\"object\","
	      "\"properties\":{\"oldText\":{\"type\":\"string\",\"description\":"
	      "\"Text to search for - must match exactly\"},\"newText\":{"
	      "\"type\":\"string\",\"description\":\"Text to replace with\"}},"
	      "\"required\":[\"oldText\",\"newText\"],"
	      "\"additionalProperties\":false}}", 1 },
	    { "dryRun", "{\"type\":\"boolean\",\"default\":false,"
	      "\"description\":\"Preview changes using git-style diff format\"}",
	      0 } },
	  fstools_edit_file },
	{ "create_directory",
	  "Create a new directory or ensure a directory exists. Can create "
	  "multiple nested directories in one operation. If the directory "
	  "already exists, this operation will succeed silently. Perfect for "
	  "setting up directory structures for projects or ensuring required "
	  "paths exist. Only works within allowed directories.",
	  { { "path", FSTOOLS_STR, 1 } }, fstools_create_directory },
	{ "list_directory",
	  "Get a detailed listing of all files and directories in a specified "
	  "path. Results clearly distinguish between files and directories "
	  "with [FILE] and [DIR] prefixes. This tool is essential for "
	  "understanding directory structure and finding specific files within "
	  "a directory. Only works within allowed directories.",
	  { { "path", FSTOOLS_STR, 1 } }, fstools_list_directory },
	{ "directory_tree",
	  "Get a recursive tree view of files and directories as a JSON "
	  "structure. Each entry includes 'name', 'type' (file/directory), and "
	  "'children' for directories. Files have no children array, while "
	  "directories always have a children array (which may be empty). The "
	  "output is formatted with 2-space indentation for readability. Only "
	  "works within allowed directories.",
	  { { "path", FSTOOLS_STR, 1 } }, fstools_directory_tree },
	{ "move_file",
	  "Move or rename files and directories. Can move files between "
	  "directories and rename them in a single operation. If the "
	  "destination exists, the operation will fail. Works across different "
	  "directories and can be used for simple renaming within the same "
	  "directory. Both source and destination must be within allowed "
	  "directories.",
	  { { "source", FSTOOLS_STR, 1 }, { "destination", FSTOOLS_STR, 1 } },
	  fstools_move_file },
	{ "search_files",
	  "Recursively search for files and directories matching a pattern. "
	  "Searches through all subdirectories from the starting path. The "
	  "search is case-insensitive and matches partial names. Returns full "
	  "paths to all matching items. Great for finding files when you don't "
	  "know their exact location. Only searches within allowed "
	  "directories.",
	  { { "path", FSTOOLS_STR, 1 }, { "pattern", FSTOOLS_STR, 1 },
	    { "excludePatterns", "{\"type\":\"array\",\"items\":{\"type\":"
	      "\"string\"},\"default\":[]}", 0 } },
	  fstools_search_files },
	{ "get_file_info",
	  "Retrieve detailed metadata about a file or directory. Returns "
	  "comprehensive information including size, creation time, last "
	  "modified time, permissions, and type. This tool is perfect for "
	  "understanding file characteristics without reading the actual "
	  "content. Only works within allowed directories.",
	  { { "path", FSTOOLS_STR, 1 } }, fstools_get_file_info },
	{ "list_allowed_directories",
	  "Returns the list of directories that this server is allowed to "
	  "access. Use this to understand which directories are available "
	  "before trying to access files.",
	  { { NULL, NULL, 0 } }, fstools_list_allowed },
};

/* libuv's names and messages for the errors a file operation meets. */
static const struct {
	int		 err;
	const char	*code;
	const char	*msg;
} fstools_errnos[] = {
	{ ENOENT,	"ENOENT",	"no such file or directory" },
	{ EISDIR,	"EISDIR",	"illegal operation on a directory" },
	{ ENOTDIR,	"ENOTDIR",	"not a directory" },
	{ EEXIST,	"EEXIST",	"file already exists" },
	{ EACCES,	"EACCES",	"permission denied" },
	{ EPERM,	"EPERM",	"operation not permitted" },
	{ ENOTEMPTY,	"ENOTEMPTY",	"directory not empty" },
	{ EXDEV,	"EXDEV",	"cross-device link not permitted" },
	{ ELOOP,	"ELOOP",	"too many symbolic links encountered" },
	{ ENAMETOOLONG,	"ENAMETOOLONG",	"name too long" },
	{ ENOSPC,	"ENOSPC",	"no space left on device" },
	{ EROFS,	"EROFS",	"read-only file system" },
	{ EINVAL,	"EINVAL",	"invalid argument" },
	{ EBUSY,	"EBUSY",	"resource busy or locked" },
	{ EMFILE,	"EMFILE",	"too many open files" },
	{ EFBIG,	"EFBIG",	"file too large" },
};
/* clang-format on */

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

/* Is name one of the tools? */
int
fstools_has(const char *name)
{
	size_t i;

	for (i = 0; i < nitems(fstools_tools); i++)
		if (strcmp(fstools_tools[i].name, name) == 0)
			return 1;
	return 0;
}

/* Emits the list_tools entries (spec 6.3). */
void
fstools_gen_list(yajl_gen g)
{
	const struct fstools_tool *t;
	const struct fstools_arg *a;
	size_t i, j;

	yajl_gen_map_open(g);
	for (i = 0; i < nitems(fstools_tools); i++) {
		t = &fstools_tools[i];
		json_gen_tool_begin(g, t->name, t->description);
		yajl_gen_map_open(g);
		for (j = 0; j < nitems(t->args) && t->args[j].name; j++) {
			a = &t->args[j];
			json_gen_str(g, a->name);
			json_gen_raw(g, a->schema, strlen(a->schema));
		}
		yajl_gen_map_close(g);
		json_gen_str(g, "required");
		yajl_gen_array_open(g);
		for (j = 0; j < nitems(t->args) && t->args[j].name; j++)
			if (t->args[j].required)
				json_gen_str(g, t->args[j].name);
		yajl_gen_array_close(g);
		json_gen_tool_end(g);
	}
	yajl_gen_map_close(g);
}

/* Sets the result to an error "Error: <msg>". */
static void fstools_error(struct fstools_out *o, const char *fmt, ...)
    __attribute__((__format__(printf, 2, 3)));
static void
fstools_error(struct fstools_out *o, const char *fmt, ...)
{
	va_list ap;

	evbuffer_drain(o->text, evbuffer_get_length(o->text));
	evbuffer_add_printf(o->text, "Error: ");
	va_start(ap, fmt);
	evbuffer_add_vprintf(o->text, fmt, ap);
	va_end(ap);
	o->error = 1;
}

/* Node's wording of a failed file operation. */
static char *
fstools_errno_text(int err, const char *syscall, const char *path)
{
	char *s;
	size_t i;

	for (i = 0; i < nitems(fstools_errnos); i++)
		if (fstools_errnos[i].err == err)
			break;
	if (i == nitems(fstools_errnos))
		xasprintf(&s, "%s, %s '%s'", strerror(err), syscall, path);
	else
		xasprintf(&s, "%s: %s, %s '%s'", fstools_errnos[i].code,
		    fstools_errnos[i].msg, syscall, path);
	return s;
}

/* Sets the result to a file operation's error. */
static void
fstools_errno(
    struct fstools_out *o, int err, const char *syscall, const char *path)
{
	char *s;

	if (err == EXDEV || err == ELOOP) {
		fstools_error(o,
		    "Access denied - symlink target outside "
		    "allowed directories");
		return;
	}
	s = fstools_errno_text(err, syscall, path);
	fstools_error(o, "%s", s);
	free(s);
}

/*
 * validatePath() of upstream: inside the workspace, and either existing
 * (through links that stay inside) or with an existing parent (unless
 * any_parent). 0, or -1 with the error set.
 */
static int
fstools_validate(
    const char *path, struct ws_path *p, int any_parent, struct fstools_out *o)
{
	const char *name;
	char *abs, *slash;
	int root, fd, err;

	if (ws_resolve(path, p) == -1) {
		xasprintf(&abs, "%s%s%s", path[0] == '/' ? "" : agent_workdir(),
		    path[0] == '/' ? "" : "/", path);
		fstools_error(o,
		    "Access denied - path outside allowed "
		    "directories: %s not in %s",
		    abs, agent_workdir());
		free(abs);
		return -1;
	}
	if ((root = ws_root()) == -1) {
		fstools_errno(o, errno, "open", agent_workdir());
		ws_path_free(p);
		return -1;
	}
	if ((fd = ws_open(root, p->rel, O_PATH, 0)) != -1) {
		close(fd);
		close(root);
		return 0;
	}
	err = errno;
	if (err == EXDEV || err == ELOOP) {
		close(root);
		fstools_error(o,
		    "Access denied - symlink target outside "
		    "allowed directories");
		ws_path_free(p);
		return -1;
	}
	if (any_parent) {
		close(root);
		return 0;
	}
	fd = ws_open_parent(root, p->rel, &name);
	err = errno;
	close(root);
	if (fd != -1) {
		close(fd);
		return 0;
	}
	if (err == EXDEV || err == ELOOP)
		fstools_error(o,
		    "Access denied - parent directory outside "
		    "allowed directories");
	else {
		abs = xstrdup(p->abs);
		if ((slash = strrchr(abs, '/')) != NULL && slash != abs)
			*slash = '\0';
		fstools_error(o, "Parent directory does not exist: %s", abs);
		free(abs);
	}
	ws_path_free(p);
	return -1;
}

/* A string argument, or NULL after setting an argument error. */
static const char *
fstools_str_arg(
    yajl_val args, const char *tool, const char *name, struct fstools_out *o)
{
	const char *s = json_get_str(args, name);

	if (s == NULL)
		fstools_error(o,
		    "Invalid arguments for %s: '%s' is required "
		    "and must be a string",
		    tool, name);
	return s;
}

/* Reads a whole file beneath the workspace. 0, or -1 with errno. */
static int
fstools_slurp(const struct ws_path *p, char **buf, size_t *len)
{
	struct stat st;
	size_t cap, n = 0;
	ssize_t r;
	char *b;
	int root, fd, saved;

	if ((root = ws_root()) == -1)
		return -1;
	fd = ws_open(root, p->rel, O_RDONLY | O_NONBLOCK, 0);
	saved = errno;
	close(root);
	if (fd == -1) {
		errno = saved;
		return -1;
	}
	if (fstat(fd, &st) == -1 || S_ISDIR(st.st_mode) ||
	    !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EISDIR;
		return -1;
	}
	if (st.st_size > FSTOOLS_MAX_READ) {
		close(fd);
		errno = EFBIG;
		return -1;
	}
	cap = (size_t)st.st_size + 1;
	b = xmalloc(cap);
	for (;;) {
		if (n + 1 >= cap) {
			if (cap > FSTOOLS_MAX_READ) {
				free(b);
				close(fd);
				errno = EFBIG;
				return -1;
			}
			cap *= 2;
			b = xreallocarray(b, 1, cap);
		}
		r = read(fd, b + n, cap - n - 1);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			saved = errno;
			free(b);
			close(fd);
			errno = saved;
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

/* Writes a whole file beneath the workspace. 0, or -1 with errno. */
static int
fstools_spill(const struct ws_path *p, const char *buf, size_t len)
{
	ssize_t w;
	int root, fd, saved;

	if ((root = ws_root()) == -1)
		return -1;
	fd = ws_open(root, p->rel, O_WRONLY | O_CREAT | O_TRUNC, 0666);
	saved = errno;
	close(root);
	if (fd == -1) {
		errno = saved;
		return -1;
	}
	while (len > 0) {
		if ((w = write(fd, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		buf += w;
		len -= (size_t)w;
	}
	if (close(fd) == -1)
		return -1;
	return 0;
}

/* read_file {path}. */
static void
fstools_read_file(yajl_val args, struct fstools_out *o)
{
	const char *path = fstools_str_arg(args, "read_file", "path", o);
	struct ws_path p;
	char *buf;
	size_t len;

	if (path == NULL || fstools_validate(path, &p, 0, o) == -1)
		return;
	if (fstools_slurp(&p, &buf, &len) == -1) {
		if (errno == EISDIR)
			fstools_error(o,
			    "EISDIR: illegal operation on a "
			    "directory, read");
		else
			fstools_errno(o, errno, "open", p.abs);
	} else {
		evbuffer_add(o->text, buf, len);
		free(buf);
	}
	ws_path_free(&p);
}

/* read_multiple_files {paths}. */
static void
fstools_read_multiple(yajl_val args, struct fstools_out *o)
{
	yajl_val paths = json_get(args, "paths");
	struct fstools_out one;
	const char *path;
	size_t i, len;
	char *buf;

	if (paths == NULL || !YAJL_IS_ARRAY(paths)) {
		fstools_error(o,
		    "Invalid arguments for read_multiple_files: "
		    "'paths' must be an array of strings");
		return;
	}
	for (i = 0; i < paths->u.array.len; i++)
		if (!YAJL_IS_STRING(paths->u.array.values[i])) {
			fstools_error(o,
			    "Invalid arguments for "
			    "read_multiple_files: 'paths' must be "
			    "an array of strings");
			return;
		}
	for (i = 0; i < paths->u.array.len; i++) {
		path = YAJL_GET_STRING(paths->u.array.values[i]);
		if (i > 0)
			evbuffer_add_printf(o->text, "\n---\n");
		{
			struct ws_path p;

			one.text = evbuffer_new();
			one.error = 0;
			if (fstools_validate(path, &p, 0, &one) == 0) {
				if (fstools_slurp(&p, &buf, &len) == -1) {
					if (errno == EISDIR)
						fstools_error(&one,
						    "EISDIR: illegal operation "
						    "on a directory, read");
					else
						fstools_errno(
						    &one, errno, "open", p.abs);
				} else {
					evbuffer_add_printf(
					    o->text, "%s:\n", path);
					evbuffer_add(o->text, buf, len);
					evbuffer_add(o->text, "\n", 1);
					free(buf);
				}
				ws_path_free(&p);
			}
			if (one.error) {
				/* "Error: msg" -> "path: Error - msg" */
				evbuffer_drain(one.text, 7);
				evbuffer_add_printf(
				    o->text, "%s: Error - ", path);
				evbuffer_add_buffer(o->text, one.text);
			}
			evbuffer_free(one.text);
		}
	}
}

/* write_file {path, content}. */
static void
fstools_write_file(yajl_val args, struct fstools_out *o)
{
	const char *path = fstools_str_arg(args, "write_file", "path", o);
	const char *content;
	struct ws_path p;

	if (path == NULL ||
	    (content = fstools_str_arg(args, "write_file", "content", o)) ==
		NULL)
		return;
	if (fstools_validate(path, &p, 0, o) == -1)
		return;
	if (fstools_spill(&p, content, strlen(content)) == -1)
		fstools_errno(o, errno, "open", p.abs);
	else
		evbuffer_add_printf(o->text, "Successfully wrote to %s", path);
	ws_path_free(&p);
}

/* Replaces every "\r\n" with "\n" in place; returns the new length. */
static size_t
fstools_lf(char *s, size_t len)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
			continue;
		s[o++] = s[i];
	}
	s[o] = '\0';
	return o;
}

/* Splits s on '\n' (JavaScript's split: n+1 pieces for n newlines). */
static char **
fstools_split(const char *s, size_t *n)
{
	size_t count = 1, i = 0;
	const char *p, *nl;
	char **v;

	for (p = s; (p = strchr(p, '\n')) != NULL; p++)
		count++;
	v = xcalloc(count + 1, sizeof *v);
	for (p = s;; p = nl + 1) {
		nl = strchr(p, '\n');
		v[i++] =
		    nl != NULL ? xstrndup(p, (size_t)(nl - p)) : xstrdup(p);
		if (nl == NULL)
			break;
	}
	*n = count;
	return v;
}

/* JavaScript's trim() over ASCII whitespace: a copy. */
static char *
fstools_trim(const char *s)
{
	const char *e = s + strlen(s);

	while (*s != '\0' && isspace((unsigned char)*s))
		s++;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	return xstrndup(s, (size_t)(e - s));
}

/* The leading whitespace of s (its length). */
static size_t
fstools_indent(const char *s)
{
	size_t n = 0;

	while (s[n] != '\0' && isspace((unsigned char)s[n]))
		n++;
	return n;
}

/* Frees an array from fstools_split(). */
static void
fstools_strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * Applies one edit to *content (upstream's applyFileEdits): the first
 * exact occurrence, else a run of lines equal once trimmed, re-indented
 * like the original. 0, or -1 if oldText is not found.
 */
static int
fstools_apply_edit(char **content, const char *oldt, const char *newt)
{
	char *c = *content, *hit, *out, **cl, **ol, **nl, *a, *b;
	size_t cn, on, nn, i, j, clen = strlen(c), olen = strlen(oldt);
	size_t base_indent, oi, ni;
	struct evbuffer *eb;
	int match;

	if ((hit = strstr(c, oldt)) != NULL) {
		size_t pre = (size_t)(hit - c), nlen = strlen(newt);

		out = xmalloc(clen - olen + nlen + 1);
		memcpy(out, c, pre);
		memcpy(out + pre, newt, nlen);
		strcpy(out + pre + nlen, hit + olen);
		free(c);
		*content = out;
		return 0;
	}
	ol = fstools_split(oldt, &on);
	cl = fstools_split(c, &cn);
	for (i = 0; on <= cn && i <= cn - on; i++) {
		match = 1;
		for (j = 0; j < on && match; j++) {
			a = fstools_trim(ol[j]);
			b = fstools_trim(cl[i + j]);
			match = strcmp(a, b) == 0;
			free(a);
			free(b);
		}
		if (!match)
			continue;
		base_indent = fstools_indent(cl[i]);
		nl = fstools_split(newt, &nn);
		/* splice(i, on, ...new lines), then join("\n"). */
		eb = evbuffer_new();
		for (j = 0; j < i; j++)
			evbuffer_add_printf(eb, "%s\n", cl[j]);
		for (j = 0; j < nn; j++) {
			const char *line = nl[j];

			if (j > 0)
				evbuffer_add(eb, "\n", 1);
			if (j == 0) {
				evbuffer_add(eb, cl[i], base_indent);
				evbuffer_add_printf(
				    eb, "%s", line + fstools_indent(line));
				continue;
			}
			oi = j < on ? fstools_indent(ol[j]) : 0;
			ni = fstools_indent(line);
			if (oi > 0 && ni > 0) {
				evbuffer_add(eb, cl[i], base_indent);
				for (size_t k = oi; k < ni; k++)
					evbuffer_add(eb, " ", 1);
				evbuffer_add_printf(eb, "%s", line + ni);
			} else
				evbuffer_add_printf(eb, "%s", line);
		}
		for (j = i + on; j < cn; j++)
			evbuffer_add_printf(eb, "\n%s", cl[j]);
		out = xmalloc(evbuffer_get_length(eb) + 1);
		out[evbuffer_remove(eb, out, evbuffer_get_length(eb))] = '\0';
		evbuffer_free(eb);
		fstools_strv_free(nl, nn);
		fstools_strv_free(ol, on);
		fstools_strv_free(cl, cn);
		free(c);
		*content = out;
		return 0;
	}
	fstools_strv_free(ol, on);
	fstools_strv_free(cl, cn);
	return -1;
}

/* edit_file {path, edits, dryRun}. */
static void
fstools_edit_file(yajl_val args, struct fstools_out *o)
{
	const char *path = fstools_str_arg(args, "edit_file", "path", o);
	yajl_val edits = json_get(args, "edits"), e, dv;
	char *orig, *content, *tmp, *diff;
	const char *oldt, *newt;
	size_t len, i, ticks;
	struct ws_path p;
	int dry = 0;

	if (path == NULL)
		return;
	if (edits == NULL || !YAJL_IS_ARRAY(edits)) {
		fstools_error(o,
		    "Invalid arguments for edit_file: 'edits' "
		    "must be an array of {oldText, newText}");
		return;
	}
	for (i = 0; i < edits->u.array.len; i++) {
		e = edits->u.array.values[i];
		if (json_get_str(e, "oldText") == NULL ||
		    json_get_str(e, "newText") == NULL ||
		    e->u.object.len != 2) {
			fstools_error(o,
			    "Invalid arguments for edit_file: "
			    "each edit must be {oldText: string, "
			    "newText: string}");
			return;
		}
	}
	if ((dv = json_get(args, "dryRun")) != NULL && !YAJL_IS_NULL(dv)) {
		if (!YAJL_IS_TRUE(dv) && !YAJL_IS_FALSE(dv)) {
			fstools_error(o,
			    "Invalid arguments for edit_file: "
			    "'dryRun' must be a boolean");
			return;
		}
		dry = YAJL_IS_TRUE(dv);
	}
	if (fstools_validate(path, &p, 0, o) == -1)
		return;
	if (fstools_slurp(&p, &orig, &len) == -1) {
		fstools_errno(o, errno, "open", p.abs);
		ws_path_free(&p);
		return;
	}
	len = fstools_lf(orig, len);
	content = xstrdup(orig);
	for (i = 0; i < edits->u.array.len; i++) {
		e = edits->u.array.values[i];
		tmp = xstrdup(json_get_str(e, "oldText"));
		fstools_lf(tmp, strlen(tmp));
		oldt = tmp;
		newt = json_get_str(e, "newText");
		{
			char *n2 = xstrdup(newt);

			fstools_lf(n2, strlen(n2));
			if (fstools_apply_edit(&content, oldt, n2) == -1) {
				fstools_error(o,
				    "Could not find exact match "
				    "for edit:\n%s",
				    json_get_str(e, "oldText"));
				free(n2);
				free(tmp);
				goto out;
			}
			free(n2);
		}
		free(tmp);
	}
	diff = udiff_patch(p.abs, orig, len, content, strlen(content));
	for (ticks = 3;; ticks++) {
		char *fence = xmalloc(ticks + 1);

		memset(fence, '`', ticks);
		fence[ticks] = '\0';
		if (strstr(diff, fence) == NULL) {
			evbuffer_add_printf(
			    o->text, "%sdiff\n%s%s\n\n", fence, diff, fence);
			free(fence);
			break;
		}
		free(fence);
	}
	free(diff);
	if (!dry && fstools_spill(&p, content, strlen(content)) == -1)
		fstools_errno(o, errno, "open", p.abs);
out:
	free(orig);
	free(content);
	ws_path_free(&p);
}

/* create_directory {path}: mkdir -p. */
static void
fstools_create_directory(yajl_val args, struct fstools_out *o)
{
	const char *path = fstools_str_arg(args, "create_directory", "path", o);
	struct ws_path p;
	int root;

	if (path == NULL || fstools_validate(path, &p, 1, o) == -1)
		return;
	if ((root = ws_root()) == -1 || ws_mkdirs(root, p.rel) == -1)
		fstools_errno(o, errno, "mkdir", p.abs);
	else
		evbuffer_add_printf(
		    o->text, "Successfully created directory %s", path);
	if (root != -1)
		close(root);
	ws_path_free(&p);
}

/* A directory entry: its name and whether it is a directory (no links). */
struct fstools_dirent {
	char *name;
	int dir;
};

/* qsort order of entries: by name, as libuv's scandir. */
static int
fstools_dirent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fstools_dirent *)a)->name,
	    ((const struct fstools_dirent *)b)->name);
}

/* Reads the directory fd (left open), sorted. -1 with errno. */
static int
fstools_readdir(int dirfd_, struct fstools_dirent **out, size_t *n)
{
	struct fstools_dirent *v = NULL;
	size_t count = 0;
	struct dirent *de;
	struct stat st;
	int fd;
	DIR *d;

	if ((fd = openat(dirfd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		v = xreallocarray(v, count + 1, sizeof *v);
		v[count].name = xstrdup(de->d_name);
		v[count].dir = fstatat(dirfd(d), de->d_name, &st,
				   AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode);
		count++;
	}
	closedir(d);
	if (count > 0)
		qsort(v, count, sizeof *v, fstools_dirent_cmp);
	*out = v;
	*n = count;
	return 0;
}

/* Frees what fstools_readdir() returned. */
static void
fstools_dirents_free(struct fstools_dirent *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* Opens a directory of the workspace for reading. -1 with errno. */
static int
fstools_opendir(const struct ws_path *p)
{
	int root, fd, saved;

	if ((root = ws_root()) == -1)
		return -1;
	fd = ws_open(root, p->rel, O_RDONLY | O_DIRECTORY, 0);
	saved = errno;
	close(root);
	errno = saved;
	return fd;
}

/* list_directory {path}: "[DIR] name" / "[FILE] name" lines. */
static void
fstools_list_directory(yajl_val args, struct fstools_out *o)
{
	const char *path = fstools_str_arg(args, "list_directory", "path", o);
	struct fstools_dirent *v;
	struct ws_path p;
	size_t n, i;
	int fd;

	if (path == NULL || fstools_validate(path, &p, 0, o) == -1)
		return;
	if ((fd = fstools_opendir(&p)) == -1 ||
	    fstools_readdir(fd, &v, &n) == -1) {
		fstools_errno(o, errno, "scandir", p.abs);
		if (fd != -1)
			close(fd);
		ws_path_free(&p);
		return;
	}
	close(fd);
	for (i = 0; i < n; i++)
		evbuffer_add_printf(o->text, "%s%s %s", i > 0 ? "\n" : "",
		    v[i].dir ? "[DIR]" : "[FILE]", v[i].name);
	fstools_dirents_free(v, n);
	ws_path_free(&p);
}

/* Writes a JSON string (escaped) into b. */
static void
fstools_json_str(struct evbuffer *b, const char *s)
{
	yajl_gen g = json_gen_new();
	const unsigned char *buf;
	size_t len;

	json_gen_str(g, s);
	yajl_gen_get_buf(g, &buf, &len);
	evbuffer_add(b, buf, len);
	yajl_gen_free(g);
}

/* Adds 2 * level spaces. */
static void
fstools_pad(struct evbuffer *b, int level)
{
	int i;

	for (i = 0; i < level; i++)
		evbuffer_add(b, "  ", 2);
}

/*
 * Writes the tree of directory fd (left open) as JSON.stringify(tree,
 * null, 2) would, at indentation level; counts entries against the cap.
 * -1 with errno.
 */
static int
fstools_tree(struct evbuffer *b, int fd, int level, size_t *count)
{
	struct fstools_dirent *v;
	size_t n, i;
	int sub;

	if (fstools_readdir(fd, &v, &n) == -1)
		return -1;
	if (n == 0) {
		evbuffer_add(b, "[]", 2);
		fstools_dirents_free(v, n);
		return 0;
	}
	evbuffer_add(b, "[\n", 2);
	for (i = 0; i < n; i++) {
		if (++*count > FSTOOLS_MAX_ENTRIES) {
			fstools_dirents_free(v, n);
			errno = EFBIG;
			return -1;
		}
		fstools_pad(b, level + 1);
		evbuffer_add(b, "{\n", 2);
		fstools_pad(b, level + 2);
		evbuffer_add(b, "\"name\": ", 8);
		fstools_json_str(b, v[i].name);
		evbuffer_add(b, ",\n", 2);
		fstools_pad(b, level + 2);
		evbuffer_add_printf(
		    b, "\"type\": \"%s\"", v[i].dir ? "directory" : "file");
		if (v[i].dir) {
			evbuffer_add(b, ",\n", 2);
			fstools_pad(b, level + 2);
			evbuffer_add(b, "\"children\": ", 12);
			sub = openat(fd, v[i].name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub == -1 || level > 2 * 256 ||
			    fstools_tree(b, sub, level + 2, count) == -1) {
				if (sub != -1)
					close(sub);
				if (errno == EFBIG) {
					fstools_dirents_free(v, n);
					return -1;
				}
				evbuffer_add(b, "[]", 2);
			} else
				close(sub);
		}
		evbuffer_add(b, "\n", 1);
		fstools_pad(b, level + 1);
		evbuffer_add(b, i + 1 < n ? "},\n" : "}\n", i + 1 < n ? 3 : 2);
	}
	fstools_pad(b, level);
	evbuffer_add(b, "]", 1);
	fstools_dirents_free(v, n);
	return 0;
}

/* directory_tree {path}. */
static void
fstools_directory_tree(yajl_val args, struct fstools_out *o)
{
	const char *path = fstools_str_arg(args, "directory_tree", "path", o);
	struct ws_path p;
	size_t count = 0;
	int fd;

	if (path == NULL || fstools_validate(path, &p, 0, o) == -1)
		return;
	if ((fd = fstools_opendir(&p)) == -1 ||
	    fstools_tree(o->text, fd, 0, &count) == -1) {
		if (errno == EFBIG)
			fstools_error(
			    o, "more than %d entries", FSTOOLS_MAX_ENTRIES);
		else
			fstools_errno(o, errno, "scandir", p.abs);
	}
	if (fd != -1)
		close(fd);
	ws_path_free(&p);
}

/* move_file {source, destination}: fails if the destination exists. */
static void
fstools_move_file(yajl_val args, struct fstools_out *o)
{
	const char *src = fstools_str_arg(args, "move_file", "source", o);
	const char *dst, *sname, *dname;
	struct ws_path s, d;
	struct stat st;
	int root = -1, sdir = -1, ddir = -1;

	if (src == NULL ||
	    (dst = fstools_str_arg(args, "move_file", "destination", o)) ==
		NULL)
		return;
	if (fstools_validate(src, &s, 0, o) == -1)
		return;
	if (fstools_validate(dst, &d, 0, o) == -1) {
		ws_path_free(&s);
		return;
	}
	if ((root = ws_root()) == -1 ||
	    (sdir = ws_open_parent(root, s.rel, &sname)) == -1 ||
	    (ddir = ws_open_parent(root, d.rel, &dname)) == -1) {
		fstools_errno(o, errno, "rename", s.abs);
		goto out;
	}
	if (strcmp(s.rel, ".") == 0 || strcmp(d.rel, ".") == 0) {
		fstools_errno(o, EBUSY, "rename", s.abs);
		goto out;
	}
	if (fstatat(ddir, dname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		fstools_error(o, "Destination already exists: %s", d.abs);
		goto out;
	}
	if (renameat(sdir, sname, ddir, dname) == -1) {
		char *msg = fstools_errno_text(errno, "rename", s.abs);

		fstools_error(o, "%s -> '%s'", msg, d.abs);
		free(msg);
		goto out;
	}
	evbuffer_add_printf(o->text, "Successfully moved %s to %s", src, dst);
out:
	if (root != -1)
		close(root);
	if (sdir != -1)
		close(sdir);
	if (ddir != -1)
		close(ddir);
	ws_path_free(&s);
	ws_path_free(&d);
}

/* Matches path segments against pattern segments ("**": any number). */
static int
fstools_glob_segs(char **pat, size_t np, char **seg, size_t ns)
{
	size_t i;

	if (np == 0)
		return ns == 0;
	if (strcmp(pat[0], "**") == 0) {
		for (i = 0; i <= ns; i++)
			if (fstools_glob_segs(pat + 1, np - 1, seg + i, ns - i))
				return 1;
		return 0;
	}
	if (ns == 0)
		return 0;
	if (fnmatch(pat[0], seg[0], 0) != 0)
		return 0;
	return fstools_glob_segs(pat + 1, np - 1, seg + 1, ns - 1);
}

/* Splits on '/' into a NULL-terminated vector (empty parts dropped). */
static char **
fstools_segs(const char *s, size_t *n)
{
	char *copy = xstrdup(s), *tok, *save = NULL, **v = NULL;
	size_t count = 0;

	for (tok = strtok_r(copy, "/", &save); tok != NULL;
	     tok = strtok_r(NULL, "/", &save)) {
		v = xreallocarray(v, count + 2, sizeof *v);
		v[count++] = xstrdup(tok);
	}
	free(copy);
	if (v == NULL)
		v = xcalloc(1, sizeof *v);
	v[count] = NULL;
	*n = count;
	return v;
}

/* minimatch(rel, pattern, {dot: true}) for the patterns upstream uses. */
static int
fstools_glob(const char *pattern, const char *rel)
{
	char **pat, **seg, *full = NULL;
	size_t np, ns;
	int r;

	if (strchr(pattern, '*') == NULL)
		xasprintf(&full, "**/%s/**", pattern);
	pat = fstools_segs(full != NULL ? full : pattern, &np);
	seg = fstools_segs(rel, &ns);
	r = fstools_glob_segs(pat, np, seg, ns);
	fstools_strv_free(pat, np);
	fstools_strv_free(seg, ns);
	free(full);
	return r;
}

/* State of a search. */
struct fstools_search {
	const char *pattern;
	yajl_val excludes;
	size_t found;
	struct evbuffer *out;
};

/* Searches directory fd (shown as abs, rel to the start) recursively. */
static void
fstools_search_dir(struct fstools_search *s, int fd, const char *abs,
    const char *rel, int depth)
{
	struct fstools_dirent *v;
	char *cabs, *crel;
	size_t n, i, k;
	int excluded, sub;

	if (depth > 256 || fstools_readdir(fd, &v, &n) == -1)
		return;
	for (i = 0; i < n && s->found < FSTOOLS_MAX_ENTRIES; i++) {
		xasprintf(&cabs, "%s/%s", abs, v[i].name);
		xasprintf(&crel, "%s%s%s", rel, *rel ? "/" : "", v[i].name);
		excluded = 0;
		for (k = 0; s->excludes != NULL &&
		     k < s->excludes->u.array.len && !excluded;
		     k++)
			excluded = fstools_glob(
			    YAJL_GET_STRING(s->excludes->u.array.values[k]),
			    crel);
		if (!excluded) {
			if (strcasestr(v[i].name, s->pattern) != NULL) {
				evbuffer_add_printf(s->out, "%s%s",
				    s->found > 0 ? "\n" : "", cabs);
				s->found++;
			}
			if (v[i].dir &&
			    (sub = openat(fd, v[i].name,
				 O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
				     O_CLOEXEC)) != -1) {
				fstools_search_dir(
				    s, sub, cabs, crel, depth + 1);
				close(sub);
			}
		}
		free(cabs);
		free(crel);
	}
	fstools_dirents_free(v, n);
}

/* search_files {path, pattern, excludePatterns}. */
static void
fstools_search_files(yajl_val args, struct fstools_out *o)
{
	const char *path = fstools_str_arg(args, "search_files", "path", o);
	struct fstools_search s;
	struct ws_path p;
	yajl_val ex;
	size_t i;
	int fd;

	if (path == NULL ||
	    (s.pattern = fstools_str_arg(args, "search_files", "pattern", o)) ==
		NULL)
		return;
	ex = json_get(args, "excludePatterns");
	if (ex != NULL && YAJL_IS_NULL(ex))
		ex = NULL;
	if (ex != NULL && !YAJL_IS_ARRAY(ex))
		goto bad;
	for (i = 0; ex != NULL && i < ex->u.array.len; i++)
		if (!YAJL_IS_STRING(ex->u.array.values[i]))
			goto bad;
	if (fstools_validate(path, &p, 0, o) == -1)
		return;
	s.excludes = ex;
	s.found = 0;
	s.out = o->text;
	if ((fd = fstools_opendir(&p)) == -1) {
		fstools_errno(o, errno, "scandir", p.abs);
		ws_path_free(&p);
		return;
	}
	fstools_search_dir(&s, fd, strcmp(p.abs, "/") == 0 ? "" : p.abs, "", 0);
	close(fd);
	if (s.found == 0)
		evbuffer_add_printf(o->text, "No matches found");
	ws_path_free(&p);
	return;
bad:
	fstools_error(o,
	    "Invalid arguments for search_files: "
	    "'excludePatterns' must be an array of strings");
}

/* A time as JavaScript's Date.prototype.toString() shows it in UTC. */
static void
fstools_jsdate(struct evbuffer *b, const char *key, time_t t)
{
	char buf[96];
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sizeof buf, "%a %b %d %Y %H:%M:%S", &tm);
	evbuffer_add_printf(
	    b, "%s: %s GMT+0000 (Coordinated Universal Time)\n", key, buf);
}

/* get_file_info {path}: key: value lines (links followed, like stat). */
static void
fstools_get_file_info(yajl_val args, struct fstools_out *o)
{
	const char *path = fstools_str_arg(args, "get_file_info", "path", o);
	struct statx stx;
	struct ws_path p;
	time_t created;
	int root, fd;

	if (path == NULL || fstools_validate(path, &p, 0, o) == -1)
		return;
	fd = -1;
	if ((root = ws_root()) == -1 ||
	    (fd = ws_open(root, p.rel, O_PATH, 0)) == -1 ||
	    statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME,
		&stx) == -1) {
		fstools_errno(o, errno, "stat", p.abs);
		goto out;
	}
	created = (stx.stx_mask & STATX_BTIME) ? stx.stx_btime.tv_sec
					       : stx.stx_ctime.tv_sec;
	evbuffer_add_printf(
	    o->text, "size: %llu\n", (unsigned long long)stx.stx_size);
	fstools_jsdate(o->text, "created", created);
	fstools_jsdate(o->text, "modified", stx.stx_mtime.tv_sec);
	fstools_jsdate(o->text, "accessed", stx.stx_atime.tv_sec);
	evbuffer_add_printf(o->text,
	    "isDirectory: %s\nisFile: %s\npermissions: %03o",
	    S_ISDIR(stx.stx_mode) ? "true" : "false",
	    S_ISREG(stx.stx_mode) ? "true" : "false",
	    (unsigned)(stx.stx_mode & 0777));
out:
	if (fd != -1)
		close(fd);
	if (root != -1)
		close(root);
	ws_path_free(&p);
}

/* list_allowed_directories {}. */
static void
fstools_list_allowed(yajl_val args, struct fstools_out *o)
{
	evbuffer_add_printf(
	    o->text, "Allowed directories:\n%s", agent_workdir());
}

/* Runs a tool. */
char *
fstools_call(const char *name, yajl_val args, size_t *len)
{
	struct fstools_out o;
	size_t i, n;
	yajl_gen g;
	char *json;

	o.text = evbuffer_new();
	o.error = 0;
	for (i = 0; i < nitems(fstools_tools); i++)
		if (strcmp(fstools_tools[i].name, name) == 0)
			break;
	if (i == nitems(fstools_tools))
		fstools_error(&o, "Unknown tool: %s", name);
	else if (args != NULL && !YAJL_IS_OBJECT(args))
		fstools_error(&o,
		    "Invalid arguments for %s: expected an "
		    "object",
		    name);
	else
		fstools_tools[i].fn(args, &o);
	n = evbuffer_get_length(o.text);
	g = result_open();
	result_text(
	    g, n > 0 ? (const char *)evbuffer_pullup(o.text, -1) : "", n, NULL);
	json = result_close(g, o.error, len);
	evbuffer_free(o.text);
	return json;
}
