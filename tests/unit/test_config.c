/*
 * test_config: the .env loader and the sandbox type registry. Each check
 * writes its files into a private temporary directory (the cwd during the
 * tests) and removes them; environment variables it sets are unset again.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Not "config.h": from tests/unit/ that finds the build's autoconf one. */
#include "config.h"
#include "log.h"
#include "sbtype.h"
#include "tap.h"

extern char **environ;

static char tmpdir[PATH_MAX];
static char srcdir[PATH_MAX]; /* where etc/ is: $SANDPOOL_SRCDIR or cwd */
static char *last_err;	      /* errf text of the last load */
static char *last_log;	      /* stderr (log) text of the last load */

/* Every name the loader reads, cleared before each check. */
static const char *const keys[] = {"HOST", "PORT", "WORKERS", "DEBUG",
    "BEARER_TOKEN", "DEFAULT_SANDBOX_TYPE", "POOL_SIZE", "AUTO_CLEANUP",
    "CONTAINER_PREFIX_KEY", "CONTAINER_DEPLOYMENT", "DEFAULT_MOUNT_DIR",
    "READONLY_MOUNTS", "ALLOW_MOUNT_DIR", "STORAGE_FOLDER", "PORT_RANGE",
    "HEARTBEAT_TIMEOUT", "HEARTBEAT_LOCK_TTL", "WATCHER_SCAN_INTERVAL",
    "RELEASE_KET_TTL", "RELEASED_KEY_TTL", "MAX_SANDBOX_INSTANCES",
    "REDIS_ENABLED", "REDIS_SERVER", "REDIS_PORT", "REDIS_DB", "REDIS_USER",
    "REDIS_PASSWORD", "REDIS_PORT_KEY", "REDIS_CONTAINER_POOL_KEY",
    "RUNTIME_SANDBOX_REGISTRY", "RUNTIME_SANDBOX_IMAGE_NAMESPACE",
    "RUNTIME_SANDBOX_IMAGE_TAG", "RUNTIME_SANDBOX_TIMEOUT", "DOCKER_HOST",
    "OPENAI_API_KEY", "DATASET_SUB_TYPE", "SANDPOOL_AGENT", "SANDPOOL_RUN_DIR",
    "SANDPOOL_INSTANCE_ID", "SANDPOOL_PUBLISH_HOST", "SANDPOOL_DOCKER_TIMEOUT",
    "SANDPOOL_WARMUP_TIMEOUT", "SANDPOOL_REFILL_CONCURRENCY",
    "SANDPOOL_MAX_BODY", "SANDPOOL_KEEP_WORKSPACE", "FILE_SYSTEM",
    "OSS_ENDPOINT", "OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET",
    "OSS_BUCKET_NAME", "K8S_NAMESPACE", "KUBECONFIG_PATH",
    "AGENT_RUN_ACCOUNT_ID", "AGENT_RUN_ACCESS_KEY_ID",
    "AGENT_RUN_ACCESS_KEY_SECRET", "AGENT_RUN_REGION_ID", "AGENT_RUN_CPU",
    "AGENT_RUN_MEMORY", "AGENT_RUN_VPC_ID", "AGENT_RUN_VSWITCH_IDS",
    "AGENT_RUN_SECURITY_GROUP_ID", "AGENT_RUN_PREFIX", "AGENT_RUN_LOG_PROJECT",
    "AGENT_RUN_LOG_STORE", "FC_ACCOUNT_ID", "FC_ACCESS_KEY_ID",
    "FC_ACCESS_KEY_SECRET", "FC_REGION_ID", "FC_CPU", "FC_MEMORY", "FC_VPC_ID",
    "FC_VSWITCH_IDS", "FC_SECURITY_GROUP_ID", "FC_PREFIX", "FC_LOG_PROJECT",
    "FC_LOG_STORE", "SANDPOOL_MAX_HEADERS", "SANDPOOL_MAX_CONNECTIONS",
    "SANDPOOL_IDLE_TIMEOUT", "SANDPOOL_REQUEST_TIMEOUT",
    "SANDPOOL_ALLOW_NO_AUTH", "SANDPOOL_ALLOW_CLEANUP_ROUTE",
    "SANDPOOL_MOUNT_DIR_ROOTS", "SP_TEST_USER", NULL};

/* Files the checks may leave in tmpdir. */
static const char *const files[] = {".env", ".env.example", "conf.env",
    "ext.json", "ext2.json", "printed.env", "log.txt", NULL};

/* Unsets every variable matching a key in any case. */
static void
env_clear(void)
{
	size_t i, k, n;
	char name[256];

	for (k = 0; keys[k] != NULL; k++) {
		n = strlen(keys[k]);
		for (i = 0; environ[i] != NULL;) {
			if (strncasecmp(environ[i], keys[k], n) == 0 &&
			    environ[i][n] == '=') {
				memcpy(name, environ[i], n);
				name[n] = '\0';
				unsetenv(name);
				i = 0;
			} else
				i++;
		}
	}
}

/* Removes the files of the last check. */
static void
files_clear(void)
{
	size_t i;

	for (i = 0; files[i] != NULL; i++)
		unlink(files[i]);
}

/* Writes a file in the cwd. */
static void
write_file(const char *path, const char *text)
{
	FILE *fp;

	if ((fp = fopen(path, "w")) == NULL) {
		perror(path);
		exit(99);
	}
	fputs(text, fp);
	fclose(fp);
}

/* Reads a whole file (small). */
static char *
read_file(const char *path)
{
	char *buf;
	long n;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL)
		return strdup("");
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, fp) != (size_t)n)
		buf[0] = '\0';
	fclose(fp);
	return buf;
}

/*
 * Loads with the given --config file and extensions; the errf text goes to
 * last_err and what was logged (stderr) to last_log.
 */
