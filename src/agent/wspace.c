/*
 * wspace: the workspace routes of spec 6.3 and the path rules of every
 * file operation of the agent (see wspace.h). Paths are normalised
 * lexically first (an absolute path must lie under the workspace, ".."
 * cannot climb out), then resolved beneath the workspace directory by the
 * kernel (openat2 RESOLVE_BENEATH), so a symbolic link cannot lead out
 * either. Owns the uploads in progress (their temporary files).
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/openat2.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "ahttp.h"
#include "json.h"
#include "log.h"
#include "multipart.h"
#include "wspace.h"
#include "xmalloc.h"

/* Most entries one list answers with. */
#define WS_MAX_LIST 100000
/* Deepest directory nesting walked (list, remove). */
#define WS_MAX_DEPTH 256
/* Longest "paths" field of a batch upload. */
#define WS_MAX_PATH_FIELD 4096

/* One file of an upload: a temporary file renamed into place at the end. */
struct ws_file {
	int dirfd;    /* where tmp lives */
	char *tmp;    /* temporary name in dirfd, NULL once renamed */
	char *target; /* the client's path (batch without paths: filename) */
};

enum ws_upload_kind { WS_PUT, WS_BATCH };

struct ws_upload {
	TAILQ_ENTRY(ws_upload) entry;
	enum ws_upload_kind kind;
	struct ahttp_req *req;
	int fd; /* file being written, -1 if none */
	struct ws_file *files;
	size_t nfiles;
	char **paths;
	size_t npaths;
	/* batch */
	struct multipart *mp;
	enum { WS_PART_SKIP, WS_PART_PATH, WS_PART_FILE } part;
	char *field; /* the "paths" value being read */
	size_t field_len;
	int err; /* errno of a failed write */
	/* put */
	struct ws_path path;
};

static struct {
	char *workdir;
	size_t wlen;
	int walk; /* no openat2: component walk */
	unsigned long tmp_seq;
	TAILQ_HEAD(, ws_upload) uploads;
} ws;

/* Sets the workspace directory, normalised without a trailing slash. */
void
ws_init(const char *workdir, int force_walk)
{
	size_t n;

	ws.workdir = xstrdup(workdir);
	n = strlen(ws.workdir);
	while (n > 1 && ws.workdir[n - 1] == '/')
		ws.workdir[--n] = '\0';
	ws.wlen = n;
	ws.walk = force_walk;
	TAILQ_INIT(&ws.uploads);
}

/*
 * Normalises an absolute path lexically: no empty or "." components,
 * ".." removes the previous one (and stops at the root).
 */
static char *
ws_normalise(const char *path)
{
	char *out = xmalloc(strlen(path) + 2), *o = out;
	const char *p = path, *end;
	size_t n;

	*o = '\0';
	while (*p != '\0') {
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		end = strchr(p, '/');
		n = end != NULL ? (size_t)(end - p) : strlen(p);
		if (n == 1 && p[0] == '.')
			;
		else if (n == 2 && p[0] == '.' && p[1] == '.') {
			char *slash = strrchr(out, '/');

			if (slash != NULL)
				*slash = '\0';
			o = out + strlen(out);
		} else {
			*o++ = '/';
			memcpy(o, p, n);
			o += n;
			*o = '\0';
		}
		p += n;
	}
	if (out[0] == '\0')
		strcpy(out, "/");
	return out;
}

/* Resolves a client path; see wspace.h. */
int
ws_resolve(const char *path, struct ws_path *out)
{
	char *joined, *norm;

	memset(out, 0, sizeof *out);
	if (path[0] == '/')
		norm = ws_normalise(path);
	else {
		xasprintf(&joined, "%s/%s", ws.workdir, path);
		norm = ws_normalise(joined);
		free(joined);
	}
	if (strcmp(norm, ws.workdir) == 0) {
		out->abs = norm;
		out->rel = xstrdup(".");
		return 0;
	}
	if (strcmp(ws.workdir, "/") == 0) {
		out->abs = norm;
		out->rel = xstrdup(norm + 1);
		return 0;
	}
	if (strncmp(norm, ws.workdir, ws.wlen) != 0 || norm[ws.wlen] != '/') {
		free(norm);
		return -1;
	}
	out->abs = norm;
	out->rel = xstrdup(norm + ws.wlen + 1);
	return 0;
}

/* Frees a resolved path. */
void
ws_path_free(struct ws_path *p)
{
	free(p->abs);
	free(p->rel);
	p->abs = p->rel = NULL;
}

