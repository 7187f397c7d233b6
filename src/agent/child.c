/*
 * child: starting and reaping the agent's children. One SIGCHLD event
 * reaps every child that has exited (waitpid(-1)), whoever started it:
 * commands, the Python interpreter, MCP servers, git, and the orphans the
 * agent inherits as PID 1. A child started with child_spawn() may carry a
 * callback, called once from the loop when it is reaped. Owns the SIGCHLD
 * event and the table of watched children.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "child.h"
#include "log.h"
#include "xmalloc.h"

/* Most extra descriptors a child can be given. */
#define CHILD_MAX_EXTRA 4

struct child {
	LIST_ENTRY(child) entry;
	pid_t pid;
	child_exit_cb cb;
	void *arg;
};

static struct {
	struct event_base *base;
	struct event *sigchld;
	LIST_HEAD(, child) list;
} child;

static void child_on_sigchld(evutil_socket_t, short, void *);

/* Installs the SIGCHLD handler. */
int
child_init(struct event_base *base)
{
	child.base = base;
	LIST_INIT(&child.list);
	child.sigchld = evsignal_new(base, SIGCHLD, child_on_sigchld, NULL);
	if (child.sigchld == NULL || evsignal_add(child.sigchld, NULL) == -1) {
		log_warnx("child: cannot install the SIGCHLD handler");
		return -1;
	}
	return 0;
}

/* Writes a message on fd 2 in the child, where stdio must not be used. */
static void
child_say(const char *a, const char *b, const char *c)
{
	(void)!write(2, a, strlen(a));
	(void)!write(2, b, strlen(b));
	(void)!write(2, c, strlen(c));
	(void)!write(2, "\n", 1);
}

/*
 * Moves fd out of the range [0, limit) so that the dup2() calls that put
 * the child's descriptors in place cannot clobber it. -1 on failure.
 */
static int
child_lift(int fd, int limit)
{
	if (fd < 0 || fd >= limit)
		return fd;
	return fcntl(fd, F_DUPFD, limit);
}

/* In the child, between fork and exec. Never returns. */
static void __attribute__((__noreturn__))
child_exec(const struct child_spec *spec, int null_fd)
{
	extern char **environ;
	char *const *envp = spec->envp != NULL ? spec->envp : environ;
	int fds[3 + CHILD_MAX_EXTRA], n = 3 + (int)spec->nextra, i, fd;
	const char *path;
	sigset_t none;

	setpgid(0, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (i = 1; i < NSIG; i++)
		signal(i, SIG_DFL);
	for (i = 0; i < 3; i++)
		fds[i] = spec->fds[i] != -1 ? spec->fds[i] : null_fd;
	for (i = 0; i < (int)spec->nextra; i++)
		fds[3 + i] = spec->extra[i];
	for (i = 0; i < n; i++)
		if ((fds[i] = child_lift(fds[i], n)) == -1)
			_exit(127);
	for (i = 0; i < n; i++)
		if (dup2(fds[i], i) == -1)
			_exit(127);
	/* Our descriptors are close-on-exec; this is the backstop. */
	if (syscall(SYS_close_range, (unsigned)n, ~0U, 0U) == -1)
		for (fd = n; fd < 1024; fd++)
			close(fd);
	if (spec->cwd == NULL || chdir(spec->cwd) == -1)
		(void)!chdir("/");
	path = spec->path != NULL ? spec->path : spec->argv[0];
	if (strchr(path, '/') != NULL)
		execve(path, spec->argv, envp);
	else
		execvpe(path, spec->argv, envp);
	child_say("sandpool-agent: cannot run ", path,
	    errno == ENOENT ? ": not found" : ": cannot execute");
	_exit(127);
}

/* Starts a child; see child.h. */
pid_t
child_spawn(const struct child_spec *spec, char **cause)
{
	struct child *c;
	int null_fd = -1;
	pid_t pid;

	*cause = NULL;
	if (spec->nextra > CHILD_MAX_EXTRA) {
		xasprintf(cause, "too many descriptors");
		return -1;
	}
	if (spec->fds[0] == -1 || spec->fds[1] == -1 || spec->fds[2] == -1) {
		null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null_fd == -1) {
			/* An image without /dev/null: an empty pipe will do. */
			int p[2];

			if (pipe2(p, O_CLOEXEC) == -1) {
				xasprintf(cause, "pipe: %s", strerror(errno));
				return -1;
			}
			close(p[1]);
			null_fd = p[0];
		}
	}
	if ((pid = fork()) == -1) {
		xasprintf(cause, "fork: %s", strerror(errno));
		if (null_fd != -1)
			close(null_fd);
		return -1;
	}
	if (pid == 0)
		child_exec(spec, null_fd);
	/* Also here, so that killing the group cannot miss it. */
	setpgid(pid, pid);
	if (null_fd != -1)
		close(null_fd);
	if (spec->cb != NULL) {
		c = xcalloc(1, sizeof *c);
		c->pid = pid;
		c->cb = spec->cb;
		c->arg = spec->arg;
		LIST_INSERT_HEAD(&child.list, c, entry);
	}
	log_debug("child: pid=%ld: started %s", (long)pid,
	    spec->path != NULL ? spec->path : spec->argv[0]);
	return pid;
}

