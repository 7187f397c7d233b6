/*
 * watcher: the /watcher routes, as a short sequence of git commands per
 * request, each run through shell.c (fork/exec, output captured) in the
 * workspace. Every git gets "-c safe.directory=*": the workspace is a bind
 * mount that usually belongs to another user than the agent's. Owns the
 * operations in progress.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "ahttp.h"
#include "child.h"
#include "json.h"
#include "log.h"
#include "shell.h"
#include "watcher.h"
#include "xmalloc.h"

/* Most arguments of one git command. */
#define WATCHER_MAX_ARGS 24

enum watcher_kind { WATCHER_COMMIT, WATCHER_DIFF, WATCHER_LOGS };

/* The steps of commit_changes. */
enum watcher_commit_step {
	WC_IS_REPO,  /* git rev-parse --show-toplevel */
	WC_INIT,     /* git init (not a repository yet) */
	WC_IDENTITY, /* git config user.email */
	WC_ADD,	     /* git add -A */
	WC_COMMIT,   /* git commit */
	WC_HEAD	     /* git rev-parse HEAD */
};

struct watcher_op {
	enum watcher_kind kind;
	int step;
	struct agent_pending *p;
	struct shell_cmd *cmd;
	char *message;
	char *a, *b;
	int no_identity;
	/* generate_diff: the files, and the diffs so far */
	char **files;
	size_t nfiles, next;
	yajl_gen g;
};

static void watcher_on_done(const struct shell_result *, void *);

/* Frees an operation (its git is no longer running). */
static void
watcher_free(struct watcher_op *op)
{
	size_t i;

	for (i = 0; i < op->nfiles; i++)
		free(op->files[i]);
	free(op->files);
	if (op->g != NULL)
		yajl_gen_free(op->g);
	free(op->message);
	free(op->a);
	free(op->b);
	free(op);
}

/* The client went away: let git finish unheard, forget the operation. */
static void
watcher_cancel(void *arg)
{
	struct watcher_op *op = arg;

	if (op->cmd != NULL)
		shell_cancel(op->cmd);
	watcher_free(op);
}

/* Fails the operation with 500 and git's words. */
static void
watcher_fail(
    struct watcher_op *op, const char *what, const struct shell_result *r)
{
	char *msg;
	int n = (int)(r != NULL ? r->err_len : 0);

	while (n > 0 && (r->err[n - 1] == '\n' || r->err[n - 1] == ' '))
		n--;
	if (r != NULL && n > 0)
		xasprintf(&msg, "git %s failed: %.*s", what, n, r->err);
	else if (r != NULL)
		xasprintf(&msg, "git %s failed (exit status %d)", what,
		    r->returncode);
	else
		xasprintf(&msg, "git %s: cannot run git", what);
	agent_pending_detail(op->p, 500, msg);
	free(msg);
	watcher_free(op);
}

