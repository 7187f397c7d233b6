/*
 * python: run_ipython_cell (see python.h). The interpreter runs the driver
 * of pydriver.py (compiled in as a string) with "python3 -u -c"; cells go
 * to it on a pipe (its fd 3) and it reports on another (its fd 4), each
 * message a 4-byte big-endian length and a JSON object. Its standard
 * output and error are pipes read all the time; what arrives while a cell
 * runs is that cell's output, and when the driver reports the cell done,
 * the pipes are drained before answering (everything the cell wrote is in
 * them by then). Owns the interpreter, its pipes and the queue of cells.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/wait.h>

#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "agent.h"
#include "ahttp.h"
#include "child.h"
#include "json.h"
#include "log.h"
#include "python.h"
#include "result.h"
#include "xmalloc.h"

#include "pydriver.h" /* python_driver[]: pydriver.py as a string */

/* Largest message the driver may send. */
#define PYTHON_MAX_FRAME (1024 * 1024)
/* Bytes read from a pipe per read(2). */
#define PYTHON_READ_CHUNK 65536

/* What the notes say when state is lost. */
#define PYTHON_LOST_NOTE                                                       \
	"[the Python interpreter was restarted: variables, imports and "       \
	"functions defined by earlier cells are lost]\n"

struct python_cell {
	TAILQ_ENTRY(python_cell) entry;
	unsigned long id;
	char *code;
	double timeout;
	struct agent_pending *p; /* NULL once its client is gone */
	struct event *deadline;
	int interrupted; /* SIGINT sent at the deadline */
	int killed;	 /* SIGKILL sent after the grace */
	int lost;	 /* say that earlier state is lost */
};

/* A captured output stream, capped like a command's. */
enum python_state {
	PY_DOWN,     /* no interpreter */
	PY_STARTING, /* started, "ready" not seen yet */
	PY_READY     /* running cells */
};

static struct {
	struct event_base *base;
	char *workdir;
	char *interp;
	int ipython;
	size_t max_output;

	enum python_state state;
	pid_t pid;
	int cmd_fd, resp_fd, out_fd, err_fd;
	struct event *ev_cmd, *ev_resp, *ev_out, *ev_err;
	struct evbuffer *cmd_buf, *resp_buf;
	struct result_buf out, err;
	int is_ipython;
	int had_state; /* the interpreter ran a cell */
	int lost;      /* an interpreter with state died */

	TAILQ_HEAD(, python_cell) cells;
	struct python_cell *current;
	unsigned long next_id;
	struct event *kick;
	struct event *kill_timer;
} py;

static void python_on_kick(evutil_socket_t, short, void *);
static void python_on_exit(pid_t, int, void *);
static void python_on_cmd(evutil_socket_t, short, void *);
static void python_on_resp(evutil_socket_t, short, void *);
static void python_on_output(evutil_socket_t, short, void *);
static void python_on_deadline(evutil_socket_t, short, void *);
static void python_parse_frames(void);
static void python_on_kill(evutil_socket_t, short, void *);

/* Sets the module up. */
int
python_init(struct event_base *base, const char *workdir, const char *interp,
    int ipython, size_t max_output)
{
	py.base = base;
	py.workdir = xstrdup(workdir);
	py.interp = xstrdup(interp);
	py.ipython = ipython;
	py.max_output = max_output;
	py.cmd_fd = py.resp_fd = py.out_fd = py.err_fd = -1;
	TAILQ_INIT(&py.cells);
	py.kick = evtimer_new(base, python_on_kick, NULL);
	py.kill_timer = evtimer_new(base, python_on_kill, NULL);
	py.cmd_buf = evbuffer_new();
	py.resp_buf = evbuffer_new();
	if (py.kick == NULL || py.kill_timer == NULL || py.cmd_buf == NULL ||
	    py.resp_buf == NULL)
		return -1;
	return 0;
}

/* Schedules the kick: start the interpreter or the next cell. */
static void
python_kick(void)
{
	struct timeval tv = {0, 0};

	evtimer_add(py.kick, &tv);
}

