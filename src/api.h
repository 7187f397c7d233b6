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
struct store;
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
/* The state store the cleanup route reads (borrowed). */
void api_set_store(struct api *, struct store *);
/*
 * Checks a request's bearer token (BEARER_TOKEN, spec 1.2) in constant
 * time: 0 if it may pass; else answers 401 with WWW-Authenticate: Bearer
 * and returns -1 (req is gone). For every authenticated route.
 */
int api_check_auth(struct api *, struct evhttp_request *);
/* The server is stopping: RPC routes answer 503 from now on. */
void api_stop(struct api *);
/* The http_request_cb of the server; arg is the struct api. */
void api_request(struct evhttp_request *, void *arg);

#endif
