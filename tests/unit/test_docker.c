/*
 * test_docker: the driver layer against the real dockerd at
 * /var/run/docker.sock. Every container made here is named
 * sandpool-test-docker-<pid>-N, labelled sandpool.owner=sandpool-test, and
 * removed at exit (atexit, blocking libcurl), even when a check fails.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "driver.h"
#include "hc.h"
#include "json.h"
#include "free_port.h"
#include "tap.h"

#ifndef SOCK
#define SOCK "/var/run/docker.sock"
#endif
#ifndef IMAGE
#define IMAGE "sandpool/busybox:latest"
#endif
#define OWNER "sandpool-test"

static struct event_base *base;
static struct hc *hc;
static struct drv *drv;
static char prefix[64];	   /* sandpool-test-docker-<pid>- */
static char run_label[64]; /* sandpool.test.run=<pid> */
static char bind_dir[128];
static char own_image[64];   /* imported by this test, removed at exit */
static char silent_sock[64]; /* the never-answering engine's socket */
static const char *image = IMAGE;
static int nnames;

/* A finished driver call, copied out of its reply. */
struct call {
	int done;
	int returned; /* the starting function had returned */
	int *flag;
	enum drv_err err;
	char *msg;
	char *id;
	struct drv_ctr *ctrs;
	size_t nctrs;
};

/* Copies a NULL-terminated string list. */
static char **
strv_copy(char **v)
{
	size_t n = 0, i;
	char **c;

	while (v != NULL && v[n] != NULL)
		n++;
	c = calloc(n + 1, sizeof *c);
	for (i = 0; i < n; i++)
		c[i] = strdup(v[i]);
	return c;
}

/* Frees a call's copies. */
static void
call_clear(struct call *c)
{
	size_t i;
	char **l;

	for (i = 0; i < c->nctrs; i++) {
		free(c->ctrs[i].id);
		free(c->ctrs[i].name);
		free(c->ctrs[i].state);
		for (l = c->ctrs[i].labels; l && *l; l++)
			free(*l);
		free(c->ctrs[i].labels);
	}
	free(c->ctrs);
	free(c->msg);
	free(c->id);
	memset(c, 0, sizeof *c);
}

/* Records a reply. */
static void
on_reply(const struct drv_reply *r, void *arg)
{
	struct call *c = arg;
	size_t i;

	c->done++;
	c->returned = c->flag != NULL ? *c->flag : -1;
	c->err = r->err;
	c->msg = r->msg ? strdup(r->msg) : NULL;
	c->id = r->id ? strdup(r->id) : NULL;
	c->nctrs = r->nctrs;
	c->ctrs = calloc(r->nctrs + 1, sizeof *c->ctrs);
	for (i = 0; i < r->nctrs; i++) {
		c->ctrs[i].id = strdup(r->ctrs[i].id);
		c->ctrs[i].name = strdup(r->ctrs[i].name);
		c->ctrs[i].state = strdup(r->ctrs[i].state);
		c->ctrs[i].labels = strv_copy(r->ctrs[i].labels);
		c->ctrs[i].host_port = r->ctrs[i].host_port;
	}
}

/* Sets *arg when the guard timer fires. */
static void
on_guard(evutil_socket_t fd, short what, void *arg)
{
	*(int *)arg = 1;
}

/* Runs the loop until c is called back (60 s at most). */
static void
wait_call(struct call *c)
{
	struct timeval tv = {60, 0};
	int expired = 0;
	struct event *guard = evtimer_new(base, on_guard, &expired);

	evtimer_add(guard, &tv);
	while (!c->done && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
}

/* Runs the loop for ms. */
static void
run_for(int ms)
{
	struct call never;

	memset(&never, 0, sizeof never);
	{
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		int expired = 0;
		struct event *guard = evtimer_new(base, on_guard, &expired);

		evtimer_add(guard, &tv);
		while (!expired)
			event_base_loop(base, EVLOOP_ONCE);
		event_free(guard);
	}
}

/* Quits on SIGINT/SIGTERM through exit(), so that cleanup runs. */
static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	exit(1);
}

/* Collects a blocking response body. */
static size_t
raw_write(char *p, size_t size, size_t n, void *arg)
{
	struct {
		char *b;
		size_t len;
	} *buf = arg;

	n *= size;
	buf->b = realloc(buf->b, buf->len + n + 1);
	memcpy(buf->b + buf->len, p, n);
	buf->len += n;
	buf->b[buf->len] = '\0';
	return n;
}

/* A blocking request to dockerd; returns the body (caller frees). */
static char *
raw(const char *method, const char *path, long *status)
{
	struct {
		char *b;
		size_t len;
	} buf = {NULL, 0};
	char url[1024];
	CURL *e = curl_easy_init();

	snprintf(url, sizeof url, "http://docker%s", path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, SOCK);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, raw_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &buf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	*status = 0;
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(e);
	if (buf.b == NULL)
		buf.b = strdup("");
	return buf.b;
}

