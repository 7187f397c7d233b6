/*
 * fuzz_runtime_reply: what the manager makes of a sandbox runtime's reply
 * (a container may answer anything): list_tools' groups, call_tool's
 * result or isError, the error texts. The first byte picks the status
 * class and the tool_type, the rest is the body. Property: the data
 * generated for the client is valid JSON.
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
	log_init("fuzz_runtime_reply", LOG_LEVEL_CRIT);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 200, 201, 204, 404, 500, 0, 200};
	static const char *const params[] = {"{\"identity\":\"x\"}",
	    "{\"identity\":\"x\",\"tool_type\":\"generic\"}",
	    "{\"identity\":\"x\",\"tool_type\":\"fs\"}"};
	struct hc_resp r;
	struct api_ctx c;
	char *body, *text, *err, *cause;
	yajl_val tree, v;
	yajl_gen g;
	size_t len;

	if (size < 1)
		return 0;
	memset(&r, 0, sizeof r);
	r.status = statuses[data[0] & 7];
	r.timed_out = (data[0] & 8) != 0;
	r.error = (data[0] & 16) != 0 ? "Connection reset by peer" : NULL;
	body = xmalloc(size);
	memcpy(body, data + 1, size - 1);
	body[size - 1] = '\0';
	r.body = body;
	r.len = size - 1;

	memset(&c, 0, sizeof c);
	c.method = "list_tools";
	c.rt_url = "http://localhost:1";
	c.rt_path = "/fastapi/mcp/list_tools";
	c.rt_timeout = 60;
	tree = json_parse(params[(data[0] >> 5) % 3],
	    strlen(params[(data[0] >> 5) % 3]), &cause);
	c.args[0] = json_get(tree, "identity");
	c.args[1] = json_get(tree, "tool_type");

	g = json_gen_new();
	api_gen_tools(g, &c, &r);
	text = json_gen_done(g, &len);
	if ((v = json_parse(text, len, &cause)) == NULL) {
		fprintf(stderr, "list_tools data is not JSON: %s\n", cause);
		abort();
	}
	yajl_tree_free(v);
	free(text);

	g = json_gen_new();
	if (!api_rt_ok(&r)) {
		err = api_rt_error(&c, &r);
		api_gen_iserror(g, err);
		free(err);
	} else if (api_rt_object(g, &r) != 0) {
		err = api_rt_garbage(&c, &r);
		api_gen_iserror(g, err);
		free(err);
	}
	text = json_gen_done(g, &len);
	if (len > 0 && (v = json_parse(text, len, &cause)) == NULL) {
		fprintf(stderr, "call_tool data is not JSON: %s\n", cause);
		abort();
	}
	if (len > 0)
		yajl_tree_free(v);
	free(text);
	yajl_tree_free(tree);
	free(body);
	return 0;
}
