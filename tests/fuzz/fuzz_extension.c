/*
 * fuzz_extension: sandbox type entries of an --extension file, every key
 * and its checks (sizes, capabilities, tmpfs, user). Property: a type that
 * loads has sane fields.
 */
#include "../../pool/sbtype.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbtypes *types;
	struct sbtype *t;
	yajl_val root, *items;
	char *cause, **p;
	size_t i, n;

	if ((root = json_parse((const char *)data, size, &cause)) == NULL) {
		free(cause);
		return 0;
	}
	types = sbtypes_new("", "agentscope", "latest", 60);
	if (YAJL_IS_ARRAY(root)) {
		items = root->u.array.values;
		n = root->u.array.len;
	} else {
		items = &root;
		n = 1;
	}
	for (i = 0; i < n; i++) {
		if ((t = sbtype_from_json(types, items[i], &cause)) == NULL) {
			free(cause);
			continue;
		}
		if (t->network == NULL || t->image == NULL ||
		    t->tmpfs == NULL || t->cap_add == NULL ||
		    t->cap_drop == NULL || t->env == NULL || t->memory < 0 ||
		    t->nano_cpus < 0 || t->pids_limit < 0 || t->shm_size < 0 ||
		    (t->read_only && t->tmpfs[0] == NULL))
			abort();
		for (p = t->tmpfs; *p != NULL; p += 2)
			if ((*p)[0] != '/' || strstr(*p, "/../") != NULL ||
			    strstr(*p, "//") != NULL ||
			    (strlen(*p) >= 3 &&
				strcmp(*p + strlen(*p) - 3, "/..") == 0) ||
			    strpbrk(p[1], ":; \n") != NULL)
				abort();
		for (p = t->env; *p != NULL; p++)
			if (strchr(*p, '=') == NULL || **p == '=')
				abort();
		sbtype_free(t);
	}
	yajl_tree_free(root);
	sbtypes_free(types);
	return 0;
}