/* The ids of this run's containers, by label and name prefix. */
static yajl_val
raw_list_mine(void)
{
	char filters[512], *esc, path[1024], *body, *cause;
	long status;
	yajl_val v;

	snprintf(filters, sizeof filters,
	    "{\"label\":[\"sandpool.owner=" OWNER "\"],\"name\":[\"%s\"]}",
	    prefix);
	esc = curl_easy_escape(NULL, filters, 0);
	snprintf(
	    path, sizeof path, "/v1.41/containers/json?all=1&filters=%s", esc);
	curl_free(esc);
	body = raw("GET", path, &status);
	v = status == 200 ? json_parse(body, strlen(body), &cause) : NULL;
	if (status == 200 && v == NULL)
		free(cause);
	free(body);
	return v;
}

/* Removes every container of this run; returns how many it removed. */
static int
cleanup_containers(void)
{
	yajl_val v = raw_list_mine();
	char path[256], *body;
	const char *id;
	long status;
	size_t i;
	int n = 0;

	if (v == NULL || !YAJL_IS_ARRAY(v)) {
		yajl_tree_free(v);
		return 0;
	}
	for (i = 0; i < v->u.array.len; i++) {
		if ((id = json_get_str(v->u.array.values[i], "Id")) == NULL)
			continue;
		snprintf(
		    path, sizeof path, "/v1.41/containers/%s?force=1&v=1", id);
		body = raw("DELETE", path, &status);
		free(body);
		n++;
	}
	yajl_tree_free(v);
	return n;
}

/* Whether a test run's process is gone. */
static int
pid_dead(int pid)
{
	return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH;
}

/*
 * Removes what earlier runs left when they died without running atexit
 * (a crash): containers and images whose run's process is gone.
 */
static void
sweep_dead_runs(void)
{
	char path[1024], *body, *cause, *esc;
	const char *run, *id, *tag;
	yajl_val v, e, tags;
	long status;
	size_t i, j;
	glob_t g;

	esc = curl_easy_escape(NULL,
	    "{\"label\":[\"sandpool.owner=" OWNER "\",\"sandpool.test.run\"]}",
	    0);
	snprintf(
	    path, sizeof path, "/v1.41/containers/json?all=1&filters=%s", esc);
	curl_free(esc);
	body = raw("GET", path, &status);
	v = json_parse(body, strlen(body), &cause);
	free(body);
	free(cause);
	for (i = 0; v && YAJL_IS_ARRAY(v) && i < v->u.array.len; i++) {
		e = v->u.array.values[i];
		run = json_get_str(json_get(e, "Labels"), "sandpool.test.run");
		id = json_get_str(e, "Id");
		if (run == NULL || id == NULL || !pid_dead(atoi(run)))
			continue;
		snprintf(
		    path, sizeof path, "/v1.41/containers/%s?force=1&v=1", id);
		free(raw("DELETE", path, &status));
	}
	yajl_tree_free(v);

	esc = curl_easy_escape(
	    NULL, "{\"reference\":[\"sandpool-test/busybox\"]}", 0);
	snprintf(path, sizeof path, "/v1.41/images/json?filters=%s", esc);
	curl_free(esc);
	body = raw("GET", path, &status);
	v = json_parse(body, strlen(body), &cause);
	free(body);
	free(cause);
	for (i = 0; v && YAJL_IS_ARRAY(v) && i < v->u.array.len; i++) {
		tags = json_get(v->u.array.values[i], "RepoTags");
		for (j = 0;
		     tags && YAJL_IS_ARRAY(tags) && j < tags->u.array.len;
		     j++) {
			tag = YAJL_GET_STRING(tags->u.array.values[j]);
			if (tag == NULL ||
			    strncmp(tag, "sandpool-test/busybox:", 22) != 0 ||
			    !pid_dead(atoi(tag + 22)))
				continue;
			snprintf(
			    path, sizeof path, "/v1.41/images/%s?force=1", tag);
			free(raw("DELETE", path, &status));
		}
	}
	yajl_tree_free(v);

	/* Bind directories and sockets: /tmp/sandpool-test-docker-<pid>. */
	if (glob("/tmp/sandpool-test-docker-*", 0, NULL, &g) != 0)
		return;
	for (i = 0; i < g.gl_pathc; i++) {
		if (!pid_dead(atoi(g.gl_pathv[i] + 26)))
			continue;
		if (rmdir(g.gl_pathv[i]) == -1)
			unlink(g.gl_pathv[i]);
	}
	globfree(&g);
}

/* atexit: nothing of this run stays behind. */
static void
cleanup(void)
{
	char path[256], *body;
	long status;

	cleanup_containers();
	if (own_image[0] != '\0') {
		snprintf(
		    path, sizeof path, "/v1.41/images/%s?force=1", own_image);
		body = raw("DELETE", path, &status);
		free(body);
	}
	if (bind_dir[0] != '\0')
		rmdir(bind_dir);
	if (silent_sock[0] != '\0')
		unlink(silent_sock);
}

/* A fresh container name of this run. */
static const char *
new_name(void)
{
	static char names[16][96];
	char *n = names[nnames % 16];

	snprintf(n, sizeof names[0], "%s%d", prefix, ++nnames);
	return n;
}

