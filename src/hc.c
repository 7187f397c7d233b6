/*
 * hc: the HTTP client glue. Owns one libcurl multi handle, the libevent
 * events that watch its sockets and its timer, and every request in
 * flight (easy handle, header list, response buffer). Requests complete
 * from the event loop only (curl's hiperfifo pattern).
 *
 * Re-entrancy: done callbacks run only from the dispatch functions after
 * curl_multi_socket_action() has returned, never from inside a libcurl
 * callback, so a done callback may start, cancel or free anything,
 * including the client itself: hc->busy counts the dispatch frames on the
 * stack and hc_free() inside one only marks the client dying; the
 * outermost frame frees it.
 *
 * Streaming requests (on_head, on_data, read_body) call their user back
 * from inside libcurl's header, write and read callbacks. libcurl forbids
 * removing a handle from there, so hc_cancel() inside one (hc->in_curl)
 * turns the request into a zombie: it is unlinked at once and never calls
 * back; its own next libcurl callback aborts the transfer, and a
 * zero-delay event removes and frees it from the loop. hc_resume() is
 * always deferred to a zero-delay event for the same reason.
 */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "hc.h"
#include "xmalloc.h"

/* Default response cap when hc_opts.max_response is 0. */
#define HC_MAX_RESPONSE (64UL * 1024 * 1024)
/* Largest piece a stream buffers between two deliveries. */
#define HC_STREAM_MAX (1024UL * 1024)
/* Idle connections the multi handle keeps for reuse (sandboxes + engine). */
#define HC_MAX_IDLE_CONNS 256L
/* Largest header block of a streamed response. */
#define HC_MAX_HEAD (64 * 1024)
/* Most headers of a streamed response. */
#define HC_MAX_HEADERS 256

/* What a streaming callback paused (hc_req.paused). */
#define HC_PAUSED_RECV 0x01
#define HC_PAUSED_SEND 0x02

/* What a request is doing. */
enum hc_state {
	HC_RUNNING, /* added to the multi handle */
	HC_FAILING, /* not added; the error is delivered by hc_on_defer */
	HC_CALLING, /* its callback is on the stack */
	HC_ZOMBIE   /* cancelled inside libcurl; freed by hc_on_reap */
};

struct hc_req {
	TAILQ_ENTRY(hc_req) entry;
	struct hc *hc;
	enum hc_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	struct event *defer; /* zero-delay event for HC_FAILING */
	char *fail;	     /* error text for HC_FAILING */
	char *buf;	     /* response body, NUL-terminated */
	size_t len, cap, max;
	int overflow; /* body exceeded max */
	char errbuf[CURL_ERROR_SIZE];
	hc_done_cb cb;
	void *arg;
	/* Streaming. */
	hc_head_cb on_head;
	hc_data_cb on_data;
	hc_body_cb read_body;
	void *sarg;
	char *hbuf; /* header lines of the current block */
	size_t hlen;
	int head_done;	      /* the final head was delivered */
	int paused;	      /* HC_PAUSED_* */
	struct event *resume; /* zero-delay event of hc_resume */
	/* hc_stream: buffered pieces delivered from the loop. */
	hc_chunk_cb chunk; /* pieces go here */
	int cancelled;	   /* hc_cancel from inside chunk */
	int orphaned;	   /* hc_free from inside chunk: off every list */
};

/* A socket libcurl asked us to watch. */
struct hc_sock {
	TAILQ_ENTRY(hc_sock) entry;
	curl_socket_t fd;
	struct event *ev;
};

struct hc {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	TAILQ_HEAD(, hc_req) reqs;    /* every request not yet called back */
	TAILQ_HEAD(, hc_req) zombies; /* cancelled inside libcurl */
	TAILQ_HEAD(, hc_sock) socks;
	struct event *reaper; /* frees the zombies */
	size_t npending;
	int busy;    /* dispatch frames on the stack */
	int dying;   /* hc_free was called inside one */
	int in_curl; /* streaming user callbacks on the stack */
};

static void hc_on_sock(evutil_socket_t, short, void *);
static void hc_destroy(struct hc *);

/* Frees a request's resources; it must be out of the multi handle. */
static void
hc_req_free(struct hc_req *r)
{
	if (r->defer != NULL)
		event_free(r->defer);
	if (r->resume != NULL)
		event_free(r->resume);
	if (r->easy != NULL)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	free(r->fail);
	free(r->buf);
	free(r->hbuf);
	free(r);
}

