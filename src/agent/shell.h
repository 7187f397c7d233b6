/*
 * shell: commands run for the agent. Runs "/bin/sh -c <command>" (or a
 * program with its arguments) in a process group of its own with standard
 * input on /dev/null, captures standard output and error through
 * non-blocking pipes (each capped, with a truncation marker), and kills the
 * whole group at an optional deadline. Owns every struct shell_cmd.
 */
#ifndef SANDPOOL_SHELL_H
#define SANDPOOL_SHELL_H

#include <stddef.h>

struct event_base;

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
 * Sets up the module: commands run in workdir (or / if that is not a
 * directory), each output stream is capped at max_output bytes. 0 or -1.
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
/* Like shell_run(), for argv[0] (searched on PATH) with its arguments. */
struct shell_cmd *shell_run_argv(char *const *argv, double timeout,
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
