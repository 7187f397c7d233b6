/*
 * runtime-sandbox-server: the sandpool daemon. main() reads the command
 * line and the configuration, binds the listener, wires the layers
 * together on one event loop (HTTP API -> pool -> store and driver), and
 * owns the process lifetime: start-up checks, signals, orderly shutdown.
 *
 * With WORKERS=N > 1 (Redis only) the process binds the listener, forks N
 * workers that each run that loop on the shared socket, and supervises
 * them: a worker that dies is started again, SIGTERM/SIGINT are forwarded,
 * and once every worker has exited the supervisor alone runs AUTO_CLEANUP
 * (so that no worker removes a sandbox another one is still creating).
 * The start-up checks run once, in the supervisor before it forks: the
 * configuration's, and the engine's (dockerd answers, it has every OCI
 * runtime a type names).
 */

#ifdef HAVE_CONFIG_H
#include "autoconfig.h" /* PACKAGE_VERSION */
#endif
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>

#include "api.h"
#include "config.h"
#include "driver.h"
#include "hc.h"
#include "http.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "sbtype.h"
#include "store.h"
#include "store_bench.h"
#include "xmalloc.h"

#define MAIN_HC_CONNS 4
/* File descriptors kept for everything but client connections. */
#define MAIN_FD_RESERVE 256
/*
 * Connections at most per sandbox runtime (each sandbox is its own host
 * name, see rt_call): concurrent tool calls and proxied transfers.
 */
#define MAIN_RT_CONNS 64

/* Everything the daemon owns, in order of acquisition. */
struct main_ctx {
	struct cfg *cfg;
	struct event_base *base;
	struct hc *hc;	  /* the engine */
	struct hc *rt_hc; /* the sandboxes' runtimes */
	struct api *api;
	struct proxy *proxy;
	struct http *http;
	struct drv *drv;
	struct store *store;
	struct pool *pool;
	struct event *sigterm;
	struct event *sigint;
	int bench_records; /* SANDPOOL_BENCH_RECORDS */
	int stopping;
	int cleanup;	    /* AUTO_CLEANUP in this process */
	int listen_fd;	    /* shared listener, or -1 */
	int preflight;	    /* supervisor: check the engine, serve nothing */
	int engine_checked; /* the supervisor checked the engine already */
	struct event *ready_wait; /* waiting for the store */
	int ready_tries;
};

/* Prints the usage text to f. */
static void
main_usage(FILE *f)
{
	fprintf(f,
	    "usage: runtime-sandbox-server [--config FILE] [--extension "
	    "FILE]..."
	    "\n"
	    "                              [--log-level LEVEL] [-n] "
	    "[--version] [--help]\n"
	    "\n"
	    "  --config FILE      environment file to load; its keys override "
	    "the\n"
	    "                     environment (default: ./.env, else "
	    "./.env.example)\n"
	    "  --extension FILE   JSON file of extra sandbox types "
	    "(repeatable)\n"
	    "  --log-level LEVEL  DEBUG, INFO, WARNING, ERROR or CRITICAL "
	    "(default INFO)\n"
	    "  -n                 check the configuration, print it and exit\n"
	    "  --version          print the version and exit\n"
	    "  --help             print this help and exit\n"
	    "\n"
	    "See runtime-sandbox-server(8) and "
	    "runtime-sandbox-server.env(5).\n");
}

/* mkdir -p: intermediate directories 0755, the last one mode. */
static int
main_mkdirs(const char *path, mode_t mode)
{
	char *p = xstrdup(path), *s;
	struct stat st;
	int rc = 0;

	for (s = p + 1; rc == 0 && (s = strchr(s, '/')) != NULL; s++) {
		*s = '\0';
		if (mkdir(p, 0755) == -1 && errno != EEXIST)
			rc = -1;
		*s = '/';
	}
	if (rc == 0 && mkdir(p, mode) == -1) {
		if (errno != EEXIST)
			rc = -1;
		else if (stat(p, &st) == -1)
			rc = -1;
		else if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			rc = -1;
		}
	}
	free(p);
	return rc;
}

