/*
 * test_multipart: the agent's streaming multipart/form-data parser, fed
 * whole and in pieces of every size, in both part orders the agentscope
 * clients send (all "paths" then all "files"; interleaved).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"
#include "tap.h"
#include "xmalloc.h"

#define MAX_PARTS 16

struct rec {
	size_t n;
	char name[MAX_PARTS][64];
	char filename[MAX_PARTS][64];
	int has_filename[MAX_PARTS];
	char ctype[MAX_PARTS][64];
	char *data[MAX_PARTS];
	size_t len[MAX_PARTS];
	int open, ends, bad;
};

static int
rec_begin(const struct multipart_part *p, void *arg)
{
	struct rec *r = arg;

	if (r->open || r->n == MAX_PARTS) {
		r->bad = 1;
		return -1;
	}
	snprintf(r->name[r->n], 64, "%s", p->name);
	r->has_filename[r->n] = p->filename != NULL;
	snprintf(r->filename[r->n], 64, "%s", p->filename ? p->filename : "");
	snprintf(
	    r->ctype[r->n], 64, "%s", p->content_type ? p->content_type : "");
	r->data[r->n] = NULL;
	r->len[r->n] = 0;
	r->open = 1;
	return 0;
}

static int
rec_data(const char *p, size_t n, void *arg)
{
	struct rec *r = arg;

	if (!r->open) {
		r->bad = 1;
		return -1;
	}
	r->data[r->n] = xreallocarray(r->data[r->n], 1, r->len[r->n] + n + 1);
	memcpy(r->data[r->n] + r->len[r->n], p, n);
	r->len[r->n] += n;
	r->data[r->n][r->len[r->n]] = '\0';
	return 0;
}

static int
rec_end(void *arg)
{
	struct rec *r = arg;

	if (!r->open) {
		r->bad = 1;
		return -1;
	}
	r->open = 0;
	r->ends++;
	r->n++;
	return 0;
}

static const struct multipart_cbs cbs = {rec_begin, rec_data, rec_end};

static void
rec_free(struct rec *r)
{
	size_t i;

	for (i = 0; i < MAX_PARTS; i++)
		free(r->data[i]);
	memset(r, 0, sizeof *r);
}

/* Parses body in pieces of step bytes (0: whole); 0 or -1. */
static int
parse(const char *boundary, const char *body, size_t len, size_t step,
    struct rec *r, char **cause)
{
	struct multipart *mp = multipart_new(boundary, &cbs, r);
	size_t off = 0, n;
	int rc = 0;

	*cause = NULL;
	memset(r, 0, sizeof *r);
	while (off < len) {
		n = step == 0 || len - off < step ? len - off : step;
		if (multipart_feed(mp, body + off, n, cause) == -1) {
			rc = -1;
			break;
		}
		off += n;
	}
	if (rc == 0)
		rc = multipart_finish(mp, cause);
	multipart_free(mp);
	return rc;
}

/* A recorded part's data, "" if it had none. */
static const char *
data_body(const char *d, size_t i)
{
	(void)i;
	return d != NULL ? d : "";
}

/* Paths first, then files (Python requests' order). */
static const char body_sync[] =
    "--abc123\r\n"
    "Content-Disposition: form-data; name=\"paths\"\r\n\r\n"
    "d/a.txt\r\n"
    "--abc123\r\n"
    "Content-Disposition: form-data; name=\"paths\"\r\n\r\n"
    "b.bin\r\n"
    "--abc123\r\n"
    "Content-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    "line one\r\n--abc12 not a boundary\r\n-- and more\r\n"
    "--abc123\r\n"
    "Content-Disposition: form-data; name=\"files\"; filename=\"b.bin\"\r\n"
    "Content-Type: application/octet-stream\r\n\r\n"
    "\x00\x01\x02\r\n\r\n"
    "--abc123--\r\n";

/* Interleaved, with the async client's boundary and a preamble. */
static const char body_async[] =
    "preamble to ignore\r\n"
    "------agentscope-0123456789abcdef0123456789abcdef\r\n"
    "Content-Disposition: form-data; name=\"paths\"\r\n\r\n"
    "x/1.txt\r\n"
    "------agentscope-0123456789abcdef0123456789abcdef\r\n"
    "Content-Disposition: form-data; name=\"files\"; filename=\"1.txt\"\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    "one\r\n"
    "------agentscope-0123456789abcdef0123456789abcdef\r\n"
    "Content-Disposition: form-data; name=\"paths\"\r\n\r\n"
    "x/2.txt\r\n"
    "------agentscope-0123456789abcdef0123456789abcdef\r\n"
    "Content-Disposition: form-data; name=\"files\"; filename=\"2.txt\"\r\n\r\n"
    "\r\n"
    "------agentscope-0123456789abcdef0123456789abcdef--\r\n"
    "epilogue to ignore";

