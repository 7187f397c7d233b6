/*
 * auth: the bearer-token check of the manager's API, exactly as FastAPI's
 * HTTPBearer(auto_error=False) plus agentscope's verify_token do it: split
 * the header once at the first space, no trimming, scheme "bearer" in any
 * case, empty credentials count as none, then an exact comparison that
 * does not leak the token's content through timing. Never logs the token.
 */
#include <string.h>
#include <strings.h>

#include "auth.h"

/*
 * Compares the offered a with the secret b in time that depends only on
 * b's length: every byte of b is looked at, whatever a is, so that
 * neither where they differ nor how long a is shows.
 */
int
auth_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	volatile unsigned char diff;
	size_t i;

	diff = alen != blen;
	for (i = 0; i < blen; i++)
		diff |=
		    (unsigned char)(i < alen ? a[i] : 0) ^ (unsigned char)b[i];
	return diff == 0;
}

/* Checks an Authorization header value against the configured token. */
enum auth_result
auth_check(const char *token, const char *header)
{
	const char *sp, *cred;

	if (token == NULL || *token == '\0')
		return AUTH_OK;
	if (header == NULL || (sp = strchr(header, ' ')) == NULL)
		return AUTH_MISSING;
	cred = sp + 1;
	if (sp - header != 6 || strncasecmp(header, "bearer", 6) != 0 ||
	    *cred == '\0')
		return AUTH_MISSING;
	if (!auth_equal(cred, strlen(cred), token, strlen(token)))
		return AUTH_INVALID;
	return AUTH_OK;
}

/* The detail message of a 401 reply. */
const char *
auth_detail(enum auth_result r)
{
	switch (r) {
	case AUTH_OK:
		break;
	case AUTH_MISSING:
		return "Authentication required";
	case AUTH_INVALID:
		return "Invalid authentication credentials";
	}
	return "";
}