/* The labels every test container carries. */
static const char *labels[] = {"sandpool.owner", OWNER, "sandpool.test.run",
    NULL, /* filled in main */
    "sandpool.quote", "a \"quoted\" value, ünïcode", NULL};

/* A minimal spec: sleep for an hour. */
static void
spec_min(struct drv_spec *s, const char *name)
{
	static const char *const cmd[] = {
	    "/bin/busybox", "sleep", "3600", NULL};

	memset(s, 0, sizeof *s);
	s->name = name;
	s->image = image;
	s->cmd = cmd;
	s->labels = labels;
	s->init = 1;
	s->network = "bridge";
}

/* Makes sure the test image exists, importing a private one if needed. */
static int
ensure_image(void)
{
	struct call c = {0};
	char cmd[1024];

	drv_image_exists(drv, IMAGE, on_reply, &c);
	wait_call(&c);
	if (c.err == DRV_OK) {
		call_clear(&c);
		return 0;
	}
	call_clear(&c);
	snprintf(own_image, sizeof own_image, "sandpool-test/busybox:%d",
	    (int)getpid());
	snprintf(cmd, sizeof cmd,
	    "set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; "
	    "mkdir \"$d/bin\"; cp /bin/busybox \"$d/bin/busybox\"; "
	    "ln -s busybox \"$d/bin/sh\"; "
	    "tar -C \"$d\" -c . | docker import -c 'CMD [\"/bin/sh\"]' - %s "
	    ">/dev/null",
	    own_image);
	if (system(cmd) != 0)
		return -1;
	image = own_image;
	return 0;
}

/* The i-th string of an array, or "". */
static const char *
str_at(yajl_val a, size_t i)
{
	const char *s;

	if (a == NULL || !YAJL_IS_ARRAY(a) || i >= a->u.array.len)
		return "";
	s = YAJL_GET_STRING(a->u.array.values[i]);
	return s != NULL ? s : "";
}

/* A string member, or "". */
static const char *
str_of(yajl_val obj, const char *key)
{
	const char *s = json_get_str(obj, key);

	return s != NULL ? s : "";
}

/* Checks the HostConfig dockerd stored, read back with a raw inspect. */
static void
check_hostconfig(const char *id, int host_port)
{
	char path[256], *body, *cause, want[16];
	yajl_val v, hcf, cfg, a;
	long status;
	long long n;
	int b;

	snprintf(path, sizeof path, "/v1.41/containers/%s/json", id);
	body = raw("GET", path, &status);
	v = json_parse(body, strlen(body), &cause);
	free(body);
	if (!ok(status == 200 && v != NULL, "raw inspect")) {
		free(cause);
		return;
	}
	hcf = json_get(v, "HostConfig");
	cfg = json_get(v, "Config");
	ok(json_get_int(hcf, "Memory", &n) == 0 && n == 64 << 20, "Memory");
	ok(json_get_int(hcf, "MemorySwap", &n) == 0 && n == 64 << 20,
	    "MemorySwap = Memory");
	ok(json_get_int(hcf, "NanoCpus", &n) == 0 && n == 500000000,
	    "NanoCpus");
	ok(json_get_int(hcf, "PidsLimit", &n) == 0 && n == 64, "PidsLimit");
	ok(json_get_int(hcf, "ShmSize", &n) == 0 && n == 8 << 20, "ShmSize");
	ok(json_get_bool(hcf, "Init", &b) == 0 && b, "Init");
	ok(json_get_bool(hcf, "ReadonlyRootfs", &b) == 0 && b,
	    "ReadonlyRootfs");
	ok(json_get_bool(hcf, "Privileged", &b) == 0 && !b,
	    "Privileged omitted = false");
	is_str(json_get_str(hcf, "NetworkMode"), "bridge", "NetworkMode");
	is_str(json_get_str(hcf, "Runtime"), "runc", "Runtime");
	is_str(json_get_str(json_get(hcf, "RestartPolicy"), "Name"), "no",
	    "RestartPolicy");
	is_str(json_get_str(json_get(hcf, "LogConfig"), "Type"), "json-file",
	    "LogConfig type");
	is_str(json_get_str(
		   json_get(json_get(hcf, "LogConfig"), "Config"), "max-size"),
	    "1m", "LogConfig max-size");
	is_str(json_get_str(
		   json_get(json_get(hcf, "LogConfig"), "Config"), "max-file"),
	    "1", "LogConfig max-file");
	is_str(json_get_str(json_get(hcf, "Tmpfs"), "/tmp"), "rw,size=16m",
	    "Tmpfs");
	a = json_get(hcf, "Binds");
	ok(a && YAJL_IS_ARRAY(a) && a->u.array.len == 1 &&
		strstr(str_at(a, 0), ":/data:rw"),
	    "Binds");
	a = json_get(hcf, "CapDrop");
	ok(a && YAJL_IS_ARRAY(a) && a->u.array.len == 1 &&
		strcmp(str_at(a, 0), "ALL") == 0,
	    "CapDrop");
	a = json_get(hcf, "CapAdd");
	ok(a && YAJL_IS_ARRAY(a) && a->u.array.len == 2, "CapAdd");
	a = json_get(hcf, "SecurityOpt");
	ok(a && YAJL_IS_ARRAY(a) && a->u.array.len == 1 &&
		strcmp(str_at(a, 0), "no-new-privileges") == 0,
	    "SecurityOpt");
	a = json_get(json_get(hcf, "PortBindings"), "80/tcp");
	snprintf(want, sizeof want, "%d", host_port);
	ok(a && YAJL_IS_ARRAY(a) && a->u.array.len == 1 &&
		strcmp(str_of(a->u.array.values[0], "HostIp"), "127.0.0.1") ==
		    0 &&
		strcmp(str_of(a->u.array.values[0], "HostPort"), want) == 0,
	    "PortBindings");
	ok(json_get(json_get(cfg, "ExposedPorts"), "80/tcp") != NULL,
	    "ExposedPorts");
	is_str(json_get_str(cfg, "WorkingDir"), "/data", "WorkingDir");
	is_str(json_get_str(cfg, "User"), "0:0", "User");
	a = json_get(cfg, "Entrypoint");
	ok(a && YAJL_IS_ARRAY(a) && a->u.array.len == 1 &&
		strcmp(str_at(a, 0), "/bin/busybox") == 0,
	    "Entrypoint");
	a = json_get(cfg, "Cmd");
	ok(a && YAJL_IS_ARRAY(a) && a->u.array.len == 2 &&
		strcmp(str_at(a, 0), "sleep") == 0,
	    "Cmd");
	a = json_get(cfg, "Env");
	{
		size_t i;
		int seen = 0;

		for (i = 0; a && YAJL_IS_ARRAY(a) && i < a->u.array.len; i++)
			if ((strcmp(str_at(a, i), "A=1") == 0 ||
				strcmp(str_at(a, i), "B=two words") == 0))
				seen++;
		is_int(seen, 2, "Env");
	}
	yajl_tree_free(v);
}