/*
 * Raises the soft limit on open files so that SANDPOOL_MAX_CONNECTIONS
 * clients, a runtime connection for each (a /proxy transfer holds one),
 * and the rest (dockerd, runtimes, files) fit: accept(2) failing with
 * EMFILE would otherwise spin the listener.
 */
static void
main_fd_limit(const struct cfg *cfg)
{
	rlim_t need = 2 * (rlim_t)cfg->max_connections + MAIN_FD_RESERVE;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need
	    ? need
	    : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need)
		log_warnx(
		    "open files limited to %lu: fewer than "
		    "2 x SANDPOOL_MAX_CONNECTIONS=%d + %d; lower it or raise "
		    "the limit",
		    (unsigned long)rl.rlim_cur, cfg->max_connections,
		    MAIN_FD_RESERVE);
}

/* The pool finished shutting down: leave the loop. */
static void
main_on_shutdown(int err, const char *cause, void *arg)
{
	struct main_ctx *m = arg;

	if (err != 0)
		log_warnx("shutdown: %s", cause != NULL ? cause : "failed");
	else
		log_info("shutdown: done");
	event_base_loopexit(m->base, NULL);
}

/* SIGTERM/SIGINT: stop accepting, shut the pool down, exit; twice: now. */
static void
main_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct main_ctx *m = arg;

	(void)what;
	if (m->stopping) {
		log_warnx("signal %d again: exiting now", (int)sig);
		exit(1);
	}
	m->stopping = 1;
	log_info("signal %d: shutting down%s", (int)sig,
	    m->pool != NULL && m->cleanup
		? ", removing this instance's sandboxes"
		: "");
	http_stop_accepting(m->http);
	api_stop(m->api);
	proxy_stop(m->proxy);
	if (m->pool != NULL)
		pool_shutdown(m->pool, m->cleanup, main_on_shutdown, m);
	else
		event_base_loopexit(m->base, NULL);
}

/* Leftovers are gone and pre-warming has begun (or could not). */
static void
main_on_pool_started(int err, const char *cause, void *arg)
{
	struct main_ctx *m = arg;

	if (err != 0)
		log_warnx("pool: start: %s", cause != NULL ? cause : "failed");
	else
		log_info("pool: started (%d warm per pooled type)",
		    m->cfg->pool_size);
}

/* The store of the configuration: Redis, or this process's memory. */
static struct store *
main_store(struct event_base *base, const struct cfg *cfg)
{
	struct store_redis_params rp;
	char *owner;
	struct store *st;

	if (!cfg->redis_enabled)
		return store_mem_new(base, cfg->port_lo, cfg->port_hi);
	/* Owner: instance, pid and boot time (pids are reused). */
	xasprintf(&owner, "%s:%ld:%lld", cfg->instance_id, (long)getpid(),
	    (long long)time(NULL));
	memset(&rp, 0, sizeof rp);
	rp.host = cfg->redis_server;
	rp.port = cfg->redis_port;
	rp.db = cfg->redis_db;
	rp.user = cfg->redis_user;
	rp.password = cfg->redis_password;
	rp.pool_key = cfg->redis_pool_key;
	rp.port_key = cfg->redis_port_key;
	rp.instance = cfg->instance_id;
	rp.owner = owner;
	rp.publish_host = cfg->publish_host;
	rp.port_lo = cfg->port_lo;
	rp.port_hi = cfg->port_hi;
	rp.lease_ttl_ms = (long)cfg->lease_ttl * 1000;
	rp.timeout_ms = cfg->redis_timeout_ms;
	st = store_redis_new(base, &rp);
	free(owner);
	return st;
}

/*
 * Benchmarks and tests only: SANDPOOL_BENCH_RECORDS=N in the environment
 * asks for N synthetic warm records (no containers) to be preloaded before
 * the pool starts. Returns N, or 0 when unset; exits if it is not a count.
 */
static int
main_bench_records(void)
{
	const char *v = getenv("SANDPOOL_BENCH_RECORDS");
	char *cause;
	int n;

	if (v == NULL || *v == '\0')
		return 0;
	if ((n = store_bench_count(v, &cause)) == -1)
		fatalx("%s", cause);
	return n;
}

