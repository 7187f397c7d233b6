/*
 * sbtype: the sandbox type registry. Owns the list of types: the built-in
 * ones of spec section 3.1, with image URIs fixed when the registry is made,
 * and the declarative ones of extension files (JSON), which may redefine a
 * built-in. A type says which image to run and how (port, environment,
 * limits, network, OCI runtime); it owns all of its strings.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "json.h"
#include "sbtype.h"
#include "xmalloc.h"

/* Largest extension file read. */
#define SBTYPE_MAX_FILE (1024 * 1024)
/* Most arguments of a type's cmd. */
#define SBTYPE_MAX_ARGS 256
/* Largest memory or shm size accepted (1 PiB): keeps the arithmetic exact. */
#define SBTYPE_MAX_SIZE ((int64_t)1 << 50)
/* Most CPUs a type may ask for. */
#define SBTYPE_MAX_CPUS 1024.0
/* Most capabilities and tmpfs mounts in one type. */
#define SBTYPE_MAX_LIST 64
#define SBTYPE_GIB(n) ((int64_t)(n) << 30)

/* clang-format off */
static const struct sbtype_builtin {
	const char	*name;
	const char	*image;		/* name part for the URI rule */
	const char	*literal;	/* or a fixed image reference */
	int		 inject_agent;
	int		 supported;
	int		 privileged;
	int64_t		 shm_size;
	int64_t		 memory;	/* 0: SBTYPE_DEF_MEMORY */
	int64_t		 pids;		/* 0: SBTYPE_DEF_PIDS */
	const char	*description;
} sbtype_builtins[] = {
	{ "dummy", NULL, "", 0, 0, 0, 0, 0, 0,
	  "placeholder type; no image can serve it" },
	{ "base", "runtime-sandbox-base", NULL, 1, 1, 0, 0, 0, 0,
	  "shell and Python tools" },
	{ "browser", "runtime-sandbox-browser", NULL, 0, 1, 0, 0,
	  SBTYPE_GIB(2), 1024, "headless browser tools" },
	{ "filesystem", "runtime-sandbox-filesystem", NULL, 1, 1, 0, 0, 0, 0,
	  "file system tools" },
	{ "gui", "runtime-sandbox-gui", NULL, 0, 1, 0, 0,
	  SBTYPE_GIB(2), 1024, "desktop (GUI) tools" },
	{ "mobile", "runtime-sandbox-mobile", NULL, 0, 1, 1, 0,
	  SBTYPE_GIB(4), 1024, "Android emulator tools" },
	{ "appworld", "runtime-sandbox-appworld", NULL, 0, 1, 0,
	  5433133629LL, SBTYPE_GIB(8), 1024, "AppWorld training environment" },
	{ "bfcl", "runtime-sandbox-bfcl", NULL, 0, 1, 0,
	  8654359101LL, SBTYPE_GIB(8), 1024, "BFCL training environment" },
	{ "agentbay", NULL, "agentbay-cloud", 0, 0, 0, 0, 0, 0,
	  "AgentBay cloud sandbox; not served by a container engine" },
	{ "base_async", "runtime-sandbox-base", NULL, 1, 1, 0, 0, 0, 0,
	  "shell and Python tools (async client)" },
	{ "browser_async", "runtime-sandbox-browser", NULL, 0, 1, 0, 0,
	  SBTYPE_GIB(2), 1024, "headless browser tools (async client)" },
	{ "filesystem_async", "runtime-sandbox-filesystem", NULL, 1, 1, 0, 0,
	  0, 0, "file system tools (async client)" },
	{ "gui_async", "runtime-sandbox-gui", NULL, 0, 1, 0, 0,
	  SBTYPE_GIB(2), 1024, "desktop (GUI) tools (async client)" },
	{ "mobile_async", "runtime-sandbox-mobile", NULL, 0, 1, 1, 0,
	  SBTYPE_GIB(4), 1024, "Android emulator tools (async client)" },
};

