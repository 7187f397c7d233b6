/*
 * fuzz_request_json: an RPC request body mapped onto a route's parameters
 * (api_bind, the pure heart of api_parse), then what create and the
 * runtime calls do with the bound values: environment, meta as JSON text,
 * identity checks and echoes, tool arguments. The first byte picks the
 * route. Properties: generated JSON parses again; a bound parameter has a
 * type the route accepts.
 */
#include "../../src/api.c"

#include <stdint.h>

int LLVMFuzzerInitialize(int *, char ***);
int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init("fuzz_request_json", LOG_LEVEL_CRIT);
	return 0;
}

/* Generated JSON text must parse. */
static void
fuzz_reparse(const char *text, size_t len)
{
	char *cause;
	yajl_val v;

	if (text == NULL)
		return;
	if ((v = json_parse(text, len, &cause)) == NULL) {
		fprintf(stderr, "generated JSON does not parse: %s: %.200s\n",
		    cause, text);
		abort();
	}
	yajl_tree_free(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t nroutes = sizeof api_routes / sizeof api_routes[0];
	char shown[SBX_IDENTITY_MAX + 8], *cause = NULL, *text, **e;
	const struct api_route *rt;
	struct api_ctx c;
	yajl_val tree;
	yajl_gen g;
	size_t i, len;

	if (size < 1)
		return 0;
	rt = &api_routes[data[0] % nroutes];
	if ((tree = json_parse((const char *)data + 1, size - 1, &cause)) ==
	    NULL) {
		free(cause);
		return 0;
	}
	memset(&c, 0, sizeof c);
	c.route = rt;
	c.method = (char *)rt->name;
	c.tree = tree;
	if (api_bind(rt, tree, c.args, &cause) != 0) {
		free(cause);
		yajl_tree_free(tree);
		return 0;
	}
	for (i = 0; i < api_nparams(rt); i++)
		if (c.args[i] != NULL &&
		    (api_type(c.args[i]) & rt->params[i].types) == 0)
			abort();
	if (rt->params[0].name != NULL &&
	    strcmp(rt->params[0].name, "identity") == 0 &&
	    api_str(&c, 0) != NULL) {
		if (sbx_identity_ok(api_str(&c, 0)) &&
		    strpbrk(api_str(&c, 0), "/\\ \t\r\n") != NULL)
			abort();
		log_show(api_str(&c, 0), SBX_IDENTITY_MAX, shown, sizeof shown);
		if (strlen(shown) > SBX_IDENTITY_MAX + 3)
			abort();
	}
	if (rt->start == api_create) {
		if (api_environment(&c, c.args[3], &cause) < 0)
			free(cause);
		for (e = c.env; e != NULL && *e != NULL; e++)
			if (strchr(*e, '=') == NULL || **e == '=')
				abort();
		text = api_json_text(c.args[4]);
		fuzz_reparse(text, text != NULL ? strlen(text) : 0);
		free(text);
	}
	if (rt->result == API_R_CALL) {
		g = json_gen_new();
		api_gen_arguments(g, c.args[2]);
		text = json_gen_done(g, &len);
		fuzz_reparse(text, len);
		free(text);
	}
	for (e = c.env; e != NULL && *e != NULL; e++)
		free(*e);
	free(c.env);
	yajl_tree_free(tree);
	return 0;
}