/* Unlinks a request that is about to be called back or cancelled. */
static void
hc_req_unlink(struct hc_req *r)
{
	TAILQ_REMOVE(&r->hc->reqs, r, entry);
	r->hc->npending--;
	if (r->state == HC_RUNNING)
		curl_multi_remove_handle(r->hc->multi, r->easy);
}

/* Calls a request back with resp, then frees it. */
static void
hc_req_finish(struct hc_req *r, struct hc_resp *resp)
{
	hc_req_unlink(r);
	r->state = HC_CALLING;
	r->cb(resp, r->arg);
	hc_req_free(r);
}

/* Leaves a dispatch frame; the outermost one frees a dying client. */
static void
hc_leave(struct hc *hc)
{
	if (--hc->busy == 0 && hc->dying)
		hc_destroy(hc);
}

/* Turns one finished transfer into its callback. */
static void
hc_req_done(struct hc_req *r, CURLcode rc)
{
	struct hc_resp resp;
	char *ctype = NULL, *text = NULL;
	long status = 0;

	memset(&resp, 0, sizeof resp);
	resp.body = r->buf != NULL && r->chunk == NULL ? r->buf : "";
	if (r->overflow || rc == CURLE_FILESIZE_EXCEEDED) {
		xasprintf(&text, "response larger than %zu bytes", r->max);
		resp.error = text;
		resp.body = "";
	} else if (rc != CURLE_OK) {
		resp.error =
		    r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(rc);
		resp.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
		resp.no_connection = rc == CURLE_COULDNT_CONNECT;
		resp.body = "";
	} else {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ctype);
		resp.status = status;
		resp.len = r->chunk == NULL ? r->len : 0;
		resp.ctype = ctype;
	}
	if (r->on_data != NULL) {
		/* Streamed: the body went to on_data. */
		resp.body = "";
		resp.len = 0;
	}
	hc_req_finish(r, &resp);
	free(text);
}

/*
 * Delivers what streams received during a socket action. A callback may
 * cancel any request, so the scan starts over after each delivery.
 */
static void
hc_flush_streams(struct hc *hc)
{
	struct hc_req *r;
	size_t n;

	for (;;) {
		TAILQ_FOREACH (r, &hc->reqs, entry)
			if (r->chunk != NULL && r->len > 0 &&
			    r->state == HC_RUNNING)
				break;
		if (r == NULL || hc->dying)
			return;
		n = r->len;
		r->len = 0;
		r->state = HC_CALLING;
		r->chunk(r->buf, n, r->arg);
		if (r->orphaned) {
			hc_req_free(r);
			return;
		}
		r->state = HC_RUNNING;
		if (r->cancelled) {
			hc_req_unlink(r);
			hc_req_free(r);
		}
	}
}

