/*
 * config: the .env file and environment of runtime-sandbox-server, parsed
 * and checked through one table of keys (name, type, default, bounds,
 * help). See runtime-sandbox-server.env(5).
 */
#ifndef SANDPOOL_CONFIG_H
#define SANDPOOL_CONFIG_H

#include <stddef.h>
#include <stdio.h>

struct sbtypes;

struct cfg {
	/* Service. */
	char *host;
	int port;
	int workers;
	int debug;
	char *bearer_token; /* NULL or "" = auth off */

	/* Manager. */
	char **default_types; /* NULL-terminated, at least one */
	int pool_size;
	int auto_cleanup;
	char *container_prefix;	 /* CONTAINER_PREFIX_KEY */
	char *deployment;	 /* CONTAINER_DEPLOYMENT */
	char *default_mount_dir; /* absolute, or NULL when empty */
	char **readonly_mounts;	 /* NULL-terminated host, ctr, ... */
	int allow_mount_dir;
	char *storage_folder; /* NULL when unset */
	int port_lo, port_hi; /* PORT_RANGE, hi exclusive */
	int heartbeat_timeout;
	int heartbeat_lock_ttl;
	int watcher_scan_interval;
	int released_key_ttl; /* RELEASE_KET_TTL / RELEASED_KEY_TTL */
	int max_sandbox_instances;

	/* Redis. */
	int redis_enabled;
	char *redis_server;
	int redis_port;
	int redis_db;
	char *redis_user;
	char *redis_password;
	char *redis_port_key;
	char *redis_pool_key;

	/* Images and runtime calls (process environment in the Python server).
	 */
	char *image_registry;  /* RUNTIME_SANDBOX_REGISTRY */
	char *image_namespace; /* RUNTIME_SANDBOX_IMAGE_NAMESPACE */
	char *image_tag;       /* RUNTIME_SANDBOX_IMAGE_TAG */
	int runtime_timeout;   /* RUNTIME_SANDBOX_TIMEOUT, seconds */
	char *docker_host;     /* DOCKER_HOST, "unix:///..." */

	/* sandpool's own keys. */
	char *agent_path;	/* SANDPOOL_AGENT */
	char *run_dir;		/* SANDPOOL_RUN_DIR */
	char *instance_id;	/* SANDPOOL_INSTANCE_ID */
	char *publish_host;	/* SANDPOOL_PUBLISH_HOST */
	int docker_timeout;	/* SANDPOOL_DOCKER_TIMEOUT, seconds */
	int warmup_timeout;	/* SANDPOOL_WARMUP_TIMEOUT, seconds */
	int refill_concurrency; /* SANDPOOL_REFILL_CONCURRENCY */
	long max_body;		/* SANDPOOL_MAX_BODY, bytes */
	int keep_workspace;	/* SANDPOOL_KEEP_WORKSPACE */
	long max_headers;	/* SANDPOOL_MAX_HEADERS, bytes */
	int max_connections;	/* SANDPOOL_MAX_CONNECTIONS */
	int idle_timeout;	/* SANDPOOL_IDLE_TIMEOUT, seconds */
	int request_timeout;	/* SANDPOOL_REQUEST_TIMEOUT, seconds */
	int allow_no_auth;	/* SANDPOOL_ALLOW_NO_AUTH */
	int allow_cleanup;	/* SANDPOOL_ALLOW_CLEANUP_ROUTE */
	char **mount_dir_roots; /* SANDPOOL_MOUNT_DIR_ROOTS, resolved */
	int lease_ttl;		/* SANDPOOL_LEASE_TTL, seconds */
	int redis_timeout_ms;	/* SANDPOOL_REDIS_TIMEOUT, ms */

	/* Sandbox types, built-in plus --extension files. */
	struct sbtypes *types;
};

/* Command-line inputs to the loader. */
struct cfg_args {
	const char *config_file;       /* --config, or NULL */
	const char *const *extensions; /* --extension files, NULL-terminated */
};

/*
 * Loads the configuration by the rules of spec 2.1 (--config overrides the
 * environment; else ./.env, else ./.env.example, without overriding), then
 * validates every key. Warnings (unknown keys) go to log_warnx. On error,
 * writes every problem as "file:line: message" (or "environment: KEY:
 * message") to errf and returns NULL.
 */
struct cfg *cfg_load(const struct cfg_args *, FILE *errf);
void cfg_free(struct cfg *);
/* Prints the effective configuration, secrets masked, as KEY=VALUE lines. */
void cfg_print(const struct cfg *, FILE *);
/* 1 if host (HOST) names only loopback: 127.0.0.0/8, ::1, localhost. */
int cfg_host_is_loopback(const char *host);

#endif
