/*
 * Unit tests for pool/sandbox.c: the record's JSON form, meta handling,
 * ids and tokens.
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "sandbox.h"
#include "tap.h"
#include "xmalloc.h"

int
main(void)
{
	char id[SBX_ID_LEN + 1], id2[SBX_ID_LEN + 1], tok[SBX_TOKEN_LEN + 1];
	struct sbx *s, *t;
	char *j, *cause = NULL;
	yajl_val v, m;
	size_t len;

	sbx_random_id(id);
	sbx_random_id(id2);
	is_int(strlen(id), SBX_ID_LEN, "id has 25 characters");
	is_int(strspn(id, "0123456789abcdefghijklmnopqrstuvwxyz"), SBX_ID_LEN,
	    "id is [0-9a-z]");
	ok(strcmp(id, id2) != 0, "two ids differ");
	sbx_random_token(tok);
	is_int(strspn(tok, "0123456789abcdef"), SBX_TOKEN_LEN,
	    "token is 32 lowercase hex");

	s = sbx_new();
	s->session_id = xstrdup(id);
	xasprintf(&s->container_name, "runtime_sandbox_container_%s", id);
	s->container_id = xstrdup("abc");
	s->url = xstrdup("http://localhost:49152");
	s->port = 49152;
	s->runtime_token = xstrdup(tok);
	s->version = xstrdup("agentscope/runtime-sandbox-base:latest");
	s->sandbox_type = xstrdup("base");
	s->timeout = 60;
	s->updated_at = 1763768400.12;
	s->sock_path = xstrdup("/run/sandpool/x/agent.sock");
	sbx_set_meta(s, "{\"session_ctx_id\":\"sess1\",\"k\":[1]}");
	is_str(s->session_ctx_id, "sess1", "meta.session_ctx_id is mirrored");
	s->state = SBX_RUNNING;

	j = sbx_to_json(s, 0, &len);
	v = json_parse(j, len, &cause);
	ok(v != NULL, "record JSON parses");
	is_str(json_get_str(v, "state"), "running", "state is a wire name");
	is_str(json_get_str(v, "url"), "http://localhost:49152", "url");
	m = json_get(v, "ports");
	ok(m != NULL && YAJL_IS_ARRAY(m) && m->u.array.len == 1 &&
		YAJL_GET_INTEGER(m->u.array.values[0]) == 49152,
	    "ports [49152]");
	m = json_get(v, "meta");
	is_str(json_get_str(m, "session_ctx_id"), "sess1", "meta kept");
	ok(json_get(v, "mount_dir") != NULL &&
		YAJL_IS_NULL(json_get(v, "mount_dir")),
	    "mount_dir null");
	ok(json_get(v, "_sandpool") == NULL, "internal fields not on the wire");
	ok(json_get(v, "last_active_at") != NULL &&
		YAJL_IS_NULL(json_get(v, "last_active_at")),
	    "unset time is null");
	ok(strstr(j, "\"updated_at\":1763768400.12") != NULL,
	    "times print without float noise");
	ok(strstr(j, "\"session_id\"") == j + 1, "session_id comes first");
	yajl_tree_free(v);
	free(j);

	j = sbx_to_json(s, 1, &len);
	t = sbx_from_json(j, len, &cause);
	ok(t != NULL, "internal JSON parses back");
	is_str(t->sock_path, s->sock_path, "sock_path round-trips");
	is_str(t->container_name, s->container_name, "name round-trips");
	is_int(t->port, 49152, "port round-trips");
	is_int(t->state, SBX_RUNNING, "state round-trips");
	is_str(t->session_ctx_id, "sess1", "session round-trips");
	ok(t->updated_at > 1763768400.1 && t->updated_at < 1763768400.2,
	    "updated_at round-trips");
	free(j);
	sbx_free(t);

	j = "{\"container_name\":\"n\",\"meta\":{\"session_ctx_id\":\"z\"}}";
	t = sbx_from_json(j, strlen(j), &cause);
	ok(t != NULL && t->state == SBX_RUNNING, "missing state is running");
	is_str(t != NULL ? t->session_ctx_id : NULL, "z",
	    "missing session_ctx_id comes from meta");
	ok(t != NULL && t->updated_at > 0, "missing updated_at is now");
	sbx_free(t);

	t = sbx_from_json("[1]", 3, &cause);
	ok(t == NULL && cause != NULL, "a non-object record is refused");
	free(cause);

	sbx_clear_session(s);
	ok(s->session_ctx_id == NULL, "clear_session drops the session");
	is_str(s->meta, "{\"k\":[1]}", "clear_session keeps other meta keys");

	sbx_set_meta(s, "[1,2]");
	is_str(s->meta, "{}", "non-object meta becomes {}");

	t = sbx_dup(s);
	ok(t != s && t->container_name != s->container_name &&
		strcmp(t->container_name, s->container_name) == 0,
	    "dup is deep");
	sbx_free(t);
	sbx_free(s);
	sbx_free(NULL);

	is_int(sbx_state_parse("replaced"), SBX_REPLACED, "state parse");
	is_int(sbx_state_parse("bogus"), -1, "unknown state");

	/* A number longer than the reader's buffer is read whole. */
	{
		char big[200];

		snprintf(big, sizeof big,
		    "{\"container_name\":\"n\",\"last_active_at\":1%070de-68,"
		    "\"timeout\":7}",
		    0);
		t = sbx_from_json(big, strlen(big), &cause);
		ok(t != NULL && t->last_active_at == 100 && t->timeout == 7,
		    "a 75-character number is read whole (1e70e-68 = 100)");
		sbx_free(t);
	}

	/* Found by fuzz_sandbox_json: an infinite time was written as inf. */
	j = "{\"container_name\":\"n\",\"last_active_at\":1e999,"
	    "\"recycled_at\":1e300,\"released_at\":-5}";
	t = sbx_from_json(j, strlen(j), &cause);
	ok(t != NULL && t->last_active_at == 0 && t->recycled_at == 0 &&
		t->released_at == 0,
	    "times that are no unix time are null");
	if (t != NULL) {
		char *k = sbx_to_json(t, 1, NULL);

		ok(strstr(k, "\"last_active_at\":null") != NULL &&
			strstr(k, "inf") == NULL,
		    "and are written back as null");
		free(k);
	}
	sbx_free(t);

	ok(sbx_identity_ok("runtime_sandbox_container_abc") &&
		sbx_identity_ok("a") && sbx_identity_ok("0-x.y_z"),
	    "plain identities pass");
	ok(!sbx_identity_ok("") && !sbx_identity_ok("../x") &&
		!sbx_identity_ok(".x") && !sbx_identity_ok("-x") &&
		!sbx_identity_ok("a/b") && !sbx_identity_ok("a b") &&
		!sbx_identity_ok("%2e%2e") && !sbx_identity_ok(NULL),
	    "identities with a way out are refused");
	{
		char longid[SBX_IDENTITY_MAX + 2];

		memset(longid, 'a', sizeof longid - 1);
		longid[sizeof longid - 1] = '\0';
		ok(!sbx_identity_ok(longid),
		    "an identity of %d bytes is refused", SBX_IDENTITY_MAX + 1);
		longid[SBX_IDENTITY_MAX] = '\0';
		ok(sbx_identity_ok(longid), "one of %d bytes passes",
		    SBX_IDENTITY_MAX);
	}
	return tap_done();
}