/* The filesystem types: sandpool-agent serves the filesystem MCP tools. */
static const char *const sbtype_filesystem_env[] = {
	"SANDPOOL_AGENT_MCP_FILESYSTEM=1",
	NULL
};
/*
 * The capabilities a sandbox keeps: what a shell and its tools need as
 * root (chown, files of other users, su, kill), measured against the base
 * image. Binding ports below 1024 needs none: dockerd sets
 * net.ipv4.ip_unprivileged_port_start=0 in a container's network.
 */
static const char *const sbtype_def_cap_add[] = {
	"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL", NULL
};
static const char *const sbtype_def_cap_drop[] = { "ALL", NULL };

/* The bfcl type's environment with the default DATASET_SUB_TYPE. */
static const char *const sbtype_bfcl_env[] = {
	"OPENAI_API_KEY=",
	"BFCL_DATA_PATH=/agentscope_runtime/training_box/bfcl/multi_turn/"
	    "multi_turn_processed.jsonl",
	"BFCL_SPLID_ID_PATH=/agentscope_runtime/training_box/bfcl/multi_turn/"
	    "multi_turn_split_ids.json",
	NULL
};

/* Keys of an extension entry and of its resource_limits. */
static const char *const sbtype_keys[] = {
	"name", "image", "runtime_port", "environment", "resource_limits",
	"timeout", "description", "inject_agent", "network", "privileged",
	"shm_size", "runtime", "cap_drop", "cap_add", "no_new_privileges",
	"read_only", "tmpfs", "user", "init", "cmd", NULL
};
static const char *const sbtype_limit_keys[] = {
	"memory", "cpu", "pids", NULL
};
/* clang-format on */

/* Frees one type. */
static void
sbtype_free(struct sbtype *t)
{
	if (t == NULL)
		return;
	free(t->name);
	free(t->image);
	free(t->description);
	xstrv_free(t->env);
	xstrv_free(t->cmd);
	free(t->network);
	free(t->runtime);
	xstrv_free(t->cap_drop);
	xstrv_free(t->cap_add);
	xstrv_free(t->tmpfs);
	free(t->user);
	free(t);
}

/* Frees every type of a list. */
static void
sbtype_list_free(struct sbtype_list *l)
{
	struct sbtype *t;

	while ((t = TAILQ_FIRST(l)) != NULL) {
		TAILQ_REMOVE(l, t, entry);
		sbtype_free(t);
	}
}

/* Makes a type with the registry's defaults and no image. */
static struct sbtype *
sbtype_new(const struct sbtypes *types, const char *name)
{
	struct sbtype *t;

	t = xcalloc(1, sizeof *t);
	t->name = xstrdup(name);
	t->description = xstrdup("");
	t->runtime_port = 80;
	t->timeout = types->timeout;
	t->inject_agent = 1;
	t->supported = 1;
	t->memory = SBTYPE_DEF_MEMORY;
	t->nano_cpus = SBTYPE_DEF_NANO_CPUS;
	t->pids_limit = SBTYPE_DEF_PIDS;
	t->cap_drop = xstrv_dup(sbtype_def_cap_drop);
	t->cap_add = xstrv_dup(sbtype_def_cap_add);
	t->no_new_privileges = 1;
	t->tmpfs = xstrv_dup(NULL);
	return t;
}

/*
 * Fills in the defaults that depend on other fields: a type served by
 * sandpool-agent is reached over its unix socket and gets no network
 * unless it asks for one; a type with its own runtime is reached over TCP
 * and needs the bridge. A read-only root gets a size-capped /tmp.
 */
static void
sbtype_finish(struct sbtype *t)
{
	if (t->network == NULL)
		t->network = xstrdup(t->inject_agent ? "none" : "bridge");
	if (t->read_only && t->tmpfs[0] == NULL) {
		xstrv_free(t->tmpfs);
		t->tmpfs = xcalloc(3, sizeof *t->tmpfs);
		t->tmpfs[0] = xstrdup(SBTYPE_DEF_TMPFS_PATH);
		t->tmpfs[1] = xstrdup(SBTYPE_DEF_TMPFS_OPTS);
	}
}

/* Builds the image URI: [registry/]ns/name:tag. */
char *
sbtypes_image_uri(const struct sbtypes *types, const char *image_name)
{
	char *uri;

	if (types->registry[0] == '\0')
		xasprintf(&uri, "%s/%s:%s", types->ns, image_name, types->tag);
	else
		xasprintf(&uri, "%s/%s/%s:%s", types->registry, types->ns,
		    image_name, types->tag);
	return uri;
}

