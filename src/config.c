/*
 * config: loads runtime-sandbox-server's configuration. One table of keys
 * (cfg_keys) drives everything: which names are read from the .env file
 * and the environment, how each value is parsed and bounded, the defaults,
 * the unknown-key warnings and the printed effective configuration (secrets
 * masked). Owns the struct cfg it returns, including the sandbox type
 * registry built from RUNTIME_SANDBOX_* and the --extension files.
 *
 * The file is never exported into the process environment: the loader
 * keeps a merged view (key, value, where it came from) and reads from it.
 */
#include <sys/queue.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "json.h"
#include "log.h"
#include "sbtype.h"
#include "xmalloc.h"

#ifndef SANDPOOL_LIBEXECDIR
#define SANDPOOL_LIBEXECDIR "/usr/local/libexec/sandpool"
#endif

extern char **environ;

/* Largest .env file, value and echoed value. */
#define CFG_MAX_FILE (1024 * 1024)
#define CFG_MAX_VALUE (64 * 1024)
#define CFG_SHOW_MAX 60
/* Longest SANDPOOL_RUN_DIR: <dir>/<25-char id>/agent.sock fits sun_path. */
#define CFG_MAX_RUN_DIR (107 - 1 - 25 - (int)sizeof("/agent.sock") + 1)
/* Unknown keys warned about one by one, with a suggestion. */
#define CFG_MAX_UNKNOWN 20
/* Longest container name prefix: prefix + 25-char id <= 63. */
#define CFG_MAX_PREFIX 38

enum cfg_type {
	CFG_STR,
	CFG_INT,
	CFG_LONG,
	CFG_BOOL,
	CFG_FLOAT,
	CFG_LIST,   /* NULL-terminated char ** */
	CFG_PORTS,  /* two ints: lo, then hi */
	CFG_MOUNTS, /* JSON object -> NULL-terminated host, ctr, ... */
	CFG_ENUM
};

#define CFG_SECRET 0x01 /* masked in cfg_print, never echoed */
#define CFG_OPT 0x02	/* empty -> NULL */
#define CFG_PATH 0x04	/* made absolute against the cwd */

#define CFG_NOFIELD (-1L)

typedef int cfg_check_cb(const char *, char **);

struct cfg_key {
	const char *name;
	enum cfg_type type;
	int flags;
	const char *def;	    /* default as text; NULL = unset */
	long long min, max;	    /* CFG_INT, CFG_LONG, CFG_FLOAT */
	const char *const *choices; /* CFG_ENUM */
	cfg_check_cb *check;	    /* extra check of a CFG_STR */
	long off;		    /* offsetof(struct cfg, f) or NOFIELD */
	const char *help;
};

static cfg_check_cb cfg_check_prefix, cfg_check_docker_host, cfg_check_ip,
    cfg_check_instance, cfg_check_run_dir, cfg_check_word, cfg_check_tag,
    cfg_check_host, cfg_check_registry;

static const char *const cfg_deployments[] = {
    "docker", "cloud", "k8s", "agentrun", "fc", "gvisor", "boxlite", NULL};
static const char *const cfg_file_systems[] = {"local", "oss", NULL};

/* clang-format off */
#define F(f) ((long)offsetof(struct cfg, f))
#define NOF CFG_NOFIELD
#define S(n, fl, d, ck, o, h) { n, CFG_STR, fl, d, 0, 0, NULL, ck, o, h }
#define I(n, d, lo, hi, o, h) { n, CFG_INT, 0, d, lo, hi, NULL, NULL, o, h }
#define L(n, d, lo, hi, o, h) { n, CFG_LONG, 0, d, lo, hi, NULL, NULL, o, h }
#define B(n, d, o, h) { n, CFG_BOOL, 0, d, 0, 0, NULL, NULL, o, h }
#define D(n, d, lo, hi, h) { n, CFG_FLOAT, 0, d, lo, hi, NULL, NULL, NOF, h }
#define LIST(n, d, o, h) { n, CFG_LIST, 0, d, 0, 0, NULL, NULL, o, h }
#define E(n, d, ch, o, h) { n, CFG_ENUM, 0, d, 0, 0, ch, NULL, o, h }
#define SEC (CFG_SECRET | CFG_OPT)
#define INTMAX ((long long)INT_MAX)