/* Runs "git -c safe.directory=* args..." for the operation. 0 or -1. */
static int
watcher_git(struct watcher_op *op, const char *const *args)
{
	char *argv[WATCHER_MAX_ARGS];
	char *cause;
	size_t n = 0, i;

	argv[n++] = "git";
	argv[n++] = "-c";
	argv[n++] = "safe.directory=*";
	if (op->no_identity && op->kind == WATCHER_COMMIT &&
	    op->step == WC_COMMIT) {
		argv[n++] = "-c";
		argv[n++] = "user.name=sandpool";
		argv[n++] = "-c";
		argv[n++] = "user.email=sandpool@localhost";
	}
	for (i = 0; args[i] != NULL && n < WATCHER_MAX_ARGS - 1; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	op->cmd = shell_run_argv(argv, 0, watcher_on_done, op, &cause);
	if (op->cmd == NULL) {
		log_warnx("watcher: cannot run git: %s", cause);
		free(cause);
		return -1;
	}
	return 0;
}

/* Starts an operation's pending record, or answers if git is missing. */
static struct watcher_op *
watcher_new(struct ahttp_req *req, enum watcher_kind kind)
{
	struct watcher_op *op;
	char *git;

	if ((git = child_which("git")) == NULL) {
		agent_reply_detail(req, 500,
		    "git is not available in this "
		    "sandbox");
		return NULL;
	}
	free(git);
	op = xcalloc(1, sizeof *op);
	op->kind = kind;
	op->p = agent_pending_new(req);
	agent_pending_set(op->p, watcher_cancel, op);
	return op;
}

/* Runs the first git of an operation or answers 500. */
static void
watcher_start(struct watcher_op *op, const char *const *args)
{
	if (watcher_git(op, args) == -1)
		watcher_fail(op, args[0], NULL);
}

/* POST /watcher/commit_changes {"commit_message": str}. */
void
watcher_route_commit(struct ahttp_req *req, yajl_val body)
{
	static const char *const args[] = {
	    "rev-parse", "--show-toplevel", NULL};
	yajl_val v = json_get(body, "commit_message");
	struct watcher_op *op;

	if (v != NULL && !YAJL_IS_STRING(v) && !YAJL_IS_NULL(v)) {
		agent_reply_detail(
		    req, 422, "field 'commit_message' must be a string");
		return;
	}
	if ((op = watcher_new(req, WATCHER_COMMIT)) == NULL)
		return;
	op->message =
	    xstrdup(v != NULL && YAJL_IS_STRING(v) ? YAJL_GET_STRING(v)
						   : "Automated commit");
	op->step = WC_IS_REPO;
	watcher_start(op, args);
}

/* The next step of commit_changes. */
static void
watcher_commit_next(struct watcher_op *op, const struct shell_result *r)
{
	char real[PATH_MAX];
	static const char *const init[] = {"init", "-q", NULL};
	static const char *const ident[] = {"config", "user.email", NULL};
	static const char *const add[] = {"add", "-A", NULL};
	static const char *const head[] = {"rev-parse", "HEAD", NULL};
	const char *commit[] = {"commit", "-q", "--allow-empty", "--no-verify",
	    "-m", op->message, NULL};
	const char *const *next = NULL;
	yajl_gen g;
	char *json;
	size_t len;
	int n;

	switch (op->step) {
	case WC_IS_REPO:
		/* A repository of the workspace's own, not one above it. */
		n = (int)r->out_len;
		while (n > 0 && r->out[n - 1] == '\n')
			n--;
		if (r->returncode != 0 ||
		    realpath(agent_workdir(), real) == NULL ||
		    strlen(real) != (size_t)n ||
		    strncmp(real, r->out, (size_t)n) != 0) {
			op->step = WC_INIT;
			next = init;
		} else {
			op->step = WC_IDENTITY;
			next = ident;
		}
		break;
	case WC_INIT:
		if (r->returncode != 0) {
			watcher_fail(op, "init", r);
			return;
		}
		op->step = WC_IDENTITY;
		next = ident;
		break;
	case WC_IDENTITY:
		op->no_identity = r->returncode != 0 || r->out_len == 0;
		op->step = WC_ADD;
		next = add;
		break;
	case WC_ADD:
		if (r->returncode != 0) {
			watcher_fail(op, "add", r);
			return;
		}
		op->step = WC_COMMIT;
		next = commit;
		break;
	case WC_COMMIT:
		if (r->returncode != 0) {
			watcher_fail(op, "commit", r);
			return;
		}
		op->step = WC_HEAD;
		next = head;
		break;
	case WC_HEAD:
		if (r->returncode != 0) {
			watcher_fail(op, "rev-parse", r);
			return;
		}
		n = (int)r->out_len;
		while (n > 0 && (r->out[n - 1] == '\n' || r->out[n - 1] == ' '))
			n--;
		g = json_gen_new();
		yajl_gen_map_open(g);
		json_gen_str(g, "commit");
		json_gen_strn(g, r->out, (size_t)n);
		json_gen_str(g, "message");
		json_gen_str(g, op->message);
		yajl_gen_map_close(g);
		json = json_gen_done(g, &len);
		agent_pending_reply_json(op->p, 200, json, len);
		watcher_free(op);
		return;
	}
	if (watcher_git(op, next) == -1)
		watcher_fail(op, next[0], NULL);
}

/* POST /watcher/generate_diff {"commit_a", "commit_b"}. */
void
watcher_route_diff(struct ahttp_req *req, yajl_val body)
{
	const char *a = json_get_str(body, "commit_a");
	const char *b = json_get_str(body, "commit_b");
	struct watcher_op *op;
	const char *args[] = {"diff", "--name-only", "-z", "--no-renames", NULL,
	    NULL, "--", NULL};

	if (a == NULL || b == NULL) {
		agent_reply_detail(req, 422,
		    "fields 'commit_a' and 'commit_b' are required strings");
		return;
	}
	if (*a == '-' || *b == '-') {
		agent_reply_detail(req, 422, "a commit may not start with '-'");
		return;
	}
	if ((op = watcher_new(req, WATCHER_DIFF)) == NULL)
		return;
	op->a = xstrdup(a);
	op->b = xstrdup(b);
	args[4] = op->a;
	args[5] = op->b;
	watcher_start(op, args);
}

/* Diffs the next file, or answers when all are done. */
static void
watcher_diff_next(struct watcher_op *op)
{
	const char *args[] = {"diff", "--no-color", "--no-ext-diff",
	    "--no-renames", op->a, op->b, "--", NULL, NULL};
	char *pathspec, *json;
	size_t len;

	if (op->next >= op->nfiles) {
		yajl_gen_map_close(op->g);
		yajl_gen_map_close(op->g);
		json = json_gen_done(op->g, &len);
		op->g = NULL;
		agent_pending_reply_json(op->p, 200, json, len);
		watcher_free(op);
		return;
	}
	xasprintf(&pathspec, ":(literal)%s", op->files[op->next]);
	args[7] = pathspec;
	if (watcher_git(op, args) == -1) {
		free(pathspec);
		watcher_fail(op, "diff", NULL);
		return;
	}
	free(pathspec);
}

/* A step of generate_diff finished. */
static void
watcher_diff_step(struct watcher_op *op, const struct shell_result *r)
{
	const char *p, *end;

	if (r->returncode != 0) {
		watcher_fail(op, "diff", r);
		return;
	}
	if (op->g == NULL) {
		/* The file list: NUL-separated names. */
		for (p = r->out, end = r->out + r->out_len; p < end;) {
			const char *z = memchr(p, '\0', (size_t)(end - p));
			size_t n =
			    z != NULL ? (size_t)(z - p) : (size_t)(end - p);

			if (n > 0 && op->nfiles < WATCHER_MAX_FILES) {
				op->files = xreallocarray(op->files,
				    op->nfiles + 1, sizeof *op->files);
				op->files[op->nfiles++] = xstrndup(p, n);
			}
			p += n + 1;
		}
		op->g = json_gen_new();
		yajl_gen_map_open(op->g);
		json_gen_str(op->g, "diffs");
		yajl_gen_map_open(op->g);
	} else {
		json_gen_str(op->g, op->files[op->next]);
		json_gen_strn(op->g, r->out, r->out_len);
		op->next++;
	}
	watcher_diff_next(op);
}

/* GET /watcher/git_logs. */
void
watcher_route_logs(struct ahttp_req *req, yajl_val body)
{
	static const char *const args[] = {"log", "-n", "1000", "-p",
	    "--no-color", "--no-ext-diff",
	    "--format=%x1e%H%x1f%an%x1f%cI%x1f%B%x1f", NULL};
	struct watcher_op *op;

	if ((op = watcher_new(req, WATCHER_LOGS)) == NULL)
		return;
	watcher_start(op, args);
}

/* Emits the field of a log record from p to the next 0x1f (or end). */
static const char *
watcher_field(yajl_gen g, const char *p, const char *end)
{
	const char *us = memchr(p, 0x1f, (size_t)(end - p));

	if (us == NULL)
		us = end;
	json_gen_strn(g, p, (size_t)(us - p));
	return us < end ? us + 1 : end;
}

/* git log finished: turn its records into {"logs": [...]}. */
static void
watcher_logs_done(struct watcher_op *op, const struct shell_result *r)
{
	static const char *const keys[] = {
	    "commit", "author", "date", "message"};
	const char *p, *end, *rs, *next;
	yajl_gen g;
	char *json;
	size_t len, i;

	if (r->returncode != 0 &&
	    (memmem(r->err, r->err_len, "does not have any commits", 25) ==
		NULL)) {
		watcher_fail(op, "log", r);
		return;
	}
	g = json_gen_new();
	yajl_gen_map_open(g);
	json_gen_str(g, "logs");
	yajl_gen_array_open(g);
	end = r->out + (r->returncode == 0 ? r->out_len : 0);
	for (p = r->out; p < end; p = next) {
		if ((rs = memchr(p, 0x1e, (size_t)(end - p))) == NULL)
			break;
		rs++;
		next = memchr(rs, 0x1e, (size_t)(end - rs));
		if (next == NULL)
			next = end;
		yajl_gen_map_open(g);
		p = rs;
		for (i = 0; i < 4; i++) {
			json_gen_str(g, keys[i]);
			p = watcher_field(g, p, next);
		}
		/* The rest of the record is the commit's patch. */
		while (p < next && *p == '\n')
			p++;
		json_gen_str(g, "diff");
		json_gen_strn(g, p, (size_t)(next - p));
		yajl_gen_map_close(g);
	}
	yajl_gen_array_close(g);
	yajl_gen_map_close(g);
	json = json_gen_done(g, &len);
	agent_pending_reply_json(op->p, 200, json, len);
	watcher_free(op);
}

/* A git of some operation finished. */
static void
watcher_on_done(const struct shell_result *r, void *arg)
{
	struct watcher_op *op = arg;

	op->cmd = NULL;
	switch (op->kind) {
	case WATCHER_COMMIT:
		watcher_commit_next(op, r);
		break;
	case WATCHER_DIFF:
		watcher_diff_step(op, r);
		break;
	case WATCHER_LOGS:
		watcher_logs_done(op, r);
		break;
	}
}