/* Makes the registry with every built-in type. */
struct sbtypes *
sbtypes_new(const char *registry, const char *ns, const char *tag, int timeout)
{
	const struct sbtype_builtin *b;
	struct sbtypes *types;
	struct sbtype *t;
	size_t i, len;

	types = xcalloc(1, sizeof *types);
	TAILQ_INIT(&types->list);
	types->registry = xstrdup(registry != NULL ? registry : "");
	/* "reg.example/" would give "reg.example//ns/...". */
	len = strlen(types->registry);
	while (len > 0 && types->registry[len - 1] == '/')
		types->registry[--len] = '\0';
	types->ns = xstrdup(ns != NULL && *ns != '\0' ? ns : "agentscope");
	types->tag = xstrdup(tag != NULL && *tag != '\0' ? tag : "latest");
	types->timeout = timeout > 0 ? timeout : 60;

	for (i = 0; i < sizeof sbtype_builtins / sizeof *sbtype_builtins; i++) {
		b = &sbtype_builtins[i];
		t = sbtype_new(types, b->name);
		if (b->image != NULL)
			t->image = sbtypes_image_uri(types, b->image);
		else
			t->image = xstrdup(b->literal);
		xstrset(&t->description, b->description);
		t->inject_agent = b->inject_agent;
		t->supported = b->supported;
		t->privileged = b->privileged;
		t->shm_size = b->shm_size;
		if (b->memory != 0)
			t->memory = b->memory;
		if (b->pids != 0)
			t->pids_limit = b->pids;
		if (strcmp(b->name, "bfcl") == 0)
			t->env = xstrv_dup(sbtype_bfcl_env);
		else if (strncmp(b->name, "filesystem", 10) == 0)
			t->env = xstrv_dup(sbtype_filesystem_env);
		else
			t->env = xstrv_dup(NULL);
		sbtype_finish(t);
		TAILQ_INSERT_TAIL(&types->list, t, entry);
	}
	return types;
}

/* Frees the registry and its types. */
void
sbtypes_free(struct sbtypes *types)
{
	if (types == NULL)
		return;
	sbtype_list_free(&types->list);
	free(types->registry);
	free(types->ns);
	free(types->tag);
	free(types);
}

/* Finds a type by exact name. */
const struct sbtype *
sbtypes_find(const struct sbtypes *types, const char *name)
{
	const struct sbtype *t;

	if (types == NULL || name == NULL)
		return NULL;
	TAILQ_FOREACH (t, &types->list, entry)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* Checks a type name: [a-z0-9_][a-z0-9_.-]{0,63}. */
static int
sbtype_name_ok(const char *s)
{
	size_t i;

	if (!(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0]) ||
		s[0] == '_'))
		return 0;
	for (i = 1; s[i] != '\0'; i++) {
		if (i >= 64)
			return 0;
		if (!(islower((unsigned char)s[i]) ||
			isdigit((unsigned char)s[i]) || s[i] == '_' ||
			s[i] == '.' || s[i] == '-'))
			return 0;
	}
	return 1;
}

/* Checks an image reference: printable, no blanks, at most 512 bytes. */
static int
sbtype_image_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= 512 || !isgraph((unsigned char)s[i]))
			return 0;
	return i > 0;
}

/* Checks an OCI runtime name: [A-Za-z0-9_.-]{1,64}. */
static int
sbtype_runtime_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= 64 ||
		    !(isalnum((unsigned char)s[i]) || s[i] == '_' ||
			s[i] == '.' || s[i] == '-'))
			return 0;
	return i > 0;
}

/*
 * Parses a size as docker-py does: a number (fraction allowed) with an
 * optional unit b, k, m or g (powers of 1024), optionally followed by "b":
 * "512m", "1g", "256k", "5.06gb", "1048576".
 */
