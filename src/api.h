/*
 * api: the manager's HTTP API (spec section 1): the route table, request
 * bodies mapped onto named parameters, the bearer check, and the one
 * table that turns pool errors into HTTP statuses and bodies.
 */
#ifndef SANDPOOL_API_H
#define SANDPOOL_API_H

struct event_base;
struct evhttp_request;
struct cfg;
struct hc;
struct pool;
struct api;

/* Makes the API over cfg and the runtime client hc (both borrowed). */
struct api *api_new(struct event_base *, const struct cfg *, struct hc *);
/*
 * Drops requests still waiting (their runtime calls are cancelled, no
 * reply is sent). Free the pool first, the HTTP server after.
 */
void api_free(struct api *);
/* Serves the RPC routes from pool; until then they answer 503. */
void api_set_pool(struct api *, struct pool *);
/* The server is stopping: RPC routes answer 503 from now on. */
void api_stop(struct api *);
/* The http_request_cb of the server; arg is the struct api. */
void api_request(struct evhttp_request *, void *arg);

#endif
