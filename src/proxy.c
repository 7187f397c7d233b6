/*
 * proxy: /proxy/{identity}/{path} (spec 1.7). Owns the contexts of the
 * proxied requests in flight: each joins one streamed inbound request
 * (http_stream) to one streamed upstream request (hc) on the sandbox's
 * runtime, over its unix socket or its published port.
 *
 * Both directions are paced so that memory stays bounded whatever the
 * size: the upstream's body is paused (HC_PAUSE) while the client's
 * output is above its high mark and resumed on drain; the request body is
 * pulled from the client only as libcurl asks for it (HC_BODY_WAIT until
 * more arrives). A client that goes away cancels the upstream call. There
 * is no upstream deadline but the connect timeout (spec: no timeout).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/queue.h>

#include <event2/http.h>

#include "auth.h"
#include "config.h"
#include "hc.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "runtime.h"
#include "sandbox.h"
#include "xmalloc.h"

/* Connect deadline of an upstream call, ms. */
#define PROXY_CONNECT_MS 10000
/* Most headers passed on in either direction. */
#define PROXY_MAX_HEADERS 128

struct proxy_ctx;

struct proxy {
	const struct cfg *cfg;
	struct hc *hc;
	struct pool *pool;
	int stopping;
	TAILQ_HEAD(, proxy_ctx) ctxs;
};

/* One proxied request. */
struct proxy_ctx {
	TAILQ_ENTRY(proxy_ctx) entry;
	struct proxy *px;
	struct http_stream *st; /* NULL once the client is gone */
	char *identity;
	char *path; /* "/fastapi/..." with the query */
	char *origin;
	int resolving; /* pool_get_info in flight */
	struct hc_req *hreq;
	int head_sent;	  /* the reply was started */
	int out_full;	  /* the client's output is full */
	int up_paused;	  /* on_data said HC_PAUSE */
	int body_waiting; /* read_body said HC_BODY_WAIT */
};

/*
 * Hop-by-hop headers (spec 1.7 step 4) and the ones whose job the two
 * HTTP stacks do themselves: framing, the client's credentials, Expect.
 */
static const char *const proxy_drop[] = {"host", "connection", "keep-alive",
    "proxy-authenticate", "proxy-authorization", "te", "trailers", "trailer",
    "transfer-encoding", "upgrade", "content-length", "authorization", "expect",
    NULL};

/* 1 if a header named name is not passed on (given Connection's list). */
static int
proxy_dropped(const char *name, const char *conn)
{
	size_t i, n = strlen(name);
	const char *p, *e;

	for (i = 0; proxy_drop[i] != NULL; i++)
		if (strcasecmp(name, proxy_drop[i]) == 0)
			return 1;
	/* Headers the Connection header names are hop-by-hop too. */
	for (p = conn; p != NULL && *p != '\0'; p = *e ? e + 1 : e) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		e = p + strcspn(p, ",");
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) == n && strncasecmp(p, name, n) == 0)
			return 1;
		e = p + strcspn(p, ",");
	}
	return 0;
}

/* Frees a context. */
static void
proxy_ctx_free(struct proxy_ctx *c)
{
	if (c->hreq != NULL)
		hc_cancel(c->hreq);
	TAILQ_REMOVE(&c->px->ctxs, c, entry);
	free(c->identity);
	free(c->path);
	free(c->origin);
	free(c);
}

/* Adds the CORS headers of a request that carried Origin. */
static size_t
proxy_cors(const struct proxy_ctx *c, struct http_header *h, size_t n)
{
	if (c->origin == NULL)
		return n;
	h[n].name = "Access-Control-Allow-Origin";
	h[n++].value = c->origin;
	h[n].name = "Access-Control-Allow-Credentials";
	h[n++].value = "true";
	h[n].name = "Vary";
	h[n++].value = "Origin";
	return n;
}