/* The full life of one container with every spec field set. */
static void
test_lifecycle(void)
{
	static const char *const entry[] = {"/bin/busybox", NULL};
	static const char *const cmd[] = {"sleep", "3600", NULL};
	static const char *const env[] = {"A=1", "B=two words", NULL};
	static const char *const tmpfs[] = {"/tmp", "rw,size=16m", NULL};
	static const char *const drop[] = {"ALL", NULL};
	static const char *const add[] = {"CHOWN", "KILL", NULL};
	static const char *const secopt[] = {"no-new-privileges", NULL};
	const char *binds[2] = {NULL, NULL};
	const char *filt[3] = {"sandpool.owner=" OWNER, run_label, NULL};
	const char *none[2] = {"sandpool.owner=nobody-at-all", NULL};
	char bind[256], *id = NULL;
	struct drv_spec s;
	struct call c = {0};
	int port = free_port(), returned = 0;
	const char *name = new_name();
	size_t i;

	snprintf(bind, sizeof bind, "%s:/data:rw", bind_dir);
	binds[0] = bind;
	spec_min(&s, name);
	s.entrypoint = entry;
	s.cmd = cmd;
	s.env = env;
	s.binds = binds;
	s.workdir = "/data";
	s.user = "0:0";
	s.private_port = 80;
	s.host_port = port;
	s.host_ip = "127.0.0.1";
	s.memory = 64 << 20;
	s.nano_cpus = 500000000;
	s.pids_limit = 64;
	s.shm_size = 8 << 20;
	s.readonly_rootfs = 1;
	s.tmpfs = tmpfs;
	s.cap_drop = drop;
	s.cap_add = add;
	s.security_opt = secopt;
	s.runtime = "runc";

	c.flag = &returned;
	drv_create(drv, &s, on_reply, &c);
	returned = 1;
	wait_call(&c);
	ok(c.done == 1 && c.returned == 1, "create calls back from the loop");
	if (!ok(c.err == DRV_OK && c.id && strlen(c.id) == 64, "create: %s",
		c.msg ? c.msg : "ok"))
		return;
	id = strdup(c.id);
	call_clear(&c);
	check_hostconfig(id, port);

	drv_inspect(drv, id, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK && c.nctrs == 1, "inspect");
	if (c.nctrs == 1) {
		is_str(c.ctrs[0].id, id, "inspect: id");
		is_str(c.ctrs[0].name, name, "inspect: name without '/'");
		is_str(c.ctrs[0].state, "created", "inspect: state created");
		is_str(drv_ctr_label(&c.ctrs[0], "sandpool.owner"), OWNER,
		    "inspect: owner label");
		is_str(drv_ctr_label(&c.ctrs[0], "sandpool.quote"), labels[5],
		    "inspect: label with quotes and UTF-8");
		ok(drv_ctr_label(&c.ctrs[0], "nope") == NULL,
		    "inspect: missing label is NULL");
		is_int(c.ctrs[0].host_port, 0, "inspect: no host port yet");
	}
	call_clear(&c);

	drv_inspect(drv, name, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK && c.nctrs == 1 && strcmp(c.ctrs[0].id, id) == 0,
	    "inspect by name");
	call_clear(&c);

	drv_start(drv, id, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK, "start: %s", c.msg ? c.msg : "ok");
	call_clear(&c);
	drv_start(drv, id, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK, "start again (304) is OK");
	call_clear(&c);

	drv_inspect(drv, id, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK && c.nctrs == 1 &&
		strcmp(c.ctrs[0].state, "running") == 0,
	    "inspect: running");
	if (c.nctrs == 1)
		is_int(c.ctrs[0].host_port, port, "inspect: host port");
	call_clear(&c);

	drv_list(drv, filt, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK, "list by label");
	for (i = 0; i < c.nctrs; i++)
		if (strcmp(c.ctrs[i].id, id) == 0)
			break;
	if (ok(i < c.nctrs, "list finds the container")) {
		is_str(c.ctrs[i].name, name, "list: name");
		is_str(c.ctrs[i].state, "running", "list: state");
		is_int(c.ctrs[i].host_port, port, "list: host port");
		is_str(drv_ctr_label(&c.ctrs[i], "sandpool.test.run"),
		    run_label + strlen("sandpool.test.run="), "list: labels");
	}
	call_clear(&c);
	drv_list(drv, none, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK && c.nctrs == 0, "list: no match, empty");
	call_clear(&c);

	drv_stop(drv, id, 5, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK, "stop: %s", c.msg ? c.msg : "ok");
	call_clear(&c);
	drv_inspect(drv, id, on_reply, &c);
	wait_call(&c);
	ok(c.nctrs == 1 && strcmp(c.ctrs[0].state, "exited") == 0,
	    "inspect: exited");
	call_clear(&c);
	drv_stop(drv, id, 5, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK, "stop again (304) is OK");
	call_clear(&c);

	drv_remove(drv, id, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK, "remove");
	call_clear(&c);
	drv_remove(drv, id, on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_ENOTFOUND, "remove again: ENOTFOUND");
	ok(c.msg && strstr(c.msg, "No such container"), "engine message: %s",
	    c.msg ? c.msg : "-");
	call_clear(&c);
	drv_inspect(drv, id, on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_ENOTFOUND, "inspect removed: ENOTFOUND");
	call_clear(&c);
	drv_start(drv, id, on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_ENOTFOUND, "start removed: ENOTFOUND");
	call_clear(&c);
	free(id);
}

