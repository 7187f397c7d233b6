/*
 * fuzz_http_intake: the stream intake's parsers of what a client sends
 * before evhttp sees it: the end of a request head, the head itself, its
 * body framing and whether it is a stream, and the body decoder (length
 * and chunked). Properties: a parsed head has a method, a target and
 * headers without control characters; a body decoded in small pieces
 * gives the same bytes as one decoded at once, and passing it through
 * (framing and all) consumes exactly as much input.
 */
#include "../../src/http.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Most body bytes decoded per input. */
#define FUZZ_BODY_MAX (64 * 1024)

/* 1 if s holds a control character (not tab). */
static int
fuzz_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 && *s != '\t')
			return 1;
	return 0;
}

/*
 * Decodes a body of size off the front of a copy of src three ways: in
 * pieces of 7 bytes, at once, and passed through. Aborts if they differ.
 */
static void
fuzz_body(struct evbuffer *src, long long size)
{
	static char a[FUZZ_BODY_MAX], b[FUZZ_BODY_MAX];
	struct evbuffer *s1 = evbuffer_new(), *s2 = evbuffer_new();
	struct evbuffer *s3 = evbuffer_new(), *pass = evbuffer_new();
	struct http_dec d1, d2, d3;
	size_t n1 = 0, n2 = 0, step, before;
	int r1 = 0, r2, r3;

	evbuffer_add_buffer_reference(s1, src);
	evbuffer_add_buffer_reference(s2, src);
	evbuffer_add_buffer_reference(s3, src);
	http_dec_init(&d1, size);
	http_dec_init(&d2, size);
	http_dec_init(&d3, size);
	for (;;) {
		step = n1 + 7 < sizeof a ? n1 + 7 : sizeof a;
		before = n1;
		r1 = http_dec_run(&d1, s1, NULL, a, step, &n1);
		if (r1 != 0 || (n1 == before && step > n1) || n1 == sizeof a)
			break;
	}
	r2 = http_dec_run(&d2, s2, NULL, b, sizeof b, &n2);
	if (n1 < sizeof a && n2 < sizeof b) {
		if (r1 != r2 || n1 != n2 || memcmp(a, b, n1) != 0)
			abort();
		before = evbuffer_get_length(s3);
		r3 = http_dec_run(&d3, s3, pass, NULL, 0, NULL);
		if (r3 != r2)
			abort();
		/* Passing moves exactly what decoding consumed. */
		if (r3 == 1 &&
		    evbuffer_get_length(pass) !=
			before - evbuffer_get_length(s2))
			abort();
	}
	evbuffer_free(s1);
	evbuffer_free(s2);
	evbuffer_free(s3);
	evbuffer_free(pass);
}

/* One input: a head (if it has one) and what follows as its body. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char prefix[] = "/proxy/", methods[] = " GET POST PUT ";
	struct http h;
	struct http_conn c;
	struct http_head *hd;
	long long body;
	ssize_t n;
	size_t i;

	memset(&h, 0, sizeof h);
	h.max_head = 2048 + HTTP_HEAD_SLACK;
	h.prefix = prefix;
	h.methods = methods;
	memset(&c, 0, sizeof c);
	c.h = &h;
	c.held = evbuffer_new();
	evbuffer_add(c.held, data, size);
	n = http_head_end(&c);
	if (n > 0 && (hd = http_head_parse(c.held, (size_t)n)) != NULL) {
		if (hd->method == NULL || hd->target == NULL ||
		    hd->version == NULL || hd->nhdrs > HTTP_MAX_HEADERS)
			abort();
		for (i = 0; i < hd->nhdrs; i++)
			if (fuzz_ctl(hd->hdrs[i].name) ||
			    fuzz_ctl(hd->hdrs[i].value))
				abort();
		(void)http_head_streams(&h, hd);
		if (http_head_framing(hd, &body) == 0) {
			if (body < -1)
				abort();
			evbuffer_drain(c.held, (size_t)n);
			fuzz_body(c.held, body);
		}
		http_head_free(hd);
	} else if (size > 0)
		fuzz_body(c.held, -1); /* the input as a chunked body */
	evbuffer_free(c.held);
	return 0;
}