/* The pool's parameters from the configuration. */
static void
main_pool_params(const struct cfg *cfg, struct pool_params *pp)
{
	memset(pp, 0, sizeof *pp);
	pp->instance_id = cfg->instance_id;
	pp->prefix = cfg->container_prefix;
	pp->agent_path = cfg->agent_path;
	pp->run_dir = cfg->run_dir;
	pp->mount_root = cfg->default_mount_dir;
	pp->publish_host = cfg->publish_host;
	pp->readonly_mounts = (const char *const *)cfg->readonly_mounts;
	pp->types = cfg->types;
	pp->pool_types = (const char *const *)cfg->default_types;
	pp->pool_size = cfg->pool_size;
	pp->refill_concurrency = cfg->refill_concurrency;
	pp->max_instances = cfg->max_sandbox_instances;
	pp->warmup_timeout = cfg->warmup_timeout;
	pp->keep_workspace = cfg->keep_workspace;
	pp->watcher_interval = cfg->watcher_scan_interval;
	pp->lease_ttl = cfg->lease_ttl;
	pp->shared = cfg->redis_enabled;
	pp->heartbeat_timeout = cfg->heartbeat_timeout;
	pp->lock_ttl = cfg->heartbeat_lock_ttl;
	pp->release_ttl = cfg->released_key_ttl;
}

/* Builds the pool and serves the RPC routes (the store is made). */
static void
main_build_pool(struct main_ctx *m)
{
	const struct cfg *cfg = m->cfg;
	struct pool_params pp;

	main_pool_params(cfg, &pp);
	if (m->bench_records > 0) {
		store_bench_preload(m->store, &pp, m->bench_records);
		log_warnx("bench: %d synthetic warm records without containers "
			  "(SANDPOOL_BENCH_RECORDS)",
		    m->bench_records);
	}
	m->pool = pool_new(m->base, m->rt_hc, m->drv, m->store, &pp);
	api_set_pool(m->api, m->pool);
	api_set_store(m->api, m->store);
	proxy_set_pool(m->proxy, m->pool);
	log_info("docker: %s answers; instance %s", cfg->docker_host,
	    cfg->instance_id);
	pool_start(m->pool, main_on_pool_started, m);
}

/*
 * Benchmarks only: synthetic records are loaded once the store answers,
 * and before any request can reach the pool (one Redis connection keeps
 * the order, so every claim comes after the records).
 */
static void
main_on_bench_ready(evutil_socket_t fd, short what, void *arg)
{
	struct main_ctx *m = arg;
	struct timeval tv = {0, 10000};

	(void)fd;
	(void)what;
	if (m->stopping)
		return;
	if (!store_ready(m->store) && ++m->ready_tries < 1000) {
		evtimer_add(m->ready_wait, &tv);
		return;
	}
	main_build_pool(m);
}

/* Makes the store, then the pool. */
static void
main_start_pool(struct main_ctx *m)
{
	struct timeval tv = {0, 0};

	m->store = main_store(m->base, m->cfg);
	if (m->bench_records > 0 && !store_ready(m->store)) {
		m->ready_wait = evtimer_new(m->base, main_on_bench_ready, m);
		evtimer_add(m->ready_wait, &tv);
		return;
	}
	main_build_pool(m);
}

/*
 * The engine passed the start-up checks: a supervisor's preflight is over;
 * a worker builds its pool.
 */
static void
main_engine_ok(struct main_ctx *m)
{
	if (m->preflight)
		event_base_loopexit(m->base, NULL);
	else
		main_start_pool(m);
}

/* 1 if a sandbox type names an OCI runtime. */
static int
main_needs_runtimes(const struct cfg *cfg)
{
	const struct sbtype *t;

	TAILQ_FOREACH (t, &cfg->types->list, entry)
		if (t->supported && t->runtime != NULL)
			return 1;
	return 0;
}

/*
 * dockerd listed its OCI runtimes: every type that names one must find it,
 * or the server does not start (a sandbox would fail at each create).
 */