/* Engine errors map to driver errors. */
static void
test_errors(void)
{
	struct drv_spec s;
	struct call c = {0};
	char *id1 = NULL, *id2 = NULL;
	const char *name;
	int port, returned = 0;

	/* Missing image. */
	spec_min(&s, new_name());
	s.image = "sandpool-test/no-such-image:nope";
	drv_create(drv, &s, on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_ENOIMAGE, "create, missing image: ENOIMAGE");
	ok(c.msg && strstr(c.msg, "sandpool-test/no-such-image:nope"),
	    "message names the image: %s", c.msg ? c.msg : "-");
	call_clear(&c);

	/* Name conflict. */
	name = new_name();
	spec_min(&s, name);
	drv_create(drv, &s, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK, "create %s", name);
	call_clear(&c);
	drv_create(drv, &s, on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_ECONFLICT, "same name again: ECONFLICT");
	ok(c.msg && strstr(c.msg, "already in use"), "message: %s",
	    c.msg ? c.msg : "-");
	call_clear(&c);
	drv_remove(drv, name, on_reply, &c);
	wait_call(&c);
	ok(c.err == DRV_OK, "remove by name");
	call_clear(&c);

	/* Invalid (400) from the engine. */
	spec_min(&s, new_name());
	s.memory = 1024;
	drv_create(drv, &s, on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_EINVAL, "1 KiB memory limit: EINVAL (%s)",
	    c.msg ? c.msg : "-");
	call_clear(&c);

	/* Two containers on the same host port. */
	port = free_port();
	spec_min(&s, new_name());
	s.private_port = 80;
	s.host_port = port;
	s.host_ip = "127.0.0.1";
	drv_create(drv, &s, on_reply, &c);
	wait_call(&c);
	id1 = c.id ? strdup(c.id) : NULL;
	call_clear(&c);
	spec_min(&s, new_name());
	s.private_port = 80;
	s.host_port = port;
	s.host_ip = "127.0.0.1";
	drv_create(drv, &s, on_reply, &c);
	wait_call(&c);
	id2 = c.id ? strdup(c.id) : NULL;
	call_clear(&c);
	ok(id1 && id2, "two containers for one port created");
	if (id1 && id2) {
		drv_start(drv, id1, on_reply, &c);
		wait_call(&c);
		ok(c.err == DRV_OK, "first start: %s", c.msg ? c.msg : "ok");
		call_clear(&c);
		drv_start(drv, id2, on_reply, &c);
		wait_call(&c);
		is_int(c.err, DRV_EPORT, "second start: EPORT (%s)",
		    c.msg ? c.msg : "-");
		call_clear(&c);
		drv_remove(drv, id2, on_reply, &c);
		wait_call(&c);
		ok(c.err == DRV_OK, "remove the created-only one");
		call_clear(&c);
		drv_remove(drv, id1, on_reply, &c);
		wait_call(&c);
		ok(c.err == DRV_OK, "remove the running one (force)");
		call_clear(&c);
	}
	free(id1);
	free(id2);

	/* Ids and names are checked before they reach a URL. */
	c.flag = &returned;
	drv_inspect(drv, "../../images/x", on_reply, &c);
	returned = 1;
	ok(c.done == 0, "bad id: no callback from inside the call");
	wait_call(&c);
	ok(c.done == 1 && c.returned == 1 && c.err == DRV_EINVAL,
	    "id with '/': EINVAL from the loop");
	call_clear(&c);
	drv_remove(drv, "", on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_EINVAL, "empty id: EINVAL");
	call_clear(&c);
	drv_inspect(drv, "..", on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_EINVAL, "'..': EINVAL");
	call_clear(&c);
	drv_inspect(drv, "a b?c=d&e#f", on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_ENOTFOUND, "odd characters are escaped: ENOTFOUND");
	call_clear(&c);
	spec_min(&s, "bad/name");
	drv_create(drv, &s, on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_EINVAL, "name with '/': EINVAL");
	call_clear(&c);
	spec_min(&s, new_name());
	{
		static const char *const rel[] = {"relative:/x", NULL};

		s.binds = rel;
		drv_create(drv, &s, on_reply, &c);
		wait_call(&c);
		is_int(c.err, DRV_EINVAL, "relative bind source: EINVAL");
		call_clear(&c);
	}
	drv_image_exists(drv, "a/../b", on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_EINVAL, "image with '..': EINVAL");
	call_clear(&c);
}