/* Frees a cell (it is out of the queue). */
static void
python_cell_free(struct python_cell *cell)
{
	if (cell->deadline != NULL)
		event_free(cell->deadline);
	free(cell->code);
	free(cell);
}

/* Answers a cell: stdout always, stderr when not empty (spec 6.4). */
static void
python_answer(struct python_cell *cell, const char *note)
{
	struct result_buf *o = &py.out, *e = &py.err;
	struct evbuffer *out, *err;
	size_t len, olen, elen;
	const char *otext, *etext;
	yajl_gen g;
	char *json;

	if (cell->p == NULL)
		return;
	out = evbuffer_new();
	err = evbuffer_new();
	evbuffer_add(out, o->buf != NULL ? o->buf : "", o->len);
	if (o->dropped > 0)
		evbuffer_add_printf(out,
		    "\n[output truncated: %zu bytes "
		    "dropped]",
		    o->dropped);
	if (cell->lost)
		evbuffer_add_printf(err, "%s", PYTHON_LOST_NOTE);
	evbuffer_add(err, e->buf != NULL ? e->buf : "", e->len);
	if (e->dropped > 0)
		evbuffer_add_printf(err,
		    "\n[output truncated: %zu bytes "
		    "dropped]",
		    e->dropped);
	if (note != NULL) {
		elen = evbuffer_get_length(err);
		if (elen > 0) {
			etext = (const char *)evbuffer_pullup(err, -1);
			if (etext[elen - 1] != '\n')
				evbuffer_add(err, "\n", 1);
		}
		evbuffer_add_printf(err, "%s", note);
	}
	olen = evbuffer_get_length(out);
	elen = evbuffer_get_length(err);
	otext = olen > 0 ? (const char *)evbuffer_pullup(out, -1) : "";
	etext = elen > 0 ? (const char *)evbuffer_pullup(err, -1) : "";
	g = result_open();
	result_text(g, otext, olen, "stdout");
	if (elen > 0)
		result_text(g, etext, elen, "stderr");
	json = result_close(g, elen > 0, &len);
	evbuffer_free(out);
	evbuffer_free(err);
	agent_pending_reply_json(cell->p, 200, json, len);
	cell->p = NULL;
}

/* Answers a cell with only an error text (no interpreter ran it). */
static void
python_answer_error(struct python_cell *cell, const char *msg)
{
	result_buf_reset(&py.out);
	result_buf_reset(&py.err);
	result_buf_add(&py.err, msg, strlen(msg), py.max_output);
	python_answer(cell, NULL);
	result_buf_reset(&py.err);
}

/* The client of a cell went away: drop it, or let it finish unheard. */
static void
python_cancel(void *op)
{
	struct python_cell *cell = op;

	cell->p = NULL;
	if (cell == py.current)
		return;
	TAILQ_REMOVE(&py.cells, cell, entry);
	python_cell_free(cell);
}

/* POST /tools/run_ipython_cell {"code": str, "timeout": seconds}. */
void
python_route_cell(struct ahttp_req *req, yajl_val body)
{
	struct python_cell *cell;
	const char *code;
	double timeout;

	if ((code = json_get_str(body, "code")) == NULL) {
		agent_reply_detail(
		    req, 422, "field 'code' is required and must be a string");
		return;
	}
	if (*code == '\0') {
		agent_reply_detail(req, 500, "400: code is empty");
		return;
	}
	if ((timeout = agent_get_timeout(body)) < 0) {
		agent_reply_detail(req, 422,
		    "field 'timeout' must be a positive number of seconds");
		return;
	}
	cell = xcalloc(1, sizeof *cell);
	cell->id = ++py.next_id;
	cell->code = xstrdup(code);
	cell->timeout = timeout;
	cell->p = agent_pending_new(req);
	agent_pending_set(cell->p, python_cancel, cell);
	TAILQ_INSERT_TAIL(&py.cells, cell, entry);
	python_kick();
}

/* Closes one of the interpreter's pipes and its event. */
static void
python_close(int *fd, struct event **ev)
{
	if (*ev != NULL) {
		event_free(*ev);
		*ev = NULL;
	}
	if (*fd != -1) {
		close(*fd);
		*fd = -1;
	}
}

