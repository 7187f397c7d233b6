/*
 * fuzz_agent_multipart: the agent's streaming multipart/form-data parser
 * (src/agent/multipart.c). The input's first line is the Content-Type;
 * its second byte picks the piece size the rest is fed in. Properties: no
 * crash or leak whatever the split; parts begin and end in pairs; data
 * comes only inside a part.
 */
#include "../../src/agent/multipart.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct fuzz_mp {
	int open;
	size_t parts;
};

/* A part starts: none may be open. */
static int
fuzz_begin(const struct multipart_part *p, void *arg)
{
	struct fuzz_mp *m = arg;

	if (m->open || p->name == NULL)
		abort();
	m->open = 1;
	m->parts++;
	return 0;
}

/* Part data: only inside a part. */
static int
fuzz_data(const char *d, size_t n, void *arg)
{
	struct fuzz_mp *m = arg;

	(void)d;
	if (!m->open)
		abort();
	return 0;
}

/* A part ends: one must be open. */
static int
fuzz_end(void *arg)
{
	struct fuzz_mp *m = arg;

	if (!m->open)
		abort();
	m->open = 0;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct multipart_cbs cbs = {
	    fuzz_begin, fuzz_data, fuzz_end};
	const char *nl = memchr(data, '\n', size);
	struct fuzz_mp m = {0, 0};
	struct multipart *mp;
	char *ctype, *boundary, *cause = NULL;
	size_t off, step, n;
	int rc = 0;

	if (nl == NULL || size < 2)
		return 0;
	ctype = xstrndup((const char *)data, (size_t)(nl - (const char *)data));
	boundary = multipart_boundary(ctype);
	free(ctype);
	if (boundary == NULL)
		return 0;
	off = (size_t)(nl - (const char *)data) + 1;
	step = off < size ? (size_t)data[off] % 64 + 1 : 1;
	mp = multipart_new(boundary, &cbs, &m);
	for (; off < size && rc == 0; off += n) {
		n = size - off < step ? size - off : step;
		rc = multipart_feed(mp, (const char *)data + off, n, &cause);
	}
	if (rc == 0)
		rc = multipart_finish(mp, &cause);
	if (rc == 0 && m.open)
		abort(); /* a complete body leaves no part open */
	free(cause);
	multipart_free(mp);
	free(boundary);
	return 0;
}