static void
main_on_runtimes(const struct drv_reply *r, void *arg)
{
	struct main_ctx *m = arg;
	const struct sbtype *t;
	char *have = NULL, *tmp;
	size_t i;

	if (r->err != DRV_OK)
		fatalx("docker: cannot list the OCI runtimes: %s",
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
	if (m->stopping)
		return;
	for (i = 0; i < r->nnames; i++) {
		xasprintf(&tmp, "%s%s%s", have != NULL ? have : "",
		    have != NULL ? ", " : "", r->names[i]);
		free(have);
		have = tmp;
	}
	TAILQ_FOREACH (t, &m->cfg->types->list, entry) {
		if (!t->supported || t->runtime == NULL)
			continue;
		for (i = 0; i < r->nnames; i++)
			if (strcmp(r->names[i], t->runtime) == 0)
				break;
		if (i == r->nnames)
			fatalx(
			    "sandbox type '%s' needs the OCI runtime '%s', "
			    "which dockerd does not have (it has: %s); "
			    "install it and add it to dockerd's \"runtimes\", "
			    "or change the type's \"runtime\"%s",
			    t->name, t->runtime, have != NULL ? have : "none",
			    strcmp(m->cfg->deployment, "gvisor") == 0
				? " (CONTAINER_DEPLOYMENT=gvisor gives every "
				  "type runsc)"
				: "");
	}
	log_info("docker: OCI runtimes: %s", have != NULL ? have : "none");
	free(have);
	main_engine_ok(m);
}

/*
 * dockerd answered the ping: check the runtimes (unless the supervisor
 * did), then start the pool.
 */
static void
main_on_ping(const struct drv_reply *r, void *arg)
{
	struct main_ctx *m = arg;
	const struct cfg *cfg = m->cfg;

	if (r->err != DRV_OK)
		fatalx("docker: %s does not answer: %s; is dockerd running?",
		    cfg->docker_host,
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
	if (m->stopping)
		return;
	if (main_needs_runtimes(cfg) && !m->engine_checked)
		drv_runtimes(m->drv, main_on_runtimes, m);
	else
		main_engine_ok(m);
}

/* Checks what must hold before anything starts; exits on failure. */
static void
main_check(const struct cfg *cfg)
{
	if (cfg->workers > 1 && !cfg->redis_enabled) {
		log_error("WORKERS=%d needs REDIS_ENABLED=true: workers share "
			  "their state through Redis",
		    cfg->workers);
		exit(1);
	}
	/* cfg_load refused this unless SANDPOOL_ALLOW_NO_AUTH=true. */
	if (!cfg_host_is_loopback(cfg->host) &&
	    (cfg->bearer_token == NULL || *cfg->bearer_token == '\0'))
		log_warnx("HOST=%s is not a loopback address and BEARER_TOKEN "
			  "is empty (SANDPOOL_ALLOW_NO_AUTH=true): anyone who "
			  "can reach the port controls the sandboxes",
		    cfg->host);
}

/* Creates the run and workspace directories; exits on failure. */
static void
main_dirs(const struct cfg *cfg)
{
	if (main_mkdirs(cfg->run_dir, 0700) == -1)
		fatal("cannot create SANDPOOL_RUN_DIR %s", cfg->run_dir);
	if (cfg->default_mount_dir != NULL &&
	    main_mkdirs(cfg->default_mount_dir, 0755) == -1)
		fatal("cannot create DEFAULT_MOUNT_DIR %s",
		    cfg->default_mount_dir);
}

/*
 * One serving process: sets up everything on its own loop (on the shared
 * listener fd, or binding its own when fd is -1), runs it, tears down.
 * cleanup: run AUTO_CLEANUP at shutdown. Returns the exit code.
 */
static int
main_worker(struct cfg *cfg, int fd, int cleanup)
{
	struct main_ctx m;
	struct http_params hp;
	struct drv_params dp;
	char *cause;

	memset(&m, 0, sizeof m);
	m.cfg = cfg;
	m.cleanup = cleanup;
	m.listen_fd = fd;
	m.engine_checked = fd >= 0; /* a forked worker: the supervisor did */
	signal(SIGPIPE, SIG_IGN);
	if ((m.base = event_base_new()) == NULL)
		fatalx("cannot make an event loop");
	m.hc = hc_new(m.base, MAIN_HC_CONNS);
	m.rt_hc = hc_new(m.base, MAIN_RT_CONNS);
	m.api = api_new(m.base, cfg, m.rt_hc);
	m.proxy = proxy_new(cfg, m.rt_hc);

	/* The listener first: a port in use fails before anything else. */
	memset(&hp, 0, sizeof hp);
	hp.host = cfg->host;
	hp.port = cfg->port;
	hp.max_body = (size_t)cfg->max_body;
	hp.max_headers = (size_t)cfg->max_headers;
	hp.timeout = cfg->idle_timeout;
	hp.request_timeout = cfg->request_timeout;
	hp.max_connections = cfg->max_connections;
	hp.stream_prefix = PROXY_PREFIX;
	hp.stream_methods = PROXY_METHODS;
	hp.stream_cb = proxy_request;
	hp.stream_arg = m.proxy;
	hp.fd = fd;
	if (fd < 0)
		main_fd_limit(cfg);
	if ((m.http = http_new(m.base, &hp, api_request, m.api, &cause)) ==
	    NULL)
		fatalx("http: %s", cause);
	if (fd < 0) {
		main_check(cfg);
		main_dirs(cfg);
	}
	m.bench_records = main_bench_records();

	memset(&dp, 0, sizeof dp);
	dp.endpoint = cfg->docker_host;
	dp.timeout_ms = (long)cfg->docker_timeout * 1000;
	if ((m.drv = drv_open(m.base, m.hc, &dp, &cause)) == NULL)
		fatalx("docker: %s", cause);

	m.sigterm = evsignal_new(m.base, SIGTERM, main_on_signal, &m);
	m.sigint = evsignal_new(m.base, SIGINT, main_on_signal, &m);
	evsignal_add(m.sigterm, NULL);
	evsignal_add(m.sigint, NULL);

	if (fd < 0)
		log_info("runtime-sandbox-server %s: listening on %s:%d",
		    PACKAGE_VERSION, cfg->host, cfg->port);
	drv_ping(m.drv, main_on_ping, &m);
	event_base_dispatch(m.base);

	/* Reverse order; the API drops requests still waiting. */
	event_free(m.sigint);
	event_free(m.sigterm);
	if (m.ready_wait != NULL)
		event_free(m.ready_wait);
	pool_free(m.pool);
	api_free(m.api);
	proxy_free(m.proxy);
	http_free(m.http);
	if (m.store != NULL)
		store_free(m.store);
	drv_close(m.drv);
	hc_free(m.rt_hc);
	hc_free(m.hc);
	event_base_free(m.base);
	return 0;
}

/* Binds and listens on HOST:PORT for the workers; exits on failure. */
static int
main_listen(const struct cfg *cfg)
{
	struct addrinfo hints, *res, *ai;
	char port[16];
	int fd = -1, on = 1, rc;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof port, "%d", cfg->port);
	if ((rc = getaddrinfo(cfg->host, port, &hints, &res)) != 0)
		fatalx("http: cannot listen on %s:%d: %s", cfg->host, cfg->port,
		    gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 1024) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		fatal("http: cannot listen on %s:%d", cfg->host, cfg->port);
	evutil_make_socket_nonblocking(fd);
	return fd;
}

/* Forks worker number i; returns its pid (the child never returns). */
static pid_t
main_fork_worker(struct cfg *cfg, int fd, int i, const sigset_t *old)
{
	pid_t pid;

	if ((pid = fork()) == -1) {
		log_warn("fork");
		return -1;
	}
	if (pid > 0)
		return pid;
	/* A worker dies with its supervisor (kill -9 included). */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigprocmask(SIG_SETMASK, old, NULL);
	log_debug("worker %d: pid %ld", i, (long)getpid());
	_exit(main_worker(cfg, fd, 0));
}

/* The cleanup store is ready (or will not be): sweep. */
static void
main_on_cleanup_ready(evutil_socket_t f, short what, void *arg)
{
	struct main_ctx *m = arg;
	struct timeval tv = {0, 100000};

	if (!store_ready(m->store) && ++m->ready_tries < 50) {
		evtimer_add(m->ready_wait, &tv);
		return;
	}
	pool_shutdown(m->pool, 1, main_on_shutdown, m);
}

/* AUTO_CLEANUP run by the supervisor once every worker has exited. */
static void
main_cleanup(struct cfg *cfg)
{
	struct main_ctx m;
	struct drv_params dp;
	struct pool_params pp;
	struct timeval tv = {0, 0};
	char *cause;

	memset(&m, 0, sizeof m);
	m.cfg = cfg;
	if ((m.base = event_base_new()) == NULL)
		fatalx("cannot make an event loop");
	m.hc = hc_new(m.base, MAIN_HC_CONNS);
	memset(&dp, 0, sizeof dp);
	dp.endpoint = cfg->docker_host;
	dp.timeout_ms = (long)cfg->docker_timeout * 1000;
	if ((m.drv = drv_open(m.base, m.hc, &dp, &cause)) == NULL) {
		log_warnx("cleanup: docker: %s", cause);
		free(cause);
		hc_free(m.hc);
		event_base_free(m.base);
		return;
	}
	m.store = main_store(m.base, cfg);
	main_pool_params(cfg, &pp);
	pp.shared = 1; /* the workers' store, shared by definition */
	m.pool = pool_new(m.base, m.hc, m.drv, m.store, &pp);
	m.ready_wait = evtimer_new(m.base, main_on_cleanup_ready, &m);
	evtimer_add(m.ready_wait, &tv);
	log_info("cleanup: removing this instance's sandboxes");
	event_base_dispatch(m.base);
	event_free(m.ready_wait);
	pool_free(m.pool);
	store_free(m.store);
	drv_close(m.drv);
	hc_free(m.hc);
	event_base_free(m.base);
}

/*
 * The supervisor's engine checks before it forks, on a loop of their own:
 * dockerd answers and has every OCI runtime a type names; exits if not.
 */
static void
main_preflight(struct cfg *cfg)
{
	struct main_ctx m;
	struct drv_params dp;
	char *cause;

	memset(&m, 0, sizeof m);
	m.cfg = cfg;
	m.preflight = 1;
	if ((m.base = event_base_new()) == NULL)
		fatalx("cannot make an event loop");
	m.hc = hc_new(m.base, MAIN_HC_CONNS);
	memset(&dp, 0, sizeof dp);
	dp.endpoint = cfg->docker_host;
	dp.timeout_ms = (long)cfg->docker_timeout * 1000;
	if ((m.drv = drv_open(m.base, m.hc, &dp, &cause)) == NULL)
		fatalx("docker: %s", cause);
	drv_ping(m.drv, main_on_ping, &m);
	event_base_dispatch(m.base);
	drv_close(m.drv);
	hc_free(m.hc);
	event_base_free(m.base);
}

/*
 * The supervisor of WORKERS=N processes: binds, forks, restarts workers
 * that die, forwards SIGTERM/SIGINT, then runs AUTO_CLEANUP. Returns the
 * exit code.
 */
static int
main_supervise(struct cfg *cfg)
{
	int n = cfg->workers, i, fd, status, alive, stopping = 0;
	pid_t *pids = xcalloc((size_t)n, sizeof *pids), pid;
	time_t *started = xcalloc((size_t)n, sizeof *started);
	struct timespec ts = {1, 0};
	sigset_t set, old;
	siginfo_t info;
	int sig;

	main_check(cfg);
	main_fd_limit(cfg); /* each worker serves its own connections */
	fd = main_listen(cfg);
	main_dirs(cfg);
	signal(SIGPIPE, SIG_IGN);
	main_preflight(cfg);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, &old);
	log_info("runtime-sandbox-server %s: listening on %s:%d with %d "
		 "workers",
	    PACKAGE_VERSION, cfg->host, cfg->port, n);
	for (i = 0; i < n; i++) {
		pids[i] = main_fork_worker(cfg, fd, i, &old);
		started[i] = time(NULL);
	}
	for (;;) {
		sig = sigtimedwait(&set, &info, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			if (stopping) {
				log_warnx(
				    "signal %d again: killing workers", sig);
				for (i = 0; i < n; i++)
					if (pids[i] > 0)
						kill(pids[i], SIGKILL);
			} else {
				log_info(
				    "signal %d: stopping %d workers", sig, n);
				for (i = 0; i < n; i++)
					if (pids[i] > 0)
						kill(pids[i], SIGTERM);
			}
			stopping = 1;
		}
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			for (i = 0; i < n; i++)
				if (pids[i] == pid)
					break;
			if (i == n)
				continue;
			pids[i] = 0;
			if (!stopping)
				log_warnx("worker %d (pid %ld) %s %d; starting "
					  "another",
				    i, (long)pid,
				    WIFSIGNALED(status) ? "killed by signal"
							: "exited with",
				    WIFSIGNALED(status) ? WTERMSIG(status)
							: WEXITSTATUS(status));
		}
		alive = 0;
		for (i = 0; i < n; i++) {
			if (pids[i] == 0 && !stopping &&
			    time(NULL) > started[i]) {
				/* At most one restart per second per slot. */
				pids[i] = main_fork_worker(cfg, fd, i, &old);
				started[i] = time(NULL);
			}
			if (pids[i] < 0)
				pids[i] = 0;
			if (pids[i] > 0)
				alive++;
		}
		if (stopping && alive == 0)
			break;
	}
	close(fd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (cfg->auto_cleanup)
		main_cleanup(cfg);
	else
		log_info("shutdown: done");
	free(pids);
	free(started);
	return 0;
}