/* Watches a pipe end of ours. */
static struct event *
python_watch(int fd, short what, event_callback_fn cb, void *arg)
{
	struct event *ev;

	evutil_make_socket_nonblocking(fd);
	ev = event_new(py.base, fd, what | EV_PERSIST, cb, arg);
	if (ev == NULL)
		fatalx("python: cannot watch a pipe");
	if (what & EV_READ)
		event_add(ev, NULL);
	return ev;
}

/* Answers every queued cell with msg (the interpreter cannot run). */
static void
python_fail_all(const char *msg)
{
	struct python_cell *cell;

	while ((cell = TAILQ_FIRST(&py.cells)) != NULL) {
		TAILQ_REMOVE(&py.cells, cell, entry);
		python_answer_error(cell, msg);
		python_cell_free(cell);
	}
}

/* Starts the interpreter. 0, or -1 after failing the queued cells. */
static int
python_spawn(void)
{
	int cmd[2] = {-1, -1}, resp[2] = {-1, -1}, out[2] = {-1, -1};
	int err[2] = {-1, -1}, extra[2];
	char *argv[6], *path, *cause, *msg;
	struct child_spec spec;
	pid_t pid;

	if ((path = child_which(py.interp)) == NULL) {
		xasprintf(&msg,
		    "run_ipython_cell: %s is not available in "
		    "this sandbox (not found on PATH)\n",
		    py.interp);
		log_info("python: %s not found on PATH", py.interp);
		python_fail_all(msg);
		free(msg);
		return -1;
	}
	if (pipe2(cmd, O_CLOEXEC) == -1 || pipe2(resp, O_CLOEXEC) == -1 ||
	    pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1) {
		xasprintf(
		    &msg, "run_ipython_cell: pipe: %s\n", strerror(errno));
		goto fail;
	}
	argv[0] = path;
	argv[1] = "-u";
	argv[2] = "-c";
	argv[3] = (char *)python_driver;
	argv[4] = py.ipython ? "ipython" : "plain";
	argv[5] = NULL;
	memset(&spec, 0, sizeof spec);
	spec.argv = argv;
	spec.cwd = py.workdir;
	spec.fds[0] = -1;
	spec.fds[1] = out[1];
	spec.fds[2] = err[1];
	extra[0] = cmd[0];
	extra[1] = resp[1];
	spec.extra = extra;
	spec.nextra = 2;
	spec.cb = python_on_exit;
	if ((pid = child_spawn(&spec, &cause)) == -1) {
		xasprintf(&msg, "run_ipython_cell: cannot start %s: %s\n",
		    py.interp, cause);
		free(cause);
		goto fail;
	}
	free(path);
	close(cmd[0]);
	close(resp[1]);
	close(out[1]);
	close(err[1]);
	py.pid = pid;
	py.cmd_fd = cmd[1];
	py.resp_fd = resp[0];
	py.out_fd = out[0];
	py.err_fd = err[0];
	py.ev_cmd = python_watch(py.cmd_fd, EV_WRITE, python_on_cmd, NULL);
	py.ev_resp = python_watch(py.resp_fd, EV_READ, python_on_resp, NULL);
	py.ev_out = python_watch(py.out_fd, EV_READ, python_on_output, &py.out);
	py.ev_err = python_watch(py.err_fd, EV_READ, python_on_output, &py.err);
	evbuffer_drain(py.cmd_buf, evbuffer_get_length(py.cmd_buf));
	evbuffer_drain(py.resp_buf, evbuffer_get_length(py.resp_buf));
	result_buf_reset(&py.out);
	result_buf_reset(&py.err);
	py.state = PY_STARTING;
	log_info("python: pid=%ld: started %s", (long)pid, py.interp);
	return 0;

fail:
	free(path);
	for (int i = 0; i < 2; i++) {
		if (cmd[i] != -1)
			close(cmd[i]);
		if (resp[i] != -1)
			close(resp[i]);
		if (out[i] != -1)
			close(out[i]);
		if (err[i] != -1)
			close(err[i]);
	}
	log_warnx("python: %s", msg);
	python_fail_all(msg);
	free(msg);
	return -1;
}

