/*
 * shell: the agent's commands. Runs "/bin/sh -c <command>" (or a program
 * with its arguments) through child.c in its own process group with stdin
 * on /dev/null, collects stdout and stderr through non-blocking pipes
 * (each capped), and kills the group at the deadline. Owns every struct
 * shell_cmd.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "child.h"
#include "log.h"
#include "result.h"
#include "shell.h"
#include "xmalloc.h"

/*
 * After the shell exits, how long to wait for end-of-file on its pipes.
 * A background job ("server &") keeps them open; the upstream runtime then
 * hangs until the job ends, sandpool answers with what it has after this
 * grace and keeps draining (and discarding) the job's output instead.
 */
#define SHELL_DRAIN_GRACE_MS 200
/* Bytes read from a pipe per read(2). */
#define SHELL_READ_CHUNK 65536
/* Reads per final drain once the grace has passed. */
#define SHELL_FINAL_READS 64

enum shell_state {
	SHELL_RUNNING, /* the shell has not exited yet */
	SHELL_EXITED,  /* reaped; waiting for EOF or the grace timer */
	SHELL_DONE     /* answered; draining leftover writers, then freed */
};

struct shell_stream {
	struct shell_cmd *cmd;
	int fd; /* -1 once at EOF */
	struct event *ev;
	struct result_buf b; /* what it said, up to the cap */
};

struct shell_cmd {
	TAILQ_ENTRY(shell_cmd) entry;
	enum shell_state state;
	pid_t pid; /* also the process group id */
	int status;
	int timed_out;
	double timeout;
	struct event *deadline;
	struct event *grace;
	struct shell_stream out, err;
	shell_done_cb cb;
	void *arg;
};

TAILQ_HEAD(shell_cmds, shell_cmd);

static struct {
	struct event_base *base;
	char *workdir;
	size_t max_output;
	struct shell_cmds cmds;
	size_t count;
} shell;

static void shell_on_readable(evutil_socket_t, short, void *);
static void shell_on_deadline(evutil_socket_t, short, void *);
static void shell_on_grace(evutil_socket_t, short, void *);
static void shell_on_exit(pid_t, int, void *);
static void shell_check(struct shell_cmd *);

/* Sets up the module. */
int
shell_init(struct event_base *base, const char *workdir, size_t max_output)
{
	struct stat st;

	shell.base = base;
	shell.max_output = max_output;
	TAILQ_INIT(&shell.cmds);
	if (stat(workdir, &st) == 0 && S_ISDIR(st.st_mode))
		shell.workdir = xstrdup(workdir);
	else {
		log_info(
		    "shell: %s is not a directory: commands run in /", workdir);
		shell.workdir = xstrdup("/");
	}
	return 0;
}

/* Returns how many commands exist (running, exiting or draining). */
size_t
shell_count(void)
{
	return shell.count;
}

/* Prepares one output stream on the read end of a pipe. */
static int
shell_stream_start(struct shell_cmd *cmd, struct shell_stream *s, int fd)
{
	s->cmd = cmd;
	s->fd = fd;
	s->ev = event_new(
	    shell.base, fd, EV_READ | EV_PERSIST, shell_on_readable, s);
	if (s->ev == NULL || event_add(s->ev, NULL) == -1)
		return -1;
	return 0;
}

/* Stops watching a stream and closes its pipe. */
static void
shell_stream_close(struct shell_stream *s)
{
	if (s->ev != NULL) {
		event_free(s->ev);
		s->ev = NULL;
	}
	if (s->fd != -1) {
		close(s->fd);
		s->fd = -1;
	}
}

/* Frees a command: events first, then pipes, then buffers. */
static void
shell_free(struct shell_cmd *cmd)
{
	if (cmd == NULL)
		return;
	if (cmd->deadline != NULL)
		event_free(cmd->deadline);
	if (cmd->grace != NULL)
		event_free(cmd->grace);
	shell_stream_close(&cmd->out);
	shell_stream_close(&cmd->err);
	result_buf_reset(&cmd->out.b);
	result_buf_reset(&cmd->err.b);
	TAILQ_REMOVE(&shell.cmds, cmd, entry);
	shell.count--;
	free(cmd);
}

