/*
 * sandpool-agent: the runtime inside each sandbox container (spec section
 * 6). agent.c owns the HTTP server (evhttp on TCP and a unix socket), the
 * bearer-token check, the routes and the process lifetime (PID 1 duties,
 * signals). shell.c owns the children: it runs /bin/sh -c commands in their
 * own process groups, captures their output, enforces deadlines and reaps
 * every child (orphans included) on SIGCHLD.
 */
#ifndef SANDPOOL_AGENT_H
#define SANDPOOL_AGENT_H

#include <stddef.h>

struct event_base;

/* Default TCP port, unix socket, workspace and per-stream output cap. */
#define AGENT_DEFAULT_PORT 80
#define AGENT_DEFAULT_SOCKET "/run/sandpool/agent.sock"
#define AGENT_DEFAULT_WORKDIR "/workspace"
#define AGENT_DEFAULT_MAX_OUTPUT (8 * 1024 * 1024)
/* Largest request body and header block evhttp accepts. */
#define AGENT_MAX_BODY (16 * 1024 * 1024)
#define AGENT_MAX_HEADERS (64 * 1024)
/* Seconds an idle kept-alive connection stays open. */
#define AGENT_IDLE_TIMEOUT 300
/* Longest accepted "timeout" of run_shell_command, in seconds. */
#define AGENT_MAX_CMD_TIMEOUT (365.0 * 24 * 3600)

/*
 * Return code reported for a command killed at its deadline: the command
 * is killed with SIGKILL, and like Python's subprocess (which the upstream
 * runtime uses) a child killed by signal N reports -N.
 */
#define SHELL_TIMEOUT_RETURNCODE (-9)

/* What a finished command produced; the strings are borrowed. */
struct shell_result {
	const char *out; /* stdout, plus a truncation marker */
	size_t out_len;
	const char *err; /* stderr, plus truncation and timeout notes */
	size_t err_len;
	int returncode; /* exit status, or -signal */
	int timed_out;
};

struct shell_cmd;
typedef void (*shell_done_cb)(const struct shell_result *, void *arg);

/*
 * Sets up the shell module on base: commands run in workdir (or / if that
 * is not a directory), each output stream is capped at max_output bytes.
 * Installs the SIGCHLD handler that reaps every child. 0 or -1.
 */
int shell_init(struct event_base *base, const char *workdir, size_t max_output);
/*
 * Starts /bin/sh -c command in its own process group, stdin /dev/null.
 * timeout > 0 kills the whole group after that many seconds. cb is called
 * exactly once, later, from the event loop, unless shell_cancel() is
 * called first. NULL with *cause (caller frees) if it cannot start.
 */
struct shell_cmd *shell_run(const char *command, double timeout,
    shell_done_cb cb, void *arg, char **cause);
/*
 * Forgets cb: the command keeps running (as the upstream runtime's does)
 * until it ends or its deadline, and is then reaped and freed silently.
 */
void shell_cancel(struct shell_cmd *);
/* Number of commands started and not yet freed. */
size_t shell_count(void);
/* Kills every process group still running and frees everything. */
void shell_shutdown(void);

#endif
