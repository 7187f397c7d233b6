/*
 * runtime: calls from the manager to the runtime inside a sandbox, over
 * the sandbox's unix socket when it has one (sandpool-agent) or its
 * published TCP port (images with their own runtime), always with the
 * sandbox's bearer token; and the readiness wait on /fastapi/healthz.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "runtime.h"
#include "sandbox.h"
#include "xmalloc.h"

/* Delay between health probes: starts small, the agent is up in ms. */
#define RT_POLL_FIRST_MS 5
#define RT_POLL_MAX_MS 200

struct rt_wait {
	struct event_base *base;
	struct hc *hc;
	struct sbx *sbx;
	struct hc_req *req;
	struct event *timer;
	struct timeval deadline;
	long delay_ms;
	char *last_error;
	rt_wait_cb cb;
	void *arg;
};

/* Calls the runtime. */
struct hc_req *
rt_call(struct hc *hc, const struct sbx *s, const char *method,
    const char *path, const char *body, size_t len, long timeout_ms,
    hc_done_cb cb, void *arg)
{
	char *url, *auth, *sess1, *sess2;
	const char *headers[6];
	struct hc_opts o;
	struct hc_req *r;

	memset(&o, 0, sizeof o);
	/*
	 * Over the unix socket the host part names the sandbox: libcurl caps
	 * connections per host name, and one name for every socket capped
	 * the calls into all sandboxes together (4 at once in all). Ten of
	 * the id's characters tell sandboxes apart and keep libcurl's
	 * per-character URL work small; a clash would only share the cap.
	 */
	if (s->sock_path != NULL)
		xasprintf(&url, "http://%.10s%s",
		    s->session_id != NULL ? s->session_id : "sandbox", path);
	else
		xasprintf(&url, "%s%s", s->url != NULL ? s->url : "", path);
	xasprintf(&auth, "Authorization: Bearer %s",
	    s->runtime_token != NULL ? s->runtime_token : "");
	xasprintf(&sess1, "x-agentrun-session-id: s%s",
	    s->container_id != NULL ? s->container_id : "");
	xasprintf(&sess2, "x-agentscope-runtime-session-id: s%s",
	    s->container_id != NULL ? s->container_id : "");
	headers[0] = "Content-Type: application/json";
	headers[1] = auth;
	headers[2] = sess1;
	headers[3] = sess2;
	headers[4] = NULL;
	o.method = method;
	o.url = url;
	o.unix_path = s->sock_path;
	o.headers = headers;
	o.body = body;
	o.body_len = len;
	o.timeout_ms = timeout_ms;
	o.connect_timeout_ms = 5000;
	r = hc_request(hc, &o, cb, arg);
	free(url);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	free(sess1);
	free(sess2);
	return r;
}

/* Ends a wait: calls back once and frees it. */
static void
rt_wait_finish(struct rt_wait *w, int ok)
{
	rt_wait_cb cb = w->cb;
	void *arg = w->arg;
	char *err = w->last_error;

	w->last_error = NULL;
	rt_wait_cancel(w);
	cb(ok, ok ? NULL : (err != NULL ? err : "timed out"), arg);
	free(err);
}

static void rt_wait_on_timer(evutil_socket_t, short, void *);

/* One probe answered. */
static void
rt_wait_on_reply(const struct hc_resp *r, void *arg)
{
	struct rt_wait *w = arg;
	struct timeval now, tv;
	long left_ms;

	w->req = NULL;
	if (r->status == 200) {
		rt_wait_finish(w, 1);
		return;
	}
	free(w->last_error);
	if (r->error != NULL)
		w->last_error = xstrdup(r->error);
	else
		xasprintf(&w->last_error, "healthz answered HTTP %ld",
		    r->status);
	evutil_gettimeofday(&now, NULL);
	left_ms = (w->deadline.tv_sec - now.tv_sec) * 1000 +
	    (w->deadline.tv_usec - now.tv_usec) / 1000;
	if (left_ms <= 0) {
		rt_wait_finish(w, 0);
		return;
	}
	if (w->delay_ms > left_ms)
		w->delay_ms = left_ms;
	tv.tv_sec = w->delay_ms / 1000;
	tv.tv_usec = (w->delay_ms % 1000) * 1000;
	evtimer_add(w->timer, &tv);
	w->delay_ms *= 2;
	if (w->delay_ms > RT_POLL_MAX_MS)
		w->delay_ms = RT_POLL_MAX_MS;
}

/* Time for the next probe. */
static void
rt_wait_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct rt_wait *w = arg;

	(void)fd;
	(void)what;
	w->req = rt_call(w->hc, w->sbx, "GET", "/fastapi/healthz", NULL, 0,
	    2000, rt_wait_on_reply, w);
}

/* Starts polling healthz until 200 or the deadline. */
struct rt_wait *
rt_wait_healthy(struct event_base *base, struct hc *hc, const struct sbx *s,
    long deadline_ms, rt_wait_cb cb, void *arg)
{
	struct rt_wait *w = xcalloc(1, sizeof *w);
	struct timeval now, tv = { 0, 0 };

	w->base = base;
	w->hc = hc;
	w->sbx = sbx_dup(s);
	w->cb = cb;
	w->arg = arg;
	w->delay_ms = RT_POLL_FIRST_MS;
	evutil_gettimeofday(&now, NULL);
	w->deadline.tv_sec = now.tv_sec + deadline_ms / 1000;
	w->deadline.tv_usec = now.tv_usec + (deadline_ms % 1000) * 1000;
	if (w->deadline.tv_usec >= 1000000) {
		w->deadline.tv_sec++;
		w->deadline.tv_usec -= 1000000;
	}
	w->timer = evtimer_new(base, rt_wait_on_timer, w);
	evtimer_add(w->timer, &tv);
	return w;
}

/* Stops a wait without calling back. */
void
rt_wait_cancel(struct rt_wait *w)
{
	if (w == NULL)
		return;
	if (w->req != NULL)
		hc_cancel(w->req);
	event_free(w->timer);
	sbx_free(w->sbx);
	free(w->last_error);
	free(w);
}