static int
sbtype_parse_size(const char *s, int64_t *out)
{
	const char *p = s;
	int64_t whole = 0, unit = 1;
	double frac = 0, scale = 0.1;
	int digits = 0;

	while (isspace((unsigned char)*p))
		p++;
	for (; isdigit((unsigned char)*p); p++, digits++) {
		if (whole > SBTYPE_MAX_SIZE)
			return -1;
		whole = whole * 10 + (*p - '0');
	}
	if (*p == '.') {
		for (p++; isdigit((unsigned char)*p); p++, digits++) {
			frac += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (digits == 0)
		return -1;
	switch (tolower((unsigned char)*p)) {
	case 'k':
		unit = (int64_t)1 << 10;
		break;
	case 'm':
		unit = (int64_t)1 << 20;
		break;
	case 'g':
		unit = (int64_t)1 << 30;
		break;
	}
	if (unit > 1 || tolower((unsigned char)*p) == 'b')
		p++;
	if (unit > 1 && tolower((unsigned char)*p) == 'b')
		p++;
	while (isspace((unsigned char)*p))
		p++;
	if (*p != '\0' || whole > SBTYPE_MAX_SIZE / unit)
		return -1;
	*out = whole * unit + (int64_t)(frac * (double)unit);
	if (*out > SBTYPE_MAX_SIZE)
		return -1;
	return 0;
}

/* Reads a size member: an integer of bytes or a size string. */
static int
sbtype_get_size(yajl_val v, const char *what, int64_t *out, char **cause)
{
	if (YAJL_IS_INTEGER(v)) {
		if (YAJL_GET_INTEGER(v) < 0 ||
		    YAJL_GET_INTEGER(v) > SBTYPE_MAX_SIZE) {
			xasprintf(cause, "%s: out of range", what);
			return -1;
		}
		*out = YAJL_GET_INTEGER(v);
		return 0;
	}
	if (YAJL_IS_STRING(v) &&
	    sbtype_parse_size(YAJL_GET_STRING(v), out) == 0)
		return 0;
	xasprintf(cause,
	    "%s: expected an integer of bytes or a size like \"512m\"", what);
	return -1;
}

/* Reads an integer member within bounds. */
static int
sbtype_get_int(yajl_val v, const char *what, long long lo, long long hi,
    long long *out, char **cause)
{
	if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < lo ||
	    YAJL_GET_INTEGER(v) > hi) {
		xasprintf(cause, "%s: expected an integer in %lld..%lld", what,
		    lo, hi);
		return -1;
	}
	*out = YAJL_GET_INTEGER(v);
	return 0;
}

/* Reads a boolean member. */
static int
sbtype_get_bool(yajl_val v, const char *what, int *out, char **cause)
{
	if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v)) {
		xasprintf(cause, "%s: expected true or false", what);
		return -1;
	}
	*out = YAJL_IS_TRUE(v);
	return 0;
}

/* Reads a string member. */
static int
sbtype_get_str(yajl_val v, const char *what, const char **out, char **cause)
{
	if (!YAJL_IS_STRING(v)) {
		xasprintf(cause, "%s: expected a string", what);
		return -1;
	}
	*out = YAJL_GET_STRING(v);
	return 0;
}

/* Returns the first key of obj not in allowed, or NULL. */
static const char *
sbtype_unknown_key(yajl_val obj, const char *const *allowed)
{
	size_t i, k;

	for (i = 0; i < obj->u.object.len; i++) {
		for (k = 0; allowed[k] != NULL; k++)
			if (strcmp(obj->u.object.keys[i], allowed[k]) == 0)
				break;
		if (allowed[k] == NULL)
			return obj->u.object.keys[i];
	}
	return NULL;
}

