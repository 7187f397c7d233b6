/*
 * tap: a minimal Test Anything Protocol emitter for the unit tests, so that
 * automake's TAP driver counts every check.
 */
#ifndef SANDPOOL_TAP_H
#define SANDPOOL_TAP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

/* Reports one check; returns its truth. */
#define ok(cond, ...)                                                         \
	({                                                                    \
		int tap_c = (cond) ? 1 : 0;                                   \
		printf("%s %d - ", tap_c ? "ok" : "not ok", ++tap_n);         \
		printf(__VA_ARGS__);                                          \
		printf("\n");                                                 \
		if (!tap_c) {                                                 \
			tap_failed++;                                         \
			printf("#   failed at %s:%d: %s\n", __FILE__,         \
			    __LINE__, #cond);                                 \
		}                                                             \
		fflush(stdout);                                               \
		tap_c;                                                        \
	})

#define is_str(a, b, ...)                                                     \
	({                                                                    \
		const char *tap_a = (a), *tap_b = (b);                        \
		int tap_r = ok(tap_a != NULL && tap_b != NULL &&              \
		        strcmp(tap_a, tap_b) == 0,                            \
		    __VA_ARGS__);                                             \
		if (!tap_r)                                                   \
			printf("#   got '%s', expected '%s'\n",               \
			    tap_a ? tap_a : "(null)",                         \
			    tap_b ? tap_b : "(null)");                        \
		tap_r;                                                        \
	})

#define is_int(a, b, ...)                                                     \
	({                                                                    \
		long long tap_a = (a), tap_b = (b);                           \
		int tap_r = ok(tap_a == tap_b, __VA_ARGS__);                  \
		if (!tap_r)                                                   \
			printf("#   got %lld, expected %lld\n", tap_a,        \
			    tap_b);                                           \
		tap_r;                                                        \
	})

/* Skips the whole file with a reason (plan 1..0). */
#define tap_skip_all(...)                                                     \
	do {                                                                  \
		printf("1..0 # SKIP ");                                       \
		printf(__VA_ARGS__);                                          \
		printf("\n");                                                 \
		exit(0);                                                      \
	} while (0)

/* Prints the plan and returns the exit status. */
static inline int
tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