/* Reaps every finished transfer (CURLMSG_DONE) after a socket action. */
static void
hc_check_done(struct hc *hc)
{
	CURLMsg *m;
	char *priv;
	int left;

	while (!hc->dying && (m = curl_multi_info_read(hc->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		priv = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		/* A zombie is removed by hc_on_reap. */
		if (priv != NULL &&
		    ((struct hc_req *)priv)->state == HC_RUNNING)
			hc_req_done((struct hc_req *)priv, m->data.result);
	}
}

/* Event on a socket libcurl watches: let libcurl act, then reap. */
static void
hc_on_sock(evutil_socket_t fd, short what, void *arg)
{
	struct hc *hc = arg;
	int action = 0, running;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	hc->busy++;
	curl_multi_socket_action(hc->multi, fd, action, &running);
	hc_flush_streams(hc);
	hc_check_done(hc);
	hc_leave(hc);
}

/* libcurl's timeout expired: let it act on timeouts, then reap. */
static void
hc_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct hc *hc = arg;
	int running;

	hc->busy++;
	curl_multi_socket_action(hc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	hc_flush_streams(hc);
	hc_check_done(hc);
	hc_leave(hc);
}

/* Delivers the error of a request that never reached libcurl. */
static void
hc_on_defer(evutil_socket_t fd, short what, void *arg)
{
	struct hc_req *r = arg;
	struct hc *hc = r->hc;
	struct hc_resp resp;

	memset(&resp, 0, sizeof resp);
	resp.body = "";
	resp.error = r->fail;
	hc->busy++;
	hc_req_finish(r, &resp);
	hc_leave(hc);
}

/*
 * CURLMOPT_TIMERFUNCTION: arms our one timer. It never calls
 * curl_multi_socket_action itself; a 0 ms timeout fires on the next loop
 * turn.
 */
static int
hc_timer_cb(CURLM *multi, long ms, void *arg)
{
	struct hc *hc = arg;
	struct timeval tv;

	if (ms < 0) {
		evtimer_del(hc->timer);
		return 0;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(hc->timer, &tv);
	return 0;
}

/* CURLMOPT_SOCKETFUNCTION: keeps one persistent event per socket. */
static int
hc_sock_cb(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
	struct hc *hc = arg;
	struct hc_sock *s = sockp;
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			TAILQ_REMOVE(&hc->socks, s, entry);
			event_free(s->ev);
			free(s);
		}
		return 0;
	}
	kind = EV_PERSIST;
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if (s == NULL) {
		s = xcalloc(1, sizeof *s);
		s->fd = fd;
		TAILQ_INSERT_TAIL(&hc->socks, s, entry);
		curl_multi_assign(hc->multi, fd, s);
	} else
		event_free(s->ev);
	/* The callback gets hc, not s: s may be freed under it. */
	s->ev = event_new(hc->base, fd, kind, hc_on_sock, hc);
	event_add(s->ev, NULL);
	return 0;
}

/* Gives a streamed request's body piece to on_data. */
static size_t
hc_stream_data(struct hc_req *r, char *data, size_t n)
{
	int rv;

	if (r->state == HC_ZOMBIE)
		return 0;
	r->hc->in_curl++;
	rv = r->on_data(data, n, r->sarg);
	r->hc->in_curl--;
	if (r->state == HC_ZOMBIE)
		return 0; /* cancelled inside: abort the transfer */
	if (rv == HC_PAUSE) {
		r->paused |= HC_PAUSED_RECV;
		return CURL_WRITEFUNC_PAUSE;
	}
	return n;
}

/* CURLOPT_WRITEFUNCTION: appends to the body, refusing more than max. */
static size_t
hc_write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct hc_req *r = arg;
	size_t want;

	n *= size;
	if (r->on_data != NULL)
		return hc_stream_data(r, data, n);
	if (n > r->max - r->len) {
		r->overflow = 1;
		return 0;
	}
	if (r->len + n + 1 > r->cap) {
		want = r->cap < 1024 ? 1024 : r->cap;
		while (want < r->len + n + 1)
			want *= 2;
		if (want > r->max + 1)
			want = r->max + 1;
		r->buf = xreallocarray(r->buf, 1, want);
		r->cap = want;
	}
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	r->buf[r->len] = '\0';
	return n;
}

/* Trims spaces and tabs at both ends of s[0..*len) in place. */
static char *
hc_trim(char *s, size_t *len)
{
	while (*len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		(*len)--;
	}
	while (*len > 0 &&
	    (s[*len - 1] == ' ' || s[*len - 1] == '\t' || s[*len - 1] == '\r' ||
		s[*len - 1] == '\n'))
		(*len)--;
	s[*len] = '\0';
	return s;
}

/*
 * The header block of a streamed response is complete: splits it into
 * the status and the headers (in place) and calls on_head. Returns -1
 * when the block is not a usable HTTP head.
 */
static int
hc_stream_head(struct hc_req *r)
{
	struct hc_header hdrs[HC_MAX_HEADERS];
	struct hc_head head;
	char *p, *end, *nl, *colon, *name, *value;
	size_t nlen, vlen;

	memset(&head, 0, sizeof head);
	p = r->hbuf;
	end = r->hbuf + r->hlen;
	/* The status line: "HTTP/x.y NNN reason". */
	if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL ||
	    (p = memchr(p, ' ', (size_t)(nl - p))) == NULL)
		return -1;
	head.status = strtol(p + 1, NULL, 10);
	if (head.status < 100 || head.status > 999)
		return -1;
	for (p = nl + 1; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if (*p == ' ' || *p == '\t')
			continue; /* obsolete line folding: dropped */
		if ((colon = memchr(p, ':', (size_t)(nl - p))) == NULL)
			continue;
		if (head.nheaders == HC_MAX_HEADERS)
			return -1;
		nlen = (size_t)(colon - p);
		vlen = (size_t)(nl - colon - 1);
		name = hc_trim(p, &nlen);
		value = hc_trim(colon + 1, &vlen);
		if (nlen == 0)
			continue;
		hdrs[head.nheaders].name = name;
		hdrs[head.nheaders].value = value;
		head.nheaders++;
	}
	head.headers = hdrs;
	r->head_done = 1;
	r->hc->in_curl++;
	r->on_head(&head, r->sarg);
	r->hc->in_curl--;
	return 0;
}