/* Converts an "environment" object into "K=V" strings. */
static int
sbtype_get_env(yajl_val v, char ***out, char **cause)
{
	const char *k;
	yajl_val val;
	char **env;
	size_t i;

	if (!YAJL_IS_OBJECT(v)) {
		xasprintf(cause, "environment: expected an object");
		return -1;
	}
	env = xcalloc(v->u.object.len + 1, sizeof *env);
	for (i = 0; i < v->u.object.len; i++) {
		k = v->u.object.keys[i];
		val = v->u.object.values[i];
		if (*k == '\0' || strchr(k, '=') != NULL) {
			xasprintf(
			    cause, "environment: bad variable name '%s'", k);
			goto fail;
		}
		if (YAJL_IS_STRING(val))
			xasprintf(&env[i], "%s=%s", k, YAJL_GET_STRING(val));
		else if (YAJL_IS_NUMBER(val))
			xasprintf(&env[i], "%s=%s", k, YAJL_GET_NUMBER(val));
		else {
			xasprintf(cause,
			    "environment: %s: expected a string or a number",
			    k);
			goto fail;
		}
	}
	*out = env;
	return 0;
fail:
	xstrv_free(env);
	return -1;
}

/* Converts a "cmd" array of strings into a NULL-terminated vector. */
static int
sbtype_get_cmd(yajl_val v, char ***out, char **cause)
{
	char **cmd;
	size_t i, n;

	if (!YAJL_IS_ARRAY(v) || (n = v->u.array.len) == 0 ||
	    n > SBTYPE_MAX_ARGS) {
		xasprintf(cause, "cmd: expected an array of 1 to %d strings",
		    SBTYPE_MAX_ARGS);
		return -1;
	}
	cmd = xcalloc(n + 1, sizeof *cmd);
	for (i = 0; i < n; i++) {
		if (!YAJL_IS_STRING(v->u.array.values[i])) {
			xasprintf(
			    cause, "cmd: argument %zu is not a string", i + 1);
			xstrv_free(cmd);
			return -1;
		}
		cmd[i] = xstrdup(YAJL_GET_STRING(v->u.array.values[i]));
	}
	*out = cmd;
	return 0;
}

/* Reads the "resource_limits" object into t. */
static int
sbtype_get_limits(yajl_val v, struct sbtype *t, char **cause)
{
	const char *bad;
	long long n;
	double cpu;
	yajl_val m;

	if (!YAJL_IS_OBJECT(v)) {
		xasprintf(cause, "resource_limits: expected an object");
		return -1;
	}
	if ((bad = sbtype_unknown_key(v, sbtype_limit_keys)) != NULL) {
		xasprintf(cause,
		    "resource_limits: unknown key '%s' (known: memory, cpu, "
		    "pids)",
		    bad);
		return -1;
	}
	if ((m = json_get(v, "memory")) != NULL &&
	    sbtype_get_size(m, "resource_limits.memory", &t->memory, cause) ==
		-1)
		return -1;
	if ((m = json_get(v, "cpu")) != NULL) {
		cpu = YAJL_IS_NUMBER(m) ? strtod(YAJL_GET_NUMBER(m), NULL) : -1;
		if (!(cpu >= 0 && cpu <= SBTYPE_MAX_CPUS)) {
			xasprintf(cause,
			    "resource_limits.cpu: expected a number of CPUs in "
			    "0..%g",
			    SBTYPE_MAX_CPUS);
			return -1;
		}
		t->nano_cpus = (int64_t)llround(cpu * 1e9);
	}
	if ((m = json_get(v, "pids")) != NULL) {
		if (sbtype_get_int(
			m, "resource_limits.pids", 0, 4194304, &n, cause) == -1)
			return -1;
		t->pids_limit = n;
	}
	return 0;
}

/* Reads an array of capability names: "CHOWN", "cap_chown", "ALL". */
static int
sbtype_get_caps(yajl_val v, const char *what, char ***out, char **cause)
{
	const char *s;
	char **caps;
	size_t i, j, n;

	if (!YAJL_IS_ARRAY(v) || v->u.array.len > SBTYPE_MAX_LIST) {
		xasprintf(cause,
		    "%s: expected an array of at most %d "
		    "capability names",
		    what, SBTYPE_MAX_LIST);
		return -1;
	}
	n = v->u.array.len;
	caps = xcalloc(n + 1, sizeof *caps);
	for (i = 0; i < n; i++) {
		s = YAJL_GET_STRING(v->u.array.values[i]);
		if (s != NULL && strncasecmp(s, "CAP_", 4) == 0)
			s += 4;
		for (j = 0; s != NULL && s[j] != '\0'; j++)
			if (j >= 40 ||
			    !(isalnum((unsigned char)s[j]) || s[j] == '_'))
				break;
		if (s == NULL || j == 0 || s[j] != '\0') {
			xasprintf(cause,
			    "%s: item %zu is not a capability "
			    "name (like \"CHOWN\" or \"ALL\")",
			    what, i + 1);
			xstrv_free(caps);
			return -1;
		}
		caps[i] = xstrdup(s);
		for (j = 0; caps[i][j] != '\0'; j++)
			caps[i][j] = (char)toupper((unsigned char)caps[i][j]);
	}
	xstrv_free(*out);
	*out = caps;
	return 0;
}