/* Starts a command described by spec (its pipes are filled in here). */
static struct shell_cmd *
shell_start(struct child_spec *spec, double timeout, shell_done_cb cb,
    void *arg, char **cause)
{
	struct shell_cmd *cmd;
	int out[2] = {-1, -1}, err[2] = {-1, -1};
	pid_t pid;

	*cause = NULL;
	if (pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		goto fail;
	}
	cmd = xcalloc(1, sizeof *cmd);
	spec->cwd = shell.workdir;
	spec->fds[0] = -1;
	spec->fds[1] = out[1];
	spec->fds[2] = err[1];
	spec->cb = shell_on_exit;
	spec->arg = cmd;
	if ((pid = child_spawn(spec, cause)) == -1) {
		free(cmd);
		goto fail;
	}
	close(out[1]);
	close(err[1]);

	cmd->state = SHELL_RUNNING;
	cmd->pid = pid;
	cmd->timeout = timeout;
	cmd->cb = cb;
	cmd->arg = arg;
	cmd->out.fd = cmd->err.fd = -1;
	TAILQ_INSERT_TAIL(&shell.cmds, cmd, entry);
	shell.count++;
	evutil_make_socket_nonblocking(out[0]);
	evutil_make_socket_nonblocking(err[0]);
	if (shell_stream_start(cmd, &cmd->out, out[0]) == -1 ||
	    shell_stream_start(cmd, &cmd->err, err[0]) == -1)
		fatalx(
		    "shell: pid=%ld: cannot watch the output pipes", (long)pid);
	if (timeout > 0) {
		struct timeval tv;

		tv.tv_sec = (time_t)timeout;
		tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
		cmd->deadline = evtimer_new(shell.base, shell_on_deadline, cmd);
		if (cmd->deadline == NULL || evtimer_add(cmd->deadline, &tv))
			fatalx("shell: pid=%ld: cannot arm the deadline",
			    (long)pid);
	}
	return cmd;

fail:
	if (out[0] != -1) {
		close(out[0]);
		close(out[1]);
	}
	if (err[0] != -1) {
		close(err[0]);
		close(err[1]);
	}
	return NULL;
}

/* Starts /bin/sh -c command; see shell.h. */
struct shell_cmd *
shell_run(const char *command, double timeout, shell_done_cb cb, void *arg,
    char **cause)
{
	char *argv[] = {"sh", "-c", (char *)command, NULL};
	struct child_spec spec;

	memset(&spec, 0, sizeof spec);
	spec.path = "/bin/sh";
	spec.argv = argv;
	return shell_start(&spec, timeout, cb, arg, cause);
}

/* Starts argv[0] with its arguments; see shell.h. */
struct shell_cmd *
shell_run_argv(char *const *argv, double timeout, shell_done_cb cb, void *arg,
    char **cause)
{
	struct child_spec spec;

	memset(&spec, 0, sizeof spec);
	spec.argv = argv;
	return shell_start(&spec, timeout, cb, arg, cause);
}

/* Forgets the callback; the command runs on. */
void
shell_cancel(struct shell_cmd *cmd)
{
	if (cmd == NULL)
		return;
	log_debug("shell: pid=%ld: cancelled", (long)cmd->pid);
	cmd->cb = NULL;
	cmd->arg = NULL;
}

/* Appends to a stream's buffer, keeping at most max_output bytes. */
static void
shell_stream_append(struct shell_stream *s, const char *p, size_t n)
{
	if (s->cmd->state == SHELL_DONE)
		return; /* answered already: discard */
	result_buf_add(&s->b, p, n, shell.max_output);
}

/* Reads what a pipe has; 1 at EOF or error, else 0. */
static int
shell_stream_read(struct shell_stream *s, int max_reads)
{
	char chunk[SHELL_READ_CHUNK];
	ssize_t n;

	while (max_reads-- > 0) {
		n = read(s->fd, chunk, sizeof chunk);
		if (n > 0) {
			shell_stream_append(s, chunk, (size_t)n);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return 0;
		return 1; /* EOF, or an error that ends the stream */
	}
	return 0;
}

/* A pipe is readable: collect it, close it at EOF. */
static void
shell_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct shell_stream *s = arg;
	struct shell_cmd *cmd = s->cmd;

	if (shell_stream_read(s, 1)) {
		shell_stream_close(s);
		shell_check(cmd);
	}
}

/* The deadline passed: kill the whole process group. */
static void
shell_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct shell_cmd *cmd = arg;

	if (cmd->state != SHELL_RUNNING)
		return;
	log_info("shell: pid=%ld: timed out after %g s: killing its group",
	    (long)cmd->pid, cmd->timeout);
	cmd->timed_out = 1;
	if (kill(-cmd->pid, SIGKILL) == -1)
		kill(cmd->pid, SIGKILL);
}

/* The shell exited long enough ago: answer with what was read. */
static void
shell_on_grace(evutil_socket_t fd, short what, void *arg)
{
	struct shell_cmd *cmd = arg;

	log_debug("shell: pid=%ld: output still open after exit "
		  "(background job?): answering now",
	    (long)cmd->pid);
	if (cmd->out.fd != -1 &&
	    shell_stream_read(&cmd->out, SHELL_FINAL_READS))
		shell_stream_close(&cmd->out);
	if (cmd->err.fd != -1 &&
	    shell_stream_read(&cmd->err, SHELL_FINAL_READS))
		shell_stream_close(&cmd->err);
	cmd->state = SHELL_DONE; /* shell_check answers, then drains */
	shell_check(cmd);
}