static void
test_boundary(void)
{
	char *b;

	b = multipart_boundary("multipart/form-data; boundary=abc123");
	is_str(b, "abc123", "boundary: plain");
	free(b);
	b = multipart_boundary(
	    "Multipart/Form-Data; charset=utf-8; boundary=\"a b;c\"");
	is_str(b, "a b;c", "boundary: quoted, after another parameter");
	free(b);
	b = multipart_boundary("multipart/form-data; boundary=xyz; x=1");
	is_str(b, "xyz", "boundary: followed by a parameter");
	free(b);
	ok(multipart_boundary("multipart/form-data") == NULL,
	    "boundary: missing");
	ok(multipart_boundary("application/json; boundary=x") == NULL,
	    "boundary: not multipart/form-data");
	ok(multipart_boundary("multipart/form-data; boundary=") == NULL,
	    "boundary: empty");
	ok(multipart_boundary(NULL) == NULL, "boundary: no header");
	{
		char ct[400];

		memset(ct, 'a', sizeof ct);
		memcpy(ct, "multipart/form-data; boundary=", 30);
		ct[sizeof ct - 1] = '\0';
		ok(multipart_boundary(ct) == NULL, "boundary: too long");
	}
}

static void
check_sync(struct rec *r, const char *how)
{
	ok(r->n == 4 && r->ends == 4 && !r->bad && !r->open,
	    "%s: four parts, each begun and ended once", how);
	is_str(r->name[0], "paths", "%s: part 1 is a paths field", how);
	ok(!r->has_filename[0], "%s: a field has no file name", how);
	is_str(data_body(r->data[0], 0), "d/a.txt", "%s: first path", how);
	is_str(data_body(r->data[1], 1), "b.bin", "%s: second path", how);
	is_str(r->name[2], "files", "%s: part 3 is a file", how);
	is_str(r->filename[2], "a.txt", "%s: its file name", how);
	is_str(r->ctype[2], "text/plain; charset=utf-8", "%s: its content type",
	    how);
	is_str(data_body(r->data[2], 2),
	    "line one\r\n--abc12 not a boundary\r\n-- and more",
	    "%s: near-boundaries stay in the data", how);
	ok(r->len[3] == 5 && memcmp(r->data[3], "\x00\x01\x02\r\n", 5) == 0,
	    "%s: binary data with NUL and a trailing CRLF", how);
}

static void
test_orders(void)
{
	struct rec r;
	char *cause;
	size_t step;
	int all_ok = 1;

	ok(parse("abc123", body_sync, sizeof body_sync - 1, 0, &r, &cause) == 0,
	    "paths then files: parses");
	check_sync(&r, "paths then files");
	rec_free(&r);

	for (step = 1; step < sizeof body_sync; step++) {
		if (parse("abc123", body_sync, sizeof body_sync - 1, step, &r,
			&cause) != 0 ||
		    r.n != 4 || r.len[2] != 45 || r.len[3] != 5 ||
		    strcmp(r.data[1], "b.bin") != 0 ||
		    strcmp(r.filename[3], "b.bin") != 0) {
			if (all_ok)
				printf("# failed at step %zu: %s\n", step,
				    cause ? cause : "wrong parts");
			all_ok = 0;
		}
		free(cause);
		rec_free(&r);
	}
	ok(all_ok,
	    "paths then files: same parts fed in pieces of every "
	    "size 1..%zu",
	    sizeof body_sync - 1);

	all_ok = 1;
	for (step = 0; step < sizeof body_async; step++) {
		int rc =
		    parse("----agentscope-0123456789abcdef0123456789abcdef",
			body_async, sizeof body_async - 1, step, &r, &cause);

		if (rc != 0 || r.n != 4 || strcmp(r.data[0], "x/1.txt") != 0 ||
		    strcmp(r.name[1], "files") != 0 ||
		    strcmp(r.filename[1], "1.txt") != 0 ||
		    strcmp(r.data[1], "one") != 0 ||
		    strcmp(r.data[2], "x/2.txt") != 0 || r.len[3] != 0 ||
		    strcmp(r.filename[3], "2.txt") != 0 ||
		    r.ctype[3][0] != '\0') {
			if (all_ok)
				printf("# interleaved failed at step %zu: %s\n",
				    step, cause ? cause : "wrong parts");
			all_ok = 0;
		}
		free(cause);
		rec_free(&r);
	}
	ok(all_ok,
	    "interleaved paths and files, preamble and epilogue, an "
	    "empty file: right in pieces of every size");
}

static void
test_headers(void)
{
	static const char body[] =
	    "--b\r\n"
	    "content-disposition: form-data; name=files; "
	    "filename*=UTF-8''%C3%A9t%C3%A9.txt; filename=\"plain.txt\"\r\n"
	    "\r\n"
	    "x\r\n"
	    "--b\r\n"
	    "Content-Disposition: form-data; name=\"files\"; "
	    "filename=\"q\\\"uote.txt\"\r\n"
	    "\r\n"
	    "y\r\n"
	    "--b--";
	struct rec r;
	char *cause;

	ok(parse("b", body, sizeof body - 1, 0, &r, &cause) == 0,
	    "headers: parses (no CRLF after the close delimiter)");
	is_str(r.filename[0], "\xc3\xa9t\xc3\xa9.txt",
	    "headers: filename* (RFC 8187) wins over filename");
	is_str(r.name[0], "files", "headers: unquoted name, any case");
	is_str(r.filename[1], "q\"uote.txt", "headers: escaped quote");
	rec_free(&r);
	free(cause);
}

