/*
 * test_auth: the bearer-token check of spec 1.2, case by case.
 */
#include "auth.h"
#include "tap.h"

/* One header against one token. */
static void
check(const char *token, const char *header, enum auth_result want,
    const char *what)
{
	is_int(auth_check(token, header), want, "%s", what);
}

int
main(void)
{
	/* Auth off. */
	check(NULL, NULL, AUTH_OK, "unset token: no header accepted");
	check(NULL, "Bearer whatever", AUTH_OK, "unset token: any header");
	check("", NULL, AUTH_OK, "empty token: no header accepted");
	check("", "Basic Zm9v", AUTH_OK, "empty token: any scheme");

	/* Missing credentials. */
	check("s3cret", NULL, AUTH_MISSING, "no header");
	check("s3cret", "", AUTH_MISSING, "empty header");
	check("s3cret", "Bearer", AUTH_MISSING, "scheme without a space");
	check("s3cret", "Bearers3cret", AUTH_MISSING, "no space at all");
	check("s3cret", "Bearer ", AUTH_MISSING, "empty credentials");
	check("s3cret", " Bearer s3cret", AUTH_MISSING,
	    "leading space: empty scheme");
	check("s3cret", "Basic s3cret", AUTH_MISSING, "other scheme");
	check("s3cret", "Bearerx s3cret", AUTH_MISSING, "longer scheme");
	check("s3cret", "Beare s3cret", AUTH_MISSING, "shorter scheme");
	check("s3cret", "Bearer\ts3cret", AUTH_MISSING, "tab is no separator");

	/* The scheme is case-insensitive. */
	check("s3cret", "Bearer s3cret", AUTH_OK, "Bearer");
	check("s3cret", "bearer s3cret", AUTH_OK, "bearer");
	check("s3cret", "BEARER s3cret", AUTH_OK, "BEARER");
	check("s3cret", "bEaReR s3cret", AUTH_OK, "bEaReR");

	/* Credentials: exact, case-sensitive, no trimming. */
	check("s3cret", "Bearer wrong!", AUTH_INVALID, "wrong token");
	check("s3cret", "Bearer S3CRET", AUTH_INVALID, "token case matters");
	check("s3cret", "Bearer  s3cret", AUTH_INVALID,
	    "two spaces: credentials start with a space");
	check("s3cret", "Bearer s3cret ", AUTH_INVALID, "trailing space kept");
	check("s3cret", "Bearer s3cre", AUTH_INVALID, "prefix of the token");
	check("s3cret", "Bearer s3cretx", AUTH_INVALID, "token plus more");
	check("s3cret", "Bearer s3cret s3cret", AUTH_INVALID,
	    "split only at the first space");
	check("a b", "Bearer a b", AUTH_OK, "token with a space");
	check("s3cret", "Bearer  ", AUTH_INVALID, "credentials of one space");

	/* Detail texts of the 401 replies. */
	is_str(auth_detail(AUTH_MISSING), "Authentication required",
	    "missing: detail");
	is_str(auth_detail(AUTH_INVALID), "Invalid authentication credentials",
	    "invalid: detail");

	/* The comparison itself. */
	ok(auth_equal("abc", 3, "abc", 3), "equal strings");
	ok(!auth_equal("abc", 3, "abd", 3), "last byte differs");
	ok(!auth_equal("xbc", 3, "abc", 3), "first byte differs");
	ok(!auth_equal("abc", 3, "abcd", 4), "lengths differ");
	ok(auth_equal("", 0, "", 0), "two empty strings");
	ok(!auth_equal("a\0b", 3, "a\0c", 3), "bytes after a NUL count");
	ok(!auth_equal("abcd", 4, "abc", 3), "the secret plus more");
	ok(!auth_equal("ab", 2, "abc", 3), "a prefix of the secret");
	ok(!auth_equal("abc", 3, "", 0), "anything against an empty secret");
	return tap_done();
}
