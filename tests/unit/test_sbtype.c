/*
 * test_sbtype: the sandbox type registry's container defaults (capabilities,
 * no-new-privileges, limits, network, read-only root, user, init) and the
 * extension keys that override them, good and bad. Extension files are
 * written into a private temporary directory and removed.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbtype.h"
#include "tap.h"

static char path[PATH_MAX];

/* 1 if the NULL-terminated vectors are equal. */
static int
strv_is(char *const *got, const char *const *want)
{
	size_t i;

	for (i = 0; got != NULL && got[i] != NULL && want[i] != NULL; i++)
		if (strcmp(got[i], want[i]) != 0)
			return 0;
	return got != NULL && got[i] == NULL && want[i] == NULL;
}

/* Writes text as the extension file and loads it into types. */
static int
load(struct sbtypes *types, const char *text, char **cause)
{
	FILE *fp;

	if ((fp = fopen(path, "w")) == NULL) {
		perror(path);
		exit(99);
	}
	fputs(text, fp);
	fclose(fp);
	*cause = NULL;
	return sbtypes_load_file(types, path, cause);
}

/* Loads text, which must fail with a cause containing want. */
static void
bad(struct sbtypes *types, const char *text, const char *want)
{
	char *cause;
	int rc = load(types, text, &cause);

	ok(rc == -1 && cause != NULL && strstr(cause, want) != NULL,
	    "refused: %s", want);
	if (rc == -1 && (cause == NULL || strstr(cause, want) == NULL))
		printf("#   cause: %s\n", cause != NULL ? cause : "(none)");
	free(cause);
}

static void
test_builtin_defaults(void)
{
	static const char *const caps[] = {"CHOWN", "DAC_OVERRIDE", "FOWNER",
	    "SETUID", "SETGID", "KILL", NULL};
	struct sbtypes *types = sbtypes_new("", "agentscope", "latest", 60);
	const struct sbtype *t;

	t = sbtypes_find(types, "base");
	ok(t != NULL, "base exists");
	ok(strv_is(t->cap_drop, (const char *const[]){"ALL", NULL}),
	    "base drops every capability");
	ok(strv_is(t->cap_add, caps), "base keeps the shell's six");
	is_int(t->no_new_privileges, 1, "base: no-new-privileges");
	is_int(t->pids_limit, SBTYPE_DEF_PIDS, "base: pids limit");
	is_int(t->memory, SBTYPE_DEF_MEMORY, "base: memory 1 GiB");
	is_int(t->nano_cpus, SBTYPE_DEF_NANO_CPUS, "base: one CPU");
	is_str(t->network, "none", "base: agent over its socket, no network");
	is_int(t->read_only, 0, "base: writable root by default");
	ok(t->tmpfs != NULL && t->tmpfs[0] == NULL, "base: no tmpfs");
	ok(t->user == NULL, "base: the image's user");
	is_int(t->init, 0, "base: the agent is PID 1, no engine init");
	ok(t->runtime == NULL, "base: the engine's default runtime");

	t = sbtypes_find(types, "browser");
	is_str(t->network, "bridge", "browser: own runtime, bridge network");
	is_int(t->memory, 2LL << 30, "browser: 2 GiB");
	is_int(t->pids_limit, 1024, "browser: 1024 pids");
	t = sbtypes_find(types, "bfcl");
	is_int(t->memory, 8LL << 30, "bfcl: 8 GiB");
	t = sbtypes_find(types, "mobile");
	ok(t->privileged, "mobile stays privileged");
	sbtypes_free(types);
}

