/*
 * child: the agent's child processes. Starts programs in process groups of
 * their own, reaps every child on SIGCHLD (orphans included: the agent is
 * PID 1, or a child subreaper elsewhere) and tells the owner of a child
 * when it has been reaped. Owns the SIGCHLD event and the table of watched
 * children.
 */
#ifndef SANDPOOL_CHILD_H
#define SANDPOOL_CHILD_H

#include <sys/types.h>
#include <stddef.h>

struct event_base;

/* A watched child was reaped; status as from waitpid(2). */
typedef void (*child_exit_cb)(pid_t, int status, void *arg);

/* What to start and how. */
struct child_spec {
	const char *path;  /* program; NULL: argv[0], searched on PATH */
	char *const *argv; /* NULL-terminated */
	char *const *envp; /* NULL: the agent's own environment */
	const char *cwd;   /* NULL or not a directory: / */
	int fds[3];	   /* stdin, stdout, stderr; -1: /dev/null */
	const int *extra;  /* descriptors that become 3, 4, ... */
	size_t nextra;
	child_exit_cb cb; /* called once, from the loop, when reaped */
	void *arg;
};

/* Installs the SIGCHLD handler on base. 0 or -1. */
int child_init(struct event_base *base);
/*
 * Forks and executes spec in a new process group (its pid is the group
 * id), with every other descriptor closed and the default signal
 * dispositions. A program that cannot be executed exits with status 127
 * after saying why on its standard error. Returns the pid, or -1 with
 * *cause (caller frees) if it could not fork.
 */
pid_t child_spawn(const struct child_spec *spec, char **cause);
/* Forgets pid's callback: the child is still reaped, silently. */
void child_forget(pid_t pid);
/* The full path of an executable named name on $PATH (caller frees). */
char *child_which(const char *name);
/* Builds "K=V" strings: the agent's environment with sets applied. */
char **child_env_merge(char *const *sets);
/* Reaps what has exited and removes the handler. */
void child_shutdown(void);

#endif