/* Sends the next cell to the interpreter. */
static void
python_start_cell(void)
{
	struct python_cell *cell = TAILQ_FIRST(&py.cells);
	uint32_t be;
	yajl_gen g;
	char *json;
	size_t len;

	py.current = cell;
	result_buf_reset(&py.out);
	result_buf_reset(&py.err);
	if (py.lost) {
		cell->lost = 1;
		py.lost = 0;
	}
	g = json_gen_new();
	yajl_gen_map_open(g);
	json_gen_str(g, "id");
	json_gen_int(g, (long long)cell->id);
	json_gen_str(g, "code");
	json_gen_str(g, cell->code);
	yajl_gen_map_close(g);
	json = json_gen_done(g, &len);
	be = htonl((uint32_t)len);
	evbuffer_add(py.cmd_buf, &be, 4);
	evbuffer_add(py.cmd_buf, json, len);
	free(json);
	event_add(py.ev_cmd, NULL);
	py.had_state = 1;
	if (cell->timeout > 0) {
		struct timeval tv;

		tv.tv_sec = (time_t)cell->timeout;
		tv.tv_usec =
		    (suseconds_t)((cell->timeout - (double)tv.tv_sec) * 1e6);
		cell->deadline = evtimer_new(py.base, python_on_deadline, cell);
		if (cell->deadline == NULL ||
		    evtimer_add(cell->deadline, &tv) == -1)
			fatalx("python: cannot arm a deadline");
	}
	log_debug("python: cell %lu: started", cell->id);
}

/* Starts the interpreter or the next cell, whichever is due. */
static void
python_on_kick(evutil_socket_t fd, short what, void *arg)
{
	if (TAILQ_EMPTY(&py.cells))
		return;
	switch (py.state) {
	case PY_DOWN:
		python_spawn();
		break;
	case PY_STARTING:
		break;
	case PY_READY:
		if (py.current == NULL)
			python_start_cell();
		break;
	}
}

/* The command pipe can take more. */
static void
python_on_cmd(evutil_socket_t fd, short what, void *arg)
{
	if (evbuffer_write(py.cmd_buf, fd) == -1 && errno != EAGAIN &&
	    errno != EINTR) {
		/* The interpreter is gone; its exit is handled on SIGCHLD. */
		evbuffer_drain(py.cmd_buf, evbuffer_get_length(py.cmd_buf));
	}
	if (evbuffer_get_length(py.cmd_buf) == 0)
		event_del(py.ev_cmd);
}

