/*
 * proxy: /proxy/{identity}/{path} (spec 1.7), the streaming reverse proxy
 * from the manager's port to a sandbox's runtime (/fastapi/{path}): the
 * workspace file API and anything else the runtime serves.
 */
#ifndef SANDPOOL_PROXY_H
#define SANDPOOL_PROXY_H

struct cfg;
struct hc;
struct http_stream;
struct pool;
struct proxy;

/* The route's path prefix and methods, for http_params. */
#define PROXY_PREFIX "/proxy/"
#define PROXY_METHODS "GET POST PUT DELETE PATCH"

/* Makes the proxy over cfg and the client hc (both borrowed). */
struct proxy *proxy_new(const struct cfg *, struct hc *);
/*
 * Drops every request in flight: upstream calls are cancelled, no reply
 * is sent (the connections go with the HTTP server). Free the pool first,
 * the HTTP server after.
 */
void proxy_free(struct proxy *);
/* Resolves identities through pool from now on; until then 503. */
void proxy_set_pool(struct proxy *, struct pool *);
/* The server is stopping: new requests get 503. */
void proxy_stop(struct proxy *);
/* The http_stream_cb of the server; arg is the struct proxy. */
void proxy_request(struct http_stream *, void *arg);

#endif