/* The status of the header block gathered so far, 0 if none. */
static long
hc_block_status(const struct hc_req *r)
{
	const char *sp;

	if (r->hlen == 0 || (sp = strchr(r->hbuf, ' ')) == NULL)
		return 0;
	return strtol(sp + 1, NULL, 10);
}

/*
 * CURLOPT_HEADERFUNCTION of streamed requests: gathers the lines of a
 * header block; at its end, a 1xx block is dropped and the final one goes
 * to on_head. Trailers (after the head) are ignored.
 */
static size_t
hc_header_cb(char *data, size_t size, size_t n, void *arg)
{
	struct hc_req *r = arg;

	n *= size;
	if (r->state == HC_ZOMBIE)
		return 0;
	if (r->head_done)
		return n;
	if (n <= 2 && (data[0] == '\n' || (n == 2 && data[0] == '\r'))) {
		if (hc_block_status(r) / 100 == 1) {
			r->hlen = 0; /* "HTTP/1.1 100 Continue" */
			return n;
		}
		if (r->hlen == 0 || hc_stream_head(r) != 0)
			return 0;
		return r->state == HC_ZOMBIE ? 0 : n;
	}
	if (r->hlen + n + 1 > HC_MAX_HEAD)
		return 0;
	if (r->hbuf == NULL)
		r->hbuf = xmalloc(HC_MAX_HEAD);
	memcpy(r->hbuf + r->hlen, data, n);
	r->hlen += n;
	r->hbuf[r->hlen] = '\0';
	return n;
}

/* CURLOPT_READFUNCTION: the request body from read_body. */
static size_t
hc_read_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct hc_req *r = arg;
	ssize_t got;

	if (r->state == HC_ZOMBIE)
		return CURL_READFUNC_ABORT;
	r->hc->in_curl++;
	got = r->read_body(buf, size * n, r->sarg);
	r->hc->in_curl--;
	if (r->state == HC_ZOMBIE)
		return CURL_READFUNC_ABORT;
	if (got == HC_BODY_WAIT) {
		r->paused |= HC_PAUSED_SEND;
		return CURL_READFUNC_PAUSE;
	}
	if (got < 0 || (size_t)got > size * n)
		return CURL_READFUNC_ABORT;
	return (size_t)got;
}

/* Removes and frees the requests cancelled inside libcurl. */
static void
hc_on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct hc *hc = arg;
	struct hc_req *r;

	while ((r = TAILQ_FIRST(&hc->zombies)) != NULL) {
		TAILQ_REMOVE(&hc->zombies, r, entry);
		curl_multi_remove_handle(hc->multi, r->easy);
		hc_req_free(r);
	}
}

/* Makes a client on base. */
struct hc *
hc_new(struct event_base *base, long max_host_conns)
{
	struct hc *hc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	hc = xcalloc(1, sizeof *hc);
	hc->base = base;
	TAILQ_INIT(&hc->reqs);
	TAILQ_INIT(&hc->zombies);
	TAILQ_INIT(&hc->socks);
	if ((hc->multi = curl_multi_init()) == NULL)
		abort();
	hc->timer = evtimer_new(base, hc_on_timer, hc);
	hc->reaper = evtimer_new(base, hc_on_reap, hc);
	curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION, hc_sock_cb);
	curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, hc);
	curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION, hc_timer_cb);
	curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, hc);
	if (max_host_conns > 0)
		curl_multi_setopt(
		    hc->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_conns);
	curl_multi_setopt(hc->multi, CURLMOPT_MAXCONNECTS, HC_MAX_IDLE_CONNS);
	return hc;
}

/* Frees the multi handle, the sockets it left and the client. */
static void
hc_destroy(struct hc *hc)
{
	struct hc_sock *s;

	hc_on_reap(-1, 0, hc);
	/* Cleanup may still report sockets as removed: keep events alive. */
	curl_multi_cleanup(hc->multi);
	while ((s = TAILQ_FIRST(&hc->socks)) != NULL) {
		TAILQ_REMOVE(&hc->socks, s, entry);
		event_free(s->ev);
		free(s);
	}
	event_free(hc->timer);
	event_free(hc->reaper);
	free(hc);
	curl_global_cleanup();
}