/* Reads what a pipe holds into its capture; 1 at end of file. */
static int
python_read_pipe(int fd, struct result_buf *c, int max_reads)
{
	char chunk[PYTHON_READ_CHUNK];
	ssize_t n;

	while (max_reads-- > 0) {
		n = read(fd, chunk, sizeof chunk);
		if (n > 0) {
			/* Output outside a cell (a background thread) is
			 * dropped; before "ready", stderr is kept. */
			if (py.current != NULL ||
			    (py.state == PY_STARTING && c == &py.err))
				result_buf_add(
				    c, chunk, (size_t)n, py.max_output);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return 0;
		return 1;
	}
	return 0;
}

/* The interpreter's stdout or stderr has data. */
static void
python_on_output(evutil_socket_t fd, short what, void *arg)
{
	struct result_buf *c = arg;

	if (python_read_pipe(fd, c, 1)) {
		if (c == &py.out)
			python_close(&py.out_fd, &py.ev_out);
		else
			python_close(&py.err_fd, &py.ev_err);
	}
}

/* Reads everything the output pipes hold right now. */
static void
python_drain_output(void)
{
	if (py.out_fd != -1 && python_read_pipe(py.out_fd, &py.out, 1 << 20))
		python_close(&py.out_fd, &py.ev_out);
	if (py.err_fd != -1 && python_read_pipe(py.err_fd, &py.err, 1 << 20))
		python_close(&py.err_fd, &py.ev_err);
}

/* The current cell is over: answer it, then go on. */
static void
python_finish_cell(const char *note)
{
	struct python_cell *cell = py.current;

	py.current = NULL;
	event_del(py.kill_timer);
	TAILQ_REMOVE(&py.cells, cell, entry);
	python_answer(cell, note);
	log_debug("python: cell %lu: done", cell->id);
	python_cell_free(cell);
	result_buf_reset(&py.out);
	result_buf_reset(&py.err);
	python_kick();
}

/* Kills the interpreter's whole process group. */
static void
python_kill(void)
{
	if (py.pid > 0 && kill(-py.pid, SIGKILL) == -1)
		kill(py.pid, SIGKILL);
}

/* One message from the driver. */
static void
python_on_frame(yajl_val v)
{
	struct python_cell *cell = py.current;
	char note[160];
	long long id;
	int b;

	if (json_get_bool(v, "ready", &b) == 0) {
		json_get_bool(v, "ipython", &py.is_ipython);
		log_info("python: pid=%ld: ready (Python %s, %s)", (long)py.pid,
		    json_get_str(v, "python") != NULL
			? json_get_str(v, "python")
			: "?",
		    py.is_ipython ? "IPython" : "plain");
		py.state = PY_READY;
		result_buf_reset(&py.err);
		python_kick();
		return;
	}
	if (json_get_int(v, "done", &id) == 0) {
		if (cell == NULL || (unsigned long)id != cell->id) {
			log_warnx(
			    "python: done for cell %lld, not running", id);
			return;
		}
		python_drain_output();
		if (cell->interrupted) {
			snprintf(note, sizeof note,
			    "cell timed out after %g s: interrupted\n",
			    cell->timeout);
			python_finish_cell(note);
		} else
			python_finish_cell(NULL);
		return;
	}
	log_warnx("python: unexpected message from the driver");
}

/* The report pipe has data: read and handle whole messages. */
static void
python_on_resp(evutil_socket_t fd, short what, void *arg)
{
	int r;

	r = evbuffer_read(py.resp_buf, fd, PYTHON_READ_CHUNK);
	if (r == 0 || (r == -1 && errno != EAGAIN && errno != EINTR)) {
		/* End of file: the exit is handled on SIGCHLD. */
		python_close(&py.resp_fd, &py.ev_resp);
	}
	python_parse_frames();
}

/* Handles the whole messages the report buffer holds. */
static void
python_parse_frames(void)
{
	unsigned char head[4];
	char *cause, *frame;
	uint32_t n;
	yajl_val v;

	while (evbuffer_copyout(py.resp_buf, head, 4) == 4) {
		n = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 |
		    (uint32_t)head[2] << 8 | head[3];
		if (n > PYTHON_MAX_FRAME) {
			log_warnx("python: message of %u bytes: killing the "
				  "interpreter",
			    n);
			evbuffer_drain(
			    py.resp_buf, evbuffer_get_length(py.resp_buf));
			python_kill();
			return;
		}
		if (evbuffer_get_length(py.resp_buf) < 4 + (size_t)n)
			return;
		evbuffer_drain(py.resp_buf, 4);
		frame = xmalloc(n + 1);
		evbuffer_remove(py.resp_buf, frame, n);
		frame[n] = '\0';
		if ((v = json_parse(frame, n, &cause)) == NULL) {
			log_warnx("python: bad message: %s", cause);
			free(cause);
		} else {
			python_on_frame(v);
			yajl_tree_free(v);
		}
		free(frame);
	}
}

/* A cell's deadline: interrupt it, and kill it if it does not stop. */
static void
python_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct python_cell *cell = arg;
	struct timeval tv = {PYTHON_KILL_GRACE, 0};

	if (cell != py.current || py.pid <= 0)
		return;
	log_info("python: cell %lu: timed out after %g s: interrupting",
	    cell->id, cell->timeout);
	cell->interrupted = 1;
	kill(py.pid, SIGINT);
	evtimer_add(py.kill_timer, &tv);
}