static const struct cfg_key cfg_keys[] = {
	/* Service. */
	S("HOST", 0, "127.0.0.1", cfg_check_host, F(host),
	    "address the HTTP API listens on"),
	I("PORT", "8000", 1, 65535, F(port),
	    "port the HTTP API listens on"),
	I("WORKERS", "1", 1, 1024, F(workers),
	    "worker processes; more than 1 needs REDIS_ENABLED=true"),
	B("DEBUG", "false", F(debug),
	    "debug logging"),
	S("BEARER_TOKEN", SEC, NULL, NULL, F(bearer_token),
	    "token clients must send; unset or empty disables auth"),

	/* Manager. */
	LIST("DEFAULT_SANDBOX_TYPE", "base", F(default_types),
	    "types kept warm; the first is the default type"),
	I("POOL_SIZE", "0", 0, 10000, F(pool_size),
	    "warm containers kept per default type; 0 disables the pool"),
	B("AUTO_CLEANUP", "true", F(auto_cleanup),
	    "release every sandbox at shutdown"),
	S("CONTAINER_PREFIX_KEY", 0, "runtime_sandbox_container_",
	    cfg_check_prefix, F(container_prefix),
	    "container name prefix"),
	E("CONTAINER_DEPLOYMENT", "docker", cfg_deployments,
	    F(deployment),
	    "backend: docker, or gvisor (docker with runtime runsc)"),
	S("DEFAULT_MOUNT_DIR", CFG_OPT | CFG_PATH, "sessions_mount_dir",
	    NULL, F(default_mount_dir),
	    "host dir of per-sandbox workspaces (/workspace); empty: none"),
	{ "READONLY_MOUNTS", CFG_MOUNTS, 0, "", 0, 0, NULL, NULL,
	    F(readonly_mounts),
	    "JSON object host path -> container path, mounted read-only" },
	B("ALLOW_MOUNT_DIR", "false", F(allow_mount_dir),
	    "honour mount_dir given by create requests"),
	S("STORAGE_FOLDER", CFG_OPT | CFG_PATH, NULL, NULL,
	    F(storage_folder),
	    "workspace persistence dir; unset: none"),
	{ "PORT_RANGE", CFG_PORTS, 0, "[49152,59152]", 1, 65535, NULL,
	    NULL, F(port_lo),
	    "host ports lo <= p < hi for published runtime ports" },
	I("HEARTBEAT_TIMEOUT", "300", 1, INTMAX, F(heartbeat_timeout),
	    "idle seconds before a session is reaped"),
	I("HEARTBEAT_LOCK_TTL", "120", 1, INTMAX, F(heartbeat_lock_ttl),
	    "seconds a reap lock lives in Redis"),
	I("WATCHER_SCAN_INTERVAL", "1", 0, INTMAX,
	    F(watcher_scan_interval),
	    "watcher period in seconds; 0 disables reaping and refill"),
	I("RELEASE_KET_TTL", "3600", 0, INTMAX, F(released_key_ttl),
	    "seconds released records are kept; 0 = forever"),
	I("RELEASED_KEY_TTL", NULL, 0, INTMAX, F(released_key_ttl),
	    "same as RELEASE_KET_TTL, which upstream misspells; wins"),
	I("MAX_SANDBOX_INSTANCES", "0", 0, INTMAX,
	    F(max_sandbox_instances),
	    "cap on warm + running sandboxes; 0 = none"),

	/* Redis. */
	B("REDIS_ENABLED", "false", F(redis_enabled),
	    "keep state in Redis, shared by workers and instances"),
	S("REDIS_SERVER", 0, "localhost", cfg_check_host, F(redis_server),
	    "Redis host"),
	I("REDIS_PORT", "6379", 1, 65535, F(redis_port),
	    "Redis port"),
	I("REDIS_DB", "0", 0, INTMAX, F(redis_db),
	    "Redis database index"),
	S("REDIS_USER", CFG_OPT, NULL, NULL, F(redis_user),
	    "Redis ACL user"),
	S("REDIS_PASSWORD", SEC, NULL, NULL, F(redis_password),
	    "Redis password"),
	S("REDIS_PORT_KEY", 0, "_runtime_sandbox_container_occupied_ports",
	    NULL, F(redis_port_key),
	    "Redis key of the claimed host ports"),
	S("REDIS_CONTAINER_POOL_KEY", 0,
	    "_runtime_sandbox_container_container_pool", NULL,
	    F(redis_pool_key),
	    "Redis key prefix of the warm pools"),

	/* Images and runtime calls. */
	S("RUNTIME_SANDBOX_REGISTRY", 0, "", cfg_check_registry,
	    F(image_registry),
	    "image registry prefix; empty: none"),
	S("RUNTIME_SANDBOX_IMAGE_NAMESPACE", 0, "agentscope",
	    cfg_check_word, F(image_namespace),
	    "image namespace"),
	S("RUNTIME_SANDBOX_IMAGE_TAG", 0, "latest", cfg_check_tag,
	    F(image_tag),
	    "image tag"),
	I("RUNTIME_SANDBOX_TIMEOUT", "60", 1, 86400, F(runtime_timeout),
	    "seconds allowed for each call to a sandbox's runtime"),
	S("DOCKER_HOST", 0, "unix:///var/run/docker.sock",
	    cfg_check_docker_host, F(docker_host),
	    "Docker Engine socket, unix:///absolute/path"),
	S("OPENAI_API_KEY", SEC, NULL, NULL, NOF,
	    "given to bfcl sandboxes"),
	S("DATASET_SUB_TYPE", 0, "multi_turn", cfg_check_word, NOF,
	    "bfcl data set given to bfcl sandboxes"),

	/* sandpool's own keys. */
	S("SANDPOOL_AGENT", CFG_PATH, SANDPOOL_LIBEXECDIR "/sandpool-agent",
	    NULL, F(agent_path),
	    "sandpool-agent binary mounted into sandboxes"),
	S("SANDPOOL_RUN_DIR", CFG_PATH, "/run/sandpool", cfg_check_run_dir,
	    F(run_dir),
	    "host dir of the per-sandbox agent sockets"),
	S("SANDPOOL_INSTANCE_ID", CFG_OPT, NULL, cfg_check_instance,
	    F(instance_id),
	    "label of this instance's containers; default <hostname>-<PORT>"),
	S("SANDPOOL_PUBLISH_HOST", 0, "127.0.0.1", cfg_check_ip,
	    F(publish_host),
	    "host address runtime ports are published on"),
	I("SANDPOOL_DOCKER_TIMEOUT", "30", 1, 3600, F(docker_timeout),
	    "seconds allowed for each Docker Engine call"),
	I("SANDPOOL_WARMUP_TIMEOUT", "60", 1, 3600, F(warmup_timeout),
	    "seconds a new sandbox has to become healthy"),
	I("SANDPOOL_REFILL_CONCURRENCY", "2", 1, 64, F(refill_concurrency),
	    "sandboxes started at once to refill the pools"),
	L("SANDPOOL_MAX_BODY", "10485760", 1024, 1073741824, F(max_body),
	    "largest request body in bytes"),
	B("SANDPOOL_KEEP_WORKSPACE", "false", F(keep_workspace),
	    "keep a sandbox's workspace dir after release"),
	L("SANDPOOL_MAX_HEADERS", "16384", 1024, 1048576, F(max_headers),
	    "largest request header block in bytes"),
	I("SANDPOOL_MAX_CONNECTIONS", "512", 1, 1000000, F(max_connections),
	    "client connections served at once; more wait to be accepted"),
	I("SANDPOOL_IDLE_TIMEOUT", "60", 1, 86400, F(idle_timeout),
	    "seconds a client connection may stay silent"),
	I("SANDPOOL_REQUEST_TIMEOUT", "60", 1, 86400, F(request_timeout),
	    "seconds a client has to send a whole request once begun"),
	B("SANDPOOL_ALLOW_NO_AUTH", "false", F(allow_no_auth),
	    "allow a non-loopback HOST with an empty BEARER_TOKEN"),
	B("SANDPOOL_ALLOW_CLEANUP_ROUTE", "false", F(allow_cleanup),
	    "serve /cleanup (releases this instance's sandboxes)"),
	LIST("SANDPOOL_MOUNT_DIR_ROOTS", "", F(mount_dir_roots),
	    "dirs under which ALLOW_MOUNT_DIR accepts a create's mount_dir"),
	I("SANDPOOL_LEASE_TTL", "10", 1, 3600, F(lease_ttl),
	    "seconds a worker's Redis lease lives unless renewed"),
	I("SANDPOOL_REDIS_TIMEOUT", "2000", 10, 600000, F(redis_timeout_ms),
	    "milliseconds allowed for each Redis command"),

	/* Other backends: parsed and checked, not used. */
	E("FILE_SYSTEM", "local", cfg_file_systems, NOF,
	    "workspace storage: local (oss is not implemented)"),
	S("OSS_ENDPOINT", 0, "http://oss-cn-hangzhou.aliyuncs.com", NULL,
	    NOF, "OSS endpoint (unused)"),
	S("OSS_ACCESS_KEY_ID", SEC, NULL, NULL, NOF, "OSS (unused)"),
	S("OSS_ACCESS_KEY_SECRET", SEC, NULL, NULL, NOF, "OSS (unused)"),
	S("OSS_BUCKET_NAME", CFG_OPT, NULL, NULL, NOF, "OSS (unused)"),
	S("K8S_NAMESPACE", 0, "default", NULL, NOF, "k8s (unused)"),
	S("KUBECONFIG_PATH", CFG_OPT, NULL, NULL, NOF, "k8s (unused)"),
	S("AGENT_RUN_ACCOUNT_ID", CFG_OPT, NULL, NULL, NOF,
	    "AgentRun (unused)"),
	S("AGENT_RUN_ACCESS_KEY_ID", SEC, NULL, NULL, NOF,
	    "AgentRun (unused)"),
	S("AGENT_RUN_ACCESS_KEY_SECRET", SEC, NULL, NULL, NOF,
	    "AgentRun (unused)"),
	S("AGENT_RUN_REGION_ID", 0, "cn-hangzhou", NULL, NOF,
	    "AgentRun (unused)"),
	D("AGENT_RUN_CPU", "2.0", 0, 1024, "AgentRun (unused)"),
	I("AGENT_RUN_MEMORY", "2048", 0, INTMAX, NOF, "AgentRun (unused)"),
	S("AGENT_RUN_VPC_ID", CFG_OPT, NULL, NULL, NOF, "AgentRun (unused)"),
	LIST("AGENT_RUN_VSWITCH_IDS", NULL, NOF, "AgentRun (unused)"),
	S("AGENT_RUN_SECURITY_GROUP_ID", CFG_OPT, NULL, NULL, NOF,
	    "AgentRun (unused)"),
	S("AGENT_RUN_PREFIX", 0, "agentscope-sandbox", NULL, NOF,
	    "AgentRun (unused)"),
	S("AGENT_RUN_LOG_PROJECT", CFG_OPT, NULL, NULL, NOF,
	    "AgentRun (unused)"),
	S("AGENT_RUN_LOG_STORE", CFG_OPT, NULL, NULL, NOF,
	    "AgentRun (unused)"),
	S("FC_ACCOUNT_ID", CFG_OPT, NULL, NULL, NOF, "FC (unused)"),
	S("FC_ACCESS_KEY_ID", SEC, NULL, NULL, NOF, "FC (unused)"),
	S("FC_ACCESS_KEY_SECRET", SEC, NULL, NULL, NOF, "FC (unused)"),
	S("FC_REGION_ID", 0, "cn-hangzhou", NULL, NOF, "FC (unused)"),
	D("FC_CPU", "2.0", 0, 1024, "FC (unused)"),
	I("FC_MEMORY", "2048", 0, INTMAX, NOF, "FC (unused)"),
	S("FC_VPC_ID", CFG_OPT, NULL, NULL, NOF, "FC (unused)"),
	LIST("FC_VSWITCH_IDS", NULL, NOF, "FC (unused)"),
	S("FC_SECURITY_GROUP_ID", CFG_OPT, NULL, NULL, NOF, "FC (unused)"),
	S("FC_PREFIX", 0, "agentscope-sandbox", NULL, NOF, "FC (unused)"),
	S("FC_LOG_PROJECT", CFG_OPT, NULL, NULL, NOF, "FC (unused)"),
	S("FC_LOG_STORE", CFG_OPT, NULL, NULL, NOF, "FC (unused)"),
};
/* clang-format on */