/* Replies {"detail": text} with extra headers, ending the stream. */
static void
proxy_reply_detail(struct proxy_ctx *c, int status, const char *text,
    const struct http_header *extra, size_t nextra)
{
	struct http_header h[8];
	size_t n = 0, i, len;
	char *body = json_detail(text, &len);

	for (i = 0; i < nextra && n < 4; i++)
		h[n++] = extra[i];
	n = proxy_cors(c, h, n);
	log_debug("proxy: %s: %d %s", c->identity != NULL ? c->identity : "-",
	    status, text);
	http_stream_reply_json(c->st, status, h, n, body, len);
	c->st = NULL;
	free(body);
}

/* Ends a context with {"detail": ...}; the context is freed. */
static void
proxy_fail(struct proxy_ctx *c, int status, const char *text)
{
	if (c->st != NULL)
		proxy_reply_detail(c, status, text, NULL, 0);
	proxy_ctx_free(c);
}

/* ------------------------------------------------------------------ */
/* Client events. */

/* The client went away: cancel the upstream call. */
static void
proxy_on_close(void *arg)
{
	struct proxy_ctx *c = arg;

	log_debug("proxy: %s: client went away", c->identity);
	c->st = NULL;
	if (c->resolving)
		return; /* freed when the pool answers */
	proxy_ctx_free(c);
}

/* More request body arrived: let libcurl ask for it again. */
static void
proxy_on_body(void *arg)
{
	struct proxy_ctx *c = arg;

	if (c->body_waiting && c->hreq != NULL) {
		c->body_waiting = 0;
		hc_resume(c->hreq);
	}
}

/* The client's output drained: let the upstream body flow again. */
static void
proxy_on_drain(void *arg)
{
	struct proxy_ctx *c = arg;

	c->out_full = 0;
	if (c->up_paused && c->hreq != NULL) {
		c->up_paused = 0;
		hc_resume(c->hreq);
	}
}

/* ------------------------------------------------------------------ */
/* Upstream events (from inside libcurl: no freeing here). */

/* The upstream's head: start the client's reply with it. */
static void
proxy_on_head(const struct hc_head *hd, void *arg)
{
	struct proxy_ctx *c = arg;
	struct http_header h[PROXY_MAX_HEADERS + 3];
	const char *conn = NULL, *cl = NULL;
	long long length = -1;
	size_t i, n = 0;
	char *end;

	if (c->st == NULL)
		return;
	for (i = 0; i < hd->nheaders; i++) {
		if (strcasecmp(hd->headers[i].name, "Connection") == 0)
			conn = hd->headers[i].value;
		if (strcasecmp(hd->headers[i].name, "Content-Length") == 0)
			cl = hd->headers[i].value;
	}
	if (cl != NULL && isdigit((unsigned char)*cl)) {
		length = strtoll(cl, &end, 10);
		if (*end != '\0' || length < 0)
			length = -1;
	}
	for (i = 0; i < hd->nheaders && n < PROXY_MAX_HEADERS; i++) {
		if (proxy_dropped(hd->headers[i].name, conn))
			continue;
		/* The runtime's CORS headers give way to ours. */
		if (c->origin != NULL &&
		    strncasecmp(hd->headers[i].name, "Access-Control-", 15) ==
			0)
			continue;
		h[n].name = hd->headers[i].name;
		h[n++].value = hd->headers[i].value;
	}
	n = proxy_cors(c, h, n);
	http_stream_reply_start(c->st, (int)hd->status, h, n, length);
	c->head_sent = 1;
}

/* A piece of the upstream's body: pass it on, or pause when full. */
static int
proxy_on_data(const char *data, size_t len, void *arg)
{
	struct proxy_ctx *c = arg;

	if (c->st == NULL)
		return 0;
	if (c->out_full) {
		c->up_paused = 1;
		return HC_PAUSE;
	}
	if (http_stream_reply_data(c->st, data, len))
		c->out_full = 1;
	return 0;
}

/* libcurl wants request body: give what the client sent so far. */
static ssize_t
proxy_read_body(char *buf, size_t max, void *arg)
{
	struct proxy_ctx *c = arg;
	ssize_t n;

	if (c->st == NULL)
		return HC_BODY_ABORT;
	n = http_stream_read(c->st, buf, max);
	if (n == HTTP_STREAM_WAIT) {
		c->body_waiting = 1;
		return HC_BODY_WAIT;
	}
	if (n == HTTP_STREAM_BAD)
		return HC_BODY_ABORT;
	return n;
}