/*
 * Checks a tmpfs mount point: absolute, plain characters, no "." or ".."
 * component, and not the root or a path sandpool mounts itself.
 */
static int
sbtype_tmpfs_path_ok(const char *p)
{
	static const char *const reserved[] = {
	    "/sandpool", "/run/sandpool", "/workspace", NULL};
	const char *seg, *slash;
	size_t i, n;

	if (p[0] != '/' || p[1] == '\0' || strlen(p) > 256)
		return 0;
	for (i = 0; p[i] != '\0'; i++)
		if (!isalnum((unsigned char)p[i]) &&
		    strchr("/._-", p[i]) == NULL)
			return 0;
	for (seg = p + 1;; seg = slash + 1) {
		slash = strchr(seg, '/');
		n = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		if (slash == NULL)
			break;
	}
	for (i = 0; reserved[i] != NULL; i++) {
		n = strlen(reserved[i]);
		if (strncmp(p, reserved[i], n) == 0 &&
		    (p[n] == '\0' || p[n] == '/'))
			return 0;
	}
	return 1;
}

/* Reads "tmpfs": {"/path": "options", ...}. */
static int
sbtype_get_tmpfs(yajl_val v, char ***out, char **cause)
{
	const char *path, *opts;
	char **l;
	size_t i, j, n;

	if (!YAJL_IS_OBJECT(v) || v->u.object.len > SBTYPE_MAX_LIST) {
		xasprintf(cause,
		    "tmpfs: expected an object of at most %d "
		    "\"/path\": \"options\" members",
		    SBTYPE_MAX_LIST);
		return -1;
	}
	n = v->u.object.len;
	l = xcalloc(2 * n + 1, sizeof *l);
	for (i = 0; i < n; i++) {
		path = v->u.object.keys[i];
		opts = YAJL_GET_STRING(v->u.object.values[i]);
		if (!sbtype_tmpfs_path_ok(path)) {
			xasprintf(cause,
			    "tmpfs: '%.80s' is not an absolute "
			    "path of [A-Za-z0-9/._-] without \"..\", or is "
			    "/, /sandpool, /run/sandpool or /workspace",
			    path);
			goto fail;
		}
		for (j = 0; opts != NULL && opts[j] != '\0'; j++)
			if (j >= 256 ||
			    (!isalnum((unsigned char)opts[j]) &&
				strchr("=,._-", opts[j]) == NULL))
				break;
		if (opts == NULL || opts[j] != '\0') {
			xasprintf(cause,
			    "tmpfs: %s: options must be a string "
			    "like \"size=64m,mode=1777\"",
			    path);
			goto fail;
		}
		l[2 * i] = xstrdup(path);
		l[2 * i + 1] = xstrdup(opts);
	}
	xstrv_free(*out);
	*out = l;
	return 0;
fail:
	xstrv_free(l);
	return -1;
}

/* Checks a decimal id of 1 to 10 digits below 2^31. */
static int
sbtype_id_ok(const char *s, size_t n)
{
	long long v = 0;
	size_t i;

	if (n == 0 || n > 10)
		return 0;
	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return 0;
		v = v * 10 + (s[i] - '0');
	}
	return v <= INT_MAX;
}