#undef F
#undef NOF
#undef S
#undef I
#undef L
#undef B
#undef D
#undef LIST
#undef E
#undef SEC
#undef INTMAX

#define CFG_NKEYS (sizeof cfg_keys / sizeof cfg_keys[0])

_Static_assert(offsetof(struct cfg, port_hi) ==
	offsetof(struct cfg, port_lo) + sizeof(int),
    "PORT_RANGE writes port_lo and port_hi as a pair");

/*
 * What cfg_load returns: the public struct, then the effective text of the
 * keys that have no field (other backends), for cfg_print.
 */
struct cfg_priv {
	struct cfg pub; /* first: cfg_free casts back */
	char *raw[CFG_NKEYS];
};

/* One KEY=VALUE line of the file. */
struct cfg_line {
	char *name;
	char *value;
	int line;
};

/* Where a key's value came from. */
struct cfg_val {
	const char *text; /* NULL: unset, the default applies */
	const char *file; /* file path, or NULL */
	int line;
	char *env; /* environment name, or NULL */
};

/* One error message; kept sorted by (rank, line). */
struct cfg_err {
	char *msg;
	int rank; /* 0: the file, 1: the environment, 2: the rest */
	int line;
	TAILQ_ENTRY(cfg_err) entry;
};
TAILQ_HEAD(cfg_errs, cfg_err);

/* The loader's state. */
struct cfg_ctx {
	char cwd[PATH_MAX];
	const char *file; /* file loaded, or NULL */
	int override;	  /* 1: the file overrides the environment */
	struct cfg_line *lines;
	size_t nlines;
	struct cfg_val vals[CFG_NKEYS];
	struct cfg_errs errs;
	int nerrs;
	int nunknown; /* unknown keys of the file */
};

/* A growable string. */
struct cfg_buf {
	char *p;
	size_t len, cap;
};

/* Appends n bytes to a buffer; -1 once it would pass CFG_MAX_VALUE. */
static int
cfg_buf_add(struct cfg_buf *b, const char *s, size_t n)
{
	if (b->len + n > CFG_MAX_VALUE)
		return -1;
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xreallocarray(b->p, 1, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* Finds a key of the table by name, any case; -1 if unknown. */
static int
cfg_key_index(const char *name)
{
	size_t i;

	for (i = 0; i < CFG_NKEYS; i++)
		if (strcasecmp(cfg_keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

/*
 * Adds an error located at a value's origin. Errors of the file are kept in
 * line order, then those of the environment, then the rest (extensions),
 * each group in the order found.
 */
static void __attribute__((__format__(printf, 3, 4)))
cfg_error(struct cfg_ctx *ctx, const struct cfg_val *v, const char *fmt, ...)
{
	struct cfg_err *e, *after;
	char buf[1024], *msg;
	va_list ap;

	/* Values are shown cut to CFG_SHOW_MAX: messages stay short. */
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	msg = xstrdup(buf);
	e = xcalloc(1, sizeof *e);
	e->rank = 2;
	if (v == NULL)
		e->msg = msg;
	else if (v->file != NULL) {
		xasprintf(&e->msg, "%s:%d: %s", v->file, v->line, msg);
		e->rank = 0;
		e->line = v->line;
		free(msg);
	} else if (v->env != NULL) {
		/* Messages start with the key: "environment: KEY: ...". */
		xasprintf(&e->msg, "environment: %s", msg);
		e->rank = 1;
		free(msg);
	} else {
		xasprintf(&e->msg, "default: %s", msg);
		free(msg);
	}
	after = TAILQ_LAST(&ctx->errs, cfg_errs);
	while (after != NULL &&
	    (after->rank > e->rank ||
		(after->rank == e->rank && after->line > e->line)))
		after = TAILQ_PREV(after, cfg_errs, entry);
	if (after == NULL)
		TAILQ_INSERT_HEAD(&ctx->errs, e, entry);
	else
		TAILQ_INSERT_AFTER(&ctx->errs, after, e, entry);
	ctx->nerrs++;
}

/* Returns s without leading and trailing blanks, in place. */
static char *
cfg_trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Makes a path absolute against the cwd, dropping "./" and trailing '/'. */
static char *
cfg_abspath(const struct cfg_ctx *ctx, const char *s)
{
	char *out;
	size_t n;

	if (*s == '/')
		out = xstrdup(s);
	else {
		while (s[0] == '.' && s[1] == '/') {
			s += 2;
			while (*s == '/')
				s++;
		}
		if (*s == '\0' || strcmp(s, ".") == 0)
			out = xstrdup(ctx->cwd);
		else if (strcmp(ctx->cwd, "/") == 0)
			xasprintf(&out, "/%s", s);
		else
			xasprintf(&out, "%s/%s", ctx->cwd, s);
	}
	n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	return out;
}

/* Checks CONTAINER_PREFIX_KEY: <= 38 of [a-zA-Z0-9_.-], first alnum. */
static int
cfg_check_prefix(const char *s, char **cause)
{
	size_t i;

	if (*s != '\0' && !isalnum((unsigned char)*s)) {
		xasprintf(cause, "must start with a letter or a digit");
		return -1;
	}
	for (i = 0; s[i] != '\0'; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' &&
		    s[i] != '.' && s[i] != '-') {
			xasprintf(cause,
			    "may hold only letters, digits, '_', '.' and '-'");
			return -1;
		}
	}
	if (i > CFG_MAX_PREFIX) {
		xasprintf(cause, "longer than %d characters", CFG_MAX_PREFIX);
		return -1;
	}
	return 0;
}

/* Checks DOCKER_HOST: unix:///absolute/path fitting in sun_path. */
static int
cfg_check_docker_host(const char *s, char **cause)
{
	if (strncmp(s, "unix://", 7) != 0 || s[7] != '/') {
		xasprintf(cause, "only unix:///absolute/path is supported");
		return -1;
	}
	if (strlen(s + 7) > 107) {
		xasprintf(cause, "socket path longer than 107 bytes");
		return -1;
	}
	return 0;
}

/* Checks an IPv4 or IPv6 address. */
static int
cfg_check_ip(const char *s, char **cause)
{
	unsigned char addr[16];

	if (inet_pton(AF_INET, s, addr) == 1 ||
	    inet_pton(AF_INET6, s, addr) == 1)
		return 0;
	xasprintf(cause, "not an IPv4 or IPv6 address");
	return -1;
}

/* Checks SANDPOOL_INSTANCE_ID: 1 to 128 of [A-Za-z0-9_.-]. */
static int
cfg_check_instance(const char *s, char **cause)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (i >= 128 ||
		    !(isalnum((unsigned char)s[i]) || s[i] == '_' ||
			s[i] == '.' || s[i] == '-')) {
			xasprintf(cause, "must be 1 to 128 of [A-Za-z0-9_.-]");
			return -1;
		}
	}
	return 0;
}

/* Checks SANDPOOL_RUN_DIR (already absolute) fits the socket paths. */
static int
cfg_check_run_dir(const char *s, char **cause)
{
	if (strlen(s) > (size_t)CFG_MAX_RUN_DIR) {
		xasprintf(cause,
		    "longer than %d bytes: the agent sockets under it would "
		    "not fit a unix socket path",
		    CFG_MAX_RUN_DIR);
		return -1;
	}
	return 0;
}

/* Checks a non-empty word without blanks, quotes or "..". */
static int
cfg_check_word(const char *s, char **cause)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (!isgraph((unsigned char)s[i]) || s[i] == '"' ||
		    s[i] == '\'' || s[i] == ':' || s[i] == '\\') {
			xasprintf(cause,
			    "may not hold blanks, quotes, ':' or "
			    "'\\'");
			return -1;
		}
	}
	if (i == 0 || strstr(s, "..") != NULL) {
		xasprintf(cause, "must be a non-empty name without \"..\"");
		return -1;
	}
	return 0;
}