/* The upstream call ended. */
static void
proxy_on_done(const struct hc_resp *r, void *arg)
{
	struct proxy_ctx *c = arg;
	char *text;

	c->hreq = NULL;
	if (c->st == NULL) {
		proxy_ctx_free(c);
		return;
	}
	if (!c->head_sent) {
		xasprintf(&text, "proxy upstream error: %s",
		    r->error != NULL ? r->error : "no response");
		log_info("proxy: %s: %s", c->identity, text);
		proxy_fail(c, 502, text);
		free(text);
		return;
	}
	if (r->error != NULL) {
		log_info("proxy: %s: upstream failed mid-body: %s", c->identity,
		    r->error);
		http_stream_reply_abort(c->st);
	} else
		http_stream_reply_end(c->st);
	c->st = NULL;
	proxy_ctx_free(c);
}

/* ------------------------------------------------------------------ */
/* The request. */

/* Starts the upstream call to the resolved record. */
static void
proxy_start(struct proxy_ctx *c, const struct sbx *rec)
{
	const char *hv[PROXY_MAX_HEADERS + 2];
	const struct http_header *in;
	const char *method = http_stream_method(c->st), *conn;
	char *lines[PROXY_MAX_HEADERS], *auth, *url;
	long long size = http_stream_body_size(c->st);
	size_t n, i, k = 0, nl = 0;
	struct hc_opts o;

	if (rec->sock_path != NULL)
		url = rt_url(rec, c->path);
	else if (rec->url != NULL && *rec->url != '\0')
		xasprintf(&url, "%s%s", rec->url, c->path);
	else {
		proxy_fail(c, 404, "runtime url not found");
		return;
	}
	in = http_stream_headers(c->st, &n);
	conn = http_stream_header(c->st, "Connection");
	for (i = 0; i < n && nl < PROXY_MAX_HEADERS; i++) {
		if (proxy_dropped(in[i].name, conn))
			continue;
		xasprintf(&lines[nl], "%s: %s", in[i].name, in[i].value);
		hv[k++] = lines[nl++];
	}
	/* Exactly one Authorization upstream: the sandbox's own token. */
	xasprintf(&auth, "Authorization: Bearer %s",
	    rec->runtime_token != NULL ? rec->runtime_token : "");
	hv[k++] = auth;
	hv[k] = NULL;

	memset(&o, 0, sizeof o);
	o.method = method;
	o.url = url;
	o.unix_path = rec->sock_path;
	o.headers = hv;
	o.connect_timeout_ms = PROXY_CONNECT_MS;
	o.on_head = proxy_on_head;
	o.on_data = proxy_on_data;
	o.stream_arg = c;
	if (size != 0 || strcmp(method, "POST") == 0 ||
	    strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0) {
		o.read_body = proxy_read_body;
		o.body_size = size;
	}
	http_stream_set_cbs(c->st,
	    &(struct http_stream_cbs){
		proxy_on_body, proxy_on_drain, proxy_on_close},
	    c);
	c->hreq = hc_request(c->px->hc, &o, proxy_on_done, c);
	for (i = 0; i < nl; i++)
		free(lines[i]);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	free(url);
}

/* The identity was looked up. */
static void
proxy_on_info(const struct pool_reply *r, void *arg)
{
	struct proxy_ctx *c = arg;
	char *text;

	c->resolving = 0;
	if (c->st == NULL) {
		proxy_ctx_free(c);
		return;
	}
	if (r->err == POOL_EUNAVAIL || r->err == POOL_ESHUTDOWN) {
		proxy_fail(c, 503,
		    r->cause != NULL ? r->cause : "service unavailable");
		return;
	}
	if (r->err != POOL_OK || r->rec == NULL) {
		/* Spec 1.7 step 2: any failure here is a 404. */
		xasprintf(&text, "sandbox not found: %s", c->identity);
		proxy_fail(c, 404, text);
		free(text);
		return;
	}
	proxy_start(c, r->rec);
}

