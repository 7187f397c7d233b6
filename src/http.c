/*
 * http: owns the evhttp server and its listening socket. evhttp does the
 * protocol work (keep-alive, Content-Length and chunked request bodies,
 * size limits, idle timeouts); this module configures it and funnels
 * every request into one callback and every reply through one helper,
 * which also keeps the Date header text of the current second.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "http.h"
#include "xmalloc.h"

struct http {
	struct evhttp *evh;
	struct evhttp_bound_socket *sock;
};

/*
 * The Date header of replies, made once a second rather than by evhttp
 * for every reply (formatting it was a tenth of the cost of a /health
 * reply). One server per process, so one cache.
 */
static struct {
	time_t when;
	char text[64]; /* "Sun, 06 Nov 1994 08:49:37 GMT" */
} http_date;

/* The RFC 7231 IMF-fixdate of now, recomputed when the second changes. */
static const char *
http_date_now(void)
{
	static const char days[7][4] = {
	    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;

	if (now == http_date.when && http_date.text[0] != '\0')
		return http_date.text;
	if (gmtime_r(&now, &tm) == NULL)
		return NULL;
	snprintf(http_date.text, sizeof http_date.text,
	    "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
	    tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	http_date.when = now;
	return http_date.text;
}

/* Binds the listener and configures evhttp. */
struct http *
http_new(struct event_base *base, const struct http_params *p,
    http_request_cb cb, void *arg, char **cause)
{
	struct http *h;
	int saved;

	*cause = NULL;
	h = xcalloc(1, sizeof *h);
	if ((h->evh = evhttp_new(base)) == NULL) {
		free(h);
		*cause = xstrdup("cannot make an HTTP server");
		return NULL;
	}
	errno = 0;
	h->sock = evhttp_bind_socket_with_handle(
	    h->evh, p->host, (unsigned short)p->port);
	if (h->sock == NULL) {
		saved = errno;
		xasprintf(cause, "cannot listen on %s%s%s:%d: %s",
		    strchr(p->host, ':') != NULL ? "[" : "", p->host,
		    strchr(p->host, ':') != NULL ? "]" : "", p->port,
		    saved != 0 ? strerror(saved) : "address not usable");
		evhttp_free(h->evh);
		free(h);
		return NULL;
	}
	evhttp_set_max_body_size(h->evh, (ev_ssize_t)p->max_body);
	evhttp_set_max_headers_size(h->evh, (ev_ssize_t)p->max_headers);
	evhttp_set_timeout(h->evh, p->timeout);
	evhttp_set_allowed_methods(h->evh,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
		EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
		EVHTTP_REQ_PATCH);
	evhttp_set_gencb(h->evh, cb, arg);
	return h;
}

/* Closes the listening socket. */
void
http_stop_accepting(struct http *h)
{
	if (h == NULL || h->sock == NULL)
		return;
	evhttp_del_accept_socket(h->evh, h->sock);
	h->sock = NULL;
}

/* Frees the server and every connection it still has. */
void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	evhttp_free(h->evh);
	free(h);
}

/* Sends the one reply of a request. */
void
http_reply_json(
    struct evhttp_request *req, int status, const char *body, size_t len)
{
	struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
	const char *date = http_date_now();

	evhttp_remove_header(hdrs, "Content-Type");
	evhttp_add_header(hdrs, "Content-Type", "application/json");
	/* evhttp adds its own Date only when there is none. */
	if (date != NULL)
		evhttp_add_header(hdrs, "Date", date);
	evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	evhttp_send_reply(req, status, http_reason(status), NULL);
}

/* Makes the request body contiguous and returns it. */
const char *
http_body(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *p;

	*len = evbuffer_get_length(in);
	if (*len == 0)
		return "";
	p = (const char *)evbuffer_pullup(in, -1);
	return p != NULL ? p : "";
}

/* Reason phrases of the statuses this server sends. */
const char *
http_reason(int status)
{
	/* clang-format off */
	static const struct {
		int status;
		const char *reason;
	} reasons[] = {
		{ 200, "OK" },
		{ 201, "Created" },
		{ 204, "No Content" },
		{ 400, "Bad Request" },
		{ 401, "Unauthorized" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" },
		{ 408, "Request Timeout" },
		{ 409, "Conflict" },
		{ 413, "Payload Too Large" },
		{ 422, "Unprocessable Entity" },
		{ 500, "Internal Server Error" },
		{ 502, "Bad Gateway" },
		{ 503, "Service Unavailable" },
		{ 504, "Gateway Timeout" },
	};
	/* clang-format on */
	size_t i;

	for (i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return status >= 500 ? "Server Error"
	    : status >= 400  ? "Client Error"
			     : "OK";
}
