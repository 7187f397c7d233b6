/*
 * test_udiff: unified diffs in jsdiff's createTwoFilesPatch() format, the
 * shape of the filesystem MCP tool edit_file's answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "udiff.h"
#include "xmalloc.h"

#define HEADER                                                                 \
	"Index: f\n"                                                           \
	"==================================================================="  \
	"\n"                                                                   \
	"--- f\toriginal\n"                                                    \
	"+++ f\tmodified\n"

/* Checks one patch. */
static void
check(const char *a, const char *b, const char *want, const char *name)
{
	char *got = udiff_patch("f", a, strlen(a), b, strlen(b));

	is_str(got, want, "%s", name);
	free(got);
}

/* "1\n2\n...\nn\n". */
static char *
numbers(int n, int skip, const char *replace_at_5)
{
	char *s = xmalloc((size_t)n * 16 + 32), *o = s;
	int i;

	for (i = 1; i <= n; i++) {
		if (i == skip)
			continue;
		if (i == 5 && replace_at_5 != NULL)
			o += sprintf(o, "%s\n", replace_at_5);
		else
			o += sprintf(o, "%d\n", i);
	}
	*o = '\0';
	return s;
}

int
main(void)
{
	char *a, *b, *p;

	check("same\n", "same\n", HEADER, "no change: the header only");
	check("a\nb\nc\n", "a\nB\nc\n",
	    HEADER "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
	    "one line changed, context to the edges");
	check("", "x\n", HEADER "@@ -0,0 +1,1 @@\n+x\n",
	    "from empty: old start 0 with 0 lines");
	check("x\n", "", HEADER "@@ -1,1 +0,0 @@\n-x\n", "to empty");
	check("a\nb", "a\nc",
	    HEADER "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
		   "+c\n\\ No newline at end of file\n",
	    "no newline at end of file, both sides");
	check("a\nb", "a\nb\n",
	    HEADER "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
		   "+b\n",
	    "adding the final newline changes the last line");

	a = numbers(30, 0, NULL);
	b = numbers(30, 20, "five");
	p = udiff_patch("f", a, strlen(a), b, strlen(b));
	ok(strstr(p, "@@ -1,9 +1,9 @@\n 1\n 2\n 3\n 4\n-5\n+five\n 6\n") !=
		NULL,
	    "4 lines of context before and after a change");
	ok(strstr(p, "@@ -16,9 +16,8 @@\n 16\n 17\n 18\n 19\n-20\n 21\n") !=
		NULL,
	    "a second hunk when changes are more than 8 lines apart");
	free(p);
	free(b);

	b = numbers(30, 13, "five");
	p = udiff_patch("f", a, strlen(a), b, strlen(b));
	ok(strstr(p, "@@ -1,17 +1,16 @@\n") != NULL &&
		strstr(strstr(p, "@@ -1,17"), "\n@@") == NULL,
	    "changes 7 lines apart share one hunk");
	free(p);
	free(b);
	free(a);

	/* A long file with changes far apart still gives small hunks. */
	a = numbers(20000, 0, NULL);
	b = numbers(20000, 15000, "five");
	p = udiff_patch("f", a, strlen(a), b, strlen(b));
	ok(strstr(p, "-5\n+five\n") != NULL && strstr(p, "-15000\n") != NULL &&
		strlen(p) < 400,
	    "20000 lines, two distant changes: two small hunks (%zu bytes)",
	    strlen(p));
	free(p);
	free(b);
	free(a);
	return tap_done();
}
