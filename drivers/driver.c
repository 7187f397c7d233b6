/*
 * driver: picks a container engine by the endpoint's scheme and dispatches
 * every call through its struct drv_ops. Owns struct drv and the deferred
 * failures (drv_fail_later) that are still to be delivered.
 */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "driver_impl.h"
#include "xmalloc.h"

/* A failure to deliver from the loop. */
struct drv_later {
	TAILQ_ENTRY(drv_later) entry;
	struct drv *drv;
	struct event *ev;
	enum drv_err err;
	char *msg;
	drv_cb cb;
	void *arg;
};

/* clang-format off */
static const struct {
	const char *scheme;
	const struct drv_ops *ops;
} drv_engines[] = {
	{ "unix://",	&docker_ops },
};

static const char *const drv_errors[] = {
	[DRV_OK] =		"success",
	[DRV_ENOTFOUND] =	"no such container",
	[DRV_ENOIMAGE] =	"no such image",
	[DRV_ECONFLICT] =	"conflict",
	[DRV_EPORT] =		"host port already allocated",
	[DRV_EINVAL] =		"invalid request",
	[DRV_EENGINE] =		"container engine error",
	[DRV_ETIMEOUT] =	"container engine timed out",
};
/* clang-format on */

/* Opens the driver for the endpoint's scheme. */
struct drv *
drv_open(struct event_base *base, struct hc *hc, const struct drv_params *p,
    char **cause)
{
	struct drv *drv;
	size_t i, n;

	*cause = NULL;
	if (p->endpoint == NULL) {
		*cause = xstrdup("no container engine endpoint");
		return NULL;
	}
	for (i = 0; i < sizeof drv_engines / sizeof drv_engines[0]; i++) {
		n = strlen(drv_engines[i].scheme);
		if (strncmp(p->endpoint, drv_engines[i].scheme, n) != 0)
			continue;
		drv = xcalloc(1, sizeof *drv);
		drv->ops = drv_engines[i].ops;
		drv->base = base;
		drv->hc = hc;
		drv->timeout_ms = p->timeout_ms;
		TAILQ_INIT(&drv->later);
		if (drv->ops->open(drv, p->endpoint + n, cause) == -1) {
			free(drv);
			return NULL;
		}
		return drv;
	}
	xasprintf(
	    cause, "unsupported container engine endpoint: %s", p->endpoint);
	return NULL;
}

/* Frees a deferred failure. */
static void
drv_later_free(struct drv_later *l)
{
	event_free(l->ev);
	free(l->msg);
	free(l);
}

/* Drops pending calls without callbacks and frees the driver. */
void
drv_close(struct drv *drv)
{
	struct drv_later *l;

	if (drv == NULL)
		return;
	while ((l = TAILQ_FIRST(&drv->later)) != NULL) {
		TAILQ_REMOVE(&drv->later, l, entry);
		drv_later_free(l);
	}
	drv->ops->close(drv);
	free(drv);
}

/* The engine's name. */
const char *
drv_name(const struct drv *drv)
{
	return drv->ops->name;
}

/* Delivers a deferred failure; the callback may close the driver. */
static void
drv_on_later(evutil_socket_t fd, short what, void *arg)
{
	struct drv_later *l = arg;
	struct drv_reply reply;

	TAILQ_REMOVE(&l->drv->later, l, entry);
	memset(&reply, 0, sizeof reply);
	reply.err = l->err;
	reply.msg = l->msg;
	l->cb(&reply, l->arg);
	drv_later_free(l);
}

/* Calls cb with a failure from a zero-delay event. */
void
drv_fail_later(
    struct drv *drv, drv_cb cb, void *arg, enum drv_err err, const char *msg)
{
	struct drv_later *l;
	static const struct timeval now = {0, 0};

	l = xcalloc(1, sizeof *l);
	l->drv = drv;
	l->err = err;
	l->msg = xstrdup0(msg);
	l->cb = cb;
	l->arg = arg;
	l->ev = evtimer_new(drv->base, drv_on_later, l);
	TAILQ_INSERT_TAIL(&drv->later, l, entry);
	evtimer_add(l->ev, &now);
}

/* Checks the engine is reachable. */
void
drv_ping(struct drv *drv, drv_cb cb, void *arg)
{
	drv->ops->ping(drv, cb, arg);
}

/* Creates a container (not started). */
void
drv_create(struct drv *drv, const struct drv_spec *spec, drv_cb cb, void *arg)
{
	drv->ops->create(drv, spec, cb, arg);
}

/* Starts a container. */
void
drv_start(struct drv *drv, const char *id, drv_cb cb, void *arg)
{
	drv->ops->start(drv, id, cb, arg);
}

/* Inspects one container. */
void
drv_inspect(struct drv *drv, const char *id, drv_cb cb, void *arg)
{
	drv->ops->inspect(drv, id, cb, arg);
}

/* Stops a container, killing it after timeout_s. */
void
drv_stop(struct drv *drv, const char *id, int timeout_s, drv_cb cb, void *arg)
{
	drv->ops->stop(drv, id, timeout_s, cb, arg);
}

/* Removes a container with force and its anonymous volumes. */
void
drv_remove(struct drv *drv, const char *id, drv_cb cb, void *arg)
{
	drv->ops->remove(drv, id, cb, arg);
}

/* Lists containers carrying every label filter. */
void
drv_list(
    struct drv *drv, const char *const *label_filters, drv_cb cb, void *arg)
{
	drv->ops->list(drv, label_filters, cb, arg);
}

/* Checks an image exists. */
void
drv_image_exists(struct drv *drv, const char *image, drv_cb cb, void *arg)
{
	drv->ops->image_exists(drv, image, cb, arg);
}

/* Lists the engine's OCI runtimes. */
void
drv_runtimes(struct drv *drv, drv_cb cb, void *arg)
{
	drv->ops->runtimes(drv, cb, arg);
}

/* Streams container events. */
struct drv_events *
drv_events(struct drv *drv, const char *const *label_filters,
    const char *const *actions, long long since_ns, drv_event_cb ev,
    drv_events_end_cb end, void *arg)
{
	return drv->ops->events(
	    drv, label_filters, actions, since_ns, ev, end, arg);
}

/* Stops an event stream (no more callbacks). */
void
drv_events_cancel(struct drv_events *e)
{
	if (e != NULL)
		e->drv->ops->events_cancel(e);
}

/* Looks an attribute up in an event's key, value list. */
const char *
drv_event_attr(const struct drv_event *e, const char *key)
{
	char *const *a;

	for (a = e->attrs; a != NULL && a[0] != NULL && a[1] != NULL; a += 2)
		if (strcmp(a[0], key) == 0)
			return a[1];
	return NULL;
}

/* Looks a label up in a container's key, value list. */
const char *
drv_ctr_label(const struct drv_ctr *ctr, const char *key)
{
	char **l;

	if (ctr == NULL || ctr->labels == NULL)
		return NULL;
	for (l = ctr->labels; l[0] != NULL && l[1] != NULL; l += 2)
		if (strcmp(l[0], key) == 0)
			return l[1];
	return NULL;
}

/* Short English text for an error code. */
const char *
drv_strerror(enum drv_err err)
{
	if ((unsigned)err >= sizeof drv_errors / sizeof drv_errors[0] ||
	    drv_errors[err] == NULL)
		return "unknown driver error";
	return drv_errors[err];
}
