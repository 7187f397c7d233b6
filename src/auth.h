/*
 * auth: the manager's bearer-token check (spec 1.2). Pure functions over
 * the configured token and the request's first Authorization header; the
 * API layer turns a failure into its 401 reply.
 */
#ifndef SANDPOOL_AUTH_H
#define SANDPOOL_AUTH_H

#include <stddef.h>

enum auth_result {
	AUTH_OK = 0,
	AUTH_MISSING, /* no usable bearer credentials */
	AUTH_INVALID  /* credentials present but not the token */
};

/*
 * Checks the value of the first Authorization header (NULL when absent)
 * against token. A NULL or empty token turns the check off.
 */
enum auth_result auth_check(const char *token, const char *header);
/* The 401 detail text for a failure ("Authentication required", ...). */
const char *auth_detail(enum auth_result);
/*
 * 1 if the offered a equals the secret b; the time depends on b's length
 * only (also for /desktop's password against a sandbox's runtime token).
 */
int auth_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