/* Opens the workspace directory. */
int
ws_root(void)
{
	return open(ws.workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* Is name in dirfd a symbolic link? (errno is kept) */
static int
ws_is_link(int dirfd, const char *name)
{
	struct stat st;
	int saved = errno, r;

	r = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode);
	errno = saved;
	return r;
}

/*
 * The fallback without openat2: walks rel one component at a time with
 * O_NOFOLLOW, so any symbolic link on the way is refused (ELOOP).
 */
static int
ws_open_walk(int root, const char *rel, int flags, mode_t mode)
{
	char *copy = xstrdup(rel), *comp, *next;
	int cur, fd, saved;

	if ((cur = openat(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1)
		goto fail;
	for (comp = copy; comp != NULL; comp = next) {
		if ((next = strchr(comp, '/')) != NULL)
			*next++ = '\0';
		if (*comp == '\0' || strcmp(comp, ".") == 0) {
			if (next == NULL) {
				fd = openat(cur, ".", flags | O_CLOEXEC, mode);
				close(cur);
				free(copy);
				return fd;
			}
			continue;
		}
		if (strcmp(comp, "..") == 0) {
			close(cur);
			errno = EXDEV;
			goto fail;
		}
		if (next == NULL) {
			fd = openat(
			    cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
			if (fd == -1 && ws_is_link(cur, comp))
				errno = ELOOP;
			/* O_PATH|O_NOFOLLOW opens a link itself: refuse it. */
			if (fd != -1 && (flags & O_PATH)) {
				struct stat st;

				if (fstat(fd, &st) == 0 &&
				    S_ISLNK(st.st_mode)) {
					close(fd);
					fd = -1;
					errno = ELOOP;
				}
			}
			saved = errno;
			close(cur);
			free(copy);
			errno = saved;
			return fd;
		}
		fd = openat(
		    cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1) {
			saved = ws_is_link(cur, comp) ? ELOOP : errno;
			close(cur);
			errno = saved;
			goto fail;
		}
		close(cur);
		cur = fd;
	}
	close(cur);
	errno = ENOENT;
fail:
	saved = errno;
	free(copy);
	errno = saved;
	return -1;
}

/* Opens rel beneath root; see wspace.h. */
int
ws_open(int root, const char *rel, int flags, mode_t mode)
{
	struct open_how how;
	long fd;

	if (!ws.walk) {
		memset(&how, 0, sizeof how);
		how.flags = (uint64_t)(flags | O_CLOEXEC);
		if (flags & (O_CREAT | O_TMPFILE))
			how.mode = mode;
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
		fd = syscall(SYS_openat2, root, rel, &how, sizeof how);
		if (fd != -1 || errno != ENOSYS)
			return (int)fd;
		log_info("wspace: no openat2 on this kernel: symbolic links "
			 "in workspace paths are refused");
		ws.walk = 1;
	}
	return ws_open_walk(root, rel, flags, mode);
}

/* Opens the directory holding rel's last component. */
int
ws_open_parent(int root, const char *rel, const char **name)
{
	const char *slash = strrchr(rel, '/');
	char *dir;
	int fd;

	if (slash == NULL) {
		*name = rel;
		return openat(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	*name = slash + 1;
	dir = xstrndup(rel, (size_t)(slash - rel));
	fd = ws_open(root, dir, O_PATH | O_DIRECTORY, 0);
	free(dir);
	return fd;
}

/* mkdir -p beneath root. */
int
ws_mkdirs(int root, const char *rel)
{
	char *copy = xstrdup(rel), *p;
	const char *name;
	int dirfd, saved, r = 0;

	if (strcmp(rel, ".") == 0 || *rel == '\0') {
		free(copy);
		return 0;
	}
	for (p = copy;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		{
			char c = *p;

			*p = '\0';
			if ((dirfd = ws_open_parent(root, copy, &name)) == -1) {
				r = -1;
				break;
			}
			if (mkdirat(dirfd, name, 0777) == -1 &&
			    errno != EEXIST) {
				saved = errno;
				close(dirfd);
				errno = saved;
				r = -1;
				break;
			}
			close(dirfd);
			*p = c;
			if (c == '\0')
				break;
		}
	}
	saved = errno;
	free(copy);
	if (r == 0) {
		/* It must be a directory now, reachable beneath root. */
		int fd = ws_open(root, rel, O_PATH | O_DIRECTORY, 0);

		if (fd == -1)
			return -1;
		close(fd);
		return 0;
	}
	errno = saved;
	return -1;
}

/* Removes name in dirfd, recursively. */
static int
ws_remove_depth(int dir, const char *name, int depth)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd, r = 0, saved;

	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dir, name, 0);
	if (depth > WS_MAX_DEPTH) {
		errno = ELOOP;
		return -1;
	}
	fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (ws_remove_depth(dirfd(d), de->d_name, depth + 1) == -1 &&
		    errno != ENOENT) {
			r = -1;
			break;
		}
	}
	saved = errno;
	closedir(d);
	if (r == -1) {
		errno = saved;
		return -1;
	}
	return unlinkat(dir, name, AT_REMOVEDIR);
}

/* Removes name in dirfd, recursively for a directory. */
int
ws_remove(int dirfd, const char *name)
{
	return ws_remove_depth(dirfd, name, 0);
}

/* The last component of an absolute path. */
static const char *
ws_basename(const char *abs)
{
	const char *s = strrchr(abs, '/');

	return s != NULL && s[1] != '\0' ? s + 1 : abs;
}

/* Emits the entry JSON of spec 6.3 from an lstat. */
static void
ws_gen_entry(yajl_gen g, const char *abs, const struct stat *st)
{
	const char *type;

	if (S_ISDIR(st->st_mode))
		type = "dir";
	else if (S_ISREG(st->st_mode))
		type = "file";
	else if (S_ISLNK(st->st_mode))
		type = "symlink";
	else
		type = "other";
	yajl_gen_map_open(g);
	json_gen_str(g, "path");
	json_gen_str(g, abs);
	json_gen_str(g, "name");
	json_gen_str(g, ws_basename(abs));
	json_gen_str(g, "type");
	json_gen_str(g, type);
	json_gen_str(g, "size");
	if (S_ISREG(st->st_mode))
		json_gen_int(g, (long long)st->st_size);
	else
		json_gen_null(g);
	json_gen_str(g, "mtime_ms");
	json_gen_int(g,
	    (long long)st->st_mtim.tv_sec * 1000 +
		st->st_mtim.tv_nsec / 1000000);
	yajl_gen_map_close(g);
}

/* lstat of rel beneath root (its parent resolved safely). */
static int
ws_lstat(int root, const char *rel, struct stat *st)
{
	const char *name;
	int dirfd, r, saved;

	if (strcmp(rel, ".") == 0)
		return fstatat(root, "", st, AT_EMPTY_PATH);
	if ((dirfd = ws_open_parent(root, rel, &name)) == -1)
		return -1;
	r = fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW);
	saved = errno;
	close(dirfd);
	errno = saved;
	return r;
}

/* Answers with one entry. */
static void
ws_reply_entry(struct ahttp_req *req, int root, const struct ws_path *p)
{
	struct stat st;
	yajl_gen g;
	char *json;
	size_t len;

	if (ws_lstat(root, p->rel, &st) == -1) {
		agent_reply_detail(req, 404, "not found");
		return;
	}
	g = json_gen_new();
	ws_gen_entry(g, p->abs, &st);
	json = json_gen_done(g, &len);
	agent_reply_json(req, 200, json, len);
}

/* Answers for an errno of path resolution or a file operation. */
static void
ws_reply_errno(struct ahttp_req *req, int err, const char *what)
{
	char *msg;

	switch (err) {
	case EXDEV:
	case ELOOP:
		agent_reply_detail(req, 403, WS_FORBIDDEN);
		return;
	case ENOENT:
	case ENOTDIR:
		agent_reply_detail(req, 404, "not found");
		return;
	default:
		xasprintf(&msg, "%s: %s", what, strerror(err));
		agent_reply_detail(req, 500, msg);
		free(msg);
	}
}

/*
 * Reads and resolves the "path" query parameter. 0, or -1 after
 * answering (422 if missing, 403 if outside the workspace).
 */
static int
ws_query_path(struct ahttp_req *req, struct ws_path *p)
{
	char *raw = agent_query(req, "path");

	if (raw == NULL) {
		agent_reply_detail(
		    req, 422, "query parameter 'path' is required");
		return -1;
	}
	if (ws_resolve(raw, p) == -1) {
		free(raw);
		agent_reply_detail(req, 403, WS_FORBIDDEN);
		return -1;
	}
	free(raw);
	return 0;
}

/* Opens the workspace or answers 500. */
static int
ws_root_or_reply(struct ahttp_req *req)
{
	char *msg;
	int root;

	if ((root = ws_root()) == -1) {
		xasprintf(
		    &msg, "workspace %s: %s", ws.workdir, strerror(errno));
		agent_reply_detail(req, 500, msg);
		free(msg);
	}
	return root;
}

/* GET /workspace/file?path=&format=text|bytes: streamed with sendfile. */
void
ws_route_file_get(struct ahttp_req *req, yajl_val body)
{
	char *format = agent_query(req, "format");
	const char *ctype;
	struct ws_path p;
	struct stat st;
	int root, fd;

	if (format == NULL || strcmp(format, "text") == 0)
		ctype = "text/plain; charset=utf-8";
	else if (strcmp(format, "bytes") == 0)
		ctype = "application/octet-stream";
	else {
		free(format);
		agent_reply_detail(
		    req, 422, "query parameter 'format' must be text or bytes");
		return;
	}
	free(format);
	if (ws_query_path(req, &p) == -1)
		return;
	if ((root = ws_root_or_reply(req)) == -1) {
		ws_path_free(&p);
		return;
	}
	fd = ws_open(root, p.rel, O_RDONLY | O_NONBLOCK, 0);
	close(root);
	if (fd == -1) {
		ws_reply_errno(req, errno == EISDIR ? ENOENT : errno, "open");
		ws_path_free(&p);
		return;
	}
	ws_path_free(&p);
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		agent_reply_detail(req, 404, "not found");
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	ahttp_reply_start(req, 200, ctype, (int64_t)st.st_size);
	if (ahttp_reply_add_file(req, fd, 0, (int64_t)st.st_size) == -1)
		log_warnx("wspace: cannot queue a file for sending");
	ahttp_reply_end(req);
}

/* Makes a temporary file for an upload in dirfd; its name or NULL. */
static char *
ws_tmpfile(int dirfd, const char *base, int *fdp)
{
	char *name;
	int i, fd;

	for (i = 0; i < 100; i++) {
		xasprintf(&name, ".%s.sandpool-%ld-%lu", base, (long)getpid(),
		    ++ws.tmp_seq);
		if (strlen(name) > NAME_MAX) {
			free(name);
			xasprintf(&name, ".sandpool-upload-%ld-%lu",
			    (long)getpid(), ws.tmp_seq);
		}
		fd = openat(dirfd, name,
		    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
		if (fd != -1) {
			*fdp = fd;
			return name;
		}
		free(name);
		if (errno != EEXIST)
			return NULL;
	}
	return NULL;
}

/* Frees an upload, removing the temporary files still left. */
static void
ws_upload_free(struct ws_upload *up)
{
	size_t i;

	if (up == NULL)
		return;
	if (up->fd != -1)
		close(up->fd);
	for (i = 0; i < up->nfiles; i++) {
		if (up->files[i].tmp != NULL)
			unlinkat(up->files[i].dirfd, up->files[i].tmp, 0);
		if (up->files[i].dirfd != -1)
			close(up->files[i].dirfd);
		free(up->files[i].tmp);
		free(up->files[i].target);
	}
	free(up->files);
	for (i = 0; i < up->npaths; i++)
		free(up->paths[i]);
	free(up->paths);
	free(up->field);
	multipart_free(up->mp);
	ws_path_free(&up->path);
	TAILQ_REMOVE(&ws.uploads, up, entry);
	free(up);
}

/* Writes all of a piece to the upload's current file. 0 or -1. */
static int
ws_write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A piece of a PUT body. */
static int
ws_put_on_data(struct ahttp_req *req, const char *p, size_t n, void *arg)
{
	struct ws_upload *up = arg;
	char *msg;

	if (ws_write_all(up->fd, p, n) == 0)
		return 0;
	xasprintf(&msg, "write: %s", strerror(errno));
	log_warnx("wspace: upload of %s: %s", up->path.abs, msg);
	agent_reply_detail(req, 500, msg);
	free(msg);
	ws_upload_free(up);
	return -1;
}

/* The PUT body ended: rename the temporary file into place. */
static void
ws_put_on_end(struct ahttp_req *req, int error, void *arg)
{
	struct ws_upload *up = arg;
	struct ws_file *f = &up->files[0];
	int root;

	if (error != 0) {
		log_info("wspace: upload of %s: body incomplete", up->path.abs);
		ws_upload_free(up);
		return;
	}
	if (close(up->fd) == -1) {
		up->fd = -1;
		ws_reply_errno(req, errno, "close");
		ws_upload_free(up);
		return;
	}
	up->fd = -1;
	if (renameat(f->dirfd, f->tmp, f->dirfd, f->target) == -1) {
		if (errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST)
			agent_reply_detail(
			    req, 409, "path exists and is a directory");
		else
			ws_reply_errno(req, errno, "rename");
		ws_upload_free(up);
		return;
	}
	free(f->tmp);
	f->tmp = NULL;
	if ((root = ws_root_or_reply(req)) != -1) {
		ws_reply_entry(req, root, &up->path);
		close(root);
	}
	ws_upload_free(up);
}

/* Answers for a failed mkdir -p of a target's parents. */
static void
ws_reply_mkdirs(struct ahttp_req *req, int err)
{
	if (err == EEXIST || err == ENOTDIR)
		agent_reply_detail(req, 409,
		    "a parent of the path exists and is not a directory");
	else
		ws_reply_errno(req, err, "mkdir");
}

/* PUT /workspace/file?path=: the body is streamed to the file. */
void
ws_route_file_put(struct ahttp_req *req, yajl_val body)
{
	struct ws_upload *up;
	const char *name;
	struct stat st;
	char *slash;
	int root, dirfd, fd;

	up = xcalloc(1, sizeof *up);
	up->kind = WS_PUT;
	up->req = req;
	up->fd = -1;
	TAILQ_INSERT_TAIL(&ws.uploads, up, entry);
	if (ws_query_path(req, &up->path) == -1) {
		ws_upload_free(up);
		return;
	}
	if (strcmp(up->path.rel, ".") == 0) {
		agent_reply_detail(req, 409, "path exists and is a directory");
		ws_upload_free(up);
		return;
	}
	if ((root = ws_root_or_reply(req)) == -1) {
		ws_upload_free(up);
		return;
	}
	if ((slash = strrchr(up->path.rel, '/')) != NULL) {
		*slash = '\0';
		if (ws_mkdirs(root, up->path.rel) == -1) {
			*slash = '/';
			ws_reply_mkdirs(req, errno);
			close(root);
			ws_upload_free(up);
			return;
		}
		*slash = '/';
	}
	dirfd = ws_open_parent(root, up->path.rel, &name);
	close(root);
	if (dirfd == -1) {
		ws_reply_errno(req, errno, "open");
		ws_upload_free(up);
		return;
	}
	if (fstatat(dirfd, name, &st, 0) == 0 && S_ISDIR(st.st_mode)) {
		close(dirfd);
		agent_reply_detail(req, 409, "path exists and is a directory");
		ws_upload_free(up);
		return;
	}
	up->files = xcalloc(1, sizeof *up->files);
	up->nfiles = 1;
	up->files[0].dirfd = dirfd;
	up->files[0].target = xstrdup(name);
	if ((up->files[0].tmp = ws_tmpfile(dirfd, name, &fd)) == NULL) {
		ws_reply_errno(req, errno, "create");
		ws_upload_free(up);
		return;
	}
	up->fd = fd;
	ahttp_req_stream_body(req, ws_put_on_data, ws_put_on_end, up);
}

/* A part of a batch starts. */
static int
ws_batch_on_begin(const struct multipart_part *part, void *arg)
{
	struct ws_upload *up = arg;
	struct ws_file *f;
	int root, fd;

	if (strcmp(part->name, "paths") == 0) {
		up->part = WS_PART_PATH;
		up->field = xmalloc(WS_MAX_PATH_FIELD + 1);
		up->field_len = 0;
		return 0;
	}
	if (strcmp(part->name, "files") != 0) {
		up->part = WS_PART_SKIP;
		return 0;
	}
	up->part = WS_PART_FILE;
	if ((root = ws_root()) == -1) {
		up->err = errno;
		return -1;
	}
	up->files = xreallocarray(up->files, up->nfiles + 1, sizeof *up->files);
	f = &up->files[up->nfiles++];
	memset(f, 0, sizeof *f);
	f->dirfd = root;
	f->target = xstrdup(part->filename != NULL ? part->filename : "");
	if ((f->tmp = ws_tmpfile(root, "upload", &fd)) == NULL) {
		up->err = errno;
		return -1;
	}
	up->fd = fd;
	return 0;
}

/* Data of a batch part. */
static int
ws_batch_on_data(const char *p, size_t n, void *arg)
{
	struct ws_upload *up = arg;

	switch (up->part) {
	case WS_PART_PATH:
		if (up->field_len + n > WS_MAX_PATH_FIELD)
			return -1;
		memcpy(up->field + up->field_len, p, n);
		up->field_len += n;
		return 0;
	case WS_PART_FILE:
		if (ws_write_all(up->fd, p, n) == -1) {
			up->err = errno;
			return -1;
		}
		return 0;
	case WS_PART_SKIP:
		return 0;
	}
	return 0;
}

/* A batch part ends. */
static int
ws_batch_on_end(void *arg)
{
	struct ws_upload *up = arg;
	int r = 0;

	switch (up->part) {
	case WS_PART_PATH:
		up->field[up->field_len] = '\0';
		up->paths =
		    xreallocarray(up->paths, up->npaths + 1, sizeof *up->paths);
		up->paths[up->npaths++] = up->field;
		up->field = NULL;
		break;
	case WS_PART_FILE:
		r = close(up->fd);
		up->fd = -1;
		break;
	case WS_PART_SKIP:
		break;
	}
	up->part = WS_PART_SKIP;
	return r == 0 ? 0 : -1;
}

static const struct multipart_cbs ws_batch_cbs = {
    ws_batch_on_begin,
    ws_batch_on_data,
    ws_batch_on_end,
};

/* A piece of a batch body. */
static int
ws_batch_on_data_http(struct ahttp_req *req, const char *p, size_t n, void *arg)
{
	struct ws_upload *up = arg;
	char *cause, *msg;

	if (multipart_feed(up->mp, p, n, &cause) == 0)
		return 0;
	if (up->err != 0) {
		xasprintf(&msg, "write: %s", strerror(up->err));
		agent_reply_detail(req, 500, msg);
	} else {
		xasprintf(&msg, "bad multipart body: %s", cause);
		agent_reply_detail(req, 400, msg);
	}
	free(msg);
	free(cause);
	ws_upload_free(up);
	return -1;
}

/*
 * Moves every uploaded file to its target, answering with their entries.
 * Targets are all checked before anything is renamed.
 */
static void
ws_batch_commit(struct ahttp_req *req, struct ws_upload *up)
{
	struct ws_path *targets;
	const char *name;
	struct stat st;
	yajl_gen g = NULL;
	size_t i, len;
	int root, dirfd;
	char *json, *slash, *msg;

	targets = xcalloc(up->nfiles, sizeof *targets);
	for (i = 0; i < up->nfiles; i++) {
		const char *t =
		    up->npaths > 0 ? up->paths[i] : up->files[i].target;

		if (*t == '\0') {
			agent_reply_detail(req, 400,
			    "a file without a target path (no 'paths' and no "
			    "file name)");
			goto out;
		}
		if (ws_resolve(t, &targets[i]) == -1 ||
		    strcmp(targets[i].rel, ".") == 0) {
			agent_reply_detail(req, 403, WS_FORBIDDEN);
			goto out;
		}
	}
	if ((root = ws_root_or_reply(req)) == -1)
		goto out;
	g = json_gen_new();
	yajl_gen_array_open(g);
	for (i = 0; i < up->nfiles; i++) {
		struct ws_path *p = &targets[i];

		if ((slash = strrchr(p->rel, '/')) != NULL) {
			*slash = '\0';
			if (ws_mkdirs(root, p->rel) == -1) {
				*slash = '/';
				ws_reply_mkdirs(req, errno);
				close(root);
				goto out;
			}
			*slash = '/';
		}
		if ((dirfd = ws_open_parent(root, p->rel, &name)) == -1) {
			ws_reply_errno(req, errno, "open");
			close(root);
			goto out;
		}
		if (renameat(up->files[i].dirfd, up->files[i].tmp, dirfd,
			name) == -1) {
			int err = errno;

			close(dirfd);
			close(root);
			if (err == EISDIR || err == ENOTEMPTY ||
			    err == EEXIST) {
				xasprintf(&msg, "%s exists and is a directory",
				    p->abs);
				agent_reply_detail(req, 409, msg);
				free(msg);
			} else
				ws_reply_errno(req, err, "rename");
			goto out;
		}
		free(up->files[i].tmp);
		up->files[i].tmp = NULL;
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			ws_gen_entry(g, p->abs, &st);
		close(dirfd);
	}
	close(root);
	yajl_gen_array_close(g);
	json = json_gen_done(g, &len);
	g = NULL;
	agent_reply_json(req, 200, json, len);
out:
	if (g != NULL)
		yajl_gen_free(g);
	for (i = 0; i < up->nfiles; i++)
		ws_path_free(&targets[i]);
	free(targets);
}

/* The batch body ended. */
static void
ws_batch_on_end_http(struct ahttp_req *req, int error, void *arg)
{
	struct ws_upload *up = arg;
	char *cause, *msg;

	if (error != 0) {
		ws_upload_free(up);
		return;
	}
	if (multipart_finish(up->mp, &cause) == -1) {
		xasprintf(&msg, "bad multipart body: %s", cause);
		agent_reply_detail(req, 400, msg);
		free(msg);
		free(cause);
	} else if (up->nfiles == 0)
		agent_reply_detail(req, 400, "no 'files' in the upload");
	else if (up->npaths > 0 && up->npaths != up->nfiles) {
		xasprintf(&msg,
		    "'paths' and 'files' differ in number (%zu "
		    "paths, %zu files)",
		    up->npaths, up->nfiles);
		agent_reply_detail(req, 400, msg);
		free(msg);
	} else
		ws_batch_commit(req, up);
	ws_upload_free(up);
}

/* POST /workspace/files:batch: multipart, streamed to temporary files. */
void
ws_route_batch(struct ahttp_req *req, yajl_val body)
{
	struct ws_upload *up;
	char *boundary;

	boundary = multipart_boundary(ahttp_req_header(req, "Content-Type"));
	if (boundary == NULL) {
		agent_reply_detail(req, 400,
		    "expected a multipart/form-data body with a boundary");
		return;
	}
	up = xcalloc(1, sizeof *up);
	up->kind = WS_BATCH;
	up->req = req;
	up->fd = -1;
	up->mp = multipart_new(boundary, &ws_batch_cbs, up);
	free(boundary);
	TAILQ_INSERT_TAIL(&ws.uploads, up, entry);
	ahttp_req_stream_body(
	    req, ws_batch_on_data_http, ws_batch_on_end_http, up);
}

/* State of a list walk. */
struct ws_list {
	yajl_gen g;
	size_t count;
	int too_many;
};

/* Lists the directory fd (shown as abs) into the walk, pre-order. */
static void
ws_list_dir(struct ws_list *w, int fd, const char *abs, int depth)
{
	struct dirent *de;
	struct stat st;
	char *path;
	DIR *d;
	int sub;

	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL && !w->too_many) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
		    -1)
			continue;
		if (++w->count > WS_MAX_LIST) {
			w->too_many = 1;
			break;
		}
		xasprintf(&path, "%s%s%s", abs,
		    abs[strlen(abs) - 1] == '/' ? "" : "/", de->d_name);
		ws_gen_entry(w->g, path, &st);
		if (S_ISDIR(st.st_mode) && depth > 1 &&
		    (sub = openat(dirfd(d), de->d_name,
			 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) !=
			-1)
			ws_list_dir(w, sub, path, depth - 1);
		free(path);
	}
	closedir(d);
}

/* GET /workspace/list?path=&depth=1. */
void
ws_route_list(struct ahttp_req *req, yajl_val body)
{
	char *ds = agent_query(req, "depth"), *end, *json;
	struct ws_list w;
	struct ws_path p;
	long depth = 1;
	int root, fd;
	size_t len;

	if (ds != NULL) {
		errno = 0;
		depth = strtol(ds, &end, 10);
		if (*ds == '\0' || *end != '\0' || errno != 0 || depth < 1) {
			free(ds);
			agent_reply_detail(req, 422,
			    "query parameter 'depth' must be an integer >= 1");
			return;
		}
		free(ds);
		if (depth > WS_MAX_DEPTH)
			depth = WS_MAX_DEPTH;
	}
	if (ws_query_path(req, &p) == -1)
		return;
	if ((root = ws_root_or_reply(req)) == -1) {
		ws_path_free(&p);
		return;
	}
	fd = ws_open(root, p.rel, O_RDONLY | O_DIRECTORY, 0);
	close(root);
	if (fd == -1) {
		ws_reply_errno(req, errno, "open");
		ws_path_free(&p);
		return;
	}
	memset(&w, 0, sizeof w);
	w.g = json_gen_new();
	yajl_gen_array_open(w.g);
	ws_list_dir(&w, fd, p.abs, (int)depth);
	ws_path_free(&p);
	yajl_gen_array_close(w.g);
	json = json_gen_done(w.g, &len);
	if (w.too_many) {
		free(json);
		agent_reply_detail(req, 413,
		    "more than 100000 entries: list with a smaller depth");
		return;
	}
	agent_reply_json(req, 200, json, len);
}

/* GET /workspace/exists?path=: {"exists": bool} (links followed). */
void
ws_route_exists(struct ahttp_req *req, yajl_val body)
{
	struct ws_path p;
	int root, fd, exists;

	if (ws_query_path(req, &p) == -1)
		return;
	if ((root = ws_root_or_reply(req)) == -1) {
		ws_path_free(&p);
		return;
	}
	fd = ws_open(root, p.rel, O_PATH, 0);
	close(root);
	ws_path_free(&p);
	if (fd == -1 && (errno == EXDEV || errno == ELOOP)) {
		agent_reply_detail(req, 403, WS_FORBIDDEN);
		return;
	}
	exists = fd != -1;
	if (fd != -1)
		close(fd);
	if (exists)
		agent_reply(
		    req, 200, "application/json", "{\"exists\":true}", 15);
	else
		agent_reply(
		    req, 200, "application/json", "{\"exists\":false}", 16);
}

/* DELETE /workspace/entry?path=: 204, also when absent. */
void
ws_route_delete(struct ahttp_req *req, yajl_val body)
{
	const char *name;
	struct ws_path p;
	int root, dirfd;

	if (ws_query_path(req, &p) == -1)
		return;
	if (strcmp(p.rel, ".") == 0) {
		ws_path_free(&p);
		agent_reply_detail(req, 403, WS_FORBIDDEN);
		return;
	}
	if ((root = ws_root_or_reply(req)) == -1) {
		ws_path_free(&p);
		return;
	}
	dirfd = ws_open_parent(root, p.rel, &name);
	close(root);
	if (dirfd == -1) {
		if (errno == ENOENT || errno == ENOTDIR)
			agent_reply(req, 204, NULL, "", 0);
		else
			ws_reply_errno(req, errno, "open");
		ws_path_free(&p);
		return;
	}
	if (ws_remove(dirfd, name) == -1 && errno != ENOENT)
		ws_reply_errno(req, errno == ENOTDIR ? EIO : errno, "remove");
	else
		agent_reply(req, 204, NULL, "", 0);
	close(dirfd);
	ws_path_free(&p);
}

/*
 * POST /workspace/move {"source","destination"}: like shutil.move, a
 * destination that is a directory receives the source; the destination's
 * parents are created.
 */
void
ws_route_move(struct ahttp_req *req, yajl_val body)
{
	const char *src = json_get_str(body, "source");
	const char *dst = json_get_str(body, "destination");
	const char *sname, *dname;
	struct ws_path s, d;
	struct stat st;
	int root, sdir = -1, ddir = -1, fd;
	char *into, *slash;

	if (src == NULL || dst == NULL) {
		agent_reply_detail(req, 400,
		    "'source' and 'destination' are required strings");
		return;
	}
	if (ws_resolve(src, &s) == -1) {
		agent_reply_detail(req, 403, WS_FORBIDDEN);
		return;
	}
	if (ws_resolve(dst, &d) == -1 || strcmp(s.rel, ".") == 0) {
		ws_path_free(&s);
		agent_reply_detail(req, 403, WS_FORBIDDEN);
		return;
	}
	if ((root = ws_root_or_reply(req)) == -1)
		goto out;
	if ((sdir = ws_open_parent(root, s.rel, &sname)) == -1 ||
	    fstatat(sdir, sname, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		ws_reply_errno(req, errno, "source");
		goto out;
	}
	/* An existing directory (links followed) receives the source. */
	if ((fd = ws_open(root, d.rel, O_PATH | O_DIRECTORY, 0)) != -1) {
		close(fd);
		xasprintf(&into, "%s/%s", d.abs, sname);
		ws_path_free(&d);
		if (ws_resolve(into, &d) == -1) {
			free(into);
			agent_reply_detail(req, 403, WS_FORBIDDEN);
			goto out;
		}
		free(into);
	}
	if ((slash = strrchr(d.rel, '/')) != NULL) {
		*slash = '\0';
		if (ws_mkdirs(root, d.rel) == -1) {
			*slash = '/';
			ws_reply_mkdirs(req, errno);
			goto out;
		}
		*slash = '/';
	}
	if ((ddir = ws_open_parent(root, d.rel, &dname)) == -1) {
		ws_reply_errno(req, errno, "destination");
		goto out;
	}
	if (renameat(sdir, sname, ddir, dname) == -1) {
		if (errno == ENOENT)
			ws_reply_errno(req, EIO, "rename");
		else if (errno == EISDIR || errno == ENOTEMPTY ||
		    errno == EEXIST || errno == ENOTDIR)
			agent_reply_detail(req, 409,
			    "destination exists and cannot be replaced");
		else if (errno == EINVAL)
			agent_reply_detail(
			    req, 400, "cannot move a directory into itself");
		else
			ws_reply_errno(
			    req, errno == EXDEV ? EIO : errno, "rename");
		goto out;
	}
	ws_reply_entry(req, root, &d);
out:
	if (sdir != -1)
		close(sdir);
	if (ddir != -1)
		close(ddir);
	if (root != -1)
		close(root);
	ws_path_free(&s);
	ws_path_free(&d);
}

/* POST /workspace/mkdir {"path"}: {"created": bool}; a file there: 409. */
void
ws_route_mkdir(struct ahttp_req *req, yajl_val body)
{
	const char *path = json_get_str(body, "path");
	struct ws_path p;
	struct stat st;
	int root, fd;

	if (path == NULL) {
		agent_reply_detail(req, 400, "'path' is a required string");
		return;
	}
	if (ws_resolve(path, &p) == -1) {
		agent_reply_detail(req, 403, WS_FORBIDDEN);
		return;
	}
	if ((root = ws_root_or_reply(req)) == -1) {
		ws_path_free(&p);
		return;
	}
	if ((fd = ws_open(root, p.rel, O_PATH, 0)) != -1) {
		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
			agent_reply(req, 200, "application/json",
			    "{\"created\":false}", 17);
		else
			agent_reply_detail(
			    req, 409, "path exists and is not a directory");
		close(fd);
	} else if (errno == EXDEV || errno == ELOOP)
		agent_reply_detail(req, 403, WS_FORBIDDEN);
	else if (ws_mkdirs(root, p.rel) == -1)
		ws_reply_mkdirs(req, errno);
	else
		agent_reply(
		    req, 200, "application/json", "{\"created\":true}", 16);
	close(root);
	ws_path_free(&p);
}

/* Removes the temporary files of unfinished uploads. */
void
ws_shutdown(void)
{
	struct ws_upload *up;

	while ((up = TAILQ_FIRST(&ws.uploads)) != NULL)
		ws_upload_free(up);
	free(ws.workdir);
	ws.workdir = NULL;
}