/* Cancels everything and frees the client (later, if inside a callback). */
void
hc_free(struct hc *hc)
{
	struct hc_req *r;

	if (hc == NULL || hc->dying)
		return;
	while ((r = TAILQ_FIRST(&hc->reqs)) != NULL) {
		if (r->state != HC_CALLING) {
			hc_cancel(r);
			continue;
		}
		/* A stream inside its chunk callback: freed after it. */
		TAILQ_REMOVE(&hc->reqs, r, entry);
		hc->npending--;
		curl_multi_remove_handle(hc->multi, r->easy);
		r->orphaned = 1;
	}
	if (hc->busy > 0) {
		hc->dying = 1;
		return;
	}
	hc_destroy(hc);
}

/* Sets the method and body of an easy handle. */
static CURLcode
hc_set_method(struct hc_req *r, const struct hc_opts *o)
{
	const char *m = o->method != NULL ? o->method : "GET";
	CURLcode rc = CURLE_OK;

	if (o->read_body != NULL) {
		/* Upload semantics under the given verb; -1 sends chunked. */
		rc = curl_easy_setopt(r->easy, CURLOPT_UPLOAD, 1L);
		if (rc == CURLE_OK)
			rc = curl_easy_setopt(
			    r->easy, CURLOPT_READFUNCTION, hc_read_cb);
		if (rc == CURLE_OK)
			rc = curl_easy_setopt(r->easy, CURLOPT_READDATA, r);
		if (rc == CURLE_OK)
			rc = curl_easy_setopt(r->easy, CURLOPT_INFILESIZE_LARGE,
			    (curl_off_t)(o->body_size >= 0 ? o->body_size
							   : -1));
		if (rc == CURLE_OK && strcasecmp(m, "PUT") != 0)
			rc =
			    curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, m);
	} else if (o->body != NULL || strcasecmp(m, "POST") == 0) {
		/* POST semantics; another method name overrides the verb. */
		rc = curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)(o->body != NULL ? o->body_len : 0));
		if (rc == CURLE_OK)
			rc = curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS,
			    o->body != NULL ? o->body : "");
		if (rc == CURLE_OK && strcasecmp(m, "POST") != 0)
			rc =
			    curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, m);
	} else if (strcasecmp(m, "HEAD") == 0)
		rc = curl_easy_setopt(r->easy, CURLOPT_NOBODY, 1L);
	else if (strcasecmp(m, "GET") != 0)
		rc = curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, m);
	return rc;
}

/* Applies a request's options to its easy handle. */
static CURLcode
hc_setup(struct hc_req *r, const struct hc_opts *o)
{
	const char *const *h;
	CURL *e = r->easy;
	CURLcode rc = CURLE_OK;

	r->hdrs = curl_slist_append(NULL, "Expect:");
	for (h = o->headers; h != NULL && *h != NULL && r->hdrs != NULL; h++)
		r->hdrs = curl_slist_append(r->hdrs, *h);
	if (r->hdrs == NULL)
		return CURLE_OUT_OF_MEMORY;

#define HC_SET(opt, val)                                                       \
	do {                                                                   \
		if (rc == CURLE_OK)                                            \
			rc = curl_easy_setopt(e, opt, val);                    \
	} while (0)
	HC_SET(CURLOPT_PRIVATE, r);
	HC_SET(CURLOPT_URL, o->url);
	HC_SET(CURLOPT_NOSIGNAL, 1L);
	HC_SET(CURLOPT_ERRORBUFFER, r->errbuf);
	HC_SET(CURLOPT_WRITEFUNCTION, hc_write_cb);
	HC_SET(CURLOPT_WRITEDATA, r);
	HC_SET(CURLOPT_HTTPHEADER, r->hdrs);
	if (r->on_data == NULL && r->chunk == NULL)
		HC_SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max);
	if (r->on_head != NULL) {
		HC_SET(CURLOPT_HEADERFUNCTION, hc_header_cb);
		HC_SET(CURLOPT_HEADERDATA, r);
	}
#if LIBCURL_VERSION_NUM >= 0x075500
	HC_SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	HC_SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (o->unix_path != NULL)
		HC_SET(CURLOPT_UNIX_SOCKET_PATH, o->unix_path);
	if (o->timeout_ms > 0)
		HC_SET(CURLOPT_TIMEOUT_MS, o->timeout_ms);
	if (o->connect_timeout_ms > 0)
		HC_SET(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
#undef HC_SET
	if (rc == CURLE_OK)
		rc = hc_set_method(r, o);
	return rc;
}