/* Checks a host name or address: non-empty, no blanks. */
static int
cfg_check_host(const char *s, char **cause)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (!isgraph((unsigned char)s[i])) {
			xasprintf(cause, "may not hold blanks");
			return -1;
		}
	}
	if (i == 0) {
		xasprintf(cause, "must not be empty");
		return -1;
	}
	return 0;
}

/* Checks an image registry: empty, or a word. */
static int
cfg_check_registry(const char *s, char **cause)
{
	return *s == '\0' ? 0 : cfg_check_word(s, cause);
}

/* Checks an image tag: 1 to 128 of [A-Za-z0-9_.-], first not '.' '-'. */
static int
cfg_check_tag(const char *s, char **cause)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (i >= 128 ||
		    !(isalnum((unsigned char)s[i]) || s[i] == '_' ||
			(i > 0 && (s[i] == '.' || s[i] == '-')))) {
			xasprintf(cause,
			    "not an image tag ([A-Za-z0-9_][A-Za-"
			    "z0-9_.-]{0,127})");
			return -1;
		}
	}
	if (i == 0) {
		xasprintf(cause, "must not be empty");
		return -1;
	}
	return 0;
}

/* Parses a decimal integer within bounds. */
static int
cfg_parse_int(
    const char *s, long long min, long long max, long long *out, char **cause)
{
	char buf[CFG_SHOW_MAX + 8], *end, *t;
	long long n;

	t = xstrdup(s);
	s = cfg_trim(t);
	errno = 0;
	n = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || isspace((unsigned char)*s)) {
		xasprintf(cause, "'%s' is not an integer",
		    log_show(s, CFG_SHOW_MAX, buf, sizeof buf));
		free(t);
		return -1;
	}
	free(t);
	if (errno == ERANGE || n < min || n > max) {
		xasprintf(cause, "out of range %lld..%lld", min, max);
		return -1;
	}
	*out = n;
	return 0;
}

/* Parses a boolean as pydantic does: true/false/1/0/yes/no/on/off/t/f/y/n. */
static int
cfg_parse_bool(const char *s, int *out, char **cause)
{
	static const char *const yes[] = {
	    "true", "1", "yes", "on", "t", "y", NULL};
	static const char *const no[] = {
	    "false", "0", "no", "off", "f", "n", NULL};
	char buf[CFG_SHOW_MAX + 8], *t, *w;
	size_t i;

	t = xstrdup(s);
	w = cfg_trim(t);
	for (i = 0; yes[i] != NULL; i++)
		if (strcasecmp(w, yes[i]) == 0) {
			*out = 1;
			free(t);
			return 0;
		}
	for (i = 0; no[i] != NULL; i++)
		if (strcasecmp(w, no[i]) == 0) {
			*out = 0;
			free(t);
			return 0;
		}
	xasprintf(cause,
	    "'%s' is not a boolean (true/false, yes/no, on/off, "
	    "1/0)",
	    log_show(w, CFG_SHOW_MAX, buf, sizeof buf));
	free(t);
	return -1;
}

/* Parses a finite number within bounds. */
static int
cfg_parse_float(const char *s, double min, double max, char **cause)
{
	char buf[CFG_SHOW_MAX + 8], *end, *t, *w;
	double d;

	t = xstrdup(s);
	w = cfg_trim(t);
	d = strtod(w, &end);
	if (*w == '\0' || *end != '\0' || !isfinite(d) || d < min || d > max) {
		xasprintf(cause, "'%s' is not a number in %g..%g",
		    log_show(w, CFG_SHOW_MAX, buf, sizeof buf), min, max);
		free(t);
		return -1;
	}
	free(t);
	return 0;
}

/* Appends a list item unless it is empty or already there. */
static void
cfg_list_add(char ***list, size_t *n, const char *s, size_t len)
{
	char *item, *t;
	size_t i;

	t = xstrndup(s, len);
	item = cfg_trim(t);
	len = strlen(item);
	/* "[\"a\", b]" is no JSON: the split leaves quotes around a. */
	if (len >= 2 && (item[0] == '"' || item[0] == '\'') &&
	    item[len - 1] == item[0]) {
		item[len - 1] = '\0';
		item = cfg_trim(item + 1);
	}
	for (i = 0; i < *n; i++)
		if (strcmp((*list)[i], item) == 0)
			break;
	if (*item != '\0' && i == *n) {
		*list = xreallocarray(*list, *n + 2, sizeof **list);
		(*list)[(*n)++] = xstrdup(item);
		(*list)[*n] = NULL;
	}
	free(t);
}

/*
 * Parses a list as the upstream validator does: "[...]" is JSON if it
 * parses, else its inside is split on commas; anything else is split on
 * commas. Items are trimmed; empty and repeated ones are dropped.
 */
static int
cfg_parse_list(const char *s, char ***out, char **cause)
{
	char **list, *t, *w, *p, *q, *why;
	yajl_val v, e;
	size_t i, n = 0, len;

	list = xcalloc(1, sizeof *list);
	t = xstrdup(s);
	w = cfg_trim(t);
	len = strlen(w);
	if (len >= 2 && w[0] == '[' && w[len - 1] == ']') {
		if ((v = json_parse(w, len, &why)) != NULL) {
			for (i = 0; i < v->u.array.len; i++) {
				e = v->u.array.values[i];
				if (!YAJL_IS_STRING(e)) {
					xasprintf(cause,
					    "item %zu of the JSON array is not "
					    "a string",
					    i + 1);
					yajl_tree_free(v);
					xstrv_free(list);
					free(t);
					return -1;
				}
				cfg_list_add(&list, &n, e->u.string,
				    strlen(e->u.string));
			}
			yajl_tree_free(v);
			*out = list;
			free(t);
			return 0;
		}
		free(why);
		w[len - 1] = '\0';
		w++;
	}
	for (p = w; (q = strchr(p, ',')) != NULL; p = q + 1)
		cfg_list_add(&list, &n, p, (size_t)(q - p));
	cfg_list_add(&list, &n, p, strlen(p));
	free(t);
	*out = list;
	return 0;
}

/* Parses PORT_RANGE: JSON [lo,hi] or "lo,hi"; lo < hi, both in bounds. */
static int
cfg_parse_ports(
    const char *s, long long min, long long max, int *out, char **cause)
{
	char *t, *w, *comma, *why;
	long long lo = 0, hi = 0;
	yajl_val v;
	int bad = 0;

	t = xstrdup(s);
	w = cfg_trim(t);
	if (*w == '[') {
		if ((v = json_parse(w, strlen(w), &why)) == NULL) {
			free(why);
			bad = 1;
		} else if (!YAJL_IS_ARRAY(v) || v->u.array.len != 2 ||
		    !YAJL_IS_INTEGER(v->u.array.values[0]) ||
		    !YAJL_IS_INTEGER(v->u.array.values[1]))
			bad = 1;
		else {
			lo = YAJL_GET_INTEGER(v->u.array.values[0]);
			hi = YAJL_GET_INTEGER(v->u.array.values[1]);
		}
		yajl_tree_free(v);
	} else if ((comma = strchr(w, ',')) == NULL)
		bad = 1;
	else {
		*comma = '\0';
		if (cfg_parse_int(w, LLONG_MIN, LLONG_MAX, &lo, &why) == -1 ||
		    cfg_parse_int(comma + 1, LLONG_MIN, LLONG_MAX, &hi, &why) ==
			-1) {
			free(why);
			bad = 1;
		}
	}
	free(t);
	if (bad) {
		xasprintf(cause, "expected [lo,hi] or lo,hi");
		return -1;
	}
	if (lo < min || lo > max || hi < min || hi > max || lo >= hi) {
		xasprintf(cause,
		    "expected %lld <= lo < hi <= %lld (hi is exclusive)", min,
		    max);
		return -1;
	}
	out[0] = (int)lo;
	out[1] = (int)hi;
	return 0;
}

/* Is a container path ours (the agent's mounts) or the root? */
static int
cfg_mount_reserved(const char *p)
{
	static const char *const reserved[] = {
	    "/sandpool", "/run/sandpool", NULL};
	size_t i, n;

	if (strcmp(p, "/") == 0)
		return 1;
	for (i = 0; reserved[i] != NULL; i++) {
		n = strlen(reserved[i]);
		if (strncmp(p, reserved[i], n) == 0 &&
		    (p[n] == '\0' || p[n] == '/'))
			return 1;
	}
	return 0;
}

