/*
 * runtime-sandbox-server: the sandpool daemon. main() reads the command
 * line and the configuration, binds the listener, wires the layers
 * together on one event loop (HTTP API -> pool -> store and driver), and
 * owns the process lifetime: start-up checks, signals, orderly shutdown.
 */

#ifdef HAVE_CONFIG_H
#include "autoconfig.h" /* PACKAGE_VERSION */
#endif
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "api.h"
#include "config.h"
#include "driver.h"
#include "hc.h"
#include "http.h"
#include "log.h"
#include "pool.h"
#include "store.h"
#include "store_bench.h"
#include "xmalloc.h"

#define MAIN_MAX_HEADERS (16 * 1024)
#define MAIN_HTTP_TIMEOUT 60
#define MAIN_HC_CONNS 4

/* Everything the daemon owns, in order of acquisition. */
struct main_ctx {
	struct cfg *cfg;
	struct event_base *base;
	struct hc *hc;
	struct api *api;
	struct http *http;
	struct drv *drv;
	struct store *store;
	struct pool *pool;
	struct event *sigterm;
	struct event *sigint;
	int bench_records; /* SANDPOOL_BENCH_RECORDS */
	int stopping;
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

/* 1 if host names a loopback address. */
static int
main_is_loopback(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		    (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return 0;
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
	    m->pool != NULL && m->cfg->auto_cleanup
		? ", removing this instance's sandboxes"
		: "");
	http_stop_accepting(m->http);
	api_stop(m->api);
	if (m->pool != NULL)
		pool_shutdown(
		    m->pool, m->cfg->auto_cleanup, main_on_shutdown, m);
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

/* dockerd answered the ping: build the pool and serve the RPC routes. */
static void
main_on_ping(const struct drv_reply *r, void *arg)
{
	struct main_ctx *m = arg;
	const struct cfg *cfg = m->cfg;
	struct pool_params pp;

	if (r->err != DRV_OK)
		fatalx("docker: %s does not answer: %s; is dockerd running?",
		    cfg->docker_host,
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
	if (m->stopping)
		return;
	m->store = store_mem_new(m->base, cfg->port_lo, cfg->port_hi);
	memset(&pp, 0, sizeof pp);
	pp.instance_id = cfg->instance_id;
	pp.prefix = cfg->container_prefix;
	pp.agent_path = cfg->agent_path;
	pp.run_dir = cfg->run_dir;
	pp.mount_root = cfg->default_mount_dir;
	pp.publish_host = cfg->publish_host;
	pp.readonly_mounts = (const char *const *)cfg->readonly_mounts;
	pp.types = cfg->types;
	pp.pool_types = (const char *const *)cfg->default_types;
	pp.pool_size = cfg->pool_size;
	pp.refill_concurrency = cfg->refill_concurrency;
	pp.max_instances = cfg->max_sandbox_instances;
	pp.warmup_timeout = cfg->warmup_timeout;
	pp.keep_workspace = cfg->keep_workspace;
	pp.watcher_interval = cfg->watcher_scan_interval;
	if (m->bench_records > 0) {
		store_bench_preload(m->store, &pp, m->bench_records);
		log_warnx("bench: %d synthetic warm records without containers "
			  "(SANDPOOL_BENCH_RECORDS)",
		    m->bench_records);
	}
	m->pool = pool_new(m->base, m->hc, m->drv, m->store, &pp);
	api_set_pool(m->api, m->pool);
	log_info("docker: %s answers; instance %s", cfg->docker_host,
	    cfg->instance_id);
	pool_start(m->pool, main_on_pool_started, m);
}

/* Checks what must hold before anything starts; exits on failure. */
static void
main_check(const struct cfg *cfg)
{
	if (cfg->redis_enabled) {
		log_error("REDIS_ENABLED=true is not implemented yet");
		exit(1);
	}
	if (cfg->workers > 1)
		log_warnx("WORKERS=%d: one process serves for now (workers "
			  "need the Redis store)",
		    cfg->workers);
	if (!main_is_loopback(cfg->host) &&
	    (cfg->bearer_token == NULL || *cfg->bearer_token == '\0'))
		log_warnx("HOST=%s is not a loopback address and BEARER_TOKEN "
			  "is empty: anyone who can reach the port controls "
			  "the sandboxes",
		    cfg->host);
}

/* Sets up everything, runs the loop, tears down; returns the exit code. */
static int
main_run(struct cfg *cfg)
{
	struct main_ctx m;
	struct http_params hp;
	struct drv_params dp;
	char *cause;

	memset(&m, 0, sizeof m);
	m.cfg = cfg;
	signal(SIGPIPE, SIG_IGN);
	if ((m.base = event_base_new()) == NULL)
		fatalx("cannot make an event loop");
	m.hc = hc_new(m.base, MAIN_HC_CONNS);
	m.api = api_new(m.base, cfg, m.hc);

	/* The listener first: a port in use fails before anything else. */
	memset(&hp, 0, sizeof hp);
	hp.host = cfg->host;
	hp.port = cfg->port;
	hp.max_body = (size_t)cfg->max_body;
	hp.max_headers = MAIN_MAX_HEADERS;
	hp.timeout = MAIN_HTTP_TIMEOUT;
	if ((m.http = http_new(m.base, &hp, api_request, m.api, &cause)) ==
	    NULL)
		fatalx("http: %s", cause);
	main_check(cfg);
	m.bench_records = main_bench_records();

	if (main_mkdirs(cfg->run_dir, 0700) == -1)
		fatal("cannot create SANDPOOL_RUN_DIR %s", cfg->run_dir);
	if (cfg->default_mount_dir != NULL &&
	    main_mkdirs(cfg->default_mount_dir, 0755) == -1)
		fatal("cannot create DEFAULT_MOUNT_DIR %s",
		    cfg->default_mount_dir);

	memset(&dp, 0, sizeof dp);
	dp.endpoint = cfg->docker_host;
	dp.timeout_ms = (long)cfg->docker_timeout * 1000;
	if ((m.drv = drv_open(m.base, m.hc, &dp, &cause)) == NULL)
		fatalx("docker: %s", cause);

	m.sigterm = evsignal_new(m.base, SIGTERM, main_on_signal, &m);
	m.sigint = evsignal_new(m.base, SIGINT, main_on_signal, &m);
	evsignal_add(m.sigterm, NULL);
	evsignal_add(m.sigint, NULL);

	log_info("runtime-sandbox-server %s: listening on %s:%d",
	    PACKAGE_VERSION, cfg->host, cfg->port);
	drv_ping(m.drv, main_on_ping, &m);
	event_base_dispatch(m.base);

	/* Reverse order; the API drops requests still waiting. */
	event_free(m.sigint);
	event_free(m.sigterm);
	pool_free(m.pool);
	api_free(m.api);
	http_free(m.http);
	if (m.store != NULL)
		store_free(m.store);
	drv_close(m.drv);
	hc_free(m.hc);
	event_base_free(m.base);
	return 0;
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