static struct cfg *
load(const char *config_file, const char *const *ext)
{
	struct cfg_args args = {config_file, ext};
	struct cfg *cfg;
	size_t len;
	FILE *errf;
	int saved, fd;

	free(last_err);
	free(last_log);
	last_err = NULL;
	errf = open_memstream(&last_err, &len);
	fflush(stderr);
	saved = dup(2);
	fd = open("log.txt", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
	cfg = cfg_load(&args, errf);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	fclose(errf);
	last_log = read_file("log.txt");
	unlink("log.txt");
	return cfg;
}

/* Loads a .env holding text, with no --config. */
static struct cfg *
load_env(const char *text)
{
	write_file(".env", text);
	return load(NULL, NULL);
}

/* Does the last errf text contain s? */
static int
err_has(const char *s)
{
	return last_err != NULL && strstr(last_err, s) != NULL;
}

/* Number of lines of the last errf text. */
static int
err_lines(void)
{
	const char *p;
	int n = 0;

	for (p = last_err; p != NULL && *p != '\0'; p++)
		if (*p == '\n')
			n++;
	return n;
}

/* Prepares a check: clean environment, no files. */
static void
fresh(void)
{
	env_clear();
	files_clear();
}

/* Is the NULL-terminated vector exactly the given words? */
static int
strv_is(char **v, const char *const *want)
{
	size_t i;

	for (i = 0; want[i] != NULL; i++)
		if (v == NULL || v[i] == NULL || strcmp(v[i], want[i]) != 0)
			return 0;
	return v != NULL && v[i] == NULL;
}

/* Counts the types of a registry. */
static int
count_types(const struct sbtypes *t)
{
	const struct sbtype *u;
	int n = 0;

	TAILQ_FOREACH (u, &t->list, entry)
		n++;
	return n;
}

static void
test_defaults(void)
{
	struct cfg *cfg;
	const struct sbtype *t;
	char host[256], want[PATH_MAX + 64];

	fresh();
	cfg = load(NULL, NULL);
	if (!ok(cfg != NULL, "defaults load without any file"))
		return;
	is_str(cfg->host, "127.0.0.1", "HOST default");
	is_int(cfg->port, 8000, "PORT default");
	is_int(cfg->workers, 1, "WORKERS default");
	is_int(cfg->debug, 0, "DEBUG default");
	ok(cfg->bearer_token == NULL, "BEARER_TOKEN unset");
	ok(strv_is(cfg->default_types, (const char *const[]){"base", NULL}),
	    "DEFAULT_SANDBOX_TYPE default [base]");
	is_int(cfg->pool_size, 0, "POOL_SIZE default");
	is_int(cfg->auto_cleanup, 1, "AUTO_CLEANUP default");
	is_str(cfg->container_prefix, "runtime_sandbox_container_",
	    "CONTAINER_PREFIX_KEY default");
	is_str(cfg->deployment, "docker", "CONTAINER_DEPLOYMENT default");
	snprintf(want, sizeof want, "%s/sessions_mount_dir", tmpdir);
	is_str(cfg->default_mount_dir, want,
	    "DEFAULT_MOUNT_DIR made absolute against the cwd");
	ok(cfg->readonly_mounts != NULL && cfg->readonly_mounts[0] == NULL,
	    "READONLY_MOUNTS default empty");
	is_int(cfg->allow_mount_dir, 0, "ALLOW_MOUNT_DIR default");
	ok(cfg->storage_folder == NULL, "STORAGE_FOLDER unset");
	is_int(cfg->port_lo, 49152, "PORT_RANGE lo default");
	is_int(cfg->port_hi, 59152, "PORT_RANGE hi default");
	is_int(cfg->heartbeat_timeout, 300, "HEARTBEAT_TIMEOUT default");
	is_int(cfg->heartbeat_lock_ttl, 120, "HEARTBEAT_LOCK_TTL default");
	is_int(cfg->watcher_scan_interval, 1, "WATCHER_SCAN_INTERVAL");
	is_int(cfg->released_key_ttl, 3600, "RELEASE_KET_TTL default");
	is_int(cfg->max_sandbox_instances, 0, "MAX_SANDBOX_INSTANCES");
	is_int(cfg->redis_enabled, 0, "REDIS_ENABLED default");
	is_str(cfg->redis_server, "localhost", "REDIS_SERVER default");
	is_int(cfg->redis_port, 6379, "REDIS_PORT default");
	is_int(cfg->redis_db, 0, "REDIS_DB default");
	ok(cfg->redis_user == NULL && cfg->redis_password == NULL,
	    "REDIS_USER, REDIS_PASSWORD unset");
	is_str(cfg->redis_port_key, "_runtime_sandbox_container_occupied_ports",
	    "REDIS_PORT_KEY default");
	is_str(cfg->redis_pool_key, "_runtime_sandbox_container_container_pool",
	    "REDIS_CONTAINER_POOL_KEY default");
	is_str(cfg->image_registry, "", "RUNTIME_SANDBOX_REGISTRY default");
	is_str(cfg->image_namespace, "agentscope", "namespace default");
	is_str(cfg->image_tag, "latest", "tag default");
	is_int(cfg->runtime_timeout, 60, "RUNTIME_SANDBOX_TIMEOUT default");
	is_str(cfg->docker_host, "unix:///var/run/docker.sock",
	    "DOCKER_HOST default");
	is_str(cfg->agent_path, SANDPOOL_LIBEXECDIR "/sandpool-agent",
	    "SANDPOOL_AGENT default");
	is_str(cfg->run_dir, "/run/sandpool", "SANDPOOL_RUN_DIR default");
	gethostname(host, sizeof host);
	host[64] = '\0';
	snprintf(want, sizeof want, "%s-8000", host);
	is_str(cfg->instance_id, want, "SANDPOOL_INSTANCE_ID <host>-<PORT>");
	is_str(cfg->publish_host, "127.0.0.1", "SANDPOOL_PUBLISH_HOST");
	is_int(cfg->docker_timeout, 30, "SANDPOOL_DOCKER_TIMEOUT default");
	is_int(cfg->warmup_timeout, 60, "SANDPOOL_WARMUP_TIMEOUT default");
	is_int(cfg->refill_concurrency, 2, "SANDPOOL_REFILL_CONCURRENCY");
	is_int(cfg->max_body, 10485760, "SANDPOOL_MAX_BODY default");
	is_int(cfg->keep_workspace, 0, "SANDPOOL_KEEP_WORKSPACE default");

	is_int(count_types(cfg->types), 14, "14 built-in types");
	t = sbtypes_find(cfg->types, "base");
	if (ok(t != NULL, "base type")) {
		is_str(t->image, "agentscope/runtime-sandbox-base:latest",
		    "base image URI");
		is_int(t->inject_agent, 1, "base gets the agent");
		is_int(t->runtime_port, 80, "base runtime port");
		is_int(t->timeout, 60, "base timeout");
		is_str(t->network, "none", "base network (agent: none)");
		ok(t->runtime == NULL, "no OCI runtime under docker");
	}
	t = sbtypes_find(cfg->types, "filesystem_async");
	ok(t != NULL && t->inject_agent == 1 &&
		strcmp(t->image,
		    "agentscope/runtime-sandbox-filesystem:latest") == 0,
	    "filesystem_async: filesystem image, agent");
	t = sbtypes_find(cfg->types, "browser");
	ok(t != NULL && t->inject_agent == 0, "browser keeps its runtime");
	t = sbtypes_find(cfg->types, "mobile_async");
	ok(t != NULL && t->privileged == 1, "mobile_async privileged");
	t = sbtypes_find(cfg->types, "appworld");
	ok(t != NULL && t->shm_size == 5433133629LL, "appworld shm_size");
	t = sbtypes_find(cfg->types, "bfcl");
	ok(t != NULL && t->shm_size == 8654359101LL && t->env != NULL &&
		strcmp(t->env[0], "OPENAI_API_KEY=") == 0 &&
		strstr(t->env[1], "multi_turn/multi_turn_processed.jsonl") !=
		    NULL,
	    "bfcl shm_size and environment");
	t = sbtypes_find(cfg->types, "dummy");
	ok(t != NULL && !t->supported && strcmp(t->image, "") == 0,
	    "dummy unsupported");
	t = sbtypes_find(cfg->types, "agentbay");
	ok(t != NULL && !t->supported &&
		strcmp(t->image, "agentbay-cloud") == 0,
	    "agentbay unsupported");
	ok(sbtypes_find(cfg->types, "nosuch") == NULL, "unknown type");
	cfg_free(cfg);
}

static void
test_file_choice(void)
{
	struct cfg *cfg;

	fresh();
	setenv("PORT", "7000", 1);
	cfg = load_env("HOST=0.0.0.0\nPORT=9000\nBEARER_TOKEN=t\n");
	ok(cfg != NULL && cfg->port == 7000 &&
		strcmp(cfg->host, "0.0.0.0") == 0,
	    ".env does not override the environment");
	cfg_free(cfg);

	write_file("conf.env", "PORT=9001\n");
	cfg = load("conf.env", NULL);
	ok(cfg != NULL && cfg->port == 9001, "--config overrides it");
	ok(cfg != NULL && strcmp(cfg->host, "127.0.0.1") == 0,
	    "--config: .env is not read");
	cfg_free(cfg);
	unsetenv("PORT");

	fresh();
	write_file(".env.example", "POOL_SIZE=1\n");
	cfg = load(NULL, NULL);
	ok(cfg != NULL && cfg->pool_size == 1, ".env.example as fallback");
	cfg_free(cfg);
	cfg = load_env("POOL_SIZE=2\n");
	ok(cfg != NULL && cfg->pool_size == 2, ".env before .env.example");
	cfg_free(cfg);

	fresh();
	setenv("POOL_SIZE", "4", 1);
	write_file(".env.example", "POOL_SIZE=1\n");
	cfg = load(NULL, NULL);
	ok(cfg != NULL && cfg->pool_size == 4,
	    ".env.example does not override either");
	cfg_free(cfg);

	fresh();
	cfg = load("missing.env", NULL);
	ok(cfg == NULL, "missing --config file is an error");
	ok(err_has("missing.env: No such file or directory"),
	    "missing --config message");
}

static void
test_syntax(void)
{
	struct cfg *cfg;
	char want[PATH_MAX + 64];

	fresh();
	setenv("pool_size", "3", 1);
	cfg = load_env("bearer_token=tok\nRedis_Port=7777\n");
	ok(cfg != NULL && cfg->bearer_token != NULL &&
		strcmp(cfg->bearer_token, "tok") == 0,
	    "lower-case name in the file");
	ok(cfg != NULL && cfg->pool_size == 3,
	    "lower-case name in the environment");
	ok(cfg != NULL && cfg->redis_port == 7777, "mixed-case name");
	cfg_free(cfg);

	fresh();
	setenv("SP_TEST_USER", "bob", 1);
	cfg = load_env("# comment\n"
		       "\n"
		       "   \t\n"
		       "export HOST = \"1.2.3.4\"  # trailing comment\n"
		       "CONTAINER_PREFIX_KEY='abc-'\n"
		       "REDIS_SERVER=redis.local # comment\n"
		       "REDIS_PASSWORD=a#b\n"
		       "REDIS_USER=${SP_TEST_USER}x\n"
		       "REDIS_PORT_KEY=${SP_TEST_NOPE:-fallback}\n"
		       "REDIS_CONTAINER_POOL_KEY='${SP_TEST_USER}'\n"
		       "RUNTIME_SANDBOX_IMAGE_TAG=v1\r\n"
		       "BEARER_TOKEN=\"q\\\"x\"\n"
		       "DEFAULT_MOUNT_DIR=\n");
	if (ok(cfg != NULL, "syntax forms load")) {
		is_str(cfg->host, "1.2.3.4", "export, spaces, double quotes");
		is_str(cfg->container_prefix, "abc-", "single quotes");
		is_str(cfg->redis_server, "redis.local", "bare value, comment");
		is_str(cfg->redis_password, "a#b", "# inside a bare value");
		is_str(cfg->redis_user, "bobx", "${VAR} expansion");
		is_str(cfg->redis_port_key, "fallback", "${VAR:-default}");
		is_str(cfg->redis_pool_key, "${SP_TEST_USER}",
		    "no expansion in single quotes");
		is_str(cfg->image_tag, "v1", "CRLF line");
		is_str(cfg->bearer_token, "q\"x", "escaped double quote");
		ok(cfg->default_mount_dir == NULL,
		    "empty DEFAULT_MOUNT_DIR: no workspace");
	}
	cfg_free(cfg);
	unsetenv("SP_TEST_USER");

	fresh();
	cfg = load_env("DEFAULT_MOUNT_DIR=./ws/\nSTORAGE_FOLDER=/srv/st\n"
		       "SANDPOOL_RUN_DIR=run\n");
	snprintf(want, sizeof want, "%s/ws", tmpdir);
	ok(cfg != NULL && strcmp(cfg->default_mount_dir, want) == 0,
	    "relative DEFAULT_MOUNT_DIR made absolute");
	ok(cfg != NULL && strcmp(cfg->storage_folder, "/srv/st") == 0,
	    "STORAGE_FOLDER");
	snprintf(want, sizeof want, "%s/run", tmpdir);
	ok(cfg != NULL && strcmp(cfg->run_dir, want) == 0,
	    "relative SANDPOOL_RUN_DIR made absolute");
	cfg_free(cfg);

	fresh();
	cfg = load_env("HOST=1.1.1.1\nJUSTAWORD\nBEARER_TOKEN=\"s3cr3t\n");
	ok(cfg == NULL, "malformed lines are errors");
	ok(err_has(".env:2: expected KEY=VALUE"), "line without =");
	ok(err_has(".env:3: no closing \" quote"), "unterminated quote");
	ok(!err_has("s3cr3t"), "a secret is never echoed");
}

static void
test_lists(void)
{
	static const char *const forms[] = {"[\"base\",\"browser\"]",
	    "[base, browser]", "base, browser", " base ,browser,, base ",
	    "[\"base\", browser]", NULL};
	const char *const two[] = {"base", "browser", NULL};
	struct cfg *cfg;
	char text[256];
	size_t i;

	for (i = 0; forms[i] != NULL; i++) {
		fresh();
		snprintf(
		    text, sizeof text, "DEFAULT_SANDBOX_TYPE=%s\n", forms[i]);
		cfg = load_env(text);
		ok(cfg != NULL && strv_is(cfg->default_types, two),
		    "DEFAULT_SANDBOX_TYPE=%s", forms[i]);
		cfg_free(cfg);
	}
	fresh();
	setenv("DEFAULT_SANDBOX_TYPE", "gui", 1);
	cfg = load(NULL, NULL);
	ok(cfg != NULL &&
		strv_is(cfg->default_types, (const char *const[]){"gui", NULL}),
	    "single word from the environment");
	cfg_free(cfg);
	unsetenv("DEFAULT_SANDBOX_TYPE");

	fresh();
	cfg = load_env("DEFAULT_SANDBOX_TYPE=base,nosuch\n");
	ok(cfg == NULL &&
		err_has(".env:1: DEFAULT_SANDBOX_TYPE: unknown "
			"sandbox type 'nosuch'"),
	    "unknown default type");
	cfg = load_env("DEFAULT_SANDBOX_TYPE=dummy\n");
	ok(cfg == NULL &&
		err_has("DEFAULT_SANDBOX_TYPE: sandbox type "
			"'dummy' has no image"),
	    "unsupported default type");
	cfg = load_env("DEFAULT_SANDBOX_TYPE=[]\n");
	ok(cfg == NULL && err_has("names no sandbox type"),
	    "empty default type list");
	cfg = load_env("DEFAULT_SANDBOX_TYPE=[1, 2]\n");
	ok(cfg == NULL && err_has("is not a string"), "JSON list of numbers");
	cfg = load_env("FC_VSWITCH_IDS=[\"a\", \"b\"]\n");
	ok(cfg != NULL, "other lists parse");
	cfg_free(cfg);
}

static void
test_ports(void)
{
	static const char *const good[] = {"[1000,2000]", "1000,2000",
	    " [ 1000 , 2000 ] ", " 1000 , 2000 ", NULL};
	static const char *const bad[] = {"[2000,1000]", "[0,10]", "1,70000",
	    "abc", "[1,2,3]", "1000", "1000,1000", "[1.5,2]", "a,b", NULL};
	struct cfg *cfg;
	char text[256];
	size_t i;

	for (i = 0; good[i] != NULL; i++) {
		fresh();
		snprintf(text, sizeof text,
		    "HOST=h\nBEARER_TOKEN=t\nPORT_RANGE=%s\n", good[i]);
		cfg = load_env(text);
		ok(cfg != NULL && cfg->port_lo == 1000 && cfg->port_hi == 2000,
		    "PORT_RANGE=%s", good[i]);
		cfg_free(cfg);
	}
	for (i = 0; bad[i] != NULL; i++) {
		fresh();
		snprintf(text, sizeof text, "HOST=h\nPORT_RANGE=%s\n", bad[i]);
		cfg = load_env(text);
		ok(cfg == NULL && err_has(".env:2: PORT_RANGE: "),
		    "PORT_RANGE=%s is an error", bad[i]);
		cfg_free(cfg);
	}
}

static void
test_bools(void)
{
	static const char *const yes[] = {
	    "true", "TRUE", "1", "yes", "Yes", "on", "ON", NULL};
	static const char *const no[] = {
	    "false", "False", "0", "no", "NO", "off", "Off", NULL};
	struct cfg *cfg;
	char text[256];
	size_t i;

	for (i = 0; yes[i] != NULL; i++) {
		fresh();
		snprintf(text, sizeof text, "DEBUG=%s\nAUTO_CLEANUP=%s\n",
		    yes[i], no[i]);
		cfg = load_env(text);
		ok(cfg != NULL && cfg->debug == 1 && cfg->auto_cleanup == 0,
		    "DEBUG=%s, AUTO_CLEANUP=%s", yes[i], no[i]);
		cfg_free(cfg);
	}
	fresh();
	cfg = load_env("DEBUG=maybe\n");
	ok(cfg == NULL && err_has(".env:1: DEBUG: 'maybe' is not a boolean"),
	    "bad boolean");
}

static void
test_ttl(void)
{
	struct cfg *cfg;

	fresh();
	cfg = load_env("RELEASE_KET_TTL=10\n");
	ok(cfg != NULL && cfg->released_key_ttl == 10, "RELEASE_KET_TTL");
	cfg_free(cfg);
	cfg = load_env("RELEASED_KEY_TTL=20\n");
	ok(cfg != NULL && cfg->released_key_ttl == 20, "RELEASED_KEY_TTL");
	cfg_free(cfg);
	cfg = load_env("RELEASED_KEY_TTL=20\nRELEASE_KET_TTL=10\n");
	ok(cfg != NULL && cfg->released_key_ttl == 20,
	    "both set: RELEASED_KEY_TTL wins");
	ok(last_log != NULL && strstr(last_log, "both set") != NULL,
	    "both set: warned");
	cfg_free(cfg);
}

static void
test_errors(void)
{
	struct cfg *cfg;

	fresh();
	cfg = load_env("HOST=h\nPORT=abc\n");
	ok(cfg == NULL && err_has(".env:2: PORT: 'abc' is not an integer"),
	    "bad integer: file:line: message");

	cfg = load_env("PORT=abc\nWORKERS=0\nDEBUG=maybe\nPOOL_SIZE=-1\n"
		       "CONTAINER_PREFIX_KEY=-bad\n");
	ok(cfg == NULL, "several errors");
	is_int(err_lines(), 5, "every error reported");
	ok(err_has(".env:2: WORKERS: out of range 1..1024") &&
		err_has(".env:4: POOL_SIZE: out of range") &&
		err_has(".env:5: CONTAINER_PREFIX_KEY: must start with"),
	    "each at its line");

	fresh();
	setenv("PORT", "x1", 1);
	cfg = load(NULL, NULL);
	ok(cfg == NULL && err_has("environment: PORT: 'x1' is not an integer"),
	    "environment errors say so");
	unsetenv("PORT");

	fresh();
	cfg = load_env("POOL_SIZ=1\nFOO_BAR=2\n");
	ok(cfg != NULL, "unknown keys do not fail");
	ok(last_log != NULL &&
		strstr(last_log,
		    "config: .env:1: unknown key POOL_SIZ (did you mean "
		    "POOL_SIZE?)") != NULL,
	    "unknown key warning with a suggestion");
	ok(last_log != NULL &&
		strstr(last_log, "config: .env:2: unknown key FOO_BAR") != NULL,
	    "unknown key warning");
	cfg_free(cfg);

	fresh();
	setenv("SOME_RANDOM_VAR", "1", 1);
	cfg = load(NULL, NULL);
	ok(cfg != NULL && strstr(last_log, "SOME_RANDOM_VAR") == NULL,
	    "environment variables are never warned about");
	cfg_free(cfg);
	unsetenv("SOME_RANDOM_VAR");

	fresh();
	cfg = load_env("CONTAINER_DEPLOYMENT=k8s\n");
	ok(cfg == NULL &&
		err_has(".env:1: CONTAINER_DEPLOYMENT=k8s is not implemented "
			"by sandpool (supported: docker, gvisor)"),
	    "k8s deployment is an error");
	cfg = load_env("CONTAINER_DEPLOYMENT=podman\n");
	ok(cfg == NULL && err_has("'podman' is not one of docker, cloud"),
	    "unknown deployment");
	cfg = load_env("FILE_SYSTEM=oss\n");
	ok(cfg == NULL && err_has("FILE_SYSTEM=oss is not implemented"),
	    "FILE_SYSTEM=oss is an error");
	cfg = load_env("CONTAINER_DEPLOYMENT=gvisor\n");
	ok(cfg != NULL && strcmp(cfg->deployment, "gvisor") == 0 &&
		strcmp(sbtypes_find(cfg->types, "base")->runtime, "runsc") == 0,
	    "gvisor: docker with runsc");
	cfg_free(cfg);

	cfg = load_env("WORKERS=4\n");
	ok(cfg == NULL &&
		err_has(".env:1: WORKERS=4 needs REDIS_ENABLED=true (state "
			"must be shared)"),
	    "WORKERS > 1 needs Redis");
	cfg = load_env("WORKERS=4\nREDIS_ENABLED=true\n");
	ok(cfg != NULL && cfg->workers == 4 && cfg->redis_enabled,
	    "WORKERS=4 with Redis");
	cfg_free(cfg);

	cfg = load_env("CONTAINER_PREFIX_KEY="
		       "a123456789012345678901234567890123456789\n"
		       "DOCKER_HOST=tcp://1.2.3.4:2375\n"
		       "SANDPOOL_INSTANCE_ID=a b\n"
		       "SANDPOOL_PUBLISH_HOST=localhost\n"
		       "SANDPOOL_RUN_DIR=/a/very/long/run/directory/that/does/"
		       "not/fit/into/a/unix/socket/path/at/all\n"
		       "RUNTIME_SANDBOX_IMAGE_TAG=bad tag\n"
		       "AGENT_RUN_CPU=lots\n");
	ok(cfg == NULL && err_lines() == 7, "string checks");
	ok(err_has(".env:1: CONTAINER_PREFIX_KEY: longer than 38"),
	    "prefix too long");
	ok(err_has(".env:2: DOCKER_HOST: only unix://"), "DOCKER_HOST");
	ok(err_has(".env:3: SANDPOOL_INSTANCE_ID:"), "instance id");
	ok(err_has(".env:4: SANDPOOL_PUBLISH_HOST: not an IPv4"),
	    "publish host");
	ok(err_has(".env:5: SANDPOOL_RUN_DIR: longer than"), "run dir");
	ok(err_has(".env:6: RUNTIME_SANDBOX_IMAGE_TAG:"), "tag");
	ok(err_has(".env:7: AGENT_RUN_CPU:"), "unused keys are checked");

	cfg = load_env("SANDPOOL_AGENT=\n");
	ok(cfg == NULL && err_has(".env:1: SANDPOOL_AGENT: must not be empty"),
	    "empty path");

	cfg = load_env("SANDPOOL_INSTANCE_ID=box-1\nPORT=8123\n"
		       "DOCKER_HOST=unix:///tmp/d.sock\n");
	ok(cfg != NULL && strcmp(cfg->instance_id, "box-1") == 0 &&
		strcmp(cfg->docker_host, "unix:///tmp/d.sock") == 0,
	    "instance id and docker host");
	cfg_free(cfg);
}

static void
test_mounts(void)
{
	struct cfg *cfg;
	char host[PATH_MAX + 16];

	fresh();
	cfg = load_env("READONLY_MOUNTS={\"rel/dir\": \"/mnt/a\", "
		       "\"\\/abs\": \"\\/mnt\\/b\"}\n");
	snprintf(host, sizeof host, "%s/rel/dir", tmpdir);
	ok(cfg != NULL &&
		strv_is(cfg->readonly_mounts,
		    (const char *const[]){
			host, "/mnt/a", "/abs", "/mnt/b", NULL}),
	    "READONLY_MOUNTS pairs, relative host made absolute");
	cfg_free(cfg);
	cfg = load_env("READONLY_MOUNTS={\"/a\": \"rel\"}\n");
	ok(cfg == NULL &&
		err_has(".env:1: READONLY_MOUNTS: entry 1: "
			"container path must be absolute"),
	    "relative container path");
	cfg = load_env("READONLY_MOUNTS={\"/a\": \"/run/sandpool/x\"}\n");
	ok(cfg == NULL, "sandpool's own mount point");
	cfg = load_env("READONLY_MOUNTS=/a:/b\n");
	ok(cfg == NULL && err_has("expected a JSON object"), "not JSON");
}

static void
test_extensions(void)
{
	const char *const ext[] = {"ext.json", NULL};
	const char *const ext2[] = {"ext.json", "ext2.json", NULL};
	const struct sbtype *t;
	struct sbtypes *types;
	struct cfg *cfg;
	char *cause;

	fresh();
	write_file("ext.json",
	    "[{\"name\": \"base\", \"image\": \"sandpool/busybox:latest\"},\n"
	    " {\"name\": \"my.type-1\", \"image\": \"example/img:2\",\n"
	    "  \"runtime_port\": 8080, \"timeout\": 5,\n"
	    "  \"environment\": {\"A\": \"1\", \"B\": 2},\n"
	    "  \"resource_limits\": {\"memory\": \"512m\", \"cpu\": 1.5,\n"
	    "                        \"pids\": 100},\n"
	    "  \"description\": \"mine\", \"inject_agent\": false,\n"
	    "  \"network\": \"none\", \"privileged\": false,\n"
	    "  \"shm_size\": \"1g\", \"runtime\": \"runc\"}]\n");
	write_file(".env", "DEFAULT_SANDBOX_TYPE=my.type-1,base\n");
	cfg = load(NULL, ext);
	if (ok(cfg != NULL, "extension file loads")) {
		is_int(count_types(cfg->types), 15, "one new type");
		t = sbtypes_find(cfg->types, "base");
		ok(t != NULL &&
			strcmp(t->image, "sandpool/busybox:latest") == 0 &&
			t->inject_agent == 1 && t->supported,
		    "base redefined");
		t = sbtypes_find(cfg->types, "my.type-1");
		ok(t != NULL && t->runtime_port == 8080 && t->timeout == 5 &&
			t->memory == 512LL << 20 &&
			t->nano_cpus == 1500000000LL && t->pids_limit == 100 &&
			t->shm_size == 1LL << 30 && !t->inject_agent &&
			strcmp(t->network, "none") == 0 &&
			strcmp(t->runtime, "runc") == 0 &&
			strcmp(t->description, "mine") == 0,
		    "every extension field");
		ok(t != NULL &&
			strv_is(
			    t->env, (const char *const[]){"A=1", "B=2", NULL}),
		    "extension environment");
		ok(strv_is(cfg->default_types,
		       (const char *const[]){"my.type-1", "base", NULL}),
		    "default types from the extension");
	}
	cfg_free(cfg);

	write_file("ext2.json", "{\"name\": \"x\", \"imgae\": \"y\"}");
	cfg = load(NULL, ext2);
	ok(cfg == NULL && err_has("ext2.json: type 'x': unknown key 'imgae'"),
	    "unknown key in an entry");

	write_file("ext2.json", "{\"name\": \"x\", \"image\": ");
	cfg = load(NULL, ext2);
	ok(cfg == NULL && err_has("ext2.json: invalid JSON"), "bad JSON");

	write_file("ext2.json", "{\"name\": \"Bad\", \"image\": \"i\"}");
	cfg = load(NULL, ext2);
	ok(cfg == NULL && err_has("is not a valid type name"), "bad name");

	unlink("ext2.json");
	cfg = load(NULL, ext2);
	ok(cfg == NULL && err_has("ext2.json: No such file"), "missing file");

	write_file(".env", "DEFAULT_SANDBOX_TYPE=nosuch\nPORT=x\n");
	write_file("ext2.json", "7");
	cfg = load(NULL, ext2);
	ok(cfg == NULL && err_lines() == 3 &&
		err_has("ext2.json: expected an object or an array") &&
		err_has(".env:1: DEFAULT_SANDBOX_TYPE: unknown") &&
		err_has(".env:2: PORT:"),
	    "extension and key errors reported together");

	/* The registry is unchanged by a failing file. */
	types = sbtypes_new("reg.example/", "ns", "v1", 30);
	t = sbtypes_find(types, "base");
	is_str(t->image, "reg.example/ns/runtime-sandbox-base:v1",
	    "image URI with a registry");
	is_int(t->timeout, 30, "registry timeout");
	write_file("ext2.json",
	    "[{\"name\": \"base\", \"image\": \"a\"},"
	    " {\"name\": \"z\", \"image\": \"b\","
	    "  \"resource_limits\": {\"memory\": \"12x\"}}]");
	ok(sbtypes_load_file(types, "ext2.json", &cause) == -1 &&
		strstr(cause, "ext2.json: type 'z': resource_limits.memory") !=
		    NULL,
	    "bad memory size");
	free(cause);
	t = sbtypes_find(types, "base");
	ok(strcmp(t->image, "reg.example/ns/runtime-sandbox-base:v1") == 0 &&
		count_types(types) == 14,
	    "registry unchanged after an error");
	write_file("ext2.json",
	    "[{\"name\": \"a\", \"image\": \"a\"},"
	    " {\"name\": \"a\", \"image\": \"b\"}]");
	ok(sbtypes_load_file(types, "ext2.json", &cause) == -1 &&
		strstr(cause, "defined twice") != NULL,
	    "a name twice in one file");
	free(cause);
	write_file("ext2.json",
	    "{\"name\": \"m\", \"image\": \"a\", \"resource_limits\": "
	    "{\"memory\": 1048576, \"cpu\": 2}, \"shm_size\": \"256k\"}");
	ok(sbtypes_load_file(types, "ext2.json", &cause) == 0 &&
		sbtypes_find(types, "m")->memory == 1048576 &&
		sbtypes_find(types, "m")->nano_cpus == 2000000000LL &&
		sbtypes_find(types, "m")->shm_size == 256 * 1024 &&
		sbtypes_find(types, "m")->timeout == 30,
	    "integer memory, integer cpu, k size, registry timeout");
	write_file("ext2.json", "{\"name\": \"m\", \"image\": \"c\"}");
	ok(sbtypes_load_file(types, "ext2.json", &cause) == 0 &&
		strcmp(sbtypes_find(types, "m")->image, "c") == 0 &&
		count_types(types) == 15,
	    "a later file redefines a type in place");
	write_file("ext2.json",
	    "{\"name\": \"m\", \"image\": \"c\", "
	    "\"resource_limits\": {\"disk\": 1}}");
	ok(sbtypes_load_file(types, "ext2.json", &cause) == -1 &&
		strstr(cause, "resource_limits: unknown key 'disk'") != NULL,
	    "unknown resource limit");
	free(cause);
	write_file("ext2.json",
	    "{\"name\": \"srv\", \"image\": \"c\", \"inject_agent\": false,"
	    " \"cmd\": [\"python3\", \"-c\", \"print(1)\"]}");
	t = sbtypes_load_file(types, "ext2.json", &cause) == 0
	    ? sbtypes_find(types, "srv")
	    : NULL;
	ok(t != NULL && t->cmd != NULL && strcmp(t->cmd[0], "python3") == 0 &&
		strcmp(t->cmd[2], "print(1)") == 0 && t->cmd[3] == NULL,
	    "cmd is read as a vector");
	ok(sbtypes_find(types, "m")->cmd == NULL, "no cmd: the image's own");
	write_file("ext2.json",
	    "{\"name\": \"srv2\", \"image\": \"c\", \"cmd\": [\"x\"]}");
	ok(sbtypes_load_file(types, "ext2.json", &cause) == -1 &&
		strstr(cause, "cmd: needs \"inject_agent\": false") != NULL &&
		sbtypes_find(types, "srv2") == NULL,
	    "cmd with the agent is refused");
	free(cause);
	write_file("ext2.json",
	    "{\"name\": \"srv2\", \"image\": \"c\", "
	    "\"inject_agent\": false, \"cmd\": [\"x\", 1]}");
	ok(sbtypes_load_file(types, "ext2.json", &cause) == -1 &&
		strstr(cause, "cmd: argument 2 is not a string") != NULL,
	    "cmd with a non-string");
	free(cause);
	write_file("ext2.json",
	    "{\"name\": \"srv2\", \"image\": \"c\", "
	    "\"inject_agent\": false, \"cmd\": []}");
	ok(sbtypes_load_file(types, "ext2.json", &cause) == -1 &&
		strstr(cause, "cmd: expected an array") != NULL,
	    "empty cmd");
	free(cause);
	sbtypes_free(types);
}

static void
test_security_keys(void)
{
	static const struct {
		const char *host;
		int loopback;
	} hosts[] = {{"127.0.0.1", 1}, {"127.9.8.7", 1}, {"localhost", 1},
	    {"LocalHost", 1}, {"::1", 1}, {"::ffff:127.0.0.1", 1},
	    {"0.0.0.0", 0}, {"::", 0}, {"10.0.0.1", 0}, {"myhost", 0},
	    {"128.0.0.1", 0}, {"", 0}};
	char text[2 * PATH_MAX + 64], want[PATH_MAX + 16];
	struct cfg *cfg;
	size_t i;

	for (i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
		is_int(cfg_host_is_loopback(hosts[i].host), hosts[i].loopback,
		    "loopback(%s)", hosts[i].host);

	fresh();
	cfg = load_env("");
	ok(cfg != NULL && cfg->max_headers == 16384 &&
		cfg->max_connections == 512 && cfg->idle_timeout == 60 &&
		cfg->request_timeout == 60 && !cfg->allow_no_auth &&
		!cfg->allow_cleanup && cfg->mount_dir_roots != NULL &&
		cfg->mount_dir_roots[0] == NULL,
	    "limits and switches default");
	cfg_free(cfg);

	cfg = load_env("HOST=0.0.0.0\n");
	ok(cfg == NULL &&
		err_has(".env:1: HOST=0.0.0.0 is not a loopback address and "
			"BEARER_TOKEN is empty"),
	    "non-loopback HOST without a token refuses to start");
	cfg = load_env("HOST=myhost\nBEARER_TOKEN=\n");
	ok(cfg == NULL && err_has("SANDPOOL_ALLOW_NO_AUTH=true"),
	    "a host name counts as non-loopback; the error names the key");
	cfg = load_env("HOST=0.0.0.0\nSANDPOOL_ALLOW_NO_AUTH=true\n");
	ok(cfg != NULL && cfg->allow_no_auth, "unless explicitly allowed");
	cfg_free(cfg);
	cfg = load_env("HOST=0.0.0.0\nBEARER_TOKEN=t\n");
	ok(cfg != NULL, "or a token is set");
	cfg_free(cfg);
	cfg = load_env("HOST=127.0.0.5\n");
	ok(cfg != NULL, "loopback needs no token");
	cfg_free(cfg);

	cfg = load_env("SANDPOOL_MAX_CONNECTIONS=0\nSANDPOOL_IDLE_TIMEOUT=0\n"
		       "SANDPOOL_REQUEST_TIMEOUT=x\nSANDPOOL_MAX_HEADERS=10\n");
	ok(cfg == NULL && err_lines() == 4, "limits are bounded");

	mkdir("roots", 0755);
	mkdir("roots/a", 0755);
	symlink("roots/a", "link");
	snprintf(text, sizeof text,
	    "SANDPOOL_MOUNT_DIR_ROOTS=%s/roots/a,%s/link\nALLOW_MOUNT_DIR=1\n",
	    tmpdir, tmpdir);
	cfg = load_env(text);
	snprintf(want, sizeof want, "%s/roots/a", tmpdir);
	ok(cfg != NULL && cfg->mount_dir_roots != NULL &&
		cfg->mount_dir_roots[0] != NULL &&
		strcmp(cfg->mount_dir_roots[0], want) == 0 &&
		cfg->mount_dir_roots[1] != NULL &&
		strcmp(cfg->mount_dir_roots[1], want) == 0,
	    "mount roots resolved (symbolic links followed)");
	cfg_free(cfg);
	cfg = load_env("SANDPOOL_MOUNT_DIR_ROOTS=/\n");
	ok(cfg == NULL && err_has("SANDPOOL_MOUNT_DIR_ROOTS: '/' is not"),
	    "root / refused");
	cfg = load_env("SANDPOOL_MOUNT_DIR_ROOTS=rel\n");
	ok(cfg == NULL && err_has("'rel' is not an absolute path"),
	    "relative root refused");
	cfg = load_env("SANDPOOL_MOUNT_DIR_ROOTS=/nonexistent/sandpool\n");
	ok(cfg == NULL && err_has("not an existing directory"),
	    "missing root refused");
	cfg = load_env("ALLOW_MOUNT_DIR=true\n");
	ok(cfg != NULL && last_log != NULL &&
		strstr(last_log, "every mount_dir will be refused") != NULL,
	    "ALLOW_MOUNT_DIR without roots warns");
	cfg_free(cfg);
	unlink("link");
	rmdir("roots/a");
	rmdir("roots");
}

static void
test_images_and_bfcl(void)
{
	struct cfg *cfg;
	const struct sbtype *t;

	fresh();
	setenv("OPENAI_API_KEY", "sk-test", 1);
	cfg = load_env("RUNTIME_SANDBOX_REGISTRY=reg.io\n"
		       "RUNTIME_SANDBOX_IMAGE_NAMESPACE=me\n"
		       "RUNTIME_SANDBOX_IMAGE_TAG=1.2\n"
		       "RUNTIME_SANDBOX_TIMEOUT=120\n"
		       "DATASET_SUB_TYPE=live\n");
	if (ok(cfg != NULL, "image keys from the file")) {
		t = sbtypes_find(cfg->types, "gui");
		is_str(t->image, "reg.io/me/runtime-sandbox-gui:1.2",
		    "image URI from the keys");
		is_int(t->timeout, 120, "RUNTIME_SANDBOX_TIMEOUT");
		t = sbtypes_find(cfg->types, "bfcl");
		ok(strv_is(t->env,
		       (const char *const[]){"OPENAI_API_KEY=sk-test",
			   "BFCL_DATA_PATH=/agentscope_runtime/training_box/"
			   "bfcl/multi_turn/live_processed.jsonl",
			   "BFCL_SPLID_ID_PATH=/agentscope_runtime/"
			   "training_box/bfcl/multi_turn/"
			   "live_split_ids.json",
			   NULL}),
		    "bfcl environment from the keys");
	}
	cfg_free(cfg);
	unsetenv("OPENAI_API_KEY");
}

static void
test_print(void)
{
	struct cfg *cfg, *again;
	char *out = NULL, *out2 = NULL;
	size_t len;
	FILE *fp;

	fresh();
	cfg = load_env("BEARER_TOKEN=topsecret\nREDIS_PASSWORD=pw123\n"
		       "DEFAULT_SANDBOX_TYPE=base,gui\n"
		       "REDIS_USER=' lead # x'\n"
		       "READONLY_MOUNTS={\"/h\": \"/c\"}\n"
		       "OSS_ACCESS_KEY_ID=AKID\n");
	if (!ok(cfg != NULL, "config to print"))
		return;
	fp = open_memstream(&out, &len);
	cfg_print(cfg, fp);
	fclose(fp);
	ok(strstr(out, "BEARER_TOKEN=***\n") != NULL, "BEARER_TOKEN masked");
	ok(strstr(out, "REDIS_PASSWORD=***\n") != NULL,
	    "REDIS_PASSWORD masked");
	ok(strstr(out, "OSS_ACCESS_KEY_ID=***\n") != NULL, "access key masked");
	ok(strstr(out, "OPENAI_API_KEY=\n") != NULL, "unset secret empty");
	ok(strstr(out, "topsecret") == NULL && strstr(out, "pw123") == NULL &&
		strstr(out, "AKID") == NULL,
	    "no secret in the output");
	ok(strstr(out, "DEFAULT_SANDBOX_TYPE=[\"base\",\"gui\"]\n") != NULL,
	    "list printed as JSON");
	ok(strstr(out, "PORT_RANGE=[49152,59152]\n") != NULL,
	    "port range printed");
	ok(strstr(out, "READONLY_MOUNTS={\"/h\":\"/c\"}\n") != NULL,
	    "mounts printed");
	ok(strstr(out, "SANDPOOL_RUN_DIR=/run/sandpool\n") != NULL &&
		strstr(out, "SANDPOOL_MAX_BODY=10485760\n") != NULL &&
		strstr(out, "FC_LOG_STORE=\n") != NULL &&
		strstr(out, "RELEASED_KEY_TTL=3600\n") != NULL,
	    "every key printed");
	ok(strstr(out, "REDIS_USER=' lead # x'\n") != NULL,
	    "value quoted when needed");

	/* What is printed loads back to the same thing. */
	write_file("printed.env", out);
	again = load("printed.env", NULL);
	if (ok(again != NULL, "printed config loads back")) {
		fp = open_memstream(&out2, &len);
		cfg_print(again, fp);
		fclose(fp);
		is_str(out2, out, "and prints the same");
		cfg_free(again);
	}
	free(out);
	free(out2);
	cfg_free(cfg);
}

static void
test_shipped_examples(void)
{
	char env[PATH_MAX + 64], ext[PATH_MAX + 64];
	const char *const exts[] = {ext, NULL};
	const struct sbtype *t;
	struct cfg *cfg;

	fresh();
	snprintf(env, sizeof env, "%s/etc/runtime-sandbox-server.env.example",
	    srcdir);
	snprintf(
	    ext, sizeof ext, "%s/etc/types/example-extension.json", srcdir);
	cfg = load(env, exts);
	ok(cfg != NULL, "the shipped .env.example and extension load");
	ok(last_log != NULL && strstr(last_log, "unknown key") == NULL,
	    "the shipped .env.example has no unknown key");
	if (cfg != NULL) {
		is_int(cfg->pool_size, 1, "example POOL_SIZE=1");
		t = sbtypes_find(cfg->types, "python312");
		ok(t != NULL && t->memory == 1LL << 30 && t->inject_agent,
		    "example extension type");
	}
	cfg_free(cfg);
}

int
main(void)
{
	char tmpl[] = "/tmp/sandpool-test-config.XXXXXX";

	if (getenv("SANDPOOL_SRCDIR") != NULL)
		snprintf(
		    srcdir, sizeof srcdir, "%s", getenv("SANDPOOL_SRCDIR"));
	else if (getcwd(srcdir, sizeof srcdir) == NULL)
		return 99;
	if (mkdtemp(tmpl) == NULL || chdir(tmpl) == -1 ||
	    getcwd(tmpdir, sizeof tmpdir) == NULL) {
		perror("tmpdir");
		return 99;
	}
	log_init("test_config", LOG_LEVEL_INFO);

	test_defaults();
	test_file_choice();
	test_syntax();
	test_lists();
	test_ports();
	test_bools();
	test_ttl();
	test_errors();
	test_mounts();
	test_extensions();
	test_security_keys();
	test_images_and_bfcl();
	test_print();
	test_shipped_examples();

	fresh();
	free(last_err);
	free(last_log);
	if (chdir("/") == -1 || rmdir(tmpdir) == -1)
		perror(tmpdir);
	return tap_done();
}