/*
 * Parses READONLY_MOUNTS: a JSON object host path -> container path.
 * Relative host paths are made absolute; container paths must be absolute
 * and not sandpool's own.
 */
static int
cfg_parse_mounts(
    const struct cfg_ctx *ctx, const char *s, char ***out, char **cause)
{
	char **m, *t, *w, *why;
	const char *host, *ctr;
	yajl_val v, c;
	size_t i, n;

	t = xstrdup(s);
	w = cfg_trim(t);
	if (*w == '\0' || strcmp(w, "null") == 0) {
		free(t);
		*out = xcalloc(1, sizeof **out);
		return 0;
	}
	v = json_parse(w, strlen(w), &why);
	free(t);
	if (v == NULL || !YAJL_IS_OBJECT(v)) {
		if (v == NULL)
			free(why);
		xasprintf(cause,
		    "expected a JSON object {\"/host/path\": "
		    "\"/container/path\", ...}");
		yajl_tree_free(v);
		return -1;
	}
	n = v->u.object.len;
	m = xcalloc(2 * n + 1, sizeof *m);
	for (i = 0; i < n; i++) {
		host = v->u.object.keys[i];
		c = v->u.object.values[i];
		if (!YAJL_IS_STRING(c) || *host == '\0') {
			xasprintf(cause,
			    "entry %zu: expected a non-empty host "
			    "path and a string",
			    i + 1);
			goto fail;
		}
		ctr = YAJL_GET_STRING(c);
		if (*ctr != '/' || cfg_mount_reserved(ctr) ||
		    strstr(ctr, "/../") != NULL ||
		    (strlen(ctr) >= 3 &&
			strcmp(ctr + strlen(ctr) - 3, "/..") == 0)) {
			xasprintf(cause,
			    "entry %zu: container path must be absolute, "
			    "without \"..\", and not /, /sandpool or "
			    "/run/sandpool",
			    i + 1);
			goto fail;
		}
		m[2 * i] = cfg_abspath(ctx, host);
		m[2 * i + 1] = xstrdup(ctr);
	}
	yajl_tree_free(v);
	*out = m;
	return 0;
fail:
	yajl_tree_free(v);
	xstrv_free(m);
	return -1;
}

/* Parses an enum value, any case; stores the table's spelling. */
static int
cfg_parse_enum(
    const char *s, const char *const *choices, const char **out, char **cause)
{
	char buf[CFG_SHOW_MAX + 8], *t, *w, *list = NULL, *tmp;
	size_t i;

	t = xstrdup(s);
	w = cfg_trim(t);
	for (i = 0; choices[i] != NULL; i++) {
		if (strcasecmp(w, choices[i]) == 0) {
			*out = choices[i];
			free(t);
			return 0;
		}
	}
	for (i = 0; choices[i] != NULL; i++) {
		xasprintf(&tmp, "%s%s%s", list ? list : "", list ? ", " : "",
		    choices[i]);
		free(list);
		list = tmp;
	}
	xasprintf(cause, "'%s' is not one of %s",
	    log_show(w, CFG_SHOW_MAX, buf, sizeof buf), list);
	free(list);
	free(t);
	return -1;
}

/* The address of a key's field. */
static void *
cfg_field(struct cfg *cfg, const struct cfg_key *k)
{
	return (char *)cfg + k->off;
}

/*
 * Parses one key's value (or its default) into its field, or into the raw
 * text of a field-less key. Adds an error located at the value's origin.
 */
static void
cfg_apply(struct cfg_ctx *ctx, struct cfg_priv *priv, size_t idx)
{
	const struct cfg_key *k = &cfg_keys[idx];
	const struct cfg_val *v = &ctx->vals[idx];
	struct cfg *cfg = &priv->pub;
	const char *text = v->text != NULL ? v->text : k->def;
	const char *e;
	char *cause = NULL, *str, **list;
	long long n;
	int b, ports[2];

	if (text == NULL)
		return;
	if (k->off == CFG_NOFIELD)
		priv->raw[idx] = xstrdup(text);
	switch (k->type) {
	case CFG_STR:
		if ((k->flags & CFG_OPT) && *text == '\0')
			break;
		if ((k->flags & CFG_PATH) && *text == '\0') {
			xasprintf(&cause, "must not be empty");
			break;
		}
		str = (k->flags & CFG_PATH) ? cfg_abspath(ctx, text)
					    : xstrdup(text);
		if (k->check != NULL && k->check(str, &cause) == -1) {
			free(str);
			break;
		}
		if (k->off == CFG_NOFIELD) {
			free(str);
			break;
		}
		free(*(char **)cfg_field(cfg, k));
		*(char **)cfg_field(cfg, k) = str;
		break;
	case CFG_INT:
	case CFG_LONG:
		if (cfg_parse_int(text, k->min, k->max, &n, &cause) == -1 ||
		    k->off == CFG_NOFIELD)
			break;
		if (k->type == CFG_INT)
			*(int *)cfg_field(cfg, k) = (int)n;
		else
			*(long *)cfg_field(cfg, k) = (long)n;
		break;
	case CFG_BOOL:
		if (cfg_parse_bool(text, &b, &cause) == 0 &&
		    k->off != CFG_NOFIELD)
			*(int *)cfg_field(cfg, k) = b;
		break;
	case CFG_FLOAT:
		cfg_parse_float(text, (double)k->min, (double)k->max, &cause);
		break;
	case CFG_LIST:
		if (cfg_parse_list(text, &list, &cause) == -1)
			break;
		if (k->off != CFG_NOFIELD) {
			xstrv_free(*(char ***)cfg_field(cfg, k));
			*(char ***)cfg_field(cfg, k) = list;
		} else
			xstrv_free(list);
		break;
	case CFG_PORTS:
		if (cfg_parse_ports(text, k->min, k->max, ports, &cause) == 0)
			memcpy(cfg_field(cfg, k), ports, sizeof ports);
		break;
	case CFG_MOUNTS:
		if (cfg_parse_mounts(ctx, text, &list, &cause) == 0) {
			xstrv_free(*(char ***)cfg_field(cfg, k));
			*(char ***)cfg_field(cfg, k) = list;
		}
		break;
	case CFG_ENUM:
		if (cfg_parse_enum(text, k->choices, &e, &cause) == -1)
			break;
		if (k->off != CFG_NOFIELD)
			xstrset((char **)cfg_field(cfg, k), e);
		else
			xstrset(&priv->raw[idx], e);
		break;
	}
	if (cause != NULL) {
		cfg_error(ctx, v, "%s: %s", k->name, cause);
		free(cause);
	}
}

/*
 * Looks a variable up in the environment, any case, the exact name first.
 * Sets *envname to the name found (caller frees).
 */
static const char *
cfg_getenv(const char *name, char **envname)
{
	size_t n = strlen(name), i;
	const char *val;

	if ((val = getenv(name)) != NULL) {
		*envname = xstrdup(name);
		return val;
	}
	for (i = 0; environ != NULL && environ[i] != NULL; i++) {
		if (strncasecmp(environ[i], name, n) == 0 &&
		    environ[i][n] == '=') {
			*envname = xstrndup(environ[i], n);
			return environ[i] + n + 1;
		}
	}
	return NULL;
}

/* The last value of a name (exact case) among the first n file lines. */
static const char *
cfg_file_get(const struct cfg_ctx *ctx, const char *name, size_t n)
{
	size_t i;

	for (i = n; i > 0; i--)
		if (strcmp(ctx->lines[i - 1].name, name) == 0)
			return ctx->lines[i - 1].value;
	return NULL;
}

/*
 * Expands ${NAME} and ${NAME:-default} as python-dotenv does: from the
 * lines above and the environment, the file first when it overrides.
 */