/* Appends the "[output truncated]" marker to a stream that overflowed. */
static void
shell_mark_truncated(struct shell_stream *s, char **text, size_t *len)
{
	char *t;
	int n;

	if (s->b.dropped == 0) {
		*text = NULL;
		*len = 0;
		return;
	}
	n = xasprintf(
	    &t, "\n[output truncated: %zu bytes dropped]", s->b.dropped);
	*text = xmalloc(s->b.len + (size_t)n + 1);
	memcpy(*text, s->b.buf, s->b.len);
	memcpy(*text + s->b.len, t, (size_t)n + 1);
	*len = s->b.len + (size_t)n;
	free(t);
}

/* Builds the result and calls the callback (if still wanted). */
static void
shell_answer(struct shell_cmd *cmd)
{
	struct shell_result r;
	char *out = NULL, *err = NULL, *note = NULL;
	size_t out_len, err_len;

	if (cmd->cb == NULL)
		return;
	memset(&r, 0, sizeof r);
	shell_mark_truncated(&cmd->out, &out, &out_len);
	r.out =
	    out != NULL ? out : (cmd->out.b.buf != NULL ? cmd->out.b.buf : "");
	r.out_len = out != NULL ? out_len : cmd->out.b.len;

	shell_mark_truncated(&cmd->err, &err, &err_len);
	r.err =
	    err != NULL ? err : (cmd->err.b.buf != NULL ? cmd->err.b.buf : "");
	r.err_len = err != NULL ? err_len : cmd->err.b.len;
	if (cmd->timed_out) {
		int n;

		n = xasprintf(&note, "%.*s%scommand timed out after %g s\n",
		    (int)r.err_len, r.err,
		    r.err_len > 0 && r.err[r.err_len - 1] != '\n' ? "\n" : "",
		    cmd->timeout);
		r.err = note;
		r.err_len = (size_t)n;
		r.returncode = SHELL_TIMEOUT_RETURNCODE;
		r.timed_out = 1;
	} else if (WIFEXITED(cmd->status))
		r.returncode = WEXITSTATUS(cmd->status);
	else if (WIFSIGNALED(cmd->status))
		r.returncode = -WTERMSIG(cmd->status);
	cmd->cb(&r, cmd->arg);
	cmd->cb = NULL;
	free(note);
	free(err);
	free(out);
}

/*
 * Moves a command on after any event: answers once the shell is reaped
 * and both pipes hit EOF (or the grace passed), frees it once nothing of
 * it is left.
 */
static void
shell_check(struct shell_cmd *cmd)
{
	int open_fds = cmd->out.fd != -1 || cmd->err.fd != -1;

	switch (cmd->state) {
	case SHELL_RUNNING:
		return;
	case SHELL_EXITED:
		if (open_fds) {
			struct timeval tv = {0, SHELL_DRAIN_GRACE_MS * 1000};

			if (cmd->grace == NULL) {
				cmd->grace = evtimer_new(
				    shell.base, shell_on_grace, cmd);
				if (cmd->grace == NULL ||
				    evtimer_add(cmd->grace, &tv) == -1)
					fatalx("shell: cannot arm a timer");
			}
			return;
		}
		cmd->state = SHELL_DONE;
		/* FALLTHROUGH */
	case SHELL_DONE:
		shell_answer(cmd);
		/* Buffers are no longer needed while leftovers drain. */
		result_buf_reset(&cmd->out.b);
		result_buf_reset(&cmd->err.b);
		if (!open_fds) {
			log_debug("shell: pid=%ld: done", (long)cmd->pid);
			shell_free(cmd);
		}
		return;
	}
}

/* The command's shell was reaped: record its status and move on. */
static void
shell_on_exit(pid_t pid, int status, void *arg)
{
	struct shell_cmd *cmd = arg;

	cmd->status = status;
	cmd->state = SHELL_EXITED;
	if (cmd->deadline != NULL) {
		event_free(cmd->deadline);
		cmd->deadline = NULL;
	}
	shell_check(cmd);
}

/* Kills what still runs and frees every command without calling back. */
void
shell_shutdown(void)
{
	struct shell_cmd *cmd;

	while ((cmd = TAILQ_FIRST(&shell.cmds)) != NULL) {
		/* Background jobs of a finished command die too. */
		if (kill(-cmd->pid, SIGKILL) == -1 &&
		    cmd->state == SHELL_RUNNING)
			kill(cmd->pid, SIGKILL);
		if (cmd->state == SHELL_RUNNING)
			child_forget(cmd->pid);
		cmd->cb = NULL;
		shell_free(cmd);
	}
	free(shell.workdir);
	shell.workdir = NULL;
}