/* Transport failures: no socket, a socket that never answers. */
static void
test_transport(void)
{
	struct drv_params p;
	struct drv *d;
	struct call c = {0};
	struct sockaddr_un sun;
	char *path = silent_sock, ep[128], *cause;
	int fd;

	memset(&p, 0, sizeof p);
	p.endpoint = "unix:///nonexistent/docker.sock";
	p.timeout_ms = 2000;
	d = drv_open(base, hc, &p, &cause);
	drv_ping(d, on_reply, &c);
	wait_call(&c);
	is_int(
	    c.err, DRV_EENGINE, "no socket: EENGINE (%s)", c.msg ? c.msg : "-");
	call_clear(&c);
	drv_close(d);

	snprintf(silent_sock, sizeof silent_sock,
	    "/tmp/sandpool-test-docker-%d.sock", (int)getpid());
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	bind(fd, (struct sockaddr *)&sun, sizeof sun);
	listen(fd, 8);
	snprintf(ep, sizeof ep, "unix://%s", path);
	p.endpoint = ep;
	p.timeout_ms = 300;
	d = drv_open(base, hc, &p, &cause);
	drv_ping(d, on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_ETIMEOUT, "silent engine: ETIMEOUT (%s)",
	    c.msg ? c.msg : "-");
	call_clear(&c);

	/* drv_close drops pending calls without callbacks. */
	drv_ping(d, on_reply, &c);
	drv_inspect(d, "x/y", on_reply, &c);
	drv_close(d);
	run_for(400);
	is_int(c.done, 0, "drv_close: no callbacks");
	close(fd);
	unlink(path);

	p.endpoint = "tcp://127.0.0.1:2375";
	ok(drv_open(base, hc, &p, &cause) == NULL && cause != NULL,
	    "unsupported scheme refused: %s", cause ? cause : "-");
	free(cause);
	p.endpoint = "unix://relative.sock";
	ok(drv_open(base, hc, &p, &cause) == NULL && cause != NULL,
	    "relative socket path refused");
	free(cause);
	is_str(drv_strerror(DRV_EPORT), "host port already allocated",
	    "drv_strerror");
	ok(drv_strerror((enum drv_err)99) != NULL, "drv_strerror: unknown");
}

/* The garbage engine: answers each connection with one canned reply. */
static void
on_garbage_accept(evutil_socket_t lfd, short what, void *arg)
{
	const char *reply = arg;
	char buf[4096];
	size_t len;
	int fd;

	if ((fd = accept(lfd, NULL, NULL)) == -1)
		return;
	usleep(20000); /* the request is in */
	(void)!read(fd, buf, sizeof buf);
	memcpy(&len, reply, sizeof len);
	(void)!write(fd, reply + sizeof len, len);
	close(fd);
}

/*
 * A broken engine's replies: an error body with a NUL byte and control
 * characters (the message keeps its length, every unprintable byte as
 * '?'), a 200 to create that is no JSON, an info without Runtimes.
 */
