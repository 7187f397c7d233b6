/*
 * fuzz_agent_http: sandpool-agent's request handling as it is today: raw
 * bytes sent to its unix socket, through evhttp's parser, the token check,
 * the router and the JSON bodies of the tool routes. Commands are not run:
 * the shell module is replaced by a stub that answers from the loop, as
 * the real one does. Each input is one connection, driven until the agent
 * closes it or has nothing more to do; then it is closed.
 */
#define main agent_main
#include "../../src/agent/agent.c"
#undef main

#include <stdint.h>

int LLVMFuzzerInitialize(int *, char ***);
int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* ---- A shell that runs nothing ------------------------------------- */

struct shell_cmd {
	struct event *ev;
	shell_done_cb cb;
	void *arg;
	char *out;
};

static size_t stub_live;

/* Answers a stub command from the loop: stdout is the command. */
static void
stub_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct shell_cmd *c = arg;
	struct shell_result r;

	(void)fd;
	(void)what;
	memset(&r, 0, sizeof r);
	r.out = c->out;
	r.out_len = strlen(c->out);
	r.err = "";
	r.returncode = 0;
	if (c->cb != NULL)
		c->cb(&r, c->arg);
	event_free(c->ev);
	free(c->out);
	free(c);
	stub_live--;
}

int
shell_init(struct event_base *base, const char *workdir, size_t max_output)
{
	(void)base;
	(void)workdir;
	(void)max_output;
	return 0;
}

struct shell_cmd *
shell_run(const char *command, double timeout, shell_done_cb cb, void *arg,
    char **cause)
{
	struct shell_cmd *c;

	(void)timeout;
	if (command[0] == '!') {
		*cause = xstrdup("the stub refuses commands starting with !");
		return NULL;
	}
	c = xcalloc(1, sizeof *c);
	c->cb = cb;
	c->arg = arg;
	c->out = xstrdup(command);
	c->ev = event_new(agent.base, -1, 0, stub_on_done, c);
	event_active(c->ev, EV_TIMEOUT, 1);
	stub_live++;
	return c;
}

void
shell_cancel(struct shell_cmd *c)
{
	if (c != NULL)
		c->cb = NULL;
}

size_t
shell_count(void)
{
	return stub_live;
}

void
shell_shutdown(void)
{
}

/* ---- The harness --------------------------------------------------- */

static char fuzz_sock[128];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char tmpl[] = "/tmp/fuzz-agent.XXXXXX";

	(void)argc;
	(void)argv;
	log_init("fuzz_agent_http", LOG_LEVEL_CRIT);
	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(tmpl) == NULL)
		abort();
	snprintf(fuzz_sock, sizeof fuzz_sock, "%s/agent.sock", tmpl);
	setenv("SECRET_TOKEN", "fuzz-token", 1);
	setenv("SANDPOOL_AGENT_PORT", "0", 1);
	setenv("SANDPOOL_AGENT_SOCKET", fuzz_sock, 1);
	setenv("SANDPOOL_AGENT_WORKDIR", "/tmp", 1);
	TAILQ_INIT(&agent.reqs);
	agent_configure();
	if ((agent.base = event_base_new()) == NULL || agent_serve() != 0)
		abort();
	return 0;
}

/* Runs the loop once without blocking. */
static void
fuzz_spin(int times)
{
	while (times-- > 0)
		event_base_loop(agent.base, EVLOOP_NONBLOCK);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sun;
	size_t off = 0;
	char buf[4096];
	ssize_t n;
	int fd, i, idle = 0;

	if (size > 256 * 1024)
		return 0;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", fuzz_sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0)
		abort();
	fuzz_spin(2);
	/* Send everything, letting the agent read as the buffers fill. */
	while (off < size && idle < 1000) {
		n = send(fd, data + off, size - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			idle = 0;
		} else if (n == -1 && errno != EAGAIN)
			break;
		else
			idle++;
		fuzz_spin(1);
	}
	shutdown(fd, SHUT_WR);
	/* Read until the agent closes or has been quiet for a while. */
	for (i = 0, idle = 0; i < 2000 && idle < 20; i++) {
		fuzz_spin(1);
		n = recv(fd, buf, sizeof buf, 0);
		if (n == 0)
			break;
		idle = n > 0 ? 0 : idle + 1;
	}
	close(fd);
	fuzz_spin(20);
	return 0;
}
