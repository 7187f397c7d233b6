/*
 * fuzz_docker_reply: dockerd's replies as the driver parses them (create,
 * inspect, list, info, and error messages), and the driver's checks and
 * escaping of ids and image names. The first byte picks the call and the
 * status; the rest is the body. The body is also an /events stream, cut
 * into two chunks where the first byte says.
 */
#include "../../drivers/docker.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Frees what docker_parse left for the caller. */
static void
fuzz_free(char *id, struct drv_ctr *ctrs, size_t nctrs, char **names)
{
	char **n;

	docker_ctrs_free(ctrs, nctrs);
	for (n = names; n != NULL && *n != NULL; n++)
		free(*n);
	free(names);
	free(id);
}

/* An event the stream parser delivered: it has what it promises. */
static void
fuzz_on_event(const struct drv_event *e, void *arg)
{
	size_t *n = arg;

	if (e->action == NULL || e->id == NULL)
		abort();
	(void)drv_event_attr(e, "sandpool.name");
	(*n)++;
}

/* Feeds body to the /events line splitter and parser in two chunks. */
static void
fuzz_events(const char *body, size_t len, size_t cut)
{
	struct docker_events e;
	size_t n = 0;

	memset(&e, 0, sizeof e);
	e.ev = fuzz_on_event;
	e.arg = &n;
	if (cut > len)
		cut = len;
	docker_events_on_chunk(body, cut, &e);
	docker_events_on_chunk(body + cut, len - cut, &e);
	if (e.len > DOCKER_EVENT_MAX + 1)
		abort();
	free(e.line);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum docker_kind kinds[] = {DOCKER_CREATE, DOCKER_INSPECT,
	    DOCKER_LIST, DOCKER_INFO, DOCKER_START, DOCKER_IMAGE, DOCKER_REMOVE,
	    DOCKER_PING};
	static const long statuses[] = {200, 201, 204, 304, 400, 404, 409, 500};
	struct docker d = {.sock = "/var/run/docker.sock"};
	struct drv_ctr *ctrs = NULL;
	struct drv_reply reply;
	struct hc_resp r;
	char *body, *id = NULL, **names = NULL, *msg, *esc;
	enum docker_kind kind;
	const char *bad;
	size_t i;

	if (size < 1)
		return 0;
	kind = kinds[data[0] & 7];
	memset(&r, 0, sizeof r);
	r.status = statuses[(data[0] >> 3) & 7];
	body = xmalloc(size);
	memcpy(body, data + 1, size - 1);
	body[size - 1] = '\0';
	r.body = body;
	r.len = size - 1;

	memset(&reply, 0, sizeof reply);
	if (docker_status_ok(kind, r.status)) {
		bad = docker_parse(kind, &r, &reply, &id, &ctrs, &names);
		if (bad == NULL && kind == DOCKER_LIST)
			for (i = 0; i < reply.nctrs; i++)
				if (ctrs[i].id == NULL ||
				    ctrs[i].name == NULL ||
				    ctrs[i].state == NULL ||
				    ctrs[i].labels == NULL ||
				    ctrs[i].host_port < 0 ||
				    ctrs[i].host_port > 65535)
					abort();
		fuzz_free(id, ctrs, reply.nctrs, names);
	} else {
		msg = docker_msg(&d, &r);
		(void)docker_err(kind, &r, msg);
		free(msg);
	}
	fuzz_events(body, r.len, r.len * data[0] / 255);
	if (strlen(body) == r.len) {
		if (docker_check_id(body) == NULL &&
		    (strchr(body, '/') != NULL || strcmp(body, "..") == 0))
			abort();
		if (docker_check_image(body) == NULL &&
		    strstr(body, "/../") != NULL)
			abort();
		/* What goes into a URL path: unreserved or %XX only. */
		esc = docker_escape(body, (data[0] & 0x40) != 0);
		if (strspn(esc,
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			"0123456789-._~%/:@") != strlen(esc) ||
		    (!(data[0] & 0x40) && strchr(esc, '/') != NULL))
			abort();
		free(esc);
	}
	free(body);
	return 0;
}
