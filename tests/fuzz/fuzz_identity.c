/*
 * fuzz_identity: what a client names a sandbox or a directory by: the
 * identity check every identity route applies, and the mount_dir checks
 * of create (form, then real path below a root). Properties: an accepted
 * identity is a plain name; an accepted path form has no way up; an
 * accepted mount_dir really lies below the root.
 */
#include "../../src/api.c"

#include <stdint.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *, char ***);
int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct cfg fuzz_cfg;
static char *fuzz_roots[2];
static char fuzz_root[PATH_MAX];

/* Removes the root and its entries at exit. */
static void
fuzz_cleanup(void)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof path, "%s/up", fuzz_root);
	unlink(path);
	snprintf(path, sizeof path, "%s/a/b", fuzz_root);
	rmdir(path);
	snprintf(path, sizeof path, "%s/a", fuzz_root);
	rmdir(path);
	rmdir(fuzz_root);
}

/* A root that exists: a private directory with a few entries. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char tmpl[] = "/tmp/fuzz-identity.XXXXXX", path[PATH_MAX + 32];
	char *real;

	(void)argc;
	(void)argv;
	log_init("fuzz_identity", LOG_LEVEL_CRIT);
	if (mkdtemp(tmpl) == NULL || (real = realpath(tmpl, NULL)) == NULL)
		abort();
	snprintf(fuzz_root, sizeof fuzz_root, "%s", real);
	free(real);
	snprintf(path, sizeof path, "%s/a", fuzz_root);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/a/b", fuzz_root);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/up", fuzz_root);
	if (symlink("/etc", path) != 0)
		abort();
	atexit(fuzz_cleanup);
	fuzz_roots[0] = fuzz_root;
	fuzz_cfg.mount_dir_roots = fuzz_roots;
	fuzz_cfg.run_dir = "/run/sandpool";
	fuzz_cfg.default_mount_dir = "/srv/sessions";
	return 0;
}

/* 1 if s has a "." or ".." component or an empty one. */
static int
fuzz_has_bad_component(const char *s)
{
	return strstr(s, "//") != NULL || strstr(s, "/./") != NULL ||
	    strstr(s, "/../") != NULL ||
	    (strlen(s) >= 2 && strcmp(s + strlen(s) - 2, "/.") == 0) ||
	    (strlen(s) >= 3 && strcmp(s + strlen(s) - 3, "/..") == 0) ||
	    (strlen(s) > 1 && s[strlen(s) - 1] == '/');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, *real, path[2 * PATH_MAX], shown[SBX_IDENTITY_MAX + 8];
	const char *why;
	size_t i, n;

	s = xmalloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';

	if (sbx_identity_ok(s)) {
		n = strlen(s);
		if (n == 0 || n > SBX_IDENTITY_MAX ||
		    !isalnum((unsigned char)s[0]))
			abort();
		for (i = 0; i < n; i++)
			if (!isalnum((unsigned char)s[i]) &&
			    strchr("_.-", s[i]) == NULL)
				abort();
	}
	log_show(s, SBX_IDENTITY_MAX, shown, sizeof shown);
	for (i = 0; shown[i] != '\0'; i++)
		if (iscntrl((unsigned char)shown[i]))
			abort();

	if (api_path_form(s) == NULL &&
	    (s[0] != '/' || fuzz_has_bad_component(s) ||
		strpbrk(s, ":,\n") != NULL))
		abort();
	/* The same under the root, so that real directories are reached. */
	snprintf(path, sizeof path, "%s/%s", fuzz_root, s);
	if ((real = api_mount_dir_check(&fuzz_cfg, path, &why)) != NULL) {
		if (!api_path_under(real, fuzz_root) ||
		    strcmp(real, fuzz_root) == 0)
			abort();
		free(real);
	}
	if ((real = api_mount_dir_check(&fuzz_cfg, s, &why)) != NULL) {
		if (!api_path_under(real, fuzz_root))
			abort();
		free(real);
	}
	free(s);
	return 0;
}
