/*
 * python: run_ipython_cell. One persistent Python interpreter per sandbox,
 * started on the first cell, running a small driver (embedded here) that
 * uses IPython's InteractiveShell when the image has IPython and a plain
 * ast/exec executor otherwise. Cells are queued and run one at a time;
 * their standard output and error are captured at the descriptor level.
 * A dead interpreter is restarted on the next cell, which is told that
 * the earlier state is lost. Owns the interpreter and the cell queue.
 */
#ifndef SANDPOOL_PYTHON_H
#define SANDPOOL_PYTHON_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

struct event_base;
struct ahttp_req;

/* Seconds between SIGINT and SIGKILL for a cell past its timeout. */
#define PYTHON_KILL_GRACE 2

/*
 * Sets the module up: interpreters run interp (a name on PATH or a path)
 * in workdir; ipython 0 never tries IPython. 0 or -1.
 */
int python_init(struct event_base *base, const char *workdir,
    const char *interp, int ipython, size_t max_output);
/* POST /tools/run_ipython_cell {"code": str, "timeout": seconds}. */
void python_route_cell(struct ahttp_req *, yajl_val body);
/* Kills the interpreter and frees every cell without answering. */
void python_shutdown(void);

#endif