/* Reads "user": "uid" or "uid:gid" (numbers), or null for the image's. */
static int
sbtype_get_user(yajl_val v, char **out, char **cause)
{
	const char *s, *colon;

	if (YAJL_IS_NULL(v)) {
		free(*out);
		*out = NULL;
		return 0;
	}
	s = YAJL_GET_STRING(v);
	colon = s != NULL ? strchr(s, ':') : NULL;
	if (s == NULL ||
	    !(colon == NULL ? sbtype_id_ok(s, strlen(s))
			    : sbtype_id_ok(s, (size_t)(colon - s)) &&
			sbtype_id_ok(colon + 1, strlen(colon + 1)))) {
		xasprintf(cause,
		    "user: expected \"uid\" or \"uid:gid\" "
		    "(numbers), or null");
		return -1;
	}
	free(*out);
	*out = xstrdup(s);
	return 0;
}

/* Builds a type from one extension entry; NULL with *cause on error. */
static struct sbtype *
sbtype_from_json(const struct sbtypes *types, yajl_val obj, char **cause)
{
	struct sbtype *t;
	const char *s, *bad;
	long long n;
	yajl_val v;

	*cause = NULL;
	if (!YAJL_IS_OBJECT(obj)) {
		xasprintf(cause, "expected an object");
		return NULL;
	}
	if ((s = json_get_str(obj, "name")) == NULL) {
		xasprintf(cause, "name: missing, or not a string");
		return NULL;
	}
	if (!sbtype_name_ok(s)) {
		xasprintf(cause,
		    "name: '%.80s' is not a valid type name "
		    "([a-z0-9_][a-z0-9_.-]{0,63})",
		    s);
		return NULL;
	}
	t = sbtype_new(types, s);
	if ((bad = sbtype_unknown_key(obj, sbtype_keys)) != NULL) {
		xasprintf(cause, "unknown key '%.80s'", bad);
		goto fail;
	}
	if ((s = json_get_str(obj, "image")) == NULL || !sbtype_image_ok(s)) {
		xasprintf(cause, "image: missing, or not an image reference");
		goto fail;
	}
	t->image = xstrdup(s);
	if ((v = json_get(obj, "runtime_port")) != NULL) {
		if (sbtype_get_int(v, "runtime_port", 1, 65535, &n, cause) ==
		    -1)
			goto fail;
		t->runtime_port = (int)n;
	}
	if ((v = json_get(obj, "environment")) != NULL) {
		if (sbtype_get_env(v, &t->env, cause) == -1)
			goto fail;
	} else
		t->env = xstrv_dup(NULL);
	if ((v = json_get(obj, "resource_limits")) != NULL &&
	    sbtype_get_limits(v, t, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "timeout")) != NULL) {
		if (sbtype_get_int(v, "timeout", 1, 86400, &n, cause) == -1)
			goto fail;
		t->timeout = (int)n;
	}
	if ((v = json_get(obj, "description")) != NULL) {
		if (sbtype_get_str(v, "description", &s, cause) == -1)
			goto fail;
		xstrset(&t->description, s);
	}
	if ((v = json_get(obj, "inject_agent")) != NULL &&
	    sbtype_get_bool(v, "inject_agent", &t->inject_agent, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "cmd")) != NULL) {
		if (sbtype_get_cmd(v, &t->cmd, cause) == -1)
			goto fail;
		if (t->inject_agent) {
			xasprintf(cause,
			    "cmd: needs \"inject_agent\": false "
			    "(the agent is the command)");
			goto fail;
		}
	}
	if ((v = json_get(obj, "privileged")) != NULL &&
	    sbtype_get_bool(v, "privileged", &t->privileged, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "network")) != NULL) {
		if (sbtype_get_str(v, "network", &s, cause) == -1)
			goto fail;
		if (strcmp(s, "bridge") != 0 && strcmp(s, "none") != 0) {
			xasprintf(
			    cause, "network: '%.80s' is not bridge or none", s);
			goto fail;
		}
		xstrset(&t->network, s);
	}
	if ((v = json_get(obj, "shm_size")) != NULL &&
	    sbtype_get_size(v, "shm_size", &t->shm_size, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "runtime")) != NULL) {
		if (YAJL_IS_NULL(v))
			;
		else if (sbtype_get_str(v, "runtime", &s, cause) == -1)
			goto fail;
		else if (!sbtype_runtime_ok(s)) {
			xasprintf(cause,
			    "runtime: '%.80s' is not an OCI runtime name", s);
			goto fail;
		} else
			t->runtime = xstrdup(s);
	}
	if ((v = json_get(obj, "cap_drop")) != NULL &&
	    sbtype_get_caps(v, "cap_drop", &t->cap_drop, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "cap_add")) != NULL &&
	    sbtype_get_caps(v, "cap_add", &t->cap_add, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "no_new_privileges")) != NULL &&
	    sbtype_get_bool(
		v, "no_new_privileges", &t->no_new_privileges, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "read_only")) != NULL &&
	    sbtype_get_bool(v, "read_only", &t->read_only, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "tmpfs")) != NULL &&
	    sbtype_get_tmpfs(v, &t->tmpfs, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "user")) != NULL &&
	    sbtype_get_user(v, &t->user, cause) == -1)
		goto fail;
	if ((v = json_get(obj, "init")) != NULL &&
	    sbtype_get_bool(v, "init", &t->init, cause) == -1)
		goto fail;
	sbtype_finish(t);
	return t;