static int
cfg_expand(
    const struct cfg_ctx *ctx, struct cfg_buf *b, const char *s, size_t len)
{
	const char *end, *colon, *val;
	char *name;
	size_t i, j;

	for (i = 0; i < len; i++) {
		if (s[i] != '$' || i + 1 >= len || s[i + 1] != '{' ||
		    (end = memchr(s + i + 2, '}', len - i - 2)) == NULL) {
			if (cfg_buf_add(b, s + i, 1) == -1)
				return -1;
			continue;
		}
		j = i + 2;
		colon = memchr(s + j, ':', (size_t)(end - (s + j)));
		name = xstrndup(
		    s + j, (size_t)((colon != NULL ? colon : end) - (s + j)));
		if (ctx->override) {
			val = cfg_file_get(ctx, name, ctx->nlines);
			if (val == NULL)
				val = getenv(name);
		} else {
			val = getenv(name);
			if (val == NULL)
				val = cfg_file_get(ctx, name, ctx->nlines);
		}
		free(name);
		if (val == NULL && colon != NULL && colon[1] == '-') {
			if (cfg_buf_add(b, colon + 2,
				(size_t)(end - (colon + 2))) == -1)
				return -1;
		} else if (val != NULL &&
		    cfg_buf_add(b, val, strlen(val)) == -1)
			return -1;
		i = (size_t)(end - s);
	}
	return 0;
}

/*
 * Parses one line of a .env file: blank, comment, or [export] KEY=VALUE
 * with the value bare (a " #" starts a comment), 'single-quoted' (literal
 * but \' and \\) or "double-quoted" (escapes \" \\ \n \t ...). Returns 1
 * with *name and *value set, 0 for nothing, -1 with *cause.
 */
static int
cfg_parse_line(
    const struct cfg_ctx *ctx, char *s, char **name, char **value, char **cause)
{
	static const char esc_from[] = "\\'\"abfnrtv";
	static const char esc_to[] = "\\'\"\a\b\f\n\r\t\v";
	struct cfg_buf b = {NULL, 0, 0};
	char *p = s, *k, q, c, *e;
	size_t klen;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;
	if (strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
		p += 6;
		while (isspace((unsigned char)*p))
			p++;
	}
	k = p;
	if (!isalpha((unsigned char)*p) && *p != '_') {
		xasprintf(cause, "expected KEY=VALUE");
		return -1;
	}
	while (isalnum((unsigned char)*p) || *p == '_' || *p == '.')
		p++;
	klen = (size_t)(p - k);
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '=') {
		xasprintf(cause, "expected KEY=VALUE");
		return -1;
	}
	p++;
	while (*p == ' ' || *p == '\t')
		p++;
	cfg_buf_add(&b, "", 0);
	if (*p == '\'' || *p == '"') {
		q = *p++;
		for (; *p != '\0' && *p != q; p++) {
			c = *p;
			if (c == '\\' && p[1] != '\0') {
				if (q == '\'' && (p[1] == '\'' || p[1] == '\\'))
					c = *++p;
				else if (q == '"' &&
				    (e = strchr(esc_from, p[1])) != NULL) {
					c = esc_to[e - esc_from];
					p++;
				}
			} else if (c == '$' && q == '"' && p[1] == '{' &&
			    (e = strchr(p, '}')) != NULL) {
				if (cfg_expand(
					ctx, &b, p, (size_t)(e - p + 1)) == -1)
					goto toolong;
				p = e;
				continue;
			}
			if (cfg_buf_add(&b, &c, 1) == -1)
				goto toolong;
		}
		if (*p != q) {
			xasprintf(cause,
			    "no closing %c quote (values on "
			    "several lines are not supported)",
			    q);
			free(b.p);
			return -1;
		}
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '\0' && *p != '#') {
			xasprintf(cause,
			    "unexpected text after the closing "
			    "quote");
			free(b.p);
			return -1;
		}
	} else {
		for (e = p; *e != '\0'; e++)
			if (*e == '#' && e > p &&
			    (e[-1] == ' ' || e[-1] == '\t'))
				break;
		while (e > p && isspace((unsigned char)e[-1]))
			e--;
		if (cfg_expand(ctx, &b, p, (size_t)(e - p)) == -1)
			goto toolong;
	}
	*name = xstrndup(k, klen);
	*value = b.p;
	return 1;
toolong:
	xasprintf(cause, "value longer than %d bytes", CFG_MAX_VALUE);
	free(b.p);
	return -1;
}

/* Reads a whole file of at most CFG_MAX_FILE bytes. */
static char *
cfg_read_file(const char *path, size_t *lenp, char **cause)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		xasprintf(cause, "not a regular file");
		goto fail;
	}
	buf = xmalloc(CFG_MAX_FILE + 1);
	for (;;) {
		n = read(fd, buf + len, CFG_MAX_FILE + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			xasprintf(cause, "%s", strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CFG_MAX_FILE) {
			xasprintf(cause, "larger than %d bytes", CFG_MAX_FILE);
			goto fail;
		}
	}
	close(fd);
	buf[len] = '\0';
	*lenp = len;
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

/* Edit distance of two short names, for "did you mean". */
static size_t
cfg_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, prev, cur, tmp;
	size_t row[64];

	if (la >= 64 || lb >= 64)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			cur = prev +
			    (toupper((unsigned char)a[i - 1]) !=
				toupper((unsigned char)b[j - 1]));
			if (row[j] + 1 < cur)
				cur = row[j] + 1;
			if (row[j - 1] + 1 < cur)
				cur = row[j - 1] + 1;
			tmp = row[j];
			row[j] = cur;
			prev = tmp;
		}
	}
	return row[lb];
}

/* Warns about a key of the file that the table does not know. */
static void
cfg_warn_unknown(const char *file, int line, const char *name)
{
	size_t i, d, best = SIZE_MAX, bi = 0;

	for (i = 0; i < CFG_NKEYS; i++) {
		d = cfg_distance(name, cfg_keys[i].name);
		if (d < best) {
			best = d;
			bi = i;
		}
	}
	if (best <= 2)
		log_warnx("config: %s:%d: unknown key %s (did you mean %s?)",
		    file, line, name, cfg_keys[bi].name);
	else
		log_warnx("config: %s:%d: unknown key %s", file, line, name);
}

/*
 * Loads the lines of a file's text (buf, len bytes followed by a NUL, in
 * place) into ctx->lines. Takes ownership of buf.
 */
static int
cfg_load_text(struct cfg_ctx *ctx, const char *path, char *buf, size_t len)
{
	struct cfg_val where = {NULL, path, 0, NULL};
	char *line, *next, *name, *value, *cause;
	int n;

	if (memchr(buf, '\0', len) != NULL) {
		cfg_error(ctx, NULL, "%s: contains a NUL byte", path);
		free(buf);
		return -1;
	}
	for (line = buf; line != NULL; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		len = strlen(line);
		if (len > 0 && line[len - 1] == '\r')
			line[len - 1] = '\0';
		where.line++;
		n = cfg_parse_line(ctx, line, &name, &value, &cause);
		if (n == -1) {
			cfg_error(ctx, &where, "%s", cause);
			free(cause);
		} else if (n == 1) {
			ctx->lines = xreallocarray(
			    ctx->lines, ctx->nlines + 1, sizeof *ctx->lines);
			ctx->lines[ctx->nlines].name = name;
			ctx->lines[ctx->nlines].value = value;
			ctx->lines[ctx->nlines].line = where.line;
			ctx->nlines++;
			/* Suggestions cost a comparison with every key. */
			if (cfg_key_index(name) == -1 &&
			    ++ctx->nunknown <= CFG_MAX_UNKNOWN)
				cfg_warn_unknown(path, where.line, name);
		}
	}
	free(buf);
	if (ctx->nunknown > CFG_MAX_UNKNOWN)
		log_warnx("config: %s: %d more unknown keys", path,
		    ctx->nunknown - CFG_MAX_UNKNOWN);
	return 0;
}

/* Loads the lines of the chosen file into ctx->lines. */
static int
cfg_load_file(struct cfg_ctx *ctx, const char *path)
{
	char *buf, *cause;
	size_t len;

	if ((buf = cfg_read_file(path, &len, &cause)) == NULL) {
		cfg_error(ctx, NULL, "%s: %s", path, cause);
		free(cause);
		return -1;
	}
	return cfg_load_text(ctx, path, buf, len);
}

/* Picks the file by the rules of spec 2.1 and loads it. */
static void
cfg_pick_file(struct cfg_ctx *ctx, const char *config_file)
{
	if (config_file != NULL) {
		ctx->file = config_file;
		ctx->override = 1;
	} else if (access(".env", F_OK) == 0)
		ctx->file = ".env";
	else if (access(".env.example", F_OK) == 0)
		ctx->file = ".env.example";
	else
		return;
	if (cfg_load_file(ctx, ctx->file) == -1)
		ctx->file = NULL;
}