/*
 * Splits "/proxy/<identity>/<path>[?query]" into the identity (decoded)
 * and "/fastapi/<path>[?query]" (as sent). -1 if it does not match the
 * route.
 */
static int
proxy_split(const char *target, char **identity, char **path)
{
	const char *id = target + strlen(PROXY_PREFIX), *slash;
	char *raw;

	slash = id + strcspn(id, "/?");
	if (slash == id || *slash != '/')
		return -1;
	raw = xstrndup(id, (size_t)(slash - id));
	*identity = evhttp_uridecode(raw, 0, NULL);
	free(raw);
	if (*identity == NULL || **identity == '\0' ||
	    strchr(*identity, '/') != NULL) {
		free(*identity);
		return -1;
	}
	xasprintf(path, "/fastapi%s", slash);
	return 0;
}

/* A /proxy/ request's head arrived and its connection is ours. */
void
proxy_request(struct http_stream *st, void *arg)
{
	struct proxy *px = arg;
	struct proxy_ctx *c;
	struct http_header www = {"WWW-Authenticate", "Bearer"};
	char shown[SBX_IDENTITY_MAX + 8], *text;
	const char *origin;
	enum auth_result ar;

	c = xcalloc(1, sizeof *c);
	c->px = px;
	c->st = st;
	if ((origin = http_stream_header(st, "Origin")) != NULL)
		c->origin = xstrdup(origin);
	TAILQ_INSERT_TAIL(&px->ctxs, c, entry);
	http_stream_set_cbs(
	    st, &(struct http_stream_cbs){NULL, NULL, proxy_on_close}, c);
	ar = auth_check(
	    px->cfg->bearer_token, http_stream_header(st, "Authorization"));
	if (ar != AUTH_OK) {
		proxy_reply_detail(c, 401, auth_detail(ar), &www, 1);
		proxy_ctx_free(c);
		return;
	}
	if (proxy_split(http_stream_target(st), &c->identity, &c->path) != 0) {
		proxy_fail(c, 404, "Not Found");
		return;
	}
	if (!sbx_identity_ok(c->identity)) {
		/* No sandbox can have it: unknown, without a lookup. */
		xasprintf(&text, "sandbox not found: %s",
		    log_show(
			c->identity, SBX_IDENTITY_MAX, shown, sizeof shown));
		free(c->identity);
		c->identity = NULL;
		proxy_fail(c, 404, text);
		free(text);
		return;
	}
	if (px->stopping || px->pool == NULL) {
		proxy_fail(c, 503,
		    px->stopping ? "the server is shutting down"
				 : "the server is starting");
		return;
	}
	/* The path only: a query may carry a token. */
	log_debug("proxy: %s: %s %.*s", c->identity, http_stream_method(st),
	    (int)strcspn(c->path, "?"), c->path);
	c->resolving = 1;
	pool_get_info(px->pool, c->identity, proxy_on_info, c);
}

/* ------------------------------------------------------------------ */
/* Lifetime. */

/* Makes the proxy. */
struct proxy *
proxy_new(const struct cfg *cfg, struct hc *hc)
{
	struct proxy *px = xcalloc(1, sizeof *px);

	px->cfg = cfg;
	px->hc = hc;
	TAILQ_INIT(&px->ctxs);
	return px;
}

/* Drops the requests in flight without replies. */
void
proxy_free(struct proxy *px)
{
	static const struct http_stream_cbs none;
	struct proxy_ctx *c;

	if (px == NULL)
		return;
	while ((c = TAILQ_FIRST(&px->ctxs)) != NULL) {
		if (c->st != NULL)
			http_stream_set_cbs(c->st, &none, NULL);
		proxy_ctx_free(c);
	}
	free(px);
}

/* Starts resolving identities through pool. */
void
proxy_set_pool(struct proxy *px, struct pool *pool)
{
	px->pool = pool;
}

/* Refuses new requests from now on. */
void
proxy_stop(struct proxy *px)
{
	px->stopping = 1;
}