/* Forgets a child's callback. */
void
child_forget(pid_t pid)
{
	struct child *c;

	LIST_FOREACH (c, &child.list, entry) {
		if (c->pid == pid) {
			LIST_REMOVE(c, entry);
			free(c);
			return;
		}
	}
}

/* Looks name up on $PATH. */
char *
child_which(const char *name)
{
	const char *path = getenv("PATH"), *p, *end;
	struct stat st;
	char *full;

	if (name == NULL || *name == '\0')
		return NULL;
	if (strchr(name, '/') != NULL) {
		if (stat(name, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(name, X_OK) == 0)
			return xstrdup(name);
		return NULL;
	}
	if (path == NULL)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
		       "/sbin:/bin";
	for (p = path;; p = end + 1) {
		if ((end = strchr(p, ':')) == NULL)
			end = p + strlen(p);
		if (end == p)
			xasprintf(&full, "./%s", name);
		else
			xasprintf(&full, "%.*s/%s", (int)(end - p), p, name);
		if (stat(full, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(full, X_OK) == 0)
			return full;
		free(full);
		if (*end == '\0')
			return NULL;
	}
}

/* The agent's environment with "K=V" sets applied (replacing K). */
char **
child_env_merge(char *const *sets)
{
	extern char **environ;
	size_t n = 0, m = 0, i, j, k;
	char **out;

	for (i = 0; environ[i] != NULL; i++)
		n++;
	for (i = 0; sets != NULL && sets[i] != NULL; i++)
		m++;
	out = xcalloc(n + m + 1, sizeof *out);
	k = 0;
	for (i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t klen = eq != NULL ? (size_t)(eq - environ[i]) : 0;

		for (j = 0; j < m; j++)
			if (eq != NULL &&
			    strncmp(sets[j], environ[i], klen) == 0 &&
			    sets[j][klen] == '=')
				break;
		if (j == m)
			out[k++] = xstrdup(environ[i]);
	}
	for (j = 0; j < m; j++)
		out[k++] = xstrdup(sets[j]);
	out[k] = NULL;
	return out;
}

/* Hands a reaped child to its owner, if it has one. */
static void
child_reaped(pid_t pid, int status)
{
	struct child *c;
	child_exit_cb cb;
	void *arg;

	LIST_FOREACH (c, &child.list, entry) {
		if (c->pid == pid)
			break;
	}
	if (c == NULL) {
		log_debug("child: pid=%ld: reaped an orphan", (long)pid);
		return;
	}
	log_debug("child: pid=%ld: exited (status 0x%x)", (long)pid, status);
	cb = c->cb;
	arg = c->arg;
	LIST_REMOVE(c, entry);
	free(c);
	cb(pid, status, arg);
}

/* SIGCHLD: reap every child that has exited, ours or inherited. */
static void
child_on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	pid_t pid;
	int status;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid > 0) {
			child_reaped(pid, status);
			continue;
		}
		if (pid == -1 && errno == EINTR)
			continue;
		break;
	}
}

/* Reaps what has exited, forgets every callback, removes the handler. */
void
child_shutdown(void)
{
	struct child *c;

	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	while ((c = LIST_FIRST(&child.list)) != NULL) {
		LIST_REMOVE(c, entry);
		free(c);
	}
	if (child.sigchld != NULL) {
		event_free(child.sigchld);
		child.sigchld = NULL;
	}
}