/* The cell did not stop on SIGINT: kill the interpreter. */
static void
python_on_kill(evutil_socket_t fd, short what, void *arg)
{
	if (py.current == NULL)
		return;
	log_info("python: cell %lu: still running: killing the interpreter",
	    py.current->id);
	py.current->killed = 1;
	python_kill();
}

/* Describes how the interpreter ended. */
static void
python_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "status 0x%x", status);
}

/* The interpreter was reaped. */
static void
python_on_exit(pid_t pid, int status, void *arg)
{
	struct python_cell *cell = py.current;
	enum python_state was = py.state;
	char how[64], *note;

	python_status(status, how, sizeof how);
	log_info("python: pid=%ld: ended (%s)", (long)pid, how);
	/* Messages sent just before the end still count ("done"). */
	while (py.resp_fd != -1 &&
	    evbuffer_read(py.resp_buf, py.resp_fd, PYTHON_READ_CHUNK) > 0)
		;
	python_close(&py.resp_fd, &py.ev_resp);
	python_parse_frames();
	cell = py.current;
	python_drain_output();
	/* Whatever it left behind in its group goes too. */
	if (kill(-pid, SIGKILL) == -1 && errno != ESRCH)
		log_debug(
		    "python: kill group %ld: %s", (long)pid, strerror(errno));
	python_close(&py.cmd_fd, &py.ev_cmd);
	python_close(&py.resp_fd, &py.ev_resp);
	python_close(&py.out_fd, &py.ev_out);
	python_close(&py.err_fd, &py.ev_err);
	evbuffer_drain(py.cmd_buf, evbuffer_get_length(py.cmd_buf));
	evbuffer_drain(py.resp_buf, evbuffer_get_length(py.resp_buf));
	py.pid = 0;
	py.state = PY_DOWN;
	if (py.had_state)
		py.lost = 1;
	py.had_state = 0;
	if (was == PY_STARTING) {
		/* It never became ready: say why to the waiting cells. */
		xasprintf(&note,
		    "run_ipython_cell: the Python interpreter "
		    "(%s) exited before it was ready (%s)\n%.*s",
		    py.interp, how, (int)py.err.len,
		    py.err.buf != NULL ? py.err.buf : "");
		python_fail_all(note);
		free(note);
		result_buf_reset(&py.err);
		return;
	}
	if (cell != NULL) {
		if (cell->killed)
			xasprintf(&note,
			    "cell timed out after %g s and did not stop when "
			    "interrupted: the Python interpreter was killed; "
			    "variables, imports and functions defined by "
			    "earlier cells are lost\n",
			    cell->timeout);
		else
			xasprintf(&note,
			    "the Python interpreter died while running this "
			    "cell (%s); variables, imports and functions "
			    "defined by earlier cells are lost; a new one "
			    "starts with the next cell\n",
			    how);
		python_finish_cell(note);
		free(note);
		py.lost = 0; /* said here; the next cell starts afresh */
		return;
	}
	python_kick();
}

/* Kills the interpreter and frees every cell without answering. */
void
python_shutdown(void)
{
	struct python_cell *cell;

	if (py.pid > 0) {
		python_kill();
		child_forget(py.pid);
		py.pid = 0;
	}
	python_close(&py.cmd_fd, &py.ev_cmd);
	python_close(&py.resp_fd, &py.ev_resp);
	python_close(&py.out_fd, &py.ev_out);
	python_close(&py.err_fd, &py.ev_err);
	while ((cell = TAILQ_FIRST(&py.cells)) != NULL) {
		TAILQ_REMOVE(&py.cells, cell, entry);
		python_cell_free(cell);
	}
	py.current = NULL;
	if (py.kick != NULL)
		event_free(py.kick);
	if (py.kill_timer != NULL)
		event_free(py.kill_timer);
	if (py.cmd_buf != NULL)
		evbuffer_free(py.cmd_buf);
	if (py.resp_buf != NULL)
		evbuffer_free(py.resp_buf);
	result_buf_reset(&py.out);
	result_buf_reset(&py.err);
	free(py.workdir);
	free(py.interp);
}
