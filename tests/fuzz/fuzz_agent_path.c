/*
 * fuzz_agent_path: the agent's workspace path rules (src/agent/wspace.c):
 * ws_resolve normalises a client's path, ws_open opens it beneath the
 * workspace. The workspace holds a file, a directory, a symbolic link to
 * /etc and one to "..". Properties: an accepted path's absolute form lies
 * under the workspace and its relative form has no ".." component; any
 * file descriptor ws_open returns names something under the workspace.
 */
#include "../../src/agent/ahttp.c"
#include "../../src/agent/multipart.c"
#include "../../src/agent/wspace.c"

#include <ftw.h>

#include <stdint.h>

int LLVMFuzzerInitialize(int *, char ***);
int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The agent's reply helpers wspace.c calls; never reached here. */
void
agent_reply(struct ahttp_req *req, int code, const char *ctype,
    const char *body, size_t len)
{
	ahttp_reply(req, code, ctype, body, len);
}

void
agent_reply_json(struct ahttp_req *req, int code, char *json, size_t len)
{
	ahttp_reply(req, code, "application/json", json, len);
	free(json);
}

void
agent_reply_detail(struct ahttp_req *req, int code, const char *msg)
{
	ahttp_reply(req, code, "text/plain", msg, strlen(msg));
}

char *
agent_query(struct ahttp_req *req, const char *name)
{
	(void)req;
	(void)name;
	return NULL;
}

static char fuzz_ws[PATH_MAX];

const char *
agent_workdir(void)
{
	return fuzz_ws;
}

/* nftw visitor removing the workspace at exit. */
static int
fuzz_rm(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

/* Removes the private workspace. */
static void
fuzz_cleanup(void)
{
	nftw(fuzz_ws, fuzz_rm, 8, FTW_DEPTH | FTW_PHYS);
}

/* A private workspace with traps in it. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char tmpl[] = "/tmp/fuzz-ws.XXXXXX", p[PATH_MAX + 16];
	int fd;

	(void)argc;
	(void)argv;
	log_init("fuzz_agent_path", LOG_LEVEL_CRIT);
	if (mkdtemp(tmpl) == NULL)
		abort();
	snprintf(fuzz_ws, sizeof fuzz_ws, "%s", tmpl);
	snprintf(p, sizeof p, "%s/d", fuzz_ws);
	mkdir(p, 0755);
	snprintf(p, sizeof p, "%s/d/f", fuzz_ws);
	if ((fd = open(p, O_CREAT | O_WRONLY, 0644)) >= 0)
		close(fd);
	snprintf(p, sizeof p, "%s/etc", fuzz_ws);
	if (symlink("/etc", p) != 0)
		abort();
	snprintf(p, sizeof p, "%s/d/up", fuzz_ws);
	if (symlink("../..", p) != 0)
		abort();
	ws_init(fuzz_ws, 0);
	atexit(fuzz_cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *path, link[64], target[PATH_MAX];
	struct ws_path wp;
	size_t wl = strlen(fuzz_ws);
	ssize_t n;
	int root, fd;

	if (size > 4096 || memchr(data, '\0', size) != NULL)
		return 0;
	path = xstrndup((const char *)data, size);
	if (ws_resolve(path, &wp) == 0) {
		if (strncmp(wp.abs, fuzz_ws, wl) != 0 ||
		    (wp.abs[wl] != '\0' && wp.abs[wl] != '/'))
			abort();
		if (wp.rel[0] == '/' || strcmp(wp.rel, "..") == 0 ||
		    strncmp(wp.rel, "../", 3) == 0 ||
		    strstr(wp.rel, "/../") != NULL ||
		    (strlen(wp.rel) >= 3 &&
			strcmp(wp.rel + strlen(wp.rel) - 3, "/..") == 0))
			abort();
		if ((root = ws_root()) >= 0) {
			fd = ws_open(root, wp.rel, O_RDONLY | O_NONBLOCK, 0);
			if (fd >= 0) {
				snprintf(
				    link, sizeof link, "/proc/self/fd/%d", fd);
				n = readlink(link, target, sizeof target - 1);
				if (n > 0) {
					target[n] = '\0';
					if (strncmp(target, fuzz_ws, wl) != 0)
						abort(); /* escaped */
				}
				close(fd);
			}
			close(root);
		}
		ws_path_free(&wp);
	}
	free(path);
	return 0;
}