/*
 * Merges the file and the environment into ctx->vals: for each key, the
 * file's last line of that name (any case) and the environment's variable
 * (any case); the file wins only under --config.
 */
static void
cfg_merge(struct cfg_ctx *ctx)
{
	struct cfg_val *v;
	const char *env;
	char *envname;
	size_t i, j;

	for (i = 0; i < CFG_NKEYS; i++) {
		v = &ctx->vals[i];
		for (j = ctx->nlines; j > 0; j--) {
			if (strcasecmp(ctx->lines[j - 1].name,
				cfg_keys[i].name) == 0) {
				v->text = ctx->lines[j - 1].value;
				v->file = ctx->file;
				v->line = ctx->lines[j - 1].line;
				break;
			}
		}
		if (v->text != NULL && ctx->override)
			continue;
		if ((env = cfg_getenv(cfg_keys[i].name, &envname)) != NULL) {
			v->text = env;
			v->file = NULL;
			v->line = 0;
			v->env = envname;
		}
	}
}

/* The index of a key known to be in the table. */
static size_t
cfg_idx(const char *name)
{
	int i = cfg_key_index(name);

	if (i == -1)
		abort();
	return (size_t)i;
}

/* The effective text of a key (value, else default), or "". */
static const char *
cfg_text(const struct cfg_ctx *ctx, const char *name)
{
	size_t i = cfg_idx(name);

	if (ctx->vals[i].text != NULL)
		return ctx->vals[i].text;
	return cfg_keys[i].def != NULL ? cfg_keys[i].def : "";
}

/* Gives the bfcl type DATASET_SUB_TYPE and OPENAI_API_KEY, as upstream. */
static void
cfg_bfcl_env(struct cfg *cfg, const struct cfg_ctx *ctx)
{
	struct sbtype *t;
	char *key, *sub;
	size_t i;

	if ((t = (struct sbtype *)sbtypes_find(cfg->types, "bfcl")) == NULL)
		return;
	key = xstrdup(cfg_text(ctx, "OPENAI_API_KEY"));
	sub = cfg_trim(xstrdup(cfg_text(ctx, "DATASET_SUB_TYPE")));
	for (i = 0; t->env != NULL && t->env[i] != NULL; i++)
		free(t->env[i]);
	free(t->env);
	t->env = xcalloc(4, sizeof *t->env);
	xasprintf(&t->env[0], "OPENAI_API_KEY=%s", key);
	xasprintf(&t->env[1],
	    "BFCL_DATA_PATH=/agentscope_runtime/training_box/bfcl/multi_turn/"
	    "%s_processed.jsonl",
	    sub);
	xasprintf(&t->env[2],
	    "BFCL_SPLID_ID_PATH=/agentscope_runtime/training_box/bfcl/"
	    "multi_turn/%s_split_ids.json",
	    sub);
	free(key);
	free(sub);
}