/* Runs the daemon: one process, or a supervisor of WORKERS processes. */
static int
main_run(struct cfg *cfg)
{
	if (cfg->workers > 1 && cfg->redis_enabled)
		return main_supervise(cfg);
	return main_worker(cfg, -1, cfg->auto_cleanup);
}

int
main(int argc, char *argv[])
{
	/* clang-format off */
	static const struct option longopts[] = {
		{ "config",    required_argument, NULL, 'c' },
		{ "extension", required_argument, NULL, 'e' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "version",   no_argument,       NULL, 'V' },
		{ "help",      no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	/* clang-format on */
	const char **exts;
	struct cfg_args args;
	struct cfg *cfg;
	int ch, check = 0, level = -1, next = 0, rc;

	exts = xcalloc((size_t)argc + 1, sizeof *exts);
	memset(&args, 0, sizeof args);
	while ((ch = getopt_long(argc, argv, "nh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			args.config_file = optarg;
			break;
		case 'e':
			exts[next++] = optarg;
			break;
		case 'l':
			if ((level = log_level_parse(optarg)) == -1) {
				fprintf(stderr,
				    "runtime-sandbox-server: unknown log "
				    "level: %s\n",
				    optarg);
				main_usage(stderr);
				free(exts);
				return 1;
			}
			break;
		case 'n':
			check = 1;
			break;
		case 'V':
			printf("runtime-sandbox-server (sandpool) %s\n",
			    PACKAGE_VERSION);
			free(exts);
			return 0;
		case 'h':
			main_usage(stdout);
			free(exts);
			return 0;
		default:
			main_usage(stderr);
			free(exts);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr,
		    "runtime-sandbox-server: unexpected argument: "
		    "%s\n",
		    argv[optind]);
		main_usage(stderr);
		free(exts);
		return 1;
	}
	args.extensions = exts;

	log_init("runtime-sandbox-server",
	    level >= 0 ? (enum log_level)level : LOG_LEVEL_INFO);
	if ((cfg = cfg_load(&args, stderr)) == NULL) {
		free(exts);
		return 1;
	}
	free(exts);
	if (check) {
		cfg_print(cfg, stdout);
		cfg_free(cfg);
		return 0;
	}
	if (cfg->debug)
		log_setlevel(LOG_LEVEL_DEBUG);
	rc = main_run(cfg);
	cfg_free(cfg);
	return rc;
}