/* Starts a request (streaming with chunk); failures come through cb. */
static struct hc_req *
hc_start(struct hc *hc, const struct hc_opts *o, hc_chunk_cb chunk,
    hc_done_cb cb, void *arg)
{
	struct hc_req *r;
	CURLMcode mc;
	CURLcode rc;
	static const struct timeval now = {0, 0};

	r = xcalloc(1, sizeof *r);
	r->hc = hc;
	r->cb = cb;
	r->arg = arg;
	r->chunk = chunk;
	r->max = chunk != NULL	  ? HC_STREAM_MAX
	    : o->max_response > 0 ? o->max_response
				  : HC_MAX_RESPONSE;
	r->on_head = o->on_head;
	r->on_data = o->on_data;
	r->read_body = o->read_body;
	r->sarg = o->stream_arg;
	r->state = HC_FAILING;
	TAILQ_INSERT_TAIL(&hc->reqs, r, entry);
	hc->npending++;

	if (o->url == NULL)
		r->fail = xstrdup("no URL");
	else if (o->on_data != NULL && o->on_head == NULL)
		r->fail = xstrdup("on_data without on_head");
	else if (chunk != NULL && (o->on_head != NULL || o->on_data != NULL))
		r->fail = xstrdup("hc_stream with on_head or on_data");
	else if ((r->easy = curl_easy_init()) == NULL)
		r->fail = xstrdup("cannot make a libcurl handle");
	else if ((rc = hc_setup(r, o)) != CURLE_OK)
		xasprintf(
		    &r->fail, "bad request option: %s", curl_easy_strerror(rc));
	else if ((mc = curl_multi_add_handle(hc->multi, r->easy)) != CURLM_OK)
		xasprintf(&r->fail, "cannot start request: %s",
		    curl_multi_strerror(mc));
	else
		r->state = HC_RUNNING;

	if (r->state == HC_FAILING) {
		r->defer = evtimer_new(hc->base, hc_on_defer, r);
		evtimer_add(r->defer, &now);
	}
	return r;
}

/* Starts a request; failures are reported through cb from the loop. */
struct hc_req *
hc_request(struct hc *hc, const struct hc_opts *o, hc_done_cb cb, void *arg)
{
	return hc_start(hc, o, NULL, cb, arg);
}

/* Starts a streaming request. */
struct hc_req *
hc_stream(struct hc *hc, const struct hc_opts *o, hc_chunk_cb chunk,
    hc_done_cb done, void *arg)
{
	return hc_start(hc, o, chunk, done, arg);
}

/*
 * Cancels a request without calling back. A request whose callback is
 * running is left alone: it is freed when its callback returns (a stream
 * cancelled from its chunk callback is freed right after it).
 */
void
hc_cancel(struct hc_req *r)
{
	struct hc *hc;
	static const struct timeval now = {0, 0};

	if (r == NULL || r->state == HC_ZOMBIE)
		return;
	if (r->state == HC_CALLING) {
		r->cancelled = 1;
		return;
	}
	hc = r->hc;
	if (r->state == HC_RUNNING && hc->in_curl > 0) {
		/* Inside libcurl: the handle cannot be removed here. */
		TAILQ_REMOVE(&hc->reqs, r, entry);
		hc->npending--;
		r->state = HC_ZOMBIE;
		TAILQ_INSERT_TAIL(&hc->zombies, r, entry);
		evtimer_add(hc->reaper, &now);
		return;
	}
	hc_req_unlink(r);
	hc_req_free(r);
}

/* Lifts a streamed request's pause (from the loop, never inside libcurl). */
static void
hc_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct hc_req *r = arg;
	struct hc *hc = r->hc;
	CURLcode rc;

	if (r->state != HC_RUNNING || r->paused == 0)
		return;
	r->paused = 0;
	hc->busy++;
	rc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
	if (rc != CURLE_OK && r->state == HC_RUNNING) {
		/* Delivering the held data failed: end it as an error. */
		if (r->errbuf[0] == '\0')
			snprintf(r->errbuf, sizeof r->errbuf, "%s",
			    curl_easy_strerror(rc));
		hc_req_done(r, rc);
	}
	hc_check_done(hc);
	hc_leave(hc);
}

/* Resumes a paused streamed request on the next loop turn. */
void
hc_resume(struct hc_req *r)
{
	static const struct timeval now = {0, 0};

	if (r == NULL || r->state != HC_RUNNING)
		return;
	if (r->resume == NULL)
		r->resume = evtimer_new(r->hc->base, hc_on_resume, r);
	evtimer_add(r->resume, &now);
}

/* Requests not yet called back. */
size_t
hc_pending(const struct hc *hc)
{
	return hc->npending;
}
