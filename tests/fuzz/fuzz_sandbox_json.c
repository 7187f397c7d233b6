/*
 * fuzz_sandbox_json: a sandbox record as the state store gives it back
 * (sbx_from_json: Redis is shared, so its values are outside input too).
 * Property: a record that parses survives sbx_to_json and sbx_from_json
 * unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbx *a, *b;
	char *cause, *ja, *jb;
	size_t la, lb;

	if ((a = sbx_from_json((const char *)data, size, &cause)) == NULL) {
		free(cause);
		return 0;
	}
	ja = sbx_to_json(a, 1, &la);
	if ((b = sbx_from_json(ja, la, &cause)) == NULL) {
		fprintf(stderr, "a record's own JSON does not parse: %s\n%s\n",
		    cause, ja);
		abort();
	}
	jb = sbx_to_json(b, 1, &lb);
	if (la != lb || memcmp(ja, jb, la) != 0) {
		fprintf(
		    stderr, "round trip changed the record:\n%s\n%s\n", ja, jb);
		abort();
	}
	free(ja);
	free(jb);
	sbx_free(a);
	sbx_free(b);
	return 0;
}