fail:
	sbtype_free(t);
	return NULL;
}

/* Reads a whole file of at most SBTYPE_MAX_FILE bytes. */
static char *
sbtype_read_file(const char *path, size_t *lenp, char **cause)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		xasprintf(cause, "%s: not a regular file", path);
		goto fail;
	}
	buf = xmalloc(SBTYPE_MAX_FILE + 1);
	for (;;) {
		n = read(fd, buf + len, SBTYPE_MAX_FILE + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			xasprintf(cause, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > SBTYPE_MAX_FILE) {
			xasprintf(cause, "%s: larger than %d bytes", path,
			    SBTYPE_MAX_FILE);
			goto fail;
		}
	}
	close(fd);
	*lenp = len;
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

/*
 * Loads an extension file. Every entry is checked into a private list
 * first; only when all are good do they join the registry, replacing any
 * type of the same name in place.
 */
int
sbtypes_load_file(struct sbtypes *types, const char *path, char **cause)
{
	struct sbtype_list fresh;
	struct sbtype *t, *old, *u;
	yajl_val root, *items;
	size_t i, n, len;
	char *buf, *why;

	*cause = NULL;
	TAILQ_INIT(&fresh);
	if ((buf = sbtype_read_file(path, &len, cause)) == NULL)
		return -1;
	root = json_parse(buf, len, &why);
	free(buf);
	if (root == NULL) {
		xasprintf(cause, "%s: %s", path, why);
		free(why);
		return -1;
	}
	if (YAJL_IS_OBJECT(root)) {
		items = &root;
		n = 1;
	} else if (YAJL_IS_ARRAY(root)) {
		items = root->u.array.values;
		n = root->u.array.len;
	} else {
		xasprintf(cause,
		    "%s: expected an object or an array of objects", path);
		goto fail;
	}
	for (i = 0; i < n; i++) {
		if ((t = sbtype_from_json(types, items[i], &why)) == NULL) {
			if (json_get_str(items[i], "name") != NULL)
				xasprintf(cause, "%s: type '%.80s': %s", path,
				    json_get_str(items[i], "name"), why);
			else
				xasprintf(cause, "%s: entry %zu: %s", path,
				    i + 1, why);
			free(why);
			goto fail;
		}
		TAILQ_FOREACH (u, &fresh, entry) {
			if (strcmp(u->name, t->name) == 0) {
				xasprintf(cause,
				    "%s: type '%s' is defined twice", path,
				    t->name);
				sbtype_free(t);
				goto fail;
			}
		}
		TAILQ_INSERT_TAIL(&fresh, t, entry);
	}
	yajl_tree_free(root);

	while ((t = TAILQ_FIRST(&fresh)) != NULL) {
		TAILQ_REMOVE(&fresh, t, entry);
		old = (struct sbtype *)sbtypes_find(types, t->name);
		if (old != NULL) {
			TAILQ_INSERT_AFTER(&types->list, old, t, entry);
			TAILQ_REMOVE(&types->list, old, entry);
			sbtype_free(old);
		} else
			TAILQ_INSERT_TAIL(&types->list, t, entry);
	}
	return 0;
fail:
	yajl_tree_free(root);
	sbtype_list_free(&fresh);
	return -1;
}