static void
test_errors(void)
{
	struct rec r;
	char *cause, *big;
	size_t i, n;
	int rc;

	rc = parse("abc123", body_sync, sizeof body_sync - 20, 0, &r, &cause);
	ok(rc == -1 && cause != NULL && strstr(cause, "close delimiter"),
	    "truncated body: error at finish (%s)", cause ? cause : "");
	free(cause);
	rec_free(&r);

	rc = parse("b", "--b\r\nx: y\r\n\r\nabc", 17, 0, &r, &cause);
	ok(rc == -1, "part without its closing delimiter: error");
	free(cause);
	rec_free(&r);

	rc = parse("b", "--bX\r\n\r\nabc\r\n--b--", 19, 0, &r, &cause);
	ok(rc == -1 && r.n == 0, "garbage after a delimiter: error, no part");
	free(cause);
	rec_free(&r);

	rc = parse("b", "no delimiter at all", 19, 0, &r, &cause);
	ok(rc == -1 && r.n == 0, "no delimiter: error at finish");
	free(cause);
	rec_free(&r);

	n = MULTIPART_MAX_HEADERS + 100;
	big = xmalloc(n + 64);
	strcpy(big, "--b\r\nX-Big: ");
	for (i = strlen(big); i < n; i++)
		big[i] = 'a';
	memcpy(big + n, "\r\n\r\ndata\r\n--b--", 15);
	rc = parse("b", big, n + 15, 1000, &r, &cause);
	ok(rc == -1 && r.n == 0 && cause && strstr(cause, "too large"),
	    "part headers over %d bytes: error", MULTIPART_MAX_HEADERS);
	free(cause);
	free(big);
	rec_free(&r);
}

static int
count_data(const char *p, size_t n, void *arg)
{
	*(size_t *)arg += n;
	return 0;
}

static int
count_begin(const struct multipart_part *p, void *arg)
{
	return 0;
}

static int
count_end(void *arg)
{
	return 0;
}

static void
test_large(void)
{
	static const struct multipart_cbs c = {
	    count_begin, count_data, count_end};
	size_t total = 0, i, chunk = 65536, size = 32 * 1024 * 1024;
	struct multipart *mp = multipart_new("zz", &c, &total);
	char *buf = xmalloc(chunk), *cause = NULL;
	int rc = 0;

	memset(buf, '-', chunk);
	rc |= multipart_feed(mp, "--zz\r\n\r\n", 8, &cause);
	for (i = 0; i < size / chunk && rc == 0; i++)
		rc |= multipart_feed(mp, buf, chunk, &cause);
	rc |= multipart_feed(mp, "\r\n--zz--\r\n", 10, &cause);
	if (rc == 0)
		rc = multipart_finish(mp, &cause);
	ok(rc == 0 && total == size,
	    "a 32 MiB part of dashes streams through (%zu bytes)", total);
	free(cause);
	free(buf);
	multipart_free(mp);
}

/*
 * Random bodies built from delimiter fragments, CRLFs, header text and
 * bytes: the parser must never fail to return, and a body it accepts must
 * have begun and ended every part it reported.
 */
static void
test_random(void)
{
	static const char *const bits[] = {"--rr", "\r\n", "--rr--", "\r\n--rr",
	    "Content-Disposition: form-data; name=\"files\"",
	    "; filename=\"a\"", "\r\n\r\n", "x", "-", "\r", "\n",
	    "Content-Type: a/b", "name=paths", "\"", "\0"};
	char body[512], *cause;
	struct rec r;
	size_t len, k, step;
	int i, sane = 1, rc;

	srandom(42);
	for (i = 0; i < 20000; i++) {
		len = 0;
		while (len < sizeof body - 64) {
			const char *b =
			    bits[random() % (sizeof bits / sizeof *bits)];
			size_t n = strlen(b) > 0 ? strlen(b) : 1;

			if (random() % 8 == 0)
				break;
			memcpy(body + len, b, n);
			len += n;
		}
		step = (size_t)(random() % 17);
		rc = parse("rr", body, len, step, &r, &cause);
		if (rc == 0 && (r.open || r.ends != (int)r.n || r.bad))
			sane = 0;
		if (rc == -1 && cause == NULL)
			sane = 0;
		free(cause);
		for (k = 0; k < MAX_PARTS; k++)
			free(r.data[k]);
	}
	ok(sane, "20000 random bodies: every parse returns, consistently");
}

int
main(void)
{
	test_boundary();
	test_orders();
	test_headers();
	test_errors();
	test_large();
	test_random();
	return tap_done();
}