static void
test_overrides(void)
{
	struct sbtypes *types = sbtypes_new("", "agentscope", "latest", 60);
	const struct sbtype *t;
	char *cause;

	ok(load(types,
	       "[{\"name\": \"hard\", \"image\": \"i\","
	       " \"cap_drop\": [\"ALL\"], \"cap_add\": [\"cap_chown\", "
	       "\"Kill\"],"
	       " \"no_new_privileges\": true, \"read_only\": true,"
	       " \"user\": \"1000:1000\", \"init\": true,"
	       " \"resource_limits\": {\"memory\": \"256m\", \"cpu\": 0.5,"
	       " \"pids\": 64}},"
	       " {\"name\": \"open\", \"image\": \"i\", \"cap_drop\": [],"
	       " \"cap_add\": [], \"no_new_privileges\": false,"
	       " \"resource_limits\": {\"memory\": 0, \"cpu\": 0, \"pids\": 0},"
	       " \"network\": \"bridge\"},"
	       " {\"name\": \"scratch\", \"image\": \"i\", \"read_only\": true,"
	       " \"tmpfs\": {\"/scratch\": \"size=1m\", \"/var/tmp\": \"\"},"
	       " \"user\": \"65534\"},"
	       " {\"name\": \"own\", \"image\": \"i\", \"inject_agent\": "
	       "false}]",
	       &cause) == 0,
	    "extension with every new key loads");
	free(cause);
	t = sbtypes_find(types, "hard");
	ok(t != NULL &&
		strv_is(
		    t->cap_add, (const char *const[]){"CHOWN", "KILL", NULL}),
	    "capability names normalised (CAP_ prefix, case)");
	ok(t != NULL && t->read_only && t->init && t->no_new_privileges &&
		strcmp(t->user, "1000:1000") == 0,
	    "read_only, init, user");
	ok(t != NULL &&
		strv_is(t->tmpfs,
		    (const char *const[]){
			SBTYPE_DEF_TMPFS_PATH, SBTYPE_DEF_TMPFS_OPTS, NULL}),
	    "a read-only root gets the size-capped /tmp");
	ok(t != NULL && t->memory == 256LL << 20 &&
		t->nano_cpus == 500000000LL && t->pids_limit == 64,
	    "limits overridden");
	is_str(t->network, "none", "agent type without network key: none");

	t = sbtypes_find(types, "open");
	ok(t != NULL && t->cap_drop[0] == NULL && t->cap_add[0] == NULL &&
		!t->no_new_privileges,
	    "defaults can be turned off");
	ok(t != NULL && t->memory == 0 && t->nano_cpus == 0 &&
		t->pids_limit == 0,
	    "0 = no limit");
	is_str(t->network, "bridge", "network asked for");

	t = sbtypes_find(types, "scratch");
	ok(t != NULL &&
		strv_is(t->tmpfs,
		    (const char *const[]){
			"/scratch", "size=1m", "/var/tmp", "", NULL}),
	    "own tmpfs replaces the default /tmp");
	is_str(t->user, "65534", "uid alone");

	t = sbtypes_find(types, "own");
	is_str(t->network, "bridge", "own runtime: bridge by default");
	sbtypes_free(types);
}

static void
test_bad_values(void)
{
	struct sbtypes *types = sbtypes_new("", "agentscope", "latest", 60);

	bad(types, "{\"name\": \"x\", \"image\": \"i\", \"cap_add\": \"ALL\"}",
	    "cap_add: expected an array");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", \"cap_add\": [\"NET ADMIN\"]}",
	    "cap_add: item 1 is not a capability name");
	bad(types, "{\"name\": \"x\", \"image\": \"i\", \"cap_drop\": [7]}",
	    "cap_drop: item 1");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", \"cap_add\": [\"CAP_\"]}",
	    "cap_add: item 1");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", \"read_only\": \"yes\"}",
	    "read_only: expected true or false");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", \"no_new_privileges\": 1}",
	    "no_new_privileges: expected true or false");
	bad(types, "{\"name\": \"x\", \"image\": \"i\", \"tmpfs\": [\"/tmp\"]}",
	    "tmpfs: expected an object");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", \"tmpfs\": {\"tmp\": \"\"}}",
	    "tmpfs: 'tmp' is not an absolute path");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", \"tmpfs\": {\"/a/../b\": "
	    "\"\"}}",
	    "tmpfs: '/a/../b'");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", \"tmpfs\": {\"/\": \"\"}}",
	    "tmpfs: '/'");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", "
	    "\"tmpfs\": {\"/workspace\": \"\"}}",
	    "tmpfs: '/workspace'");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", "
	    "\"tmpfs\": {\"/run/sandpool/x\": \"\"}}",
	    "tmpfs: '/run/sandpool/x'");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", "
	    "\"tmpfs\": {\"/t\": \"size=1m;rm\"}}",
	    "tmpfs: /t: options must be a string");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", \"tmpfs\": {\"/t\": 1}}",
	    "tmpfs: /t: options");
	bad(types, "{\"name\": \"x\", \"image\": \"i\", \"user\": \"root\"}",
	    "user: expected \"uid\" or \"uid:gid\"");
	bad(types, "{\"name\": \"x\", \"image\": \"i\", \"user\": \"1000:\"}",
	    "user: expected");
	bad(types,
	    "{\"name\": \"x\", \"image\": \"i\", \"user\": \"99999999999\"}",
	    "user: expected");
	bad(types, "{\"name\": \"x\", \"image\": \"i\", \"user\": 0}",
	    "user: expected");
	bad(types, "{\"name\": \"x\", \"image\": \"i\", \"init\": null}",
	    "init: expected true or false");
	ok(sbtypes_find(types, "x") == NULL, "no bad type was added");
	sbtypes_free(types);
}

int
main(void)
{
	char tmpl[] = "/tmp/sandpool-test-sbtype.XXXXXX";

	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	snprintf(path, sizeof path, "%s/ext.json", tmpl);
	test_builtin_defaults();
	test_overrides();
	test_bad_values();
	unlink(path);
	rmdir(tmpl);
	return tap_done();
}