/* 1 if host names only loopback addresses. */
int
cfg_host_is_loopback(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (host == NULL)
		return 0;
	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		    (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return 0;
}

/*
 * Checks SANDPOOL_MOUNT_DIR_ROOTS: each an existing directory given by an
 * absolute path, replaced by its canonical form (symbolic links resolved)
 * so that requested dirs are compared with what they really are.
 */
static void
cfg_check_mount_roots(struct cfg_ctx *ctx, struct cfg *cfg)
{
	const struct cfg_val *v =
	    &ctx->vals[cfg_idx("SANDPOOL_MOUNT_DIR_ROOTS")];
	char buf[CFG_SHOW_MAX + 8], *real;
	struct stat st;
	char **r;

	for (r = cfg->mount_dir_roots; r != NULL && *r != NULL; r++) {
		if ((*r)[0] != '/' || strcmp(*r, "/") == 0 ||
		    strpbrk(*r, ":,") != NULL) {
			cfg_error(ctx, v,
			    "SANDPOOL_MOUNT_DIR_ROOTS: '%s' is not an absolute "
			    "path other than / (without ':' or ',')",
			    log_show(*r, CFG_SHOW_MAX, buf, sizeof buf));
			continue;
		}
		if ((real = realpath(*r, NULL)) == NULL ||
		    stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
			cfg_error(ctx, v,
			    "SANDPOOL_MOUNT_DIR_ROOTS: %s: not an existing "
			    "directory",
			    log_show(*r, CFG_SHOW_MAX, buf, sizeof buf));
			free(real);
			continue;
		}
		if (strcmp(real, "/") == 0) {
			cfg_error(ctx, v,
			    "SANDPOOL_MOUNT_DIR_ROOTS: %s: resolves to /",
			    log_show(*r, CFG_SHOW_MAX, buf, sizeof buf));
			free(real);
			continue;
		}
		free(*r);
		*r = real;
	}
	if (cfg->allow_mount_dir &&
	    (cfg->mount_dir_roots == NULL || cfg->mount_dir_roots[0] == NULL))
		log_warnx("config: ALLOW_MOUNT_DIR=true but "
			  "SANDPOOL_MOUNT_DIR_ROOTS is empty: every mount_dir "
			  "will be refused");
}

/* Checks what involves several keys, once each key is parsed. */
static void
cfg_cross_check(struct cfg_ctx *ctx, struct cfg_priv *priv)
{
	struct cfg *cfg = &priv->pub;
	const struct cfg_val *v;
	char host[256];
	size_t i;

	v = &ctx->vals[cfg_idx("HOST")];
	if (cfg->host != NULL && !cfg_host_is_loopback(cfg->host) &&
	    (cfg->bearer_token == NULL || *cfg->bearer_token == '\0') &&
	    !cfg->allow_no_auth)
		cfg_error(ctx, v,
		    "HOST=%s is not a loopback address and BEARER_TOKEN is "
		    "empty: anyone who can reach the port would control the "
		    "sandboxes; set BEARER_TOKEN, or "
		    "SANDPOOL_ALLOW_NO_AUTH=true "
		    "to accept this",
		    log_show(cfg->host, CFG_SHOW_MAX, host, sizeof host));
	cfg_check_mount_roots(ctx, cfg);

	v = &ctx->vals[cfg_idx("WORKERS")];
	if (cfg->workers > 1 && !cfg->redis_enabled)
		cfg_error(ctx, v,
		    "WORKERS=%d needs REDIS_ENABLED=true (state must be "
		    "shared)",
		    cfg->workers);

	v = &ctx->vals[cfg_idx("CONTAINER_DEPLOYMENT")];
	if (cfg->deployment != NULL && strcmp(cfg->deployment, "docker") != 0 &&
	    strcmp(cfg->deployment, "gvisor") != 0)
		cfg_error(ctx, v,
		    "CONTAINER_DEPLOYMENT=%s is not implemented by sandpool "
		    "(supported: docker, gvisor)",
		    cfg->deployment);

	i = cfg_idx("FILE_SYSTEM");
	if (priv->raw[i] != NULL && strcmp(priv->raw[i], "oss") == 0)
		cfg_error(ctx, &ctx->vals[i],
		    "FILE_SYSTEM=oss is not implemented by sandpool "
		    "(supported: local)");

	if (ctx->vals[cfg_idx("RELEASE_KET_TTL")].text != NULL &&
	    ctx->vals[cfg_idx("RELEASED_KEY_TTL")].text != NULL)
		log_warnx("config: RELEASE_KET_TTL and RELEASED_KEY_TTL are "
			  "both set; RELEASED_KEY_TTL=%d wins",
		    cfg->released_key_ttl);

	if (cfg->default_types != NULL && cfg->default_types[0] == NULL)
		cfg_error(ctx, &ctx->vals[cfg_idx("DEFAULT_SANDBOX_TYPE")],
		    "DEFAULT_SANDBOX_TYPE: names no sandbox type");

	if (cfg->instance_id == NULL) {
		/* <hostname>-<PORT>, the hostname cut to 64 and sanitised. */
		if (gethostname(host, sizeof host) == -1)
			host[0] = '\0';
		host[64] = '\0';
		for (i = 0; host[i] != '\0'; i++)
			if (!isalnum((unsigned char)host[i]) &&
			    host[i] != '_' && host[i] != '.' && host[i] != '-')
				host[i] = '-';
		xasprintf(&cfg->instance_id, "%s-%d",
		    host[0] != '\0' ? host : "localhost", cfg->port);
	}
}

/* Builds the type registry, loads the extensions, checks the defaults. */
static void
cfg_build_types(
    struct cfg_ctx *ctx, struct cfg *cfg, const struct cfg_args *args)
{
	const struct cfg_val *v;
	const struct sbtype *t;
	struct sbtype *u;
	char *cause, buf[CFG_SHOW_MAX + 8];
	size_t i;

	cfg->types = sbtypes_new(cfg->image_registry, cfg->image_namespace,
	    cfg->image_tag, cfg->runtime_timeout);
	cfg_bfcl_env(cfg, ctx);
	for (i = 0; args != NULL && args->extensions != NULL &&
	     args->extensions[i] != NULL;
	     i++) {
		if (sbtypes_load_file(
			cfg->types, args->extensions[i], &cause) == -1) {
			cfg_error(ctx, NULL, "%s", cause);
			free(cause);
		}
	}
	/* gvisor is docker with the runsc runtime wherever none is named. */
	if (cfg->deployment != NULL && strcmp(cfg->deployment, "gvisor") == 0) {
		TAILQ_FOREACH (u, &cfg->types->list, entry) {
			if (u->runtime == NULL)
				u->runtime = xstrdup("runsc");
		}
	}

	v = &ctx->vals[cfg_idx("DEFAULT_SANDBOX_TYPE")];
	for (i = 0; cfg->default_types != NULL && cfg->default_types[i] != NULL;
	     i++) {
		t = sbtypes_find(cfg->types, cfg->default_types[i]);
		if (t == NULL)
			cfg_error(ctx, v,
			    "DEFAULT_SANDBOX_TYPE: unknown sandbox type '%s'",
			    log_show(cfg->default_types[i], CFG_SHOW_MAX, buf,
				sizeof buf));
		else if (!t->supported)
			cfg_error(ctx, v,
			    "DEFAULT_SANDBOX_TYPE: sandbox type '%s' has no "
			    "image sandpool can run",
			    t->name);
	}
}

/* Frees the loader's state. */
static void
cfg_ctx_clear(struct cfg_ctx *ctx)
{
	struct cfg_err *e;
	size_t i;

	for (i = 0; i < ctx->nlines; i++) {
		free(ctx->lines[i].name);
		free(ctx->lines[i].value);
	}
	free(ctx->lines);
	for (i = 0; i < CFG_NKEYS; i++)
		free(ctx->vals[i].env);
	while ((e = TAILQ_FIRST(&ctx->errs)) != NULL) {
		TAILQ_REMOVE(&ctx->errs, e, entry);
		free(e->msg);
		free(e);
	}
}

/* Loads and checks the whole configuration. */
struct cfg *
cfg_load(const struct cfg_args *args, FILE *errf)
{
	struct cfg_ctx ctx;
	struct cfg_priv *priv;
	struct cfg_err *e;
	size_t i;

	memset(&ctx, 0, sizeof ctx);
	TAILQ_INIT(&ctx.errs);
	if (getcwd(ctx.cwd, sizeof ctx.cwd) == NULL) {
		if (errf != NULL)
			fprintf(errf, "getcwd: %s\n", strerror(errno));
		return NULL;
	}
	cfg_pick_file(&ctx, args != NULL ? args->config_file : NULL);
	cfg_merge(&ctx);

	priv = xcalloc(1, sizeof *priv);
	for (i = 0; i < CFG_NKEYS; i++)
		cfg_apply(&ctx, priv, i);
	cfg_cross_check(&ctx, priv);
	cfg_build_types(&ctx, &priv->pub, args);

	if (ctx.nerrs > 0) {
		TAILQ_FOREACH (e, &ctx.errs, entry)
			if (errf != NULL)
				fprintf(errf, "%s\n", e->msg);
		if (errf != NULL)
			fflush(errf);
		cfg_ctx_clear(&ctx);
		cfg_free(&priv->pub);
		return NULL;
	}
	cfg_ctx_clear(&ctx);
	return &priv->pub;
}

/* Frees a configuration returned by cfg_load. */
void
cfg_free(struct cfg *cfg)
{
	struct cfg_priv *priv = (struct cfg_priv *)cfg;
	const struct cfg_key *k;
	size_t i;

	if (cfg == NULL)
		return;
	for (i = 0; i < CFG_NKEYS; i++) {
		k = &cfg_keys[i];
		free(priv->raw[i]);
		if (k->off == CFG_NOFIELD)
			continue;
		switch (k->type) {
		case CFG_STR:
		case CFG_ENUM:
			xstrset((char **)cfg_field(cfg, k), NULL);
			break;
		case CFG_LIST:
		case CFG_MOUNTS:
			xstrv_free(*(char ***)cfg_field(cfg, k));
			*(char ***)cfg_field(cfg, k) = NULL;
			break;
		default:
			break;
		}
	}
	sbtypes_free(cfg->types);
	free(priv);
}

/* Formats a string vector as a JSON array, or pairs as a JSON object. */
static char *
cfg_format_strv(char **v, int pairs)
{
	yajl_gen g = json_gen_new();
	size_t i;

	if (pairs)
		yajl_gen_map_open(g);
	else
		yajl_gen_array_open(g);
	for (i = 0; v != NULL && v[i] != NULL; i++)
		json_gen_str(g, v[i]);
	if (pairs)
		yajl_gen_map_close(g);
	else
		yajl_gen_array_close(g);
	return json_gen_done(g, NULL);
}

/* Formats a key's effective value. */
static char *
cfg_format(const struct cfg *cfg, size_t idx)
{
	const struct cfg_priv *priv = (const struct cfg_priv *)cfg;
	const struct cfg_key *k = &cfg_keys[idx];
	const void *f = (const char *)cfg + k->off;
	const int *ports;
	const char *s;
	char *out;

	if (k->off == CFG_NOFIELD) {
		s = priv->raw[idx];
		return xstrdup(s != NULL ? s : "");
	}
	switch (k->type) {
	case CFG_STR:
	case CFG_ENUM:
		s = *(char *const *)f;
		return xstrdup(s != NULL ? s : "");
	case CFG_INT:
		xasprintf(&out, "%d", *(const int *)f);
		return out;
	case CFG_LONG:
		xasprintf(&out, "%ld", *(const long *)f);
		return out;
	case CFG_BOOL:
		return xstrdup(*(const int *)f ? "true" : "false");
	case CFG_LIST:
		return cfg_format_strv(*(char **const *)f, 0);
	case CFG_MOUNTS:
		return cfg_format_strv(*(char **const *)f, 1);
	case CFG_PORTS:
		ports = f;
		xasprintf(&out, "[%d,%d]", ports[0], ports[1]);
		return out;
	case CFG_FLOAT:
		break;
	}
	return xstrdup("");
}

/*
 * Prints one KEY=VALUE line that cfg_load would read back: values that a
 * bare value would change (quotes first, " #", blanks at the ends, "${")
 * are single-quoted with \' and \\ escaped.
 */
static void
cfg_print_line(FILE *fp, const char *name, const char *s)
{
	size_t n = strlen(s);
	int quote;

	quote = n > 0 &&
	    (s[0] == '"' || s[0] == '\'' || isspace((unsigned char)s[0]) ||
		isspace((unsigned char)s[n - 1]) || strstr(s, " #") != NULL ||
		strstr(s, "\t#") != NULL || strstr(s, "${") != NULL);
	if (!quote) {
		fprintf(fp, "%s=%s\n", name, s);
		return;
	}
	fprintf(fp, "%s='", name);
	for (; *s != '\0'; s++) {
		if (*s == '\'' || *s == '\\')
			fputc('\\', fp);
		fputc(*s, fp);
	}
	fputs("'\n", fp);
}

/* Prints every key with its effective value, secrets as ***. */
void
cfg_print(const struct cfg *cfg, FILE *fp)
{
	char *s;
	size_t i;

	for (i = 0; i < CFG_NKEYS; i++) {
		s = cfg_format(cfg, i);
		if ((cfg_keys[i].flags & CFG_SECRET) && *s != '\0')
			cfg_print_line(fp, cfg_keys[i].name, "***");
		else
			cfg_print_line(fp, cfg_keys[i].name, s);
		free(s);
	}
}