static void
test_garbage_engine(void)
{
	static const char err_body[] = "err\0\001\002 tail \377x";
	static const char create_body[] = "\001garbage";
	static const char info_body[] = "{\"Runtime\": {}}";
	struct {
		const char *body;
		size_t len;
		const char *status;
		int kind;
		enum drv_err want;
		const char *msg;
	} cases[] = {
	    {err_body, sizeof err_body - 1, "500 Internal Server Error", 0,
		DRV_EENGINE, "err??? tail ?x"},
	    {create_body, sizeof create_body - 1, "201 Created", 1, DRV_EENGINE,
		"reply is not valid JSON"},
	    {info_body, sizeof info_body - 1, "200 OK", 2, DRV_EENGINE,
		"info reply without Runtimes"},
	};
	struct drv_params p;
	struct drv_spec spec;
	struct sockaddr_un sun;
	struct event *ev;
	struct call c = {0};
	char path[64], ep[128], *cause, *reply;
	size_t i, n, len;
	struct drv *d;
	int fd;

	snprintf(path, sizeof path, "/tmp/sandpool-test-garbage-%d.sock",
	    (int)getpid());
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		unlink(path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		memcpy(sun.sun_path, path, strlen(path) + 1);
		bind(fd, (struct sockaddr *)&sun, sizeof sun);
		listen(fd, 8);
		reply = malloc(sizeof len + 256 + cases[i].len);
		n = (size_t)snprintf(reply + sizeof len, 256,
		    "HTTP/1.1 %s\r\nContent-Length: %zu\r\n"
		    "Connection: close\r\n\r\n",
		    cases[i].status, cases[i].len);
		memcpy(reply + sizeof len + n, cases[i].body, cases[i].len);
		len = n + cases[i].len;
		memcpy(reply, &len, sizeof len);
		ev = event_new(
		    base, fd, EV_READ | EV_PERSIST, on_garbage_accept, reply);
		event_add(ev, NULL);
		snprintf(ep, sizeof ep, "unix://%s", path);
		memset(&p, 0, sizeof p);
		p.endpoint = ep;
		p.timeout_ms = 5000;
		d = drv_open(base, hc, &p, &cause);
		memset(&spec, 0, sizeof spec);
		spec.image = "x";
		if (cases[i].kind == 0)
			drv_ping(d, on_reply, &c);
		else if (cases[i].kind == 1)
			drv_create(d, &spec, on_reply, &c);
		else
			drv_runtimes(d, on_reply, &c);
		wait_call(&c);
		ok(c.err == cases[i].want && c.msg != NULL &&
			strcmp(c.msg, cases[i].msg) == 0,
		    "garbage engine %zu: %s", i, c.msg ? c.msg : "(none)");
		call_clear(&c);
		drv_close(d);
		event_free(ev);
		close(fd);
		free(reply);
	}
	unlink(path);
}

/* The engine's OCI runtimes. */
static void
on_runtimes(const struct drv_reply *r, void *arg)
{
	struct call *c = arg;
	size_t i;

	on_reply(r, arg);
	c->id = NULL;
	for (i = 0; i < r->nnames; i++)
		if (strcmp(r->names[i], "runc") == 0)
			c->id = strdup("runc");
}

/* What an event stream delivered. */
struct evs {
	int die, destroy, ended, cancel_on_die;
	char die_name[128], exit_code[16];
	const char *only; /* count only this container's events */
	long long last_nano;
	struct drv_events *stream;
};

/* Records an event; optionally cancels the stream from inside. */
static void
on_event(const struct drv_event *e, void *arg)
{
	struct evs *v = arg;
	const char *n = drv_event_attr(e, "name");
	const char *x = drv_event_attr(e, "exitCode");

	if (v->only != NULL && (n == NULL || strcmp(n, v->only) != 0))
		return; /* an earlier test's container */
	v->last_nano = e->time_nano;
	if (strcmp(e->action, "die") == 0) {
		v->die++;
		snprintf(v->die_name, sizeof v->die_name, "%s", n ? n : "");
		snprintf(v->exit_code, sizeof v->exit_code, "%s", x ? x : "");
		if (v->cancel_on_die) {
			drv_events_cancel(v->stream);
			v->stream = NULL;
		}
	} else if (strcmp(e->action, "destroy") == 0)
		v->destroy++;
}

/* Records the end of a stream. */
static void
on_events_end(enum drv_err err, const char *msg, void *arg)
{
	((struct evs *)arg)->ended++;
}

/* The /events stream: filtered by label, replayed with since. */
static void
test_events(void)
{
	static const char *const acts[] = {"die", "destroy", NULL};
	const char *filt[2] = {run_label, NULL};
	struct evs v = {0}, w = {0};
	struct call c = {0};
	struct drv_spec s;
	const char *name = new_name();
	char *id;
	int i;

	v.only = w.only = name;
	v.stream = drv_events(drv, filt, acts, 0, on_event, on_events_end, &v);
	run_for(300);
	spec_min(&s, name);
	drv_create(drv, &s, on_reply, &c);
	wait_call(&c);
	id = c.id ? strdup(c.id) : strdup("none");
	call_clear(&c);
	drv_start(drv, id, on_reply, &c);
	wait_call(&c);
	call_clear(&c);
	drv_remove(drv, id, on_reply, &c);
	wait_call(&c);
	call_clear(&c);
	for (i = 0; i < 50 && (v.die == 0 || v.destroy == 0); i++)
		run_for(100);
	is_int(v.die, 1, "events: one die for the removed container");
	is_int(v.destroy, 1, "events: one destroy");
	is_str(v.die_name, name, "events: the name comes in the attributes");
	is_str(v.exit_code, "137", "events: exitCode 137 (killed)");
	is_int(v.ended, 0, "events: the stream is still open");
	drv_events_cancel(v.stream);
	run_for(100);
	is_int(v.ended, 0, "events: no end callback after cancel");

	/* Replay from before the events; cancel from inside ev. */
	w.cancel_on_die = 1;
	w.stream = drv_events(drv, filt, acts, v.last_nano - 5000000000LL,
	    on_event, on_events_end, &w);
	for (i = 0; i < 50 && w.die == 0; i++)
		run_for(100);
	run_for(300);
	ok(w.die == 1 && w.destroy == 0 && w.ended == 0 && w.stream == NULL,
	    "events: since replays; cancel from inside ev stops the stream "
	    "(die %d destroy %d ended %d)",
	    w.die, w.destroy, w.ended);
	free(id);
}

/* Closes the driver from inside its own callback. */
static void
on_reply_close(const struct drv_reply *r, void *arg)
{
	on_reply(r, arg);
	drv_close(drv);
	drv = NULL;
}

int
main(void)
{
	struct drv_params p;
	struct call c = {0}, c2 = {0};
	struct event *sigint, *sigterm;
	char *cause = NULL;
	int returned = 0;

	signal(SIGPIPE, SIG_IGN);
	snprintf(
	    prefix, sizeof prefix, "sandpool-test-docker-%d-", (int)getpid());
	snprintf(
	    run_label, sizeof run_label, "sandpool.test.run=%d", (int)getpid());
	labels[3] = run_label + strlen("sandpool.test.run=");

	base = event_base_new();
	hc = hc_new(base, 4);
	memset(&p, 0, sizeof p);
	p.endpoint = "unix://" SOCK;
	p.timeout_ms = 30000;
	if ((drv = drv_open(base, hc, &p, &cause)) == NULL) {
		printf("Bail out! drv_open: %s\n", cause);
		return 1;
	}
	c.flag = &returned;
	drv_ping(drv, on_reply, &c);
	returned = 1;
	wait_call(&c);
	if (c.err != DRV_OK && getenv("SANDPOOL_TEST_DOCKER") == NULL)
		tap_skip_all("dockerd not reachable at %s: %s", SOCK,
		    c.msg ? c.msg : "-");
	if (!ok(c.err == DRV_OK, "ping dockerd: %s", c.msg ? c.msg : "OK")) {
		call_clear(&c);
		drv_close(drv);
		hc_free(hc);
		event_base_free(base);
		return tap_done();
	}
	ok(c.returned == 1, "ping: called back from the loop");
	is_str(drv_name(drv), "docker", "docker driver");
	call_clear(&c);

	sweep_dead_runs();
	atexit(cleanup);
	sigint = evsignal_new(base, SIGINT, on_signal, NULL);
	sigterm = evsignal_new(base, SIGTERM, on_signal, NULL);
	evsignal_add(sigint, NULL);
	evsignal_add(sigterm, NULL);
	snprintf(bind_dir, sizeof bind_dir, "/tmp/sandpool-test-docker-%d",
	    (int)getpid());
	mkdir(bind_dir, 0755);

	if (!ok(ensure_image() == 0, "test image %s", image))
		return tap_done();
	drv_image_exists(drv, image, on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_OK, "image_exists %s", image);
	call_clear(&c);
	drv_image_exists(drv, "sandpool-test/no-such-image:nope", on_reply, &c);
	wait_call(&c);
	is_int(c.err, DRV_ENOIMAGE, "image_exists, missing: ENOIMAGE");
	call_clear(&c);

	test_lifecycle();
	test_errors();
	test_transport();
	test_garbage_engine();
	drv_runtimes(drv, on_runtimes, &c);
	wait_call(&c);
	ok(c.err == DRV_OK && c.id != NULL, "runtimes: dockerd lists runc");
	call_clear(&c);
	test_events();

	/* A callback may close the driver with other calls in flight. */
	drv_ping(drv, on_reply_close, &c);
	drv_ping(drv, on_reply_close, &c2);
	drv_inspect(drv, "x/y", on_reply_close, &c2);
	while (drv != NULL && c.done + c2.done == 0)
		event_base_loop(base, EVLOOP_ONCE);
	run_for(200);
	ok(c.done + c2.done == 1 && drv == NULL,
	    "drv_close from a callback drops the rest");
	call_clear(&c);
	call_clear(&c2);

	is_int(cleanup_containers(), 0, "every container already removed");
	{
		yajl_val v = raw_list_mine();

		ok(v && YAJL_IS_ARRAY(v) && v->u.array.len == 0,
		    "nothing of this run left");
		yajl_tree_free(v);
	}
	event_free(sigint);
	event_free(sigterm);
	hc_free(hc);
	event_base_free(base);
	return tap_done();
}
